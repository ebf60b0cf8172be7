//! In-memory implementations of [`TableMemory`] and [`TlbMaintenance`] for
//! host tests, here and in other crates.
//!
//! [`FakeMemory`] hands out synthetic physical addresses backed by heap
//! pages and can be limited to inject allocation failures; [`FakeTlb`]
//! records every maintenance call. Misuse of the fake (reading a table that
//! was never allocated, freeing twice) is a bug in the caller and panics
//! with a message, which is what a test wants.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::Cell;

use tessel_addr::{GuestPhysAddr, HostPhysAddr, PAGE_SIZE};

use crate::{ENTRIES_PER_TABLE, MAX_ROOT_TABLES, TableMemory, TlbMaintenance};

/// Default base of the synthetic physical addresses handed out (2 GiB, low
/// enough for a 32-bit PA range).
pub const DEFAULT_BASE: HostPhysAddr = HostPhysAddr(0x8000_0000);

type Page = Box<[u64; ENTRIES_PER_TABLE]>;

/// Heap-backed table memory with synthetic physical addresses.
#[derive(Debug)]
pub struct FakeMemory {
    base: u64,
    /// Page `n` holds the table at `base + n * 4 KiB`.
    pages: Vec<Option<Page>>,
    /// Start page and length of each live allocation, by start page.
    allocations: Vec<Option<usize>>,
    /// Freed single pages available for reuse.
    free: Vec<usize>,
    live: usize,
    limit: Cell<Option<usize>>,
    total_allocs: usize,
}

impl Default for FakeMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeMemory {
    /// Empty memory with addresses from [`DEFAULT_BASE`] and no limit.
    pub fn new() -> Self {
        Self::with_base(DEFAULT_BASE)
    }

    /// Empty memory whose addresses start at `base` (aligned to 64 KiB so
    /// that concatenated root tables can be aligned).
    pub fn with_base(base: HostPhysAddr) -> Self {
        assert!(
            base.0.is_multiple_of(MAX_ROOT_TABLES as u64 * PAGE_SIZE),
            "fake memory base {base:?} must be 64 KiB aligned"
        );
        Self {
            base: base.0,
            pages: Vec::new(),
            allocations: Vec::new(),
            free: Vec::new(),
            live: 0,
            limit: Cell::new(None),
            total_allocs: 0,
        }
    }

    /// Caps the number of live 4 KiB tables; allocations beyond it fail.
    /// `None` removes the cap. Takes `&self` so a test can inject failures
    /// into memory a [`Stage2`](crate::Stage2) owns.
    pub fn set_limit(&self, limit: Option<usize>) {
        self.limit.set(limit);
    }

    /// Number of 4 KiB tables currently allocated.
    pub fn live_tables(&self) -> usize {
        self.live
    }

    /// Number of successful [`TableMemory::alloc_tables`] calls so far.
    pub fn total_allocations(&self) -> usize {
        self.total_allocs
    }

    /// Whether `table` is the address of a live table.
    pub fn is_allocated(&self, table: HostPhysAddr) -> bool {
        self.page_index(table)
            .is_some_and(|n| matches!(self.pages.get(n), Some(Some(_))))
    }

    fn page_index(&self, table: HostPhysAddr) -> Option<usize> {
        let off = table.0.checked_sub(self.base)?;
        off.is_multiple_of(PAGE_SIZE)
            .then_some((off / PAGE_SIZE) as usize)
    }

    fn page(&self, table: HostPhysAddr) -> &Page {
        match self.page_index(table).and_then(|n| self.pages.get(n)) {
            Some(Some(p)) => p,
            _ => panic!("fake memory: {table:?} is not an allocated table"),
        }
    }
}

impl TableMemory for FakeMemory {
    fn alloc_tables(&mut self, count: usize) -> Option<HostPhysAddr> {
        if count == 0 || !count.is_power_of_two() || count > MAX_ROOT_TABLES {
            return None;
        }
        if self.limit.get().is_some_and(|l| self.live + count > l) {
            return None;
        }
        let start = if count == 1 && !self.free.is_empty() {
            self.free.pop()?
        } else {
            // Bump allocation, aligned to the allocation size.
            let start = self.pages.len().next_multiple_of(count);
            self.pages.resize_with(start + count, || None);
            self.allocations.resize(start + count, None);
            start
        };
        for n in start..start + count {
            self.pages[n] = Some(Box::new([0; ENTRIES_PER_TABLE]));
        }
        self.allocations[start] = Some(count);
        self.live += count;
        self.total_allocs += 1;
        Some(HostPhysAddr(self.base + start as u64 * PAGE_SIZE))
    }

    fn free_tables(&mut self, base: HostPhysAddr, count: usize) {
        let start = self.page_index(base);
        let recorded = start.and_then(|n| self.allocations.get(n).copied().flatten());
        let Some(start) = start.filter(|_| recorded == Some(count)) else {
            panic!(
                "fake memory: freeing {count} table(s) at {base:?}, which is not such an allocation (recorded: {recorded:?})"
            );
        };
        self.allocations[start] = None;
        for n in start..start + count {
            self.pages[n] = None;
        }
        if count == 1 {
            self.free.push(start);
        }
        self.live -= count;
    }

    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.page(table)[index]
    }

    fn write(&mut self, table: HostPhysAddr, index: usize, desc: u64) {
        let n = self.page_index(table);
        match n.and_then(|n| self.pages.get_mut(n)) {
            Some(Some(p)) => p[index] = desc,
            _ => panic!("fake memory: write to {table:?}, which is not an allocated table"),
        }
    }
}

/// One call recorded by [`FakeTlb`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TlbOp {
    /// [`TlbMaintenance::invalidate_ipa`].
    InvalidateIpa {
        /// Address invalidated.
        ipa: GuestPhysAddr,
        /// Leaf level hint.
        level: Option<u8>,
    },
    /// [`TlbMaintenance::invalidate_vmid`].
    InvalidateVmid,
    /// [`TlbMaintenance::sync`].
    Sync,
}

/// Records TLB maintenance calls.
#[derive(Clone, Debug, Default)]
pub struct FakeTlb {
    /// Every call so far, in order.
    pub ops: Vec<TlbOp>,
}

impl FakeTlb {
    /// Number of invalidations (by IPA or whole VMID) recorded.
    pub fn invalidations(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| !matches!(o, TlbOp::Sync))
            .count()
    }
}

impl TlbMaintenance for FakeTlb {
    fn invalidate_ipa(&mut self, ipa: GuestPhysAddr, level: Option<u8>) {
        self.ops.push(TlbOp::InvalidateIpa { ipa, level });
    }
    fn invalidate_vmid(&mut self) {
        self.ops.push(TlbOp::InvalidateVmid);
    }
    fn sync(&mut self) {
        self.ops.push(TlbOp::Sync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_allocations_are_aligned_and_zeroed() {
        let mut m = FakeMemory::new();
        let a = m.alloc_tables(1).unwrap();
        let b = m.alloc_tables(4).unwrap();
        assert_eq!(b.0 % (4 * PAGE_SIZE), 0);
        assert!(b.0 > a.0);
        for k in 0..4 {
            let t = HostPhysAddr(b.0 + k * PAGE_SIZE);
            assert!((0..ENTRIES_PER_TABLE).all(|i| m.read(t, i) == 0));
        }
        assert_eq!(m.live_tables(), 5);
        m.write(a, 7, 0xdead_0003);
        m.free_tables(a, 1);
        // Reused page comes back zeroed.
        let c = m.alloc_tables(1).unwrap();
        assert_eq!(c, a);
        assert_eq!(m.read(c, 7), 0);
        m.free_tables(b, 4);
        assert_eq!(m.live_tables(), 1);
    }

    #[test]
    fn limit_injects_failures() {
        let mut m = FakeMemory::new();
        m.set_limit(Some(2));
        assert!(m.alloc_tables(2).is_some());
        assert!(m.alloc_tables(1).is_none());
        assert!(m.alloc_tables(3).is_none(), "not a power of two");
    }

    #[test]
    #[should_panic(expected = "not such an allocation")]
    fn double_free_is_caught() {
        let mut m = FakeMemory::new();
        let a = m.alloc_tables(1).unwrap();
        m.free_tables(a, 1);
        m.free_tables(a, 1);
    }
}
