//! The register emulation: frame decode, the distributor and
//! redistributor registers, and the other cold paths (reset, line levels,
//! hardware mappings, the WFI test, the state digest).
//!
//! It is compiled once for every model: it runs on an
//! `Emulator<dyn Store>`, to which every `Emulator<B>` unsizes, and reaches
//! the model's state through the object-safe [`Store`]. The delivery paths
//! (injection, the list-register fold and fill) stay in the parent module,
//! generic over the model so that its state access inlines.

use alloc::vec;
use core::hash::{Hash, Hasher};

use tessel_addr::{AccessSize, Address, GuestPhysAddr};

use super::{Emulator, GEN_STEP, NOT_QUIET, Shadow, aff_of, bad};
use crate::config::{MPIDR_AFF_MASK, V3_GICR_STRIDE, VgicLayout};
use crate::regs::*;
use crate::state::{Backend, Dynamic, IrqState, Status};
use crate::{Kicks, NR_PRIVATE, PPI_BASE, SPI_BASE, VcpuId, VgicError};

/// What the register emulation needs of a model: the object-safe part of
/// [`Backend`], implemented for every backend.
///
/// Its methods are named apart from [`Backend`]'s so that generic code,
/// for which both traits apply, never finds two candidates.
pub(crate) trait Store {
    /// [`Backend::load`].
    fn get(&self, vcpu: usize, intid: u32) -> IrqState;
    /// [`Backend::store`].
    fn put(&mut self, vcpu: usize, intid: u32, st: IrqState);
    /// [`Backend::listed_on`].
    fn holder(&self, vcpu: usize, intid: u32) -> Option<usize>;
    /// [`Backend::for_each_queued`].
    fn each_queued(&self, vcpu: usize, f: &mut dyn FnMut(u32));
    /// [`Backend::overflow_len`].
    fn waiting(&self, vcpu: usize) -> usize;
}

impl<B: Backend> Store for B {
    fn get(&self, vcpu: usize, intid: u32) -> IrqState {
        self.load(vcpu, intid)
    }
    fn put(&mut self, vcpu: usize, intid: u32, st: IrqState) {
        self.store(vcpu, intid, st);
    }
    fn holder(&self, vcpu: usize, intid: u32) -> Option<usize> {
        self.listed_on(vcpu, intid)
    }
    fn each_queued(&self, vcpu: usize, f: &mut dyn FnMut(u32)) {
        self.for_each_queued(vcpu, f);
    }
    fn waiting(&self, vcpu: usize) -> usize {
        self.overflow_len(vcpu)
    }
}

/// Which interrupts a distributor-layout frame addresses.
#[derive(Clone, Copy)]
struct Bank {
    /// vCPU whose SGIs/PPIs the frame shows; `None`: INTIDs 0-31 RAZ/WI.
    private: Option<usize>,
    /// Whether SPIs are visible (distributor) or not (GICR SGI frame).
    shared: bool,
    /// The vCPU making the access.
    accessor: usize,
}

/// Per-interrupt fields of the distributor layout.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
    Priority,
    Targets,
    Config,
}

impl Field {
    const fn bits(self) -> u64 {
        match self {
            Self::Priority | Self::Targets => 8,
            Self::Config => 2,
            _ => 1,
        }
    }
    const fn name(self) -> &'static str {
        match self {
            Self::Group => "IGROUPR",
            Self::SetEnable => "ISENABLER",
            Self::ClearEnable => "ICENABLER",
            Self::SetPending => "ISPENDR",
            Self::ClearPending => "ICPENDR",
            Self::SetActive => "ISACTIVER",
            Self::ClearActive => "ICACTIVER",
            Self::Priority => "IPRIORITYR",
            Self::Targets => "ITARGETSR",
            Self::Config => "ICFGR",
        }
    }
}

/// The per-interrupt register ranges of the distributor layout, shared by
/// GICD and the GICR `SGI_base` frame.
const FIELD_RANGES: [(u64, u64, Field); 10] = [
    (GICD_IGROUPR, 0x80, Field::Group),
    (GICD_ISENABLER, 0x80, Field::SetEnable),
    (GICD_ICENABLER, 0x80, Field::ClearEnable),
    (GICD_ISPENDR, 0x80, Field::SetPending),
    (GICD_ICPENDR, 0x80, Field::ClearPending),
    (GICD_ISACTIVER, 0x80, Field::SetActive),
    (GICD_ICACTIVER, 0x80, Field::ClearActive),
    (GICD_IPRIORITYR, 0x400, Field::Priority),
    (GICD_ITARGETSR, 0x400, Field::Targets),
    (GICD_ICFGR, 0x100, Field::Config),
];

/// Which frame an MMIO access lands in.
enum Frame {
    Dist,
    /// RD_base of a vCPU (or of an unused frame: `None`), and whether it is
    /// the last frame (`GICR_TYPER.Last`).
    Rd(Option<usize>, bool),
    Sgi(Option<usize>),
}

/// Why a register refused an access: the register (or register class)
/// named in the [`VgicError::BadAccess`] that the frame decode makes of it.
type Refused = &'static str;

/// FNV-1a, enough for a state digest.
struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// What a latch (an edge, a GICv3 SGI, an `ISPENDR` write) does to the
/// dynamic state: pending, and relatched while held in a list register.
fn latched(d: &mut Dynamic) {
    if d.status.contains(Status::IN_LR) {
        d.status.insert(Status::RELATCHED);
    }
    d.status.insert(Status::PENDING);
}

/// The register emulation and cold paths, compiled once.
impl Emulator<dyn Store + '_> {
    /// Derives the register frames, the identification values and the
    /// per-vCPU tables from the configuration, and sets every interrupt to
    /// its reset state: SGIs enabled and edge-triggered, PPIs
    /// level-sensitive and disabled (as Xen and KVM do), SPIs
    /// level-sensitive, disabled and routed to vCPU 0 (`ITARGETSR` 0x01,
    /// or `IROUTER` the affinity of vCPU 0).
    pub(super) fn reset(&mut self) {
        let cfg = &self.cfg;
        self.regions = cfg.regions();
        self.processor_sleep = vec![true; cfg.nr_vcpus];
        self.shadows = vec![Shadow::EMPTY; cfg.nr_vcpus];
        self.quiet = vec![NOT_QUIET; cfg.nr_vcpus];
        self.dist_base = cfg.layout.distributor().start.0;
        self.typer = Self::typer_of(cfg);
        let v2 = self.v2();
        for v in 0..self.cfg.nr_vcpus {
            for intid in 0..NR_PRIVATE {
                let st = IrqState {
                    enabled: intid < PPI_BASE,
                    edge: intid < PPI_BASE,
                    target: u16::try_from(v).ok(),
                    route: 1 << v,
                    ..IrqState::default()
                };
                self.backend.put(v, intid, st);
            }
        }
        let route = if v2 { 1 } else { aff_of(self.mpidr(0)) };
        for intid in SPI_BASE..self.max_intid() {
            let st = IrqState {
                route,
                target: Some(0),
                ..IrqState::default()
            };
            self.backend.put(0, intid, st);
        }
    }

    /// [`VirtualGic::mmio_read`](crate::VirtualGic::mmio_read) by vCPU `v`
    /// (checked) past the fast paths.
    fn read_at(&self, v: usize, gpa: GuestPhysAddr, size: AccessSize) -> Result<u64, VgicError> {
        let (frame, off) = self.locate(gpa)?;
        let value = match frame {
            _ if !off.is_multiple_of(size.bytes()) => Err("unaligned"),
            Frame::Dist => self.dist_read(self.dist_bank(v), off, size),
            Frame::Rd(t, last) => self.rd_read(t, last, off, size),
            Frame::Sgi(Some(t)) => self.dist_read(Self::sgi_frame_bank(t, v), off, size),
            Frame::Sgi(None) => self.reserved_ok(size).map(|()| 0),
        };
        value.map_err(|register| bad(register, off, size))
    }

    /// [`VirtualGic::mmio_write`](crate::VirtualGic::mmio_write) by vCPU
    /// `v` (checked) past the fast paths, which take every GICv2
    /// `GICD_SGIR` write.
    pub(super) fn write_at(
        &mut self,
        v: usize,
        gpa: GuestPhysAddr,
        size: AccessSize,
        value: u64,
    ) -> Result<Kicks, VgicError> {
        let (frame, off) = self.locate(gpa)?;
        let kicks = match frame {
            _ if !off.is_multiple_of(size.bytes()) => Err("unaligned"),
            Frame::Dist => self.dist_write(self.dist_bank(v), off, size, value),
            Frame::Rd(t, _) => self.rd_write(t, off, size, value),
            Frame::Sgi(Some(t)) => self.dist_write(Self::sgi_frame_bank(t, v), off, size, value),
            Frame::Sgi(None) => self.reserved_ok(size).map(|()| Kicks::NONE),
        };
        kicks.map_err(|register| bad(register, off, size))
    }

    /// [`VirtualGic::mmio_read`](crate::VirtualGic::mmio_read); `direct`:
    /// whether the identification registers take their fast path.
    #[inline(always)]
    pub(crate) fn read(
        &self,
        vcpu: VcpuId,
        gpa: GuestPhysAddr,
        size: AccessSize,
        direct: bool,
    ) -> Result<u64, VgicError> {
        let v = self.check_vcpu(vcpu)?;
        // The identification registers a guest driver polls, without the
        // frame and register decode (the same values as `dist_read`).
        let off = gpa.0.wrapping_sub(self.dist_base);
        if direct && off < 0x10 && off.is_multiple_of(4) && size == AccessSize::Word {
            return Ok(self.id_reg(off));
        }
        self.read_at(v, gpa, size)
    }

    /// [`VirtualGic::set_line`](crate::VirtualGic::set_line). A rising
    /// edge latches through [`modify_dyn`](Self::modify_dyn), with the
    /// effect of the delivery paths' direct latch.
    pub(crate) fn set_line(
        &mut self,
        vcpu: VcpuId,
        intid: u32,
        level: bool,
    ) -> Result<Option<VcpuId>, VgicError> {
        let v = self.check_vcpu(vcpu)?;
        self.check_intid(intid)?;
        if intid < PPI_BASE {
            return Err(VgicError::InvalidIntid {
                intid,
                reason: "SGIs have no line",
            });
        }
        let st = self.backend.get(v, intid);
        let line = |d: &mut Dynamic| d.status.set(Status::LINE, level);
        if st.edge || st.hw.is_some() {
            // Edge sources (and forwarded interrupts, whose level the
            // hardware tracks) latch on the rising edge.
            let rising = level && !st.line_level;
            self.modify_dyn(v, intid, &line);
            return Ok(if rising {
                self.modify_dyn(v, intid, &latched)
            } else {
                None
            });
        }
        Ok(self.modify_dyn(v, intid, &line))
    }

    /// [`VirtualGic::regions`](crate::VirtualGic::regions).
    pub(crate) fn frames(&self) -> &[crate::MmioRegion] {
        &self.regions
    }

    /// [`VirtualGic::map_hw`](crate::VirtualGic::map_hw).
    pub(crate) fn map_hw(&mut self, vcpu: VcpuId, virq: u32, pintid: u32) -> Result<(), VgicError> {
        let v = self.check_vcpu(vcpu)?;
        self.check_intid(virq)?;
        if virq < PPI_BASE {
            return Err(VgicError::InvalidIntid {
                intid: virq,
                reason: "SGIs cannot be hardware-mapped",
            });
        }
        if !(PPI_BASE..1020).contains(&pintid) {
            return Err(VgicError::InvalidIntid {
                intid: pintid,
                reason: "physical INTID must be a PPI or SPI",
            });
        }
        let mut st = self.backend.get(v, virq);
        st.hw = Some(pintid);
        self.backend.put(v, virq, st);
        self.generation = self.generation.wrapping_add(GEN_STEP);
        Ok(())
    }

    /// [`VirtualGic::has_deliverable`](crate::VirtualGic::has_deliverable).
    pub(crate) fn has_deliverable(&self, vcpu: VcpuId) -> bool {
        self.check_vcpu(vcpu).is_ok_and(|v| self.deliverable_on(v))
    }

    /// [`has_deliverable`](Self::has_deliverable) for a checked vCPU.
    fn deliverable_on(&self, v: usize) -> bool {
        if !self.dist_enabled() {
            return false;
        }
        let mut any = false;
        self.backend.each_queued(v, &mut |intid| {
            if !any {
                let st = self.backend.get(v, intid);
                any = self.deliverable(&st, intid) && !st.active;
            }
        });
        any
    }

    /// [`VirtualGic::state_digest`](crate::VirtualGic::state_digest).
    pub(crate) fn digest(&self) -> u64 {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        self.ctlr.hash(&mut h);
        self.processor_sleep.hash(&mut h);
        self.shadows.hash(&mut h);
        for v in 0..self.cfg.nr_vcpus {
            for intid in 0..NR_PRIVATE {
                self.backend.get(v, intid).hash(&mut h);
            }
            self.backend.waiting(v).hash(&mut h);
        }
        for intid in SPI_BASE..self.max_intid() {
            self.backend.get(0, intid).hash(&mut h);
        }
        h.finish()
    }

    /// The effect of a change `f` confined to the dynamic state (pending,
    /// active, line, SGI sources) on behalf of software: what the delivery
    /// paths' direct update does, through a full [`modify`](Self::modify).
    #[inline(never)]
    pub(super) fn modify_dyn(
        &mut self,
        v: usize,
        intid: u32,
        f: &dyn Fn(&mut Dynamic),
    ) -> Option<VcpuId> {
        self.modify(v, intid, &|s| {
            let mut d = Dynamic::of(s);
            f(&mut d);
            d.apply(s);
        })
    }

    fn deliverable(&self, st: &IrqState, intid: u32) -> bool {
        st.enabled && st.is_pending(self.is_v2_sgi(intid)) && st.target.is_some()
    }

    fn owner(&self, v: usize, intid: u32, st: &IrqState) -> Option<VcpuId> {
        if intid < NR_PRIVATE {
            Some(VcpuId(v))
        } else {
            st.target.map(|t| VcpuId(usize::from(t)))
        }
    }

    /// Applies `f` to an interrupt's state on behalf of software (a register
    /// write or an injection) and reports whom to kick: the vCPU holding it
    /// in a list register when that copy is now stale, otherwise the owner
    /// when the interrupt became deliverable there (newly pending or
    /// enabled, or routed to another vCPU while pending).
    pub(super) fn modify(
        &mut self,
        v: usize,
        intid: u32,
        f: &dyn Fn(&mut IrqState),
    ) -> Option<VcpuId> {
        let old = self.backend.get(v, intid);
        let mut st = old;
        f(&mut st);
        if st == old {
            return None;
        }
        self.generation = self.generation.wrapping_add(GEN_STEP);
        let was = self.dist_enabled() && self.deliverable(&old, intid);
        let now = self.dist_enabled() && self.deliverable(&st, intid);
        let resident_changed = old.in_lr
            && (old.active != st.active
                || old.sgi_sources != st.sgi_sources
                || old.pending_latch != st.pending_latch
                || old.relatched != st.relatched
                || old.enabled != st.enabled
                || old.priority != st.priority);
        // Software clearing pending or changing active while the interrupt
        // sits in a list register overrides that part of the list register
        // at sync; new pending events are carried by `relatched` instead.
        if old.in_lr {
            if old.active != st.active {
                st.sw_active_dirty = true;
            }
            if (old.pending_latch && !st.pending_latch) || old.sgi_sources & !st.sgi_sources != 0 {
                st.sw_pending_dirty = true;
            }
        }
        let owner = self.owner(v, intid, &st);
        let old_owner = self.owner(v, intid, &old);
        // An interrupt in a list register stays with the vCPU that holds
        // it, which may no longer be its target (an SPI re-routed since):
        // that vCPU must exit to fold the change.
        let resident = if old.in_lr {
            self.backend.holder(v, intid).map(VcpuId)
        } else {
            None
        };
        self.backend.put(v, intid, st);
        if resident_changed {
            resident.or(owner)
        } else if now && (!was || owner != old_owner) {
            owner
        } else {
            None
        }
    }

    /// The frame `gpa` lands in, and the offset within it.
    fn locate(&self, gpa: GuestPhysAddr) -> Result<(Frame, u64), VgicError> {
        let d = self.cfg.layout.distributor();
        if let Some(off) = gpa.offset_from(d.start).filter(|o| *o < d.size) {
            return Ok((Frame::Dist, off));
        }
        if let VgicLayout::V3 { redists, .. } = &self.cfg.layout {
            for r in redists {
                if let Some(off) = gpa.offset_from(r.range.start).filter(|o| *o < r.range.size) {
                    let frame = usize::try_from(off / V3_GICR_STRIDE).unwrap_or(usize::MAX);
                    let within = off % V3_GICR_STRIDE;
                    let vcpu = (frame < r.nr_frames)
                        .then(|| r.first_vcpu + frame)
                        .filter(|v| *v < self.cfg.nr_vcpus);
                    let last = frame + 1 == r.nr_frames || vcpu == Some(self.cfg.nr_vcpus - 1);
                    return Ok(if within >= GICR_SGI_BASE {
                        (Frame::Sgi(vcpu), within - GICR_SGI_BASE)
                    } else {
                        (Frame::Rd(vcpu, last), within)
                    });
                }
            }
        }
        Err(VgicError::Unmapped { gpa })
    }

    /// Width rule for reserved and RAZ/WI locations: byte or word, plus
    /// doubleword on GICv3 (halfword accesses are never supported).
    fn reserved_ok(&self, size: AccessSize) -> Result<(), Refused> {
        match size {
            AccessSize::Byte | AccessSize::Word => Ok(()),
            AccessSize::Double if !self.v2() => Ok(()),
            _ => Err("reserved"),
        }
    }

    /// Width rule for registers only accessible as words.
    fn word_only(name: Refused, size: AccessSize) -> Result<(), Refused> {
        if size == AccessSize::Word {
            Ok(())
        } else {
            Err(name)
        }
    }

    fn accessible(&self, bank: Bank, intid: u32) -> Option<usize> {
        if intid < NR_PRIVATE {
            bank.private
        } else if bank.shared && intid < self.max_intid() {
            Some(bank.accessor)
        } else {
            None
        }
    }

    fn field_of(off: u64) -> Option<(Field, u64)> {
        // The ranges tile GICD_IGROUPR..GICD_ICFGR end: anything outside
        // (GICD_CTLR, GICD_TYPER, the SGI and routing registers) is a fixed
        // register, without a walk through the table.
        if !(GICD_IGROUPR..GICD_ICFGR + 0x100).contains(&off) {
            return None;
        }
        FIELD_RANGES
            .iter()
            .find(|(start, len, _)| off >= *start && off < start + len)
            .map(|(start, _, f)| (*f, off - start))
    }

    /// Reads a distributor-layout frame (GICD, or the GICR SGI frame with
    /// `bank.shared == false`).
    fn dist_read(&self, bank: Bank, off: u64, size: AccessSize) -> Result<u64, Refused> {
        if let Some((field, rel)) = Self::field_of(off) {
            let byte_ok = matches!(field, Field::Priority | Field::Targets);
            let v3_targets = field == Field::Targets && !self.v2();
            if v3_targets {
                // ITARGETSR is RAZ/WI with affinity routing (IHI 0069H 12.9.36).
                self.reserved_ok(size)?;
                return Ok(0);
            }
            if !(size == AccessSize::Word || (byte_ok && size == AccessSize::Byte)) {
                return Err(field.name());
            }
            let bits = field.bits();
            let first = (rel * 8 / bits) as u32;
            let count = (size.bytes() * 8 / bits) as u32;
            let mut val = 0u64;
            for i in 0..count {
                let intid = first + i;
                let Some(v) = self.accessible(bank, intid) else {
                    continue;
                };
                let f: u64 = match field {
                    Field::Group => u64::from(!self.v2()),
                    // Read-only for SGIs and PPIs: the accessing CPU's own
                    // mask (IHI 0048B 4.3.12).
                    Field::Targets if intid < NR_PRIVATE => 1u64 << bank.accessor,
                    _ => {
                        let st = self.backend.get(v, intid);
                        match field {
                            Field::SetEnable | Field::ClearEnable => u64::from(st.enabled),
                            Field::SetPending | Field::ClearPending => {
                                u64::from(st.is_pending(self.is_v2_sgi(intid)))
                            }
                            Field::SetActive | Field::ClearActive => u64::from(st.active),
                            Field::Priority => u64::from(st.priority),
                            Field::Targets => st.route & 0xFF,
                            // ICFGR: bit 1 of the pair is the edge bit.
                            _ => u64::from(st.edge) << 1,
                        }
                    }
                };
                val |= f << (u64::from(i) * bits);
            }
            return Ok(val);
        }
        // Fixed registers.
        let v2 = self.v2();
        match off {
            GICD_CTLR | GICD_TYPER | GICD_IIDR if bank.shared => {
                let name = match off {
                    GICD_CTLR => "GICD_CTLR",
                    GICD_TYPER => "GICD_TYPER",
                    _ => "GICD_IIDR",
                };
                Self::word_only(name, size)?;
                Ok(self.id_reg(off))
            }
            GICD_SGIR if v2 => {
                // Write-only; reads as zero.
                Self::word_only("GICD_SGIR", size)?;
                Ok(0)
            }
            GICD_CPENDSGIR..=0xF2F if v2 => {
                if !matches!(size, AccessSize::Byte | AccessSize::Word) {
                    return Err("GICD_xPENDSGIR");
                }
                let sgi0 = (off - GICD_CPENDSGIR) % 16;
                let mut val = 0u64;
                for i in 0..size.bytes() {
                    let st = self.backend.get(bank.accessor, (sgi0 + i) as u32);
                    val |= u64::from(st.sgi_sources) << (8 * i);
                }
                Ok(val)
            }
            GICD_IROUTER..GICD_IROUTER_END if !v2 && bank.shared => {
                let intid = ((off - GICD_IROUTER) / 8) as u32;
                let high = off % 8 == 4;
                if !(size == AccessSize::Word || (size == AccessSize::Double && !high)) {
                    return Err("GICD_IROUTER");
                }
                if intid < SPI_BASE || intid >= self.max_intid() {
                    return Ok(0);
                }
                let route = self.backend.get(0, intid).route;
                Ok(match (size, high) {
                    (AccessSize::Double, _) => route,
                    (_, false) => route & 0xFFFF_FFFF,
                    (_, true) => route >> 32,
                })
            }
            GICD_PIDR2_V2 if v2 => {
                Self::word_only("GICD_PIDR2", size)?;
                Ok(u64::from((2 << PIDR2_ARCHREV_SHIFT) | PIDR2_JEDEC))
            }
            GICD_PIDR2_V3 if !v2 && bank.shared => {
                Self::word_only("GICD_PIDR2", size)?;
                Ok(u64::from((3 << PIDR2_ARCHREV_SHIFT) | PIDR2_JEDEC))
            }
            _ => {
                // STATUSR, TYPER2, IGRPMODR, NSACR and every reserved or
                // IMPLEMENTATION DEFINED location: RAZ/WI.
                self.reserved_ok(size)?;
                Ok(0)
            }
        }
    }

    fn dist_write(
        &mut self,
        bank: Bank,
        off: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<Kicks, Refused> {
        let mut kicks = Kicks::NONE;
        let value = value & size.mask();
        if let Some((field, rel)) = Self::field_of(off) {
            let byte_ok = matches!(field, Field::Priority | Field::Targets);
            if field == Field::Targets && !self.v2() {
                self.reserved_ok(size)?;
                return Ok(kicks);
            }
            if !(size == AccessSize::Word || (byte_ok && size == AccessSize::Byte)) {
                return Err(field.name());
            }
            let bits = field.bits();
            let first = (rel * 8 / bits) as u32;
            let count = (size.bytes() * 8 / bits) as u32;
            let v2 = self.v2();
            let vcpu_mask = if self.cfg.nr_vcpus >= 8 {
                0xFF
            } else {
                (1u64 << self.cfg.nr_vcpus) - 1
            };
            for i in 0..count {
                let intid = first + i;
                let Some(v) = self.accessible(bank, intid) else {
                    continue;
                };
                let f = (value >> (u64::from(i) * bits)) & ((1 << bits) - 1);
                let writes = match field {
                    Field::Group => false,
                    // GICv2 SGI pending state is per source and set through
                    // SPENDSGIR/CPENDSGIR; the ISPENDR0/ICPENDR0 bits are WI
                    // (IHI 0048B 4.3.7).
                    Field::SetPending | Field::ClearPending => f != 0 && !(v2 && intid < PPI_BASE),
                    Field::Priority => true,
                    Field::Targets => intid >= SPI_BASE,
                    // SGIs are always edge-triggered (ICFGR0 read-only);
                    // PPIs and SPIs are programmable.
                    Field::Config => intid >= PPI_BASE,
                    _ => f != 0,
                };
                if !writes {
                    continue;
                }
                let mask = f & vcpu_mask;
                let target = (mask != 0).then(|| mask.trailing_zeros() as u16);
                kicks.add_opt(self.modify(v, intid, &|s| match field {
                    Field::Group => {}
                    Field::SetEnable => s.enabled = true,
                    Field::ClearEnable => s.enabled = false,
                    // A latch: relatched while held in a list register.
                    Field::SetPending => {
                        s.relatched |= s.in_lr;
                        s.pending_latch = true;
                    }
                    Field::ClearPending => s.pending_latch = false,
                    Field::SetActive => s.active = true,
                    Field::ClearActive => s.active = false,
                    Field::Priority => s.priority = f as u8,
                    Field::Targets => {
                        s.route = mask;
                        s.target = target;
                    }
                    Field::Config => s.edge = f & 0b10 != 0,
                }));
            }
            return Ok(kicks);
        }
        let v2 = self.v2();
        match off {
            GICD_CTLR if bank.shared => {
                Self::word_only("GICD_CTLR", size)?;
                let was = self.dist_enabled();
                let ctlr = (value as u32) & (CTLR_ENABLE_G0 | CTLR_ENABLE_G1);
                if ctlr != self.ctlr {
                    self.generation = self.generation.wrapping_add(GEN_STEP);
                }
                self.ctlr = ctlr;
                if !was && self.dist_enabled() {
                    for v in 0..self.cfg.nr_vcpus {
                        if self.deliverable_on(v) {
                            kicks.add(VcpuId(v));
                        }
                    }
                }
                Ok(kicks)
            }
            GICD_TYPER | GICD_IIDR if bank.shared => {
                Self::word_only("GICD_TYPER/IIDR", size)?;
                Ok(kicks)
            }
            // GICD_SGIR: `mmio_write` takes every access before the decode.
            GICD_CPENDSGIR..=0xF2F if v2 => {
                if !matches!(size, AccessSize::Byte | AccessSize::Word) {
                    return Err("GICD_xPENDSGIR");
                }
                let set = off >= GICD_SPENDSGIR;
                let sgi0 = (off - GICD_CPENDSGIR) % 16;
                let valid = ((1u32 << self.cfg.nr_vcpus) - 1) as u8;
                for i in 0..size.bytes() {
                    let b = ((value >> (8 * i)) as u8) & valid;
                    if b == 0 {
                        continue;
                    }
                    let k = self.modify_dyn(bank.accessor, (sgi0 + i) as u32, &|d| {
                        if set {
                            d.sgi_sources |= b;
                        } else {
                            d.sgi_sources &= !b;
                        }
                    });
                    kicks.add_opt(k);
                }
                Ok(kicks)
            }
            GICD_IROUTER..GICD_IROUTER_END if !v2 && bank.shared => {
                let intid = ((off - GICD_IROUTER) / 8) as u32;
                let high = off % 8 == 4;
                if !(size == AccessSize::Word || (size == AccessSize::Double && !high)) {
                    return Err("GICD_IROUTER");
                }
                if intid < SPI_BASE || intid >= self.max_intid() {
                    return Ok(kicks);
                }
                let old = self.backend.get(0, intid).route;
                let new = match (size, high) {
                    (AccessSize::Double, _) => value,
                    (_, false) => (old & !0xFFFF_FFFF) | value,
                    (_, true) => (old & 0xFFFF_FFFF) | (value << 32),
                } & IROUTER_MASK;
                let target = self.resolve_irouter(new);
                kicks.add_opt(self.modify(0, intid, &|s| {
                    s.route = new;
                    s.target = target;
                }));
                Ok(kicks)
            }
            _ => {
                self.reserved_ok(size)?;
                Ok(kicks)
            }
        }
    }

    /// The vCPU an `IROUTER` value selects. IRM = 1 ("any participating
    /// PE") delivers to vCPU 0, a deterministic choice that keeps the
    /// interrupt on one vCPU's list; an affinity naming no vCPU leaves the
    /// SPI undelivered (it stays pending) until it is re-routed.
    fn resolve_irouter(&self, route: u64) -> Option<u16> {
        if route & IROUTER_IRM != 0 {
            return Some(0);
        }
        let aff = route & MPIDR_AFF_MASK;
        self.cfg
            .vcpu_mpidr
            .iter()
            .position(|m| aff_of(*m) == aff)
            .and_then(|v| u16::try_from(v).ok())
    }

    fn rd_read(
        &self,
        vcpu: Option<usize>,
        last: bool,
        off: u64,
        size: AccessSize,
    ) -> Result<u64, Refused> {
        let Some(v) = vcpu else {
            self.reserved_ok(size)?;
            return Ok(0);
        };
        let dword_ok = |base: u64| -> Result<bool, Refused> {
            match size {
                AccessSize::Double if off == base => Ok(true),
                AccessSize::Word => Ok(false),
                _ => Err("GICR 64-bit register"),
            }
        };
        match off {
            GICR_CTLR | GICR_STATUSR | GICR_SYNCR => {
                Self::word_only("GICR_CTLR/STATUSR/SYNCR", size)?;
                Ok(0)
            }
            GICR_IIDR => {
                Self::word_only("GICR_IIDR", size)?;
                Ok(u64::from(IIDR_ARM))
            }
            GICR_WAKER => {
                Self::word_only("GICR_WAKER", size)?;
                let sleep = self.processor_sleep.get(v).copied().unwrap_or(true);
                Ok(if sleep {
                    u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
                } else {
                    0
                })
            }
            0x8 | 0xC => {
                let m = self.mpidr(v);
                let aff = (m & 0xFF_FFFF) | ((m >> 8) & 0xFF00_0000);
                let typer = (aff << GICR_TYPER_AFF_SHIFT)
                    | ((v as u64 & 0xFFFF) << GICR_TYPER_PROCNUM_SHIFT)
                    | if last { GICR_TYPER_LAST } else { 0 };
                let base = GICR_TYPER;
                Ok(if dword_ok(base)? {
                    typer
                } else if off == base {
                    typer & 0xFFFF_FFFF
                } else {
                    typer >> 32
                })
            }
            GICR_PROPBASER..0x80 | GICR_INVLPIR..0xA8 | GICR_INVALLR..0xB8 => {
                let base = off & !7;
                dword_ok(base)?;
                Ok(0)
            }
            GICR_PIDR2 => {
                Self::word_only("GICR_PIDR2", size)?;
                Ok(u64::from((3 << PIDR2_ARCHREV_SHIFT) | PIDR2_JEDEC))
            }
            _ => {
                self.reserved_ok(size)?;
                Ok(0)
            }
        }
    }

    fn rd_write(
        &mut self,
        vcpu: Option<usize>,
        off: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<Kicks, Refused> {
        match off {
            GICR_WAKER if vcpu.is_some() => {
                Self::word_only("GICR_WAKER", size)?;
                if let Some(s) = vcpu.and_then(|v| self.processor_sleep.get_mut(v)) {
                    *s = value & u64::from(WAKER_PROCESSOR_SLEEP) != 0;
                }
                Ok(Kicks::NONE)
            }
            // Read-only or RAZ/WI registers; check the width like a read.
            _ => self.rd_read(vcpu, false, off, size).map(|_| Kicks::NONE),
        }
    }

    fn sgi_frame_bank(vcpu: usize, accessor: usize) -> Bank {
        Bank {
            private: Some(vcpu),
            shared: false,
            accessor,
        }
    }

    fn dist_bank(&self, accessor: usize) -> Bank {
        Bank {
            private: self.v2().then_some(accessor),
            shared: true,
            accessor,
        }
    }
}
