//! vCPUs on their pinned physical CPUs: entering a guest, handling its
//! traps and stopping its domain.
//!
//! Every vCPU has a physical CPU of its own (static partitioning, like
//! Xen's null scheduler), so the guest's EL1 system registers and FP/SIMD
//! registers simply stay in the hardware: EL2 is built soft-float and never
//! touches them. The general-purpose registers live in the
//! [`TrapFrame`] on the EL2 stack while the hypervisor runs.

use crate::boot::MAX_CPUS;
use crate::domain::Domain;
use crate::domain::DomainRt;
use crate::exception::TrapFrame;
use crate::gic::lrs::HwLrs;
use crate::gic::{GIC, Gic, this_cpu};
use crate::sync::{Once, SpinGuard, SpinLock};
use crate::{console, println, s2};
use alloc::format;
use alloc::vec::Vec;
use core::arch::asm;
use core::sync::atomic::{AtomicPtr, AtomicU16, AtomicUsize, Ordering};
use tessel_trap::esr::{self, Exception, WfxKind};
use tessel_trap::{PsciAction, StopReason};
use tessel_vgic::lr::{ListRegisters, LrState};
use tessel_vgic::{Kicks, SgiRegister, VcpuId, VgicError, VirtualGic};

/// PSTATE for a vCPU's first instruction: EL1h with D, A, I and F masked
/// (Arm ARM DDI 0487, C5.2.19 "SPSR_EL2").
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// SCTLR_EL1 with only its RES1 bits (11, 20, 22, 23, 28, 29): MMU and
/// caches off, little-endian (DDI 0487, D23.2.113).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// PSCI NOT_SUPPORTED (DEN 0022, 5.2.2).
const PSCI_NOT_SUPPORTED: u64 = -1i64 as u64;

/// HCR_EL2 for guests (DDI 0487, D23.2.53): VM (0), SWIO (1), FMO (3),
/// IMO (4), AMO (5), FB (9), BSU = inner shareable (10), TWI (13),
/// TSC (19), RW = AArch64 EL1 (31).
const HCR_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (1 << 10)
    | (1 << 13)
    | (1 << 19)
    | (1 << 31);

/// HCR_EL2.APK (bit 40) and API (bit 41): let the guest use pointer
/// authentication keys and instructions without trapping (its keys stay in
/// the hardware: the pCPU runs no other vCPU).
const HCR_PAUTH: u64 = (1 << 40) | (1 << 41);

/// CPTR_EL2 with E2H == 0 (DDI 0487, D23.2.33): RES1 bits \[7:0\], 9, 13;
/// TSM (12) set, so SME traps (or RES1 without SME); TZ (8) and TFP (10)
/// clear, so the guest owns FP/SIMD and SVE (EL2 is soft-float).
const CPTR_GUEST: u64 = 0xff | (1 << 9) | (1 << 12) | (1 << 13);

/// Extra HCR_EL2 bits for the features this CPU implements.
fn hcr_features() -> u64 {
    let isar1: u64;
    let isar2: u64;
    // SAFETY: reading ID registers has no side effects.
    unsafe {
        asm!("mrs {}, id_aa64isar1_el1", "mrs {}, S3_0_C0_C6_2",
             out(reg) isar1, out(reg) isar2, options(nomem, nostack))
    };
    // APA [7:4], API [11:8], GPA [27:24], GPI [31:28] of ID_AA64ISAR1_EL1;
    // APA3 [15:12], GPA3 [11:8] of ID_AA64ISAR2_EL1.
    let pauth = isar1 & 0xff00_0ff0 != 0 || isar2 & 0xff00 != 0;
    if pauth { HCR_PAUTH } else { 0 }
}

/// Gives the guest SVE at the largest vector length, when implemented.
fn enable_sve_for_guest() {
    let pfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    // SAFETY: CPTR_EL2 only controls traps of the guest's FP/SVE use.
    unsafe { asm!("msr cptr_el2, {}", "isb", in(reg) CPTR_GUEST, options(nostack)) };
    if (pfr0 >> 32) & 0xf != 0 {
        // SAFETY: ZCR_EL2 (S3_4_C1_C2_0) exists with SVE; LEN = 0xf asks
        // for the largest implemented vector length.
        unsafe { asm!("msr S3_4_C1_C2_0, {}", "isb", in(reg) 0xfu64, options(nostack)) };
    }
}

/// CNTHCTL_EL2 (DDI 0487, D23.2.29): EL1PCTEN (bit 0) lets the guest read
/// the physical counter; EL1PCEN (bit 1) clear traps the EL1 physical
/// timer, which belongs to no guest (guests use the virtual timer).
const CNTHCTL_GUEST: u64 = 1 << 0;

/// The domains, built once on the boot CPU.
pub static DOMAINS: Once<Vec<Domain>> = Once::new();
/// Console multiplexer for guests' vPL011 output and host input.
pub static MUX: SpinLock<Option<tessel_vpl011::console::Console>> = SpinLock::new(None);

const NONE: usize = usize::MAX;

/// What a physical CPU runs.
struct Pcpu {
    /// Domain index, or `NONE`.
    domain: AtomicUsize,
    /// vCPU index within the domain.
    vcpu: AtomicUsize,
    /// The running domain, set by [`enter`] on this pCPU once its vCPU
    /// runs (null before): the trap path's one-load answer to "who trapped".
    running: AtomicPtr<Domain>,
    /// A vCPU start request (entry, x0) for the idle loop.
    start: SpinLock<Option<(u64, u64)>>,
}

static PCPUS: [Pcpu; MAX_CPUS] = [const {
    Pcpu {
        domain: AtomicUsize::new(NONE),
        vcpu: AtomicUsize::new(0),
        running: AtomicPtr::new(core::ptr::null_mut()),
        start: SpinLock::new(None),
    }
}; MAX_CPUS];

/// Owner of each physical SPI passed through: domain index + 1, 0 for none
/// (filled once by [`route_device_irqs`], read on every forwarded SPI).
static SPI_OWNER: [AtomicU16; 1020] = [const { AtomicU16::new(0) }; 1020];

/// Assigns the pCPUs to the vCPUs of `domains` (boot CPU, before start).
pub fn assign(domains: &[Domain]) {
    for (d, dom) in domains.iter().enumerate() {
        for (v, &p) in dom.vcpu_pcpu.iter().enumerate() {
            if let Some(slot) = PCPUS.get(p) {
                slot.domain.store(d, Ordering::Relaxed);
                slot.vcpu.store(v, Ordering::Relaxed);
            }
        }
    }
}

/// Queues a start of the vCPU on pCPU `p` and wakes it.
pub fn request_start(p: usize, entry: u64, x0: u64) {
    if let Some(slot) = PCPUS.get(p) {
        *slot.start.lock() = Some((entry, x0));
        if p == this_cpu() {
            return;
        }
        if let Some(gic) = GIC.get() {
            gic.send_sgi(p, crate::irq::SGI_KICK);
        }
    }
}

/// The vCPU a trap came from.
#[derive(Clone, Copy)]
struct Current {
    /// Its domain.
    dom: &'static Domain,
    /// The domain's index in [`DOMAINS`].
    d: usize,
    /// The vCPU's index in its domain.
    vcpu: usize,
}

/// The vCPU assigned to this pCPU (by index, through [`DOMAINS`]).
fn assigned() -> Option<(&'static Domain, usize, usize)> {
    let slot = PCPUS.get(this_cpu())?;
    let d = slot.domain.load(Ordering::Relaxed);
    let dom = DOMAINS.get()?.get(d)?;
    Some((dom, d, slot.vcpu.load(Ordering::Relaxed)))
}

/// The vCPU running on this pCPU, once [`enter`] has run it.
#[inline]
fn current() -> Option<Current> {
    let slot = PCPUS.get(this_cpu())?;
    let dom = slot.running.load(Ordering::Relaxed);
    if dom.is_null() {
        return None;
    }
    // SAFETY: `enter` stores a pointer to an element of `DOMAINS`, which is
    // set once at boot and never mutated or dropped afterwards.
    let dom = unsafe { &*dom };
    Some(Current {
        dom,
        d: slot.domain.load(Ordering::Relaxed),
        vcpu: slot.vcpu.load(Ordering::Relaxed),
    })
}

/// The idle loop of a pCPU: waits for interrupts and starts its vCPU when
/// asked to. Never returns.
pub fn idle_loop() -> ! {
    loop {
        // IRQs stay masked from the mailbox check to the WFI, so a kick
        // that arrives in between leaves its SGI pending and WFI returns at
        // once (WFI wakes on a pending interrupt even when it is masked).
        // SAFETY: masks IRQs on this CPU only.
        unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
        let cpu = this_cpu();
        let req = PCPUS.get(cpu).and_then(|s| s.start.lock().take());
        if let Some((entry, x0)) = req
            && let Some((dom, _, vcpu)) = assigned()
            && !dom.rt.lock().state.is_stopped()
        {
            enter(dom, vcpu, entry, x0);
        }
        // SAFETY: wait, then open an IRQ window to take what woke us; the
        // vectors are installed.
        unsafe {
            asm!(
                "dsb sy",
                "wfi",
                "msr daifclr, #2",
                "isb",
                options(nomem, nostack)
            )
        };
    }
}

/// Enters vCPU `vcpu` of `dom` at EL1h with the MMU off, PC = `entry`,
/// x0 = `x0`. Never returns; the guest's traps come back through the
/// exception vectors.
fn enter(dom: &'static Domain, vcpu: usize, entry: u64, x0: u64) -> ! {
    if let Some(slot) = PCPUS.get(this_cpu()) {
        slot.running
            .store(core::ptr::from_ref(dom).cast_mut(), Ordering::Relaxed);
    }
    let midr: u64;
    // SAFETY: reading MIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, midr_el1", out(reg) midr, options(nomem, nostack)) };
    let vmpidr = tessel_trap::psci::vcpu_mpidr(vcpu) | (1 << 31);
    // SAFETY: programs the EL1 and virtualization registers for the guest
    // about to run on this pCPU; the stage-2 tables are complete and map
    // only the domain's memory and devices.
    unsafe {
        asm!("msr daifset, #2", options(nomem, nostack));
        s2::activate(dom.vtcr, dom.vttbr);
        asm!(
            "msr vpidr_el2, {midr}",
            "msr vmpidr_el2, {vmpidr}",
            "msr sctlr_el1, {sctlr}",
            "msr cnthctl_el2, {cnthctl}",
            "msr cntvoff_el2, xzr",
            "msr sp_el0, xzr",
            "msr hcr_el2, {hcr}",
            "isb",
            "ic iallu",
            "dsb nsh",
            "isb",
            midr = in(reg) midr,
            vmpidr = in(reg) vmpidr,
            sctlr = in(reg) SCTLR_EL1_RESET,
            cnthctl = in(reg) CNTHCTL_GUEST,
            hcr = in(reg) HCR_GUEST | hcr_features(),
            options(nostack)
        );
    }
    enable_sve_for_guest();
    crate::gic::enter_guest_cpu_interface();
    if let Some(gic) = GIC.get() {
        let me = this_cpu();
        gic.enable(crate::gic::VTIMER_PPI, me, Some(true));
        gic.enable(crate::gic::maintenance_irq(), me, Some(true));
    }
    if let Some(mut lrs) = HwLrs::this_cpu() {
        for i in 0..lrs.count() {
            lrs.write(i, LrState::INVALID);
        }
        let _ = dom.rt.lock().vgic.flush(VcpuId(vcpu), &mut lrs);
    }
    let mut frame = TrapFrame::default();
    frame.x[0] = x0;
    frame.elr = entry;
    frame.spsr = SPSR_EL1H_MASKED;
    unsafe extern "C" {
        fn enter_guest(frame: *const TrapFrame) -> !;
    }
    // SAFETY: the frame is a complete EL1h context; `enter_guest` copies it
    // onto this CPU's stack and returns to it with `eret`.
    unsafe { enter_guest(&frame) }
}

/// Starts the boot vCPU of every domain (called on the boot CPU after
/// [`assign`]).
pub fn start_domains() {
    let Some(domains) = DOMAINS.get() else { return };
    for dom in domains {
        // The vCPU table starts with vCPU 0 on (Xen boots the domain's
        // first vCPU itself); the others wait for PSCI CPU_ON.
        let Some(&p) = dom.vcpu_pcpu.first() else {
            continue;
        };
        request_start(p, dom.entry, dom.dtb);
    }
}

fn read_sysreg_syndrome() -> (u64, u64, u64) {
    let (esr, far, hpfar): (u64, u64, u64);
    // SAFETY: reading syndrome registers has no side effects.
    unsafe {
        asm!("mrs {}, esr_el2", "mrs {}, far_el2", "mrs {}, hpfar_el2",
             out(reg) esr, out(reg) far, out(reg) hpfar, options(nomem, nostack))
    };
    (esr, far, hpfar)
}

fn reg(frame: &TrapFrame, r: u8) -> u64 {
    frame.x.get(usize::from(r)).copied().unwrap_or(0)
}

fn set_reg(frame: &mut TrapFrame, r: u8, v: u64) {
    if let Some(x) = frame.x.get_mut(usize::from(r)) {
        *x = v;
    }
}

/// Work an exit leaves for after the domain lock is released: anything
/// that takes another pCPU's mailbox, signals other pCPUs, prints, or does
/// not return. Kept small: every exit builds and checks one.
#[derive(Default)]
struct After {
    /// vCPUs of this domain to kick (bit `i` = vCPU `i`).
    kicks: u128,
    /// The guest waits for an interrupt (WFI, CPU_SUSPEND); cleared when
    /// one is deliverable already.
    wait: bool,
    /// An interrupt was injected into this vCPU (or the vGIC named it to
    /// be kicked), so the vGIC cannot be quiet: the return path skips that
    /// test.
    injected: bool,
    /// The rare rest.
    deferred: Deferred,
}

/// The rare part of [`After`].
#[derive(Default)]
enum Deferred {
    /// Nothing.
    #[default]
    None,
    /// An access answered with an abort, to report.
    Fault(MmioFault),
    /// PSCI CPU_ON: start a vCPU on a pCPU (pCPU, entry, context ID).
    Start(usize, u64, u64),
    /// Stop the domain for this reason, then park.
    Stop(StopReason),
    /// Leave this vCPU for good (PSCI CPU_OFF).
    Park,
}

impl After {
    /// Adds `k` to the vCPUs to kick, leaving out `own`: the vCPU that
    /// exited refreshes its list registers before it resumes anyway (and,
    /// named in `k`, cannot be quiet).
    fn kick(&mut self, k: Kicks, own: usize) {
        let mut bits = k.bits();
        if own < 128 {
            let me = 1u128 << own;
            self.injected |= bits & me != 0;
            bits &= !me;
        }
        self.kicks |= bits;
    }
}

/// Handles a synchronous exception from a guest. The domain lock is taken
/// once, for the emulation and the list-register refresh together.
pub fn handle_guest_sync(frame: &mut TrapFrame) {
    let (esr_val, far, hpfar) = read_sysreg_syndrome();
    let Some(cur) = current() else {
        panic!(
            "trap from a lower EL at {:#x}, but no guest runs here",
            frame.elr
        );
    };
    let mut after = After::default();
    let mut rt = cur.dom.rt.lock();
    match esr::decode(esr_val) {
        Exception::Hvc64 { imm: 0 } => psci(cur, &mut rt, frame, &mut after),
        Exception::Smc64 { .. } => {
            frame.elr += 4;
            psci(cur, &mut rt, frame, &mut after);
        }
        Exception::Hvc64 { .. } => frame.x[0] = PSCI_NOT_SUPPORTED,
        Exception::Wfx(kind) => {
            frame.elr += 4;
            after.wait = kind == WfxKind::Wfi;
        }
        Exception::DataAbortLower(da) => match da.mmio_access(hpfar, far) {
            Ok(access) => match mmio(cur, &mut rt, frame, &access, &mut after) {
                Ok(()) => frame.elr += 4,
                Err(f) => {
                    after.deferred = Deferred::Fault(f);
                    inject_abort(frame, far, true);
                }
            },
            Err(e) => {
                after.deferred = Deferred::Fault(MmioFault::NotEmulated { far, why: e });
                inject_abort(frame, far, true);
            }
        },
        Exception::InstrAbortLower { .. } => inject_abort(frame, far, false),
        Exception::SysReg(acc) => match sgi_register(&acc) {
            Some(which) if !acc.read => {
                let value = reg(frame, acc.rt);
                match rt.vgic.sysreg_sgi(VcpuId(cur.vcpu), which, value) {
                    Ok(kicks) => {
                        frame.elr += 4;
                        after.kick(kicks, cur.vcpu);
                    }
                    Err(_) => inject_undef(frame),
                }
            }
            _ => inject_undef(frame),
        },
        _ => {
            after.deferred = Deferred::Stop(StopReason::Faulted(format!(
                "vCPU{}: unexpected exception (ESR_EL2 {esr_val:#x}, class {:#x}) at {:#x}",
                cur.vcpu,
                esr_val >> 26,
                frame.elr
            )));
        }
    }
    finish_exit(cur, rt, &mut after);
}

/// GICv3 SGI-generation registers (IHI 0069, 12.2.19-21): ICC_SGI1R_EL1
/// (op0 3, op1 0, CRn 12, CRm 11, op2 5), ICC_ASGI1R_EL1 (op2 6) and
/// ICC_SGI0R_EL1 (op2 7). HCR_EL2.IMO/FMO make EL1 writes to them trap.
fn sgi_register(acc: &tessel_trap::SysRegAccess) -> Option<SgiRegister> {
    let id = acc.id;
    if id.op0 != 3 || id.op1 != 0 || id.crn != 12 || id.crm != 11 {
        return None;
    }
    match id.op2 {
        5 => Some(SgiRegister::Sgi1r),
        6 => Some(SgiRegister::Asgi1r),
        7 => Some(SgiRegister::Sgi0r),
        _ => None,
    }
}

/// Folds this vCPU's list registers back into its vGIC and refills them
/// (before every return to the guest). The vGIC leaves them alone when
/// neither they nor the interrupt state changed since the last refill; a
/// fold that hands an SPI to another vCPU adds that vCPU to `after`.
#[inline(always)]
fn refresh(rt: &mut DomainRt, vcpu: usize, after: &mut After) {
    // Inlined: on most exits this is one test (the vGIC's quiet check on
    // the cached list-register count), and the rest is out of line.
    if !after.injected
        && let Some(n) = HwLrs::count_this_cpu()
        && rt.vgic.quiet(VcpuId(vcpu), n)
    {
        return;
    }
    refresh_lrs(rt, vcpu, after);
}

/// [`refresh`] past its quiet test (inlined too: the vGIC's own slow path
/// is out of line, and a second call level only added a prologue to every
/// interrupt delivery).
#[inline(always)]
fn refresh_lrs(rt: &mut DomainRt, vcpu: usize, after: &mut After) {
    if let Some(mut lrs) = HwLrs::this_cpu()
        && let Ok(k) = rt.vgic.refresh_and_take_kicks(VcpuId(vcpu), &mut lrs)
    {
        // Folds only ever hand interrupts to other vCPUs.
        after.kicks |= k.bits();
    }
}

/// The end of every exit: under the lock taken for it, leaves the vCPU if
/// its domain stopped, otherwise refreshes its list registers; then, with
/// the lock released, does what the exit left in `after`.
///
/// `after` is borrowed, not moved: moving it made the compiler copy it
/// with `memcpy` on every exit.
#[inline(always)]
fn finish_exit(cur: Current, mut rt: SpinGuard<'_, DomainRt>, after: &mut After) {
    let stopped = rt.state.is_stopped();
    if !stopped {
        refresh(&mut rt, cur.vcpu, after);
        if after.wait && rt.vgic.has_deliverable(VcpuId(cur.vcpu)) {
            after.wait = false;
        }
    }
    drop(rt);
    if stopped || after.kicks != 0 || after.wait || !matches!(after.deferred, Deferred::None) {
        finish_slow(cur, after, stopped);
    }
}

/// The uncommon tail of [`finish_exit`].
#[inline(never)]
fn finish_slow(cur: Current, after: &mut After, stopped: bool) {
    kick_bits(cur.dom, after.kicks);
    match core::mem::take(&mut after.deferred) {
        Deferred::None => {}
        Deferred::Fault(f) => report_fault(cur.dom, &f),
        Deferred::Start(p, entry, context_id) => request_start(p, entry, context_id),
        Deferred::Stop(reason) => {
            stop_domain(cur.d, reason);
            park_vcpu();
        }
        Deferred::Park => park_vcpu(),
    }
    if stopped {
        park_vcpu();
    }
    if after.wait {
        wait_for_interrupt();
    }
}

/// Makes the pCPUs of the vCPUs in `kicks` exit their guest (they refill
/// their list registers on the way back in).
fn kick(dom: &Domain, kicks: Kicks) {
    kick_bits(dom, kicks.bits());
}

/// [`kick`] on a raw bitmap (bit `i` = vCPU `i`). Walks the set bits only:
/// `Kicks::iter` over all 128 positions costs far more.
fn kick_bits(dom: &Domain, mut bits: u128) {
    if bits == 0 {
        return;
    }
    let me = this_cpu();
    let Some(gic) = GIC.get() else { return };
    while bits != 0 {
        let v = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        if let Some(&p) = dom.vcpu_pcpu.get(v)
            && p != me
        {
            gic.send_sgi(p, crate::irq::SGI_KICK);
        }
    }
}

/// Passes a change of the vPL011's interrupt output to the vGIC (`own`:
/// the vCPU that exited, if any, which needs no kick).
#[inline]
fn update_uart_line(rt: &mut DomainRt, after: &mut After, own: usize) {
    if rt
        .uart
        .as_ref()
        .is_some_and(|u| u.dev.irq_level() != rt.uart_line)
    {
        uart_line_changed(rt, after, own);
    }
}

/// The rare part of [`update_uart_line`]: the line changed.
#[inline(never)]
fn uart_line_changed(rt: &mut DomainRt, after: &mut After, own: usize) {
    let Some(u) = rt.uart.as_ref() else { return };
    let level = u.dev.irq_level();
    let spi = u.config.spi;
    rt.uart_line = level;
    if let Ok(Some(v)) = rt.vgic.set_line(VcpuId(0), spi, level) {
        let mut k = Kicks::NONE;
        k.add(v);
        after.kick(k, own);
    }
}

/// Reports an access the hypervisor answers with an abort: the first
/// [`FAULT_REPORTS`] per domain, so a misbehaving guest cannot flood the
/// console.
fn report_fault(dom: &Domain, what: &MmioFault) {
    let n = dom.fault_reports.fetch_add(1, Ordering::Relaxed);
    if n < FAULT_REPORTS {
        println!("{}: {what}; abort injected", dom.name);
    } else if n == FAULT_REPORTS {
        println!("{}: further injected aborts are not reported", dom.name);
    }
}

/// How many injected aborts are reported per domain.
const FAULT_REPORTS: usize = 16;

/// An SError (asynchronous abort) taken from a guest: the domain's state
/// cannot be trusted any more, so it is stopped.
pub fn guest_serror(esr: u64, elr: u64) {
    let Some(Current { d, vcpu, .. }) = current() else {
        panic!("SError from a lower EL (ESR_EL2 {esr:#x}) with no guest on this CPU");
    };
    stop_domain(
        d,
        StopReason::Faulted(format!("vCPU{vcpu}: SError, ESR_EL2 {esr:#x}, at {elr:#x}")),
    );
    park_vcpu();
}

/// Idles the pCPU until an interrupt is pending (the guest executed WFI).
fn wait_for_interrupt() {
    if let Some(gic) = GIC.get() {
        gic.resample();
    }
    // SAFETY: WFI with IRQs masked wakes on any pending interrupt, which is
    // then taken as soon as the guest resumes.
    unsafe { asm!("dsb sy", "wfi", options(nomem, nostack)) };
}

fn psci(cur: Current, rt: &mut DomainRt, frame: &mut TrapFrame, after: &mut After) {
    let args = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
    let outcome = match rt.power.call(cur.vcpu, args) {
        Ok(o) => o,
        Err(e) => {
            after.deferred = Deferred::Stop(StopReason::Faulted(format!("PSCI state error: {e}")));
            return;
        }
    };
    frame.x[0] = outcome.ret;
    match outcome.action {
        PsciAction::None => {}
        // CPU_SUSPEND: a power-down state is allowed to return like WFI.
        PsciAction::Wfi => after.wait = true,
        PsciAction::StartVcpu {
            vcpu: target,
            entry,
            context_id,
        } => {
            let _ = rt.power.started(target);
            if let Some(&p) = cur.dom.vcpu_pcpu.get(target) {
                after.deferred = Deferred::Start(p, entry, context_id);
            }
        }
        PsciAction::StopVcpu { last: true } | PsciAction::SystemOff => {
            after.deferred = Deferred::Stop(StopReason::PoweredOff);
        }
        PsciAction::StopVcpu { last: false } => after.deferred = Deferred::Park,
        PsciAction::SystemReset => after.deferred = Deferred::Stop(StopReason::Reset),
    }
}

/// Why a trapped access could not be emulated (the guest gets an abort).
#[derive(Debug)]
enum MmioFault {
    /// No emulated device at this address.
    NoDevice(tessel_addr::GuestPhysAddr),
    /// The vPL011 refused the access.
    Uart(tessel_vpl011::MmioError),
    /// The vGIC refused the access.
    Vgic(tessel_vgic::VgicError),
    /// The abort's syndrome does not describe an emulatable access.
    NotEmulated {
        /// FAR_EL2.
        far: u64,
        /// What the syndrome lacks.
        why: tessel_trap::EsrError,
    },
}

impl core::fmt::Display for MmioFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoDevice(ipa) => write!(f, "no device at {ipa}"),
            Self::Uart(e) => write!(f, "{e}"),
            Self::Vgic(e) => write!(f, "vGIC: {e}"),
            Self::NotEmulated { far, why } => {
                write!(f, "data abort at {far:#x} not emulated: {why}")
            }
        }
    }
}

/// Emulates a trapped MMIO access: the vPL011, then the vGIC's
/// distributor and redistributors.
fn mmio(
    cur: Current,
    rt: &mut DomainRt,
    frame: &mut TrapFrame,
    a: &esr::MmioAccess,
    after: &mut After,
) -> Result<(), MmioFault> {
    if let Some(u) = rt.uart.as_mut()
        && let Some(off) = u.config.offset_of(a.ipa)
    {
        let id = u.console;
        if a.write {
            let v = a.store_value(reg(frame, a.reg));
            // The transmit FIFO drains at once: at most a FIFO's worth comes
            // out, so no heap allocation is needed.
            let mut out = heapless::Vec::<u8, { tessel_vpl011::FIFO_DEPTH }>::new();
            u.dev
                .write_through(off, a.size, v, |b| {
                    let _ = out.push(b);
                })
                .map_err(MmioFault::Uart)?;
            // Lock order: the domain's state, then the mux.
            guest_output(id, &out);
        } else {
            let raw = u.dev.read(off, a.size).map_err(MmioFault::Uart)?;
            if let Some(v) = a.load_value(raw) {
                set_reg(frame, a.reg, v);
            }
            // A read of UARTDR made room in the receive FIFO.
            if let Some(mux) = MUX.lock().as_mut() {
                let _ = mux.feed(id, &mut u.dev);
            }
        }
        update_uart_line(rt, after, cur.vcpu);
        return Ok(());
    }
    // The vGIC finds the frame itself; an address in none of its frames
    // is no device at all.
    let vcpu = VcpuId(cur.vcpu);
    if a.write {
        let v = a.store_value(reg(frame, a.reg));
        let kicks = rt
            .vgic
            .mmio_write(vcpu, a.ipa, a.size, v)
            .map_err(vgic_fault)?;
        after.kick(kicks, cur.vcpu);
    } else {
        let raw = rt.vgic.mmio_read(vcpu, a.ipa, a.size).map_err(vgic_fault)?;
        if let Some(v) = a.load_value(raw) {
            set_reg(frame, a.reg, v);
        }
    }
    Ok(())
}

/// A vGIC access error as a fault: [`MmioFault::NoDevice`] outside every
/// vGIC frame, the vGIC's own reason inside one.
fn vgic_fault(e: VgicError) -> MmioFault {
    match e {
        VgicError::Unmapped { gpa } => MmioFault::NoDevice(gpa),
        e => MmioFault::Vgic(e),
    }
}

/// The physical console as the mux's output.
pub struct HostOut;

impl tessel_vpl011::console::HostConsole for HostOut {
    fn write_bytes(&mut self, bytes: &[u8]) {
        console::write_bytes(bytes);
    }
}

fn guest_output(id: tessel_vpl011::console::ConsoleId, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Some(mux) = MUX.lock().as_mut() {
        let _ = mux.guest_output(id, bytes, &mut HostOut);
    }
}

/// Reads SPSR mode bits and picks the vector offset for an exception taken
/// to EL1 (DDI 0487, D1.10.2): current EL with SP_EL0 0x000, current EL
/// with SP_ELx 0x200, lower EL in AArch64 0x400, lower EL in AArch32 0x600
/// (SPSR.M\[4\] set).
fn vector_offset(spsr: u64) -> u64 {
    if spsr & 0x10 != 0 {
        return 0x600;
    }
    match spsr & 0xf {
        0b0100 => 0x000,
        0b0101 => 0x200,
        _ => 0x400,
    }
}

/// Delivers a synchronous exception with syndrome `esr_el1` to the guest's
/// EL1 vectors.
fn inject_sync(frame: &mut TrapFrame, esr_el1: u64, far: Option<u64>) {
    let vbar: u64;
    // SAFETY: the guest's EL1 registers are live in hardware on this pCPU;
    // writing them is how an exception is delivered to it.
    unsafe {
        asm!("mrs {}, vbar_el1", out(reg) vbar, options(nomem, nostack));
        asm!("msr esr_el1, {}", "msr elr_el1, {}", "msr spsr_el1, {}",
             in(reg) esr_el1, in(reg) frame.elr, in(reg) frame.spsr, options(nostack));
        if let Some(far) = far {
            asm!("msr far_el1, {}", in(reg) far, options(nostack));
        }
    }
    frame.elr = vbar + vector_offset(frame.spsr);
    frame.spsr = SPSR_EL1H_MASKED;
}

/// Injects a synchronous external abort (data or instruction) at `far`.
fn inject_abort(frame: &mut TrapFrame, far: u64, data: bool) {
    let from_el1 = frame.spsr & 0b1100 == 0b0100;
    // EC: 0x24/0x25 data abort from lower/same EL, 0x20/0x21 instruction
    // abort; IL (bit 25) set; FSC 0x10 = synchronous external abort
    // (DDI 0487, D24.2.40).
    let ec: u64 = match (data, from_el1) {
        (true, true) => 0x25,
        (true, false) => 0x24,
        (false, true) => 0x21,
        (false, false) => 0x20,
    };
    inject_sync(frame, (ec << 26) | (1 << 25) | 0x10, Some(far));
}

/// Injects an Unknown-reason exception (an UNDEFINED instruction).
fn inject_undef(frame: &mut TrapFrame) {
    inject_sync(frame, 1 << 25, None);
}

/// Stops domain `d`, reports why and parks its other vCPUs; powers off the
/// machine once no domain runs.
pub fn stop_domain(d: usize, reason: StopReason) {
    let Some(domains) = DOMAINS.get() else { return };
    let Some(dom) = domains.get(d) else { return };
    let console_id = {
        let mut rt = dom.rt.lock();
        if !rt.state.stop(reason.clone()) {
            return;
        }
        rt.uart.as_ref().map(|u| u.console)
    };
    if let (Some(id), Some(mux)) = (console_id, MUX.lock().as_mut()) {
        let _ = mux.flush_output(id, &mut HostOut);
    }
    println!("domain {} stopped: {reason}", dom.name);
    let me = this_cpu();
    for &p in &dom.vcpu_pcpu {
        if p != me
            && let Some(gic) = GIC.get()
        {
            gic.send_sgi(p, crate::irq::SGI_KICK);
        }
    }
    // Two domains may stop at once on different CPUs and both see every
    // domain stopped; only the first reports and powers off.
    static POWERING_OFF: core::sync::atomic::AtomicBool =
        core::sync::atomic::AtomicBool::new(false);
    if domains.iter().all(|d| d.rt.lock().state.is_stopped())
        && !POWERING_OFF.swap(true, core::sync::atomic::Ordering::AcqRel)
    {
        println!("all domains have stopped; powering off");
        crate::psci::system_off();
    }
}

/// Leaves the current vCPU for good (its domain stopped or it called
/// CPU_OFF) and idles this pCPU.
fn park_vcpu() -> ! {
    // SAFETY: the guest will not be resumed on this path; turning stage 2
    // off keeps stray accesses from being translated for it, and disabling
    // its virtual timer (CNTV_CTL_EL0 = 0) keeps that timer's hardware-mapped
    // PPI from firing for a vCPU that no longer exists.
    unsafe {
        asm!("msr cntv_ctl_el0, xzr",
             "msr hcr_el2, {}", "isb", in(reg) (1u64 << 3) | (1 << 4) | (1 << 5) | (1 << 31),
             options(nostack))
    };
    crate::gic::leave_guest_cpu_interface();
    idle_loop()
}

/// Handles the physical interrupt that interrupted a guest, then returns
/// to it. The virtual timer and this domain's passthrough SPIs are
/// injected under the acquisition of the domain lock that the
/// list-register refresh reuses; everything else goes through
/// [`crate::irq::dispatch`] with the lock released.
///
/// One interrupt per exit: another one pending takes the guest straight
/// back here once it resumes, and the common exit (one interrupt) does
/// not pay for a second, spurious acknowledge.
pub fn handle_guest_irq() {
    let Some(gic) = GIC.get() else { return };
    let Some(cur) = current() else {
        crate::exception::drain_irqs(gic, true);
        return;
    };
    let mut after = After::default();
    let rt = match gic.ack_and_drop() {
        Some(acked) => {
            let irq = acked.id;
            let here = irq == crate::gic::VTIMER_PPI || spi_owner(irq) == Some(cur.d);
            let (rt, forwarded) = if here {
                let mut rt = cur.dom.rt.lock();
                let forwarded = inject_here(gic, cur, &mut rt, irq, &mut after);
                (Some(rt), forwarded)
            } else {
                // Dispatch may take any domain's lock, this one's included.
                (None, crate::irq::dispatch(gic, irq, true))
            };
            if !forwarded {
                gic.deactivate_acked(acked);
            }
            rt
        }
        None => None,
    };
    let rt = match rt {
        Some(rt) => rt,
        None => cur.dom.rt.lock(),
    };
    finish_exit(cur, rt, &mut after);
}

/// Injects `irq` (the virtual timer or one of this domain's SPIs, both
/// hardware-mapped) into the running domain, whose lock is held. Returns
/// whether the guest now owns its deactivation.
fn inject_here(gic: &Gic, cur: Current, rt: &mut DomainRt, irq: u32, after: &mut After) -> bool {
    if rt.state.is_stopped() {
        if irq == crate::gic::VTIMER_PPI {
            // The stopped vCPU's timer condition still holds: deactivated
            // but left enabled, it would fire again at once, on every
            // return to the guest, and this CPU would never get to
            // `park_vcpu` (which turns the timer off too).
            // SAFETY: CNTV_CTL_EL0 = 0 disables the virtual timer of the
            // vCPU that ran here, which will not run again.
            unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nostack)) };
        } else {
            gic.disable(irq);
        }
        return false;
    }
    let vcpu = if irq == crate::gic::VTIMER_PPI {
        cur.vcpu
    } else {
        0
    };
    match rt.vgic.inject(VcpuId(vcpu), irq) {
        Ok(target) => {
            after.injected = true;
            // The running vCPU refreshes on its way back in anyway.
            if let Some(t) = target.filter(|t| t.0 != cur.vcpu) {
                let mut k = Kicks::NONE;
                k.add(t);
                after.kicks |= k.bits();
            }
            true
        }
        Err(_) => false,
    }
}

/// The domain a passthrough SPI belongs to.
fn spi_owner(irq: u32) -> Option<usize> {
    let o = SPI_OWNER.get(irq as usize)?.load(Ordering::Relaxed);
    (o != 0).then(|| usize::from(o) - 1)
}

/// Host console input: to the vPL011 of the domain that has the focus.
pub fn console_input() {
    let mut bytes = heapless::Vec::<u8, 32>::new();
    if let Some(uart) = console::CONSOLE.lock().as_ref() {
        while let Some(b) = uart.getc() {
            if bytes.push(b).is_err() {
                break;
            }
        }
        uart.ack_rx();
    }
    let Some(domains) = DOMAINS.get() else { return };
    // Lock order everywhere: a domain's runtime state, then the mux.
    for b in bytes {
        let target = MUX
            .lock()
            .as_mut()
            .and_then(|m| m.host_input(b, &mut HostOut));
        let Some(id) = target else { continue };
        for dom in domains {
            let mut after = After::default();
            let mut rt = dom.rt.lock();
            if let Some(u) = rt.uart.as_mut().filter(|u| u.console == id)
                && let Some(mux) = MUX.lock().as_mut()
            {
                let _ = mux.feed(id, &mut u.dev);
                update_uart_line(&mut rt, &mut after, usize::MAX);
            }
            drop(rt);
            kick_bits(dom, after.kicks);
        }
    }
}

/// Routes every passthrough SPI to the pCPU of its domain's vCPU0 and
/// enables it (trigger as the firmware left it).
pub fn route_device_irqs() {
    let (Some(domains), Some(gic)) = (DOMAINS.get(), GIC.get()) else {
        return;
    };
    for (d, dom) in domains.iter().enumerate() {
        let Some(&p) = dom.vcpu_pcpu.first() else {
            continue;
        };
        for &irq in &dom.devices.irqs {
            if let (Some(slot), Ok(owner)) = (SPI_OWNER.get(irq as usize), u16::try_from(d + 1)) {
                slot.store(owner, Ordering::Relaxed);
            }
            gic.enable(irq, p, None);
        }
    }
}

/// Forwards `irq` to the guest that owns it, if any, when it did not
/// interrupt that guest (it arrived while this pCPU idled or ran another
/// domain): the virtual timer PPI to the vCPU assigned here, a passthrough
/// SPI to its domain's vGIC. Both are hardware-mapped: the guest's
/// deactivation completes them, so the caller must not deactivate them
/// (returns `true`).
pub fn forward_irq(irq: u32) -> bool {
    if irq == crate::gic::VTIMER_PPI {
        let Some(cur) = current() else {
            return false;
        };
        return cur.dom.rt.lock().vgic.inject(VcpuId(cur.vcpu), irq).is_ok();
    }
    let Some(d) = spi_owner(irq) else {
        return false;
    };
    let Some(dom) = DOMAINS.get().and_then(|ds| ds.get(d)) else {
        return false;
    };
    let mut rt = dom.rt.lock();
    if rt.state.is_stopped() {
        drop(rt);
        if let Some(gic) = GIC.get() {
            gic.disable(irq);
        }
        return false;
    }
    match rt.vgic.inject(VcpuId(0), irq) {
        Ok(target) => {
            drop(rt);
            let mut k = Kicks::NONE;
            k.add_opt(target);
            kick(dom, k);
            true
        }
        Err(_) => false,
    }
}
