//! Entry code: the arm64 Image header, self-relocation, per-CPU stacks and
//! the EL2 exception vector table.
//!
//! Everything here runs before Rust code can (no stack, relocations not yet
//! applied, `.bss` not yet zeroed), so it is assembly. The image is linked at
//! address 0 as a static PIE whose relative relocations the linker packs
//! into `.relr.dyn` (`-z pack-relative-relocs`; the linker script checks
//! that no other kind is left in `.rela.dyn`). `primary_entry` adds the
//! run-time load address to every word that table names, which is all a
//! static PIE needs. The code itself only uses PC-relative addressing
//! (`adr`/`adrp`).

use core::arch::global_asm;

/// Number of physical CPUs Tessel supports (stacks are reserved per CPU).
pub const MAX_CPUS: usize = 8;
/// Bytes of EL2 stack per physical CPU.
pub const STACK_SIZE: usize = 32 * 1024;

global_asm!(
    r#"
    /* mov_imm reg, imm: load a 32-bit immediate with movz/movk. */
    .macro mov_imm reg, imm
    movz    \reg, #((\imm) & 0xffff)
    movk    \reg, #(((\imm) >> 16) & 0xffff), lsl #16
    .endm

    .section .text.head, "ax"
    .global _start
_start:
    /* arm64 Linux Image header (Documentation/arch/arm64/booting.rst). */
    b       primary_entry           /* code0 */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset */
    .quad   __image_size            /* image_size, .bss included */
    .quad   0xa                     /* flags: LE, 4K pages, place anywhere */
    .quad   0                       /* res2 */
    .quad   0                       /* res3 */
    .quad   0                       /* res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5 */

primary_entry:
    mov     x19, x0                 /* host DTB */
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.ne    park                    /* not at EL2: nothing we can do */

    /* Run with the EL2 MMU and caches off until Rust turns them on. */
    mov_imm x1, {sctlr_res1}
    msr     sctlr_el2, x1
    isb

    /* Apply the relative relocations for our run-time base. */
    adr     x20, _start
    tst     x20, #0xfff
    b.ne    park                    /* must be 4 KiB aligned at least */
    bl      apply_relr

    /* Zero .bss (stacks, page tables, heap, statics). */
2:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b

4:  mov     x0, #0
    bl      setup_cpu
    mov     x0, x19
    mov     x1, x20
    bl      primary_main
    b       park

    /* apply_relr: add x20 (the run-time base) to every word that .relr.dyn
       names. The table is a list of 64-bit entries (ELF gABI, "Relative
       relocations" / SHT_RELR): an even entry is the link-time address of a
       word to relocate, and the next word after it is where a following
       bitmap starts; an odd entry is such a bitmap, bit i (1 <= i <= 63)
       naming the word i-1 after that point, which then advances by 63
       words. Linked at 0, a link-time address is an offset from x20.
       Clobbers x1-x7. */
apply_relr:
    adrp    x1, __relr_start
    add     x1, x1, :lo12:__relr_start
    adrp    x2, __relr_end
    add     x2, x2, :lo12:__relr_end
    mov     x6, #0                  /* where the next bitmap starts */
5:  cmp     x1, x2
    b.hs    9f
    ldr     x3, [x1], #8
    tbnz    x3, #0, 6f
    ldr     x4, [x20, x3]           /* an address entry */
    add     x4, x4, x20
    str     x4, [x20, x3]
    add     x6, x3, #8
    b       5b
6:  mov     x7, x6                  /* a bitmap entry */
7:  lsr     x3, x3, #1
    cbz     x3, 8f
    tbz     x3, #0, 71f
    ldr     x4, [x20, x7]
    add     x4, x4, x20
    str     x4, [x20, x7]
71: add     x7, x7, #8
    b       7b
8:  add     x6, x6, #(63 * 8)
    b       5b
9:  ret

    /* PSCI CPU_ON lands here with the MMU off and x0 = our CPU index. */
    .global secondary_entry
secondary_entry:
    mov     x19, x0
    mov_imm x1, {sctlr_res1}
    msr     sctlr_el2, x1
    isb
    cmp     x19, #{max_cpus}
    b.hs    park
    bl      setup_cpu
    mov     x0, x19
    bl      secondary_main
    b       park

    /* x0 = CPU index: stack pointer, TPIDR_EL2 and VBAR_EL2. Clobbers x1-x2. */
setup_cpu:
    msr     tpidr_el2, x0
    adrp    x1, {stacks}
    add     x1, x1, :lo12:{stacks}
    add     x2, x0, #1
    mov     x0, #{stack_size}
    madd    x1, x2, x0, x1
    mov     sp, x1
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el2, x1
    isb
    ret

    .global park
park:
    wfe
    b       park
"#,
    sctlr_res1 = const crate::mmu::SCTLR_EL2_RES1,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    stacks = sym STACKS,
);

/// One EL2 stack per physical CPU, 16-byte aligned as AAPCS64 requires.
#[repr(C, align(4096))]
pub struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

/// The per-CPU EL2 stacks (in `.bss`; only the entry code touches them).
#[unsafe(no_mangle)]
pub static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// Size of [`crate::exception::TrapFrame`] as saved by the vectors.
const FRAME_SIZE: usize = core::mem::size_of::<crate::exception::TrapFrame>();

global_asm!(
    r#"
    /* Save the interrupted context as a TrapFrame on the EL2 stack and call
       the slot's handler(frame, kind): the guest's synchronous exceptions
       and interrupts go straight to their own handlers, everything else to
       handle_exception. Each vector slot has room for 32 instructions, so
       the slots only save x0/x1, name their handler and branch here. */
    .macro vector kind, handler=handle_exception
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    adr     x0, \handler
    mov     x1, #\kind
    b       exception_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global exception_vectors
exception_vectors:
    vector 0    /* current EL, SP_EL0: sync */
    vector 1    /* current EL, SP_EL0: IRQ */
    vector 2    /* current EL, SP_EL0: FIQ */
    vector 3    /* current EL, SP_EL0: SError */
    vector 4    /* current EL, SP_ELx: sync */
    vector 5    /* current EL, SP_ELx: IRQ */
    vector 6    /* current EL, SP_ELx: FIQ */
    vector 7    /* current EL, SP_ELx: SError */
    vector 8, guest_sync_entry  /* lower EL, AArch64: sync */
    vector 9, guest_irq_entry   /* lower EL, AArch64: IRQ */
    vector 10   /* lower EL, AArch64: FIQ */
    vector 11   /* lower EL, AArch64: SError */
    vector 12, guest_sync_entry /* lower EL, AArch32: sync */
    vector 13, guest_irq_entry  /* lower EL, AArch32: IRQ */
    vector 14   /* lower EL, AArch32: FIQ */
    vector 15   /* lower EL, AArch32: SError */

exception_common:
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x2, elr_el2
    stp     x30, x2, [sp, #16 * 15]
    mrs     x2, spsr_el2
    str     x2, [sp, #16 * 16]
    /* handler(frame, kind): x0 holds the slot's handler, x1 its number. */
    mov     x16, x0
    mov     x0, sp
    blr     x16

    /* Return to the (possibly modified) frame at sp. */
    .global exception_return
exception_return:
    ldr     x2, [sp, #16 * 16]
    msr     spsr_el2, x2
    ldp     x30, x2, [sp, #16 * 15]
    msr     elr_el2, x2
    ldp     x0, x1, [sp, #16 * 0]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x28, x29, [sp, #16 * 14]
    add     sp, sp, #{frame}
    eret

    /* enter_guest(frame): switch to a guest context built by Rust. x0 points
       at a TrapFrame; it is copied to the top of this CPU's stack area below
       the caller's frame and restored with eret. Never returns: later traps
       from the guest build new frames on the same stack. */
    .global enter_guest
enter_guest:
    sub     sp, sp, #{frame}
    mov     x2, #0
5:  ldr     x3, [x0, x2]
    str     x3, [sp, x2]
    add     x2, x2, #8
    cmp     x2, #{frame}
    b.lo    5b
    b       exception_return
"#,
    frame = const FRAME_SIZE,
);
