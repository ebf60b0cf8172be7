//! The entry/exit protocol and the delivery paths, generic over a
//! [`Backend`] that stores the interrupt state; the register decode and
//! the cold paths, compiled once for every model, are in [`mmio`].

pub(crate) mod mmio;

use alloc::vec::Vec;
use core::hash::{Hash, Hasher};

use tessel_addr::{AccessSize, GuestPhysAddr};

use crate::config::{MPIDR_AFF_MASK, VgicConfig};
use crate::lr::{ListRegisters, LrState, LrStatus};
use crate::regs::*;
use crate::state::{Backend, Dynamic, IrqState, IrqView, Status};
use crate::{
    GicVersion, Kicks, MmioRegion, NR_PRIVATE, PPI_BASE, SPI_BASE, SgiRegister, VcpuId, VgicError,
    VirtualGic,
};

/// Most list registers a vCPU interface can have (GICv2: 64; GICv3: 16).
pub const MAX_LRS: usize = 64;

/// What [`Emulator::generation`] advances by: its low byte stays zero so
/// that a vCPU's quiet key (see [`Emulator::quiet`]) can carry the list
/// register count (at most [`MAX_LRS`]) there and be tested with one
/// comparison.
const GEN_STEP: u64 = 1 << 8;

/// A quiet key no refresh matches: its low byte is above [`MAX_LRS`].
const NOT_QUIET: u64 = u64::MAX;

/// What the last flush put in one vCPU's list registers: a fixed array, so
/// flush and sync never allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shadow {
    /// The values written to the first `used` list registers, to tell at
    /// the next exit whether the guest changed them (the list registers
    /// after them were written invalid; entries from `used` on are stale).
    lrs: [LrState; MAX_LRS],
    /// List registers the last flush filled.
    used: usize,
    /// `lrs.count()` at the last flush.
    count: usize,
    /// Whether a flush filled the list registers and no sync folded them
    /// since.
    live: bool,
    /// The domain's [`Emulator::generation`] when they were filled.
    generation: u64,
    /// Whether that flush requested the underflow maintenance interrupt.
    underflow: bool,
}

impl Shadow {
    const EMPTY: Self = Self {
        lrs: [LrState::INVALID; MAX_LRS],
        used: 0,
        count: 0,
        live: false,
        generation: 0,
        underflow: false,
    };

    /// The meaningful list-register values.
    fn written(&self) -> &[LrState] {
        self.lrs.get(..self.used).unwrap_or(&[])
    }
}

impl Hash for Shadow {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.written().hash(h);
        (self.count, self.live, self.generation, self.underflow).hash(h);
    }
}

/// A domain's virtual GIC: register emulation over a state model `B` (a
/// [`Backend`]).
#[derive(Clone, Debug)]
pub struct Emulator<B: ?Sized> {
    cfg: VgicConfig,
    regions: Vec<MmioRegion>,
    ctlr: u32,
    processor_sleep: Vec<bool>,
    shadows: Vec<Shadow>,
    overflow: Vec<u32>,
    /// Bumped (by [`GEN_STEP`]) on every change of interrupt state that
    /// could change what a flush writes (software changes, and folds that
    /// change state other vCPUs can see). A vCPU whose list registers are
    /// unchanged since a flush at the current generation needs no refill.
    generation: u64,
    /// Per vCPU, `generation | count` of the last flush when it left every
    /// list register empty (`count` list registers, none used) and no sync
    /// folded them since, otherwise [`NOT_QUIET`]. Such a vCPU's guest
    /// cannot have changed its list registers, so a refresh at the same
    /// generation and count has nothing to do: the common trap (no
    /// interrupt in flight) is one load and compare, without the shadow.
    quiet: Vec<u64>,
    /// vCPUs that a fold made an interrupt deliverable to (an SPI that
    /// leaves one vCPU's list registers for its target), reported through
    /// [`VirtualGic::take_kicks`].
    deferred: Kicks,
    /// Guest address of the distributor frame, for the fast read of its
    /// identification registers.
    dist_base: u64,
    /// [`Self::typer_of`] the configuration.
    typer: u32,
    /// The model's state. Last, so that every `Emulator<B>` unsizes to the
    /// `Emulator<dyn Store>` on which the code of [`mmio`] runs.
    backend: B,
}

/// Which entry/exit protocol [`Emulator::cycle`] runs.
#[derive(Clone, Copy)]
enum Cycle {
    /// Fold and clear the list registers.
    Sync,
    /// Fill them (folding first if still live).
    Flush,
    /// Fold them and fill them again, writing only what changes.
    Refresh,
}

fn bad(register: &'static str, offset: u64, size: AccessSize) -> VgicError {
    VgicError::BadAccess {
        register,
        offset,
        size,
    }
}

fn aff_of(mpidr: u64) -> u64 {
    mpidr & MPIDR_AFF_MASK
}

/// The dynamic state of an interrupt that sat in a list register after
/// the fold: `lr` is the list register's state if it still holds the
/// interrupt (`None`: software rewrote it meanwhile, keep the software
/// view), `wrote_pending` whether the flush wrote it pending.
#[inline(always)]
fn folded(mut d: Dynamic, lr: Option<LrStatus>, wrote_pending: bool, v2_sgi: bool) -> Dynamic {
    d.status.remove(Status::IN_LR);
    if let Some(lr) = lr {
        let lr_p = lr.is_pending();
        let relatched = d.status.contains(Status::RELATCHED);
        if d.status.contains(Status::PENDING_DIRTY) {
            // Software cleared it: keep the software view, plus any event
            // that arrived afterwards.
        } else if v2_sgi {
            if wrote_pending && !lr_p && !relatched {
                d.sgi_sources &= !(1u8 << (d.lr_source & 7));
            }
        } else if wrote_pending {
            let latched = d.status.contains(Status::PENDING);
            d.status
                .set(Status::PENDING, (lr_p && latched) || relatched);
        } else if relatched {
            d.status.insert(Status::PENDING);
        }
        if !d.status.contains(Status::ACTIVE_DIRTY) {
            d.status.set(Status::ACTIVE, lr.is_active());
        }
    }
    d.status
        .remove(Status::PENDING_DIRTY | Status::ACTIVE_DIRTY | Status::RELATCHED);
    d
}

/// What a fill puts in a list register for `intid` in state `st` (not
/// held in one), and whether part of it is left behind for later (another
/// GICv2 SGI source, or the pending half of an active forwarded
/// interrupt); `None` when it is neither active nor deliverable.
#[inline(always)]
fn lr_for(st: &IrqView, intid: u32, v2: bool, dist_en: bool) -> Option<(LrState, bool)> {
    let d = st.dynamic;
    let v2_sgi = v2 && intid < PPI_BASE;
    let active = st.has(Status::ACTIVE);
    let pend = dist_en && st.deliverable(v2_sgi);
    if !active && !pend {
        return None;
    }
    let (state, source, left_behind) = if v2_sgi {
        if active {
            (LrStatus::Active, d.lr_source, pend)
        } else {
            let src = d.sgi_sources.trailing_zeros().min(7) as u8;
            let more = d.sgi_sources & !(1u8 << src) != 0;
            (LrStatus::Pending, src, more)
        }
    } else if active && pend && st.hw.is_some() {
        // A forwarded interrupt cannot be pending and active in an LR:
        // present the active one, deliver the rest later.
        (LrStatus::Active, 0, true)
    } else {
        (LrStatus::from_flags(pend, active), 0, false)
    };
    let level_sw = st.hw.is_none() && !st.edge && intid >= PPI_BASE;
    let lr = LrState {
        intid,
        priority: st.priority,
        state,
        hw: st.hw,
        group1: !v2,
        source_cpu: source,
        eoi_maintenance: st.hw.is_none() && (level_sw || left_behind),
    };
    Some((lr, left_behind))
}

/// The dynamic state `d` of an interrupt once a fill put it in a list
/// register as `lr`.
#[inline(always)]
fn held(mut d: Dynamic, lr: &LrState) -> Dynamic {
    d.status.insert(Status::IN_LR);
    d.status
        .remove(Status::RELATCHED | Status::PENDING_DIRTY | Status::ACTIVE_DIRTY);
    d.lr_source = lr.source_cpu;
    d
}

/// The dynamic state `d` of a GICv2 SGI once CPU `src` requested it: one
/// more pending source, and a relatch when that source's instance is the
/// one held in a list register.
#[inline(always)]
fn v2_sgi_request(mut d: Dynamic, src: usize) -> Dynamic {
    if d.status.contains(Status::IN_LR) && usize::from(d.lr_source) == src {
        d.status.insert(Status::RELATCHED);
    }
    d.sgi_sources |= 1 << src;
    d
}

/// The direct refresh's common case in few steps: an interrupt that a
/// flush wrote pending, that the guest completed (its list register is
/// now `state`, invalid) and that fired again meanwhile (relatched, still
/// pending, not active, no software override), and is still deliverable.
/// For a GICv2 SGI, "still pending" means pending from the one source
/// whose instance the list register held, and from no other. The fold
/// leaves it pending and the fill writes it pending again; returns the
/// dynamic state once held again and the list register, as [`folded`],
/// [`lr_for`] and [`held`] would, or `None` when the case does not
/// apply.
#[inline(always)]
fn refired(
    st: &IrqView,
    intid: u32,
    state: LrStatus,
    wrote_pending: bool,
    v2: bool,
    dist_en: bool,
) -> Option<(Dynamic, LrState)> {
    let d = st.dynamic;
    // A GICv2 SGI is pending per source, not through the latch.
    let (want, source) = if v2 && intid < PPI_BASE {
        let src = d.lr_source & 7;
        if d.sgi_sources != 1 << src {
            return None;
        }
        (Status::IN_LR | Status::RELATCHED, src)
    } else {
        (Status::IN_LR | Status::PENDING | Status::RELATCHED, 0)
    };
    if state != LrStatus::Invalid
        || !wrote_pending
        || d.status.difference(Status::LINE) != want
        || !(dist_en && st.enabled && st.target.is_some())
    {
        return None;
    }
    let mut d = d;
    d.status.remove(Status::RELATCHED);
    d.lr_source = source;
    let lr = LrState {
        intid,
        priority: st.priority,
        state: LrStatus::Pending,
        hw: st.hw,
        group1: !v2,
        source_cpu: source,
        eoi_maintenance: st.hw.is_none() && !st.edge && intid >= PPI_BASE,
    };
    Some((d, lr))
}

impl<B: Backend> Emulator<B> {
    /// Builds the vGIC from a configuration (validated here).
    pub fn new(config: VgicConfig) -> Result<Self, VgicError> {
        let cfg = config.validated()?;
        let v2 = cfg.version == GicVersion::V2;
        let backend = B::create(cfg.nr_vcpus, cfg.nr_spis, v2);
        // `reset` fills in the rest, compiled once.
        let mut me = Self {
            cfg,
            regions: Vec::new(),
            ctlr: 0,
            processor_sleep: Vec::new(),
            shadows: Vec::new(),
            overflow: Vec::new(),
            generation: 0,
            quiet: Vec::new(),
            deferred: Kicks::NONE,
            dist_base: 0,
            typer: 0,
            backend,
        };
        me.regs().reset();
        Ok(me)
    }

    /// This vGIC with its model behind the object-safe [`mmio::Store`],
    /// for the code compiled once for every model.
    #[inline(always)]
    pub(crate) fn regs(&mut self) -> &mut Emulator<dyn mmio::Store + '_> {
        self
    }

    /// [`regs`](Self::regs) for reading.
    #[inline(always)]
    pub(crate) fn regs_ref(&self) -> &Emulator<dyn mmio::Store + '_> {
        self
    }

    /// Applies `f` to an interrupt's whole state on behalf of software and
    /// reports whom to kick (see [`mmio`]'s `modify`).
    fn modify(&mut self, v: usize, intid: u32, f: &dyn Fn(&mut IrqState)) -> Option<VcpuId> {
        self.regs().modify(v, intid, f)
    }

    /// The interrupt state of `intid` as seen from `vcpu` (for tests,
    /// debugging and snapshots).
    pub fn irq_state(&self, vcpu: VcpuId, intid: u32) -> Result<IrqState, VgicError> {
        let v = self.check_vcpu(vcpu)?;
        self.check_intid(intid)?;
        Ok(self.backend.load(v, intid))
    }

    /// Interrupts waiting for a list register on `vcpu` after the last flush.
    pub fn overflow_len(&self, vcpu: VcpuId) -> usize {
        self.backend.overflow_len(vcpu.0)
    }
}

/// What does not depend on the model.
impl<B: ?Sized> Emulator<B> {
    /// The validated configuration.
    pub fn config(&self) -> &VgicConfig {
        &self.cfg
    }

    fn v2(&self) -> bool {
        self.cfg.version == GicVersion::V2
    }

    fn max_intid(&self) -> u32 {
        SPI_BASE + self.cfg.nr_spis as u32
    }

    fn mpidr(&self, v: usize) -> u64 {
        self.cfg.vcpu_mpidr.get(v).copied().unwrap_or(0)
    }

    fn is_v2_sgi(&self, intid: u32) -> bool {
        self.v2() && intid < PPI_BASE
    }

    /// The distributor's first four words (`GICD_CTLR`, `GICD_TYPER`,
    /// `GICD_IIDR`, then `GICD_TYPER2` or reserved, RAZ), read as words.
    fn id_reg(&self, off: u64) -> u64 {
        match off {
            GICD_CTLR => {
                let are = if self.v2() { 0 } else { CTLR_ARE_NS };
                u64::from(self.ctlr & (CTLR_ENABLE_G0 | CTLR_ENABLE_G1) | are)
            }
            GICD_TYPER => u64::from(self.typer),
            GICD_IIDR => u64::from(IIDR_ARM),
            _ => 0,
        }
    }

    /// `GICD_TYPER`: ITLinesNumber, CPUNumber; on GICv3 also IDbits = 10
    /// bits (value 9) and A3V = 1 since Aff3 routing is handled
    /// (CPUNumber is meaningless with ARE).
    fn typer_of(cfg: &VgicConfig) -> u32 {
        let lines = (cfg.nr_spis / 32) as u32;
        let cpus = cfg.nr_vcpus.clamp(1, 8) as u32 - 1;
        match cfg.version {
            GicVersion::V2 => lines | (cpus << 5),
            GicVersion::V3 => lines | (cpus << 5) | (9 << 19) | (1 << 24),
        }
    }

    fn check_vcpu(&self, vcpu: VcpuId) -> Result<usize, VgicError> {
        if vcpu.0 < self.cfg.nr_vcpus {
            Ok(vcpu.0)
        } else {
            Err(VgicError::InvalidVcpu {
                vcpu,
                nr_vcpus: self.cfg.nr_vcpus,
            })
        }
    }

    fn check_intid(&self, intid: u32) -> Result<(), VgicError> {
        if intid < self.max_intid() {
            Ok(())
        } else {
            Err(VgicError::InvalidIntid {
                intid,
                reason: "beyond the domain's SPIs",
            })
        }
    }

    fn dist_enabled(&self) -> bool {
        if self.v2() {
            self.ctlr & CTLR_ENABLE_G0 != 0
        } else {
            self.ctlr & (CTLR_ENABLE_G0 | CTLR_ENABLE_G1) != 0
        }
    }
}

impl<B: Backend> Emulator<B> {
    /// The list-register work of [`VirtualGic::sync`],
    /// [`VirtualGic::flush`] and the slow path of [`VirtualGic::refresh`],
    /// in one function so that they share one copy of the fold and fill
    /// loops and their set-up.
    #[inline(never)]
    fn cycle<L: ListRegisters + ?Sized>(&mut self, v: usize, lrs: &mut L, op: Cycle) {
        let (fold, clear) = match op {
            Cycle::Sync => (true, true),
            // Flushed twice without an exit in between: fold first.
            Cycle::Flush => (self.shadows.get(v).is_some_and(|s| s.live), true),
            Cycle::Refresh => (true, false),
        };
        let (used, underflow) = if fold {
            self.fold(v, lrs, clear)
        } else {
            (0, false)
        };
        let (stale, uie_was) = match op {
            Cycle::Sync => return,
            Cycle::Flush => (MAX_LRS, None),
            Cycle::Refresh => (used, Some(underflow)),
        };
        self.fill(v, lrs, stale, uie_was);
    }

    /// Fills `vcpu`'s list registers (the body of [`VirtualGic::flush`]).
    /// Only list registers below `stale` may hold something to clear; the
    /// underflow request is written unless it is already `uie_was`.
    ///
    /// Walks the backend's queue in place: marking an interrupt as held in
    /// a list register never moves it between queues.
    #[inline(always)]
    fn fill<L: ListRegisters + ?Sized>(
        &mut self,
        v: usize,
        lrs: &mut L,
        stale: usize,
        uie_was: Option<bool>,
    ) {
        let n = lrs.count().min(MAX_LRS);
        let dist_en = self.dist_enabled();
        let v2 = self.v2();
        let generation = self.generation;
        let Self {
            backend,
            shadows,
            overflow,
            quiet,
            ..
        } = self;
        let (Some(shadow), Some(quiet)) = (shadows.get_mut(v), quiet.get_mut(v)) else {
            return;
        };
        overflow.clear();
        let len = backend.sort_queue(v);
        let mut used = 0;
        // Whether a deliverable interrupt found no free list register. Only
        // then is the underflow maintenance interrupt wanted: it fires while
        // at most one LR is valid, so asking for it with LRs to spare (say
        // one active LR holding back a second SGI source) would fire at once
        // on every entry and never let the guest run. Interrupts held back
        // behind their own active instance are picked up by EOI maintenance
        // (software ones) or at the next exit (forwarded ones, whose
        // physical interrupt stays active until the guest deactivates it).
        let mut spilled = false;
        for idx in 0..len {
            let Some(intid) = backend.queued_at(v, idx) else {
                break;
            };
            // What goes into list register `used`, worked out inside the
            // update that marks the interrupt as held there.
            let mut out = None;
            backend.update(v, intid, |st| {
                if st.has(Status::IN_LR) {
                    return st.dynamic;
                }
                let Some((lr, left_behind)) = lr_for(st, intid, v2, dist_en) else {
                    return st.dynamic;
                };
                if used == n {
                    if lr.state.is_pending() || left_behind {
                        out = Some(None);
                    }
                    return st.dynamic;
                }
                out = Some(Some((lr, left_behind)));
                held(st.dynamic, &lr)
            });
            match out {
                // Not for a list register now.
                None => {}
                // Deliverable, but none is free.
                Some(None) => {
                    overflow.push(intid);
                    spilled = true;
                }
                Some(Some((lr, left_behind))) => {
                    if left_behind {
                        overflow.push(intid);
                    }
                    lrs.write(used, lr);
                    if let Some(s) = shadow.lrs.get_mut(used) {
                        *s = lr;
                    }
                    used += 1;
                }
            }
        }
        for i in used..n.min(stale) {
            lrs.write(i, LrState::INVALID);
        }
        if uie_was != Some(spilled) {
            lrs.set_underflow_irq(spilled);
        }
        if !overflow.is_empty() || backend.overflow_len(v) != 0 {
            backend.set_overflow(v, overflow);
        }
        shadow.used = used;
        shadow.count = n;
        shadow.live = true;
        shadow.generation = generation;
        shadow.underflow = spilled;
        *quiet = if used == 0 {
            generation | n as u64
        } else {
            NOT_QUIET
        };
    }

    /// Folds `vcpu`'s list registers back (the body of
    /// [`VirtualGic::sync`]). With `clear`, empties them and drops the
    /// underflow request, and returns `(0, false)`; without, leaves them for
    /// a [`fill`](Self::fill) to overwrite and returns how many it used and
    /// whether the underflow interrupt is still requested.
    #[inline(always)]
    fn fold<L: ListRegisters + ?Sized>(
        &mut self,
        v: usize,
        lrs: &mut L,
        clear: bool,
    ) -> (usize, bool) {
        let dist_en = self.dist_enabled();
        let v2 = self.v2();
        let Self {
            backend,
            shadows,
            generation,
            deferred,
            quiet,
            ..
        } = self;
        let Some(shadow) = shadows.get_mut(v) else {
            return (0, false);
        };
        if let Some(q) = quiet.get_mut(v) {
            *q = NOT_QUIET;
        }
        let used = shadow.used.min(MAX_LRS);
        let underflow = shadow.underflow;
        shadow.underflow = false;
        shadow.used = 0;
        shadow.count = 0;
        shadow.live = false;
        let n = lrs.count();
        for (i, written) in shadow.lrs.iter().enumerate().take(used) {
            let intid = written.intid;
            let wrote_pending = written.state.is_pending();
            // The list register's state, if it still holds the interrupt
            // (otherwise software changed it meanwhile: keep the software
            // view).
            let lr = if i < n { Some(lrs.read_state(i)) } else { None }
                .filter(|(id, _)| *id == intid)
                .map(|(_, state)| state);
            let (st, d) = backend.update(v, intid, |st| {
                folded(st.dynamic, lr, wrote_pending, v2 && intid < PPI_BASE)
            });
            let before = st.dynamic;
            if (d.status ^ before.status).intersects(Status::PENDING | Status::ACTIVE)
                || d.sgi_sources != before.sgi_sources
            {
                *generation = generation.wrapping_add(GEN_STEP);
            }
            // An SPI leaving this vCPU's list registers goes back to its
            // target; if that is another vCPU and it can take it, that vCPU
            // must be told.
            if intid >= SPI_BASE
                && let Some(t) = st.target.map(usize::from)
                && t != v
            {
                *generation = generation.wrapping_add(GEN_STEP);
                let after = IrqView { dynamic: d, ..st };
                if dist_en && after.deliverable(false) {
                    deferred.add(VcpuId(t));
                }
            }
            if clear && i < n {
                lrs.write(i, LrState::INVALID);
            }
        }
        if clear {
            lrs.set_underflow_irq(false);
            (0, false)
        } else {
            (used, underflow)
        }
    }

    /// [`VirtualGic::refresh`] past its quiet test, out of line so that
    /// the test inlines into the caller without spills: the full check
    /// that nothing changed (the interrupts in flight included), the
    /// direct path for one list register, then the fold and refill.
    #[inline(never)]
    fn refresh_slow<L: ListRegisters + ?Sized>(&mut self, v: usize, lrs: &mut L) {
        let n = lrs.count().min(MAX_LRS);
        if let Some(shadow) = self.shadows.get(v)
            && shadow.live
            && shadow.count == n
        {
            let same_generation = shadow.generation == self.generation;
            if shadow.used == 1 {
                // One read of what the fold needs. The rest of a list
                // register (priority, hardware and group bits, the GICv2
                // source) is not the guest's to change, and the fold and
                // fill would write back what the flush wrote.
                let w = shadow.lrs[0];
                let (intid, state) = lrs.read_state(0);
                if same_generation && intid == w.intid && state == w.state {
                    return;
                }
                if self.refresh_one(v, intid, state, lrs) {
                    return;
                }
            } else if same_generation
                && shadow
                    .written()
                    .iter()
                    .enumerate()
                    .all(|(i, w)| lrs.read(i) == *w)
            {
                // Nothing changed since the flush, neither the interrupt
                // state nor what the guest did with its list registers: a
                // fold and refill would write back exactly what is there.
                return;
            }
        }
        // Fold, then write only what changes: the list registers the new
        // fill does not use and the old one did are cleared, the others
        // are overwritten or were already invalid.
        self.cycle(v, lrs, Cycle::Refresh);
    }

    /// The common delivery exit without the fold and fill loops, for a
    /// vCPU whose flush used one list register, which now holds `read`
    /// in `state`: the
    /// interrupt it holds stays pending or active as it was (typically the
    /// guest completed it and its source fired again: a timer tick, an
    /// IPI, a device), it is all that is queued on `vcpu` and nothing
    /// waits for a list register. The fold then moves no queue and changes
    /// nothing another vCPU sees, and the fill puts the interrupt back
    /// into list register 0 with its new state; nothing else changes.
    ///
    /// Checks all of that before changing anything, and returns `false`
    /// (the caller runs the full cycle) when any of it does not hold; the
    /// result is then exactly the cycle's (the property tests compare the
    /// two through [`Reference`](crate::state::Reference), which never
    /// takes this path).
    fn refresh_one<L: ListRegisters + ?Sized>(
        &mut self,
        v: usize,
        read: u32,
        state: LrStatus,
        lrs: &mut L,
    ) -> bool {
        let dist_en = self.dist_enabled();
        let v2 = self.v2();
        let generation = self.generation;
        let Self {
            backend, shadows, ..
        } = self;
        let Some(shadow) = shadows.get_mut(v) else {
            return false;
        };
        let Some(&w) = shadow.lrs.first() else {
            return false;
        };
        let intid = w.intid;
        if !B::DIRECT || shadow.underflow || read != intid || backend.sole_queued(v) != Some(intid)
        {
            return false;
        }
        let me = u16::try_from(v).ok();
        let v2_sgi = v2 && intid < PPI_BASE;
        let wrote_pending = w.state.is_pending();
        // One look at the interrupt: checked, folded and refilled.
        let Some(lr) = backend.refold_held(v, intid, |st| {
            // Held here, and (an SPI) still targeted here: otherwise the
            // fold hands it to another vCPU.
            if !st.has(Status::IN_LR) || st.listed != me || (intid >= SPI_BASE && st.target != me) {
                return None;
            }
            if let Some(quick) = refired(st, intid, state, wrote_pending, v2, dist_en) {
                return Some(quick);
            }
            let d = folded(st.dynamic, Some(state), wrote_pending, v2_sgi);
            // Pending, active and the SGI sources as they were: the fold
            // moves no queue and starts no new generation.
            if (d.status ^ st.dynamic.status).intersects(Status::PENDING | Status::ACTIVE)
                || d.sgi_sources != st.dynamic.sgi_sources
            {
                return None;
            }
            let Some((lr, false)) = lr_for(&IrqView { dynamic: d, ..*st }, intid, v2, dist_en)
            else {
                return None;
            };
            // Held before and after, active as before: neither the fold
            // nor the fill would move it in or between queues.
            Some((held(d, &lr), lr))
        }) else {
            return false;
        };
        lrs.write(0, lr);
        shadow.lrs[0] = lr;
        shadow.generation = generation;
        true
    }

    /// A GICv2 `GICD_SGIR` write by vCPU `src` (IHI 0048B 4.3.15): the
    /// SGI goes to the listed vCPUs, to all but `src`, or to `src` alone.
    fn write_sgir(&mut self, src: usize, value: u32) -> Kicks {
        let mut kicks = Kicks::NONE;
        let intid = value & SGIR_INTID_MASK;
        let list = (value >> SGIR_TARGETS_SHIFT) & 0xFF;
        let all = (1u32 << self.cfg.nr_vcpus) - 1;
        let me = 1u32 << src;
        let mut targets = match (value >> SGIR_FILTER_SHIFT) & 3 {
            0 => list & all,
            1 => all & !me,
            2 => me,
            _ => 0,
        };
        // One target (an IPI to one CPU, or to itself): no loop to set up.
        if targets.is_power_of_two() {
            let t = targets.trailing_zeros() as usize;
            kicks.add_opt(self.send_v2_sgi_inline(t, intid, src));
            return kicks;
        }
        // The set bits only, lowest first.
        while targets != 0 {
            let t = targets.trailing_zeros() as usize;
            targets &= targets - 1;
            kicks.add_opt(self.send_v2_sgi(t, intid, src));
        }
        kicks
    }

    /// Makes GICv3 SGI `intid` pending on `target`.
    fn send_sgi(&mut self, target: usize, intid: u32) -> Option<VcpuId> {
        self.latch(target, intid)
    }

    /// Latches `intid` pending on `v` (an edge, a GICv3 SGI, an `ISPENDR`
    /// write); a new event while it sits in a list register is carried by
    /// the relatch bit.
    fn latch(&mut self, v: usize, intid: u32) -> Option<VcpuId> {
        let relatch = |mut d: Dynamic| {
            d.status.insert(Status::RELATCHED | Status::PENDING);
            d
        };
        if let Some(kick) = self.inject_held(v, intid, relatch) {
            return kick;
        }
        self.modify_dyn(v, intid, &|d| {
            if d.status.contains(Status::IN_LR) {
                d.status.insert(Status::RELATCHED);
            }
            d.status.insert(Status::PENDING);
        })
    }

    /// A GICv2 SGI from CPU `src` to `v`: pending per source; a new request
    /// from the source whose instance sits in a list register is carried
    /// by the relatch bit.
    #[inline(never)]
    fn send_v2_sgi(&mut self, v: usize, intid: u32, src: usize) -> Option<VcpuId> {
        self.send_v2_sgi_inline(v, intid, src)
    }

    /// [`send_v2_sgi`](Self::send_v2_sgi), inlined into the caller (the
    /// `GICD_SGIR` write to one target).
    #[inline(always)]
    fn send_v2_sgi_inline(&mut self, v: usize, intid: u32, src: usize) -> Option<VcpuId> {
        if let Some(kick) = self.inject_held(v, intid, |d| v2_sgi_request(d, src)) {
            return kick;
        }
        self.modify_dyn(v, intid, &|d| *d = v2_sgi_request(*d, src))
    }

    /// The injection `f` (a relatch, or a GICv2 SGI request) into `intid`
    /// on `v` when it is still held in a list register (the guest
    /// completed it and its source fired again without an exit in
    /// between): `f` keeps it held and active as it was, so no queue
    /// moves and, as in [`modify_dynamic`](Self::modify_dynamic), the
    /// holder must exit to fold it when anything changed. One record
    /// update instead of the generic path's whole view; `None` (nothing
    /// done) when the interrupt is not held or the direct paths are off.
    #[inline(always)]
    fn inject_held(
        &mut self,
        v: usize,
        intid: u32,
        f: impl FnOnce(Dynamic) -> Dynamic,
    ) -> Option<Option<VcpuId>> {
        if !B::DIRECT {
            return None;
        }
        let mut changed = false;
        let (_, listed) = self.backend.update_held(v, intid, |old| {
            let d = f(old);
            changed = d != old;
            d
        })?;
        if !changed {
            return Some(None);
        }
        self.generation = self.generation.wrapping_add(GEN_STEP);
        Some(Some(VcpuId(usize::from(listed))))
    }

    /// [`modify_dynamic`](Self::modify_dynamic) for the injections that
    /// find the interrupt outside a list register, out of line: one shared
    /// instance, and the injections' direct paths stay small. (Register
    /// writes and line levels take [`mmio`]'s full `modify`, compiled
    /// once.)
    #[inline(never)]
    fn modify_dyn(&mut self, v: usize, intid: u32, f: &dyn Fn(&mut Dynamic)) -> Option<VcpuId> {
        self.modify_dynamic(v, intid, f)
    }

    /// [`modify`](Self::modify) for a change `f` confined to the dynamic
    /// state (pending, active, line, SGI sources): the same effect and
    /// answer, through one [`Backend::update`] instead of a full load and
    /// store.
    ///
    /// Every caller goes through [`modify_dyn`](Self::modify_dyn); the
    /// [`Reference`](crate::state::Reference) fallback keeps it generic.
    fn modify_dynamic(&mut self, v: usize, intid: u32, f: impl Fn(&mut Dynamic)) -> Option<VcpuId> {
        if !B::DIRECT {
            return self.modify(v, intid, &|s| {
                let mut d = Dynamic::of(s);
                f(&mut d);
                d.apply(s);
            });
        }
        let mut changed = false;
        let (old, d) = self.backend.update(v, intid, |st| {
            let o = st.dynamic;
            let mut d = o;
            f(&mut d);
            changed = d != o;
            // As in `modify`: software clearing pending or changing active
            // while the interrupt sits in a list register wins over that
            // part of the list register at sync.
            if changed && st.has(Status::IN_LR) {
                if (o.status ^ d.status).contains(Status::ACTIVE) {
                    d.status.insert(Status::ACTIVE_DIRTY);
                }
                if (o.status.contains(Status::PENDING) && !d.status.contains(Status::PENDING))
                    || o.sgi_sources & !d.sgi_sources != 0
                {
                    d.status.insert(Status::PENDING_DIRTY);
                }
            }
            d
        });
        if !changed {
            return None;
        }
        self.generation = self.generation.wrapping_add(GEN_STEP);
        let owner = if intid < NR_PRIVATE {
            Some(VcpuId(v))
        } else {
            old.target.map(|t| VcpuId(usize::from(t)))
        };
        let delivery = Status::ACTIVE | Status::PENDING | Status::RELATCHED;
        if old.has(Status::IN_LR)
            && ((old.dynamic.status ^ d.status).intersects(delivery)
                || old.dynamic.sgi_sources != d.sgi_sources)
        {
            // The copy in a list register is stale: the vCPU holding it
            // must exit to fold it.
            return old.listed.map(|l| VcpuId(usize::from(l))).or(owner);
        }
        let v2_sgi = self.is_v2_sgi(intid);
        let now = IrqView { dynamic: d, ..old };
        let dist_en = self.dist_enabled();
        if dist_en && now.deliverable(v2_sgi) && !old.deliverable(v2_sgi) {
            owner
        } else {
            None
        }
    }
}

impl<B: Backend> VirtualGic for Emulator<B> {
    fn version(&self) -> GicVersion {
        self.cfg.version
    }

    fn nr_vcpus(&self) -> usize {
        self.cfg.nr_vcpus
    }

    fn nr_spis(&self) -> usize {
        self.cfg.nr_spis
    }

    fn regions(&self) -> &[MmioRegion] {
        &self.regions
    }

    fn mmio_read(
        &mut self,
        vcpu: VcpuId,
        gpa: GuestPhysAddr,
        size: AccessSize,
    ) -> Result<u64, VgicError> {
        self.regs().read(vcpu, gpa, size, B::DIRECT)
    }

    fn mmio_write(
        &mut self,
        vcpu: VcpuId,
        gpa: GuestPhysAddr,
        size: AccessSize,
        value: u64,
    ) -> Result<Kicks, VgicError> {
        let v = self.check_vcpu(vcpu)?;
        // GICv2's SGI register, which a guest writes for every IPI, without
        // the frame and register decode, which leaves it to this test. The
        // send goes through the model's own update.
        if self.v2() && gpa.0.wrapping_sub(self.dist_base) == GICD_SGIR {
            if size != AccessSize::Word {
                return Err(bad("GICD_SGIR", GICD_SGIR, size));
            }
            return Ok(self.write_sgir(v, value as u32));
        }
        self.regs().write_at(v, gpa, size, value)
    }

    fn sysreg_sgi(
        &mut self,
        vcpu: VcpuId,
        reg: SgiRegister,
        value: u64,
    ) -> Result<Kicks, VgicError> {
        let v = self.check_vcpu(vcpu)?;
        if self.v2() {
            return Err(VgicError::InvalidIntid {
                intid: ((value >> SGI1R_INTID_SHIFT) & 0xF) as u32,
                reason: "ICC_SGI*R_EL1 does not exist on a GICv2 domain",
            });
        }
        let mut kicks = Kicks::NONE;
        // Every interrupt is Non-secure Group 1: an SGI0R (Group 0) or
        // ASGI1R (Secure Group 1) request matches no interrupt at the
        // targets and is not forwarded (IHI 0069H 12.2.23, 12.2.1).
        if reg != SgiRegister::Sgi1r {
            return Ok(kicks);
        }
        let intid = ((value >> SGI1R_INTID_SHIFT) & 0xF) as u32;
        if value & SGI1R_IRM != 0 {
            for t in (0..self.cfg.nr_vcpus).filter(|t| *t != v) {
                kicks.add_opt(self.send_sgi(t, intid));
            }
            return Ok(kicks);
        }
        let upper = (((value >> SGI1R_AFF3_SHIFT) & 0xFF) << 32)
            | (((value >> SGI1R_AFF2_SHIFT) & 0xFF) << 16)
            | (((value >> SGI1R_AFF1_SHIFT) & 0xFF) << 8);
        let rs = (value >> SGI1R_RS_SHIFT) & 0xF;
        // The set bits of the target list, lowest first; `Aff0 = RS * 16 +
        // bit` is at most 0xFF.
        let mut list = value & SGI1R_TARGETS_MASK;
        while list != 0 {
            let want = upper | (rs * 16 + u64::from(list.trailing_zeros()));
            list &= list - 1;
            if let Some(t) = self.cfg.vcpu_mpidr.iter().position(|m| aff_of(*m) == want) {
                kicks.add_opt(self.send_sgi(t, intid));
            }
        }
        Ok(kicks)
    }

    fn inject(&mut self, vcpu: VcpuId, intid: u32) -> Result<Option<VcpuId>, VgicError> {
        let v = self.check_vcpu(vcpu)?;
        self.check_intid(intid)?;
        if self.is_v2_sgi(intid) {
            return Ok(self.send_v2_sgi(v, intid, v));
        }
        Ok(self.latch(v, intid))
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
        let v = self.check_vcpu(vcpu)?;
        self.cycle(v, lrs, Cycle::Flush);
        Ok(())
    }

    fn sync<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError> {
        let v = self.check_vcpu(vcpu)?;
        self.cycle(v, lrs, Cycle::Sync);
        Ok(())
    }

    #[inline]
    fn refresh<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<(), VgicError> {
        // Nothing in flight and nothing changed since the flush (the
        // common trap): inlined into the caller, before anything else.
        let key = self.generation | lrs.count().min(MAX_LRS) as u64;
        if self.quiet.get(vcpu.0) == Some(&key) {
            return Ok(());
        }
        let v = self.check_vcpu(vcpu)?;
        self.refresh_slow(v, lrs);
        Ok(())
    }

    fn take_kicks(&mut self) -> Kicks {
        core::mem::take(&mut self.deferred)
    }

    #[inline]
    fn quiet(&self, vcpu: VcpuId, lr_count: usize) -> bool {
        // As in `refresh`; only a fold adds kicks, and the one that did
        // may have run outside a refresh (a `sync`), hence the second test.
        let key = self.generation | lr_count.min(MAX_LRS) as u64;
        self.quiet.get(vcpu.0) == Some(&key) && self.deferred.is_empty()
    }

    #[inline]
    fn refresh_and_take_kicks<L: ListRegisters + ?Sized>(
        &mut self,
        vcpu: VcpuId,
        lrs: &mut L,
    ) -> Result<Kicks, VgicError> {
        // No quiet test of its own: the return path asks `quiet` first
        // unless it knows the answer is no (it injected), and a quiet vCPU
        // costs the full check below only a few more loads.
        let v = self.check_vcpu(vcpu)?;
        self.refresh_slow(v, lrs);
        Ok(core::mem::take(&mut self.deferred))
    }

    fn has_deliverable(&self, vcpu: VcpuId) -> bool {
        self.regs_ref().has_deliverable(vcpu)
    }

    fn state_digest(&self) -> u64 {
        self.regs_ref().digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VgicLayout;
    use crate::classic::Classic;
    #[cfg(feature = "per-irq")]
    use crate::perirq::PerIrq;
    use proptest::prelude::*;

    struct Lrs([LrState; 4]);
    impl ListRegisters for Lrs {
        fn count(&self) -> usize {
            self.0.len()
        }
        fn read(&self, i: usize) -> LrState {
            self.0[i]
        }
        fn write(&mut self, i: usize, lr: LrState) {
            self.0[i] = lr;
        }
        fn set_underflow_irq(&mut self, _on: bool) {}
    }

    /// The delivery exits the benchmark measures (a self-SGI, the timer
    /// PPI, a forwarded SPI: each completed by the guest without an exit,
    /// then fired again) take the direct path, and the quiet trap after
    /// the guest completes the last one takes the quiet test.
    fn delivery_takes_direct_path<B: Backend>(version: GicVersion) {
        let layout = VgicLayout::xen_virtual(version, 1);
        let mut g = Emulator::<B>::new(VgicConfig::new(version, layout, 1, 32)).unwrap();
        let gicd = layout_base(&g);
        let en = if version == GicVersion::V2 { 1 } else { 0x12 };
        g.mmio_write(VcpuId(0), GuestPhysAddr(gicd), AccessSize::Word, en)
            .unwrap();
        g.map_hw(VcpuId(0), 27, 27).unwrap();
        g.map_hw(VcpuId(0), 40, 40).unwrap();
        let mut lrs = Lrs([LrState::INVALID; 4]);
        for intid in [1u32, 27, 40] {
            let mut st = g.backend.load(0, intid);
            st.enabled = true;
            st.edge = true;
            g.backend.store(0, intid, st);
            g.inject(VcpuId(0), intid).unwrap();
            g.refresh(VcpuId(0), &mut lrs).unwrap();
            assert_eq!(lrs.0[0].intid, intid);
            for _ in 0..3 {
                // The guest takes and completes it; it fires again.
                lrs.0[0].state = LrStatus::Invalid;
                g.inject(VcpuId(0), intid).unwrap();
                let (read, state) = lrs.read_state(0);
                assert!(g.refresh_one(0, read, state, &mut lrs), "INTID {intid}");
                assert_eq!(lrs.0[0].state, LrStatus::Pending);
            }
            lrs.0[0].state = LrStatus::Invalid;
            g.refresh(VcpuId(0), &mut lrs).unwrap();
            assert_eq!(g.quiet[0], g.generation | 4, "INTID {intid}");
        }
    }

    fn layout_base<B: Backend>(g: &Emulator<B>) -> u64 {
        g.cfg.layout.distributor().start.0
    }

    #[test]
    fn delivery_takes_direct_path_all() {
        delivery_takes_direct_path::<Classic>(GicVersion::V3);
        delivery_takes_direct_path::<Classic>(GicVersion::V2);
        #[cfg(feature = "per-irq")]
        {
            delivery_takes_direct_path::<PerIrq>(GicVersion::V3);
            delivery_takes_direct_path::<PerIrq>(GicVersion::V2);
        }
    }

    /// Random interrupt views, most of them in (or one status bit away
    /// from) the states `refired` looks for: relatched and pending, or (a
    /// GICv2 SGI) relatched with, as often as not, the held source the only
    /// one pending.
    fn arb_view() -> impl Strategy<Value = IrqView> {
        let common = (Status::IN_LR | Status::PENDING | Status::RELATCHED).bits();
        let sgi = (Status::IN_LR | Status::RELATCHED).bits();
        let status = prop_oneof![
            1 => any::<u8>(),
            3 => (0u8..9).prop_map(move |b| common ^ (1u16 << b >> 1) as u8),
            3 => (0u8..9).prop_map(move |b| sgi ^ (1u16 << b >> 1) as u8),
        ];
        let sources = (any::<bool>(), any::<u8>());
        (status, sources, any::<u8>(), any::<u8>(), any::<u8>()).prop_map(
            |(status, (only_held, sources), source, priority, cfg)| IrqView {
                dynamic: Dynamic {
                    status: Status::from_bits_truncate(status),
                    sgi_sources: if only_held {
                        1 << (source & 7)
                    } else {
                        sources & 3
                    },
                    lr_source: source & 7,
                },
                enabled: cfg & 0x11 != 0,
                edge: cfg & 2 != 0,
                priority,
                hw: (cfg & 4 != 0).then_some(27),
                target: (cfg & 0x88 != 0).then_some(0),
                listed: Some(0),
            },
        )
    }

    /// `refired` against the generic fold, fill and hold on random
    /// interrupt states: where it applies, the fold changes neither
    /// pending nor active, the fill writes one list register and leaves
    /// nothing behind, and both give the same state and list register.
    /// The inputs lean towards the case, and both kinds of it (a GICv2
    /// SGI, anything else) must come up often.
    #[test]
    fn refired_matches_generic() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(4096));
        let states = [
            LrStatus::Invalid,
            LrStatus::Pending,
            LrStatus::Active,
            LrStatus::PendingActive,
        ];
        let input = (
            arb_view(),
            // SGIs half of the time.
            prop_oneof![0u32..16, 16u32..64],
            // Invalid half of the time.
            (0usize..8).prop_map(move |x| states[x.saturating_sub(4)]),
            (0u8..4).prop_map(|x| x != 0),
            any::<bool>(),
            (0u8..4).prop_map(|x| x != 0),
        );
        // Cases that took the shortcut: GICv2 SGIs, the rest.
        let taken = core::cell::Cell::new((0usize, 0usize));
        runner
            .run(&input, |(st, intid, state, wrote_pending, v2, dist_en)| {
                let Some((d, lr)) = refired(&st, intid, state, wrote_pending, v2, dist_en) else {
                    return Ok(());
                };
                let v2_sgi = v2 && intid < PPI_BASE;
                let (sgis, others) = taken.get();
                taken.set(if v2_sgi {
                    (sgis + 1, others)
                } else {
                    (sgis, others + 1)
                });
                let f = folded(st.dynamic, Some(state), wrote_pending, v2_sgi);
                let moved =
                    (f.status ^ st.dynamic.status).intersects(Status::PENDING | Status::ACTIVE);
                prop_assert!(!moved);
                prop_assert_eq!(f.sgi_sources, st.dynamic.sgi_sources);
                let generic = lr_for(&IrqView { dynamic: f, ..st }, intid, v2, dist_en);
                prop_assert_eq!(generic, Some((lr, false)));
                prop_assert_eq!(held(f, &lr), d);
                Ok(())
            })
            .unwrap();
        let (sgis, others) = taken.get();
        assert!(
            sgis >= 10 && others >= 10,
            "shortcut taken {sgis} + {others} times"
        );
    }
}
