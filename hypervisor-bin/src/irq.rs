//! Routing of physical interrupts taken at EL2.

use crate::gic::Gic;
use crate::println;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// EL2 physical timer interrupt (CNTHP; the `arm,armv8-timer` binding's
/// fourth interrupt), INTID 26 unless the host DT says otherwise.
pub static HYP_TIMER_IRQ: AtomicU32 = AtomicU32::new(26);

/// The EL2 timer's INTID.
pub fn hyp_timer_irq() -> u32 {
    HYP_TIMER_IRQ.load(Ordering::Relaxed)
}
/// SGI used to wake another CPU.
pub const SGI_KICK: u32 = 0;

/// The host console's SPI, once known.
pub static UART_IRQ: AtomicU32 = AtomicU32::new(u32::MAX);
/// Count of EL2 timer interrupts taken (boot self-test).
pub static HYP_TIMER_TICKS: AtomicUsize = AtomicUsize::new(0);

/// Arms the EL2 physical timer to fire after `ticks` counter ticks.
pub fn arm_hyp_timer(ticks: u64) {
    // SAFETY: programs the EL2 timer, which only the hypervisor uses.
    unsafe {
        core::arch::asm!("msr cnthp_tval_el2, {}", "msr cnthp_ctl_el2, {}", "isb",
                         in(reg) ticks, in(reg) 1u64, options(nostack))
    };
}

fn stop_hyp_timer() {
    // SAFETY: disables the EL2 timer (ENABLE = 0, IMASK = 1).
    unsafe { core::arch::asm!("msr cnthp_ctl_el2, {}", "isb", in(reg) 2u64, options(nostack)) };
}

/// Handles `irq` (already priority-dropped). Returns `true` if it was
/// forwarded to a guest through a hardware list register, in which case the
/// guest deactivates it; otherwise the caller deactivates it.
pub fn dispatch(gic: &Gic, irq: u32, _from_guest: bool) -> bool {
    if irq == hyp_timer_irq() {
        stop_hyp_timer();
        HYP_TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    if irq == SGI_KICK || irq == crate::gic::maintenance_irq() {
        // Kick: the return path refills the list registers. Maintenance:
        // likewise (the vGIC folds and refills them on the way back).
        return false;
    }
    if irq == UART_IRQ.load(Ordering::Relaxed) {
        crate::vcpu::console_input();
        return false;
    }
    if crate::vcpu::forward_irq(irq) {
        return true;
    }
    println!("IRQ {irq} has no owner; disabling it");
    gic.disable(irq);
    false
}
