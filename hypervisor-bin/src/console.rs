//! The host PL011 console: polled transmit, interrupt-driven receive.
//!
//! Register offsets and bits: PrimeCell UART (PL011) Technical Reference
//! Manual, ARM DDI 0183, section 3.2 "Summary of registers".

use crate::mmio::Mmio;
use crate::sync::SpinLock;
use core::fmt::{self, Write};

/// UARTDR, data register (DDI 0183, 3.3.1).
const UARTDR: usize = 0x00;
/// UARTFR, flag register (DDI 0183, 3.3.3).
const UARTFR: usize = 0x18;
/// UARTFR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;
/// UARTFR.RXFE: receive FIFO empty.
const FR_RXFE: u32 = 1 << 4;
/// UARTFR.BUSY: still transmitting.
const FR_BUSY: u32 = 1 << 3;
/// UARTIMSC, interrupt mask set/clear (DDI 0183, 3.3.10).
const UARTIMSC: usize = 0x38;
/// UARTICR, interrupt clear (DDI 0183, 3.3.13).
const UARTICR: usize = 0x44;
/// Receive (bit 4) and receive-timeout (bit 6) interrupts.
const INT_RX: u32 = (1 << 4) | (1 << 6);

/// A PL011 driven by polling for output.
pub struct Pl011 {
    regs: Mmio,
}

impl Pl011 {
    /// The UART at `regs`, left configured as the firmware set it up.
    pub fn new(regs: Mmio) -> Self {
        Self { regs }
    }

    fn put(&self, byte: u8) {
        while self.regs.read32(UARTFR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.regs.write32(UARTDR, u32::from(byte));
    }

    /// Waits until every queued byte has left the UART.
    pub fn flush(&self) {
        while self.regs.read32(UARTFR) & FR_BUSY != 0 {
            core::hint::spin_loop();
        }
    }

    /// Unmasks the receive interrupts.
    pub fn enable_rx_irq(&self) {
        self.regs.write32(UARTICR, INT_RX);
        self.regs
            .write32(UARTIMSC, self.regs.read32(UARTIMSC) | INT_RX);
    }

    /// One received byte, if any.
    pub fn getc(&self) -> Option<u8> {
        if self.regs.read32(UARTFR) & FR_RXFE != 0 {
            None
        } else {
            Some((self.regs.read32(UARTDR) & 0xff) as u8)
        }
    }

    /// Clears the receive interrupts after the FIFO was drained.
    pub fn ack_rx(&self) {
        self.regs.write32(UARTICR, INT_RX);
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// The console, once the DT told us where it is.
pub static CONSOLE: SpinLock<Option<Pl011>> = SpinLock::new(None);

/// Base address of the console UART, once installed.
pub fn base() -> Option<u64> {
    CONSOLE.lock().as_ref().map(|u| u.regs.base())
}

/// Installs the console.
pub fn init(uart: Pl011) {
    *CONSOLE.lock() = Some(uart);
}

/// Writes one line of the hypervisor's own output: the `(tessel) ` tag,
/// the text and a newline, under one hold of the console lock (used by
/// [`println!`](crate::println); one function rather than a wrapping
/// `format_args!` at every call site).
pub fn print_line(args: fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = uart.write_str("(tessel) ");
        let _ = uart.write_fmt(args);
        let _ = uart.write_str("\n");
    }
}

/// Writes raw guest output bytes to the console.
pub fn write_bytes(bytes: &[u8]) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        for &b in bytes {
            uart.put(b);
        }
    }
}

/// Waits until the console has sent everything (before powering off).
pub fn flush() {
    if let Some(uart) = CONSOLE.lock().as_ref() {
        uart.flush();
    }
}

/// Writes formatted text to the console only if its lock is free (for the
/// panic path, where the lock may be held by the panicking CPU).
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    if let Some(mut g) = CONSOLE.try_lock()
        && let Some(uart) = g.as_mut()
    {
        let _ = uart.write_fmt(args);
    }
}

/// Prints a line to the console, prefixed with `(XEN)`-style origin tag.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print_line(format_args!($($arg)*)) };
}
