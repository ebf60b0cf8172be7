//! The per-interrupt state both models store, and the [`Backend`] trait
//! through which [`crate::Emulator`] reads and updates it.

use alloc::vec::Vec;

/// The full state of one interrupt (one INTID on one vCPU for SGIs/PPIs).
///
/// This is the exchange format between the register emulation and a model;
/// each model stores it in its own layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IrqState {
    /// Enabled (`ISENABLER`).
    pub enabled: bool,
    /// Latched pending state: an edge, a software `ISPENDR` write, or a
    /// GICv3 SGI.
    pub pending_latch: bool,
    /// Current level of a level-sensitive source.
    pub line_level: bool,
    /// Active in the guest.
    pub active: bool,
    /// Edge-triggered (`ICFGR` bit `2n+1`).
    pub edge: bool,
    /// Priority (`IPRIORITYR`, lower is higher priority).
    pub priority: u8,
    /// Physical INTID this interrupt is forwarded from.
    pub hw: Option<u32>,
    /// Raw routing register: GICv2 `ITARGETSR` byte, GICv3 `IROUTER`.
    pub route: u64,
    /// vCPU the interrupt is delivered to (resolved from `route`); `None`
    /// when the route names no vCPU of the domain.
    pub target: Option<u16>,
    /// GICv2 SGIs: bitmap of requesting CPUs with a pending request.
    pub sgi_sources: u8,
    /// GICv2 SGIs: the source of the instance that is active or in a
    /// list register.
    pub lr_source: u8,
    /// Currently held in a list register of the vCPU it is queued on.
    pub in_lr: bool,
    /// A new edge arrived while the interrupt sat in a list register.
    pub relatched: bool,
    /// Software cleared the pending state while it sat in a list register:
    /// the software pending state wins over the list register at sync.
    pub sw_pending_dirty: bool,
    /// Software changed the active state while it sat in a list register:
    /// the software active state wins over the list register at sync.
    pub sw_active_dirty: bool,
}

impl IrqState {
    /// Whether the interrupt is pending (`v2_sgi`: GICv2 SGI semantics,
    /// pending per source).
    pub fn is_pending(&self, v2_sgi: bool) -> bool {
        if v2_sgi {
            self.sgi_sources != 0
        } else {
            self.pending_latch || (!self.edge && self.line_level && self.hw.is_none())
        }
    }

    /// Whether it must sit on a vCPU's list (pending or active).
    pub fn wants_queue(&self, v2_sgi: bool) -> bool {
        self.active || self.is_pending(v2_sgi)
    }
}

/// Storage and delivery order of interrupt state; implemented by
/// [`crate::classic::Classic`] and [`crate::perirq::PerIrq`].
///
/// INTIDs passed in are already validated by the caller: `intid < 32 +
/// nr_spis`, `vcpu < nr_vcpus`. Implementations must nevertheless not
/// panic on out-of-range values (return the default state, ignore stores).
pub trait Backend: Clone + core::fmt::Debug {
    /// Creates storage for `nr_vcpus` vCPUs and `nr_spis` SPIs. `v2`
    /// selects GICv2 SGI semantics for queueing decisions.
    fn create(nr_vcpus: usize, nr_spis: usize, v2: bool) -> Self;
    /// The state of `intid` (banked by `vcpu` for INTIDs below 32).
    fn load(&self, vcpu: usize, intid: u32) -> IrqState;
    /// Replaces the state of `intid` and updates the vCPU lists: an
    /// interrupt that is pending or active is queued on its owner (the bank
    /// for private interrupts, `target` for SPIs; an active SPI stays where
    /// it is active), otherwise it leaves its list.
    fn store(&mut self, vcpu: usize, intid: u32, st: IrqState);
    /// Appends to `out` the INTIDs queued on `vcpu`, in delivery order:
    /// active first, then by priority, then by INTID.
    fn queued(&mut self, vcpu: usize, out: &mut Vec<u32>);
    /// The vCPU whose list holds `intid` (looked up through `vcpu` for a
    /// banked interrupt), if any.
    fn listed_on(&self, vcpu: usize, intid: u32) -> Option<usize>;
    /// Calls `f` for every INTID queued on `vcpu`, in any order (entries
    /// that no longer need delivery may be included).
    fn for_each_queued(&self, vcpu: usize, f: &mut dyn FnMut(u32));
    /// Tells the model which queued interrupts did not get a list register
    /// at the last flush (the classic model keeps them as `lr_pending`).
    fn set_overflow(&mut self, vcpu: usize, intids: &[u32]);
    /// Number of interrupts waiting for a free list register on `vcpu`.
    fn overflow_len(&self, vcpu: usize) -> usize;
}

/// Delivery order key shared by the models: active first, then priority,
/// then INTID.
pub(crate) fn order_key(st: &IrqState, intid: u32) -> (bool, u8, u32) {
    (!st.active, st.priority, intid)
}
