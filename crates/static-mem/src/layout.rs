//! Guest RAM layouts: which guest-physical ranges a domain's RAM occupies and
//! which host memory backs them.

use alloc::vec::Vec;
use core::fmt;

use tessel_addr::{Address, GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};

use crate::banks::MAX_BANKS;

/// Xen's low guest RAM window, `GUEST_RAM0_BASE`/`GUEST_RAM0_SIZE`
/// (public/arch-arm.h; spec §3.1): 3 GiB at 1 GiB.
pub const GUEST_RAM0: GuestRange = GuestRange::new(GuestPhysAddr(0x4000_0000), 0xC000_0000);
/// Xen's high guest RAM window, `GUEST_RAM1_BASE`/`GUEST_RAM1_SIZE`
/// (public/arch-arm.h; spec §3.1): 1016 GiB at 8 GiB.
pub const GUEST_RAM1: GuestRange = GuestRange::new(GuestPhysAddr(0x2_0000_0000), 0xFE_0000_0000);
/// The guest RAM windows of a domain that is not direct-mapped, in fill order.
pub const GUEST_RAM_WINDOWS: [GuestRange; 2] = [GUEST_RAM0, GUEST_RAM1];
/// Total capacity of [`GUEST_RAM_WINDOWS`] in bytes.
pub const GUEST_RAM_CAPACITY: u64 = GUEST_RAM0.size + GUEST_RAM1.size;

/// One contiguous piece of guest RAM and the host memory behind it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Piece {
    /// Guest-physical range.
    pub guest: GuestRange,
    /// Host-physical address backing `guest.start`; the piece is contiguous
    /// in both spaces.
    pub host: HostPhysAddr,
}

impl Piece {
    /// The host range backing the piece.
    pub fn host_range(&self) -> HostRange {
        HostRange::new(self.host, self.guest.size)
    }
}

/// How a domain's RAM is placed in guest-physical space and backed in host
/// memory.
///
/// [`Self::pieces`] is what stage-2 maps; [`Self::guest_banks`] is what the
/// guest device tree's `memory` node lists.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RamLayout {
    pieces: Vec<Piece>,
    banks: Vec<GuestRange>,
    direct_map: bool,
}

impl RamLayout {
    /// The 1:1 layout of static banks (spec §5.4): each host bank becomes one
    /// guest bank at the same address, in the given (DT) order, neither sorted
    /// nor merged.
    pub fn direct_map(banks: &[HostRange]) -> Result<Self, LayoutError> {
        if banks.is_empty() {
            return Err(LayoutError::NoBanks);
        }
        if banks.len() > MAX_BANKS {
            return Err(LayoutError::TooManyBanks { count: banks.len() });
        }
        let pieces: Vec<Piece> = banks
            .iter()
            .map(|b| Piece {
                guest: GuestRange::new(GuestPhysAddr::identity(b.start), b.size),
                host: b.start,
            })
            .collect();
        let guest_banks = pieces.iter().map(|p| p.guest).collect();
        Ok(Self {
            pieces,
            banks: guest_banks,
            direct_map: true,
        })
    }

    /// Packs host banks, in order, into [`GUEST_RAM0`] then [`GUEST_RAM1`],
    /// splitting a bank across the two windows when it does not fit
    /// (spec §5.3). The total is counted from the banks' full sizes (Xen's
    /// pre-4.22 `tot_size` miscount is not reproduced).
    pub fn packed(banks: &[HostRange]) -> Result<Self, LayoutError> {
        if banks.is_empty() {
            return Err(LayoutError::NoBanks);
        }
        let total = total_bytes(banks)?;
        if total > GUEST_RAM_CAPACITY {
            return Err(LayoutError::GuestRamExhausted {
                total_kib: total / 1024,
            });
        }
        let mut packer = Packer::default();
        for bank in banks {
            packer.push(bank.start, bank.size)?;
        }
        Ok(packer.finish())
    }

    /// Pieces in guest-address order: guest range and backing host address.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The guest RAM banks (one per window used, or one per static bank when
    /// direct-mapped), as the guest DT `memory` node lists them.
    pub fn guest_banks(&self) -> &[GuestRange] {
        &self.banks
    }

    /// Whether guest-physical equals host-physical.
    pub fn is_direct_mapped(&self) -> bool {
        self.direct_map
    }

    /// Total RAM in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.guest.size).sum()
    }

    /// The host ranges backing the domain's RAM.
    pub fn host_ranges(&self) -> impl Iterator<Item = HostRange> + '_ {
        self.pieces.iter().map(Piece::host_range)
    }

    /// Translates a guest RAM address to the host address backing it, or
    /// `None` if `gpa` is not guest RAM.
    pub fn gpa_to_hpa(&self, gpa: GuestPhysAddr) -> Option<HostPhysAddr> {
        let piece = self.pieces.iter().find(|p| p.guest.contains(gpa))?;
        let off = gpa.offset_from(piece.guest.start)?;
        piece.host.checked_add(off)
    }
}

/// Fills the guest RAM windows in order with host memory.
#[derive(Default)]
pub(crate) struct Packer {
    window: usize,
    used: u64,
    pieces: Vec<Piece>,
}

impl Packer {
    /// Appends `size` bytes of host memory at `host` to the guest RAM,
    /// continuing in the next window when the current one is full.
    pub(crate) fn push(&mut self, host: HostPhysAddr, size: u64) -> Result<(), LayoutError> {
        let mut done = 0u64;
        while done < size {
            let Some(window) = GUEST_RAM_WINDOWS.get(self.window) else {
                return Err(LayoutError::GuestRamExhausted {
                    total_kib: (self.filled() + (size - done)) / 1024,
                });
            };
            let take = (size - done).min(window.size - self.used);
            let guest = GuestRange::new(GuestPhysAddr(window.start.0 + self.used), take);
            let host_at = host.checked_add(done).ok_or(LayoutError::SizeOverflow)?;
            self.pieces.push(Piece {
                guest,
                host: host_at,
            });
            self.used += take;
            done += take;
            if self.used == window.size {
                self.window += 1;
                self.used = 0;
            }
        }
        Ok(())
    }

    /// Bytes placed so far.
    pub(crate) fn filled(&self) -> u64 {
        self.pieces.iter().map(|p| p.guest.size).sum()
    }

    pub(crate) fn finish(self) -> RamLayout {
        let mut banks: Vec<GuestRange> = Vec::new();
        for w in GUEST_RAM_WINDOWS {
            let used: u64 = self
                .pieces
                .iter()
                .filter(|p| w.contains_range(&p.guest))
                .map(|p| p.guest.size)
                .sum();
            if used > 0 {
                banks.push(GuestRange::new(w.start, used));
            }
        }
        RamLayout {
            pieces: self.pieces,
            banks,
            direct_map: false,
        }
    }
}

/// Sum of the bank sizes, refusing overflow.
pub(crate) fn total_bytes(banks: &[HostRange]) -> Result<u64, LayoutError> {
    banks
        .iter()
        .try_fold(0u64, |acc, b| acc.checked_add(b.size))
        .ok_or(LayoutError::SizeOverflow)
}

/// Converts the DT `memory` property (KiB) to bytes.
pub(crate) fn kib_to_bytes(memory_kib: u64) -> Result<u64, LayoutError> {
    memory_kib
        .checked_mul(1024)
        .ok_or(LayoutError::MemoryTooLarge { memory_kib })
}

/// The layout of a static-memory domain: checks that `memory_kib` (the DT
/// `memory` property) equals the banks' total, then lays them out 1:1
/// ([`RamLayout::direct_map`]) or packed ([`RamLayout::packed`]).
///
/// ```
/// use tessel_addr::{GuestPhysAddr, HostPhysAddr, HostRange};
/// use tessel_static_mem::static_layout;
/// // Spec §5.3: two 2 GiB banks fill RAM0 (3 GiB) and 1 GiB of RAM1.
/// let banks = [
///     HostRange::new(HostPhysAddr(0x1_0000_0000), 0x8000_0000),
///     HostRange::new(HostPhysAddr(0x2_0000_0000), 0x8000_0000),
/// ];
/// let layout = static_layout(&banks, 4 << 20, false).unwrap();
/// assert_eq!(layout.guest_banks()[0].size, 3 << 30);
/// assert_eq!(layout.guest_banks()[1].size, 1 << 30);
/// assert_eq!(
///     layout.gpa_to_hpa(GuestPhysAddr(0x2_0000_0000)),
///     Some(HostPhysAddr(0x2_4000_0000))
/// );
/// ```
pub fn static_layout(
    banks: &[HostRange],
    memory_kib: u64,
    direct_map: bool,
) -> Result<RamLayout, LayoutError> {
    if banks.is_empty() {
        return Err(LayoutError::NoBanks);
    }
    let memory = kib_to_bytes(memory_kib)?;
    let total = total_bytes(banks)?;
    if memory != total {
        return Err(LayoutError::SizeMismatch {
            memory_kib,
            banks_kib: total / 1024,
        });
    }
    if direct_map {
        RamLayout::direct_map(banks)
    } else {
        RamLayout::packed(banks)
    }
}

/// Why a domain's RAM could not be laid out or allocated.
///
/// Display messages do not name the domain; the caller prefixes it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LayoutError {
    /// A static-memory layout was asked for with no bank.
    NoBanks,
    /// More than [`MAX_BANKS`] banks for a direct-mapped domain.
    TooManyBanks {
        /// Number of banks.
        count: usize,
    },
    /// The `memory` property differs from the static banks' total.
    SizeMismatch {
        /// The `memory` property, KiB.
        memory_kib: u64,
        /// Total of the `xen,static-mem` banks, KiB.
        banks_kib: u64,
    },
    /// The RAM does not fit the guest RAM windows (4 GiB below ... 1 TiB).
    GuestRamExhausted {
        /// Requested total, KiB.
        total_kib: u64,
    },
    /// The `memory` property does not fit in bytes in 64 bits.
    MemoryTooLarge {
        /// The `memory` property, KiB.
        memory_kib: u64,
    },
    /// Bank sizes overflow 64 bits when added.
    SizeOverflow,
    /// `memory` is zero.
    ZeroMemory,
    /// `memory` is not a whole number of 4 KiB pages.
    NotPageMultiple {
        /// The `memory` property, KiB.
        memory_kib: u64,
    },
    /// Not enough free host memory for a heap-backed domain.
    NotEnoughMemory {
        /// Requested RAM, KiB.
        requested_kib: u64,
        /// Largest free contiguous host block, KiB.
        largest_free_kib: u64,
        /// All free host memory, KiB.
        total_free_kib: u64,
    },
    /// The domain has no `xen,static-mem` banks reserved.
    NotReserved,
    /// Heap RAM was asked for a domain that has `xen,static-mem` banks
    /// (mixing static and heap RAM is unsupported, as in Xen).
    HasStaticMemory,
    /// The domain's RAM was already allocated or its static banks already
    /// claimed, and not released since.
    AlreadyAllocated,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBanks => f.write_str("no xen,static-mem bank to lay out"),
            Self::TooManyBanks { count } => write!(
                f,
                "{count} banks exceed the {MAX_BANKS} guest memory banks supported"
            ),
            Self::SizeMismatch {
                memory_kib,
                banks_kib,
            } => write!(
                f,
                "memory is {memory_kib} KiB but the xen,static-mem banks total {banks_kib} KiB"
            ),
            Self::GuestRamExhausted { total_kib } => write!(
                f,
                "{total_kib} KiB of RAM does not fit the guest RAM windows ({} KiB at most)",
                GUEST_RAM_CAPACITY / 1024
            ),
            Self::MemoryTooLarge { memory_kib } => {
                write!(f, "memory {memory_kib} KiB is too large")
            }
            Self::SizeOverflow => f.write_str("bank sizes overflow 64 bits"),
            Self::ZeroMemory => f.write_str("memory is 0 KiB"),
            Self::NotPageMultiple { memory_kib } => write!(
                f,
                "memory {memory_kib} KiB is not a multiple of the 4 KiB page size"
            ),
            Self::NotEnoughMemory {
                requested_kib,
                largest_free_kib,
                total_free_kib,
            } => write!(
                f,
                "not enough free host memory for {requested_kib} KiB \
                 (largest free block {largest_free_kib} KiB, {total_free_kib} KiB free in total)"
            ),
            Self::HasStaticMemory => f.write_str(
                "the domain has xen,static-mem banks; heap memory cannot be added to them",
            ),
            Self::NotReserved => f.write_str("no xen,static-mem banks are reserved"),
            Self::AlreadyAllocated => {
                f.write_str("RAM is already allocated (domain built twice without release)")
            }
        }
    }
}

impl core::error::Error for LayoutError {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn hr(start: u64, size: u64) -> HostRange {
        HostRange::new(HostPhysAddr(start), size)
    }
    fn gr(start: u64, size: u64) -> GuestRange {
        GuestRange::new(GuestPhysAddr(start), size)
    }

    #[test]
    fn spec_example_two_by_two_gib_splits_across_windows() {
        let banks = [hr(0x1_0000_0000, 2 * GIB), hr(0x2_0000_0000, 2 * GIB)];
        // memory = 4 GiB: the full sizes are counted (no tot_size miscount).
        let l = static_layout(&banks, 4 * GIB / 1024, false).unwrap();
        assert!(!l.is_direct_mapped());
        assert_eq!(
            l.guest_banks(),
            &[gr(0x4000_0000, 3 * GIB), gr(0x2_0000_0000, GIB)]
        );
        assert_eq!(
            l.pieces(),
            &[
                Piece {
                    guest: gr(0x4000_0000, 2 * GIB),
                    host: HostPhysAddr(0x1_0000_0000)
                },
                Piece {
                    guest: gr(0xC000_0000, GIB),
                    host: HostPhysAddr(0x2_0000_0000)
                },
                Piece {
                    guest: gr(0x2_0000_0000, GIB),
                    host: HostPhysAddr(0x2_4000_0000)
                },
            ]
        );
        assert_eq!(l.total_bytes(), 4 * GIB);
        assert_eq!(
            l.gpa_to_hpa(GuestPhysAddr(0xFFFF_FFFF)),
            Some(HostPhysAddr(0x2_3FFF_FFFF))
        );
        assert_eq!(l.gpa_to_hpa(GuestPhysAddr(0x1_0000_0000)), None);
        assert_eq!(l.gpa_to_hpa(GuestPhysAddr(0x3FFF_FFFF)), None);
        // The buggy total (2 + 1 GiB) must not be what is accepted.
        assert_eq!(
            static_layout(&banks, 3 * GIB / 1024, false),
            Err(LayoutError::SizeMismatch {
                memory_kib: 3 << 20,
                banks_kib: 4 << 20
            })
        );
    }

    #[test]
    fn small_banks_pack_contiguously_in_ram0() {
        let banks = [hr(0x9000_0000, 0x100_0000), hr(0x5000_0000, 0x200_0000)];
        let l = static_layout(&banks, 0x300_0000 / 1024, false).unwrap();
        assert_eq!(l.guest_banks(), &[gr(0x4000_0000, 0x300_0000)]);
        assert_eq!(
            l.gpa_to_hpa(GuestPhysAddr(0x4100_0000)),
            Some(HostPhysAddr(0x5000_0000))
        );
        assert_eq!(
            l.host_ranges().collect::<Vec<_>>(),
            vec![banks[0], banks[1]]
        );
    }

    #[test]
    fn direct_map_keeps_dt_order_unmerged() {
        let banks = [hr(0x6000_0000, 0x1000_0000), hr(0x5000_0000, 0x1000_0000)];
        let l = static_layout(&banks, 0x2000_0000 / 1024, true).unwrap();
        assert!(l.is_direct_mapped());
        assert_eq!(
            l.guest_banks(),
            &[gr(0x6000_0000, 0x1000_0000), gr(0x5000_0000, 0x1000_0000)]
        );
        assert_eq!(
            l.gpa_to_hpa(GuestPhysAddr(0x5abc_d000)),
            Some(HostPhysAddr(0x5abc_d000))
        );
        assert_eq!(l.gpa_to_hpa(GuestPhysAddr(0x4fff_ffff)), None);
    }

    #[test]
    fn size_mismatch_names_both_numbers() {
        let banks = [hr(0x5000_0000, 0x1000_0000)];
        let e = static_layout(&banks, 1 << 20, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "memory is 1048576 KiB but the xen,static-mem banks total 262144 KiB"
        );
    }

    #[test]
    fn layout_errors_for_degenerate_inputs() {
        assert_eq!(static_layout(&[], 0, true), Err(LayoutError::NoBanks));
        assert_eq!(
            LayoutError::NoBanks.to_string(),
            "no xen,static-mem bank to lay out"
        );
        let e = static_layout(&[hr(0, 0x1000)], u64::MAX, false).unwrap_err();
        assert_eq!(
            e,
            LayoutError::MemoryTooLarge {
                memory_kib: u64::MAX
            }
        );
        assert_eq!(
            e.to_string(),
            "memory 18446744073709551615 KiB is too large"
        );
        let e = static_layout(&[hr(0, u64::MAX), hr(0, 2)], 4, false).unwrap_err();
        assert_eq!(e, LayoutError::SizeOverflow);
        assert_eq!(e.to_string(), "bank sizes overflow 64 bits");

        let many: Vec<_> = (0..257u64).map(|i| hr(i * 0x1000, 0x1000)).collect();
        let e = RamLayout::direct_map(&many).unwrap_err();
        assert_eq!(e, LayoutError::TooManyBanks { count: 257 });
        assert_eq!(
            e.to_string(),
            "257 banks exceed the 256 guest memory banks supported"
        );
        assert!(RamLayout::direct_map(&many[..256]).is_ok());
    }

    #[test]
    fn too_much_ram_for_the_windows_is_refused() {
        let banks = [hr(0x100_0000_0000, 1020 * GIB)];
        let e = static_layout(&banks, 1020 * GIB / 1024, false).unwrap_err();
        assert_eq!(
            e,
            LayoutError::GuestRamExhausted {
                total_kib: 1020 << 20
            }
        );
        assert_eq!(
            e.to_string(),
            "1069547520 KiB of RAM does not fit the guest RAM windows (1068498944 KiB at most)"
        );
        // Exactly full is fine.
        let full = [hr(0x100_0000_0000, 1019 * GIB)];
        let l = static_layout(&full, 1019 * GIB / 1024, false).unwrap();
        assert_eq!(l.guest_banks(), &GUEST_RAM_WINDOWS);
    }

    fn arb_banks() -> impl Strategy<Value = Vec<HostRange>> {
        proptest::collection::vec((0u64..1 << 20, 1u64..1 << 20), 1..12).prop_map(|v| {
            v.into_iter()
                .map(|(page, pages)| hr(page << 12, pages << 14))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Packing keeps every byte, in order, inside the windows, and the
        /// guest banks are exactly the union of the pieces.
        #[test]
        fn packing_preserves_bytes_and_order(banks in arb_banks()) {
            let total: u64 = banks.iter().map(|b| b.size).sum();
            let l = static_layout(&banks, total / 1024, false).unwrap();
            prop_assert_eq!(l.total_bytes(), total);
            let bank_total: u64 = l.guest_banks().iter().map(|b| b.size).sum();
            prop_assert_eq!(bank_total, total);
            prop_assert!(l.guest_banks().len() <= 2);
            // Pieces are contiguous in guest space, window by window.
            let mut cursor = GUEST_RAM0.start;
            let mut host_bytes = Vec::new();
            for p in l.pieces() {
                if p.guest.start != cursor {
                    prop_assert_eq!(cursor, GUEST_RAM0.end().unwrap());
                    prop_assert_eq!(p.guest.start, GUEST_RAM1.start);
                }
                prop_assert!(GUEST_RAM_WINDOWS.iter().any(|w| w.contains_range(&p.guest)));
                cursor = p.guest.end().unwrap();
                host_bytes.push(p.host_range());
            }
            // Host side: the pieces walk the banks in DT order.
            let mut bi = 0;
            let mut off = 0;
            for h in host_bytes {
                prop_assert_eq!(h.start.0, banks[bi].start.0 + off);
                off += h.size;
                if off == banks[bi].size { bi += 1; off = 0; }
            }
            prop_assert_eq!(bi, banks.len());
            // gpa_to_hpa agrees with the pieces at their edges.
            for p in l.pieces() {
                prop_assert_eq!(l.gpa_to_hpa(p.guest.start), Some(p.host));
                let last = GuestPhysAddr(p.guest.start.0 + p.guest.size - 1);
                prop_assert_eq!(l.gpa_to_hpa(last), Some(HostPhysAddr(p.host.0 + p.guest.size - 1)));
            }
        }

        /// A direct-mapped layout is the identity on every bank.
        #[test]
        fn direct_map_is_identity(banks in arb_banks(), pick in 0usize..12, off in 0u64..1 << 14) {
            let total: u64 = banks.iter().map(|b| b.size).sum();
            let l = static_layout(&banks, total / 1024, true).unwrap();
            let b = banks[pick % banks.len()];
            let gpa = GuestPhysAddr(b.start.0 + off % b.size);
            prop_assert_eq!(l.gpa_to_hpa(gpa), Some(HostPhysAddr(gpa.0)));
        }
    }
}
