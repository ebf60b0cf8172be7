//! Tests of the host memory map: bank validation, reservation, claiming,
//! heap allocation and release.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;
use tessel_addr::{GuestPhysAddr, HostPhysAddr, HostRange, PAGE_SIZE, SIZE_1G, SIZE_2M};

use crate::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn hr(start: u64, size: u64) -> HostRange {
    HostRange::new(HostPhysAddr(start), size)
}

fn module(start: u64, size: u64, kind: &str, domain: &str) -> Reserved {
    Reserved::new(
        hr(start, size),
        ReservedKind::Module {
            kind: kind.into(),
            domain: domain.into(),
        },
    )
}

/// 2 GiB of RAM at 1 GiB (QEMU virt's default base), the hypervisor image at
/// its start, a kernel module, and the UART below RAM.
fn board() -> HostMemory {
    HostMemory::new(
        &[hr(0x4000_0000, 2 * GIB)],
        vec![
            Reserved::new(hr(0x4000_0000, 0x20_0000), ReservedKind::HypervisorImage),
            module(0x4400_0000, 0x100_0000, "multiboot,kernel", "domU1"),
            Reserved::new(
                hr(0x0900_0000, 0x1000),
                ReservedKind::DeviceMmio {
                    node: "/pl011@9000000".into(),
                },
            ),
        ],
    )
    .unwrap()
}

#[test]
fn host_ram_is_sorted_and_merged() {
    let m = HostMemory::new(
        &[
            hr(0x8000_0000, GIB),
            hr(0x4000_0000, GIB),
            hr(0x1_0000_0000, 0),
        ],
        vec![],
    )
    .unwrap();
    assert_eq!(m.ram(), &[hr(0x4000_0000, 2 * GIB)]);
    // A bank across the seam of two /memory entries is inside RAM.
    m.check_banks("d", &[hr(0x7000_0000, 0x2000_0000)]).unwrap();
    assert_eq!(m.free_bytes(), 2 * GIB);
}

#[test]
fn bad_host_ram_is_refused() {
    let e = HostMemory::new(&[hr(0x4000_0000, 0)], vec![]).unwrap_err();
    assert_eq!(e, RamError::NoRam);
    assert_eq!(e.to_string(), "host RAM (/memory) lists no non-empty range");

    let e = HostMemory::new(&[hr(0x4000_0000, GIB), hr(0x5000_0000, GIB)], vec![]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "host RAM ranges 0x40000000+0x40000000 and 0x50000000+0x40000000 overlap"
    );

    let e = HostMemory::new(&[hr(u64::MAX - 0xfff, 0x2000)], vec![]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "host RAM range 0xfffffffffffff000+0x2000 runs past the end of the 64-bit address space"
    );
}

#[test]
fn bank_overlapping_a_module_names_it() {
    let m = board();
    let e = m
        .check_banks("domU1", &[hr(0x4400_0000, 0x1000_0000)])
        .unwrap_err();
    assert_eq!(
        e,
        BankError::Overlap {
            index: 0,
            bank: hr(0x4400_0000, 0x1000_0000),
            other: module(0x4400_0000, 0x100_0000, "multiboot,kernel", "domU1"),
        }
    );
    assert_eq!(
        e.to_string(),
        "bank 0x44000000+0x10000000 overlaps the multiboot,kernel module of domU1 at \
         0x44000000+0x1000000"
    );
}

#[test]
fn bank_overlapping_the_hypervisor_is_refused() {
    let e = board()
        .check_banks("domU1", &[hr(0x4010_0000, 0x10_0000)])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank 0x40100000+0x100000 overlaps the hypervisor image at 0x40000000+0x200000"
    );
}

#[test]
fn bank_overlapping_fdt_reserved_memory_is_refused() {
    let m = HostMemory::new(
        &[hr(0x4000_0000, GIB)],
        vec![Reserved::new(
            hr(0x4800_0000, 0x1000),
            ReservedKind::FdtReserved,
        )],
    )
    .unwrap();
    let e = m
        .check_banks("d", &[hr(0x4000_0000, 0x1000_0000)])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank 0x40000000+0x10000000 overlaps a reserved-memory region of the host device tree \
         at 0x48000000+0x1000"
    );
}

#[test]
fn bank_inside_a_memreserve_entry_is_accepted_as_in_xen() {
    let mut m = HostMemory::new(
        &[hr(0x4000_0000, GIB)],
        vec![Reserved::new(
            hr(0x5000_0000, 0x1000_0000),
            ReservedKind::MemReserve,
        )],
    )
    .unwrap();
    let free = m.free_bytes();
    assert_eq!(free, GIB - 0x1000_0000);
    // Partial overlap: refused.
    let e = m
        .check_banks("d", &[hr(0x4800_0000, 0x1000_0000)])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank 0x48000000+0x10000000 overlaps a /memreserve/ entry of the host device tree \
         at 0x50000000+0x10000000"
    );
    // Entirely inside: accepted, and the heap still never touches it.
    m.reserve_static("d", &[hr(0x5000_0000, 0x800_0000)])
        .unwrap();
    assert_eq!(m.free_bytes(), free);
    // The rest of the memreserve region is still not heap memory.
    assert!(
        m.free_ranges()
            .iter()
            .all(|f| !f.overlaps(&hr(0x5000_0000, 0x1000_0000)))
    );
}

#[test]
fn bank_overlapping_device_mmio_is_refused() {
    // MMIO inside the RAM range (e.g. a carve-out described only as a device).
    let m = HostMemory::new(
        &[hr(0x4000_0000, GIB)],
        vec![Reserved::new(
            hr(0x6000_0000, 0x1_0000),
            ReservedKind::DeviceMmio {
                node: "/soc/ethernet@60000000".into(),
            },
        )],
    )
    .unwrap();
    let e = m
        .check_banks(
            "d",
            &[hr(0x5000_0000, 0x1000_0000), hr(0x6000_0000, 0x1000)],
        )
        .unwrap_err();
    assert_eq!(
        e,
        BankError::Overlap {
            index: 1,
            bank: hr(0x6000_0000, 0x1000),
            other: Reserved::new(
                hr(0x6000_0000, 0x1_0000),
                ReservedKind::DeviceMmio {
                    node: "/soc/ethernet@60000000".into()
                }
            ),
        }
    );
    assert_eq!(
        e.to_string(),
        "bank 0x60000000+0x1000 overlaps the MMIO registers of /soc/ethernet@60000000 at \
         0x60000000+0x10000"
    );
}

#[test]
fn bank_shape_errors() {
    let m = board();
    let e = m.check_banks("d", &[hr(0x5000_0000, 0)]).unwrap_err();
    assert_eq!(e.to_string(), "bank 0 (0x50000000+0x0) has size 0");

    let e = m
        .check_banks("d", &[hr(0x5000_0000, 0x1000), hr(0x5000_0800, 0x1000)])
        .unwrap_err();
    assert_eq!(
        e,
        BankError::Unaligned {
            index: 1,
            bank: hr(0x5000_0800, 0x1000)
        }
    );
    assert_eq!(
        e.to_string(),
        "bank 1 (0x50000800+0x1000) is not 4 KiB aligned (start and size must be multiples of 0x1000)"
    );
    let e = m.check_banks("d", &[hr(0x5000_0000, 0x1800)]).unwrap_err();
    assert!(matches!(e, BankError::Unaligned { index: 0, .. }));

    let e = m
        .check_banks("d", &[hr(u64::MAX - 0xfff, 0x2000)])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank 0 (0xfffffffffffff000+0x2000) runs past the end of the 64-bit address space"
    );

    assert_eq!(m.check_banks("d", &[]), Err(BankError::NoBanks));
    assert_eq!(BankError::NoBanks.to_string(), "no memory bank listed");

    let many: Vec<_> = (0..257u64)
        .map(|i| hr(0x5000_0000 + i * 0x1000, 0x1000))
        .collect();
    assert_eq!(
        m.check_banks("d", &many),
        Err(BankError::TooManyBanks { count: 257 })
    );
    m.check_banks("d", &many[..256]).unwrap();
}

#[test]
fn bank_outside_ram_is_refused() {
    let m = board();
    // Entirely outside.
    let e = m
        .check_banks("d", &[hr(0x1_0000_0000, 0x1000)])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank 0 (0x100000000+0x1000) is not inside host RAM (/memory)"
    );
    // Straddling the end of RAM.
    let e = m.check_banks("d", &[hr(0xBFFF_F000, 0x2000)]).unwrap_err();
    assert_eq!(
        e,
        BankError::OutsideRam {
            index: 0,
            bank: hr(0xBFFF_F000, 0x2000)
        }
    );
}

#[test]
fn banks_of_one_domain_must_not_overlap_each_other() {
    let e = board()
        .check_banks(
            "domU1",
            &[hr(0x5000_0000, 0x20_0000), hr(0x5010_0000, 0x20_0000)],
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank 0x50100000+0x200000 overlaps bank 0 of domU1's xen,static-mem at 0x50000000+0x200000"
    );
}

#[test]
fn a_static_range_is_reserved_by_exactly_one_domain() {
    let mut m = board();
    m.reserve_static("domU1", &[hr(0x5000_0000, 0x1000_0000)])
        .unwrap();
    assert_eq!(
        m.static_banks("domU1"),
        Some(&[hr(0x5000_0000, 0x1000_0000)][..])
    );
    let e = m
        .reserve_static(
            "domU2",
            &[hr(0x6000_0000, 0x100_0000), hr(0x5800_0000, 0x1000)],
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank 0x58000000+0x1000 overlaps bank 0 of domU1's xen,static-mem at 0x50000000+0x10000000"
    );
    // All or nothing: domU2's first (valid) bank was not reserved.
    assert_eq!(m.static_banks("domU2"), None);
    m.reserve_static("domU2", &[hr(0x6000_0000, 0x100_0000)])
        .unwrap();
    // The same domain cannot reserve twice, not even other ranges.
    let e = m
        .reserve_static("domU1", &[hr(0x7000_0000, 0x1000_0000)])
        .unwrap_err();
    assert_eq!(e, BankError::AlreadyReserved);
    assert_eq!(e.to_string(), "banks are already reserved for this domain");
    // check_banks alone still reports the overlap with its own reservation.
    assert!(matches!(
        m.check_banks("domU1", &[hr(0x5000_0000, 0x1000_0000)]),
        Err(BankError::Overlap { .. })
    ));
}

#[test]
fn static_banks_are_claimed_once_until_released() {
    let mut m = board();
    let banks = [hr(0x5000_0000, 0x1000_0000), hr(0x8000_0000, 0x200_0000)];
    m.reserve_static("domU1", &banks).unwrap();
    let kib = (0x1000_0000 + 0x200_0000) / 1024;
    let l = m.allocate_static("domU1", kib, true).unwrap();
    assert_eq!(l.host_ranges().collect::<Vec<_>>(), banks.to_vec());
    let e = m.allocate_static("domU1", kib, true).unwrap_err();
    assert_eq!(e, LayoutError::AlreadyAllocated);
    assert_eq!(
        e.to_string(),
        "RAM is already allocated (domain built twice without release)"
    );
    assert_eq!(
        m.allocate_heap("domU1", 4096),
        Err(LayoutError::AlreadyAllocated)
    );
    // Release frees no heap memory, and the banks stay out of the heap.
    let free_before = m.free_bytes();
    assert_eq!(m.release("domU1"), 0);
    assert_eq!(m.free_bytes(), free_before);
    assert!(
        m.free_ranges()
            .iter()
            .all(|f| !banks.iter().any(|b| b.overlaps(f)))
    );
    // A static domain cannot top up from the heap.
    let e = m.allocate_heap("domU1", 4096).unwrap_err();
    assert_eq!(e, LayoutError::HasStaticMemory);
    assert_eq!(
        e.to_string(),
        "the domain has xen,static-mem banks; heap memory cannot be added to them"
    );
    // Rebuilding (e.g. after a failed build) claims them again.
    assert_eq!(
        m.allocate_static("domU1", kib, false)
            .unwrap()
            .total_bytes(),
        kib * 1024
    );
}

#[test]
fn allocate_static_errors() {
    let mut m = board();
    let e = m.allocate_static("domU9", 1024, true).unwrap_err();
    assert_eq!(e, LayoutError::NotReserved);
    assert_eq!(e.to_string(), "no xen,static-mem banks are reserved");
    m.reserve_static("domU1", &[hr(0x5000_0000, 0x1000_0000)])
        .unwrap();
    let e = m.allocate_static("domU1", 1 << 20, true).unwrap_err();
    assert_eq!(
        e.to_string(),
        "memory is 1048576 KiB but the xen,static-mem banks total 262144 KiB"
    );
    // A failed claim does not mark the banks in use.
    m.allocate_static("domU1", 262144, true).unwrap();
}

#[test]
fn heap_never_uses_static_banks_or_reserved_regions() {
    let mut m = board();
    m.reserve_static("domU1", &[hr(0x5000_0000, 0x1000_0000)])
        .unwrap();
    let free = m.free_bytes();
    // 2 GiB - 2 MiB hypervisor - 16 MiB kernel - 256 MiB static bank.
    assert_eq!(free, 2 * GIB - 2 * MIB - 16 * MIB - 256 * MIB);
    let l = m.allocate_heap("domU2", free / 1024).unwrap();
    assert_eq!(l.total_bytes(), free);
    assert_eq!(m.free_bytes(), 0);
    let forbidden = [
        hr(0x4000_0000, 0x20_0000),
        hr(0x4400_0000, 0x100_0000),
        hr(0x5000_0000, 0x1000_0000),
    ];
    for r in l.host_ranges() {
        assert!(forbidden.iter().all(|f| !f.overlaps(&r)), "{r} overlaps");
    }
    // Heap memory handed out blocks later static reservations, naming the owner.
    let e = m
        .reserve_static("domU3", &[hr(0x8000_0000, 0x1000)])
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("bank 0x80000000+0x1000 overlaps the RAM allocated to domU2 at"),
        "{e}"
    );
}

#[test]
fn heap_uses_large_aligned_chunks() {
    let mut m = HostMemory::new(&[hr(0x4000_0000, 4 * GIB)], vec![]).unwrap();
    // 1 GiB + 2 MiB + 4 KiB: one 1 GiB block, one 2 MiB block, one page.
    let kib = (GIB + SIZE_2M + PAGE_SIZE) / 1024;
    let l = m.allocate_heap("d", kib).unwrap();
    let sizes: Vec<u64> = l.pieces().iter().map(|p| p.guest.size).collect();
    assert_eq!(sizes, vec![GIB, SIZE_2M, PAGE_SIZE]);
    for p in l.pieces() {
        let align = p.guest.size.min(SIZE_1G);
        assert_eq!(p.host.0 % align, 0);
        assert_eq!(p.guest.start.0 % align, 0);
    }
    assert_eq!(
        l.guest_banks(),
        &[GUEST_RAM0.start].map(|s| { tessel_addr::GuestRange::new(s, GIB + SIZE_2M + PAGE_SIZE) })
    );
}

#[test]
fn heap_over_3gib_spills_into_ram1() {
    let mut m = HostMemory::new(&[hr(0x1_0000_0000, 8 * GIB)], vec![]).unwrap();
    let l = m.allocate_heap("d", 4 * GIB / 1024).unwrap();
    assert_eq!(
        l.guest_banks(),
        &[
            tessel_addr::GuestRange::new(GuestPhysAddr(0x4000_0000), 3 * GIB),
            tessel_addr::GuestRange::new(GuestPhysAddr(0x2_0000_0000), GIB),
        ]
    );
    // Every guest byte is backed by distinct host memory.
    let a = l.gpa_to_hpa(GuestPhysAddr(0x4000_0000)).unwrap();
    let b = l.gpa_to_hpa(GuestPhysAddr(0x2_0000_0000)).unwrap();
    assert_ne!(a, b);
    assert_eq!(l.gpa_to_hpa(GuestPhysAddr(0x1_0000_0000)), None);
}

#[test]
fn fragmented_heap_still_fills_the_request() {
    // Free memory is cut into 1 MiB holes by 4 KiB reservations.
    let reserved: Vec<Reserved> = (0..64u64)
        .map(|i| {
            Reserved::new(
                hr(0x4000_0000 + i * MIB + MIB - PAGE_SIZE, PAGE_SIZE),
                ReservedKind::FdtReserved,
            )
        })
        .collect();
    let mut m = HostMemory::new(&[hr(0x4000_0000, 64 * MIB)], reserved).unwrap();
    let free = m.free_bytes();
    assert_eq!(free, 64 * (MIB - PAGE_SIZE));
    let l = m.allocate_heap("d", free / 1024).unwrap();
    assert_eq!(l.total_bytes(), free);
    // Chunk sizes never grow, so guest offsets stay aligned to each chunk.
    let sizes: Vec<u64> = l.pieces().iter().map(|p| p.guest.size).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn heap_errors() {
    let mut m = board();
    let free_kib = m.free_bytes() / 1024;
    let e = m.allocate_heap("d", 1 << 21).unwrap_err();
    assert_eq!(
        e,
        LayoutError::NotEnoughMemory {
            requested_kib: 1 << 21,
            // [0x4500_0000, 0xC000_0000): 1968 MiB above the kernel module.
            largest_free_kib: 1968 * 1024,
            total_free_kib: free_kib,
        }
    );
    assert_eq!(
        e.to_string(),
        "not enough free host memory for 2097152 KiB (largest free block 2015232 KiB, \
         2078720 KiB free in total)"
    );
    // Nothing was taken by the failed request.
    assert_eq!(m.free_bytes() / 1024, free_kib);

    let e = m.allocate_heap("d", 0).unwrap_err();
    assert_eq!(e.to_string(), "memory is 0 KiB");
    let e = m.allocate_heap("d", 1023).unwrap_err();
    assert_eq!(
        e.to_string(),
        "memory 1023 KiB is not a multiple of the 4 KiB page size"
    );
    let e = m.allocate_heap("d", 1020 << 20).unwrap_err();
    assert_eq!(
        e,
        LayoutError::GuestRamExhausted {
            total_kib: 1020 << 20
        }
    );
    let e = m.allocate_heap("d", u64::MAX).unwrap_err();
    assert_eq!(
        e,
        LayoutError::MemoryTooLarge {
            memory_kib: u64::MAX
        }
    );

    m.allocate_heap("d", 4096).unwrap();
    assert_eq!(
        m.allocate_heap("d", 4096),
        Err(LayoutError::AlreadyAllocated)
    );
}

#[test]
fn release_returns_heap_memory() {
    let mut m = board();
    let before = m.free_ranges();
    let l = m.allocate_heap("domU2", 512 * 1024).unwrap();
    assert_eq!(
        m.heap_ranges("domU2").map(|r| r.size).sum::<u64>(),
        512 * MIB
    );
    assert_eq!(
        m.free_bytes(),
        before.iter().map(|r| r.size).sum::<u64>() - 512 * MIB
    );
    assert_eq!(m.release("domU2"), l.total_bytes());
    assert_eq!(m.free_ranges(), before);
    assert_eq!(m.heap_ranges("domU2").count(), 0);
    // Releasing an unknown domain is harmless.
    assert_eq!(m.release("nobody"), 0);
    // And the memory can be handed out again.
    m.allocate_heap("domU3", 512 * 1024).unwrap();
}

#[test]
fn free_ranges_are_page_trimmed() {
    let m = HostMemory::new(
        &[hr(0x4000_0000, 0x10_0000)],
        vec![module(0x4000_0000, 0x1234, "multiboot,ramdisk", "d")],
    )
    .unwrap();
    assert_eq!(m.free_ranges(), vec![hr(0x4000_2000, 0x10_0000 - 0x2000)]);
}

// ---------------------------------------------------------------------------
// Property tests.

/// A random scenario: RAM banks, reservations, static banks per domain and
/// heap requests, in 4 KiB pages within a 16 GiB window.
#[derive(Debug, Clone)]
struct Scenario {
    ram: Vec<HostRange>,
    reserved: Vec<HostRange>,
    /// Static banks as (RAM index, page offset, pages), placed inside RAM
    /// so that most of them can actually be reserved.
    statics: Vec<Vec<(usize, u64, u64)>>,
    heap_kib: Vec<u64>,
}

/// Places a scenario's static bank descriptions inside the (filtered) RAM.
fn place(ram: &[HostRange], banks: &[(usize, u64, u64)]) -> Vec<HostRange> {
    banks
        .iter()
        .map(|&(i, off, pages)| {
            let r = ram[i % ram.len()];
            let ram_pages = r.size / PAGE_SIZE;
            let first = off % ram_pages;
            let n = pages.min(ram_pages - first).max(1);
            hr(r.start.0 + first * PAGE_SIZE, n * PAGE_SIZE)
        })
        .collect()
}

fn range_in(max_page: u64, max_pages: u64) -> impl Strategy<Value = HostRange> {
    (0..max_page, 1..max_pages).prop_map(|(p, n)| hr(p * PAGE_SIZE, n * PAGE_SIZE))
}

fn scenario() -> impl Strategy<Value = Scenario> {
    const WINDOW_PAGES: u64 = 4 << 20; // 16 GiB
    (
        proptest::collection::vec(range_in(WINDOW_PAGES, 1 << 19), 1..4),
        proptest::collection::vec(range_in(WINDOW_PAGES, 1 << 14), 0..8),
        proptest::collection::vec(
            proptest::collection::vec((0usize..4, 0u64..1 << 19, 1u64..1 << 16), 1..4),
            0..4,
        ),
        proptest::collection::vec(1u64..(1 << 18), 0..6),
    )
        .prop_map(|(ram, reserved, statics, heap_pages)| Scenario {
            ram,
            reserved,
            statics,
            heap_kib: heap_pages.into_iter().map(|p| p * 4).collect(),
        })
}

/// Builds the memory map from a scenario, keeping only non-overlapping RAM.
fn build(s: &Scenario) -> Option<HostMemory> {
    let mut ram: Vec<HostRange> = Vec::new();
    for r in &s.ram {
        if ram.iter().all(|o| !o.overlaps(r)) {
            ram.push(*r);
        }
    }
    let reserved = s
        .reserved
        .iter()
        .map(|r| Reserved::new(*r, ReservedKind::FdtReserved))
        .collect();
    HostMemory::new(&ram, reserved).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever succeeds, heap chunks and claimed static banks are in RAM,
    /// page-aligned, and never overlap each other or any reservation.
    #[test]
    fn allocations_never_overlap(s in scenario()) {
        let Some(mut m) = build(&s) else { return Ok(()) };
        let mut statics: Vec<HostRange> = Vec::new();
        for (i, desc) in s.statics.iter().enumerate() {
            let name = alloc::format!("static{i}");
            let banks = place(m.ram(), desc);
            if m.reserve_static(&name, &banks).is_ok() {
                let total: u64 = banks.iter().map(|b| b.size).sum();
                let l = m.allocate_static(&name, total / 1024, i % 2 == 0).unwrap();
                prop_assert_eq!(l.total_bytes(), total);
                statics.extend(banks.iter().copied());
            }
        }
        let mut owned: Vec<(String, HostRange)> = Vec::new();
        for (i, kib) in s.heap_kib.iter().enumerate() {
            let name = alloc::format!("heap{i}");
            let free_before = m.free_bytes();
            match m.allocate_heap(&name, *kib) {
                Ok(l) => {
                    prop_assert_eq!(l.total_bytes(), kib * 1024);
                    prop_assert_eq!(m.free_bytes(), free_before - kib * 1024);
                    for p in l.pieces() {
                        // Each piece is backed where gpa_to_hpa says.
                        prop_assert_eq!(l.gpa_to_hpa(p.guest.start), Some(p.host));
                        owned.push((name.clone(), p.host_range()));
                    }
                }
                Err(LayoutError::NotEnoughMemory { total_free_kib, .. }) => {
                    prop_assert!(total_free_kib < *kib);
                    prop_assert_eq!(m.free_bytes(), free_before);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
        for (i, (_, a)) in owned.iter().enumerate() {
            prop_assert!(a.is_aligned(PAGE_SIZE));
            prop_assert!(m.ram().iter().any(|r| r.contains_range(a)));
            for (_, b) in &owned[i + 1..] {
                prop_assert!(!a.overlaps(b), "{a} overlaps {b}");
            }
            for r in &s.reserved {
                prop_assert!(!a.overlaps(r), "{a} overlaps reserved {r}");
            }
            for b in &statics {
                prop_assert!(!a.overlaps(b), "{a} overlaps static {b}");
            }
        }
        for (i, a) in statics.iter().enumerate() {
            for b in &statics[i + 1..] {
                prop_assert!(!a.overlaps(b));
            }
            for r in &s.reserved {
                prop_assert!(!a.overlaps(r));
            }
        }
        // Free memory never overlaps anything handed out or reserved.
        for f in m.free_ranges() {
            prop_assert!(owned.iter().all(|(_, a)| !a.overlaps(&f)));
            prop_assert!(statics.iter().all(|a| !a.overlaps(&f)));
            prop_assert!(s.reserved.iter().all(|a| !a.overlaps(&f)));
        }
        // Releasing every heap domain gives all heap memory back.
        let free_now = m.free_bytes();
        let mut freed = 0;
        for i in 0..s.heap_kib.len() {
            freed += m.release(&alloc::format!("heap{i}"));
        }
        prop_assert_eq!(freed, owned.iter().map(|(_, r)| r.size).sum::<u64>());
        prop_assert_eq!(m.free_bytes(), free_now + freed);
    }

    /// A bank accepted by check_banks is inside RAM and clear of every
    /// reservation; a refused one is refused for a true reason.
    #[test]
    fn bank_checks_are_truthful(s in scenario(), bank in range_in(4 << 20, 1 << 16)) {
        let Some(m) = build(&s) else { return Ok(()) };
        match m.check_banks("d", &[bank]) {
            Ok(()) => {
                prop_assert!(m.ram().iter().any(|r| r.contains_range(&bank)));
                prop_assert!(s.reserved.iter().all(|r| !r.overlaps(&bank)));
            }
            Err(BankError::OutsideRam { .. }) => {
                prop_assert!(!m.ram().iter().any(|r| r.contains_range(&bank)));
            }
            Err(BankError::Overlap { other, .. }) => {
                prop_assert!(other.range.overlaps(&bank));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}

#[test]
fn debug_strings_are_available_for_logs() {
    let s = alloc::format!("{:?}", board());
    assert!(s.contains("HypervisorImage"));
}
