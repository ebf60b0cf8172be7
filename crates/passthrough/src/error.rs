//! Refusals and boot-time warnings of device assignment.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use tessel_addr::cells::CellError;
use tessel_addr::{GuestRange, HostRange};
use tessel_config::FdtError;

/// Who holds a host resource: a domain and the partial-DT node that claimed it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Owner {
    /// Domain name.
    pub domain: String,
    /// Partial-DT node path in that domain.
    pub node: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.domain, self.node)
    }
}

/// A refused assignment: the domain, the partial-DT node and what is wrong.
///
/// Displays as `domU2: /passthrough/virtio@a003e00: <reason>`, where the
/// reason starts with the property at fault.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AssignError {
    /// Name of the domain being built.
    pub domain: String,
    /// Path of the partial-DT node at fault (`/` for the whole blob).
    pub node: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for AssignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.domain, self.node, self.kind)
    }
}

impl core::error::Error for AssignError {}

/// The reason of an [`AssignError`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ErrorKind {
    /// The partial DTB is not a valid flattened device tree.
    InvalidDtb(FdtError),
    /// A `phandle` (or `linux,phandle`) at or above 65000, the range
    /// reserved for the guest GIC (65000) and IOMMU (65001) phandles.
    PhandleReserved {
        /// The property name.
        prop: &'static str,
        /// The phandle value (`u32::MAX` if the property is not one cell).
        value: u32,
    },
    /// `#address-cells`/`#size-cells` of the node decoding `xen,reg` is not
    /// 1 or 2.
    BadCells {
        /// `#address-cells` or `#size-cells`.
        prop: &'static str,
        /// The value (`u32::MAX` if the property is not one cell).
        value: u32,
        /// Path of the node carrying the property.
        holder: String,
    },
    /// `xen,reg` cannot be split into (host, size, guest) triples.
    XenRegCells(CellError),
    /// A `xen,reg` entry that is not 4 KiB aligned.
    XenRegUnaligned {
        /// Index of the entry.
        entry: usize,
        /// Host address.
        host: u64,
        /// Size.
        size: u64,
        /// Guest address.
        guest: u64,
    },
    /// A `xen,reg` entry of size 0.
    XenRegEmpty {
        /// Index of the entry.
        entry: usize,
    },
    /// A `xen,reg` entry wrapping past the end of the 64-bit space.
    XenRegOverflow {
        /// Index of the entry.
        entry: usize,
    },
    /// `xen,reg` without `xen,path` and without the force property.
    MissingPath,
    /// `xen,path` without `xen,reg`.
    MissingReg,
    /// `xen,path` is not a single NUL-terminated string.
    PathNotString,
    /// `xen,path` names no node of the host device tree.
    HostNodeMissing {
        /// The host path.
        path: String,
    },
    /// The host node exists but lacks `xen,passthrough`.
    HostNodeNotPassthrough {
        /// The host path.
        path: String,
    },
    /// The host GIC node handed in by the caller is not in the host tree.
    HostGicMissing {
        /// The GIC path given.
        path: String,
    },
    /// The host node's interrupt properties cannot be decoded.
    HostInterrupts {
        /// The host path.
        path: String,
        /// What is malformed.
        what: &'static str,
    },
    /// The host node uses a PPI (or another non-SPI) of the GIC.
    NotAnSpi {
        /// The host path.
        path: String,
        /// The INTID.
        intid: u32,
    },
    /// The SPI is beyond the domain's vGIC (`nr_spis`).
    VirqOutOfRange {
        /// The INTID (virq == pirq).
        intid: u32,
        /// The domain's SPI count.
        nr_spis: u32,
    },
    /// The SPI is the one the domain's vPL011 raises.
    Vpl011Clash {
        /// The INTID.
        intid: u32,
    },
    /// No IOMMU protects the device and the force property is absent.
    NoIommuNoForce,
    /// Forced assignment without an IOMMU into a domain that is not
    /// direct-mapped.
    NotDirectMapped,
    /// The device sits behind an IOMMU, and Tessel has no SMMU driver yet.
    IommuUnsupported {
        /// The host path.
        path: String,
    },
    /// A `xen,reg` host range overlaps a region the hypervisor keeps.
    Forbidden {
        /// The requested host range.
        range: HostRange,
        /// What the region is (e.g. "RAM", "GIC distributor").
        name: String,
        /// The kept region.
        kept: HostRange,
    },
    /// A `xen,reg` host range already belongs to a domain.
    MmioOwned {
        /// The requested host range.
        range: HostRange,
        /// The owner (boxed to keep errors small).
        owner: Box<Owner>,
        /// The owner's range.
        owned: HostRange,
    },
    /// An SPI already belongs to a domain.
    IrqOwned {
        /// The INTID.
        intid: u32,
        /// The owner (boxed to keep errors small).
        owner: Box<Owner>,
    },
    /// Two `xen,reg` guest ranges of the same domain overlap.
    GuestOverlap {
        /// The requested guest range.
        range: GuestRange,
        /// The node already mapping `other`.
        other_node: String,
        /// The overlapped guest range.
        other: GuestRange,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidDtb(e) => write!(f, "partial device tree is invalid: {e}"),
            Self::PhandleReserved { prop, value } if *value == u32::MAX => {
                write!(f, "{prop}: not a single cell")
            }
            Self::PhandleReserved { prop, value } => write!(
                f,
                "{prop}: {value} ({value:#x}) is not below 65000; phandles 65000 and up are reserved for the guest GIC and IOMMU"
            ),
            Self::BadCells {
                prop,
                value,
                holder,
            } => {
                if *value == u32::MAX {
                    write!(f, "xen,reg: {prop} of {holder} is not a single cell")
                } else {
                    write!(
                        f,
                        "xen,reg: {prop} of {holder} is {value}; it must be 1 or 2"
                    )
                }
            }
            Self::XenRegCells(e) => write!(f, "xen,reg: {e}"),
            Self::XenRegUnaligned {
                entry,
                host,
                size,
                guest,
            } => write!(
                f,
                "xen,reg: entry {entry} (host {host:#x}, size {size:#x}, guest {guest:#x}) is not 4 KiB aligned"
            ),
            Self::XenRegEmpty { entry } => write!(f, "xen,reg: entry {entry} has size 0"),
            Self::XenRegOverflow { entry } => write!(
                f,
                "xen,reg: entry {entry} runs past the end of the address space"
            ),
            Self::MissingPath => write!(
                f,
                "xen,path: missing; a device with xen,reg needs xen,path (or xen,force-assign-without-iommu for an MMIO-only region)"
            ),
            Self::MissingReg => write!(f, "xen,reg: missing; xen,path needs xen,reg"),
            Self::PathNotString => write!(f, "xen,path: not a NUL-terminated string"),
            Self::HostNodeMissing { path } => {
                write!(f, "xen,path: the host device tree has no node {path}")
            }
            Self::HostNodeNotPassthrough { path } => write!(
                f,
                "xen,path: host node {path} is not marked xen,passthrough"
            ),
            Self::HostGicMissing { path } => write!(
                f,
                "xen,path: the host GIC node {path} is not in the host device tree"
            ),
            Self::HostInterrupts { path, what } => {
                write!(f, "xen,path: interrupts of host node {path}: {what}")
            }
            Self::NotAnSpi { path, intid } => write!(
                f,
                "xen,path: host node {path} uses GIC interrupt {intid}, which is not an SPI; only SPIs (INTID 32 and up) can be assigned"
            ),
            Self::VirqOutOfRange { intid, nr_spis } => write!(
                f,
                "xen,path: SPI {intid} is beyond the domain's {nr_spis} SPIs (highest INTID {})",
                31 + u64::from(*nr_spis)
            ),
            Self::Vpl011Clash { intid } => write!(
                f,
                "xen,path: SPI {intid} is also the domain's vPL011 interrupt"
            ),
            Self::NoIommuNoForce => write!(
                f,
                "no IOMMU protects this device; add xen,force-assign-without-iommu (unsafe, trusted guests only)"
            ),
            Self::NotDirectMapped => write!(
                f,
                "xen,force-assign-without-iommu: device would be assigned without an IOMMU to a domain that is not direct-mapped; its DMA would hit the wrong memory"
            ),
            Self::IommuUnsupported { path } => write!(
                f,
                "xen,path: host node {path} is behind an IOMMU; IOMMU-protected assignment is not supported yet (xen,force-assign-without-iommu does not bypass the IOMMU)"
            ),
            Self::Forbidden { range, name, kept } => write!(
                f,
                "xen,reg: host range {range} overlaps {name} at {kept}, which the hypervisor keeps"
            ),
            Self::MmioOwned {
                range,
                owner,
                owned,
            } => write!(
                f,
                "xen,reg: host range {range} is already assigned to {owner} as {owned}"
            ),
            Self::IrqOwned { intid, owner } => {
                write!(f, "xen,path: SPI {intid} is already assigned to {owner}")
            }
            Self::GuestOverlap {
                range,
                other_node,
                other,
            } => write!(
                f,
                "xen,reg: guest range {range} overlaps guest range {other} of {other_node}"
            ),
        }
    }
}

/// A boot-time warning about an accepted assignment.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Warning {
    /// Domain name.
    pub domain: String,
    /// Partial-DT node path.
    pub node: String,
    /// What to warn about.
    pub kind: WarningKind,
}

/// The subject of a [`Warning`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum WarningKind {
    /// The device is assigned without IOMMU protection.
    Unprotected,
    /// In a direct-mapped domain, a `xen,reg` guest address differs from
    /// the host address.
    GuestAddressDiffers {
        /// Host range.
        host: HostRange,
        /// Guest range.
        guest: GuestRange,
    },
    /// An interrupt of the host node whose controller is not the primary
    /// GIC; it is not routed.
    NonGicInterrupt {
        /// Host node path.
        path: String,
        /// Index of the interrupt in the host node.
        index: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.domain, self.node)?;
        match &self.kind {
            WarningKind::Unprotected => write!(
                f,
                "assigned WITHOUT IOMMU protection: its DMA can reach all memory; only a trusted guest on a platform with other protection may own it"
            ),
            WarningKind::GuestAddressDiffers { host, guest } => write!(
                f,
                "xen,reg maps host {host} at guest {guest} in a direct-mapped domain; DMA programmed with guest addresses will miss"
            ),
            WarningKind::NonGicInterrupt { path, index } => write!(
                f,
                "interrupt {index} of host node {path} is not wired to the primary GIC; it is not routed to the domain"
            ),
        }
    }
}
