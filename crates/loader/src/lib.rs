//! arm64 kernel Image parsing and placement of kernel, DTB and initrd in
//! guest RAM.
//!
//! Pure functions over the guest layout; the caller does the copying. The
//! domain builder uses it in three steps:
//!
//! 1. [`probe`] the kernel boot module: a raw arm64 `Image` or a
//!    gzip-compressed one (`Image.gz`). This reads the Image header
//!    (inflating only its first 64 bytes) and the decompressed size.
//! 2. [`place`] kernel, DTB and initrd in the first RAM bank.
//! 3. [`unpack_into`] the kernel at `placement.kernel.start` (copy or
//!    inflate straight into guest RAM, CRC-checked), copy the initrd, write
//!    the DTB (generated with the initrd range) at `placement.dtb.start`,
//!    and start vCPU0 at `placement.entry` with x0 = the DTB address.
//!
//! ```
//! use tessel_addr::{GuestPhysAddr, GuestRange};
//! use tessel_loader::*;
//! // A minimal Image: 64-byte header, text_offset 0, image_size 16 MiB.
//! let mut img = vec![0u8; 4096];
//! img[0x10..0x18].copy_from_slice(&(16u64 << 20).to_le_bytes());
//! img[0x18] = 0b1010; // 4 KiB pages, may be placed anywhere
//! img[0x38..0x3c].copy_from_slice(b"ARM\x64");
//! let info = probe(&img)?;
//! let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 0x1000_0000)];
//! let p = place(&PlacementRequest {
//!     banks: &banks,
//!     kernel: &info.header,
//!     kernel_len: info.len,
//!     dtb_size: 2 << 20,
//!     initrd_len: Some(0x10_0000),
//! }).unwrap();
//! assert_eq!(p.entry, GuestPhysAddr(0x4000_0000));
//! assert!(p.dtb.start.0 >= 0x4000_0000 + (16 << 20));
//! # Ok::<(), LoaderError>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod gzip;
pub mod image;
pub mod inflate;
pub mod placement;

use alloc::vec::Vec;
use core::fmt;

pub use gzip::GzipError;
pub use image::{IMAGE_HEADER_SIZE, ImageError, ImageFlags, ImageHeader, PageSize};
pub use placement::{Placement, PlacementError, PlacementRequest, place};

/// How the kernel module is stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KernelFormat {
    /// A raw arm64 Image.
    Image,
    /// A gzip-compressed arm64 Image (one gzip member).
    GzipImage,
}

/// What [`probe`] learnt about a kernel module.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KernelInfo {
    /// Storage format.
    pub format: KernelFormat,
    /// The Image header.
    pub header: ImageHeader,
    /// Length of the (decompressed) Image in bytes.
    pub len: u64,
}

/// Why a kernel module cannot be loaded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LoaderError {
    /// The Image header is invalid.
    Image(ImageError),
    /// The gzip wrapper is invalid.
    Gzip(GzipError),
    /// The decompressed kernel would exceed the caller's limit.
    TooLarge {
        /// Decompressed size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The destination buffer is smaller than the kernel.
    OutputTooSmall {
        /// Kernel length.
        need: u64,
        /// Buffer length.
        have: u64,
    },
}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(e) => write!(f, "{e}"),
            Self::Gzip(e) => write!(f, "compressed kernel: {e}"),
            Self::TooLarge { size, limit } => write!(
                f,
                "kernel decompresses to {size:#x} bytes, above the {limit:#x}-byte limit"
            ),
            Self::OutputTooSmall { need, have } => write!(
                f,
                "kernel needs {need:#x} bytes but the destination has {have:#x}"
            ),
        }
    }
}

impl From<ImageError> for LoaderError {
    fn from(e: ImageError) -> Self {
        Self::Image(e)
    }
}

impl From<GzipError> for LoaderError {
    fn from(e: GzipError) -> Self {
        Self::Gzip(e)
    }
}

/// Identifies a kernel module and reads its Image header. For a gzip module
/// only the header is inflated; the length comes from the gzip trailer and
/// is checked again by [`unpack_into`].
pub fn probe(module: &[u8]) -> Result<KernelInfo, LoaderError> {
    if gzip::is_gzip(module) {
        let len = gzip::uncompressed_size(module)?;
        let mut head = [0u8; IMAGE_HEADER_SIZE];
        let got = gzip::inflate_prefix(module, &mut head)?;
        let header = ImageHeader::parse(head.get(..got).unwrap_or(&[]))?;
        Ok(KernelInfo {
            format: KernelFormat::GzipImage,
            header,
            len: u64::from(len),
        })
    } else {
        let header = ImageHeader::parse(module)?;
        Ok(KernelInfo {
            format: KernelFormat::Image,
            header,
            len: module.len() as u64,
        })
    }
}

/// Writes the (decompressed) Image into `out` (typically the guest RAM at
/// the placement's kernel address) and returns its length. A gzip module is
/// verified (ISIZE, CRC-32, no trailing data); a raw one is copied.
pub fn unpack_into(module: &[u8], out: &mut [u8]) -> Result<usize, LoaderError> {
    let info = probe(module)?;
    let need = info.len;
    let too_small = LoaderError::OutputTooSmall {
        need,
        have: out.len() as u64,
    };
    match info.format {
        KernelFormat::Image => {
            let dst = out.get_mut(..module.len()).ok_or(too_small)?;
            dst.copy_from_slice(module);
            Ok(module.len())
        }
        KernelFormat::GzipImage => {
            if (out.len() as u64) < need {
                return Err(too_small);
            }
            Ok(gzip::inflate_into(module, out)?)
        }
    }
}

/// Convenience for host tools and tests: the decompressed Image as a vector,
/// refusing anything that would exceed `limit` bytes.
pub fn unpack(module: &[u8], limit: u64) -> Result<Vec<u8>, LoaderError> {
    let info = probe(module)?;
    if info.len > limit {
        return Err(LoaderError::TooLarge {
            size: info.len,
            limit,
        });
    }
    let mut out = alloc::vec![0u8; info.len as usize];
    let n = unpack_into(module, &mut out)?;
    out.truncate(n);
    Ok(out)
}
