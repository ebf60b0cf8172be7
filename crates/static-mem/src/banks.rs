//! Decoding of `xen,static-mem` and the reserved regions banks must avoid.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use tessel_addr::cells::{self, CellError};
use tessel_addr::{HostPhysAddr, HostRange};

/// Largest number of banks one domain may list (Xen's `NR_MEM_BANKS`, spec §5.1).
pub const MAX_BANKS: usize = 256;

/// What a reserved host region is, so an overlap error can say what a bank hits.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum ReservedKind {
    /// The hypervisor's own image (text, data, stacks, heap).
    HypervisorImage,
    /// A boot module (kernel, ramdisk, partial device tree) of a domain.
    Module {
        /// The module's compatible, e.g. `multiboot,kernel`.
        kind: String,
        /// The domain node the module belongs to, e.g. `domU1`.
        domain: String,
    },
    /// MMIO registers of a device node.
    DeviceMmio {
        /// The device-tree path or name of the device node.
        node: String,
    },
    /// A `xen,static-mem` bank of a domain.
    StaticBank {
        /// The domain node name.
        domain: String,
        /// Position of the bank in the domain's `xen,static-mem`.
        index: usize,
    },
    /// A reserved region of the host DT, source not given more precisely.
    FdtReserved,
    /// A `/reserved-memory` child node of the host DT (firmware, shared
    /// buffers such as SCMI memory).
    ReservedMemory {
        /// Path of the `/reserved-memory` child.
        node: String,
    },
    /// A `/memreserve/` entry of the host DT header. As in Xen (spec §5.1),
    /// a static bank lying entirely inside one is accepted (firmware often
    /// memreserves the static-memory area to hide it from other software);
    /// a partial overlap is refused. The heap never uses it either way.
    MemReserve,
    /// Host RAM already allocated to a domain from the heap.
    DomainRam {
        /// The domain node name.
        domain: String,
    },
}

impl fmt::Display for ReservedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HypervisorImage => f.write_str("the hypervisor image"),
            Self::Module { kind, domain } => write!(f, "the {kind} module of {domain}"),
            Self::DeviceMmio { node } => write!(f, "the MMIO registers of {node}"),
            Self::StaticBank { domain, index } => {
                write!(f, "bank {index} of {domain}'s xen,static-mem")
            }
            Self::FdtReserved => f.write_str("a reserved-memory region of the host device tree"),
            Self::ReservedMemory { node } => write!(f, "the reserved memory {node}"),
            Self::MemReserve => f.write_str("a /memreserve/ entry of the host device tree"),
            Self::DomainRam { domain } => write!(f, "the RAM allocated to {domain}"),
        }
    }
}

/// A host region no guest RAM may use, with what it is.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Reserved {
    /// The host addresses covered.
    pub range: HostRange,
    /// What lives there.
    pub what: ReservedKind,
}

impl Reserved {
    /// A reserved region of `what` at `range`.
    pub fn new(range: HostRange, what: ReservedKind) -> Self {
        Self { range, what }
    }
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.what, self.range)
    }
}

/// Why a `xen,static-mem` property or one of its banks was refused.
///
/// Display messages name the bank but not the domain; the caller prefixes
/// e.g. `domU1: xen,static-mem: `.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BankError {
    /// The property could not be decoded with the given cell counts.
    Cells(CellError),
    /// The domain lists no bank at all.
    NoBanks,
    /// The domain already has banks reserved (each domain reserves once).
    AlreadyReserved,
    /// More banks than [`MAX_BANKS`].
    TooManyBanks {
        /// Number of banks listed.
        count: usize,
    },
    /// A bank of size zero.
    Empty {
        /// Position of the bank in the property.
        index: usize,
        /// The bank.
        bank: HostRange,
    },
    /// A bank that runs past the end of the 64-bit address space.
    Wraps {
        /// Position of the bank in the property.
        index: usize,
        /// The bank.
        bank: HostRange,
    },
    /// A bank whose start or size is not a multiple of 4 KiB.
    Unaligned {
        /// Position of the bank in the property.
        index: usize,
        /// The bank.
        bank: HostRange,
    },
    /// A bank not entirely inside one host RAM range (from `/memory`).
    OutsideRam {
        /// Position of the bank in the property.
        index: usize,
        /// The bank.
        bank: HostRange,
    },
    /// A bank that overlaps a reserved region, another static bank or RAM
    /// already given to a domain.
    Overlap {
        /// Position of the bank in the property.
        index: usize,
        /// The bank.
        bank: HostRange,
        /// What it overlaps.
        other: Reserved,
    },
}

impl From<CellError> for BankError {
    fn from(e: CellError) -> Self {
        Self::Cells(e)
    }
}

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cells(e) => write!(f, "malformed property: {e}"),
            Self::NoBanks => f.write_str("no memory bank listed"),
            Self::AlreadyReserved => f.write_str("banks are already reserved for this domain"),
            Self::TooManyBanks { count } => {
                write!(f, "{count} banks listed, at most {MAX_BANKS} are supported")
            }
            Self::Empty { index, bank } => write!(f, "bank {index} ({bank}) has size 0"),
            Self::Wraps { index, bank } => write!(
                f,
                "bank {index} ({bank}) runs past the end of the 64-bit address space"
            ),
            Self::Unaligned { index, bank } => write!(
                f,
                "bank {index} ({bank}) is not 4 KiB aligned (start and size must be multiples of 0x1000)"
            ),
            Self::OutsideRam { index, bank } => {
                write!(f, "bank {index} ({bank}) is not inside host RAM (/memory)")
            }
            Self::Overlap { bank, other, .. } => write!(f, "bank {bank} overlaps {other}"),
        }
    }
}

impl core::error::Error for BankError {}

/// Decodes a `xen,static-mem` property into host banks, in DT order.
///
/// `address_cells`/`size_cells` are those of the domain node's parent
/// (`/chosen`), as Xen does since 4.17 (spec §9.23). Only the shape is
/// checked here (cell counts, whole tuples, non-empty, at most
/// [`MAX_BANKS`]); placement is checked by
/// [`HostMemory::check_banks`](crate::HostMemory::check_banks).
///
/// ```
/// use tessel_static_mem::parse_banks;
/// // <0x0 0x50000000 0x0 0x10000000> with #address-cells = #size-cells = 2.
/// let prop = [0, 0, 0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
/// let banks = parse_banks(&prop, 2, 2).unwrap();
/// assert_eq!(banks[0].to_string(), "0x50000000+0x10000000");
/// ```
pub fn parse_banks(
    prop: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> Result<Vec<HostRange>, BankError> {
    let entries = cells::reg(prop, address_cells, size_cells)?;
    // Cell counts were validated by `reg`; count before allocating.
    let tuple = (address_cells as usize + size_cells as usize) * 4;
    let count = prop.len() / tuple;
    if count > MAX_BANKS {
        return Err(BankError::TooManyBanks { count });
    }
    Ok(entries
        .map(|(start, size)| HostRange::new(HostPhysAddr(start), size))
        .collect())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn be32(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn parses_two_by_two_banks_in_dt_order() {
        let prop = be32(&[
            0x1,
            0x0,
            0x0,
            0x4000_0000,
            0x0,
            0x5000_0000,
            0x0,
            0x100_0000,
        ]);
        let banks = parse_banks(&prop, 2, 2).unwrap();
        assert_eq!(
            banks,
            vec![
                HostRange::new(HostPhysAddr(0x1_0000_0000), 0x4000_0000),
                HostRange::new(HostPhysAddr(0x5000_0000), 0x100_0000),
            ]
        );
    }

    #[test]
    fn parses_one_cell_fields() {
        let prop = be32(&[0x5000_0000, 0x1000_0000]);
        let banks = parse_banks(&prop, 1, 1).unwrap();
        assert_eq!(
            banks,
            vec![HostRange::new(HostPhysAddr(0x5000_0000), 0x1000_0000)]
        );
        let prop = be32(&[0x0, 0x5000_0000, 0x1000_0000]);
        assert_eq!(parse_banks(&prop, 2, 1).unwrap(), banks);
    }

    #[test]
    fn refuses_malformed_properties() {
        let e = parse_banks(&[0; 12], 2, 2).unwrap_err();
        assert_eq!(
            e,
            BankError::Cells(CellError::Truncated { len: 12, tuple: 16 })
        );
        assert_eq!(
            e.to_string(),
            "malformed property: length 12 bytes is not a multiple of the 16-byte entry size"
        );
        let e = parse_banks(&[0; 16], 0, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed property: unsupported cell count 0 (must be 1 or 2)"
        );
        assert_eq!(
            parse_banks(&[], 2, 2).unwrap_err(),
            BankError::Cells(CellError::Empty)
        );
    }

    #[test]
    fn refuses_more_than_max_banks() {
        let ok = be32(&[0x1000, 0x1000].repeat(MAX_BANKS));
        assert_eq!(parse_banks(&ok, 1, 1).unwrap().len(), MAX_BANKS);
        let too_many = be32(&[0x1000, 0x1000].repeat(MAX_BANKS + 1));
        let e = parse_banks(&too_many, 1, 1).unwrap_err();
        assert_eq!(e, BankError::TooManyBanks { count: 257 });
        assert_eq!(e.to_string(), "257 banks listed, at most 256 are supported");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Encoding banks with any cell counts that hold them and parsing
        /// them back gives the same banks, in order.
        #[test]
        fn parse_round_trips(
            raw in proptest::collection::vec((proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>()), 1..20),
            ac in 1u32..=2,
            sc in 1u32..=2,
        ) {
            let fit = |v: u64, c: u32| if c == 1 { v & 0xffff_ffff } else { v };
            let banks: Vec<HostRange> = raw
                .iter()
                .map(|&(a, s)| HostRange::new(HostPhysAddr(fit(a, ac)), fit(s, sc)))
                .collect();
            let mut prop = Vec::new();
            for b in &banks {
                for (v, c) in [(b.start.0, ac), (b.size, sc)] {
                    if c == 2 {
                        prop.extend_from_slice(&v.to_be_bytes());
                    } else {
                        prop.extend_from_slice(&(v as u32).to_be_bytes());
                    }
                }
            }
            proptest::prop_assert_eq!(parse_banks(&prop, ac, sc).unwrap(), banks);
        }

        /// Arbitrary bytes and cell counts never panic.
        #[test]
        fn parse_never_panics(
            prop in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            ac in 0u32..4,
            sc in 0u32..4,
        ) {
            let _ = parse_banks(&prop, ac, sc);
        }
    }

    #[test]
    fn reserved_kinds_read_naturally() {
        let r = Reserved::new(
            HostRange::new(HostPhysAddr(0x4400_0000), 0x20_0000),
            ReservedKind::Module {
                kind: "multiboot,kernel".into(),
                domain: "domU1".into(),
            },
        );
        assert_eq!(
            r.to_string(),
            "the multiboot,kernel module of domU1 at 0x44000000+0x200000"
        );
        let bank = ReservedKind::StaticBank {
            domain: "domU2".into(),
            index: 1,
        };
        assert_eq!(bank.to_string(), "bank 1 of domU2's xen,static-mem");
        assert_eq!(
            ReservedKind::DeviceMmio {
                node: "/pl011@9000000".into()
            }
            .to_string(),
            "the MMIO registers of /pl011@9000000"
        );
        assert_eq!(
            ReservedKind::ReservedMemory {
                node: "/reserved-memory/scmi-shmem@4e000000".into()
            }
            .to_string(),
            "the reserved memory /reserved-memory/scmi-shmem@4e000000"
        );
    }
}
