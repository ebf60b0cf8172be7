//! PL011 register offsets and bit fields.
//!
//! References: "ARM PrimeCell UART (PL011) Technical Reference Manual",
//! ARM DDI 0183 (revision r1p5), chapter 3 "Programmers Model", and the
//! Arm Server Base System Architecture (SBSA) generic UART, which is the
//! subset DR/RSR/FR/IMSC/RIS/MIS/ICR of the same layout.

/// UARTDR, data register (DDI 0183, 3.3.1). Reads pop the receive FIFO
/// (bits 11:8 are error flags), writes push the transmit FIFO.
pub const DR: u64 = 0x000;
/// UARTRSR/UARTECR, receive status / error clear (DDI 0183, 3.3.2).
pub const RSR: u64 = 0x004;
/// UARTFR, flag register (DDI 0183, 3.3.3). Read-only.
pub const FR: u64 = 0x018;
/// UARTILPR, IrDA low-power counter (DDI 0183, 3.3.4).
pub const ILPR: u64 = 0x020;
/// UARTIBRD, integer baud-rate divisor (DDI 0183, 3.3.5).
pub const IBRD: u64 = 0x024;
/// UARTFBRD, fractional baud-rate divisor (DDI 0183, 3.3.6).
pub const FBRD: u64 = 0x028;
/// UARTLCR_H, line control (DDI 0183, 3.3.7).
pub const LCR_H: u64 = 0x02C;
/// UARTCR, control register (DDI 0183, 3.3.8).
pub const CR: u64 = 0x030;
/// UARTIFLS, interrupt FIFO level select (DDI 0183, 3.3.9).
pub const IFLS: u64 = 0x034;
/// UARTIMSC, interrupt mask set/clear (DDI 0183, 3.3.10).
pub const IMSC: u64 = 0x038;
/// UARTRIS, raw interrupt status (DDI 0183, 3.3.11). Read-only.
pub const RIS: u64 = 0x03C;
/// UARTMIS, masked interrupt status (DDI 0183, 3.3.12). Read-only.
pub const MIS: u64 = 0x040;
/// UARTICR, interrupt clear, write-1-to-clear (DDI 0183, 3.3.13). Write-only.
pub const ICR: u64 = 0x044;
/// UARTDMACR, DMA control (DDI 0183, 3.3.14).
pub const DMACR: u64 = 0x048;
/// UARTPeriphID0 (DDI 0183, 3.3.15); ID registers follow every 4 bytes.
pub const PERIPH_ID0: u64 = 0xFE0;
/// UARTPCellID0 (DDI 0183, 3.3.19); ID registers follow every 4 bytes.
pub const PCELL_ID0: u64 = 0xFF0;

/// Size of the PL011 register frame (one 4 KiB page).
pub const FRAME_SIZE: u64 = 0x1000;

/// UARTPeriphID0..3 of a PL011 r1p5: part number 0x011, designer 0x41
/// ('A', Arm), revision 3 (r1p5), configuration 0 (DDI 0183, 3.3.15-18).
pub const PERIPH_ID: [u32; 4] = [0x11, 0x10, 0x34, 0x00];
/// UARTPCellID0..3, the PrimeCell identification 0xB105F00D
/// (DDI 0183, 3.3.19-22). Linux's AMBA bus matches on these.
pub const PCELL_ID: [u32; 4] = [0x0D, 0xF0, 0x05, 0xB1];

/// UARTFR bits (DDI 0183, 3.3.3).
pub mod fr {
    /// BUSY: the UART is transmitting (transmit FIFO not empty).
    pub const BUSY: u32 = 1 << 3;
    /// RXFE: receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// TXFF: transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// RXFF: receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// TXFE: transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// UARTLCR_H bits (DDI 0183, 3.3.7).
pub mod lcr_h {
    /// FEN: FIFOs enabled; when clear, each FIFO is a 1-byte holding register.
    pub const FEN: u32 = 1 << 4;
}

/// Interrupt bits shared by UARTIMSC, UARTRIS, UARTMIS and UARTICR
/// (DDI 0183, 3.3.10-13).
pub mod int {
    /// RIMIM/RIRMIS: nUARTRI modem status (never raised: no modem lines).
    pub const RI: u32 = 1 << 0;
    /// CTSM: nUARTCTS modem status (never raised).
    pub const CTS: u32 = 1 << 1;
    /// DCDM: nUARTDCD modem status (never raised).
    pub const DCD: u32 = 1 << 2;
    /// DSRM: nUARTDSR modem status (never raised).
    pub const DSR: u32 = 1 << 3;
    /// RX: receive FIFO at or above its trigger level.
    pub const RX: u32 = 1 << 4;
    /// TX: transmit FIFO at or below its trigger level.
    pub const TX: u32 = 1 << 5;
    /// RT: receive timeout (data waiting below the trigger level).
    pub const RT: u32 = 1 << 6;
    /// FE: framing error (never raised: input is a byte stream).
    pub const FE: u32 = 1 << 7;
    /// PE: parity error (never raised).
    pub const PE: u32 = 1 << 8;
    /// BE: break error (never raised).
    pub const BE: u32 = 1 << 9;
    /// OE: overrun error (never raised: input waits in the console's
    /// buffer until the FIFO has room, so the FIFO never overruns).
    pub const OE: u32 = 1 << 10;
    /// All implemented interrupt bits (10:0).
    pub const ALL: u32 = 0x7FF;
}

/// Writable widths of the stored registers (DDI 0183, 3.3.4-3.3.14).
pub mod mask {
    /// UARTILPR: ILPDVSR, 8 bits.
    pub const ILPR: u32 = 0xFF;
    /// UARTIBRD: BAUD DIVINT, 16 bits.
    pub const IBRD: u32 = 0xFFFF;
    /// UARTFBRD: BAUD DIVFRAC, 6 bits.
    pub const FBRD: u32 = 0x3F;
    /// UARTLCR_H: 8 bits.
    pub const LCR_H: u32 = 0xFF;
    /// UARTCR: 16 bits.
    pub const CR: u32 = 0xFFFF;
    /// UARTIFLS: RXIFLSEL 5:3, TXIFLSEL 2:0.
    pub const IFLS: u32 = 0x3F;
    /// UARTDMACR: DMAONERR, TXDMAE, RXDMAE.
    pub const DMACR: u32 = 0x7;
}

/// Reset values (DDI 0183, table 3-1).
pub mod reset {
    /// UARTCR resets with TXE and RXE set.
    pub const CR: u32 = 0x0300;
    /// UARTIFLS resets to half-full triggers for both FIFOs.
    pub const IFLS: u32 = 0x12;
}
