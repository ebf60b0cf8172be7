//! Stage-2 table construction speed, against `aarch64-paging` as a baseline.
//!
//! Each iteration builds fresh tables (root allocation included) and drops
//! them, for both crates:
//! * identity maps of 1, 16 and 64 GiB at 1 GiB (block-friendly), and
//! * 64 MiB whose output address is only 4 KiB aligned, which forces
//!   16384 page descriptors (the baseline's `LinearMap` with the same
//!   offset).
//!
//! Tessel's tables live in [`FakeMemory`] (heap pages behind synthetic
//! physical addresses); `aarch64-paging` uses heap pages directly.

use aarch64_paging::descriptor::Stage2Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::linearmap::LinearMap;
use aarch64_paging::paging::{MemoryRegion, Stage2 as PagingStage2};
use criterion::{BenchmarkId, Criterion, black_box, criterion_main};
use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange, PAGE_SIZE, SIZE_1G};
use tessel_stage2::fake::{FakeMemory, FakeTlb};
use tessel_stage2::{Attrs, Stage2, Stage2Config};

const BASE: u64 = SIZE_1G;

fn baseline_attrs() -> Stage2Attributes {
    Stage2Attributes::VALID
        | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
        | Stage2Attributes::MEMATTR_NORMAL_OUTER_WB
        | Stage2Attributes::SH_INNER
        | Stage2Attributes::ACCESS_FLAG
        | Stage2Attributes::S2AP_ACCESS_RW
}

fn identity(c: &mut Criterion) {
    let config = Stage2Config::new(40, 40).expect("valid layout");
    let mut group = c.benchmark_group("identity_map");
    for gib in [1u64, 16, 64] {
        let size = gib * SIZE_1G;
        group.bench_with_input(BenchmarkId::new("tessel", gib), &size, |b, &size| {
            b.iter(|| {
                let mut s2 = Stage2::new(config, FakeMemory::new(), FakeTlb::default())
                    .expect("root allocation");
                s2.identity_map(HostRange::new(HostPhysAddr(BASE), size), Attrs::RAM)
                    .expect("map");
                black_box(s2.table_count())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("aarch64-paging", gib),
            &size,
            |b, &size| {
                b.iter(|| {
                    let mut map = IdMap::new(1, PagingStage2);
                    let region = MemoryRegion::new(BASE as usize, (BASE + size) as usize);
                    map.map_range(&region, baseline_attrs()).expect("map");
                    black_box(map.size())
                })
            },
        );
    }
    group.finish();
}

fn pages(c: &mut Criterion) {
    let config = Stage2Config::new(40, 40).expect("valid layout");
    let size = 64u64 << 20;
    let offset = PAGE_SIZE;
    let mut group = c.benchmark_group("page_map_64MiB");
    group.bench_function("tessel", |b| {
        b.iter(|| {
            let mut s2 = Stage2::new(config, FakeMemory::new(), FakeTlb::default())
                .expect("root allocation");
            s2.map(
                GuestRange::new(GuestPhysAddr(BASE), size),
                HostPhysAddr(BASE + offset),
                Attrs::RAM,
            )
            .expect("map");
            black_box(s2.table_count())
        })
    });
    group.bench_function("aarch64-paging", |b| {
        b.iter(|| {
            let mut map = LinearMap::new(1, offset as isize, PagingStage2);
            let region = MemoryRegion::new(BASE as usize, (BASE + size) as usize);
            map.map_range(&region, baseline_attrs()).expect("map");
            black_box(map.size())
        })
    });
    group.finish();
}

/// Runs every benchmark group.
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    identity(&mut c);
    pages(&mut c);
}

criterion_main!(benches);
