//! A tiny FDT writer for unit tests: builds blobs the parser must accept,
//! and minimal host trees to hang `/chosen` nodes on.

use std::string::String;
use std::vec::Vec;

/// A node to serialize.
#[derive(Clone, Debug)]
pub struct TNode {
    pub name: String,
    pub props: Vec<(String, Vec<u8>)>,
    pub children: Vec<TNode>,
}

impl TNode {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            props: Vec::new(),
            children: Vec::new(),
        }
    }
    pub fn prop(mut self, name: &str, value: Vec<u8>) -> Self {
        self.props.push((name.into(), value));
        self
    }
    pub fn child(mut self, c: TNode) -> Self {
        self.children.push(c);
        self
    }
}

pub fn cells(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|c| c.to_be_bytes()).collect()
}

pub fn s(v: &str) -> Vec<u8> {
    let mut b = v.as_bytes().to_vec();
    b.push(0);
    b
}

fn emit(n: &TNode, st: &mut Vec<u8>, strings: &mut Vec<u8>) {
    st.extend(1u32.to_be_bytes());
    st.extend(n.name.as_bytes());
    st.push(0);
    while !st.len().is_multiple_of(4) {
        st.push(0);
    }
    for (name, value) in &n.props {
        let off = strings.len() as u32;
        strings.extend(name.as_bytes());
        strings.push(0);
        st.extend(3u32.to_be_bytes());
        st.extend((value.len() as u32).to_be_bytes());
        st.extend(off.to_be_bytes());
        st.extend(value);
        while !st.len().is_multiple_of(4) {
            st.push(0);
        }
    }
    for c in &n.children {
        emit(c, st, strings);
    }
    st.extend(2u32.to_be_bytes());
}

/// Serializes `root` (version 17) with the given memreserve entries.
pub fn build(root: &TNode, rsv: &[(u64, u64)]) -> Vec<u8> {
    let mut st = Vec::new();
    let mut strings = Vec::new();
    emit(root, &mut st, &mut strings);
    st.extend(9u32.to_be_bytes());
    let mut rsvmap = Vec::new();
    for &(a, sz) in rsv.iter().chain(&[(0, 0)]) {
        rsvmap.extend(a.to_be_bytes());
        rsvmap.extend(sz.to_be_bytes());
    }
    let off_rsv = 40u32;
    let off_struct = off_rsv + rsvmap.len() as u32;
    let off_strings = off_struct + st.len() as u32;
    let total = off_strings + strings.len() as u32;
    let mut out = Vec::new();
    for v in [
        0xd00d_feed,
        total,
        off_struct,
        off_strings,
        off_rsv,
        17,
        16,
        0,
        strings.len() as u32,
        st.len() as u32,
    ] {
        out.extend(u32::to_be_bytes(v));
    }
    out.extend(rsvmap);
    out.extend(st);
    out.extend(strings);
    out
}

/// A minimal GICv2 host (RAM 1 GiB at 0x4000_0000, 2 CPUs, GIC, PL011 on
/// SPI 1 as the console) whose `/chosen` is `chosen`.
pub fn host_with(chosen: TNode) -> TNode {
    TNode::new("")
        .prop("#address-cells", cells(&[2]))
        .prop("#size-cells", cells(&[2]))
        .prop("interrupt-parent", cells(&[1]))
        .child(
            TNode::new("memory@40000000")
                .prop("device_type", s("memory"))
                .prop("reg", cells(&[0, 0x4000_0000, 0, 0x4000_0000])),
        )
        .child(
            TNode::new("cpus")
                .prop("#address-cells", cells(&[1]))
                .prop("#size-cells", cells(&[0]))
                .child(
                    TNode::new("cpu@0")
                        .prop("device_type", s("cpu"))
                        .prop("reg", cells(&[0])),
                )
                .child(
                    TNode::new("cpu@1")
                        .prop("device_type", s("cpu"))
                        .prop("reg", cells(&[1])),
                ),
        )
        .child(
            TNode::new("intc@8000000")
                .prop("compatible", s("arm,gic-400"))
                .prop("interrupt-controller", Vec::new())
                .prop("#interrupt-cells", cells(&[3]))
                .prop("phandle", cells(&[1]))
                .prop(
                    "reg",
                    cells(&[
                        0,
                        0x0800_0000,
                        0,
                        0x1000,
                        0,
                        0x0801_0000,
                        0,
                        0x2000,
                        0,
                        0x0803_0000,
                        0,
                        0x2000,
                        0,
                        0x0804_0000,
                        0,
                        0x2000,
                    ]),
                )
                .prop("interrupts", cells(&[1, 9, 0xf04])),
        )
        .child(
            TNode::new("uart@9000000")
                .prop("compatible", s("arm,pl011"))
                .prop("reg", cells(&[0, 0x0900_0000, 0, 0x1000]))
                .prop("interrupts", cells(&[0, 1, 4])),
        )
        .child(chosen.prop("stdout-path", s("/uart@9000000")))
}

/// A valid domain node with a kernel module at 0x4800_0000 (2/2 cells).
pub fn domain(name: &str) -> TNode {
    TNode::new(name)
        .prop("compatible", s("xen,domain"))
        .prop("#address-cells", cells(&[2]))
        .prop("#size-cells", cells(&[2]))
        .prop("memory", cells(&[0, 0x10000]))
        .prop("cpus", cells(&[1]))
        .child(
            TNode::new("kernel")
                .prop(
                    "compatible",
                    [s("multiboot,kernel"), s("multiboot,module")].concat(),
                )
                .prop("reg", cells(&[0, 0x4800_0000, 0, 0x10_0000])),
        )
}
