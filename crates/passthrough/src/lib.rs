//! Device assignment from partial device trees, including passthrough
//! without an IOMMU.
//!
//! A dom0less domain asks for devices through its partial device tree (the
//! `multiboot,device-tree` boot module). Every node under its top-level
//! `/passthrough` node may carry Xen's properties:
//! * `xen,reg = <host-pa size guest-pa>...`: MMIO to map into the domain;
//! * `xen,path = "/host/node"`: the host node whose SPIs are routed to the
//!   domain (virq == pirq) and which must be marked `xen,passthrough`;
//! * `xen,force-assign-without-iommu`: accept the device without IOMMU
//!   protection.
//!
//! [`Registry::assign`] turns one domain's partial DTB into an
//! [`Assignment`] (stage-2 device mappings, SPIs, warnings) and records
//! which domain owns every host range and SPI, so no resource is given out
//! twice and none overlaps what the hypervisor keeps.
//!
//! # Policy without an IOMMU
//!
//! Xen leaves the choice to the administrator. Tessel is stricter: a device
//! not protected by an IOMMU is assigned only if it carries
//! `xen,force-assign-without-iommu` **and** the domain is direct-mapped. A
//! DMA-capable device is programmed with guest-physical addresses; only when
//! those equal host-physical addresses does its DMA land where the guest
//! expects. Every such device yields a [`WarningKind::Unprotected`] warning,
//! and a `xen,reg` whose guest address differs from its host address in a
//! direct-mapped domain yields [`WarningKind::GuestAddressDiffers`].
//!
//! # Devices behind an IOMMU
//!
//! A device is IOMMU-protected when the host has an enabled IOMMU
//! ([`HostView::has_iommu`]) and its host node has an `iommus` property.
//! Such a device must be attached to the domain's IOMMU context. Tessel has
//! no SMMU driver yet, so this is refused with
//! [`ErrorKind::IommuUnsupported`], with or without the force property (as
//! in Xen, the force property is not a bypass for a protected device).
//!
//! # Cells
//!
//! `xen,reg` of `/passthrough` itself is decoded with the root defaults
//! (2 address cells, 1 size cell); that of any deeper node with its
//! parent's own `#address-cells`/`#size-cells`, 2/1 when absent, without
//! inheritance from further ancestors. Both must be 1 or 2.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod error;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange, PAGE_SIZE, cells};
use tessel_config::fdt::{DeviceTree, NodeId, str_value};

pub use error::{AssignError, ErrorKind, Owner, Warning, WarningKind};

/// Phandles from this value up are reserved (GUEST_PHANDLE_GIC = 65000,
/// GUEST_PHANDLE_IOMMU = 65001).
pub const PHANDLE_RESERVED: u32 = 65000;
/// First SPI INTID (GIC Architecture Specification IHI 0069, 2.2.1).
const SPI_FIRST: u32 = 32;
/// Last SPI INTID (IHI 0069, 2.2.1).
const SPI_LAST: u32 = 1019;
/// The partial-DT properties that drive assignment.
const XEN_REG: &str = "xen,reg";
const XEN_PATH: &str = "xen,path";
const XEN_FORCE: &str = "xen,force-assign-without-iommu";
/// Host-DT marker of devices reserved for passthrough.
const XEN_PASSTHROUGH: &str = "xen,passthrough";

/// What assignment needs from the host platform.
#[derive(Clone, Copy, Debug)]
pub struct HostView<'a> {
    /// The host device tree.
    pub dt: &'a DeviceTree,
    /// Path of the primary GIC node (only interrupts wired to it are
    /// routed).
    pub gic_path: &'a str,
    /// Whether an enabled IOMMU is described in the host device tree.
    pub has_iommu: bool,
}

/// The domain being given devices.
#[derive(Clone, Copy, Debug)]
pub struct DomainRequest<'a> {
    /// Domain name, used in every message.
    pub name: &'a str,
    /// Whether the domain is direct-mapped (guest-physical == host-physical).
    pub direct_mapped: bool,
    /// Number of SPIs of the domain's vGIC; routed SPIs must be below
    /// `32 + nr_spis`.
    pub nr_spis: u32,
    /// The vPL011's SPI, if the domain has one; it must not be assigned.
    pub vpl011_spi: Option<u32>,
}

/// A host region no domain may be given (RAM, the hypervisor image, the
/// GIC and UART frames the hypervisor keeps, ...).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Forbidden {
    /// What the region is, for messages ("GIC distributor").
    pub name: String,
    /// The region.
    pub range: HostRange,
}

/// One stage-2 device mapping: `host` appears at `guest` in the domain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioMapping {
    /// Host range (page-aligned, non-empty).
    pub host: HostRange,
    /// Guest-physical base.
    pub guest: GuestPhysAddr,
}

impl MmioMapping {
    /// The guest range the mapping covers.
    pub fn guest_range(&self) -> GuestRange {
        GuestRange::new(self.guest, self.host.size)
    }
}

/// What a domain is given.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Assignment {
    /// Stage-2 device mappings (Device-nGnRE), in partial-DT order.
    pub mmio: Vec<MmioMapping>,
    /// SPIs routed as hardware interrupts with virq == pirq, ascending.
    pub irqs: Vec<u32>,
    /// Partial-DT paths of the assigned devices.
    pub devices: Vec<String>,
    /// Boot-time warnings to print.
    pub warnings: Vec<Warning>,
}

/// One device found under `/passthrough`, before ownership checks.
struct Device {
    node: String,
    mmio: Vec<MmioMapping>,
    irqs: Vec<u32>,
}

/// Decodes a domain's partial DTB into an [`Assignment`], applying every
/// rule except cross-domain ownership (see [`Registry::assign`]).
pub fn parse(
    domain: &DomainRequest<'_>,
    partial_dtb: &[u8],
    host: &HostView<'_>,
) -> Result<Assignment, Box<AssignError>> {
    Ok(parse_devices(domain, partial_dtb, host)?.0)
}

fn parse_devices(
    domain: &DomainRequest<'_>,
    partial_dtb: &[u8],
    host: &HostView<'_>,
) -> Result<(Assignment, Vec<Device>), Box<AssignError>> {
    let err = |node: String, kind: ErrorKind| fail(domain.name, node, kind);
    let dt = DeviceTree::parse(partial_dtb)
        .map_err(|e| err(String::from("/"), ErrorKind::InvalidDtb(e)))?;
    check_phandles(&dt).map_err(|(id, kind)| err(dt.path(id), kind))?;

    let mut out = Assignment::default();
    let mut devices = Vec::new();
    let root = dt.root();
    let Some(pt) = dt
        .children(root)
        .find(|&c| dt.node(c).name == "passthrough")
    else {
        return Ok((out, devices));
    };
    // Depth-first over /passthrough and all its descendants: the nodes
    // under it, in blob order.
    for id in dt.nodes().filter(|&id| is_within(&dt, id, pt)) {
        let dev = device(domain, &dt, id, pt, host, &mut out.warnings)
            .map_err(|kind| err(dt.path(id), kind))?;
        if let Some(dev) = dev {
            devices.push(dev);
        }
    }
    // Resource checks inside the domain: guest overlaps, vPL011 clash,
    // duplicate SPIs between devices.
    for dev in &devices {
        for m in &dev.mmio {
            // out.mmio holds the mappings of the devices before, in order.
            if let Some(j) = out
                .mmio
                .iter()
                .position(|o| o.guest_range().overlaps(&m.guest_range()))
            {
                let mut rest = j;
                let other_node = devices
                    .iter()
                    .find(|d| {
                        let hit = rest < d.mmio.len();
                        rest = rest.saturating_sub(d.mmio.len());
                        hit
                    })
                    .map_or("", |d| d.node.as_str());
                return Err(err(
                    dev.node.clone(),
                    ErrorKind::GuestOverlap {
                        range: m.guest_range(),
                        other_node: other_node.to_string(),
                        other: out
                            .mmio
                            .get(j)
                            .map_or(m.guest_range(), MmioMapping::guest_range),
                    },
                ));
            }
            out.mmio.push(*m);
        }
    }
    for dev in &devices {
        for &intid in &dev.irqs {
            if domain.vpl011_spi == Some(intid) {
                return Err(err(dev.node.clone(), ErrorKind::Vpl011Clash { intid }));
            }
        }
        out.irqs.extend(dev.irqs.iter().copied());
        out.devices.push(dev.node.clone());
    }
    tessel_addr::sort_small(&mut out.irqs);
    out.irqs.dedup();
    Ok((out, devices))
}

/// The refusal of `domain` for partial-DT node `node`.
fn fail(domain: &str, node: String, kind: ErrorKind) -> Box<AssignError> {
    Box::new(AssignError {
        domain: domain.to_string(),
        node,
        kind,
    })
}

/// Whether `id` is `top` or one of its descendants.
fn is_within(dt: &DeviceTree, id: NodeId, top: NodeId) -> bool {
    let mut cur = Some(id);
    while let Some(c) = cur {
        if c == top {
            return true;
        }
        cur = dt.node(c).parent;
    }
    false
}

/// Refuses phandles in the reserved range anywhere in the partial DT.
fn check_phandles(dt: &DeviceTree) -> Result<(), (NodeId, ErrorKind)> {
    for id in dt.nodes() {
        for prop in ["phandle", "linux,phandle"] {
            if dt.prop(id, prop).is_none() {
                continue;
            }
            let value = dt.prop_u32(id, prop).unwrap_or(u32::MAX);
            if value >= PHANDLE_RESERVED {
                return Err((id, ErrorKind::PhandleReserved { prop, value }));
            }
        }
    }
    Ok(())
}

/// The cells decoding `xen,reg` of `id`.
fn xen_reg_cells(dt: &DeviceTree, id: NodeId, pt: NodeId) -> Result<(u32, u32), ErrorKind> {
    if id == pt {
        return Ok((2, 1));
    }
    let parent = dt.node(id).parent.unwrap_or(dt.root());
    let one = |prop: &'static str, default: u32| -> Result<u32, ErrorKind> {
        let value = match dt.prop(parent, prop) {
            None => default,
            Some(_) => dt.prop_u32(parent, prop).unwrap_or(u32::MAX),
        };
        if (1..=2).contains(&value) {
            Ok(value)
        } else {
            Err(ErrorKind::BadCells {
                prop,
                value,
                holder: dt.path(parent),
            })
        }
    };
    Ok((one("#address-cells", 2)?, one("#size-cells", 1)?))
}

/// Decodes and checks `xen,reg`.
fn xen_reg(prop: &[u8], ac: u32, sc: u32) -> Result<Vec<MmioMapping>, ErrorKind> {
    let mut out = Vec::new();
    for (entry, [host, size, guest]) in cells::tuples(prop, [ac, sc, ac])
        .map_err(ErrorKind::XenRegCells)?
        .enumerate()
    {
        if size == 0 {
            return Err(ErrorKind::XenRegEmpty { entry });
        }
        if host % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 || guest % PAGE_SIZE != 0 {
            return Err(ErrorKind::XenRegUnaligned {
                entry,
                host,
                size,
                guest,
            });
        }
        if host.checked_add(size).is_none() || guest.checked_add(size).is_none() {
            return Err(ErrorKind::XenRegOverflow { entry });
        }
        out.push(MmioMapping {
            host: HostRange::new(HostPhysAddr(host), size),
            guest: GuestPhysAddr(guest),
        });
    }
    Ok(out)
}

/// Applies the decision table to one node. `Ok(None)`: not a device.
fn device(
    domain: &DomainRequest<'_>,
    dt: &DeviceTree,
    id: NodeId,
    pt: NodeId,
    host: &HostView<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Device>, ErrorKind> {
    let reg = dt.prop(id, XEN_REG);
    let path = dt.prop(id, XEN_PATH);
    let force = dt.prop(id, XEN_FORCE).is_some();
    let (reg, path) = match (reg, path) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err(ErrorKind::MissingReg),
        (Some(_), None) if !force => return Err(ErrorKind::MissingPath),
        (Some(r), p) => (r, p),
    };
    let (ac, sc) = xen_reg_cells(dt, id, pt)?;
    let mmio = xen_reg(reg, ac, sc)?;
    let node = dt.path(id);
    let warn = |kind| Warning {
        domain: domain.name.to_string(),
        node: node.clone(),
        kind,
    };

    let mut irqs = Vec::new();
    if let Some(raw) = path {
        let hpath = str_value(raw).ok_or(ErrorKind::PathNotString)?;
        let hid = host
            .dt
            .find_path(hpath)
            // Exact paths only: no unit-address shorthand.
            .filter(|&h| host.dt.path(h) == hpath)
            .ok_or_else(|| ErrorKind::HostNodeMissing {
                path: hpath.to_string(),
            })?;
        let hpath = host.dt.path(hid);
        if host.dt.prop(hid, XEN_PASSTHROUGH).is_none() {
            return Err(ErrorKind::HostNodeNotPassthrough { path: hpath });
        }
        if host.has_iommu && host.dt.prop(hid, "iommus").is_some() {
            return Err(ErrorKind::IommuUnsupported { path: hpath });
        }
        let gic = host
            .dt
            .find_path(host.gic_path)
            .ok_or_else(|| ErrorKind::HostGicMissing {
                path: host.gic_path.to_string(),
            })?;
        let irqs_of_host =
            host_interrupts(host.dt, hid, gic).map_err(|what| ErrorKind::HostInterrupts {
                path: hpath.clone(),
                what,
            })?;
        for irq in irqs_of_host {
            match irq {
                HostIrq::Gic(intid) => {
                    if !(SPI_FIRST..=SPI_LAST).contains(&intid) {
                        return Err(ErrorKind::NotAnSpi {
                            path: hpath.clone(),
                            intid,
                        });
                    }
                    if u64::from(intid) >= u64::from(SPI_FIRST) + u64::from(domain.nr_spis) {
                        return Err(ErrorKind::VirqOutOfRange {
                            intid,
                            nr_spis: domain.nr_spis,
                        });
                    }
                    irqs.push(intid);
                }
                HostIrq::Other(index) => warnings.push(warn(WarningKind::NonGicInterrupt {
                    path: hpath.clone(),
                    index,
                })),
            }
        }
    }

    // Not IOMMU-protected from here on: Tessel's no-IOMMU rule.
    if !force {
        return Err(ErrorKind::NoIommuNoForce);
    }
    if !domain.direct_mapped {
        return Err(ErrorKind::NotDirectMapped);
    }
    warnings.push(warn(WarningKind::Unprotected));
    for m in &mmio {
        if m.guest != GuestPhysAddr::identity(m.host.start) {
            warnings.push(warn(WarningKind::GuestAddressDiffers {
                host: m.host,
                guest: m.guest_range(),
            }));
        }
    }
    Ok(Some(Device { node, mmio, irqs }))
}

/// One interrupt of a host node.
enum HostIrq {
    /// Wired to the primary GIC: its INTID.
    Gic(u32),
    /// Wired to another controller: its index in the node's list.
    Other(usize),
}

/// The node's interrupt parent: its own `interrupt-parent` or the nearest
/// ancestor's.
fn interrupt_parent(dt: &DeviceTree, id: NodeId) -> Option<Option<NodeId>> {
    let mut cur = Some(id);
    while let Some(c) = cur {
        if dt.prop(c, "interrupt-parent").is_some() {
            return Some(
                dt.prop_u32(c, "interrupt-parent")
                    .and_then(|p| dt.find_phandle(p)),
            );
        }
        cur = dt.node(c).parent;
    }
    None
}

/// Splits big-endian cells.
fn be_cells(v: &[u8]) -> Option<Vec<u32>> {
    if !v.len().is_multiple_of(4) {
        return None;
    }
    Some(
        v.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Decodes one specifier of `ctrl`.
fn decode_spec(
    ctrl: NodeId,
    gic: NodeId,
    spec: &[u32],
    index: usize,
) -> Result<HostIrq, &'static str> {
    if ctrl != gic {
        return Ok(HostIrq::Other(index));
    }
    match spec {
        // binding arm,gic.yaml / arm,gic-v3.yaml: <type number flags ...>.
        [0, num, ..] => num
            .checked_add(SPI_FIRST)
            .map(HostIrq::Gic)
            .ok_or("SPI number out of range"),
        [1, num, ..] => Ok(HostIrq::Gic(num.saturating_add(16))),
        [_, _, ..] => Err("GIC interrupt type is not 0 (SPI) or 1 (PPI)"),
        _ => Err("GIC specifier shorter than 2 cells"),
    }
}

/// Every interrupt of host node `id`, from `interrupts-extended` or from
/// `interrupts` with the inherited `interrupt-parent`.
/// `Err` says what is malformed.
fn host_interrupts(dt: &DeviceTree, id: NodeId, gic: NodeId) -> Result<Vec<HostIrq>, &'static str> {
    let ncells = |ctrl: NodeId| -> Result<usize, &'static str> {
        match dt.prop_u32(ctrl, "#interrupt-cells") {
            Some(n @ 1..=8) => Ok(n as usize),
            _ => Err("the controller's #interrupt-cells is missing or not 1..8"),
        }
    };
    // `interrupts-extended` is <phandle specifier>..., `interrupts` a list
    // of specifiers of the one inherited interrupt parent.
    let (v, parent) = match (
        dt.prop(id, "interrupts-extended"),
        dt.prop(id, "interrupts"),
    ) {
        (Some(v), _) => (v, None),
        (None, Some(v)) => {
            let ctrl = interrupt_parent(dt, id)
                .flatten()
                .ok_or("no interrupt-parent resolves to a node")?;
            (v, Some((ctrl, ncells(ctrl)?)))
        }
        (None, None) => return Ok(Vec::new()),
    };
    let cells = be_cells(v).ok_or(match parent {
        None => "interrupts-extended is not whole cells",
        Some(_) => "interrupts is not whole cells",
    })?;
    if let Some((_, n)) = parent
        && (cells.is_empty() || cells.len() % n != 0)
    {
        return Err("interrupts is not a whole number of specifiers");
    }
    let mut out = Vec::new();
    let mut rest = cells.as_slice();
    while let [ph, tail @ ..] = rest {
        let (ctrl, specs) = match parent {
            Some((ctrl, _)) => (ctrl, rest),
            None => (
                dt.find_phandle(*ph)
                    .ok_or("interrupts-extended names an unknown phandle")?,
                tail,
            ),
        };
        let n = ncells(ctrl)?;
        let spec = specs.get(..n).ok_or("interrupts-extended is truncated")?;
        out.push(decode_spec(ctrl, gic, spec, out.len())?);
        rest = specs.get(n..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Ownership of host MMIO and SPIs across all domains.
///
/// Fed one domain at a time with [`Registry::assign`]. A refused domain
/// leaves no claim behind; [`Registry::release`] drops the claims of a
/// domain whose build failed later.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    forbidden: Vec<Forbidden>,
    mmio: Vec<(HostRange, Owner)>,
    irqs: Vec<(u32, Owner)>,
}

impl Registry {
    /// A registry refusing any overlap with `forbidden`.
    pub fn new(forbidden: Vec<Forbidden>) -> Self {
        Self {
            forbidden,
            ..Self::default()
        }
    }

    /// Parses `partial_dtb` for `domain` (see [`parse`]), checks that no host
    /// range or SPI is kept by the hypervisor or owned by another device,
    /// and records the claims. On error nothing is recorded.
    pub fn assign(
        &mut self,
        domain: &DomainRequest<'_>,
        partial_dtb: &[u8],
        host: &HostView<'_>,
    ) -> Result<Assignment, Box<AssignError>> {
        let (out, devices) = parse_devices(domain, partial_dtb, host)?;
        let kept = (self.mmio.len(), self.irqs.len());
        let claimed = self.claim(domain.name, &devices);
        if claimed.is_err() {
            // A refused domain leaves no claim behind.
            self.mmio.truncate(kept.0);
            self.irqs.truncate(kept.1);
        }
        claimed.map(|()| out)
    }

    /// Records the claims of `domain`'s devices, refusing any overlap with
    /// a forbidden region or an earlier claim (of this domain too).
    fn claim(&mut self, domain: &str, devices: &[Device]) -> Result<(), Box<AssignError>> {
        for dev in devices {
            let err = |kind| fail(domain, dev.node.clone(), kind);
            let me = Owner {
                domain: domain.to_string(),
                node: dev.node.clone(),
            };
            for m in &dev.mmio {
                if let Some(f) = self.forbidden.iter().find(|f| f.range.overlaps(&m.host)) {
                    return Err(err(ErrorKind::Forbidden {
                        range: m.host,
                        name: f.name.clone(),
                        kept: f.range,
                    }));
                }
                if let Some((owned, owner)) = self.mmio.iter().find(|(r, _)| r.overlaps(&m.host)) {
                    return Err(err(ErrorKind::MmioOwned {
                        range: m.host,
                        owner: Box::new(owner.clone()),
                        owned: *owned,
                    }));
                }
                self.mmio.push((m.host, me.clone()));
            }
            for &intid in &dev.irqs {
                if let Some((_, owner)) = self.irqs.iter().find(|(i, _)| *i == intid) {
                    return Err(err(ErrorKind::IrqOwned {
                        intid,
                        owner: Box::new(owner.clone()),
                    }));
                }
                self.irqs.push((intid, me.clone()));
            }
        }
        Ok(())
    }

    /// Drops every claim of `domain`; returns how many were dropped.
    pub fn release(&mut self, domain: &str) -> usize {
        let before = self.mmio.len() + self.irqs.len();
        self.mmio.retain(|(_, o)| o.domain != domain);
        self.irqs.retain(|(_, o)| o.domain != domain);
        before - self.mmio.len() - self.irqs.len()
    }

    /// The owner of host address `addr`, if assigned.
    pub fn mmio_owner(&self, addr: HostPhysAddr) -> Option<&Owner> {
        self.mmio
            .iter()
            .find(|(r, _)| r.contains(addr))
            .map(|(_, o)| o)
    }

    /// The owner of SPI `intid`, if assigned.
    pub fn irq_owner(&self, intid: u32) -> Option<&Owner> {
        self.irqs.iter().find(|(i, _)| *i == intid).map(|(_, o)| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(cells: &[u32]) -> Vec<u8> {
        cells.iter().flat_map(|c| c.to_be_bytes()).collect()
    }

    #[test]
    fn xen_reg_with_one_cell_fields() {
        let m = xen_reg(&be(&[0x1000_0000, 0x2000, 0x3000_0000]), 1, 1).unwrap();
        assert_eq!(
            m,
            [MmioMapping {
                host: HostRange::new(HostPhysAddr(0x1000_0000), 0x2000),
                guest: GuestPhysAddr(0x3000_0000),
            }]
        );
    }

    #[test]
    fn xen_reg_entries_are_numbered_in_errors() {
        let prop = be(&[0, 0x1000, 0x1000, 0, 0x1000, 0, 0x2000, 0, 0, 0x3000]);
        assert_eq!(
            xen_reg(&prop, 2, 1),
            Err(ErrorKind::XenRegEmpty { entry: 1 })
        );
    }

    #[test]
    fn xen_reg_wrapping_the_address_space_is_refused() {
        let prop = be(&[0xffff_ffff, 0xffff_f000, 0x2000, 0, 0x1000]);
        assert_eq!(
            xen_reg(&prop, 2, 1),
            Err(ErrorKind::XenRegOverflow { entry: 0 })
        );
        let prop = be(&[0, 0x1000, 0x2000, 0xffff_ffff, 0xffff_f000]);
        assert_eq!(
            xen_reg(&prop, 2, 1),
            Err(ErrorKind::XenRegOverflow { entry: 0 })
        );
    }

    #[test]
    fn xen_reg_cell_counts_outside_one_or_two_are_refused() {
        assert_eq!(
            xen_reg(&be(&[0; 6]), 0, 1),
            Err(ErrorKind::XenRegCells(cells::CellError::BadCellCount(0)))
        );
        assert_eq!(
            xen_reg(&[], 2, 1),
            Err(ErrorKind::XenRegCells(cells::CellError::Empty))
        );
    }

    #[test]
    fn gic_specifiers() {
        let g = NodeId(3);
        assert!(matches!(
            decode_spec(g, g, &[0, 47, 1], 0),
            Ok(HostIrq::Gic(79))
        ));
        assert!(matches!(
            decode_spec(g, g, &[1, 14, 4], 0),
            Ok(HostIrq::Gic(30))
        ));
        assert!(matches!(
            decode_spec(NodeId(4), g, &[3, 1], 2),
            Ok(HostIrq::Other(2))
        ));
        assert!(decode_spec(g, g, &[2, 5, 4], 0).is_err());
        assert!(decode_spec(g, g, &[0], 0).is_err());
        assert!(decode_spec(g, g, &[0, u32::MAX, 4], 0).is_err());
    }
}
