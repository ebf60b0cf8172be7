//! Guest device-tree generation for dom0less domains.
//!
//! Every Tessel guest boots with a device tree the hypervisor writes for it,
//! describing exactly the virtual platform it gets: its vCPUs, RAM banks, the
//! vGIC (v2 or v3), the architected timer, PSCI, the optional vPL011 console,
//! `/chosen`, and the devices passed through from the administrator's partial
//! device tree. The content follows what Xen generates for a dom0less domU
//! (see the crate-level notes below for where and why we differ).
//!
//! The input is a plain [`GuestDtSpec`] the domain builder fills in; the
//! output is a DTB (`Vec<u8>`) of at most [`MAX_DTB_SIZE`] bytes.
//!
//! Differences from Xen, on purpose:
//! * the root has `compatible = "linux,dummy-virt"` (the Linux binding for "a
//!   virtual platform fully described by its device tree") and a `model`, as
//!   the Devicetree Specification requires both at the root; Xen emits none;
//! * `/chosen/stdout-path` points at the vPL011 (or the node the builder
//!   names), and `/aliases/serial0` is added, so `console=` is optional;
//! * the root carries `interrupt-parent = <gic>`, so copied passthrough nodes
//!   without their own `interrupt-parent` still resolve to the vGIC;
//! * the timer node carries `always-on`: a vCPU's virtual timer keeps its
//!   state while the guest idles (the hypervisor saves it), so Linux needs no
//!   broadcast timer;
//! * PPI CPU masks reflect the vCPU count for GICv2 and are 0 for GICv3
//!   (the GICv3 binding does not use them); Xen always writes 0xf;
//! * the legacy PSCI 0.1 `arm,psci` compatible and `cpu_on`/`cpu_off` IDs are
//!   not emitted: guests use the PSCI 0.2+ standard function IDs.
//!
//! The tree is for a 64-bit (AArch64) guest kernel.
//!
//! ```
//! use tessel_addr::{GuestPhysAddr, GuestRange};
//! use tessel_guestdt::*;
//! // A direct-mapped guest on QEMU virt: native GICv2 and UART addresses.
//! let spec = GuestDtSpec {
//!     cpus: vec![0, 1],
//!     cpu_compatible: "arm,cortex-a57".into(),
//!     memory: vec![GuestRange::new(GuestPhysAddr(0x5000_0000), 0x1000_0000)],
//!     gic: GicSpec::V2 {
//!         gicd: GuestPhysAddr(0x0800_0000),
//!         gicc: GuestPhysAddr(0x0801_0000),
//!     },
//!     timer: TimerSpec::default(),
//!     vpl011: Some(UartSpec {
//!         base: GuestPhysAddr(0x0900_0000),
//!         size: 0x1000,
//!         spi: 33,
//!         kind: UartKind::SbsaUart,
//!         current_speed: 115_200,
//!     }),
//!     chosen: ChosenSpec { bootargs: Some("console=ttyAMA0".into()), ..Default::default() },
//!     partial_dtb: None,
//! };
//! assert_eq!(spec.uart_path().as_deref(), Some("/sbsa-uart@9000000"));
//! let dtb = spec.generate()?;
//! assert!(dtb.len() <= MAX_DTB_SIZE);
//! # Ok::<(), GuestDtError>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod reader;
pub mod writer;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use tessel_addr::{Address, GuestPhysAddr, GuestRange};
use tessel_config::fdt::NodeId;

pub use reader::{PartialDtError, parse_partial};
pub use tessel_config::fdt::DeviceTree;
pub use writer::{FdtError, FdtWriter};

/// Largest guest DTB Tessel generates (Xen's cap, and the largest DTB the
/// Linux arm64 boot protocol accepts: Documentation/arch/arm64/booting.rst,
/// "Setup the device tree").
pub const MAX_DTB_SIZE: usize = 2 << 20;

/// Default phandle of the guest interrupt controller (Xen's
/// GUEST_PHANDLE_GIC, public/device_tree_defs.h). Partial-DT phandles must
/// stay below it.
pub const GUEST_PHANDLE_GIC: u32 = 65000;
/// Reserved by Xen for a virtual IOMMU; never allocated by Tessel, but kept
/// out of the partial DT's range as well.
pub const GUEST_PHANDLE_IOMMU: u32 = 65001;
/// Phandle of the fixed `apb-pclk` clock emitted for a PL011 console.
pub const GUEST_PHANDLE_APB_PCLK: u32 = 65002;

/// Size of the GICv2 distributor frame in the guest DT (IHI 0048B, 4.1.1:
/// the Distributor register map spans 4 KiB).
pub const GICV2_GICD_SIZE: u64 = 0x1000;
/// Size of the GICv2 CPU-interface frame in the guest DT (IHI 0048B, 4.1.2:
/// GICC_DIR at 0x1000 makes it 8 KiB).
pub const GICV2_GICC_SIZE: u64 = 0x2000;
/// Size of the GICv3 distributor frame (IHI 0069, 12.8: 64 KiB).
pub const GICV3_GICD_SIZE: u64 = 0x1_0000;
/// Stride of one GICv3 redistributor: RD_base + SGI_base, 64 KiB each
/// (IHI 0069, 12.10).
pub const GICV3_GICR_STRIDE: u64 = 0x2_0000;
/// Most vCPUs a GICv2 can address (IHI 0048B, 2.2: 8 CPU interfaces).
pub const GICV2_MAX_CPUS: usize = 8;
/// Smallest MMIO window accepted for the vPL011 (one 4 KiB page; the PL011
/// register map, ARM DDI 0183G 3.2, ends at 0xFFC).
pub const UART_MIN_SIZE: u64 = 0x1000;
/// Frequency of the fixed `apb-pclk` clock given to a PL011 console. The vPL011
/// ignores divisors, so the value only needs to be plausible (QEMU uses the same).
pub const APB_PCLK_HZ: u32 = 24_000_000;

/// MPIDR affinity fields Aff3 (bits 39:32) and Aff2..Aff0 (bits 23:0)
/// (ARM DDI 0487, D23.2 MPIDR_EL1); DT `reg` of a CPU holds only these.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Interrupt-specifier type flags (bindings/interrupt-controller/arm,gic.yaml).
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
const IRQ_TYPE_LEVEL_LOW: u32 = 8;
/// First PPI and first SPI INTID (IHI 0069, 2.2.1).
const PPI_BASE: u32 = 16;
const SPI_BASE: u32 = 32;
/// Largest SPI INTID (1020..1023 are special, IHI 0069 2.2.1).
const SPI_MAX: u32 = 1019;

/// The guest's interrupt controller.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GicSpec {
    /// GICv2: distributor (4 KiB) and CPU interface (8 KiB) bases.
    V2 {
        /// Guest-physical base of GICD.
        gicd: GuestPhysAddr,
        /// Guest-physical base of GICC.
        gicc: GuestPhysAddr,
    },
    /// GICv3: distributor (64 KiB) and one or more redistributor regions.
    V3 {
        /// Guest-physical base of GICD.
        gicd: GuestPhysAddr,
        /// Redistributor regions, each a whole number of 128 KiB frames,
        /// together covering every vCPU.
        redistributors: Vec<GuestRange>,
    },
}

/// Architected-timer interrupts (INTIDs, so PPIs are 16..=31).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimerSpec {
    /// Secure physical timer PPI.
    pub secure_phys: u32,
    /// Non-secure physical timer PPI.
    pub nonsecure_phys: u32,
    /// Virtual timer PPI.
    pub virt: u32,
    /// `clock-frequency` to advertise; `None` lets the guest read CNTFRQ_EL0
    /// (preferred: only set it when firmware left CNTFRQ wrong).
    pub clock_frequency: Option<u32>,
}

impl Default for TimerSpec {
    /// Xen's guest timer PPIs (public/arch-arm.h): 29, 30, 27.
    fn default() -> Self {
        Self {
            secure_phys: 29,
            nonsecure_phys: 30,
            virt: 27,
            clock_frequency: None,
        }
    }
}

/// Which UART binding the vPL011 is described with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UartKind {
    /// `arm,sbsa-uart` (Xen's choice; the emulated SBSA subset of PL011).
    SbsaUart,
    /// `arm,pl011` + `arm,primecell`, with the clocks Linux's amba-pl011
    /// driver requires. The vPL011 must then answer the PrimeCell ID registers.
    Pl011,
}

/// The emulated console UART.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UartSpec {
    /// Guest-physical base.
    pub base: GuestPhysAddr,
    /// MMIO size (at least [`UART_MIN_SIZE`]).
    pub size: u64,
    /// Interrupt INTID (an SPI, 32..=1019).
    pub spi: u32,
    /// Binding to use.
    pub kind: UartKind,
    /// Baud rate advertised in `current-speed` (the SBSA UART binding requires it).
    pub current_speed: u32,
}

impl UartSpec {
    /// The vPL011 as Tessel and Xen present it: an `arm,sbsa-uart` of one
    /// 4 KiB page at `base`, interrupt `spi`, advertising 115200 baud.
    pub fn sbsa(base: GuestPhysAddr, spi: u32) -> Self {
        Self {
            base,
            size: 0x1000,
            spi,
            kind: UartKind::SbsaUart,
            current_speed: 115_200,
        }
    }
}

/// Contents of `/chosen`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ChosenSpec {
    /// Kernel command line; omitted when `None` or empty.
    pub bootargs: Option<String>,
    /// `stdout-path`; `None` means "the vPL011 node" when there is one.
    pub stdout_path: Option<String>,
    /// Where the loader put the initrd, if any.
    pub initrd: Option<GuestRange>,
}

/// Everything needed to write one guest's device tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GuestDtSpec<'a> {
    /// MPIDR affinity value (`reg`) of each vCPU, boot vCPU first.
    pub cpus: Vec<u64>,
    /// `compatible` of each cpu node (e.g. "arm,cortex-a57", or "arm,armv8").
    pub cpu_compatible: String,
    /// Guest RAM banks.
    pub memory: Vec<GuestRange>,
    /// The vGIC.
    pub gic: GicSpec,
    /// The architected timer.
    pub timer: TimerSpec,
    /// The vPL011 console, if the domain has one.
    pub vpl011: Option<UartSpec>,
    /// `/chosen`.
    pub chosen: ChosenSpec,
    /// The administrator's partial DTB (passthrough description), if any.
    pub partial_dtb: Option<&'a [u8]>,
}

/// Why a guest device tree could not be generated.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GuestDtError {
    /// The spec lists no vCPU.
    NoCpus,
    /// Two vCPUs share an MPIDR.
    DuplicateCpu(u64),
    /// An MPIDR with bits outside the affinity fields.
    BadMpidr(u64),
    /// GICv2 cannot serve more than 8 vCPUs.
    TooManyCpusForGicV2(usize),
    /// The spec lists no RAM bank.
    NoMemory,
    /// A RAM bank is empty or wraps the address space.
    BadBank(GuestRange),
    /// Two RAM banks overlap.
    OverlappingBanks(GuestRange, GuestRange),
    /// GICv3 without redistributor regions.
    NoRedistributors,
    /// A redistributor region not 64 KiB aligned or not a whole number of frames.
    BadRedistributorRegion(GuestRange),
    /// The redistributor regions cannot serve every vCPU.
    RedistributorsTooSmall {
        /// vCPUs in the guest.
        cpus: usize,
        /// Redistributor frames the regions hold.
        frames: u64,
    },
    /// A timer interrupt that is not a PPI.
    BadTimerPpi {
        /// Which timer interrupt.
        which: &'static str,
        /// The INTID given.
        intid: u32,
    },
    /// The vPL011 interrupt is not an SPI.
    BadUartSpi(u32),
    /// The vPL011 window is smaller than 4 KiB or wraps.
    BadUartWindow {
        /// Base of the window.
        base: GuestPhysAddr,
        /// Size of the window.
        size: u64,
    },
    /// An emulated device window (a GIC frame) runs past the end of the
    /// 64-bit address space.
    DeviceWindowWraps {
        /// Which device frame.
        device: &'static str,
        /// Its window.
        window: GuestRange,
    },
    /// An emulated device window overlaps guest RAM.
    DeviceOverlapsRam {
        /// Which device frame.
        device: &'static str,
        /// Its window.
        window: GuestRange,
        /// The RAM bank it overlaps.
        bank: GuestRange,
    },
    /// The initrd range is empty or wraps.
    BadInitrd(GuestRange),
    /// The initrd is not inside guest RAM.
    InitrdOutsideRam(GuestRange),
    /// A string for the tree (bootargs, compatible, path) contains a NUL.
    NulInString(&'static str),
    /// The partial DTB is invalid.
    Partial(PartialDtError),
    /// The tree could not be written (names from the partial DTB, size).
    Fdt(FdtError),
}

impl fmt::Display for GuestDtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCpus => write!(f, "guest has no vCPU"),
            Self::DuplicateCpu(m) => write!(f, "two vCPUs have MPIDR {m:#x}"),
            Self::BadMpidr(m) => {
                write!(
                    f,
                    "vCPU MPIDR {m:#x} has bits outside Aff3..Aff0 ({MPIDR_AFFINITY_MASK:#x})"
                )
            }
            Self::TooManyCpusForGicV2(n) => {
                write!(
                    f,
                    "GICv2 supports at most {GICV2_MAX_CPUS} vCPUs, guest has {n}"
                )
            }
            Self::NoMemory => write!(f, "guest has no RAM bank"),
            Self::BadBank(b) => write!(f, "RAM bank {b} is empty or wraps the address space"),
            Self::OverlappingBanks(a, b) => write!(f, "RAM banks {a} and {b} overlap"),
            Self::NoRedistributors => write!(f, "GICv3 guest has no redistributor region"),
            Self::BadRedistributorRegion(r) => write!(
                f,
                "redistributor region {r} is not 64 KiB aligned or not a multiple of {GICV3_GICR_STRIDE:#x} bytes"
            ),
            Self::RedistributorsTooSmall { cpus, frames } => write!(
                f,
                "redistributor regions hold {frames} frames but the guest has {cpus} vCPUs"
            ),
            Self::BadTimerPpi { which, intid } => {
                write!(f, "{which} timer interrupt {intid} is not a PPI (16..=31)")
            }
            Self::BadUartSpi(i) => {
                write!(
                    f,
                    "vPL011 interrupt {i} is not an SPI ({SPI_BASE}..={SPI_MAX})"
                )
            }
            Self::BadUartWindow { base, size } => write!(
                f,
                "vPL011 window {base:#x}+{size:#x} is smaller than {UART_MIN_SIZE:#x} bytes or wraps"
            ),
            Self::DeviceWindowWraps { device, window } => {
                write!(
                    f,
                    "{device} window {window} runs past the end of the address space"
                )
            }
            Self::DeviceOverlapsRam {
                device,
                window,
                bank,
            } => write!(f, "{device} window {window} overlaps RAM bank {bank}"),
            Self::BadInitrd(r) => write!(f, "initrd range {r} is empty or wraps"),
            Self::InitrdOutsideRam(r) => write!(f, "initrd {r} is not inside a RAM bank"),
            Self::NulInString(what) => write!(f, "{what} contains a NUL byte"),
            Self::Partial(e) => write!(f, "{e}"),
            Self::Fdt(e) => write!(f, "guest device tree: {e}"),
        }
    }
}

impl From<FdtError> for GuestDtError {
    fn from(e: FdtError) -> Self {
        Self::Fdt(e)
    }
}

/// The writer's errors come boxed (so its results fit in a register);
/// the one conversion unboxes.
impl From<Box<FdtError>> for GuestDtError {
    fn from(e: Box<FdtError>) -> Self {
        Self::Fdt(*e)
    }
}

impl From<PartialDtError> for GuestDtError {
    fn from(e: PartialDtError) -> Self {
        Self::Partial(e)
    }
}

/// Properties of `/passthrough` nodes that Xen consumes and never copies
/// (docs/misc/arm/passthrough.txt).
const CONSUMED_PASSTHROUGH_PROPS: [&str; 3] =
    ["xen,reg", "xen,path", "xen,force-assign-without-iommu"];

/// The parts of a partial DT that reach the guest.
struct PartialParts<'p> {
    dt: &'p DeviceTree,
    gic_phandle: Option<u32>,
    aliases: Option<NodeId>,
    passthrough: Option<NodeId>,
}

/// The one-cell property `prop` of `id`, if present.
fn cell(dt: &DeviceTree, id: NodeId, prop: &str) -> Result<Option<u32>, PartialDtError> {
    match dt.prop(id, prop) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
        Some(_) => Err(PartialDtError::BadPhandleProperty(dt.path(id))),
    }
}

/// The node's phandle (`phandle`, else `linux,phandle`), if it has one.
fn phandle(dt: &DeviceTree, id: NodeId) -> Result<Option<u32>, PartialDtError> {
    let prop = if dt.prop(id, "phandle").is_some() {
        "phandle"
    } else {
        "linux,phandle"
    };
    cell(dt, id, prop)
}

/// Adds `v` to the set `set` (a short list); false if it was there.
fn insert_new<T: PartialEq>(set: &mut Vec<T>, v: T) -> bool {
    if set.contains(&v) {
        return false;
    }
    set.push(v);
    true
}

/// A phandle rule of the partial DT, checked by [`check_subtree`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Phandles are in 1..65000.
    InRange,
    /// Phandles are not in the set yet (they are added to it).
    Unique,
    /// `interrupt-parent` names a phandle of the set.
    Known,
}

/// Checks `rule` on every node of the subtree at `top`, in blob
/// (depth-first) order.
fn check_subtree(
    dt: &DeviceTree,
    top: NodeId,
    rule: Rule,
    set: &mut Vec<u32>,
) -> Result<(), PartialDtError> {
    for id in dt.nodes() {
        let mut cur = Some(id);
        while cur.is_some_and(|c| c != top) {
            cur = cur.and_then(|c| dt.node(c).parent);
        }
        if cur.is_none() {
            continue;
        }
        let value = match rule {
            Rule::Known => cell(dt, id, "interrupt-parent")?,
            _ => phandle(dt, id)?,
        };
        let Some(phandle) = value else {
            continue;
        };
        let node = || dt.path(id);
        return Err(match rule {
            Rule::InRange if phandle == 0 || phandle >= GUEST_PHANDLE_GIC => {
                PartialDtError::ReservedPhandle {
                    node: node(),
                    phandle,
                }
            }
            Rule::Unique if !insert_new(set, phandle) => PartialDtError::DuplicatePhandle {
                node: node(),
                phandle,
            },
            Rule::Known if !set.contains(&phandle) => PartialDtError::DanglingInterruptParent {
                node: node(),
                phandle,
            },
            _ => continue,
        });
    }
    Ok(())
}

fn analyse_partial(dt: &DeviceTree) -> Result<PartialParts<'_>, PartialDtError> {
    // Every phandle in the whole partial DT must stay below the reserved range.
    let mut set = Vec::new();
    check_subtree(dt, dt.root(), Rule::InRange, &mut set)?;
    let top = |name: &str| dt.children(dt.root()).find(|&c| dt.node(c).name == name);
    let aliases = top("aliases");
    let passthrough = top("passthrough");
    let gic_phandle = match top("gic") {
        Some(g) => phandle(dt, g)?,
        None => None,
    };
    // Phandles that will exist in the guest must be unique.
    set.extend(gic_phandle);
    for n in [aliases, passthrough].into_iter().flatten() {
        check_subtree(dt, n, Rule::Unique, &mut set)?;
    }
    // interrupt-parent inside /passthrough must reach a node the guest has.
    insert_new(&mut set, gic_phandle.unwrap_or(GUEST_PHANDLE_GIC));
    if let Some(p) = passthrough {
        check_subtree(dt, p, Rule::Known, &mut set)?;
    }
    Ok(PartialParts {
        dt,
        gic_phandle,
        aliases,
        passthrough,
    })
}

/// Writes the properties (less Xen's, with `strip_xen`) and the child nodes
/// of partial-DT node `id` into the open node of `w`.
fn copy_contents(
    w: &mut FdtWriter,
    dt: &DeviceTree,
    id: NodeId,
    strip_xen: bool,
) -> Result<(), Box<FdtError>> {
    let node = dt.node(id);
    for p in &node.props {
        if strip_xen && CONSUMED_PASSTHROUGH_PROPS.contains(&p.name.as_str()) {
            continue;
        }
        w.property(&p.name, &p.value)?;
    }
    for &c in &node.children {
        w.begin_node(&dt.node(c).name)?;
        copy_contents(w, dt, c, strip_xen)?;
        w.end_node()?;
    }
    Ok(())
}

fn check_str(s: &str, what: &'static str) -> Result<(), GuestDtError> {
    if s.bytes().any(|b| b == 0) {
        return Err(GuestDtError::NulInString(what));
    }
    Ok(())
}

/// Writes `reg` listing `ranges` with 2 address and 2 size cells.
fn property_reg(w: &mut FdtWriter, ranges: &[GuestRange]) -> Result<(), Box<FdtError>> {
    let mut v = Vec::new();
    for r in ranges {
        let (a, s) = (r.start.as_u64(), r.size);
        v.extend_from_slice(&[(a >> 32) as u32, a as u32, (s >> 32) as u32, s as u32]);
    }
    w.property_cells("reg", &v)
}

/// A node name with a unit address: `stem@addr`, the address in hex.
fn unit_name(stem: &str, addr: u64) -> String {
    format!("{stem}@{addr:x}")
}

impl GuestDtSpec<'_> {
    fn validate(&self) -> Result<(), GuestDtError> {
        if self.cpus.is_empty() {
            return Err(GuestDtError::NoCpus);
        }
        let mut seen = Vec::new();
        for &m in &self.cpus {
            if m & !MPIDR_AFFINITY_MASK != 0 {
                return Err(GuestDtError::BadMpidr(m));
            }
            if !insert_new(&mut seen, m) {
                return Err(GuestDtError::DuplicateCpu(m));
            }
        }
        check_str(&self.cpu_compatible, "cpu compatible")?;
        if self.memory.is_empty() {
            return Err(GuestDtError::NoMemory);
        }
        for (i, b) in self.memory.iter().enumerate() {
            if b.is_empty() || b.end().is_none() {
                return Err(GuestDtError::BadBank(*b));
            }
            if let Some(o) = self.memory.iter().skip(i + 1).find(|o| o.overlaps(b)) {
                return Err(GuestDtError::OverlappingBanks(*b, *o));
            }
        }
        match &self.gic {
            GicSpec::V2 { .. } => {
                if self.cpus.len() > GICV2_MAX_CPUS {
                    return Err(GuestDtError::TooManyCpusForGicV2(self.cpus.len()));
                }
            }
            GicSpec::V3 { redistributors, .. } => {
                if redistributors.is_empty() {
                    return Err(GuestDtError::NoRedistributors);
                }
                let mut frames = 0u64;
                for r in redistributors {
                    if r.is_empty()
                        || r.end().is_none()
                        || !r.start.is_aligned(0x1_0000)
                        || !r.size.is_multiple_of(GICV3_GICR_STRIDE)
                    {
                        return Err(GuestDtError::BadRedistributorRegion(*r));
                    }
                    frames += r.size / GICV3_GICR_STRIDE;
                }
                if frames < self.cpus.len() as u64 {
                    return Err(GuestDtError::RedistributorsTooSmall {
                        cpus: self.cpus.len(),
                        frames,
                    });
                }
            }
        }
        for (which, intid) in [
            ("secure physical", self.timer.secure_phys),
            ("non-secure physical", self.timer.nonsecure_phys),
            ("virtual", self.timer.virt),
        ] {
            if !(PPI_BASE..SPI_BASE).contains(&intid) {
                return Err(GuestDtError::BadTimerPpi { which, intid });
            }
        }
        if let Some(u) = &self.vpl011 {
            if !(SPI_BASE..=SPI_MAX).contains(&u.spi) {
                return Err(GuestDtError::BadUartSpi(u.spi));
            }
            if u.size < UART_MIN_SIZE || u.base.checked_add(u.size).is_none() {
                return Err(GuestDtError::BadUartWindow {
                    base: u.base,
                    size: u.size,
                });
            }
        }
        if let Some(bootargs) = &self.chosen.bootargs {
            check_str(bootargs, "bootargs")?;
        }
        if let Some(p) = &self.chosen.stdout_path {
            check_str(p, "stdout-path")?;
        }
        if let Some(r) = &self.chosen.initrd {
            if r.is_empty() || r.end().is_none() {
                return Err(GuestDtError::BadInitrd(*r));
            }
            if !self.memory.iter().any(|b| b.contains_range(r)) {
                return Err(GuestDtError::InitrdOutsideRam(*r));
            }
        }
        // The MMIO windows of the emulated devices described in the tree.
        match &self.gic {
            GicSpec::V2 { gicd, gicc } => {
                self.check_window("GICv2 distributor", GuestRange::new(*gicd, GICV2_GICD_SIZE))?;
                self.check_window(
                    "GICv2 CPU interface",
                    GuestRange::new(*gicc, GICV2_GICC_SIZE),
                )?;
            }
            GicSpec::V3 {
                gicd,
                redistributors,
            } => {
                self.check_window("GICv3 distributor", GuestRange::new(*gicd, GICV3_GICD_SIZE))?;
                for r in redistributors {
                    self.check_window("GICv3 redistributor region", *r)?;
                }
            }
        }
        if let Some(u) = &self.vpl011 {
            self.check_window("vPL011", GuestRange::new(u.base, u.size))?;
        }
        Ok(())
    }

    /// Checks the MMIO window of an emulated device: inside the address
    /// space and clear of guest RAM.
    fn check_window(&self, device: &'static str, window: GuestRange) -> Result<(), GuestDtError> {
        if window.end().is_none() {
            return Err(GuestDtError::DeviceWindowWraps { device, window });
        }
        if let Some(bank) = self.memory.iter().find(|b| b.overlaps(&window)) {
            return Err(GuestDtError::DeviceOverlapsRam {
                device,
                window,
                bank: *bank,
            });
        }
        Ok(())
    }

    /// The path of the vPL011 node in the generated tree, if there is one
    /// (e.g. `/sbsa-uart@22000000`).
    pub fn uart_path(&self) -> Option<String> {
        self.vpl011.as_ref().map(|u| {
            let stem = match u.kind {
                UartKind::SbsaUart => "/sbsa-uart",
                UartKind::Pl011 => "/pl011",
            };
            unit_name(stem, u.base.as_u64())
        })
    }

    /// Generates the guest DTB. Fails with a typed error when the spec or the
    /// partial DTB is inconsistent, or the result exceeds [`MAX_DTB_SIZE`].
    pub fn generate(&self) -> Result<Vec<u8>, GuestDtError> {
        self.generate_with_limit(MAX_DTB_SIZE)
    }

    /// Like [`generate`](Self::generate), with a tighter size limit (for
    /// example the DTB slot the loader reserved); never above [`MAX_DTB_SIZE`].
    pub fn generate_with_limit(&self, max: usize) -> Result<Vec<u8>, GuestDtError> {
        self.validate()?;
        let partial = match self.partial_dtb {
            Some(blob) => Some(parse_partial(blob)?),
            None => None,
        };
        let parts = match &partial {
            Some(dt) => Some(analyse_partial(dt)?),
            None => None,
        };
        let mut w = FdtWriter::new();
        self.write_tree(&mut w, parts.as_ref())?;
        Ok(w.finish_with_limit(max.min(MAX_DTB_SIZE))?)
    }

    /// Writes the whole tree into `w`. Only the writer can fail from here
    /// on, so its error is converted once, by the caller.
    fn write_tree(
        &self,
        w: &mut FdtWriter,
        parts: Option<&PartialParts<'_>>,
    ) -> Result<(), Box<FdtError>> {
        let gic_phandle = parts
            .and_then(|p| p.gic_phandle)
            .filter(|p| *p != 0)
            .unwrap_or(GUEST_PHANDLE_GIC);
        let uart_path = self.uart_path();
        let ncpus = self.cpus.len();

        // reg of the boot CPU; Aff3 does not fit the 32-bit header field and
        // arm64 Linux ignores it anyway.
        w.set_boot_cpuid_phys(self.cpus.first().map_or(0, |m| *m as u32));

        w.begin_node("")?;
        w.property_u32("#address-cells", 2)?;
        w.property_u32("#size-cells", 2)?;
        w.property_string("compatible", "linux,dummy-virt")?;
        w.property_string("model", "Tessel dom0less guest")?;
        w.property_u32("interrupt-parent", gic_phandle)?;

        // /chosen
        w.begin_node("chosen")?;
        if let Some(b) = self.chosen.bootargs.as_deref().filter(|b| !b.is_empty()) {
            w.property_string("bootargs", b)?;
        }
        if let Some(p) = self.chosen.stdout_path.as_deref().or(uart_path.as_deref()) {
            w.property_string("stdout-path", p)?;
        }
        if let Some(r) = &self.chosen.initrd {
            w.property_u64("linux,initrd-start", r.start.as_u64())?;
            w.property_u64("linux,initrd-end", r.start.as_u64() + r.size)?;
        }
        w.end_node()?;

        // /aliases: the partial DT's entries, plus serial0 unless it sets one.
        let partial_aliases = parts.and_then(|p| Some((p.dt, p.aliases?)));
        let has_serial0 = partial_aliases.is_some_and(|(dt, a)| dt.prop(a, "serial0").is_some());
        if partial_aliases.is_some() || uart_path.is_some() {
            w.begin_node("aliases")?;
            if let (Some(p), false) = (&uart_path, has_serial0) {
                w.property_string("serial0", p)?;
            }
            if let Some((dt, a)) = partial_aliases {
                copy_contents(w, dt, a, false)?;
            }
            w.end_node()?;
        }

        // /cpus
        let wide = self.cpus.iter().any(|m| *m > u64::from(u32::MAX));
        w.begin_node("cpus")?;
        w.property_u32("#address-cells", if wide { 2 } else { 1 })?;
        w.property_u32("#size-cells", 0)?;
        for &m in &self.cpus {
            w.begin_node(&unit_name("cpu", m))?;
            w.property_string("device_type", "cpu")?;
            w.property_string("compatible", &self.cpu_compatible)?;
            if wide {
                w.property_u64("reg", m)?;
            } else {
                w.property_u32("reg", m as u32)?;
            }
            w.property_string("enable-method", "psci")?;
            w.end_node()?;
        }
        w.end_node()?;

        // /memory: one node listing every bank, as Xen does.
        let first = self.memory.first().map_or(0, |b| b.start.as_u64());
        w.begin_node(&unit_name("memory", first))?;
        w.property_string("device_type", "memory")?;
        property_reg(w, &self.memory)?;
        w.end_node()?;

        // The vGIC.
        let (GicSpec::V2 { gicd, .. } | GicSpec::V3 { gicd, .. }) = &self.gic;
        w.begin_node(&unit_name("interrupt-controller", gicd.as_u64()))?;
        let ppi_mask = match &self.gic {
            GicSpec::V2 { gicd, gicc } => {
                w.property_string("compatible", "arm,gic-400")?;
                property_reg(
                    w,
                    &[
                        GuestRange::new(*gicd, GICV2_GICD_SIZE),
                        GuestRange::new(*gicc, GICV2_GICC_SIZE),
                    ],
                )?;
                // One bit per CPU interface (GIC binding, 3rd cell bits 15:8).
                (1u32 << ncpus) - 1
            }
            GicSpec::V3 {
                gicd,
                redistributors,
            } => {
                w.property_string("compatible", "arm,gic-v3")?;
                w.property_u32("#redistributor-regions", redistributors.len() as u32)?;
                let mut frames = Vec::from([GuestRange::new(*gicd, GICV3_GICD_SIZE)]);
                frames.extend_from_slice(redistributors);
                property_reg(w, &frames)?;
                0
            }
        };
        w.property_u32("#interrupt-cells", 3)?;
        w.property_u32("#address-cells", 0)?;
        w.property_empty("interrupt-controller")?;
        w.property_u32("phandle", gic_phandle)?;
        w.end_node()?;

        // Architected timer (bindings/timer/arm,arch_timer.yaml): secure
        // physical, non-secure physical, virtual; level-low.
        w.begin_node("timer")?;
        w.property_string("compatible", "arm,armv8-timer")?;
        // PPI specifiers (3-cell GIC binding): type 1, PPI number, CPU mask
        // in bits 15:8 and the trigger type.
        let t = &self.timer;
        let flags = (ppi_mask << 8) | IRQ_TYPE_LEVEL_LOW;
        w.property_cells(
            "interrupts",
            &[
                1,
                t.secure_phys - PPI_BASE,
                flags,
                1,
                t.nonsecure_phys - PPI_BASE,
                flags,
                1,
                t.virt - PPI_BASE,
                flags,
            ],
        )?;
        w.property_empty("always-on")?;
        if let Some(hz) = self.timer.clock_frequency {
            w.property_u32("clock-frequency", hz)?;
        }
        w.end_node()?;

        // PSCI (bindings/arm/psci.yaml), conduit HVC.
        w.begin_node("psci")?;
        w.property_string_list("compatible", &["arm,psci-1.0", "arm,psci-0.2"])?;
        w.property_string("method", "hvc")?;
        w.end_node()?;

        // The console UART.
        if let Some(u) = &self.vpl011 {
            if u.kind == UartKind::Pl011 {
                // bindings/clock/fixed-clock.yaml; amba-pl011 needs both clocks.
                w.begin_node("apb-pclk")?;
                w.property_string("compatible", "fixed-clock")?;
                w.property_u32("#clock-cells", 0)?;
                w.property_u32("clock-frequency", APB_PCLK_HZ)?;
                w.property_string("clock-output-names", "clk24mhz")?;
                w.property_u32("phandle", GUEST_PHANDLE_APB_PCLK)?;
                w.end_node()?;
            }
            let path = uart_path.as_deref().unwrap_or_default();
            w.begin_node(path.trim_start_matches('/'))?;
            match u.kind {
                UartKind::SbsaUart => w.property_string("compatible", "arm,sbsa-uart")?,
                UartKind::Pl011 => {
                    w.property_string_list("compatible", &["arm,pl011", "arm,primecell"])?
                }
            }
            property_reg(w, &[GuestRange::new(u.base, u.size)])?;
            w.property_cells("interrupts", &[0, u.spi - SPI_BASE, IRQ_TYPE_LEVEL_HIGH])?;
            w.property_u32("interrupt-parent", gic_phandle)?;
            w.property_u32("current-speed", u.current_speed)?;
            if u.kind == UartKind::Pl011 {
                w.property_cells("clocks", &[GUEST_PHANDLE_APB_PCLK, GUEST_PHANDLE_APB_PCLK])?;
                w.property_string_list("clock-names", &["uartclk", "apb_pclk"])?;
            }
            w.end_node()?;
        }

        // Passed-through devices.
        if let Some((dt, p)) = parts.and_then(|p| Some((p.dt, p.passthrough?))) {
            w.begin_node("passthrough")?;
            copy_contents(w, dt, p, true)?;
            w.end_node()?;
        }

        w.end_node()
    }
}

/// Generates the DTB for `spec`; shorthand for [`GuestDtSpec::generate`].
pub fn generate(spec: &GuestDtSpec<'_>) -> Result<Vec<u8>, GuestDtError> {
    spec.generate()
}
