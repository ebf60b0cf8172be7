//! Host memory maps, `xen,static-mem` properties and domain allocations for
//! tessel-static-mem: arbitrary RAM and reserved regions, bank properties
//! decoded with arbitrary cell counts, then a sequence of reserve, static
//! and heap allocation and release operations on a few domains.
//!
//! Properties: nothing panics; after every operation the accepted static
//! banks are non-empty, 4 KiB aligned, inside host RAM and overlap neither
//! each other nor a reserved region (a bank wholly inside a /memreserve/
//! entry excepted); heap chunks are aligned, inside RAM and overlap nothing
//! reserved, no static bank and no other chunk; free memory overlaps
//! nothing in use. Every layout covers exactly the requested memory: its
//! pieces add up to `memory`, are disjoint in guest space, are backed by
//! exactly the domain's banks (direct-mapped: 1:1) or heap chunks, and
//! `gpa_to_hpa` agrees with them. A failed operation changes nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessel_addr::{GuestPhysAddr, HostPhysAddr, HostRange, PAGE_SIZE, SIZE_1G};
use tessel_static_mem::{
    GUEST_RAM_WINDOWS, HostMemory, RamLayout, Reserved, ReservedKind, parse_banks,
};

const DOMAINS: [&str; 3] = ["domU1", "domU2", "domU3"];

#[derive(Arbitrary, Debug)]
struct Range {
    start: u64,
    size: u64,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Right shift for every address and size, so MiB..GiB values are common.
    shift: u8,
    /// Clear the low 12 bits of addresses and sizes (mostly page-aligned maps).
    page_align: bool,
    ram: Vec<Range>,
    reserved: Vec<(Range, u8)>,
    props: [Prop; 3],
    ops: Vec<Op>,
}

/// A `xen,static-mem` property: raw cells, or banks encoded with the given
/// cell counts.
#[derive(Arbitrary, Debug)]
enum Prop {
    Raw {
        bytes: Vec<u8>,
        address_cells: u32,
        size_cells: u32,
    },
    Banks {
        banks: Vec<Range>,
        two_address_cells: bool,
        two_size_cells: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum Memory {
    /// Exactly the reserved banks' total.
    BanksTotal,
    /// Any amount in KiB.
    Kib(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Reserve(u8),
    AllocStatic {
        domain: u8,
        memory: Memory,
        direct_map: bool,
    },
    AllocHeap {
        domain: u8,
        kib: u32,
    },
    Release(u8),
}

struct Norm {
    shift: u32,
    page: bool,
}

impl Norm {
    fn v(&self, v: u64) -> u64 {
        let v = v >> self.shift;
        if self.page { v & !(PAGE_SIZE - 1) } else { v }
    }
    fn range(&self, r: &Range) -> HostRange {
        HostRange::new(HostPhysAddr(self.v(r.start)), self.v(r.size))
    }
}

fn kind(k: u8, i: usize) -> ReservedKind {
    match k % 5 {
        0 => ReservedKind::HypervisorImage,
        1 => ReservedKind::Module {
            kind: "multiboot,kernel".into(),
            domain: DOMAINS[i % DOMAINS.len()].into(),
        },
        2 => ReservedKind::DeviceMmio {
            node: format!("/dev@{i}"),
        },
        3 => ReservedKind::FdtReserved,
        _ => ReservedKind::MemReserve,
    }
}

fn encode(banks: &[HostRange], ac: u32, sc: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for b in banks {
        for (v, c) in [(b.start.0, ac), (b.size, sc)] {
            if c == 2 {
                out.extend_from_slice(&v.to_be_bytes());
            } else {
                out.extend_from_slice(&(v as u32).to_be_bytes());
            }
        }
    }
    out
}

/// The banks a domain's property decodes to, if it decodes.
fn decode(prop: &Prop, n: &Norm) -> Option<Vec<HostRange>> {
    match prop {
        Prop::Raw {
            bytes,
            address_cells,
            size_cells,
        } => parse_banks(bytes, *address_cells, *size_cells).ok(),
        Prop::Banks {
            banks,
            two_address_cells,
            two_size_cells,
        } => {
            let ac = if *two_address_cells { 2 } else { 1 };
            let sc = if *two_size_cells { 2 } else { 1 };
            let fit = |v: u64, c: u32| if c == 1 { v & 0xffff_ffff } else { v };
            let want: Vec<HostRange> = banks
                .iter()
                .take(300)
                .map(|r| {
                    let r = n.range(r);
                    HostRange::new(HostPhysAddr(fit(r.start.0, ac)), fit(r.size, sc))
                })
                .collect();
            let got = parse_banks(&encode(&want, ac, sc), ac, sc);
            match &got {
                Ok(g) => assert_eq!(g, &want, "parse_banks does not round-trip"),
                Err(e) => assert!(
                    want.is_empty() || want.len() > tessel_static_mem::MAX_BANKS,
                    "well-formed property refused: {e}"
                ),
            }
            got.ok()
        }
    }
}

fn wide_end(r: &HostRange) -> u128 {
    u128::from(r.start.0) + u128::from(r.size)
}

fn in_ram(mem: &HostMemory, r: &HostRange) -> bool {
    mem.ram().iter().any(|ram| ram.contains_range(r))
}

/// Everything in use or reserved, for the global invariants.
fn check_map(mem: &HostMemory, statics: &[Option<Vec<HostRange>>]) {
    let banks: Vec<HostRange> = statics.iter().flatten().flatten().copied().collect();
    for (i, b) in banks.iter().enumerate() {
        assert!(!b.is_empty() && b.end().is_some());
        assert!(b.is_aligned(PAGE_SIZE), "unaligned bank {b}");
        assert!(in_ram(mem, b), "bank {b} outside RAM");
        for o in &banks[i + 1..] {
            assert!(!b.overlaps(o), "banks {b} and {o} overlap");
        }
        for r in mem.reserved() {
            let inside_memreserve = r.what == ReservedKind::MemReserve && r.range.contains_range(b);
            assert!(
                !r.range.overlaps(b) || inside_memreserve,
                "bank {b} hits {r}"
            );
        }
    }
    let chunks: Vec<HostRange> = DOMAINS.iter().flat_map(|d| mem.heap_ranges(d)).collect();
    for (i, c) in chunks.iter().enumerate() {
        assert!(!c.is_empty() && c.is_aligned(PAGE_SIZE), "chunk {c}");
        assert!(in_ram(mem, c), "chunk {c} outside RAM");
        assert!(mem.reserved().iter().all(|r| !r.range.overlaps(c)));
        assert!(banks.iter().all(|b| !b.overlaps(c)), "chunk {c} on a bank");
        for o in &chunks[i + 1..] {
            assert!(!c.overlaps(o), "chunks {c} and {o} overlap");
        }
    }
    let free = mem.free_ranges();
    for (i, f) in free.iter().enumerate() {
        assert!(!f.is_empty() && f.is_aligned(PAGE_SIZE) && in_ram(mem, f));
        assert!(mem.reserved().iter().all(|r| !r.range.overlaps(f)));
        assert!(banks.iter().chain(&chunks).all(|b| !b.overlaps(f)));
        if let Some(next) = free.get(i + 1) {
            assert!(
                wide_end(f) <= u128::from(next.start.0),
                "free list unsorted"
            );
        }
    }
}

/// A layout covers exactly `bytes`, disjoint in guest space, backed by
/// exactly `host` (in order), and translates consistently.
fn check_layout(l: &RamLayout, bytes: u64, host: &[HostRange], direct: bool) {
    assert_eq!(l.total_bytes(), bytes);
    assert_eq!(l.is_direct_mapped(), direct);
    let bank_total: u128 = l.guest_banks().iter().map(|b| u128::from(b.size)).sum();
    assert_eq!(bank_total, u128::from(bytes));
    let pieces = l.pieces();
    for (i, p) in pieces.iter().enumerate() {
        assert!(!p.guest.is_empty() && p.guest.end().is_some());
        assert!(l.guest_banks().iter().any(|b| b.contains_range(&p.guest)));
        if direct {
            assert_eq!(p.guest.start.0, p.host.0);
        } else {
            assert!(GUEST_RAM_WINDOWS.iter().any(|w| w.contains_range(&p.guest)));
        }
        for o in &pieces[i + 1..] {
            assert!(!p.guest.overlaps(&o.guest), "guest pieces overlap");
        }
        let last = GuestPhysAddr(p.guest.start.0 + (p.guest.size - 1));
        assert_eq!(l.gpa_to_hpa(p.guest.start), Some(p.host));
        assert_eq!(
            l.gpa_to_hpa(last),
            Some(HostPhysAddr(p.host.0 + (p.guest.size - 1)))
        );
    }
    // The pieces' host ranges are `host`, byte for byte and in order
    // (packing may split a bank across the two guest RAM windows).
    let got: Vec<HostRange> = l.host_ranges().collect();
    assert_eq!(
        coalesce(&got),
        coalesce(host),
        "layout not backed by its host memory"
    );
}

/// Merges consecutive ranges where one ends at the next one's start.
fn coalesce(ranges: &[HostRange]) -> Vec<HostRange> {
    let mut out: Vec<HostRange> = Vec::new();
    for r in ranges.iter().filter(|r| !r.is_empty()) {
        match out.last_mut() {
            Some(m) if m.end() == Some(r.start) => m.size += r.size,
            _ => out.push(*r),
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let n = Norm {
        shift: u32::from(input.shift % 64),
        page: input.page_align,
    };
    let ram: Vec<HostRange> = input.ram.iter().take(8).map(|r| n.range(r)).collect();
    let reserved: Vec<Reserved> = input
        .reserved
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, (r, k))| Reserved::new(n.range(r), kind(*k, i)))
        .collect();
    let mut mem = match HostMemory::new(&ram, reserved) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let total_ram: u128 = ram.iter().map(|r| u128::from(r.size)).sum();
    let merged: u128 = mem.ram().iter().map(|r| u128::from(r.size)).sum();
    assert_eq!(merged, total_ram, "merging RAM changed its size");

    let props: Vec<Option<Vec<HostRange>>> = input.props.iter().map(|p| decode(p, &n)).collect();
    let mut statics: Vec<Option<Vec<HostRange>>> = vec![None; DOMAINS.len()];
    let mut built = [false; DOMAINS.len()];

    for op in input.ops.iter().take(16) {
        let before = mem.free_ranges();
        match op {
            Op::Reserve(d) => {
                let d = usize::from(*d) % DOMAINS.len();
                let Some(banks) = &props[d] else { continue };
                match mem.reserve_static(DOMAINS[d], banks) {
                    Ok(()) => {
                        assert!(statics[d].is_none(), "reserved twice");
                        statics[d] = Some(banks.clone());
                        assert_eq!(mem.static_banks(DOMAINS[d]), Some(banks.as_slice()));
                    }
                    Err(e) => {
                        let _ = e.to_string();
                        assert_eq!(mem.free_ranges(), before, "failed reserve changed the map");
                    }
                }
            }
            Op::AllocStatic {
                domain,
                memory,
                direct_map,
            } => {
                let d = usize::from(*domain) % DOMAINS.len();
                let total: u64 = statics[d].iter().flatten().map(|b| b.size).sum();
                let kib = match memory {
                    Memory::BanksTotal => total / 1024,
                    Memory::Kib(k) => *k,
                };
                match mem.allocate_static(DOMAINS[d], kib, *direct_map) {
                    Ok(l) => {
                        assert!(!built[d], "static banks claimed twice");
                        built[d] = true;
                        let banks = statics[d].as_ref().expect("allocated without reserve");
                        assert_eq!(Some(total), kib.checked_mul(1024));
                        check_layout(&l, total, banks, *direct_map);
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
            Op::AllocHeap { domain, kib } => {
                let d = usize::from(*domain) % DOMAINS.len();
                let kib = u64::from(*kib) >> (n.shift / 2);
                match mem.allocate_heap(DOMAINS[d], kib) {
                    Ok(l) => {
                        assert!(!built[d] && statics[d].is_none());
                        built[d] = true;
                        let chunks: Vec<HostRange> = mem.heap_ranges(DOMAINS[d]).collect();
                        check_layout(&l, kib * 1024, &chunks, false);
                        // Guest and host addresses share the chunk alignment.
                        for p in l.pieces() {
                            let align = p.guest.size.clamp(PAGE_SIZE, SIZE_1G);
                            assert!(p.guest.size.is_power_of_two());
                            assert_eq!(p.host.0 % align, 0, "host chunk alignment");
                            assert_eq!(p.guest.start.0 % align, 0, "guest chunk alignment");
                        }
                        let taken = before.iter().map(|r| r.size).sum::<u64>() - mem.free_bytes();
                        assert_eq!(taken, kib * 1024);
                    }
                    Err(e) => {
                        let _ = e.to_string();
                        assert_eq!(mem.free_ranges(), before, "failed allocation leaked");
                    }
                }
            }
            Op::Release(d) => {
                let d = usize::from(*d) % DOMAINS.len();
                let held: u64 = mem.heap_ranges(DOMAINS[d]).map(|r| r.size).sum();
                let free_before = mem.free_bytes();
                assert_eq!(mem.release(DOMAINS[d]), held);
                assert_eq!(mem.free_bytes(), free_before + held);
                built[d] = false;
            }
        }
        check_map(&mem, &statics);
    }
});
