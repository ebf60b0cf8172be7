//! A small, safe reader for flattened device trees (DTB, Devicetree
//! Specification v0.4, chapter 5).
//!
//! The whole blob is decoded once into an owned node arena. Every offset and
//! length read from the blob is bounds-checked, so arbitrary bytes give an
//! [`FdtError`], never a panic. The reader is written here rather than taken
//! from `fdt-rs` because that crate's constructor is `unsafe` and this crate
//! forbids unsafe code.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// FDT header magic (Devicetree Specification v0.4, 5.2).
const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the version-17 header in bytes (5.2).
const HEADER_LEN: usize = 40;
/// Structure-block tokens (5.4.1).
const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_END: u32 = 0x9;
/// Deepest node nesting accepted; real trees stay well below 16.
pub const MAX_DEPTH: usize = 64;

/// Why a blob is not a usable flattened device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// Fewer bytes than the header (or than `totalsize`) needs.
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// The first word is not 0xd00dfeed.
    BadMagic(u32),
    /// `last_comp_version` is newer than 17 or `version` older than 16.
    UnsupportedVersion {
        /// The `version` field.
        version: u32,
        /// The `last_comp_version` field.
        last_comp: u32,
    },
    /// A block offset or size points outside the blob.
    BlockOutOfBounds {
        /// Which block.
        block: &'static str,
    },
    /// An unknown token at this offset of the structure block.
    BadToken {
        /// Offset in the structure block.
        offset: usize,
        /// The token value.
        token: u32,
    },
    /// The structure block is not a single, properly nested root node.
    BadNesting {
        /// Offset in the structure block.
        offset: usize,
    },
    /// Nodes nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A node or property name is not NUL-terminated, or has characters
    /// outside printable ASCII (or a '/' in a node name).
    BadName {
        /// Offset of the name (structure or strings block).
        offset: usize,
    },
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what } => write!(f, "device tree truncated while reading {what}"),
            Self::BadMagic(m) => write!(f, "bad device-tree magic {m:#010x} (expected 0xd00dfeed)"),
            Self::UnsupportedVersion { version, last_comp } => write!(
                f,
                "unsupported device-tree version {version} (last compatible {last_comp}); need 16 or 17"
            ),
            Self::BlockOutOfBounds { block } => {
                write!(f, "device-tree {block} block lies outside the blob")
            }
            Self::BadToken { offset, token } => write!(
                f,
                "unknown device-tree token {token:#x} at structure offset {offset:#x}"
            ),
            Self::BadNesting { offset } => write!(
                f,
                "device-tree nodes badly nested at structure offset {offset:#x}"
            ),
            Self::TooDeep => write!(f, "device-tree nodes nested deeper than {MAX_DEPTH}"),
            Self::BadName { offset } => write!(
                f,
                "device-tree name at offset {offset:#x} is not a NUL-terminated printable name"
            ),
        }
    }
}

/// Index of a node in a [`DeviceTree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// One property: its name and raw (big-endian) value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// Property name.
    pub name: String,
    /// Raw value bytes.
    pub value: Vec<u8>,
}

/// One node of the decoded tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Full node name including any unit address (`"pl011@9000000"`); empty
    /// for the root.
    pub name: String,
    /// Parent node, `None` for the root.
    pub parent: Option<NodeId>,
    /// Children in blob order.
    pub children: Vec<NodeId>,
    /// Properties in blob order.
    pub props: Vec<Property>,
}

/// A decoded flattened device tree. Node 0 is the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceTree {
    nodes: Vec<Node>,
    memreserve: Vec<(u64, u64)>,
}

/// The big-endian u32 at `off` of `buf`, if `buf` holds one there.
// Out of line: the target forbids unaligned loads, so each inlined copy
// is a dozen byte loads and shifts (measured: smaller image).
#[inline(never)]
fn be32(buf: &[u8], off: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The NUL-terminated name at `off` of `buf`: printable ASCII and, for a
/// node name, no '/' (Devicetree Specification 2.2.1: '/' separates
/// paths); a property name is also non-empty (2.2.4). `None` for anything
/// else (the caller's [`FdtError::BadName`] at `off`).
fn name_at(buf: &[u8], off: usize, node: bool) -> Option<&str> {
    let rest = buf.get(off..)?;
    let name = &rest[..rest.iter().position(|&b| b == 0)?];
    if (!node && name.is_empty())
        || !name
            .iter()
            .all(|&b| b.is_ascii_graphic() && !(node && b == b'/'))
    {
        return None;
    }
    // Printable ASCII is UTF-8: this cannot fail.
    core::str::from_utf8(name).ok()
}

/// Rounds a structure-block offset up to the next token boundary. Offsets
/// stay within the block, so this never overflows.
fn align4(v: usize) -> usize {
    (v + 3) & !3
}

fn block<'a>(
    blob: &'a [u8],
    off: u32,
    size: u32,
    block: &'static str,
) -> Result<&'a [u8], FdtError> {
    let start = off as usize;
    let end = start
        .checked_add(size as usize)
        .ok_or(FdtError::BlockOutOfBounds { block })?;
    blob.get(start..end)
        .ok_or(FdtError::BlockOutOfBounds { block })
}

impl DeviceTree {
    /// Decodes a flattened device tree (versions 16 and 17).
    pub fn parse(blob: &[u8]) -> Result<Self, FdtError> {
        let header = blob
            .get(..HEADER_LEN)
            .ok_or(FdtError::Truncated { what: "header" })?;
        // The header holds ten words, so every read succeeds.
        let word = |i: usize| be32(header, i * 4).unwrap_or(0);
        let magic = word(0);
        if magic != FDT_MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        let (version, last_comp) = (word(5), word(6));
        if version < 16 || last_comp > 17 {
            return Err(FdtError::UnsupportedVersion { version, last_comp });
        }
        let blob = blob
            .get(..word(1) as usize)
            .ok_or(FdtError::Truncated { what: "blob" })?;
        let strings = block(blob, word(3), word(8), "strings")?;
        let structure = if version >= 17 {
            block(blob, word(2), word(9), "structure")?
        } else {
            blob.get(word(2) as usize..)
                .ok_or(FdtError::BlockOutOfBounds { block: "structure" })?
        };

        let mut memreserve = Vec::new();
        let mut off = word(4) as usize;
        loop {
            let entry = off
                .checked_add(16)
                .and_then(|end| blob.get(off..end))
                .ok_or(FdtError::Truncated {
                    what: "memory reservation block",
                })?;
            let be64 = |i| {
                u64::from(be32(entry, i).unwrap_or(0)) << 32
                    | u64::from(be32(entry, i + 4).unwrap_or(0))
            };
            let (addr, size) = (be64(0), be64(8));
            if addr == 0 && size == 0 {
                break;
            }
            memreserve.push((addr, size));
            off += 16;
        }

        let nodes = Self::parse_structure(structure, strings)?;
        Ok(Self { nodes, memreserve })
    }

    fn parse_structure(structure: &[u8], strings: &[u8]) -> Result<Vec<Node>, FdtError> {
        let mut nodes: Vec<Node> = Vec::new();
        // The innermost open node and the number of open nodes: the parent
        // links make a stack of open nodes unnecessary.
        let mut open: Option<NodeId> = None;
        let mut depth = 0;
        let mut off = 0usize;
        loop {
            let here = off;
            let token = be32(structure, off).ok_or(FdtError::Truncated {
                what: "structure block",
            })?;
            off += 4;
            let nesting = FdtError::BadNesting { offset: here };
            match token {
                FDT_BEGIN_NODE => {
                    // After the root node closed, nothing may follow.
                    if open.is_none() && !nodes.is_empty() {
                        return Err(nesting);
                    }
                    let name =
                        name_at(structure, off, true).ok_or(FdtError::BadName { offset: off })?;
                    off = align4(off + name.len() + 1);
                    if depth >= MAX_DEPTH {
                        return Err(FdtError::TooDeep);
                    }
                    depth += 1;
                    let id = NodeId(nodes.len());
                    if let Some(p) = open.and_then(|p| nodes.get_mut(p.0)) {
                        p.children.push(id);
                    }
                    nodes.push(Node {
                        name: String::from(name),
                        parent: open,
                        children: Vec::new(),
                        props: Vec::new(),
                    });
                    open = Some(id);
                }
                FDT_END_NODE => {
                    let c = open.ok_or(nesting)?;
                    open = nodes.get(c.0).and_then(|n| n.parent);
                    depth -= 1;
                }
                FDT_PROP => {
                    let header = FdtError::Truncated {
                        what: "property header",
                    };
                    let len = be32(structure, off).ok_or(header.clone())? as usize;
                    let nameoff = be32(structure, off + 4).ok_or(header)? as usize;
                    off += 8;
                    let value = off
                        .checked_add(len)
                        .and_then(|end| structure.get(off..end))
                        .ok_or(FdtError::Truncated {
                            what: "property value",
                        })?;
                    off = align4(off + len);
                    let name = name_at(strings, nameoff, false)
                        .ok_or(FdtError::BadName { offset: nameoff })?;
                    let cur = open.ok_or(nesting)?;
                    if let Some(n) = nodes.get_mut(cur.0) {
                        n.props.push(Property {
                            name: String::from(name),
                            value: value.to_vec(),
                        });
                    }
                }
                FDT_NOP => {}
                FDT_END => {
                    if open.is_some() || nodes.is_empty() {
                        return Err(nesting);
                    }
                    return Ok(nodes);
                }
                other => {
                    return Err(FdtError::BadToken {
                        offset: here,
                        token: other,
                    });
                }
            }
        }
    }

    /// The root node.
    pub fn root(&self) -> NodeId {
        NodeId(0)
    }

    /// The node behind `id`.
    ///
    /// `id` must come from this tree; an unknown id yields the root, so a
    /// stale id can never cause a panic.
    pub fn node(&self, id: NodeId) -> &Node {
        // The arena is never empty: parsing fails without a root node.
        self.nodes.get(id.0).unwrap_or(&self.nodes[0])
    }

    /// All nodes in blob (depth-first) order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(NodeId)
    }

    /// The memory-reservation block entries as (address, size).
    pub fn memreserve(&self) -> &[(u64, u64)] {
        &self.memreserve
    }

    /// Children of `id`.
    pub fn children(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.node(id).children.iter().copied()
    }

    /// Raw value of property `name` of node `id`.
    pub fn prop(&self, id: NodeId, name: &str) -> Option<&[u8]> {
        self.node(id)
            .props
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_slice())
    }

    /// A property holding exactly one u32 cell; `None` when absent or of
    /// another length.
    pub fn prop_u32(&self, id: NodeId, name: &str) -> Option<u32> {
        match self.prop(id, name)? {
            [a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }

    /// A property holding one NUL-terminated UTF-8 string.
    pub fn prop_str(&self, id: NodeId, name: &str) -> Option<&str> {
        str_value(self.prop(id, name)?)
    }

    /// The strings of a string-list property such as `compatible`.
    pub fn prop_strs<'a>(&'a self, id: NodeId, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let v = self.prop(id, name).unwrap_or(&[]);
        let v = v.strip_suffix(&[0]).unwrap_or(v);
        v.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok())
    }

    /// Whether `compatible` of `id` lists `compat`.
    pub fn is_compatible(&self, id: NodeId, compat: &str) -> bool {
        self.prop_strs(id, "compatible").any(|c| c == compat)
    }

    /// Whether the node is enabled: `status` absent, `"okay"` or `"ok"`.
    pub fn is_enabled(&self, id: NodeId) -> bool {
        self.prop(id, "status")
            .is_none_or(|v| matches!(str_value(v), Some("okay" | "ok")))
    }

    /// Node name without the unit address (`"pl011"` for `"pl011@9000000"`).
    pub fn base_name(&self, id: NodeId) -> &str {
        let n = self.node(id).name.as_str();
        n.split_once('@').map_or(n, |(base, _)| base)
    }

    /// Full path of `id` (`"/"` for the root).
    pub fn path(&self, id: NodeId) -> String {
        let mut s = String::new();
        self.push_path(id, &mut s);
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    /// Appends `/name` for every node from below the root down to `id`.
    /// Recursion depth is bounded by the nesting limit of the parser.
    fn push_path(&self, id: NodeId, s: &mut String) {
        let n = self.node(id);
        if let Some(p) = n.parent {
            self.push_path(p, s);
            s.push('/');
            s.push_str(&n.name);
        }
    }

    /// Child of `parent` with name `name`. A name without `@` also matches a
    /// child whose name has a unit address, if it is the only such child.
    pub fn child_by_name(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        let mut loose = None;
        let mut loose_count = 0;
        for c in self.children(parent) {
            let n = self.node(c).name.as_str();
            if n == name {
                return Some(c);
            }
            if !name.contains('@') && self.base_name(c) == name {
                loose = Some(c);
                loose_count += 1;
            }
        }
        if loose_count == 1 { loose } else { None }
    }

    /// Looks up an absolute path such as `"/soc/serial@1000"`.
    pub fn find_path(&self, path: &str) -> Option<NodeId> {
        self.walk(self.root(), path.strip_prefix('/')?)
    }

    /// Follows the `/`-separated node names of `rel` down from `from`.
    pub(crate) fn walk(&self, from: NodeId, rel: &str) -> Option<NodeId> {
        let mut cur = from;
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            cur = self.child_by_name(cur, comp)?;
        }
        Some(cur)
    }

    /// The node whose `phandle` (or legacy `linux,phandle`) is `ph`.
    pub fn find_phandle(&self, ph: u32) -> Option<NodeId> {
        if ph == 0 || ph == u32::MAX {
            return None;
        }
        self.nodes().find(|&n| {
            self.prop_u32(n, "phandle") == Some(ph) || self.prop_u32(n, "linux,phandle") == Some(ph)
        })
    }

    /// The value of `#address-cells` (or `#size-cells`, per `which`) that
    /// governs `reg` properties of `id`'s *children*: `id`'s own property,
    /// else that of its nearest ancestor defining one, else the spec default
    /// at the root (2 for address, 1 for size). This is the rule Xen's host
    /// DT walkers use (see the crate docs).
    pub fn cells_of(&self, id: NodeId, which: Cells) -> Result<u32, u32> {
        let (name, default) = match which {
            Cells::Address => ("#address-cells", 2),
            Cells::Size => ("#size-cells", 1),
        };
        let mut cur = Some(id);
        while let Some(c) = cur {
            if self.prop(c, name).is_some() {
                return self.prop_u32(c, name).ok_or(u32::MAX);
            }
            cur = self.node(c).parent;
        }
        Ok(default)
    }

    /// The (address, size) cells that decode `id`'s own `reg`: those of its
    /// parent, per [`DeviceTree::cells_of`]. `Err` carries the offending value
    /// (`u32::MAX` when the property is not one cell).
    pub fn reg_cells(&self, id: NodeId) -> Result<(u32, u32), u32> {
        let parent = self.node(id).parent.unwrap_or(self.root());
        Ok((
            self.cells_of(parent, Cells::Address)?,
            self.cells_of(parent, Cells::Size)?,
        ))
    }
}

/// Which cell count [`DeviceTree::cells_of`] looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cells {
    /// `#address-cells`.
    Address,
    /// `#size-cells`.
    Size,
}

/// Whether `name` is one of the NUL-separated names in `list` (a list
/// kept as one string rather than a table of string pointers).
pub(crate) fn listed(list: &str, name: &str) -> bool {
    list.split('\0').any(|n| n == name)
}

/// Decodes a property value holding one NUL-terminated UTF-8 string.
pub fn str_value(v: &[u8]) -> Option<&str> {
    let body = v.strip_suffix(&[0])?;
    if body.contains(&0) {
        return None;
    }
    core::str::from_utf8(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TNode, build, cells, s};
    use proptest::prelude::*;
    use std::vec;

    fn sample() -> Vec<u8> {
        let root = TNode::new("")
            .prop("#address-cells", cells(&[2]))
            .child(
                TNode::new("soc")
                    .prop("#address-cells", cells(&[1]))
                    .child(
                        TNode::new("serial@1000")
                            .prop("compatible", [s("vendor,uart"), s("arm,pl011")].concat())
                            .prop("phandle", cells(&[7]))
                            .child(TNode::new("leaf@0")),
                    )
                    .child(TNode::new("serial@2000").prop("status", s("disabled"))),
            )
            .child(TNode::new("chosen"));
        build(&root, &[(0x8000_0000, 0x1000)])
    }

    #[test]
    fn decodes_structure_paths_and_properties() {
        let dt = DeviceTree::parse(&sample()).unwrap();
        let uart = dt.find_path("/soc/serial@1000").unwrap();
        assert_eq!(dt.path(uart), "/soc/serial@1000");
        assert_eq!(dt.base_name(uart), "serial");
        assert!(dt.is_compatible(uart, "arm,pl011"));
        assert!(!dt.is_compatible(uart, "arm"));
        assert_eq!(dt.find_phandle(7), Some(uart));
        assert_eq!(dt.find_phandle(0), None);
        assert_eq!(dt.memreserve(), &[(0x8000_0000, 0x1000)]);
        assert_eq!(dt.path(dt.root()), "/");
        let off = dt.find_path("/soc/serial@2000").unwrap();
        assert!(!dt.is_enabled(off));
        assert!(dt.is_enabled(uart));
        assert_eq!(dt.find_path("/soc/serial@3000"), None);
        assert_eq!(dt.find_path("soc"), None);
    }

    #[test]
    fn name_without_unit_address_matches_only_if_unique() {
        let dt = DeviceTree::parse(&sample()).unwrap();
        let soc = dt.find_path("/soc").unwrap();
        // Two "serial@..." children: the bare name is ambiguous.
        assert_eq!(dt.child_by_name(soc, "serial"), None);
        let uart = dt.find_path("/soc/serial@1000").unwrap();
        assert_eq!(
            dt.child_by_name(uart, "leaf"),
            dt.find_path("/soc/serial@1000/leaf@0")
        );
    }

    #[test]
    fn cells_come_from_nearest_ancestor_defaults_only_at_root() {
        let dt = DeviceTree::parse(&sample()).unwrap();
        let uart = dt.find_path("/soc/serial@1000").unwrap();
        let leaf = dt.find_path("/soc/serial@1000/leaf@0").unwrap();
        // serial's reg: soc says 1 address cell; #size-cells is nowhere, so
        // the root default (1) applies.
        assert_eq!(dt.reg_cells(uart), Ok((1, 1)));
        // leaf's parent (serial) defines nothing: inherit soc's 1, not 2.
        assert_eq!(dt.reg_cells(leaf), Ok((1, 1)));
        let chosen = dt.find_path("/chosen").unwrap();
        assert_eq!(dt.cells_of(chosen, Cells::Address), Ok(2));
        assert_eq!(dt.cells_of(chosen, Cells::Size), Ok(1));
    }

    #[test]
    fn malformed_cell_property_is_reported() {
        let root = TNode::new("")
            .prop("#address-cells", vec![0, 1])
            .child(TNode::new("a"));
        let dt = DeviceTree::parse(&build(&root, &[])).unwrap();
        let a = dt.find_path("/a").unwrap();
        assert_eq!(dt.reg_cells(a), Err(u32::MAX));
    }

    #[test]
    fn string_helpers_reject_non_strings() {
        assert_eq!(str_value(b"okay\0"), Some("okay"));
        assert_eq!(str_value(b"okay"), None);
        assert_eq!(str_value(b"a\0b\0"), None);
        assert_eq!(str_value(&[0xff, 0]), None);
    }

    fn header_field(blob: &mut [u8], idx: usize, v: u32) {
        blob[idx * 4..idx * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            DeviceTree::parse(&[0; 10]),
            Err(FdtError::Truncated { what: "header" })
        );
        let mut b = sample();
        header_field(&mut b, 0, 0x1234_5678);
        assert_eq!(DeviceTree::parse(&b), Err(FdtError::BadMagic(0x1234_5678)));
        let mut b = sample();
        header_field(&mut b, 5, 15);
        assert!(matches!(
            DeviceTree::parse(&b),
            Err(FdtError::UnsupportedVersion { version: 15, .. })
        ));
        let mut b = sample();
        let too_long = b.len() as u32 + 1;
        header_field(&mut b, 1, too_long);
        assert_eq!(
            DeviceTree::parse(&b),
            Err(FdtError::Truncated { what: "blob" })
        );
        let mut b = sample();
        header_field(&mut b, 3, 0xFFFF_FFF0);
        assert_eq!(
            DeviceTree::parse(&b),
            Err(FdtError::BlockOutOfBounds { block: "strings" })
        );
    }

    #[test]
    fn structure_errors() {
        let mut b = sample();
        // First structure token is BEGIN_NODE; make it garbage.
        let off = u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
        b[off + 3] = 0x7;
        assert_eq!(
            DeviceTree::parse(&b),
            Err(FdtError::BadToken {
                offset: 0,
                token: 7
            })
        );
        // An END_NODE first: nothing to close.
        b[off + 3] = 0x2;
        assert_eq!(
            DeviceTree::parse(&b),
            Err(FdtError::BadNesting { offset: 0 })
        );
    }

    #[test]
    fn names_must_be_printable_and_slash_free() {
        let root = TNode::new("").child(TNode::new("a/b"));
        assert!(matches!(
            DeviceTree::parse(&build(&root, &[])),
            Err(FdtError::BadName { .. })
        ));
        let root = TNode::new("").child(TNode::new("a\rb"));
        assert!(matches!(
            DeviceTree::parse(&build(&root, &[])),
            Err(FdtError::BadName { .. })
        ));
        let root = TNode::new("").prop("bad name", vec![]);
        assert!(matches!(
            DeviceTree::parse(&build(&root, &[])),
            Err(FdtError::BadName { .. })
        ));
    }

    #[test]
    fn nesting_limit() {
        let mut n = TNode::new("leaf");
        for i in 0..MAX_DEPTH {
            n = TNode::new(&std::format!("n{i}")).child(n);
        }
        let root = TNode::new("").child(n);
        assert_eq!(
            DeviceTree::parse(&build(&root, &[])),
            Err(FdtError::TooDeep)
        );
    }

    fn arb_tree(depth: u32) -> BoxedStrategy<TNode> {
        let props = proptest::collection::vec(
            (
                "[a-z#,-]{1,12}",
                proptest::collection::vec(any::<u8>(), 0..24),
            ),
            0..4,
        );
        let leaf = ("[a-z]{1,8}(@[0-9a-f]{1,4})?", props.clone()).prop_map(|(n, p)| TNode {
            name: n,
            props: p,
            children: Vec::new(),
        });
        if depth == 0 {
            return leaf.boxed();
        }
        (leaf, proptest::collection::vec(arb_tree(depth - 1), 0..4))
            .prop_map(|(mut n, c)| {
                n.children = c;
                n
            })
            .boxed()
    }

    fn check_same(dt: &DeviceTree, id: NodeId, n: &TNode) {
        let node = dt.node(id);
        assert_eq!(node.props.len(), n.props.len());
        for (p, (name, value)) in node.props.iter().zip(&n.props) {
            assert_eq!(&p.name, name);
            assert_eq!(&p.value, value);
        }
        assert_eq!(node.children.len(), n.children.len());
        for (&c, tc) in node.children.iter().zip(&n.children) {
            assert_eq!(dt.node(c).name, tc.name);
            check_same(dt, c, tc);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn round_trips_any_tree(children in proptest::collection::vec(arb_tree(3), 0..4),
                                rsv in proptest::collection::vec((any::<u64>(), 1..u64::MAX), 0..3)) {
            let root = TNode { name: String::new(), props: Vec::new(), children };
            let dt = DeviceTree::parse(&build(&root, &rsv)).unwrap();
            check_same(&dt, dt.root(), &root);
            prop_assert_eq!(dt.memreserve(), rsv.as_slice());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = DeviceTree::parse(&bytes);
        }

        #[test]
        fn corrupted_blobs_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                        cut in any::<prop::sample::Index>()) {
            let mut b = sample();
            for (i, v) in flips {
                let i = i.index(b.len());
                b[i] = v;
            }
            let cut = cut.index(b.len() + 1);
            if let Ok(dt) = DeviceTree::parse(&b[..cut]) {
                for n in dt.nodes() {
                    let _ = dt.path(n);
                    let _ = dt.reg_cells(n);
                }
            }
        }
    }
}
