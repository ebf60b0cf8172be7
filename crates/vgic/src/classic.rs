//! The classic model, after Xen's `vgic.c`: configuration in ranks of 32
//! interrupts, dynamic state in `pending_irq`-like records with status
//! bits, and per vCPU an `inflight` list kept in delivery order at insertion
//! time plus an `lr_pending` queue of interrupts that found no free list
//! register.

use alloc::vec;
use alloc::vec::Vec;

use crate::NR_PRIVATE;
use crate::emu::Emulator;
use crate::state::{Backend, Dynamic, IrqState, IrqView, Status, Update, queue_dest};

/// A domain vGIC using the classic model.
pub type ClassicVgic = Emulator<Classic>;

/// Configuration of 32 consecutive interrupts (Xen's `vgic_irq_rank`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
struct Rank {
    /// Enable bits, one per interrupt.
    ienable: u32,
    /// `ICFGR` images: bit `2n+1` set = edge.
    icfg: [u32; 2],
    /// Priorities.
    priority: [u8; 32],
    /// Raw routing values (`ITARGETSR` byte or `IROUTER`).
    route: [u64; 32],
    /// Resolved target vCPU per interrupt.
    target: [Option<u16>; 32],
}

impl Rank {
    /// Whether interrupt `i` of the rank is edge-triggered.
    #[inline]
    fn edge(&self, i: usize) -> bool {
        self.icfg.get(i / 16).copied().unwrap_or(0) & (2 << ((i % 16) * 2)) != 0
    }
}

/// Dynamic state of one interrupt (Xen's `pending_irq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
struct PendingIrq {
    dynamic: Dynamic,
    hw: Option<u32>,
    /// The vCPU whose inflight list holds it.
    inflight_on: Option<u16>,
}

/// Banked interrupts and queues of one vCPU.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct VcpuState {
    rank: Rank,
    pending: [PendingIrq; 32],
    /// Every pending or active interrupt of the vCPU, in delivery order.
    inflight: Vec<u32>,
    /// The tail of `inflight` that found no list register at the last flush.
    lr_pending: Vec<u32>,
}

/// Storage of the classic model.
#[derive(Clone, Debug)]
pub struct Classic {
    v2: bool,
    vcpus: Vec<VcpuState>,
    shared_ranks: Vec<Rank>,
    shared: Vec<PendingIrq>,
}

impl Classic {
    #[inline]
    fn parts(&self, vcpu: usize, intid: u32) -> Option<(&Rank, &PendingIrq)> {
        let i = (intid % 32) as usize;
        if intid < NR_PRIVATE {
            let c = self.vcpus.get(vcpu)?;
            Some((&c.rank, c.pending.get(i)?))
        } else {
            let r = self.shared_ranks.get((intid / 32 - 1) as usize)?;
            Some((r, self.shared.get((intid - NR_PRIVATE) as usize)?))
        }
    }

    #[inline(always)]
    fn parts_mut(&mut self, vcpu: usize, intid: u32) -> Option<(&mut Rank, &mut PendingIrq)> {
        let i = (intid % 32) as usize;
        if intid < NR_PRIVATE {
            let c = self.vcpus.get_mut(vcpu)?;
            Some((&mut c.rank, c.pending.get_mut(i)?))
        } else {
            let r = self.shared_ranks.get_mut((intid / 32 - 1) as usize)?;
            Some((r, self.shared.get_mut((intid - NR_PRIVATE) as usize)?))
        }
    }

    /// The delivery order key of `intid` (see [`crate::state`]'s
    /// `order_key`), read straight from its rank and status.
    #[inline]
    fn key(&self, vcpu: usize, intid: u32) -> (bool, u8, u32) {
        match self.parts(vcpu, intid) {
            Some((r, p)) => (
                !p.dynamic.status.contains(Status::ACTIVE),
                r.priority.get((intid % 32) as usize).copied().unwrap_or(0),
                intid,
            ),
            None => (true, 0, intid),
        }
    }

    fn remove_from(&mut self, on: usize, intid: u32) {
        if let Some(c) = self.vcpus.get_mut(on) {
            c.inflight.retain(|i| *i != intid);
            c.lr_pending.retain(|i| *i != intid);
        }
    }

    /// Inserts `intid` into `on`'s inflight list at its place in delivery
    /// order (Xen inserts by priority at injection time).
    fn insert_sorted(&mut self, on: usize, intid: u32) {
        let key = self.key(on, intid);
        let pos = {
            let Some(c) = self.vcpus.get(on) else { return };
            c.inflight
                .iter()
                .position(|&o| self.key(on, o) > key)
                .unwrap_or(c.inflight.len())
        };
        if let Some(c) = self.vcpus.get_mut(on) {
            c.inflight.insert(pos, intid);
        }
    }

    /// The view of `intid` from its rank and record.
    #[inline]
    fn view_of(r: &Rank, p: &PendingIrq, intid: u32) -> IrqView {
        let i = (intid % 32) as usize;
        IrqView {
            dynamic: p.dynamic,
            enabled: r.ienable & (1 << i) != 0,
            edge: r.edge(i),
            priority: r.priority.get(i).copied().unwrap_or(0),
            hw: p.hw,
            target: r.target.get(i).copied().flatten(),
            listed: p.inflight_on,
        }
    }

    /// Moves `intid` from the list of `cur` to the list of `dest` (either
    /// may be none), at its place in delivery order.
    #[inline(never)]
    fn move_to(&mut self, vcpu: usize, intid: u32, cur: Option<usize>, dest: Option<usize>) {
        if let Some(c) = cur {
            self.remove_from(c, intid);
        }
        if let Some((_, p)) = self.parts_mut(vcpu, intid) {
            p.inflight_on = dest.and_then(|d| u16::try_from(d).ok());
        }
        if let Some(d) = dest {
            self.insert_sorted(d, intid);
        }
    }
}

impl Backend for Classic {
    fn create(nr_vcpus: usize, nr_spis: usize, v2: bool) -> Self {
        Self {
            v2,
            vcpus: vec![
                VcpuState {
                    rank: Rank::default(),
                    pending: [PendingIrq::default(); 32],
                    inflight: Vec::new(),
                    lr_pending: Vec::new(),
                };
                nr_vcpus
            ],
            shared_ranks: vec![Rank::default(); nr_spis / 32],
            shared: vec![PendingIrq::default(); nr_spis],
        }
    }

    fn load(&self, vcpu: usize, intid: u32) -> IrqState {
        let Some((r, p)) = self.parts(vcpu, intid) else {
            return IrqState::default();
        };
        let i = (intid % 32) as usize;
        let mut st = IrqState {
            enabled: r.ienable & (1 << i) != 0,
            edge: r.edge(i),
            priority: r.priority.get(i).copied().unwrap_or(0),
            hw: p.hw,
            route: r.route.get(i).copied().unwrap_or(0),
            target: r.target.get(i).copied().flatten(),
            ..IrqState::default()
        };
        p.dynamic.apply(&mut st);
        st
    }

    fn store(&mut self, vcpu: usize, intid: u32, st: IrqState) {
        let old_key = self.key(vcpu, intid);
        let v2 = self.v2;
        let Some((r, p)) = self.parts_mut(vcpu, intid) else {
            return;
        };
        let i = (intid % 32) as usize;
        if st.enabled {
            r.ienable |= 1 << i;
        } else {
            r.ienable &= !(1 << i);
        }
        if let Some(w) = r.icfg.get_mut(i / 16) {
            let bit = 2 << ((i % 16) * 2);
            if st.edge {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
        if let Some(x) = r.priority.get_mut(i) {
            *x = st.priority;
        }
        if let Some(x) = r.route.get_mut(i) {
            *x = st.route;
        }
        if let Some(x) = r.target.get_mut(i) {
            *x = st.target;
        }
        p.dynamic = Dynamic::of(&st);
        p.hw = st.hw;
        let view = Self::view_of(r, p, intid);
        let cur = p.inflight_on.map(usize::from);
        let dest = queue_dest(vcpu, intid, v2, &view, cur);
        let key = (!view.has(Status::ACTIVE), view.priority, intid);
        if cur != dest || key != old_key {
            self.move_to(vcpu, intid, cur, dest);
        }
    }

    fn queued(&mut self, vcpu: usize, out: &mut Vec<u32>) {
        if let Some(c) = self.vcpus.get(vcpu) {
            out.extend_from_slice(&c.inflight);
        }
    }

    fn listed_on(&self, vcpu: usize, intid: u32) -> Option<usize> {
        self.parts(vcpu, intid)
            .and_then(|(_, p)| p.inflight_on.map(usize::from))
    }

    fn for_each_queued(&self, vcpu: usize, f: &mut dyn FnMut(u32)) {
        if let Some(c) = self.vcpus.get(vcpu) {
            c.inflight.iter().for_each(|i| f(*i));
        }
    }

    fn set_overflow(&mut self, vcpu: usize, intids: &[u32]) {
        if let Some(c) = self.vcpus.get_mut(vcpu) {
            c.lr_pending.clear();
            c.lr_pending.extend_from_slice(intids);
        }
    }

    fn overflow_len(&self, vcpu: usize) -> usize {
        self.vcpus.get(vcpu).map_or(0, |c| c.lr_pending.len())
    }

    /// The inflight list is kept in delivery order: nothing to do.
    fn sort_queue(&mut self, vcpu: usize) -> usize {
        self.vcpus.get(vcpu).map_or(0, |c| c.inflight.len())
    }

    #[inline]
    fn queued_at(&self, vcpu: usize, i: usize) -> Option<u32> {
        self.vcpus.get(vcpu)?.inflight.get(i).copied()
    }

    #[inline]
    fn queue_len(&self, vcpu: usize) -> usize {
        self.vcpus.get(vcpu).map_or(0, |c| c.inflight.len())
    }

    #[inline]
    fn sole_queued(&self, vcpu: usize) -> Option<u32> {
        let c = self.vcpus.get(vcpu)?;
        match (c.inflight.as_slice(), c.lr_pending.is_empty()) {
            (&[intid], true) => Some(intid),
            _ => None,
        }
    }

    #[inline]
    fn view(&self, vcpu: usize, intid: u32) -> IrqView {
        match self.parts(vcpu, intid) {
            Some((r, p)) => Self::view_of(r, p, intid),
            None => IrqView::default(),
        }
    }

    #[inline(always)]
    fn set_held(&mut self, vcpu: usize, intid: u32, d: Dynamic) {
        if let Some((_, p)) = self.parts_mut(vcpu, intid) {
            p.dynamic = d;
        }
    }

    #[inline(always)]
    fn refold_held<T, F: FnOnce(&IrqView) -> Option<(Dynamic, T)>>(
        &mut self,
        vcpu: usize,
        intid: u32,
        f: F,
    ) -> Option<T> {
        let (r, p) = self.parts_mut(vcpu, intid)?;
        let (d, out) = f(&Self::view_of(r, p, intid))?;
        p.dynamic = d;
        Some(out)
    }

    #[inline(always)]
    fn update_held<F: FnOnce(Dynamic) -> Dynamic>(
        &mut self,
        vcpu: usize,
        intid: u32,
        f: F,
    ) -> Option<(Dynamic, u16)> {
        // Only the record: the rest of the view does not
        // matter to a change that keeps the interrupt where it is.
        let (_, p) = self.parts_mut(vcpu, intid)?;
        let listed = p.inflight_on?;
        let old = p.dynamic;
        if !old.status.contains(Status::IN_LR) {
            return None;
        }
        p.dynamic = f(old);
        Some((old, listed))
    }

    #[inline]
    fn update<F: Update>(&mut self, vcpu: usize, intid: u32, f: F) -> (IrqView, Dynamic) {
        let v2 = self.v2;
        let Some((r, p)) = self.parts_mut(vcpu, intid) else {
            return (IrqView::default(), Dynamic::default());
        };
        let old = Self::view_of(r, p, intid);
        let d = f(&old);
        if d == old.dynamic {
            return (old, d);
        }
        p.dynamic = d;
        let cur = p.inflight_on.map(usize::from);
        let dest = queue_dest(vcpu, intid, v2, &IrqView { dynamic: d, ..old }, cur);
        // The order key changes with the active bit only (the priority is
        // configuration).
        if cur != dest || (old.dynamic.status ^ d.status).contains(Status::ACTIVE) {
            self.move_to(vcpu, intid, cur, dest);
        }
        (old, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_state() -> impl Strategy<Value = IrqState> {
        (any::<u16>(), any::<u8>(), 0u16..3).prop_map(|(bits, priority, target)| IrqState {
            enabled: bits & 1 != 0,
            pending_latch: bits & 2 != 0,
            line_level: bits & 4 != 0,
            active: bits & 8 != 0,
            edge: bits & 16 != 0,
            priority,
            hw: (bits & 32 != 0).then_some(40),
            target: (target < 2).then_some(target),
            sgi_sources: (bits >> 8) as u8 & 3,
            in_lr: bits & 64 != 0,
            relatched: bits & 128 != 0,
            ..IrqState::default()
        })
    }

    /// Everything the model stores, for comparing two copies.
    fn snapshot(c: &mut Classic) -> Vec<(IrqState, Option<usize>)> {
        let mut out = Vec::new();
        for v in 0..2 {
            for intid in (0..32).chain(32..96) {
                out.push((c.load(v, intid), c.listed_on(v, intid)));
            }
            let mut q = Vec::new();
            c.queued(v, &mut q);
            out.extend(q.iter().map(|i| (IrqState::default(), Some(*i as usize))));
        }
        out
    }

    proptest! {
        /// `update_held` (the injection into an interrupt still held in a
        /// list register) and `refold_held` (the direct refresh) against
        /// the generic `update` with the same change, and `sole_queued`
        /// against the queue primitives, on random states: the same
        /// answers and the same stored state.
        #[test]
        fn fast_paths_match_generic(
            states in proptest::collection::vec((0usize..2, 0u32..96, arb_state()), 0..40),
            picks in proptest::collection::vec((0usize..2, 0u32..96, any::<bool>()), 1..20),
        ) {
            let mut c = Classic::create(2, 64, false);
            for (v, intid, st) in states {
                c.store(v, intid, st);
            }
            for (v, intid, overflow) in picks {
                if overflow {
                    c.set_overflow(v, &[intid]);
                }
                let want = (c.queue_len(v) == 1 && c.overflow_len(v) == 0)
                    .then(|| c.queued_at(v, 0))
                    .flatten();
                prop_assert_eq!(c.sole_queued(v), want);
                let relatch = |mut d: Dynamic| {
                    d.status.insert(Status::RELATCHED | Status::PENDING);
                    d
                };
                let mut slow = c.clone();
                let view = slow.view(v, intid);
                let got = c.update_held(v, intid, relatch);
                if view.has(Status::IN_LR) && let Some(l) = view.listed {
                    prop_assert_eq!(got, Some((view.dynamic, l)));
                    slow.update(v, intid, |st| relatch(st.dynamic));
                } else {
                    prop_assert_eq!(got, None);
                }
                prop_assert_eq!(snapshot(&mut c), snapshot(&mut slow));
                // A refold that keeps it held and active: clears the
                // relatch and the pending latch.
                let refold = |st: &IrqView| {
                    let mut d = st.dynamic;
                    d.status.remove(Status::RELATCHED | Status::PENDING);
                    (st.has(Status::IN_LR) && st.listed.is_some()).then_some((d, st.priority))
                };
                let view = slow.view(v, intid);
                let got = c.refold_held(v, intid, refold);
                match refold(&view) {
                    Some((d, prio)) => {
                        prop_assert_eq!(got, Some(prio));
                        slow.update(v, intid, |_| d);
                    }
                    None => prop_assert_eq!(got, None),
                }
                prop_assert_eq!(snapshot(&mut c), snapshot(&mut slow));
            }
        }
    }

    #[test]
    fn inflight_stays_in_priority_order() {
        let mut c = Classic::create(1, 32, false);
        for (intid, prio) in [(40u32, 0x80u8), (33, 0x20), (50, 0x80), (34, 0xF0)] {
            let st = IrqState {
                pending_latch: true,
                priority: prio,
                target: Some(0),
                ..IrqState::default()
            };
            c.store(0, intid, st);
        }
        let mut out = Vec::new();
        c.queued(0, &mut out);
        assert_eq!(out, [33, 40, 50, 34]);
        // Raising 34's priority moves it to the front.
        let mut st = c.load(0, 34);
        st.priority = 0;
        c.store(0, 34, st);
        out.clear();
        c.queued(0, &mut out);
        assert_eq!(out, [34, 33, 40, 50]);
        // Clearing pending removes it.
        let mut st = c.load(0, 40);
        st.pending_latch = false;
        c.store(0, 40, st);
        out.clear();
        c.queued(0, &mut out);
        assert_eq!(out, [34, 33, 50]);
    }

    #[test]
    fn rank_fields_roundtrip() {
        let mut c = Classic::create(2, 64, true);
        let st = IrqState {
            enabled: true,
            edge: true,
            priority: 0xA8,
            route: 2,
            target: Some(1),
            ..IrqState::default()
        };
        c.store(1, 77, st);
        assert_eq!(c.load(0, 77), st);
        assert_eq!(c.load(1, 77), st);
        // Out-of-range INTIDs neither panic nor store.
        c.store(0, 5000, st);
        assert_eq!(c.load(0, 5000), IrqState::default());
    }
}
