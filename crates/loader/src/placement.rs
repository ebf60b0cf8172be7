//! Where the kernel, the DTB and the initrd go in guest RAM.
//!
//! Rules (Linux Documentation/arch/arm64/booting.rst, with Xen's choices
//! from its arm kernel loader where the protocol leaves freedom):
//!
//! * The Image is placed `text_offset` bytes above a 2 MiB aligned base and
//!   entered at its first byte. We take the lowest 2 MiB aligned address of
//!   the first RAM bank (flags bit 3 clear asks for "as close as possible to
//!   the base of DRAM"; with bit 3 set any base works, so one rule serves
//!   both).
//! * `image_size` bytes from the start of the Image must stay free (they
//!   include BSS). Xen reserves only the file length; we reserve
//!   `max(image_size, file length)`.
//! * The DTB must be 8-byte aligned and at most 2 MiB. We give it a whole
//!   2 MiB aligned block (as Xen does), so it never shares a 2 MiB block with
//!   anything else, and keep it within 512 MiB of the Image start, which
//!   kernels before v4.2 required and later ones do not mind.
//! * The initrd follows the DTB block, 2 MiB aligned, and must lie in a
//!   1 GiB aligned window of at most 32 GiB that also covers the kernel.
//! * DTB and initrd go as high as these rules allow in the first bank, so
//!   the most memory right after the kernel stays free (this matters for old
//!   kernels with `image_size == 0`, whose BSS size is unknown).
//!
//! Everything is placed in the first bank; further banks are only described
//! to the guest in its memory node.

use core::fmt;

use tessel_addr::{Address, GuestPhysAddr, GuestRange, SIZE_1G, SIZE_2M};

use crate::image::ImageHeader;

/// Largest DTB Linux arm64 accepts (booting.rst; `MAX_FDT_SIZE`).
pub const MAX_FDT_SIZE: u64 = SIZE_2M;
/// Alignment Linux requires of the DTB (`MIN_FDT_ALIGN`).
pub const MIN_FDT_ALIGN: u64 = 8;
/// Alignment of the Image's base (`MIN_KIMG_ALIGN`).
pub const KERNEL_BASE_ALIGN: u64 = SIZE_2M;
/// The DTB must end within this distance of the Image start (booting.txt
/// before Linux v4.2).
pub const DTB_MAX_DISTANCE: u64 = 512 << 20;
/// The initrd and kernel must share a window of this size ...
pub const INITRD_WINDOW: u64 = 32 * SIZE_1G;
/// ... starting at a multiple of this.
pub const INITRD_WINDOW_ALIGN: u64 = SIZE_1G;

/// Input of [`place`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PlacementRequest<'a> {
    /// Guest RAM banks, the first bank first.
    pub banks: &'a [GuestRange],
    /// Header of the (decompressed) Image.
    pub kernel: &'a ImageHeader,
    /// Length of the (decompressed) Image file in bytes.
    pub kernel_len: u64,
    /// Bytes to reserve for the DTB (1..=2 MiB); the generated DTB must not
    /// exceed it.
    pub dtb_size: u64,
    /// Length of the initrd, if the guest has one.
    pub initrd_len: Option<u64>,
}

/// Where everything goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Placement {
    /// The kernel's footprint: from its load address, `max(image_size,
    /// file length)` bytes. The file is copied to `kernel.start`.
    pub kernel: GuestRange,
    /// Entry point (the load address): vCPU0's PC, with x0 = `dtb.start`.
    pub entry: GuestPhysAddr,
    /// The DTB slot (`dtb_size` bytes, 2 MiB aligned).
    pub dtb: GuestRange,
    /// The initrd, if any (2 MiB aligned).
    pub initrd: Option<GuestRange>,
}

/// Why the images cannot be placed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlacementError {
    /// No RAM bank at all.
    NoRam,
    /// The first bank is empty or wraps the address space.
    BadBank(GuestRange),
    /// The DTB reservation is zero or above 2 MiB.
    BadDtbSize(u64),
    /// The kernel file is empty.
    EmptyKernel,
    /// The initrd is empty.
    EmptyInitrd,
    /// Kernel, DTB and initrd do not fit the first bank.
    DoesNotFit {
        /// The kernel's `image_size` (0 if unknown).
        image_size: u64,
        /// The kernel file length.
        kernel_len: u64,
        /// DTB reservation.
        dtb_size: u64,
        /// Initrd length (0 if none).
        initrd_len: u64,
        /// Bytes needed from the 2 MiB aligned kernel base.
        need: u64,
        /// The first bank.
        bank: GuestRange,
        /// Bytes the bank has from the 2 MiB aligned kernel base.
        have: u64,
    },
    /// The bank is big enough, but the DTB cannot be within 512 MiB of the
    /// kernel start or the initrd not within the kernel's 32 GiB window
    /// (a kernel or initrd of hundreds of MiB).
    OutOfReach {
        /// Which rule failed.
        what: &'static str,
    },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => write!(f, "guest has no RAM bank to load the kernel into"),
            Self::BadBank(b) => write!(f, "first RAM bank {b} is empty or wraps"),
            Self::BadDtbSize(s) => {
                write!(
                    f,
                    "DTB reservation {s:#x} must be 1..={MAX_FDT_SIZE:#x} bytes"
                )
            }
            Self::EmptyKernel => write!(f, "kernel image is empty"),
            Self::EmptyInitrd => write!(f, "initrd is empty"),
            Self::DoesNotFit {
                image_size,
                kernel_len,
                dtb_size,
                initrd_len,
                need,
                bank,
                have,
            } => write!(
                f,
                "kernel (image_size {image_size:#x}, file {kernel_len:#x}) + DTB ({dtb_size:#x}) + initrd ({initrd_len:#x}) need {need:#x} bytes but the first RAM bank {bank} has {have:#x} from the 2 MiB-aligned kernel base"
            ),
            Self::OutOfReach { what } => write!(f, "cannot place {what}"),
        }
    }
}

/// Places kernel, DTB and initrd in the first RAM bank. See the
/// [module documentation](self) for the rules.
pub fn place(req: &PlacementRequest<'_>) -> Result<Placement, PlacementError> {
    let bank = *req.banks.first().ok_or(PlacementError::NoRam)?;
    let bank_end = match bank.end() {
        Some(e) if !bank.is_empty() => e.as_u64(),
        _ => return Err(PlacementError::BadBank(bank)),
    };
    if req.dtb_size == 0 || req.dtb_size > MAX_FDT_SIZE {
        return Err(PlacementError::BadDtbSize(req.dtb_size));
    }
    if req.kernel_len == 0 {
        return Err(PlacementError::EmptyKernel);
    }
    let initrd_len = match req.initrd_len {
        Some(0) => return Err(PlacementError::EmptyInitrd),
        Some(n) => n,
        None => 0,
    };
    let footprint = req.kernel.footprint(req.kernel_len);
    // DTB block (a whole 2 MiB) then the initrd.
    let dtb_block = SIZE_2M;

    let does_not_fit = |need: u64, have: u64| PlacementError::DoesNotFit {
        image_size: req.kernel.image_size,
        kernel_len: req.kernel_len,
        dtb_size: req.dtb_size,
        initrd_len,
        need,
        bank,
        have,
    };
    // Everything below is computed in u128 so no input can overflow it.
    let wide = |v: u64| u128::from(v);
    let base = wide(bank.start.as_u64()).next_multiple_of(wide(KERNEL_BASE_ALIGN));
    let have = wide(bank_end).saturating_sub(base);
    let load = base + wide(req.kernel.text_offset);
    let kernel_end = load + wide(footprint);
    let low = kernel_end.next_multiple_of(wide(SIZE_2M));
    let span = wide(dtb_block) + wide(initrd_len);
    let need = low - base + span;
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    if need > have {
        return Err(does_not_fit(clamp(need), clamp(have)));
    }
    // Highest 2 MiB aligned start of the DTB block under every rule.
    let by_bank = wide(bank_end) - span;
    let by_dtb_reach = load + wide(DTB_MAX_DISTANCE) - wide(req.dtb_size);
    let window_end =
        (base / wide(INITRD_WINDOW_ALIGN)) * wide(INITRD_WINDOW_ALIGN) + wide(INITRD_WINDOW);
    let by_window = window_end.saturating_sub(span);
    let start = by_bank.min(by_dtb_reach).min(by_window) / wide(SIZE_2M) * wide(SIZE_2M);
    if start < low {
        let what = if by_dtb_reach < low {
            "the DTB within 512 MiB of the kernel start (kernel too large)"
        } else {
            "the initrd within the kernel's 1 GiB aligned 32 GiB window (initrd too large)"
        };
        return Err(PlacementError::OutOfReach { what });
    }
    // All values are now inside the bank, hence below 2^64.
    let load = GuestPhysAddr(clamp(load));
    let dtb = GuestRange::new(GuestPhysAddr(clamp(start)), req.dtb_size);
    let initrd = req
        .initrd_len
        .map(|len| GuestRange::new(GuestPhysAddr(clamp(start + wide(dtb_block))), len));
    Ok(Placement {
        kernel: GuestRange::new(load, footprint),
        entry: load,
        dtb,
        initrd,
    })
}
