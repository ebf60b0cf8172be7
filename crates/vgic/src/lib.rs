//! Virtual GICv2/GICv3 for Tessel domains: distributor and redistributor
//! MMIO emulation, interrupt state, list-register delivery, and two
//! interchangeable state models.
//!
//! # Shape
//!
//! * [`VirtualGic`] is the interface the hypervisor calls: MMIO reads and
//!   writes from a vCPU, trapped SGI system-register writes, injection
//!   ([`VirtualGic::inject`], [`VirtualGic::set_line`]), hardware mappings,
//!   and the entry/exit protocol ([`VirtualGic::flush`] before entering a
//!   vCPU, [`VirtualGic::sync`] after it exits, [`VirtualGic::maintenance`]
//!   on a maintenance interrupt).
//! * The register decode (both GIC versions, access widths, RAZ/WI) lives in
//!   [`Emulator`], generic over a [`state::Backend`] that stores interrupt
//!   state and orders delivery. Only the delivery paths are compiled per
//!   backend; the register decode and the other cold paths are compiled
//!   once and reach the backend through a trait object. Two backends exist:
//!   [`classic`] (rank-based configuration, per-vCPU inflight list kept in
//!   priority order, an `lr_pending` overflow queue; modelled on Xen's
//!   `vgic.c`) and `perirq` (one structure per INTID and a per-vCPU
//!   active/pending list sorted at flush time; modelled on Xen's `vgic/` and
//!   KVM). Unlike Xen's new vGIC, both support GICv2 *and* GICv3.
//! * [`Vgic`] wraps either model behind [`Model`] so a domain builder picks
//!   one per domain. The per-IRQ model is the `per-irq` cargo feature (on
//!   by default); without it [`Vgic::new`] refuses [`Model::PerIrq`] with
//!   [`VgicError::ModelNotBuilt`], as Xen built without `CONFIG_NEW_VGIC`
//!   has only its classic vGIC. The `perirq-default` cargo feature flips
//!   [`Model::default`].
//! * The binary implements [`lr::ListRegisters`] on real `ICH_LR<n>_EL2`
//!   (GICv3) or `GICH_LR<n>` (GICv2) registers using the pure encoders in
//!   [`lr`].
//!
//! # Example
//!
//! ```
//! use tessel_addr::{AccessSize, GuestPhysAddr};
//! use tessel_vgic::{
//!     GicVersion, ListRegisters, LrState, LrStatus, Model, VcpuId, Vgic, VgicConfig, VgicLayout,
//!     VirtualGic,
//! };
//!
//! /// Stands in for the real ICH_LR<n>_EL2 registers.
//! struct Lrs([LrState; 4]);
//! impl ListRegisters for Lrs {
//!     fn count(&self) -> usize { self.0.len() }
//!     fn read(&self, i: usize) -> LrState { self.0[i] }
//!     fn write(&mut self, i: usize, lr: LrState) { self.0[i] = lr; }
//!     fn set_underflow_irq(&mut self, _on: bool) {}
//! }
//!
//! let layout = VgicLayout::xen_virtual(GicVersion::V3, 2);
//! let mut gic = Vgic::new(Model::default(), VgicConfig::new(GicVersion::V3, layout, 2, 64))?;
//! let v0 = VcpuId(0);
//! // The guest enables the distributor (EnableGrp1A | ARE_NS) and SPI 40.
//! gic.mmio_write(v0, GuestPhysAddr(0x0300_1000), AccessSize::Word, 0x12)?;
//! gic.mmio_write(v0, GuestPhysAddr(0x0300_1104), AccessSize::Word, 1 << 8)?;
//! // A device model raises its level-sensitive line; SPIs route to vCPU 0
//! // out of reset, which must be kicked.
//! assert_eq!(gic.set_line(v0, 40, true)?, Some(v0));
//! // Before entering vCPU 0:
//! let mut lrs = Lrs([LrState::INVALID; 4]);
//! gic.flush(v0, &mut lrs)?;
//! assert_eq!((lrs.0[0].intid, lrs.0[0].state), (40, LrStatus::Pending));
//! // After it exits (the guest acknowledged and EOIed it meanwhile):
//! lrs.0[0].state = LrStatus::Invalid;
//! gic.sync(v0, &mut lrs)?;
//! // The line is still high, so the interrupt is pending again.
//! assert!(gic.has_deliverable(v0));
//! # Ok::<(), tessel_vgic::VgicError>(())
//! ```
//!
//! # Groups
//!
//! The guest runs in the Non-secure state. On GICv3 every interrupt is
//! Non-secure Group 1 (`GICD_IGROUPR`/`GICR_IGROUPR0` read-as-one,
//! writes ignored) and list registers carry `Group = 1`, which is what
//! Linux's `irq-gic-v3` enables through `ICC_IGRPEN1_EL1`. On GICv2 every
//! interrupt is Group 0 (`GICD_IGROUPR` read-as-zero, writes ignored) and
//! list registers carry `Grp1 = 0`: through the virtual CPU interface a
//! guest's `GICC_CTLR.EnableGrp0` (bit 0, the bit Linux's `irq-gic` sets)
//! enables them, and `GICD_CTLR` bit 0 enables the distributor.
//!
//! # Concurrency
//!
//! One [`Vgic`] per domain, used under the domain's lock. While a vCPU
//! runs, the interrupts in its list registers are marked resident; a
//! change by another vCPU to such an interrupt's pending/active state wins
//! over the list register when the owner next exits, and the owner is
//! reported in the returned [`Kicks`] so the caller can force that exit.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod classic;
pub mod config;
mod emu;
pub mod lr;
#[cfg(feature = "per-irq")]
pub mod perirq;
pub mod regs;
pub mod state;

use core::fmt;

pub use config::{HostGic, MmioRegion, RedistRegion, RegionKind, VgicConfig, VgicLayout};
pub use emu::Emulator;
pub use lr::{ListRegisters, LrState, LrStatus};
use tessel_addr::{AccessSize, GuestPhysAddr};

/// The architecture version of the virtual GIC a domain sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GicVersion {
    /// GICv2 (IHI 0048B): memory-mapped CPU interface, at most 8 vCPUs.
    V2,
    /// GICv3 (IHI 0069) with affinity routing, system-register CPU interface.
    V3,
}

/// Index of a vCPU within its domain (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VcpuId(pub usize);

impl fmt::Display for VcpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vCPU{}", self.0)
    }
}

/// Maximum number of vCPUs a domain's vGIC supports (Xen's
/// `GUEST_MAX_VCPUS`); GICv2 is further limited to 8.
pub const MAX_VCPUS: usize = 128;
/// Maximum number of vCPUs with a GICv2 (8-bit CPU target lists).
pub const MAX_VCPUS_V2: usize = 8;
/// Largest SPI count: 988 rounded down to a multiple of 32 (INTIDs
/// 32..1019 are SPIs, IHI 0069 2.2.1; Xen rejects more than 988).
pub const MAX_SPIS: usize = 960;
/// Number of banked (per-vCPU) interrupts: 16 SGIs and 16 PPIs.
pub const NR_PRIVATE: u32 = 32;
/// First PPI INTID.
pub const PPI_BASE: u32 = 16;
/// First SPI INTID.
pub const SPI_BASE: u32 = 32;
/// The EL1 virtual timer PPI, usually hardware-mapped.
pub const VIRT_TIMER_PPI: u32 = 27;

/// A set of vCPUs that need an IPI (if running elsewhere) or a wake-up (if
/// blocked in WFI) because an interrupt became deliverable to them, or an
/// interrupt resident in their list registers changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Kicks(u128);

impl Kicks {
    /// No vCPU to notify.
    pub const NONE: Self = Self(0);

    /// Adds `vcpu` (ignored if it is beyond [`MAX_VCPUS`]).
    pub fn add(&mut self, vcpu: VcpuId) {
        if vcpu.0 < MAX_VCPUS {
            self.0 |= 1u128 << vcpu.0;
        }
    }

    /// Adds an optional vCPU.
    pub fn add_opt(&mut self, vcpu: Option<VcpuId>) {
        if let Some(v) = vcpu {
            self.add(v);
        }
    }

    /// Whether `vcpu` is in the set.
    pub fn contains(&self, vcpu: VcpuId) -> bool {
        vcpu.0 < MAX_VCPUS && self.0 & (1u128 << vcpu.0) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The raw bitmap (bit `i` is vCPU `i`).
    pub fn bits(&self) -> u128 {
        self.0
    }

    /// The vCPUs in ascending order (visits the set bits only).
    pub fn iter(&self) -> impl Iterator<Item = VcpuId> + '_ {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let v = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(VcpuId(v))
        })
    }
}

/// A trapped GICv3 SGI-generation system register (IHI 0069 12.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SgiRegister {
    /// `ICC_SGI1R_EL1`: Group 1 SGI for the current security state.
    Sgi1r,
    /// `ICC_ASGI1R_EL1`: Group 1 SGI for the other security state.
    Asgi1r,
    /// `ICC_SGI0R_EL1`: Group 0 SGI.
    Sgi0r,
}

/// Which state model backs a domain's vGIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// Rank-based, Xen `vgic.c`-like ([`classic`]).
    Classic,
    /// Per-IRQ structures, Xen `vgic/`/KVM-like (the `perirq` module,
    /// present with the `per-irq` cargo feature).
    PerIrq,
}

impl Model {
    /// Whether this build includes the model: [`Model::Classic`] always,
    /// [`Model::PerIrq`] with the `per-irq` cargo feature.
    pub const fn is_built(self) -> bool {
        match self {
            Self::Classic => true,
            Self::PerIrq => cfg!(feature = "per-irq"),
        }
    }
}

impl Default for Model {
    /// [`Model::Classic`], or [`Model::PerIrq`] with the `perirq-default`
    /// feature.
    fn default() -> Self {
        if cfg!(feature = "perirq-default") {
            Self::PerIrq
        } else {
            Self::Classic
        }
    }
}

/// Errors of the vGIC. MMIO and system-register errors are the guest's
/// fault: the caller injects a synchronous external abort (data abort) into
/// the offending vCPU. Configuration errors stop domain creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// A vCPU index outside the domain.
    InvalidVcpu {
        /// The index passed in.
        vcpu: VcpuId,
        /// The domain's vCPU count.
        nr_vcpus: usize,
    },
    /// An INTID the domain does not implement (or cannot be used this way).
    InvalidIntid {
        /// The INTID passed in.
        intid: u32,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An MMIO address outside every vGIC region.
    Unmapped {
        /// The faulting guest physical address.
        gpa: GuestPhysAddr,
    },
    /// An access width or alignment the register does not support.
    BadAccess {
        /// The register (or register class) addressed.
        register: &'static str,
        /// Offset within its frame.
        offset: u64,
        /// The width the guest used.
        size: AccessSize,
    },
    /// A bad [`VgicConfig`]; the message names the field at fault.
    Config(ConfigError),
    /// The model asked for is not compiled into this build (see
    /// [`Model::is_built`]).
    ModelNotBuilt {
        /// The model asked for.
        model: Model,
    },
}

/// What is wrong with a [`VgicConfig`] or host GIC description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `nr_vcpus` is zero or above the version's limit.
    VcpuCount {
        /// Requested count.
        nr_vcpus: usize,
        /// Limit for the version.
        max: usize,
    },
    /// `nr_spis` above [`MAX_SPIS`] after rounding up to 32.
    SpiCount {
        /// Requested count.
        nr_spis: usize,
    },
    /// `vcpu_mpidr` does not have one entry per vCPU.
    MpidrCount {
        /// Entries given.
        given: usize,
        /// vCPUs.
        nr_vcpus: usize,
    },
    /// Two vCPUs share an affinity value.
    DuplicateMpidr {
        /// The second vCPU with that affinity.
        vcpu: usize,
    },
    /// The layout is for the other GIC version.
    LayoutVersion,
    /// A region is misaligned, empty or too small; names the region.
    BadRegion {
        /// `"GICD"`, `"GICC"` or `"GICR"`.
        region: &'static str,
        /// Its base address.
        base: u64,
    },
    /// Two vGIC regions overlap.
    Overlap {
        /// Base of the first region.
        a: u64,
        /// Base of the second region.
        b: u64,
    },
    /// The redistributor regions hold fewer frames than vCPUs.
    RedistributorsTooFew {
        /// Frames available.
        frames: usize,
        /// vCPUs to cover.
        nr_vcpus: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::VcpuCount { nr_vcpus, max } => {
                write!(f, "vGIC: {nr_vcpus} vCPUs requested, must be 1..={max}")
            }
            Self::SpiCount { nr_spis } => {
                write!(f, "vGIC: nr_spis {nr_spis} exceeds {MAX_SPIS}")
            }
            Self::MpidrCount { given, nr_vcpus } => write!(
                f,
                "vGIC: vcpu_mpidr has {given} entries for {nr_vcpus} vCPUs"
            ),
            Self::DuplicateMpidr { vcpu } => {
                write!(f, "vGIC: vCPU {vcpu} repeats another vCPU's MPIDR affinity")
            }
            Self::LayoutVersion => write!(f, "vGIC: layout is for the other GIC version"),
            Self::BadRegion { region, base } => {
                write!(
                    f,
                    "vGIC: {region} region at {base:#x} is misaligned or too small"
                )
            }
            Self::Overlap { a, b } => {
                write!(f, "vGIC: regions at {a:#x} and {b:#x} overlap")
            }
            Self::RedistributorsTooFew { frames, nr_vcpus } => write!(
                f,
                "vGIC: redistributor regions hold {frames} frames for {nr_vcpus} vCPUs"
            ),
        }
    }
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InvalidVcpu { vcpu, nr_vcpus } => {
                write!(f, "vGIC: {vcpu} out of range (domain has {nr_vcpus})")
            }
            Self::InvalidIntid { intid, reason } => {
                write!(f, "vGIC: INTID {intid} refused: {reason}")
            }
            Self::Unmapped { gpa } => write!(f, "vGIC: no register frame at {gpa}"),
            Self::BadAccess {
                register,
                offset,
                size,
            } => write!(
                f,
                "vGIC: {}-byte access to {register} at offset {offset:#x} not allowed",
                size.bytes()
            ),
            Self::Config(c) => c.fmt(f),
            Self::ModelNotBuilt { model } => write!(
                f,
                "vGIC: the {} model is not compiled into this build",
                match model {
                    Model::Classic => "classic",
                    Model::PerIrq => "per-IRQ",
                }
            ),
        }
    }
}

impl From<ConfigError> for VgicError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// The interface the hypervisor uses for one domain's virtual GIC.
///
/// Every method validates its inputs; none panics on guest-controlled
/// values. An `Err` from [`mmio_read`](Self::mmio_read),
/// [`mmio_write`](Self::mmio_write) or [`sysreg_sgi`](Self::sysreg_sgi)
/// means "inject a data abort (or undefined-instruction exception) into
/// the accessing vCPU".
pub trait VirtualGic {
    /// The GIC version the guest sees.
    fn version(&self) -> GicVersion;
    /// Number of vCPUs.
    fn nr_vcpus(&self) -> usize;
    /// Number of SPIs (a multiple of 32).
    fn nr_spis(&self) -> usize;
    /// The regions the binary must install: trapped register frames
    /// (distributor, redistributors) and, for GICv2, the CPU-interface
    /// window to map onto the host GICV frame.
    fn regions(&self) -> &[MmioRegion];

    /// A guest read of `size` bytes at `gpa` by `vcpu`. The value is
    /// zero-extended.
    fn mmio_read(
        &mut self,
        vcpu: VcpuId,
        gpa: GuestPhysAddr,
        size: AccessSize,
    ) -> Result<u64, VgicError>;
    /// A guest write of the low `size` bytes of `value` at `gpa` by `vcpu`.
    /// Returns the vCPUs to notify.
    fn mmio_write(
        &mut self,
        vcpu: VcpuId,
        gpa: GuestPhysAddr,
        size: AccessSize,
        value: u64,
    ) -> Result<Kicks, VgicError>;
    /// A trapped write of `value` to a GICv3 SGI-generation register by
    /// `vcpu`. On a GICv2 domain this is an error (the registers do not
    /// exist; inject an undefined-instruction exception).
    fn sysreg_sgi(
        &mut self,
        vcpu: VcpuId,
        reg: SgiRegister,
        value: u64,
    ) -> Result<Kicks, VgicError>;

    /// Makes an edge (or software) event pending: for an SGI/PPI on `vcpu`,
    /// for an SPI wherever it is routed (`vcpu` is then ignored). Returns
    /// the vCPU to notify when the interrupt became deliverable. The
    /// interrupt stays pending while disabled and is delivered once enabled.
    fn inject(&mut self, vcpu: VcpuId, intid: u32) -> Result<Option<VcpuId>, VgicError>;
    /// Sets the level of a level-sensitive source (an edge-configured
    /// interrupt latches on the rising edge instead).
    fn set_line(
        &mut self,
        vcpu: VcpuId,
        intid: u32,
        level: bool,
    ) -> Result<Option<VcpuId>, VgicError>;
    /// Records that virtual `virq` is backed by physical `pintid`: list
    /// registers then carry `HW = 1`, and the guest's deactivation
    /// deactivates the physical interrupt. For a PPI, `vcpu` selects the
    /// bank; for an SPI it is ignored. `pintid` must be a PPI or SPI.
    fn map_hw(&mut self, vcpu: VcpuId, virq: u32, pintid: u32) -> Result<(), VgicError>;

    /// Fills `lrs` before entering `vcpu`: active interrupts first, then
    /// pending ones by priority; requests the underflow maintenance
    /// interrupt when some pending interrupt did not fit.
    fn flush<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError>;
    /// Folds `lrs` back after `vcpu` exited and clears them: completed
    /// interrupts leave, active ones stay, level sources re-pend while their
    /// line is high.
    fn sync<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError>;
    /// Handles a maintenance interrupt taken while `vcpu` ran: folds the
    /// list registers and refills them.
    fn maintenance<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError> {
        self.refresh(vcpu, lrs)
    }
    /// Before returning to `vcpu` after an exit: the same result as
    /// [`sync`](Self::sync) then [`flush`](Self::flush), but an
    /// implementation may leave the list registers alone when neither they
    /// (the guest acknowledged or completed nothing) nor the interrupt
    /// state changed since the last flush, which makes most traps cheap.
    fn refresh<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError> {
        self.sync(vcpu, lrs)?;
        self.flush(vcpu, lrs)
    }
    /// vCPUs that a [`sync`](Self::sync) (or [`refresh`](Self::refresh))
    /// made an interrupt deliverable to, other than the one synced: an SPI
    /// that left one vCPU's list registers for a target elsewhere. The
    /// caller kicks them; the set is emptied.
    fn take_kicks(&mut self) -> Kicks {
        Kicks::NONE
    }
    /// Whether [`refresh_and_take_kicks`](Self::refresh_and_take_kicks)
    /// on `vcpu`, whose interface has `lr_count` list registers, would
    /// neither touch them nor report a kick: nothing in flight, nothing
    /// changed since the last flush. A cheap test the return path may run
    /// before it even builds its [`ListRegisters`]; `false` is always a
    /// safe answer.
    fn quiet(&self, vcpu: VcpuId, lr_count: usize) -> bool {
        let _ = (vcpu, lr_count);
        false
    }
    /// [`refresh`](Self::refresh), then [`take_kicks`](Self::take_kicks):
    /// the pair every return to a guest runs, in one call so that an
    /// implementation can answer the common case (nothing to refill, no
    /// one to kick) with a single test.
    fn refresh_and_take_kicks<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<Kicks, VgicError> {
        self.refresh(vcpu, lrs)?;
        Ok(self.take_kicks())
    }
    /// Whether `vcpu` has an interrupt it could take now (for WFI).
    fn has_deliverable(&self, vcpu: VcpuId) -> bool;
    /// A digest of all guest-visible and internal state, to check isolation
    /// and determinism.
    fn state_digest(&self) -> u64;
}

/// A domain's vGIC, either model.
#[derive(Debug, Clone)]
pub enum Vgic {
    /// The classic model.
    Classic(classic::ClassicVgic),
    /// The per-IRQ model.
    #[cfg(feature = "per-irq")]
    PerIrq(perirq::PerIrqVgic),
}

impl Vgic {
    /// Builds a vGIC of the given model from a validated configuration.
    /// A model this build lacks ([`Model::is_built`]) is
    /// [`VgicError::ModelNotBuilt`].
    pub fn new(model: Model, config: VgicConfig) -> Result<Self, VgicError> {
        Ok(match model {
            Model::Classic => Self::Classic(Emulator::new(config)?),
            #[cfg(feature = "per-irq")]
            Model::PerIrq => Self::PerIrq(Emulator::new(config)?),
            #[cfg(not(feature = "per-irq"))]
            Model::PerIrq => return Err(VgicError::ModelNotBuilt { model }),
        })
    }

    /// Which model this is.
    pub fn model(&self) -> Model {
        match self {
            Self::Classic(_) => Model::Classic,
            #[cfg(feature = "per-irq")]
            Self::PerIrq(_) => Model::PerIrq,
        }
    }

    /// The GICv2 guest CPU-interface window (guest address and size), to be
    /// mapped onto the host GICV frame; `None` for GICv3.
    pub fn cpu_interface(&self) -> Option<tessel_addr::GuestRange> {
        self.regs_ref().config().layout.cpu_interface()
    }
}

macro_rules! dispatch {
    ($self:ident, $v:ident => $e:expr) => {
        match $self {
            Vgic::Classic($v) => $e,
            #[cfg(feature = "per-irq")]
            Vgic::PerIrq($v) => $e,
        }
    };
}

impl Vgic {
    /// The model-independent view through which the cold paths, compiled
    /// once for both models, run.
    #[inline(always)]
    fn regs(&mut self) -> &mut Emulator<dyn emu::mmio::Store + '_> {
        dispatch!(self, v => v.regs())
    }

    /// [`regs`](Self::regs) for reading.
    #[inline(always)]
    fn regs_ref(&self) -> &Emulator<dyn emu::mmio::Store + '_> {
        dispatch!(self, v => v.regs_ref())
    }
}

impl VirtualGic for Vgic {
    fn version(&self) -> GicVersion {
        self.regs_ref().config().version
    }
    fn nr_vcpus(&self) -> usize {
        self.regs_ref().config().nr_vcpus
    }
    fn nr_spis(&self) -> usize {
        self.regs_ref().config().nr_spis
    }
    fn regions(&self) -> &[MmioRegion] {
        self.regs_ref().frames()
    }
    fn mmio_read(
        &mut self,
        vcpu: VcpuId,
        gpa: GuestPhysAddr,
        size: AccessSize,
    ) -> Result<u64, VgicError> {
        // Both models take the identification registers' fast path.
        self.regs().read(vcpu, gpa, size, true)
    }
    fn mmio_write(
        &mut self,
        vcpu: VcpuId,
        gpa: GuestPhysAddr,
        size: AccessSize,
        value: u64,
    ) -> Result<Kicks, VgicError> {
        dispatch!(self, v => v.mmio_write(vcpu, gpa, size, value))
    }
    fn sysreg_sgi(
        &mut self,
        vcpu: VcpuId,
        reg: SgiRegister,
        value: u64,
    ) -> Result<Kicks, VgicError> {
        dispatch!(self, v => v.sysreg_sgi(vcpu, reg, value))
    }
    fn inject(&mut self, vcpu: VcpuId, intid: u32) -> Result<Option<VcpuId>, VgicError> {
        dispatch!(self, v => v.inject(vcpu, intid))
    }
    fn set_line(
        &mut self,
        vcpu: VcpuId,
        intid: u32,
        level: bool,
    ) -> Result<Option<VcpuId>, VgicError> {
        self.regs().set_line(vcpu, intid, level)
    }
    fn map_hw(&mut self, vcpu: VcpuId, virq: u32, pintid: u32) -> Result<(), VgicError> {
        self.regs().map_hw(vcpu, virq, pintid)
    }
    fn flush<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError> {
        dispatch!(self, v => v.flush(vcpu, lrs))
    }
    fn sync<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError> {
        dispatch!(self, v => v.sync(vcpu, lrs))
    }
    fn refresh<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError> {
        dispatch!(self, v => v.refresh(vcpu, lrs))
    }
    fn take_kicks(&mut self) -> Kicks {
        dispatch!(self, v => v.take_kicks())
    }
    #[inline]
    fn quiet(&self, vcpu: VcpuId, lr_count: usize) -> bool {
        dispatch!(self, v => v.quiet(vcpu, lr_count))
    }
    #[inline]
    fn refresh_and_take_kicks<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<Kicks, VgicError> {
        dispatch!(self, v => v.refresh_and_take_kicks(vcpu, lrs))
    }
    fn has_deliverable(&self, vcpu: VcpuId) -> bool {
        self.regs_ref().has_deliverable(vcpu)
    }
    fn state_digest(&self) -> u64 {
        self.regs_ref().digest()
    }
}

#[cfg(test)]
mod build_tests {
    use super::*;

    /// A build without the `per-irq` feature refuses the per-IRQ model
    /// with its own error instead of handing out the classic one; a build
    /// with it makes one. The classic model is always there.
    #[test]
    fn per_irq_model_only_when_built() {
        let cfg = || {
            VgicConfig::new(
                GicVersion::V3,
                VgicLayout::xen_virtual(GicVersion::V3, 1),
                1,
                32,
            )
        };
        assert!(Model::Classic.is_built());
        assert_eq!(
            Vgic::new(Model::Classic, cfg()).unwrap().model(),
            Model::Classic
        );
        let per_irq = Vgic::new(Model::PerIrq, cfg());
        if cfg!(feature = "per-irq") {
            assert!(Model::PerIrq.is_built());
            assert_eq!(per_irq.unwrap().model(), Model::PerIrq);
        } else {
            assert!(!Model::PerIrq.is_built());
            let e = per_irq.unwrap_err();
            assert_eq!(
                e,
                VgicError::ModelNotBuilt {
                    model: Model::PerIrq
                }
            );
            assert_eq!(
                e.to_string(),
                "vGIC: the per-IRQ model is not compiled into this build"
            );
        }
    }
}
