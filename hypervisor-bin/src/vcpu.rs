//! Guest vCPUs: traps from EL1 and interrupt forwarding.

use crate::exception::TrapFrame;

/// Handles a synchronous exception from a guest.
pub fn handle_guest_sync(frame: &mut TrapFrame) {
    panic!(
        "trap from a lower EL at {:#x}, but no guest runs here",
        frame.elr
    );
}

/// Drains console input (routed to the console owner).
pub fn console_input() {
    if let Some(uart) = crate::console::CONSOLE.lock().as_ref() {
        while uart.getc().is_some() {}
        uart.ack_rx();
    }
}

/// Forwards `irq` to the guest that owns it, if any.
pub fn forward_irq(_irq: u32) -> bool {
    false
}
