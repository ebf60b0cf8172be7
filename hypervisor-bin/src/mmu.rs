//! The EL2 stage-1 identity map.
//!
//! 4 KiB granule, 39-bit virtual addresses (TCR_EL2.T0SZ = 25), so the walk
//! starts at level 1 with 1 GiB entries (Arm ARM DDI 0487, D8.2 "Translation
//! table walk"). Each 1 GiB slot is a Device-nGnRE block unless it overlaps
//! RAM, in which case it gets a level-2 table of 2 MiB blocks: Normal
//! write-back for RAM, Device for the rest. Tables live in `.bss`.

use aarch64_cpu::registers::{MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2};
use core::arch::asm;
use core::cell::UnsafeCell;
use tock_registers::interfaces::{ReadWriteable, Writeable};

/// SCTLR_EL2 bits that are RES1 when HCR_EL2.E2H == 0 (DDI 0487, D23.2.118):
/// bits 4, 5, 11, 16, 18, 22, 23, 28 and 29.
pub const SCTLR_EL2_RES1: u64 = 0x30C5_0830;

/// Entries per 4 KiB table.
const ENTRIES: usize = 512;
/// Level-1 slots covered by the 39-bit VA space.
const L1_SLOTS: usize = 512;
/// Most level-2 tables (1 GiB RAM slots) we can populate.
const MAX_L2: usize = 16;
/// 1 GiB and 2 MiB block sizes.
const L1_BLOCK: u64 = 1 << 30;
const L2_BLOCK: u64 = 1 << 21;

/// Descriptor bits (DDI 0487, D8.3 "Translation table descriptor formats").
const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE: u64 = 1 << 1;
/// AttrIndx\[2:0\] at bits 4:2.
const fn attr_index(i: u64) -> u64 {
    i << 2
}
/// Inner Shareable (SH = 0b11) at bits 9:8.
const SH_INNER: u64 = 3 << 8;
/// Access flag.
const AF: u64 = 1 << 10;
/// Execute-never at EL2 (XN, bit 54, for the EL2 regime).
const XN: u64 = 1 << 54;

/// MAIR_EL2 index of Device-nGnRE.
const MAIR_DEVICE: u64 = 0;
/// MAIR_EL2 index of Normal write-back, read/write-allocate.
const MAIR_NORMAL: u64 = 1;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

#[repr(C)]
struct Tables {
    l1: Table,
    l2: [Table; MAX_L2],
    used_l2: usize,
}

/// Holder for the tables: written only by the boot CPU before any other CPU
/// runs, then only read by the table walkers.
struct TableStore(UnsafeCell<Tables>);

// SAFETY: see `TableStore`; `build` is the only writer and its contract
// confines it to single-threaded boot.
unsafe impl Sync for TableStore {}

static TABLES: TableStore = TableStore(UnsafeCell::new(Tables {
    l1: Table([0; ENTRIES]),
    l2: [const { Table([0; ENTRIES]) }; MAX_L2],
    used_l2: 0,
}));

fn device_block(pa: u64) -> u64 {
    pa | DESC_VALID | attr_index(MAIR_DEVICE) | AF | XN
}

fn normal_block(pa: u64) -> u64 {
    pa | DESC_VALID | attr_index(MAIR_NORMAL) | SH_INNER | AF
}

/// Builds the identity map for `ram` banks.
///
/// # Safety
/// Call once, on the boot CPU, before any other CPU runs and before the MMU
/// is enabled anywhere.
pub unsafe fn build(ram: &[(u64, u64)]) -> Result<(), &'static str> {
    // SAFETY: the caller guarantees exclusive, single-threaded access.
    let t = unsafe { &mut *TABLES.0.get() };
    for slot in 0..L1_SLOTS {
        let base = slot as u64 * L1_BLOCK;
        let end = base + L1_BLOCK;
        let has_ram = ram
            .iter()
            .any(|&(b, s)| b < end && b.saturating_add(s) > base);
        if !has_ram {
            t.l1.0[slot] = device_block(base);
            continue;
        }
        let idx = t.used_l2;
        let l2 = t.l2.get_mut(idx).ok_or("too many RAM gigabytes to map")?;
        t.used_l2 += 1;
        for (i, e) in l2.0.iter_mut().enumerate() {
            let pa = base + i as u64 * L2_BLOCK;
            let is_ram = ram
                .iter()
                .any(|&(b, s)| b <= pa && pa + L2_BLOCK <= b.saturating_add(s));
            *e = if is_ram {
                normal_block(pa)
            } else {
                device_block(pa)
            };
        }
        t.l1.0[slot] = (l2.0.as_ptr() as u64) | DESC_VALID | DESC_TABLE;
    }
    Ok(())
}

/// Address range of the tables, for cache maintenance before the MMU is on.
pub fn tables_range() -> (u64, u64) {
    let start = TABLES.0.get() as u64;
    (start, start + core::mem::size_of::<Tables>() as u64)
}

/// Cleans and invalidates `[start, end)` to the point of coherency.
pub fn clean_inval_dcache(start: u64, end: u64) {
    let mut line = start & !63;
    while line < end {
        // SAFETY: DC CIVAC on an address we own only affects cache state.
        unsafe { asm!("dc civac, {}", in(reg) line, options(nostack)) };
        line += 64;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb sy", options(nostack)) };
}

/// Turns on the MMU and caches on this CPU with the tables from [`build`].
///
/// # Safety
/// [`build`] must have completed, and the code, stack and data in use must
/// be inside the identity map (they are: it covers all RAM).
pub unsafe fn enable() {
    let l1 = TABLES.0.get() as u64; // `l1` is the first field
    MAIR_EL2.write(
        MAIR_EL2::Attr0_Device::nonGathering_nonReordering_EarlyWriteAck
            + MAIR_EL2::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL2::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc,
    );
    // PS: cap the output size at what the CPU implements (ID_AA64MMFR0_EL1).
    let mmfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack)) };
    let parange = (mmfr0 & 0xf).min(5);
    TCR_EL2.write(
        TCR_EL2::T0SZ.val(25)
            + TCR_EL2::TG0::KiB_4
            + TCR_EL2::SH0::Inner
            + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::PS.val(parange),
    );
    TTBR0_EL2.set(l1);
    // SAFETY: barriers and TLB invalidation of the EL2 regime, which has
    // no live translations yet.
    unsafe { asm!("dsb sy", "tlbi alle2", "dsb sy", "isb", options(nostack)) };
    SCTLR_EL2.modify(SCTLR_EL2::M::Enable + SCTLR_EL2::C::Cacheable + SCTLR_EL2::I::Cacheable);
    // SAFETY: synchronises the SCTLR write before continuing.
    unsafe { asm!("isb", options(nostack)) };
}
