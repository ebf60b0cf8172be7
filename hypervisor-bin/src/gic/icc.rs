//! GICv3 CPU-interface system registers the hypervisor uses for its own
//! (physical) interrupts. aarch64-cpu 11 does not provide these, so they are
//! accessed by their generic encodings (GIC Architecture Specification, IHI
//! 0069, 12.1 "CPU interface registers" and the encodings in 12.2).

use core::arch::asm;

macro_rules! sysreg_rw {
    ($(#[$m:meta])* $read:ident, $write:ident, $enc:literal) => {
        $(#[$m])*
        #[inline]
        pub fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading this GIC CPU-interface register at EL2 has no
            // effect on memory safety (ICC_SRE_EL2.SRE is set first).
            unsafe { asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) };
            v
        }
        $(#[$m])*
        #[inline]
        pub fn $write(v: u64) {
            // SAFETY: writing this register changes interrupt state only.
            unsafe { asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nostack)) };
        }
    };
}

macro_rules! sysreg_w {
    ($(#[$m:meta])* $write:ident, $enc:literal) => {
        $(#[$m])*
        #[inline]
        pub fn $write(v: u64) {
            // SAFETY: writing this register changes interrupt state only.
            unsafe { asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nostack)) };
        }
    };
}

sysreg_rw!(
    /// ICC_SRE_EL2 (IHI 0069, 12.2.17): SRE (bit 0), Enable (bit 3).
    sre_el2,
    set_sre_el2,
    "S3_4_C12_C9_5"
);
sysreg_w!(
    /// ICC_PMR_EL1 (IHI 0069, 12.2.13): priority mask.
    set_pmr,
    "S3_0_C4_C6_0"
);
sysreg_w!(
    /// ICC_BPR1_EL1 (IHI 0069, 12.2.5): group-1 binary point.
    set_bpr1,
    "S3_0_C12_C12_3"
);
sysreg_rw!(
    /// ICC_CTLR_EL1 (IHI 0069, 12.2.6): EOImode is bit 1.
    ctlr,
    set_ctlr,
    "S3_0_C12_C12_4"
);
sysreg_w!(
    /// ICC_IGRPEN1_EL1 (IHI 0069, 12.2.12): group-1 enable.
    set_igrpen1,
    "S3_0_C12_C12_7"
);

/// ICC_IAR1_EL1 (IHI 0069, 12.2.10): acknowledge the highest-priority
/// pending group-1 interrupt.
#[inline]
pub fn iar1() -> u64 {
    let v: u64;
    // SAFETY: acknowledging changes GIC state only.
    unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) v, options(nostack)) };
    v
}

/// ICC_EOIR1_EL1 (IHI 0069, 12.2.8): priority drop (EOImode = 1).
#[inline]
pub fn eoir1(intid: u64) {
    // SAFETY: changes GIC state only.
    unsafe { asm!("msr S3_0_C12_C12_1, {}", in(reg) intid, options(nostack)) };
}

/// ICC_DIR_EL1 (IHI 0069, 12.2.7): deactivate.
#[inline]
pub fn dir(intid: u64) {
    // SAFETY: changes GIC state only.
    unsafe { asm!("msr S3_0_C12_C11_1, {}", in(reg) intid, options(nostack)) };
}

/// ICC_SGI1R_EL1 (IHI 0069, 12.2.21): generate a group-1 SGI.
#[inline]
pub fn sgi1r(v: u64) {
    // SAFETY: sends an interrupt; no memory effects.
    unsafe { asm!("msr S3_0_C12_C11_5, {}", "isb", in(reg) v, options(nostack)) };
}
