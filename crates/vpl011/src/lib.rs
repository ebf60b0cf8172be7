//! Emulated SBSA/PL011 UART with console multiplexing
#![no_std]
