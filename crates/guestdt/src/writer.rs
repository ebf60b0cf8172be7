//! A small flattened-device-tree (FDT/DTB) writer.
//!
//! Produces blobs in the format of the Devicetree Specification v0.4,
//! chapter 5 ("Flattened Devicetree (DTB) Format"): a 40-byte header, the
//! memory-reservation block, the structure block and the strings block.
//! Version 17 with `last_comp_version` 16, as dtc writes.
//!
//! The writer checks the shape of the tree as it is built (balanced nodes,
//! properties before child nodes, no duplicate property or sibling names,
//! valid names) and reports misuse as a boxed [`FdtError`] (so a result
//! fits in a register) instead of emitting a blob a guest kernel would
//! reject later.
//!
//! ```
//! use tessel_guestdt::writer::FdtWriter;
//! let mut w = FdtWriter::new();
//! w.begin_node("")?;
//! w.property_u32("#address-cells", 2)?;
//! w.begin_node("chosen")?;
//! w.property_string("bootargs", "console=ttyAMA0")?;
//! w.end_node()?;
//! w.end_node()?;
//! let dtb = w.finish()?;
//! assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
//! # Ok::<(), Box<tessel_guestdt::writer::FdtError>>(())
//! ```

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// FDT header magic (DT spec 5.2).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Structure-block token: start of a node (DT spec 5.4.1).
pub const FDT_BEGIN_NODE: u32 = 0x1;
/// Structure-block token: end of a node.
pub const FDT_END_NODE: u32 = 0x2;
/// Structure-block token: a property.
pub const FDT_PROP: u32 = 0x3;
/// Structure-block token: no operation (skipped by readers).
pub const FDT_NOP: u32 = 0x4;
/// Structure-block token: end of the structure block.
pub const FDT_END: u32 = 0x9;
/// Format version written (DT spec 5.2: current version 17).
pub const FDT_VERSION: u32 = 17;
/// Oldest version a reader must understand to read what we write.
pub const FDT_LAST_COMP_VERSION: u32 = 16;
/// Size of the version-17 header in bytes.
pub const FDT_HEADER_SIZE: usize = 40;
/// Longest name accepted. The DT spec asks for at most 31 characters, but
/// real bindings exceed that (`regulator-over-current-protection`), and dtc
/// does not enforce it, so partial-DT nodes with such names are still copied.
pub const MAX_NAME_LEN: usize = 255;

/// Misuse of the writer, or a tree that cannot be represented.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FdtError {
    /// `end_node` with no open node.
    UnbalancedEnd,
    /// `finish` while nodes are still open; names the innermost one.
    UnclosedNode(String),
    /// `finish` before any node was written.
    NoRootNode,
    /// A second top-level node was started after the root was closed.
    SecondRoot(String),
    /// The root node must have the empty name.
    RootNotEmptyName(String),
    /// A property was written outside any node.
    PropertyOutsideNode(String),
    /// A property was written after a child node of the same node.
    PropertyAfterChild {
        /// Path of the node.
        node: String,
        /// Name of the late property.
        property: String,
    },
    /// The same property name twice in one node.
    DuplicateProperty {
        /// Path of the node.
        node: String,
        /// The repeated property name.
        property: String,
    },
    /// Two sibling nodes with the same name.
    DuplicateNode(String),
    /// A node name that the DT spec does not allow (2.2.1).
    InvalidNodeName(String),
    /// A property name that the DT spec does not allow (2.2.4).
    InvalidPropertyName(String),
    /// A string value contains a NUL byte, which would end it early.
    NulInString {
        /// The property being written.
        property: String,
    },
    /// The blob would not fit the 32-bit offsets of the format, or a caller's cap.
    TooLarge {
        /// Size the blob would have.
        size: usize,
        /// Largest size allowed.
        max: usize,
    },
}

/// A name in double quotes, printable ASCII as is and everything else
/// escaped (`\"`, `\\`, `\n`, `\u{e9}`, ...), so an invalid name shows
/// exactly which bytes are at fault. Unlike `{:?}` it needs no Unicode
/// tables in the image: non-ASCII characters are always escaped.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            // The escapes of `char::escape_default`, without its iterator.
            match c {
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                '\n' => f.write_str("\\n")?,
                '"' | '\\' => {
                    f.write_char('\\')?;
                    f.write_char(c)?;
                }
                ' ' => f.write_char(c)?,
                _ if c.is_ascii_graphic() => f.write_char(c)?,
                _ => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        f.write_char('"')
    }
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnbalancedEnd => write!(f, "end_node without a matching begin_node"),
            Self::UnclosedNode(n) => write!(f, "node {n} is still open at finish"),
            Self::NoRootNode => write!(f, "device tree has no root node"),
            Self::SecondRoot(n) => write!(
                f,
                "node {} started after the root node was closed",
                Quoted(n)
            ),
            Self::RootNotEmptyName(n) => {
                write!(f, "root node must have the empty name, not {}", Quoted(n))
            }
            Self::PropertyOutsideNode(p) => write!(f, "property {p} written outside any node"),
            Self::PropertyAfterChild { node, property } => write!(
                f,
                "property {property} of {node} written after a child node"
            ),
            Self::DuplicateProperty { node, property } => {
                write!(f, "property {property} written twice in {node}")
            }
            Self::DuplicateNode(p) => write!(f, "node {p} already exists"),
            Self::InvalidNodeName(n) => write!(f, "invalid node name {}", Quoted(n)),
            Self::InvalidPropertyName(n) => write!(f, "invalid property name {}", Quoted(n)),
            Self::NulInString { property } => {
                write!(f, "string value of {property} contains a NUL byte")
            }
            Self::TooLarge { size, max } => {
                write!(
                    f,
                    "device tree of {size:#x} bytes exceeds the {max:#x}-byte limit"
                )
            }
        }
    }
}

/// One open node while writing. Names are kept as offsets into the blocks
/// being written, so checking them allocates nothing.
#[derive(Debug)]
struct OpenNode {
    /// Where the node's name is in the structure block.
    name: (usize, usize),
    /// The strings-block offsets of its properties' names.
    props: Vec<u32>,
    /// Where its children's names are in the structure block.
    children: Vec<(usize, usize)>,
}

/// Incremental FDT builder. See the [module documentation](self).
#[derive(Debug, Default)]
pub struct FdtWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
    mem_reserve: Vec<(u64, u64)>,
    stack: Vec<OpenNode>,
    root_done: bool,
    boot_cpuid_phys: u32,
}

fn node_name_char_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b',' | b'.' | b'_' | b'+' | b'-')
}

fn prop_name_char_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b',' | b'.' | b'_' | b'+' | b'-' | b'?' | b'#' | b'*')
}

/// Whether `name` is a valid node name: `node-name[@unit-address]` with the
/// characters of DT spec 2.2.1 (table 2.1), a node-name starting with a
/// letter, and at most [`MAX_NAME_LEN`] characters.
pub fn is_valid_node_name(name: &str) -> bool {
    let b = name.as_bytes();
    // The unit address starts after the first '@' (a second one is an
    // invalid character of the unit address).
    let at = b.iter().position(|&c| c == b'@').unwrap_or(b.len());
    let (base, unit) = b.split_at(at);
    let base_ok = base.len() <= MAX_NAME_LEN
        && base.first().is_some_and(u8::is_ascii_alphabetic)
        && base.iter().all(|&c| node_name_char_ok(c));
    let unit_ok = match unit {
        [] => true,
        [_at, address @ ..] => !address.is_empty() && address.iter().all(|&c| node_name_char_ok(c)),
    };
    base_ok && unit_ok
}

/// Whether `name` is a valid property name: characters of DT spec 2.2.4
/// (table 2.2, plus `*` which dtc accepts), at most [`MAX_NAME_LEN`].
pub fn is_valid_property_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(prop_name_char_ok)
}

impl FdtWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the header's `boot_cpuid_phys` (the `reg` of the boot CPU).
    pub fn set_boot_cpuid_phys(&mut self, id: u32) {
        self.boot_cpuid_phys = id;
    }

    /// Adds a `/memreserve/` entry (DT spec 5.3).
    pub fn add_mem_reserve(&mut self, address: u64, size: u64) {
        self.mem_reserve.push((address, size));
    }

    /// Current nesting depth (0 outside the root).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    fn push_u32(&mut self, v: u32) {
        self.structure.extend_from_slice(&v.to_be_bytes());
    }

    fn pad_structure(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    /// The bytes of a name kept as a structure-block range.
    fn name_at(&self, (start, len): (usize, usize)) -> &[u8] {
        self.structure.get(start..start + len).unwrap_or_default()
    }

    /// Path of the innermost open node, with `child` appended if given
    /// (`/` for the root). Only built for error messages.
    fn path(&self, child: Option<&str>) -> String {
        let mut path = String::new();
        for n in self.stack.iter().skip(1) {
            path.push('/');
            path.push_str(core::str::from_utf8(self.name_at(n.name)).unwrap_or_default());
        }
        if let Some(c) = child {
            path.push('/');
            path.push_str(c);
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// Opens a node. The first node must be the root, named `""`.
    pub fn begin_node(&mut self, name: &str) -> Result<(), Box<FdtError>> {
        let err = match self.stack.last() {
            None if self.root_done => Some(FdtError::SecondRoot(name.to_string())),
            None if !name.is_empty() => Some(FdtError::RootNotEmptyName(name.to_string())),
            None => None,
            Some(_) if !is_valid_node_name(name) => {
                Some(FdtError::InvalidNodeName(name.to_string()))
            }
            Some(parent) => parent
                .children
                .iter()
                .any(|&c| self.name_at(c) == name.as_bytes())
                .then(|| FdtError::DuplicateNode(self.path(Some(name)))),
        };
        if let Some(e) = err {
            return Err(Box::new(e));
        }
        self.push_u32(FDT_BEGIN_NODE);
        let range = (self.structure.len(), name.len());
        if let Some(parent) = self.stack.last_mut() {
            parent.children.push(range);
        }
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad_structure();
        self.stack.push(OpenNode {
            name: range,
            props: Vec::new(),
            children: Vec::new(),
        });
        Ok(())
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> Result<(), Box<FdtError>> {
        if self.stack.pop().is_none() {
            return Err(Box::new(FdtError::UnbalancedEnd));
        }
        self.push_u32(FDT_END_NODE);
        if self.stack.is_empty() {
            self.root_done = true;
        }
        Ok(())
    }

    fn string_offset(&mut self, name: &str) -> u32 {
        // A name already in the strings block is reused. The block is a few
        // hundred bytes, so a scan costs less image than a map.
        let mut start = 0;
        while start < self.strings.len() {
            let len = self.strings[start..]
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(self.strings.len() - start);
            if &self.strings[start..start + len] == name.as_bytes() {
                return u32::try_from(start).unwrap_or(u32::MAX);
            }
            start += len + 1;
        }
        // The strings block is bounded by the total-size check in `finish`;
        // a saturated offset there is caught as TooLarge.
        let off = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    /// Checks a property of `len` bytes about to be written into the open
    /// node and writes its header; the caller appends the value and pads.
    fn property_header(&mut self, name: &str, len: usize) -> Result<(), Box<FdtError>> {
        let err = match self.stack.last() {
            None => FdtError::PropertyOutsideNode(name.to_string()),
            Some(_) if !is_valid_property_name(name) => {
                FdtError::InvalidPropertyName(name.to_string())
            }
            Some(node) if !node.children.is_empty() => FdtError::PropertyAfterChild {
                node: self.path(None),
                property: name.to_string(),
            },
            Some(_) => {
                // Same name, same strings-block offset: that is the
                // duplicate check. A new name cannot be a duplicate.
                let nameoff = self.string_offset(name);
                match (self.stack.last_mut(), u32::try_from(len)) {
                    (Some(node), Ok(len)) if !node.props.contains(&nameoff) => {
                        node.props.push(nameoff);
                        self.push_u32(FDT_PROP);
                        self.push_u32(len);
                        self.push_u32(nameoff);
                        return Ok(());
                    }
                    (_, Ok(_)) => FdtError::DuplicateProperty {
                        node: self.path(None),
                        property: name.to_string(),
                    },
                    (_, Err(_)) => FdtError::TooLarge {
                        size: len,
                        max: u32::MAX as usize,
                    },
                }
            }
        };
        Err(Box::new(err))
    }

    /// Writes a property with a raw value.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), Box<FdtError>> {
        self.property_header(name, value.len())?;
        self.structure.extend_from_slice(value);
        self.pad_structure();
        Ok(())
    }

    /// Writes an empty (boolean) property such as `interrupt-controller`.
    pub fn property_empty(&mut self, name: &str) -> Result<(), Box<FdtError>> {
        self.property(name, &[])
    }

    /// Writes a one-cell property.
    pub fn property_u32(&mut self, name: &str, v: u32) -> Result<(), Box<FdtError>> {
        self.property_cells(name, &[v])
    }

    /// Writes a two-cell (64-bit big-endian) property.
    pub fn property_u64(&mut self, name: &str, v: u64) -> Result<(), Box<FdtError>> {
        self.property_cells(name, &[(v >> 32) as u32, v as u32])
    }

    /// Writes a list of cells.
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), Box<FdtError>> {
        self.property_header(name, cells.len() * 4)?;
        for &c in cells {
            self.push_u32(c);
        }
        Ok(())
    }

    /// Writes a NUL-terminated string.
    pub fn property_string(&mut self, name: &str, s: &str) -> Result<(), Box<FdtError>> {
        self.property_string_list(name, &[s])
    }

    /// Writes a list of NUL-terminated strings (e.g. `compatible`).
    pub fn property_string_list(&mut self, name: &str, list: &[&str]) -> Result<(), Box<FdtError>> {
        let mut len = 0;
        for s in list {
            if s.bytes().any(|b| b == 0) {
                return Err(Box::new(FdtError::NulInString {
                    property: name.to_string(),
                }));
            }
            len += s.len() + 1;
        }
        self.property_header(name, len)?;
        for s in list {
            self.structure.extend_from_slice(s.as_bytes());
            self.structure.push(0);
        }
        self.pad_structure();
        Ok(())
    }

    /// Size the blob would have if finished now (with the END token).
    pub fn size_so_far(&self) -> usize {
        FDT_HEADER_SIZE
            + (self.mem_reserve.len() + 1) * 16
            + self.structure.len()
            + 4
            + self.strings.len()
    }

    /// Completes the blob. Fails if nodes are unbalanced or the format's
    /// 32-bit offsets would overflow.
    pub fn finish(self) -> Result<Vec<u8>, Box<FdtError>> {
        self.finish_with_limit(u32::MAX as usize)
    }

    /// Like [`finish`](Self::finish), but fails with [`FdtError::TooLarge`]
    /// when the blob exceeds `max` bytes.
    pub fn finish_with_limit(mut self, max: usize) -> Result<Vec<u8>, Box<FdtError>> {
        if !self.stack.is_empty() {
            return Err(Box::new(FdtError::UnclosedNode(self.path(None))));
        }
        if !self.root_done {
            return Err(Box::new(FdtError::NoRootNode));
        }
        self.push_u32(FDT_END);
        let rsv_off = FDT_HEADER_SIZE; // 8-byte aligned as DT spec 5.3 requires.
        let struct_off = rsv_off + (self.mem_reserve.len() + 1) * 16;
        let strings_off = struct_off + self.structure.len();
        let total = strings_off + self.strings.len();
        let limit = max.min(u32::MAX as usize);
        if total > limit {
            return Err(Box::new(FdtError::TooLarge {
                size: total,
                max: limit,
            }));
        }
        // All values below are <= total <= u32::MAX, checked just above.
        let as32 = |v: usize| v as u32;
        let mut out = Vec::with_capacity(total);
        for field in [
            FDT_MAGIC,
            as32(total),
            as32(struct_off),
            as32(strings_off),
            as32(rsv_off),
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            self.boot_cpuid_phys,
            as32(self.strings.len()),
            as32(self.structure.len()),
        ] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        for (addr, size) in self.mem_reserve.iter().chain(core::iter::once(&(0, 0))) {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
        }
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's result with its error unboxed, for comparisons.
    fn un<T>(r: Result<T, Box<FdtError>>) -> Result<T, FdtError> {
        r.map_err(|e| *e)
    }

    fn be32(b: &[u8], off: usize) -> u32 {
        u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn invalid_names_are_quoted_and_escaped() {
        assert_eq!(
            FdtError::InvalidNodeName(String::from("a b\"c\\d\n\u{e9}")).to_string(),
            "invalid node name \"a b\\\"c\\\\d\\n\\u{e9}\""
        );
        assert_eq!(
            FdtError::InvalidPropertyName(String::from("x@1")).to_string(),
            "invalid property name \"x@1\""
        );
    }

    #[test]
    fn quoting_matches_escape_default() {
        for c in (0..0x3000).filter_map(char::from_u32) {
            let want = if c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') {
                alloc::format!("\"{c}\"")
            } else {
                alloc::format!("\"{}\"", c.escape_default())
            };
            assert_eq!(Quoted(c.encode_utf8(&mut [0; 4])).to_string(), want);
        }
    }

    #[test]
    fn header_fields_and_layout() {
        let mut w = FdtWriter::new();
        w.set_boot_cpuid_phys(0x100);
        w.add_mem_reserve(0x4000_0000, 0x1000);
        w.begin_node("").unwrap();
        w.property_u32("a", 1).unwrap();
        w.end_node().unwrap();
        let b = w.finish().unwrap();
        assert_eq!(be32(&b, 0), FDT_MAGIC);
        assert_eq!(be32(&b, 4) as usize, b.len());
        assert_eq!(be32(&b, 16), 40, "memreserve right after header");
        assert_eq!(be32(&b, 20), 17);
        assert_eq!(be32(&b, 24), 16);
        assert_eq!(be32(&b, 28), 0x100);
        // memreserve entry then terminator
        assert_eq!(
            &b[40..56],
            &[0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]
        );
        assert_eq!(&b[56..72], &[0; 16]);
        let off_struct = be32(&b, 8) as usize;
        let size_struct = be32(&b, 36) as usize;
        assert_eq!(off_struct, 72);
        assert_eq!(be32(&b, off_struct + size_struct - 4), FDT_END);
        assert_eq!(be32(&b, 12) as usize, off_struct + size_struct);
    }

    #[test]
    fn property_names_are_deduplicated() {
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.property_u32("reg", 1).unwrap();
        w.begin_node("a").unwrap();
        w.property_u32("reg", 2).unwrap();
        w.end_node().unwrap();
        w.begin_node("b").unwrap();
        w.property_u32("reg", 3).unwrap();
        w.property_string("compatible", "x").unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        let b = w.finish().unwrap();
        let strings_len = be32(&b, 32) as usize;
        assert_eq!(strings_len, "reg\0compatible\0".len());
    }

    #[test]
    fn misuse_is_reported() {
        let mut w = FdtWriter::new();
        assert_eq!(
            un(w.property_u32("x", 1)),
            Err(FdtError::PropertyOutsideNode("x".into()))
        );
        assert_eq!(un(w.end_node()), Err(FdtError::UnbalancedEnd));
        assert_eq!(
            un(w.begin_node("foo")),
            Err(FdtError::RootNotEmptyName("foo".into()))
        );
        w.begin_node("").unwrap();
        w.begin_node("cpus").unwrap();
        w.end_node().unwrap();
        assert_eq!(
            un(w.property_u32("late", 1)),
            Err(FdtError::PropertyAfterChild {
                node: "/".into(),
                property: "late".into()
            })
        );
        assert_eq!(
            un(w.begin_node("cpus")),
            Err(FdtError::DuplicateNode("/cpus".into()))
        );
        w.begin_node("memory@40000000").unwrap();
        w.property_u32("reg", 1).unwrap();
        assert!(matches!(
            un(w.property_u32("reg", 1)),
            Err(FdtError::DuplicateProperty { .. })
        ));
        assert_eq!(
            un(w.property_string("s", "a\0b")),
            Err(FdtError::NulInString {
                property: "s".into()
            })
        );
        assert!(matches!(
            un(w.begin_node("bad name")),
            Err(FdtError::InvalidNodeName(_))
        ));
        assert!(matches!(
            un(w.property_u32("bad name", 0)),
            Err(FdtError::InvalidPropertyName(_))
        ));
        w.end_node().unwrap();
        w.end_node().unwrap();
        assert_eq!(
            un(w.begin_node("")),
            Err(FdtError::SecondRoot(String::new()))
        );
    }

    #[test]
    fn errors_name_nested_paths() {
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.begin_node("soc").unwrap();
        w.begin_node("bus@1000").unwrap();
        w.property_u32("reg", 1).unwrap();
        assert_eq!(
            un(w.property_u32("reg", 2)),
            Err(FdtError::DuplicateProperty {
                node: "/soc/bus@1000".into(),
                property: "reg".into()
            })
        );
        w.begin_node("dev@0").unwrap();
        w.end_node().unwrap();
        assert_eq!(
            un(w.begin_node("dev@0")),
            Err(FdtError::DuplicateNode("/soc/bus@1000/dev@0".into()))
        );
        assert_eq!(
            un(w.property_empty("late")),
            Err(FdtError::PropertyAfterChild {
                node: "/soc/bus@1000".into(),
                property: "late".into()
            })
        );
        w.end_node().unwrap();
        // A sibling of the same name under another parent is fine.
        w.begin_node("bus@2000").unwrap();
        w.begin_node("dev@0").unwrap();
        w.property_u32("reg", 1).unwrap();
        assert_eq!(
            un(w.finish()),
            Err(FdtError::UnclosedNode("/soc/bus@2000/dev@0".into()))
        );
    }

    #[test]
    fn unclosed_and_empty_trees_fail_to_finish() {
        assert_eq!(un(FdtWriter::new().finish()), Err(FdtError::NoRootNode));
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.begin_node("chosen").unwrap();
        assert_eq!(
            un(w.finish()),
            Err(FdtError::UnclosedNode("/chosen".into()))
        );
    }

    #[test]
    fn limit_is_enforced() {
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.property("blob", &[0u8; 100]).unwrap();
        w.end_node().unwrap();
        let predicted = w.size_so_far();
        assert!(matches!(
            un(w.finish_with_limit(64)),
            Err(FdtError::TooLarge { max: 64, .. })
        ));
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.property("blob", &[0u8; 100]).unwrap();
        w.end_node().unwrap();
        assert_eq!(w.finish().unwrap().len(), predicted);
    }

    #[test]
    fn node_names_match_the_split_once_rule() {
        // The rule as first written: split at the first '@', check each side.
        fn reference(name: &str) -> bool {
            let (base, unit) = match name.split_once('@') {
                Some((b, u)) => (b, Some(u)),
                None => (name, None),
            };
            let base_ok = !base.is_empty()
                && base.len() <= MAX_NAME_LEN
                && base.bytes().all(node_name_char_ok)
                && base.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
            let unit_ok = unit.is_none_or(|u| !u.is_empty() && u.bytes().all(node_name_char_ok));
            base_ok && unit_ok
        }
        let alphabet = ['a', 'Z', '0', '@', ',', '-', ' ', '/'];
        let mut names = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = names
                .iter()
                .flat_map(|n| alphabet.iter().map(move |c| alloc::format!("{n}{c}")))
                .collect();
            names.extend(longer);
        }
        names.push("x".repeat(255));
        names.push("x".repeat(256));
        names.push(alloc::format!("{}@1", "x".repeat(255)));
        for n in &names {
            assert_eq!(is_valid_node_name(n), reference(n), "{n:?}");
        }
    }

    #[test]
    fn name_rules() {
        assert!(is_valid_node_name("interrupt-controller@8000000"));
        assert!(is_valid_node_name("cpu@0"));
        assert!(!is_valid_node_name("@0"));
        assert!(!is_valid_node_name("cpu@"));
        assert!(!is_valid_node_name("0cpu"));
        assert!(!is_valid_node_name("a/b"));
        assert!(!is_valid_node_name(&"x".repeat(256)));
        assert!(is_valid_property_name("regulator-over-current-protection"));
        assert!(is_valid_property_name("#address-cells"));
        assert!(is_valid_property_name("linux,initrd-start"));
        assert!(!is_valid_property_name(""));
        assert!(!is_valid_property_name("a b"));
    }
}
