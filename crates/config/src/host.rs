//! The host platform as described by the boot device tree: RAM, reserved
//! regions, CPUs, the GIC, the console UART, the timer, PSCI, IOMMU presence
//! and every device's MMIO ranges.

use alloc::string::String;
use alloc::vec::Vec;

use tessel_addr::cells;
use tessel_addr::{HostPhysAddr, HostRange};

use crate::error::{ErrorKind, HostError, Warning};
use crate::fdt::{Cells, DeviceTree, NodeId};

/// First SPI INTID (GIC Architecture Specification IHI 0069, 2.2.1).
pub const SPI_BASE: u32 = 32;
/// First PPI INTID (IHI 0069, 2.2.1).
pub const PPI_BASE: u32 = 16;
/// Largest SPI number in a GIC interrupt specifier (INTID 1019 - 32).
const MAX_SPI_NUM: u32 = 1019 - SPI_BASE;
/// Largest PPI number in a GIC interrupt specifier (INTIDs 16..=31).
const MAX_PPI_NUM: u32 = 15;

/// Compatible strings of a GICv2 (Linux binding arm,gic.yaml).
const GICV2_COMPATS: &[&str] = &[
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,arm11mp-gic",
    "arm,arm1176jzf-devchip-gic",
    "arm,eb11mp-gic",
    "arm,pl390",
    "arm,tc11mp-gic",
    "arm,gic-v2",
];
/// Compatible string of a GICv3/v4 (binding arm,gic-v3.yaml).
const GICV3_COMPAT: &str = "arm,gic-v3";
/// IOMMU compatibles that mean DMA can be confined (bindings
/// arm,smmu.yaml and arm,smmu-v3.yaml).
const IOMMU_COMPATS: &[&str] = &[
    "arm,smmu-v3",
    "arm,smmu-v2",
    "arm,smmu-v1",
    "arm,mmu-500",
    "arm,mmu-401",
    "arm,mmu-400",
    "qcom,smmu-v2",
];

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

fn err(dt: &DeviceTree, id: NodeId, prop: Option<&str>, kind: ErrorKind) -> HostError {
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
    Ok(cells::reg(v, ac, sc).map_err(ErrorKind::Cells)?.collect())
}

fn host_reg(dt: &DeviceTree, id: NodeId) -> Result<Vec<HostRange>, HostError> {
    let c = dt
        .reg_cells(id)
        .map_err(|v| err(dt, id, Some("reg"), ErrorKind::BadCellCount(v)))?;
    let raw = decode_reg(dt, id, "reg", c).map_err(|k| err(dt, id, Some("reg"), k))?;
    raw.into_iter()
        .map(|(a, s)| checked_range(a, s).map_err(|k| err(dt, id, Some("reg"), k)))
        .collect()
}

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
    if interrupt_parent(dt, id) != Some(gic) {
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
    v.chunks_exact(width)
        .map(|c| {
            let (kind, rest) = cells::read(c, 1).ok_or(ErrorKind::Invalid("short specifier"))?;
            let (num, _) = cells::read(rest, 1).ok_or(ErrorKind::Invalid("short specifier"))?;
            // Both values were read from one cell, so they fit in u32.
            gic_spec_to_intid(kind as u32, num as u32)
        })
        .collect()
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
            let entries = cells::tuples(v, [ca, pa, sc]).ok()?;
            let mut hit = None;
            for [child, parent, len] in entries {
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
    pub fn from_tree(dt: &DeviceTree, warnings: &mut Vec<Warning>) -> Result<Self, HostError> {
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
                && (IOMMU_COMPATS.iter().any(|c| dt.is_compatible(n, c))
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

    fn read_memory(dt: &DeviceTree) -> Result<Vec<HostRange>, HostError> {
        let mut ram = Vec::new();
        for n in dt.children(dt.root()) {
            let is_mem =
                dt.base_name(n) == "memory" || dt.prop_str(n, "device_type") == Some("memory");
            if !is_mem || !dt.is_enabled(n) {
                continue;
            }
            // A memory node may have zero-size entries (placeholders filled
            // by firmware); skip those rather than reject the platform.
            let c = dt
                .reg_cells(n)
                .map_err(|v| err(dt, n, Some("reg"), ErrorKind::BadCellCount(v)))?;
            let raw = decode_reg(dt, n, "reg", c).map_err(|k| err(dt, n, Some("reg"), k))?;
            for (a, s) in raw.into_iter().filter(|&(_, s)| s != 0) {
                ram.push(checked_range(a, s).map_err(|k| err(dt, n, Some("reg"), k))?);
            }
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
    ) -> Result<Vec<ReservedRegion>, HostError> {
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
                    warnings.push(Warning::new(
                        &dt.path(n),
                        Some("reg"),
                        "reserved-memory node without reg (dynamic placement) ignored",
                    ));
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

    fn read_cpus(dt: &DeviceTree) -> Result<Vec<CpuInfo>, HostError> {
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

    fn read_gic(dt: &DeviceTree) -> Result<(NodeId, GicInfo), HostError> {
        let found = dt.nodes().find_map(|n| {
            if !dt.is_enabled(n) || dt.prop(n, "interrupt-controller").is_none() {
                return None;
            }
            if dt.is_compatible(n, GICV3_COMPAT) {
                Some((n, GicVersion::V3))
            } else if GICV2_COMPATS.iter().any(|c| dt.is_compatible(n, c)) {
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
        let mut it = regs.iter().copied();
        let gicd = it.next().ok_or_else(|| reg_short(0))?;
        let mut redistributors = Vec::new();
        if version == GicVersion::V3 {
            let nr = match dt.prop(n, "#redistributor-regions") {
                None => 1,
                Some(_) => dt.prop_u32(n, "#redistributor-regions").ok_or_else(|| {
                    err(
                        dt,
                        n,
                        Some("#redistributor-regions"),
                        ErrorKind::Length {
                            expected: "4 bytes (1 cell)",
                            got: dt.prop(n, "#redistributor-regions").map_or(0, <[u8]>::len),
                        },
                    )
                })?,
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
            for _ in 0..nr {
                redistributors.extend(it.next());
            }
        }
        let gicc = it.next();
        let gich = it.next();
        let gicv = it.next();
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
        let maintenance_intid = match dt.prop(n, "interrupts") {
            None => None,
            Some(_) => Some(
                gic_interrupts(dt, n, n)
                    .and_then(|v| v.first().copied().ok_or(ErrorKind::Missing))
                    .map_err(|k| err(dt, n, Some("interrupts"), k))?,
            ),
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
                redistributors,
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
            w.push(Warning::new("/chosen", Some(prop), msg));
            None
        };
        let Some(spec) = dt.prop_str(chosen, prop) else {
            return warn(warnings, "not a string; no console UART");
        };
        let (target, options) = match spec.split_once(':') {
            Some((t, o)) => (t, Some(String::from(o))),
            None => (spec, None),
        };
        let node = if target.starts_with('/') {
            dt.find_path(target)
        } else {
            // An alias, possibly followed by a sub-path.
            let (alias, tail) = target.split_once('/').unwrap_or((target, ""));
            dt.child_by_name(dt.root(), "aliases")
                .and_then(|a| dt.prop_str(a, alias))
                .and_then(|p| {
                    if tail.is_empty() {
                        dt.find_path(p)
                    } else {
                        let mut full = String::from(p);
                        full.push('/');
                        full.push_str(tail);
                        dt.find_path(&full)
                    }
                })
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
                warnings.push(Warning::new(
                    &dt.path(node),
                    Some("interrupts"),
                    "console UART interrupt not decodable as a GIC SPI/PPI; polled only",
                ));
                None
            }
        };
        Some(UartInfo {
            path: dt.path(node),
            options,
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
        match gic_interrupts(dt, n, gic) {
            Ok(v) if v.len() >= 4 => Some(TimerInfo {
                secure_phys: v[0],
                nonsecure_phys: v[1],
                virt: v[2],
                hyp_phys: v[3],
                hyp_virt: v.get(4).copied(),
                clock_frequency: dt.prop_u32(n, "clock-frequency"),
            }),
            _ => {
                warnings.push(Warning::new(
                    &dt.path(n),
                    Some("interrupts"),
                    "timer needs 4 GIC PPIs (secure, non-secure, virtual, hypervisor); ignored",
                ));
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
                warnings.push(Warning::new(
                    &dt.path(n),
                    Some("method"),
                    "PSCI method is neither \"hvc\" nor \"smc\"; PSCI ignored",
                ));
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
        if dt.node(id).parent == Some(dt.root()) {
            let base = dt.base_name(id);
            if matches!(
                base,
                "memory" | "cpus" | "chosen" | "reserved-memory" | "aliases"
            ) || dt.prop_str(id, "device_type") == Some("memory")
            {
                return;
            }
        }
        let no_mmio = matches!(dt.reg_cells(id), Ok((_, 0)));
        if dt.prop(id, "reg").is_some() && !no_mmio {
            match dt
                .reg_cells(id)
                .map_err(ErrorKind::BadCellCount)
                .and_then(|c| decode_reg(dt, id, "reg", c))
            {
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
                Err(_) => warnings.push(Warning::new(
                    &dt.path(id),
                    Some("reg"),
                    "malformed reg; device left out of the MMIO map",
                )),
            }
        }
        for &c in &dt.node(id).children {
            Self::collect_devices(dt, c, out, warnings);
        }
    }
}
