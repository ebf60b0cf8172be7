//! One behavioural suite, run against both models and (where the
//! behaviour exists) both GIC versions.

use proptest::prelude::*;
use tessel_addr::{AccessSize, GuestPhysAddr, HostPhysAddr, HostRange};
use tessel_vgic::classic::Classic;
use tessel_vgic::config::{V3_GICR_STRIDE, XEN_GICD_BASE, XEN_GICR_BASE};
use tessel_vgic::perirq::PerIrq;
use tessel_vgic::state::{Backend, Reference};
use tessel_vgic::{
    Emulator, GicVersion, HostGic, Kicks, ListRegisters, LrState, LrStatus, Model, SgiRegister,
    VcpuId, Vgic, VgicConfig, VgicError, VgicLayout, VirtualGic,
};

use AccessSize::{Byte, Double, Half, Word};

/// An in-memory list-register file.
#[derive(Clone, Debug)]
struct FakeLrs {
    regs: Vec<LrState>,
    underflow: bool,
}

impl FakeLrs {
    fn new(n: usize) -> Self {
        Self {
            regs: vec![LrState::INVALID; n],
            underflow: false,
        }
    }
    fn valid(&self) -> Vec<LrState> {
        self.regs
            .iter()
            .copied()
            .filter(|l| l.state != LrStatus::Invalid)
            .collect()
    }
    fn intids(&self) -> Vec<u32> {
        self.valid().iter().map(|l| l.intid).collect()
    }
    /// The guest acknowledges the highest-priority pending LR (lowest
    /// priority value, as the CPU interface would) and returns its INTID.
    fn ack(&mut self) -> Option<u32> {
        let i = (0..self.regs.len())
            .filter(|&i| self.regs[i].state.is_pending() && !self.regs[i].state.is_active())
            .min_by_key(|&i| (self.regs[i].priority, i))?;
        self.regs[i].state = LrStatus::Active;
        Some(self.regs[i].intid)
    }
    /// The guest acknowledges the highest-priority pending LR, completes
    /// the first active one, or does nothing, as `choice % 3` says.
    fn guest_acts(&mut self, choice: u64) {
        match choice % 3 {
            0 => {
                self.ack();
            }
            1 => {
                let act = self
                    .valid()
                    .iter()
                    .find(|l| l.state.is_active())
                    .map(|l| l.intid);
                if let Some(i) = act {
                    self.eoi(i);
                }
            }
            _ => {}
        }
    }
    /// The guest EOIs/deactivates `intid`.
    fn eoi(&mut self, intid: u32) {
        for r in &mut self.regs {
            if r.intid == intid && r.state.is_active() {
                r.state = if r.state.is_pending() {
                    LrStatus::Pending
                } else {
                    LrStatus::Invalid
                };
            }
        }
    }
}

impl ListRegisters for FakeLrs {
    fn count(&self) -> usize {
        self.regs.len()
    }
    fn read(&self, i: usize) -> LrState {
        self.regs[i]
    }
    fn write(&mut self, i: usize, lr: LrState) {
        self.regs[i] = lr;
    }
    fn set_underflow_irq(&mut self, on: bool) {
        self.underflow = on;
    }
}

const V0: VcpuId = VcpuId(0);
const V1: VcpuId = VcpuId(1);

fn make(model: Model, version: GicVersion, nr_vcpus: usize, nr_spis: usize) -> Vgic {
    let layout = VgicLayout::xen_virtual(version, nr_vcpus);
    Vgic::new(model, VgicConfig::new(version, layout, nr_vcpus, nr_spis)).unwrap()
}

fn gicd(off: u64) -> GuestPhysAddr {
    GuestPhysAddr(XEN_GICD_BASE + off)
}

fn gicr(vcpu: usize, off: u64) -> GuestPhysAddr {
    GuestPhysAddr(XEN_GICR_BASE + vcpu as u64 * V3_GICR_STRIDE + off)
}

fn sgi_frame(vcpu: usize, off: u64) -> GuestPhysAddr {
    gicr(vcpu, 0x1_0000 + off)
}

fn rd(g: &mut Vgic, vcpu: VcpuId, a: GuestPhysAddr, s: AccessSize) -> u64 {
    g.mmio_read(vcpu, a, s).unwrap()
}

fn wr(g: &mut Vgic, vcpu: VcpuId, a: GuestPhysAddr, s: AccessSize, v: u64) -> Kicks {
    g.mmio_write(vcpu, a, s, v).unwrap()
}

fn enable_dist<G: VirtualGic>(g: &mut G) {
    let v = match g.version() {
        GicVersion::V2 => 1,
        GicVersion::V3 => 0x12,
    };
    g.mmio_write(V0, gicd(0), Word, v).unwrap();
}

/// Address of a per-interrupt register word for `intid` seen by `vcpu`:
/// the distributor for SPIs (and all of GICv2), the SGI frame otherwise.
fn reg_for(g: &Vgic, vcpu: VcpuId, base: u64, intid: u32, bits: u64) -> GuestPhysAddr {
    let byte = u64::from(intid) * bits / 8;
    let word = byte & !3;
    if g.version() == GicVersion::V3 && intid < 32 {
        sgi_frame(vcpu.0, base + word)
    } else {
        gicd(base + word)
    }
}

fn enable(g: &mut Vgic, vcpu: VcpuId, intid: u32) -> Kicks {
    let a = reg_for(g, vcpu, 0x100, intid, 1);
    wr(g, vcpu, a, Word, 1 << (intid % 32))
}

fn disable(g: &mut Vgic, vcpu: VcpuId, intid: u32) {
    let a = reg_for(g, vcpu, 0x180, intid, 1);
    wr(g, vcpu, a, Word, 1 << (intid % 32));
}

fn set_prio(g: &mut Vgic, vcpu: VcpuId, intid: u32, prio: u8) {
    let a = reg_for(g, vcpu, 0x400, intid, 8);
    let a = GuestPhysAddr(a.0 + u64::from(intid % 4));
    wr(g, vcpu, a, Byte, u64::from(prio));
}

fn set_edge(g: &mut Vgic, vcpu: VcpuId, intid: u32) {
    let a = reg_for(g, vcpu, 0xC00, intid, 2);
    let old = rd(g, vcpu, a, Word);
    wr(g, vcpu, a, Word, old | 2 << ((intid % 16) * 2));
}

fn is_pending(g: &mut Vgic, vcpu: VcpuId, intid: u32) -> bool {
    let a = reg_for(g, vcpu, 0x200, intid, 1);
    rd(g, vcpu, a, Word) & (1 << (intid % 32)) != 0
}

fn is_active(g: &mut Vgic, vcpu: VcpuId, intid: u32) -> bool {
    let a = reg_for(g, vcpu, 0x300, intid, 1);
    rd(g, vcpu, a, Word) & (1 << (intid % 32)) != 0
}

/// One entry/exit round: flush, let the guest ack and EOI everything it
/// sees (in priority order), sync. Returns the INTIDs handled.
fn run_round(g: &mut Vgic, vcpu: VcpuId, lrs: &mut FakeLrs) -> Vec<u32> {
    g.flush(vcpu, lrs).unwrap();
    let mut seen = Vec::new();
    while let Some(i) = lrs.ack() {
        seen.push(i);
        lrs.eoi(i);
    }
    g.sync(vcpu, lrs).unwrap();
    seen
}

// ---------------------------------------------------------------------
// Tests for both versions.
// ---------------------------------------------------------------------

fn typer_iidr_pidr2(model: Model, version: GicVersion) {
    let mut g = make(model, version, 4, 64);
    let typer = rd(&mut g, V0, gicd(0x4), Word);
    assert_eq!(typer & 0x1F, 2, "ITLinesNumber for 64 SPIs");
    assert_eq!((typer >> 5) & 7, 3, "CPUNumber for 4 vCPUs");
    assert_eq!(rd(&mut g, V0, gicd(0x8), Word) & 0xFFF, 0x43B);
    let (pidr2, rev) = match version {
        GicVersion::V2 => (0xFE8, 2),
        GicVersion::V3 => (0xFFE8, 3),
    };
    assert_eq!((rd(&mut g, V0, gicd(pidr2), Word) >> 4) & 0xF, rev);
    if version == GicVersion::V3 {
        assert_eq!((typer >> 19) & 0x1F, 9, "IDbits: 10-bit INTIDs");
    }
}

fn ctlr_roundtrip(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 32);
    enable_dist(&mut g);
    let c = rd(&mut g, V0, gicd(0), Word);
    match version {
        GicVersion::V2 => assert_eq!(c, 1),
        // ARE_NS reads as one, EnableGrp1A as written.
        GicVersion::V3 => assert_eq!(c, 0x12),
    }
    wr(&mut g, V0, gicd(0), Word, 0);
    let c = rd(&mut g, V0, gicd(0), Word);
    assert_eq!(c & 3, 0);
}

fn access_widths(model: Model, version: GicVersion) {
    let mut g = make(model, version, 2, 64);
    let bad = |r: Result<u64, VgicError>| matches!(r, Err(VgicError::BadAccess { .. }));
    // CTLR/TYPER: word only.
    assert!(bad(g.mmio_read(V0, gicd(0), Byte)));
    assert!(bad(g.mmio_read(V0, gicd(4), Half)));
    assert!(bad(g.mmio_read(V0, gicd(0), Double)));
    // ISENABLER: word only.
    assert!(bad(g.mmio_read(V0, gicd(0x104), Byte)));
    assert!(g.mmio_write(V0, gicd(0x104), Byte, 1).is_err());
    // IPRIORITYR: byte and word.
    g.mmio_write(V0, gicd(0x421), Byte, 0xA0).unwrap();
    assert_eq!(rd(&mut g, V0, gicd(0x420), Word), 0xA000);
    assert!(bad(g.mmio_read(V0, gicd(0x420), Half)));
    // Unaligned.
    assert!(bad(g.mmio_read(V0, gicd(0x422), Word)));
    // Reserved offsets read as zero and ignore writes.
    assert_eq!(rd(&mut g, V0, gicd(0x40), Word), 0);
    wr(&mut g, V0, gicd(0x40), Word, 0xFFFF_FFFF);
    assert_eq!(rd(&mut g, V0, gicd(0x40), Word), 0);
    // Outside the frame.
    assert!(matches!(
        g.mmio_read(V0, GuestPhysAddr(0x1000), Word),
        Err(VgicError::Unmapped { .. })
    ));
    // Out-of-range vCPU.
    assert!(matches!(
        g.mmio_read(VcpuId(2), gicd(0), Word),
        Err(VgicError::InvalidVcpu { .. })
    ));
    // GICv2 has no 64-bit registers.
    if version == GicVersion::V2 {
        assert!(bad(g.mmio_read(V0, gicd(0x40), Double)));
    }
}

fn priority_byte_and_word(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 64);
    wr(&mut g, V0, gicd(0x420), Word, 0x4030_2010);
    for (i, p) in [0x10, 0x20, 0x30, 0x40].into_iter().enumerate() {
        assert_eq!(rd(&mut g, V0, gicd(0x420 + i as u64), Byte), p);
    }
    // Beyond the last SPI: RAZ/WI.
    wr(&mut g, V0, gicd(0x400 + 100), Byte, 0x80);
    assert_eq!(rd(&mut g, V0, gicd(0x400 + 100), Byte), 0);
}

fn enable_set_clear(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 64);
    wr(&mut g, V0, gicd(0x104), Word, 0b1010);
    assert_eq!(rd(&mut g, V0, gicd(0x104), Word), 0b1010);
    assert_eq!(rd(&mut g, V0, gicd(0x184), Word), 0b1010);
    // Writing zeros changes nothing.
    wr(&mut g, V0, gicd(0x104), Word, 0);
    wr(&mut g, V0, gicd(0x184), Word, 0);
    assert_eq!(rd(&mut g, V0, gicd(0x104), Word), 0b1010);
    wr(&mut g, V0, gicd(0x184), Word, 0b0010);
    assert_eq!(rd(&mut g, V0, gicd(0x104), Word), 0b1000);
}

fn pending_while_disabled(model: Model, version: GicVersion) {
    let mut g = make(model, version, 2, 32);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    set_edge(&mut g, V0, 40);
    assert_eq!(g.inject(V0, 40).unwrap(), None, "disabled: no kick");
    assert!(is_pending(&mut g, V0, 40));
    g.flush(V0, &mut lrs).unwrap();
    assert!(
        lrs.valid().is_empty(),
        "a disabled interrupt is not delivered"
    );
    g.sync(V0, &mut lrs).unwrap();
    assert!(is_pending(&mut g, V0, 40), "still pending after an entry");
    let k = enable(&mut g, V0, 40);
    assert!(k.contains(V0), "enabling a pending SPI kicks its target");
    assert_eq!(run_round(&mut g, V0, &mut lrs), [40]);
    assert!(!is_pending(&mut g, V0, 40));
    // Disable while pending again, then re-enable: delivered once.
    disable(&mut g, V0, 40);
    g.inject(V0, 40).unwrap();
    assert!(run_round(&mut g, V0, &mut lrs).is_empty());
    enable(&mut g, V0, 40);
    assert_eq!(run_round(&mut g, V0, &mut lrs), [40]);
    assert!(run_round(&mut g, V0, &mut lrs).is_empty());
}

fn distributor_disabled_holds(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 32);
    let mut lrs = FakeLrs::new(4);
    set_edge(&mut g, V0, 33);
    enable(&mut g, V0, 33);
    assert_eq!(g.inject(V0, 33).unwrap(), None);
    assert!(!g.has_deliverable(V0));
    g.flush(V0, &mut lrs).unwrap();
    assert!(lrs.valid().is_empty());
    g.sync(V0, &mut lrs).unwrap();
    let v = if version == GicVersion::V2 { 1 } else { 2 };
    let k = wr(&mut g, V0, gicd(0), Word, v);
    assert!(k.contains(V0));
    assert!(g.has_deliverable(V0));
    assert_eq!(run_round(&mut g, V0, &mut lrs), [33]);
}

fn injection_priority_order(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 64);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    for (intid, prio) in [(40, 0xA0), (33, 0x80), (60, 0x10), (35, 0x80)] {
        set_edge(&mut g, V0, intid);
        set_prio(&mut g, V0, intid, prio);
        enable(&mut g, V0, intid);
        g.inject(V0, intid).unwrap();
    }
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.intids(), [60, 33, 35, 40]);
    let l = lrs.valid();
    assert!(l.iter().all(|l| l.state == LrStatus::Pending));
    assert_eq!(l[0].priority, 0x10);
    assert_eq!(l[0].group1, version == GicVersion::V3);
    assert!(!lrs.underflow);
}

fn overflow_and_refill(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 64);
    let mut lrs = FakeLrs::new(2);
    enable_dist(&mut g);
    let irqs = [32u32, 33, 34, 35, 36];
    for (n, &i) in irqs.iter().enumerate() {
        set_edge(&mut g, V0, i);
        set_prio(&mut g, V0, i, 0xF0 - n as u8 * 0x10);
        enable(&mut g, V0, i);
        g.inject(V0, i).unwrap();
    }
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.intids(), [36, 35], "highest priority first");
    assert!(lrs.underflow, "more pending than list registers");
    let mut delivered = Vec::new();
    for _ in 0..10 {
        while let Some(i) = lrs.ack() {
            delivered.push(i);
            lrs.eoi(i);
        }
        if !lrs.underflow {
            break;
        }
        // The underflow maintenance interrupt fires.
        g.maintenance(V0, &mut lrs).unwrap();
    }
    assert_eq!(delivered, [36, 35, 34, 33, 32]);
    g.sync(V0, &mut lrs).unwrap();
    for i in irqs {
        assert!(!is_pending(&mut g, V0, i));
        assert!(!is_active(&mut g, V0, i));
    }
}

fn active_stays_and_higher_priority_preempts(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 64);
    let mut lrs = FakeLrs::new(2);
    enable_dist(&mut g);
    for (i, p) in [(32, 0x80), (33, 0x40), (34, 0x20)] {
        set_edge(&mut g, V0, i);
        set_prio(&mut g, V0, i, p);
        enable(&mut g, V0, i);
    }
    g.inject(V0, 32).unwrap();
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.ack(), Some(32));
    g.sync(V0, &mut lrs).unwrap();
    assert!(is_active(&mut g, V0, 32));
    g.inject(V0, 33).unwrap();
    g.inject(V0, 34).unwrap();
    g.flush(V0, &mut lrs).unwrap();
    // The active interrupt keeps its LR; the best pending one gets the other.
    let v = lrs.valid();
    assert_eq!(v[0].intid, 32);
    assert_eq!(v[0].state, LrStatus::Active);
    assert_eq!(v[1].intid, 34);
    assert!(lrs.underflow);
    lrs.eoi(32);
    g.maintenance(V0, &mut lrs).unwrap();
    assert_eq!(lrs.intids(), [34, 33]);
}

fn level_follows_line(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 32);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    enable(&mut g, V0, 33);
    assert_eq!(g.set_line(V0, 33, true).unwrap(), Some(V0));
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.intids(), [33]);
    assert!(
        lrs.valid()[0].eoi_maintenance,
        "level: exit on EOI to resample"
    );
    assert_eq!(lrs.ack(), Some(33));
    lrs.eoi(33);
    g.sync(V0, &mut lrs).unwrap();
    // Still high: pending again.
    assert!(is_pending(&mut g, V0, 33));
    assert_eq!(run_round(&mut g, V0, &mut lrs), [33]);
    // The device drops the line: nothing more.
    g.set_line(V0, 33, false).unwrap();
    assert!(!is_pending(&mut g, V0, 33));
    assert!(run_round(&mut g, V0, &mut lrs).is_empty());
    // ICPENDR cannot clear a level interrupt whose line is high.
    g.set_line(V0, 33, true).unwrap();
    wr(&mut g, V0, gicd(0x284), Word, 1 << 1);
    assert!(is_pending(&mut g, V0, 33));
}

fn edge_latches_and_relatches(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 32);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    set_edge(&mut g, V0, 34);
    enable(&mut g, V0, 34);
    g.set_line(V0, 34, true).unwrap();
    g.set_line(V0, 34, false).unwrap();
    assert!(
        is_pending(&mut g, V0, 34),
        "edge latched after the line fell"
    );
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.ack(), Some(34));
    // A new edge while the first is being handled.
    g.inject(V0, 34).unwrap();
    lrs.eoi(34);
    g.sync(V0, &mut lrs).unwrap();
    assert!(is_pending(&mut g, V0, 34), "second edge not lost");
    assert_eq!(run_round(&mut g, V0, &mut lrs), [34]);
    assert!(run_round(&mut g, V0, &mut lrs).is_empty());
}

fn active_registers(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 32);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    wr(&mut g, V0, gicd(0x304), Word, 1 << 5);
    assert!(is_active(&mut g, V0, 37));
    assert_eq!(rd(&mut g, V0, gicd(0x384), Word), 1 << 5);
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.valid()[0].state, LrStatus::Active);
    g.sync(V0, &mut lrs).unwrap();
    assert!(
        is_active(&mut g, V0, 37),
        "untouched active LR stays active"
    );
    wr(&mut g, V0, gicd(0x384), Word, 1 << 5);
    assert!(!is_active(&mut g, V0, 37));
    g.flush(V0, &mut lrs).unwrap();
    assert!(lrs.valid().is_empty());
}

fn remote_change_to_resident_interrupt(model: Model, version: GicVersion) {
    let mut g = make(model, version, 2, 32);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    set_edge(&mut g, V0, 40);
    enable(&mut g, V0, 40);
    g.inject(V0, 40).unwrap();
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.ack(), Some(40));
    // While vCPU 0 runs with 40 active in an LR, vCPU 1 re-pends it, then
    // clears the pending state: the owner is kicked each time.
    let k = wr(&mut g, V1, gicd(0x204), Word, 1 << 8);
    assert!(k.contains(V0));
    let k = wr(&mut g, V1, gicd(0x284), Word, 1 << 8);
    assert!(k.contains(V0));
    g.sync(V0, &mut lrs).unwrap();
    // The clear wins over the LR's pending view; the LR's active state stays.
    assert!(!is_pending(&mut g, V0, 40));
    assert!(is_active(&mut g, V0, 40));
    // Now vCPU 1 deactivates it while it is resident again.
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.valid()[0].state, LrStatus::Active);
    let k = wr(&mut g, V1, gicd(0x384), Word, 1 << 8);
    assert!(k.contains(V0));
    g.sync(V0, &mut lrs).unwrap();
    assert!(!is_active(&mut g, V0, 40), "software deactivation wins");
    g.flush(V0, &mut lrs).unwrap();
    assert!(lrs.valid().is_empty());
}

fn inject_into_idle_vcpu(model: Model, version: GicVersion) {
    let mut g = make(model, version, 2, 32);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    enable(&mut g, V1, 27);
    set_edge(&mut g, V1, 27);
    assert_eq!(g.inject(V1, 27).unwrap(), Some(V1));
    assert!(g.has_deliverable(V1));
    assert!(!g.has_deliverable(V0), "PPIs are banked");
    g.flush(V0, &mut lrs).unwrap();
    assert!(lrs.valid().is_empty());
    g.sync(V0, &mut lrs).unwrap();
    assert_eq!(run_round(&mut g, V1, &mut lrs), [27]);
    assert!(!g.has_deliverable(V1));
}

fn hw_mapped(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 64);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    g.map_hw(V0, 27, 27).unwrap();
    g.map_hw(V0, 48, 48).unwrap();
    enable(&mut g, V0, 27);
    enable(&mut g, V0, 48);
    g.inject(V0, 27).unwrap();
    g.inject(V0, 48).unwrap();
    g.flush(V0, &mut lrs).unwrap();
    let v = lrs.valid();
    assert_eq!(v.len(), 2);
    assert!(
        v.iter()
            .all(|l| l.hw == Some(l.intid) && !l.eoi_maintenance)
    );
    assert!(g.map_hw(V0, 3, 3).is_err(), "SGIs cannot be forwarded");
    assert!(g.map_hw(V0, 40, 1020).is_err());
    assert!(g.map_hw(V0, 96, 96).is_err(), "beyond nr_spis");
    // The guest deactivates directly: the LR goes invalid.
    while let Some(i) = lrs.ack() {
        lrs.eoi(i);
    }
    g.sync(V0, &mut lrs).unwrap();
    assert!(!is_pending(&mut g, V0, 48) && !is_active(&mut g, V0, 48));
}

/// A hardware-mapped level interrupt whose line stays high after the guest
/// deactivated it is not pending again in the vGIC: the physical GIC owns
/// that level and fires again if the device still asserts it. Only a new
/// rising edge of the line latches it once more.
fn hw_level_line_does_not_repend(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 64);
    let mut lrs = FakeLrs::new(4);
    enable_dist(&mut g);
    g.map_hw(V0, 48, 48).unwrap();
    enable(&mut g, V0, 48);
    g.set_line(V0, 48, true).unwrap();
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.intids(), [48]);
    assert_eq!(lrs.valid()[0].hw, Some(48));
    assert_eq!(lrs.ack(), Some(48));
    lrs.eoi(48);
    // The line is still high.
    g.sync(V0, &mut lrs).unwrap();
    assert!(!is_pending(&mut g, V0, 48) && !is_active(&mut g, V0, 48));
    assert!(!g.has_deliverable(V0));
    g.flush(V0, &mut lrs).unwrap();
    assert!(lrs.valid().is_empty(), "re-delivered: {:?}", lrs.valid());
    // Still high: no new edge, nothing latched.
    g.set_line(V0, 48, true).unwrap();
    assert!(!g.has_deliverable(V0));
    // Low, then high again: delivered once more.
    g.set_line(V0, 48, false).unwrap();
    g.set_line(V0, 48, true).unwrap();
    g.sync(V0, &mut lrs).unwrap();
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.intids(), [48]);
}

fn config_registers(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 32);
    // SGIs are edge and read-only.
    let sgi_cfg = reg_for(&g, V0, 0xC00, 0, 2);
    assert_eq!(rd(&mut g, V0, sgi_cfg, Word), 0xAAAA_AAAA);
    wr(&mut g, V0, sgi_cfg, Word, 0);
    assert_eq!(rd(&mut g, V0, sgi_cfg, Word), 0xAAAA_AAAA);
    // SPIs are programmable.
    wr(&mut g, V0, gicd(0xC08), Word, 0x8);
    assert_eq!(rd(&mut g, V0, gicd(0xC08), Word), 0x8);
    // Odd bits are reserved: only bit 2n+1 sticks.
    wr(&mut g, V0, gicd(0xC08), Word, 0xF);
    assert_eq!(rd(&mut g, V0, gicd(0xC08), Word), 0xA);
}

fn groups(model: Model, version: GicVersion) {
    let mut g = make(model, version, 1, 32);
    let expect = match version {
        GicVersion::V2 => 0,
        GicVersion::V3 => 0xFFFF_FFFF,
    };
    assert_eq!(rd(&mut g, V0, gicd(0x84), Word), expect);
    wr(&mut g, V0, gicd(0x84), Word, !expect & 0xFFFF_FFFF);
    assert_eq!(rd(&mut g, V0, gicd(0x84), Word), expect);
    // Unimplemented interrupts read as zero.
    assert_eq!(rd(&mut g, V0, gicd(0x88), Word), 0);
}

fn hostile_ops_are_isolated(model: Model, version: GicVersion) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let strat = proptest::collection::vec(
        (0u8..6, 0usize..3, any::<u32>(), 0u8..4, any::<u64>()),
        1..64,
    );
    runner
        .run(&strat, |ops| {
            let mut g = make(model, version, 2, 64);
            let other = make(model, version, 2, 64);
            let before = other.state_digest();
            let mut lrs = FakeLrs::new(4);
            for (kind, vcpu, a, s, val) in ops {
                let vcpu = VcpuId(vcpu);
                let size = [Byte, Half, Word, Double][s as usize];
                let base = if a & 1 == 0 {
                    XEN_GICD_BASE
                } else {
                    XEN_GICR_BASE
                };
                let gpa = GuestPhysAddr(base + u64::from(a >> 1) % 0x8_0000);
                let _ = match kind {
                    0 => g.mmio_read(vcpu, gpa, size).map(|_| ()),
                    1 => g.mmio_write(vcpu, gpa, size, val).map(|_| ()),
                    2 => g.sysreg_sgi(vcpu, SgiRegister::Sgi1r, val).map(|_| ()),
                    3 => g.inject(vcpu, a % 128).map(|_| ()),
                    4 => g.set_line(vcpu, a % 128, val & 1 != 0).map(|_| ()),
                    _ => g.maintenance(vcpu, &mut lrs),
                };
            }
            prop_assert_eq!(other.state_digest(), before);
            Ok(())
        })
        .unwrap();
}

macro_rules! for_all {
    ($($f:ident),* $(,)?) => {
        mod classic_v2 { $( #[test] fn $f() { super::$f(super::Model::Classic, super::GicVersion::V2) } )* }
        mod classic_v3 { $( #[test] fn $f() { super::$f(super::Model::Classic, super::GicVersion::V3) } )* }
        mod perirq_v2 { $( #[test] fn $f() { super::$f(super::Model::PerIrq, super::GicVersion::V2) } )* }
        mod perirq_v3 { $( #[test] fn $f() { super::$f(super::Model::PerIrq, super::GicVersion::V3) } )* }
    };
}

for_all!(
    hw_level_line_does_not_repend,
    typer_iidr_pidr2,
    ctlr_roundtrip,
    access_widths,
    priority_byte_and_word,
    enable_set_clear,
    pending_while_disabled,
    distributor_disabled_holds,
    injection_priority_order,
    overflow_and_refill,
    active_stays_and_higher_priority_preempts,
    level_follows_line,
    edge_latches_and_relatches,
    active_registers,
    inject_into_idle_vcpu,
    remote_change_to_resident_interrupt,
    hw_mapped,
    config_registers,
    groups,
    hostile_ops_are_isolated,
    refresh_matches_sync_and_flush,
);

// ---------------------------------------------------------------------
// GICv2 only.
// ---------------------------------------------------------------------

fn v2_sgir_target_filters(model: Model) {
    let mut g = make(model, GicVersion::V2, 4, 32);
    enable_dist(&mut g);
    // Target list {1, 3}, SGI 5, from vCPU 0.
    let k = wr(&mut g, V0, gicd(0xF00), Word, (0b1010 << 16) | 5);
    assert_eq!(k.iter().collect::<Vec<_>>(), [VcpuId(1), VcpuId(3)]);
    // All but self, SGI 6, from vCPU 2.
    let k = wr(&mut g, VcpuId(2), gicd(0xF00), Word, (1 << 24) | 6);
    assert_eq!(
        k.iter().collect::<Vec<_>>(),
        [VcpuId(0), VcpuId(1), VcpuId(3)]
    );
    // Self only, SGI 7, from vCPU 3.
    let k = wr(&mut g, VcpuId(3), gicd(0xF00), Word, (2 << 24) | 7);
    assert_eq!(k.iter().collect::<Vec<_>>(), [VcpuId(3)]);
    // Reserved filter: nothing.
    assert!(wr(&mut g, V0, gicd(0xF00), Word, (3 << 24) | 7).is_empty());
    // vCPU 1 sees SGI 5 from source 0 and SGI 6 from source 2.
    // Bytes are SGIs 4..7; each bit a source CPU.
    assert_eq!(rd(&mut g, V1, gicd(0xF24), Word), 0x0004_0100);
    let mut lrs = FakeLrs::new(4);
    g.flush(V1, &mut lrs).unwrap();
    let v = lrs.valid();
    assert_eq!(
        v.iter()
            .map(|l| (l.intid, l.source_cpu))
            .collect::<Vec<_>>(),
        [(5, 0), (6, 2)]
    );
    assert!(v.iter().all(|l| !l.group1), "GICv2 guests use Group 0");
}

fn v2_sgi_per_source_pending(model: Model) {
    let mut g = make(model, GicVersion::V2, 3, 32);
    enable_dist(&mut g);
    let mut lrs = FakeLrs::new(4);
    // SGI 1 to vCPU 0 from vCPUs 1 and 2.
    wr(&mut g, V1, gicd(0xF00), Word, (1 << 16) | 1);
    wr(&mut g, VcpuId(2), gicd(0xF00), Word, (1 << 16) | 1);
    assert_eq!(rd(&mut g, V0, gicd(0xF21), Byte), 0b110);
    // ISPENDR0 bits for SGIs are read-only on GICv2.
    wr(&mut g, V0, gicd(0x280), Word, 0xFFFF);
    assert!(is_pending(&mut g, V0, 1));
    // Two sources: two deliveries, each with its CPUID.
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.valid()[0].source_cpu, 1);
    assert!(lrs.valid()[0].eoi_maintenance, "another source waits");
    // With LRs to spare, no underflow interrupt: it would fire at once (at
    // most one LR valid) on every entry and never let the guest run.
    assert!(!lrs.underflow, "held-back source: no underflow");
    lrs.ack();
    lrs.eoi(1);
    g.sync(V0, &mut lrs).unwrap();
    g.flush(V0, &mut lrs).unwrap();
    assert_eq!(lrs.valid()[0].source_cpu, 2);
    lrs.ack();
    lrs.eoi(1);
    g.sync(V0, &mut lrs).unwrap();
    assert!(!is_pending(&mut g, V0, 1));
    // SPENDSGIR sets, CPENDSGIR clears, per source.
    wr(&mut g, V0, gicd(0xF20), Word, 0x0300_0000);
    assert_eq!(rd(&mut g, V0, gicd(0xF13), Byte), 0b11);
    wr(&mut g, V0, gicd(0xF13), Byte, 0b01);
    assert_eq!(rd(&mut g, V0, gicd(0xF23), Byte), 0b10);
    // Sources beyond the domain's vCPUs are ignored.
    wr(&mut g, V0, gicd(0xF22), Byte, 0xF8);
    assert_eq!(rd(&mut g, V0, gicd(0xF22), Byte), 0);
}

fn v2_itargetsr(model: Model) {
    let mut g = make(model, GicVersion::V2, 3, 32);
    enable_dist(&mut g);
    // 0-7 (INTIDs 0-31) read-only, the accessing CPU's own mask.
    assert_eq!(rd(&mut g, VcpuId(2), gicd(0x800), Word), 0x0404_0404);
    wr(&mut g, VcpuId(2), gicd(0x800), Word, 0);
    assert_eq!(rd(&mut g, VcpuId(2), gicd(0x81C), Byte), 0x04);
    // SPI 40: reset target vCPU 0; retarget to {1, 2} -> lowest, vCPU 1.
    assert_eq!(rd(&mut g, V0, gicd(0x828), Byte), 1);
    wr(&mut g, V0, gicd(0x828), Byte, 0b110);
    // A bit for a non-existent vCPU is dropped.
    wr(&mut g, V0, gicd(0x829), Byte, 0b1000);
    // SPIs 42 and 43 keep their reset target (vCPU 0).
    assert_eq!(rd(&mut g, V0, gicd(0x828), Word), 0x0101_0006);
    set_edge(&mut g, V0, 40);
    enable(&mut g, V0, 40);
    assert_eq!(g.inject(V0, 40).unwrap(), Some(V1));
    // SPI 41 targets nobody: stays pending, no kick.
    enable(&mut g, V0, 41);
    assert_eq!(g.inject(V0, 41).unwrap(), None);
    let mut lrs = FakeLrs::new(4);
    assert!(run_round(&mut g, V0, &mut lrs).is_empty());
    assert_eq!(run_round(&mut g, V1, &mut lrs), [40]);
    assert!(is_pending(&mut g, V0, 41));
    let k = wr(&mut g, V0, gicd(0x829), Byte, 0b100);
    assert!(
        k.contains(VcpuId(2)),
        "retargeting a pending SPI kicks the target"
    );
    assert_eq!(run_round(&mut g, VcpuId(2), &mut lrs), [41]);
}

fn v2_rerouting_kicks_who_must_act(model: Model) {
    let mut g = make(model, GicVersion::V2, 2, 32);
    enable_dist(&mut g);
    set_edge(&mut g, V0, 40);
    enable(&mut g, V0, 40);
    // Pending on vCPU 0 (its kick is in flight), then re-routed to vCPU 1:
    // vCPU 1 can take it now and must be told.
    assert_eq!(g.inject(V0, 40).unwrap(), Some(V0));
    let k = wr(&mut g, V0, gicd(0x828), Byte, 0b10);
    assert_eq!(k.iter().collect::<Vec<_>>(), [V1]);
    // In vCPU 1's list registers, re-routed back to vCPU 0, then raised
    // again: the stale copy is vCPU 1's, so vCPU 1 is kicked.
    let mut l1 = FakeLrs::new(4);
    g.flush(V1, &mut l1).unwrap();
    assert_eq!(l1.intids(), [40]);
    wr(&mut g, V0, gicd(0x828), Byte, 0b01);
    assert_eq!(g.inject(V0, 40).unwrap(), Some(V1));
    // vCPU 1 completes it; the new edge goes to vCPU 0, which is told.
    l1.ack();
    l1.eoi(40);
    g.refresh(V1, &mut l1).unwrap();
    assert!(l1.intids().is_empty());
    assert_eq!(g.take_kicks().iter().collect::<Vec<_>>(), [V0]);
    assert!(g.take_kicks().is_empty());
    let mut l0 = FakeLrs::new(4);
    g.flush(V0, &mut l0).unwrap();
    assert_eq!(l0.intids(), [40]);
}

fn v2_sysreg_sgi_is_refused(model: Model) {
    let mut g = make(model, GicVersion::V2, 2, 32);
    assert!(g.sysreg_sgi(V0, SgiRegister::Sgi1r, 1).is_err());
    assert_eq!(g.cpu_interface().map(|r| r.size), Some(0x2000));
}

macro_rules! for_models {
    ($m:ident: $($f:ident),* $(,)?) => {
        mod $m {
            mod classic { $( #[test] fn $f() { super::super::$f(super::super::Model::Classic) } )* }
            mod perirq { $( #[test] fn $f() { super::super::$f(super::super::Model::PerIrq) } )* }
        }
    };
}

for_models!(v2_only: v2_sgir_target_filters, v2_sgi_per_source_pending, v2_itargetsr, v2_rerouting_kicks_who_must_act, v2_sysreg_sgi_is_refused);

// ---------------------------------------------------------------------
// GICv3 only.
// ---------------------------------------------------------------------

fn v3_redistributor_frames(model: Model) {
    let mut g = make(model, GicVersion::V3, 18, 32);
    for v in [0usize, 5, 16, 17] {
        let t = rd(&mut g, V0, gicr(v, 0x8), Double);
        let aff = t >> 32;
        assert_eq!(aff, ((v as u64 >> 4) << 8) | (v as u64 & 0xF), "vCPU {v}");
        assert_eq!((t >> 8) & 0xFFFF, v as u64, "Processor_Number");
        assert_eq!(t & 0x10 != 0, v == 17, "Last only on the last vCPU");
        // 32-bit halves.
        assert_eq!(rd(&mut g, V0, gicr(v, 0x8), Word), t & 0xFFFF_FFFF);
        assert_eq!(rd(&mut g, V0, gicr(v, 0xC), Word), t >> 32);
    }
    assert!(g.mmio_read(V0, gicr(0, 0xC), Double).is_err());
    assert_eq!(rd(&mut g, V0, gicr(0, 0xFFE8), Word) >> 4 & 0xF, 3);
    // Frames past the domain's vCPUs are RAZ/WI.
    assert_eq!(rd(&mut g, V0, gicr(18, 0x8), Double), 0);
    // PROPBASER/PENDBASER: RAZ/WI, 64-bit.
    wr(&mut g, V0, gicr(0, 0x70), Double, 0xFFFF_0000);
    assert_eq!(rd(&mut g, V0, gicr(0, 0x70), Double), 0);
    assert_eq!(rd(&mut g, V0, gicr(0, 0x78), Double), 0);
    assert!(g.mmio_read(V0, gicr(0, 0x70), Byte).is_err());
}

fn v3_waker_handshake(model: Model) {
    let mut g = make(model, GicVersion::V3, 2, 32);
    assert_eq!(rd(&mut g, V1, gicr(1, 0x14), Word), 0b110);
    wr(&mut g, V1, gicr(1, 0x14), Word, 0);
    assert_eq!(
        rd(&mut g, V1, gicr(1, 0x14), Word),
        0,
        "ChildrenAsleep follows"
    );
    assert_eq!(
        rd(&mut g, V0, gicr(0, 0x14), Word),
        0b110,
        "per redistributor"
    );
    // ChildrenAsleep is read-only.
    wr(&mut g, V0, gicr(0, 0x14), Word, 0b100);
    assert_eq!(rd(&mut g, V0, gicr(0, 0x14), Word), 0);
    assert!(g.mmio_read(V0, gicr(0, 0x14), Byte).is_err());
}

fn v3_sgi_frame_is_banked(model: Model) {
    let mut g = make(model, GicVersion::V3, 2, 32);
    // vCPU 0 programs vCPU 1's frame.
    wr(&mut g, V0, sgi_frame(1, 0x100), Word, 1 << 27);
    wr(&mut g, V0, sgi_frame(1, 0x41B), Byte, 0xA0);
    assert_eq!(
        rd(&mut g, V1, sgi_frame(1, 0x100), Word) & (1 << 27),
        1 << 27
    );
    assert_eq!(rd(&mut g, V0, sgi_frame(0, 0x100), Word) & (1 << 27), 0);
    assert_eq!(rd(&mut g, V1, sgi_frame(1, 0x418), Word), 0xA000_0000);
    // The distributor's private range is RAZ/WI with ARE.
    wr(&mut g, V0, gicd(0x100), Word, 0xFFFF_FFFF);
    assert_eq!(rd(&mut g, V0, gicd(0x100), Word), 0);
    assert_eq!(rd(&mut g, V0, gicd(0x800), Word), 0, "ITARGETSR RAZ");
    // The SGI frame has no SPI registers.
    assert_eq!(rd(&mut g, V0, sgi_frame(0, 0x104), Word), 0);
    // IGRPMODR0 and NSACR RAZ/WI.
    wr(&mut g, V0, sgi_frame(0, 0xD00), Word, 0xFFFF_FFFF);
    assert_eq!(rd(&mut g, V0, sgi_frame(0, 0xD00), Word), 0);
    assert_eq!(rd(&mut g, V0, sgi_frame(0, 0xE00), Word), 0);
}

fn v3_irouter(model: Model) {
    let mut g = make(model, GicVersion::V3, 20, 64);
    enable_dist(&mut g);
    let r = |i: u64| gicd(0x6000 + 8 * i);
    // Route SPI 40 to vCPU 17 (Aff1 = 1, Aff0 = 1).
    wr(&mut g, V0, r(40), Double, 0x0101);
    assert_eq!(rd(&mut g, V0, r(40), Double), 0x0101);
    set_edge(&mut g, V0, 40);
    enable(&mut g, V0, 40);
    assert_eq!(g.inject(V0, 40).unwrap(), Some(VcpuId(17)));
    // 32-bit halves; reserved bits are dropped.
    wr(&mut g, V0, r(41), Word, 0xFFFF_FFFF);
    assert_eq!(rd(&mut g, V0, r(41), Word), 0x80FF_FFFF);
    wr(&mut g, V0, GuestPhysAddr(r(41).0 + 4), Word, 0xFFFF_FFFF);
    assert_eq!(rd(&mut g, V0, r(41), Double), 0xFF_80FF_FFFF);
    assert!(g.mmio_read(V0, GuestPhysAddr(r(41).0 + 4), Double).is_err());
    // IRM = 1: vCPU 0.
    wr(&mut g, V0, r(42), Double, 1 << 31);
    set_edge(&mut g, V0, 42);
    enable(&mut g, V0, 42);
    assert_eq!(g.inject(V1, 42).unwrap(), Some(V0));
    // An affinity matching no vCPU: undelivered but pending.
    wr(&mut g, V0, r(43), Double, 0x0500);
    enable(&mut g, V0, 43);
    assert_eq!(g.inject(V0, 43).unwrap(), None);
    assert!(is_pending(&mut g, V0, 43));
    // IROUTER for INTIDs below 32 and beyond the SPIs: RAZ/WI.
    wr(&mut g, V0, r(5), Double, 1);
    assert_eq!(rd(&mut g, V0, r(5), Double), 0);
    assert_eq!(rd(&mut g, V0, r(200), Double), 0);
}

fn v3_sgi_affinity_routing(model: Model) {
    let mut g = make(model, GicVersion::V3, 20, 32);
    enable_dist(&mut g);
    // SGI 3 to Aff1 = 1, TargetList {0, 2} -> vCPUs 16 and 18.
    let v = (3u64 << 24) | (1 << 16) | 0b101;
    let k = g.sysreg_sgi(V0, SgiRegister::Sgi1r, v).unwrap();
    assert_eq!(k.iter().collect::<Vec<_>>(), [VcpuId(16), VcpuId(18)]);
    // Aff1 = 0, TargetList {1}: vCPU 1.
    let k = g
        .sysreg_sgi(V0, SgiRegister::Sgi1r, (4 << 24) | 0b10)
        .unwrap();
    assert_eq!(k.iter().collect::<Vec<_>>(), [V1]);
    // Non-existent affinities: nobody.
    let k = g
        .sysreg_sgi(V0, SgiRegister::Sgi1r, (4 << 24) | (7 << 16) | 1)
        .unwrap();
    assert!(k.is_empty());
    // IRM: everyone but the sender.
    let k = g
        .sysreg_sgi(VcpuId(5), SgiRegister::Sgi1r, (1 << 40) | (2 << 24))
        .unwrap();
    assert_eq!(k.iter().count(), 19);
    assert!(!k.contains(VcpuId(5)));
    // Group 0 and other-security-state SGIs do not reach Group 1 SGIs.
    let k = g
        .sysreg_sgi(V0, SgiRegister::Sgi0r, (9 << 24) | 0b10)
        .unwrap();
    assert!(k.is_empty());
    let k = g
        .sysreg_sgi(V0, SgiRegister::Asgi1r, (9 << 24) | 0b10)
        .unwrap();
    assert!(k.is_empty());
    let mut lrs = FakeLrs::new(4);
    // vCPU 16 got SGI 3 by target list and SGI 2 by broadcast.
    assert_eq!(run_round(&mut g, VcpuId(16), &mut lrs), [2, 3]);
    assert_eq!(run_round(&mut g, VcpuId(5), &mut lrs), Vec::<u32>::new());
    let mut got = run_round(&mut g, V1, &mut lrs);
    got.sort();
    assert_eq!(got, [2, 4]);
}

fn v3_native_multi_region(model: Model) {
    let host = HostGic::V3 {
        gicd: HostPhysAddr(0x0800_0000),
        redists: vec![
            HostRange::new(HostPhysAddr(0x080A_0000), 2 * V3_GICR_STRIDE),
            HostRange::new(HostPhysAddr(0x4000_0000), 8 * V3_GICR_STRIDE),
        ],
    };
    let layout = VgicLayout::native(&host, 3).unwrap();
    let cfg = VgicConfig::new(GicVersion::V3, layout, 3, 64);
    let mut g = Vgic::new(model, cfg).unwrap();
    assert_eq!(g.regions().len(), 3);
    let t = |g: &mut Vgic, a: u64| rd(g, V0, GuestPhysAddr(a + 8), Double);
    let t1 = t(&mut g, 0x080A_0000 + V3_GICR_STRIDE);
    assert_eq!((t1 >> 8) & 0xFFFF, 1);
    assert!(t1 & 0x10 != 0, "Last at the end of the first region");
    let t2 = t(&mut g, 0x4000_0000);
    assert_eq!((t2 >> 8) & 0xFFFF, 2);
    assert!(t2 & 0x10 != 0, "Last on the domain's last vCPU");
    assert!(t(&mut g, 0x080A_0000) & 0x10 == 0);
    // The gap between regions is not ours.
    assert!(g.mmio_read(V0, GuestPhysAddr(0x080E_0000), Word).is_err());
    assert_eq!(rd(&mut g, V0, GuestPhysAddr(0x0800_0004), Word) & 0x1F, 2);
}

for_models!(v3_only: v3_redistributor_frames, v3_waker_handshake, v3_sgi_frame_is_banked, v3_irouter, v3_sgi_affinity_routing, v3_native_multi_region);

#[test]
fn models_are_selectable() {
    let g = make(Model::PerIrq, GicVersion::V3, 1, 32);
    assert_eq!(g.model(), Model::PerIrq);
    let g = make(Model::Classic, GicVersion::V3, 1, 32);
    assert_eq!(g.model(), Model::Classic);
}

/// A random operation: kind, vCPU, offset, access size, value.
type HostOp = (u8, usize, u32, u8, u64);

/// Applies host operation `kind` (0 to 5: distributor read or write, SGI
/// frame write, injection, line change, SGI register) to `a` and `b`, which
/// must answer alike.
fn host_op_agrees(a: &mut Vgic, b: &mut Vgic, op: HostOp) -> Result<(), TestCaseError> {
    let (kind, vcpu, off, s, val) = op;
    let v = VcpuId(vcpu);
    let size = [Byte, Half, Word, Double][s as usize];
    // Bias towards the per-interrupt registers.
    let off = u64::from(off % 0xD00) & !(size.bytes() - 1);
    match kind {
        0 => prop_assert_eq!(
            a.mmio_read(v, gicd(off), size),
            b.mmio_read(v, gicd(off), size)
        ),
        1 => prop_assert_eq!(
            a.mmio_write(v, gicd(off), size, val),
            b.mmio_write(v, gicd(off), size, val)
        ),
        2 => prop_assert_eq!(
            a.mmio_write(v, sgi_frame(vcpu, off & 0xFFF), Word, val),
            b.mmio_write(v, sgi_frame(vcpu, off & 0xFFF), Word, val)
        ),
        3 => prop_assert_eq!(
            a.inject(v, (val % 96) as u32),
            b.inject(v, (val % 96) as u32)
        ),
        4 => prop_assert_eq!(
            a.set_line(v, (val % 96) as u32, val & 0x100 != 0),
            b.set_line(v, (val % 96) as u32, val & 0x100 != 0)
        ),
        _ => prop_assert_eq!(
            a.sysreg_sgi(v, SgiRegister::Sgi1r, val),
            b.sysreg_sgi(v, SgiRegister::Sgi1r, val)
        ),
    }
    Ok(())
}

/// Random guest/host operation sequences: both models must give the same
/// MMIO read results and deliver the same list-register contents.
fn models_agree(version: GicVersion) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    let op = (0u8..7, 0usize..3, 0u32..0x1_0000, 0u8..4, any::<u64>());
    let delivered = std::cell::Cell::new(0usize);
    runner
        .run(&proptest::collection::vec(op, 1..80), |ops| {
            let mut a = make(Model::Classic, version, 3, 64);
            let mut b = make(Model::PerIrq, version, 3, 64);
            enable_dist(&mut a);
            enable_dist(&mut b);
            let (mut la, mut lb) = (FakeLrs::new(3), FakeLrs::new(3));
            for op in ops {
                let (kind, vcpu, _, _, val) = op;
                let v = VcpuId(vcpu);
                match kind {
                    0..=5 => host_op_agrees(&mut a, &mut b, op)?,
                    _ => {
                        a.flush(v, &mut la).unwrap();
                        b.flush(v, &mut lb).unwrap();
                        prop_assert_eq!(&la.regs, &lb.regs);
                        prop_assert_eq!(la.underflow, lb.underflow);
                        delivered.set(delivered.get() + la.valid().len());
                        if val & 1 != 0 {
                            la.ack();
                            lb.ack();
                        }
                        a.sync(v, &mut la).unwrap();
                        b.sync(v, &mut lb).unwrap();
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // The comparison is only meaningful if interrupts were delivered.
    assert!(delivered.get() > 0, "no interrupt ever reached an LR");
}

#[test]
fn models_agree_v2() {
    models_agree(GicVersion::V2);
}

#[test]
fn models_agree_v3() {
    models_agree(GicVersion::V3);
}

/// `refresh` may skip the fold and refill when nothing changed; it must
/// leave the list registers exactly as `sync` then `flush` would, for random
/// guest and host operations on several vCPUs (each with its own LRs).
/// vCPU `op.1` runs (acknowledges, completes, or neither, after `op.4`),
/// exits and is resumed: `a` through `refresh`, `b` through `sync` and
/// `flush`, which must leave the same list registers.
fn guest_round_agrees(
    a: &mut Vgic,
    b: &mut Vgic,
    la: &mut FakeLrs,
    lb: &mut FakeLrs,
    op: HostOp,
    skipped: &std::cell::Cell<usize>,
) -> Result<(), TestCaseError> {
    let v = VcpuId(op.1);
    la.guest_acts(op.4);
    lb.guest_acts(op.4);
    let before = la.regs.clone();
    let quiet = a.quiet(v, la.count());
    // Half the rounds take the return path's combined call, whose kicks
    // must be the ones `take_kicks` reports after a sync and flush.
    let kicks = if op.4 & (1 << 40) != 0 {
        a.refresh_and_take_kicks(v, la).unwrap()
    } else {
        a.refresh(v, la).unwrap();
        a.take_kicks()
    };
    b.sync(v, lb).unwrap();
    b.flush(v, lb).unwrap();
    if la.regs == before {
        skipped.set(skipped.get() + 1);
    }
    prop_assert_eq!(kicks, b.take_kicks());
    prop_assert_eq!(&la.regs, &lb.regs);
    // A quiet vCPU's return path may skip the refresh entirely.
    if quiet {
        prop_assert_eq!(&la.regs, &before);
        prop_assert!(kicks.is_empty());
    }
    prop_assert_eq!(la.underflow, lb.underflow);
    prop_assert_eq!(a.has_deliverable(v), b.has_deliverable(v));
    Ok(())
}

fn refresh_matches_sync_and_flush(model: Model, version: GicVersion) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    let op = (0u8..10, 0usize..3, 0u32..0x1_0000, 0u8..4, any::<u64>());
    let skipped = std::cell::Cell::new(0usize);
    runner
        .run(&proptest::collection::vec(op, 1..100), |ops| {
            let mut a = make(model, version, 3, 64);
            let mut b = make(model, version, 3, 64);
            enable_dist(&mut a);
            enable_dist(&mut b);
            let mut la = vec![FakeLrs::new(3); 3];
            let mut lb = vec![FakeLrs::new(3); 3];
            for v in 0..3 {
                a.flush(VcpuId(v), &mut la[v]).unwrap();
                b.flush(VcpuId(v), &mut lb[v]).unwrap();
            }
            for op in ops {
                if op.0 < 6 {
                    host_op_agrees(&mut a, &mut b, op)?;
                } else {
                    guest_round_agrees(&mut a, &mut b, &mut la[op.1], &mut lb[op.1], op, &skipped)?;
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(skipped.get() > 0, "the fast path never ran");
}

/// `out`, the rendering of one step's result, followed by what the vGIC
/// reports after it: deliverable vCPUs, kicks (taken) and state digest.
fn with_state<G: VirtualGic>(g: &mut G, out: String) -> String {
    let deliverable: Vec<bool> = (0..g.nr_vcpus())
        .map(|i| g.has_deliverable(VcpuId(i)))
        .collect();
    format!(
        "{out} {:?} {deliverable:?} {:x}",
        g.take_kicks(),
        g.state_digest()
    )
}

/// One random operation on `g`, with its result rendered for comparison:
/// an MMIO access (anywhere in the distributor, including its
/// identification registers, `GICD_CTLR` and `GICD_IROUTER`, or in an SGI
/// frame), an
/// injection, a line change, an SGI register write, a hardware mapping, or
/// a guest round on vCPU `op.1` (the guest acknowledges, completes or
/// leaves its list registers, then `refresh`, `sync` + `flush` or
/// `maintenance` runs).
fn apply_op<G: VirtualGic>(g: &mut G, lrs: &mut [FakeLrs], op: HostOp) -> String {
    let (kind, vcpu, off, s, val) = op;
    let v = VcpuId(vcpu);
    let size = [Byte, Half, Word, Double][s as usize];
    let off = u64::from(off);
    let intid = (val % 100) as u32;
    let out = match kind % 12 {
        0 => format!("{:?}", g.mmio_read(v, gicd(off % 0x1000), size)),
        1 => format!("{:?}", g.mmio_read(v, gicd(off % 0x10), size)),
        2 => format!("{:?}", g.mmio_read(v, gicd(0x6000 + off % 0x400), size)),
        // One write in sixteen goes to GICD_CTLR (the distributor enable).
        3 => {
            let at = if off % 16 == 0 { 0 } else { off % 0xD00 };
            format!("{:?}", g.mmio_write(v, gicd(at), size, val))
        }
        4 => format!(
            "{:?}",
            g.mmio_write(v, sgi_frame(vcpu, off % 0xD00), size, val)
        ),
        5 => format!("{:?}", g.inject(v, intid)),
        6 => format!("{:?}", g.set_line(v, intid, val & 0x100 != 0)),
        // The SGI registers: ICC_SGI1R_EL1 on GICv3, GICD_SGIR (mostly
        // word writes, its only legal size) on GICv2.
        7 if g.version() == GicVersion::V2 => {
            let sz = if val & 1 == 0 { Word } else { size };
            format!("{:?}", g.mmio_write(v, gicd(0xF00), sz, val))
        }
        7 => format!("{:?}", g.sysreg_sgi(v, SgiRegister::Sgi1r, val)),
        8 => format!("{:?}", g.map_hw(v, intid, 16 + (off % 1000) as u32)),
        _ => {
            let Some(l) = lrs.get_mut(vcpu) else {
                return String::new();
            };
            l.guest_acts(val);
            let r = match kind % 12 {
                9 => g.refresh(v, l),
                10 => g.sync(v, l).and_then(|()| g.flush(v, l)),
                _ => g.maintenance(v, l),
            };
            format!("{r:?} {:?} {}", l.regs, l.underflow)
        }
    };
    with_state(g, out)
}

/// The direct paths of a backend (injection, fold and fill through
/// [`Backend::update`], the fast identification-register read) against
/// the generic ones ([`Reference`]: full loads and stores, the delivery
/// order copied out): for random operation sequences on three vCPUs, the
/// same results, list registers, kicks and state digest after every step.
fn direct_matches_reference<B: Backend>(version: GicVersion) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    let op = (0u8..12, 0usize..3, 0u32..0x1_0000, 0u8..4, any::<u64>());
    let cfg = || VgicConfig::new(version, VgicLayout::xen_virtual(version, 3), 3, 64);
    let delivered = std::cell::Cell::new(0usize);
    runner
        .run(&proptest::collection::vec(op, 1..150), |ops| {
            let mut a = Emulator::<B>::new(cfg()).unwrap();
            let mut b = Emulator::<Reference<B>>::new(cfg()).unwrap();
            enable_dist(&mut a);
            enable_dist(&mut b);
            let (mut la, mut lb) = (vec![FakeLrs::new(3); 3], vec![FakeLrs::new(3); 3]);
            for op in ops {
                prop_assert_eq!(apply_op(&mut a, &mut la, op), apply_op(&mut b, &mut lb, op));
            }
            delivered.set(delivered.get() + la.iter().map(|l| l.valid().len()).sum::<usize>());
            Ok(())
        })
        .unwrap();
    assert!(delivered.get() > 0, "no interrupt ever reached an LR");
}

#[test]
fn direct_matches_reference_classic_v2() {
    direct_matches_reference::<Classic>(GicVersion::V2);
}

#[test]
fn direct_matches_reference_classic_v3() {
    direct_matches_reference::<Classic>(GicVersion::V3);
}

#[test]
fn direct_matches_reference_perirq_v2() {
    direct_matches_reference::<PerIrq>(GicVersion::V2);
}

#[test]
fn direct_matches_reference_perirq_v3() {
    direct_matches_reference::<PerIrq>(GicVersion::V3);
}

/// Writes bit `intid % 32` of the per-interrupt register at `base` (one
/// bit per interrupt) as `vcpu`: the distributor for SPIs (and all of
/// GICv2), the vCPU's SGI frame otherwise.
fn set_bit<G: VirtualGic>(g: &mut G, vcpu: usize, base: u64, intid: u32) -> String {
    let word = u64::from(intid / 32) * 4;
    let a = if g.version() == GicVersion::V3 && intid < 32 {
        sgi_frame(vcpu, base + word)
    } else {
        gicd(base + word)
    };
    format!(
        "{:?}",
        g.mmio_write(VcpuId(vcpu), a, Word, 1 << (intid % 32))
    )
}

/// One step of [`direct_refresh_matches_cycle`] on `g`, its results
/// rendered for comparison. The INTIDs come from a small set (SGIs 1 and
/// 2, the timer PPI 27, SPIs 40 and 41; on GICv2 also SGIs from other
/// vCPUs, through `GICD_SGIR`) so that the same interrupts fire again and
/// again, as on a delivery exit: the guest takes and completes
/// everything it holds in one round (the list registers go invalid without
/// an exit), or acknowledges one, or completes one, or does nothing, and
/// the vCPU is refreshed.
fn direct_step<G: VirtualGic>(g: &mut G, lrs: &mut [FakeLrs], op: (u8, usize, u8, u64)) -> String {
    let (kind, vcpu, pick, val) = op;
    let v = VcpuId(vcpu);
    let intid = [1, 2, 27, 40, 41][usize::from(pick % 5)];
    let out = match kind % 12 {
        0 | 1 => format!("{:?}", g.inject(v, intid)),
        2 => format!("{:?}", g.set_line(v, intid, val & 1 != 0)),
        // GICD_SGIR on GICv2: SGI 1 or 2 to the listed vCPUs, to all
        // others, or to itself (filter 3 reaches no one).
        3 if g.version() == GicVersion::V2 => {
            let sgi = 1 + u64::from(pick & 1);
            let sgir = ((val & 3) << 24) | (((val >> 8) & 3) << 16) | sgi;
            format!("{:?}", g.mmio_write(v, gicd(0xF00), Word, sgir))
        }
        3 => format!("{:?}", g.sysreg_sgi(v, SgiRegister::Sgi1r, val)),
        // Disable or enable, make pending, clear pending, clear active.
        4 => set_bit(
            g,
            vcpu,
            [0x100, 0x180, 0x200, 0x280, 0x380][(val % 5) as usize],
            intid,
        ),
        5 => {
            // A priority change (byte write) or a hardware mapping.
            if val & 1 == 0 {
                let a = if g.version() == GicVersion::V3 && intid < 32 {
                    sgi_frame(vcpu, 0x400 + u64::from(intid))
                } else {
                    gicd(0x400 + u64::from(intid))
                };
                format!("{:?}", g.mmio_write(v, a, Byte, val >> 8))
            } else {
                format!("{:?}", g.map_hw(v, intid.max(16), intid.max(16)))
            }
        }
        _ => {
            let Some(l) = lrs.get_mut(vcpu) else {
                return String::new();
            };
            match val % 4 {
                0 => {
                    while let Some(i) = l.ack() {
                        l.eoi(i);
                    }
                }
                c => l.guest_acts(c - 1),
            }
            let r = if kind % 12 == 11 {
                g.sync(v, l).and_then(|()| g.flush(v, l))
            } else {
                g.refresh(v, l)
            };
            format!("{r:?} {:?} {}", l.regs, l.underflow)
        }
    };
    with_state(g, out)
}

/// The direct refresh (a delivery exit whose list registers come back
/// with the same interrupts) against the full fold and fill of
/// [`Reference`], which never takes it: random steps on two vCPUs with
/// interrupts that fire again while in (or just out of) list registers,
/// and the same results, list registers, kicks and digest after each.
fn direct_refresh_matches_cycle<B: Backend>(version: GicVersion) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    let op = (0u8..12, 0usize..2, any::<u8>(), any::<u64>());
    let cfg = || VgicConfig::new(version, VgicLayout::xen_virtual(version, 2), 2, 32);
    runner
        .run(&proptest::collection::vec(op, 1..120), |ops| {
            let mut a = Emulator::<B>::new(cfg()).unwrap();
            let mut b = Emulator::<Reference<B>>::new(cfg()).unwrap();
            let (mut la, mut lb) = (vec![FakeLrs::new(2); 2], vec![FakeLrs::new(2); 2]);
            setup(&mut a);
            setup(&mut b);
            for op in ops {
                prop_assert_eq!(
                    direct_step(&mut a, &mut la, op),
                    direct_step(&mut b, &mut lb, op)
                );
            }
            Ok(())
        })
        .unwrap();
}

/// [`direct_refresh_matches_cycle`] for GICv2 SGIs alone: SGIs 1 and 2
/// sent by both vCPUs through `GICD_SGIR` and injected, guest rounds and
/// refreshes, so that a source's request often arrives while another
/// source's instance is held in a list register, or while the same
/// source's instance is, and the guest completes it before the exit
/// (the per-source injection and refresh shortcuts, against the generic
/// fold and fill).
fn v2_sgis_direct_match_cycle<B: Backend>() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    let kind = prop_oneof![Just(0u8), Just(3), Just(3), Just(6), Just(7), Just(11)];
    // Half the guest rounds take and complete everything (`val % 4 == 0`).
    let val = prop_oneof![any::<u64>(), any::<u64>().prop_map(|v| v & !3)];
    let op = (kind, 0usize..2, 0u8..2, val);
    let version = GicVersion::V2;
    let cfg = || VgicConfig::new(version, VgicLayout::xen_virtual(version, 2), 2, 32);
    // Half the cases use SGI 1 alone, so that it is often the only
    // interrupt queued (the direct refresh's condition).
    let case = (any::<bool>(), proptest::collection::vec(op, 1..80));
    runner
        .run(&case, |(one_sgi, ops)| {
            let mut a = Emulator::<B>::new(cfg()).unwrap();
            let mut b = Emulator::<Reference<B>>::new(cfg()).unwrap();
            let (mut la, mut lb) = (vec![FakeLrs::new(2); 2], vec![FakeLrs::new(2); 2]);
            setup(&mut a);
            setup(&mut b);
            for (kind, vcpu, pick, val) in ops {
                let op = (kind, vcpu, if one_sgi { 0 } else { pick }, val);
                prop_assert_eq!(
                    direct_step(&mut a, &mut la, op),
                    direct_step(&mut b, &mut lb, op)
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn v2_sgis_direct_match_cycle_classic() {
    v2_sgis_direct_match_cycle::<Classic>();
}

#[test]
fn v2_sgis_direct_match_cycle_perirq() {
    v2_sgis_direct_match_cycle::<PerIrq>();
}

/// Enables the distributor and the interrupts [`direct_step`] uses, on
/// both vCPUs, with the timer PPI hardware-mapped as the binary does.
fn setup<G: VirtualGic>(g: &mut G) {
    enable_dist(g);
    for v in 0..2 {
        for intid in [1, 2, 27, 40, 41] {
            set_bit(g, v, 0x100, intid);
        }
        g.map_hw(VcpuId(v), 27, 27).unwrap();
    }
}

#[test]
fn direct_refresh_matches_cycle_classic_v2() {
    direct_refresh_matches_cycle::<Classic>(GicVersion::V2);
}

#[test]
fn direct_refresh_matches_cycle_classic_v3() {
    direct_refresh_matches_cycle::<Classic>(GicVersion::V3);
}

#[test]
fn direct_refresh_matches_cycle_perirq_v2() {
    direct_refresh_matches_cycle::<PerIrq>(GicVersion::V2);
}

#[test]
fn direct_refresh_matches_cycle_perirq_v3() {
    direct_refresh_matches_cycle::<PerIrq>(GicVersion::V3);
}
