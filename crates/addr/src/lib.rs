//! Address newtypes shared by every Tessel crate.
//!
//! A hypervisor juggles two physical address spaces: the host's (what the
//! memory bus sees) and each guest's (what a guest believes is physical, an
//! *intermediate physical address* in Arm terms). Mixing them up is the classic
//! bug of identity-mapped hypervisors: code that works while guest-physical
//! equals host-physical silently breaks for an ordinary guest. Keeping them as
//! distinct types makes every conversion explicit.
//!
//! ```
//! use tessel_addr::{GuestPhysAddr, HostPhysAddr, Range};
//! let bank = Range::new(HostPhysAddr(0x5000_0000), 0x1000_0000);
//! assert!(bank.contains(HostPhysAddr(0x5fff_ffff)));
//! assert_eq!(bank.end(), Some(HostPhysAddr(0x6000_0000)));
//! // A direct-mapped domain uses the same number in both spaces.
//! assert_eq!(GuestPhysAddr::identity(bank.start), GuestPhysAddr(0x5000_0000));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;

/// Size of the translation granule Tessel uses everywhere (4 KiB).
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// 2 MiB, the level-2 block size with a 4 KiB granule.
pub const SIZE_2M: u64 = 2 << 20;
/// 1 GiB, the level-1 block size with a 4 KiB granule.
pub const SIZE_1G: u64 = 1 << 30;

/// Operations shared by both kinds of physical address.
pub trait Address: Copy + Ord + fmt::Debug {
    /// Wraps a raw value.
    fn from_u64(raw: u64) -> Self;
    /// The raw value.
    fn as_u64(self) -> u64;

    /// `self + off`, or `None` on overflow.
    fn checked_add(self, off: u64) -> Option<Self> {
        self.as_u64().checked_add(off).map(Self::from_u64)
    }
    /// Whether the address is a multiple of `align` (a power of two).
    fn is_aligned(self, align: u64) -> bool {
        debug_assert!(align.is_power_of_two());
        self.as_u64() & (align - 1) == 0
    }
    /// Rounds down to a multiple of `align` (a power of two).
    fn align_down(self, align: u64) -> Self {
        debug_assert!(align.is_power_of_two());
        Self::from_u64(self.as_u64() & !(align - 1))
    }
    /// Rounds up to a multiple of `align` (a power of two), or `None` on overflow.
    fn align_up(self, align: u64) -> Option<Self> {
        debug_assert!(align.is_power_of_two());
        self.as_u64()
            .checked_add(align - 1)
            .map(|v| Self::from_u64(v & !(align - 1)))
    }
    /// Distance from `base` to `self`, or `None` if `self` is below `base`.
    fn offset_from(self, base: Self) -> Option<u64> {
        self.as_u64().checked_sub(base.as_u64())
    }
}

macro_rules! address_type {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl Address for $name {
            fn from_u64(raw: u64) -> Self {
                Self(raw)
            }
            fn as_u64(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A host physical address: what the memory bus and DMA masters see.
    HostPhysAddr,
    "HPA:"
);
address_type!(
    /// A guest physical address (an Arm *intermediate physical address*):
    /// what a guest believes is physical; stage-2 translation maps it to a
    /// [`HostPhysAddr`].
    GuestPhysAddr,
    "GPA:"
);

impl GuestPhysAddr {
    /// The guest address numerically equal to `hpa`, as in a direct-mapped
    /// (1:1) domain. This is the only sanctioned host-to-guest conversion.
    pub const fn identity(hpa: HostPhysAddr) -> Self {
        Self(hpa.0)
    }
}

impl HostPhysAddr {
    /// The host address numerically equal to `gpa`, valid only for a
    /// direct-mapped (1:1) domain.
    pub const fn identity(gpa: GuestPhysAddr) -> Self {
        Self(gpa.0)
    }
}

/// A half-open address range `[start, start + size)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Range<A> {
    /// First address in the range.
    pub start: A,
    /// Length in bytes.
    pub size: u64,
}

/// A range of host physical addresses.
pub type HostRange = Range<HostPhysAddr>;
/// A range of guest physical addresses.
pub type GuestRange = Range<GuestPhysAddr>;

impl<A: Address> Range<A> {
    /// A range of `size` bytes from `start`.
    pub const fn new(start: A, size: u64) -> Self {
        Self { start, size }
    }

    /// One past the last address, or `None` if the range wraps the 64-bit space.
    pub fn end(&self) -> Option<A> {
        self.start.checked_add(self.size)
    }

    /// The end as a 128-bit value, never overflowing.
    fn end_wide(&self) -> u128 {
        self.start.as_u64() as u128 + self.size as u128
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: A) -> bool {
        addr >= self.start && (addr.as_u64() as u128) < self.end_wide()
    }

    /// Whether `other` lies entirely inside this range. An empty `other`
    /// is inside when its start is inside or at the end.
    pub fn contains_range(&self, other: &Self) -> bool {
        other.start >= self.start && other.end_wide() <= self.end_wide()
    }

    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, other: &Self) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && (self.start.as_u64() as u128) < other.end_wide()
            && (other.start.as_u64() as u128) < self.end_wide()
    }

    /// Whether start and size are both multiples of `align` (a power of two).
    pub fn is_aligned(&self, align: u64) -> bool {
        self.start.is_aligned(align) && self.size & (align - 1) == 0
    }
}

impl<A: Address + fmt::LowerHex> fmt::Display for Range<A> {
    /// Formats as `0xSTART+0xSIZE`, the form error messages use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.start, self.size)
    }
}

/// Sorts `v` in place, stably, by insertion sort.
///
/// For the short lists that boot code sorts (RAM banks, reserved regions,
/// interrupt IDs of a domain's devices): each element type costs a few
/// dozen instructions, where `core`'s sorts cost kilobytes of image per
/// type. It is quadratic, so it is not for long or hot lists.
///
/// ```
/// let mut v = [3, 1, 2, 1];
/// tessel_addr::sort_small(&mut v);
/// assert_eq!(v, [1, 1, 2, 3]);
/// ```
pub fn sort_small<T: Ord>(v: &mut [T]) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && v[j - 1] > v[j] {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    /// Same order as `core`'s stable sort, equal keys included, on
    /// pseudo-random lists of every length up to 40.
    #[test]
    fn sort_small_matches_stable_sort() {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        struct Keyed(u8, usize);
        impl PartialOrd for Keyed {
            fn partial_cmp(&self, o: &Self) -> Option<core::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Keyed {
            fn cmp(&self, o: &Self) -> core::cmp::Ordering {
                self.0.cmp(&o.0)
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..=40 {
            let v: std::vec::Vec<Keyed> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    Keyed((seed % 7) as u8, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort();
            let mut got = v;
            sort_small(&mut got);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn overlap_is_half_open() {
        let a = HostRange::new(HostPhysAddr(0x1000), 0x1000);
        let b = HostRange::new(HostPhysAddr(0x2000), 0x1000);
        assert!(!a.overlaps(&b));
        assert!(!b.overlaps(&a));
        let c = HostRange::new(HostPhysAddr(0x1fff), 2);
        assert!(a.overlaps(&c) && b.overlaps(&c));
    }

    #[test]
    fn empty_ranges_never_overlap() {
        let a = HostRange::new(HostPhysAddr(0x1000), 0x1000);
        let e = HostRange::new(HostPhysAddr(0x1800), 0);
        assert!(!a.overlaps(&e));
    }

    #[test]
    fn ranges_at_top_of_space_do_not_overflow() {
        let top = HostRange::new(HostPhysAddr(u64::MAX - 0xfff), 0x1000);
        assert_eq!(top.end(), None);
        assert!(top.contains(HostPhysAddr(u64::MAX)));
        let other = HostRange::new(HostPhysAddr(u64::MAX - 0x10), 0x10);
        assert!(top.overlaps(&other));
        assert!(top.contains_range(&other));
    }

    #[test]
    fn alignment_helpers() {
        let a = GuestPhysAddr(0x4020_1234);
        assert_eq!(a.align_down(SIZE_2M), GuestPhysAddr(0x4020_0000));
        assert_eq!(a.align_up(SIZE_2M), Some(GuestPhysAddr(0x4040_0000)));
        assert_eq!(GuestPhysAddr(u64::MAX).align_up(PAGE_SIZE), None);
        assert!(HostRange::new(HostPhysAddr(0x4000_0000), SIZE_1G).is_aligned(SIZE_1G));
    }

    #[test]
    fn display_forms() {
        let r = HostRange::new(HostPhysAddr(0x4400_0000), 0x1000_0000);
        assert_eq!(format!("{r}"), "0x44000000+0x10000000");
        assert_eq!(format!("{:?}", GuestPhysAddr(0x10)), "GPA:0x10");
    }
}

/// Width of a guest memory access, as decoded from a data abort's SAS field.
///
/// Emulated devices (vGIC, vPL011) take one of these with every MMIO read or
/// write, so width rules (for example byte-accessible priority registers) are
/// checked in one vocabulary.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum AccessSize {
    /// 8-bit access.
    Byte = 1,
    /// 16-bit access.
    Half = 2,
    /// 32-bit access.
    Word = 4,
    /// 64-bit access.
    Double = 8,
}

impl AccessSize {
    /// The access width in bytes.
    pub const fn bytes(self) -> u64 {
        self as u64
    }

    /// Decodes a width in bytes (1, 2, 4 or 8).
    pub const fn from_bytes(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::Byte),
            2 => Some(Self::Half),
            4 => Some(Self::Word),
            8 => Some(Self::Double),
            _ => None,
        }
    }

    /// Mask of the low bits the access carries (`0xff` for a byte, ...).
    pub const fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            s => (1u64 << (s.bytes() * 8)) - 1,
        }
    }
}

/// Decoding of device-tree property cells (big-endian 32-bit words).
///
/// `reg`-like properties are lists of tuples whose fields are 1 or 2 cells
/// wide, as given by `#address-cells`/`#size-cells`.
pub mod cells {
    /// Why a cell list could not be decoded.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum CellError {
        /// A field width outside 1..=2 cells (the only widths a 64-bit value holds).
        BadCellCount(u32),
        /// The property length is not a whole number of tuples.
        Truncated {
            /// Property length in bytes.
            len: usize,
            /// Size of one tuple in bytes.
            tuple: usize,
        },
        /// The property is empty.
        Empty,
    }

    impl core::fmt::Display for CellError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Self::BadCellCount(n) => write!(f, "unsupported cell count {n} (must be 1 or 2)"),
                Self::Truncated { len, tuple } => write!(
                    f,
                    "length {len} bytes is not a multiple of the {tuple}-byte entry size"
                ),
                Self::Empty => write!(f, "property is empty"),
            }
        }
    }

    /// Reads one `n`-cell big-endian value from the front of `bytes`.
    /// Returns the value and the rest, or `None` if `bytes` is too short or
    /// `n` is not 1 or 2.
    pub fn read(bytes: &[u8], n: u32) -> Option<(u64, &[u8])> {
        let len = match n {
            1 => 4,
            2 => 8,
            _ => return None,
        };
        if bytes.len() < len {
            return None;
        }
        let (head, rest) = bytes.split_at(len);
        let v = head.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        Some((v, rest))
    }

    /// Splits a property into tuples of `widths` cells each, checking that the
    /// widths are 1 or 2 and that the length is a whole number of tuples.
    /// Each tuple is returned as an array of `N` decoded values.
    pub fn tuples<const N: usize>(
        prop: &[u8],
        widths: [u32; N],
    ) -> Result<impl Iterator<Item = [u64; N]> + '_, CellError> {
        let mut tuple = 0usize;
        for w in widths {
            if !(1..=2).contains(&w) {
                return Err(CellError::BadCellCount(w));
            }
            tuple += w as usize * 4;
        }
        if prop.is_empty() {
            return Err(CellError::Empty);
        }
        if !prop.len().is_multiple_of(tuple) {
            return Err(CellError::Truncated {
                len: prop.len(),
                tuple,
            });
        }
        Ok(prop.chunks_exact(tuple).map(move |mut chunk| {
            let mut out = [0u64; N];
            for (slot, w) in out.iter_mut().zip(widths) {
                // Widths and length were checked above, so each read succeeds.
                if let Some((v, rest)) = read(chunk, w) {
                    *slot = v;
                    chunk = rest;
                }
            }
            out
        }))
    }

    /// Decodes a `reg`-style list of (address, size) pairs.
    pub fn reg(
        prop: &[u8],
        address_cells: u32,
        size_cells: u32,
    ) -> Result<impl Iterator<Item = (u64, u64)> + '_, CellError> {
        Ok(tuples(prop, [address_cells, size_cells])?.map(|[a, s]| (a, s)))
    }

    #[cfg(test)]
    mod tests {
        extern crate std;
        use super::*;
        use std::vec::Vec;

        #[test]
        fn decodes_two_by_two_reg() {
            let prop = [0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
            let v: Vec<_> = reg(&prop, 2, 2).unwrap().collect();
            assert_eq!(v, [(0x4000_0000, 0x1000_0000)]);
        }

        #[test]
        fn decodes_mixed_widths() {
            let prop = [0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0x20, 0];
            let v: Vec<_> = tuples(&prop, [2, 1]).unwrap().collect();
            assert_eq!(v, [[0x1_0000_1000, 0x2000]]);
        }

        #[test]
        fn rejects_bad_shapes() {
            assert_eq!(reg(&[0; 12], 0, 1).err(), Some(CellError::BadCellCount(0)));
            assert_eq!(reg(&[0; 12], 2, 3).err(), Some(CellError::BadCellCount(3)));
            assert_eq!(
                reg(&[0; 12], 2, 2).err(),
                Some(CellError::Truncated { len: 12, tuple: 16 })
            );
            assert_eq!(reg(&[], 2, 2).err(), Some(CellError::Empty));
        }
    }
}
