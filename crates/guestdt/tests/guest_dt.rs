//! End-to-end tests: generate guest DTBs, parse them back with an independent
//! parser (fdt-rs) and with dtc, and check what a guest kernel would see.

use std::collections::BTreeMap;
use std::process::Command;

use fdt_rs::base::DevTree;
use fdt_rs::base::parse::ParsedTok;
use fdt_rs::prelude::FallibleIterator;
use proptest::prelude::*;
use tessel_addr::{GuestPhysAddr, GuestRange};
use tessel_guestdt::*;

/// Properties of every node, keyed by path, as fdt-rs sees them.
type Tree = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

fn parse_with_fdt_rs(dtb: &[u8]) -> Tree {
    // fdt-rs needs a 4-byte aligned buffer of exactly totalsize bytes.
    let mut store = vec![0u8; dtb.len() + 4];
    let off = store.as_ptr().align_offset(4);
    store[off..off + dtb.len()].copy_from_slice(dtb);
    let buf = &store[off..off + dtb.len()];
    // SAFETY: `buf` is 4-byte aligned and exactly the blob's totalsize long,
    // which is what DevTree::new requires.
    let dt = unsafe { DevTree::new(buf) }.expect("fdt-rs rejects the header");
    assert_eq!(dt.version(), 17);
    assert_eq!(dt.last_comp_version(), 16);
    assert_eq!(dt.totalsize(), dtb.len());
    let strings = dt.off_dt_strings();
    let mut tree = Tree::new();
    let mut path: Vec<String> = Vec::new();
    let mut iter = dt.parse_iter();
    let join = |p: &[String]| {
        if p.len() <= 1 {
            "/".to_string()
        } else {
            p[1..].iter().map(|s| format!("/{s}")).collect()
        }
    };
    while let Some(tok) = iter.next().expect("fdt-rs rejects the structure") {
        match tok {
            ParsedTok::BeginNode(n) => {
                path.push(String::from_utf8(n.name.to_vec()).unwrap());
                let inserted = tree.insert(join(&path), BTreeMap::new()).is_none();
                assert!(inserted, "duplicate node {}", join(&path));
            }
            ParsedTok::EndNode => {
                path.pop().expect("unbalanced");
            }
            ParsedTok::Prop(p) => {
                let name_start = strings + p.name_offset;
                let end = dtb[name_start..].iter().position(|b| *b == 0).unwrap();
                let name = String::from_utf8(dtb[name_start..name_start + end].to_vec()).unwrap();
                let node = tree.get_mut(&join(&path)).unwrap();
                assert!(node.insert(name, p.prop_buf.to_vec()).is_none());
            }
            ParsedTok::Nop => {}
        }
    }
    assert!(path.is_empty());
    tree
}

fn cells(v: &[u8]) -> Vec<u32> {
    assert_eq!(v.len() % 4, 0);
    v.chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn strs(v: &[u8]) -> Vec<String> {
    assert_eq!(v.last(), Some(&0), "string property not NUL-terminated");
    v[..v.len() - 1]
        .split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

fn prop<'t>(t: &'t Tree, node: &str, name: &str) -> &'t [u8] {
    t.get(node)
        .unwrap_or_else(|| panic!("no node {node}; nodes: {:?}", t.keys().collect::<Vec<_>>()))
        .get(name)
        .unwrap_or_else(|| panic!("no property {name} in {node}"))
}

/// Runs dtc on the blob; returns None (with a message) if dtc is missing.
fn dtc_decompile(dtb: &[u8]) -> Option<String> {
    let dir = std::env::temp_dir().join(format!("tessel-guestdt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.dtb", dtb.len() ^ (dtb.as_ptr() as usize)));
    std::fs::write(&path, dtb).unwrap();
    let out = match Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(&path)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED dtc check: dtc not runnable ({e}); install device-tree-compiler");
            return None;
        }
    };
    std::fs::remove_file(&path).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dtc failed: {stderr}");
    assert!(
        !stderr.contains("Warning") && !stderr.contains("ERROR"),
        "dtc complained: {stderr}"
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

const RAM0: u64 = 0x4000_0000;

fn xen_layout_v2() -> GuestDtSpec<'static> {
    GuestDtSpec {
        cpus: vec![0, 1],
        cpu_compatible: "arm,cortex-a57".into(),
        memory: vec![GuestRange::new(GuestPhysAddr(RAM0), 0x2000_0000)],
        gic: GicSpec::V2 {
            gicd: GuestPhysAddr(0x0300_1000),
            gicc: GuestPhysAddr(0x0300_2000),
        },
        timer: TimerSpec::default(),
        vpl011: Some(UartSpec {
            base: GuestPhysAddr(0x2200_0000),
            size: 0x1000,
            spi: 32,
            kind: UartKind::SbsaUart,
            current_speed: 115_200,
        }),
        chosen: ChosenSpec {
            bootargs: Some("console=ttyAMA0 earlycon".into()),
            stdout_path: None,
            initrd: Some(GuestRange::new(GuestPhysAddr(0x4820_0000), 0x12_3456)),
        },
        partial_dtb: None,
    }
}

/// QEMU virt, GICv3, direct-mapped: native GICD/GICR/UART addresses.
fn qemu_direct_v3() -> GuestDtSpec<'static> {
    GuestDtSpec {
        cpus: vec![0, 1, 2, 3],
        cpu_compatible: "arm,cortex-a57".into(),
        memory: vec![
            GuestRange::new(GuestPhysAddr(0x5000_0000), 0x1000_0000),
            GuestRange::new(GuestPhysAddr(0x7000_0000), 0x0800_0000),
        ],
        gic: GicSpec::V3 {
            gicd: GuestPhysAddr(0x0800_0000),
            redistributors: vec![GuestRange::new(GuestPhysAddr(0x080a_0000), 0x00f6_0000)],
        },
        timer: TimerSpec {
            clock_frequency: Some(62_500_000),
            ..TimerSpec::default()
        },
        vpl011: Some(UartSpec {
            base: GuestPhysAddr(0x0900_0000),
            size: 0x1000,
            spi: 33,
            kind: UartKind::Pl011,
            current_speed: 115_200,
        }),
        chosen: ChosenSpec::default(),
        partial_dtb: None,
    }
}

#[test]
fn gicv2_xen_layout() {
    let dtb = xen_layout_v2().generate().unwrap();
    let t = parse_with_fdt_rs(&dtb);
    assert_eq!(cells(prop(&t, "/", "#address-cells")), [2]);
    assert_eq!(cells(prop(&t, "/", "#size-cells")), [2]);
    assert_eq!(strs(prop(&t, "/", "compatible")), ["linux,dummy-virt"]);
    assert_eq!(
        cells(prop(&t, "/", "interrupt-parent")),
        [GUEST_PHANDLE_GIC]
    );

    // cpus
    assert_eq!(cells(prop(&t, "/cpus", "#address-cells")), [1]);
    assert_eq!(cells(prop(&t, "/cpus", "#size-cells")), [0]);
    for (i, name) in ["/cpus/cpu@0", "/cpus/cpu@1"].iter().enumerate() {
        assert_eq!(cells(prop(&t, name, "reg")), [i as u32]);
        assert_eq!(strs(prop(&t, name, "device_type")), ["cpu"]);
        assert_eq!(strs(prop(&t, name, "compatible")), ["arm,cortex-a57"]);
        assert_eq!(strs(prop(&t, name, "enable-method")), ["psci"]);
    }
    assert!(!t.contains_key("/cpus/cpu@2"));

    // memory
    assert_eq!(
        cells(prop(&t, "/memory@40000000", "reg")),
        [0, 0x4000_0000, 0, 0x2000_0000]
    );
    assert_eq!(
        strs(prop(&t, "/memory@40000000", "device_type")),
        ["memory"]
    );

    // GIC
    let gic = "/interrupt-controller@3001000";
    assert_eq!(strs(prop(&t, gic, "compatible")), ["arm,gic-400"]);
    assert_eq!(
        cells(prop(&t, gic, "reg")),
        [0, 0x0300_1000, 0, 0x1000, 0, 0x0300_2000, 0, 0x2000]
    );
    assert_eq!(cells(prop(&t, gic, "#interrupt-cells")), [3]);
    assert!(prop(&t, gic, "interrupt-controller").is_empty());
    assert_eq!(cells(prop(&t, gic, "phandle")), [65000]);

    // timer: PPIs 29, 30, 27 level-low, CPU mask for 2 vCPUs
    assert_eq!(
        cells(prop(&t, "/timer", "interrupts")),
        [1, 13, 0x308, 1, 14, 0x308, 1, 11, 0x308]
    );
    assert_eq!(strs(prop(&t, "/timer", "compatible")), ["arm,armv8-timer"]);
    assert!(!t["/timer"].contains_key("clock-frequency"));

    // psci
    assert_eq!(
        strs(prop(&t, "/psci", "compatible")),
        ["arm,psci-1.0", "arm,psci-0.2"]
    );
    assert_eq!(strs(prop(&t, "/psci", "method")), ["hvc"]);

    // vPL011 (SBSA)
    let uart = "/sbsa-uart@22000000";
    assert_eq!(strs(prop(&t, uart, "compatible")), ["arm,sbsa-uart"]);
    assert_eq!(cells(prop(&t, uart, "reg")), [0, 0x2200_0000, 0, 0x1000]);
    assert_eq!(cells(prop(&t, uart, "interrupts")), [0, 0, 4]);
    assert_eq!(cells(prop(&t, uart, "current-speed")), [115_200]);
    assert!(!t.contains_key("/apb-pclk"));

    // chosen and aliases
    assert_eq!(
        strs(prop(&t, "/chosen", "bootargs")),
        ["console=ttyAMA0 earlycon"]
    );
    assert_eq!(strs(prop(&t, "/chosen", "stdout-path")), [uart]);
    assert_eq!(strs(prop(&t, "/aliases", "serial0")), [uart]);
    assert_eq!(
        prop(&t, "/chosen", "linux,initrd-start"),
        0x4820_0000u64.to_be_bytes()
    );
    assert_eq!(
        prop(&t, "/chosen", "linux,initrd-end"),
        (0x4820_0000u64 + 0x12_3456).to_be_bytes()
    );
}

#[test]
fn gicv3_direct_mapped_qemu_virt_with_pl011() {
    let dtb = qemu_direct_v3().generate().unwrap();
    let t = parse_with_fdt_rs(&dtb);
    let gic = "/interrupt-controller@8000000";
    assert_eq!(strs(prop(&t, gic, "compatible")), ["arm,gic-v3"]);
    assert_eq!(cells(prop(&t, gic, "#redistributor-regions")), [1]);
    assert_eq!(
        cells(prop(&t, gic, "reg")),
        [0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0x00f6_0000]
    );
    // GICv3: no PPI CPU mask.
    assert_eq!(
        cells(prop(&t, "/timer", "interrupts")),
        [1, 13, 8, 1, 14, 8, 1, 11, 8]
    );
    assert_eq!(cells(prop(&t, "/timer", "clock-frequency")), [62_500_000]);
    assert_eq!(
        cells(prop(&t, "/memory@50000000", "reg")),
        [
            0,
            0x5000_0000,
            0,
            0x1000_0000,
            0,
            0x7000_0000,
            0,
            0x0800_0000
        ]
    );
    for i in 0..4 {
        assert!(t.contains_key(&format!("/cpus/cpu@{i}")));
    }
    // Native UART address and IRQ (QEMU virt: 0x09000000, SPI 1).
    let uart = "/pl011@9000000";
    assert_eq!(
        strs(prop(&t, uart, "compatible")),
        ["arm,pl011", "arm,primecell"]
    );
    assert_eq!(cells(prop(&t, uart, "interrupts")), [0, 1, 4]);
    assert_eq!(
        cells(prop(&t, uart, "clocks")),
        [GUEST_PHANDLE_APB_PCLK, GUEST_PHANDLE_APB_PCLK]
    );
    assert_eq!(strs(prop(&t, uart, "clock-names")), ["uartclk", "apb_pclk"]);
    assert_eq!(
        cells(prop(&t, "/apb-pclk", "phandle")),
        [GUEST_PHANDLE_APB_PCLK]
    );
    assert_eq!(cells(prop(&t, "/apb-pclk", "#clock-cells")), [0]);
    assert_eq!(strs(prop(&t, "/apb-pclk", "compatible")), ["fixed-clock"]);
    assert_eq!(strs(prop(&t, "/chosen", "stdout-path")), [uart]);
    assert!(!t["/chosen"].contains_key("bootargs"));
    assert!(!t["/chosen"].contains_key("linux,initrd-start"));
}

#[test]
fn gicv3_several_redistributor_regions() {
    let mut spec = qemu_direct_v3();
    spec.gic = GicSpec::V3 {
        gicd: GuestPhysAddr(0x0800_0000),
        redistributors: vec![
            GuestRange::new(GuestPhysAddr(0x080a_0000), 0x4_0000),
            GuestRange::new(GuestPhysAddr(0x4_0000_0000), 0x4_0000),
        ],
    };
    let t = parse_with_fdt_rs(&spec.generate().unwrap());
    let gic = "/interrupt-controller@8000000";
    assert_eq!(cells(prop(&t, gic, "#redistributor-regions")), [2]);
    assert_eq!(cells(prop(&t, gic, "reg")).len(), 12);
}

#[test]
fn wide_mpidrs_use_two_address_cells() {
    let mut spec = qemu_direct_v3();
    spec.cpus = vec![0x1_0000_0000, 0x100];
    let dtb = spec.generate().unwrap();
    let t = parse_with_fdt_rs(&dtb);
    assert_eq!(cells(prop(&t, "/cpus", "#address-cells")), [2]);
    assert_eq!(cells(prop(&t, "/cpus/cpu@100000000", "reg")), [1, 0]);
    assert_eq!(cells(prop(&t, "/cpus/cpu@100", "reg")), [0, 0x100]);
    dtc_decompile(&dtb);
}

#[test]
fn no_uart_means_no_stdout_and_no_aliases() {
    let mut spec = xen_layout_v2();
    spec.vpl011 = None;
    let t = parse_with_fdt_rs(&spec.generate().unwrap());
    assert!(!t["/chosen"].contains_key("stdout-path"));
    assert!(!t.contains_key("/aliases"));
    assert!(!t.keys().any(|k| k.contains("uart")));
}

#[test]
fn explicit_stdout_path_wins() {
    let mut spec = xen_layout_v2();
    spec.chosen.stdout_path = Some("/passthrough/serial@ff010000".into());
    let t = parse_with_fdt_rs(&spec.generate().unwrap());
    assert_eq!(
        strs(prop(&t, "/chosen", "stdout-path")),
        ["/passthrough/serial@ff010000"]
    );
}

const FIXTURE: &[u8] = include_bytes!("fixtures/passthrough-virtio.dtb");

#[test]
fn partial_dtb_passthrough_is_copied() {
    let mut spec = qemu_direct_v3();
    spec.partial_dtb = Some(FIXTURE);
    let dtb = spec.generate().unwrap();
    let t = parse_with_fdt_rs(&dtb);
    // The /gic placeholder's phandle (1, from dtc) becomes the vGIC's.
    let gic = "/interrupt-controller@8000000";
    assert_eq!(cells(prop(&t, gic, "phandle")), [1]);
    assert_eq!(cells(prop(&t, "/", "interrupt-parent")), [1]);
    assert!(!t.contains_key("/gic"), "placeholder must not be copied");
    assert!(
        !t.contains_key("/ignored"),
        "other top-level nodes are ignored"
    );

    let dev = "/passthrough/virtio_mmio@a003e00";
    assert_eq!(strs(prop(&t, "/passthrough", "compatible")), ["simple-bus"]);
    assert_eq!(cells(prop(&t, "/passthrough", "#size-cells")), [2]);
    assert_eq!(strs(prop(&t, dev, "compatible")), ["virtio,mmio"]);
    assert_eq!(cells(prop(&t, dev, "reg")), [0, 0x0a00_3e00, 0, 0x200]);
    assert_eq!(cells(prop(&t, dev, "interrupts")), [0, 0x2f, 1]);
    assert_eq!(cells(prop(&t, dev, "interrupt-parent")), [1]);
    assert!(prop(&t, dev, "dma-coherent").is_empty());
    for consumed in ["xen,reg", "xen,path", "xen,force-assign-without-iommu"] {
        assert!(
            !t[dev].contains_key(consumed),
            "{consumed} must not reach the guest"
        );
    }
    // /aliases merged: the partial DT's entry plus our serial0.
    assert_eq!(strs(prop(&t, "/aliases", "virtio0")), [dev]);
    assert_eq!(strs(prop(&t, "/aliases", "serial0")), ["/pl011@9000000"]);

    let dts = dtc_decompile(&dtb);
    if let Some(dts) = dts {
        assert!(dts.contains("virtio_mmio@a003e00"));
        assert!(!dts.contains("xen,"));
    }
}

/// Builds a small partial DTB with the writer.
fn partial(gic_phandle: Option<u32>, dev_phandle: Option<u32>, irq_parent: Option<u32>) -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.begin_node("gic").unwrap();
    if let Some(p) = gic_phandle {
        w.property_u32("phandle", p).unwrap();
    }
    w.end_node().unwrap();
    w.begin_node("passthrough").unwrap();
    w.property_string("compatible", "simple-bus").unwrap();
    w.property_empty("ranges").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.begin_node("dev@1000000").unwrap();
    w.property_cells("reg", &[0, 0x100_0000, 0x1000]).unwrap();
    if let Some(p) = dev_phandle {
        w.property_u32("phandle", p).unwrap();
    }
    if let Some(p) = irq_parent {
        w.property_u32("interrupt-parent", p).unwrap();
        w.property_cells("interrupts", &[0, 5, 4]).unwrap();
    }
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.finish().unwrap()
}

#[test]
fn gic_placeholder_without_phandle_uses_65000() {
    let blob = partial(None, None, None);
    let mut spec = xen_layout_v2();
    spec.partial_dtb = Some(&blob);
    let t = parse_with_fdt_rs(&spec.generate().unwrap());
    assert_eq!(
        cells(prop(&t, "/interrupt-controller@3001000", "phandle")),
        [65000]
    );
    assert!(t.contains_key("/passthrough/dev@1000000"));
    // The device may name the default GIC phandle directly.
    let blob = partial(None, None, Some(65000));
    spec.partial_dtb = Some(&blob);
    spec.generate().unwrap();
}

#[test]
fn partial_phandle_rules() {
    for (blob, expect) in [
        (
            partial(Some(65000), None, None),
            PartialDtError::ReservedPhandle {
                node: "/gic".into(),
                phandle: 65000,
            },
        ),
        (
            partial(Some(1), Some(70000), None),
            PartialDtError::ReservedPhandle {
                node: "/passthrough/dev@1000000".into(),
                phandle: 70000,
            },
        ),
        (
            partial(Some(3), Some(3), None),
            PartialDtError::DuplicatePhandle {
                node: "/passthrough/dev@1000000".into(),
                phandle: 3,
            },
        ),
        (
            partial(Some(3), None, Some(7)),
            PartialDtError::DanglingInterruptParent {
                node: "/passthrough/dev@1000000".into(),
                phandle: 7,
            },
        ),
    ] {
        let mut spec = xen_layout_v2();
        spec.partial_dtb = Some(&blob);
        assert_eq!(spec.generate(), Err(GuestDtError::Partial(expect.clone())));
        // Errors name the node and say what is wrong.
        let msg = GuestDtError::Partial(expect).to_string();
        assert!(msg.contains("/"), "{msg}");
    }
    // A phandle just below the reserved range is fine.
    let blob = partial(Some(64999), Some(2), Some(64999));
    let mut spec = xen_layout_v2();
    spec.partial_dtb = Some(&blob);
    let t = parse_with_fdt_rs(&spec.generate().unwrap());
    assert_eq!(
        cells(prop(&t, "/interrupt-controller@3001000", "phandle")),
        [64999]
    );
    assert_eq!(cells(prop(&t, "/passthrough/dev@1000000", "phandle")), [2]);
}

#[test]
fn bad_partial_headers_are_reported() {
    let mut spec = xen_layout_v2();
    let short = &FIXTURE[..FIXTURE.len() - 8];
    spec.partial_dtb = Some(short);
    assert!(matches!(
        spec.generate(),
        Err(GuestDtError::Partial(
            PartialDtError::TotalSizeTooLarge { .. }
        ))
    ));
    let mut bad = FIXTURE.to_vec();
    bad[0] = 0xde;
    spec.partial_dtb = Some(&bad);
    assert!(matches!(
        spec.generate(),
        Err(GuestDtError::Partial(PartialDtError::Dtb(
            tessel_config::FdtError::BadMagic(_)
        )))
    ));
    // A module larger than totalsize (padding) is accepted.
    let mut padded = FIXTURE.to_vec();
    padded.extend_from_slice(&[0xff; 64]);
    spec.partial_dtb = Some(&padded);
    spec.generate().unwrap();
}

#[test]
fn spec_errors_are_typed() {
    let base = xen_layout_v2();
    let check = |f: &dyn Fn(&mut GuestDtSpec<'static>), want: GuestDtError| {
        let mut s = base.clone();
        f(&mut s);
        assert_eq!(s.generate(), Err(want));
    };
    check(&|s| s.cpus.clear(), GuestDtError::NoCpus);
    check(&|s| s.cpus = vec![0, 1, 0], GuestDtError::DuplicateCpu(0));
    check(&|s| s.cpus = vec![1 << 24], GuestDtError::BadMpidr(1 << 24));
    check(
        &|s| s.cpus = (0..9).collect(),
        GuestDtError::TooManyCpusForGicV2(9),
    );
    check(&|s| s.memory.clear(), GuestDtError::NoMemory);
    let a = GuestRange::new(GuestPhysAddr(RAM0), 0x1000_0000);
    let b = GuestRange::new(GuestPhysAddr(RAM0 + 0x0fff_f000), 0x1000);
    check(
        &|s| s.memory = vec![a, b],
        GuestDtError::OverlappingBanks(a, b),
    );
    let empty = GuestRange::new(GuestPhysAddr(RAM0), 0);
    check(&|s| s.memory = vec![empty], GuestDtError::BadBank(empty));
    check(
        &|s| s.timer.virt = 32,
        GuestDtError::BadTimerPpi {
            which: "virtual",
            intid: 32,
        },
    );
    check(
        &|s| s.vpl011.as_mut().unwrap().spi = 31,
        GuestDtError::BadUartSpi(31),
    );
    check(
        &|s| s.vpl011.as_mut().unwrap().size = 0x200,
        GuestDtError::BadUartWindow {
            base: GuestPhysAddr(0x2200_0000),
            size: 0x200,
        },
    );
    let r = GuestRange::new(GuestPhysAddr(u64::MAX - 0xfff), 0x2000);
    check(&|s| s.chosen.initrd = Some(r), GuestDtError::BadInitrd(r));
    check(
        &|s| s.chosen.bootargs = Some("a\0b".into()),
        GuestDtError::NulInString("bootargs"),
    );
    check(
        &|s| {
            s.gic = GicSpec::V3 {
                gicd: GuestPhysAddr(0x0800_0000),
                redistributors: vec![GuestRange::new(GuestPhysAddr(0x080a_0000), 0x2_0000)],
            }
        },
        GuestDtError::RedistributorsTooSmall { cpus: 2, frames: 1 },
    );
    let odd = GuestRange::new(GuestPhysAddr(0x080a_0000), 0x3_0000);
    check(
        &|s| {
            s.gic = GicSpec::V3 {
                gicd: GuestPhysAddr(0x0800_0000),
                redistributors: vec![odd],
            }
        },
        GuestDtError::BadRedistributorRegion(odd),
    );
    check(
        &|s| {
            s.gic = GicSpec::V3 {
                gicd: GuestPhysAddr(0x0800_0000),
                redistributors: vec![],
            }
        },
        GuestDtError::NoRedistributors,
    );
    let msg = GuestDtError::RedistributorsTooSmall { cpus: 2, frames: 1 }.to_string();
    assert!(msg.contains("1 frames") && msg.contains("2 vCPUs"), "{msg}");
}

#[test]
fn layout_conflicts_are_rejected() {
    let mut spec = xen_layout_v2();
    spec.vpl011.as_mut().unwrap().base = GuestPhysAddr(RAM0 + 0x1000);
    assert_eq!(
        spec.generate(),
        Err(GuestDtError::DeviceOverlapsRam {
            device: "vPL011",
            window: GuestRange::new(GuestPhysAddr(RAM0 + 0x1000), 0x1000),
            bank: spec.memory[0],
        })
    );
    let mut spec = qemu_direct_v3();
    spec.memory
        .push(GuestRange::new(GuestPhysAddr(0x0800_0000), 0x1_0000));
    assert!(matches!(
        spec.generate(),
        Err(GuestDtError::DeviceOverlapsRam {
            device: "GICv3 distributor",
            ..
        })
    ));
    let mut spec = xen_layout_v2();
    let outside = GuestRange::new(GuestPhysAddr(RAM0 + 0x1fff_f000), 0x2000);
    spec.chosen.initrd = Some(outside);
    assert_eq!(
        spec.generate(),
        Err(GuestDtError::InitrdOutsideRam(outside))
    );
    let msg = GuestDtError::InitrdOutsideRam(outside).to_string();
    assert!(msg.contains("0x5ffff000+0x2000"), "{msg}");
}

/// Found by the guestdt_generate fuzz target: a GICv2 CPU interface at the
/// top of the address space was written as a `reg` that wraps.
#[test]
fn gic_frames_that_wrap_are_rejected() {
    let mut spec = xen_layout_v2();
    spec.gic = GicSpec::V2 {
        gicd: GuestPhysAddr(0x0300_1000),
        gicc: GuestPhysAddr(u64::MAX),
    };
    let window = GuestRange::new(GuestPhysAddr(u64::MAX), 0x2000);
    assert_eq!(
        spec.generate(),
        Err(GuestDtError::DeviceWindowWraps {
            device: "GICv2 CPU interface",
            window,
        })
    );
    let msg = spec.generate().unwrap_err().to_string();
    assert!(msg.contains("0xffffffffffffffff+0x2000"), "{msg}");
    let mut spec = qemu_direct_v3();
    if let GicSpec::V3 { gicd, .. } = &mut spec.gic {
        *gicd = GuestPhysAddr(u64::MAX - 0xfff);
    }
    assert!(matches!(
        spec.generate(),
        Err(GuestDtError::DeviceWindowWraps {
            device: "GICv3 distributor",
            ..
        })
    ));
}

#[test]
fn partial_serial0_alias_is_kept() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.begin_node("aliases").unwrap();
    w.property_string("serial0", "/passthrough/serial@ff010000")
        .unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let mut spec = xen_layout_v2();
    spec.partial_dtb = Some(&blob);
    let t = parse_with_fdt_rs(&spec.generate().unwrap());
    assert_eq!(
        strs(prop(&t, "/aliases", "serial0")),
        ["/passthrough/serial@ff010000"]
    );
    assert_eq!(t["/aliases"].len(), 1);
}

#[test]
fn header_boot_cpu_and_size_limit() {
    let mut spec = qemu_direct_v3();
    spec.cpus = vec![0x100, 0x0];
    let dtb = spec.generate().unwrap();
    assert_eq!(u32::from_be_bytes(dtb[28..32].try_into().unwrap()), 0x100);
    assert_eq!(
        spec.generate_with_limit(dtb.len()).unwrap().len(),
        dtb.len()
    );
    assert!(matches!(
        spec.generate_with_limit(dtb.len() - 1),
        Err(GuestDtError::Fdt(FdtError::TooLarge { .. }))
    ));
}

#[test]
fn oversized_partial_dtb_hits_the_2mib_cap() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.begin_node("passthrough").unwrap();
    w.property("blob", &vec![0u8; MAX_DTB_SIZE]).unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    let big = w.finish().unwrap();
    let mut spec = xen_layout_v2();
    spec.partial_dtb = Some(&big);
    match spec.generate() {
        Err(GuestDtError::Fdt(FdtError::TooLarge { size, max })) => {
            assert_eq!(max, MAX_DTB_SIZE);
            assert!(size > MAX_DTB_SIZE);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn dtc_accepts_generated_trees() {
    for spec in [xen_layout_v2(), qemu_direct_v3()] {
        let dtb = spec.generate().unwrap();
        let Some(dts) = dtc_decompile(&dtb) else {
            return;
        };
        assert!(dts.contains("interrupt-controller@"));
        assert!(dts.contains("arm,armv8-timer"));
        // Round trip: dtc recompiles its own output without complaint.
        let dir = std::env::temp_dir();
        let src = dir.join(format!("tessel-guestdt-rt-{}.dts", std::process::id()));
        std::fs::write(&src, &dts).unwrap();
        let out = Command::new("dtc")
            .args(["-I", "dts", "-O", "dtb", "-o", "/dev/null"])
            .arg(&src)
            .output()
            .unwrap();
        std::fs::remove_file(&src).ok();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn reader_agrees_with_fdt_rs_on_fixture() {
    let ours = parse_partial(FIXTURE).unwrap();
    let theirs = parse_with_fdt_rs(FIXTURE);
    let mut count = 0;
    for id in ours.nodes() {
        count += 1;
        let path = ours.path(id);
        let n = ours.node(id);
        let props = &theirs[&path];
        assert_eq!(props.len(), n.props.len(), "{path}");
        for p in &n.props {
            assert_eq!(props[&p.name], p.value, "{path} {}", p.name);
        }
    }
    assert_eq!(count, theirs.len());
}

fn arb_spec() -> impl Strategy<Value = GuestDtSpec<'static>> {
    (
        prop::collection::btree_set(0u64..0x10000, 1..=8),
        prop::collection::vec((1u64..0x100, 1u64..0x40), 1..5),
        any::<bool>(),
        prop::option::of(32u32..=1019),
        ".{0,40}",
    )
        .prop_map(|(cpus, banks, v3, spi, bootargs)| {
            let cpus: Vec<u64> = cpus.into_iter().collect();
            // Disjoint banks: each starts at a distinct 1 GiB slot.
            let memory = banks
                .iter()
                .enumerate()
                .map(|(i, (_, pages))| {
                    GuestRange::new(GuestPhysAddr(0x4000_0000 * (i as u64 + 1)), pages << 21)
                })
                .collect();
            let gic = if v3 {
                GicSpec::V3 {
                    gicd: GuestPhysAddr(0x0800_0000),
                    redistributors: vec![GuestRange::new(
                        GuestPhysAddr(0x080a_0000),
                        cpus.len() as u64 * 0x2_0000,
                    )],
                }
            } else {
                GicSpec::V2 {
                    gicd: GuestPhysAddr(0x0300_1000),
                    gicc: GuestPhysAddr(0x0300_2000),
                }
            };
            GuestDtSpec {
                cpus,
                cpu_compatible: "arm,armv8".into(),
                memory,
                gic,
                timer: TimerSpec::default(),
                vpl011: spi.map(|spi| UartSpec {
                    base: GuestPhysAddr(0x2200_0000),
                    size: 0x1000,
                    spi,
                    kind: UartKind::SbsaUart,
                    current_speed: 115_200,
                }),
                chosen: ChosenSpec {
                    bootargs: Some(bootargs.replace('\0', "")),
                    ..ChosenSpec::default()
                },
                partial_dtb: None,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_trees_round_trip(spec in arb_spec()) {
        let dtb = spec.generate().unwrap();
        prop_assert!(dtb.len() <= MAX_DTB_SIZE);
        let t = parse_with_fdt_rs(&dtb);
        let cpu_nodes: Vec<_> = t.keys().filter(|k| k.starts_with("/cpus/cpu@")).collect();
        prop_assert_eq!(cpu_nodes.len(), spec.cpus.len());
        for m in &spec.cpus {
            let node = format!("/cpus/cpu@{m:x}");
            prop_assert_eq!(cells(prop(&t, &node, "reg")), vec![*m as u32]);
        }
        let mem_node = format!("/memory@{:x}", spec.memory[0].start.0);
        let reg = cells(prop(&t, &mem_node, "reg"));
        prop_assert_eq!(reg.len(), spec.memory.len() * 4);
        for (b, r) in spec.memory.iter().zip(reg.chunks(4)) {
            prop_assert_eq!((u64::from(r[0]) << 32) | u64::from(r[1]), b.start.0);
            prop_assert_eq!((u64::from(r[2]) << 32) | u64::from(r[3]), b.size);
        }
        if let Some(u) = &spec.vpl011 {
            prop_assert_eq!(
                cells(prop(&t, "/sbsa-uart@22000000", "interrupts")),
                vec![0, u.spi - 32, 4]
            );
        }
        let bootargs = spec.chosen.bootargs.as_deref().unwrap_or("");
        prop_assert_eq!(t["/chosen"].contains_key("bootargs"), !bootargs.is_empty());
    }

    /// Arbitrary bytes as a partial DTB never panic the generator.
    #[test]
    fn arbitrary_partial_dtb_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..512),
                                          keep_header in any::<bool>()) {
        if keep_header && bytes.len() >= 40 {
            // Make the header plausible so the structure parser is exercised.
            let hdr_len = 40.min(FIXTURE.len());
            bytes[..hdr_len].copy_from_slice(&FIXTURE[..hdr_len]);
            let total = (bytes.len() as u32).to_be_bytes();
            bytes[4..8].copy_from_slice(&total);
        }
        let mut spec = xen_layout_v2();
        spec.partial_dtb = Some(&bytes);
        let _ = spec.generate();
    }

    /// Corrupting one byte of the fixture never panics.
    #[test]
    fn corrupted_fixture_never_panics(idx in 0usize..FIXTURE.len(), val in any::<u8>()) {
        let mut bytes = FIXTURE.to_vec();
        bytes[idx] = val;
        let mut spec = xen_layout_v2();
        spec.partial_dtb = Some(&bytes);
        let _ = spec.generate();
    }
}

#[test]
fn real_world_long_property_names_are_copied() {
    let mut w = FdtWriter::new();
    w.begin_node("").unwrap();
    w.begin_node("passthrough").unwrap();
    w.begin_node("regulator@0").unwrap();
    w.property_empty("regulator-over-current-protection")
        .unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    w.end_node().unwrap();
    let blob = w.finish().unwrap();
    let mut spec = xen_layout_v2();
    spec.partial_dtb = Some(&blob);
    let t = parse_with_fdt_rs(&spec.generate().unwrap());
    assert!(t["/passthrough/regulator@0"].contains_key("regulator-over-current-protection"));
}
