//! Trap decoding and guest-call emulation for Tessel's EL2 exception path.
//!
//! Everything here is pure logic, tested on the host; the EL2 binary reads
//! the syndrome registers and applies the outcomes.
//!
//! * [`esr`]: `ESR_EL2` decoding into an [`esr::Exception`] (data aborts into
//!   an [`esr::MmioAccess`], trapped system-register accesses, WFI/WFE,
//!   HVC/SMC immediates).
//! * [`psci`]: PSCI 1.1 emulation over an explicit per-domain vCPU power
//!   state machine, producing a [`psci::PsciOutcome`] the caller applies.
//! * [`mmio`]: per-domain registry of emulated MMIO regions.
//! * [`domain`]: domain run state (running or stopped with a reason) and
//!   "all domains stopped" detection.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod domain;
pub mod esr;
pub mod mmio;
pub mod psci;

pub use domain::{DomainState, StopReason, all_stopped};
pub use esr::{
    DataAbort, EsrError, Exception, ExceptionClass, MmioAccess, SysRegAccess, SysRegId, WfxKind,
};
pub use mmio::{MmioRegionError, MmioRegions};
pub use psci::{PsciAction, PsciOutcome, VcpuPower, VcpuPowerError, VcpuTable};
