//! Building the domains described under `/chosen` and the state they keep
//! while they run.
//!
//! A direct-mapped domain (`direct-map` + `xen,static-mem`) sees host
//! addresses: its banks at their own addresses, the host GIC frames and the
//! host UART. Any other domain gets Xen's virtual platform: RAM at
//! 0x4000_0000 (static banks packed there, or RAM allocated from free host
//! memory by tessel-static-mem), the vGIC at 0x0300_1000 and the vPL011 at
//! 0x2200_0000 (SPI 32).

use crate::boot::MAX_CPUS;
use crate::println;
use crate::s2::{DomainStage2, HeapTables, HwTlb};
use crate::sync::SpinLock;
use alloc::string::String;
use alloc::vec::Vec;
use tessel_addr::{GuestPhysAddr, GuestRange};
use tessel_config::{BootConfig, DomainConfig};
use tessel_passthrough::{Assignment, DomainRequest, HostView, Registry};
use tessel_stage2::{Attrs, MapError, Stage2Config};
use tessel_static_mem::{HostMemory, RamLayout, Reserved, ReservedKind};
use tessel_trap::{DomainState, VcpuTable};
use tessel_vgic::{HostGic, Model, VcpuId, Vgic, VgicConfig, VgicLayout, VirtualGic};
use tessel_vpl011::console::ConsoleId;
use tessel_vpl011::{IrqLine, Vpl011, Vpl011Config};

/// Linux wants its DTB within 2 MiB-aligned, at most 2 MiB in size.
const DTB_MAX: u64 = 2 << 20;

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
    /// Stage-2 VMID.
    pub vmid: u16,
    /// Stage-2 tables.
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
    /// Where the kernel was loaded.
    pub kernel: GuestRange,
    /// Where the initrd was loaded, if any.
    pub initrd: Option<GuestRange>,
    /// Size of the generated DTB.
    pub dtb_size: u64,
    /// Devices given to the domain (MMIO mappings and SPIs).
    pub devices: Assignment,
    /// The domain's RAM: guest banks and the host memory behind them.
    pub ram: RamLayout,
    /// Injected aborts reported so far.
    pub fault_reports: core::sync::atomic::AtomicUsize,
    /// State shared by the domain's vCPUs.
    pub rt: SpinLock<DomainRt>,
}

/// Why a domain could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// Not a direct-mapped static-memory domain.
    Unsupported(&'static str),
    /// More vCPUs than free pCPUs.
    NotEnoughPcpus {
        /// vCPUs asked for.
        want: u32,
        /// pCPUs still free.
        free: usize,
    },
    /// The static banks cannot be reserved.
    Bank(tessel_static_mem::BankError),
    /// The domain's RAM cannot be laid out or allocated.
    Ram(tessel_static_mem::LayoutError),
    /// A module does not fit where it must go.
    Placement(&'static str),
    /// Stage-2 mapping failed.
    Map(MapError),
    /// vPL011 set-up failed.
    Uart(tessel_vpl011::ConfigError),
    /// The vGIC could not be configured.
    VgicConfig(tessel_vgic::ConfigError),
    /// The vGIC refused a set-up step.
    Vgic(tessel_vgic::VgicError),
    /// A passthrough device could not be assigned.
    Passthrough(tessel_passthrough::AssignError),
    /// No VMID left for this domain.
    Vmid(tessel_stage2::ConfigError),
    /// The kernel module is not a loadable arm64 Image.
    Kernel(tessel_loader::LoaderError),
    /// Kernel, DTB and initrd do not fit.
    Place(tessel_loader::PlacementError),
    /// The guest device tree could not be generated.
    GuestDt(tessel_guestdt::GuestDtError),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unsupported(w) => write!(f, "{w}"),
            Self::NotEnoughPcpus { want, free } => write!(
                f,
                "asks for {want} vCPUs but only {free} physical CPUs are free (static partitioning needs one each)"
            ),
            Self::Bank(e) => write!(f, "xen,static-mem: {e}"),
            Self::Ram(e) => write!(f, "RAM: {e}"),
            Self::Placement(w) => write!(f, "{w}"),
            Self::Map(e) => write!(f, "stage 2: {e}"),
            Self::Uart(e) => write!(f, "{e}"),
            Self::Vmid(e) => write!(f, "{e}"),
            Self::Passthrough(e) => write!(f, "{e}"),
            Self::VgicConfig(e) => write!(f, "vGIC: {e}"),
            Self::Vgic(e) => write!(f, "vGIC: {e}"),
            Self::Kernel(e) => write!(f, "kernel: {e}"),
            Self::Place(e) => write!(f, "{e}"),
            Self::GuestDt(e) => write!(f, "guest device tree: {e:?}"),
        }
    }
}

impl From<MapError> for BuildError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

/// Host facts domain building needs.
pub struct HostFacts {
    /// The hypervisor image (with .bss: stacks, heap, tables).
    pub image: (u64, u64),
    /// The host DTB.
    pub dtb: (u64, u64),
    /// The host GIC (for the GICv2 GICV mapping).
    pub gic: tessel_config::GicInfo,
    /// Host console UART (base, size, SPI).
    pub uart: Option<(u64, u64, Option<u32>)>,
    /// Number of online pCPUs.
    pub pcpus: usize,
    /// Stage-2 layout for this CPU.
    pub s2: Stage2Config,
    /// SPIs the host GIC implements.
    pub gic_spis: u32,
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

/// Builds domain `index` (VMID `index + 1`) from `cfg`, taking pCPUs from
/// `free` (in order, or per `xen,vcpu` hard affinity).
pub fn build(
    index: usize,
    cfg: &DomainConfig,
    host: &HostFacts,
    free: &mut [bool; MAX_CPUS],
    console: &mut tessel_vpl011::console::Console,
    pt: &mut Passthrough<'_>,
    mem: &mut HostMemory,
) -> Result<Domain, BuildError> {
    if cfg.direct_map && cfg.static_mem.is_empty() {
        return Err(BuildError::Unsupported(
            "direct-map requires xen,static-mem (a direct-mapped domain's RAM must be named)",
        ));
    }
    // pCPUs: one per vCPU, never shared.
    let free_count = free.iter().take(host.pcpus).filter(|f| **f).count();
    if cfg.cpus as usize > free_count {
        return Err(BuildError::NotEnoughPcpus {
            want: cfg.cpus,
            free: free_count,
        });
    }
    let mut vcpu_pcpu = Vec::new();
    for v in 0..cfg.cpus {
        let allowed = |p: usize| {
            cfg.vcpu_affinity
                .iter()
                .find(|a| a.id == v)
                .is_none_or(|a| {
                    a.hard_affinity.is_empty()
                        || a.hard_affinity
                            .iter()
                            .any(|r| (r.first as usize..=r.last as usize).contains(&p))
                })
        };
        let p =
            (0..host.pcpus)
                .find(|&p| free[p] && allowed(p))
                .ok_or(BuildError::NotEnoughPcpus {
                    want: cfg.cpus,
                    free: free_count,
                })?;
        free[p] = false;
        vcpu_pcpu.push(p);
    }

    let layout = if cfg.static_mem.is_empty() {
        mem.allocate_heap(&cfg.name, cfg.memory_kib)
            .map_err(BuildError::Ram)?
    } else {
        mem.reserve_static(&cfg.name, &cfg.static_mem)
            .map_err(BuildError::Bank)?;
        mem.allocate_static(&cfg.name, cfg.memory_kib, cfg.direct_map)
            .map_err(BuildError::Ram)?
    };

    let mut s2 = DomainStage2::new(host.s2, HeapTables, HwTlb)?;
    for piece in layout.pieces() {
        s2.map(piece.guest, piece.host, Attrs::RAM)?;
    }
    let mut vgic = build_vgic(cfg, host)?;
    // GICv2: the guest's CPU interface is the host GICV frame.
    if let Some(gicv) = host.gic.gicv {
        for r in vgic.regions() {
            if r.kind == tessel_vgic::RegionKind::CpuInterface {
                s2.map(
                    GuestRange::new(r.range.start, r.range.size.min(gicv.size)),
                    gicv.start,
                    Attrs::DEVICE,
                )?;
            }
        }
    }
    let vmid = (index + 1) as u16;
    let vttbr = s2.vttbr(vmid).map_err(BuildError::Vmid)?;

    let uart_cfg = if cfg.vpl011 && !cfg.direct_map {
        Some(Vpl011Config::VIRTUAL)
    } else if cfg.vpl011 {
        let (base, size, irq) = host.uart.ok_or(BuildError::Unsupported(
            "vpl011 needs a host console UART to take over",
        ))?;
        let irq = irq.ok_or(BuildError::Unsupported("the host UART has no interrupt"))?;
        Some(
            Vpl011Config::direct_mapped(
                tessel_addr::Range::new(tessel_addr::HostPhysAddr(base), size),
                irq,
            )
            .map_err(BuildError::Uart)?,
        )
    } else {
        None
    };

    let banks: Vec<GuestRange> = layout.guest_banks().to_vec();
    let loaded = load_images(cfg, &banks, &layout)?;
    let spec = guest_dt_spec(cfg, &banks, &vgic, uart_cfg.as_ref(), loaded.initrd);
    let dtb_bytes = spec
        .generate_with_limit(loaded.dtb.size as usize)
        .map_err(BuildError::GuestDt)?;
    let dtb_host = host_addr(
        &layout,
        GuestRange::new(loaded.dtb.start, dtb_bytes.len() as u64),
    )?;
    // SAFETY: the DTB slot is inside the domain's RAM (placement), which
    // nothing else uses; the source is our own buffer.
    unsafe { copy_in(dtb_host, dtb_bytes.as_ptr() as u64, dtb_bytes.len() as u64) };
    let entry = loaded.entry;
    let dtb = loaded.dtb.start.0;
    let kernel_range = loaded.kernel;
    let initrd_range = loaded.initrd;

    let devices = assign_devices(cfg, &mut s2, &mut vgic, uart_cfg.as_ref(), pt)?;

    let uart = uart_cfg.map(|config| DomainUart {
        config,
        dev: Vpl011::new(UartIrq::default()),
        console: console.add_domain(&cfg.name),
    });

    Ok(Domain {
        name: cfg.name.clone(),
        vmid,
        s2,
        vttbr,
        vtcr: host.s2.vtcr(),
        vcpu_pcpu,
        entry,
        dtb,
        kernel: kernel_range,
        initrd: initrd_range,
        dtb_size: dtb_bytes.len() as u64,
        devices,
        fault_reports: core::sync::atomic::AtomicUsize::new(0),
        ram: layout,
        rt: SpinLock::new(DomainRt {
            state: DomainState::default(),
            power: VcpuTable::new(cfg.cpus as usize),
            uart,
            vgic,
            uart_line: false,
        }),
    })
}

/// What device assignment needs: the claims so far and the host DT.
pub struct Passthrough<'a> {
    /// Who owns which host range and SPI.
    pub registry: Registry,
    /// The host device tree and GIC.
    pub view: HostView<'a>,
}

/// Gives the domain the devices its partial device tree asks for: their
/// MMIO mapped in stage 2 as Device memory, their SPIs backed by the
/// physical ones in the vGIC (virq == pirq, deactivated by the guest).
fn assign_devices(
    cfg: &DomainConfig,
    s2: &mut DomainStage2,
    vgic: &mut Vgic,
    uart: Option<&Vpl011Config>,
    pt: &mut Passthrough<'_>,
) -> Result<Assignment, BuildError> {
    let Some(dt) = cfg.device_tree.as_ref().filter(|_| cfg.passthrough) else {
        return Ok(Assignment::default());
    };
    let request = DomainRequest {
        name: &cfg.name,
        direct_mapped: cfg.direct_map,
        nr_spis: vgic.nr_spis() as u32,
        vpl011_spi: uart.map(|u| u.spi),
    };
    let a = pt
        .registry
        .assign(&request, module_bytes(dt.range), &pt.view)
        .map_err(BuildError::Passthrough)?;
    let result = (|| {
        for m in &a.mmio {
            s2.map(m.guest_range(), m.host.start, Attrs::DEVICE)?;
        }
        for &irq in &a.irqs {
            vgic.map_hw(VcpuId(0), irq, irq).map_err(BuildError::Vgic)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        pt.registry.release(&cfg.name);
        return Err(e);
    }
    Ok(a)
}

/// The vGIC of a direct-mapped domain: the host's frames, as many SPIs as
/// the host GIC has (or `nr_spis`), and the virtual timer PPI of every vCPU
/// backed by the physical one (list registers with HW = 1, so the guest's
/// deactivation completes the physical interrupt).
fn build_vgic(cfg: &DomainConfig, host: &HostFacts) -> Result<Vgic, BuildError> {
    let n = cfg.cpus as usize;
    let (version, host_gic) = match host.gic.version {
        tessel_config::GicVersion::V2 => (
            tessel_vgic::GicVersion::V2,
            HostGic::V2 {
                gicd: host.gic.gicd.start,
                gicc: host
                    .gic
                    .gicc
                    .ok_or(BuildError::Unsupported(
                        "the host GICv2 has no CPU interface",
                    ))?
                    .start,
            },
        ),
        tessel_config::GicVersion::V3 => (
            tessel_vgic::GicVersion::V3,
            HostGic::V3 {
                gicd: host.gic.gicd.start,
                redists: host.gic.redistributors.clone(),
            },
        ),
    };
    let layout = if cfg.direct_map {
        VgicLayout::native(&host_gic, n).map_err(BuildError::VgicConfig)?
    } else {
        VgicLayout::xen_virtual(version, n)
    };
    let nr_spis = cfg.nr_spis.map_or(host.gic_spis as usize, |s| s as usize);
    let config = VgicConfig::new(version, layout, n, nr_spis)
        .validated()
        .map_err(BuildError::VgicConfig)?;
    let mut vgic = Vgic::new(Model::default(), config).map_err(BuildError::Vgic)?;
    for v in 0..n {
        vgic.map_hw(VcpuId(v), crate::gic::VTIMER_PPI, crate::gic::VTIMER_PPI)
            .map_err(BuildError::Vgic)?;
    }
    Ok(vgic)
}

/// The host address behind guest range `r`, which must be backed by one
/// contiguous piece of host memory.
fn host_addr(layout: &RamLayout, r: GuestRange) -> Result<u64, BuildError> {
    let start = layout.gpa_to_hpa(r.start).ok_or(BuildError::Placement(
        "a boot image lies outside the domain's RAM",
    ))?;
    if r.size > 0 {
        let last = layout
            .gpa_to_hpa(GuestPhysAddr(r.start.0 + r.size - 1))
            .ok_or(BuildError::Placement(
                "a boot image lies outside the domain's RAM",
            ))?;
        if last.0 != start.0 + r.size - 1 {
            return Err(BuildError::Placement(
                "a boot image spans two host memory pieces of the domain's RAM",
            ));
        }
    }
    Ok(start.0)
}

/// Where the boot images ended up.
struct Loaded {
    kernel: GuestRange,
    entry: u64,
    dtb: GuestRange,
    initrd: Option<GuestRange>,
}

/// A boot module's bytes in host RAM.
fn module_bytes(range: tessel_addr::HostRange) -> &'static [u8] {
    // SAFETY: tessel-config checked that boot modules lie in host RAM,
    // which the EL2 identity map covers; modules are only read.
    unsafe { core::slice::from_raw_parts(range.start.0 as *const u8, range.size as usize) }
}

/// Copies (and, for gzip, inflates) the kernel and copies the initrd into
/// the first bank, following tessel-loader's placement rules. A module
/// without an arm64 Image header is loaded as a raw binary at the start of
/// the first bank (bare-metal test guests), with the DTB in the next 2 MiB
/// slot after it.
fn load_images(
    cfg: &DomainConfig,
    banks: &[GuestRange],
    layout: &RamLayout,
) -> Result<Loaded, BuildError> {
    let kernel = module_bytes(cfg.kernel.range);
    let initrd_len = cfg.ramdisk.as_ref().map(|r| r.range.size);
    let bank0 = *banks.first().ok_or(BuildError::Placement("no RAM bank"))?;
    let overlaps_module = |dst: GuestRange, m: tessel_addr::HostRange| {
        dst.start.0 < m.start.0 + m.size && m.start.0 < dst.start.0 + dst.size
    };
    let loaded = match tessel_loader::probe(kernel) {
        Ok(info) => {
            let p = tessel_loader::place(&tessel_loader::PlacementRequest {
                banks,
                kernel: &info.header,
                kernel_len: info.len,
                dtb_size: DTB_MAX,
                initrd_len,
            })
            .map_err(BuildError::Place)?;
            let kernel_host = host_addr(layout, p.kernel)?;
            if overlaps_module(
                GuestRange::new(GuestPhysAddr(kernel_host), p.kernel.size),
                cfg.kernel.range,
            ) {
                return Err(BuildError::Placement(
                    "the kernel module lies where the kernel must be loaded; move the module",
                ));
            }
            // SAFETY: the kernel footprint is host RAM backing the domain
            // (contiguous, checked by `host_addr`) and does not overlap the
            // module (checked above).
            let dst = unsafe {
                core::slice::from_raw_parts_mut(kernel_host as *mut u8, p.kernel.size as usize)
            };
            let n = tessel_loader::unpack_into(kernel, dst).map_err(BuildError::Kernel)?;
            crate::mmu::clean_inval_dcache(kernel_host, kernel_host + n as u64);
            Loaded {
                kernel: p.kernel,
                entry: p.entry.0,
                dtb: p.dtb,
                initrd: p.initrd,
            }
        }
        Err(tessel_loader::LoaderError::Image(_)) => {
            let k = GuestRange::new(bank0.start, cfg.kernel.range.size);
            let dtb_at = (k.start.0 + k.size + DTB_MAX - 1) & !(DTB_MAX - 1);
            let dtb = GuestRange::new(GuestPhysAddr(dtb_at), DTB_MAX);
            let initrd =
                initrd_len.map(|len| GuestRange::new(GuestPhysAddr(dtb_at + DTB_MAX), len));
            let end = initrd.map_or(dtb_at + DTB_MAX, |r| r.start.0 + r.size);
            if end > bank0.start.0 + bank0.size {
                return Err(BuildError::Placement(
                    "the raw kernel, DTB and initrd do not fit in the first static-mem bank",
                ));
            }
            let at = host_addr(layout, k)?;
            // SAFETY: the destination is host RAM backing the domain;
            // `copy` tolerates overlap.
            unsafe { copy_in(at, cfg.kernel.range.start.0, k.size) };
            Loaded {
                kernel: k,
                entry: k.start.0,
                dtb,
                initrd,
            }
        }
        Err(e) => return Err(BuildError::Kernel(e)),
    };
    if let (Some(r), Some(dst)) = (&cfg.ramdisk, loaded.initrd) {
        let at = host_addr(layout, dst)?;
        // SAFETY: the placement put the initrd inside the domain's RAM.
        unsafe { copy_in(at, r.range.start.0, r.range.size) };
    }
    Ok(loaded)
}

/// The guest device tree: the vGIC's frames and the vPL011 (host
/// addresses for a direct-mapped domain, Xen's virtual ones otherwise), the
/// domain's banks and vCPU MPIDRs.
fn guest_dt_spec<'a>(
    cfg: &'a DomainConfig,
    banks: &[GuestRange],
    vgic: &Vgic,
    uart: Option<&Vpl011Config>,
    initrd: Option<GuestRange>,
) -> tessel_guestdt::GuestDtSpec<'a> {
    use tessel_guestdt::{ChosenSpec, GicSpec, GuestDtSpec, TimerSpec, UartKind, UartSpec};
    let n = cfg.cpus as usize;
    // The vGIC's own frames: the host's for a direct-mapped domain, Xen's
    // virtual layout otherwise. GICv3 redistributor regions are trimmed to
    // one frame per vCPU.
    let regions = vgic.regions();
    let find =
        |k: tessel_vgic::RegionKind| regions.iter().find(|r| r.kind == k).map(|r| r.range.start);
    let gicd = find(tessel_vgic::RegionKind::Distributor).unwrap_or(GuestPhysAddr(0));
    let gic = match vgic.version() {
        tessel_vgic::GicVersion::V2 => GicSpec::V2 {
            gicd,
            gicc: find(tessel_vgic::RegionKind::CpuInterface).unwrap_or(GuestPhysAddr(0)),
        },
        tessel_vgic::GicVersion::V3 => {
            let mut left = n as u64;
            let mut out = Vec::new();
            for r in regions {
                if !matches!(r.kind, tessel_vgic::RegionKind::Redistributor { .. }) || left == 0 {
                    continue;
                }
                let frames = (r.range.size / tessel_guestdt::GICV3_GICR_STRIDE).min(left);
                left -= frames;
                out.push(GuestRange::new(
                    r.range.start,
                    frames * tessel_guestdt::GICV3_GICR_STRIDE,
                ));
            }
            GicSpec::V3 {
                gicd,
                redistributors: out,
            }
        }
    };
    GuestDtSpec {
        cpus: (0..n).map(tessel_trap::psci::vcpu_mpidr).collect(),
        cpu_compatible: String::from("arm,armv8"),
        memory: banks.to_vec(),
        gic,
        timer: TimerSpec::default(),
        vpl011: uart.map(|u| UartSpec {
            base: u.base,
            size: tessel_addr::PAGE_SIZE,
            spi: u.spi,
            kind: UartKind::SbsaUart,
            current_speed: 115_200,
        }),
        chosen: ChosenSpec {
            bootargs: cfg.bootargs().map(String::from),
            stdout_path: None,
            initrd,
        },
        partial_dtb: cfg.device_tree.as_ref().map(|d| module_bytes(d.range)),
    }
}

/// Builds every domain of `boot`, reporting the refused ones.
pub fn build_all(
    boot: &BootConfig,
    host: &HostFacts,
    console: &mut tessel_vpl011::console::Console,
    pt: &mut Passthrough<'_>,
) -> Vec<Domain> {
    let mut free = [false; MAX_CPUS];
    for f in free.iter_mut().take(host.pcpus) {
        *f = true;
    }
    let mut out = Vec::new();
    for e in boot.domain_errors() {
        println!("domain refused: {e}");
    }
    let mut mem = match HostMemory::new(&boot.host.ram, kept_memory(boot, host)) {
        Ok(m) => m,
        Err(e) => {
            println!("no domain can be built: host memory: {e}");
            return out;
        }
    };
    for cfg in boot.valid_domains() {
        let free_before = free;
        match build(out.len(), cfg, host, &mut free, console, pt, &mut mem) {
            Ok(d) => {
                report(&d);
                out.push(d);
            }
            Err(e) => {
                // Give back what the failed build took.
                free = free_before;
                mem.release(&cfg.name);
                pt.registry.release(&cfg.name);
                println!("domain {} refused: {e}", cfg.name);
            }
        }
    }
    out
}

/// Host memory no domain's RAM may come from: the hypervisor image (with
/// its stacks, tables and heap), the host DTB, every boot module and the
/// DT's reserved regions.
fn kept_memory(boot: &BootConfig, host: &HostFacts) -> Vec<Reserved> {
    let range =
        |(start, size): (u64, u64)| tessel_addr::Range::new(tessel_addr::HostPhysAddr(start), size);
    let mut out = alloc::vec![
        Reserved::new(range(host.image), ReservedKind::HypervisorImage),
        Reserved::new(
            range(host.dtb),
            ReservedKind::Module {
                kind: String::from("host device-tree"),
                domain: String::from("the hypervisor"),
            },
        ),
    ];
    for m in &boot.modules {
        out.push(Reserved::new(
            m.range,
            ReservedKind::Module {
                kind: alloc::format!("{:?}", m.kind),
                domain: m.domain.clone().unwrap_or_default(),
            },
        ));
    }
    for r in &boot.host.reserved {
        let kind = match &r.source {
            tessel_config::ReservedSource::MemReserve => ReservedKind::MemReserve,
            tessel_config::ReservedSource::Node(n) => {
                ReservedKind::ReservedMemory { node: n.clone() }
            }
        };
        out.push(Reserved::new(r.range, kind));
    }
    out
}

fn report(d: &Domain) {
    println!(
        "domain {} (VMID {}), {}, {} stage-2 tables:",
        d.name,
        d.vmid,
        if d.ram.is_direct_mapped() {
            "direct-mapped"
        } else {
            "virtual platform"
        },
        d.s2.table_count()
    );
    for p in d.ram.pieces() {
        println!("  memory {} from host {:#x}", p.guest, p.host.0);
    }
    for (v, p) in d.vcpu_pcpu.iter().enumerate() {
        println!("  vCPU{v} on pCPU{p}");
    }
    println!("  kernel loaded at {}, entry {:#x}", d.kernel, d.entry);
    if let Some(r) = d.initrd {
        println!("  initrd at {r}");
    }
    println!("  device tree at {:#x} ({} bytes)", d.dtb, d.dtb_size);
    let rt = d.rt.lock();
    for r in rt.vgic.regions() {
        let what = match r.kind {
            tessel_vgic::RegionKind::Distributor => "distributor (emulated)",
            tessel_vgic::RegionKind::Redistributor { .. } => "redistributors (emulated)",
            tessel_vgic::RegionKind::CpuInterface => "CPU interface (host GICV)",
        };
        let v = match rt.vgic.version() {
            tessel_vgic::GicVersion::V2 => 2,
            tessel_vgic::GicVersion::V3 => 3,
        };
        println!("  vGICv{v} {what} at {}", r.range);
    }
    println!(
        "  IRQs: virtual timer PPI {} (hardware-mapped), {} SPIs",
        crate::gic::VTIMER_PPI,
        rt.vgic.nr_spis()
    );
    if let Some(u) = &rt.uart {
        println!("  vpl011 at {} SPI {}", u.config.range(), u.config.spi);
    }
    for dev in &d.devices.devices {
        println!("  device {dev}");
    }
    for m in &d.devices.mmio {
        println!("    MMIO {} at guest {}", m.host, m.guest_range());
    }
    for irq in &d.devices.irqs {
        println!("    SPI {irq} (hardware-mapped)");
    }
    for w in &d.devices.warnings {
        println!("  warning: {w}");
    }
}
