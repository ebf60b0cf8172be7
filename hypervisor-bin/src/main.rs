//! The Tessel EL2 hypervisor image.
//!
//! Boot: `boot.rs` relocates the image and calls [`primary_main`] with the
//! host DTB; it reads the platform from the DT, turns on the EL2 MMU, the
//! console, the heap and the GIC, starts the other CPUs through PSCI and
//! then builds and runs the domains.
#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod console;
mod domain;
mod exception;
mod gic;
mod heap;
mod hostdt;
mod irq;
mod mmio;
mod mmu;
mod psci;
mod s2;
mod sync;
mod vcpu;

use core::sync::atomic::{AtomicUsize, Ordering};
use gic::{CPU_MPIDR, GIC, Gic};
use mmio::Mmio;
use tessel_config::{BootConfig, HostPlatform};

/// CPUs that finished bring-up.
static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    fn secondary_entry();
}

/// Parks this CPU for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: waiting for an event has no side effects.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}

fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
    // Keep the affinity fields only (Aff3 [39:32], Aff2..Aff0 [23:0]).
    v & 0xff_00ff_ffff
}

/// Routes physical IRQs/FIQs/SErrors to EL2 (HCR_EL2.IMO/FMO/AMO; without
/// them an interrupt targets EL1 and stays masked while EL2 runs, Arm ARM
/// DDI 0487, D1.3.6) and unmasks IRQs here.
fn enable_irqs() {
    use aarch64_cpu::registers::HCR_EL2;
    use tock_registers::interfaces::ReadWriteable;
    HCR_EL2.modify(
        HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::RW::EL1IsAarch64,
    );
    // SAFETY: unmasks IRQs at EL2; the vectors are installed.
    unsafe { core::arch::asm!("isb", "msr daifclr, #2", options(nomem, nostack)) };
}

/// Boot CPU entry from `boot.rs`: `dtb` is the host DTB address from x0,
/// `base` the address the image runs at.
#[unsafe(no_mangle)]
extern "C" fn primary_main(dtb: u64, base: u64) -> ! {
    // SAFETY: the boot protocol passes the DTB address in x0; the header is
    // read only after checking it is non-null, and the length comes from
    // the header itself.
    let info = unsafe {
        if dtb == 0 {
            halt();
        }
        let Ok(size) = hostdt::total_size(dtb) else {
            halt()
        };
        let blob = core::slice::from_raw_parts(dtb as *const u8, size);
        match hostdt::parse(blob) {
            Ok(info) => info,
            // Without the DT we do not know where the console is.
            Err(_) => halt(),
        }
    };

    // SAFETY: boot CPU, before any other CPU runs; the tables cover all RAM
    // banks, which hold our image, stack and the DTB.
    unsafe {
        if mmu::build(&info.memory).is_err() {
            halt();
        }
        let (s, e) = mmu::tables_range();
        mmu::clean_inval_dcache(s, e);
        let img_start = &raw const __image_start as u64;
        let img_end = &raw const __image_end as u64;
        mmu::clean_inval_dcache(img_start, img_end);
        mmu::enable();
    }

    if let Some(uart) = info.uart {
        // SAFETY: the DT names this as a PL011; it is mapped as Device.
        console::init(console::Pl011::new(unsafe { Mmio::new(uart) }));
    }
    let image_size = (&raw const __image_end as u64) - (&raw const __image_start as u64);
    println!(
        "Tessel {} static-partitioning hypervisor, EL2",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "image at {base:#x} ({} KiB, position-independent), host DTB at {dtb:#x} ({} bytes)",
        image_size / 1024,
        info.dtb_size
    );
    for (b, s) in &info.memory {
        println!("RAM {:#x}-{:#x} ({} MiB)", b, b + s, s >> 20);
    }
    println!("EL2 MMU on: identity map, RAM normal write-back, rest device-nGnRE");
    heap::init();

    // SAFETY: the DTB stays where the boot loader put it; the domains'
    // banks are checked not to overlap it.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, info.dtb_size as usize) };
    let boot = match tessel_config::parse(blob) {
        Ok(b) => b,
        Err(e) => {
            println!("fatal: host device tree: {e}");
            psci::system_off();
        }
    };
    for w in &boot.warnings {
        println!("warning: {w}");
    }
    let online = match bring_up(&boot.host) {
        Ok(n) => n,
        Err(e) => {
            println!("fatal: {e}");
            psci::system_off();
        }
    };
    run(&boot, (dtb, info.dtb_size), online)
}

/// Brings up the GIC, the interrupt path and the other CPUs; returns how
/// many CPUs are online (Tessel indexes 0..n).
fn bring_up(host: &HostPlatform) -> Result<usize, &'static str> {
    let conduit = host
        .psci
        .as_ref()
        .ok_or("the host DT has no /psci node")?
        .method;
    psci::set_conduit(conduit);
    // PSCI_VERSION and CPU_ON return 32-bit values (Arm DEN0022); printed as 32-bit
    // numbers, so no 64-bit signed formatting is linked in for them.
    let v = psci::call(psci::PSCI_VERSION, 0, 0, 0) as u32;
    println!(
        "PSCI {}.{} via {}",
        (v >> 16) & 0xffff,
        v & 0xffff,
        conduit.instruction()
    );

    // Tessel CPU 0 is the boot CPU; the others follow in DT order.
    let me = mpidr();
    CPU_MPIDR[0].store(me, Ordering::Relaxed);
    let mut n = 1;
    for m in host.cpus.iter().map(|c| c.mpidr & 0xff_00ff_ffff) {
        if m == me {
            continue;
        }
        if n >= boot::MAX_CPUS {
            println!(
                "CPU with MPIDR {m:#x} ignored: only {} supported",
                boot::MAX_CPUS
            );
            continue;
        }
        CPU_MPIDR[n].store(m, Ordering::Relaxed);
        n += 1;
    }

    // SAFETY: the DT describes this GIC; its registers are in the Device
    // part of the identity map.
    let gic = unsafe { Gic::probe(&host.gic)? };
    let second = match (host.gic.redistributors.first(), host.gic.gicc) {
        (Some(r), _) if gic.version() == 3 => r.start.0,
        (_, Some(c)) => c.start.0,
        _ => 0,
    };
    println!(
        "GICv{}: distributor at {:#x}, {} at {:#x}, {} interrupt IDs",
        gic.version(),
        host.gic.gicd.start.0,
        if gic.version() == 2 {
            "CPU interface"
        } else {
            "redistributors"
        },
        second,
        gic.num_irqs()
    );
    if let Some(t) = &host.timer {
        irq::HYP_TIMER_IRQ.store(t.hyp_phys, Ordering::Relaxed);
    }
    if let Some(m) = host.gic.maintenance_intid {
        gic::MAINTENANCE_IRQ.store(m, Ordering::Relaxed);
    }
    // The console's interrupt, when the stdout-path UART is the early one.
    if let Some(u) = &host.console
        && let Some(irq) = u.intid
        && console::base() == Some(u.mmio.start.0)
    {
        irq::UART_IRQ.store(irq, Ordering::Relaxed);
    }
    GIC.set(gic);
    let gic = GIC.get().ok_or("GIC not recorded")?;
    gic.init_cpu()?;
    gic.enable(irq::hyp_timer_irq(), 0, Some(true));
    gic.enable(irq::SGI_KICK, 0, Some(false));
    enable_irqs();

    // Self-test of the interrupt path: one EL2 timer tick.
    irq::arm_hyp_timer(1000);
    let mut spins = 0u64;
    while irq::HYP_TIMER_TICKS.load(Ordering::Relaxed) == 0 && spins < 100_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
    if irq::HYP_TIMER_TICKS.load(Ordering::Relaxed) == 0 {
        return Err("the EL2 timer interrupt never arrived: GIC set-up failed");
    }
    println!(
        "interrupts: EL2 timer PPI {} delivered",
        irq::hyp_timer_irq()
    );

    let uart_irq = irq::UART_IRQ.load(Ordering::Relaxed);
    if uart_irq != u32::MAX {
        gic.enable(uart_irq, 0, Some(true));
        if let Some(u) = console::CONSOLE.lock().as_ref() {
            u.enable_rx_irq();
        }
    }

    CPUS_ONLINE.store(1, Ordering::Release);
    let entry = secondary_entry as *const () as u64;
    // skip then take: the adapters' bookkeeping is simpler this way round.
    for (cpu, mpidr) in CPU_MPIDR.iter().enumerate().skip(1).take(n - 1) {
        let target = mpidr.load(Ordering::Relaxed);
        let r = psci::call(psci::CPU_ON_64, target, entry, cpu as u64);
        if r != 0 {
            println!(
                "CPU{cpu} (MPIDR {target:#x}): PSCI CPU_ON failed ({})",
                r as i32
            );
            continue;
        }
        let mut spins = 0u64;
        while CPUS_ONLINE.load(Ordering::Acquire) <= cpu && spins < 500_000_000 {
            core::hint::spin_loop();
            spins += 1;
        }
        if CPUS_ONLINE.load(Ordering::Acquire) <= cpu {
            println!("CPU{cpu} (MPIDR {target:#x}) did not come up");
        }
    }
    let online = CPUS_ONLINE.load(Ordering::Acquire);
    println!("{online} of {n} CPUs online");
    Ok(online)
}

/// Secondary CPU entry from `boot.rs` (MMU off, stack set).
#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: u64) -> ! {
    // SAFETY: the boot CPU built the tables before starting us.
    unsafe { mmu::enable() };
    let Some(gic) = GIC.get() else { halt() };
    if let Err(e) = gic.init_cpu() {
        println!("CPU{cpu}: {e}");
        halt();
    }
    gic.enable(irq::SGI_KICK, cpu as usize, Some(false));
    println!("CPU{cpu} up (MPIDR {:#x})", mpidr());
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
    enable_irqs();
    vcpu::idle_loop()
}

/// Builds and runs the domains; powers off when none is left.
fn run(boot: &BootConfig, dtb: (u64, u64), online: usize) -> ! {
    let s2 = match s2::config() {
        Ok(c) => c,
        Err(e) => {
            println!("fatal: stage 2: {e}");
            psci::system_off();
        }
    };
    let image_start = &raw const __image_start as u64;
    let image_end = &raw const __image_end as u64;
    let host = tessel_builder::HostFacts {
        image: tessel_addr::HostRange::new(
            tessel_addr::HostPhysAddr(image_start),
            image_end - image_start,
        ),
        dtb: tessel_addr::HostRange::new(tessel_addr::HostPhysAddr(dtb.0), dtb.1),
        free_pcpus: alloc::vec![true; online],
        gic_spis: GIC.get().map_or(0, |g| g.num_irqs().saturating_sub(32)),
        stage2: s2,
    };
    let mut mux = tessel_vpl011::console::Console::new();
    let domains = domain::build_all(boot, &host, &mut mux);
    if domains.is_empty() {
        println!("no domain to run; powering off");
        psci::system_off();
    }
    {
        let mut out = vcpu::HostOut;
        mux.announce_focus(&mut out);
    }
    *vcpu::MUX.lock() = Some(mux);
    vcpu::assign(&domains);
    vcpu::DOMAINS.set(domains);
    vcpu::route_device_irqs();
    vcpu::start_domains();
    vcpu::idle_loop()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::print_unlocked(format_args!(
        "(tessel) PANIC on CPU{}: {info}\n",
        gic::this_cpu()
    ));
    halt()
}
