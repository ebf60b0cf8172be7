//! Emulated SBSA/PL011 UART with console multiplexing.
//!
//! [`Vpl011`] emulates the register frame of an Arm PrimeCell UART PL011
//! r1p5 (ARM DDI 0183) well enough for both Linux drivers that bind to it:
//! `amba-pl011` (compatible `arm,pl011`, probed through the PrimeCell ID
//! registers) and `sbsa-uart` (compatible `arm,sbsa-uart`, the SBSA subset).
//! Every guest access is trapped; the device is driven purely through
//! [`Vpl011::read`] and [`Vpl011::write`] by register offset, in the style of
//! rust-vmm's vm-superio, and signals its interrupt through the [`IrqLine`]
//! trait, which the hypervisor wires to the vGIC.
//!
//! Data paths:
//! * guest writes to UARTDR land in a transmit FIFO that the hypervisor
//!   empties with [`Vpl011::drain_tx`] after each trapped write and hands to
//!   the [`console::Console`], which prints whole lines prefixed with the
//!   domain name;
//! * bytes typed on the physical console are routed by the
//!   [`console::Console`] to one domain at a time and fed into the receive
//!   FIFO with [`Vpl011::receive`] whenever it has room.
//!
//! ```
//! use tessel_addr::AccessSize;
//! use tessel_vpl011::{regs, IrqLine, Vpl011};
//!
//! #[derive(Default)]
//! struct Line(bool);
//! impl IrqLine for Line {
//!     fn set_level(&mut self, high: bool) {
//!         self.0 = high;
//!     }
//! }
//!
//! let mut uart = Vpl011::new(Line::default());
//! // Unmask the receive interrupt and deliver one byte: FIFO below the
//! // trigger level, so the receive-timeout interrupt signals it.
//! uart.write(regs::IMSC, AccessSize::Word, u64::from(regs::int::RX | regs::int::RT)).unwrap();
//! assert_eq!(uart.receive(b"x"), 1);
//! assert!(uart.irq_line().0);
//! assert_eq!(uart.read(regs::DR, AccessSize::Word).unwrap(), u64::from(b'x'));
//! assert!(!uart.irq_line().0);
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod config;
pub mod console;
pub mod regs;

use core::fmt;

use heapless::Deque;
use tessel_addr::AccessSize;

pub use config::{ConfigError, Vpl011Config};

/// Depth of each FIFO when UARTLCR_H.FEN is set (a PL011 has 32 entries).
pub const FIFO_DEPTH: usize = 32;

/// The interrupt output of the emulated UART (UARTINTR, the OR of all
/// masked interrupts).
///
/// The hypervisor implements it by setting the level of the UART's SPI on the
/// domain's vGIC. The device calls [`IrqLine::set_level`] only when the level
/// changes, so an implementation may treat every call as an edge.
pub trait IrqLine {
    /// Drives the line high (`true`) or low (`false`).
    fn set_level(&mut self, high: bool);
}

/// A guest access the device cannot perform; the caller injects a
/// synchronous external abort into the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MmioError {
    /// A 64-bit access: the PL011 frame only decodes 8, 16 and 32-bit ones.
    UnsupportedWidth {
        /// Offset of the access in the register frame.
        offset: u64,
    },
    /// An access whose offset is not a multiple of its width.
    Misaligned {
        /// Offset of the access in the register frame.
        offset: u64,
        /// Width of the access.
        size: AccessSize,
    },
    /// An offset outside the 4 KiB register frame.
    OutOfFrame {
        /// The offending offset.
        offset: u64,
    },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedWidth { offset } => write!(
                f,
                "vPL011: 64-bit access at offset {offset:#x}; only 8, 16 and 32-bit accesses are supported"
            ),
            Self::Misaligned { offset, size } => write!(
                f,
                "vPL011: {}-byte access at unaligned offset {offset:#x}",
                size.bytes()
            ),
            Self::OutOfFrame { offset } => write!(
                f,
                "vPL011: offset {offset:#x} is outside the {:#x}-byte register frame",
                regs::FRAME_SIZE
            ),
        }
    }
}

impl core::error::Error for MmioError {}

/// A snapshot of the whole device state, for save/restore and for tests.
///
/// Obtained with [`Vpl011::state`], restored with [`Vpl011::from_state`].
/// `Default` is the reset state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Vpl011State {
    /// UARTILPR.
    pub ilpr: u32,
    /// UARTIBRD.
    pub ibrd: u32,
    /// UARTFBRD.
    pub fbrd: u32,
    /// UARTLCR_H.
    pub lcr_h: u32,
    /// UARTCR.
    pub cr: u32,
    /// UARTIFLS.
    pub ifls: u32,
    /// UARTIMSC.
    pub imsc: u32,
    /// UARTRIS (latched raw interrupt status).
    pub ris: u32,
    /// UARTDMACR.
    pub dmacr: u32,
    /// Receive FIFO contents, oldest first.
    pub rx: heapless::Vec<u8, FIFO_DEPTH>,
    /// Transmit FIFO contents not yet drained, oldest first.
    pub tx: heapless::Vec<u8, FIFO_DEPTH>,
    /// Bytes the guest wrote while the transmit FIFO was full (lost, as on
    /// hardware).
    pub tx_overflows: u64,
}

impl Default for Vpl011State {
    fn default() -> Self {
        Self {
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: regs::reset::CR,
            ifls: regs::reset::IFLS,
            imsc: 0,
            // An empty transmit FIFO is at or below any trigger level.
            ris: regs::int::TX,
            dmacr: 0,
            rx: heapless::Vec::new(),
            tx: heapless::Vec::new(),
            tx_overflows: 0,
        }
    }
}

/// The emulated PL011.
///
/// Interrupt model (UARTRIS, DDI 0183 3.3.11 and 3.4):
/// * **RX** (bit 4) is set when delivered input brings the receive FIFO to
///   its trigger level (UARTIFLS.RXIFLSEL, 1/8 to 7/8 of 32 bytes, or 1 byte
///   with FIFOs disabled), and cleared when reads take it below the level or
///   by UARTICR.
/// * **RT** (bit 6), the receive timeout: real hardware raises it when data
///   sits below the trigger level for 32 bit periods. There is no line timing
///   here, so it is modelled as "data present and not read": it is set when
///   a batch of input leaves the FIFO non-empty but below the trigger level,
///   or when reads take the FIFO from at/above the level to below it with
///   data left. It is cleared when the FIFO empties or by UARTICR.
/// * **TX** (bit 5) follows the transmit FIFO level: it is set when, after a
///   write or a drain, the FIFO is at or below its trigger level
///   (UARTIFLS.TXIFLSEL; "empty" with FIFOs disabled), and cleared when a
///   write fills it above the level. UARTICR clears it until the next
///   transmit event. As the FIFO drains to the console right after every
///   write, TX is normally set after writes, which is what the Linux
///   `amba-pl011`/`sbsa-uart` transmit path waits for.
/// * Modem and error interrupts (bits 0-3, 7-10) are never raised: there are
///   no modem lines and input never overruns (it waits in the console buffer).
///
/// UARTCR is stored but does not gate data flow: early consoles (earlycon)
/// write to the UART without enabling it, trusting firmware to have done so.
pub struct Vpl011<I: IrqLine> {
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    dmacr: u32,
    rx: Deque<u8, FIFO_DEPTH>,
    tx: Deque<u8, FIFO_DEPTH>,
    tx_overflows: u64,
    irq: I,
    level: bool,
}

impl<I: IrqLine> fmt::Debug for Vpl011<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vpl011")
            .field("state", &self.state())
            .field("level", &self.level)
            .finish()
    }
}

/// Trigger level in eighths for a 3-bit UARTIFLS field (DDI 0183, 3.3.9).
/// The reserved encodings 0b101-0b111 behave as 7/8.
fn ifls_eighths(sel: u32) -> usize {
    match sel & 0x7 {
        0 => 1,
        1 => 2,
        2 => 4,
        3 => 6,
        _ => 7,
    }
}

impl<I: IrqLine> Vpl011<I> {
    /// A UART in its reset state, driving `irq` (initially low; no call is
    /// made until the level first changes).
    pub fn new(irq: I) -> Self {
        Self::from_state(&Vpl011State::default(), irq).0
    }

    /// Rebuilds a device from a snapshot. Register values are masked to
    /// their architectural widths, so a corrupt snapshot cannot create an
    /// impossible state. Returns the device and whether its interrupt line
    /// is high; the line is driven high through `irq` if so.
    pub fn from_state(state: &Vpl011State, irq: I) -> (Self, bool) {
        let mut rx = Deque::new();
        for &b in &state.rx {
            // Capacities are equal, so this cannot fail.
            let _ = rx.push_back(b);
        }
        let mut tx = Deque::new();
        for &b in &state.tx {
            let _ = tx.push_back(b);
        }
        let mut dev = Self {
            ilpr: state.ilpr & regs::mask::ILPR,
            ibrd: state.ibrd & regs::mask::IBRD,
            fbrd: state.fbrd & regs::mask::FBRD,
            lcr_h: state.lcr_h & regs::mask::LCR_H,
            cr: state.cr & regs::mask::CR,
            ifls: state.ifls & regs::mask::IFLS,
            imsc: state.imsc & regs::int::ALL,
            ris: state.ris & regs::int::ALL,
            dmacr: state.dmacr & regs::mask::DMACR,
            rx,
            tx,
            tx_overflows: state.tx_overflows,
            irq,
            level: false,
        };
        dev.update_irq();
        let level = dev.level;
        (dev, level)
    }

    /// A snapshot of the device state.
    pub fn state(&self) -> Vpl011State {
        let mut rx = heapless::Vec::new();
        for &b in self.rx.iter() {
            let _ = rx.push(b);
        }
        let mut tx = heapless::Vec::new();
        for &b in self.tx.iter() {
            let _ = tx.push(b);
        }
        Vpl011State {
            ilpr: self.ilpr,
            ibrd: self.ibrd,
            fbrd: self.fbrd,
            lcr_h: self.lcr_h,
            cr: self.cr,
            ifls: self.ifls,
            imsc: self.imsc,
            ris: self.ris,
            dmacr: self.dmacr,
            rx,
            tx,
            tx_overflows: self.tx_overflows,
        }
    }

    /// The interrupt line implementation.
    pub fn irq_line(&self) -> &I {
        &self.irq
    }

    /// The interrupt line implementation, mutably.
    pub fn irq_line_mut(&mut self) -> &mut I {
        &mut self.irq
    }

    /// Current level of the interrupt output: `(RIS & IMSC) != 0`.
    pub fn irq_level(&self) -> bool {
        self.level
    }

    /// Bytes the guest wrote while the transmit FIFO was full.
    pub fn tx_overflows(&self) -> u64 {
        self.tx_overflows
    }

    /// Effective FIFO depth: 32 with UARTLCR_H.FEN set, else 1.
    pub fn fifo_depth(&self) -> usize {
        if self.lcr_h & regs::lcr_h::FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// Receive FIFO fill level at or above which RX is raised.
    fn rx_trigger(&self) -> usize {
        if self.fifo_depth() == 1 {
            1
        } else {
            FIFO_DEPTH * ifls_eighths(self.ifls >> 3) / 8
        }
    }

    /// Transmit FIFO fill level at or below which TX is raised.
    fn tx_trigger(&self) -> usize {
        if self.fifo_depth() == 1 {
            0
        } else {
            FIFO_DEPTH * ifls_eighths(self.ifls) / 8
        }
    }

    /// Free space in the receive FIFO, in bytes.
    pub fn rx_space(&self) -> usize {
        self.fifo_depth().saturating_sub(self.rx.len())
    }

    /// Bytes waiting in the receive FIFO.
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    /// Bytes waiting in the transmit FIFO.
    pub fn tx_len(&self) -> usize {
        self.tx.len()
    }

    /// Delivers input to the guest: pushes as many bytes of `bytes` as the
    /// receive FIFO has room for and returns how many were taken. The rest
    /// must be kept by the caller (see [`console::Console::feed`]) and
    /// offered again once the guest reads.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let mut taken = 0;
        for &b in bytes {
            if self.rx_space() == 0 || self.rx.push_back(b).is_err() {
                break;
            }
            taken += 1;
        }
        if taken > 0 {
            if self.rx.len() >= self.rx_trigger() {
                self.ris |= regs::int::RX;
            } else {
                self.ris |= regs::int::RT;
            }
            self.update_irq();
        }
        taken
    }

    /// Empties the transmit FIFO into `sink`, oldest byte first, and returns
    /// the number of bytes drained. The hypervisor calls this after every
    /// trapped write, so the FIFO drains "instantly" from the guest's view.
    pub fn drain_tx(&mut self, mut sink: impl FnMut(u8)) -> usize {
        let mut n = 0;
        while let Some(b) = self.tx.pop_front() {
            sink(b);
            n += 1;
        }
        self.tx_event();
        self.update_irq();
        n
    }

    /// A trapped guest write followed by [`drain_tx`](Self::drain_tx), as
    /// the hypervisor does on every write: same result, same final state
    /// and same bytes for `sink`. A byte written to UARTDR while the
    /// transmit FIFO is empty goes straight to `sink` instead of through
    /// the FIFO, so the interrupt line is re-evaluated once, not twice (a
    /// transient change between the write and the drain is not shown).
    /// Returns the number of bytes drained.
    pub fn write_through(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
        mut sink: impl FnMut(u8),
    ) -> Result<usize, MmioError> {
        if offset == regs::DR && size != AccessSize::Double && self.tx.is_empty() {
            // Any width at offset 0 is aligned, and the low byte is the
            // character; an empty FIFO always has room for it.
            sink(value as u8);
            self.tx_event();
            self.update_irq();
            return Ok(1);
        }
        self.write(offset, size, value)?;
        Ok(self.drain_tx(sink))
    }

    /// Re-evaluates TX after the transmit FIFO level changed.
    fn tx_event(&mut self) {
        if self.tx.len() <= self.tx_trigger() {
            self.ris |= regs::int::TX;
        } else {
            self.ris &= !regs::int::TX;
        }
    }

    /// Re-evaluates RX after the trigger level or FIFO depth changed.
    fn rx_level_event(&mut self) {
        if !self.rx.is_empty() && self.rx.len() >= self.rx_trigger() {
            self.ris |= regs::int::RX;
        } else {
            self.ris &= !regs::int::RX;
        }
    }

    fn update_irq(&mut self) {
        let level = self.ris & self.imsc != 0;
        if level != self.level {
            self.level = level;
            self.irq.set_level(level);
        }
    }

    /// Validates an access and returns the 32-bit register offset and the
    /// bit shift of the accessed bytes within it.
    fn decode(offset: u64, size: AccessSize) -> Result<(u64, u32), MmioError> {
        if offset >= regs::FRAME_SIZE {
            return Err(MmioError::OutOfFrame { offset });
        }
        if size == AccessSize::Double {
            return Err(MmioError::UnsupportedWidth { offset });
        }
        if !offset.is_multiple_of(size.bytes()) {
            return Err(MmioError::Misaligned { offset, size });
        }
        // offset & 3 < 4, so the shift is at most 24.
        Ok((offset & !3, ((offset & 3) * 8) as u32))
    }

    fn flags(&self) -> u32 {
        let mut fr = 0;
        if self.rx.is_empty() {
            fr |= regs::fr::RXFE;
        }
        if self.rx.len() >= self.fifo_depth() {
            fr |= regs::fr::RXFF;
        }
        if self.tx.is_empty() {
            fr |= regs::fr::TXFE;
        } else {
            fr |= regs::fr::BUSY;
        }
        if self.tx.len() >= self.fifo_depth() {
            fr |= regs::fr::TXFF;
        }
        fr
    }

    /// Handles a guest read of `size` bytes at `offset` in the register
    /// frame and returns the value (zero-extended). Reading UARTDR pops the
    /// receive FIFO (reads 0 when empty). Unknown and write-only offsets
    /// read as zero.
    pub fn read(&mut self, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        let (reg, shift) = Self::decode(offset, size)?;
        let value = match reg {
            regs::DR if shift == 0 => self.pop_rx(),
            // Error flags (DR 11:8, RSR 3:0) are never set.
            regs::DR | regs::RSR => 0,
            regs::FR => self.flags(),
            regs::ILPR => self.ilpr,
            regs::IBRD => self.ibrd,
            regs::FBRD => self.fbrd,
            regs::LCR_H => self.lcr_h,
            regs::CR => self.cr,
            regs::IFLS => self.ifls,
            regs::IMSC => self.imsc,
            regs::RIS => self.ris,
            regs::MIS => self.ris & self.imsc,
            regs::DMACR => self.dmacr,
            r if (regs::PERIPH_ID0..regs::PERIPH_ID0 + 16).contains(&r) => regs::PERIPH_ID
                .get(((r - regs::PERIPH_ID0) / 4) as usize)
                .copied()
                .unwrap_or(0),
            r if (regs::PCELL_ID0..regs::PCELL_ID0 + 16).contains(&r) => regs::PCELL_ID
                .get(((r - regs::PCELL_ID0) / 4) as usize)
                .copied()
                .unwrap_or(0),
            // UARTICR is write-only; everything else is reserved: RAZ.
            _ => 0,
        };
        Ok(u64::from(value >> shift) & size.mask())
    }

    fn pop_rx(&mut self) -> u32 {
        let trigger = self.rx_trigger();
        let before = self.rx.len();
        let Some(b) = self.rx.pop_front() else {
            return 0;
        };
        let after = self.rx.len();
        if after < trigger {
            self.ris &= !regs::int::RX;
            if after > 0 && before >= trigger {
                // Data left below the level: the timeout would report it.
                self.ris |= regs::int::RT;
            }
        }
        if after == 0 {
            self.ris &= !regs::int::RT;
        }
        self.update_irq();
        u32::from(b)
    }

    /// Handles a guest write of `size` bytes of `value` at `offset` in the
    /// register frame. Writing UARTDR pushes the low byte into the transmit
    /// FIFO (dropped and counted if the FIFO is full, as on hardware);
    /// UARTICR clears the interrupt bits written as 1. Read-only, unknown
    /// and ID offsets ignore writes.
    pub fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> Result<(), MmioError> {
        let (reg, shift) = Self::decode(offset, size)?;
        // At most 32 bits survive the mask, so the cast is lossless.
        let bits = (value & size.mask()) as u32;
        let lanes = (size.mask() as u32) << shift;
        let merge = |old: u32, width: u32| (old & !lanes | bits << shift) & width;
        match reg {
            regs::DR if shift == 0 => self.push_tx(bits as u8),
            // Writing UARTECR clears error flags, none of which are ever set.
            regs::RSR => {}
            regs::ILPR => self.ilpr = merge(self.ilpr, regs::mask::ILPR),
            regs::IBRD => self.ibrd = merge(self.ibrd, regs::mask::IBRD),
            regs::FBRD => self.fbrd = merge(self.fbrd, regs::mask::FBRD),
            regs::LCR_H => {
                self.lcr_h = merge(self.lcr_h, regs::mask::LCR_H);
                self.rx_level_event();
                self.tx_event();
            }
            regs::CR => self.cr = merge(self.cr, regs::mask::CR),
            regs::IFLS => {
                self.ifls = merge(self.ifls, regs::mask::IFLS);
                self.rx_level_event();
                self.tx_event();
            }
            regs::IMSC => self.imsc = merge(self.imsc, regs::int::ALL),
            regs::ICR => self.ris &= !(bits << shift),
            regs::DMACR => self.dmacr = merge(self.dmacr, regs::mask::DMACR),
            // FR, RIS, MIS and the ID registers are read-only; the rest is
            // reserved: writes ignored.
            _ => {}
        }
        self.update_irq();
        Ok(())
    }

    fn push_tx(&mut self, b: u8) {
        if self.tx.len() >= self.fifo_depth() || self.tx.push_back(b).is_err() {
            self.tx_overflows = self.tx_overflows.saturating_add(1);
        }
        self.tx_event();
    }
}

#[cfg(test)]
mod tests;
