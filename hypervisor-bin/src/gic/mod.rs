//! Physical GIC drivers (GICv2 and GICv3) for the hypervisor's own use:
//! distributor setup, per-CPU interface bring-up, acknowledge / priority
//! drop / deactivate (EOImode = 1, so that interrupts forwarded to a guest
//! through a hardware list register are deactivated by the guest), routing
//! SPIs to a CPU and sending SGIs.

pub mod icc;
pub mod lrs;
mod v2;
mod v3;

use crate::boot::MAX_CPUS;
use crate::mmio::Mmio;
use crate::sync::Once;
use core::sync::atomic::{AtomicU64, Ordering};
use tessel_config::{GicInfo, GicVersion};

pub use v2::GicV2;
pub use v3::GicV3;

/// First SPI interrupt ID (IHI 0069, 2.2 "INTIDs").
pub const SPI_BASE: u32 = 32;
/// Interrupt IDs from here on are special (1020-1023, IHI 0069, 2.2.1).
pub const SPECIAL_BASE: u32 = 1020;
/// Priority the hypervisor gives its interrupts (lower is more urgent).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// The host GIC.
pub enum Gic {
    /// GICv2.
    V2(GicV2),
    /// GICv3.
    V3(GicV3),
}

/// The host GIC, set up on the boot CPU.
pub static GIC: Once<Gic> = Once::new();

/// MPIDR of each CPU by Tessel CPU index (filled at boot from the DT).
pub static CPU_MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// The CPU index of the caller (kept in TPIDR_EL2 by the entry code).
pub fn this_cpu() -> usize {
    let v: u64;
    // SAFETY: TPIDR_EL2 is a plain scratch register set by `setup_cpu`.
    unsafe { core::arch::asm!("mrs {}, tpidr_el2", out(reg) v, options(nomem, nostack)) };
    v as usize
}

impl Gic {
    /// Initialises the distributor (boot CPU only).
    ///
    /// # Safety
    /// `info` must describe the host GIC, whose registers must be mapped
    /// as Device memory.
    pub unsafe fn probe(info: &GicInfo) -> Result<Self, &'static str> {
        // SAFETY: per the caller, every frame named here is the host GIC's.
        unsafe {
            Ok(match info.version {
                GicVersion::V2 => {
                    let gicc = info.gicc.ok_or("the GICv2 node has no CPU interface")?;
                    Gic::V2(GicV2::new(
                        Mmio::new(info.gicd.start.0),
                        Mmio::new(gicc.start.0),
                        info.gich.map(|r| Mmio::new(r.start.0)),
                    ))
                }
                GicVersion::V3 => Gic::V3(GicV3::new(
                    Mmio::new(info.gicd.start.0),
                    info.redistributors
                        .iter()
                        .map(|r| (Mmio::new(r.start.0), r.size))
                        .collect(),
                )?),
            })
        }
    }

    /// Number of interrupt IDs the distributor implements.
    pub fn num_irqs(&self) -> u32 {
        match self {
            Gic::V2(g) => g.num_irqs(),
            Gic::V3(g) => g.num_irqs(),
        }
    }

    /// Brings up this CPU's interface (and redistributor).
    pub fn init_cpu(&self) -> Result<(), &'static str> {
        match self {
            Gic::V2(g) => {
                g.init_cpu();
                Ok(())
            }
            Gic::V3(g) => g.init_cpu(),
        }
    }

    /// Enables interrupt `irq`; an SPI is routed to CPU `target`, an SGI or
    /// PPI is enabled on the calling CPU. `level` sets an SPI's trigger
    /// (level or edge); `None` leaves it as configured.
    pub fn enable(&self, irq: u32, target: usize, level: Option<bool>) {
        match self {
            Gic::V2(g) => g.enable(irq, target, level),
            Gic::V3(g) => g.enable(irq, target, level),
        }
    }

    /// Disables interrupt `irq` (SGI/PPI: on the calling CPU).
    pub fn disable(&self, irq: u32) {
        match self {
            Gic::V2(g) => g.disable(irq),
            Gic::V3(g) => g.disable(irq),
        }
    }

    /// Acknowledges the highest-priority pending interrupt and drops its
    /// priority (the first half of EOImode = 1), with one look at the
    /// GIC's version, or `None` if it is spurious. The interrupt stays
    /// active until [`deactivate_acked`](Self::deactivate_acked) (or, for
    /// one forwarded to a guest, the guest's deactivation).
    #[inline]
    pub fn ack_and_drop(&self) -> Option<Acked> {
        match self {
            Gic::V2(g) => {
                let raw = g.ack();
                let id = raw & 0x3ff;
                if id >= SPECIAL_BASE {
                    return None;
                }
                g.eoi(raw);
                Some(Acked { id, raw })
            }
            Gic::V3(_) => {
                let id = (icc::iar1() & 0xff_ffff) as u32;
                if id >= SPECIAL_BASE {
                    return None;
                }
                icc::eoir1(u64::from(id));
                Some(Acked { id, raw: id })
            }
        }
    }

    /// Deactivation of an acknowledged interrupt, with the value the
    /// acknowledge returned (on GICv2 it carries an SGI's source CPU).
    pub fn deactivate_acked(&self, a: Acked) {
        self.deactivate(a.raw);
    }

    /// Deactivates `irq` (for interrupts the hypervisor handled itself).
    pub fn deactivate(&self, irq: u32) {
        match self {
            Gic::V2(g) => g.deactivate(irq),
            Gic::V3(_) => icc::dir(u64::from(irq)),
        }
    }

    /// Makes sure an interrupt that became pending again behind a guest's
    /// deactivation is signalled before the caller waits in WFI (see
    /// `v2::GicV2::resample`; nothing to do on GICv3).
    pub fn resample(&self) {
        if let Gic::V2(g) = self {
            g.resample();
        }
    }

    /// Sends SGI `sgi` (0..16) to CPU `target`.
    pub fn send_sgi(&self, target: usize, sgi: u32) {
        match self {
            Gic::V2(g) => g.send_sgi(target, sgi),
            Gic::V3(_) => {
                let mpidr = CPU_MPIDR
                    .get(target)
                    .map_or(0, |m| m.load(Ordering::Relaxed));
                let aff1 = (mpidr >> 8) & 0xff;
                let aff2 = (mpidr >> 16) & 0xff;
                let aff3 = (mpidr >> 32) & 0xff;
                let aff0 = mpidr & 0xf;
                // ICC_SGI1R_EL1 fields (IHI 0069, 12.2.21): TargetList
                // [15:0], Aff1 [23:16], INTID [27:24], Aff2 [39:32],
                // Aff3 [55:48]; RS [47:44] selects the block of 16 Aff0s.
                let rs = (mpidr & 0xff) >> 4;
                icc::sgi1r(
                    (1 << aff0)
                        | (aff1 << 16)
                        | (u64::from(sgi & 0xf) << 24)
                        | (aff2 << 32)
                        | (rs << 44)
                        | (aff3 << 48),
                );
            }
        }
    }

    /// Version, for the boot log.
    pub fn version(&self) -> u8 {
        match self {
            Gic::V2(_) => 2,
            Gic::V3(_) => 3,
        }
    }
}

/// Affinity of `mpidr` packed as Aff3.Aff2.Aff1.Aff0 (the GICR_TYPER and
/// GICD_IROUTER layouts differ; this is the 32-bit one of GICR_TYPER).
pub fn packed_affinity(mpidr: u64) -> u32 {
    ((((mpidr >> 32) & 0xff) << 24) | (mpidr & 0xff_ffff)) as u32
}

/// Maintenance interrupt of the virtual CPU interface (from the GIC node's
/// `interrupts`; PPI 9 = INTID 25 by default).
pub static MAINTENANCE_IRQ: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(25);

/// The maintenance interrupt's INTID.
pub fn maintenance_irq() -> u32 {
    MAINTENANCE_IRQ.load(Ordering::Relaxed)
}
/// Virtual timer PPI (CNTV, PPI 11 in the `arm,armv8-timer` binding).
pub const VTIMER_PPI: u32 = 27;

/// ICH_HCR_EL2.En (IHI 0069, 12.5.6) / GICH_HCR.En (IHI 0048B, 5.3.1):
/// enables the virtual CPU interface.
const VIRT_EN: u64 = 1;

/// Enables the virtual CPU interface for the guest about to run on this
/// CPU (its list registers are managed by the vGIC).
pub fn enter_guest_cpu_interface() {
    match GIC.get() {
        Some(Gic::V2(g)) => g.enable_virtual(),
        Some(Gic::V3(_)) => {
            // SAFETY: ICH_HCR_EL2 (S3_4_C12_C11_0) and ICH_VMCR_EL2
            // (S3_4_C12_C11_7) only affect the virtual CPU interface of the
            // guest that is about to run here.
            unsafe {
                core::arch::asm!(
                    "msr S3_4_C12_C11_7, xzr",
                    "msr S3_4_C12_C11_0, {}",
                    "isb",
                    in(reg) VIRT_EN,
                    options(nostack)
                )
            };
        }
        None => {}
    }
}

/// Disables the virtual CPU interface when this CPU leaves its guest for
/// good (the domain stopped or the vCPU is off), so neither its list
/// registers nor its maintenance interrupt fire any more.
pub fn leave_guest_cpu_interface() {
    match GIC.get() {
        Some(Gic::V2(g)) => g.disable_virtual(),
        Some(Gic::V3(_)) => {
            // SAFETY: ICH_HCR_EL2 (S3_4_C12_C11_0) only affects the virtual
            // CPU interface of the guest that has left this CPU.
            unsafe { core::arch::asm!("msr S3_4_C12_C11_0, xzr", "isb", options(nostack)) };
        }
        None => {}
    }
}

/// An acknowledged physical interrupt.
#[derive(Clone, Copy, Debug)]
pub struct Acked {
    /// The interrupt ID.
    pub id: u32,
    /// What the acknowledge register returned; GICv2 SGIs carry the source
    /// CPU in bits \[12:10\], which EOI and deactivation must repeat.
    raw: u32,
}
