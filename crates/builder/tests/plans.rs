//! Plans for QEMU virt device trees (tests/fixtures, rebuilt by regen.sh):
//! direct-mapped, ordinary static-memory and heap domains, refusals, and
//! the invariants every set of plans keeps.

use proptest::prelude::*;
use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};
use tessel_builder::{
    BuildError, BuildErrorKind, Builder, CopyMethod, CopySource, DomainPlan, HostFacts, HwIrq,
    MappingKind, ModuleMemory, kept_memory, plan_all,
};
use tessel_config::{BootConfig, DomainConfig};
use tessel_stage2::{Attrs, Stage2Config, VmidBits};
use tessel_vgic::RegionKind;

// ------------------------------------------------------------ harness

fn read(path: &str) -> Vec<u8> {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn boot(name: &str) -> BootConfig {
    tessel_config::parse(&read(&format!("tests/fixtures/{name}.dtb"))).unwrap()
}

fn r(start: u64, size: u64) -> HostRange {
    HostRange::new(HostPhysAddr(start), size)
}

fn g(start: u64, size: u64) -> GuestRange {
    GuestRange::new(GuestPhysAddr(start), size)
}

/// Boot modules as buffers at host addresses.
#[derive(Default)]
struct Modules(Vec<(u64, Vec<u8>)>);

impl Modules {
    fn put(&mut self, at: u64, size: usize, mut bytes: Vec<u8>) {
        bytes.resize(size, 0);
        self.0.push((at, bytes));
    }
}

impl<'m> ModuleMemory<'m> for &'m Modules {
    fn bytes(&self, range: HostRange) -> Option<&'m [u8]> {
        self.0.iter().find_map(|(at, b)| {
            let off = usize::try_from(range.start.0.checked_sub(*at)?).ok()?;
            b.get(off..off.checked_add(usize::try_from(range.size).ok()?)?)
        })
    }
}

/// A minimal arm64 Image: 64-byte header, text_offset 0, `image_size`,
/// 4 KiB pages, placeable anywhere.
fn image(image_size: u64) -> Vec<u8> {
    let mut img = vec![0u8; 64];
    img[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
    img[0x18] = 0b1010;
    img[0x38..0x3c].copy_from_slice(b"ARM\x64");
    img
}

/// A raw (header-less) bare-metal kernel.
fn raw() -> Vec<u8> {
    vec![0x14, 0, 0, 0]
}

const MOD: usize = 0x10000;

/// The modules gicv2-plan.dts names.
fn gicv2_modules() -> Modules {
    let mut m = Modules::default();
    m.put(0x4800_0000, MOD, raw());
    m.put(
        0x4900_0000,
        0x1000,
        read("../passthrough/tests/fixtures/partial-good-direct.dtb"),
    );
    m.put(0x4a00_0000, MOD, image(0x20_0000));
    m.put(0x4b00_0000, 0x3000, vec![0xaa; 0x3000]);
    m.put(0x4c00_0000, MOD, raw());
    m.put(0x4d00_0000, MOD, raw());
    m
}

/// The modules gicv3-plan.dts names.
fn gicv3_modules() -> Modules {
    let mut m = Modules::default();
    for at in [0x4800_0000, 0x4900_0000, 0x4a00_0000, 0x4b00_0000] {
        m.put(at, MOD, raw());
    }
    m
}

/// QEMU virt with 4 online CPUs, the hypervisor at 0x4020_0000.
fn host(cpus: usize) -> HostFacts {
    HostFacts {
        image: r(0x4020_0000, 0x80_0000),
        dtb: r(0x4f00_0000, 0x10_0000),
        free_pcpus: vec![true; cpus],
        gic_spis: 224,
        stage2: Stage2Config::new(40, 40).unwrap(),
    }
}

fn plans<'m>(
    boot: &BootConfig,
    host: &HostFacts,
    m: &'m Modules,
) -> Vec<Result<DomainPlan<'m>, Box<BuildError>>> {
    plan_all(boot, host, m).unwrap()
}

fn ok<'a, 'm>(o: &'a [Result<DomainPlan<'m>, Box<BuildError>>], i: usize) -> &'a DomainPlan<'m> {
    match &o[i] {
        Ok(p) => p,
        Err(e) => panic!("domain {i} refused: {e}"),
    }
}

fn err<'a>(o: &'a [Result<DomainPlan<'_>, Box<BuildError>>], i: usize) -> &'a BuildError {
    match &o[i] {
        Ok(p) => panic!("domain {} was planned", p.name),
        Err(e) => e,
    }
}

// ------------------------------------------------------------ GICv2

#[test]
fn direct_mapped_domain_sees_host_addresses() {
    let (b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    let o = plans(&b, &h, &m);
    let p = ok(&o, 0);
    assert_eq!(p.name, "domU1");
    assert!(p.is_direct_mapped());
    assert!(p.request.flags().uses_static_memory());
    assert!(p.request.has_passthrough());
    assert_eq!(p.vmid, 1);
    assert_eq!(p.vcpu_pcpu, [0, 1]);
    // RAM 1:1.
    assert_eq!(p.ram.pieces().len(), 1);
    assert_eq!(p.ram.pieces()[0].guest, g(0x6000_0000, 0x1000_0000));
    assert_eq!(p.ram.pieces()[0].host, HostPhysAddr(0x6000_0000));
    // The host GIC's own frames, GICV behind the guest's GICC.
    let regions = p.vgic.regions();
    assert!(
        regions
            .iter()
            .any(|r| r.kind == RegionKind::Distributor
                && r.range.start == GuestPhysAddr(0x0800_0000))
    );
    let gicc = p
        .mappings
        .iter()
        .find(|m| m.kind == MappingKind::GicCpuInterface)
        .unwrap();
    assert_eq!(gicc.guest, g(0x0801_0000, 0x2000));
    assert_eq!(gicc.host, HostPhysAddr(0x0804_0000));
    assert_eq!(gicc.attrs(), Attrs::DEVICE);
    // vPL011 at the host UART, its SPI.
    let u = p.vpl011.unwrap();
    assert_eq!((u.base, u.spi), (GuestPhysAddr(0x0900_0000), 33));
    // The virtio transport: MMIO 1:1 as Device memory, SPI 79 on vCPU0.
    let dev = p
        .mappings
        .iter()
        .find(|m| m.kind == MappingKind::Passthrough)
        .unwrap();
    assert_eq!(
        (dev.guest, dev.host),
        (g(0xa00_3000, 0x1000), HostPhysAddr(0xa00_3000))
    );
    assert_eq!(dev.attrs(), Attrs::DEVICE);
    assert_eq!(p.devices.irqs, [79]);
    assert!(p.vgic.hw_irqs.contains(&HwIrq {
        vcpu: 0,
        virq: 79,
        pirq: 79
    }));
    for v in 0..2 {
        assert!(p.vgic.hw_irqs.contains(&HwIrq {
            vcpu: v,
            virq: 27,
            pirq: 27
        }));
    }
    p.vgic.instantiate().unwrap();
    // Raw kernel at the bank, DTB in the next 2 MiB slot.
    assert!(!p.boot.image);
    assert_eq!(p.boot.entry, GuestPhysAddr(0x6000_0000));
    assert_eq!(p.boot.dtb.start, GuestPhysAddr(0x6020_0000));
    assert_eq!(p.copies.len(), 2);
    assert_eq!(
        p.copies[0].source,
        CopySource::Module(r(0x4800_0000, MOD as u64))
    );
    assert_eq!(p.copies[0].dest, r(0x6000_0000, MOD as u64));
    assert_eq!(p.copies[1].source, CopySource::GuestDtb);
    assert_eq!(p.copies[1].dest, r(0x6020_0000, p.dtb.len() as u64));
    assert_eq!(&p.dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
    assert!(p.guest_dt.partial_dtb.is_some());
    assert_eq!(
        p.guest_dt.chosen.bootargs.as_deref(),
        Some("console=ttyAMA0")
    );
}

#[test]
fn ordinary_static_domain_gets_xen_virtual_platform() {
    let (b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    let o = plans(&b, &h, &m);
    let p = ok(&o, 1);
    assert_eq!(p.name, "domU2");
    assert!(!p.is_direct_mapped());
    assert!(p.request.flags().uses_static_memory());
    assert_eq!(p.vmid, 2);
    assert_eq!(p.vcpu_pcpu, [2]);
    // The bank packed at Xen's guest RAM base.
    assert_eq!(p.ram.pieces()[0].guest, g(0x4000_0000, 0x800_0000));
    assert_eq!(p.ram.pieces()[0].host, HostPhysAddr(0x7000_0000));
    let ram = p
        .mappings
        .iter()
        .find(|m| m.kind == MappingKind::Ram)
        .unwrap();
    assert_eq!(ram.attrs(), Attrs::RAM);
    // Xen's virtual GIC and UART.
    let gicc = p
        .mappings
        .iter()
        .find(|m| m.kind == MappingKind::GicCpuInterface)
        .unwrap();
    assert_eq!(gicc.guest.start, GuestPhysAddr(0x0300_2000));
    let u = p.vpl011.unwrap();
    assert_eq!((u.base, u.spi), (GuestPhysAddr(0x2200_0000), 32));
    assert!(p.devices.mmio.is_empty());
    // An Image kernel unpacked, a ramdisk copied, all in the bank.
    assert!(p.boot.image);
    assert_eq!(p.copies[0].method, CopyMethod::UnpackKernel);
    let initrd = p.boot.initrd.unwrap();
    assert_eq!(initrd.size, 0x3000);
    assert!(
        p.copies
            .iter()
            .any(|c| c.source == CopySource::Module(r(0x4b00_0000, 0x3000))
                && c.method == CopyMethod::Verbatim
                && c.dest.size == 0x3000)
    );
    let bank = r(0x7000_0000, 0x800_0000);
    assert!(p.copies.iter().all(|c| bank.contains_range(&c.dest)));
    assert_eq!(p.guest_dt.chosen.initrd, Some(initrd));
}

#[test]
fn heap_domain_avoids_banks_modules_and_hypervisor() {
    let (b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    let o = plans(&b, &h, &m);
    let p = ok(&o, 2);
    assert_eq!(p.name, "domU3");
    assert!(!p.request.flags().uses_static_memory());
    assert_eq!((p.vmid, p.vcpu_pcpu.as_slice()), (3, &[3][..]));
    assert_eq!(p.ram.guest_banks()[0].start, GuestPhysAddr(0x4000_0000));
    assert_eq!(p.ram.total_bytes(), 64 << 20);
    assert_eq!(p.vpl011, None);
    let kept = kept_memory(&b, &h);
    for host in p.ram.host_ranges() {
        assert!(kept.iter().all(|k| !k.range.overlaps(&host)), "{host}");
        assert!(!host.overlaps(&r(0x6000_0000, 0x1000_0000)));
        assert!(!host.overlaps(&r(0x7000_0000, 0x800_0000)));
    }
}

#[test]
fn too_many_vcpus_is_refused_with_property() {
    let (b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    let o = plans(&b, &h, &m);
    let e = err(&o, 3);
    assert_eq!(e.node(), "domU4");
    assert_eq!(
        e.reason().to_string(),
        "asks for 4 vCPUs but only 0 physical CPUs are free (static partitioning needs one each)"
    );
    assert_eq!(e.property, Some("cpus"));
    assert_eq!(e.kind, BuildErrorKind::NotEnoughPcpus { want: 4, free: 0 });
    assert_eq!(
        e.to_string(),
        "domU4: cpus: asks for 4 vCPUs but only 0 physical CPUs are free \
         (static partitioning needs one each)"
    );
}

#[test]
fn refused_domain_gives_everything_back() {
    let (b, m) = (boot("gicv2-plan"), gicv2_modules());
    // Only 2 pCPUs: domU1 takes both, domU2 and domU3 are refused, and
    // refusing them must not leak their heap RAM or devices.
    let h = host(2);
    let mut builder = Builder::new(&b, &h, &m).unwrap();
    let domains: Vec<&DomainConfig> = b.valid_domains().collect();
    builder.plan(domains[0]).unwrap();
    let free_mem = builder.memory().free_bytes();
    let e = builder.plan(domains[2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "domU3: cpus: asks for 1 vCPUs but only 0 physical CPUs are free (static partitioning needs one each)"
    );
    assert_eq!(builder.memory().free_bytes(), free_mem);
    assert_eq!(builder.free_pcpus(), [false, false]);
    // The next domain planned still gets VMID 2.
    let h4 = host(4);
    let mut builder = Builder::new(&b, &h4, &m).unwrap();
    builder.plan(domains[0]).unwrap();
    builder.plan(domains[3]).unwrap_err();
    assert_eq!(builder.plan(domains[1]).unwrap().vmid, 2);
}

#[test]
fn report_names_memory_vcpus_devices_and_irqs() {
    let (b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    let o = plans(&b, &h, &m);
    let lines = ok(&o, 0).report_lines();
    for want in [
        "flags HVM|HAP|TRAP_UNMAPPED_ACCESSES|STATIC_MEMORY|DIRECTMAP",
        "memory 0x60000000+0x10000000 from host 0x60000000",
        "vCPU0 on pCPU0",
        "vCPU1 on pCPU1",
        "kernel loaded at 0x60000000+0x10000, entry 0x60000000 (raw binary)",
        "vGICv2 distributor (emulated) at 0x8000000+0x1000",
        "vGICv2 CPU interface (host GICV) at 0x8010000+0x2000",
        "IRQs: virtual timer PPI 27 (hardware-mapped), 224 SPIs",
        "vpl011 at 0x9000000+0x1000 SPI 33",
        "device /passthrough/virtio@a003e00",
        "  MMIO 0xa003000+0x1000 at guest 0xa003000+0x1000",
        "  SPI 79 (hardware-mapped)",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "missing {want:?} in {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("device tree at 0x60200000 ("))
    );
    assert!(lines.iter().any(|l| l.starts_with("warning: ")));
}

#[test]
fn plans_are_deterministic() {
    let (b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    assert_eq!(plans(&b, &h, &m), plans(&b, &h, &m));
}

#[cfg(feature = "vgic-per-irq")]
#[test]
fn vgic_model_follows_domain_then_command_line_then_default() {
    use tessel_config::VgicModel;
    use tessel_vgic::Model;
    let (mut b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    let model_of = |b: &BootConfig| -> Vec<Model> {
        plans(b, &h, &m)
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|p| p.vgic.model))
            .collect()
    };
    let default = model_of(&b);
    assert!(default.len() >= 2 && default.iter().all(|&x| x == Model::default()));

    // vgic= on the command line sets every domain without its own choice.
    b.vgic_model = Some(VgicModel::PerIrq);
    if let Ok(d) = b.domains[0].as_mut() {
        d.vgic_model = Some(VgicModel::Classic);
    }
    let chosen = model_of(&b);
    assert_eq!(chosen[0], Model::Classic);
    assert!(chosen[1..].iter().all(|&x| x == Model::PerIrq));
    let o = plans(&b, &h, &m);
    assert!(
        ok(&o, 0)
            .report_lines()
            .contains(&"vGIC model: classic".to_string())
    );
    assert!(
        ok(&o, 1)
            .report_lines()
            .contains(&"vGIC model: per-IRQ".to_string())
    );
}

/// Built without the per-IRQ model (as the default hypervisor image is): a
/// domain naming it is refused at `tessel,vgic-model` and gives everything
/// back, the others are planned; `vgic=new` alone falls back to the classic
/// model and the report says why.
#[cfg(not(feature = "vgic-per-irq"))]
#[test]
fn per_irq_model_absent_refuses_only_the_domain_that_names_it() {
    use tessel_config::VgicModel;
    use tessel_vgic::Model;
    let (mut b, h, m) = (boot("gicv2-plan"), host(4), gicv2_modules());
    let baseline = plans(&b, &h, &m);
    let planned = |o: &[Result<DomainPlan<'_>, Box<BuildError>>]| -> Vec<usize> {
        (0..o.len()).filter(|&i| o[i].is_ok()).collect()
    };
    let all_ok = planned(&baseline);
    assert!(all_ok.len() >= 2 && all_ok[0] == 0, "{all_ok:?}");

    if let Ok(d) = b.domains[0].as_mut() {
        d.vgic_model = Some(VgicModel::PerIrq);
    }
    let o = plans(&b, &h, &m);
    let e = err(&o, 0);
    assert_eq!(e.property, Some("tessel,vgic-model"));
    assert!(
        e.to_string()
            .contains("per-IRQ vGIC model is not built into this hypervisor"),
        "{e}"
    );
    assert_eq!(planned(&o), all_ok[1..]);
    for &i in &all_ok[1..] {
        assert_eq!(ok(&o, i).vgic.model, Model::Classic);
    }

    b.vgic_model = Some(VgicModel::PerIrq);
    if let Ok(d) = b.domains[0].as_mut() {
        d.vgic_model = None;
    }
    let o = plans(&b, &h, &m);
    assert_eq!(planned(&o), all_ok);
    for &i in &all_ok {
        let p = ok(&o, i);
        assert_eq!(p.vgic.model, Model::Classic);
        assert!(p.vgic.default_unavailable);
        assert!(
            p.report_lines().contains(
                &"vGIC model: classic (vgic= names the per-IRQ model, which this build lacks)"
                    .to_string()
            )
        );
    }
}

// ------------------------------------------------------------ GICv3

#[test]
fn gicv3_native_and_virtual_layouts() {
    let (b, h, m) = (boot("gicv3-plan"), host(4), gicv3_modules());
    let o = plans(&b, &h, &m);
    let a = ok(&o, 0);
    let regions = a.vgic.regions();
    assert!(
        regions
            .iter()
            .any(|r| r.kind == RegionKind::Distributor
                && r.range.start == GuestPhysAddr(0x0800_0000))
    );
    assert!(
        regions
            .iter()
            .any(|r| matches!(r.kind, RegionKind::Redistributor { .. })
                && r.range.start == GuestPhysAddr(0x080a_0000))
    );
    assert!(a.mappings.iter().all(|m| m.kind == MappingKind::Ram));
    assert_eq!(a.vpl011.unwrap().base, GuestPhysAddr(0x0900_0000));
    // Hard affinity puts dom-b's vCPU0 on pCPU 3.
    let bdom = ok(&o, 1);
    assert_eq!(bdom.vcpu_pcpu, [3]);
    assert!(
        bdom.vgic
            .regions()
            .iter()
            .any(|r| r.kind == RegionKind::Distributor
                && r.range.start == GuestPhysAddr(0x0300_1000))
    );
}

#[test]
fn overlapping_static_bank_is_refused() {
    let (b, h, m) = (boot("gicv3-plan"), host(4), gicv3_modules());
    let o = plans(&b, &h, &m);
    let e = err(&o, 2);
    assert_eq!(
        (e.node(), e.property),
        ("dom-c".into(), Some("xen,static-mem"))
    );
    assert!(
        e.reason()
            .to_string()
            .starts_with("xen,static-mem: bank 0x6c000000+0x4000000 overlaps")
    );
    assert!(matches!(e.kind, BuildErrorKind::Bank(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("dom-c: xen,static-mem: bank 0x6c000000+0x4000000 overlaps"),
        "{e}"
    );
    let e = err(&o, 3);
    assert_eq!((e.node().as_str(), e.property), ("dom-d", Some("memory")));
    assert!(matches!(e.kind, BuildErrorKind::Ram(_)), "{e}");
}

#[test]
fn overlapping_static_bank_planned_again_is_refused_again() {
    let (b, h, m) = (boot("gicv3-plan"), host(4), gicv3_modules());
    let mut builder = Builder::new(&b, &h, &m).unwrap();
    let dom_c = b.valid_domains().nth(2).unwrap();
    let first = builder.plan(dom_c).unwrap_err();
    assert!(matches!(first.kind, BuildErrorKind::Bank(_)), "{first}");
    // The bank conflict is reported once; planned again, the domain is
    // refused at the same property for having no banks reserved.
    let again = builder.plan(dom_c).unwrap_err();
    assert_eq!(
        (again.node(), again.property),
        ("dom-c".into(), Some("xen,static-mem"))
    );
    assert!(matches!(again.kind, BuildErrorKind::Ram(_)), "{again}");
}

#[test]
fn bank_over_hypervisor_or_module_is_refused() {
    let mut b = boot("gicv3-plan");
    let (h, m) = (host(4), gicv3_modules());
    for (bank, what) in [
        (r(0x4000_0000, 0x100_0000), "hypervisor"),
        (r(0x4800_0000, 0x10_0000), "module"),
    ] {
        if let Some(Ok(d)) = b.domains.get_mut(0) {
            d.static_mem = vec![bank];
            d.memory_kib = bank.size / 1024;
        }
        let o = plans(&b, &h, &m);
        let e = err(&o, 0);
        assert_eq!(e.property, Some("xen,static-mem"), "{what}: {e}");
    }
}

// ------------------------------------------------------------ passthrough

/// domU1 of gicv2-plan with its partial device tree replaced.
fn with_partial(partial: &str) -> (BootConfig, Modules) {
    let b = boot("gicv2-plan");
    let mut m = gicv2_modules();
    m.0.retain(|(at, _)| *at != 0x4900_0000);
    m.put(
        0x4900_0000,
        0x1000,
        read(&format!("tests/fixtures/{partial}.dtb")),
    );
    (b, m)
}

#[test]
fn passthrough_over_guest_ram_is_refused() {
    let (b, m) = with_partial("partial-over-ram");
    let o = plans(&b, &host(4), &m);
    let e = err(&o, 0);
    assert_eq!(
        (e.node(), e.property),
        ("domU1/dtb".into(), Some("xen,reg"))
    );
    assert_eq!(e.domain, "domU1");
    assert_eq!(
        e.kind,
        BuildErrorKind::MappingOverlap {
            first: g(0x6000_0000, 0x1000_0000),
            second: g(0x6000_0000, 0x1000),
        }
    );
    // domU1's refusal frees the device and pCPUs for the others.
    assert_eq!(ok(&o, 1).vcpu_pcpu, [0]);
}

#[test]
fn passthrough_hiding_the_vpl011_is_refused() {
    let (b, m) = with_partial("partial-hides-uart");
    let o = plans(&b, &host(4), &m);
    let e = err(&o, 0);
    assert!(
        matches!(e.kind, BuildErrorKind::HidesEmulated { what: "vPL011", .. }),
        "{e}"
    );
}

#[test]
fn passthrough_needs_direct_map_without_iommu() {
    let mut b = boot("gicv2-plan");
    if let Some(Ok(d)) = b.domains.get_mut(0) {
        d.direct_map = false;
    }
    let m = gicv2_modules();
    let o = plans(&b, &host(4), &m);
    let e = err(&o, 0);
    assert_eq!(e.node(), "domU1/dtb");
    // The boot log line keeps the passthrough crate's own text.
    assert!(
        e.reason()
            .to_string()
            .starts_with("domU1: /passthrough/virtio@a003e00: "),
        "{}",
        e.reason()
    );
    assert!(matches!(e.kind, BuildErrorKind::Passthrough(_)), "{e}");
}

#[test]
fn a_device_goes_to_one_domain_only() {
    let mut b = boot("gicv2-plan");
    // domU2 becomes a second direct-mapped domain asking for the same device.
    let first = b.domains[0].clone().unwrap();
    if let Some(Ok(d)) = b.domains.get_mut(1) {
        d.direct_map = true;
        d.device_tree = first.device_tree.clone();
        d.passthrough = true;
    }
    let m = gicv2_modules();
    let o = plans(&b, &host(4), &m);
    ok(&o, 0);
    let e = err(&o, 1);
    assert_eq!(e.node(), "domU2/dtb");
    assert!(e.to_string().contains("domU1"), "{e}");
}

#[test]
fn vmids_run_out_at_the_vmid_width() {
    let mut b = boot("gicv2-plan");
    let proto = b.domains[2].clone().unwrap();
    b.domains = (0..257)
        .map(|i| {
            let mut d = proto.clone();
            d.name = format!("d{i}");
            d.memory_kib = 4096;
            Ok(d)
        })
        .collect();
    let mut h = host(300);
    h.stage2 = h.stage2.with_vmid_bits(VmidBits::Bits8);
    let m = gicv2_modules();
    let o = plans(&b, &h, &m);
    assert_eq!(ok(&o, 254).vmid, 255);
    let e = err(&o, 255);
    assert_eq!(e.kind, BuildErrorKind::NoVmid { max: 255 });
}

// ------------------------------------------------------------ properties

/// A random domain: heap RAM, or a 16 MiB-granular static bank somewhere in
/// 0x5000_0000..0xc000_0000, maybe direct-mapped.
#[derive(Clone, Debug)]
struct Spec {
    cpus: u32,
    mib: u64,
    bank_slot: Option<u64>,
    direct: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1u32..=3,
        1u64..=8,
        proptest::option::of(0u64..28),
        any::<bool>(),
    )
        .prop_map(|(cpus, units, bank_slot, direct)| Spec {
            cpus,
            mib: units * 16,
            bank_slot,
            direct,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the domains ask for, the plans never share host RAM or a
    /// pCPU or a VMID, never touch what the hypervisor keeps, and copy only
    /// into the domain's own RAM.
    #[test]
    fn plans_never_share_ram_or_pcpus(specs in proptest::collection::vec(spec(), 1..8)) {
        let mut b = boot("gicv2-plan");
        let proto = b.domains[2].clone().unwrap();
        b.domains = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut d = proto.clone();
                d.name = format!("d{i}");
                d.cpus = s.cpus;
                d.memory_kib = s.mib * 1024;
                if let Some(slot) = s.bank_slot {
                    d.static_mem = vec![r(0x5000_0000 + slot * 0x100_0000, s.mib << 20)];
                    d.direct_map = s.direct;
                }
                Ok(d)
            })
            .collect();
        let h = host(8);
        let m = gicv2_modules();
        let o = plans(&b, &h, &m);
        let kept = kept_memory(&b, &h);
        let ok: Vec<&DomainPlan<'_>> = o.iter().filter_map(|p| p.as_ref().ok()).collect();
        for (i, p) in ok.iter().enumerate() {
            let mine: Vec<HostRange> = p.ram.host_ranges().collect();
            for host in &mine {
                prop_assert!(kept.iter().all(|k| !k.range.overlaps(host)));
            }
            for c in &p.copies {
                prop_assert!(mine.iter().any(|r| r.contains_range(&c.dest)));
            }
            for (j, m) in p.mappings.iter().enumerate() {
                prop_assert!(p.mappings[..j].iter().all(|o| !o.guest.overlaps(&m.guest)));
            }
            for q in &ok[i + 1..] {
                prop_assert_ne!(p.vmid, q.vmid);
                prop_assert!(p.vcpu_pcpu.iter().all(|c| !q.vcpu_pcpu.contains(c)));
                for a in &mine {
                    prop_assert!(q.ram.host_ranges().all(|b| !b.overlaps(a)));
                }
            }
        }
        // Every refusal is for a reason the input explains.
        for e in o.iter().filter_map(|p| p.as_ref().err()) {
            prop_assert!(e.property.is_some(), "{}", e);
        }
    }
}

#[test]
fn bad_or_missing_kernel_names_the_module() {
    let b = boot("gicv3-plan");
    let h = host(4);
    // dom-a's kernel is a broken gzip stream; dom-b's kernel is missing.
    let mut m = Modules::default();
    m.put(
        0x4800_0000,
        MOD,
        vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff],
    );
    let o = plans(&b, &h, &m);
    let e = err(&o, 0);
    assert_eq!((e.node(), e.property), ("dom-a/kernel".into(), Some("reg")));
    assert!(matches!(e.kind, BuildErrorKind::Kernel(_)), "{e}");
    assert!(
        e.reason().to_string().starts_with("kernel: reg: "),
        "{}",
        e.reason()
    );
    let e = err(&o, 1);
    assert_eq!(
        e.kind,
        BuildErrorKind::ModuleUnreadable {
            range: r(0x4900_0000, MOD as u64)
        }
    );
}
