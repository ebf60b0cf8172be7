//! Building the domains described under `/chosen` and the state they keep
//! while they run.
//!
//! Only direct-mapped domains with `xen,static-mem` are built here: their
//! RAM is the host RAM named by the banks, mapped 1:1 in stage 2.

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
    /// A static-mem bank overlaps the hypervisor's own memory.
    BankClash {
        /// Bank start.
        start: u64,
        /// Bank size.
        size: u64,
    },
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
            Self::BankClash { start, size } => write!(
                f,
                "xen,static-mem bank {start:#x}+{size:#x} overlaps the hypervisor's own memory"
            ),
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

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
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
) -> Result<Domain, BuildError> {
    if !cfg.direct_map || cfg.static_mem.is_empty() {
        return Err(BuildError::Unsupported(
            "only direct-mapped domains with xen,static-mem are supported (add direct-map and xen,static-mem)",
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

    for b in &cfg.static_mem {
        let bank = (b.start.0, b.size);
        if overlaps(bank, host.image) || overlaps(bank, host.dtb) {
            return Err(BuildError::BankClash {
                start: bank.0,
                size: bank.1,
            });
        }
    }

    let mut s2 = DomainStage2::new(host.s2, HeapTables, HwTlb)?;
    for b in &cfg.static_mem {
        s2.identity_map(*b, Attrs::RAM)?;
    }
    // GICv2: the guest's GICC is the host GICV (same address as the host
    // GICC for a direct-mapped domain).
    if let (Some(gicv), Some(gicc), tessel_config::GicVersion::V2) =
        (host.gic.gicv, host.gic.gicc, host.gic.version)
    {
        s2.map(
            GuestRange::new(
                GuestPhysAddr::identity(gicc.start),
                gicc.size.min(gicv.size),
            ),
            gicv.start,
            Attrs::DEVICE,
        )?;
    }
    let vmid = (index + 1) as u16;
    let vttbr = s2.vttbr(vmid).map_err(BuildError::Vmid)?;

    let uart_cfg = if cfg.vpl011 {
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

    let banks: Vec<GuestRange> = cfg
        .static_mem
        .iter()
        .map(|b| GuestRange::new(GuestPhysAddr::identity(b.start), b.size))
        .collect();
    let loaded = load_images(cfg, &banks)?;
    let spec = guest_dt_spec(cfg, host, &banks, uart_cfg.as_ref(), loaded.initrd);
    let dtb_bytes = spec
        .generate_with_limit(loaded.dtb.size as usize)
        .map_err(BuildError::GuestDt)?;
    // SAFETY: the DTB slot is inside the domain's first bank (placement),
    // which nothing else uses; the source is our own buffer.
    unsafe {
        copy_in(
            loaded.dtb.start.0,
            dtb_bytes.as_ptr() as u64,
            dtb_bytes.len() as u64,
        )
    };
    let entry = loaded.entry;
    let dtb = loaded.dtb.start.0;
    let kernel_range = loaded.kernel;
    let initrd_range = loaded.initrd;

    let mut vgic = build_vgic(cfg, host)?;
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
    let layout = VgicLayout::native(&host_gic, n).map_err(BuildError::VgicConfig)?;
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
fn load_images(cfg: &DomainConfig, banks: &[GuestRange]) -> Result<Loaded, BuildError> {
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
            if overlaps_module(p.kernel, cfg.kernel.range) {
                return Err(BuildError::Placement(
                    "the kernel module lies where the kernel must be loaded; move the module",
                ));
            }
            // SAFETY: the kernel footprint is inside the domain's bank and
            // does not overlap the module (checked above).
            let dst = unsafe {
                core::slice::from_raw_parts_mut(p.kernel.start.0 as *mut u8, p.kernel.size as usize)
            };
            let n = tessel_loader::unpack_into(kernel, dst).map_err(BuildError::Kernel)?;
            crate::mmu::clean_inval_dcache(p.kernel.start.0, p.kernel.start.0 + n as u64);
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
            // SAFETY: the destination is the domain's own bank, checked not
            // to overlap the hypervisor; `copy` tolerates overlap.
            unsafe { copy_in(k.start.0, cfg.kernel.range.start.0, k.size) };
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
        // SAFETY: the placement put the initrd inside the first bank.
        unsafe { copy_in(dst.start.0, r.range.start.0, r.range.size) };
    }
    Ok(loaded)
}

/// The guest device tree of a direct-mapped domain: the host's GIC frames,
/// UART address and SPI, the domain's banks and vCPU MPIDRs.
fn guest_dt_spec<'a>(
    cfg: &'a DomainConfig,
    host: &HostFacts,
    banks: &[GuestRange],
    uart: Option<&Vpl011Config>,
    initrd: Option<GuestRange>,
) -> tessel_guestdt::GuestDtSpec<'a> {
    use tessel_guestdt::{ChosenSpec, GicSpec, GuestDtSpec, TimerSpec, UartKind, UartSpec};
    let n = cfg.cpus as usize;
    let gic = match host.gic.version {
        tessel_config::GicVersion::V2 => GicSpec::V2 {
            gicd: GuestPhysAddr::identity(host.gic.gicd.start),
            gicc: GuestPhysAddr(host.gic.gicc.map_or(0, |c| c.start.0)),
        },
        tessel_config::GicVersion::V3 => {
            // The host regions, in order, until they hold a frame per vCPU.
            let mut left = n as u64;
            let mut regions = Vec::new();
            for r in &host.gic.redistributors {
                if left == 0 {
                    break;
                }
                let frames = (r.size / tessel_guestdt::GICV3_GICR_STRIDE).min(left);
                left -= frames;
                regions.push(GuestRange::new(
                    GuestPhysAddr::identity(r.start),
                    frames * tessel_guestdt::GICV3_GICR_STRIDE,
                ));
            }
            GicSpec::V3 {
                gicd: GuestPhysAddr::identity(host.gic.gicd.start),
                redistributors: regions,
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
    for cfg in boot.valid_domains() {
        match build(out.len(), cfg, host, &mut free, console, pt) {
            Ok(d) => {
                report(&d, cfg);
                out.push(d);
            }
            Err(e) => println!("domain {} refused: {e}", cfg.name),
        }
    }
    out
}

fn report(d: &Domain, cfg: &DomainConfig) {
    println!(
        "domain {} (VMID {}), direct-mapped, {} stage-2 tables:",
        d.name,
        d.vmid,
        d.s2.table_count()
    );
    for b in &cfg.static_mem {
        println!("  memory {}", b);
    }
    for (v, p) in d.vcpu_pcpu.iter().enumerate() {
        println!("  vCPU{v} on pCPU{p}");
    }
    println!(
        "  kernel {} loaded at {}, entry {:#x}",
        cfg.kernel.range, d.kernel, d.entry
    );
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
