//! Entry code, exception vectors and small system-register helpers.
//!
//! The image starts with an arm64 Linux Image header (Documentation/arch/
//! arm64/booting.rst in Linux: text_offset 0, image_size, flags "4K pages,
//! place anywhere", magic "ARM\x64" at 0x38), so loaders accept it. Entry
//! is at EL1h with the MMU off and x0 = DTB.

use core::arch::{asm, global_asm};

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       0f
    .long   0
    .quad   0                   // text_offset
    .quad   __image_size        // image_size (absolute: includes bss and stacks)
    .quad   0xa                 // flags: little endian, 4K pages, anywhere
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"
    .long   0
0:
    // Counter at the guest's first instructions, for the benchmark mode.
    mrs     x21, cntpct_el0
    mov     x19, x0
    // CPACR_EL1.FPEN = 0b11: the compiler may use FP/SIMD registers.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    // Apply R_AARCH64_RELATIVE relocations for the load address.
    adr     x20, _start
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
1:  cmp     x1, x2
    b.hs    2f
    ldp     x3, x4, [x1]
    ldr     x5, [x1, #16]
    add     x1, x1, #24
    cmp     w4, #1027
    b.ne    1b
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       1b
2:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    str     xzr, [x1], #8
    b       3b
4:  adrp    x1, BENCH_ENTRY_CNTPCT
    str     x21, [x1, :lo12:BENCH_ENTRY_CNTPCT]
    // Exceptions use SP_EL1: make sure that is the stack we set up.
    msr     spsel, #1
    adrp    x1, __stack0_top
    add     x1, x1, :lo12:__stack0_top
    mov     sp, x1
    adrp    x1, vectors
    add     x1, x1, :lo12:vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      guest_main
5:  wfi
    b       5b

    .global secondary_entry
secondary_entry:
    // x0 = context_id = stack top chosen by the primary.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    msr     spsel, #1
    mov     sp, x0
    adrp    x1, vectors
    add     x1, x1, :lo12:vectors
    msr     vbar_el1, x1
    isb
    bl      secondary_main
6:  wfi
    b       6b

    // Saves x0-x30, ELR_EL1 and SPSR_EL1 in a 272-byte frame, calls the
    // handler with the frame, restores (ELR may have been advanced).
    .macro  SAVE_CALL handler
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x0, elr_el1
    mrs     x1, spsr_el1
    stp     x30, x0, [sp, #240]
    str     x1, [sp, #256]
    mov     x0, sp
    bl      \handler
    ldp     x30, x0, [sp, #240]
    ldr     x1, [sp, #256]
    msr     elr_el1, x0
    msr     spsr_el1, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #272
    eret
    .endm

    // Each vector entry is 0x80 bytes: too small for the save/restore
    // sequence, so entries branch to out-of-line stubs.
    .balign 2048
vectors:
    // Current EL with SP_EL0: unused, treated as unexpected.
    .balign 0x80
    b       unexpected_stub
    .balign 0x80
    b       unexpected_stub
    .balign 0x80
    b       unexpected_stub
    .balign 0x80
    b       unexpected_stub
    // Current EL with SP_ELx: the guest runs here.
    .balign 0x80
    b       sync_stub
    .balign 0x80
    b       irq_stub
    .balign 0x80
    b       unexpected_stub
    .balign 0x80
    b       serror_stub
    // Lower EL (AArch64 and AArch32): never used by this guest.
    .rept 8
    .balign 0x80
    b       unexpected_stub
    .endr

sync_stub:
    SAVE_CALL sync_exception
irq_stub:
    SAVE_CALL irq_exception
serror_stub:
    SAVE_CALL serror_exception
unexpected_stub:
    SAVE_CALL unexpected_exception
"#
);

/// Register frame saved by the vectors.
#[repr(C)]
pub struct Frame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL1: where `eret` returns.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    _pad: u64,
}

unsafe extern "C" {
    /// Entry point of secondary vCPUs (x0 = stack top).
    pub fn secondary_entry();
    /// Top of the secondary vCPU's stack (from the linker script).
    pub static __stack1_top: u8;
    /// First byte of the image.
    pub static __image_start: u8;
}

/// Reads a system register by name.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1/EL0-accessible system register has no side
        // effects the guest relies on.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// Writes a system register by name.
macro_rules! write_sysreg {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the callers only write timer and GIC CPU-interface
        // registers, which affect interrupt delivery, not memory safety.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nostack)) };
    }};
}
pub(crate) use {read_sysreg, write_sysreg};

/// Unmasks IRQs (PSTATE.I = 0).
pub fn irq_enable() {
    // SAFETY: the IRQ vector is installed before any caller runs.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack)) };
}

/// Masks IRQs.
pub fn irq_disable() {
    // SAFETY: masking interrupts is always safe.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
}

/// Counter frequency in Hz.
pub fn cntfrq() -> u64 {
    read_sysreg!("cntfrq_el0")
}

/// Virtual counter.
pub fn cntvct() -> u64 {
    // SAFETY: an ISB orders the counter read; no memory is touched.
    unsafe { asm!("isb", options(nomem, nostack)) };
    read_sysreg!("cntvct_el0")
}

/// Spins (without WFI, so a timeout always fires) until `cond` holds or
/// `ms` milliseconds have passed. Returns whether `cond` held.
pub fn wait_for(ms: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = cntvct().saturating_add(cntfrq() / 1000 * ms);
    while cntvct() < deadline {
        if cond() {
            return true;
        }
        core::hint::spin_loop();
    }
    cond()
}

/// Issues an SMCCC call (HVC or SMC) with x0..x3; returns x0.
pub fn smccc(smc: bool, x0: u64, x1: u64, x2: u64, x3: u64) -> u64 {
    let r: u64;
    if smc {
        // SAFETY: SMCCC calls clobber only x0..x17 (we declare x0..x3 and
        // treat the rest as clobbered by using clobber_abi("C")).
        unsafe {
            asm!("smc #0", inlateout("x0") x0 => r, inlateout("x1") x1 => _,
                 inlateout("x2") x2 => _, inlateout("x3") x3 => _, clobber_abi("C"))
        };
    } else {
        // SAFETY: as above, for the HVC conduit.
        unsafe {
            asm!("hvc #0", inlateout("x0") x0 => r, inlateout("x1") x1 => _,
                 inlateout("x2") x2 => _, inlateout("x3") x3 => _, clobber_abi("C"))
        };
    }
    r
}

/// MPIDR_EL1 affinity of this vCPU.
pub fn mpidr() -> u64 {
    read_sysreg!("mpidr_el1") & 0xff_00ff_ffff
}

/// Runtime address of the image start.
pub fn image_base() -> u64 {
    core::ptr::addr_of!(__image_start) as u64
}
