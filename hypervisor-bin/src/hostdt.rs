//! The two host facts the EL2 image needs before it has a heap: where RAM
//! is (to build the EL2 identity map) and where a PL011 is (to report
//! errors as early as possible).
//!
//! This is a small flattened-device-tree walk (Devicetree Specification
//! v0.4, chapter 5) that works without a heap and with the MMU off.
//! Everything else (GIC, CPUs, PSCI, timer, console interrupt, domains) is
//! read afterwards by tessel-config.

use tessel_addr::cells;

/// FDT header magic (Devicetree Specification v0.4, 5.2).
const FDT_MAGIC: u32 = 0xd00d_feed;
/// Structure block tokens (Devicetree Specification v0.4, 5.4.1).
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Deepest node nesting we track `#address-cells` for.
const MAX_DEPTH: usize = 16;

/// Most RAM banks we record.
pub const MAX_BANKS: usize = 8;

/// Why the host device tree could not be used.
#[derive(Clone, Copy, Debug)]
pub enum DtError {
    /// No FDT magic at the address in x0.
    BadMagic(u32),
    /// A header field or token points outside the blob.
    Truncated(&'static str),
    /// The tree nests deeper than we track.
    TooDeep,
    /// A required piece of the platform is missing.
    Missing(&'static str),
    /// A property does not have the expected shape.
    BadProperty(&'static str),
}

impl core::fmt::Display for DtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "no device tree (magic {m:#x})"),
            Self::Truncated(w) => write!(f, "device tree truncated in {w}"),
            Self::TooDeep => write!(f, "device tree nests deeper than {MAX_DEPTH}"),
            Self::Missing(w) => write!(f, "device tree has no {w}"),
            Self::BadProperty(w) => write!(f, "device tree property {w} is malformed"),
        }
    }
}

/// The host platform as far as boot is concerned.
#[derive(Clone, Debug)]
pub struct HostInfo {
    /// Size of the DTB in bytes (from the header).
    pub dtb_size: u64,
    /// RAM banks (base, size).
    pub memory: heapless::Vec<(u64, u64), MAX_BANKS>,
    /// First PL011 (base) if any: the early console.
    pub uart: Option<u64>,
}

fn be32(b: &[u8], off: usize, what: &'static str) -> Result<u32, DtError> {
    let s = b.get(off..off + 4).ok_or(DtError::Truncated(what))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn cstr(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

fn has_compat(value: &[u8], want: &[u8]) -> bool {
    value.split(|&c| c == 0).any(|s| s == want)
}

/// Reads the total size of the FDT at `addr` (header field `totalsize`).
///
/// # Safety
/// `addr` must be readable for 8 bytes.
pub unsafe fn total_size(addr: u64) -> Result<usize, DtError> {
    // SAFETY: the caller guarantees the first 8 bytes are readable.
    let head = unsafe { core::slice::from_raw_parts(addr as *const u8, 8) };
    let magic = be32(head, 0, "header")?;
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic(magic));
    }
    Ok(be32(head, 4, "header")? as usize)
}

#[derive(Default, Clone, Copy)]
struct Node<'a> {
    addr_cells: u32,
    size_cells: u32,
    compat: &'a [u8],
    reg: &'a [u8],
    device_type: &'a [u8],
}

/// Walks the FDT in `blob` and collects [`HostInfo`].
pub fn parse(blob: &[u8]) -> Result<HostInfo, DtError> {
    let magic = be32(blob, 0, "header")?;
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic(magic));
    }
    let total = be32(blob, 4, "header")? as usize;
    let off_struct = be32(blob, 8, "header")? as usize;
    let off_strings = be32(blob, 12, "header")? as usize;
    let blob = blob.get(..total).ok_or(DtError::Truncated("header"))?;
    let strings = blob
        .get(off_strings..)
        .ok_or(DtError::Truncated("strings"))?;

    let mut info = HostInfo {
        dtb_size: total as u64,
        memory: heapless::Vec::new(),
        uart: None,
    };
    // stack[d] is the node at depth d; its cells apply to its children.
    let mut stack = [Node::default(); MAX_DEPTH];
    let mut depth = 0usize;
    let mut off = off_struct;
    loop {
        let tok = be32(blob, off, "structure block")?;
        off += 4;
        match tok {
            FDT_BEGIN_NODE => {
                let rest = blob.get(off..).ok_or(DtError::Truncated("node name"))?;
                let name = cstr(rest);
                off += (name.len() + 1 + 3) & !3;
                depth += 1;
                if depth >= MAX_DEPTH {
                    return Err(DtError::TooDeep);
                }
                stack[depth] = Node {
                    addr_cells: 2,
                    size_cells: 1,
                    ..Node::default()
                };
            }
            FDT_PROP => {
                let len = be32(blob, off, "property")? as usize;
                let nameoff = be32(blob, off + 4, "property")? as usize;
                off += 8;
                let value = blob
                    .get(off..off + len)
                    .ok_or(DtError::Truncated("property value"))?;
                off += (len + 3) & !3;
                let pname = cstr(
                    strings
                        .get(nameoff..)
                        .ok_or(DtError::Truncated("strings"))?,
                );
                let node = &mut stack[depth];
                // Slice against slice: a length check and one memcmp call
                // each. (A `match` on byte-string patterns compiles to a
                // compare and branch per byte, a slice against an array
                // to inlined word compares.)
                if pname == &b"#address-cells"[..] {
                    node.addr_cells = be32(value, 0, "#address-cells")?;
                } else if pname == &b"#size-cells"[..] {
                    node.size_cells = be32(value, 0, "#size-cells")?;
                } else if pname == &b"compatible"[..] {
                    node.compat = value;
                } else if pname == &b"reg"[..] {
                    node.reg = value;
                } else if pname == &b"device_type"[..] {
                    node.device_type = value;
                }
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(DtError::Truncated("unbalanced nodes"));
                }
                let node = stack[depth];
                let parent = stack[depth - 1];
                finish_node(&mut info, &node, &parent, depth)?;
                depth -= 1;
            }
            FDT_NOP => {}
            FDT_END => break,
            _ => return Err(DtError::Truncated("unknown token")),
        }
    }
    if info.memory.is_empty() {
        return Err(DtError::Missing("/memory node"));
    }
    Ok(info)
}

fn regs<'a>(
    node: &Node<'a>,
    parent: &Node<'a>,
    what: &'static str,
) -> Result<impl Iterator<Item = (u64, u64)> + 'a, DtError> {
    cells::reg(node.reg, parent.addr_cells, parent.size_cells)
        .map_err(|_| DtError::BadProperty(what))
}

fn finish_node(
    info: &mut HostInfo,
    node: &Node<'_>,
    parent: &Node<'_>,
    depth: usize,
) -> Result<(), DtError> {
    let uart = if node.device_type == &b"memory\0"[..] && depth == 2 {
        false
    } else if has_compat(node.compat, b"arm,pl011") && info.uart.is_none() {
        true
    } else {
        return Ok(());
    };
    let what = if uart { "uart reg" } else { "/memory reg" };
    // One walk of `reg` for both (one copy of the decoder): every
    // non-empty bank of a memory node, the first entry of a UART's.
    for (base, size) in regs(node, parent, what)? {
        if uart {
            info.uart = Some(base);
            return Ok(());
        }
        if size != 0 && info.memory.push((base, size)).is_err() {
            break;
        }
    }
    if uart {
        return Err(DtError::BadProperty(what));
    }
    Ok(())
}
