//! gzip (RFC 1952) members, as some distributions and build systems ship
//! arm64 kernels (`Image.gz`; Debian 12's arm64 `vmlinuz` is an
//! uncompressed Image, older ones and other distributions' are gzip).
//!
//! The DEFLATE stream itself is inflated by [`crate::inflate`], straight
//! into a caller-provided buffer (for the hypervisor: the guest RAM the
//! kernel goes to), so no second copy of a 40 MiB kernel is needed. The
//! header, trailer, CRC-32 and ISIZE are handled here.

use core::fmt;

use crate::inflate::{InflateError, inflate};

/// First two bytes of a gzip member (RFC 1952, 2.3.1 ID1/ID2).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Compression method 8 = DEFLATE (RFC 1952, 2.3.1 CM).
const CM_DEFLATE: u8 = 8;
/// FLG bits (RFC 1952, 2.3.1).
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const FRESERVED: u8 = 0xe0;
/// Fixed part of the header: ID1 ID2 CM FLG MTIME(4) XFL OS.
const FIXED_HEADER: usize = 10;
/// Trailer: CRC32 then ISIZE, little-endian.
const TRAILER: usize = 8;

/// Why a gzip member could not be inflated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GzipError {
    /// Shorter than a header plus trailer, or a header field runs past the end.
    Truncated,
    /// Not DEFLATE (CM != 8).
    UnsupportedMethod(u8),
    /// Reserved FLG bits set.
    ReservedFlags(u8),
    /// The header CRC16 (FHCRC) does not match.
    HeaderCrc,
    /// The DEFLATE stream is corrupt or ends early.
    Corrupt,
    /// The data inflates to more than the trailer's ISIZE says.
    LongerThanIsize(u32),
    /// The data inflates to fewer bytes than ISIZE.
    ShorterThanIsize {
        /// Bytes produced.
        got: usize,
        /// ISIZE from the trailer.
        isize: u32,
    },
    /// The CRC-32 of the output does not match the trailer.
    Crc {
        /// CRC-32 in the trailer.
        expected: u32,
        /// CRC-32 of the inflated data.
        actual: u32,
    },
    /// Bytes follow the member's trailer (concatenated members or junk).
    TrailingData(usize),
    /// The output buffer is smaller than ISIZE.
    OutputTooSmall {
        /// ISIZE from the trailer.
        need: u32,
        /// Size of the buffer given.
        have: usize,
    },
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "gzip data is truncated"),
            Self::UnsupportedMethod(m) => {
                write!(f, "gzip compression method {m} is not DEFLATE (8)")
            }
            Self::ReservedFlags(fl) => write!(f, "gzip header has reserved flag bits {fl:#x}"),
            Self::HeaderCrc => write!(f, "gzip header CRC mismatch"),
            Self::Corrupt => write!(f, "gzip DEFLATE stream is corrupt or truncated"),
            Self::LongerThanIsize(n) => {
                write!(f, "gzip data inflates beyond its recorded size {n:#x}")
            }
            Self::ShorterThanIsize { got, isize } => write!(
                f,
                "gzip data inflates to {got:#x} bytes but its trailer records {isize:#x}"
            ),
            Self::Crc { expected, actual } => write!(
                f,
                "gzip CRC-32 mismatch: trailer {expected:#010x}, data {actual:#010x}"
            ),
            Self::TrailingData(n) => {
                write!(
                    f,
                    "{n} bytes follow the gzip member (only one member is supported)"
                )
            }
            Self::OutputTooSmall { need, have } => write!(
                f,
                "gzip data inflates to {need:#x} bytes but only {have:#x} are available"
            ),
        }
    }
}

/// Reflected CRC-32 (IEEE 802.3, polynomial 0xEDB88320) lookup table,
/// as gzip uses (RFC 1952, 8).
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continues a CRC-32 over `data` (start with 0).
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for b in data {
        c = CRC_TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Whether `data` starts with the gzip magic.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// Offset of the DEFLATE stream after the member header.
fn header_len(data: &[u8]) -> Result<usize, GzipError> {
    if data.len() < FIXED_HEADER + TRAILER || !is_gzip(data) {
        return Err(GzipError::Truncated);
    }
    let cm = data[2];
    let flg = data[3];
    if cm != CM_DEFLATE {
        return Err(GzipError::UnsupportedMethod(cm));
    }
    if flg & FRESERVED != 0 {
        return Err(GzipError::ReservedFlags(flg & FRESERVED));
    }
    let mut off = FIXED_HEADER;
    if flg & FEXTRA != 0 {
        let xlen = data.get(off..off + 2).ok_or(GzipError::Truncated)?;
        off += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for bit in [FNAME, FCOMMENT] {
        if flg & bit != 0 {
            let rest = data.get(off..).ok_or(GzipError::Truncated)?;
            let nul = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or(GzipError::Truncated)?;
            off += nul + 1;
        }
    }
    if flg & FHCRC != 0 {
        let stored = data.get(off..off + 2).ok_or(GzipError::Truncated)?;
        let stored = u16::from_le_bytes([stored[0], stored[1]]);
        let head = data.get(..off).ok_or(GzipError::Truncated)?;
        if crc32_update(0, head) as u16 != stored {
            return Err(GzipError::HeaderCrc);
        }
        off += 2;
    }
    if off > data.len() {
        return Err(GzipError::Truncated);
    }
    Ok(off)
}

/// The uncompressed size recorded in the member's trailer (ISIZE, the size
/// modulo 2^32; arm64 kernels are far below 4 GiB). Validates the header.
pub fn uncompressed_size(data: &[u8]) -> Result<u32, GzipError> {
    header_len(data)?;
    let t = data.get(data.len() - 4..).ok_or(GzipError::Truncated)?;
    Ok(u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
}

/// Inflates just the first `out.len()` bytes (e.g. to read a kernel header
/// without inflating the whole kernel). Returns how many bytes were produced
/// (fewer only if the data is shorter).
pub fn inflate_prefix(data: &[u8], out: &mut [u8]) -> Result<usize, GzipError> {
    let start = header_len(data)?;
    let stream = data.get(start..).ok_or(GzipError::Truncated)?;
    match inflate(stream, out) {
        Ok(done) => Ok(done.written),
        Err(InflateError::OutputFull) => Ok(out.len()),
        Err(_) => Err(GzipError::Corrupt),
    }
}

/// Inflates a whole gzip member into `out`, checking ISIZE, CRC-32 and that
/// nothing follows the member. Returns the number of bytes written (ISIZE).
pub fn inflate_into(data: &[u8], out: &mut [u8]) -> Result<usize, GzipError> {
    let isize = uncompressed_size(data)?;
    let need = isize as usize;
    let Some(out) = out.get_mut(..need) else {
        return Err(GzipError::OutputTooSmall {
            need: isize,
            have: out.len(),
        });
    };
    let start = header_len(data)?;
    let stream = data.get(start..).ok_or(GzipError::Truncated)?;
    let (consumed, written) = match inflate(stream, out) {
        Ok(done) => (done.consumed, done.written),
        Err(InflateError::OutputFull) => return Err(GzipError::LongerThanIsize(isize)),
        Err(_) => return Err(GzipError::Corrupt),
    };
    if written != need {
        return Err(GzipError::ShorterThanIsize {
            got: written,
            isize,
        });
    }
    let trailer_at = start + consumed;
    let trailer = data
        .get(trailer_at..trailer_at + TRAILER)
        .ok_or(GzipError::Truncated)?;
    let expected = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let after = data.len() - (trailer_at + TRAILER);
    if after != 0 {
        return Err(GzipError::TrailingData(after));
    }
    let actual = crc32_update(0, out);
    if actual != expected {
        return Err(GzipError::Crc { expected, actual });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard CRC-32 check value (RFC 1952 uses ISO 3309 CRC-32).
        assert_eq!(crc32_update(0, b"123456789"), 0xcbf4_3926);
        let split = crc32_update(crc32_update(0, b"1234"), b"56789");
        assert_eq!(split, 0xcbf4_3926);
    }

    #[test]
    fn header_rules() {
        let mut h = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(header_len(&h), Ok(10));
        h[2] = 7;
        assert_eq!(header_len(&h), Err(GzipError::UnsupportedMethod(7)));
        h[2] = 8;
        h[3] = 0x20;
        assert_eq!(header_len(&h), Err(GzipError::ReservedFlags(0x20)));
        h[3] = FNAME; // name never terminated within the data: all zeros terminate at once
        assert_eq!(header_len(&h), Ok(11));
        assert_eq!(header_len(&h[..12]), Err(GzipError::Truncated));
    }
}
