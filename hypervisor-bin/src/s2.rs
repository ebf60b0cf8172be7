//! The hardware side of stage-2 translation: table memory from the EL2 heap
//! (identity-mapped, so physical = virtual), TLB maintenance with `TLBI`,
//! and installing a domain's regime (VTCR_EL2, VTTBR_EL2) on a CPU. The
//! tables themselves are built by tessel-stage2.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::arch::asm;
use tessel_addr::{GuestPhysAddr, HostPhysAddr};
use tessel_stage2::{PaRange, Stage2Config, TableMemory, TlbMaintenance, VmidBits};

/// Bytes per translation table.
const TABLE: usize = 4096;

/// A domain's stage-2 tables.
pub type DomainStage2 = tessel_stage2::Stage2<HeapTables, HwTlb>;

/// Stage-2 tables allocated from the EL2 heap. The heap lives in RAM that
/// the EL2 identity map covers, so a table's address is its physical
/// address.
#[derive(Debug, Default)]
pub struct HeapTables;

fn layout(count: usize) -> Option<Layout> {
    let size = count.checked_mul(TABLE)?;
    Layout::from_size_align(size, size).ok()
}

impl TableMemory for HeapTables {
    fn alloc_tables(&mut self, count: usize) -> Option<HostPhysAddr> {
        let layout = layout(count)?;
        // SAFETY: the layout has a non-zero size (count >= 1).
        let p = unsafe { alloc_zeroed(layout) };
        (!p.is_null()).then_some(HostPhysAddr(p as u64))
    }

    fn free_tables(&mut self, base: HostPhysAddr, count: usize) {
        if let Some(layout) = layout(count) {
            // SAFETY: tessel-stage2 frees only tables it got from
            // `alloc_tables` with the same count, after their last use.
            unsafe { dealloc(base.0 as *mut u8, layout) };
        }
    }

    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        let p = (table.0 as *const u64).wrapping_add(index % tessel_stage2::ENTRIES_PER_TABLE);
        // SAFETY: `table` is a live table from `alloc_tables` and the index
        // is below 512, so the access stays inside it.
        unsafe { core::ptr::read_volatile(p) }
    }

    fn write(&mut self, table: HostPhysAddr, index: usize, desc: u64) {
        let p = (table.0 as *mut u64).wrapping_add(index % tessel_stage2::ENTRIES_PER_TABLE);
        // SAFETY: as in `read`; `dmb ishst` orders earlier table writes
        // before this single 64-bit store, as the trait requires.
        unsafe {
            asm!("dmb ishst", options(nostack));
            core::ptr::write_volatile(p, desc);
        }
    }
}

/// TLB maintenance by `TLBI` for the VMID in VTTBR_EL2 (Arm ARM DDI 0487,
/// D8.17 "Translation Lookaside Buffer maintenance"). Domains are built
/// before they first run, when their VMID has no TLB entries yet.
#[derive(Debug, Default)]
pub struct HwTlb;

impl TlbMaintenance for HwTlb {
    fn invalidate_ipa(&mut self, ipa: GuestPhysAddr, _level: Option<u8>) {
        // SAFETY: TLB invalidation only; the operand is IPA[55:12].
        unsafe { asm!("dsb ishst", "tlbi ipas2e1is, {}", in(reg) ipa.0 >> 12, options(nostack)) };
    }

    fn invalidate_vmid(&mut self) {
        // SAFETY: TLB invalidation only.
        unsafe { asm!("dsb ishst", "tlbi vmalls12e1is", options(nostack)) };
    }

    fn sync(&mut self) {
        // SAFETY: barriers and TLB invalidation only.
        unsafe {
            asm!(
                "dsb ish",
                "tlbi vmalle1is",
                "dsb ish",
                "isb",
                options(nostack)
            )
        };
    }
}

/// Why the CPU cannot host stage-2 tables.
pub type S2ConfigError = tessel_stage2::ConfigError;

/// The stage-2 layout for this machine: the IPA space as wide as the
/// physical address range (direct-mapped domains use host addresses), and
/// the VMID width the CPU implements.
pub fn config() -> Result<Stage2Config, S2ConfigError> {
    let (mmfr0, mmfr1): (u64, u64);
    // SAFETY: reading ID registers has no side effects.
    unsafe {
        asm!("mrs {}, id_aa64mmfr0_el1", "mrs {}, id_aa64mmfr1_el1",
             out(reg) mmfr0, out(reg) mmfr1, options(nomem, nostack))
    };
    let pa = PaRange::from_id_aa64mmfr0(mmfr0)?.usable_with_4k();
    Ok(Stage2Config::with_pa_range(pa, pa.bits())?
        .with_vmid_bits(VmidBits::from_id_aa64mmfr1(mmfr1)?))
}

/// Installs a domain's stage-2 regime on this CPU and drops any stale
/// local TLB entries of its VMID.
///
/// # Safety
/// `vttbr` must come from complete stage-2 tables that map only memory the
/// domain may use, and `vtcr` from the same configuration; the caller is
/// about to run that domain on this CPU.
pub unsafe fn activate(vtcr: u64, vttbr: u64) {
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
            vtcr = in(reg) vtcr,
            vttbr = in(reg) vttbr,
            options(nostack)
        )
    };
}
