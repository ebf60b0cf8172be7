//! Calls to the host firmware's PSCI (Arm Power State Coordination
//! Interface, DEN 0022, chapter 5), over the conduit the host DT names.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use tessel_config::PsciMethod;

/// PSCI_VERSION (DEN 0022, 5.1.1).
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_ON, SMC64 (DEN 0022, 5.1.4).
pub const CPU_ON_64: u32 = 0xC400_0003;
/// SYSTEM_OFF (DEN 0022, 5.1.9).
pub const SYSTEM_OFF: u32 = 0x8400_0008;

/// Whether the conduit is HVC rather than SMC.
static USE_HVC: AtomicBool = AtomicBool::new(false);

/// Chooses the conduit (boot CPU, from the DT).
pub fn set_conduit(c: PsciMethod) {
    USE_HVC.store(c == PsciMethod::Hvc, Ordering::Relaxed);
}

/// Issues PSCI function `fid` with up to three arguments; returns x0.
pub fn call(fid: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(fid);
    if USE_HVC.load(Ordering::Relaxed) {
        // SAFETY: a PSCI call per SMCCC; the firmware preserves x4-x17
        // and x19-x30 for SMC64/HVC64 and results come back in x0-x3.
        unsafe {
            asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                 inout("x3") a3 => _, options(nostack))
        };
    } else {
        // SAFETY: as above.
        unsafe {
            asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                 inout("x3") a3 => _, options(nostack))
        };
    }
    x0 as i64
}

/// Powers the machine off; falls back to parking this CPU if the firmware
/// returns.
pub fn system_off() -> ! {
    crate::console::flush();
    call(SYSTEM_OFF, 0, 0, 0);
    crate::halt()
}
