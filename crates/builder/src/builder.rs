//! The planning itself: resources claimed domain by domain, everything
//! given back when a domain is refused.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};
use tessel_config::{BootConfig, DomainConfig, GicInfo, ReservedSource, VgicModel};
use tessel_domctl::{CreateDomainRequest, DomainFlags, HostCapabilities};
use tessel_guestdt::{ChosenSpec, GicSpec, GuestDtSpec, TimerSpec, UartSpec};
use tessel_passthrough::{Assignment, DomainRequest, Forbidden, HostView, Registry};
use tessel_static_mem::{BankError, HostMemory, RamError, RamLayout, Reserved, ReservedKind};
use tessel_vgic::{HostGic, MmioRegion, Model, RegionKind, VgicConfig, VgicLayout};
use tessel_vpl011::Vpl011Config;

use crate::error::{BuildError, BuildErrorKind as K};
use crate::pcpu::{PinError, pin};
use crate::plan::{
    BootImages, CopyMethod, CopyOp, CopySource, DomainPlan, HwIrq, Mapping, MappingKind, VgicPlan,
};
use crate::{DTB_SLOT, HostFacts, ModuleMemory, VTIMER_PPI};

/// Every domain's outcome, in `/chosen` order of the valid domains.
pub type Outcomes<'m> = Vec<Result<DomainPlan<'m>, Box<BuildError>>>;

/// Plans every valid domain of `boot` (see [`Builder`]). Fails only when
/// the host memory map itself is unusable.
pub fn plan_all<'a, 'm, M: ModuleMemory<'m>>(
    boot: &'a BootConfig,
    host: &'a HostFacts,
    modules: M,
) -> Result<Outcomes<'m>, RamError> {
    plan_all_dyn(boot, host, &modules)
}

/// [`plan_all`] with the boot modules behind a trait object: the planner
/// is then compiled once, in this crate and at its optimisation level,
/// rather than in (and as) each crate that names a [`ModuleMemory`].
#[inline(never)]
fn plan_all_dyn<'m>(
    boot: &BootConfig,
    host: &HostFacts,
    modules: &dyn ModuleMemory<'m>,
) -> Result<Outcomes<'m>, RamError> {
    let mut p = Planner::new(boot, host)?;
    let mut out = Vec::new();
    for cfg in boot.valid_domains() {
        out.push(p.plan(cfg, modules));
    }
    Ok(out)
}

/// Host memory no domain's RAM may come from: the hypervisor image (with
/// its stacks, tables and heap), the host DTB, every boot module and the
/// device tree's reserved regions.
pub fn kept_memory(boot: &BootConfig, host: &HostFacts) -> Vec<Reserved> {
    let mut out = vec![
        Reserved::new(host.image, ReservedKind::HypervisorImage),
        Reserved::new(
            host.dtb,
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
                kind: String::from(m.kind.compatible()),
                domain: m.domain.clone().unwrap_or_else(|| String::from("/chosen")),
            },
        ));
    }
    for r in &boot.host.reserved {
        let kind = match &r.source {
            ReservedSource::MemReserve => ReservedKind::MemReserve,
            ReservedSource::Node(n) => ReservedKind::ReservedMemory { node: n.clone() },
        };
        out.push(Reserved::new(r.range, kind));
    }
    out
}

/// Host regions no domain may be given as a device: RAM (domains get RAM
/// only as RAM), and the GIC and console frames the hypervisor keeps.
pub fn kept_regions(host: &tessel_config::HostPlatform) -> Vec<Forbidden> {
    let mut out = Vec::new();
    let mut keep = |name: &str, range: HostRange| {
        out.push(Forbidden {
            name: String::from(name),
            range,
        })
    };
    for r in &host.ram {
        keep("RAM", *r);
    }
    keep("GIC distributor", host.gic.gicd);
    for r in &host.gic.redistributors {
        keep("GIC redistributors", *r);
    }
    for (name, r) in [
        ("GIC CPU interface", host.gic.gicc),
        ("GIC virtual interface control", host.gic.gich),
        ("GIC virtual CPU interface", host.gic.gicv),
    ] {
        if let Some(r) = r {
            keep(name, r);
        }
    }
    if let Some(u) = &host.console {
        keep("console UART", u.mmio);
    }
    out
}

/// The dom0less domain builder: plans domains one at a time against what
/// earlier domains took.
///
/// Creating it reserves the `xen,static-mem` banks of every valid domain
/// first (as Xen does at early boot), so RAM for a domain without static
/// memory never comes from a bank a later domain names. A refused domain
/// gives back its heap RAM, pCPUs and devices; its static banks stay
/// reserved for it (unused), as in Xen.
pub struct Builder<'a, 'm, M> {
    planner: Planner<'a>,
    modules: M,
    _bytes: core::marker::PhantomData<&'m [u8]>,
}

impl<'a, 'm, M: ModuleMemory<'m>> Builder<'a, 'm, M> {
    /// A builder over `boot`'s host, with the hypervisor's own memory
    /// ([`kept_memory`]) and device frames ([`kept_regions`]) kept out.
    pub fn new(boot: &'a BootConfig, host: &'a HostFacts, modules: M) -> Result<Self, RamError> {
        Ok(Self {
            planner: Planner::new(boot, host)?,
            modules,
            _bytes: core::marker::PhantomData,
        })
    }

    /// Host memory as claimed so far.
    pub fn memory(&self) -> &HostMemory {
        &self.planner.mem
    }

    /// Devices as assigned so far.
    pub fn registry(&self) -> &Registry {
        &self.planner.registry
    }

    /// Which pCPUs are still free.
    pub fn free_pcpus(&self) -> &[bool] {
        &self.planner.free
    }

    /// Plans `cfg`, claiming its resources, or refuses it and gives back
    /// whatever it took.
    pub fn plan(&mut self, cfg: &DomainConfig) -> Result<DomainPlan<'m>, Box<BuildError>> {
        self.planner.plan(cfg, &self.modules)
    }
}

/// The state of [`Builder`] without the boot modules, which its methods
/// take as a trait object: not generic, so compiled once, in this crate.
struct Planner<'a> {
    boot: &'a BootConfig,
    host: &'a HostFacts,
    mem: HostMemory,
    registry: Registry,
    free: Vec<bool>,
    next_vmid: u32,
    /// Domains whose static banks could not be reserved, and why.
    bank_errors: Vec<(String, BankError)>,
}

impl<'a> Planner<'a> {
    /// See [`Builder::new`].
    fn new(boot: &'a BootConfig, host: &'a HostFacts) -> Result<Self, RamError> {
        let mut mem = HostMemory::new(&boot.host.ram, kept_memory(boot, host))?;
        let mut bank_errors = Vec::new();
        for cfg in boot.valid_domains().filter(|c| !c.static_mem.is_empty()) {
            if let Err(e) = mem.reserve_static(&cfg.name, &cfg.static_mem) {
                bank_errors.push((cfg.name.clone(), e));
            }
        }
        Ok(Self {
            boot,
            host,
            mem,
            registry: Registry::new(kept_regions(&boot.host)),
            free: host.free_pcpus.clone(),
            next_vmid: 1,
            bank_errors,
        })
    }

    /// See [`Builder::plan`].
    fn plan<'m>(
        &mut self,
        cfg: &DomainConfig,
        modules: &dyn ModuleMemory<'m>,
    ) -> Result<DomainPlan<'m>, Box<BuildError>> {
        let free_before = self.free.clone();
        let r = self.try_plan(cfg, modules);
        match &r {
            Ok(p) => {
                self.next_vmid = u32::from(p.vmid) + 1;
            }
            Err(_) => {
                self.free = free_before;
                self.mem.release(&cfg.name);
                self.registry.release(&cfg.name);
            }
        }
        r
    }

    /// The domain's vGIC model: its own `tessel,vgic-model`, else the
    /// boot-wide `vgic=`, else [`Model::default`]. A model this build lacks
    /// refuses the domain when the domain names it, and gives the classic
    /// model when only `vgic=` does (the flag is then true, and the boot
    /// report says so): one boot argument should not refuse every domain.
    fn vgic_model(&self, cfg: &DomainConfig) -> Result<(Model, bool), Box<BuildError>> {
        let model = |m| match m {
            VgicModel::Classic => Model::Classic,
            VgicModel::PerIrq => Model::PerIrq,
        };
        match (cfg.vgic_model.map(model), self.boot.vgic_model.map(model)) {
            (Some(m), _) if !m.is_built() => Err(BuildError::new(
                &cfg.name,
                Some("tessel,vgic-model"),
                K::VgicModelNotBuilt,
            )),
            (Some(m), _) => Ok((m, false)),
            (None, Some(m)) if !m.is_built() => Ok((Model::Classic, true)),
            (None, Some(m)) => Ok((m, false)),
            (None, None) => Ok((Model::default(), false)),
        }
    }

    fn try_plan<'m>(
        &mut self,
        cfg: &DomainConfig,
        modules: &dyn ModuleMemory<'m>,
    ) -> Result<DomainPlan<'m>, Box<BuildError>> {
        let name = cfg.name.as_str();
        let err = |property, kind| BuildError::new(name, property, kind);
        let caps = HostCapabilities {
            iommu: self.boot.host.has_iommu,
            vpmu: false,
            gic: match self.boot.host.gic.version {
                tessel_config::GicVersion::V2 => tessel_domctl::GicVersion::V2,
                tessel_config::GicVersion::V3 => tessel_domctl::GicVersion::V3,
            },
        };
        let request = CreateDomainRequest::from_builder(flags(cfg), cfg.cpus);
        request.validate(&caps).map_err(|e| flags_error(name, e))?;
        let (model, default_unavailable) = self.vgic_model(cfg)?;

        // pCPUs: one per vCPU, never shared.
        let vcpu_pcpu = pin(&self.free, cfg.cpus, &cfg.vcpu_affinity).map_err(|e| match e {
            PinError::TooFew { free } => err(
                Some("cpus"),
                K::NotEnoughPcpus {
                    want: cfg.cpus,
                    free,
                },
            ),
            PinError::Affinity { vcpu } => err(Some("hard-affinity"), K::Affinity { vcpu }),
        })?;
        for &p in &vcpu_pcpu {
            self.free[p] = false;
        }

        let ram = self.ram(cfg)?;
        let vpl011 = self.vpl011(cfg)?;
        let (vgic_config, gicv) = self.vgic(cfg)?;
        let (devices, pt_node) =
            self.devices(cfg, modules, vgic_config.nr_spis, vpl011.as_ref())?;
        // The virtual timer of each vCPU, then the passthrough SPIs (on
        // vCPU0): one allocation, filled by plain loops.
        let n = cfg.cpus as usize;
        let mut hw_irqs = Vec::with_capacity(n + devices.irqs.len());
        for vcpu in 0..n {
            hw_irqs.push(HwIrq {
                vcpu,
                virq: VTIMER_PPI,
                pirq: VTIMER_PPI,
            });
        }
        for &irq in &devices.irqs {
            hw_irqs.push(HwIrq {
                vcpu: 0,
                virq: irq,
                pirq: irq,
            });
        }
        let has_devices = !devices.mmio.is_empty() || !devices.irqs.is_empty();
        let request = request.with_passthrough(has_devices);
        request.validate(&caps).map_err(|e| flags_error(name, e))?;

        let vgic = VgicPlan {
            model,
            default_unavailable,
            config: vgic_config,
            hw_irqs,
        };
        // A dry run, so a hardware mapping the vGIC refuses refuses the
        // domain here rather than in the hypervisor.
        vgic.instantiate()
            .map_err(|e| err(pt_node_prop(&devices), K::Vgic(e)))?;

        // The vGIC's frames, listed once for the three users below.
        let regions = vgic.regions();
        let mappings = mappings(&ram, &regions, gicv, &devices);
        self.check_mappings(name, &pt_node, &mappings, &regions, vpl011.as_ref())?;

        let (boot, mut copies) = self.load(cfg, modules, &ram)?;
        let guest_dt = self.guest_dt(
            cfg,
            modules,
            &ram,
            (vgic.version(), &regions),
            vpl011.as_ref(),
            boot.initrd,
        )?;
        let dtb = guest_dt
            .generate_with_limit(boot.dtb.size as usize)
            .map_err(|e| err(None, K::GuestDt(Box::new(e))))?;
        let dtb_dest = host_range(&ram, GuestRange::new(boot.dtb.start, dtb.len() as u64))
            .map_err(|k| err(None, k))?;
        copies.push(CopyOp {
            source: CopySource::GuestDtb,
            dest: dtb_dest,
            method: CopyMethod::Verbatim,
        });

        let max = self.host.stage2.vmid_bits().max_vmid();
        let vmid = u16::try_from(self.next_vmid)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| err(None, K::NoVmid { max }))?;

        Ok(DomainPlan {
            name: String::from(name),
            request,
            vmid,
            ram,
            vcpu_pcpu,
            vgic,
            vpl011,
            devices,
            boot,
            guest_dt,
            dtb,
            mappings,
            copies,
        })
    }

    /// The domain's RAM: its static banks (1:1 or packed at Xen's guest
    /// RAM base) or heap memory at Xen's guest RAM base.
    // Kept out of line: inlined into the planner it makes the EL2 image
    // larger (measured).
    #[inline(never)]
    fn ram(&mut self, cfg: &DomainConfig) -> Result<RamLayout, Box<BuildError>> {
        let name = cfg.name.as_str();
        if cfg.static_mem.is_empty() {
            return self
                .mem
                .allocate_heap(name, cfg.memory_kib)
                .map_err(|e| BuildError::new(name, Some("memory"), K::Ram(e)));
        }
        // Handed over rather than cloned: a domain is planned once. (Were
        // it planned again, it would be refused all the same, at the same
        // property, for having no banks reserved.)
        if let Some(i) = self.bank_errors.iter().position(|(n, _)| n == name) {
            let (_, e) = self.bank_errors.swap_remove(i);
            return Err(BuildError::new(
                name,
                Some("xen,static-mem"),
                K::Bank(Box::new(e)),
            ));
        }
        self.mem
            .allocate_static(name, cfg.memory_kib, cfg.direct_map)
            .map_err(|e| {
                let prop = match e {
                    tessel_static_mem::LayoutError::TooManyBanks { .. }
                    | tessel_static_mem::LayoutError::NoBanks
                    | tessel_static_mem::LayoutError::NotReserved => "xen,static-mem",
                    _ => "memory",
                };
                BuildError::new(name, Some(prop), K::Ram(e))
            })
    }

    /// The vPL011: Xen's virtual one, or the host console UART's address
    /// and SPI for a direct-mapped domain.
    fn vpl011(&self, cfg: &DomainConfig) -> Result<Option<Vpl011Config>, Box<BuildError>> {
        let err = |kind| BuildError::new(&cfg.name, Some("vpl011"), kind);
        if !cfg.vpl011 {
            return Ok(None);
        }
        if !cfg.direct_map {
            return Ok(Some(Vpl011Config::VIRTUAL));
        }
        let uart = self
            .boot
            .host
            .console
            .as_ref()
            .ok_or_else(|| err(K::NoHostUart))?;
        let irq = uart.intid.ok_or_else(|| err(K::NoHostUart))?;
        Vpl011Config::direct_mapped(uart.mmio, irq)
            .map(Some)
            .map_err(|e| err(K::Uart(e)))
    }

    /// The vGIC configuration (host frames for a direct-mapped domain,
    /// Xen's virtual layout otherwise) and, on GICv2, the host GICV frame
    /// that backs the guest's CPU interface.
    fn vgic(&self, cfg: &DomainConfig) -> Result<(VgicConfig, Option<HostRange>), Box<BuildError>> {
        let name = cfg.name.as_str();
        let gic: &GicInfo = &self.boot.host.gic;
        let n = cfg.cpus as usize;
        let frame = |frame| BuildError::new(name, None, K::HostGicFrame { frame });
        let (version, host_gic, gicv) = match gic.version {
            tessel_config::GicVersion::V2 => (
                tessel_vgic::GicVersion::V2,
                HostGic::V2 {
                    gicd: gic.gicd.start,
                    gicc: gic.gicc.ok_or_else(|| frame("CPU interface"))?.start,
                },
                Some(gic.gicv.ok_or_else(|| frame("virtual CPU interface"))?),
            ),
            tessel_config::GicVersion::V3 => (
                tessel_vgic::GicVersion::V3,
                HostGic::V3 {
                    gicd: gic.gicd.start,
                    redists: gic.redistributors.clone(),
                },
                None,
            ),
        };
        let vgic_err = |e: tessel_vgic::ConfigError| {
            let prop = match e {
                tessel_vgic::ConfigError::SpiCount { .. } => "nr_spis",
                tessel_vgic::ConfigError::VcpuCount { .. }
                | tessel_vgic::ConfigError::RedistributorsTooFew { .. } => "cpus",
                _ => "direct-map",
            };
            BuildError::new(name, Some(prop), K::VgicConfig(e))
        };
        let layout = if cfg.direct_map {
            VgicLayout::native(&host_gic, n).map_err(vgic_err)?
        } else {
            VgicLayout::xen_virtual(version, n)
        };
        let nr_spis = cfg
            .nr_spis
            .map_or(self.host.gic_spis as usize, |s| s as usize);
        let config = VgicConfig::new(version, layout, n, nr_spis)
            .validated()
            .map_err(vgic_err)?;
        Ok((config, gicv))
    }

    /// The devices the domain's partial device tree asks for, and the
    /// partial device tree's node (for messages).
    fn devices(
        &mut self,
        cfg: &DomainConfig,
        modules: &dyn ModuleMemory<'_>,
        nr_spis: usize,
        vpl011: Option<&Vpl011Config>,
    ) -> Result<(Assignment, Option<String>), Box<BuildError>> {
        let Some(dt) = cfg.device_tree.as_ref().filter(|_| cfg.passthrough) else {
            return Ok((Assignment::default(), None));
        };
        let bytes = module(modules, &cfg.name, &dt.node, dt.range)?;
        let request = DomainRequest {
            name: &cfg.name,
            direct_mapped: cfg.direct_map,
            nr_spis: nr_spis as u32,
            vpl011_spi: vpl011.map(|u| u.spi),
        };
        let view = HostView {
            dt: &self.boot.tree,
            gic_path: &self.boot.host.gic.path,
            has_iommu: self.boot.host.has_iommu,
        };
        let a = self
            .registry
            .assign(&request, bytes, &view)
            .map_err(|e| BuildError::new(&cfg.name, None, K::Passthrough(e)).at(&dt.node))?;
        Ok((a, Some(dt.node.clone())))
    }

    /// Checks the domain's mappings: inside the guest and host address
    /// spaces, no two overlapping, none hiding an emulated frame.
    fn check_mappings(
        &self,
        name: &str,
        pt_node: &Option<String>,
        mappings: &[Mapping],
        regions: &[MmioRegion],
        vpl011: Option<&Vpl011Config>,
    ) -> Result<(), Box<BuildError>> {
        let s2 = &self.host.stage2;
        // Blame the partial device tree for a passthrough mapping, the
        // domain's `memory` for RAM.
        let fail = |m: &Mapping, kind| match (m.kind, pt_node) {
            (MappingKind::Passthrough, Some(n)) => {
                BuildError::new(name, Some("xen,reg"), kind).at(n)
            }
            (MappingKind::Ram, _) => BuildError::new(name, Some("memory"), kind),
            _ => BuildError::new(name, None, kind),
        };
        // The frames the hypervisor emulates: the vGIC's (but its CPU
        // interface, which is the host's GICV), then the vPL011.
        let emulated = regions
            .iter()
            .filter(|r| r.kind != RegionKind::CpuInterface)
            .map(|r| {
                let what = match r.kind {
                    RegionKind::Distributor => "GIC distributor",
                    _ => "GIC redistributors",
                };
                (what, r.range)
            })
            .chain(vpl011.map(|u| ("vPL011", u.range())));
        for (i, m) in mappings.iter().enumerate() {
            let guest_end = m.guest.start.0.checked_add(m.guest.size);
            let host_end = m.host.0.checked_add(m.guest.size);
            if guest_end.is_none_or(|e| e > s2.ipa_size())
                || host_end.is_none_or(|e| e > 1u64 << s2.pa_bits())
            {
                return Err(fail(
                    m,
                    K::AddressTooHigh {
                        guest: m.guest,
                        host: m.host_range(),
                        ipa_bits: s2.ipa_bits(),
                        pa_bits: s2.pa_bits(),
                    },
                ));
            }
            if let Some(first) = mappings[..i].iter().find(|o| o.guest.overlaps(&m.guest)) {
                let (first, second) = (first.guest, m.guest);
                return Err(fail(m, K::MappingOverlap { first, second }));
            }
            if let Some((what, region)) = emulated.clone().find(|(_, r)| r.overlaps(&m.guest)) {
                let mapping = m.guest;
                return Err(fail(
                    m,
                    K::HidesEmulated {
                        mapping,
                        what,
                        region,
                    },
                ));
            }
        }
        Ok(())
    }

    /// Places kernel, DTB and initrd in the first bank (tessel-loader's
    /// rules for an arm64 Image; a module without an Image header is a raw
    /// binary loaded at the start of the first bank, with the DTB in the
    /// next 2 MiB slot and the initrd after it) and lists the module copies.
    fn load(
        &self,
        cfg: &DomainConfig,
        modules: &dyn ModuleMemory<'_>,
        ram: &RamLayout,
    ) -> Result<(BootImages, Vec<CopyOp>), Box<BuildError>> {
        let name = cfg.name.as_str();
        let knode = cfg.kernel.node.as_str();
        let kernel = module(modules, name, knode, cfg.kernel.range)?;
        let initrd_len = cfg.ramdisk.as_ref().map(|r| r.range.size);
        let banks = ram.guest_banks();
        let bank0 = *banks.first().ok_or_else(|| {
            BuildError::new(
                name,
                Some("memory"),
                K::Ram(tessel_static_mem::LayoutError::NoBanks),
            )
        })?;
        let host = |r: GuestRange| host_range(ram, r).map_err(|k| BuildError::new(name, None, k));
        let mut copies = Vec::new();
        let boot = match tessel_loader::probe(kernel) {
            Ok(info) => {
                let p = tessel_loader::place(&tessel_loader::PlacementRequest {
                    banks,
                    kernel: &info.header,
                    kernel_len: info.len,
                    dtb_size: DTB_SLOT,
                    initrd_len,
                })
                .map_err(|e| BuildError::new(name, Some("memory"), K::Place(Box::new(e))))?;
                let dest = host(p.kernel)?;
                if dest.overlaps(&cfg.kernel.range) {
                    return Err(
                        BuildError::new(name, Some("reg"), K::KernelOverlapsModule).at(knode)
                    );
                }
                copies.push(CopyOp {
                    source: CopySource::Module(cfg.kernel.range),
                    dest,
                    method: CopyMethod::UnpackKernel,
                });
                BootImages {
                    kernel: p.kernel,
                    entry: p.entry,
                    dtb: p.dtb,
                    initrd: p.initrd,
                    image: true,
                }
            }
            Err(tessel_loader::LoaderError::Image(_)) => {
                let k = GuestRange::new(bank0.start, cfg.kernel.range.size);
                let dtb_at = align_up(k.start.0 + k.size, DTB_SLOT);
                let dtb = GuestRange::new(GuestPhysAddr(dtb_at), DTB_SLOT);
                let initrd =
                    initrd_len.map(|len| GuestRange::new(GuestPhysAddr(dtb_at + DTB_SLOT), len));
                let end = initrd.map_or(dtb_at + DTB_SLOT, |r| r.start.0 + r.size);
                if end > bank0.start.0 + bank0.size {
                    return Err(BuildError::new(
                        name,
                        Some("memory"),
                        K::RawKernelTooBig { bank: bank0 },
                    ));
                }
                copies.push(CopyOp {
                    source: CopySource::Module(cfg.kernel.range),
                    dest: host(k)?,
                    method: CopyMethod::Verbatim,
                });
                BootImages {
                    kernel: k,
                    entry: k.start,
                    dtb,
                    initrd,
                    image: false,
                }
            }
            Err(e) => return Err(BuildError::new(name, Some("reg"), K::Kernel(e)).at(knode)),
        };
        if let (Some(r), Some(dst)) = (&cfg.ramdisk, boot.initrd) {
            copies.push(CopyOp {
                source: CopySource::Module(r.range),
                dest: host(dst)?,
                method: CopyMethod::Verbatim,
            });
        }
        Ok((boot, copies))
    }

    /// The guest device tree: vCPU MPIDRs, banks, the vGIC's frames
    /// (redistributor regions trimmed to one frame per vCPU), the vPL011,
    /// bootargs, initrd and the partial device tree.
    fn guest_dt<'m>(
        &self,
        cfg: &DomainConfig,
        modules: &dyn ModuleMemory<'m>,
        ram: &RamLayout,
        (version, regions): (tessel_vgic::GicVersion, &[MmioRegion]),
        uart: Option<&Vpl011Config>,
        initrd: Option<GuestRange>,
    ) -> Result<GuestDtSpec<'m>, Box<BuildError>> {
        let n = cfg.cpus as usize;
        let find = |k: RegionKind| regions.iter().find(|r| r.kind == k).map(|r| r.range.start);
        let gicd = find(RegionKind::Distributor).unwrap_or(GuestPhysAddr(0));
        let gic = match version {
            tessel_vgic::GicVersion::V2 => GicSpec::V2 {
                gicd,
                gicc: find(RegionKind::CpuInterface).unwrap_or(GuestPhysAddr(0)),
            },
            tessel_vgic::GicVersion::V3 => {
                let mut left = n as u64;
                let mut out = Vec::new();
                for r in regions {
                    if !matches!(r.kind, RegionKind::Redistributor { .. }) || left == 0 {
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
        let partial_dtb = match cfg.device_tree.as_ref() {
            Some(d) => Some(module(modules, &cfg.name, &d.node, d.range)?),
            None => None,
        };
        Ok(GuestDtSpec {
            cpus: (0..n).map(tessel_trap::psci::vcpu_mpidr).collect(),
            cpu_compatible: String::from("arm,armv8"),
            memory: ram.guest_banks().to_vec(),
            gic,
            timer: TimerSpec::default(),
            vpl011: uart.map(|u| UartSpec::sbsa(u.base, u.spi)),
            chosen: ChosenSpec {
                bootargs: cfg.bootargs().map(String::from),
                stdout_path: None,
                initrd,
            },
            partial_dtb,
        })
    }
}

/// The bytes of a boot module.
fn module<'m>(
    modules: &dyn ModuleMemory<'m>,
    domain: &str,
    node: &str,
    range: HostRange,
) -> Result<&'m [u8], Box<BuildError>> {
    modules
        .bytes(range)
        .filter(|b| b.len() as u64 == range.size)
        .ok_or_else(|| BuildError::new(domain, Some("reg"), K::ModuleUnreadable { range }).at(node))
}

/// The domain-creation flags of a dom0less domain: Xen's dom0less default,
/// direct-map and static memory from the node, and the `capabilities`
/// bits. Tessel has no IOMMU driver, so `IOMMU` is never set.
fn flags(cfg: &DomainConfig) -> DomainFlags {
    let mut f = DomainFlags::DOM0LESS_DEFAULT;
    if cfg.direct_map {
        f |= DomainFlags::DIRECTMAP;
    }
    if !cfg.static_mem.is_empty() {
        f |= DomainFlags::STATIC_MEMORY;
    }
    if cfg.capabilities & tessel_config::CAP_CONTROL != 0 {
        f |= DomainFlags::PRIVILEGED;
    }
    if cfg.capabilities & tessel_config::CAP_HARDWARE != 0 {
        f |= DomainFlags::HARDWARE;
    }
    if cfg.capabilities & tessel_config::CAP_XENSTORE != 0 {
        f |= DomainFlags::XS_DOMAIN;
    }
    f
}

/// A domctl refusal, with the property it comes from.
fn flags_error(name: &str, e: tessel_domctl::DomctlError) -> Box<BuildError> {
    use tessel_domctl::DomctlError as D;
    let prop = match e {
        D::DirectMapWithoutStaticMemory => Some("direct-map"),
        D::PassthroughNeedsDirectMap => Some("passthrough"),
        D::NoVcpus | D::TooManyVcpus { .. } => Some("cpus"),
        D::IommuUnavailable | D::InternalBitsSet { .. } => Some("capabilities"),
        _ => None,
    };
    BuildError::new(name, prop, K::Flags(e))
}

/// The property to blame for a vGIC refusal: the partial device tree's
/// SPIs when there are any, else none.
fn pt_node_prop(devices: &Assignment) -> Option<&'static str> {
    (!devices.irqs.is_empty()).then_some("xen,path")
}

/// Every stage-2 mapping of the domain: RAM pieces, then (GICv2) the host
/// GICV frame at the guest's GICC address, then passthrough MMIO.
fn mappings(
    ram: &RamLayout,
    regions: &[MmioRegion],
    gicv: Option<HostRange>,
    devices: &Assignment,
) -> Vec<Mapping> {
    let pieces = ram.pieces();
    let mut out = Vec::with_capacity(pieces.len() + 1 + devices.mmio.len());
    for p in pieces {
        out.push(Mapping {
            guest: p.guest,
            host: p.host,
            kind: MappingKind::Ram,
        });
    }
    if let Some(gicv) = gicv {
        for r in regions {
            if r.kind == RegionKind::CpuInterface {
                out.push(Mapping {
                    guest: GuestRange::new(r.range.start, r.range.size.min(gicv.size)),
                    host: gicv.start,
                    kind: MappingKind::GicCpuInterface,
                });
            }
        }
    }
    for m in &devices.mmio {
        out.push(Mapping {
            guest: m.guest_range(),
            host: m.host.start,
            kind: MappingKind::Passthrough,
        });
    }
    out
}

/// The host memory behind guest range `r`, which must be backed by one
/// contiguous piece of the domain's RAM.
fn host_range(ram: &RamLayout, r: GuestRange) -> Result<HostRange, K> {
    let start = ram.gpa_to_hpa(r.start).ok_or(K::OutsideRam { range: r })?;
    if r.size > 0 {
        let last_gpa = r
            .start
            .0
            .checked_add(r.size - 1)
            .ok_or(K::OutsideRam { range: r })?;
        let last = ram
            .gpa_to_hpa(GuestPhysAddr(last_gpa))
            .ok_or(K::OutsideRam { range: r })?;
        if Some(last.0) != start.0.checked_add(r.size - 1) {
            return Err(K::SpansPieces { range: r });
        }
    }
    Ok(HostRange::new(HostPhysAddr(start.0), r.size))
}

fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> RamLayout {
        RamLayout::packed(&[
            HostRange::new(HostPhysAddr(0x7000_0000), 0x10_0000),
            HostRange::new(HostPhysAddr(0x9000_0000), 0x10_0000),
        ])
        .unwrap()
    }

    #[test]
    fn host_range_inside_one_piece() {
        let r = GuestRange::new(GuestPhysAddr(0x4000_1000), 0x1000);
        assert_eq!(
            host_range(&layout(), r),
            Ok(HostRange::new(HostPhysAddr(0x7000_1000), 0x1000))
        );
    }

    #[test]
    fn host_range_across_pieces_or_outside_is_refused() {
        let across = GuestRange::new(GuestPhysAddr(0x400f_f000), 0x2000);
        assert_eq!(
            host_range(&layout(), across),
            Err(K::SpansPieces { range: across })
        );
        let outside = GuestRange::new(GuestPhysAddr(0x3fff_f000), 0x1000);
        assert_eq!(
            host_range(&layout(), outside),
            Err(K::OutsideRam { range: outside })
        );
        let wraps = GuestRange::new(GuestPhysAddr(0x4000_0000), u64::MAX);
        assert!(host_range(&layout(), wraps).is_err());
    }

    #[test]
    fn align_up_to_dtb_slot() {
        assert_eq!(align_up(0x4000_0001, DTB_SLOT), 0x4020_0000);
        assert_eq!(align_up(0x4020_0000, DTB_SLOT), 0x4020_0000);
    }
}
