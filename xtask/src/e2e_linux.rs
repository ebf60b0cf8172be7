//! End-to-end scenarios with real Linux guests (`cargo xtask e2e --linux`).
//!
//! Debian's arm64 cloud kernel and a busybox initramfs (see [`crate::linux`])
//! boot in Tessel domains on QEMU `virt`, GICv2 and GICv3. The initramfs
//! `/init` reads its checks from the kernel command line and prints
//! `PASS <check>`; the console multiplexer puts the domain's name in front of
//! every line, so the expectations read `(domU1) PASS virtio-blk`.
//!
//! Two boots per GIC version keep the suite short while covering every case:
//!
//! | boot | domains |
//! | --- | --- |
//! | `linux-static` | `nostatic` (direct-map without static memory) and `overlap` (a static bank over a boot module), both refused; `domU1`: direct-mapped on `xen,static-mem`, 2 vCPUs, QEMU's virtio-blk passed through without an IOMMU; `domU2`: ordinary domain on static memory |
//! | `linux-heap` | `noforce` (passthrough without `xen,force-assign-without-iommu`) and `notdirect` (passthrough into an ordinary domain), both refused; `domU1`: direct-mapped, 1 vCPU, virtio-blk; `domU2`: ordinary domain with RAM from the heap |
//!
//! `domU1` checks that `/proc/iomem` lists its RAM exactly at the static
//! bank, that the passed-through disk reads back the text this run wrote into
//! the disk image (the virtio rings and buffers are DMA'd by QEMU to the
//! guest-physical addresses the driver chose, which works only because they
//! equal the host-physical ones), and in `linux-static` that both vCPUs are
//! online. `domU2` checks its RAM at Xen's guest RAM base.
//!
//! Host memory plan (QEMU `-m 1G`, RAM 0x4000_0000..0x8000_0000): the
//! hypervisor at 0x4020_0000, its DTB at 0x4800_0000, boot modules from
//! [`MODULES`], static banks [`BANK_DIRECT`] and [`BANK_ORDINARY`]; an
//! ordinary domain without static memory gets heap RAM from what is left.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::e2e;
use crate::linux;
use crate::qemu;
use crate::scenario::{Domain, Gic, Module, Scenario};
use crate::util::{self, Result};

/// Host RAM of every Linux boot, MiB.
const HOST_RAM_MIB: u64 = 1024;
/// First boot-module address; modules follow each other, 2 MiB aligned.
const MODULES: u64 = 0x5000_0000;
/// Static bank of the direct-mapped domain.
const BANK_DIRECT: u64 = 0x6000_0000;
/// Static bank of the ordinary domain on static memory.
const BANK_ORDINARY: u64 = 0x6800_0000;
/// Size of each Linux domain's RAM (128 MiB).
const GUEST_RAM: u64 = 0x800_0000;
/// Xen's guest RAM base for ordinary domains.
const GUEST_RAM_BASE: u64 = 0x4000_0000;
/// The virtio-mmio transport QEMU fills first (the highest of the 32).
const VIRTIO_NODE: &str = "/virtio_mmio@a003e00";
/// Its 4 KiB page, passed through with `xen,reg`.
const VIRTIO_PAGE: u64 = 0x0a00_3000;
/// Its SPI in the host DT's encoding (INTID 79).
const VIRTIO_SPI: u32 = 0x2f;
/// Per-boot time limit, seconds.
const TIMEOUT_SECS: u64 = 60;

/// Console lines that fail a Linux scenario wherever they appear.
const FORBIDDEN: &[&str] = &[
    " FAIL ",
    "PANIC",
    "Kernel panic",
    "Oops",
    "BUG:",
    "Unable to handle",
    "Internal error",
    "rcu_sched detected stalls",
    "rcu: INFO:",
    "timeout after",
];

/// Files shared by the scenarios of one run.
pub struct LinuxImages {
    /// The arm64 kernel `Image`.
    pub kernel: PathBuf,
    /// The same kernel gzip-compressed (`gzip -9`), for a domain whose
    /// kernel the hypervisor must inflate (Debian 12's arm64 `vmlinuz` is
    /// an uncompressed Image, so the gzip path needs its own module).
    pub kernel_gz: PathBuf,
    /// The initramfs (newc cpio).
    pub initramfs: PathBuf,
    /// A tiny stand-in kernel for domains that must be refused before loading.
    pub dummy: PathBuf,
    /// Partial DT giving the virtio-blk device, forced without an IOMMU.
    pub pt_forced: PathBuf,
    /// The same device without `xen,force-assign-without-iommu`.
    pub pt_unforced: PathBuf,
    /// Text written at the start of every disk image of this run.
    pub disk_text: String,
}

/// The partial device tree for the virtio-blk passthrough.
pub fn partial_dts(force: bool) -> String {
    let force = if force {
        "\t\t\txen,force-assign-without-iommu;\n"
    } else {
        ""
    };
    format!(
        "/dts-v1/;\n/ {{\n\t#address-cells = <2>;\n\t#size-cells = <1>;\n\
         \tpassthrough {{\n\t\tcompatible = \"simple-bus\";\n\t\tranges;\n\
         \t\t#address-cells = <2>;\n\t\t#size-cells = <1>;\n\
         \t\tvirtio@a003e00 {{\n\t\t\tcompatible = \"virtio,mmio\";\n\
         \t\t\treg = <0x0 0x0a003e00 0x200>;\n\t\t\tinterrupt-parent = <65000>;\n\
         \t\t\tinterrupts = <0 0x{VIRTIO_SPI:x} 1>;\n\t\t\tdma-coherent;\n\
         \t\t\txen,path = \"{VIRTIO_NODE}\";\n\
         \t\t\txen,reg = <0x0 0x{VIRTIO_PAGE:x} 0x1000 0x0 0x{VIRTIO_PAGE:x}>;\n\
         {force}\t\t}};\n\t}};\n}};\n"
    )
}

fn compile_dts(dts: &str, out: &Path) -> Result<()> {
    let src = out.with_extension("dts");
    util::write(&src, dts)?;
    util::run(
        std::process::Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(out)
            .arg(&src),
    )?;
    Ok(())
}

/// Fetches the kernel (cached under `target/linux`), builds the initramfs
/// and the partial device trees. A failed fetch is an error: the suite never
/// skips the Linux guests silently.
pub fn prepare() -> Result<LinuxImages> {
    let dir = util::artifacts().join("linux");
    let guest = linux::fetch(&dir).map_err(|e| {
        format!("cannot fetch the Debian arm64 kernel (is the network reachable?): {e}")
    })?;
    let kernel_gz = dir.join("vmlinuz.gz");
    gzip_once(&guest.kernel, &kernel_gz)?;
    let initramfs = dir.join("initramfs.cpio");
    util::write(&initramfs, linux::initramfs(&guest)?)?;
    let e2e = util::artifacts().join("e2e");
    util::mkdir(&e2e)?;
    let dummy = e2e.join("linux-dummy-kernel.bin");
    util::write(&dummy, [0u8; 4096])?;
    let pt_forced = e2e.join("linux-pt-forced.dtb");
    compile_dts(&partial_dts(true), &pt_forced)?;
    let pt_unforced = e2e.join("linux-pt-unforced.dtb");
    compile_dts(&partial_dts(false), &pt_unforced)?;
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(LinuxImages {
        kernel: guest.kernel,
        kernel_gz,
        initramfs,
        dummy,
        pt_forced,
        pt_unforced,
        disk_text: format!("tessel-disk-{}-{nonce}", std::process::id()),
    })
}

/// Writes `gzip -9 -n` of `src` to `out` unless `out` is already newer.
fn gzip_once(src: &Path, out: &Path) -> Result<()> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(o), Some(s)) = (modified(out), modified(src))
        && o >= s
    {
        return Ok(());
    }
    let tmp = out.with_extension("gz.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let status = std::process::Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(src)
        .stdout(file)
        .status()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !status.success() {
        return Err(format!("gzip {} failed: {status}", src.display()));
    }
    std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))
}

/// Hands out boot-module addresses in order, 2 MiB aligned.
struct Placer {
    next: u64,
}

impl Placer {
    fn module(&mut self, file: &Path) -> Result<Module> {
        let size = std::fs::metadata(file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .len();
        let m = Module {
            file: file.to_path_buf(),
            addr: self.next,
            size,
        };
        self.next = (self.next + size).next_multiple_of(0x20_0000);
        Ok(m)
    }
}

/// What a domain is and what its `/init` checks.
struct Spec<'a> {
    name: &'a str,
    cpus: u32,
    direct_map: bool,
    static_mem: Vec<(u64, u64)>,
    passthrough: Option<&'a Path>,
    /// Linux guest (checked) or a stand-in that must be refused.
    linux: bool,
    /// The kernel module is the gzip-compressed kernel.
    gzip: bool,
}

fn domain(spec: &Spec<'_>, img: &LinuxImages, place: &mut Placer) -> Result<Domain> {
    let mut bootargs = String::from("console=ttyAMA0 panic=-1");
    let (kernel, ramdisk) = if spec.linux {
        let ram_base = if spec.direct_map {
            spec.static_mem.first().map_or(GUEST_RAM_BASE, |b| b.0)
        } else {
            GUEST_RAM_BASE
        };
        bootargs.push_str(&format!(
            " tessel.ram={ram_base:x}-{:x}",
            ram_base + GUEST_RAM - 1
        ));
        if spec.passthrough.is_some() {
            bootargs.push_str(&format!(" tessel.disk={}", img.disk_text));
        }
        if spec.cpus > 1 {
            bootargs.push_str(&format!(" tessel.cpus={}", spec.cpus));
        }
        let kernel = if spec.gzip {
            &img.kernel_gz
        } else {
            &img.kernel
        };
        (place.module(kernel)?, Some(place.module(&img.initramfs)?))
    } else {
        (place.module(&img.dummy)?, None)
    };
    let device_tree = spec.passthrough.map(|p| place.module(p)).transpose()?;
    Ok(Domain {
        name: spec.name.into(),
        cpus: spec.cpus,
        memory_kib: GUEST_RAM / 1024,
        vpl011: true,
        direct_map: spec.direct_map,
        static_mem: spec.static_mem.clone(),
        kernel,
        ramdisk,
        device_tree,
        bootargs,
    })
}

/// Console lines a good Linux domain must print.
fn linux_expect(spec: &Spec<'_>) -> Vec<String> {
    let mut checks = vec!["userspace", "iomem-ram"];
    if spec.passthrough.is_some() {
        checks.push("virtio-blk");
    }
    if spec.cpus > 1 {
        checks.push("smp");
    }
    let p = format!("({}) ", spec.name);
    let mut e: Vec<String> = checks.iter().map(|c| format!("{p}PASS {c}")).collect();
    e.push(format!("{p}DONE"));
    e.push(format!("domain {} stopped: powered off", spec.name));
    e
}

/// A Linux boot: the scenario and the refusals its console must show,
/// as (domain, error text).
pub struct LinuxBoot {
    /// Machine, domains, expected and forbidden lines.
    pub sc: Scenario,
    /// Each refused domain and the text its error must contain.
    pub refusals: Vec<(String, String)>,
}

/// The refusals missing from the console: each needs a `(tessel)` line
/// that says the domain was refused and contains the error text (which
/// names the property, and the node for passthrough errors).
fn check_refusals(boot: &LinuxBoot, out: &str) -> Vec<String> {
    boot.refusals
        .iter()
        .filter(|(name, error)| {
            !out.lines().any(|l| {
                l.starts_with("(tessel) ")
                    && (l.contains(&format!("domain {name} refused: "))
                        || l.contains(&format!("domain refused: {name}: ")))
                    && l.contains(error.as_str())
            })
        })
        .map(|(name, error)| format!("missing: domain {name} refused with `{error}`"))
        .collect()
}

/// Whether the configuration parser refuses the domain already; the other
/// rules (bank against module, passthrough) are the hypervisor's.
fn parser_refuses(spec: &Spec<'_>) -> bool {
    spec.direct_map && spec.static_mem.is_empty()
}

/// One Linux boot: `bad` domains (with the error each must be refused with)
/// before the good ones, so a refused domain's claims are given back before
/// the good domain asks for the same device.
fn boot(
    name: &str,
    gic: Gic,
    bad: &[(Spec<'_>, String)],
    good: &[Spec<'_>],
    img: &LinuxImages,
) -> Result<LinuxBoot> {
    let mut place = Placer { next: MODULES };
    let mut domains = Vec::new();
    let mut expect = Vec::new();
    let mut refusals = Vec::new();
    let mut forbid: Vec<String> = FORBIDDEN.iter().map(|s| s.to_string()).collect();
    for (spec, error) in bad {
        let mut d = domain(spec, img, &mut place)?;
        let mut error = error.clone();
        if spec.name == "overlap" {
            // The bank starts on the domain's own kernel module.
            let bank = d.kernel.addr;
            d.static_mem = vec![(bank, GUEST_RAM)];
            error = format!(
                "{error} {bank:#x}+{GUEST_RAM:#x} overlaps the multiboot,kernel module of overlap"
            );
        }
        domains.push(d);
        refusals.push((spec.name.to_string(), error));
        forbid.push(format!("({}) ", spec.name));
    }
    for spec in good {
        domains.push(domain(spec, img, &mut place)?);
        expect.extend(linux_expect(spec));
        forbid.push(format!("refused: {}:", spec.name));
        forbid.push(format!("domain {} refused", spec.name));
    }
    let smp = good.iter().map(|s| s.cpus).sum();
    let disk = util::artifacts()
        .join("e2e")
        .join(format!("{name}-gic{}.disk", gic.qemu_name()));
    let sc = Scenario {
        name: format!("{name}-gic{}", gic.qemu_name()),
        gic,
        cpu: "cortex-a57",
        smp,
        ram_mib: HOST_RAM_MIB,
        domains,
        timeout_secs: TIMEOUT_SECS,
        expect,
        forbid,
        expect_shutdown: true,
        expect_refused: bad
            .iter()
            .filter(|(s, _)| parser_refuses(s))
            .map(|(s, _)| s.name.to_string())
            .collect(),
        host_dts: format!("\n&{{{VIRTIO_NODE}}} {{\n\txen,passthrough;\n}};\n"),
        qemu_args: vec![
            "-drive".into(),
            format!("file={},if=none,format=raw,id=d0", disk.display()),
            "-device".into(),
            "virtio-blk-device,drive=d0".into(),
        ],
        full_image: false,
    };
    Ok(LinuxBoot { sc, refusals })
}

/// The disk image of a scenario: the run's text, padded to 64 KiB.
fn disk_image(sc: &Scenario, text: &str) -> Result<()> {
    let path = util::artifacts()
        .join("e2e")
        .join(format!("{}.disk", sc.name));
    let mut data = text.as_bytes().to_vec();
    data.resize(64 * 1024, 0);
    util::write(&path, data)
}

/// The Linux scenarios for one GIC version.
pub fn scenarios(gic: Gic, img: &LinuxImages) -> Result<Vec<LinuxBoot>> {
    let forced = Some(img.pt_forced.as_path());
    let unforced = Some(img.pt_unforced.as_path());
    let direct = |cpus| Spec {
        name: "domU1",
        cpus,
        direct_map: true,
        static_mem: vec![(BANK_DIRECT, GUEST_RAM)],
        passthrough: forced,
        linux: true,
        gzip: false,
    };
    // The ordinary domain's kernel is gzip-compressed in `linux-heap`.
    let ordinary = |static_mem, gzip| Spec {
        name: "domU2",
        cpus: 1,
        direct_map: false,
        static_mem,
        passthrough: None,
        linux: true,
        gzip,
    };
    let refused = |name, direct_map, static_mem, passthrough| Spec {
        name,
        cpus: 1,
        direct_map,
        static_mem,
        passthrough,
        linux: false,
        gzip: false,
    };
    let node = "/passthrough/virtio@a003e00";
    let mut boots = vec![
        boot(
            "linux-static",
            gic,
            &[
                (
                    refused("nostatic", true, vec![], None),
                    "direct-map: requires xen,static-mem".into(),
                ),
                (
                    refused("overlap", false, vec![], None),
                    "xen,static-mem: bank".into(),
                ),
            ],
            &[direct(2), ordinary(vec![(BANK_ORDINARY, GUEST_RAM)], false)],
            img,
        )?,
        boot(
            "linux-heap",
            gic,
            &[
                (
                    refused("noforce", true, vec![(BANK_ORDINARY, GUEST_RAM)], unforced),
                    format!(
                        "{node}: no IOMMU protects this device; add xen,force-assign-without-iommu"
                    ),
                ),
                (
                    refused("notdirect", false, vec![], forced),
                    format!(
                        "{node}: xen,force-assign-without-iommu: device would be assigned without an IOMMU to a domain that is not direct-mapped"
                    ),
                ),
            ],
            &[direct(1), ordinary(vec![], true)],
            img,
        )?,
    ];
    // The 2-vCPU direct-mapped boot once more on QEMU's `max` CPU, whose
    // guests use pointer authentication and SVE; GICv3 only, since `max`
    // under TCG is several times slower than cortex-a57.
    if gic == Gic::V3 {
        let mut sc = boots[0].sc.clone();
        sc.name = sc.name.replacen("linux-static", "linux-static-max", 1);
        sc.cpu = "max";
        sc.timeout_secs *= 2;
        let refusals = boots[0].refusals.clone();
        boots.push(LinuxBoot { sc, refusals });
    }
    Ok(boots)
}

/// Every console line must come from the hypervisor or a domain that is
/// meant to run, with its prefix: no unprefixed or interleaved output.
fn check_prefixes(sc: &Scenario, out: &str) -> Vec<String> {
    let mut prefixes = vec!["(tessel) ".to_string()];
    prefixes.extend(sc.domains.iter().map(|d| format!("({}) ", d.name)));
    out.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("[xtask:"))
        .filter(|l| !prefixes.iter().any(|p| l.starts_with(p.as_str())))
        .take(5)
        .map(|l| format!("line without a domain prefix: {l}"))
        .collect()
}

/// Fetches the guest, then runs the Linux scenarios for `gics` (names
/// filtered by `only`). Prints one line per scenario with its time; returns
/// (passed, failed).
pub fn run(hypervisor: &Path, gics: &[Gic], only: Option<&str>) -> Result<(usize, usize)> {
    let t0 = Instant::now();
    let img = prepare()?;
    println!(
        "e2e linux guest ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let dir = util::artifacts().join("e2e");
    let (mut passed, mut failed) = (0, 0);
    for &gic in gics {
        for boot in scenarios(gic, &img)? {
            let sc = &boot.sc;
            if only.is_some_and(|o| !sc.name.contains(o)) {
                continue;
            }
            let start = Instant::now();
            let log = dir.join(format!("{}.log", sc.name));
            let problems = match disk_image(sc, &img.disk_text)
                .and_then(|_| qemu::make_dtb(sc))
                .and_then(|dtb| {
                    sc.preflight(&util::read(&dtb)?)
                        .map_err(|e| format!("pre-flight: {e}"))?;
                    qemu::run_captured(sc, hypervisor, &dtb, &log)
                }) {
                Ok(out) => {
                    let mut p = e2e::check(sc, &out);
                    p.extend(check_refusals(&boot, &out.output));
                    p.extend(check_prefixes(sc, &out.output));
                    p
                }
                Err(e) => vec![e],
            };
            let secs = start.elapsed().as_secs_f64();
            if problems.is_empty() {
                passed += 1;
                println!("e2e {:<24} ok ({secs:.1} s)", sc.name);
            } else {
                failed += 1;
                println!(
                    "e2e {:<24} FAILED ({secs:.1} s, log: {})",
                    sc.name,
                    log.display()
                );
                for p in problems.iter().take(12) {
                    println!("    {p}");
                }
            }
        }
    }
    println!(
        "linux: {passed} passed, {failed} failed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok((passed, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> LinuxImages {
        let any = util::root().join("Cargo.toml");
        LinuxImages {
            kernel: any.clone(),
            kernel_gz: util::root().join("LICENSE"),
            initramfs: any.clone(),
            dummy: any.clone(),
            pt_forced: any.clone(),
            pt_unforced: any,
            disk_text: "t".into(),
        }
    }

    #[test]
    fn partial_dt_names_the_device_and_force_only_when_asked() {
        let f = partial_dts(true);
        assert!(f.contains("xen,path = \"/virtio_mmio@a003e00\";"));
        assert!(f.contains("xen,reg = <0x0 0xa003000 0x1000 0x0 0xa003000>;"));
        assert!(f.contains("interrupts = <0 0x2f 1>;"));
        assert!(f.contains("xen,force-assign-without-iommu;"));
        assert!(!partial_dts(false).contains("force-assign"));
    }

    #[test]
    fn scenarios_cover_the_issue_and_keep_modules_apart() {
        for gic in [Gic::V2, Gic::V3] {
            let all = scenarios(gic, &images()).unwrap();
            assert_eq!(all.len(), if gic == Gic::V3 { 3 } else { 2 });
            let s = &all[0].sc;
            assert_eq!(all[1].refusals.len(), 2);
            assert!(s.expect.iter().any(|e| e == "(domU1) PASS smp"));
            assert!(s.expect.iter().any(|e| e == "(domU1) PASS virtio-blk"));
            assert!(s.expect.iter().any(|e| e == "(domU2) PASS iomem-ram"));
            let d1 = &s.domains[2];
            assert!(d1.bootargs.contains("tessel.ram=60000000-67ffffff"));
            assert!(
                s.domains[3]
                    .bootargs
                    .contains("tessel.ram=40000000-47ffffff")
            );
            // Only linux-heap's ordinary domain boots the gzip kernel.
            let gz: Vec<(&str, &str)> = all
                .iter()
                .flat_map(|b| b.sc.domains.iter().map(move |d| (b.sc.name.as_str(), d)))
                .filter(|(_, d)| d.kernel.file.ends_with("LICENSE"))
                .map(|(sc, d)| (sc, d.name.as_str()))
                .collect();
            assert_eq!(gz, [(all[1].sc.name.as_str(), "domU2")]);
            assert!(all[1].sc.name.starts_with("linux-heap"));
            for sc in all.iter().map(|b| &b.sc) {
                let mut mods: Vec<&Module> = sc
                    .domains
                    .iter()
                    .flat_map(|d| {
                        std::iter::once(&d.kernel)
                            .chain(d.ramdisk.as_ref())
                            .chain(d.device_tree.as_ref())
                    })
                    .collect();
                mods.sort_by_key(|m| m.addr);
                for w in mods.windows(2) {
                    assert!(w[0].addr + w[0].size <= w[1].addr);
                }
                let last = mods.last().unwrap();
                assert!(last.addr + last.size <= BANK_DIRECT);
            }
        }
    }

    #[test]
    fn prefix_check_flags_unprefixed_lines() {
        let boot = scenarios(Gic::V3, &images()).unwrap().remove(0);
        let sc = &boot.sc;
        let ok = "(tessel) hi\n(domU1) PASS userspace\n\n[xtask: x]\n";
        assert!(check_prefixes(sc, ok).is_empty());
        assert_eq!(check_prefixes(sc, "PASS userspace\n").len(), 1);
        let refused = "(tessel) domain refused: nostatic: direct-map: requires xen,static-mem\n\
                       (tessel) domain overlap refused: xen,static-mem: bank 0x50200000+0x8000000 overlaps the multiboot,kernel module of overlap\n";
        assert!(check_refusals(&boot, refused).is_empty());
        assert_eq!(
            check_refusals(
                &boot,
                "(domU1) domain overlap refused: xen,static-mem: bank"
            )
            .len(),
            2
        );
    }
}
