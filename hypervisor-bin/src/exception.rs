//! EL2 exception entry from Rust's point of view.

use crate::gic::{GIC, Gic, this_cpu};

/// The registers the vectors save on the EL2 stack (layout shared with
/// `boot.rs`; guests' general-purpose registers live here while EL2 runs).
/// SP_EL0, like the guest's other EL1/EL0 registers, stays in the
/// hardware: EL2 code never uses it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    /// x0 to x30.
    pub x: [u64; 31],
    /// ELR_EL2: where `eret` resumes.
    pub elr: u64,
    /// SPSR_EL2: the state `eret` restores.
    pub spsr: u64,
    /// Keeps the frame a multiple of 16 bytes (AAPCS64 stack alignment).
    pub pad: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));

/// Vector slots (Arm ARM DDI 0487, D1.10.2 "Exception vectors"). Slots 8
/// and 12 (lower EL sync) and 9 and 13 (lower EL IRQ) have their own entry
/// points, named in `boot.rs`.
mod kind {
    pub const CURRENT_SP0_SYNC: u64 = 0;
    pub const CURRENT_SYNC: u64 = 4;
    pub const CURRENT_IRQ: u64 = 5;
    pub const LOWER_FIQ: u64 = 10;
    pub const LOWER_SERROR: u64 = 11;
    pub const LOWER32_FIQ: u64 = 14;
    pub const LOWER32_SERROR: u64 = 15;
}

fn esr_far() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el2", "mrs {}, far_el2", out(reg) esr, out(reg) far,
                         options(nomem, nostack))
    };
    (esr, far)
}

/// The vectors' entry for a guest's synchronous exceptions (AArch64 and
/// AArch32 lower-EL slots: the same syndromes).
#[unsafe(no_mangle)]
extern "C" fn guest_sync_entry(frame: &mut TrapFrame, _kind: u64) {
    crate::vcpu::handle_guest_sync(frame);
}

/// The vectors' entry for physical interrupts that interrupted a guest.
#[unsafe(no_mangle)]
extern "C" fn guest_irq_entry(_frame: &mut TrapFrame, _kind: u64) {
    crate::vcpu::handle_guest_irq();
}

/// Called by the other vector slots with the saved frame and the slot
/// number.
#[unsafe(no_mangle)]
extern "C" fn handle_exception(frame: &mut TrapFrame, kind: u64) {
    match kind {
        kind::CURRENT_IRQ => {
            if let Some(gic) = GIC.get() {
                drain_irqs(gic, false);
            }
        }
        // FIQs are not used by the host; a guest's go the IRQ way.
        kind::LOWER_FIQ | kind::LOWER32_FIQ => crate::vcpu::handle_guest_irq(),
        kind::LOWER_SERROR | kind::LOWER32_SERROR => {
            let (esr, _) = esr_far();
            crate::vcpu::guest_serror(esr, frame.elr);
        }
        kind::CURRENT_SYNC | kind::CURRENT_SP0_SYNC => {
            let (esr, far) = esr_far();
            panic!(
                "synchronous exception at EL2 on CPU{}: ESR_EL2={esr:#x} ELR_EL2={:#x} FAR_EL2={far:#x}",
                this_cpu(),
                frame.elr
            );
        }
        other => {
            let (esr, _) = esr_far();
            panic!(
                "unexpected exception (vector {other}) on CPU{}: ESR_EL2={esr:#x} ELR_EL2={:#x}",
                this_cpu(),
                frame.elr
            );
        }
    }
}

/// Drains pending physical interrupts through [`crate::irq::dispatch`].
pub fn drain_irqs(gic: &Gic, from_guest: bool) {
    while let Some(acked) = gic.ack_and_drop() {
        let irq = acked.id;
        if !crate::irq::dispatch(gic, irq, from_guest) {
            gic.deactivate_acked(acked);
        }
        // The maintenance interrupt is a level that only folding and
        // refilling the list registers lowers, which happens after this
        // loop: acknowledging it again here would never end (seen with
        // GICv2 EOI maintenance under Linux).
        if irq == crate::gic::maintenance_irq() {
            break;
        }
    }
}
