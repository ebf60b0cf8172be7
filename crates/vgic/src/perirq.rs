//! The per-IRQ model, after Xen's `vgic/` (itself derived from KVM): one
//! [`VgicIrq`] structure per interrupt holding all of its state, and per
//! vCPU an `ap_list` (active and pending interrupts) that is appended to
//! unordered, then pruned and sorted when the vCPU is about to be entered.

use alloc::vec::Vec;

use crate::emu::Emulator;
use crate::state::{Backend, Dynamic, IrqState, IrqView, Status, Update, order_key};
use crate::{NR_PRIVATE, PPI_BASE};

/// A domain vGIC using the per-IRQ model.
pub type PerIrqVgic = Emulator<PerIrq>;

/// One interrupt (Xen's `struct vgic_irq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VgicIrq {
    /// The configuration; its dynamic fields are not kept here.
    pub config: IrqState,
    /// The dynamic state (pending, active, held in a list register, ...),
    /// in the form the delivery paths read and write.
    pub dynamic: Dynamic,
    /// The vCPU whose `ap_list` holds it, if any.
    pub vcpu: Option<u16>,
}

impl VgicIrq {
    /// The full state: the configuration with the dynamic state applied.
    pub fn state(&self) -> IrqState {
        let mut st = self.config;
        self.dynamic.apply(&mut st);
        st
    }
}

/// Storage of the per-IRQ model.
#[derive(Clone, Debug)]
pub struct PerIrq {
    v2: bool,
    private: Vec<[VgicIrq; 32]>,
    spis: Vec<VgicIrq>,
    ap_list: Vec<Vec<u32>>,
    overflow: Vec<usize>,
}

/// The structure of `intid` (banked by `vcpu`) in split-borrowed storage.
fn irq_in<'a>(
    private: &'a [[VgicIrq; 32]],
    spis: &'a [VgicIrq],
    vcpu: usize,
    intid: u32,
) -> Option<&'a VgicIrq> {
    if intid < NR_PRIVATE {
        private.get(vcpu)?.get(intid as usize)
    } else {
        spis.get((intid - NR_PRIVATE) as usize)
    }
}

impl PerIrq {
    fn irq(&self, vcpu: usize, intid: u32) -> Option<&VgicIrq> {
        irq_in(&self.private, &self.spis, vcpu, intid)
    }

    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut VgicIrq> {
        if intid < NR_PRIVATE {
            self.private.get_mut(vcpu)?.get_mut(intid as usize)
        } else {
            self.spis.get_mut((intid - NR_PRIVATE) as usize)
        }
    }

    /// The delivery view of one interrupt, straight from its record.
    #[inline(always)]
    fn view_of(irq: &VgicIrq) -> IrqView {
        let st = &irq.config;
        IrqView {
            dynamic: irq.dynamic,
            enabled: st.enabled,
            edge: st.edge,
            priority: st.priority,
            hw: st.hw,
            target: st.target,
            listed: irq.vcpu,
        }
    }

    fn wants(&self, st: &IrqView, intid: u32) -> bool {
        st.dynamic
            .wants_queue(self.v2 && intid < PPI_BASE, st.edge, st.hw.is_some())
    }

    /// Drops from `vcpu`'s list what no longer belongs there (KVM's
    /// `vgic_prune_ap_list`), requeueing migrated interrupts on their
    /// new target.
    fn prune(&mut self, vcpu: usize) {
        // Filters the list in place (no allocation): `keep` entries are
        // moved to the front, the rest leave or move to another vCPU.
        let mut list = self
            .ap_list
            .get_mut(vcpu)
            .map(core::mem::take)
            .unwrap_or_default();
        let mut kept = 0;
        for i in 0..list.len() {
            let intid = list[i];
            let Some(st) = self.irq(vcpu, intid).map(Self::view_of) else {
                continue;
            };
            let keep =
                if st.has(Status::IN_LR) || (st.has(Status::ACTIVE) && self.wants(&st, intid)) {
                    true
                } else if !self.wants(&st, intid) {
                    if let Some(i) = self.irq_mut(vcpu, intid) {
                        i.vcpu = None;
                    }
                    false
                } else {
                    let owner = if intid < NR_PRIVATE {
                        Some(vcpu)
                    } else {
                        st.target.map(usize::from)
                    };
                    match owner {
                        Some(o) if o == vcpu => true,
                        Some(o) => {
                            if let Some(i) = self.irq_mut(vcpu, intid) {
                                i.vcpu = u16::try_from(o).ok();
                            }
                            if let Some(l) = self.ap_list.get_mut(o) {
                                l.push(intid);
                            }
                            false
                        }
                        None => {
                            if let Some(i) = self.irq_mut(vcpu, intid) {
                                i.vcpu = None;
                            }
                            false
                        }
                    }
                };
            if keep {
                list[kept] = intid;
                kept += 1;
            }
        }
        list.truncate(kept);
        if let Some(l) = self.ap_list.get_mut(vcpu) {
            *l = list;
        }
    }

    /// Lists `intid` where its (already stored) state calls for: an
    /// interrupt that is listed stays for the prune at that vCPU's next
    /// flush, except an idle pending one whose target changed, which moves
    /// now (its new target may be asleep and must see it); an unlisted one
    /// that became pending or active joins its owner's list.
    fn requeue(&mut self, vcpu: usize, intid: u32) {
        let Some(irq) = self.irq(vcpu, intid) else {
            return;
        };
        let st = &Self::view_of(irq);
        let wants = self.wants(st, intid);
        let owner = if intid < NR_PRIVATE {
            Some(vcpu)
        } else {
            st.target.map(usize::from)
        };
        let cur = irq.vcpu.map(usize::from);
        let dest = match cur {
            Some(cur)
                if wants
                    && !st.has(Status::IN_LR)
                    && !st.has(Status::ACTIVE)
                    && owner.is_some_and(|o| o != cur) =>
            {
                owner
            }
            None if wants => owner,
            _ => return,
        };
        let Some(o) = dest else {
            return;
        };
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.vcpu = u16::try_from(o).ok();
        }
        if let Some(c) = cur
            && let Some(l) = self.ap_list.get_mut(c)
        {
            l.retain(|i| *i != intid);
        }
        if let Some(l) = self.ap_list.get_mut(o) {
            l.push(intid);
        }
    }
}

impl Backend for PerIrq {
    fn create(nr_vcpus: usize, nr_spis: usize, v2: bool) -> Self {
        Self {
            v2,
            private: alloc::vec![[VgicIrq::default(); 32]; nr_vcpus],
            spis: alloc::vec![VgicIrq::default(); nr_spis],
            ap_list: alloc::vec![Vec::new(); nr_vcpus],
            overflow: alloc::vec![0; nr_vcpus],
        }
    }

    fn load(&self, vcpu: usize, intid: u32) -> IrqState {
        self.irq(vcpu, intid)
            .map(VgicIrq::state)
            .unwrap_or_default()
    }

    fn store(&mut self, vcpu: usize, intid: u32, st: IrqState) {
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.config = st;
            irq.dynamic = Dynamic::of(&st);
            self.requeue(vcpu, intid);
        }
    }

    fn queued(&mut self, vcpu: usize, out: &mut Vec<u32>) {
        self.prune(vcpu);
        let Some(list) = self.ap_list.get(vcpu) else {
            return;
        };
        let start = out.len();
        out.extend_from_slice(list);
        // Sort at flush time: active first, then priority, then INTID.
        out[start..].sort_by_key(|&i| order_key(&self.load(vcpu, i), i));
    }

    fn sort_queue(&mut self, vcpu: usize) -> usize {
        self.prune(vcpu);
        let Self {
            private,
            spis,
            ap_list,
            ..
        } = self;
        let Some(list) = ap_list.get_mut(vcpu) else {
            return 0;
        };
        // Sort at flush time: active first, then priority, then INTID. The
        // keys are distinct, so any sort gives the one order; an insertion
        // sort suits a list that was sorted at the last flush and has had
        // a few entries appended since (one comparison per entry already
        // in place), and is far smaller than the library's sort.
        // `order_key` from the record's fields.
        let key = |i: u32| {
            irq_in(private, spis, vcpu, i).map_or((true, 0, i), |x| {
                let active = x.dynamic.status.contains(Status::ACTIVE);
                (!active, x.config.priority, i)
            })
        };
        for i in 1..list.len() {
            let x = list[i];
            let k = key(x);
            if key(list[i - 1]) < k {
                continue;
            }
            // Binary search in the sorted prefix: O(log n) keys per entry
            // out of place, however long the list.
            let pos = list[..i].partition_point(|&y| key(y) < k);
            list.copy_within(pos..i, pos + 1);
            list[pos] = x;
        }
        list.len()
    }

    fn queued_at(&self, vcpu: usize, i: usize) -> Option<u32> {
        self.ap_list.get(vcpu)?.get(i).copied()
    }

    fn queue_len(&self, vcpu: usize) -> usize {
        self.ap_list.get(vcpu).map_or(0, Vec::len)
    }

    fn update<F: Update>(&mut self, vcpu: usize, intid: u32, f: F) -> (IrqView, Dynamic) {
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return (IrqView::default(), Dynamic::default());
        };
        let old = Self::view_of(irq);
        let d = f(&old);
        if d != old.dynamic {
            irq.dynamic = d;
            self.requeue(vcpu, intid);
        }
        (old, d)
    }

    #[inline(always)]
    fn set_held(&mut self, vcpu: usize, intid: u32, d: Dynamic) {
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.dynamic = d;
        }
    }

    #[inline]
    fn view(&self, vcpu: usize, intid: u32) -> IrqView {
        self.irq(vcpu, intid).map(Self::view_of).unwrap_or_default()
    }

    /// One lookup of the record for the read and the write.
    #[inline(always)]
    fn refold_held<T, F: FnOnce(&IrqView) -> Option<(Dynamic, T)>>(
        &mut self,
        vcpu: usize,
        intid: u32,
        f: F,
    ) -> Option<T> {
        let irq = self.irq_mut(vcpu, intid)?;
        let (d, out) = f(&Self::view_of(irq))?;
        irq.dynamic = d;
        Some(out)
    }

    /// Only the record's dynamic state: the rest of the view does not
    /// matter to a change that keeps the interrupt where it is. Out of
    /// line: inlined, it changed the code generated for the classic
    /// model's GICD_SGIR send beside it (2 instructions more per SGI).
    #[inline(never)]
    fn update_held<F: FnOnce(Dynamic) -> Dynamic>(
        &mut self,
        vcpu: usize,
        intid: u32,
        f: F,
    ) -> Option<(Dynamic, u16)> {
        let irq = self.irq_mut(vcpu, intid)?;
        let listed = irq.vcpu?;
        let old = irq.dynamic;
        if !old.status.contains(Status::IN_LR) {
            return None;
        }
        let d = f(old);
        if d != old {
            irq.dynamic = d;
        }
        Some((old, listed))
    }

    #[inline]
    fn sole_queued(&self, vcpu: usize) -> Option<u32> {
        match (self.ap_list.get(vcpu)?.as_slice(), self.overflow_len(vcpu)) {
            (&[intid], 0) => Some(intid),
            _ => None,
        }
    }

    fn listed_on(&self, vcpu: usize, intid: u32) -> Option<usize> {
        self.irq(vcpu, intid).and_then(|i| i.vcpu.map(usize::from))
    }

    fn for_each_queued(&self, vcpu: usize, f: &mut dyn FnMut(u32)) {
        if let Some(l) = self.ap_list.get(vcpu) {
            l.iter().for_each(|i| f(*i));
        }
    }

    fn set_overflow(&mut self, vcpu: usize, intids: &[u32]) {
        if let Some(o) = self.overflow.get_mut(vcpu) {
            *o = intids.len();
        }
    }

    fn overflow_len(&self, vcpu: usize) -> usize {
        self.overflow.get(vcpu).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The insertion sort of `sort_queue` gives the order of the
        /// library sort in `queued`, whatever order the entries were
        /// queued in, including after a second round of appends.
        #[test]
        fn sort_queue_matches_queued(
            irqs in proptest::collection::vec((32u32..96, any::<u8>(), any::<bool>()), 0..60),
            more in proptest::collection::vec((32u32..96, any::<u8>(), any::<bool>()), 0..20),
        ) {
            let mut p = PerIrq::create(1, 64, false);
            let add = |p: &mut PerIrq, list: &[(u32, u8, bool)]| {
                for &(intid, priority, active) in list {
                    p.store(0, intid, IrqState {
                        pending_latch: true,
                        active,
                        priority,
                        target: Some(0),
                        ..IrqState::default()
                    });
                }
            };
            add(&mut p, &irqs);
            p.sort_queue(0);
            add(&mut p, &more);
            let mut q = p.clone();
            let n = p.sort_queue(0);
            let got: Vec<u32> = (0..n).filter_map(|i| p.queued_at(0, i)).collect();
            let mut want = Vec::new();
            q.queued(0, &mut want);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn sorted_at_flush_and_pruned() {
        let mut p = PerIrq::create(2, 32, false);
        for (intid, prio) in [(40u32, 0x80u8), (33, 0x20), (34, 0xF0)] {
            p.store(
                0,
                intid,
                IrqState {
                    pending_latch: true,
                    priority: prio,
                    target: Some(0),
                    ..IrqState::default()
                },
            );
        }
        // Appended unordered.
        let mut raw = Vec::new();
        p.for_each_queued(0, &mut |i| raw.push(i));
        assert_eq!(raw, [40, 33, 34]);
        // An active interrupt sorts first.
        let mut st = p.load(0, 34);
        st.active = true;
        p.store(0, 34, st);
        let mut st = p.load(0, 40);
        st.pending_latch = false;
        p.store(0, 40, st);
        let mut out = Vec::new();
        p.queued(0, &mut out);
        assert_eq!(out, [34, 33]);
        // Retargeting an idle pending SPI moves it to the new vCPU.
        let mut st = p.load(0, 33);
        st.target = Some(1);
        p.store(0, 33, st);
        out.clear();
        p.queued(1, &mut out);
        assert_eq!(out, [33]);
    }
}
