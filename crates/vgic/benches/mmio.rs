//! MMIO dispatch cost per register class, for both state models. Each
//! group has a `classic` entry (the baseline) and a `perirq` entry, so the
//! ratio reads directly off criterion's report.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tessel_addr::{AccessSize, GuestPhysAddr};
use tessel_vgic::config::{XEN_GICD_BASE, XEN_GICR_BASE};
use tessel_vgic::{
    GicVersion, ListRegisters, LrState, Model, VcpuId, Vgic, VgicConfig, VgicLayout, VirtualGic,
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

fn cases() -> Vec<(&'static str, GicVersion, Op)> {
    vec![
        ("v3 GICD_CTLR read", GicVersion::V3, |g| {
            black_box(g.mmio_read(V0, d(0), AccessSize::Word).unwrap());
        }),
        ("v3 GICD_TYPER read", GicVersion::V3, |g| {
            black_box(g.mmio_read(V0, d(4), AccessSize::Word).unwrap());
        }),
        ("v3 GICD_ISENABLER write", GicVersion::V3, |g| {
            black_box(
                g.mmio_write(V0, d(0x104), AccessSize::Word, 0xFFFF_FFFF)
                    .unwrap(),
            );
        }),
        ("v3 GICD_IPRIORITYR byte write", GicVersion::V3, |g| {
            black_box(g.mmio_write(V0, d(0x421), AccessSize::Byte, 0xA0).unwrap());
        }),
        ("v3 GICD_IROUTER write", GicVersion::V3, |g| {
            black_box(
                g.mmio_write(V0, d(0x6000 + 8 * 40), AccessSize::Double, 1)
                    .unwrap(),
            );
        }),
        ("v3 GICR_WAKER write", GicVersion::V3, |g| {
            black_box(
                g.mmio_write(V0, GuestPhysAddr(XEN_GICR_BASE + 0x14), AccessSize::Word, 0)
                    .unwrap(),
            );
        }),
        ("v3 GICR_TYPER read", GicVersion::V3, |g| {
            black_box(
                g.mmio_read(V0, GuestPhysAddr(XEN_GICR_BASE + 0x8), AccessSize::Double)
                    .unwrap(),
            );
        }),
        ("v2 GICD_ITARGETSR byte write", GicVersion::V2, |g| {
            black_box(g.mmio_write(V0, d(0x828), AccessSize::Byte, 2).unwrap());
        }),
        ("v2 GICD_SGIR write", GicVersion::V2, |g| {
            black_box(
                g.mmio_write(V0, d(0xF00), AccessSize::Word, (1 << 24) | 1)
                    .unwrap(),
            );
        }),
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
