//! Host-testable parts of the test guest: its device-tree reader.
//!
//! The guest binary (`src/main.rs`) is bare-metal; this library holds the
//! pure logic so `cargo test -p tessel-test-guest --lib` checks it on the
//! host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod fdt;
