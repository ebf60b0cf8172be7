//! Host device-tree parsing and guest device-tree generation, against other
//! FDT crates on the same blobs.
//!
//! Inputs are the QEMU `virt` host trees with dom0less domain nodes that
//! `tessel-config`'s tests use (`gicv2-domains.dtb`, `gicv3-domains.dtb`).
//!
//! Groups, per fixture:
//! * `host_parse`: [`tessel_config::parse`] (decode the blob into an owned
//!   tree, then read the host platform and every `xen,domain` node), and
//!   [`DeviceTree::parse`] alone (the decode step), against `fdt-rs` walking
//!   every node and property of the same blob (names resolved, values
//!   touched). `fdt-rs` borrows from the blob and interprets nothing, so it
//!   is a floor, not a like-for-like parser.
//! * `guest_generate`: [`GuestDtSpec::generate`] for every valid domain,
//!   against `vm-fdt` (rust-vmm's FDT writer) emitting the very same nodes
//!   and properties, read back from Tessel's output beforehand. The
//!   `tessel-writer-replay` entry emits that sequence with Tessel's own
//!   [`FdtWriter`], which separates the writer's cost from the spec logic.
//! * `parse_and_generate`: the boot-time sequence, host parse followed by
//!   every domain's guest tree, against `fdt-rs` walking the host blob plus
//!   `vm-fdt` writing every guest tree.
//!
//! The spec of each domain is derived here the way the hypervisor derives
//! it (host frames for a direct-mapped domain, Xen's virtual layout
//! otherwise), without a passthrough partial tree: boot modules live in
//! guest memory at boot and are not part of the fixtures.

use std::hint::black_box;

use criterion::{Criterion, criterion_main};
use fdt_rs::base::{DevTree, DevTreeItem};
use fdt_rs::prelude::{FallibleIterator, PropReader};
use tessel_addr::{GuestPhysAddr, GuestRange};
use tessel_config::{DeviceTree, DomainConfig, HostPlatform, NodeId};
use tessel_guestdt::{
    ChosenSpec, FdtWriter, GICV3_GICR_STRIDE, GicSpec, GuestDtSpec, MPIDR_AFFINITY_MASK, TimerSpec,
    UartSpec,
};
use tessel_static_mem::{GUEST_RAM0, GUEST_RAM1};
use tessel_vgic::config::{XEN_GICC_BASE, XEN_GICD_BASE, XEN_GICR_BASE, xen_vcpu_mpidr};
use tessel_vpl011::Vpl011Config;

/// The fixtures, by name.
const FIXTURES: [(&str, &[u8]); 2] = [
    (
        "gicv2-domains",
        include_bytes!("../../config/tests/fixtures/gicv2-domains.dtb"),
    ),
    (
        "gicv3-domains",
        include_bytes!("../../config/tests/fixtures/gicv3-domains.dtb"),
    ),
];

/// A copy of a blob at a 4-byte aligned address, as `fdt-rs` requires.
/// The heap buffer does not move with the struct, so the offset found at
/// construction stays valid.
struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(blob: &[u8]) -> Self {
        let mut buf = vec![0u8; blob.len() + 3];
        let start = buf.as_ptr().align_offset(4);
        buf[start..start + blob.len()].copy_from_slice(blob);
        Self {
            buf,
            start,
            len: blob.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// `fdt-rs`: visits every node and property, resolving names and reading
/// values. Returns a checksum so that nothing is optimised away.
fn fdt_rs_walk(blob: &[u8]) -> usize {
    // SAFETY: `blob` comes from `Aligned::bytes`: 4-byte aligned and exactly
    // the blob's `totalsize` bytes long.
    let tree = unsafe { DevTree::new(blob) }.expect("valid blob");
    let mut items = tree.items();
    let mut sum = 0usize;
    while let Some(item) = items.next().expect("walk") {
        match item {
            DevTreeItem::Node(n) => sum += n.name().expect("node name").len(),
            DevTreeItem::Prop(p) => {
                sum += p.name().expect("prop name").len();
                sum += p.raw().iter().map(|&b| usize::from(b)).sum::<usize>();
            }
        }
    }
    sum
}

/// Redistributor frames for `n` vCPUs carved from the front of `regions`.
fn redistributors(regions: impl IntoIterator<Item = GuestRange>, n: u64) -> Vec<GuestRange> {
    let mut left = n;
    let mut out = Vec::new();
    for r in regions {
        if left == 0 {
            break;
        }
        let frames = (r.size / GICV3_GICR_STRIDE).min(left);
        left -= frames;
        out.push(GuestRange::new(r.start, frames * GICV3_GICR_STRIDE));
    }
    out
}

/// The guest tree spec of `dom` on `host`.
fn spec<'a>(host: &HostPlatform, dom: &'a DomainConfig) -> GuestDtSpec<'a> {
    let n = u64::from(dom.cpus);
    let id = GuestPhysAddr::identity;
    let (memory, gic, uart) = if dom.direct_map {
        let memory = dom
            .static_mem
            .iter()
            .map(|r| GuestRange::new(id(r.start), r.size));
        let gicd = id(host.gic.gicd.start);
        let gic = match host.gic.gicc {
            Some(gicc) => GicSpec::V2 {
                gicd,
                gicc: id(gicc.start),
            },
            None => GicSpec::V3 {
                gicd,
                redistributors: redistributors(
                    host.gic
                        .redistributors
                        .iter()
                        .map(|r| GuestRange::new(id(r.start), r.size)),
                    n,
                ),
            },
        };
        let uart = host.console.as_ref().map(|c| {
            Vpl011Config::direct_mapped(c.mmio, c.intid.expect("console interrupt"))
                .expect("usable console")
        });
        (memory.collect(), gic, uart)
    } else {
        let bytes = dom.memory_kib * 1024;
        let low = bytes.min(GUEST_RAM0.size);
        let mut memory = vec![GuestRange::new(GUEST_RAM0.start, low)];
        if bytes > low {
            memory.push(GuestRange::new(GUEST_RAM1.start, bytes - low));
        }
        let gicd = GuestPhysAddr(XEN_GICD_BASE);
        let gic = match host.gic.gicc {
            Some(_) => GicSpec::V2 {
                gicd,
                gicc: GuestPhysAddr(XEN_GICC_BASE),
            },
            None => GicSpec::V3 {
                gicd,
                redistributors: vec![GuestRange::new(
                    GuestPhysAddr(XEN_GICR_BASE),
                    n * GICV3_GICR_STRIDE,
                )],
            },
        };
        (memory, gic, Some(Vpl011Config::VIRTUAL))
    };
    GuestDtSpec {
        // DT `reg` of a cpu node holds the affinity fields only.
        cpus: (0..dom.cpus as usize)
            .map(|i| xen_vcpu_mpidr(i) & MPIDR_AFFINITY_MASK)
            .collect(),
        cpu_compatible: String::from("arm,armv8"),
        memory,
        gic,
        timer: TimerSpec::default(),
        vpl011: uart
            .filter(|_| dom.vpl011)
            .map(|u| UartSpec::sbsa(u.base, u.spi)),
        chosen: ChosenSpec {
            bootargs: dom.bootargs().map(String::from),
            stdout_path: None,
            initrd: None,
        },
        partial_dtb: None,
    }
}

/// Every valid domain's spec.
fn specs(cfg: &tessel_config::BootConfig) -> Vec<GuestDtSpec<'_>> {
    cfg.valid_domains().map(|d| spec(&cfg.host, d)).collect()
}

/// The calls a writer makes to emit a tree, read from an existing blob.
enum Step {
    Begin(String),
    Prop(String, Vec<u8>),
    End,
}

/// A tree as a flat call sequence, plus its header fields.
struct Script {
    steps: Vec<Step>,
    memreserve: Vec<(u64, u64)>,
}

impl Script {
    fn of(blob: &[u8]) -> Self {
        let tree = DeviceTree::parse(blob).expect("generated tree parses");
        let mut steps = Vec::new();
        Self::node(&tree, tree.root(), &mut steps);
        Self {
            steps,
            memreserve: tree.memreserve().to_vec(),
        }
    }

    fn node(tree: &DeviceTree, id: NodeId, steps: &mut Vec<Step>) {
        let node = tree.node(id);
        steps.push(Step::Begin(node.name.clone()));
        for p in &node.props {
            steps.push(Step::Prop(p.name.clone(), p.value.clone()));
        }
        for &child in &node.children {
            Self::node(tree, child, steps);
        }
        steps.push(Step::End);
    }

    /// Emits the script with `vm-fdt`.
    fn vm_fdt(&self) -> Vec<u8> {
        let reserve: Vec<_> = self
            .memreserve
            .iter()
            .map(|&(a, s)| vm_fdt::FdtReserveEntry::new(a, s).expect("reserve entry"))
            .collect();
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&reserve).expect("writer");
        let mut open = Vec::new();
        for step in &self.steps {
            match step {
                Step::Begin(name) => open.push(w.begin_node(name).expect("begin")),
                Step::Prop(name, value) => w.property(name, value).expect("property"),
                Step::End => w.end_node(open.pop().expect("open node")).expect("end"),
            }
        }
        w.finish().expect("finish")
    }

    /// Emits the script with Tessel's writer.
    fn tessel(&self) -> Vec<u8> {
        let mut w = FdtWriter::new();
        for &(a, s) in &self.memreserve {
            w.add_mem_reserve(a, s);
        }
        for step in &self.steps {
            match step {
                Step::Begin(name) => w.begin_node(name).expect("begin"),
                Step::Prop(name, value) => w.property(name, value).expect("property"),
                Step::End => w.end_node().expect("end"),
            }
        }
        w.finish().expect("finish")
    }
}

fn host_parse(c: &mut Criterion) {
    for (name, blob) in FIXTURES {
        let aligned = Aligned::new(blob);
        let mut group = c.benchmark_group(format!("host_parse/{name}"));
        group.bench_function("fdt-rs-walk", |b| {
            b.iter(|| fdt_rs_walk(black_box(aligned.bytes())))
        });
        group.bench_function("tessel-config-tree", |b| {
            b.iter(|| DeviceTree::parse(black_box(blob)).expect("parse"))
        });
        group.bench_function("tessel-config-parse", |b| {
            b.iter(|| tessel_config::parse(black_box(blob)).expect("parse"))
        });
        group.finish();
    }
}

fn guest_generate(c: &mut Criterion) {
    for (name, blob) in FIXTURES {
        let cfg = tessel_config::parse(blob).expect("parse");
        let specs = specs(&cfg);
        let scripts: Vec<Script> = specs
            .iter()
            .map(|s| Script::of(&s.generate().expect("generate")))
            .collect();
        // The replays describe the same trees as the originals.
        for (s, script) in specs.iter().zip(&scripts) {
            let want = DeviceTree::parse(&s.generate().unwrap()).unwrap();
            assert_eq!(DeviceTree::parse(&script.vm_fdt()).unwrap(), want);
            assert_eq!(DeviceTree::parse(&script.tessel()).unwrap(), want);
        }
        let mut group = c.benchmark_group(format!("guest_generate/{name}"));
        group.bench_function("vm-fdt-replay", |b| {
            b.iter(|| scripts.iter().map(|s| s.vm_fdt().len()).sum::<usize>())
        });
        group.bench_function("tessel-writer-replay", |b| {
            b.iter(|| scripts.iter().map(|s| s.tessel().len()).sum::<usize>())
        });
        group.bench_function("tessel-guestdt", |b| {
            b.iter(|| {
                black_box(&specs)
                    .iter()
                    .map(|s| s.generate().expect("generate").len())
                    .sum::<usize>()
            })
        });
        group.finish();
    }
}

fn parse_and_generate(c: &mut Criterion) {
    for (name, blob) in FIXTURES {
        let aligned = Aligned::new(blob);
        let cfg = tessel_config::parse(blob).expect("parse");
        let scripts: Vec<Script> = specs(&cfg)
            .iter()
            .map(|s| Script::of(&s.generate().expect("generate")))
            .collect();
        let mut group = c.benchmark_group(format!("parse_and_generate/{name}"));
        group.bench_function("fdt-rs-walk+vm-fdt", |b| {
            b.iter(|| {
                fdt_rs_walk(black_box(aligned.bytes()))
                    + scripts.iter().map(|s| s.vm_fdt().len()).sum::<usize>()
            })
        });
        group.bench_function("tessel", |b| {
            b.iter(|| {
                let cfg = tessel_config::parse(black_box(blob)).expect("parse");
                specs(&cfg)
                    .iter()
                    .map(|s| s.generate().expect("generate").len())
                    .sum::<usize>()
            })
        });
        group.finish();
    }
}

/// Runs every group. The short default timings keep a full run quick;
/// command-line options (`--measurement-time`, `--warm-up-time`,
/// `--sample-size`) override them.
fn benches() {
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .configure_from_args();
    host_parse(&mut c);
    guest_generate(&mut c);
    parse_and_generate(&mut c);
    c.final_summary();
}

criterion_main!(benches);
