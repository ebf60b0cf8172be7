//! Boot configuration from a host device tree with Xen dom0less bindings.
//!
//! Tessel is configured exactly like Xen in dom0less mode: the DTB a
//! bootloader hands over describes the host *and*, under `/chosen`, every
//! guest as a `xen,domain` node (Xen `docs/misc/arm/device-tree/booting.txt`).
//! A DTB produced for Xen (e.g. by ImageBuilder) works unchanged.
//!
//! [`parse`] turns DTB bytes into a [`BootConfig`]:
//! * a [`HostPlatform`] (RAM, reserved regions, CPUs, GIC, console UART,
//!   timer, PSCI, IOMMU presence, device MMIO map). Problems here are fatal
//!   ([`HostError`]): nothing can boot without memory or a GIC.
//! * one `Result<DomainConfig, Box<ConfigError>>` per `xen,domain` node in DT
//!   order. A bad domain is refused with an error naming the node and
//!   property; the others still load.
//! * every boot module under `/chosen` ([`BootModule`]), for reservation.
//! * [`Warning`]s for ignored or deprecated properties.
//!
//! Cell-count rule: like Xen's host-DT walkers, `#address-cells` and
//! `#size-cells` come from the nearest ancestor defining them; the
//! Devicetree-spec defaults (2/1) apply only at the root. `xen,static-mem`
//! is decoded with the domain node's parent cells (Xen >= 4.17); the Xen 4.16
//! `#xen,static-mem-*-cells` style is accepted with a warning. Module `reg`
//! is decoded with the domain node's own cells.
//!
//! Only configuration that can be judged from one domain node (plus the
//! host) is checked here. Overlaps between domains, RAM, MMIO and modules
//! belong to `tessel-static-mem` and `tessel-passthrough`.
//!
//! ```
//! let dtb = include_bytes!("../tests/fixtures/gicv2-domains.dtb");
//! let cfg = tessel_config::parse(dtb).unwrap();
//! assert_eq!(cfg.host.gic.gicd.start.0, 0x0800_0000);
//! let dom = cfg.domains[0].as_ref().unwrap();
//! assert_eq!(dom.name, "domU1");
//! assert!(dom.direct_map);
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod chosen;
mod error;
pub mod fdt;
mod host;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

pub use chosen::{
    BootModule, CAP_CONTROL, CAP_HARDWARE, CAP_XENSTORE, DomainConfig, MAX_NR_SPIS,
    MAX_STATIC_BANKS, MAX_VCPUS, MAX_VCPUS_GICV2, Module, ModuleKind, PcpuRange, VcpuAffinity,
    VgicModel,
};
pub use error::{ConfigError, ErrorKind, HostError, Warning};
pub use fdt::{DeviceTree, FdtError, NodeId};
pub use host::{
    CpuInfo, DeviceRegion, GicInfo, GicVersion, HostPlatform, PPI_BASE, PsciInfo, PsciMethod,
    PsciVersion, ReservedRegion, ReservedSource, SPI_BASE, TimerInfo, UartInfo, gic_spec_to_intid,
};

/// Everything the boot device tree says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// The host platform.
    pub host: HostPlatform,
    /// `/chosen/xen,xen-bootargs` (or, as in Xen, `/chosen/bootargs` when
    /// only `xen,dom0-bootargs` is present).
    pub xen_bootargs: Option<String>,
    /// The `vgic=classic|new` option of the hypervisor command line: the
    /// vGIC model of every domain without its own `tessel,vgic-model`.
    /// `None` when the option is absent or names no model (a warning).
    pub vgic_model: Option<VgicModel>,
    /// One entry per `xen,domain` node, in DT order.
    pub domains: Vec<Result<DomainConfig, Box<ConfigError>>>,
    /// Every boot module under `/chosen`, in DT order.
    pub modules: Vec<BootModule>,
    /// Non-fatal findings, host and domains.
    pub warnings: Vec<Warning>,
    /// The decoded host tree, for crates that copy host nodes into guest
    /// trees (passthrough) or look nodes up by path.
    pub tree: DeviceTree,
}

impl BootConfig {
    /// The domains that parsed cleanly.
    pub fn valid_domains(&self) -> impl Iterator<Item = &DomainConfig> {
        self.domains.iter().filter_map(|d| d.as_ref().ok())
    }

    /// The errors of refused domains.
    pub fn domain_errors(&self) -> impl Iterator<Item = &ConfigError> {
        self.domains
            .iter()
            .filter_map(|d| d.as_ref().err().map(|e| &**e))
    }
}

/// Parses a host DTB: the host platform, then `/chosen`.
pub fn parse(dtb: &[u8]) -> Result<BootConfig, HostError> {
    parse_tree(DeviceTree::parse(dtb)?)
}

/// Like [`parse`], for an already decoded tree.
pub fn parse_tree(dt: DeviceTree) -> Result<BootConfig, HostError> {
    let mut warnings = Vec::new();
    let host = HostPlatform::from_tree(&dt, &mut warnings).map_err(|e| *e)?;
    let mut cfg = BootConfig {
        host,
        xen_bootargs: None,
        vgic_model: None,
        domains: Vec::new(),
        modules: Vec::new(),
        warnings,
        tree: dt,
    };
    chosen::parse_chosen(&mut cfg);
    cfg.vgic_model = cfg
        .xen_bootargs
        .as_deref()
        .and_then(|args| vgic_option(args, &mut cfg.warnings));
    Ok(cfg)
}

/// The last `vgic=` option of a hypervisor command line (later options win,
/// as on Xen's command line). An unknown model is a warning, not an error:
/// the hypervisor boots with its default model.
fn vgic_option(args: &str, warnings: &mut Vec<Warning>) -> Option<VgicModel> {
    let value = args
        .split_ascii_whitespace()
        .filter_map(|opt| opt.strip_prefix("vgic="))
        .next_back()?;
    let model = VgicModel::from_name(value);
    if model.is_none() {
        Warning::push(
            warnings,
            "/chosen",
            Some("xen,xen-bootargs"),
            "vgic= names no vGIC model (\"classic\", \"new\" or \"per-irq\"); using the default",
        );
    }
    model
}

#[cfg(test)]
mod testutil;
