//! `/chosen`: hypervisor boot arguments, boot modules and the
//! `xen,domain` nodes (Xen `docs/misc/arm/device-tree/booting.txt`).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use tessel_addr::{Address, HostPhysAddr, HostRange, PAGE_SIZE};

use crate::BootConfig;
use crate::error::{ConfigError, ErrorKind, Warning};
use crate::fdt::{DeviceTree, NodeId, listed, str_value};
use crate::host::{GicVersion, HostPlatform, SPI_BASE, checked_range, decode_reg, own_reg};

/// vCPU limit of a GICv2 (8 CPU interfaces, IHI 0048B 1.4.1).
pub const MAX_VCPUS_GICV2: u32 = 8;
/// vCPU limit otherwise (Xen's MAX_VIRT_CPUS / GUEST_MAX_VCPUS on arm64).
pub const MAX_VCPUS: u32 = 128;
/// Largest `nr_spis` Xen's vGIC accepts (988 lines after rounding to 32 → 960).
pub const MAX_NR_SPIS: u32 = 960;
/// Most `xen,static-mem` banks per domain (Xen's NR_MEM_BANKS).
pub const MAX_STATIC_BANKS: usize = 256;
/// `capabilities` bit: control domain (Xen DOMAIN_CAPS_CONTROL).
pub const CAP_CONTROL: u32 = 0x1;
/// `capabilities` bit: hardware domain (Xen DOMAIN_CAPS_HARDWARE).
pub const CAP_HARDWARE: u32 = 0x2;
/// `capabilities` bit: xenstore domain (Xen DOMAIN_CAPS_XENSTORE).
pub const CAP_XENSTORE: u32 = 0x4;

/// Properties of a `xen,domain` node that Tessel reads (NUL-separated:
/// one string, not a table of pointers).
const KNOWN_PROPS: &str = concat!(
    "compatible\0",
    "#address-cells\0",
    "#size-cells\0",
    "memory\0",
    "cpus\0",
    "vpl011\0",
    "direct-map\0",
    "xen,static-mem\0",
    "#xen,static-mem-address-cells\0",
    "#xen,static-mem-size-cells\0",
    "nr_spis\0",
    "passthrough\0",
    "bootargs\0",
    "capabilities\0",
    "phandle\0",
    "linux,phandle\0",
    "name\0",
    "tessel,vgic-model",
);

/// Xen domain properties Tessel does not implement; they are ignored with a
/// warning (not refused) so a DTB written for Xen still boots.
/// NUL-separated.
const XEN_UNSUPPORTED_PROPS: &str = concat!(
    "xen,enhanced\0",
    "domain-cpupool\0",
    "xen,domain-p2m-mem-mb\0",
    "max_grant_version\0",
    "max_grant_frames\0",
    "max_maptrack_frames\0",
    "sve\0",
    "trap-unmapped-accesses\0",
    "llc-colors\0",
    "xen,sci_type\0",
    "v8r_el1_msa",
);

/// What a boot module holds, from its `compatible`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// `multiboot,kernel` (legacy `xen,linux-zimage`).
    Kernel,
    /// `multiboot,ramdisk` (legacy `xen,linux-initrd`).
    Ramdisk,
    /// `multiboot,device-tree`: a partial device tree for passthrough.
    DeviceTree,
    /// `xen,xsm-policy`.
    XsmPolicy,
    /// `multiboot,microcode`.
    Microcode,
    /// Only the generic `multiboot,module`.
    Unspecified,
}

impl ModuleKind {
    /// The `compatible` string that names this kind in a device tree, for
    /// messages (`"multiboot,kernel"`, ...).
    pub fn compatible(self) -> &'static str {
        match self {
            Self::Kernel => "multiboot,kernel",
            Self::Ramdisk => "multiboot,ramdisk",
            Self::DeviceTree => "multiboot,device-tree",
            Self::XsmPolicy => "xen,xsm-policy",
            Self::Microcode => "multiboot,microcode",
            Self::Unspecified => "multiboot,module",
        }
    }

    fn of(dt: &DeviceTree, n: NodeId) -> Option<Self> {
        let generic =
            dt.is_compatible(n, "multiboot,module") || dt.is_compatible(n, "xen,multiboot-module");
        let kind =
            if dt.is_compatible(n, "multiboot,kernel") || dt.is_compatible(n, "xen,linux-zimage") {
                Self::Kernel
            } else if dt.is_compatible(n, "multiboot,ramdisk")
                || dt.is_compatible(n, "xen,linux-initrd")
            {
                Self::Ramdisk
            } else if dt.is_compatible(n, "multiboot,device-tree") {
                Self::DeviceTree
            } else if dt.is_compatible(n, "xen,xsm-policy") {
                Self::XsmPolicy
            } else if dt.is_compatible(n, "multiboot,microcode") {
                Self::Microcode
            } else if generic {
                Self::Unspecified
            } else {
                return None;
            };
        Some(kind)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Kernel => "kernel module",
            Self::Ramdisk => "ramdisk module",
            Self::DeviceTree => "device-tree module",
            Self::XsmPolicy => "XSM policy module",
            Self::Microcode => "microcode module",
            Self::Unspecified => "module",
        }
    }
}

/// A boot module somewhere under `/chosen`: memory the loader filled and
/// the domain builder must keep away from guests until it is consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootModule {
    /// What the module holds.
    pub kind: ModuleKind,
    /// Where it is in host memory.
    pub range: HostRange,
    /// Name of the owning `xen,domain` node, `None` for a top-level module.
    pub domain: Option<String>,
    /// Path of the module node.
    pub path: String,
    /// The module's `bootargs`, if any.
    pub bootargs: Option<String>,
}

/// A kernel, ramdisk or device-tree module of one domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Name of the sub-node (e.g. `"kernel@4a000000"`).
    pub node: String,
    /// Where the module is in host memory.
    pub range: HostRange,
    /// The sub-node's `bootargs` (meaningful for the kernel only).
    pub bootargs: Option<String>,
}

/// An inclusive range of physical CPU indexes (`"2-5"` in `hard-affinity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcpuRange {
    /// First pCPU index (position in `/cpus`).
    pub first: u32,
    /// Last pCPU index, inclusive.
    pub last: u32,
}

/// A `xen,vcpu` sub-node: where one vCPU may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuAffinity {
    /// vCPU index (`id`), below the domain's `cpus`.
    pub id: u32,
    /// pCPUs from `hard-affinity`; empty means no restriction.
    pub hard_affinity: Vec<PcpuRange>,
}

/// One domain described by a `xen,domain` node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// Node name under `/chosen` (e.g. `"domU1"`).
    pub name: String,
    /// RAM size in KiB (`memory`).
    pub memory_kib: u64,
    /// Number of vCPUs (`cpus`).
    pub cpus: u32,
    /// Emulated SBSA UART requested (`vpl011`).
    pub vpl011: bool,
    /// Guest-physical equals host-physical (`direct-map`).
    pub direct_map: bool,
    /// Static RAM banks (`xen,static-mem`) in listed order; bank 0 receives
    /// the kernel, DTB and ramdisk. Empty when memory comes from the heap.
    pub static_mem: Vec<HostRange>,
    /// `nr_spis`, if given (the builder applies Xen's default otherwise).
    pub nr_spis: Option<u32>,
    /// Whether passthrough is enabled: the `passthrough` property, else
    /// whether a device-tree module is present (Xen's default).
    pub passthrough: bool,
    /// `capabilities` bitmask ([`CAP_CONTROL`], [`CAP_HARDWARE`],
    /// [`CAP_XENSTORE`]); 0 when absent.
    pub capabilities: u32,
    /// The kernel module.
    pub kernel: Module,
    /// The ramdisk module, if any.
    pub ramdisk: Option<Module>,
    /// The partial device tree for passthrough, if any.
    pub device_tree: Option<Module>,
    /// `bootargs` on the domain node itself (a Tessel extension; Xen ignores
    /// it). See [`DomainConfig::bootargs`].
    pub node_bootargs: Option<String>,
    /// `xen,vcpu` sub-nodes in DT order.
    pub vcpu_affinity: Vec<VcpuAffinity>,
    /// `tessel,vgic-model` (a Tessel extension): which vGIC model emulates
    /// this domain's interrupt controller; `None` leaves the choice to the
    /// hypervisor-wide default ([`crate::BootConfig::vgic_model`]).
    pub vgic_model: Option<VgicModel>,
}

/// The vGIC emulation model a domain asks for.
///
/// Xen picks its model when it is compiled (`CONFIG_NEW_VGIC`); Tessel
/// carries both and chooses per domain, so one boot can compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicModel {
    /// The rank-based model of Xen's `arch/arm/vgic.c` (`"classic"`).
    Classic,
    /// The per-IRQ model of Xen's `arch/arm/vgic/` (`"new"` or `"per-irq"`).
    PerIrq,
}

impl VgicModel {
    /// The values `tessel,vgic-model` and the `vgic=` boot option accept.
    pub const ACCEPTED: &'static str = "\"classic\", \"new\" or \"per-irq\"";

    /// Parses a model name as the device tree or the command line spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "classic" => Some(Self::Classic),
            "new" | "per-irq" => Some(Self::PerIrq),
            _ => None,
        }
    }
}

impl DomainConfig {
    /// The guest kernel command line.
    ///
    /// Xen (`kernel_probe`) takes a domU's command line from the `bootargs`
    /// of its kernel module and never reads a `bootargs` property on the
    /// `xen,domain` node. Tessel does the same, so a DTB made for Xen boots
    /// identically; only when the kernel module has no `bootargs` does it
    /// fall back to the domain node's own `bootargs` (with a warning at
    /// parse time, since Xen would pass an empty command line).
    pub fn bootargs(&self) -> Option<&str> {
        self.kernel
            .bootargs
            .as_deref()
            .or(self.node_bootargs.as_deref())
    }

    /// Total static RAM in bytes (0 without `xen,static-mem`).
    pub fn static_mem_bytes(&self) -> u64 {
        self.static_mem
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.size))
    }
}

fn u32_prop(
    dt: &DeviceTree,
    n: NodeId,
    node: &str,
    prop: &str,
) -> Result<Option<u32>, Box<ConfigError>> {
    match dt.prop(n, prop) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
        Some(v) => Err(ConfigError::new(
            node,
            Some(prop),
            ErrorKind::Length {
                expected: "4 bytes (1 cell)",
                got: v.len(),
            },
        )),
    }
}

fn string_prop<'a>(
    dt: &'a DeviceTree,
    n: NodeId,
    node: &str,
    prop: &str,
) -> Result<Option<&'a str>, Box<ConfigError>> {
    match dt.prop(n, prop) {
        None => Ok(None),
        Some(v) => str_value(v)
            .map(Some)
            .ok_or_else(|| ConfigError::new(node, Some(prop), ErrorKind::NotString)),
    }
}

/// Decodes a module's `reg` (one entry) with the cells governing `n`.
fn module_reg(dt: &DeviceTree, n: NodeId, node: &str) -> Result<HostRange, Box<ConfigError>> {
    let first = || {
        let regs = own_reg(dt, n)?;
        let &(a, s) = regs
            .first()
            .ok_or(ErrorKind::Cells(tessel_addr::cells::CellError::Empty))?;
        checked_range(a, s)
    };
    first().map_err(|k| ConfigError::new(node, Some("reg"), k))
}

/// Parses a `hard-affinity` string such as `"0-3,5"` (ASCII whitespace
/// around the numbers is ignored); each pCPU must be below `nr_pcpus`.
fn parse_affinity(s: &str, nr_pcpus: u32) -> Result<Vec<PcpuRange>, ErrorKind> {
    let bad = || ErrorKind::BadString {
        value: String::from(s),
        accepted: "a list of pCPUs or inclusive ranges such as \"0-3,5\"",
    };
    let num = |x: &str| x.trim_ascii().parse::<u32>().ok();
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Some(first), Some(last)) = (num(a), num(b)) else {
            return Err(bad());
        };
        if first > last {
            return Err(bad());
        }
        if last >= nr_pcpus {
            return Err(ErrorKind::OutOfRange {
                value: last.into(),
                min: 0,
                max: u64::from(nr_pcpus).saturating_sub(1),
            });
        }
        out.push(PcpuRange { first, last });
    }
    Ok(out)
}

/// Reads `/chosen` into `cfg` (whose tree and host are filled in): the
/// hypervisor's boot arguments, the boot modules and the domains.
// Kept out of line: inlined into `parse_tree` it makes the EL2 image
// larger (measured).
#[inline(never)]
pub(crate) fn parse_chosen(cfg: &mut BootConfig) {
    let BootConfig {
        host,
        xen_bootargs,
        domains,
        modules,
        warnings,
        tree: dt,
        ..
    } = cfg;
    let Some(chosen) = dt.child_by_name(dt.root(), "chosen") else {
        return;
    };
    *xen_bootargs = match dt.prop(chosen, "xen,xen-bootargs") {
        Some(v) => {
            let s = str_value(v).map(String::from);
            if s.is_none() {
                Warning::push(
                    warnings,
                    "/chosen",
                    Some("xen,xen-bootargs"),
                    "not a NUL-terminated string; ignored",
                );
            }
            s
        }
        // booting.txt: without xen,xen-bootargs but with xen,dom0-bootargs,
        // the plain `bootargs` is Xen's.
        None if dt.prop(chosen, "xen,dom0-bootargs").is_some() => {
            dt.prop_str(chosen, "bootargs").map(String::from)
        }
        None => None,
    };

    // Boot modules at depth <= 3 (children and grandchildren of /chosen).
    for c in dt.children(chosen) {
        let in_domain = dt.is_compatible(c, "xen,domain");
        let candidates = (!in_domain).then_some(c).into_iter();
        for m in candidates.chain(dt.children(c)) {
            let Some(kind) = ModuleKind::of(dt, m) else {
                continue;
            };
            let path = dt.path(m);
            match module_reg(dt, m, &path) {
                Ok(range) => {
                    if !in_domain && kind == ModuleKind::Kernel {
                        Warning::push(
                            warnings,
                            &path,
                            None,
                            "top-level (dom0) kernel module ignored: Tessel has no dom0",
                        );
                    }
                    modules.push(BootModule {
                        kind,
                        range,
                        domain: in_domain.then(|| String::from(dt.node(c).name.as_str())),
                        path,
                        bootargs: dt.prop_str(m, "bootargs").map(String::from),
                    });
                }
                // Errors in a domain's own modules refuse that domain below.
                Err(_) if in_domain => {}
                Err(e) => Warning::push(
                    warnings,
                    &e.node,
                    Some("reg"),
                    "malformed module reg; module not reserved",
                ),
            }
        }
    }

    for c in dt.children(chosen) {
        if dt.is_compatible(c, "xen,domain") {
            parse_domain(domains, dt, c, host, warnings);
        }
    }
}

/// Appends the domain described by node `d` to `domains`: its
/// configuration, or the error that refuses it.
fn parse_domain(
    domains: &mut Vec<Result<DomainConfig, Box<ConfigError>>>,
    dt: &DeviceTree,
    d: NodeId,
    host: &HostPlatform,
    warnings: &mut Vec<Warning>,
) {
    // The domain is built where it ends up, in `domains`, rather than
    // built on the stack and moved there. Everything it owns is in the one
    // `DomainConfig`, so a refusal drops it in one place rather than
    // dropping each partial result at each `?`.
    domains.push(Ok(DomainConfig {
        name: String::from(dt.node(d).name.as_str()),
        memory_kib: 0,
        cpus: 0,
        vpl011: false,
        direct_map: false,
        static_mem: Vec::new(),
        nr_spis: None,
        passthrough: false,
        capabilities: 0,
        kernel: Module {
            node: String::new(),
            range: HostRange::new(HostPhysAddr(0), 0),
            bootargs: None,
        },
        ramdisk: None,
        device_tree: None,
        node_bootargs: None,
        vcpu_affinity: Vec::new(),
        vgic_model: None,
    }));
    if let Some(slot) = domains.last_mut()
        && let Ok(cfg) = slot
        && let Err(e) = fill_domain(cfg, dt, d, host, warnings)
    {
        *slot = Err(e);
    }
}

fn fill_domain(
    cfg: &mut DomainConfig,
    dt: &DeviceTree,
    d: NodeId,
    host: &HostPlatform,
    warnings: &mut Vec<Warning>,
) -> Result<(), Box<ConfigError>> {
    let name = dt.node(d).name.as_str();
    let e = |prop: &str, k| ConfigError::new(name, Some(prop), k);

    for p in &dt.node(d).props {
        let pn = p.name.as_str();
        if listed(XEN_UNSUPPORTED_PROPS, pn) {
            Warning::push(
                warnings,
                name,
                Some(pn),
                "Xen property not supported by Tessel; ignored",
            );
        } else if !listed(KNOWN_PROPS, pn) {
            Warning::push(warnings, name, Some(pn), "unknown property; ignored");
        }
    }

    // memory: a 64-bit KiB count, exactly two cells.
    let mem = dt
        .prop(d, "memory")
        .ok_or_else(|| e("memory", ErrorKind::Missing))?;
    let memory_kib = match mem {
        [a, b, c, dd, e5, f, g, h] => u64::from_be_bytes([*a, *b, *c, *dd, *e5, *f, *g, *h]),
        _ => {
            return Err(e(
                "memory",
                ErrorKind::Length {
                    expected: "8 bytes (2 cells)",
                    got: mem.len(),
                },
            ));
        }
    };
    let max_kib = u64::MAX / 1024;
    if memory_kib == 0 || memory_kib > max_kib {
        return Err(e(
            "memory",
            ErrorKind::OutOfRange {
                value: memory_kib,
                min: 1,
                max: max_kib,
            },
        ));
    }
    if memory_kib % (PAGE_SIZE / 1024) != 0 {
        return Err(e(
            "memory",
            ErrorKind::Invalid("must be a whole number of 4 KiB pages"),
        ));
    }
    cfg.memory_kib = memory_kib;

    let max_vcpus = match host.gic.version {
        GicVersion::V2 => MAX_VCPUS_GICV2,
        GicVersion::V3 => MAX_VCPUS,
    };
    let cpus = u32_prop(dt, d, name, "cpus")?.ok_or_else(|| e("cpus", ErrorKind::Missing))?;
    if cpus == 0 || cpus > max_vcpus {
        return Err(e(
            "cpus",
            ErrorKind::OutOfRange {
                value: cpus.into(),
                min: 1,
                max: max_vcpus.into(),
            },
        ));
    }
    cfg.cpus = cpus;

    let vpl011 = dt.prop(d, "vpl011").is_some();
    let direct_map = dt.prop(d, "direct-map").is_some();
    cfg.vpl011 = vpl011;
    cfg.direct_map = direct_map;

    cfg.static_mem = parse_static_mem(dt, d, name, memory_kib, warnings)?;
    if direct_map && cfg.static_mem.is_empty() {
        return Err(e("direct-map", ErrorKind::Requires("xen,static-mem")));
    }

    if vpl011 && direct_map {
        check_direct_vpl011(host).map_err(|k| e("vpl011", k))?;
    }

    let nr_spis = u32_prop(dt, d, name, "nr_spis")?;
    if let Some(n) = nr_spis {
        // A direct-mapped vPL011 reuses the host console SPI, which must fit.
        let min = match (
            vpl011,
            direct_map,
            host.console.as_ref().and_then(|c| c.intid),
        ) {
            (true, true, Some(intid)) if intid >= SPI_BASE => intid - SPI_BASE + 1,
            (true, _, _) => 1,
            _ => 0,
        };
        if n < min || n > MAX_NR_SPIS {
            return Err(e(
                "nr_spis",
                ErrorKind::OutOfRange {
                    value: n.into(),
                    min: min.into(),
                    max: MAX_NR_SPIS.into(),
                },
            ));
        }
    }
    cfg.nr_spis = nr_spis;

    let capabilities = u32_prop(dt, d, name, "capabilities")?.unwrap_or(0);
    if capabilities & !(CAP_CONTROL | CAP_HARDWARE | CAP_XENSTORE) != 0 {
        return Err(e(
            "capabilities",
            ErrorKind::Invalid("unknown bits set (known: 0x1 control, 0x2 hardware, 0x4 xenstore)"),
        ));
    }
    cfg.capabilities = capabilities;

    cfg.node_bootargs = string_prop(dt, d, name, "bootargs")?.map(String::from);

    // Sub-nodes: modules and vCPU affinity.
    let mut have_kernel = false;
    for c in dt.children(d) {
        let cname = dt.node(c).name.as_str();
        let mut sub = String::from(name);
        sub.push('/');
        sub.push_str(cname);
        if dt.is_compatible(c, "xen,vcpu") {
            cfg.vcpu_affinity.push(parse_vcpu(dt, c, &sub, cpus, host)?);
            continue;
        }
        let Some(kind) = ModuleKind::of(dt, c) else {
            Warning::push(
                warnings,
                &sub,
                None,
                "sub-node is neither a boot module nor xen,vcpu; ignored",
            );
            continue;
        };
        if !matches!(
            kind,
            ModuleKind::Kernel | ModuleKind::Ramdisk | ModuleKind::DeviceTree
        ) {
            Warning::push(
                warnings,
                &sub,
                Some("compatible"),
                "module kind has no meaning inside a domain; ignored",
            );
            continue;
        }
        if !dt.is_compatible(c, "multiboot,module") && !dt.is_compatible(c, "xen,multiboot-module")
        {
            Warning::push(
                warnings,
                &sub,
                Some("compatible"),
                "lacks the generic \"multiboot,module\" Xen requires; accepted",
            );
        }
        let range = module_reg(dt, c, &sub)?;
        if dt.prop(c, "reg").is_some_and(|v| {
            dt.reg_cells(c)
                .ok()
                .is_some_and(|(a, s)| v.len() > (a + s) as usize * 4)
        }) {
            Warning::push(
                warnings,
                &sub,
                Some("reg"),
                "more than one (address, size) entry; only the first is used",
            );
        }
        let bootargs = string_prop(dt, c, &sub, "bootargs")?.map(String::from);
        let module = Module {
            node: String::from(cname),
            range,
            bootargs,
        };
        let slot = match kind {
            ModuleKind::Kernel => {
                let first = have_kernel;
                have_kernel = true;
                // Always stores the module (`then_some` is eager); what it
                // replaced is a duplicate only if a kernel came before.
                first.then_some(core::mem::replace(&mut cfg.kernel, module))
            }
            ModuleKind::Ramdisk => cfg.ramdisk.replace(module),
            _ => cfg.device_tree.replace(module),
        };
        if let Some(prev) = slot {
            return Err(ConfigError::new(
                name,
                None,
                ErrorKind::Duplicate {
                    what: kind.describe(),
                    first: prev.node,
                    second: String::from(cname),
                },
            ));
        }
    }
    if !have_kernel {
        return Err(ConfigError::new(
            name,
            None,
            ErrorKind::NoDevice("kernel module (compatible \"multiboot,kernel\")"),
        ));
    }
    if cfg.node_bootargs.is_some() {
        Warning::push(
            warnings,
            name,
            Some("bootargs"),
            if cfg.kernel.bootargs.is_some() {
                "not a Xen binding; the kernel module's bootargs take precedence, this is ignored"
            } else {
                "not a Xen binding (Xen ignores it); Tessel uses it as the kernel command line"
            },
        );
    }

    cfg.passthrough = match string_prop(dt, d, name, "passthrough")? {
        None => cfg.device_tree.is_some(),
        Some("enabled") => true,
        Some("disabled") => false,
        Some(other) => {
            return Err(e(
                "passthrough",
                ErrorKind::BadString {
                    value: String::from(other),
                    accepted: "\"enabled\" or \"disabled\"",
                },
            ));
        }
    };

    cfg.vgic_model = match string_prop(dt, d, name, "tessel,vgic-model")? {
        None => None,
        Some(v) => Some(VgicModel::from_name(v).ok_or_else(|| {
            e(
                "tessel,vgic-model",
                ErrorKind::BadString {
                    value: String::from(v),
                    accepted: VgicModel::ACCEPTED,
                },
            )
        })?),
    };
    Ok(())
}

/// A direct-mapped domain's vPL011 sits at the host console UART's address
/// and uses its SPI (Xen `domain_vpl011_init` for 1:1 domains): the console
/// must exist, be wired to a GIC SPI, and span at least one 4 KiB page.
fn check_direct_vpl011(host: &HostPlatform) -> Result<(), ErrorKind> {
    let uart = host.console.as_ref().ok_or(ErrorKind::Requires(
        "a host console UART (/chosen/stdout-path) when combined with direct-map",
    ))?;
    if uart.intid.is_none_or(|i| i < SPI_BASE) {
        return Err(ErrorKind::Invalid(
            "with direct-map the vPL011 reuses the host console UART's interrupt, which is not a GIC SPI",
        ));
    }
    if uart.mmio.size < PAGE_SIZE || !uart.mmio.start.is_aligned(PAGE_SIZE) {
        return Err(ErrorKind::Invalid(
            "with direct-map the vPL011 takes the host console UART's page, but its MMIO is not a whole 4 KiB page",
        ));
    }
    Ok(())
}

fn parse_static_mem(
    dt: &DeviceTree,
    d: NodeId,
    name: &str,
    memory_kib: u64,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<HostRange>, Box<ConfigError>> {
    const PROP: &str = "xen,static-mem";
    let e = |k| ConfigError::new(name, Some(PROP), k);
    if dt.prop(d, PROP).is_none() {
        return Ok(Vec::new());
    }
    // Xen 4.16 binding: both dedicated properties must be present.
    let legacy_a = u32_prop(dt, d, name, "#xen,static-mem-address-cells")?;
    let legacy_s = u32_prop(dt, d, name, "#xen,static-mem-size-cells")?;
    let cells = match (legacy_a, legacy_s) {
        (Some(a), Some(s)) => {
            Warning::push(
                warnings,
                name,
                Some("#xen,static-mem-address-cells"),
                "legacy Xen 4.16 binding; Xen >= 4.17 decodes xen,static-mem with /chosen's cells",
            );
            (a, s)
        }
        // Xen >= 4.17: the cells governing the domain node itself, i.e. its
        // parent's (/chosen's, or the nearest ancestor defining them).
        (None, None) => dt.reg_cells(d).map_err(|v| e(ErrorKind::BadCellCount(v)))?,
        (Some(_), None) => {
            return Err(ConfigError::new(
                name,
                Some("#xen,static-mem-size-cells"),
                ErrorKind::Missing,
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                name,
                Some("#xen,static-mem-address-cells"),
                ErrorKind::Missing,
            ));
        }
    };
    let raw = decode_reg(dt, d, PROP, cells).map_err(e)?;
    if raw.len() > MAX_STATIC_BANKS {
        return Err(e(ErrorKind::Count {
            expected: "at most 256 banks",
            got: raw.len(),
        }));
    }
    let mut banks: Vec<HostRange> = Vec::new();
    for (a, s) in raw {
        let r = checked_range(a, s).map_err(e)?;
        if !r.is_aligned(PAGE_SIZE) {
            return Err(e(ErrorKind::Misaligned {
                start: a,
                size: s,
                align: PAGE_SIZE,
            }));
        }
        if let Some(prev) = banks.iter().find(|b| b.overlaps(&r)) {
            let show = |r: &HostRange| alloc::format!("{r}");
            return Err(e(ErrorKind::SelfOverlap {
                a: show(prev),
                b: show(&r),
            }));
        }
        banks.push(r);
    }
    let total = banks.iter().fold(0u64, |acc, b| acc.saturating_add(b.size));
    if total / 1024 != memory_kib || total % 1024 != 0 {
        return Err(e(ErrorKind::SizeMismatch {
            banks_kib: total / 1024,
            memory_kib,
        }));
    }
    Ok(banks)
}

fn parse_vcpu(
    dt: &DeviceTree,
    c: NodeId,
    sub: &str,
    cpus: u32,
    host: &HostPlatform,
) -> Result<VcpuAffinity, Box<ConfigError>> {
    let id = u32_prop(dt, c, sub, "id")?
        .ok_or_else(|| ConfigError::new(sub, Some("id"), ErrorKind::Missing))?;
    if id >= cpus {
        return Err(ConfigError::new(
            sub,
            Some("id"),
            ErrorKind::OutOfRange {
                value: id.into(),
                min: 0,
                max: u64::from(cpus) - 1,
            },
        ));
    }
    let hard_affinity = match string_prop(dt, c, sub, "hard-affinity")? {
        None => Vec::new(),
        Some(s) => {
            let n = u32::try_from(host.cpus.len()).unwrap_or(u32::MAX);
            parse_affinity(s, n).map_err(|k| ConfigError::new(sub, Some("hard-affinity"), k))?
        }
    };
    Ok(VcpuAffinity { id, hard_affinity })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TNode, build, cells, domain, host_with, s};
    use crate::{BootConfig, parse};
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec;

    fn run(chosen: TNode) -> BootConfig {
        parse(&build(&host_with(chosen), &[])).unwrap()
    }

    fn set(n: &mut TNode, prop: &str, v: Vec<u8>) {
        n.props.retain(|(p, _)| p != prop);
        n.props.push((prop.into(), v));
    }

    fn with(mut n: TNode, prop: &str, v: Vec<u8>) -> TNode {
        set(&mut n, prop, v);
        n
    }

    #[test]
    fn affinity_lists() {
        assert_eq!(
            parse_affinity("0-1, 3", 4),
            Ok(vec![
                PcpuRange { first: 0, last: 1 },
                PcpuRange { first: 3, last: 3 }
            ])
        );
        assert!(parse_affinity("", 4).is_err());
        assert!(parse_affinity("1-", 4).is_err());
        assert!(parse_affinity("x", 4).is_err());
        assert!(parse_affinity("2-1", 4).is_err());
        assert_eq!(
            parse_affinity("4", 4),
            Err(ErrorKind::OutOfRange {
                value: 4,
                min: 0,
                max: 3
            })
        );
    }

    #[test]
    fn vgic_model_per_domain_and_from_the_command_line() {
        let classic = with(domain("a"), "tessel,vgic-model", s("classic"));
        let new = with(domain("b"), "tessel,vgic-model", s("new"));
        let default = domain("c");
        let bad = with(domain("d"), "tessel,vgic-model", s("fancy"));
        let chosen = TNode::new("chosen")
            .prop(
                "xen,xen-bootargs",
                s("sync_console vgic=classic vgic=per-irq"),
            )
            .child(classic)
            .child(new)
            .child(default)
            .child(bad);
        let cfg = run(chosen);
        // The last vgic= option wins, as on Xen's command line.
        assert_eq!(cfg.vgic_model, Some(VgicModel::PerIrq));
        let models: Vec<_> = cfg
            .domains
            .iter()
            .map(|d| d.as_ref().map(|d| d.vgic_model))
            .collect();
        assert_eq!(models[0], Ok(Some(VgicModel::Classic)));
        assert_eq!(models[1], Ok(Some(VgicModel::PerIrq)));
        assert_eq!(models[2], Ok(None));
        let err = models[3].as_ref().unwrap_err().to_string();
        assert_eq!(
            err,
            "d: tessel,vgic-model: value \"fancy\" is invalid: expected \"classic\", \"new\" or \"per-irq\""
        );
        assert!(
            cfg.warnings
                .iter()
                .all(|w| w.property.as_deref() != Some("tessel,vgic-model"))
        );
    }

    #[test]
    fn unknown_vgic_option_is_a_warning() {
        let chosen = TNode::new("chosen")
            .prop("xen,xen-bootargs", s("vgic=v4"))
            .child(domain("a"));
        let cfg = run(chosen);
        assert_eq!(cfg.vgic_model, None);
        assert!(cfg.domains[0].is_ok());
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.node == "/chosen" && w.property.as_deref() == Some("xen,xen-bootargs"))
        );
    }

    #[test]
    fn no_chosen_means_no_domains() {
        let mut root = host_with(TNode::new("chosen"));
        root.children.retain(|c| c.name != "chosen");
        let cfg = parse(&build(&root, &[])).unwrap();
        assert!(cfg.domains.is_empty() && cfg.modules.is_empty());
        assert!(cfg.host.console.is_none());
    }

    /// A domain with one 64 MiB static bank in 1-cell (address, size) form.
    fn one_bank_domain() -> TNode {
        with(
            domain("d"),
            "xen,static-mem",
            cells(&[0x5000_0000, 0x400_0000]),
        )
    }

    /// `/chosen` with one address cell, the given `#size-cells` and `d`.
    fn chosen_1_cell(size_cells: Vec<u8>, d: TNode) -> TNode {
        TNode::new("chosen")
            .prop("#address-cells", cells(&[1]))
            .prop("#size-cells", size_cells)
            .child(d)
    }

    #[test]
    fn static_mem_uses_chosen_cells_not_the_domain_ones() {
        // /chosen says 1/1, the domain says 2/2: xen,static-mem is decoded
        // with /chosen's cells (Xen >= 4.17), the kernel reg with the domain's.
        let cfg = run(chosen_1_cell(cells(&[1]), one_bank_domain()));
        let d = cfg.domains[0].as_ref().unwrap();
        assert_eq!(d.static_mem[0].start.0, 0x5000_0000);
        assert_eq!(d.static_mem[0].size, 0x400_0000);
        assert_eq!(d.kernel.range.start.0, 0x4800_0000);
    }

    #[test]
    fn static_mem_cells_inherit_from_root_when_chosen_has_none() {
        // Root is 2/2 in the test host; /chosen defines nothing.
        let d = with(
            domain("d"),
            "xen,static-mem",
            cells(&[0, 0x5000_0000, 0, 0x400_0000]),
        );
        let cfg = run(TNode::new("chosen").child(d));
        assert_eq!(
            cfg.domains[0].as_ref().unwrap().static_mem[0].size,
            0x400_0000
        );
    }

    #[test]
    fn module_cells_inherit_when_domain_has_none() {
        let mut d = domain("d");
        d.props.retain(|(p, _)| !p.starts_with('#'));
        d.children[0].props.retain(|(p, _)| p != "reg");
        d.children[0]
            .props
            .push(("reg".into(), cells(&[0x4800_0000, 0x1000])));
        let chosen = TNode::new("chosen")
            .prop("#address-cells", cells(&[1]))
            .prop("#size-cells", cells(&[1]))
            .child(d);
        let cfg = run(chosen);
        assert_eq!(cfg.domains[0].as_ref().unwrap().kernel.range.size, 0x1000);
    }

    #[test]
    fn top_level_modules_are_collected_and_dom0_kernel_warned() {
        let module = |name: &str, compat: &str, addr: u32| {
            TNode::new(name)
                .prop("compatible", [s(compat), s("multiboot,module")].concat())
                .prop("reg", cells(&[0, addr, 0, 0x1000]))
        };
        let chosen = TNode::new("chosen")
            .prop("#address-cells", cells(&[2]))
            .prop("#size-cells", cells(&[2]))
            .child(module("module@60000000", "multiboot,kernel", 0x6000_0000))
            .child(TNode::new("modules").child(module(
                "xsm@61000000",
                "xen,xsm-policy",
                0x6100_0000,
            )))
            .child(domain("d"));
        let cfg = run(chosen);
        let kinds: Vec<_> = cfg
            .modules
            .iter()
            .map(|m| (m.kind, m.domain.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (ModuleKind::Kernel, None),
                (ModuleKind::XsmPolicy, None),
                (ModuleKind::Kernel, Some("d"))
            ]
        );
        assert_eq!(cfg.modules[1].path, "/chosen/modules/xsm@61000000");
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.node == "/chosen/module@60000000" && w.message.contains("no dom0"))
        );
    }

    #[test]
    fn xen_bootargs_fall_back_to_bootargs_with_dom0_bootargs() {
        let chosen = TNode::new("chosen")
            .prop("bootargs", s("sync_console"))
            .prop("xen,dom0-bootargs", s("console=hvc0"));
        assert_eq!(run(chosen).xen_bootargs.as_deref(), Some("sync_console"));
        let chosen = TNode::new("chosen").prop("bootargs", s("console=ttyAMA0"));
        assert_eq!(run(chosen).xen_bootargs, None);
    }

    #[test]
    fn kernel_bootargs_win_over_domain_node_bootargs() {
        let mut d = with(domain("d"), "bootargs", s("from-domain"));
        d.children[0]
            .props
            .push(("bootargs".into(), s("from-kernel")));
        let cfg = run(TNode::new("chosen").child(d));
        assert_eq!(
            cfg.domains[0].as_ref().unwrap().bootargs(),
            Some("from-kernel")
        );
        assert!(cfg.warnings.iter().any(|w| w.to_string()
            == "d: bootargs: not a Xen binding; the kernel module's bootargs take precedence, this is ignored"));
    }

    #[test]
    fn unknown_sub_nodes_and_incomplete_module_compatibles_warn() {
        let mut d = domain("d").child(TNode::new("evtchn").prop("compatible", s("xen,evtchn-v1")));
        set(&mut d.children[0], "compatible", s("multiboot,kernel"));
        let cfg = run(TNode::new("chosen").child(d));
        assert!(cfg.domains[0].is_ok());
        let w: Vec<_> = cfg.warnings.iter().map(|w| w.node.as_str()).collect();
        assert_eq!(w, ["d/kernel", "d/evtchn"]);
    }

    #[test]
    fn capabilities_and_explicit_passthrough() {
        let d = with(
            domain("d"),
            "capabilities",
            cells(&[CAP_CONTROL | CAP_XENSTORE]),
        );
        let d = with(d, "passthrough", s("enabled"));
        let cfg = run(TNode::new("chosen").child(d));
        let d = cfg.domains[0].as_ref().unwrap();
        assert_eq!(d.capabilities, 5);
        assert!(d.passthrough);
    }

    #[test]
    fn direct_mapped_vpl011_accepts_enough_spis() {
        let d = with(domain("d"), "direct-map", Vec::new());
        let d = with(d, "vpl011", Vec::new());
        let d = with(d, "xen,static-mem", cells(&[0, 0x5000_0000, 0, 0x400_0000]));
        let d = with(d, "nr_spis", cells(&[2]));
        let cfg = run(TNode::new("chosen").child(d));
        assert!(cfg.domains[0].is_ok(), "{:?}", cfg.domains[0]);
    }

    fn direct_vpl011_domain() -> TNode {
        let d = with(domain("d"), "direct-map", Vec::new());
        let d = with(d, "vpl011", Vec::new());
        with(d, "xen,static-mem", cells(&[0, 0x5000_0000, 0, 0x400_0000]))
    }

    fn host_uart(root: &mut TNode, f: impl FnOnce(&mut TNode)) {
        f(root
            .children
            .iter_mut()
            .find(|c| c.name == "uart@9000000")
            .unwrap());
    }

    #[test]
    fn direct_mapped_vpl011_needs_a_console() {
        let mut root = host_with(TNode::new("chosen").child(direct_vpl011_domain()));
        let chosen = root
            .children
            .iter_mut()
            .find(|c| c.name == "chosen")
            .unwrap();
        chosen.props.retain(|(p, _)| p != "stdout-path");
        let cfg = parse(&build(&root, &[])).unwrap();
        assert_eq!(
            cfg.domains[0].as_ref().unwrap_err().to_string(),
            "d: vpl011: requires a host console UART (/chosen/stdout-path) when combined with direct-map"
        );
    }

    #[test]
    fn direct_mapped_vpl011_needs_a_console_spi() {
        let mut root = host_with(TNode::new("chosen").child(direct_vpl011_domain()));
        host_uart(&mut root, |u| set(u, "interrupts", cells(&[1, 3, 4])));
        let cfg = parse(&build(&root, &[])).unwrap();
        assert!(
            cfg.domains[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .starts_with(
                    "d: vpl011: with direct-map the vPL011 reuses the host console UART's interrupt"
                )
        );
    }

    #[test]
    fn direct_mapped_vpl011_needs_a_whole_uart_page() {
        let mut root = host_with(TNode::new("chosen").child(direct_vpl011_domain()));
        host_uart(&mut root, |u| {
            set(u, "reg", cells(&[0, 0x0900_0000, 0, 0x100]))
        });
        let cfg = parse(&build(&root, &[])).unwrap();
        assert!(
            cfg.domains[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .ends_with("its MMIO is not a whole 4 KiB page")
        );
        // Without direct-map the vPL011 is at the virtual address: fine.
        let mut root =
            host_with(TNode::new("chosen").child(with(domain("d"), "vpl011", Vec::new())));
        host_uart(&mut root, |u| {
            set(u, "reg", cells(&[0, 0x0900_0000, 0, 0x100]))
        });
        assert!(parse(&build(&root, &[])).unwrap().domains[0].is_ok());
    }

    #[test]
    fn static_bank_count_is_bounded() {
        let mut raw = Vec::new();
        for i in 0..=MAX_STATIC_BANKS as u32 {
            raw.extend([0, 0x4000_0000 + i * 0x1000, 0, 0x1000]);
        }
        let d = with(domain("d"), "xen,static-mem", cells(&raw));
        let cfg = run(TNode::new("chosen").child(d));
        assert_eq!(
            cfg.domains[0].as_ref().unwrap_err().to_string(),
            "d: xen,static-mem: expected at most 256 banks, found 257"
        );
    }

    #[test]
    fn legacy_static_mem_cells_both_present() {
        let d = with(domain("d"), "#xen,static-mem-address-cells", cells(&[1]));
        let d = with(d, "#xen,static-mem-size-cells", cells(&[1]));
        let d = with(d, "xen,static-mem", cells(&[0x5000_0000, 0x400_0000]));
        let cfg = run(TNode::new("chosen").child(d));
        assert_eq!(cfg.domains[0].as_ref().unwrap().static_mem.len(), 1);
    }

    #[test]
    fn legacy_static_mem_cells_half_or_malformed() {
        let refusal = |props: &[(&str, Vec<u8>)]| {
            let mut d = one_bank_domain();
            for (p, v) in props {
                set(&mut d, p, v.clone());
            }
            run(TNode::new("chosen").child(d)).domains[0]
                .as_ref()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refusal(&[("#xen,static-mem-size-cells", cells(&[1]))]),
            "d: #xen,static-mem-address-cells: required property is missing"
        );
        assert_eq!(
            refusal(&[("#xen,static-mem-address-cells", cells(&[1]))]),
            "d: #xen,static-mem-size-cells: required property is missing"
        );
        assert_eq!(
            refusal(&[("#xen,static-mem-size-cells", vec![0, 1])]),
            "d: #xen,static-mem-size-cells: property must be 4 bytes (1 cell), got 2"
        );
        assert_eq!(
            refusal(&[
                ("#xen,static-mem-address-cells", vec![1]),
                ("#xen,static-mem-size-cells", vec![0, 1]),
            ]),
            "d: #xen,static-mem-address-cells: property must be 4 bytes (1 cell), got 1"
        );
        // A bad governing cell count of /chosen is the static-mem's error.
        let chosen = chosen_1_cell(vec![0], one_bank_domain());
        assert_eq!(
            run(chosen).domains[0].as_ref().unwrap_err().to_string(),
            "d: xen,static-mem: governing #address-cells/#size-cells is not a single cell"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random values in every domain property never panic, and any
        /// error names the domain (or one of its sub-nodes).
        #[test]
        fn random_domain_properties(
            props in proptest::collection::vec(
                (prop::sample::select(vec![
                    "memory", "cpus", "vpl011", "direct-map", "xen,static-mem",
                    "#xen,static-mem-address-cells", "#xen,static-mem-size-cells",
                    "nr_spis", "passthrough", "bootargs", "capabilities", "#address-cells",
                    "#size-cells",
                ]), proptest::collection::vec(any::<u8>(), 0..20)),
                0..6),
            kreg in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut d = domain("dom");
            for (p, v) in props {
                set(&mut d, p, v);
            }
            set(&mut d.children[0], "reg", kreg);
            let cfg = run(TNode::new("chosen").child(d));
            prop_assert_eq!(cfg.domains.len(), 1);
            if let Err(e) = &cfg.domains[0] {
                prop_assert!(e.node == "dom" || e.node.starts_with("dom/"), "{}", e);
                prop_assert!(e.to_string().starts_with(&e.node));
            }
        }

        /// Static banks are accepted exactly when they are page aligned,
        /// disjoint, and add up to `memory`.
        #[test]
        fn static_banks_accepted_iff_consistent(
            banks in proptest::collection::vec((0u32..0x100, 1u32..0x40), 1..4),
            extra_kib in prop::sample::select(vec![0u64, 4]),
        ) {
            let mut raw = Vec::new();
            let mut total = 0u64;
            for &(page, pages) in &banks {
                raw.extend([0, 0x4000_0000 + page * 0x1000, 0, pages * 0x1000]);
                total += u64::from(pages) * 4;
            }
            let memory = total + extra_kib;
            let d = with(domain("d"), "xen,static-mem", cells(&raw));
            let d = with(d, "memory", cells(&[(memory >> 32) as u32, memory as u32]));
            let cfg = run(TNode::new("chosen").child(d));
            let overlap = banks.iter().enumerate().any(|(i, a)| banks[..i].iter().any(|b| {
                a.0 < b.0 + b.1 && b.0 < a.0 + a.1
            }));
            prop_assert_eq!(cfg.domains[0].is_ok(), !overlap && extra_kib == 0, "{:?}", cfg.domains[0]);
        }
    }
}
