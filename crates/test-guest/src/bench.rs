//! `tessel-test=bench`: costs of the guest-visible trap and interrupt paths,
//! measured with the virtual counter from inside the guest.
//!
//! Every operation runs `n` times; each result line gives the total, the
//! smallest and the largest sample in counter ticks, so the host side can
//! print ticks per operation:
//!
//! ```text
//! BENCH cntfrq <Hz>
//! BENCH entry <CNTPCT_EL0 at the guest's first instruction>
//! BENCH op <name> n=<n> total=<ticks> min=<ticks> max=<ticks>
//! BENCH skip <name> <why>
//! BENCH end
//! ```
//!
//! Operations:
//!
//! | name | what one sample is |
//! | --- | --- |
//! | `gicd-read` | a 32-bit read of GICD_TYPER (trapped and emulated under a hypervisor) |
//! | `uart-write` | a 32-bit write to the UART data register (vPL011 under a hypervisor) |
//! | `psci-version` | PSCI_VERSION through the conduit the DT names, call to return |
//! | `sgi` | a self-SGI, from just before the send to the IRQ handler |
//! | `vtimer` | the virtual timer, from its programmed expiry (CNTV_CVAL) to the IRQ handler |
//! | `spi` | a passed-through PL061 GPIO interrupt, from the MMIO write that raises it to the IRQ handler |
//!
//! "Handler" is the first statement of the guest's IRQ handler, which reads
//! CNTVCT_EL0 before it acknowledges the interrupt: the figure includes the
//! guest's own vector code (saving 31 registers, about 20 instructions),
//! the same in every environment.
//!
//! The SPI needs a PL061 the guest may drive, named on the command line as
//! `tessel-bench-gpio=0xADDR,INTID` (QEMU virt: `0x9030000,39`). Pin 0 is set
//! to level-low sensitivity; nothing drives that input, so unmasking it in
//! GPIOIE raises the line at once, and masking it again in the handler drops
//! the line (QEMU's PL061 model re-evaluates level interrupts on every
//! register write).

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::{self, write_sysreg};
use crate::hw::{self, Gic, Uart};
use tessel_test_guest::fdt::Info;

/// Samples per MMIO or call operation.
const N_CALLS: u32 = 1000;
/// Samples per interrupt operation.
const N_IRQS: u32 = 200;
/// UART writes per console line in `uart-write` (the newline is not timed).
const UART_BATCH: u32 = 50;
/// How far ahead the virtual timer is programmed, in ticks.
const TIMER_LEAD: u64 = 500;
/// How long one interrupt may take before the operation is given up, in ms.
const IRQ_TIMEOUT_MS: u64 = 100;

/// GICD_TYPER (IHI 0069 12.9.38, IHI 0048B 4.3.2).
const GICD_TYPER: u64 = 0x004;
/// `GICD_IGROUPR<n>`, `GICD_ISENABLER<n>`, `GICD_IPRIORITYR<n>`,
/// `GICD_ITARGETSR<n>` (IHI 0048B 4.3).
const GICD_IGROUPR: u64 = 0x080;
const GICD_ISENABLER: u64 = 0x100;
const GICD_ICENABLER: u64 = 0x180;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_ITARGETSR: u64 = 0x800;
/// PL061 registers (DDI 0190B 3.3): direction, interrupt sense, both edges,
/// event, mask, clear.
const GPIODIR: u64 = 0x400;
const GPIOIS: u64 = 0x404;
const GPIOIBE: u64 = 0x408;
const GPIOIEV: u64 = 0x40c;
const GPIOIE: u64 = 0x410;
const GPIOIC: u64 = 0x41c;
/// PSCI_VERSION (DEN0022 5.1.1).
const PSCI_VERSION: u64 = 0x8400_0000;

/// CNTPCT_EL0 read by `_start` before anything else (0 if not recorded).
#[unsafe(no_mangle)]
pub static BENCH_ENTRY_CNTPCT: AtomicU64 = AtomicU64::new(0);

/// Counter value at the IRQ handler for the last interrupt taken.
static IRQ_TICKS: AtomicU64 = AtomicU64::new(0);
/// INTID of the last interrupt taken (`SPURIOUS` until one arrives).
static IRQ_ID: AtomicU32 = AtomicU32::new(hw::SPURIOUS);
/// The PL061 and its INTID, once set up.
static GPIO: AtomicU64 = AtomicU64::new(0);
static GPIO_INTID: AtomicU32 = AtomicU32::new(0);

/// Called by the guest's IRQ handler for every acknowledged interrupt, with
/// the counter read as the handler's first action. Records the time and
/// drops the PL061 line (masking pin 0 again) before the handler's EOI.
pub fn irq_taken(intid: u32, ticks: u64) {
    let gpio = GPIO.load(Ordering::Relaxed);
    if gpio != 0 && intid == GPIO_INTID.load(Ordering::Relaxed) {
        hw::mmio_write32(gpio + GPIOIE, 0);
        hw::mmio_write32(gpio + GPIOIC, 1);
    }
    IRQ_TICKS.store(ticks, Ordering::Relaxed);
    IRQ_ID.store(intid, Ordering::Release);
}

fn line(args: core::fmt::Arguments<'_>) {
    let mut u = Uart;
    let _ = u.write_fmt(args);
    let _ = u.write_str("\n");
}

/// Running statistics of one operation.
struct Stats {
    n: u32,
    total: u64,
    min: u64,
    max: u64,
}

impl Stats {
    const fn new() -> Self {
        Stats {
            n: 0,
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn add(&mut self, ticks: u64) {
        self.n += 1;
        self.total += ticks;
        self.min = self.min.min(ticks);
        self.max = self.max.max(ticks);
    }

    /// A batch of `n` operations timed together: min and max are per
    /// operation, rounded down and up.
    fn add_batch(&mut self, n: u32, ticks: u64) {
        self.n += n;
        self.total += ticks;
        self.min = self.min.min(ticks / u64::from(n));
        self.max = self.max.max(ticks.div_ceil(u64::from(n)));
    }

    fn report(&self, name: &str) {
        if self.n == 0 {
            line(format_args!("BENCH skip {name} no samples"));
        } else {
            line(format_args!(
                "BENCH op {name} n={} total={} min={} max={}",
                self.n, self.total, self.min, self.max
            ));
        }
    }
}

/// Parsed `tessel-bench-gpio=0xADDR,INTID`.
fn parse_gpio(bootargs: &str) -> Option<(u64, u32)> {
    let v = bootargs
        .split_ascii_whitespace()
        .find_map(|t| t.strip_prefix("tessel-bench-gpio="))?;
    let (addr, intid) = v.split_once(',')?;
    let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).ok()?;
    let intid = intid.parse().ok()?;
    (32..1020).contains(&intid).then_some((addr, intid))
}

/// Runs every operation and prints the results. `gic` is the initialized
/// GIC of the boot CPU.
pub fn run(info: &Info<'_>, gic: &Gic) {
    arch::irq_disable();
    line(format_args!("BENCH cntfrq {}", arch::cntfrq()));
    line(format_args!(
        "BENCH entry {}",
        BENCH_ENTRY_CNTPCT.load(Ordering::Relaxed)
    ));
    gicd_read(gic).report("gicd-read");
    uart_write(info).report("uart-write");
    psci_version(info).report("psci-version");
    arch::irq_enable();
    irq_latency(gic, |g| {
        let t0 = arch::cntvct();
        g.self_sgi();
        t0
    })
    .report("sgi");
    irq_latency(gic, |_| {
        let cval = arch::cntvct() + TIMER_LEAD;
        write_sysreg!("cntv_cval_el0", cval);
        write_sysreg!("cntv_ctl_el0", 1);
        cval
    })
    .report("vtimer");
    match parse_gpio(info.bootargs) {
        Some((gpio, intid)) => {
            setup_gpio(gic, gpio, intid);
            irq_latency(gic, |_| {
                let t0 = arch::cntvct();
                hw::mmio_write32(gpio + GPIOIE, 1);
                t0
            })
            .report("spi");
            hw::mmio_write32(
                gic.info.gicd + GICD_ICENABLER + 4 * u64::from(intid / 32),
                1 << (intid % 32),
            );
        }
        None => line(format_args!(
            "BENCH skip spi no tessel-bench-gpio=0xADDR,INTID"
        )),
    }
    arch::irq_disable();
    GPIO.store(0, Ordering::Relaxed);
    line(format_args!("BENCH end"));
}

fn gicd_read(gic: &Gic) -> Stats {
    let mut s = Stats::new();
    let reg = gic.info.gicd + GICD_TYPER;
    let t0 = arch::cntvct();
    for _ in 0..N_CALLS {
        let _ = hw::mmio_read32(reg);
    }
    s.add_batch(N_CALLS, arch::cntvct() - t0);
    s
}

fn uart_write(info: &Info<'_>) -> Stats {
    let mut s = Stats::new();
    let Some(uart) = info.uart else {
        return s;
    };
    for _ in 0..N_CALLS / UART_BATCH {
        let t0 = arch::cntvct();
        for _ in 0..UART_BATCH {
            hw::mmio_write32(uart, u32::from(b'.'));
        }
        s.add_batch(UART_BATCH, arch::cntvct() - t0);
        hw::mmio_write32(uart, u32::from(b'\n'));
    }
    s
}

fn psci_version(info: &Info<'_>) -> Stats {
    let mut s = Stats::new();
    let t0 = arch::cntvct();
    for _ in 0..N_CALLS {
        let _ = arch::smccc(info.psci_smc, PSCI_VERSION, 0, 0, 0);
    }
    s.add_batch(N_CALLS, arch::cntvct() - t0);
    s
}

/// Takes `N_IRQS` interrupts raised by `raise`, which returns the counter
/// value the latency is measured from. Stops early if one never arrives.
fn irq_latency(gic: &Gic, mut raise: impl FnMut(&Gic) -> u64) -> Stats {
    let mut s = Stats::new();
    for _ in 0..N_IRQS {
        IRQ_ID.store(hw::SPURIOUS, Ordering::Relaxed);
        let from = raise(gic);
        if !arch::wait_for(IRQ_TIMEOUT_MS, || {
            IRQ_ID.load(Ordering::Acquire) != hw::SPURIOUS
        }) {
            line(format_args!(
                "BENCH timeout after {} samples: no interrupt within {IRQ_TIMEOUT_MS} ms",
                s.n
            ));
            break;
        }
        s.add(IRQ_TICKS.load(Ordering::Relaxed).saturating_sub(from));
    }
    s
}

/// Routes the GPIO's SPI to this CPU as group 1, enabled, and configures
/// pin 0 as a level-low input whose interrupt is masked.
fn setup_gpio(gic: &Gic, gpio: u64, intid: u32) {
    GPIO.store(gpio, Ordering::Relaxed);
    GPIO_INTID.store(intid, Ordering::Relaxed);
    hw::mmio_write32(gpio + GPIOIE, 0);
    hw::mmio_write32(gpio + GPIODIR, 0);
    hw::mmio_write32(gpio + GPIOIBE, 0);
    hw::mmio_write32(gpio + GPIOIEV, 0);
    hw::mmio_write32(gpio + GPIOIS, 1);
    hw::mmio_write32(gpio + GPIOIC, 0xff);
    let d = gic.info.gicd;
    let word = 4 * u64::from(intid / 32);
    let bit = 1u32 << (intid % 32);
    if gic.info.version == 3 {
        // Group 1 (a native GICv3 without security treats group 0 as FIQ);
        // GICD_IROUTER keeps its reset value, affinity 0.0.0.0 = this CPU.
        let g = hw::mmio_read32(d + GICD_IGROUPR + word);
        hw::mmio_write32(d + GICD_IGROUPR + word, g | bit);
    } else {
        let t = d + GICD_ITARGETSR + u64::from(intid & !3);
        hw::mmio_write32(t, 0x0101_0101);
    }
    hw::mmio_write32(d + GICD_IPRIORITYR + u64::from(intid & !3), 0xa0a0_a0a0);
    hw::mmio_write32(d + GICD_ISENABLER + word, bit);
}
