//! Building the domains described under `/chosen` and the state they keep
//! while they run.
//!
//! Only direct-mapped domains with `xen,static-mem` are built here: their
//! RAM is the host RAM named by the banks, mapped 1:1 in stage 2.

use crate::boot::MAX_CPUS;
use crate::println;
use crate::s2::{MapError, MemKind, Stage2};
use crate::sync::SpinLock;
use alloc::string::String;
use alloc::vec::Vec;
use tessel_config::{BootConfig, DomainConfig};
use tessel_trap::{DomainState, VcpuTable};
use tessel_vpl011::console::ConsoleId;
use tessel_vpl011::{IrqLine, Vpl011, Vpl011Config};

/// The arm64 Image magic "ARM\x64" at offset 0x38 (Linux
/// Documentation/arch/arm64/booting.rst).
const IMAGE_MAGIC: u32 = 0x644d_5241;
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
}

/// A built domain.
pub struct Domain {
    /// Name from the DT (`domU1`).
    pub name: String,
    /// Stage-2 VMID.
    pub vmid: u16,
    /// Stage-2 tables.
    pub s2: Stage2,
    /// pCPU of each vCPU.
    pub vcpu_pcpu: Vec<usize>,
    /// Boot vCPU entry point (guest physical).
    pub entry: u64,
    /// x0 for the boot vCPU (the guest DTB's address, or 0).
    pub dtb: u64,
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
    pub gic: crate::hostdt::GicInfo,
    /// Host console UART (base, size, SPI).
    pub uart: Option<(u64, u64, Option<u32>)>,
    /// Number of online pCPUs.
    pub pcpus: usize,
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

fn read_u32(addr: u64) -> u32 {
    // SAFETY: only called on module addresses inside host RAM, which the
    // EL2 map covers; alignment is 4 at the offsets used.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn read_u64(addr: u64) -> u64 {
    // SAFETY: as in `read_u32`.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Builds domain `index` (VMID `index + 1`) from `cfg`, taking pCPUs from
/// `free` (in order, or per `xen,vcpu` hard affinity).
pub fn build(
    index: usize,
    cfg: &DomainConfig,
    host: &HostFacts,
    free: &mut [bool; MAX_CPUS],
    console: &mut tessel_vpl011::console::Console,
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

    let mut s2 = Stage2::new()?;
    for b in &cfg.static_mem {
        s2.map(b.start.0, b.start.0, b.size, MemKind::Ram)?;
    }
    // GICv2: the guest's GICC is the host GICV (same address as the host
    // GICC for a direct-mapped domain).
    if let (Some(gicv), crate::hostdt::GicVersion::V2) = (host.gic.gicv, host.gic.version) {
        let gicc = host.gic.cpu_or_redist;
        s2.map(gicc.0, gicv.0, gicc.1.min(gicv.1), MemKind::Device)?;
    }

    // Placement in bank 0: kernel at the start (plus text_offset for an
    // arm64 Image), DTB at the top 2 MiB, ramdisk just below it.
    let bank0 = cfg
        .static_mem
        .first()
        .ok_or(BuildError::Placement("no RAM bank"))?;
    let (b0, b0_end) = (bank0.start.0, bank0.start.0 + bank0.size);
    let k = cfg.kernel.range;
    let (kernel_at, kernel_span) = if k.size >= 64 && read_u32(k.start.0 + 0x38) == IMAGE_MAGIC {
        let text_offset = read_u64(k.start.0 + 8);
        let image_size = read_u64(k.start.0 + 16).max(k.size);
        let base = (b0 + (2 << 20) - 1) & !((2 << 20) - 1);
        (base + text_offset, image_size)
    } else {
        (b0, k.size)
    };
    if kernel_at + kernel_span > b0_end {
        return Err(BuildError::Placement(
            "the kernel does not fit in the first static-mem bank",
        ));
    }
    let dtb_at = (b0_end.min(b0 + (512 << 20)) - DTB_MAX) & !(DTB_MAX - 1);
    if dtb_at < kernel_at + kernel_span {
        return Err(BuildError::Placement(
            "no room for the DTB above the kernel in the first bank",
        ));
    }
    // SAFETY: the destination is the domain's own RAM bank (checked not to
    // overlap the hypervisor); the source is the boot module in host RAM.
    unsafe { copy_in(kernel_at, k.start.0, k.size) };
    // No guest device tree is generated yet (the domain builder will
    // provide one): the boot vCPU gets x0 = 0.
    let dtb = 0;
    if let Some(r) = &cfg.ramdisk {
        let at = (dtb_at - r.range.size) & !0xfff;
        if at < kernel_at + kernel_span {
            return Err(BuildError::Placement(
                "the ramdisk does not fit between kernel and DTB",
            ));
        }
        // SAFETY: as for the kernel.
        unsafe { copy_in(at, r.range.start.0, r.range.size) };
    }

    let uart = if cfg.vpl011 {
        let (base, size, irq) = host.uart.ok_or(BuildError::Unsupported(
            "vpl011 needs a host console UART to take over",
        ))?;
        let irq = irq.ok_or(BuildError::Unsupported("the host UART has no interrupt"))?;
        let config = Vpl011Config::direct_mapped(
            tessel_addr::Range::new(tessel_addr::HostPhysAddr(base), size),
            irq,
        )
        .map_err(BuildError::Uart)?;
        Some(DomainUart {
            config,
            dev: Vpl011::new(UartIrq::default()),
            console: console.add_domain(&cfg.name),
        })
    } else {
        None
    };

    Ok(Domain {
        name: cfg.name.clone(),
        vmid: (index + 1) as u16,
        s2,
        vcpu_pcpu,
        entry: kernel_at,
        dtb,
        rt: SpinLock::new(DomainRt {
            state: DomainState::default(),
            power: VcpuTable::new(cfg.cpus as usize),
            uart,
        }),
    })
}

/// Builds every domain of `boot`, reporting the refused ones.
pub fn build_all(
    boot: &BootConfig,
    host: &HostFacts,
    console: &mut tessel_vpl011::console::Console,
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
        match build(out.len(), cfg, host, &mut free, console) {
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
    println!("domain {} (VMID {}), direct-mapped:", d.name, d.vmid);
    for b in &cfg.static_mem {
        println!("  memory {}", b);
    }
    for (v, p) in d.vcpu_pcpu.iter().enumerate() {
        println!("  vCPU{v} on pCPU{p}");
    }
    println!("  kernel {} -> entry {:#x}", cfg.kernel.range, d.entry);
    if let Some(u) = &d.rt.lock().uart {
        println!("  vpl011 at {} SPI {}", u.config.range(), u.config.spi);
    }
}
