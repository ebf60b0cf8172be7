//! Device assignment against real DTBs: QEMU's virt board as the host
//! (with devices marked `xen,passthrough`) and partial DTs compiled with dtc.
//! Every refusal is checked with its full message.

use tessel_addr::{GuestPhysAddr, HostPhysAddr, HostRange};
use tessel_config::DeviceTree;
use tessel_passthrough::{
    AssignError, Assignment, DomainRequest, ErrorKind, Forbidden, HostView, MmioMapping, Registry,
    WarningKind, parse,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.dtb", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn host_tree() -> DeviceTree {
    DeviceTree::parse(&fixture("host")).unwrap()
}

fn host(dt: &DeviceTree, has_iommu: bool) -> HostView<'_> {
    HostView {
        dt,
        gic_path: "/intc@8000000",
        has_iommu,
    }
}

fn direct(name: &str) -> DomainRequest<'_> {
    DomainRequest {
        name,
        direct_mapped: true,
        nr_spis: 160,
        vpl011_spi: Some(33),
    }
}

fn ordinary(name: &str) -> DomainRequest<'_> {
    DomainRequest {
        direct_mapped: false,
        vpl011_spi: Some(32),
        ..direct(name)
    }
}

/// What the hypervisor keeps on QEMU virt: RAM, the GIC frames, the UART.
fn kept() -> Vec<Forbidden> {
    let f = |name: &str, start, size| Forbidden {
        name: name.to_string(),
        range: HostRange::new(HostPhysAddr(start), size),
    };
    vec![
        f("RAM", 0x4000_0000, 0x8000_0000),
        f("GIC distributor", 0x0800_0000, 0x1_0000),
        f("GIC CPU interface", 0x0801_0000, 0x1_0000),
        f("console UART", 0x0900_0000, 0x1000),
    ]
}

fn assign_one(partial: &str, dom: DomainRequest<'_>) -> Result<Assignment, Box<AssignError>> {
    let dt = host_tree();
    Registry::new(kept()).assign(&dom, &fixture(partial), &host(&dt, false))
}

fn refusal(partial: &str, dom: DomainRequest<'_>) -> String {
    assign_one(partial, dom).unwrap_err().to_string()
}

fn map(host: u64, size: u64, guest: u64) -> MmioMapping {
    MmioMapping {
        host: HostRange::new(HostPhysAddr(host), size),
        guest: GuestPhysAddr(guest),
    }
}

#[test]
fn forced_device_into_direct_mapped_domain() {
    let a = assign_one("partial-good-direct", direct("domU1")).unwrap();
    assert_eq!(a.mmio, [map(0xa00_3000, 0x1000, 0xa00_3000)]);
    // QEMU wires virtio_mmio@a003e00 to SPI 47, INTID 79.
    assert_eq!(a.irqs, [79]);
    // The plain node next to it is only copied.
    assert_eq!(a.devices, ["/passthrough/virtio@a003e00"]);
    assert_eq!(a.warnings.len(), 1);
    assert_eq!(a.warnings[0].kind, WarningKind::Unprotected);
    assert_eq!(
        a.warnings[0].to_string(),
        "domU1: /passthrough/virtio@a003e00: assigned WITHOUT IOMMU protection: its DMA can reach all memory; only a trusted guest on a platform with other protection may own it"
    );
}

#[test]
fn nested_bus_uses_parent_cells_and_warns_on_moved_guest_address() {
    let a = assign_one("partial-good-nested", direct("domU2")).unwrap();
    assert_eq!(a.mmio, [map(0xa40_0000, 0x1000, 0x2300_0000)]);
    // SPI 80 via interrupts-extended; the PL061 interrupt is not routed.
    assert_eq!(a.irqs, [112]);
    let kinds: Vec<_> = a.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "domU2: /passthrough/bus@0/button@a400000: interrupt 1 of host node /button@a400000 is not wired to the primary GIC; it is not routed to the domain",
            "domU2: /passthrough/bus@0/button@a400000: assigned WITHOUT IOMMU protection: its DMA can reach all memory; only a trusted guest on a platform with other protection may own it",
            "domU2: /passthrough/bus@0/button@a400000: xen,reg maps host 0xa400000+0x1000 at guest 0x23000000+0x1000 in a direct-mapped domain; DMA programmed with guest addresses will miss",
        ]
    );
}

#[test]
fn mmio_only_region_with_force_and_no_path() {
    let a = assign_one("partial-mmio-only", direct("domU1")).unwrap();
    assert_eq!(a.mmio, [map(0xc00_0000, 0x2000, 0xc00_0000)]);
    assert!(a.irqs.is_empty());
    assert_eq!(a.warnings.len(), 1);
}

#[test]
fn passthrough_node_itself_uses_root_default_cells() {
    let a = assign_one("partial-passthrough-own-reg", direct("domU1")).unwrap();
    assert_eq!(a.mmio, [map(0xc00_0000, 0x1000, 0xc00_0000)]);
    assert_eq!(a.devices, ["/passthrough"]);
}

#[test]
fn no_passthrough_node_assigns_nothing() {
    // The host DTB has no /passthrough node: a valid, empty request.
    let dt = host_tree();
    let a = parse(&direct("domU1"), &fixture("host"), &host(&dt, false)).unwrap();
    assert_eq!(a, Assignment::default());
}

#[test]
fn refused_without_force() {
    assert_eq!(
        refusal("partial-no-force", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: no IOMMU protects this device; add xen,force-assign-without-iommu (unsafe, trusted guests only)"
    );
}

#[test]
fn refused_into_domain_that_is_not_direct_mapped() {
    assert_eq!(
        refusal("partial-good-direct", ordinary("domU2")),
        "domU2: /passthrough/virtio@a003e00: xen,force-assign-without-iommu: device would be assigned without an IOMMU to a domain that is not direct-mapped; its DMA would hit the wrong memory"
    );
    // Even an MMIO-only region: without a host node nothing says it does no DMA.
    let e = assign_one("partial-mmio-only", ordinary("domU2")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotDirectMapped);
}

#[test]
fn decision_table_refusals() {
    assert_eq!(
        refusal("partial-missing-path", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,path: missing; a device with xen,reg needs xen,path (or xen,force-assign-without-iommu for an MMIO-only region)"
    );
    assert_eq!(
        refusal("partial-missing-reg", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,reg: missing; xen,path needs xen,reg"
    );
}

#[test]
fn host_node_must_exist_and_be_marked() {
    assert_eq!(
        refusal("partial-host-missing", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,path: the host device tree has no node /virtio_mmio@a00ff00"
    );
    assert_eq!(
        refusal("partial-not-marked", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,path: host node /virtio_mmio@a003800 is not marked xen,passthrough"
    );
}

#[test]
fn ppis_are_refused() {
    assert_eq!(
        refusal("partial-ppi", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,path: host node /ppi-device@a300000 uses GIC interrupt 21, which is not an SPI; only SPIs (INTID 32 and up) can be assigned"
    );
}

#[test]
fn xen_reg_shape_refusals() {
    assert_eq!(
        refusal("partial-unaligned", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,reg: entry 0 (host 0xa003e00, size 0x200, guest 0xa003e00) is not 4 KiB aligned"
    );
    assert_eq!(
        refusal("partial-bad-cells", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,reg: #address-cells of /passthrough is 3; it must be 1 or 2"
    );
    assert_eq!(
        refusal("partial-truncated", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,reg: length 16 bytes is not a multiple of the 20-byte entry size"
    );
    assert_eq!(
        refusal("partial-zero-size", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,reg: entry 0 has size 0"
    );
    assert_eq!(
        refusal("partial-guest-overlap", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,reg: guest range 0xa002000+0x2000 overlaps guest range 0xa003000+0x1000 of /passthrough/virtio@a003e00"
    );
}

#[test]
fn reserved_phandles_are_refused() {
    assert_eq!(
        refusal("partial-phandle", direct("domU1")),
        "domU1: /gic: phandle: 65000 (0xfde8) is not below 65000; phandles 65000 and up are reserved for the guest GIC and IOMMU"
    );
}

#[test]
fn iommu_protected_device_is_not_supported_yet() {
    let dt = host_tree();
    let msg = "domU1: /passthrough/virtio@a003e00: xen,path: host node /virtio_mmio@a003a00 is behind an IOMMU; IOMMU-protected assignment is not supported yet (xen,force-assign-without-iommu does not bypass the IOMMU)";
    for dom in [direct("domU1"), ordinary("domU1")] {
        let e = Registry::new(kept())
            .assign(&dom, &fixture("partial-iommu"), &host(&dt, true))
            .unwrap_err();
        assert_eq!(e.to_string(), msg);
    }
    // With the IOMMU disabled the same device falls under the no-IOMMU rule.
    let a = Registry::new(kept())
        .assign(
            &direct("domU1"),
            &fixture("partial-iommu"),
            &host(&dt, false),
        )
        .unwrap();
    assert_eq!(a.irqs, [77]);
    // A host IOMMU does not protect a device without `iommus`.
    let a = Registry::new(kept())
        .assign(
            &direct("domU1"),
            &fixture("partial-good-direct"),
            &host(&dt, true),
        )
        .unwrap();
    assert_eq!(a.warnings[0].kind, WarningKind::Unprotected);
}

#[test]
fn interrupt_limits_of_the_domain() {
    let small = DomainRequest {
        nr_spis: 32,
        ..direct("domU1")
    };
    assert_eq!(
        refusal("partial-good-direct", small),
        "domU1: /passthrough/virtio@a003e00: xen,path: SPI 79 is beyond the domain's 32 SPIs (highest INTID 63)"
    );
    let clash = DomainRequest {
        vpl011_spi: Some(79),
        ..direct("domU1")
    };
    assert_eq!(
        refusal("partial-good-direct", clash),
        "domU1: /passthrough/virtio@a003e00: xen,path: SPI 79 is also the domain's vPL011 interrupt"
    );
}

#[test]
fn hypervisor_frames_are_refused() {
    assert_eq!(
        refusal("partial-gic-frame", direct("domU1")),
        "domU1: /passthrough/gicd@8000000: xen,reg: host range 0x8000000+0x1000 overlaps GIC distributor at 0x8000000+0x10000, which the hypervisor keeps"
    );
}

#[test]
fn invalid_partial_dtb() {
    let e = assign_one("partial-good-direct", direct("domU1")).map(|_| ());
    assert!(e.is_ok());
    let dt = host_tree();
    let mut bytes = fixture("partial-good-direct");
    bytes[0] = 0;
    let e = Registry::new(kept())
        .assign(&direct("domU1"), &bytes, &host(&dt, false))
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidDtb(_)));
    assert!(
        e.to_string()
            .starts_with("domU1: /: partial device tree is invalid: bad device-tree magic"),
        "{e}"
    );
}

#[test]
fn a_resource_belongs_to_one_domain() {
    let dt = host_tree();
    let hv = host(&dt, false);
    let mut reg = Registry::new(kept());
    reg.assign(&direct("domU1"), &fixture("partial-good-direct"), &hv)
        .unwrap();
    assert_eq!(
        reg.mmio_owner(HostPhysAddr(0xa00_3e00))
            .map(|o| o.domain.as_str()),
        Some("domU1")
    );
    assert_eq!(reg.irq_owner(79).map(|o| o.domain.as_str()), Some("domU1"));
    let e = reg
        .assign(&direct("domU2"), &fixture("partial-good-direct"), &hv)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domU2: /passthrough/virtio@a003e00: xen,reg: host range 0xa003000+0x1000 is already assigned to domU1 (/passthrough/virtio@a003e00) as 0xa003000+0x1000"
    );
    // domU3 asks for the same page and IRQ after domU1 is released: fine.
    assert_eq!(reg.release("domU1"), 2);
    assert!(reg.irq_owner(79).is_none());
    reg.assign(&direct("domU3"), &fixture("partial-good-direct"), &hv)
        .unwrap();
}

#[test]
fn shared_spi_is_refused_and_refused_domain_leaks_nothing() {
    let dt = host_tree();
    let hv = host(&dt, false);
    let mut reg = Registry::new(kept());
    reg.assign(&direct("domU1"), &fixture("partial-good-direct"), &hv)
        .unwrap();
    // Another page, but the same host device and so the same SPI 79.
    let e = reg
        .assign(&direct("domU2"), &fixture("partial-same-irq"), &hv)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domU2: /passthrough/virtio@a003e00: xen,path: SPI 79 is already assigned to domU1 (/passthrough/virtio@a003e00)"
    );
    // The refused domain's page was not kept.
    assert!(reg.mmio_owner(HostPhysAddr(0xd00_0000)).is_none());
    assert_eq!(reg.release("domU2"), 0);
    // Once domU1 is gone, domU2 gets it.
    reg.release("domU1");
    let a = reg
        .assign(&direct("domU2"), &fixture("partial-same-irq"), &hv)
        .unwrap();
    assert_eq!(a.irqs, [79]);
    assert_eq!(
        reg.mmio_owner(HostPhysAddr(0xd00_0fff))
            .map(|o| o.domain.as_str()),
        Some("domU2")
    );
}

#[test]
fn ranges_claimed_twice_name_the_first_owner() {
    let dt = host_tree();
    let hv = host(&dt, false);
    let mut reg = Registry::new(kept());
    reg.assign(&direct("domU2"), &fixture("partial-mmio-only"), &hv)
        .unwrap();
    let e = reg
        .assign(
            &direct("domU4"),
            &fixture("partial-passthrough-own-reg"),
            &hv,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domU4: /passthrough: xen,reg: host range 0xc000000+0x1000 is already assigned to domU2 (/passthrough/sram@c000000) as 0xc000000+0x2000"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Corrupting a real partial DTB anywhere gives a result, never a panic,
    /// and a refused domain claims nothing.
    #[test]
    fn corrupted_partial_dtbs_never_panic(
        flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
        cut in proptest::prelude::any::<u16>(),
    ) {
        let dt = host_tree();
        let hv = host(&dt, false);
        let mut bytes = fixture("partial-good-nested");
        for (at, v) in flips {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        bytes.truncate(usize::from(cut).max(1));
        let mut reg = Registry::new(kept());
        if reg.assign(&direct("domU1"), &bytes, &hv).is_err() {
            proptest::prop_assert_eq!(reg.release("domU1"), 0);
        }
    }
}

#[test]
fn malformed_host_interrupts_are_refused() {
    assert_eq!(
        refusal("partial-bad-irq", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,path: interrupts of host node /bad-irq@a500000: interrupts is not a whole number of specifiers"
    );
    assert_eq!(
        refusal("partial-dangling", direct("domU1")),
        "domU1: /passthrough/virtio@a003e00: xen,path: interrupts of host node /dangling@a600000: interrupts-extended names an unknown phandle"
    );
}

#[test]
fn wrong_gic_path_is_reported() {
    let dt = host_tree();
    let hv = HostView {
        gic_path: "/gic@0",
        ..host(&dt, false)
    };
    let e = Registry::new(kept())
        .assign(&direct("domU1"), &fixture("partial-good-direct"), &hv)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domU1: /passthrough/virtio@a003e00: xen,path: the host GIC node /gic@0 is not in the host device tree"
    );
}
