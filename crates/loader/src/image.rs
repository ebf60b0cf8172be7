//! The arm64 Linux `Image` header.
//!
//! Layout (Linux Documentation/arch/arm64/booting.rst, "Call the kernel
//! image"), 64 bytes, little-endian:
//!
//! | offset | field         |
//! |--------|---------------|
//! | 0x00   | code0 (u32)   |
//! | 0x04   | code1 (u32)   |
//! | 0x08   | text_offset   |
//! | 0x10   | image_size    |
//! | 0x18   | flags         |
//! | 0x20   | res2, res3, res4 |
//! | 0x38   | magic "ARM\x64" (u32) |
//! | 0x3c   | res5 / PE header offset (u32) |

use core::fmt;

/// Size of the header in bytes.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// `magic` at offset 0x38: the bytes "ARM\x64" read as a little-endian u32.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Offset of `magic`.
const MAGIC_OFFSET: usize = 0x38;
/// text_offset to assume when `image_size` is zero (kernels before v3.17,
/// booting.rst: "Where image_size is zero, text_offset can be assumed to be
/// 0x80000").
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// Why an Image header was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageError {
    /// Fewer than 64 bytes.
    TooShort(usize),
    /// `magic` is not "ARM\x64" (not an arm64 Image, or compressed in a way
    /// the loader does not recognise).
    BadMagic(u32),
    /// Flags bit 0 set: the kernel is big-endian, which Tessel cannot run
    /// (guests start little-endian at EL1 and no vCPU endianness switch is
    /// modelled).
    BigEndian,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(
                f,
                "kernel is {n} bytes, shorter than the {IMAGE_HEADER_SIZE}-byte arm64 Image header"
            ),
            Self::BadMagic(m) => write!(
                f,
                "kernel has magic {m:#010x} at offset 0x38, not the arm64 Image magic {IMAGE_MAGIC:#010x} (\"ARM\\x64\")"
            ),
            Self::BigEndian => write!(f, "kernel is big-endian (Image flags bit 0); unsupported"),
        }
    }
}

/// Kernel page size announced in flags bits 1-2.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PageSize {
    /// 0: not specified (older kernels).
    Unspecified,
    /// 1: 4 KiB.
    K4,
    /// 2: 16 KiB.
    K16,
    /// 3: 64 KiB.
    K64,
}

/// The `flags` field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageFlags(pub u64);

impl ImageFlags {
    /// Bit 0: kernel endianness, 1 = big-endian.
    pub const BE: u64 = 1 << 0;
    /// Bits 1-2: kernel page size.
    pub const PAGE_SIZE_SHIFT: u32 = 1;
    /// Bit 3: physical placement, 1 = the 2 MiB aligned base may be anywhere
    /// in RAM; 0 = it should be as close as possible to the base of DRAM.
    pub const PHYS_ANYWHERE: u64 = 1 << 3;

    /// Whether the kernel is big-endian.
    pub fn big_endian(self) -> bool {
        self.0 & Self::BE != 0
    }

    /// The kernel's page size.
    pub fn page_size(self) -> PageSize {
        match (self.0 >> Self::PAGE_SIZE_SHIFT) & 3 {
            1 => PageSize::K4,
            2 => PageSize::K16,
            3 => PageSize::K64,
            _ => PageSize::Unspecified,
        }
    }

    /// Whether the kernel may be placed anywhere in physical memory.
    pub fn placement_anywhere(self) -> bool {
        self.0 & Self::PHYS_ANYWHERE != 0
    }
}

/// A parsed arm64 Image header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageHeader {
    /// First instruction (a branch, or "MZ" for an EFI-stub kernel).
    pub code0: u32,
    /// Offset from a 2 MiB aligned base at which the Image must be placed
    /// ([`LEGACY_TEXT_OFFSET`] when `image_size` is zero).
    pub text_offset: u64,
    /// Bytes of memory the kernel needs from its start, BSS included; zero
    /// for kernels before v3.17 (unknown).
    pub image_size: u64,
    /// The flags field.
    pub flags: ImageFlags,
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

impl ImageHeader {
    /// Parses the header at the start of a (decompressed) Image.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        if bytes.len() < IMAGE_HEADER_SIZE {
            return Err(ImageError::TooShort(bytes.len()));
        }
        let magic = le32(bytes, MAGIC_OFFSET);
        if magic != IMAGE_MAGIC {
            return Err(ImageError::BadMagic(magic));
        }
        let image_size = le64(bytes, 0x10);
        let flags = ImageFlags(le64(bytes, 0x18));
        // Before v3.17 (image_size == 0) the fields were in the kernel's own
        // endianness and flags did not exist, so only check flags when
        // image_size says the header is the documented one.
        if image_size != 0 && flags.big_endian() {
            return Err(ImageError::BigEndian);
        }
        let text_offset = if image_size == 0 {
            LEGACY_TEXT_OFFSET
        } else {
            le64(bytes, 0x08)
        };
        Ok(Self {
            code0: le32(bytes, 0),
            text_offset,
            image_size,
            flags: if image_size == 0 {
                ImageFlags(0)
            } else {
                flags
            },
        })
    }

    /// Bytes the kernel occupies from its load address for an Image file of
    /// `file_len` bytes: `image_size` (which covers BSS), or the file length
    /// if that is larger or `image_size` is unknown (zero).
    pub fn footprint(&self, file_len: u64) -> u64 {
        self.image_size.max(file_len)
    }
}
