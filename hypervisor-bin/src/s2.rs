//! Stage-2 translation for the domains: the hardware side (VTCR_EL2,
//! VTTBR_EL2, TLB maintenance) and a small identity-capable table writer
//! over heap-allocated 4 KiB tables.
//!
//! Layout: 4 KiB granule, 39-bit IPA (VTCR_EL2.T0SZ = 25), walk starting at
//! level 1 (SL0 = 1), so one 4 KiB root per domain (Arm ARM DDI 0487,
//! D8.2.6 "Stage 2 translation" and D23.2.198 "VTCR_EL2").

use alloc::alloc::{Layout, alloc_zeroed};
use core::arch::asm;

/// Guest-physical address bits (VTCR_EL2.T0SZ = 64 - 39).
pub const IPA_BITS: u32 = 39;
const ENTRIES: usize = 512;
const L1_SHIFT: u32 = 30;
const L2_SHIFT: u32 = 21;
const L3_SHIFT: u32 = 12;
const PAGE: u64 = 1 << L3_SHIFT;
const BLOCK_2M: u64 = 1 << L2_SHIFT;

/// Descriptor bits (DDI 0487, D8.3 and D8.5 "Stage 2 memory attributes").
const VALID: u64 = 1 << 0;
/// Table (levels 1-2) or page (level 3) descriptor.
const TABLE_OR_PAGE: u64 = 1 << 1;
/// MemAttr[3:0] at bits 5:2: 0b1111 Normal inner/outer write-back.
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
/// MemAttr 0b0001: Device-nGnRE.
const MEMATTR_DEVICE: u64 = 0b0001 << 2;
/// S2AP = 0b11 (read/write) at bits 7:6.
const S2AP_RW: u64 = 0b11 << 6;
/// SH = 0b11 inner shareable at bits 9:8.
const SH_INNER: u64 = 0b11 << 8;
/// Access flag.
const AF: u64 = 1 << 10;
/// XN[1:0] = 0b10 (execute-never at EL1 and EL0) at bits 54:53.
const XN: u64 = 0b10 << 53;
/// Output address bits of a descriptor.
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// What a stage-2 mapping points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Guest RAM: Normal write-back, executable.
    Ram,
    /// A device (passthrough MMIO, GICV): Device-nGnRE, execute-never.
    Device,
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not 4 KiB aligned.
    Unaligned {
        /// Guest-physical start.
        ipa: u64,
        /// Size in bytes.
        size: u64,
    },
    /// The range is beyond the 39-bit IPA space.
    OutOfRange {
        /// Guest-physical start.
        ipa: u64,
    },
    /// Part of the range is already mapped (break-before-make would be
    /// needed; domains are built once, so this is a configuration clash).
    AlreadyMapped {
        /// The first IPA that clashes.
        ipa: u64,
    },
    /// No memory for a table.
    NoMemory,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unaligned { ipa, size } => {
                write!(f, "stage-2 range {ipa:#x}+{size:#x} is not 4 KiB aligned")
            }
            Self::OutOfRange { ipa } => {
                write!(
                    f,
                    "IPA {ipa:#x} is beyond the {IPA_BITS}-bit guest address space"
                )
            }
            Self::AlreadyMapped { ipa } => write!(f, "IPA {ipa:#x} is mapped twice"),
            Self::NoMemory => write!(f, "out of memory for stage-2 tables"),
        }
    }
}

/// One domain's stage-2 tables.
pub struct Stage2 {
    root: *mut [u64; ENTRIES],
}

// SAFETY: the tables are plain memory owned by this value; it is built on
// one CPU and afterwards only read by the hardware walkers.
unsafe impl Send for Stage2 {}
// SAFETY: as above; no interior mutability after construction.
unsafe impl Sync for Stage2 {}

fn new_table() -> Result<*mut [u64; ENTRIES], MapError> {
    let layout =
        Layout::from_size_align(PAGE as usize, PAGE as usize).map_err(|_| MapError::NoMemory)?;
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        return Err(MapError::NoMemory);
    }
    Ok(p.cast())
}

impl Stage2 {
    /// Empty tables.
    pub fn new() -> Result<Self, MapError> {
        Ok(Self { root: new_table()? })
    }

    /// Physical address of the root table (for VTTBR_EL2).
    pub fn root_pa(&self) -> u64 {
        self.root as u64
    }

    /// Maps `[ipa, ipa+size)` to `[pa, pa+size)`, with 2 MiB blocks where
    /// both sides are aligned and 4 KiB pages elsewhere.
    pub fn map(&mut self, ipa: u64, pa: u64, size: u64, kind: MemKind) -> Result<(), MapError> {
        if (ipa | pa | size) & (PAGE - 1) != 0 {
            return Err(MapError::Unaligned { ipa, size });
        }
        let end = ipa.checked_add(size).ok_or(MapError::OutOfRange { ipa })?;
        if end > 1 << IPA_BITS {
            return Err(MapError::OutOfRange { ipa });
        }
        let attrs = match kind {
            MemKind::Ram => MEMATTR_NORMAL_WB | S2AP_RW | SH_INNER | AF,
            MemKind::Device => MEMATTR_DEVICE | S2AP_RW | AF | XN,
        };
        let mut off = 0;
        while off < size {
            let (i, p) = (ipa + off, pa + off);
            let left = size - off;
            if (i | p) & (BLOCK_2M - 1) == 0 && left >= BLOCK_2M {
                self.set(i, 2, p | attrs | VALID)?;
                off += BLOCK_2M;
            } else {
                self.set(i, 3, p | attrs | VALID | TABLE_OR_PAGE)?;
                off += PAGE;
            }
        }
        Ok(())
    }

    /// Writes the level-`level` descriptor for `ipa`, creating tables.
    fn set(&mut self, ipa: u64, level: u32, desc: u64) -> Result<(), MapError> {
        let mut table = self.root;
        for l in 1..level {
            let shift = match l {
                1 => L1_SHIFT,
                _ => L2_SHIFT,
            };
            let idx = ((ipa >> shift) as usize) & (ENTRIES - 1);
            // SAFETY: `table` is a live 4 KiB table we allocated.
            let e = unsafe { &mut (*table)[idx] };
            if *e & VALID == 0 {
                let t = new_table()?;
                *e = (t as u64) | VALID | TABLE_OR_PAGE;
            } else if *e & TABLE_OR_PAGE == 0 {
                return Err(MapError::AlreadyMapped { ipa });
            }
            table = (*e & OA_MASK) as *mut [u64; ENTRIES];
        }
        let shift = if level == 2 { L2_SHIFT } else { L3_SHIFT };
        let idx = ((ipa >> shift) as usize) & (ENTRIES - 1);
        // SAFETY: as above.
        let e = unsafe { &mut (*table)[idx] };
        if *e & VALID != 0 {
            return Err(MapError::AlreadyMapped { ipa });
        }
        *e = desc;
        Ok(())
    }
}

/// VTCR_EL2 for this layout on this CPU (D23.2.198): T0SZ = 25, SL0 = 1,
/// inner/outer write-back cacheable walks, inner shareable, 4 KiB granule,
/// PS from ID_AA64MMFR0_EL1.PARange, 8-bit VMID; bit 31 is RES1.
pub fn vtcr() -> u64 {
    let mmfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack)) };
    let ps = (mmfr0 & 0xf).min(5);
    (64 - u64::from(IPA_BITS))
        | (1 << 6)
        | (1 << 8)
        | (1 << 10)
        | (3 << 12)
        | (ps << 16)
        | (1 << 31)
}

/// Installs the stage-2 regime of a domain on this CPU and invalidates its
/// stale TLB entries (`tlbi vmalls12e1` for the new VMID).
///
/// # Safety
/// `root` must be a complete stage-2 table tree that maps only memory the
/// domain may use; the caller is about to run that domain on this CPU.
pub unsafe fn activate(root: u64, vmid: u16) {
    let vttbr = root | (u64::from(vmid & 0xff) << 48);
    // SAFETY: per the caller; barriers order the table writes before use.
    unsafe {
        asm!(
            "dsb ish",
            "msr vtcr_el2, {vtcr}",
            "msr vttbr_el2, {vttbr}",
            "isb",
            "tlbi vmalls12e1",
            "dsb nsh",
            "isb",
            vtcr = in(reg) vtcr(),
            vttbr = in(reg) vttbr,
            options(nostack)
        )
    };
}
