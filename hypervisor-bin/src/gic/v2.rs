//! GICv2 distributor and CPU interface (ARM Generic Interrupt Controller
//! Architecture Specification v2, IHI 0048B, chapter 4 "Programmers' model").

use super::{DEFAULT_PRIORITY, SPI_BASE};
use crate::boot::MAX_CPUS;
use crate::mmio::Mmio;
use core::sync::atomic::{AtomicU8, Ordering};

/// GICD_CTLR (IHI 0048B, 4.3.1).
const GICD_CTLR: usize = 0x000;
/// GICD_TYPER (IHI 0048B, 4.3.2): ITLinesNumber in \[4:0\].
const GICD_TYPER: usize = 0x004;
/// GICD_ISENABLERn (IHI 0048B, 4.3.5).
const GICD_ISENABLER: usize = 0x100;
/// GICD_ICENABLERn (IHI 0048B, 4.3.6).
const GICD_ICENABLER: usize = 0x180;
/// GICD_ICPENDRn (IHI 0048B, 4.3.8).
const GICD_ICPENDR: usize = 0x280;
/// GICD_ICACTIVERn (IHI 0048B, 4.3.10).
const GICD_ICACTIVER: usize = 0x380;
/// GICD_IPRIORITYRn (IHI 0048B, 4.3.11), one byte per interrupt.
const GICD_IPRIORITYR: usize = 0x400;
/// GICD_ITARGETSRn (IHI 0048B, 4.3.12), one byte per interrupt.
const GICD_ITARGETSR: usize = 0x800;
/// GICD_ICFGRn (IHI 0048B, 4.3.13), two bits per interrupt.
const GICD_ICFGR: usize = 0xc00;
/// GICD_SGIR (IHI 0048B, 4.3.15).
const GICD_SGIR: usize = 0xf00;

/// GICC_CTLR (IHI 0048B, 4.4.1). Bit 0 enables the group the hypervisor's
/// interrupts are in (Group 1 seen from Non-secure, Group 0 without the
/// Security Extensions); bit 9 is EOImodeNS / EOImodeS respectively.
const GICC_CTLR: usize = 0x0000;
const GICC_CTLR_ENABLE: u32 = 1 << 0;
const GICC_CTLR_EOIMODE: u32 = 1 << 9;
/// GICC_PMR (IHI 0048B, 4.4.2).
const GICC_PMR: usize = 0x0004;
/// GICC_BPR (IHI 0048B, 4.4.3).
const GICC_BPR: usize = 0x0008;
/// GICC_IAR (IHI 0048B, 4.4.4).
const GICC_IAR: usize = 0x000c;
/// GICC_EOIR (IHI 0048B, 4.4.5).
const GICC_EOIR: usize = 0x0010;
/// GICC_DIR (IHI 0048B, 4.4.15).
const GICC_DIR: usize = 0x1000;

/// GICH_HCR (IHI 0048B, 5.3.1): En is bit 0.
const GICH_HCR: usize = 0x0000;

/// A GICv2.
pub struct GicV2 {
    dist: Mmio,
    cpu: Mmio,
    /// Virtual interface control (banked per CPU at the same address).
    gich: Option<Mmio>,
    num_irqs: u32,
    /// GIC CPU-interface bit of each Tessel CPU (read from ITARGETSR0).
    cpu_mask: [AtomicU8; MAX_CPUS],
}

impl GicV2 {
    /// Resets the distributor to a quiet state and enables it.
    pub fn new(dist: Mmio, cpu: Mmio, gich: Option<Mmio>) -> Self {
        let lines = (dist.read32(GICD_TYPER) & 0x1f) + 1;
        let num_irqs = (lines * 32).min(1020);
        dist.write32(GICD_CTLR, 0);
        for i in (SPI_BASE..num_irqs).step_by(32) {
            let reg = (i / 32) as usize * 4;
            dist.write32(GICD_ICENABLER + reg, u32::MAX);
            dist.write32(GICD_ICPENDR + reg, u32::MAX);
            dist.write32(GICD_ICACTIVER + reg, u32::MAX);
        }
        dist.write32(GICD_CTLR, 1);
        Self {
            dist,
            cpu,
            gich,
            num_irqs,
            cpu_mask: [const { AtomicU8::new(0) }; MAX_CPUS],
        }
    }

    /// Interrupt IDs implemented.
    pub fn num_irqs(&self) -> u32 {
        self.num_irqs
    }

    /// Brings up the calling CPU's interface.
    pub fn init_cpu(&self) {
        // ITARGETSR0..7 read back the calling CPU's own mask (4.3.12).
        let mask = (self.dist.read32(GICD_ITARGETSR) & 0xff) as u8;
        if let Some(slot) = self.cpu_mask.get(super::this_cpu()) {
            slot.store(mask, Ordering::Relaxed);
        }
        // Quiesce the banked SGIs/PPIs.
        self.dist.write32(GICD_ICENABLER, u32::MAX);
        self.dist.write32(GICD_ICPENDR, u32::MAX);
        self.dist.write32(GICD_ICACTIVER, u32::MAX);
        self.cpu.write32(GICC_PMR, 0xff);
        self.cpu.write32(GICC_BPR, 0);
        self.cpu
            .write32(GICC_CTLR, GICC_CTLR_ENABLE | GICC_CTLR_EOIMODE);
    }

    fn set_byte(&self, base: usize, irq: u32, v: u8) {
        self.dist.write8(base + irq as usize, v);
    }

    /// Enables `irq`.
    pub fn enable(&self, irq: u32, target: usize, level: Option<bool>) {
        if irq >= self.num_irqs {
            return;
        }
        self.set_byte(GICD_IPRIORITYR, irq, DEFAULT_PRIORITY);
        if irq >= SPI_BASE {
            let mask = self
                .cpu_mask
                .get(target)
                .map_or(1, |m| m.load(Ordering::Relaxed));
            self.set_byte(GICD_ITARGETSR, irq, mask);
            let reg = GICD_ICFGR + (irq / 16) as usize * 4;
            let shift = (irq % 16) * 2 + 1;
            let cfg = self.dist.read32(reg);
            let cfg = match level {
                Some(true) => cfg & !(1 << shift),
                Some(false) => cfg | (1 << shift),
                None => cfg,
            };
            self.dist.write32(reg, cfg);
        }
        self.dist
            .write32(GICD_ISENABLER + (irq / 32) as usize * 4, 1 << (irq % 32));
    }

    /// Disables `irq`.
    pub fn disable(&self, irq: u32) {
        self.dist
            .write32(GICD_ICENABLER + (irq / 32) as usize * 4, 1 << (irq % 32));
    }

    /// The GICH frame, if the GIC has virtualization extensions.
    pub fn gich(&self) -> Option<Mmio> {
        self.gich
    }

    /// Enables this CPU's virtual interface (GICH_HCR.En).
    pub fn enable_virtual(&self) {
        if let Some(gich) = self.gich {
            gich.write32(GICH_HCR, super::VIRT_EN as u32);
        }
    }

    /// Disables this CPU's virtual interface (GICH_HCR.En and every
    /// maintenance-interrupt enable cleared).
    pub fn disable_virtual(&self) {
        if let Some(gich) = self.gich {
            gich.write32(GICH_HCR, 0);
        }
    }

    /// Reads GICC_IAR: the interrupt ID in bits \[9:0\] and, for an SGI,
    /// the requesting CPU in bits \[12:10\]. The whole value must be written
    /// back to GICC_EOIR and GICC_DIR (IHI 0048B, 4.4.5 and 4.4.15).
    pub fn ack(&self) -> u32 {
        self.cpu.read32(GICC_IAR) & 0x1fff
    }

    /// Priority drop.
    pub fn eoi(&self, irq: u32) {
        self.cpu.write32(GICC_EOIR, irq);
    }

    /// Deactivation.
    pub fn deactivate(&self, irq: u32) {
        self.cpu.write32(GICC_DIR, irq);
    }

    /// Rewrites GICC_PMR with its own value. Architecturally a no-op; on
    /// QEMU's GICv2 model it makes the distributor re-evaluate this CPU's
    /// interrupt line. A guest's EOI through the virtual interface
    /// deactivates a hardware-mapped interrupt (HW = 1 list register), and
    /// QEMU then updates only the virtual lines: a level interrupt that is
    /// still asserted (the virtual timer re-armed in the past) stays pending
    /// but unsignalled until some other GIC access, so a CPU whose neighbours
    /// are idle would wait forever in WFI.
    pub fn resample(&self) {
        let pmr = self.cpu.read32(GICC_PMR);
        self.cpu.write32(GICC_PMR, pmr);
    }

    /// GICD_SGIR with TargetListFilter = 0 (use the list).
    pub fn send_sgi(&self, target: usize, sgi: u32) {
        let mask = self
            .cpu_mask
            .get(target)
            .map_or(0, |m| m.load(Ordering::Relaxed));
        self.dist
            .write32(GICD_SGIR, (u32::from(mask) << 16) | (sgi & 0xf));
    }
}
