//! VMSAv8-64 stage-2 translation tables (IPA to PA) with block mappings and
//! break-before-make updates.
//!
//! The crate has no inline assembly and no `unsafe`: the hardware is reached
//! through two traits the hypervisor implements,
//!
//! * [`TableMemory`] allocates zeroed 4 KiB tables and reads/writes their
//!   descriptors (the EL2 binary uses identity-mapped physical memory;
//!   [`fake::FakeMemory`] keeps tables on the heap for host tests), and
//! * [`TlbMaintenance`] invalidates stale TLB entries (`TLBI IPAS2E1IS`,
//!   `DSB`, `TLBI VMALLE1IS`; [`fake::FakeTlb`] records the calls).
//!
//! ```
//! use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange, SIZE_1G, SIZE_2M};
//! use tessel_stage2::{fake::{FakeMemory, FakeTlb}, Attrs, Stage2, Stage2Config};
//!
//! // A CPU with a 40-bit PA range and a 40-bit guest IPA space: the walk
//! // starts at level 1 with two concatenated root tables.
//! let config = Stage2Config::new(40, 40)?;
//! let mut s2 = Stage2::new(config, FakeMemory::new(), FakeTlb::default())?;
//!
//! // 1:1 RAM bank of 1 GiB + 2 MiB: one 1 GiB block and one 2 MiB block.
//! s2.identity_map(HostRange::new(HostPhysAddr(0x4000_0000), SIZE_1G + SIZE_2M), Attrs::RAM)?;
//! let t = s2.translate(GuestPhysAddr(0x8000_1234)).unwrap();
//! assert_eq!((t.pa, t.block_size), (HostPhysAddr(0x8000_1234), SIZE_2M));
//!
//! // The 1 GiB block sits in the root; the 2 MiB block needs one level-2 table.
//! assert_eq!(s2.table_count(), config.root_tables() + 1);
//! let vttbr = s2.vttbr(1)?;
//! # let _ = (vttbr, config.vtcr());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod attrs;
mod config;
pub mod fake;
mod table;
#[cfg(test)]
mod tests;

use core::fmt;

use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};

pub use attrs::{Access, Attrs, MemoryType};
pub use config::{
    ConfigError, MAX_PA_BITS_4K, MAX_ROOT_TABLES, MIN_IPA_BITS, PaRange, Stage2Config, VmidBits,
};
pub use table::{MAX_TLBI_BY_IPA, Mapping, Stage2, Translation};

/// Number of 64-bit descriptors in a 4 KiB table.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Storage for translation tables.
///
/// Implementations hand out 4 KiB tables by *physical* address, because that
/// is what descriptors and `VTTBR_EL2` hold, and give access to their
/// descriptors. The EL2 binary implements it over identity-mapped memory;
/// host tests use [`fake::FakeMemory`].
pub trait TableMemory {
    /// Allocates `count` physically contiguous, zeroed 4 KiB tables whose
    /// base is aligned to `count * 4096` bytes (concatenated root tables need
    /// this), or returns `None` when out of memory. `count` is a power of two
    /// no larger than [`MAX_ROOT_TABLES`].
    fn alloc_tables(&mut self, count: usize) -> Option<HostPhysAddr>;

    /// Returns tables obtained from [`alloc_tables`](Self::alloc_tables) with
    /// the same `count`. The stage-2 code only frees a table once no
    /// descriptor points to it and its TLB invalidation has completed.
    fn free_tables(&mut self, base: HostPhysAddr, count: usize);

    /// Reads descriptor `index` (below [`ENTRIES_PER_TABLE`]) of the table at
    /// `table`.
    fn read(&self, table: HostPhysAddr, index: usize) -> u64;

    /// Writes descriptor `index` of the table at `table`.
    ///
    /// On hardware this must be a single 64-bit store (single-copy atomic,
    /// so a walker never sees a torn descriptor), ordered after every earlier
    /// write to table memory (for example `DMB ISHST` then `STR`, or `STLR`),
    /// so a walker that sees a new table descriptor also sees the contents
    /// of the table it points to.
    fn write(&mut self, table: HostPhysAddr, index: usize, desc: u64);
}

impl<M: TableMemory + ?Sized> TableMemory for &mut M {
    fn alloc_tables(&mut self, count: usize) -> Option<HostPhysAddr> {
        (**self).alloc_tables(count)
    }
    fn free_tables(&mut self, base: HostPhysAddr, count: usize) {
        (**self).free_tables(base, count)
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        (**self).read(table, index)
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, desc: u64) {
        (**self).write(table, index, desc)
    }
}

/// TLB maintenance for one guest's stage-2 tables (its VMID).
///
/// Break-before-make (Arm ARM DDI 0487, D8.17.1): to change a live
/// descriptor's output address, block size or memory type, [`Stage2`]
/// writes an invalid descriptor, calls [`invalidate_ipa`](Self::invalidate_ipa)
/// (or [`invalidate_vmid`](Self::invalidate_vmid)) and [`sync`](Self::sync),
/// and only then writes the new descriptor. Tables that are unlinked are
/// freed only after the `sync`.
///
/// The TLBI instructions act on the VMID currently in `VTTBR_EL2`, so the
/// implementation must make sure that is this guest's (or, before the guest
/// first runs, that its VMID has no TLB entries at all).
pub trait TlbMaintenance {
    /// Invalidates TLB and walk-cache entries for `ipa` in this VMID, all
    /// stage-2 levels: on hardware `DSB ISHST` (so earlier descriptor writes
    /// are visible to walkers), then `TLBI IPAS2E1IS` with `ipa >> 12`.
    ///
    /// `level` is `Some(l)` when the descriptor removed was a leaf at level
    /// `l` (usable as the FEAT_TTL hint), `None` when it was a table
    /// descriptor (no hint may then be given).
    fn invalidate_ipa(&mut self, ipa: GuestPhysAddr, level: Option<u8>);

    /// Invalidates every stage-1 and stage-2 TLB entry of this VMID: on
    /// hardware `DSB ISHST; TLBI VMALLS12E1IS`. Used instead of more than
    /// [`MAX_TLBI_BY_IPA`] invalidations by address.
    fn invalidate_vmid(&mut self);

    /// Completes all invalidations issued so far and makes every descriptor
    /// write visible: on hardware `DSB ISH; TLBI VMALLE1IS; DSB ISH; ISB`.
    /// (Combined stage-1+2 entries are tagged by guest virtual address, which
    /// an invalidation by IPA cannot reach, hence `VMALLE1IS`.)
    ///
    /// Called after each batch of invalidations and at the end of every
    /// operation that wrote a descriptor, so new mappings are visible to the
    /// walker when the operation returns.
    fn sync(&mut self);
}

impl<T: TlbMaintenance + ?Sized> TlbMaintenance for &mut T {
    fn invalidate_ipa(&mut self, ipa: GuestPhysAddr, level: Option<u8>) {
        (**self).invalidate_ipa(ipa, level)
    }
    fn invalidate_vmid(&mut self) {
        (**self).invalidate_vmid()
    }
    fn sync(&mut self) {
        (**self).sync()
    }
}

/// Why a stage-2 update was refused. Every error is detected before any
/// descriptor is written, so the tables are unchanged when one is returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// The IPA range is empty.
    EmptyRange(GuestRange),
    /// The IPA range's start or size is not a multiple of 4 KiB.
    MisalignedIpa(GuestRange),
    /// The output address is not a multiple of 4 KiB.
    MisalignedPa(HostPhysAddr),
    /// The IPA range does not fit the configured IPA space.
    IpaOutOfRange {
        /// The range asked for.
        range: GuestRange,
        /// IPA size in bits.
        ipa_bits: u8,
    },
    /// The output range does not fit the usable physical address range.
    PaOutOfRange {
        /// The output range asked for.
        range: HostRange,
        /// Usable PA size in bits.
        pa_bits: u8,
    },
    /// [`Stage2::map`] found an existing mapping in the range (use
    /// [`Stage2::remap`] to replace mappings).
    AlreadyMapped {
        /// First mapped address in the range.
        ipa: GuestPhysAddr,
    },
    /// [`Stage2::protect`] found an unmapped hole in the range.
    NotMapped {
        /// First unmapped address in the range.
        ipa: GuestPhysAddr,
    },
    /// Executable Device memory was asked for (see [`Attrs`]).
    ExecutableDevice(GuestRange),
    /// The table allocator could not provide the tables the update needs.
    OutOfMemory {
        /// Number of 4 KiB tables the update needed.
        tables_needed: usize,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyRange(r) => write!(f, "IPA range {r} is empty"),
            Self::MisalignedIpa(r) => {
                write!(f, "IPA range {r} is not aligned to the 4 KiB granule")
            }
            Self::MisalignedPa(pa) => {
                write!(
                    f,
                    "output address {pa:#x} is not aligned to the 4 KiB granule"
                )
            }
            Self::IpaOutOfRange { range, ipa_bits } => {
                write!(
                    f,
                    "IPA range {range} is outside the {ipa_bits}-bit IPA space"
                )
            }
            Self::PaOutOfRange { range, pa_bits } => write!(
                f,
                "output range {range} is outside the {pa_bits}-bit physical address range"
            ),
            Self::AlreadyMapped { ipa } => write!(f, "IPA {ipa:#x} is already mapped"),
            Self::NotMapped { ipa } => write!(f, "IPA {ipa:#x} is not mapped"),
            Self::ExecutableDevice(r) => write!(
                f,
                "IPA range {r}: device memory cannot be mapped executable"
            ),
            Self::OutOfMemory { tables_needed } => write!(
                f,
                "out of memory for stage-2 tables ({tables_needed} tables of 4 KiB needed)"
            ),
        }
    }
}

impl core::error::Error for MapError {}
