//! The guest proper: checks, interrupt and exception handlers.

use core::fmt::Write;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::arch::{self, Frame, read_sysreg, write_sysreg};
use crate::hw::{self, Gic, Uart};
use tessel_test_guest::fdt;

/// PSCI function IDs (DEN0022 table 6).
const PSCI_VERSION: u64 = 0x8400_0000;
const PSCI_CPU_OFF: u64 = 0x8400_0002;
const PSCI_CPU_ON64: u64 = 0xc400_0003;
const PSCI_AFFINITY_INFO64: u64 = 0xc400_0004;
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// PSCI ALREADY_ON return code.
const PSCI_ALREADY_ON: u64 = -4i64 as u64;

/// Line prefix (the domain name from `tessel-name=`).
static NAME: [AtomicU8; 32] = [const { AtomicU8::new(0) }; 32];
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);

/// GIC state for the IRQ handler.
static GIC_VERSION: AtomicU64 = AtomicU64::new(0);
static GIC_D: AtomicU64 = AtomicU64::new(0);
static GIC_SECOND: AtomicU64 = AtomicU64::new(0);
static SGI_HITS: AtomicU32 = AtomicU32::new(0);
static TIMER_HITS: AtomicU32 = AtomicU32::new(0);
static OTHER_IRQS: AtomicU32 = AtomicU32::new(0);

/// Fault policy of the sync handler.
static FAULT_MODE: AtomicU32 = AtomicU32::new(FAULT_FATAL);
const FAULT_FATAL: u32 = 0;
const FAULT_EXPECTED: u32 = 1;
const FAULT_SWALLOW: u32 = 2;
static FAULTS: AtomicU32 = AtomicU32::new(0);
static LAST_ESR: AtomicU64 = AtomicU64::new(0);
static LAST_FAR: AtomicU64 = AtomicU64::new(0);

/// Set by the secondary vCPU to its MPIDR + 1.
static SECONDARY_UP: AtomicU64 = AtomicU64::new(0);
static PSCI_SMC: AtomicU32 = AtomicU32::new(0);

struct Out;

impl Out {
    fn line(args: core::fmt::Arguments<'_>) {
        let mut u = Uart;
        let len = NAME_LEN.load(Ordering::Relaxed).min(NAME.len());
        for c in NAME.iter().take(len) {
            let _ = u.write_char(char::from(c.load(Ordering::Relaxed)));
        }
        let _ = u.write_str(": ");
        let _ = u.write_fmt(args);
        let _ = u.write_str("\n");
    }
}

macro_rules! say {
    ($($t:tt)*) => { Out::line(format_args!($($t)*)) };
}

fn set_name(name: &str) {
    let n = name.len().min(NAME.len());
    for (slot, b) in NAME.iter().zip(name.bytes()) {
        slot.store(b, Ordering::Relaxed);
    }
    NAME_LEN.store(n, Ordering::Relaxed);
}

fn psci(x0: u64, x1: u64, x2: u64, x3: u64) -> u64 {
    arch::smccc(PSCI_SMC.load(Ordering::Relaxed) != 0, x0, x1, x2, x3)
}

fn power_off() -> ! {
    let r = psci(PSCI_SYSTEM_OFF, 0, 0, 0);
    say!("FAIL system-off: PSCI SYSTEM_OFF returned {:#x}", r);
    loop {
        arch::irq_disable();
        // SAFETY: WFI only waits.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// Parsed command line.
#[derive(Default)]
struct Args<'a> {
    modes: &'a str,
    bank: Option<u64>,
    forbid: &'a str,
}

impl Args<'_> {
    fn has(&self, mode: &str) -> bool {
        self.modes.split(',').any(|m| m == mode)
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn parse_args(bootargs: &str) -> Args<'_> {
    let mut a = Args {
        modes: "basic",
        ..Args::default()
    };
    for tok in bootargs.split_ascii_whitespace() {
        if let Some(v) = tok.strip_prefix("tessel-test=") {
            a.modes = v;
        } else if let Some(v) = tok.strip_prefix("tessel-name=") {
            set_name(v);
        } else if let Some(v) = tok.strip_prefix("tessel-bank=") {
            a.bank = parse_hex(v);
        } else if let Some(v) = tok.strip_prefix("tessel-forbid=") {
            a.forbid = v;
        }
    }
    a
}

/// Primary vCPU entry (from `_start`).
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb_addr: u64) -> ! {
    set_name("guest");
    // SAFETY: the boot protocol puts a readable DTB at x0; its header gives
    // its size, capped at 2 MiB so a corrupt header cannot make the slice
    // reach far memory.
    let header = unsafe { core::slice::from_raw_parts(dtb_addr as *const u8, 8) };
    let size = match header {
        [0xd0, 0x0d, 0xfe, 0xed, a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
        _ => power_off(),
    };
    // SAFETY: as above, with the size from the header.
    let dtb = unsafe { core::slice::from_raw_parts(dtb_addr as *const u8, size.min(2 << 20)) };
    let Some(info) = fdt::parse(dtb) else {
        power_off();
    };
    if let Some(u) = info.uart {
        Uart::init(u);
    }
    PSCI_SMC.store(u32::from(info.psci_smc), Ordering::Relaxed);
    let args = parse_args(info.bootargs);
    say!(
        "Tessel test guest at {:#x}, DTB at {:#x}, modes {}",
        arch::image_base(),
        dtb_addr,
        args.modes
    );
    say!("PASS console");
    check_dtb(&info);
    let gic = check_gic(&info);
    if let Some(gic) = gic {
        check_sgi(&gic);
        check_timer();
        if args.has("soak") {
            soak(&gic);
        }
        if args.has("bench") {
            crate::bench::run(&info, &gic);
        }
    }
    if args.has("direct-map") {
        check_direct_map(&info, &args);
    }
    if args.has("smp") {
        check_cpu_on(&info);
    }
    if args.has("forbidden") {
        for a in args.forbid.split(',').filter(|s| !s.is_empty()) {
            match parse_hex(a) {
                Some(addr) => check_forbidden(addr),
                None => say!("FAIL forbidden: bad address {a}"),
            }
        }
    }
    if args.has("hostile") {
        hostile(&info);
    }
    say!("DONE");
    power_off();
}

fn check_dtb(info: &fdt::Info<'_>) {
    let missing = if info.uart.is_none() {
        Some("UART")
    } else if info.gic.is_none() {
        Some("GIC")
    } else if info.memory.is_none() {
        Some("memory")
    } else if info.ncpus == 0 {
        Some("cpus")
    } else {
        None
    };
    match missing {
        Some(what) => say!("FAIL dtb: no {what} node found"),
        None => {
            let (mb, ms) = info.memory.unwrap_or_default();
            say!(
                "PASS dtb: uart {:#x}, memory {:#x}+{:#x}, {} cpu(s), psci via {}",
                info.uart.unwrap_or_default(),
                mb,
                ms,
                info.ncpus,
                if info.psci_smc { "smc" } else { "hvc" }
            );
        }
    }
}

fn check_gic(info: &fdt::Info<'_>) -> Option<Gic> {
    let gi = info.gic?;
    // A register the vGIC wrongly refuses is reported, not fatal, so the
    // SGI and timer checks still run.
    FAULTS.store(0, Ordering::Relaxed);
    FAULT_MODE.store(FAULT_EXPECTED, Ordering::Release);
    let init = Gic::init(gi);
    FAULT_MODE.store(FAULT_FATAL, Ordering::Release);
    let faults = FAULTS.load(Ordering::Acquire);
    if faults > 0 {
        say!(
            "FAIL gic-registers: {faults} architected register access(es) aborted, last at {:#x} (ESR {:#x})",
            LAST_FAR.load(Ordering::Relaxed),
            LAST_ESR.load(Ordering::Relaxed)
        );
    }
    match init {
        Ok(g) => {
            GIC_D.store(gi.gicd, Ordering::Relaxed);
            GIC_SECOND.store(
                if gi.version == 2 { gi.second } else { g.gicr },
                Ordering::Relaxed,
            );
            GIC_VERSION.store(u64::from(gi.version), Ordering::Release);
            say!(
                "PASS gic: v{} distributor {:#x}, {} {:#x}",
                gi.version,
                gi.gicd,
                if gi.version == 2 {
                    "cpu interface"
                } else {
                    "redistributor"
                },
                GIC_SECOND.load(Ordering::Relaxed)
            );
            Some(g)
        }
        Err(e) => {
            say!("FAIL gic: {e}");
            None
        }
    }
}

fn check_sgi(gic: &Gic) {
    arch::irq_enable();
    gic.self_sgi();
    if arch::wait_for(1000, || SGI_HITS.load(Ordering::Acquire) > 0) {
        say!("PASS sgi: SGI {} received", hw::TEST_SGI);
    } else {
        say!("FAIL sgi: SGI {} not received within 1 s", hw::TEST_SGI);
    }
}

fn check_timer() {
    let freq = arch::cntfrq();
    // CNTV_TVAL_EL0: fire in 10 ms; CNTV_CTL_EL0.ENABLE, IMASK clear.
    write_sysreg!("cntv_tval_el0", freq / 100);
    write_sysreg!("cntv_ctl_el0", 1);
    arch::irq_enable();
    if arch::wait_for(2000, || TIMER_HITS.load(Ordering::Acquire) > 0) {
        say!(
            "PASS timer: virtual timer PPI {} received (CNTFRQ {} Hz)",
            hw::VTIMER_PPI,
            freq
        );
    } else {
        let ctl = read_sysreg!("cntv_ctl_el0");
        say!(
            "FAIL timer: PPI {} not received within 2 s (CNTV_CTL {:#x})",
            hw::VTIMER_PPI,
            ctl
        );
    }
    write_sysreg!("cntv_ctl_el0", 0);
}

/// Keeps taking SGIs and timer interrupts for a few seconds (while a
/// hostile neighbour runs): every round must complete.
fn soak(gic: &Gic) {
    const SECONDS: u64 = 4;
    let freq = arch::cntfrq();
    let end = arch::cntvct().saturating_add(freq * SECONDS);
    let mut rounds = 0u32;
    while arch::cntvct() < end {
        let (sgis, timers) = (
            SGI_HITS.load(Ordering::Acquire),
            TIMER_HITS.load(Ordering::Acquire),
        );
        gic.self_sgi();
        write_sysreg!("cntv_tval_el0", freq / 1000);
        write_sysreg!("cntv_ctl_el0", 1);
        let ok = arch::wait_for(500, || {
            SGI_HITS.load(Ordering::Acquire) > sgis && TIMER_HITS.load(Ordering::Acquire) > timers
        });
        if !ok {
            say!("FAIL soak: round {rounds}: SGI or timer interrupt not received within 500 ms");
            write_sysreg!("cntv_ctl_el0", 0);
            return;
        }
        rounds += 1;
    }
    say!("PASS soak: {rounds} rounds of SGI + timer interrupts in {SECONDS} s");
}

fn check_direct_map(info: &fdt::Info<'_>, args: &Args<'_>) {
    let Some(bank) = args.bank else {
        say!("FAIL ram-1to1: no tessel-bank= on the command line");
        return;
    };
    let Some((base, size)) = info.memory else {
        say!("FAIL ram-1to1: no memory node");
        return;
    };
    let me = arch::image_base();
    if base != bank {
        say!("FAIL ram-1to1: memory node starts at {base:#x}, expected the static bank {bank:#x}");
    } else if me < base || me >= base.saturating_add(size) {
        say!("FAIL ram-1to1: running at {me:#x}, outside memory {base:#x}+{size:#x}");
    } else {
        say!("PASS ram-1to1: memory {base:#x}+{size:#x} is the static bank, image at {me:#x}");
    }
}

fn check_cpu_on(info: &fdt::Info<'_>) {
    let me = arch::mpidr();
    let Some(&target) = info.cpus.iter().take(info.ncpus).find(|&&c| c != me) else {
        say!("FAIL cpu-on: the DTB lists no second CPU");
        return;
    };
    let entry = arch::secondary_entry as *const () as u64;
    let stack = core::ptr::addr_of!(arch::__stack1_top) as u64;
    let r = psci(PSCI_CPU_ON64, target, entry, stack);
    if r != 0 {
        say!("FAIL cpu-on: CPU_ON({target:#x}) returned {:#x}", r);
        return;
    }
    if !arch::wait_for(2000, || SECONDARY_UP.load(Ordering::Acquire) != 0) {
        say!("FAIL cpu-on: vCPU {target:#x} did not run within 2 s");
        return;
    }
    let seen = SECONDARY_UP.load(Ordering::Acquire) - 1;
    if seen != target {
        say!("FAIL cpu-on: secondary reports MPIDR {seen:#x}, expected {target:#x}");
        return;
    }
    // The secondary turns itself off: AFFINITY_INFO must say OFF (1).
    let off = arch::wait_for(2000, || psci(PSCI_AFFINITY_INFO64, target, 0, 0) == 1);
    let again = psci(PSCI_CPU_ON64, me, entry, stack);
    if !off {
        say!("FAIL cpu-on: AFFINITY_INFO never reported vCPU {target:#x} off after CPU_OFF");
    } else if again != PSCI_ALREADY_ON {
        say!("FAIL cpu-on: CPU_ON of the running vCPU returned {again:#x}, expected ALREADY_ON");
    } else {
        let v = psci(PSCI_VERSION, 0, 0, 0);
        say!(
            "PASS cpu-on: vCPU {target:#x} started, ran and turned off (PSCI {}.{})",
            v >> 16,
            v & 0xffff
        );
    }
}

/// Secondary vCPU entry (from `secondary_entry`).
#[unsafe(no_mangle)]
extern "C" fn secondary_main() -> ! {
    let me = arch::mpidr();
    say!("secondary vCPU {me:#x} running");
    SECONDARY_UP.store(me + 1, Ordering::Release);
    let r = psci(PSCI_CPU_OFF, 0, 0, 0);
    say!("FAIL cpu-on: CPU_OFF returned {r:#x}");
    loop {
        core::hint::spin_loop();
    }
}

fn check_forbidden(addr: u64) {
    FAULTS.store(0, Ordering::Relaxed);
    FAULT_MODE.store(FAULT_EXPECTED, Ordering::Release);
    let v = hw::mmio_read32(addr);
    hw::mmio_write32(addr, 0);
    FAULT_MODE.store(FAULT_FATAL, Ordering::Release);
    let faults = FAULTS.load(Ordering::Acquire);
    let ec = LAST_ESR.load(Ordering::Relaxed) >> 26;
    if faults == 2 && ec == 0x25 {
        say!(
            "PASS forbidden@{addr:#x}: read and write both aborted (ESR {:#x})",
            LAST_ESR.load(Ordering::Relaxed)
        );
    } else {
        say!(
            "FAIL forbidden@{addr:#x}: {faults} of 2 accesses faulted (last EC {ec:#x}, read {v:#x})"
        );
    }
}

/// xorshift64* pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A PSCI or SMCCC function ID that will not stop this vCPU or domain.
fn harmless_fid(raw: u64) -> u64 {
    let id = raw as u32;
    if id & 0xbfff_0000 == 0x8400_0000 || id < 16 {
        PSCI_VERSION
    } else {
        raw
    }
}

fn hostile(info: &fdt::Info<'_>) {
    const ROUNDS: u32 = 3000;
    arch::irq_disable();
    let mut rng = Rng(arch::cntvct() | 1);
    let mut regions: [(u64, u64); 3] = [(0, 0); 3];
    if let Some(g) = info.gic {
        regions[0] = (g.gicd, 0x1_0000);
        regions[1] = (g.second, if g.version == 2 { 0x2000 } else { 0x2_0000 });
    }
    if let Some(u) = info.uart {
        regions[2] = (u, 0x1000);
    }
    FAULTS.store(0, Ordering::Relaxed);
    FAULT_MODE.store(FAULT_SWALLOW, Ordering::Release);
    let (mut mmio, mut calls) = (0u32, 0u32);
    for round in 1..=ROUNDS {
        let r = rng.next();
        match r % 8 {
            0 => {
                let _ = arch::smccc(
                    false,
                    harmless_fid(rng.next()),
                    rng.next(),
                    rng.next(),
                    rng.next(),
                );
                calls += 1;
            }
            1 => {
                let _ = arch::smccc(
                    true,
                    harmless_fid(rng.next()),
                    rng.next(),
                    rng.next(),
                    rng.next(),
                );
                calls += 1;
            }
            _ => {
                let (base, size) = regions[(r >> 8) as usize % regions.len()];
                if size == 0 {
                    continue;
                }
                let off = rng.next() % size;
                let width = [1u8, 2, 4, 8][(r >> 16) as usize % 4];
                let write = r & (1 << 20) != 0;
                // Keep our own console usable: no writes to the UART's data,
                // line control or control registers.
                let uart_reserved = base == regions[2].0 && matches!(off & !3, 0x00 | 0x2c | 0x30);
                if !(write && uart_reserved) {
                    let _ = hw::mmio_any(base + off, width, write, rng.next());
                    mmio += 1;
                }
            }
        }
        if round % 500 == 0 {
            say!(
                "hostile: {round}/{ROUNDS} rounds, {} faults swallowed",
                FAULTS.load(Ordering::Relaxed)
            );
        }
    }
    FAULT_MODE.store(FAULT_FATAL, Ordering::Release);
    say!(
        "PASS hostile: survived {mmio} random MMIO accesses and {calls} random HVC/SMC calls ({} faults)",
        FAULTS.load(Ordering::Relaxed)
    );
}

/// Synchronous exception from the current EL.
#[unsafe(no_mangle)]
extern "C" fn sync_exception(frame: &mut Frame) {
    let esr = read_sysreg!("esr_el1");
    let far = read_sysreg!("far_el1");
    match FAULT_MODE.load(Ordering::Acquire) {
        FAULT_EXPECTED | FAULT_SWALLOW => {
            LAST_ESR.store(esr, Ordering::Relaxed);
            LAST_FAR.store(far, Ordering::Relaxed);
            FAULTS.store(FAULTS.load(Ordering::Relaxed) + 1, Ordering::Release);
            // Skip the faulting instruction (A64: 4 bytes).
            frame.elr += 4;
        }
        _ => {
            say!(
                "FAIL exception: unexpected synchronous exception ESR {esr:#x} FAR {far:#x} ELR {:#x}",
                frame.elr
            );
            power_off();
        }
    }
}

/// IRQ from the current EL.
#[unsafe(no_mangle)]
extern "C" fn irq_exception(_frame: &mut Frame) {
    let ticks = arch::cntvct();
    let version = GIC_VERSION.load(Ordering::Acquire);
    if version == 0 {
        return;
    }
    let gic = Gic {
        info: fdt::GicInfo {
            version: version as u8,
            gicd: GIC_D.load(Ordering::Relaxed),
            second: GIC_SECOND.load(Ordering::Relaxed),
            second_size: 0,
        },
        gicr: GIC_SECOND.load(Ordering::Relaxed),
    };
    let intid = gic.ack();
    if intid >= hw::SPURIOUS {
        return;
    }
    crate::bench::irq_taken(intid, ticks);
    match intid {
        hw::TEST_SGI => SGI_HITS.store(SGI_HITS.load(Ordering::Relaxed) + 1, Ordering::Release),
        hw::VTIMER_PPI => {
            // Level-triggered: disable the timer to drop the line.
            write_sysreg!("cntv_ctl_el0", 0);
            TIMER_HITS.store(TIMER_HITS.load(Ordering::Relaxed) + 1, Ordering::Release);
        }
        _ => OTHER_IRQS.store(OTHER_IRQS.load(Ordering::Relaxed) + 1, Ordering::Relaxed),
    }
    gic.eoi(intid);
}

/// SError: swallowed in hostile/expected-fault mode, fatal otherwise.
#[unsafe(no_mangle)]
extern "C" fn serror_exception(_frame: &mut Frame) {
    let esr = read_sysreg!("esr_el1");
    if FAULT_MODE.load(Ordering::Acquire) == FAULT_FATAL {
        say!("FAIL exception: SError ESR {esr:#x}");
        power_off();
    }
    FAULTS.store(FAULTS.load(Ordering::Relaxed) + 1, Ordering::Release);
}

/// Anything else (FIQ, exceptions taken on SP_EL0).
#[unsafe(no_mangle)]
extern "C" fn unexpected_exception(frame: &mut Frame) {
    let esr = read_sysreg!("esr_el1");
    say!(
        "FAIL exception: unexpected vector, ESR {esr:#x} ELR {:#x}",
        frame.elr
    );
    power_off();
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("FAIL panic: {info}");
    power_off();
}
