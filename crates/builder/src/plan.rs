//! What the builder decides for one domain, for the hypervisor to carry out.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};
use tessel_domctl::CreateDomainRequest;
use tessel_guestdt::GuestDtSpec;
use tessel_passthrough::Assignment;
use tessel_stage2::Attrs;
use tessel_static_mem::RamLayout;
use tessel_vgic::{GicVersion, MmioRegion, Model, RegionKind, VcpuId, Vgic, VgicConfig, VgicError};
use tessel_vpl011::Vpl011Config;

/// What a stage-2 mapping is for; decides its attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// Guest RAM: Normal write-back, read/write/execute.
    Ram,
    /// GICv2: the host's virtual CPU interface (GICV) at the guest's GICC
    /// address: Device-nGnRE, read/write.
    GicCpuInterface,
    /// A passed-through device's `xen,reg` range: Device-nGnRE, read/write,
    /// never executable.
    Passthrough,
}

/// One stage-2 mapping to make: `guest` onto host memory from `host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// Guest-physical range.
    pub guest: GuestRange,
    /// Host-physical start (the range has the guest range's size).
    pub host: HostPhysAddr,
    /// What it is.
    pub kind: MappingKind,
}

impl Mapping {
    /// Memory type and permissions of the mapping.
    pub const fn attrs(&self) -> Attrs {
        match self.kind {
            MappingKind::Ram => Attrs::RAM,
            MappingKind::GicCpuInterface | MappingKind::Passthrough => Attrs::DEVICE,
        }
    }

    /// The host range behind the mapping.
    pub const fn host_range(&self) -> HostRange {
        HostRange::new(self.host, self.guest.size)
    }
}

/// Where the bytes of a [`CopyOp`] come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopySource {
    /// A boot module in host memory.
    Module(HostRange),
    /// The generated guest device tree, [`DomainPlan::dtb`].
    GuestDtb,
}

/// How a [`CopyOp`] writes its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyMethod {
    /// Byte for byte (the source may overlap the destination).
    Verbatim,
    /// Through `tessel_loader::unpack_into`: an arm64 Image, raw or
    /// gzip-compressed, unpacked into the destination. The source never
    /// overlaps the destination.
    UnpackKernel,
}

/// One copy into a domain's RAM, made before the domain first runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CopyOp {
    /// What is copied.
    pub source: CopySource,
    /// Host memory written: backs guest RAM of this domain only, one
    /// contiguous piece. For [`CopyMethod::UnpackKernel`] this is the
    /// kernel's whole footprint, which the unpacked Image may not fill.
    pub dest: HostRange,
    /// How.
    pub method: CopyMethod,
}

/// A physical interrupt delivered to a vCPU through a list register with
/// HW = 1 (the guest's deactivation completes the physical interrupt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HwIrq {
    /// The vCPU that gets it.
    pub vcpu: usize,
    /// The INTID the guest sees.
    pub virq: u32,
    /// The physical INTID.
    pub pirq: u32,
}

/// The domain's virtual GIC: model, frames and hardware-backed interrupts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgicPlan {
    /// State model.
    pub model: Model,
    /// `vgic=` in `xen,xen-bootargs` named a model this build lacks, so
    /// the domain (which names none itself) got the classic one.
    pub default_unavailable: bool,
    /// Validated configuration (`nr_spis` rounded up).
    pub config: VgicConfig,
    /// Interrupts backed by physical ones: the virtual timer PPI of every
    /// vCPU, then the passthrough SPIs (virq == pirq, on vCPU0).
    pub hw_irqs: Vec<HwIrq>,
}

impl VgicPlan {
    /// Creates the vGIC with every hardware mapping made.
    pub fn instantiate(&self) -> Result<Vgic, VgicError> {
        let mut vgic = Vgic::new(self.model, self.config.clone())?;
        for h in &self.hw_irqs {
            tessel_vgic::VirtualGic::map_hw(&mut vgic, VcpuId(h.vcpu), h.virq, h.pirq)?;
        }
        Ok(vgic)
    }

    /// The guest-physical frames of the vGIC.
    pub fn regions(&self) -> Vec<MmioRegion> {
        self.config.regions()
    }

    /// Number of SPIs the vGIC implements.
    pub fn nr_spis(&self) -> usize {
        self.config.nr_spis
    }

    /// The vGIC architecture version.
    pub fn version(&self) -> GicVersion {
        self.config.version
    }
}

/// Where kernel, initrd and device tree go in guest RAM, and where the boot
/// vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootImages {
    /// The kernel's footprint.
    pub kernel: GuestRange,
    /// Entry point of vCPU0 (MMU off, EL1h).
    pub entry: GuestPhysAddr,
    /// The device tree: x0 of vCPU0 at `dtb.start`, `dtb.size` bytes long.
    pub dtb: GuestRange,
    /// The initrd, if any.
    pub initrd: Option<GuestRange>,
    /// Whether the kernel module is an arm64 Image (else a raw binary
    /// loaded at the first bank).
    pub image: bool,
}

/// Everything the hypervisor needs to create one domain.
///
/// The builder has already claimed the plan's host RAM, pCPUs, devices and
/// VMID; the hypervisor builds stage-2 tables from [`Self::mappings`],
/// performs [`Self::copies`], instantiates the vGIC and vPL011 and starts
/// vCPU0 at [`BootImages::entry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainPlan<'m> {
    /// Node name under `/chosen`.
    pub name: String,
    /// Domain-creation flags, validated against the host.
    pub request: CreateDomainRequest,
    /// Stage-2 VMID (1 for the first domain planned, then consecutive).
    pub vmid: u16,
    /// Guest RAM: banks and the host memory behind them.
    pub ram: RamLayout,
    /// pCPU of each vCPU (index = vCPU).
    pub vcpu_pcpu: Vec<usize>,
    /// The virtual GIC.
    pub vgic: VgicPlan,
    /// The emulated UART, if the domain has one.
    pub vpl011: Option<Vpl011Config>,
    /// Devices given to the domain.
    pub devices: Assignment,
    /// Boot image placement.
    pub boot: BootImages,
    /// The guest device tree's description.
    pub guest_dt: GuestDtSpec<'m>,
    /// The generated guest device tree (at most `boot.dtb.size` bytes).
    pub dtb: Vec<u8>,
    /// Stage-2 mappings to make, in order: RAM, GIC CPU interface,
    /// passthrough MMIO. No two overlap in guest space.
    pub mappings: Vec<Mapping>,
    /// Copies to make, in order.
    pub copies: Vec<CopyOp>,
}

impl DomainPlan<'_> {
    /// Whether guest-physical equals host-physical.
    pub fn is_direct_mapped(&self) -> bool {
        self.request.flags().is_direct_mapped()
    }

    /// The boot report's lines about this domain (without indentation):
    /// flags, memory, vCPUs, boot images, vGIC frames, IRQs, vPL011 and
    /// devices with their MMIO, SPIs and warnings. See [`Self::report`].
    pub fn report_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.report(&mut |line| out.push(format!("{line}")));
        out
    }

    /// The lines of [`Self::report_lines`], each handed to `line` as it is
    /// formatted, so that a console can print them without building
    /// strings.
    pub fn report(&self, line: &mut dyn FnMut(fmt::Arguments<'_>)) {
        line(format_args!("flags {}", self.request.flags()));
        for p in self.ram.pieces() {
            line(format_args!("memory {} from host {:#x}", p.guest, p.host.0));
        }
        for (v, p) in self.vcpu_pcpu.iter().enumerate() {
            line(format_args!("vCPU{v} on pCPU{p}"));
        }
        line(format_args!(
            "kernel loaded at {}, entry {:#x}{}",
            self.boot.kernel,
            self.boot.entry.0,
            if self.boot.image { "" } else { " (raw binary)" }
        ));
        if let Some(r) = self.boot.initrd {
            line(format_args!("initrd at {r}"));
        }
        line(format_args!(
            "device tree at {:#x} ({} bytes)",
            self.boot.dtb.start.0,
            self.dtb.len()
        ));
        let v = match self.vgic.version() {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        };
        for r in self.vgic.regions() {
            let what = match r.kind {
                RegionKind::Distributor => "distributor (emulated)",
                RegionKind::Redistributor { .. } => "redistributors (emulated)",
                RegionKind::CpuInterface => "CPU interface (host GICV)",
            };
            line(format_args!("vGICv{v} {what} at {}", r.range));
        }
        line(format_args!(
            "vGIC model: {}{}",
            match self.vgic.model {
                Model::Classic => "classic",
                Model::PerIrq => "per-IRQ",
            },
            if self.vgic.default_unavailable {
                " (vgic= names the per-IRQ model, which this build lacks)"
            } else {
                ""
            }
        ));
        line(format_args!(
            "IRQs: virtual timer PPI {} (hardware-mapped), {} SPIs",
            crate::VTIMER_PPI,
            self.vgic.nr_spis()
        ));
        if let Some(u) = &self.vpl011 {
            line(format_args!("vpl011 at {} SPI {}", u.range(), u.spi));
        }
        for dev in &self.devices.devices {
            line(format_args!("device {dev}"));
        }
        for m in &self.devices.mmio {
            line(format_args!(
                "  MMIO {} at guest {}",
                m.host,
                m.guest_range()
            ));
        }
        for irq in &self.devices.irqs {
            line(format_args!("  SPI {irq} (hardware-mapped)"));
        }
        for w in &self.devices.warnings {
            line(format_args!("warning: {w}"));
        }
    }
}
