//! Stage-2 memory attributes and descriptor encodings.
//!
//! References: Arm ARM DDI 0487, D8.3 "Translation table descriptor
//! formats" (VMSAv8-64 stage 2 block/page/table descriptors, 4 KiB granule,
//! 48-bit output addresses) and D8.5 "Stage 2 memory region type and
//! attributes" (MemAttr encoding when `HCR_EL2.FWB == 0`).

use core::fmt;

/// Raw descriptor bit positions.
pub(crate) mod bits {
    /// Bit 0: the descriptor is valid.
    pub const VALID: u64 = 1 << 0;
    /// Bit 1: at levels 0-2, 1 = table descriptor and 0 = block; at level 3
    /// it must be 1 for a page descriptor (0b01 is reserved there).
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// MemAttr[3:0], bits [5:2] (D8.5.x, stage 2 MemAttr with FWB == 0).
    pub const MEMATTR_SHIFT: u32 = 2;
    /// Mask of MemAttr.
    pub const MEMATTR_MASK: u64 = 0xf << MEMATTR_SHIFT;
    /// S2AP[0], bit 6: stage 2 read permission.
    pub const S2AP_READ: u64 = 1 << 6;
    /// S2AP[1], bit 7: stage 2 write permission.
    pub const S2AP_WRITE: u64 = 1 << 7;
    /// SH[1:0], bits [9:8]: 0b11 = Inner Shareable.
    pub const SH_INNER: u64 = 0b11 << 8;
    /// Mask of SH.
    pub const SH_MASK: u64 = 0b11 << 8;
    /// AF, bit 10: access flag. Set on every leaf: with `VTCR_EL2.HA == 0`
    /// a clear AF would fault on first access.
    pub const AF: u64 = 1 << 10;
    /// XN[1:0], bits [54:53] with FEAT_XNX (bit 54 alone, XN, without it).
    pub const XN_MASK: u64 = 0b11 << 53;
    /// XN[1:0] = 0b10: not executable at EL1 nor EL0. Without FEAT_XNX this
    /// is the plain XN bit 54, with bit 53 RES0, so it means the same thing
    /// on every CPU.
    pub const XN_NONE: u64 = 0b10 << 53;
    /// Output address bits [47:12].
    pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
    /// Bits that may change without break-before-make: permissions only
    /// (D8.17.1 "Using break-before-make when updating translation table
    /// entries": a change of memory type, shareability, cacheability, output
    /// address or block size needs it, a change of S2AP or XN does not).
    pub const PERMISSION_MASK: u64 = S2AP_READ | S2AP_WRITE | XN_MASK;
}

/// Stage-2 MemAttr values with `HCR_EL2.FWB == 0` (D8.5.x).
mod memattr {
    /// 0b1111: Normal, Outer Write-Back Cacheable, Inner Write-Back Cacheable.
    pub const NORMAL_WB: u64 = 0b1111;
    /// 0b0101: Normal, Outer Non-cacheable, Inner Non-cacheable.
    pub const NORMAL_NC: u64 = 0b0101;
    /// 0b0001: Device-nGnRE.
    pub const DEVICE_NGNRE: u64 = 0b0001;
}

/// Stage-2 memory type. With `HCR_EL2.FWB == 0` the guest's stage-1
/// attributes are combined with these, the stronger winning, so stage 2
/// can only make memory *more* restrictive than the guest asks.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum MemoryType {
    /// Normal memory, inner and outer write-back cacheable, inner shareable:
    /// guest RAM.
    Normal,
    /// Normal memory, inner and outer non-cacheable, inner shareable: for
    /// example memory shared with a non-coherent device.
    NormalNonCacheable,
    /// Device-nGnRE: passed-through device registers (what Xen uses for
    /// `xen,reg` and `xen,passthrough` regions).
    Device,
}

impl MemoryType {
    const fn memattr(self) -> u64 {
        match self {
            Self::Normal => memattr::NORMAL_WB,
            Self::NormalNonCacheable => memattr::NORMAL_NC,
            Self::Device => memattr::DEVICE_NGNRE,
        }
    }

    const fn from_memattr(v: u64) -> Option<Self> {
        match v {
            memattr::NORMAL_WB => Some(Self::Normal),
            memattr::NORMAL_NC => Some(Self::NormalNonCacheable),
            memattr::DEVICE_NGNRE => Some(Self::Device),
            _ => None,
        }
    }
}

bitflags::bitflags! {
    /// What the guest may do with a mapping (S2AP and XN).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
    pub struct Access: u8 {
        /// Data reads (S2AP[0]).
        const READ = 1 << 0;
        /// Data writes (S2AP[1]).
        const WRITE = 1 << 1;
        /// Instruction fetches (XN clear).
        const EXECUTE = 1 << 2;
        /// Read and write.
        const RW = Self::READ.bits() | Self::WRITE.bits();
        /// Read, write and execute.
        const RWX = Self::RW.bits() | Self::EXECUTE.bits();
    }
}

/// Attributes of a stage-2 mapping: memory type and access rights.
///
/// Every leaf this crate writes also has the access flag set and, whatever
/// the type, SH = Inner Shareable (ignored by hardware for Device memory).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Attrs {
    /// Memory type.
    pub memory: MemoryType,
    /// Access rights.
    pub access: Access,
}

impl Attrs {
    /// Guest RAM: normal write-back memory, read/write/execute.
    pub const RAM: Self = Self::new(MemoryType::Normal, Access::RWX);
    /// Read-only, executable guest memory (for example a boot ROM image).
    pub const ROM: Self = Self::new(MemoryType::Normal, Access::READ.union(Access::EXECUTE));
    /// A passed-through device: Device-nGnRE, read/write, never executable.
    pub const DEVICE: Self = Self::new(MemoryType::Device, Access::RW);

    /// Attributes with the given type and access.
    pub const fn new(memory: MemoryType, access: Access) -> Self {
        Self { memory, access }
    }

    /// Whether the combination is one this crate will map. Executable
    /// Device memory is refused: the architecture does not stop speculative
    /// instruction fetches from Device memory unless it is execute-never
    /// (D8.5.x), and such fetches may have side effects on MMIO.
    pub(crate) fn is_mappable(self) -> bool {
        !(self.memory == MemoryType::Device && self.access.contains(Access::EXECUTE))
    }

    /// The attribute bits of a leaf descriptor (everything but the output
    /// address and bits [1:0]).
    pub(crate) const fn leaf_bits(self) -> u64 {
        let mut v = (self.memory.memattr() << bits::MEMATTR_SHIFT) | bits::SH_INNER | bits::AF;
        if self.access.contains(Access::READ) {
            v |= bits::S2AP_READ;
        }
        if self.access.contains(Access::WRITE) {
            v |= bits::S2AP_WRITE;
        }
        if !self.access.contains(Access::EXECUTE) {
            v |= bits::XN_NONE;
        }
        v
    }

    /// Decodes the attributes of a leaf descriptor written by
    /// [`leaf_bits`](Self::leaf_bits); `None` for an encoding this crate
    /// never writes.
    pub(crate) const fn from_leaf(desc: u64) -> Option<Self> {
        let Some(memory) =
            MemoryType::from_memattr((desc & bits::MEMATTR_MASK) >> bits::MEMATTR_SHIFT)
        else {
            return None;
        };
        if desc & bits::SH_MASK != bits::SH_INNER || desc & bits::AF == 0 {
            return None;
        }
        let mut access = Access::empty();
        if desc & bits::S2AP_READ != 0 {
            access = access.union(Access::READ);
        }
        if desc & bits::S2AP_WRITE != 0 {
            access = access.union(Access::WRITE);
        }
        match desc & bits::XN_MASK {
            0 => access = access.union(Access::EXECUTE),
            bits::XN_NONE => {}
            _ => return None,
        }
        Some(Self { memory, access })
    }
}

impl fmt::Display for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = match self.memory {
            MemoryType::Normal => "normal-wb",
            MemoryType::NormalNonCacheable => "normal-nc",
            MemoryType::Device => "device-ngnre",
        };
        let flag = |a: Access, c: char| if self.access.contains(a) { c } else { '-' };
        write!(
            f,
            "{ty} {}{}{}",
            flag(Access::READ, 'r'),
            flag(Access::WRITE, 'w'),
            flag(Access::EXECUTE, 'x')
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn ram_descriptor_bits() {
        // MemAttr 0b1111 << 2 = 0x3c, S2AP 0b11 << 6 = 0xc0, SH 0b11 << 8 =
        // 0x300, AF = 0x400, XN clear.
        assert_eq!(Attrs::RAM.leaf_bits(), 0x7fc);
    }

    #[test]
    fn device_descriptor_bits() {
        // MemAttr 0b0001 << 2 = 0x4, S2AP RW = 0xc0, SH = 0x300, AF = 0x400,
        // XN[1:0] = 0b10 -> bit 54.
        assert_eq!(Attrs::DEVICE.leaf_bits(), (1 << 54) | 0x7c4);
    }

    #[test]
    fn every_mappable_combination_round_trips() {
        for memory in [
            MemoryType::Normal,
            MemoryType::NormalNonCacheable,
            MemoryType::Device,
        ] {
            for a in 0..8u8 {
                let attrs = Attrs::new(memory, Access::from_bits_truncate(a));
                if attrs.is_mappable() {
                    assert_eq!(Attrs::from_leaf(attrs.leaf_bits() | 0b11), Some(attrs));
                }
            }
        }
        assert!(!Attrs::new(MemoryType::Device, Access::RWX).is_mappable());
    }

    #[test]
    fn foreign_encodings_are_not_decoded() {
        // Device-nGnRnE (MemAttr 0) is never written by this crate.
        assert_eq!(Attrs::from_leaf(0x7c0 | 0b11), None);
        // XN[1:0] = 0b01 (FEAT_XNX, PXN-like) is never written either.
        assert_eq!(Attrs::from_leaf(Attrs::RAM.leaf_bits() | (1 << 53)), None);
        // Missing access flag.
        assert_eq!(Attrs::from_leaf(Attrs::RAM.leaf_bits() & !bits::AF), None);
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(format!("{}", Attrs::DEVICE), "device-ngnre rw-");
        assert_eq!(format!("{}", Attrs::ROM), "normal-wb r-x");
    }
}
