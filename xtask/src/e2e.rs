//! End-to-end scenarios: the hypervisor on QEMU with test guests, checked
//! from the captured console.
//!
//! Host memory plan on QEMU `virt` with 2 GiB of RAM (0x4000_0000..0xC000_0000):
//! QEMU loads the hypervisor at 0x4020_0000 and its DTB 128 MiB above RAM
//! base (0x4800_0000); guest
//! images are loaded at [`MODULE_BASE`] + 16 MiB × n; static banks of
//! direct-mapped domains are 64 MiB each from [`BANK_A`].

use std::fmt::Write as _;
use std::path::Path;

use crate::build::Images;
use crate::qemu;
use crate::scenario::{Domain, Gic, Module, Scenario};
use crate::util::{self, Result};

/// Load address of the first guest image.
pub const MODULE_BASE: u64 = 0x5000_0000;
/// Spacing between guest images.
pub const MODULE_STRIDE: u64 = 0x100_0000;
/// First static bank.
pub const BANK_A: u64 = 0x6000_0000;
/// Second static bank.
pub const BANK_B: u64 = 0x6800_0000;
/// Static bank size (64 MiB).
pub const BANK_SIZE: u64 = 0x400_0000;
/// RAM of an ordinary domain, KiB (64 MiB).
const ORDINARY_KIB: u64 = 64 * 1024;
/// Host GICv2 virtual interface control frame (GICH) on QEMU virt.
const HOST_GICH_V2: u64 = 0x0803_0000;
/// Host GICv3 ITS frame on QEMU virt (not given to any guest).
const HOST_ITS_V3: u64 = 0x0808_0000;
/// Host PL031 RTC on QEMU virt (not passed through).
const HOST_RTC: u64 = 0x0901_0000;
/// An address with nothing behind it in any guest (host PCIe window).
const HOLE: u64 = 0x3000_0000;

/// How a test-guest domain is set up.
struct GuestSpec<'a> {
    name: &'a str,
    modes: &'a str,
    cpus: u32,
    bank: Option<u64>,
    forbid: Vec<u64>,
}

/// Checks the test guest prints for a mode list.
fn checks_for(modes: &str) -> Vec<String> {
    let mut v: Vec<String> = ["console", "dtb", "gic", "sgi", "timer"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for m in modes.split(',') {
        match m {
            "smp" => v.push("cpu-on".into()),
            "direct-map" => v.push("ram-1to1".into()),
            "hostile" => v.push("hostile".into()),
            "soak" => v.push("soak".into()),
            _ => {}
        }
    }
    v
}

fn guest_domain(g: &GuestSpec<'_>, slot: u64, image: &Path, size: u64) -> Domain {
    let mut bootargs = format!("tessel-test={} tessel-name={}", g.modes, g.name);
    if let Some(b) = g.bank {
        bootargs.push_str(&format!(" tessel-bank=0x{b:x}"));
    }
    if !g.forbid.is_empty() {
        let list: Vec<String> = g.forbid.iter().map(|a| format!("0x{a:x}")).collect();
        bootargs.push_str(&format!(" tessel-forbid={}", list.join(",")));
    }
    Domain {
        name: g.name.into(),
        cpus: g.cpus,
        memory_kib: g.bank.map_or(ORDINARY_KIB, |_| BANK_SIZE / 1024),
        vpl011: true,
        direct_map: g.bank.is_some(),
        static_mem: g.bank.map(|b| vec![(b, BANK_SIZE)]).unwrap_or_default(),
        kernel: Module {
            file: image.to_path_buf(),
            addr: MODULE_BASE + slot * MODULE_STRIDE,
            size,
        },
        ramdisk: None,
        device_tree: None,
        bootargs,
    }
}

/// Expectations for a guest: each check passed, then DONE.
fn guest_expect(g: &GuestSpec<'_>) -> Vec<String> {
    let mut e: Vec<String> = checks_for(g.modes)
        .into_iter()
        .map(|c| format!("{}: PASS {c}", g.name))
        .collect();
    for a in &g.forbid {
        e.push(format!("{}: PASS forbidden@0x{a:x}", g.name));
    }
    e.push(format!("{}: DONE", g.name));
    e
}

fn scenario(
    name: &str,
    gic: Gic,
    smp: u32,
    guests: &[GuestSpec<'_>],
    image: &Path,
) -> Result<Scenario> {
    let size = std::fs::metadata(image)
        .map_err(|e| format!("{}: {e}", image.display()))?
        .len();
    let domains = guests
        .iter()
        .enumerate()
        .map(|(i, g)| guest_domain(g, i as u64, image, size))
        .collect();
    Ok(Scenario {
        name: format!("{name}-gic{}", gic.qemu_name()),
        gic,
        cpu: "cortex-a57",
        smp,
        ram_mib: 2048,
        domains,
        timeout_secs: 60,
        expect: guests.iter().flat_map(guest_expect).collect(),
        // A failed check in any guest, or a hypervisor panic.
        forbid: vec![": FAIL ".into(), "PANIC".into()],
        expect_shutdown: true,
        expect_refused: vec![],
        host_dts: String::new(),
        qemu_args: vec![],
        full_image: false,
    })
}

/// The default demo of `cargo xtask run`: a direct-mapped domain on a
/// static bank and an ordinary domain, both running the test guest.
pub fn demo(gic: Gic, images: &Images) -> Result<Scenario> {
    scenario(
        "demo",
        gic,
        2,
        &[
            GuestSpec {
                name: "dom1",
                modes: "basic,direct-map",
                cpus: 1,
                bank: Some(BANK_A),
                forbid: vec![],
            },
            GuestSpec {
                name: "dom2",
                modes: "basic",
                cpus: 1,
                bank: None,
                forbid: vec![],
            },
        ],
        &images.test_guest,
    )
}

/// All e2e scenarios for one GIC version.
///
/// Only `basic` has an ordinary (non-direct-mapped) domain; the others use
/// direct-mapped domains, Tessel's core case: a hostile guest whose vGIC
/// and vPL011 sit at the host's own addresses is the harder isolation test.
pub fn scenarios(gic: Gic, images: &Images) -> Result<Vec<Scenario>> {
    let img = &images.test_guest;
    let gic_private = match gic {
        Gic::V2 => HOST_GICH_V2,
        Gic::V3 => HOST_ITS_V3,
    };
    let mut v = vec![
        scenario(
            "basic",
            gic,
            2,
            &[
                GuestSpec {
                    name: "dom1",
                    modes: "basic,direct-map",
                    cpus: 1,
                    bank: Some(BANK_A),
                    forbid: vec![],
                },
                GuestSpec {
                    name: "dom2",
                    modes: "basic",
                    cpus: 1,
                    bank: None,
                    forbid: vec![],
                },
            ],
            img,
        )?,
        scenario(
            "smp",
            gic,
            2,
            &[GuestSpec {
                name: "dom1",
                modes: "basic,smp,direct-map",
                cpus: 2,
                bank: Some(BANK_A),
                forbid: vec![],
            }],
            img,
        )?,
        scenario(
            "forbidden",
            gic,
            2,
            &[
                GuestSpec {
                    name: "dom1",
                    modes: "basic,direct-map,forbidden",
                    cpus: 1,
                    bank: Some(BANK_A),
                    forbid: vec![BANK_B, gic_private, HOST_RTC, HOLE],
                },
                GuestSpec {
                    name: "dom2",
                    modes: "basic,direct-map",
                    cpus: 1,
                    bank: Some(BANK_B),
                    forbid: vec![],
                },
            ],
            img,
        )?,
        scenario(
            "hostile",
            gic,
            2,
            &[
                GuestSpec {
                    name: "evil",
                    modes: "hostile",
                    cpus: 1,
                    bank: Some(BANK_B),
                    forbid: vec![],
                },
                GuestSpec {
                    name: "good",
                    modes: "basic,direct-map,soak",
                    cpus: 1,
                    bank: Some(BANK_A),
                    forbid: vec![],
                },
            ],
            img,
        )?,
    ];
    // direct-map without xen,static-mem: refused with the property named,
    // while the good domain boots.
    let mut bad = scenario(
        "bad-config",
        gic,
        2,
        &[
            GuestSpec {
                name: "good",
                modes: "basic,direct-map",
                cpus: 1,
                bank: Some(BANK_A),
                forbid: vec![],
            },
            GuestSpec {
                name: "baddom",
                modes: "basic",
                cpus: 1,
                bank: None,
                forbid: vec![],
            },
        ],
        img,
    )?;
    if let Some(d) = bad.domains.iter_mut().find(|d| d.name == "baddom") {
        d.direct_map = true;
    }
    bad.expect.retain(|e| !e.starts_with("baddom"));
    bad.expect.push("requires xen,static-mem".into());
    bad.expect.push("baddom".into());
    bad.expect_refused.push("baddom".into());
    v.push(bad);
    v.extend(per_irq_variants(&v));
    v.extend(max_cpu_variants(&v));
    Ok(v)
}

/// `basic` and `smp` again on QEMU's `max` CPU (Armv8.x/v9 with pointer
/// authentication, SVE, ...), where the rest runs on `cortex-a57` (Armv8.0):
/// the hypervisor must boot and run guests on both.
fn max_cpu_variants(base: &[Scenario]) -> Vec<Scenario> {
    ["basic", "smp"]
        .iter()
        .filter_map(|from| {
            let b = base
                .iter()
                .find(|s| s.name.starts_with(&format!("{from}-gic")))?;
            let mut s = b.clone();
            s.name = b.name.replacen(from, &format!("{from}-max"), 1);
            s.cpu = "max";
            Some(s)
        })
        .collect()
}

/// The interrupt-heavy scenarios again with the per-IRQ vGIC model, chosen
/// by `vgic=new` on the hypervisor command line; in `mixed`, dom2 keeps the
/// classic model through its own `tessel,vgic-model`, so both models run
/// side by side in one boot.
fn per_irq_variants(base: &[Scenario]) -> Vec<Scenario> {
    let variant = |from: &str, to: &str, dom_override: Option<&str>| {
        let b = base
            .iter()
            .find(|s| s.name.starts_with(&format!("{from}-gic")))?;
        let mut s = b.clone();
        s.name = b.name.replacen(from, to, 1);
        s.host_dts
            .push_str("\n/ {\n\tchosen {\n\t\txen,xen-bootargs = \"vgic=new\";\n");
        if let Some(d) = dom_override {
            let _ = write!(
                s.host_dts,
                "\t\t{d} {{\n\t\t\ttessel,vgic-model = \"classic\";\n\t\t}};\n"
            );
            s.expect.push("vGIC model: classic".into());
        }
        s.host_dts.push_str("\t};\n};\n");
        s.expect.push("vGIC model: per-IRQ".into());
        s.full_image = true;
        Some(s)
    };
    [
        variant("basic", "mixed-vgic", Some("dom2")),
        variant("smp", "smp-perirq", None),
        variant("hostile", "hostile-perirq", None),
        absent(base),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `basic` on the default image, which leaves the per-IRQ model out:
/// `vgic=new` alone falls back to the classic model (dom1, and the boot
/// report says why), while dom2, which names the model itself, is refused
/// at `tessel,vgic-model`; dom1 still runs to the end.
fn absent(base: &[Scenario]) -> Option<Scenario> {
    let b = base.iter().find(|s| s.name.starts_with("basic-gic"))?;
    let mut s = b.clone();
    s.name = b.name.replacen("basic", "perirq-absent", 1);
    s.host_dts.push_str(
        "\n/ {\n\tchosen {\n\t\txen,xen-bootargs = \"vgic=new\";\n\
         \t\tdom2 {\n\t\t\ttessel,vgic-model = \"new\";\n\t\t};\n\t};\n};\n",
    );
    s.expect.retain(|e| !e.starts_with("dom2"));
    s.expect.push(
        "domain dom2 refused: tessel,vgic-model: the per-IRQ vGIC model is not built into this hypervisor".into(),
    );
    s.expect
        .push("vGIC model: classic (vgic= names the per-IRQ model, which this build lacks)".into());
    s.forbid.push("dom2: ".into());
    Some(s)
}

/// Checks a captured run against its scenario; returns the problems.
pub fn check(sc: &Scenario, out: &qemu::Captured) -> Vec<String> {
    let mut problems = Vec::new();
    for e in &sc.expect {
        if !out.output.contains(e.as_str()) {
            problems.push(format!("missing `{e}`"));
        }
    }
    for f in &sc.forbid {
        for line in out.output.lines().filter(|l| l.contains(f.as_str())) {
            problems.push(format!("unexpected: {line}"));
        }
    }
    if sc.expect_shutdown && !out.exited {
        problems.push(format!("no clean shutdown within {} s", sc.timeout_secs));
    }
    problems
}

/// Runs the scenarios for the given GIC versions (names filtered by
/// `only` if set). Prints one line per scenario and the summary; returns
/// (passed, failed).
pub fn run(images: &Images, gics: &[Gic], only: Option<&str>) -> Result<(usize, usize)> {
    let dir = util::artifacts().join("e2e");
    util::mkdir(&dir)?;
    let (mut passed, mut failed) = (0, 0);
    for &gic in gics {
        for sc in scenarios(gic, images)? {
            if only.is_some_and(|o| !sc.name.contains(o)) {
                continue;
            }
            let log = dir.join(format!("{}.log", sc.name));
            let problems = match qemu::make_dtb(&sc).and_then(|dtb| {
                sc.preflight(&util::read(&dtb)?)
                    .map_err(|e| format!("pre-flight: {e}"))?;
                let image = if sc.full_image {
                    &images.hypervisor_full
                } else {
                    &images.hypervisor
                };
                qemu::run_captured(&sc, image, &dtb, &log)
            }) {
                Ok(out) => check(&sc, &out),
                Err(e) => vec![e],
            };
            if problems.is_empty() {
                passed += 1;
                println!("e2e {:<24} ok", sc.name);
            } else {
                failed += 1;
                println!("e2e {:<24} FAILED (log: {})", sc.name, log.display());
                for p in problems.iter().take(12) {
                    println!("    {p}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok((passed, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario's generated host DTB (QEMU dump + dom0less nodes,
    /// compiled with dtc) is accepted by the hypervisor's configuration
    /// parser, and the bad-configuration domain is refused. Needs
    /// qemu-system-aarch64 and dtc, like every e2e run.
    #[test]
    fn generated_boot_dtbs_pass_preflight() {
        let images = Images {
            hypervisor: util::artifacts().join("tessel.bin"),
            hypervisor_full: util::artifacts().join("tessel-full.bin"),
            // Any file will do: only its size goes into the module node.
            test_guest: util::root().join("Cargo.toml"),
        };
        for gic in [Gic::V2, Gic::V3] {
            let all = scenarios(gic, &images).unwrap();
            assert_eq!(all.len(), 11);
            for sc in all {
                let dtb = qemu::make_dtb(&sc).unwrap();
                sc.preflight(&util::read(&dtb).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", sc.name));
            }
        }
    }

    #[test]
    fn expectations_name_every_check() {
        let e = guest_expect(&GuestSpec {
            name: "d",
            modes: "basic,smp,direct-map",
            cpus: 2,
            bank: Some(BANK_A),
            forbid: vec![HOLE],
        });
        for want in [
            "d: PASS cpu-on",
            "d: PASS ram-1to1",
            "d: PASS forbidden@0x30000000",
            "d: DONE",
        ] {
            assert!(e.iter().any(|x| x == want), "{want} missing from {e:?}");
        }
    }
}
