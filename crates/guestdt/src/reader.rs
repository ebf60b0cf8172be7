//! A bounds-checked reader for the partial device tree (the
//! `multiboot,device-tree` boot module).
//!
//! The partial DTB is administrator input: it is validated (header, block
//! offsets and sizes, token stream, nesting, string offsets) and turned into
//! a borrowed tree, with a typed [`PartialDtError`] for every defect. The
//! reader is written in safe code with explicit bounds checks; it never
//! panics on malformed input.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::writer::{FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_NOP, FDT_PROP};

/// Deepest node nesting accepted (real trees stay far below this).
pub const MAX_DEPTH: usize = 64;

/// A defect of the partial device tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PartialDtError {
    /// Shorter than the 40-byte header.
    TooShort(usize),
    /// The header does not start with 0xd00dfeed.
    BadMagic(u32),
    /// `totalsize` exceeds the module's length.
    TotalSizeTooLarge {
        /// `totalsize` from the header.
        totalsize: u32,
        /// Length of the module.
        len: usize,
    },
    /// A version this reader cannot parse (needs 16 or 17 compatible).
    UnsupportedVersion {
        /// `version` field.
        version: u32,
        /// `last_comp_version` field.
        last_comp_version: u32,
    },
    /// A block lies outside `totalsize` or is misaligned.
    BadBlock(&'static str),
    /// The structure block is malformed at this offset (into the blob).
    BadStructure {
        /// Byte offset into the blob.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A property name offset points outside the strings block.
    BadStringOffset(u32),
    /// A node or property name is not valid UTF-8 text.
    BadName {
        /// Byte offset into the blob.
        offset: usize,
    },
    /// Nodes nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A phandle of the partial DT falls in the range reserved for the
    /// hypervisor (>= 65000) or is zero/all-ones.
    ReservedPhandle {
        /// Path of the node.
        node: String,
        /// The phandle value.
        phandle: u32,
    },
    /// Two nodes of the partial DT share a phandle.
    DuplicatePhandle {
        /// Path of the second node.
        node: String,
        /// The phandle value.
        phandle: u32,
    },
    /// A `phandle`/`linux,phandle` property is not one cell long.
    BadPhandleProperty(String),
    /// An `interrupt-parent` in a copied node refers to a node that is not
    /// copied into the guest (nor the `/gic` placeholder).
    DanglingInterruptParent {
        /// Path of the node.
        node: String,
        /// The referenced phandle.
        phandle: u32,
    },
}

impl fmt::Display for PartialDtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(f, "partial DTB of {n} bytes is shorter than its header"),
            Self::BadMagic(m) => write!(f, "partial DTB has bad magic {m:#x}"),
            Self::TotalSizeTooLarge { totalsize, len } => write!(
                f,
                "partial DTB totalsize {totalsize:#x} exceeds the module size {len:#x}"
            ),
            Self::UnsupportedVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "partial DTB version {version} (last compatible {last_comp_version}) is not supported"
            ),
            Self::BadBlock(b) => write!(f, "partial DTB {b} block is out of bounds or misaligned"),
            Self::BadStructure { offset, what } => {
                write!(f, "partial DTB structure block at {offset:#x}: {what}")
            }
            Self::BadStringOffset(o) => {
                write!(
                    f,
                    "partial DTB property name offset {o:#x} is outside the strings block"
                )
            }
            Self::BadName { offset } => write!(f, "partial DTB name at {offset:#x} is not UTF-8"),
            Self::TooDeep => write!(f, "partial DTB nests nodes deeper than {MAX_DEPTH}"),
            Self::ReservedPhandle { node, phandle } => write!(
                f,
                "partial DTB node {node} has phandle {phandle:#x}; phandles must be in 1..65000 (65000 and above are reserved)"
            ),
            Self::DuplicatePhandle { node, phandle } => {
                write!(f, "partial DTB node {node} reuses phandle {phandle:#x}")
            }
            Self::BadPhandleProperty(n) => {
                write!(
                    f,
                    "partial DTB node {n} has a phandle property that is not one cell"
                )
            }
            Self::DanglingInterruptParent { node, phandle } => write!(
                f,
                "partial DTB node {node} has interrupt-parent {phandle:#x}, which is neither /gic nor a copied node"
            ),
        }
    }
}

/// A property of the partial DT, borrowed from the blob.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Prop<'a> {
    /// Property name.
    pub name: &'a str,
    /// Raw value.
    pub value: &'a [u8],
}

/// A node of the partial DT, borrowed from the blob.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Node<'a> {
    /// Node name including any unit address (`""` for the root).
    pub name: &'a str,
    /// Properties in blob order.
    pub props: Vec<Prop<'a>>,
    /// Child nodes in blob order.
    pub children: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    /// The property `name`, if present.
    pub fn prop(&self, name: &str) -> Option<&Prop<'a>> {
        self.props.iter().find(|p| p.name == name)
    }

    /// The child node `name`, if present.
    pub fn child(&self, name: &str) -> Option<&Node<'a>> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The node's phandle (`phandle`, else `linux,phandle`), if it has one.
    pub fn phandle(&self, path: &str) -> Result<Option<u32>, PartialDtError> {
        let Some(p) = self.prop("phandle").or_else(|| self.prop("linux,phandle")) else {
            return Ok(None);
        };
        let cell: [u8; 4] = p
            .value
            .try_into()
            .map_err(|_| PartialDtError::BadPhandleProperty(String::from(path)))?;
        Ok(Some(u32::from_be_bytes(cell)))
    }
}

fn be32_at(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// A validated partial DTB, parsed into a tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PartialDt<'a> {
    /// The root node.
    pub root: Node<'a>,
}

impl<'a> PartialDt<'a> {
    /// Validates and parses a partial DTB. `blob` is the whole boot module;
    /// its header's `totalsize` must not exceed it.
    pub fn parse(blob: &'a [u8]) -> Result<Self, PartialDtError> {
        let hdr = |i: usize| be32_at(blob, i * 4).ok_or(PartialDtError::TooShort(blob.len()));
        if blob.len() < 40 {
            return Err(PartialDtError::TooShort(blob.len()));
        }
        let magic = hdr(0)?;
        if magic != FDT_MAGIC {
            return Err(PartialDtError::BadMagic(magic));
        }
        let totalsize = hdr(1)?;
        if totalsize as usize > blob.len() {
            return Err(PartialDtError::TotalSizeTooLarge {
                totalsize,
                len: blob.len(),
            });
        }
        let blob = blob.get(..totalsize as usize).unwrap_or(blob);
        let off_struct = hdr(2)? as usize;
        let off_strings = hdr(3)? as usize;
        let off_rsv = hdr(4)? as usize;
        let version = hdr(5)?;
        let last_comp_version = hdr(6)?;
        if version < 16 || last_comp_version > 17 {
            return Err(PartialDtError::UnsupportedVersion {
                version,
                last_comp_version,
            });
        }
        let size_strings = hdr(8)? as usize;
        // size_dt_struct exists from version 17; before that the block runs
        // to the end of the blob at the latest.
        let size_struct = if version >= 17 {
            hdr(9)? as usize
        } else {
            blob.len().saturating_sub(off_struct)
        };
        let in_bounds = |off: usize, size: usize| {
            off >= 40 && off.checked_add(size).is_some_and(|e| e <= blob.len())
        };
        if !in_bounds(off_rsv, 16) || !off_rsv.is_multiple_of(8) {
            return Err(PartialDtError::BadBlock("memory-reservation"));
        }
        if !in_bounds(off_struct, size_struct) || !off_struct.is_multiple_of(4) {
            return Err(PartialDtError::BadBlock("structure"));
        }
        if !in_bounds(off_strings, size_strings) {
            return Err(PartialDtError::BadBlock("strings"));
        }
        let structure = blob
            .get(off_struct..off_struct + size_struct)
            .ok_or(PartialDtError::BadBlock("structure"))?;
        let strings = blob
            .get(off_strings..off_strings + size_strings)
            .ok_or(PartialDtError::BadBlock("strings"))?;
        let root = parse_structure(structure, strings, off_struct)?;
        Ok(Self { root })
    }
}

fn cstr_at(buf: &[u8], off: usize) -> Option<&[u8]> {
    let rest = buf.get(off..)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    rest.get(..nul)
}

fn parse_structure<'a>(
    s: &'a [u8],
    strings: &'a [u8],
    base: usize,
) -> Result<Node<'a>, PartialDtError> {
    let bad = |offset: usize, what: &'static str| PartialDtError::BadStructure {
        offset: base + offset,
        what,
    };
    let mut off = 0usize;
    let mut stack: Vec<Node<'a>> = Vec::new();
    let mut root: Option<Node<'a>> = None;
    loop {
        let tok = be32_at(s, off).ok_or_else(|| bad(off, "missing FDT_END token"))?;
        let tok_off = off;
        off += 4;
        match tok {
            FDT_BEGIN_NODE => {
                if root.is_some() {
                    return Err(bad(tok_off, "node after the root node"));
                }
                let raw = cstr_at(s, off).ok_or_else(|| bad(off, "unterminated node name"))?;
                let name = core::str::from_utf8(raw)
                    .map_err(|_| PartialDtError::BadName { offset: base + off })?;
                off = (off + raw.len() + 1).next_multiple_of(4);
                if stack.len() >= MAX_DEPTH {
                    return Err(PartialDtError::TooDeep);
                }
                stack.push(Node {
                    name,
                    ..Node::default()
                });
            }
            FDT_END_NODE => {
                let node = stack
                    .pop()
                    .ok_or_else(|| bad(tok_off, "FDT_END_NODE without an open node"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            FDT_PROP => {
                let len = be32_at(s, off).ok_or_else(|| bad(off, "truncated property"))? as usize;
                let nameoff = be32_at(s, off + 4).ok_or_else(|| bad(off, "truncated property"))?;
                off += 8;
                let value = off
                    .checked_add(len)
                    .and_then(|end| s.get(off..end))
                    .ok_or_else(|| bad(off, "property value runs past the structure block"))?;
                off = (off + len).next_multiple_of(4);
                let raw = cstr_at(strings, nameoff as usize)
                    .ok_or(PartialDtError::BadStringOffset(nameoff))?;
                let name = core::str::from_utf8(raw)
                    .map_err(|_| PartialDtError::BadStringOffset(nameoff))?;
                let node = stack
                    .last_mut()
                    .ok_or_else(|| bad(tok_off, "property outside any node"))?;
                node.props.push(Prop { name, value });
            }
            FDT_NOP => {}
            FDT_END => {
                if !stack.is_empty() {
                    return Err(bad(tok_off, "FDT_END inside an open node"));
                }
                return root.ok_or_else(|| bad(tok_off, "no root node"));
            }
            _ => return Err(bad(tok_off, "unknown token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::FdtWriter;
    use alloc::vec::Vec;

    fn sample() -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.begin_node("gic").unwrap();
        w.property_u32("phandle", 1).unwrap();
        w.end_node().unwrap();
        w.begin_node("passthrough").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.begin_node("dev@1000").unwrap();
        w.property_cells("reg", &[0, 0x1000, 0x100]).unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let b = sample();
        let dt = PartialDt::parse(&b).unwrap();
        assert_eq!(dt.root.name, "");
        assert_eq!(dt.root.children.len(), 2);
        let gic = dt.root.child("gic").unwrap();
        assert_eq!(gic.phandle("/gic").unwrap(), Some(1));
        let dev = dt
            .root
            .child("passthrough")
            .unwrap()
            .child("dev@1000")
            .unwrap();
        assert_eq!(dev.prop("reg").unwrap().value.len(), 12);
    }

    #[test]
    fn header_defects_are_typed() {
        let b = sample();
        assert_eq!(
            PartialDt::parse(&b[..10]),
            Err(PartialDtError::TooShort(10))
        );
        let mut bad = b.clone();
        bad[0] = 0;
        assert!(matches!(
            PartialDt::parse(&bad),
            Err(PartialDtError::BadMagic(_))
        ));
        assert!(matches!(
            PartialDt::parse(&b[..b.len() - 1]),
            Err(PartialDtError::TotalSizeTooLarge { .. })
        ));
        let mut bad = b.clone();
        bad[20..24].copy_from_slice(&15u32.to_be_bytes());
        assert!(matches!(
            PartialDt::parse(&bad),
            Err(PartialDtError::UnsupportedVersion { version: 15, .. })
        ));
        let mut bad = b.clone();
        bad[8..12].copy_from_slice(&0x10_0000u32.to_be_bytes());
        assert_eq!(
            PartialDt::parse(&bad),
            Err(PartialDtError::BadBlock("structure"))
        );
    }

    #[test]
    fn truncated_structure_is_an_error_not_a_panic() {
        let b = sample();
        let size_struct = u32::from_be_bytes(b[36..40].try_into().unwrap());
        // Shrink size_dt_struct so that FDT_END falls outside it.
        for cut in [4u32, 8, 12] {
            let mut bad = b.clone();
            bad[36..40].copy_from_slice(&(size_struct - cut).to_be_bytes());
            assert!(
                matches!(
                    PartialDt::parse(&bad),
                    Err(PartialDtError::BadStructure { .. })
                ),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        let b = sample();
        for i in 0..b.len() {
            for v in [0u8, 0xff, 0x03, 0x09] {
                let mut bad = b.clone();
                bad[i] = v;
                // Must not panic; result may be Ok or Err.
                let _ = PartialDt::parse(&bad);
            }
        }
    }
}
