//! Reading the partial device tree (the `multiboot,device-tree` boot
//! module).
//!
//! The partial DTB is administrator input. It is decoded with the
//! workspace's safe FDT reader ([`tessel_config::fdt::DeviceTree`], the one
//! that reads the host tree and that device assignment reads the same blob
//! with): header, block offsets and sizes, token stream, nesting and names
//! are validated, every defect is a typed error with its offset, and
//! malformed input never panics. This module adds the partial-DT errors on
//! top: the blob's `totalsize` against the module, and the phandle rules
//! the generator checks.

use alloc::string::String;
use core::fmt;

use tessel_config::FdtError as DtbError;
use tessel_config::fdt::DeviceTree;
pub use tessel_config::fdt::MAX_DEPTH;

/// A defect of the partial device tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PartialDtError {
    /// `totalsize` exceeds the module's length.
    TotalSizeTooLarge {
        /// `totalsize` from the header.
        totalsize: u32,
        /// Length of the module.
        len: usize,
    },
    /// The blob is not a valid flattened device tree (header, blocks,
    /// structure, names, nesting deeper than [`MAX_DEPTH`]); the reader's
    /// error says what and where.
    Dtb(DtbError),
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
    /// A `phandle`/`linux,phandle` (or `interrupt-parent`) property is not
    /// one cell long.
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
            Self::TotalSizeTooLarge { totalsize, len } => write!(
                f,
                "partial DTB totalsize {totalsize:#x} exceeds the module size {len:#x}"
            ),
            Self::Dtb(e) => write!(f, "partial DTB: {e}"),
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

/// Validates and decodes a partial DTB. `blob` is the whole boot module;
/// its header's `totalsize` must not exceed it (a larger module, padded,
/// is accepted).
pub fn parse_partial(blob: &[u8]) -> Result<DeviceTree, PartialDtError> {
    DeviceTree::parse(blob).map_err(|e| match e {
        // The reader's only use of "blob": `totalsize` past the module.
        DtbError::Truncated { what: "blob" } => PartialDtError::TotalSizeTooLarge {
            totalsize: blob
                .get(4..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_be_bytes),
            len: blob.len(),
        },
        e => PartialDtError::Dtb(e),
    })
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
        let dt = parse_partial(&b).unwrap();
        let root = dt.root();
        assert_eq!(dt.node(root).name, "");
        assert_eq!(dt.children(root).count(), 2);
        let gic = dt.find_path("/gic").unwrap();
        assert_eq!(dt.prop_u32(gic, "phandle"), Some(1));
        let dev = dt.find_path("/passthrough/dev@1000").unwrap();
        assert_eq!(dt.prop(dev, "reg").unwrap().len(), 12);
    }

    #[test]
    fn header_defects_are_typed() {
        let b = sample();
        assert_eq!(
            parse_partial(&b[..10]),
            Err(PartialDtError::Dtb(DtbError::Truncated { what: "header" }))
        );
        let mut bad = b.clone();
        bad[0] = 0;
        assert!(matches!(
            parse_partial(&bad),
            Err(PartialDtError::Dtb(DtbError::BadMagic(_)))
        ));
        assert_eq!(
            parse_partial(&b[..b.len() - 1]),
            Err(PartialDtError::TotalSizeTooLarge {
                totalsize: b.len() as u32,
                len: b.len() - 1
            })
        );
        let mut bad = b.clone();
        bad[20..24].copy_from_slice(&15u32.to_be_bytes());
        assert!(matches!(
            parse_partial(&bad),
            Err(PartialDtError::Dtb(DtbError::UnsupportedVersion {
                version: 15,
                ..
            }))
        ));
        let mut bad = b.clone();
        bad[8..12].copy_from_slice(&0x10_0000u32.to_be_bytes());
        assert_eq!(
            parse_partial(&bad),
            Err(PartialDtError::Dtb(DtbError::BlockOutOfBounds {
                block: "structure"
            }))
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
                    parse_partial(&bad),
                    Err(PartialDtError::Dtb(DtbError::Truncated { .. }))
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
                let _ = parse_partial(&bad);
            }
        }
    }

    #[test]
    fn errors_say_partial_dtb() {
        let b = sample();
        let msg = parse_partial(&b[..10]).unwrap_err().to_string();
        assert!(msg.starts_with("partial DTB: "), "{msg}");
        let msg = parse_partial(&b[..b.len() - 1]).unwrap_err().to_string();
        assert!(msg.contains("totalsize"), "{msg}");
    }
}
