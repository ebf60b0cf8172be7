//! Arbitrary partial DTB bytes against a fixed host tree (QEMU virt with
//! devices marked for passthrough): assignment returns a result, never
//! panics, and a refused domain leaves no claim behind.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessel_addr::{HostPhysAddr, HostRange};
use tessel_config::DeviceTree;
use tessel_passthrough::{DomainRequest, Forbidden, HostView, Registry};

static HOST_DTB: &[u8] = include_bytes!("../../crates/passthrough/tests/fixtures/host.dtb");

fn host() -> &'static DeviceTree {
    static TREE: OnceLock<DeviceTree> = OnceLock::new();
    TREE.get_or_init(|| DeviceTree::parse(HOST_DTB).expect("host fixture parses"))
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the domain kind and IOMMU presence.
    let (flags, dtb) = data.split_first().unwrap_or((&0, &[]));
    let hv = HostView {
        dt: host(),
        gic_path: "/intc@8000000",
        has_iommu: flags & 1 != 0,
    };
    let dom = DomainRequest {
        name: "domU1",
        direct_mapped: flags & 2 != 0,
        nr_spis: u32::from(flags >> 2) * 8,
        vpl011_spi: Some(32),
    };
    let mut reg = Registry::new(vec![Forbidden {
        name: "GIC distributor".into(),
        range: HostRange::new(HostPhysAddr(0x800_0000), 0x1_0000),
    }]);
    match reg.assign(&dom, dtb, &hv) {
        Ok(a) => {
            for m in &a.mmio {
                assert!(m.host.size > 0 && m.host.is_aligned(4096));
            }
            for &irq in &a.irqs {
                assert!((32..1020).contains(&irq));
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert_eq!(reg.release("domU1"), 0);
        }
    }
});
