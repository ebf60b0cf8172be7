//! The host platform as described by the boot device tree: RAM, reserved
//! regions, CPUs, the GIC, the console UART, the timer, PSCI, IOMMU presence
//! and every device's MMIO ranges.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use tessel_addr::cells;
use tessel_addr::{HostPhysAddr, HostRange};

use crate::error::{ErrorKind, HostError, Warning};
use crate::fdt::{Cells, DeviceTree, NodeId, listed};

/// First SPI INTID (GIC Architecture Specification IHI 0069, 2.2.1).
pub const SPI_BASE: u32 = 32;
/// First PPI INTID (IHI 0069, 2.2.1).
pub const PPI_BASE: u32 = 16;
/// Largest SPI number in a GIC interrupt specifier (INTID 1019 - 32).
const MAX_SPI_NUM: u32 = 1019 - SPI_BASE;
/// Largest PPI number in a GIC interrupt specifier (INTIDs 16..=31).
const MAX_PPI_NUM: u32 = 15;

/// Compatible strings of a GICv2 (Linux binding arm,gic.yaml),
/// NUL-separated.
const GICV2_COMPATS: &str = concat!(
    "arm,gic-400\0",
    "arm,cortex-a15-gic\0",
    "arm,cortex-a9-gic\0",
    "arm,cortex-a7-gic\0",
    "arm,arm11mp-gic\0",
    "arm,arm1176jzf-devchip-gic\0",
    "arm,eb11mp-gic\0",
    "arm,pl390\0",
    "arm,tc11mp-gic\0",
    "arm,gic-v2",
);
/// Compatible string of a GICv3/v4 (binding arm,gic-v3.yaml).
const GICV3_COMPAT: &str = "arm,gic-v3";
/// IOMMU compatibles that mean DMA can be confined (bindings
/// arm,smmu.yaml and arm,smmu-v3.yaml), NUL-separated.
const IOMMU_COMPATS: &str = concat!(
    "arm,smmu-v3\0",
    "arm,smmu-v2\0",
    "arm,smmu-v1\0",
    "arm,mmu-500\0",
    "arm,mmu-401\0",
    "arm,mmu-400\0",
    "qcom,smmu-v2",
);

/// GIC architecture version of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (memory-mapped CPU interface, GICH/GICV for virtualization).
    V2,
    /// GICv3 or v4 (system-register CPU interface, redistributors).
    V3,
}

/// The host interrupt controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GicInfo {
    /// Architecture version, from `compatible`.
    pub version: GicVersion,
    /// Path of the GIC node.
    pub path: String,
    /// The node's `phandle`, if it has one.
    pub phandle: Option<u32>,
    /// Distributor.
    pub gicd: HostRange,
    /// GICv3 redistributor regions in `reg` order (empty for v2). They need
    /// not be contiguous.
    pub redistributors: Vec<HostRange>,
    /// CPU interface (v2: required; v3: optional legacy interface).
    pub gicc: Option<HostRange>,
    /// Virtual interface control (hypervisor) registers.
    pub gich: Option<HostRange>,
    /// Virtual CPU interface.
    pub gicv: Option<HostRange>,
    /// Maintenance interrupt INTID (a PPI), from `interrupts`.
    pub maintenance_intid: Option<u32>,
}

/// One CPU node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// Path of the node.
    pub path: String,
    /// MPIDR affinity value from `reg`.
    pub mpidr: u64,
    /// `enable-method` (`"psci"`, `"spin-table"`), if present.
    pub enable_method: Option<String>,
}

/// The UART named by `/chosen/stdout-path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UartInfo {
    /// Path of the UART node.
    pub path: String,
    /// Options after `:` in stdout-path (e.g. `"115200n8"`), if any.
    pub options: Option<String>,
    /// First MMIO region.
    pub mmio: HostRange,
    /// INTID of its first interrupt, if it is wired to the GIC.
    pub intid: Option<u32>,
    /// `compatible` strings.
    pub compatible: Vec<String>,
}

/// Generic timer interrupts (binding arm,arch_timer.yaml), as INTIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    /// Secure physical timer.
    pub secure_phys: u32,
    /// Non-secure physical timer.
    pub nonsecure_phys: u32,
    /// Virtual timer.
    pub virt: u32,
    /// EL2 (hypervisor) physical timer.
    pub hyp_phys: u32,
    /// EL2 virtual timer, if listed (fifth entry).
    pub hyp_virt: Option<u32>,
    /// `clock-frequency`, if the firmware did not program CNTFRQ.
    pub clock_frequency: Option<u32>,
}

/// PSCI conduit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    /// `HVC` (firmware at EL2 — unusual when Tessel owns EL2).
    Hvc,
    /// `SMC` to EL3 firmware.
    Smc,
}

impl PsciMethod {
    /// The conduit instruction: `"HVC"` or `"SMC"`.
    pub fn instruction(self) -> &'static str {
        match self {
            Self::Hvc => "HVC",
            Self::Smc => "SMC",
        }
    }
}

/// Newest PSCI version the node claims (binding arm,psci.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PsciVersion {
    /// `arm,psci` (0.1, function IDs from the node).
    V0_1,
    /// `arm,psci-0.2`.
    V0_2,
    /// `arm,psci-1.0`.
    V1_0,
}

/// PSCI firmware interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciInfo {
    /// Conduit.
    pub method: PsciMethod,
    /// Version from `compatible`.
    pub version: PsciVersion,
}

/// Where a reserved host region comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReservedSource {
    /// The FDT memory-reservation block.
    MemReserve,
    /// A `/reserved-memory` child node (its path).
    Node(String),
}

/// A host RAM region that must not be given to guests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    /// The region.
    pub range: HostRange,
    /// Where it comes from.
    pub source: ReservedSource,
}

/// One MMIO region of a device node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRegion {
    /// Path of the device node.
    pub path: String,
    /// Host-physical region (after bus `ranges` translation).
    pub range: HostRange,
    /// Whether the node is enabled (`status` absent or "okay").
    pub enabled: bool,
}

/// Everything Tessel needs to know about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPlatform {
    /// RAM from every `/memory` node, all `reg` entries, in DT order.
    pub ram: Vec<HostRange>,
    /// Reserved regions (memreserve block, then `/reserved-memory`).
    pub reserved: Vec<ReservedRegion>,
    /// CPU nodes in DT order.
    pub cpus: Vec<CpuInfo>,
    /// The interrupt controller.
    pub gic: GicInfo,
    /// The console UART (`/chosen/stdout-path`), if one resolves.
    pub console: Option<UartInfo>,
    /// The generic timer, if described.
    pub timer: Option<TimerInfo>,
    /// PSCI, if described.
    pub psci: Option<PsciInfo>,
    /// Whether an enabled IOMMU (SMMU) exists or any node has `iommus`.
    pub has_iommu: bool,
    /// MMIO of every other node with `reg` (not memory, cpus, chosen,
    /// reserved-memory, aliases), in DT order.
    pub devices: Vec<DeviceRegion>,
}

impl HostPlatform {
    /// Devices whose MMIO overlaps `range`.
    pub fn devices_overlapping(
        &self,
        range: HostRange,
    ) -> impl Iterator<Item = &DeviceRegion> + '_ {
        self.devices
            .iter()
            .filter(move |d| d.range.overlaps(&range))
    }

    /// Whether `range` lies entirely within one host RAM region.
    pub fn is_ram(&self, range: &HostRange) -> bool {
        self.ram.iter().any(|r| r.contains_range(range))
    }
}

fn err(dt: &DeviceTree, id: NodeId, prop: Option<&str>, kind: ErrorKind) -> Box<HostError> {
    HostError::node(&dt.path(id), prop, kind)
}

/// Decodes `id`'s `reg` with its parent's cells into checked ranges.
pub(crate) fn decode_reg(
    dt: &DeviceTree,
    id: NodeId,
    prop: &str,
    (ac, sc): (u32, u32),
) -> Result<Vec<(u64, u64)>, ErrorKind> {
    let v = dt.prop(id, prop).ok_or(ErrorKind::Missing)?;
    if !(1..=2).contains(&ac) {
        return Err(ErrorKind::BadCellCount(ac));
    }
    if !(1..=2).contains(&sc) {
        return Err(ErrorKind::BadCellCount(sc));
    }
    // As `cells::reg` decodes it, written as a loop: smaller than
    // collecting its iterator.
    let tuple = (ac + sc) as usize * 4;
    if v.is_empty() {
        return Err(ErrorKind::Cells(cells::CellError::Empty));
    }
    if !v.len().is_multiple_of(tuple) {
        return Err(ErrorKind::Cells(cells::CellError::Truncated {
            len: v.len(),
            tuple,
        }));
    }
    let mut out = Vec::new();
    let mut rest = v;
    while let Some((a, r)) = cells::read(rest, ac)
        && let Some((s, r)) = cells::read(r, sc)
    {
        out.push((a, s));
        rest = r;
    }
    Ok(out)
}

/// `id`'s `reg`, decoded with the cells of its parent.
pub(crate) fn own_reg(dt: &DeviceTree, id: NodeId) -> Result<Vec<(u64, u64)>, ErrorKind> {
    decode_reg(
        dt,
        id,
        "reg",
        dt.reg_cells(id).map_err(ErrorKind::BadCellCount)?,
    )
}

/// `id`'s `reg` (with its parent's cells) as checked host ranges, appended
/// to `out`. With `skip_empty`, zero-sized entries are left out.
fn host_reg_into(
    dt: &DeviceTree,
    id: NodeId,
    skip_empty: bool,
    out: &mut Vec<HostRange>,
) -> Result<(), Box<HostError>> {
    let mut decode = || {
        for (a, s) in own_reg(dt, id)? {
            if !(skip_empty && s == 0) {
                out.push(checked_range(a, s)?);
            }
        }
        Ok(())
    };
    decode().map_err(|k| err(dt, id, Some("reg"), k))
}

/// `id`'s `reg` (with its parent's cells) as checked host ranges.
fn host_reg(dt: &DeviceTree, id: NodeId) -> Result<Vec<HostRange>, Box<HostError>> {
    let mut out = Vec::new();
    host_reg_into(dt, id, false, &mut out)?;
    Ok(out)
}

/// `start..start+size` as a host range, if it is non-empty and does not
/// wrap past the end of the address space.
// Out of line: inlined at its half-dozen call sites it makes the image
// larger (measured).
#[inline(never)]
pub(crate) fn checked_range(start: u64, size: u64) -> Result<HostRange, ErrorKind> {
    let r = HostRange::new(HostPhysAddr(start), size);
    if size == 0 || start.checked_add(size - 1).is_none() {
        return Err(ErrorKind::BadRegion { start, size });
    }
    Ok(r)
}

/// Resolves the interrupt parent of `id` (its own or nearest ancestor's
/// `interrupt-parent`).
fn interrupt_parent(dt: &DeviceTree, id: NodeId) -> Option<NodeId> {
    let mut cur = Some(id);
    while let Some(c) = cur {
        if let Some(ph) = dt.prop_u32(c, "interrupt-parent") {
            return dt.find_phandle(ph);
        }
        cur = dt.node(c).parent;
    }
    None
}

/// Converts a GIC interrupt specifier `<type number flags>` to an INTID
/// (binding arm,gic.yaml: type 0 = SPI, 1 = PPI).
pub fn gic_spec_to_intid(kind: u32, num: u32) -> Result<u32, ErrorKind> {
    match kind {
        0 if num <= MAX_SPI_NUM => Ok(num + SPI_BASE),
        1 if num <= MAX_PPI_NUM => Ok(num + PPI_BASE),
        0 => Err(ErrorKind::OutOfRange {
            value: num.into(),
            min: 0,
            max: MAX_SPI_NUM.into(),
        }),
        1 => Err(ErrorKind::OutOfRange {
            value: num.into(),
            min: 0,
            max: MAX_PPI_NUM.into(),
        }),
        _ => Err(ErrorKind::Invalid(
            "interrupt type must be 0 (SPI) or 1 (PPI)",
        )),
    }
}

/// Decodes every entry of `id`'s `interrupts` as GIC INTIDs. The interrupt
/// parent must be `gic`.
fn gic_interrupts(dt: &DeviceTree, id: NodeId, gic: NodeId) -> Result<Vec<u32>, ErrorKind> {
    let v = dt.prop(id, "interrupts").ok_or(ErrorKind::Missing)?;
    // The GIC's own `interrupts` (the maintenance PPI) are its own, whatever
    // `interrupt-parent` it inherits.
    if id != gic && interrupt_parent(dt, id) != Some(gic) {
        return Err(ErrorKind::Invalid("interrupt parent is not the host GIC"));
    }
    let n = dt.prop_u32(gic, "#interrupt-cells").unwrap_or(3);
    if n < 3 {
        return Err(ErrorKind::Invalid("GIC #interrupt-cells is below 3"));
    }
    let width = n as usize * 4;
    if v.is_empty() || v.len() % width != 0 {
        return Err(ErrorKind::Length {
            expected: "a whole number of GIC interrupt specifiers",
            got: v.len(),
        });
    }
    let mut out = Vec::new();
    for c in v.chunks_exact(width) {
        // A specifier has at least 3 cells (checked above), so both reads
        // succeed; each value is one cell, so it fits in u32.
        if let Some((kind, rest)) = cells::read(c, 1)
            && let Some((num, _)) = cells::read(rest, 1)
        {
            out.push(gic_spec_to_intid(kind as u32, num as u32)?);
        }
    }
    Ok(out)
}

/// Translates a bus address of `id`'s parent bus to a host physical
/// address through every ancestor's `ranges`. `None` when a bus on the way
/// has no `ranges` (not memory-mapped) or no entry covers the address.
fn translate(dt: &DeviceTree, id: NodeId, mut addr: u64, size: u64) -> Option<u64> {
    let mut bus = dt.node(id).parent?;
    while let Some(up) = dt.node(bus).parent {
        let v = dt.prop(bus, "ranges")?;
        if !v.is_empty() {
            let ca = dt.cells_of(bus, Cells::Address).ok()?;
            let pa = dt.cells_of(up, Cells::Address).ok()?;
            let sc = dt.cells_of(bus, Cells::Size).ok()?;
            // The checks `cells::tuples` makes, then its decoding as a
            // loop (smaller than its generic iterator).
            if ![ca, pa, sc].iter().all(|w| (1..=2).contains(w))
                || !v.len().is_multiple_of((ca + pa + sc) as usize * 4)
            {
                return None;
            }
            let mut rest = v;
            let mut hit = None;
            while let Some((child, r)) = cells::read(rest, ca)
                && let Some((parent, r)) = cells::read(r, pa)
                && let Some((len, r)) = cells::read(r, sc)
            {
                rest = r;
                let off = addr.checked_sub(child)?;
                if off < len && off.checked_add(size)? <= len {
                    hit = Some(parent.checked_add(off)?);
                    break;
                }
            }
            addr = hit?;
        }
        bus = up;
    }
    Some(addr)
}

impl HostPlatform {
    /// Reads the host platform from a decoded tree. Non-fatal oddities are
    /// appended to `warnings`.
    // Kept out of line: inlined into `parse_tree` it makes the EL2 image
    // larger (measured).
    #[inline(never)]
    pub fn from_tree(dt: &DeviceTree, warnings: &mut Vec<Warning>) -> Result<Self, Box<HostError>> {
        let root = dt.root();
        let ram = Self::read_memory(dt)?;
        let reserved = Self::read_reserved(dt, warnings)?;
        let cpus = Self::read_cpus(dt)?;
        let (gic_node, gic) = Self::read_gic(dt)?;
        let console = Self::read_console(dt, gic_node, warnings);
        let timer = Self::read_timer(dt, gic_node, warnings);
        let psci = Self::read_psci(dt, warnings);
        let has_iommu = dt.nodes().any(|n| {
            dt.is_enabled(n)
                && (dt
                    .prop_strs(n, "compatible")
                    .any(|c| listed(IOMMU_COMPATS, c))
                    || dt.prop(n, "iommus").is_some())
        });
        let mut devices = Vec::new();
        for &child in &dt.node(root).children {
            Self::collect_devices(dt, child, &mut devices, warnings);
        }
        Ok(Self {
            ram,
            reserved,
            cpus,
            gic,
            console,
            timer,
            psci,
            has_iommu,
            devices,
        })
    }

    fn read_memory(dt: &DeviceTree) -> Result<Vec<HostRange>, Box<HostError>> {
        let mut ram = Vec::new();
        for n in dt.children(dt.root()) {
            let is_mem =
                dt.base_name(n) == "memory" || dt.prop_str(n, "device_type") == Some("memory");
            if !is_mem || !dt.is_enabled(n) {
                continue;
            }
            // A memory node may have zero-size entries (placeholders filled
            // by firmware); skip those rather than reject the platform.
            host_reg_into(dt, n, true, &mut ram)?;
        }
        if ram.is_empty() {
            return Err(HostError::node(
                "/",
                None,
                ErrorKind::NoDevice("/memory node with RAM"),
            ));
        }
        Ok(ram)
    }

    fn read_reserved(
        dt: &DeviceTree,
        warnings: &mut Vec<Warning>,
    ) -> Result<Vec<ReservedRegion>, Box<HostError>> {
        let mut out = Vec::new();
        for &(a, s) in dt.memreserve() {
            let range =
                checked_range(a, s).map_err(|k| HostError::node("/", Some("memreserve"), k))?;
            out.push(ReservedRegion {
                range,
                source: ReservedSource::MemReserve,
            });
        }
        if let Some(rm) = dt.child_by_name(dt.root(), "reserved-memory") {
            for n in dt.children(rm) {
                if dt.prop(n, "reg").is_none() {
                    // Dynamically placed (`size`/`alloc-ranges`): nothing fixed.
                    Warning::push(
                        warnings,
                        &dt.path(n),
                        Some("reg"),
                        "reserved-memory node without reg (dynamic placement) ignored",
                    );
                    continue;
                }
                let path = dt.path(n);
                for range in host_reg(dt, n)? {
                    out.push(ReservedRegion {
                        range,
                        source: ReservedSource::Node(path.clone()),
                    });
                }
            }
        }
        Ok(out)
    }

    fn read_cpus(dt: &DeviceTree) -> Result<Vec<CpuInfo>, Box<HostError>> {
        let cpus_node = dt
            .child_by_name(dt.root(), "cpus")
            .ok_or_else(|| HostError::node("/", None, ErrorKind::NoDevice("/cpus node")))?;
        let ac = dt.cells_of(cpus_node, Cells::Address).map_err(|v| {
            err(
                dt,
                cpus_node,
                Some("#address-cells"),
                ErrorKind::BadCellCount(v),
            )
        })?;
        let mut out = Vec::new();
        for n in dt.children(cpus_node) {
            if dt.prop_str(n, "device_type") != Some("cpu") && dt.base_name(n) != "cpu" {
                continue;
            }
            if !dt.is_enabled(n) {
                continue;
            }
            let v = dt
                .prop(n, "reg")
                .ok_or_else(|| err(dt, n, Some("reg"), ErrorKind::Missing))?;
            let (mpidr, rest) = cells::read(v, ac).ok_or_else(|| {
                err(
                    dt,
                    n,
                    Some("reg"),
                    if (1..=2).contains(&ac) {
                        ErrorKind::Length {
                            expected: "#address-cells of /cpus (1 or 2 cells)",
                            got: v.len(),
                        }
                    } else {
                        ErrorKind::BadCellCount(ac)
                    },
                )
            })?;
            if !rest.is_empty() {
                return Err(err(
                    dt,
                    n,
                    Some("reg"),
                    ErrorKind::Length {
                        expected: "#address-cells of /cpus (1 or 2 cells)",
                        got: v.len(),
                    },
                ));
            }
            out.push(CpuInfo {
                path: dt.path(n),
                mpidr,
                enable_method: dt.prop_str(n, "enable-method").map(String::from),
            });
        }
        if out.is_empty() {
            return Err(err(
                dt,
                cpus_node,
                None,
                ErrorKind::NoDevice("enabled cpu node"),
            ));
        }
        Ok(out)
    }

    fn read_gic(dt: &DeviceTree) -> Result<(NodeId, GicInfo), Box<HostError>> {
        let found = dt.nodes().find_map(|n| {
            if !dt.is_enabled(n) || dt.prop(n, "interrupt-controller").is_none() {
                return None;
            }
            if dt.is_compatible(n, GICV3_COMPAT) {
                Some((n, GicVersion::V3))
            } else if dt
                .prop_strs(n, "compatible")
                .any(|c| listed(GICV2_COMPATS, c))
            {
                Some((n, GicVersion::V2))
            } else {
                None
            }
        });
        let (n, version) = found.ok_or_else(|| {
            HostError::node(
                "/",
                None,
                ErrorKind::NoDevice("GICv2 or GICv3 interrupt controller"),
            )
        })?;
        let regs = host_reg(dt, n)?;
        let reg_short = |need: usize| {
            err(
                dt,
                n,
                Some("reg"),
                ErrorKind::Count {
                    expected: match version {
                        GicVersion::V2 => "4 regions (GICD, GICC, GICH, GICV)",
                        GicVersion::V3 => "GICD plus #redistributor-regions regions",
                    },
                    got: need,
                },
            )
        };
        // `host_reg` never returns an empty list.
        let Some((&gicd, rest)) = regs.split_first() else {
            return Err(reg_short(0));
        };
        let mut nr = 0;
        if version == GicVersion::V3 {
            nr = match dt.prop(n, "#redistributor-regions") {
                None => 1,
                Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
                Some(v) => {
                    return Err(err(
                        dt,
                        n,
                        Some("#redistributor-regions"),
                        ErrorKind::Length {
                            expected: "4 bytes (1 cell)",
                            got: v.len(),
                        },
                    ));
                }
            };
            if nr == 0 || nr as usize >= regs.len() {
                return Err(err(
                    dt,
                    n,
                    Some("#redistributor-regions"),
                    ErrorKind::OutOfRange {
                        value: nr.into(),
                        min: 1,
                        max: regs.len().saturating_sub(1) as u64,
                    },
                ));
            }
        }
        // `nr < regs.len()`, so this always splits.
        let (redistributors, rest) = rest.split_at_checked(nr as usize).unwrap_or((&[], rest));
        let gicc = rest.first().copied();
        let gich = rest.get(1).copied();
        let gicv = rest.get(2).copied();
        if version == GicVersion::V2 && gicv.is_none() {
            // Without GICH/GICV the GICv2 lacks virtualization extensions.
            return Err(err(
                dt,
                n,
                Some("reg"),
                ErrorKind::Count {
                    expected: "4 regions (GICD, GICC, GICH, GICV)",
                    got: regs.len(),
                },
            ));
        }
        // Optional; `gic_interrupts` is Missing only when it is absent, and
        // a present list is never empty.
        let maintenance_intid = match gic_interrupts(dt, n, n) {
            Ok(v) => v.first().copied(),
            Err(ErrorKind::Missing) => None,
            Err(k) => return Err(err(dt, n, Some("interrupts"), k)),
        };
        Ok((
            n,
            GicInfo {
                version,
                path: dt.path(n),
                phandle: dt
                    .prop_u32(n, "phandle")
                    .or(dt.prop_u32(n, "linux,phandle")),
                gicd,
                redistributors: redistributors.to_vec(),
                gicc,
                gich,
                gicv,
                maintenance_intid,
            },
        ))
    }

    fn read_console(dt: &DeviceTree, gic: NodeId, warnings: &mut Vec<Warning>) -> Option<UartInfo> {
        let chosen = dt.child_by_name(dt.root(), "chosen")?;
        let prop = if dt.prop(chosen, "stdout-path").is_some() {
            "stdout-path"
        } else if dt.prop(chosen, "linux,stdout-path").is_some() {
            "linux,stdout-path"
        } else {
            return None;
        };
        let warn = |w: &mut Vec<Warning>, msg| {
            Warning::push(w, "/chosen", Some(prop), msg);
            None
        };
        let Some(spec) = dt.prop_str(chosen, prop) else {
            return warn(warnings, "not a string; no console UART");
        };
        let (target, options) = match spec.split_once(':') {
            Some((t, o)) => (t, Some(o)),
            None => (spec, None),
        };
        let node = if target.starts_with('/') {
            dt.find_path(target)
        } else {
            // An alias, possibly followed by a sub-path.
            let (alias, tail) = target.split_once('/').unwrap_or((target, ""));
            // `p/tail`, walked without building the joined path.
            dt.child_by_name(dt.root(), "aliases")
                .and_then(|a| dt.prop_str(a, alias))
                .and_then(|p| dt.find_path(p))
                .and_then(|n| dt.walk(n, tail))
        };
        let Some(node) = node else {
            return warn(warnings, "names no node; no console UART");
        };
        let Some(mmio) = host_reg(dt, node).ok().and_then(|r| r.first().copied()) else {
            return warn(warnings, "UART node has no usable reg; no console UART");
        };
        let intid = match gic_interrupts(dt, node, gic) {
            Ok(v) => v.first().copied(),
            Err(_) => {
                Warning::push(
                    warnings,
                    &dt.path(node),
                    Some("interrupts"),
                    "console UART interrupt not decodable as a GIC SPI/PPI; polled only",
                );
                None
            }
        };
        Some(UartInfo {
            path: dt.path(node),
            options: options.map(String::from),
            mmio,
            intid,
            compatible: dt.prop_strs(node, "compatible").map(String::from).collect(),
        })
    }

    fn read_timer(dt: &DeviceTree, gic: NodeId, warnings: &mut Vec<Warning>) -> Option<TimerInfo> {
        let n = dt.nodes().find(|&n| {
            dt.is_enabled(n)
                && (dt.is_compatible(n, "arm,armv8-timer")
                    || dt.is_compatible(n, "arm,armv7-timer"))
        })?;
        match gic_interrupts(dt, n, gic).as_deref() {
            Ok(&[secure_phys, nonsecure_phys, virt, hyp_phys, ref rest @ ..]) => Some(TimerInfo {
                secure_phys,
                nonsecure_phys,
                virt,
                hyp_phys,
                hyp_virt: rest.first().copied(),
                clock_frequency: dt.prop_u32(n, "clock-frequency"),
            }),
            _ => {
                Warning::push(
                    warnings,
                    &dt.path(n),
                    Some("interrupts"),
                    "timer needs 4 GIC PPIs (secure, non-secure, virtual, hypervisor); ignored",
                );
                None
            }
        }
    }

    fn read_psci(dt: &DeviceTree, warnings: &mut Vec<Warning>) -> Option<PsciInfo> {
        let n = dt.nodes().find(|&n| {
            dt.is_enabled(n)
                && dt
                    .prop_strs(n, "compatible")
                    .any(|c| c == "arm,psci" || c.starts_with("arm,psci-"))
        })?;
        let method = match dt.prop_str(n, "method") {
            Some("hvc") => PsciMethod::Hvc,
            Some("smc") => PsciMethod::Smc,
            _ => {
                Warning::push(
                    warnings,
                    &dt.path(n),
                    Some("method"),
                    "PSCI method is neither \"hvc\" nor \"smc\"; PSCI ignored",
                );
                return None;
            }
        };
        let version = dt
            .prop_strs(n, "compatible")
            .filter_map(|c| match c {
                "arm,psci" => Some(PsciVersion::V0_1),
                "arm,psci-0.2" => Some(PsciVersion::V0_2),
                c if c.starts_with("arm,psci-1.") => Some(PsciVersion::V1_0),
                _ => None,
            })
            .max()?;
        Some(PsciInfo { method, version })
    }

    fn collect_devices(
        dt: &DeviceTree,
        id: NodeId,
        out: &mut Vec<DeviceRegion>,
        warnings: &mut Vec<Warning>,
    ) {
        if dt.node(id).parent == Some(dt.root())
            && (listed(
                "memory\0cpus\0chosen\0reserved-memory\0aliases",
                dt.base_name(id),
            ) || dt.prop_str(id, "device_type") == Some("memory"))
        {
            return;
        }
        let no_mmio = matches!(dt.reg_cells(id), Ok((_, 0)));
        if dt.prop(id, "reg").is_some() && !no_mmio {
            match own_reg(dt, id) {
                Ok(regs) => {
                    for (a, s) in regs {
                        if s == 0 {
                            continue;
                        }
                        // Nodes on buses without `ranges` (I2C, SPI, MDIO) have
                        // no CPU-visible MMIO: skip them silently.
                        if let Some(pa) = translate(dt, id, a, s)
                            && let Ok(range) = checked_range(pa, s)
                        {
                            out.push(DeviceRegion {
                                path: dt.path(id),
                                range,
                                enabled: dt.is_enabled(id),
                            });
                        }
                    }
                }
                Err(_) => Warning::push(
                    warnings,
                    &dt.path(id),
                    Some("reg"),
                    "malformed reg; device left out of the MMIO map",
                ),
            }
        }
        for &c in &dt.node(id).children {
            Self::collect_devices(dt, c, out, warnings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TNode, build, cells, host_with, s};
    use std::string::ToString;

    fn platform(root: &TNode) -> (Result<HostPlatform, HostError>, Vec<Warning>) {
        let dt = DeviceTree::parse(&build(root, &[])).unwrap();
        let mut w = Vec::new();
        (HostPlatform::from_tree(&dt, &mut w).map_err(|e| *e), w)
    }

    fn base() -> TNode {
        host_with(TNode::new("chosen"))
    }

    fn edit(root: &mut TNode, name: &str, f: impl FnOnce(&mut TNode)) {
        let n = root.children.iter_mut().find(|c| c.name == name).unwrap();
        f(n);
    }

    fn set(n: &mut TNode, prop: &str, v: Vec<u8>) {
        n.props.retain(|(p, _)| p != prop);
        n.props.push((prop.into(), v));
    }

    #[test]
    fn interrupt_specifiers_map_to_intids() {
        assert_eq!(gic_spec_to_intid(0, 1), Ok(33));
        assert_eq!(gic_spec_to_intid(0, 987), Ok(1019));
        assert_eq!(gic_spec_to_intid(1, 9), Ok(25));
        assert_eq!(gic_spec_to_intid(1, 15), Ok(31));
        assert!(gic_spec_to_intid(0, 988).is_err());
        assert!(gic_spec_to_intid(1, 16).is_err());
        assert!(gic_spec_to_intid(2, 0).is_err());
    }

    #[test]
    fn minimal_host_parses() {
        let (h, w) = platform(&base());
        let h = h.unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(h.gic.gicc.unwrap().size, 0x2000);
        assert_eq!(h.console.unwrap().intid, Some(33));
        assert_eq!(h.gic.maintenance_intid, Some(25));
        assert!(h.timer.is_none() && h.psci.is_none());
    }

    #[test]
    fn bus_ranges_translate_and_unmapped_buses_are_skipped() {
        let root = base()
            .child(
                TNode::new("platform-bus@c000000")
                    .prop("#address-cells", cells(&[1]))
                    .prop("#size-cells", cells(&[1]))
                    .prop("ranges", cells(&[0, 0, 0x0c00_0000, 0x0200_0000]))
                    .child(TNode::new("dev@1000").prop("reg", cells(&[0x1000, 0x100])))
                    // Outside the window: not CPU-visible.
                    .child(TNode::new("dev@3000000").prop("reg", cells(&[0x0300_0000, 0x100]))),
            )
            .child(
                TNode::new("i2c@9100000")
                    .prop("reg", cells(&[0, 0x0910_0000, 0, 0x1000]))
                    .prop("#address-cells", cells(&[1]))
                    .prop("#size-cells", cells(&[0]))
                    .child(TNode::new("rtc@68").prop("reg", cells(&[0x68]))),
            );
        let (h, w) = platform(&root);
        let h = h.unwrap();
        assert!(w.is_empty(), "{w:?}");
        let paths: Vec<_> = h
            .devices
            .iter()
            .map(|d| (d.path.as_str(), d.range.start.0))
            .collect();
        assert!(paths.contains(&("/platform-bus@c000000/dev@1000", 0x0c00_1000)));
        assert!(paths.contains(&("/i2c@9100000", 0x0910_0000)));
        assert!(
            !paths
                .iter()
                .any(|(p, _)| p.contains("rtc") || p.contains("dev@3000000"))
        );
    }

    #[test]
    fn console_not_on_gic_is_polled_with_warning() {
        let mut root = base();
        edit(&mut root, "uart@9000000", |u| {
            set(u, "interrupt-parent", cells(&[99]))
        });
        let (h, w) = platform(&root);
        assert_eq!(h.unwrap().console.unwrap().intid, None);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].node, "/uart@9000000");
    }

    #[test]
    fn unresolvable_stdout_path_warns() {
        // An unknown alias, and a known one with a sub-path that is not there.
        for spec in ["serial7:9600", "serial0/nothing"] {
            let mut root = base().child(TNode::new("aliases").prop("serial0", s("/uart@9000000")));
            edit(&mut root, "chosen", |c| set(c, "stdout-path", s(spec)));
            let (h, w) = platform(&root);
            assert!(h.unwrap().console.is_none());
            assert_eq!(
                w[0].to_string(),
                "/chosen: stdout-path: names no node; no console UART"
            );
        }
    }

    #[test]
    fn stdout_path_alias_with_sub_path_resolves() {
        let mut root = base().child(
            TNode::new("aliases")
                .prop("serial0", s("/uart@9000000"))
                .prop("bus", s("/bus@a000000/")),
        );
        root = root.child(
            TNode::new("bus@a000000")
                .prop("#address-cells", cells(&[1]))
                .prop("#size-cells", cells(&[1]))
                .prop("ranges", Vec::new())
                .child(TNode::new("uart@a001000").prop("reg", cells(&[0x0a00_1000, 0x1000]))),
        );
        edit(&mut root, "chosen", |c| {
            set(c, "stdout-path", s("serial0:115200n8"))
        });
        let (h, _) = platform(&root);
        let con = h.unwrap().console.unwrap();
        assert_eq!(
            (con.path.as_str(), con.options.as_deref()),
            ("/uart@9000000", Some("115200n8"))
        );
        edit(&mut root, "chosen", |c| {
            set(c, "stdout-path", s("bus/uart@a001000"))
        });
        let (h, w) = platform(&root);
        let con = h.unwrap().console.unwrap();
        assert_eq!(
            (con.path.as_str(), con.options),
            ("/bus@a000000/uart@a001000", None)
        );
        assert_eq!(con.mmio.start.0, 0x0a00_1000);
        // No interrupts: polled, with a warning naming the UART.
        assert_eq!(w[0].node, "/bus@a000000/uart@a001000");
    }

    #[test]
    fn redistributor_count_must_fit_reg() {
        let mut root = base();
        edit(&mut root, "intc@8000000", |g| {
            set(g, "compatible", s("arm,gic-v3"));
            set(g, "#redistributor-regions", cells(&[4]));
        });
        let (h, _) = platform(&root);
        assert_eq!(
            h.unwrap_err().to_string(),
            "host /intc@8000000: #redistributor-regions: value 4 is outside 1..=3"
        );
    }

    #[test]
    fn gicv3_multiple_redistributors_then_optional_cpu_interface() {
        let mut root = base();
        edit(&mut root, "intc@8000000", |g| {
            set(g, "compatible", s("arm,gic-v3"));
            set(g, "#redistributor-regions", cells(&[2]));
        });
        let h = platform(&root).0.unwrap();
        assert_eq!(h.gic.version, GicVersion::V3);
        let starts: Vec<_> = h.gic.redistributors.iter().map(|r| r.start.0).collect();
        assert_eq!(starts, [0x0801_0000, 0x0803_0000]);
        assert_eq!(h.gic.gicc.map(|r| r.start.0), Some(0x0804_0000));
        assert_eq!(h.gic.gich, None);
    }

    #[test]
    fn cpu_reg_must_match_address_cells() {
        let mut root = base();
        edit(&mut root, "cpus", |c| {
            c.children[1].props.retain(|(p, _)| p != "reg");
            c.children[1].props.push(("reg".into(), cells(&[0, 1])));
        });
        assert_eq!(
            platform(&root).0.unwrap_err().to_string(),
            "host /cpus/cpu@1: reg: property must be #address-cells of /cpus (1 or 2 cells), got 8"
        );
    }

    #[test]
    fn two_cell_mpidr() {
        let mut root = base();
        edit(&mut root, "cpus", |c| {
            set(c, "#address-cells", cells(&[2]));
            for (i, cpu) in c.children.iter_mut().enumerate() {
                set(cpu, "reg", cells(&[0x1, 0x100 + i as u32]));
            }
        });
        let h = platform(&root).0.unwrap();
        assert_eq!(h.cpus[1].mpidr, 0x1_0000_0101);
    }

    #[test]
    fn zero_sized_memory_entries_are_skipped_but_wrapping_ones_fatal() {
        let mut root = base();
        edit(&mut root, "memory@40000000", |m| {
            set(
                m,
                "reg",
                cells(&[0, 0x4000_0000, 0, 0x4000_0000, 0, 0x8000_0000, 0, 0]),
            )
        });
        assert_eq!(platform(&root).0.unwrap().ram.len(), 1);
        edit(&mut root, "memory@40000000", |m| {
            set(m, "reg", cells(&[0xffff_ffff, 0xffff_0000, 0, 0x2_0000]))
        });
        assert!(matches!(
            platform(&root).0.unwrap_err(),
            HostError::Node {
                kind: ErrorKind::BadRegion { .. },
                ..
            }
        ));
    }

    #[test]
    fn timer_psci_and_iommu_details() {
        let root = base()
            .child(
                TNode::new("timer")
                    .prop("compatible", s("arm,armv8-timer"))
                    .prop(
                        "interrupts",
                        cells(&[1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8, 1, 12, 8]),
                    )
                    .prop("clock-frequency", cells(&[62_500_000])),
            )
            .child(
                TNode::new("psci")
                    .prop("compatible", [s("arm,psci-0.2"), s("arm,psci")].concat())
                    .prop("method", s("hvc")),
            )
            .child(
                TNode::new("smmu@2b400000")
                    .prop("compatible", s("arm,mmu-500"))
                    .prop("status", s("disabled"))
                    .prop("reg", cells(&[0, 0x2b40_0000, 0, 0x1_0000])),
            );
        let h = platform(&root).0.unwrap();
        let t = h.timer.unwrap();
        assert_eq!(
            (t.hyp_phys, t.hyp_virt, t.clock_frequency),
            (26, Some(28), Some(62_500_000))
        );
        assert_eq!(
            h.psci,
            Some(PsciInfo {
                method: PsciMethod::Hvc,
                version: PsciVersion::V0_2
            })
        );
        // A disabled SMMU does not count.
        assert!(!h.has_iommu);
        let root = base().child(
            TNode::new("dma@1000")
                .prop("iommus", cells(&[5, 1]))
                .prop("reg", cells(&[0, 0x1000, 0, 0x100])),
        );
        assert!(platform(&root).0.unwrap().has_iommu);
    }

    #[test]
    fn short_timer_and_bad_psci_method_warn() {
        let root = base()
            .child(
                TNode::new("timer")
                    .prop("compatible", s("arm,armv8-timer"))
                    .prop("interrupts", cells(&[1, 13, 8])),
            )
            .child(
                TNode::new("psci")
                    .prop("compatible", s("arm,psci-1.0"))
                    .prop("method", s("svc")),
            );
        let (h, w) = platform(&root);
        let h = h.unwrap();
        assert!(h.timer.is_none() && h.psci.is_none());
        let w: Vec<_> = w
            .iter()
            .map(|w| (w.node.as_str(), w.property.as_deref()))
            .collect();
        assert_eq!(
            w,
            [("/timer", Some("interrupts")), ("/psci", Some("method"))]
        );
    }

    #[test]
    fn gic_maintenance_interrupt_must_be_a_ppi_spec() {
        let mut root = base();
        edit(&mut root, "intc@8000000", |g| {
            set(g, "interrupts", cells(&[1, 9]))
        });
        assert_eq!(
            platform(&root).0.unwrap_err().to_string(),
            "host /intc@8000000: interrupts: property must be a whole number of GIC interrupt specifiers, got 8"
        );
    }
}
