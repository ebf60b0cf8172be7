/*
 * A minimal AArch64 guest for Tessel's smoke test. It runs at EL1 with the
 * MMU off in a direct-mapped domain whose vPL011 sits at the host UART
 * address (0x09000000 on QEMU virt). It checks, printing each result:
 *   - output through the emulated UART (trapped stores to UARTDR);
 *   - PSCI_VERSION over HVC;
 *   - that a load from an address the domain does not own comes back as a
 *     synchronous external abort on the guest's own EL1 vector;
 *   - passthrough: a load from the virtio-mmio page at 0x0a003000 returns
 *     the device's magic "virt" in the domain the device is assigned to,
 *     and aborts elsewhere;
 *   - console input: it polls the vPL011 for a while and echoes the first
 *     byte typed on the host console (only the domain with the input focus
 *     gets it);
 * and ends with PSCI SYSTEM_OFF, after which Tessel powers the machine off.
 */
    .text
    .global _start
_start:
    adr     x0, vectors
    msr     vbar_el1, x0
    isb
    movz    x19, #0x0900, lsl #16           /* UART data register */

    adr     x1, msg_hello
    bl      puts

    movz    w0, #0x0000
    movk    w0, #0x8400, lsl #16            /* PSCI_VERSION */
    hvc     #0
    mov     x20, x0
    adr     x1, msg_psci
    bl      puts
    lsr     x2, x20, #16
    add     w2, w2, #'0'
    strb    w2, [x19]
    mov     w2, #'.'
    strb    w2, [x19]
    and     x2, x20, #0xffff
    add     w2, w2, #'0'
    strb    w2, [x19]
    mov     w2, #'\n'
    strb    w2, [x19]

    mov     x21, #0
    movz    x3, #0x0a00, lsl #16            /* not part of this domain */
    ldr     w4, [x3]
    cbz     x21, no_abort
    lsr     x22, x22, #26
    cmp     x22, #0x25                      /* data abort, same EL */
    b.ne    no_abort
    adr     x1, msg_sea
    bl      puts
    b       off
no_abort:
    adr     x1, msg_nosea
    bl      puts
off:
    mov     x21, #0
    movz    x3, #0x0a00, lsl #16
    add     x3, x3, #0x3000                 /* virtio-mmio device 24 */
    ldr     w4, [x3]
    cbnz    x21, 6f
    movz    w5, #0x6976
    movk    w5, #0x7472, lsl #16            /* "virt" */
    cmp     w4, w5
    b.ne    7f
    adr     x1, msg_pt
    bl      puts
    b       8f
6:  adr     x1, msg_nopt
    bl      puts
    b       8f
7:  adr     x1, msg_badpt
    bl      puts
8:
    /* Poll UARTFR.RXFE (bit 4) for a bounded time, echo one byte. */
    movz    x5, #0x10, lsl #16              /* 1 M polls (each one traps) */
3:  ldr     w6, [x19, #0x18]
    tbz     w6, #4, 4f
    subs    x5, x5, #1
    b.ne    3b
    adr     x1, msg_noinput
    bl      puts
    b       5f
4:  ldr     w7, [x19]
    adr     x1, msg_input
    bl      puts
    strb    w7, [x19]
    mov     w2, #'\n'
    strb    w2, [x19]
5:
    movz    w0, #0x0008
    movk    w0, #0x8400, lsl #16            /* SYSTEM_OFF */
    hvc     #0
    adr     x1, msg_alive
    bl      puts
1:  wfi
    b       1b

puts:
    ldrb    w2, [x1], #1
    cbz     w2, 2f
    strb    w2, [x19]
    b       puts
2:  ret

    .balign 0x800
vectors:
    .balign 0x80
    b       .                               /* EL1t sync */
    .balign 0x200
    /* EL1h sync: record ESR, skip the faulting instruction. */
    mrs     x22, esr_el1
    mov     x21, #1
    mrs     x23, elr_el1
    add     x23, x23, #4
    msr     elr_el1, x23
    eret

    .balign 8
msg_hello:  .asciz "smoke guest: hello from EL1\n"
msg_psci:   .asciz "smoke guest: PSCI version "
msg_sea:    .asciz "smoke guest: unmapped load raised a synchronous external abort\n"
msg_nosea:  .asciz "smoke guest: FAIL: unmapped load did not abort\n"
msg_pt:     .asciz "smoke guest: passthrough device answered\n"
msg_nopt:   .asciz "smoke guest: no passthrough device\n"
msg_badpt:  .asciz "smoke guest: FAIL: passthrough device returned a wrong magic\n"
msg_input:  .asciz "smoke guest: received input: "
msg_noinput: .asciz "smoke guest: no console input\n"
msg_alive:  .asciz "smoke guest: FAIL: still running after SYSTEM_OFF\n"
