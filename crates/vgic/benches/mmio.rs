//! MMIO dispatch cost per register class, for both state models. Each
//! group has a `classic` entry (the baseline) and a `perirq` entry, so the
//! ratio reads directly off criterion's report. Every access goes through
//! [`VirtualGic::mmio_read`]/[`VirtualGic::mmio_write`] (or
//! [`VirtualGic::sysreg_sgi`]) with a guest-physical address, so the cost
//! includes the frame and register decode a trapped access pays.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tessel_addr::{AccessSize, GuestPhysAddr};
use tessel_vgic::config::{XEN_GICD_BASE, XEN_GICR_BASE};
use tessel_vgic::regs::{
    GICD_CTLR, GICD_ICENABLER, GICD_ICFGR, GICD_IPRIORITYR, GICD_IROUTER, GICD_ISENABLER,
    GICD_ISPENDR, GICD_ITARGETSR, GICD_SGIR, GICD_TYPER, GICR_SGI_BASE, GICR_TYPER, GICR_WAKER,
    SGI1R_INTID_SHIFT,
};
use tessel_vgic::{
    GicVersion, ListRegisters, LrState, Model, SgiRegister, VcpuId, Vgic, VgicConfig, VgicLayout,
    VirtualGic,
};

const V0: VcpuId = VcpuId(0);

fn make(model: Model, version: GicVersion) -> Vgic {
    let layout = VgicLayout::xen_virtual(version, 4);
    let mut g = Vgic::new(model, VgicConfig::new(version, layout, 4, 256)).unwrap();
    g.mmio_write(V0, GuestPhysAddr(XEN_GICD_BASE), AccessSize::Word, 0x13)
        .unwrap();
    g
}

struct Lrs([LrState; 4]);
impl ListRegisters for Lrs {
    fn count(&self) -> usize {
        4
    }
    fn read(&self, i: usize) -> LrState {
        self.0[i]
    }
    fn write(&mut self, i: usize, lr: LrState) {
        self.0[i] = lr;
    }
    fn set_underflow_irq(&mut self, _on: bool) {}
}

type Op = fn(&mut Vgic);

fn d(off: u64) -> GuestPhysAddr {
    GuestPhysAddr(XEN_GICD_BASE + off)
}

/// vCPU 0's redistributor: `RD_base` frame offsets below 64 KiB, the
/// `SGI_base` frame from [`GICR_SGI_BASE`] on.
fn r(off: u64) -> GuestPhysAddr {
    GuestPhysAddr(XEN_GICR_BASE + off)
}

fn rd32(g: &mut Vgic, at: GuestPhysAddr) {
    black_box(g.mmio_read(V0, at, AccessSize::Word).unwrap());
}

fn wr(g: &mut Vgic, at: GuestPhysAddr, size: AccessSize, value: u64) {
    black_box(g.mmio_write(V0, at, size, value).unwrap());
}

/// One entry per register class the guest reaches through a trap. Writes
/// repeat the same value, so every iteration sees the same steady state
/// (an SGI sent again is already pending, an enable bit already set).
fn cases() -> Vec<(&'static str, GicVersion, Op)> {
    use AccessSize::{Byte, Double, Word};
    vec![
        // Identification and control reads.
        ("v2 GICD_CTLR read", GicVersion::V2, |g| {
            rd32(g, d(GICD_CTLR))
        }),
        ("v2 GICD_TYPER read", GicVersion::V2, |g| {
            rd32(g, d(GICD_TYPER))
        }),
        ("v3 GICD_CTLR read", GicVersion::V3, |g| {
            rd32(g, d(GICD_CTLR))
        }),
        ("v3 GICD_TYPER read", GicVersion::V3, |g| {
            rd32(g, d(GICD_TYPER))
        }),
        // Enable set/clear (SPIs 32..63).
        ("v2 GICD_ISENABLER write", GicVersion::V2, |g| {
            wr(g, d(GICD_ISENABLER + 4), Word, 0xFFFF_FFFF)
        }),
        ("v3 GICD_ISENABLER write", GicVersion::V3, |g| {
            wr(g, d(GICD_ISENABLER + 4), Word, 0xFFFF_FFFF)
        }),
        ("v3 GICD_ICENABLER write", GicVersion::V3, |g| {
            wr(g, d(GICD_ICENABLER + 4), Word, 0xFFFF_0000)
        }),
        ("v3 GICD_ISPENDR write", GicVersion::V3, |g| {
            wr(g, d(GICD_ISPENDR + 4), Word, 1 << 8)
        }),
        // Priorities: the byte form Linux uses per interrupt, and a word.
        ("v2 GICD_IPRIORITYR byte write", GicVersion::V2, |g| {
            wr(g, d(GICD_IPRIORITYR + 41), Byte, 0xA0)
        }),
        ("v3 GICD_IPRIORITYR byte write", GicVersion::V3, |g| {
            wr(g, d(GICD_IPRIORITYR + 41), Byte, 0xA0)
        }),
        ("v3 GICD_IPRIORITYR word read", GicVersion::V3, |g| {
            rd32(g, d(GICD_IPRIORITYR + 40))
        }),
        // Routing: GICv2 target bytes, GICv3 affinity routes.
        ("v2 GICD_ITARGETSR byte write", GicVersion::V2, |g| {
            wr(g, d(GICD_ITARGETSR + 40), Byte, 2)
        }),
        ("v3 GICD_IROUTER write", GicVersion::V3, |g| {
            wr(g, d(GICD_IROUTER + 8 * 40), Double, 1)
        }),
        // Trigger configuration (SPIs 32..47).
        ("v2 GICD_ICFGR write", GicVersion::V2, |g| {
            wr(g, d(GICD_ICFGR + 8), Word, 0xAAAA_AAAA)
        }),
        ("v3 GICD_ICFGR write", GicVersion::V3, |g| {
            wr(g, d(GICD_ICFGR + 8), Word, 0xAAAA_AAAA)
        }),
        // Software-generated interrupts: SGI 1 to vCPU 1.
        ("v2 GICD_SGIR write", GicVersion::V2, |g| {
            wr(g, d(GICD_SGIR), Word, (1 << 17) | 1)
        }),
        ("v3 ICC_SGI1R_EL1 trap", GicVersion::V3, |g| {
            black_box(
                g.sysreg_sgi(V0, SgiRegister::Sgi1r, (1 << SGI1R_INTID_SHIFT) | 0b10)
                    .unwrap(),
            );
        }),
        // Redistributor frames: RD_base control and ID, SGI_base banked
        // registers for SGIs and PPIs.
        ("v3 GICR_WAKER write", GicVersion::V3, |g| {
            wr(g, r(GICR_WAKER), Word, 0)
        }),
        ("v3 GICR_TYPER read", GicVersion::V3, |g| {
            black_box(g.mmio_read(V0, r(GICR_TYPER), Double).unwrap());
        }),
        ("v3 GICR_ISENABLER0 write", GicVersion::V3, |g| {
            wr(g, r(GICR_SGI_BASE + GICD_ISENABLER), Word, 1 << 27)
        }),
        ("v3 GICR_IPRIORITYR byte write", GicVersion::V3, |g| {
            wr(g, r(GICR_SGI_BASE + GICD_IPRIORITYR + 27), Byte, 0xA0)
        }),
        ("v3 GICR_ICFGR1 write", GicVersion::V3, |g| {
            wr(g, r(GICR_SGI_BASE + GICD_ICFGR + 4), Word, 0)
        }),
        // Not MMIO: the list-register round trip around a guest entry.
        ("v3 inject+flush+sync (4 SPIs)", GicVersion::V3, |g| {
            let mut lrs = Lrs([LrState::INVALID; 4]);
            for i in 40..44 {
                g.inject(V0, i).unwrap();
            }
            g.flush(V0, &mut lrs).unwrap();
            for l in &mut lrs.0 {
                l.state = tessel_vgic::LrStatus::Invalid;
            }
            g.sync(V0, &mut lrs).unwrap();
        }),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, version, op) in cases() {
        let mut group = c.benchmark_group(name);
        for (label, model) in [("classic", Model::Classic), ("perirq", Model::PerIrq)] {
            let mut g = make(model, version);
            // SPIs 40..44 enabled so injection paths do real work.
            g.mmio_write(V0, d(0x104), AccessSize::Word, 0xF00).unwrap();
            group.bench_function(label, |b| b.iter(|| op(&mut g)));
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(200))
        .measurement_time(std::time::Duration::from_millis(600));
    targets = bench
}
criterion_main!(benches);
