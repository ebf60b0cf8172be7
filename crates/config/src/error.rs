//! Typed errors and warnings. Every message names the node and, where one is
//! at fault, the property.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use tessel_addr::cells::CellError;

use crate::fdt::FdtError;

/// What is wrong with a property or node. Shared by host-level and
/// per-domain errors; the surrounding error says where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A required property (or node) is absent.
    Missing,
    /// The property has the wrong length.
    Length {
        /// The expected shape, e.g. "8 bytes (2 cells)".
        expected: &'static str,
        /// Actual length in bytes.
        got: usize,
    },
    /// A list property has the wrong number of entries.
    Count {
        /// The expected entries, e.g. "4 regions (GICD, GICC, GICH, GICV)".
        expected: &'static str,
        /// Entries found.
        got: usize,
    },
    /// The property is not a NUL-terminated UTF-8 string.
    NotString,
    /// A `reg`-like list could not be decoded.
    Cells(CellError),
    /// `#address-cells`/`#size-cells` governing this property is not 1 or 2
    /// (the value; `u32::MAX` if it is not a single cell).
    BadCellCount(u32),
    /// A value is outside the accepted range.
    OutOfRange {
        /// The value found.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A string property has a value outside its accepted set.
    BadString {
        /// The value found.
        value: String,
        /// The accepted values.
        accepted: &'static str,
    },
    /// A region has size zero or its end overflows 64 bits.
    BadRegion {
        /// Start address.
        start: u64,
        /// Size.
        size: u64,
    },
    /// A region is not aligned as required.
    Misaligned {
        /// Start address.
        start: u64,
        /// Size.
        size: u64,
        /// Required alignment.
        align: u64,
    },
    /// Two entries of the same property overlap.
    SelfOverlap {
        /// First region as `0xSTART+0xSIZE`.
        a: String,
        /// Second region.
        b: String,
    },
    /// The property needs another one that is absent (`direct-map` needs
    /// `xen,static-mem`).
    Requires(&'static str),
    /// The static banks do not add up to `memory`.
    SizeMismatch {
        /// Sum of the banks in KiB.
        banks_kib: u64,
        /// `memory` in KiB.
        memory_kib: u64,
    },
    /// More than one sub-node of a kind that must be unique.
    Duplicate {
        /// What is duplicated ("kernel module").
        what: &'static str,
        /// Name of the first node.
        first: String,
        /// Name of the second node.
        second: String,
    },
    /// The host has no usable node of this kind (e.g. no interrupt controller).
    NoDevice(&'static str),
    /// Free-form description of a malformed value, for rare cases.
    Invalid(&'static str),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "required property is missing"),
            Self::Length { expected, got } => {
                write!(f, "property must be {expected}, got {got}")
            }
            Self::Count { expected, got } => {
                write!(f, "expected {expected}, found {got}")
            }
            Self::NotString => write!(f, "property is not a NUL-terminated string"),
            Self::Cells(e) => e.fmt(f),
            Self::BadCellCount(u32::MAX) => {
                write!(
                    f,
                    "governing #address-cells/#size-cells is not a single cell"
                )
            }
            Self::BadCellCount(n) => write!(
                f,
                "governing #address-cells/#size-cells is {n}, must be 1 or 2"
            ),
            Self::OutOfRange { value, min, max } => {
                write!(f, "value {value} is outside {min}..={max}")
            }
            Self::BadString { value, accepted } => {
                write!(f, "value \"{value}\" is invalid: expected {accepted}")
            }
            Self::BadRegion { start, size } => write!(
                f,
                "region {start:#x}+{size:#x} is empty or wraps past the end of the address space"
            ),
            Self::Misaligned { start, size, align } => write!(
                f,
                "region {start:#x}+{size:#x} is not aligned to {align:#x}"
            ),
            Self::SelfOverlap { a, b } => write!(f, "regions {a} and {b} overlap"),
            Self::Requires(other) => write!(f, "requires {other}"),
            Self::SizeMismatch {
                banks_kib,
                memory_kib,
            } => write!(
                f,
                "banks total {banks_kib} KiB but memory is {memory_kib} KiB; they must be equal"
            ),
            Self::Duplicate {
                what,
                first,
                second,
            } => write!(f, "more than one {what} ({first} and {second})"),
            Self::NoDevice(what) => write!(f, "no {what} found"),
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

/// An error in the description of one domain. The domain is refused; the
/// other domains are unaffected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The domain node name, or `domain/subnode` for a module or vCPU node.
    pub node: String,
    /// The property at fault, if one is.
    pub property: Option<String>,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// A domain error, boxed: the parser's results then carry a pointer
    /// on the error path rather than the whole error through every `?`.
    pub(crate) fn new(node: &str, property: Option<&str>, kind: ErrorKind) -> Box<Self> {
        Box::new(Self {
            node: String::from(node),
            property: property.map(String::from),
            kind,
        })
    }
}

/// Writes `node: property: what`, or `node: what` without a property: the
/// one layout of every error and warning.
fn write_located(
    f: &mut fmt::Formatter<'_>,
    node: &str,
    property: Option<&str>,
    what: &dyn fmt::Display,
) -> fmt::Result {
    f.write_str(node)?;
    if let Some(p) = property {
        f.write_str(": ")?;
        f.write_str(p)?;
    }
    f.write_str(": ")?;
    what.fmt(f)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.node, self.property.as_deref(), &self.kind)
    }
}

impl core::error::Error for ConfigError {}

/// A fatal problem with the host description: nothing can be booted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// The blob is not a valid flattened device tree.
    Fdt(FdtError),
    /// A host node or property is wrong or missing.
    Node {
        /// Path of the node (e.g. `"/intc@8000000"`), or `"/"` when a whole
        /// kind of node is missing.
        node: String,
        /// The property at fault, if one is.
        property: Option<String>,
        /// What is wrong.
        kind: ErrorKind,
    },
}

impl HostError {
    /// A host error, boxed like [`ConfigError::new`]'s, for the same reason.
    pub(crate) fn node(node: &str, property: Option<&str>, kind: ErrorKind) -> Box<Self> {
        Box::new(Self::Node {
            node: String::from(node),
            property: property.map(String::from),
            kind,
        })
    }
}

impl From<FdtError> for Box<HostError> {
    fn from(e: FdtError) -> Self {
        Box::new(HostError::Fdt(e))
    }
}

impl From<FdtError> for HostError {
    fn from(e: FdtError) -> Self {
        Self::Fdt(e)
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fdt(e) => write!(f, "host device tree: {e}"),
            Self::Node {
                node,
                property,
                kind,
            } => {
                f.write_str("host ")?;
                write_located(f, node, property.as_deref(), kind)
            }
        }
    }
}

impl core::error::Error for HostError {}

/// Something accepted but worth telling the operator: an ignored or
/// deprecated property, a Tessel extension, a skipped host node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The node (domain name, `domain/subnode`, or host path).
    pub node: String,
    /// The property concerned, if any.
    pub property: Option<String>,
    /// What was noticed and what Tessel does about it.
    pub message: &'static str,
}

impl Warning {
    /// Appends a warning to `warnings`: one out-of-line call per site
    /// rather than an inlined construction and `Vec::push` at each.
    pub(crate) fn push(
        warnings: &mut Vec<Self>,
        node: &str,
        property: Option<&str>,
        message: &'static str,
    ) {
        warnings.push(Self {
            node: String::from(node),
            property: property.map(String::from),
            message,
        });
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.node, self.property.as_deref(), &self.message)
    }
}
