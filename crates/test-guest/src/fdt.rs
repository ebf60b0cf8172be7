//! Just enough flattened-device-tree reading for the test guest: one pass
//! over the structure block collecting the UART, GIC, memory, CPUs, PSCI
//! conduit and `/chosen` properties.
//!
//! Devicetree Specification v0.4, chapter 5 (flattened format). The guest
//! only ever reads the tree, and every offset is bounds-checked: a bad DTB
//! yields `None`, never a fault.

/// FDT header magic (DT spec 5.2).
const FDT_MAGIC: u32 = 0xd00d_feed;
/// Structure block tokens (DT spec 5.4.1).
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Maximum number of CPUs recorded.
pub const MAX_CPUS: usize = 8;
const MAX_DEPTH: usize = 8;

/// GIC description.
#[derive(Clone, Copy, Debug, Default)]
pub struct GicInfo {
    /// 2 or 3.
    pub version: u8,
    /// Distributor base.
    pub gicd: u64,
    /// GICv2 CPU interface or GICv3 redistributor region base.
    pub second: u64,
    /// Size of the second region.
    pub second_size: u64,
}

/// What the guest learns from its device tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Info<'a> {
    /// UART (PL011 / SBSA) base.
    pub uart: Option<u64>,
    /// The GIC.
    pub gic: Option<GicInfo>,
    /// First memory bank (base, size).
    pub memory: Option<(u64, u64)>,
    /// MPIDRs of the `cpu` nodes.
    pub cpus: [u64; MAX_CPUS],
    /// Number of valid entries in `cpus`.
    pub ncpus: usize,
    /// PSCI conduit is SMC (else HVC).
    pub psci_smc: bool,
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
}

struct Node<'a> {
    name: &'a str,
    compatible: &'a [u8],
    reg: &'a [u8],
    device_type: &'a [u8],
    method: &'a [u8],
}

impl<'a> Node<'a> {
    const fn new(name: &'a str) -> Self {
        Self {
            name,
            compatible: &[],
            reg: &[],
            device_type: &[],
            method: &[],
        }
    }

    fn is_compatible(&self, c: &str) -> bool {
        self.compatible
            .split(|&b| b == 0)
            .any(|s| s == c.as_bytes())
    }
}

fn be32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn cells(data: &[u8], index: usize, n: u32) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..n as usize {
        v = (v << 32) | u64::from(be32(data, (index + i) * 4)?);
    }
    Some(v)
}

/// `reg` entry `i` as (address, size) with 2/2 or 1/1 cells.
fn reg(data: &[u8], i: usize, ac: u32, sc: u32) -> Option<(u64, u64)> {
    if ac > 2 || sc > 2 {
        return None;
    }
    let stride = (ac + sc) as usize;
    Some((
        cells(data, i * stride, ac)?,
        cells(data, i * stride + ac as usize, sc)?,
    ))
}

fn cstr(data: &[u8]) -> &str {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    core::str::from_utf8(data.get(..end).unwrap_or(&[])).unwrap_or("")
}

/// Parses the tree at `dtb` (whose header gives its size).
pub fn parse(dtb: &[u8]) -> Option<Info<'_>> {
    if be32(dtb, 0)? != FDT_MAGIC {
        return None;
    }
    let total = be32(dtb, 4)? as usize;
    let dtb = dtb.get(..total)?;
    let off_struct = be32(dtb, 8)? as usize;
    let off_strings = be32(dtb, 12)? as usize;
    let strings = dtb.get(off_strings..)?;
    let mut info = Info::default();
    // Cells of the root (children of / use them; Xen guests and QEMU use 2/2).
    let (mut ac, mut sc) = (2u32, 2u32);
    let mut stdout_path: &str = "";
    let mut uart_by_compat: Option<u64> = None;
    let mut uart_by_path: Option<u64> = None;
    let mut stack: [Option<Node<'_>>; MAX_DEPTH] = Default::default();
    let mut depth = 0usize;
    let mut off = off_struct;
    loop {
        let token = be32(dtb, off)?;
        off += 4;
        match token {
            FDT_BEGIN_NODE => {
                let rest = dtb.get(off..)?;
                let len = rest.iter().position(|&b| b == 0)?;
                let name = core::str::from_utf8(rest.get(..len)?).ok()?;
                off = (off + len + 1 + 3) & !3;
                if let Some(slot) = stack.get_mut(depth) {
                    *slot = Some(Node::new(name));
                }
                depth += 1;
            }
            FDT_END_NODE => {
                depth = depth.checked_sub(1)?;
                let node = stack.get_mut(depth)?.take()?;
                let parent = depth.checked_sub(1).and_then(|p| stack.get(p)?.as_ref());
                let base_name = node.name.split('@').next().unwrap_or("");
                let first = reg(node.reg, 0, ac, sc);
                if depth == 1 {
                    if node.is_compatible("arm,pl011") || node.is_compatible("arm,sbsa-uart") {
                        if uart_by_compat.is_none() {
                            uart_by_compat = first.map(|r| r.0);
                        }
                        let path = stdout_path.split(':').next().unwrap_or("");
                        if path.strip_prefix('/') == Some(node.name) {
                            uart_by_path = first.map(|r| r.0);
                        }
                    }
                    let v2 = node.is_compatible("arm,gic-400")
                        || node.is_compatible("arm,cortex-a15-gic")
                        || node.is_compatible("arm,cortex-a9-gic");
                    let v3 = node.is_compatible("arm,gic-v3");
                    if (v2 || v3) && info.gic.is_none() {
                        let (gicd, _) = first?;
                        let (second, second_size) = reg(node.reg, 1, ac, sc)?;
                        info.gic = Some(GicInfo {
                            version: if v3 { 3 } else { 2 },
                            gicd,
                            second,
                            second_size,
                        });
                    }
                    if cstr(node.device_type) == "memory" && info.memory.is_none() {
                        info.memory = first;
                    }
                    if base_name == "psci" || node.is_compatible("arm,psci-0.2") {
                        info.psci_smc = cstr(node.method) == "smc";
                    }
                }
                if depth == 2
                    && parent.is_some_and(|p| p.name == "cpus")
                    && cstr(node.device_type) == "cpu"
                    && info.ncpus < MAX_CPUS
                {
                    // /cpus has #address-cells = 1 (2 on some hosts): take
                    // the whole property as one number.
                    let n = (node.reg.len() / 4).clamp(1, 2) as u32;
                    if let (Some(mpidr), Some(slot)) =
                        (cells(node.reg, 0, n), info.cpus.get_mut(info.ncpus))
                    {
                        *slot = mpidr;
                        info.ncpus += 1;
                    }
                }
            }
            FDT_PROP => {
                let len = be32(dtb, off)? as usize;
                let nameoff = be32(dtb, off + 4)? as usize;
                let value = dtb.get(off + 8..off + 8 + len)?;
                off = (off + 8 + len + 3) & !3;
                let name = cstr(strings.get(nameoff..)?);
                let cur = depth
                    .checked_sub(1)
                    .and_then(|d| stack.get_mut(d)?.as_mut());
                let Some(node) = cur else { continue };
                match (depth, name) {
                    (1, "#address-cells") => ac = be32(value, 0)?,
                    (1, "#size-cells") => sc = be32(value, 0)?,
                    (2, "bootargs") if node.name == "chosen" => info.bootargs = cstr(value),
                    (2, "stdout-path") if node.name == "chosen" => stdout_path = cstr(value),
                    (_, "compatible") => node.compatible = value,
                    (_, "reg") => node.reg = value,
                    (_, "device_type") => node.device_type = value,
                    (_, "method") => node.method = value,
                    _ => {}
                }
            }
            FDT_NOP => {}
            FDT_END => break,
            _ => return None,
        }
    }
    info.uart = uart_by_path.or(uart_by_compat);
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GUEST_V3: &[u8] = include_bytes!("../tests/fixtures/guest-v3.dtb");

    #[test]
    fn reads_a_tessel_style_guest_tree() {
        let info = parse(GUEST_V3).unwrap();
        assert_eq!(info.uart, Some(0x0900_0000));
        let gic = info.gic.unwrap();
        assert_eq!((gic.version, gic.gicd), (3, 0x0800_0000));
        assert_eq!((gic.second, gic.second_size), (0x080a_0000, 0x4_0000));
        assert_eq!(info.memory, Some((0x6000_0000, 0x400_0000)));
        assert_eq!(&info.cpus[..info.ncpus], &[0, 1]);
        assert!(!info.psci_smc);
        assert_eq!(info.bootargs, "tessel-test=basic,smp tessel-name=dom1");
    }

    #[test]
    fn absurd_cell_counts_are_refused() {
        // Root #address-cells is the first property of the root node.
        let mut t = GUEST_V3.to_vec();
        let pos = t.windows(4).position(|w| w == [0, 0, 0, 2]).unwrap();
        t[pos..pos + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let info = parse(&t);
        assert!(info.is_none_or(|i| i.memory.is_none()));
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        assert!(parse(&[]).is_none());
        let mut bad = GUEST_V3.to_vec();
        bad[0] = 0;
        assert!(parse(&bad).is_none());
        // Cut inside the structure block: the header's totalsize no longer fits.
        assert!(parse(&GUEST_V3[..GUEST_V3.len() / 2]).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Corrupting any bytes never panics (the guest has no way to
        /// report a panic before its UART is known).
        #[test]
        fn corrupted_trees_never_panic(edits in proptest::collection::vec((0usize..1255, any::<u8>()), 1..16)) {
            let mut t = GUEST_V3.to_vec();
            for (i, b) in edits {
                if let Some(x) = t.get_mut(i) {
                    *x = b;
                }
            }
            let _ = parse(&t);
        }
    }
}
