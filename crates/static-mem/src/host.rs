//! The host memory map: RAM, reservations, static banks and heap allocations.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use tessel_addr::{Address, HostPhysAddr, HostRange, PAGE_SIZE, SIZE_1G};

use crate::banks::{BankError, MAX_BANKS, Reserved, ReservedKind};
use crate::layout::{
    GUEST_RAM_CAPACITY, GUEST_RAM_WINDOWS, LayoutError, Packer, RamLayout, kib_to_bytes,
    static_layout,
};

/// Why the host RAM list (from `/memory`) was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RamError {
    /// No non-empty RAM range.
    NoRam,
    /// A RAM range runs past the end of the 64-bit address space.
    Wraps {
        /// The range.
        range: HostRange,
    },
    /// Two RAM ranges overlap.
    Overlap {
        /// One range.
        first: HostRange,
        /// The other.
        second: HostRange,
    },
}

impl fmt::Display for RamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => f.write_str("host RAM (/memory) lists no non-empty range"),
            Self::Wraps { range } => write!(
                f,
                "host RAM range {range} runs past the end of the 64-bit address space"
            ),
            Self::Overlap { first, second } => {
                write!(f, "host RAM ranges {first} and {second} overlap")
            }
        }
    }
}

impl core::error::Error for RamError {}

/// Static banks reserved for one domain.
#[derive(Clone, Debug)]
struct StaticReservation {
    domain: String,
    banks: Vec<HostRange>,
    /// Claimed by a built (or being built) domain.
    in_use: bool,
}

/// A heap chunk given to a domain.
#[derive(Clone, Debug)]
struct HeapChunk {
    domain: String,
    range: HostRange,
}

/// Host physical memory: RAM minus everything reserved, plus the static
/// banks reserved for domains and the heap memory handed out.
///
/// Usage follows Xen's order (spec §5.1, §5.2): first
/// [`reserve_static`](Self::reserve_static) for every domain with
/// `xen,static-mem` (so no heap allocation can take a static bank), then per
/// domain either [`allocate_static`](Self::allocate_static) or
/// [`allocate_heap`](Self::allocate_heap), and [`release`](Self::release) when
/// a domain is destroyed or its build fails.
///
/// Invariants: heap chunks lie in RAM, are page-aligned, and never overlap
/// each other, a reserved region or any static bank; static banks of
/// different domains never overlap; a static bank is claimed by at most one
/// built domain at a time.
#[derive(Clone, Debug)]
pub struct HostMemory {
    ram: Vec<HostRange>,
    reserved: Vec<Reserved>,
    statics: Vec<StaticReservation>,
    heap: Vec<HeapChunk>,
}

impl HostMemory {
    /// Builds the map from host RAM (the `/memory` ranges, any order; empty
    /// ranges are ignored) and the regions no guest RAM may use (hypervisor
    /// image, boot modules, device MMIO, DT reserved memory). Reserved regions
    /// may lie outside RAM (MMIO) and may overlap each other; empty ones are
    /// ignored.
    pub fn new(ram: &[HostRange], reserved: Vec<Reserved>) -> Result<Self, RamError> {
        let mut sorted: Vec<HostRange> = Vec::new();
        for r in ram.iter().filter(|r| !r.is_empty()) {
            if r.end().is_none() {
                return Err(RamError::Wraps { range: *r });
            }
            sorted.push(*r);
        }
        if sorted.is_empty() {
            return Err(RamError::NoRam);
        }
        tessel_addr::sort_small(&mut sorted);
        // Merge adjacent ranges so a bank spanning two touching /memory
        // entries counts as inside RAM.
        let mut merged: Vec<HostRange> = Vec::with_capacity(sorted.len());
        for r in sorted {
            if let Some(last) = merged.last_mut() {
                if last.overlaps(&r) {
                    return Err(RamError::Overlap {
                        first: *last,
                        second: r,
                    });
                }
                if last.end() == Some(r.start) {
                    last.size += r.size;
                    continue;
                }
            }
            merged.push(r);
        }
        let reserved = reserved
            .into_iter()
            .filter(|r| !r.range.is_empty())
            .collect();
        Ok(Self {
            ram: merged,
            reserved,
            statics: Vec::new(),
            heap: Vec::new(),
        })
    }

    /// Host RAM, sorted, with touching ranges merged.
    pub fn ram(&self) -> &[HostRange] {
        &self.ram
    }

    /// The reserved regions given to [`Self::new`] (empty ones dropped).
    pub fn reserved(&self) -> &[Reserved] {
        &self.reserved
    }

    /// Checks `domain`'s `xen,static-mem` banks without reserving them:
    /// each must be non-empty, 4 KiB aligned, inside one host RAM range, and
    /// overlap no reserved region, no static bank (of any domain, including
    /// the domain's own other banks) and no heap memory already handed out.
    /// The first problem found is returned, in bank order.
    pub fn check_banks(&self, domain: &str, banks: &[HostRange]) -> Result<(), BankError> {
        if banks.is_empty() {
            return Err(BankError::NoBanks);
        }
        if banks.len() > MAX_BANKS {
            return Err(BankError::TooManyBanks { count: banks.len() });
        }
        for (index, &bank) in banks.iter().enumerate() {
            self.check_bank(domain, banks, index, bank)?;
        }
        Ok(())
    }

    fn check_bank(
        &self,
        domain: &str,
        banks: &[HostRange],
        index: usize,
        bank: HostRange,
    ) -> Result<(), BankError> {
        if bank.is_empty() {
            return Err(BankError::Empty { index, bank });
        }
        if bank.end().is_none() {
            return Err(BankError::Wraps { index, bank });
        }
        if !bank.is_aligned(PAGE_SIZE) {
            return Err(BankError::Unaligned { index, bank });
        }
        if !self.ram.iter().any(|r| r.contains_range(&bank)) {
            return Err(BankError::OutsideRam { index, bank });
        }
        let overlap = |other: Reserved| BankError::Overlap { index, bank, other };
        let conflicts = |r: &&Reserved| {
            r.range.overlaps(&bank)
                && !(r.what == ReservedKind::MemReserve && r.range.contains_range(&bank))
        };
        if let Some(r) = self.reserved.iter().find(conflicts) {
            return Err(overlap(r.clone()));
        }
        for s in &self.statics {
            if let Some((i, b)) = s.banks.iter().enumerate().find(|(_, b)| b.overlaps(&bank)) {
                return Err(overlap(Reserved::new(
                    *b,
                    ReservedKind::StaticBank {
                        domain: s.domain.clone(),
                        index: i,
                    },
                )));
            }
        }
        if let Some((i, b)) = banks
            .iter()
            .enumerate()
            .take(index)
            .find(|(_, b)| b.overlaps(&bank))
        {
            return Err(overlap(Reserved::new(
                *b,
                ReservedKind::StaticBank {
                    domain: domain.to_string(),
                    index: i,
                },
            )));
        }
        if let Some(c) = self.heap.iter().find(|c| c.range.overlaps(&bank)) {
            return Err(overlap(Reserved::new(
                c.range,
                ReservedKind::DomainRam {
                    domain: c.domain.clone(),
                },
            )));
        }
        Ok(())
    }

    /// Checks `banks` ([`Self::check_banks`]) and reserves them for
    /// `domain`, all or nothing. Reserved banks never enter the heap; a
    /// second reservation of an overlapping range (by any domain) fails with
    /// [`BankError::Overlap`]; a domain reserves once
    /// ([`BankError::AlreadyReserved`]).
    pub fn reserve_static(&mut self, domain: &str, banks: &[HostRange]) -> Result<(), BankError> {
        if self.statics.iter().any(|s| s.domain == domain) {
            return Err(BankError::AlreadyReserved);
        }
        self.check_banks(domain, banks)?;
        self.statics.push(StaticReservation {
            domain: domain.to_string(),
            banks: banks.to_vec(),
            in_use: false,
        });
        Ok(())
    }

    /// The static banks reserved for `domain`, in DT order.
    pub fn static_banks(&self, domain: &str) -> Option<&[HostRange]> {
        self.statics
            .iter()
            .find(|s| s.domain == domain)
            .map(|s| s.banks.as_slice())
    }

    /// Claims `domain`'s reserved static banks and lays them out
    /// ([`static_layout`]): 1:1 when `direct_map`, otherwise packed into the
    /// guest RAM windows. `memory_kib` must equal the banks' total.
    pub fn allocate_static(
        &mut self,
        domain: &str,
        memory_kib: u64,
        direct_map: bool,
    ) -> Result<RamLayout, LayoutError> {
        if self.heap.iter().any(|c| c.domain == domain) {
            return Err(LayoutError::AlreadyAllocated);
        }
        let Some(res) = self.statics.iter_mut().find(|s| s.domain == domain) else {
            return Err(LayoutError::NotReserved);
        };
        if res.in_use {
            return Err(LayoutError::AlreadyAllocated);
        }
        let layout = static_layout(&res.banks, memory_kib, direct_map)?;
        res.in_use = true;
        Ok(layout)
    }

    /// Allocates `memory_kib` of heap RAM for a domain without static memory
    /// and lays it out in the guest RAM windows: RAM0 gets
    /// min(memory, 3 GiB), RAM1 the rest (spec §5.5).
    ///
    /// Each window is filled with power-of-two chunks, largest first
    /// (floor(log2(remaining)), at most as large as the previous chunk),
    /// each aligned to its size up to 1 GiB, so that guest and host
    /// addresses share that alignment and stage-2 can use 2 MiB / 1 GiB
    /// blocks. Chunks are taken from the lowest free address that fits; a
    /// size with no fitting free block is halved down to 4 KiB. Nothing is
    /// allocated when the request fails.
    pub fn allocate_heap(
        &mut self,
        domain: &str,
        memory_kib: u64,
    ) -> Result<RamLayout, LayoutError> {
        if self.heap.iter().any(|c| c.domain == domain)
            || self.statics.iter().any(|s| s.domain == domain && s.in_use)
        {
            return Err(LayoutError::AlreadyAllocated);
        }
        if self.statics.iter().any(|s| s.domain == domain) {
            return Err(LayoutError::HasStaticMemory);
        }
        let bytes = kib_to_bytes(memory_kib)?;
        if bytes == 0 {
            return Err(LayoutError::ZeroMemory);
        }
        if bytes % PAGE_SIZE != 0 {
            return Err(LayoutError::NotPageMultiple { memory_kib });
        }
        if bytes > GUEST_RAM_CAPACITY {
            return Err(LayoutError::GuestRamExhausted {
                total_kib: memory_kib,
            });
        }
        let mut free = self.free_ranges();
        let not_enough = |free: &[HostRange]| LayoutError::NotEnoughMemory {
            requested_kib: memory_kib,
            largest_free_kib: free.iter().map(|r| r.size).max().unwrap_or(0) / 1024,
            total_free_kib: free.iter().map(|r| r.size).sum::<u64>() / 1024,
        };
        if free.iter().map(|r| r.size).sum::<u64>() < bytes {
            return Err(not_enough(&free));
        }
        let mut packer = Packer::default();
        let mut chunks: Vec<HostRange> = Vec::new();
        let mut left = bytes;
        for window in GUEST_RAM_WINDOWS {
            let mut in_window = left.min(window.size);
            left -= in_window;
            // Largest chunk allowed; shrinks, never grows, within a window.
            let mut cap = u64::MAX;
            while in_window > 0 {
                let mut size = prev_power_of_two(in_window).min(cap);
                let hpa = loop {
                    let align = size.clamp(PAGE_SIZE, SIZE_1G);
                    if let Some(hpa) = find_block(&free, size, align) {
                        break hpa;
                    }
                    if size <= PAGE_SIZE {
                        // Cannot happen after the free-total check above, but
                        // fail cleanly rather than trust that reasoning.
                        return Err(not_enough(&self.free_ranges()));
                    }
                    size /= 2;
                };
                cap = size;
                let chunk = HostRange::new(hpa, size);
                carve(&mut free, chunk);
                packer.push(hpa, size)?;
                chunks.push(chunk);
                in_window -= size;
            }
        }
        self.heap.extend(chunks.into_iter().map(|range| HeapChunk {
            domain: domain.to_string(),
            range,
        }));
        Ok(packer.finish())
    }

    /// Gives back everything `domain` holds: its heap chunks return to the
    /// free pool and its static banks become unclaimed (they stay reserved
    /// for that domain and never enter the heap, as in Xen). Returns the
    /// number of heap bytes freed. Call it for a destroyed domain and for a
    /// domain whose build failed part-way.
    pub fn release(&mut self, domain: &str) -> u64 {
        let mut freed = 0;
        self.heap.retain(|c| {
            let mine = c.domain == domain;
            if mine {
                freed += c.range.size;
            }
            !mine
        });
        for s in self.statics.iter_mut().filter(|s| s.domain == domain) {
            s.in_use = false;
        }
        freed
    }

    /// Heap memory held by `domain`.
    pub fn heap_ranges<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = HostRange> + 'a {
        self.heap
            .iter()
            .filter(move |c| c.domain == domain)
            .map(|c| c.range)
    }

    /// Free heap memory: RAM minus reserved regions, static banks and heap
    /// chunks, trimmed to whole pages, sorted by address.
    pub fn free_ranges(&self) -> Vec<HostRange> {
        let mut blockers: Vec<(u128, u128)> = self
            .reserved
            .iter()
            .map(|r| r.range)
            .chain(self.statics.iter().flat_map(|s| s.banks.iter().copied()))
            .chain(self.heap.iter().map(|c| c.range))
            .map(|r| {
                (
                    u128::from(r.start.0),
                    u128::from(r.start.0) + u128::from(r.size),
                )
            })
            .collect();
        tessel_addr::sort_small(&mut blockers);
        let mut free = Vec::new();
        for ram in &self.ram {
            let ram_end = u128::from(ram.start.0) + u128::from(ram.size);
            let mut cursor = u128::from(ram.start.0);
            for &(start, end) in &blockers {
                if end <= cursor || start >= ram_end {
                    continue;
                }
                if start > cursor {
                    push_free(&mut free, cursor, start);
                }
                cursor = cursor.max(end);
            }
            if cursor < ram_end {
                push_free(&mut free, cursor, ram_end);
            }
        }
        free
    }

    /// Total free heap memory in bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_ranges().iter().map(|r| r.size).sum()
    }
}

/// Adds `[start, end)` trimmed inward to whole pages, if anything is left.
fn push_free(free: &mut Vec<HostRange>, start: u128, end: u128) {
    let page = u128::from(PAGE_SIZE);
    let start = start.div_ceil(page) * page;
    let end = end / page * page;
    if start < end {
        // Both bounds come from RAM ranges whose end fits in 64 bits.
        if let (Ok(s), Ok(size)) = (u64::try_from(start), u64::try_from(end - start)) {
            free.push(HostRange::new(HostPhysAddr(s), size));
        }
    }
}

/// Largest power of two not above `n` (`n` > 0).
fn prev_power_of_two(n: u64) -> u64 {
    1u64 << (63 - n.leading_zeros())
}

/// Lowest address in `free` where `size` bytes aligned to `align` fit.
fn find_block(free: &[HostRange], size: u64, align: u64) -> Option<HostPhysAddr> {
    free.iter().find_map(|r| {
        let start = r.start.align_up(align)?;
        let end = start.checked_add(size)?;
        (r.end()? >= end).then_some(start)
    })
}

/// Removes `chunk` (which lies inside one free range) from `free`.
fn carve(free: &mut Vec<HostRange>, chunk: HostRange) {
    let Some(i) = free.iter().position(|r| r.contains_range(&chunk)) else {
        return;
    };
    let r = free.remove(i);
    let before = chunk.start.0 - r.start.0;
    let after = r.size - before - chunk.size;
    if after > 0 {
        free.insert(
            i,
            HostRange::new(HostPhysAddr(chunk.start.0 + chunk.size), after),
        );
    }
    if before > 0 {
        free.insert(i, HostRange::new(r.start, before));
    }
}
