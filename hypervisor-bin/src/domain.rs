//! Carrying out the domain builder's plans and the state each domain keeps
//! while it runs.
//!
//! tessel-builder decides everything about a domain (RAM, pCPUs, VMID,
//! vGIC, vPL011, devices, boot images, guest device tree); this module
//! only executes its plan on the hardware: builds the stage-2 tables,
//! copies the boot images into guest RAM, creates the vGIC and vPL011, and
//! prints the boot report.

use crate::println;
use crate::s2::{DomainStage2, HeapTables, HwTlb};
use crate::sync::SpinLock;
use alloc::string::String;
use alloc::vec::Vec;
use tessel_addr::HostRange;
use tessel_builder::{CopyMethod, CopySource, DomainPlan, HostFacts, ModuleMemory};
use tessel_config::BootConfig;
use tessel_passthrough::Assignment;
use tessel_stage2::MapError;
use tessel_trap::{DomainState, VcpuTable};
use tessel_vgic::Vgic;
use tessel_vpl011::console::ConsoleId;
use tessel_vpl011::{IrqLine, Vpl011, Vpl011Config};

/// The vPL011's interrupt output: records the level for the vGIC.
#[derive(Debug, Default)]
pub struct UartIrq {
    /// Current level of the line.
    pub level: bool,
}

impl IrqLine for UartIrq {
    fn set_level(&mut self, high: bool) {
        self.level = high;
    }
}

/// The emulated UART of a domain.
pub struct DomainUart {
    /// Where it sits in the guest's address space.
    pub config: Vpl011Config,
    /// The device.
    pub dev: Vpl011<UartIrq>,
    /// The console-mux handle.
    pub console: ConsoleId,
}

/// The mutable part of a domain.
pub struct DomainRt {
    /// Running or stopped (and why).
    pub state: DomainState,
    /// vCPU power states (PSCI).
    pub power: VcpuTable,
    /// The vPL011, if configured.
    pub uart: Option<DomainUart>,
    /// The domain's virtual GIC.
    pub vgic: Vgic,
    /// Level of the vPL011 interrupt last given to the vGIC.
    pub uart_line: bool,
}

/// A built domain.
pub struct Domain {
    /// Name from the DT (`domU1`).
    pub name: String,
    /// Stage-2 tables (kept alive while the domain exists).
    #[expect(
        dead_code,
        reason = "owns the tables VTTBR_EL2 points at; only dropped, never read"
    )]
    pub s2: DomainStage2,
    /// VTTBR_EL2 value (tables and VMID).
    pub vttbr: u64,
    /// VTCR_EL2 value.
    pub vtcr: u64,
    /// pCPU of each vCPU.
    pub vcpu_pcpu: Vec<usize>,
    /// Boot vCPU entry point (guest physical).
    pub entry: u64,
    /// x0 for the boot vCPU: the generated guest DTB's address.
    pub dtb: u64,
    /// Devices given to the domain (MMIO mappings and SPIs).
    pub devices: Assignment,
    /// Injected aborts reported so far.
    pub fault_reports: core::sync::atomic::AtomicUsize,
    /// State shared by the domain's vCPUs.
    pub rt: SpinLock<DomainRt>,
}

/// Why a plan could not be carried out.
#[derive(Debug)]
pub enum SetupError {
    /// Stage-2 tables could not be built (out of table memory).
    Map(MapError),
    /// The VMID does not fit VTTBR_EL2.
    Vmid(tessel_stage2::ConfigError),
    /// The vGIC could not be created.
    Vgic(tessel_vgic::VgicError),
    /// A boot module is not readable host RAM.
    Module(HostRange),
    /// The kernel could not be unpacked.
    Kernel(tessel_loader::LoaderError),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(e) => write!(f, "stage 2: {e}"),
            Self::Vmid(e) => write!(f, "{e}"),
            Self::Vgic(e) => write!(f, "vGIC: {e}"),
            Self::Module(r) => write!(f, "boot module at {r} is not in host RAM"),
            Self::Kernel(e) => write!(f, "kernel: {e}"),
        }
    }
}

impl From<MapError> for SetupError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

/// Boot modules read in place: host RAM is in the EL2 identity map.
#[derive(Clone, Copy)]
struct HostRam<'a> {
    ram: &'a [HostRange],
}

impl ModuleMemory<'static> for HostRam<'_> {
    fn bytes(&self, range: HostRange) -> Option<&'static [u8]> {
        if !self.ram.iter().any(|r| r.contains_range(&range)) {
            return None;
        }
        let len = usize::try_from(range.size).ok()?;
        // SAFETY: the range lies in a host RAM bank (checked above), which
        // the EL2 identity map covers. Boot modules are kept out of every
        // domain's RAM and the hypervisor's heap (tessel-builder reserves
        // them), so nothing writes them while they are read.
        Some(unsafe { core::slice::from_raw_parts(range.start.0 as *const u8, len) })
    }
}

/// Copies `len` bytes from host-physical `src` to `dst` and cleans the
/// destination to the point of coherency (the guest starts with its MMU and
/// caches off).
///
/// # Safety
/// Both ranges must be RAM inside the EL2 identity map that nothing else
/// is using.
unsafe fn copy_in(dst: u64, src: u64, len: u64) {
    if dst != src {
        // SAFETY: per the caller; `copy` handles overlapping ranges.
        unsafe { core::ptr::copy(src as *const u8, dst as *mut u8, len as usize) };
    }
    crate::mmu::clean_inval_dcache(dst, dst + len);
}

/// Copies the plan's boot images and guest DTB into the domain's RAM.
fn copy_images(plan: &DomainPlan<'_>, modules: &HostRam<'_>) -> Result<(), SetupError> {
    for c in &plan.copies {
        let dst = c.dest.start.0;
        match (c.source, c.method) {
            (CopySource::Module(m), CopyMethod::UnpackKernel) => {
                let src = modules.bytes(m).ok_or(SetupError::Module(m))?;
                // SAFETY: the destination is host RAM the builder gave to
                // this domain only, and it does not overlap the module
                // (checked by the builder).
                let out = unsafe {
                    core::slice::from_raw_parts_mut(dst as *mut u8, c.dest.size as usize)
                };
                let n = tessel_loader::unpack_into(src, out).map_err(SetupError::Kernel)?;
                crate::mmu::clean_inval_dcache(dst, dst + n as u64);
            }
            (CopySource::Module(m), CopyMethod::Verbatim) => {
                modules.bytes(m).ok_or(SetupError::Module(m))?;
                // SAFETY: the destination is host RAM the builder gave to
                // this domain only; the source is a boot module in RAM.
                unsafe { copy_in(dst, m.start.0, m.size.min(c.dest.size)) };
            }
            (CopySource::GuestDtb, _) => {
                let len = (plan.dtb.len() as u64).min(c.dest.size);
                // SAFETY: the destination is this domain's RAM (the DTB
                // slot); the source is the plan's own buffer.
                unsafe { copy_in(dst, plan.dtb.as_ptr() as u64, len) };
            }
        }
    }
    Ok(())
}

/// Carries out `plan`: stage-2 tables, boot images, vGIC, vPL011; once
/// nothing can fail any more, prints the domain's boot report.
// Kept out of line: inlined into `run` it makes the image larger
// (measured, 768 bytes).
#[inline(never)]
fn build(
    plan: DomainPlan<'_>,
    host: &HostFacts,
    modules: &HostRam<'_>,
    console: &mut tessel_vpl011::console::Console,
) -> Result<Domain, SetupError> {
    let mut s2 = DomainStage2::new(host.stage2, HeapTables, HwTlb)?;
    for m in &plan.mappings {
        s2.map(m.guest, m.host, m.attrs())?;
    }
    let vttbr = s2.vttbr(plan.vmid).map_err(SetupError::Vmid)?;
    let vgic = plan.vgic.instantiate().map_err(SetupError::Vgic)?;
    copy_images(&plan, modules)?;
    report(&plan, s2.table_count());
    let uart = plan.vpl011.map(|config| DomainUart {
        config,
        dev: Vpl011::new(UartIrq::default()),
        console: console.add_domain(&plan.name),
    });
    let power = VcpuTable::new(plan.vcpu_pcpu.len());
    Ok(Domain {
        name: plan.name,
        s2,
        vttbr,
        vtcr: host.stage2.vtcr(),
        vcpu_pcpu: plan.vcpu_pcpu,
        entry: plan.boot.entry.0,
        dtb: plan.boot.dtb.start.0,
        devices: plan.devices,
        fault_reports: core::sync::atomic::AtomicUsize::new(0),
        rt: SpinLock::new(DomainRt {
            state: DomainState::default(),
            power,
            uart,
            vgic,
            uart_line: false,
        }),
    })
}

/// Plans every domain of `boot` with tessel-builder, builds the planned
/// ones and reports each domain, built or refused.
pub fn build_all(
    boot: &BootConfig,
    host: &HostFacts,
    console: &mut tessel_vpl011::console::Console,
) -> Vec<Domain> {
    let mut out = Vec::new();
    for e in boot.domain_errors() {
        println!("domain refused: {e}");
    }
    let modules = HostRam {
        ram: &boot.host.ram,
    };
    let plans = match tessel_builder::plan_all(boot, host, HostRam { ram: modules.ram }) {
        Ok(p) => p,
        Err(e) => {
            println!("no domain can be built: host memory: {e}");
            return out;
        }
    };
    for plan in plans {
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                println!("domain {} refused: {}", e.domain, e.reason());
                continue;
            }
        };
        let name = plan.name.clone();
        match build(plan, host, &modules, console) {
            Ok(d) => out.push(d),
            Err(e) => println!("domain {name} refused: {e}"),
        }
    }
    out
}

/// The boot report of a built domain, with `tables` stage-2 tables.
fn report(plan: &DomainPlan<'_>, tables: usize) {
    println!(
        "domain {} (VMID {}), {}, {} stage-2 tables:",
        plan.name,
        plan.vmid,
        if plan.is_direct_mapped() {
            "direct-mapped"
        } else {
            "virtual platform"
        },
        tables
    );
    plan.report(&mut |line| println!("  {line}"));
}
