//! GICv3 distributor, redistributors and system-register CPU interface
//! (GIC Architecture Specification, IHI 0069, chapter 12).

use super::{CPU_MPIDR, DEFAULT_PRIORITY, SPI_BASE, icc, packed_affinity};
use crate::boot::MAX_CPUS;
use crate::mmio::Mmio;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// GICD_CTLR (IHI 0069, 12.9.4): RWP is bit 31. Written as ARE (bit 4) and
/// both group enables (bits 1:0), which reads as ARE_NS/EnableGrp1A/
/// EnableGrp1 in the Non-secure view and ARE/EnableGrp1/EnableGrp0 when
/// the GIC supports a single security state.
const GICD_CTLR: usize = 0x0000;
const GICD_CTLR_VALUE: u32 = (1 << 4) | (1 << 1) | (1 << 0);
const CTLR_RWP: u32 = 1 << 31;
/// GICD_TYPER (IHI 0069, 12.9.38): ITLinesNumber in \[4:0\].
const GICD_TYPER: usize = 0x0004;
/// GICD_IGROUPRn (12.9.15) / GICR_IGROUPR0 (12.11.16).
const IGROUPR: usize = 0x0080;
/// GICD_ISENABLERn (12.9.24) / GICR_ISENABLER0 (12.11.24).
const ISENABLER: usize = 0x0100;
/// GICD_ICENABLERn (12.9.9) / GICR_ICENABLER0.
const ICENABLER: usize = 0x0180;
/// GICD_ICPENDRn (12.9.11) / GICR_ICPENDR0.
const ICPENDR: usize = 0x0280;
/// GICD_ICACTIVERn (12.9.8) / GICR_ICACTIVER0.
const ICACTIVER: usize = 0x0380;
/// GICD_IPRIORITYRn (12.9.21) / GICR_IPRIORITYRn.
const IPRIORITYR: usize = 0x0400;
/// GICD_ICFGRn (12.9.10) / GICR_ICFGR0/1.
const ICFGR: usize = 0x0c00;
/// GICD_IROUTERn (12.9.20), 64 bits per SPI.
const GICD_IROUTER: usize = 0x6000;

/// GICR_TYPER (12.11.35): Affinity \[63:32\], Last (bit 4), VLPIS (bit 1).
const GICR_TYPER: usize = 0x0008;
/// GICR_WAKER (12.11.37): ProcessorSleep bit 1, ChildrenAsleep bit 2.
const GICR_WAKER: usize = 0x0014;
/// Offset of the SGI_base frame within a redistributor.
const GICR_SGI_OFFSET: usize = 0x1_0000;
/// Redistributor stride: two 64 KiB frames, four with VLPIs.
const GICR_STRIDE: usize = 0x2_0000;

/// ICC_SRE_EL2.SRE | ICC_SRE_EL2.Enable (IHI 0069, 12.2.17).
const SRE_EL2_VALUE: u64 = (1 << 0) | (1 << 3);
/// ICC_CTLR_EL1.EOImode (IHI 0069, 12.2.6).
const ICC_CTLR_EOIMODE: u64 = 1 << 1;

/// A GICv3.
pub struct GicV3 {
    dist: Mmio,
    /// Redistributor regions (base, size); they need not be contiguous.
    redist_regions: Vec<(Mmio, u64)>,
    num_irqs: u32,
    /// Redistributor base of each Tessel CPU (0 until found).
    redist: [AtomicU64; MAX_CPUS],
}

impl GicV3 {
    /// Resets the distributor to a quiet state, puts every SPI in
    /// Non-secure Group 1 and enables affinity routing.
    pub fn new(dist: Mmio, redist_regions: Vec<(Mmio, u64)>) -> Result<Self, &'static str> {
        if redist_regions.is_empty() {
            return Err("the GICv3 node has no redistributor region");
        }
        let lines = (dist.read32(GICD_TYPER) & 0x1f) + 1;
        let num_irqs = (lines * 32).min(1020);
        dist.write32(GICD_CTLR, 0);
        wait_rwp(&dist);
        for i in (SPI_BASE..num_irqs).step_by(32) {
            let reg = (i / 32) as usize * 4;
            dist.write32(ICENABLER + reg, u32::MAX);
            dist.write32(ICPENDR + reg, u32::MAX);
            dist.write32(ICACTIVER + reg, u32::MAX);
            dist.write32(IGROUPR + reg, u32::MAX);
        }
        wait_rwp(&dist);
        dist.write32(GICD_CTLR, GICD_CTLR_VALUE);
        wait_rwp(&dist);
        Ok(Self {
            dist,
            redist_regions,
            num_irqs,
            redist: [const { AtomicU64::new(0) }; MAX_CPUS],
        })
    }

    /// Interrupt IDs implemented.
    pub fn num_irqs(&self) -> u32 {
        self.num_irqs
    }

    /// Finds the redistributor whose GICR_TYPER affinity matches `mpidr`,
    /// walking every region frame by frame until GICR_TYPER.Last.
    fn find_redist(&self, mpidr: u64) -> Option<Mmio> {
        let want = packed_affinity(mpidr);
        for &(region, size) in &self.redist_regions {
            let mut off = 0usize;
            while (off as u64) < size {
                let rd = region.offset(off);
                let typer = rd.read64(GICR_TYPER);
                if (typer >> 32) as u32 == want {
                    return Some(rd);
                }
                if typer & (1 << 4) != 0 {
                    break;
                }
                off += if typer & (1 << 1) != 0 {
                    2 * GICR_STRIDE
                } else {
                    GICR_STRIDE
                };
            }
        }
        None
    }

    fn my_redist(&self) -> Option<Mmio> {
        let base = self.redist.get(super::this_cpu())?.load(Ordering::Relaxed);
        // SAFETY: the base was found by `find_redist` inside the
        // redistributor region the DT describes.
        (base != 0).then(|| unsafe { Mmio::new(base) })
    }

    /// Wakes the calling CPU's redistributor and enables the system-register
    /// CPU interface.
    pub fn init_cpu(&self) -> Result<(), &'static str> {
        let cpu = super::this_cpu();
        let mpidr = CPU_MPIDR
            .get(cpu)
            .map(|m| m.load(Ordering::Relaxed))
            .ok_or("CPU index out of range")?;
        let rd = self
            .find_redist(mpidr)
            .ok_or("no GICv3 redistributor matches this CPU's MPIDR")?;
        if let Some(slot) = self.redist.get(cpu) {
            slot.store(rd.base(), Ordering::Relaxed);
        }
        let waker = rd.read32(GICR_WAKER) & !(1 << 1);
        rd.write32(GICR_WAKER, waker);
        while rd.read32(GICR_WAKER) & (1 << 2) != 0 {
            core::hint::spin_loop();
        }
        let sgi = rd.offset(GICR_SGI_OFFSET);
        sgi.write32(ICENABLER, u32::MAX);
        sgi.write32(ICPENDR, u32::MAX);
        sgi.write32(ICACTIVER, u32::MAX);
        sgi.write32(IGROUPR, u32::MAX);

        icc::set_sre_el2(icc::sre_el2() | SRE_EL2_VALUE);
        // SAFETY: synchronises the SRE write before using ICC registers.
        unsafe { core::arch::asm!("isb", options(nostack)) };
        icc::set_pmr(0xff);
        icc::set_bpr1(0);
        icc::set_ctlr(icc::ctlr() | ICC_CTLR_EOIMODE);
        icc::set_igrpen1(1);
        // SAFETY: synchronisation barrier only.
        unsafe { core::arch::asm!("isb", options(nostack)) };
        Ok(())
    }

    /// Enables `irq`.
    pub fn enable(&self, irq: u32, target: usize, level: Option<bool>) {
        if irq >= self.num_irqs {
            return;
        }
        if irq < SPI_BASE {
            let Some(rd) = self.my_redist() else { return };
            let sgi = rd.offset(GICR_SGI_OFFSET);
            sgi.write8(IPRIORITYR + irq as usize, DEFAULT_PRIORITY);
            sgi.write32(ISENABLER, 1 << irq);
            return;
        }
        self.dist
            .write8(IPRIORITYR + irq as usize, DEFAULT_PRIORITY);
        let mpidr = CPU_MPIDR
            .get(target)
            .map_or(0, |m| m.load(Ordering::Relaxed));
        // IROUTER: Aff3 in [39:32], Aff2.Aff1.Aff0 in [23:0], IRM = 0.
        self.dist
            .write64(GICD_IROUTER + irq as usize * 8, mpidr & 0xff_00ff_ffff);
        let reg = ICFGR + (irq / 16) as usize * 4;
        let shift = (irq % 16) * 2 + 1;
        let cfg = self.dist.read32(reg);
        let cfg = match level {
            Some(true) => cfg & !(1 << shift),
            Some(false) => cfg | (1 << shift),
            None => cfg,
        };
        self.dist.write32(reg, cfg);
        self.dist
            .write32(ISENABLER + (irq / 32) as usize * 4, 1 << (irq % 32));
    }

    /// Disables `irq`.
    pub fn disable(&self, irq: u32) {
        if irq < SPI_BASE {
            if let Some(rd) = self.my_redist() {
                rd.offset(GICR_SGI_OFFSET).write32(ICENABLER, 1 << irq);
            }
        } else {
            self.dist
                .write32(ICENABLER + (irq / 32) as usize * 4, 1 << (irq % 32));
            wait_rwp(&self.dist);
        }
    }
}

fn wait_rwp(dist: &Mmio) {
    while dist.read32(GICD_CTLR) & CTLR_RWP != 0 {
        core::hint::spin_loop();
    }
}
