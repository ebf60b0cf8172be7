//! End-to-end tests on QEMU virt device trees (tests/fixtures, rebuilt by
//! regen.sh from the .dts sources next to them).

use tessel_addr::{HostPhysAddr, HostRange};
use tessel_config::{
    BootConfig, ConfigError, ErrorKind, GicVersion, HostError, ModuleKind, PcpuRange, PsciMethod,
    PsciVersion, ReservedSource, parse,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.dtb", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(name: &str) -> BootConfig {
    parse(&fixture(name)).unwrap()
}

fn r(start: u64, size: u64) -> HostRange {
    HostRange::new(HostPhysAddr(start), size)
}

// ---------------------------------------------------------------- host

#[test]
fn gicv2_host_matches_qemu_virt() {
    let h = load("gicv2-domains").host;
    assert_eq!(h.ram, [r(0x4000_0000, 0x8000_0000)]);
    assert_eq!(h.gic.version, GicVersion::V2);
    assert_eq!(h.gic.path, "/intc@8000000");
    assert_eq!(h.gic.phandle, Some(0x8005));
    assert_eq!(h.gic.gicd, r(0x0800_0000, 0x1_0000));
    assert_eq!(h.gic.gicc, Some(r(0x0801_0000, 0x1_0000)));
    assert_eq!(h.gic.gich, Some(r(0x0803_0000, 0x1_0000)));
    assert_eq!(h.gic.gicv, Some(r(0x0804_0000, 0x1_0000)));
    assert!(h.gic.redistributors.is_empty());
    // <GIC_PPI 9 ...> is INTID 25.
    assert_eq!(h.gic.maintenance_intid, Some(25));
}

#[test]
fn gicv3_host_matches_qemu_virt() {
    let h = load("gicv3-domains").host;
    assert_eq!(h.gic.version, GicVersion::V3);
    assert_eq!(h.gic.gicd, r(0x0800_0000, 0x1_0000));
    assert_eq!(h.gic.redistributors, [r(0x080A_0000, 0xF6_0000)]);
    assert_eq!(h.gic.gicc, None);
    assert_eq!(h.gic.maintenance_intid, Some(25));
}

#[test]
fn cpus_in_order_with_mpidr_and_enable_method() {
    let h = load("gicv2-domains").host;
    let mpidrs: Vec<u64> = h.cpus.iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3]);
    assert_eq!(h.cpus[2].path, "/cpus/cpu@2");
    assert!(
        h.cpus
            .iter()
            .all(|c| c.enable_method.as_deref() == Some("psci"))
    );
}

#[test]
fn console_uart_from_stdout_path() {
    let h = load("gicv2-domains").host;
    let u = h.console.unwrap();
    assert_eq!(u.path, "/pl011@9000000");
    assert_eq!(u.mmio, r(0x0900_0000, 0x1000));
    // <GIC_SPI 1 ...> is INTID 33.
    assert_eq!(u.intid, Some(33));
    assert_eq!(u.compatible, ["arm,pl011", "arm,primecell"]);
    assert_eq!(u.options, None);
}

#[test]
fn console_uart_through_alias_with_options() {
    let u = load("gicv3-domains").host.console.unwrap();
    assert_eq!(u.path, "/pl011@9000000");
    assert_eq!(u.options.as_deref(), Some("115200n8"));
    assert_eq!(u.intid, Some(33));
}

#[test]
fn timer_ppis_and_psci() {
    let h = load("gicv2-domains").host;
    let t = h.timer.unwrap();
    assert_eq!(
        (t.secure_phys, t.nonsecure_phys, t.virt, t.hyp_phys),
        (29, 30, 27, 26)
    );
    assert_eq!(t.hyp_virt, None);
    assert_eq!(t.clock_frequency, None);
    let p = h.psci.unwrap();
    assert_eq!(p.method, PsciMethod::Smc);
    assert_eq!(p.version, PsciVersion::V1_0);
}

#[test]
fn device_map_translates_bus_ranges_and_skips_special_nodes() {
    let h = load("gicv2-domains").host;
    let uart: Vec<_> = h.devices_overlapping(r(0x0900_0800, 0x10)).collect();
    assert_eq!(uart.len(), 1);
    assert_eq!(uart[0].path, "/pl011@9000000");
    assert!(uart[0].enabled);
    // GIC regions are devices too, so passthrough checks see them.
    assert!(
        h.devices_overlapping(r(0x0804_0000, 4))
            .any(|d| d.path == "/intc@8000000")
    );
    // Neither RAM nor CPUs are in the device map.
    assert!(
        h.devices_overlapping(r(0x4000_0000, 0x8000_0000))
            .next()
            .is_none()
    );
    assert!(!h.devices.iter().any(|d| d.path.starts_with("/cpus")));
    assert!(h.is_ram(&r(0x5000_0000, 0x1000)));
    assert!(!h.is_ram(&r(0xBFFF_F000, 0x2000)));
    assert!(!h.has_iommu);
}

#[test]
fn multi_region_redistributors_reserved_memory_and_smmu() {
    let h = load("host-gicv3-multi-rdist").host;
    assert_eq!(
        h.gic.redistributors,
        [r(0x080A_0000, 0x4_0000), r(0x0910_0000, 0x4_0000)]
    );
    assert_eq!(
        h.ram,
        [r(0x4000_0000, 0x8000_0000), r(0x1_0000_0000, 0x4000_0000)]
    );
    assert_eq!(h.reserved.len(), 2);
    assert_eq!(h.reserved[0].range, r(0x4800_0000, 0x10_0000));
    assert_eq!(h.reserved[0].source, ReservedSource::MemReserve);
    assert_eq!(h.reserved[1].range, r(0x7FF0_0000, 0x1000));
    assert_eq!(
        h.reserved[1].source,
        ReservedSource::Node("/reserved-memory/scmi-shmem@7ff00000".into())
    );
    assert!(h.has_iommu);
    assert!(h.devices.iter().any(|d| d.path == "/smmu@9050000"));
    assert!(
        !h.devices
            .iter()
            .any(|d| d.path.starts_with("/reserved-memory"))
    );
}

#[test]
fn reserved_memory_without_reg_is_a_warning() {
    let cfg = load("host-gicv3-multi-rdist");
    assert!(cfg.warnings.iter().any(|w| w.node == "/reserved-memory/cma"
        && w.property.as_deref() == Some("reg")
        && w.to_string().contains("dynamic placement")));
}

fn host_err(name: &str) -> HostError {
    parse(&fixture(name)).unwrap_err()
}

#[test]
fn host_without_gic_is_fatal() {
    assert_eq!(
        host_err("host-no-gic").to_string(),
        "host /: no GICv2 or GICv3 interrupt controller found"
    );
}

#[test]
fn host_without_memory_is_fatal() {
    assert_eq!(
        host_err("host-no-memory").to_string(),
        "host /: no /memory node with RAM found"
    );
}

#[test]
fn gicv2_without_virtualization_extensions_is_fatal() {
    assert_eq!(
        host_err("host-gicv2-novirt").to_string(),
        "host /intc@8000000: reg: expected 4 regions (GICD, GICC, GICH, GICV), found 2"
    );
}

#[test]
fn unsupported_root_cells_are_fatal() {
    assert_eq!(
        host_err("host-bad-cells"),
        HostError::Node {
            node: "/memory@40000000".into(),
            property: Some("reg".into()),
            kind: ErrorKind::BadCellCount(3),
        }
    );
}

#[test]
fn garbage_is_a_typed_fdt_error() {
    assert!(matches!(
        parse(b"not a dtb at all, but long enough to hold a header"),
        Err(HostError::Fdt(_))
    ));
    let mut dtb = fixture("gicv2-domains");
    dtb.truncate(dtb.len() / 2);
    assert!(matches!(parse(&dtb), Err(HostError::Fdt(_))));
}

// ---------------------------------------------------------------- domains

#[test]
fn direct_mapped_domain() {
    let cfg = load("gicv2-domains");
    assert_eq!(
        cfg.xen_bootargs.as_deref(),
        Some("console=dtuart dtuart=serial0")
    );
    assert_eq!(cfg.domains.len(), 2);
    let d = cfg.domains[0].as_ref().unwrap();
    assert_eq!(d.name, "domU1");
    assert_eq!(d.memory_kib, 0x60000);
    assert_eq!(d.cpus, 2);
    assert!(d.vpl011 && d.direct_map);
    assert_eq!(
        d.static_mem,
        [r(0x5000_0000, 0x1000_0000), r(0x7000_0000, 0x0800_0000)]
    );
    assert_eq!(d.static_mem_bytes(), 0x60000 * 1024);
    assert_eq!(d.nr_spis, Some(32));
    assert_eq!(d.kernel.range, r(0x4800_0000, 0x180_0000));
    assert_eq!(d.bootargs(), Some("console=ttyAMA0 earlycon"));
    assert_eq!(
        d.device_tree.as_ref().unwrap().range,
        r(0x4A00_0000, 0x2000)
    );
    assert!(d.ramdisk.is_none());
    // Passthrough defaults to enabled when a device-tree module exists.
    assert!(d.passthrough);
    assert_eq!(d.vcpu_affinity.len(), 1);
    assert_eq!(
        d.vcpu_affinity[0].hard_affinity,
        [
            PcpuRange { first: 0, last: 1 },
            PcpuRange { first: 3, last: 3 }
        ]
    );
}

#[test]
fn ordinary_domain_with_legacy_module_compatibles_and_own_cells() {
    let cfg = load("gicv2-domains");
    let d = cfg.domains[1].as_ref().unwrap();
    assert_eq!(d.name, "domU2");
    assert!(!d.direct_map && !d.vpl011 && !d.passthrough);
    assert!(d.static_mem.is_empty());
    // domU2 has #address-cells = <1>: its modules are decoded with it.
    assert_eq!(d.kernel.range, r(0x4C00_0000, 0x100_0000));
    assert_eq!(d.kernel.node, "module@4c000000");
    assert_eq!(d.ramdisk.as_ref().unwrap().range, r(0x4D00_0000, 0x80_0000));
    assert_eq!(d.bootargs(), Some("console=hvc0"));
}

#[test]
fn boot_modules_are_all_listed_with_their_domain() {
    let cfg = load("gicv2-domains");
    let m: Vec<_> = cfg
        .modules
        .iter()
        .map(|m| (m.kind, m.range, m.domain.as_deref()))
        .collect();
    assert_eq!(
        m,
        [
            (
                ModuleKind::Kernel,
                r(0x4800_0000, 0x180_0000),
                Some("domU1")
            ),
            (
                ModuleKind::DeviceTree,
                r(0x4A00_0000, 0x2000),
                Some("domU1")
            ),
            (
                ModuleKind::Kernel,
                r(0x4C00_0000, 0x100_0000),
                Some("domU2")
            ),
            (
                ModuleKind::Ramdisk,
                r(0x4D00_0000, 0x80_0000),
                Some("domU2")
            ),
        ]
    );
    assert_eq!(
        cfg.modules[0].bootargs.as_deref(),
        Some("console=ttyAMA0 earlycon")
    );
}

#[test]
fn unknown_and_unsupported_domain_properties_warn() {
    let cfg = load("gicv2-domains");
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            "domU2: xen,enhanced: Xen property not supported by Tessel; ignored",
            "domU2: tessel,frobnicate: unknown property; ignored",
        ]
    );
}

#[test]
fn legacy_static_mem_cells_accepted_with_warning() {
    let cfg = load("gicv3-domains");
    let d = cfg.domains[0].as_ref().unwrap();
    assert_eq!(d.name, "dom-a");
    assert_eq!(d.static_mem, [r(0x6000_0000, 0x1000_0000)]);
    assert_eq!(d.cpus, 4);
    assert!(!d.passthrough);
    assert_eq!(d.bootargs(), None);
    assert!(cfg.warnings.iter().any(|w| w.node == "dom-a"
        && w.property.as_deref() == Some("#xen,static-mem-address-cells")
        && w.message.contains("legacy")));
}

#[test]
fn domain_node_bootargs_used_only_when_kernel_has_none() {
    let cfg = load("gicv3-domains");
    let d = cfg.domains[1].as_ref().unwrap();
    assert_eq!(d.kernel.bootargs, None);
    assert_eq!(d.bootargs(), Some("console=ttyAMA0 root=/dev/ram"));
    assert!(cfg.warnings.iter().any(|w| w.node == "dom-b"
        && w.property.as_deref() == Some("bootargs")
        && w.message.contains("Tessel uses it")));
}

// ------------------------------------------------- one test per error message

fn domain_error(name: &str) -> ConfigError {
    let cfg = load("domain-errors");
    let idx = cfg
        .domains
        .iter()
        .position(|d| match d {
            Ok(d) => d.name == name,
            Err(e) => e.node == name || e.node.starts_with(&format!("{name}/")),
        })
        .unwrap_or_else(|| panic!("no domain {name}"));
    *cfg.domains[idx].clone().unwrap_err()
}

fn msg(name: &str) -> String {
    domain_error(name).to_string()
}

#[test]
fn other_domains_still_load_beside_bad_ones() {
    let cfg = load("domain-errors");
    let good: Vec<_> = cfg.valid_domains().map(|d| d.name.as_str()).collect();
    assert_eq!(good, ["good"]);
    assert_eq!(cfg.domain_errors().count(), cfg.domains.len() - 1);
    // Modules of refused domains are still listed for reservation.
    assert!(cfg.modules.iter().any(
        |m| m.domain.as_deref() == Some("two-kernels") && m.range == r(0x4A00_0000, 0x100_0000)
    ));
}

#[test]
fn memory_wrong_length() {
    assert_eq!(
        msg("bad-memory-len"),
        "bad-memory-len: memory: property must be 8 bytes (2 cells), got 4"
    );
}

#[test]
fn memory_missing() {
    let e = domain_error("no-memory");
    assert_eq!(e.property.as_deref(), Some("memory"));
    assert_eq!(e.kind, ErrorKind::Missing);
    assert_eq!(
        e.to_string(),
        "no-memory: memory: required property is missing"
    );
}

#[test]
fn memory_zero() {
    assert!(msg("zero-memory").starts_with("zero-memory: memory: value 0 is outside 1..="));
}

#[test]
fn memory_not_whole_pages() {
    assert_eq!(
        msg("odd-memory"),
        "odd-memory: memory: must be a whole number of 4 KiB pages"
    );
}

#[test]
fn cpus_missing() {
    assert_eq!(
        msg("no-cpus"),
        "no-cpus: cpus: required property is missing"
    );
}

#[test]
fn cpus_zero() {
    assert_eq!(
        msg("zero-cpus"),
        "zero-cpus: cpus: value 0 is outside 1..=8"
    );
}

#[test]
fn cpus_above_gicv2_limit() {
    assert_eq!(
        msg("too-many-cpus"),
        "too-many-cpus: cpus: value 9 is outside 1..=8"
    );
}

#[test]
fn cpus_wrong_length() {
    assert_eq!(
        msg("cpus-len"),
        "cpus-len: cpus: property must be 4 bytes (1 cell), got 8"
    );
}

#[test]
fn direct_map_requires_static_mem() {
    assert_eq!(
        msg("dm-no-static"),
        "dm-no-static: direct-map: requires xen,static-mem"
    );
}

#[test]
fn static_mem_must_equal_memory() {
    assert_eq!(
        msg("static-mismatch"),
        "static-mismatch: xen,static-mem: banks total 262144 KiB but memory is 131072 KiB; they must be equal"
    );
}

#[test]
fn static_mem_misaligned() {
    assert_eq!(
        msg("static-misaligned"),
        "static-misaligned: xen,static-mem: region 0x50000800+0x8000000 is not aligned to 0x1000"
    );
}

#[test]
fn static_mem_banks_overlap() {
    assert_eq!(
        msg("static-overlap"),
        "static-overlap: xen,static-mem: regions 0x50000000+0x4000000 and 0x52000000+0x4000000 overlap"
    );
}

#[test]
fn static_mem_truncated() {
    assert_eq!(
        msg("static-truncated"),
        "static-truncated: xen,static-mem: length 12 bytes is not a multiple of the 16-byte entry size"
    );
}

#[test]
fn static_mem_empty_bank() {
    assert_eq!(
        msg("static-empty-bank"),
        "static-empty-bank: xen,static-mem: region 0x50000000+0x0 is empty or wraps past the end of the address space"
    );
}

#[test]
fn legacy_static_mem_cells_need_both() {
    assert_eq!(
        msg("legacy-half"),
        "legacy-half: #xen,static-mem-size-cells: required property is missing"
    );
}

#[test]
fn kernel_module_missing() {
    assert_eq!(
        msg("no-kernel"),
        "no-kernel: no kernel module (compatible \"multiboot,kernel\") found"
    );
}

#[test]
fn kernel_reg_missing() {
    assert_eq!(
        msg("kernel-no-reg"),
        "kernel-no-reg/kernel: reg: required property is missing"
    );
}

#[test]
fn kernel_reg_malformed() {
    assert_eq!(
        msg("kernel-bad-reg"),
        "kernel-bad-reg/kernel: reg: length 12 bytes is not a multiple of the 16-byte entry size"
    );
}

#[test]
fn kernel_reg_empty() {
    assert_eq!(
        msg("kernel-zero-size"),
        "kernel-zero-size/kernel: reg: region 0x48000000+0x0 is empty or wraps past the end of the address space"
    );
}

#[test]
fn kernel_reg_wraps() {
    assert_eq!(
        domain_error("kernel-wraps").kind,
        ErrorKind::BadRegion {
            start: 0xFFFF_FFFF_FFFF_F000,
            size: 0x2000
        }
    );
}

#[test]
fn kernel_bootargs_not_string() {
    assert_eq!(
        msg("kernel-bad-bootargs"),
        "kernel-bad-bootargs/kernel: bootargs: property is not a NUL-terminated string"
    );
}

#[test]
fn two_kernel_modules() {
    assert_eq!(
        msg("two-kernels"),
        "two-kernels: more than one kernel module (kernel and kernel2)"
    );
}

#[test]
fn passthrough_bad_value() {
    assert_eq!(
        msg("bad-passthrough"),
        "bad-passthrough: passthrough: value \"maybe\" is invalid: expected \"enabled\" or \"disabled\""
    );
}

#[test]
fn nr_spis_above_vgic_limit() {
    assert_eq!(
        msg("big-nr-spis"),
        "big-nr-spis: nr_spis: value 1000 is outside 0..=960"
    );
}

#[test]
fn nr_spis_too_small_for_direct_mapped_vpl011() {
    // The host console is SPI 1 (INTID 33), so at least 2 SPIs are needed.
    assert_eq!(
        msg("small-nr-spis"),
        "small-nr-spis: nr_spis: value 1 is outside 2..=960"
    );
}

#[test]
fn capabilities_unknown_bits() {
    assert_eq!(
        msg("bad-caps"),
        "bad-caps: capabilities: unknown bits set (known: 0x1 control, 0x2 hardware, 0x4 xenstore)"
    );
}

#[test]
fn vcpu_id_out_of_range() {
    assert_eq!(msg("vcpu-id"), "vcpu-id/vcpu: id: value 1 is outside 0..=0");
}

#[test]
fn vcpu_affinity_names_missing_pcpu() {
    assert_eq!(
        msg("vcpu-affinity"),
        "vcpu-affinity/vcpu: hard-affinity: value 9 is outside 0..=3"
    );
}

#[test]
fn vcpu_affinity_bad_syntax() {
    assert!(
        msg("vcpu-affinity-syntax")
            .starts_with("vcpu-affinity-syntax/vcpu: hard-affinity: value \"3-1\" is invalid")
    );
}
