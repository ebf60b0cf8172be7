//! Stage-2 translation regime configuration: `VTCR_EL2` and `VTTBR_EL2`.
//!
//! The layout of a 4 KiB-granule stage-2 table is fixed by two numbers: the
//! size of the intermediate physical address space (the guest's "physical"
//! space, `64 - VTCR_EL2.T0SZ` bits) and the level at which the walk starts
//! (`VTCR_EL2.SL0`). At the start level the architecture lets up to 16 tables
//! be *concatenated* (placed side by side, aligned to their total size) so that
//! up to 4 extra address bits are resolved there instead of needing one more
//! level (Arm ARM DDI 0487, D8.2.x "Concatenated translation tables for the
//! initial stage 2 lookup").
//!
//! Tessel always picks the *fewest levels* the IPA size allows, using
//! concatenation when it saves a level (the policy KVM uses): fewer levels
//! mean a shorter walk on every TLB miss, at the cost of at most 64 KiB of
//! root tables per guest.
//!
//! With the 4 KiB granule, level `L` resolves address bits
//! `[12 + 9*(4-L) - 1 : 12 + 9*(3-L)]`, so a walk starting at level `L`
//! covers `12 + 9*(4-L)` bits with one root table and 4 more with 16:
//!
//! | IPA bits | start level | root tables            |
//! |----------|-------------|------------------------|
//! | 25..=30  | 2           | 1 (partially used)     |
//! | 31..=34  | 2           | 2, 4, 8, 16            |
//! | 35..=39  | 1           | 1 (partially used)     |
//! | 40..=43  | 1           | 2, 4, 8, 16            |
//! | 44..=48  | 0           | 1 (partially used)     |
//!
//! This respects the architecture's rules: level 0 as the initial lookup
//! level needs a PA size of at least 44 bits (DDI 0487 K.a, R_SRKBC /
//! Table D8-9), and the IPA size may not exceed the PA size (the effective
//! minimum T0SZ, R_DTLMN). The pseudocode `AArch64.S2InconsistentSL()`
//! accepts exactly the (start level, IPA size) pairs of the table above.

use core::fmt;

use tessel_addr::{HostPhysAddr, PAGE_SIZE};

/// Smallest IPA size accepted: `VTCR_EL2.T0SZ` may be at most 39 with the
/// 4 KiB granule unless FEAT_TTST is implemented (DDI 0487, D8.1.x, R_DTLMN).
pub const MIN_IPA_BITS: u8 = 25;
/// Largest output (and so input) address size usable with the 4 KiB granule
/// without FEAT_LPA2 (`VTCR_EL2.DS == 0`): 48 bits.
pub const MAX_PA_BITS_4K: u8 = 48;
/// Largest number of concatenated tables at the initial lookup level.
pub const MAX_ROOT_TABLES: usize = 16;

// VTCR_EL2 fields (DDI 0487, D19.2 "VTCR_EL2, Virtualization Translation
// Control Register").
/// VTCR_EL2.T0SZ, bits [5:0]: IPA size is 2^(64 - T0SZ).
const VTCR_T0SZ_SHIFT: u32 = 0;
/// VTCR_EL2.SL0, bits [7:6]: starting level of the stage 2 walk.
const VTCR_SL0_SHIFT: u32 = 6;
/// VTCR_EL2.IRGN0, bits [9:8]: 0b01 = Normal, Inner Write-Back
/// Read-Allocate Write-Allocate Cacheable table walks.
const VTCR_IRGN0_WBWA: u64 = 0b01 << 8;
/// VTCR_EL2.ORGN0, bits [11:10]: 0b01 = Normal, Outer Write-Back
/// Read-Allocate Write-Allocate Cacheable table walks.
const VTCR_ORGN0_WBWA: u64 = 0b01 << 10;
/// VTCR_EL2.SH0, bits [13:12]: 0b11 = Inner Shareable table walks.
const VTCR_SH0_INNER: u64 = 0b11 << 12;
/// VTCR_EL2.TG0, bits [15:14]: 0b00 = 4 KiB granule.
const VTCR_TG0_4K: u64 = 0b00 << 14;
/// VTCR_EL2.PS, bits [18:16]: output (physical) address size, same encoding
/// as ID_AA64MMFR0_EL1.PARange.
const VTCR_PS_SHIFT: u32 = 16;
/// VTCR_EL2.VS, bit [19]: 1 = 16-bit VMID (FEAT_VMID16).
const VTCR_VS_16BIT: u64 = 1 << 19;
/// VTCR_EL2 bit [31] is RES1.
const VTCR_RES1: u64 = 1 << 31;

/// VTTBR_EL2.VMID starts at bit 48 (bits [55:48] for 8-bit VMIDs, [63:48]
/// for 16-bit ones) (DDI 0487, D19.2 "VTTBR_EL2").
const VTTBR_VMID_SHIFT: u32 = 48;

/// ID_AA64MMFR0_EL1.PARange, bits [3:0] (DDI 0487, D19.2).
const MMFR0_PARANGE_MASK: u64 = 0xf;
/// ID_AA64MMFR1_EL1.VMIDBits, bits [7:4] (DDI 0487, D19.2).
const MMFR1_VMIDBITS_SHIFT: u32 = 4;

/// Physical address range supported by the CPU, as reported by
/// `ID_AA64MMFR0_EL1.PARange` (DDI 0487, D19.2 "ID_AA64MMFR0_EL1").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum PaRange {
    /// 0b0000: 32 bits, 4 GiB.
    Bits32,
    /// 0b0001: 36 bits, 64 GiB.
    Bits36,
    /// 0b0010: 40 bits, 1 TiB.
    Bits40,
    /// 0b0011: 42 bits, 4 TiB.
    Bits42,
    /// 0b0100: 44 bits, 16 TiB.
    Bits44,
    /// 0b0101: 48 bits, 256 TiB.
    Bits48,
    /// 0b0110: 52 bits, 4 PiB (FEAT_LPA).
    Bits52,
    /// 0b0111: 56 bits, 64 PiB (FEAT_D128).
    Bits56,
}

impl PaRange {
    const ALL: [PaRange; 8] = [
        Self::Bits32,
        Self::Bits36,
        Self::Bits40,
        Self::Bits42,
        Self::Bits44,
        Self::Bits48,
        Self::Bits52,
        Self::Bits56,
    ];

    /// Decodes the 4-bit PARange encoding.
    pub fn from_encoding(enc: u8) -> Result<Self, ConfigError> {
        Self::ALL
            .get(usize::from(enc))
            .copied()
            .ok_or(ConfigError::UnknownPaRangeEncoding(enc))
    }

    /// Decodes the PARange field of a raw `ID_AA64MMFR0_EL1` value.
    pub fn from_id_aa64mmfr0(mmfr0: u64) -> Result<Self, ConfigError> {
        // The mask keeps 4 bits, so the narrowing cannot lose anything.
        Self::from_encoding((mmfr0 & MMFR0_PARANGE_MASK) as u8)
    }

    /// The range with the given number of address bits.
    pub fn from_bits(bits: u8) -> Result<Self, ConfigError> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.bits() == bits)
            .ok_or(ConfigError::UnsupportedPaBits(bits))
    }

    /// Number of physical address bits.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Bits32 => 32,
            Self::Bits36 => 36,
            Self::Bits40 => 40,
            Self::Bits42 => 42,
            Self::Bits44 => 44,
            Self::Bits48 => 48,
            Self::Bits52 => 52,
            Self::Bits56 => 56,
        }
    }

    /// The architectural 3/4-bit encoding (also the `VTCR_EL2.PS` encoding).
    pub const fn encoding(self) -> u8 {
        self as u8
    }

    /// The range actually usable by a 4 KiB-granule stage 2 without
    /// FEAT_LPA2: anything above 48 bits is capped at 48.
    pub const fn usable_with_4k(self) -> Self {
        match self {
            Self::Bits52 | Self::Bits56 => Self::Bits48,
            other => other,
        }
    }
}

/// Width of the VMID field, from `ID_AA64MMFR1_EL1.VMIDBits`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum VmidBits {
    /// 8-bit VMIDs (every Armv8 CPU).
    #[default]
    Bits8,
    /// 16-bit VMIDs (FEAT_VMID16); selected with `VTCR_EL2.VS = 1`.
    Bits16,
}

impl VmidBits {
    /// Decodes `ID_AA64MMFR1_EL1.VMIDBits` (0b0000 = 8 bits, 0b0010 = 16 bits).
    pub fn from_id_aa64mmfr1(mmfr1: u64) -> Result<Self, ConfigError> {
        match (mmfr1 >> MMFR1_VMIDBITS_SHIFT) & 0xf {
            0b0000 => Ok(Self::Bits8),
            0b0010 => Ok(Self::Bits16),
            // The mask keeps 4 bits.
            other => Err(ConfigError::UnknownVmidBitsEncoding(other as u8)),
        }
    }

    /// Largest VMID representable.
    pub const fn max_vmid(self) -> u16 {
        match self {
            Self::Bits8 => 0xff,
            Self::Bits16 => 0xffff,
        }
    }
}

/// Why a stage-2 configuration or a `VTTBR_EL2` value was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigError {
    /// A PA size in bits that is not one of the architectural PARange values.
    UnsupportedPaBits(u8),
    /// A reserved `ID_AA64MMFR0_EL1.PARange` encoding.
    UnknownPaRangeEncoding(u8),
    /// A reserved `ID_AA64MMFR1_EL1.VMIDBits` encoding.
    UnknownVmidBitsEncoding(u8),
    /// The requested IPA size is below [`MIN_IPA_BITS`].
    IpaTooSmall {
        /// Requested IPA size in bits.
        ipa_bits: u8,
    },
    /// The requested IPA size exceeds the usable PA size (capped at 48 bits
    /// for the 4 KiB granule).
    IpaLargerThanPa {
        /// Requested IPA size in bits.
        ipa_bits: u8,
        /// Usable PA size in bits.
        pa_bits: u8,
    },
    /// The VMID does not fit the configured VMID width.
    VmidOutOfRange {
        /// The VMID asked for.
        vmid: u16,
        /// The largest VMID the configuration allows.
        max: u16,
    },
    /// The root table address is not aligned to the size of the
    /// (concatenated) root tables, as `VTTBR_EL2.BADDR` requires.
    MisalignedRoot {
        /// The root table address.
        root: HostPhysAddr,
        /// Required alignment in bytes.
        align: u64,
    },
    /// The root table lies outside the physical address range.
    RootOutOfRange {
        /// The root table address.
        root: HostPhysAddr,
        /// Usable PA size in bits.
        pa_bits: u8,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedPaBits(b) => write!(
                f,
                "{b}-bit physical address range is not an architectural PARange value \
                 (32, 36, 40, 42, 44, 48, 52 or 56)"
            ),
            Self::UnknownPaRangeEncoding(e) => {
                write!(f, "reserved ID_AA64MMFR0_EL1.PARange encoding {e:#06b}")
            }
            Self::UnknownVmidBitsEncoding(e) => {
                write!(f, "reserved ID_AA64MMFR1_EL1.VMIDBits encoding {e:#06b}")
            }
            Self::IpaTooSmall { ipa_bits } => write!(
                f,
                "{ipa_bits}-bit IPA space is below the {MIN_IPA_BITS}-bit minimum of a \
                 4 KiB-granule stage 2 (VTCR_EL2.T0SZ > 39)"
            ),
            Self::IpaLargerThanPa { ipa_bits, pa_bits } => write!(
                f,
                "{ipa_bits}-bit IPA space exceeds the {pa_bits}-bit usable physical address range"
            ),
            Self::VmidOutOfRange { vmid, max } => {
                write!(f, "VMID {vmid} exceeds the largest supported VMID {max}")
            }
            Self::MisalignedRoot { root, align } => write!(
                f,
                "stage-2 root table at {root:#x} is not aligned to {align:#x} bytes"
            ),
            Self::RootOutOfRange { root, pa_bits } => write!(
                f,
                "stage-2 root table at {root:#x} is outside the {pa_bits}-bit physical address range"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// A validated stage-2 layout: IPA size, start level, concatenated root
/// tables, output address size and VMID width.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stage2Config {
    pa_range: PaRange,
    ipa_bits: u8,
    start_level: u8,
    root_tables: usize,
    vmid_bits: VmidBits,
}

/// Number of address bits translated by a walk starting at `level` with a
/// single table, 4 KiB granule: 12 + 9 * (4 - level).
const fn bits_from_level(level: u8) -> u8 {
    12 + 9 * (4 - level)
}

impl Stage2Config {
    /// Builds the layout for a CPU with a `pa_range_bits`-bit physical
    /// address range (a PARange value: 32, 36, 40, 42, 44, 48, 52 or 56) and
    /// an IPA space of `ipa_bits` bits, with 8-bit VMIDs (see
    /// [`with_vmid_bits`](Self::with_vmid_bits)).
    ///
    /// PA ranges above 48 bits are capped at 48 (4 KiB granule without
    /// FEAT_LPA2). The IPA size must be between [`MIN_IPA_BITS`] and the
    /// usable PA size.
    pub fn new(pa_range_bits: u8, ipa_bits: u8) -> Result<Self, ConfigError> {
        Self::with_pa_range(PaRange::from_bits(pa_range_bits)?, ipa_bits)
    }

    /// As [`new`](Self::new), from a decoded [`PaRange`].
    pub fn with_pa_range(pa_range: PaRange, ipa_bits: u8) -> Result<Self, ConfigError> {
        let pa_range = pa_range.usable_with_4k();
        if ipa_bits < MIN_IPA_BITS {
            return Err(ConfigError::IpaTooSmall { ipa_bits });
        }
        if ipa_bits > pa_range.bits() {
            return Err(ConfigError::IpaLargerThanPa {
                ipa_bits,
                pa_bits: pa_range.bits(),
            });
        }
        // Highest start level (fewest levels) whose table, concatenated up to
        // 16 times (4 extra bits), still covers the IPA space. Level 0 is
        // never concatenated: it already reaches 48 bits.
        let start_level = if ipa_bits <= bits_from_level(2) + 4 {
            2
        } else if ipa_bits <= bits_from_level(1) + 4 {
            1
        } else {
            0
        };
        let extra = ipa_bits.saturating_sub(bits_from_level(start_level));
        Ok(Self {
            pa_range,
            ipa_bits,
            start_level,
            root_tables: 1 << extra,
            vmid_bits: VmidBits::Bits8,
        })
    }

    /// The same layout with the given VMID width (sets `VTCR_EL2.VS`).
    pub const fn with_vmid_bits(mut self, vmid_bits: VmidBits) -> Self {
        self.vmid_bits = vmid_bits;
        self
    }

    /// IPA size in bits.
    pub const fn ipa_bits(&self) -> u8 {
        self.ipa_bits
    }

    /// Size of the IPA space in bytes.
    pub const fn ipa_size(&self) -> u64 {
        1 << self.ipa_bits
    }

    /// Usable output (physical) address size in bits, after the 48-bit cap.
    pub const fn pa_bits(&self) -> u8 {
        self.pa_range.bits()
    }

    /// The usable PA range, which `VTCR_EL2.PS` is set to.
    pub const fn pa_range(&self) -> PaRange {
        self.pa_range
    }

    /// Translation level of the initial lookup (0, 1 or 2).
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }

    /// Number of concatenated tables at the start level (1, 2, 4, 8 or 16).
    pub const fn root_tables(&self) -> usize {
        self.root_tables
    }

    /// Required alignment of the root, in bytes: the size of all root tables.
    pub const fn root_align(&self) -> u64 {
        self.root_tables as u64 * PAGE_SIZE
    }

    /// Configured VMID width.
    pub const fn vmid_bits(&self) -> VmidBits {
        self.vmid_bits
    }

    /// The `VTCR_EL2` value for this layout: T0SZ, SL0, 4 KiB granule,
    /// inner-shareable write-back cacheable table walks, PS from the usable
    /// PA range, VS for 16-bit VMIDs, and the RES1 bit 31. Hardware
    /// access/dirty flag management (HA/HD) stays off: leaves are written
    /// with the access flag set.
    pub const fn vtcr(&self) -> u64 {
        let t0sz = (64 - self.ipa_bits) as u64;
        // SL0 with the 4 KiB granule (VTCR_EL2.SL2 == 0): 0b00 = level 2,
        // 0b01 = level 1, 0b10 = level 0.
        let sl0 = (2 - self.start_level) as u64;
        let vs = match self.vmid_bits {
            VmidBits::Bits8 => 0,
            VmidBits::Bits16 => VTCR_VS_16BIT,
        };
        VTCR_RES1
            | vs
            | ((self.pa_range.encoding() as u64) << VTCR_PS_SHIFT)
            | VTCR_TG0_4K
            | VTCR_SH0_INNER
            | VTCR_ORGN0_WBWA
            | VTCR_IRGN0_WBWA
            | (sl0 << VTCR_SL0_SHIFT)
            | (t0sz << VTCR_T0SZ_SHIFT)
    }

    /// The `VTTBR_EL2` value for a guest with `vmid` whose root tables start
    /// at `root`. CnP (bit 0) is left clear.
    pub fn vttbr(&self, vmid: u16, root: HostPhysAddr) -> Result<u64, ConfigError> {
        let max = self.vmid_bits.max_vmid();
        if vmid > max {
            return Err(ConfigError::VmidOutOfRange { vmid, max });
        }
        let align = self.root_align();
        if root.0 & (align - 1) != 0 {
            return Err(ConfigError::MisalignedRoot { root, align });
        }
        let end = root.0.checked_add(align);
        if end.is_none_or(|end| end > 1u64 << self.pa_bits()) {
            return Err(ConfigError::RootOutOfRange {
                root,
                pa_bits: self.pa_bits(),
            });
        }
        Ok((u64::from(vmid) << VTTBR_VMID_SHIFT) | root.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Common part of every VTCR value below:
    //   RES1 bit 31                         0x8000_0000
    //   SH0 = 0b11 (inner shareable) << 12  0x0000_3000
    //   ORGN0 = 0b01 (WB RA WA) << 10       0x0000_0400
    //   IRGN0 = 0b01 (WB RA WA) << 8        0x0000_0100
    //   TG0 = 0b00 (4 KiB)                  0
    // = 0x8000_3500; then add PS << 16, SL0 << 6 and T0SZ.
    const COMMON: u64 = 0x8000_3500;

    fn cfg(pa: u8, ipa: u8) -> Stage2Config {
        Stage2Config::new(pa, ipa).unwrap()
    }

    #[test]
    fn ipa40_starts_at_level1_with_two_tables() {
        // T0SZ = 64 - 40 = 24 = 0x18. Level 1 resolves bits [38:30]; bit 39
        // needs 2 concatenated level-1 tables (1 extra bit), so SL0 = 0b01
        // (0x40). PS = 0b010 (40 bits) << 16 = 0x2_0000.
        let c = cfg(40, 40);
        assert_eq!((c.start_level(), c.root_tables()), (1, 2));
        assert_eq!(c.vtcr(), COMMON | 0x2_0000 | 0x40 | 0x18);
        assert_eq!(c.vtcr(), 0x8002_3558);
    }

    #[test]
    fn ipa48_starts_at_level0() {
        // T0SZ = 16 = 0x10. 48 bits exceed level 1 + 4 concatenation bits
        // (43), so the walk starts at level 0: SL0 = 0b10 (0x80).
        // PS = 0b101 (48 bits) << 16 = 0x5_0000.
        let c = cfg(48, 48);
        assert_eq!((c.start_level(), c.root_tables()), (0, 1));
        assert_eq!(c.vtcr(), 0x8005_3590);
    }

    #[test]
    fn ipa32_starts_at_level2_with_four_tables() {
        // T0SZ = 32 = 0x20. Level 2 resolves bits [29:21]; bits [31:30] need
        // 4 concatenated level-2 tables, saving a level over a level-1 start.
        // SL0 = 0b00, PS = 0b000 (32 bits).
        let c = cfg(32, 32);
        assert_eq!((c.start_level(), c.root_tables()), (2, 4));
        assert_eq!(c.vtcr(), 0x8000_3520);
    }

    #[test]
    fn ipa44_starts_at_level0() {
        // T0SZ = 20 = 0x14; 44 > 43 bits so level 0 (SL0 = 0b10, 0x80), a
        // single level-0 table using 32 entries. PS = 0b100 << 16.
        let c = cfg(44, 44);
        assert_eq!((c.start_level(), c.root_tables()), (0, 1));
        assert_eq!(c.vtcr(), COMMON | 0x4_0000 | 0x80 | 0x14);
    }

    #[test]
    fn ipa42_uses_eight_level1_tables() {
        // T0SZ = 22 = 0x16; 42 - 39 = 3 extra bits -> 8 tables at level 1.
        // PS = 0b011 << 16.
        let c = cfg(42, 42);
        assert_eq!((c.start_level(), c.root_tables()), (1, 8));
        assert_eq!(c.vtcr(), 0x8003_3556);
        assert_eq!(c.root_align(), 0x8000);
    }

    #[test]
    fn ipa36_uses_one_partial_level1_table() {
        // T0SZ = 28 = 0x1c; 36 bits > 34 (level 2 + 4) so level 1 with one
        // table of which 64 entries are used. PS = 0b001 << 16.
        let c = cfg(36, 36);
        assert_eq!((c.start_level(), c.root_tables()), (1, 1));
        assert_eq!(c.vtcr(), 0x8001_355c);
    }

    #[test]
    fn ipa34_uses_sixteen_level2_tables() {
        // T0SZ = 30 = 0x1e; 34 - 30 = 4 extra bits -> 16 level-2 tables, the
        // architectural maximum.
        let c = cfg(36, 34);
        assert_eq!((c.start_level(), c.root_tables()), (2, 16));
        assert_eq!(c.vtcr(), COMMON | 0x1_0000 | 0x1e);
    }

    #[test]
    fn ipa_smaller_than_pa() {
        // A 40-bit IPA on a 48-bit host: same walk as 40/40, PS = 48 bits.
        assert_eq!(cfg(48, 40).vtcr(), 0x8005_3558);
    }

    #[test]
    fn pa52_and_pa56_are_capped_at_48() {
        assert_eq!(cfg(52, 48).vtcr(), cfg(48, 48).vtcr());
        assert_eq!(cfg(56, 44).pa_bits(), 48);
        assert_eq!(
            Stage2Config::new(52, 52),
            Err(ConfigError::IpaLargerThanPa {
                ipa_bits: 52,
                pa_bits: 48
            })
        );
    }

    #[test]
    fn every_layout_respects_architectural_limits() {
        for pa in [32, 36, 40, 42, 44, 48] {
            for ipa in MIN_IPA_BITS..=pa {
                let c = cfg(pa, ipa);
                let lvl = c.start_level();
                // AArch64.S2InconsistentSL(): the IPA must need at least one
                // bit at the start level and at most 9 + 4 (concatenation).
                let below = bits_from_level(lvl) - 9;
                assert!(ipa > below && ipa <= below + 9 + 4, "pa {pa} ipa {ipa}");
                assert!(c.root_tables() <= MAX_ROOT_TABLES);
                assert!(lvl != 0 || pa >= 44, "level 0 start needs PA >= 44 bits");
                // The root tables cover exactly the IPA space (or more).
                let covered = (c.root_tables() as u64 * 512) << (12 + 9 * (3 - u32::from(lvl)));
                assert!(covered >= c.ipa_size());
            }
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(
            Stage2Config::new(39, 32),
            Err(ConfigError::UnsupportedPaBits(39))
        );
        assert_eq!(
            Stage2Config::new(40, 24),
            Err(ConfigError::IpaTooSmall { ipa_bits: 24 })
        );
        assert_eq!(
            Stage2Config::new(40, 41),
            Err(ConfigError::IpaLargerThanPa {
                ipa_bits: 41,
                pa_bits: 40
            })
        );
    }

    #[test]
    fn decodes_id_registers() {
        assert_eq!(
            PaRange::from_id_aa64mmfr0(0x0000_0000_0011_2125).unwrap(),
            PaRange::Bits48
        );
        assert_eq!(PaRange::from_id_aa64mmfr0(0x2).unwrap().bits(), 40);
        assert_eq!(
            PaRange::from_id_aa64mmfr0(0xf),
            Err(ConfigError::UnknownPaRangeEncoding(0xf))
        );
        assert_eq!(VmidBits::from_id_aa64mmfr1(0x20), Ok(VmidBits::Bits16));
        assert_eq!(VmidBits::from_id_aa64mmfr1(0x0), Ok(VmidBits::Bits8));
        assert_eq!(
            VmidBits::from_id_aa64mmfr1(0x10),
            Err(ConfigError::UnknownVmidBitsEncoding(1))
        );
    }

    #[test]
    fn vmid16_sets_vs() {
        let c = cfg(40, 40).with_vmid_bits(VmidBits::Bits16);
        assert_eq!(c.vtcr(), 0x8002_3558 | 1 << 19);
        assert_eq!(
            c.vttbr(0x1234, HostPhysAddr(0x4_0000_2000)).unwrap(),
            0x1234_0004_0000_2000
        );
    }

    #[test]
    fn vttbr_checks_vmid_width_and_root() {
        let c = cfg(40, 40);
        assert_eq!(
            c.vttbr(3, HostPhysAddr(0x8000_0000)).unwrap(),
            0x0003_0000_8000_0000
        );
        assert_eq!(
            c.vttbr(256, HostPhysAddr(0x8000_0000)),
            Err(ConfigError::VmidOutOfRange {
                vmid: 256,
                max: 255
            })
        );
        // Two concatenated tables need 8 KiB alignment.
        assert_eq!(
            c.vttbr(1, HostPhysAddr(0x8000_1000)),
            Err(ConfigError::MisalignedRoot {
                root: HostPhysAddr(0x8000_1000),
                align: 0x2000
            })
        );
        assert_eq!(
            c.vttbr(1, HostPhysAddr(1 << 40)),
            Err(ConfigError::RootOutOfRange {
                root: HostPhysAddr(1 << 40),
                pa_bits: 40
            })
        );
    }
}
