//! Why a domain could not be planned.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use tessel_addr::{GuestRange, HostRange};

/// A domain the builder refused: which `xen,domain` node (and sub-node),
/// which property (when one is at fault) and why. Nothing the domain took
/// is kept; the other domains are planned as if it had never been there.
///
/// Displayed as `node: property: reason`, e.g.
/// `domU3: cpus: asks for 4 vCPUs but only 1 physical CPUs are free (...)`
/// or `domU1/dtb: domU1: /passthrough/dev: ...` for a sub-node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    /// The domain node name under `/chosen`.
    pub domain: String,
    /// The sub-node at fault (a boot module such as `kernel` or the
    /// partial device tree's module), if the fault is there.
    pub subnode: Option<String>,
    /// The property at fault, if one is.
    pub property: Option<&'static str>,
    /// What is wrong.
    pub kind: BuildErrorKind,
}

impl BuildError {
    /// A refusal, boxed: the planner's results then carry a pointer on
    /// the error path rather than the whole error through every `?`.
    pub(crate) fn new(
        domain: &str,
        property: Option<&'static str>,
        kind: BuildErrorKind,
    ) -> Box<Self> {
        Box::new(Self {
            domain: String::from(domain),
            subnode: None,
            property,
            kind,
        })
    }

    /// The same error, located at sub-node `subnode` of the domain.
    pub(crate) fn at(mut self: Box<Self>, subnode: &str) -> Box<Self> {
        self.subnode = Some(String::from(subnode));
        self
    }

    /// The node path below `/chosen`: `domU1` or `domU1/kernel`.
    pub fn node(&self) -> String {
        match &self.subnode {
            Some(s) => alloc::format!("{}/{}", self.domain, s),
            None => self.domain.clone(),
        }
    }

    /// The reason as the boot log prints it after `domain NAME refused: `:
    /// `[sub-node: ][property: ]reason`, except that a vCPU-count refusal
    /// reads `asks for N vCPUs but only M physical CPUs are free ...` (its
    /// text starts with what `cpus` asks for) and a passthrough refusal is
    /// tessel-passthrough's own text, which names the domain and the
    /// partial device tree's node.
    pub fn reason(&self) -> Reason<'_> {
        Reason(self)
    }
}

/// See [`BuildError::reason`].
pub struct Reason<'a>(&'a BuildError);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if !matches!(
            e.kind,
            BuildErrorKind::NotEnoughPcpus { .. } | BuildErrorKind::Passthrough(_)
        ) {
            for part in [e.subnode.as_deref(), e.property].into_iter().flatten() {
                f.write_str(part)?;
                f.write_str(": ")?;
            }
        }
        e.kind.fmt(f)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.property {
            Some(p) => write!(f, "{}: {}: {}", self.node(), p, self.kind),
            None => write!(f, "{}: {}", self.node(), self.kind),
        }
    }
}

impl core::error::Error for BuildError {}

/// What made the builder refuse a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildErrorKind {
    /// The domain-creation flags break a rule (tessel-domctl).
    Flags(tessel_domctl::DomctlError),
    /// More vCPUs than free physical CPUs (each vCPU is pinned to a pCPU
    /// of its own).
    NotEnoughPcpus {
        /// vCPUs asked for.
        want: u32,
        /// pCPUs still free.
        free: usize,
    },
    /// No free pCPU satisfies the `hard-affinity` of a vCPU (given the
    /// pCPUs the domain's other vCPUs need).
    Affinity {
        /// The vCPU.
        vcpu: u32,
    },
    /// The static banks cannot be reserved.
    Bank(Box<tessel_static_mem::BankError>),
    /// The domain's RAM cannot be laid out or allocated.
    Ram(tessel_static_mem::LayoutError),
    /// A boot module's bytes are not readable (outside host memory).
    ModuleUnreadable {
        /// Where the module claims to be.
        range: HostRange,
    },
    /// The kernel module is not a loadable arm64 Image.
    Kernel(tessel_loader::LoaderError),
    /// Kernel, DTB and initrd do not fit in the first bank.
    Place(Box<tessel_loader::PlacementError>),
    /// A raw (header-less) kernel, its DTB and initrd do not fit in the
    /// first bank.
    RawKernelTooBig {
        /// The first bank.
        bank: GuestRange,
    },
    /// A boot image would land outside the domain's RAM.
    OutsideRam {
        /// The guest range.
        range: GuestRange,
    },
    /// A boot image would span two discontiguous host pieces of the
    /// domain's RAM.
    SpansPieces {
        /// The guest range.
        range: GuestRange,
    },
    /// The kernel module lies where the kernel must be unpacked.
    KernelOverlapsModule,
    /// The vPL011 cannot be set up.
    Uart(tessel_vpl011::ConfigError),
    /// A direct-mapped vPL011 needs the host console UART, which is
    /// missing or has no interrupt.
    NoHostUart,
    /// The host GICv2 lacks the frame a guest needs.
    HostGicFrame {
        /// `"CPU interface"` or `"virtual CPU interface"`.
        frame: &'static str,
    },
    /// The vGIC configuration is invalid.
    VgicConfig(tessel_vgic::ConfigError),
    /// The vGIC refused a set-up step (hardware interrupt mapping).
    Vgic(tessel_vgic::VgicError),
    /// The domain asks for the per-IRQ vGIC model, which this build of the
    /// hypervisor leaves out (its `vgic-per-irq` feature).
    VgicModelNotBuilt,
    /// A passthrough device could not be assigned.
    Passthrough(Box<tessel_passthrough::AssignError>),
    /// Two stage-2 mappings of the domain overlap in guest space.
    MappingOverlap {
        /// The mapping that was there first.
        first: GuestRange,
        /// The mapping that hits it.
        second: GuestRange,
    },
    /// A stage-2 mapping overlaps a region the hypervisor emulates (vGIC,
    /// vPL011) for this domain.
    HidesEmulated {
        /// The mapping.
        mapping: GuestRange,
        /// What it would hide.
        what: &'static str,
        /// The emulated region.
        region: GuestRange,
    },
    /// A mapping lies beyond the guest's intermediate physical address
    /// space or the host's physical address range.
    AddressTooHigh {
        /// The guest range.
        guest: GuestRange,
        /// The host range.
        host: HostRange,
        /// Guest IPA bits.
        ipa_bits: u8,
        /// Host PA bits.
        pa_bits: u8,
    },
    /// Every VMID is in use.
    NoVmid {
        /// The largest VMID the CPU supports.
        max: u16,
    },
    /// The guest device tree could not be generated.
    GuestDt(Box<tessel_guestdt::GuestDtError>),
}

impl fmt::Display for BuildErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flags(e) => e.fmt(f),
            Self::NotEnoughPcpus { want, free } => write!(
                f,
                "asks for {want} vCPUs but only {free} physical CPUs are free \
                 (static partitioning needs one each)"
            ),
            Self::Affinity { vcpu } => write!(
                f,
                "no free physical CPU in the hard affinity of vCPU {vcpu} \
                 (each vCPU needs a physical CPU of its own)"
            ),
            Self::Bank(e) => e.fmt(f),
            Self::Ram(e) => e.fmt(f),
            Self::ModuleUnreadable { range } => {
                write!(f, "module at {range} cannot be read")
            }
            Self::Kernel(e) => write!(f, "not a loadable kernel: {e}"),
            Self::Place(e) => e.fmt(f),
            Self::RawKernelTooBig { bank } => write!(
                f,
                "the raw kernel, DTB and initrd do not fit in the first bank {bank}"
            ),
            Self::OutsideRam { range } => {
                write!(f, "boot image at {range} lies outside the domain's RAM")
            }
            Self::SpansPieces { range } => write!(
                f,
                "boot image at {range} spans two host memory pieces of the domain's RAM"
            ),
            Self::KernelOverlapsModule => f.write_str(
                "the kernel module lies where the kernel must be loaded; move the module",
            ),
            Self::Uart(e) => e.fmt(f),
            Self::NoHostUart => f.write_str(
                "a direct-mapped vPL011 takes over the host console UART, \
                 which is missing or has no interrupt",
            ),
            Self::HostGicFrame { frame } => write!(f, "the host GICv2 has no {frame} frame"),
            Self::VgicConfig(e) => write!(f, "vGIC: {e}"),
            Self::Vgic(e) => write!(f, "vGIC: {e}"),
            Self::VgicModelNotBuilt => f.write_str(
                "the per-IRQ vGIC model is not built into this hypervisor \
                 (build feature vgic-per-irq)",
            ),
            Self::Passthrough(e) => e.fmt(f),
            Self::MappingOverlap { first, second } => write!(
                f,
                "stage-2 mapping at guest {second} overlaps the mapping at guest {first}"
            ),
            Self::HidesEmulated {
                mapping,
                what,
                region,
            } => write!(
                f,
                "stage-2 mapping at guest {mapping} hides the emulated {what} at {region}"
            ),
            Self::AddressTooHigh {
                guest,
                host,
                ipa_bits,
                pa_bits,
            } => write!(
                f,
                "mapping of host {host} at guest {guest} is beyond the {ipa_bits}-bit \
                 guest or {pa_bits}-bit host address space"
            ),
            Self::NoVmid { max } => write!(f, "no VMID left (at most {max} domains)"),
            Self::GuestDt(e) => write!(f, "guest device tree: {e}"),
        }
    }
}
