//! The per-interrupt state both models store, and the [`Backend`] trait
//! through which [`crate::Emulator`] reads and updates it.
//!
//! Two granularities: the full [`IrqState`] ([`Backend::load`],
//! [`Backend::store`]) for register writes that may change anything, and
//! for the delivery paths (injection, list-register fold and fill) an
//! [`IrqView`] read and a [`Dynamic`] write that leave the configuration
//! alone and touch the vCPU queues only when membership or order changes.
//! The second granularity has default implementations in terms of the
//! first; [`Reference`] keeps to them, for differential tests.

use alloc::vec::Vec;

use bitflags::bitflags;

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

bitflags! {
    /// The boolean part of an interrupt's dynamic state, one bit per
    /// [`IrqState`] field (after Xen's `GIC_IRQ_GUEST_*` status bits).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Status: u8 {
        /// [`IrqState::pending_latch`].
        const PENDING = 1 << 0;
        /// [`IrqState::active`].
        const ACTIVE = 1 << 1;
        /// [`IrqState::in_lr`].
        const IN_LR = 1 << 2;
        /// [`IrqState::line_level`].
        const LINE = 1 << 3;
        /// [`IrqState::relatched`].
        const RELATCHED = 1 << 4;
        /// [`IrqState::sw_pending_dirty`].
        const PENDING_DIRTY = 1 << 5;
        /// [`IrqState::sw_active_dirty`].
        const ACTIVE_DIRTY = 1 << 6;
    }
}

/// The dynamic state of an interrupt: what injection and the list-register
/// fold and fill change (the rest of [`IrqState`] is configuration that
/// only register writes and [`crate::VirtualGic::map_hw`] change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Dynamic {
    /// The boolean fields.
    pub status: Status,
    /// [`IrqState::sgi_sources`].
    pub sgi_sources: u8,
    /// [`IrqState::lr_source`].
    pub lr_source: u8,
}

impl Dynamic {
    /// The dynamic part of `st`.
    pub fn of(st: &IrqState) -> Self {
        let mut s = Status::empty();
        s.set(Status::PENDING, st.pending_latch);
        s.set(Status::ACTIVE, st.active);
        s.set(Status::IN_LR, st.in_lr);
        s.set(Status::LINE, st.line_level);
        s.set(Status::RELATCHED, st.relatched);
        s.set(Status::PENDING_DIRTY, st.sw_pending_dirty);
        s.set(Status::ACTIVE_DIRTY, st.sw_active_dirty);
        Self {
            status: s,
            sgi_sources: st.sgi_sources,
            lr_source: st.lr_source,
        }
    }

    /// Writes this dynamic state into `st`, leaving its configuration.
    pub fn apply(self, st: &mut IrqState) {
        let s = self.status;
        st.pending_latch = s.contains(Status::PENDING);
        st.active = s.contains(Status::ACTIVE);
        st.in_lr = s.contains(Status::IN_LR);
        st.line_level = s.contains(Status::LINE);
        st.relatched = s.contains(Status::RELATCHED);
        st.sw_pending_dirty = s.contains(Status::PENDING_DIRTY);
        st.sw_active_dirty = s.contains(Status::ACTIVE_DIRTY);
        st.sgi_sources = self.sgi_sources;
        st.lr_source = self.lr_source;
    }

    /// [`IrqState::is_pending`] for an interrupt with this dynamic state,
    /// edge-triggered or not, and forwarded (`hw`) or not.
    #[inline]
    pub fn is_pending(&self, v2_sgi: bool, edge: bool, hw: bool) -> bool {
        if v2_sgi {
            self.sgi_sources != 0
        } else {
            self.status.contains(Status::PENDING)
                || (!edge && !hw && self.status.contains(Status::LINE))
        }
    }

    /// [`IrqState::wants_queue`] likewise.
    #[inline]
    pub fn wants_queue(&self, v2_sgi: bool, edge: bool, hw: bool) -> bool {
        self.status.contains(Status::ACTIVE) || self.is_pending(v2_sgi, edge, hw)
    }
}

/// What the delivery paths read of an interrupt: its [`Dynamic`] state and
/// the configuration that decides whether and how it is delivered (all of
/// [`IrqState`] but the raw route).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IrqView {
    /// The dynamic state.
    pub dynamic: Dynamic,
    /// [`IrqState::enabled`].
    pub enabled: bool,
    /// [`IrqState::edge`].
    pub edge: bool,
    /// [`IrqState::priority`].
    pub priority: u8,
    /// [`IrqState::hw`].
    pub hw: Option<u32>,
    /// [`IrqState::target`].
    pub target: Option<u16>,
    /// The vCPU whose list holds it ([`Backend::listed_on`]).
    pub listed: Option<u16>,
}

impl IrqView {
    /// The view of a full state listed on `listed`.
    pub fn of(st: &IrqState, listed: Option<usize>) -> Self {
        Self {
            dynamic: Dynamic::of(st),
            enabled: st.enabled,
            edge: st.edge,
            priority: st.priority,
            hw: st.hw,
            target: st.target,
            listed: listed.and_then(|l| u16::try_from(l).ok()),
        }
    }

    /// Whether `flag` is set in the dynamic status.
    #[inline]
    pub fn has(&self, flag: Status) -> bool {
        self.dynamic.status.contains(flag)
    }

    /// [`IrqState::is_pending`].
    #[inline]
    pub fn is_pending(&self, v2_sgi: bool) -> bool {
        self.dynamic
            .is_pending(v2_sgi, self.edge, self.hw.is_some())
    }

    /// Enabled, pending and routed to a vCPU (the distributor's enable
    /// aside).
    #[inline]
    pub fn deliverable(&self, v2_sgi: bool) -> bool {
        self.enabled && self.is_pending(v2_sgi) && self.target.is_some()
    }
}

/// How [`Backend::update`] changes an interrupt's dynamic state, given
/// its view.
pub trait Update: FnOnce(&IrqView) -> Dynamic {}

impl<F: FnOnce(&IrqView) -> Dynamic> Update for F {}

/// Storage and delivery order of interrupt state; implemented by
/// [`crate::classic::Classic`] and `crate::perirq::PerIrq` (with the
/// `per-irq` feature).
///
/// INTIDs passed in are already validated by the caller: `intid < 32 +
/// nr_spis`, `vcpu < nr_vcpus`. Implementations must nevertheless not
/// panic on out-of-range values (return the default state, ignore stores).
pub trait Backend: Clone + core::fmt::Debug {
    /// Whether [`crate::Emulator`] may take its direct paths (injection
    /// without a full [`load`](Self::load)/[`store`](Self::store) round
    /// trip, the fast identification-register read). Only [`Reference`]
    /// turns them off.
    const DIRECT: bool = true;

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

    /// Puts the INTIDs queued on `vcpu` in delivery order (what
    /// [`queued`](Self::queued) would append) where
    /// [`queued_at`](Self::queued_at) reads them, and returns how many
    /// there are. The order holds until the next
    /// [`store`](Self::store) or [`update`](Self::update) that changes a
    /// queue (one that only marks a queued interrupt as held in a list
    /// register does not).
    fn sort_queue(&mut self, vcpu: usize) -> usize;
    /// Entry `i` of the order [`sort_queue`](Self::sort_queue) made.
    fn queued_at(&self, vcpu: usize, i: usize) -> Option<u32>;
    /// How many entries [`queued_at`](Self::queued_at) reads now: what
    /// [`sort_queue`](Self::sort_queue) returned, plus what joined the
    /// queue since (and less what left it), without sorting or pruning.
    fn queue_len(&self, vcpu: usize) -> usize;

    /// The INTID queued on `vcpu` when it is the only one there and none
    /// waits for a list register: what [`queue_len`](Self::queue_len),
    /// [`queued_at`](Self::queued_at) and
    /// [`overflow_len`](Self::overflow_len) say together, which a model
    /// may answer with one look at the vCPU (the delivery exit asks).
    #[inline]
    fn sole_queued(&self, vcpu: usize) -> Option<u32> {
        if self.queue_len(vcpu) == 1 && self.overflow_len(vcpu) == 0 {
            self.queued_at(vcpu, 0)
        } else {
            None
        }
    }

    /// The dynamic state, delivery configuration and listing of `intid`:
    /// [`IrqView::of`] its [`load`](Self::load)ed state and
    /// [`listed_on`](Self::listed_on).
    fn view(&self, vcpu: usize, intid: u32) -> IrqView {
        IrqView::of(&self.load(vcpu, intid), self.listed_on(vcpu, intid))
    }
    /// Replaces the dynamic state of `intid` with what `f` makes of its
    /// [`view`](Self::view), and returns the view before and the new
    /// dynamic state. The same as a [`store`](Self::store) of the loaded
    /// state with the new dynamic state applied (and nothing when it is
    /// unchanged: a store of the state as loaded changes nothing).
    fn update<F: Update>(&mut self, vcpu: usize, intid: u32, f: F) -> (IrqView, Dynamic) {
        let view = self.view(vcpu, intid);
        let d = f(&view);
        if d != view.dynamic {
            let mut st = self.load(vcpu, intid);
            d.apply(&mut st);
            self.store(vcpu, intid, st);
        }
        (view, d)
    }
    /// Replaces the dynamic state of `intid`, which is held in a list
    /// register of the vCPU whose list holds it, with `d`, in which it is
    /// still held and active as before: the same as an
    /// [`update`](Self::update) to `d`, which moves no queue entry for
    /// such a change, so an implementation may store it directly.
    fn set_held(&mut self, vcpu: usize, intid: u32, d: Dynamic) {
        self.update(vcpu, intid, |_| d);
    }
    /// Calls `f` with the [`view`](Self::view) of `intid`; when it returns
    /// a dynamic state (one in which the interrupt is still held in a list
    /// register and active as before), stores it as
    /// [`set_held`](Self::set_held) would, and returns what came with it.
    /// The direct refresh's read and write in one look at the interrupt.
    #[inline]
    fn refold_held<T, F: FnOnce(&IrqView) -> Option<(Dynamic, T)>>(
        &mut self,
        vcpu: usize,
        intid: u32,
        f: F,
    ) -> Option<T> {
        let (d, out) = f(&self.view(vcpu, intid))?;
        self.set_held(vcpu, intid, d);
        Some(out)
    }
    /// When `intid` is held in a list register and listed on a vCPU,
    /// replaces its dynamic state with `f` of it, which must keep it held
    /// and active as before (so, as for [`set_held`](Self::set_held), no
    /// queue entry moves), and returns the dynamic state before, the vCPU
    /// whose list holds it and its target; otherwise changes nothing and
    /// returns `None`. The same as an [`update`](Self::update), for the
    /// injection into an interrupt still held in a list register (the
    /// common delivery: the guest completed it and it fired again), which
    /// a model may do without building the whole [`IrqView`].
    #[inline]
    fn update_held<F: FnOnce(Dynamic) -> Dynamic>(
        &mut self,
        vcpu: usize,
        intid: u32,
        f: F,
    ) -> Option<(Dynamic, u16)> {
        let view = self.view(vcpu, intid);
        let listed = view.listed.filter(|_| view.has(Status::IN_LR))?;
        let d = f(view.dynamic);
        if d != view.dynamic {
            self.set_held(vcpu, intid, d);
        }
        Some((view.dynamic, listed))
    }
}

/// Delivery order key shared by the models: active first, then priority,
/// then INTID.
#[cfg(feature = "per-irq")]
pub(crate) fn order_key(st: &IrqState, intid: u32) -> (bool, u8, u32) {
    (!st.active, st.priority, intid)
}

/// Where a store leaves `intid` (banked on `vcpu`) in the state `st`,
/// given the vCPU whose list holds it now (`cur`): held where it is while
/// in a list register or active there, queued on its owner (the bank, or
/// the SPI's target) while pending or active, unlisted otherwise.
#[inline]
pub(crate) fn queue_dest(
    vcpu: usize,
    intid: u32,
    v2: bool,
    st: &IrqView,
    cur: Option<usize>,
) -> Option<usize> {
    let d = &st.dynamic;
    let pinned =
        d.status.contains(Status::IN_LR) || (d.status.contains(Status::ACTIVE) && cur.is_some());
    let want = d.wants_queue(v2 && intid < crate::PPI_BASE, st.edge, st.hw.is_some());
    match (cur, want) {
        (Some(c), _) if pinned => Some(c),
        (_, true) if intid < crate::NR_PRIVATE => Some(vcpu),
        (_, true) => st.target.map(usize::from),
        (_, false) => None,
    }
}

/// A backend that forwards [`load`](Backend::load), [`store`](Backend::store)
/// and the queue primitives to `B` but uses the generic implementations of
/// everything else: [`view`](Backend::view) and
/// [`update`](Backend::update) through full loads and stores, the
/// delivery order copied out with [`queued`](Backend::queued), and none of
/// the [`crate::Emulator`]'s direct paths. An `Emulator<Reference<B>>`
/// must behave exactly like an `Emulator<B>`; tests and fuzzing compare
/// the two.
#[derive(Clone, Debug)]
pub struct Reference<B> {
    inner: B,
    order: Vec<u32>,
}

impl<B: Backend> Backend for Reference<B> {
    const DIRECT: bool = false;

    fn create(nr_vcpus: usize, nr_spis: usize, v2: bool) -> Self {
        Self {
            inner: B::create(nr_vcpus, nr_spis, v2),
            order: Vec::new(),
        }
    }
    fn load(&self, vcpu: usize, intid: u32) -> IrqState {
        self.inner.load(vcpu, intid)
    }
    fn store(&mut self, vcpu: usize, intid: u32, st: IrqState) {
        self.inner.store(vcpu, intid, st);
    }
    fn queued(&mut self, vcpu: usize, out: &mut Vec<u32>) {
        self.inner.queued(vcpu, out);
    }
    fn listed_on(&self, vcpu: usize, intid: u32) -> Option<usize> {
        self.inner.listed_on(vcpu, intid)
    }
    fn for_each_queued(&self, vcpu: usize, f: &mut dyn FnMut(u32)) {
        self.inner.for_each_queued(vcpu, f);
    }
    fn set_overflow(&mut self, vcpu: usize, intids: &[u32]) {
        self.inner.set_overflow(vcpu, intids);
    }
    fn overflow_len(&self, vcpu: usize) -> usize {
        self.inner.overflow_len(vcpu)
    }
    fn sort_queue(&mut self, vcpu: usize) -> usize {
        self.order.clear();
        self.inner.queued(vcpu, &mut self.order);
        self.order.len()
    }
    fn queued_at(&self, _vcpu: usize, i: usize) -> Option<u32> {
        self.order.get(i).copied()
    }
    fn queue_len(&self, _vcpu: usize) -> usize {
        self.order.len()
    }
}
