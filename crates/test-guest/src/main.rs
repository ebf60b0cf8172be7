//! Tessel's bare-metal test guest.
//!
//! One position-independent image, loaded as a dom0less domU kernel. It
//! reads its device tree (x0), finds the UART, GIC, memory, CPUs and PSCI
//! conduit, and runs the checks selected on the command line:
//!
//! ```text
//! tessel-test=MODE[,MODE...]  basic | smp | direct-map | forbidden | hostile | soak | bench
//! tessel-name=NAME            prefix of every output line ("NAME: PASS sgi")
//! tessel-bank=0xADDR          direct-map: expected start of the memory node
//! tessel-forbid=0xA,0xB       forbidden: addresses whose access must fault
//! ```
//!
//! Each check prints `NAME: PASS <check>` or `NAME: FAIL <check>: <why>`,
//! then the guest prints `NAME: DONE` and calls PSCI SYSTEM_OFF. Checks:
//! `console`, `dtb`, `gic`, `sgi` (self-SGI), `timer` (virtual timer PPI
//! 27), and by mode `cpu-on`, `ram-1to1`, `forbidden@0xADDR`, `hostile`,
//! `soak` (SGI + timer rounds for 4 s, e.g. beside a hostile domain).
//! `bench` prints trap and interrupt costs (`BENCH` lines, see `bench.rs`;
//! `tessel-bench-gpio=0xADDR,INTID` names a PL061 for the SPI figure).
//!
//! Build with `cargo xtask build` (it adds `-C relocation-model=pie` and
//! `+strict-align`: the MMU stays off, so all data accesses are Device
//! accesses and must be aligned).
// On a host target (e.g. `cargo build --workspace`) the guest compiles to
// a stub that says how to build it; the real guest is bare-metal only.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the test guest runs bare-metal: build it with `cargo xtask build`");
}

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod guest;
#[cfg(target_os = "none")]
mod hw;
