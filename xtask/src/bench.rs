//! `cargo xtask bench`: the test guest's `bench` mode on Tessel, on Xen 4.17
//! (Debian's `xen-hypervisor-4.17-arm64`, dom0less domU) and natively at
//! EL1, all on the same QEMU machine, and a table of the results.
//!
//! QEMU runs with one CPU and `-icount shift=0,sleep=off`: virtual time
//! advances by one nanosecond per instruction executed, and jumps ahead
//! instead of following the host clock when the CPU idles, so every figure
//! is exact and repeats from run to run. It is a count of executed
//! instructions (guest, hypervisor and the firmware QEMU emulates in C
//! counts as nothing), not a model of caches, TLBs or pipelines.
//!
//! The guest prints `BENCH` lines (see `crates/test-guest/src/bench.rs`);
//! [`parse`] reads them. The three runs:
//!
//! | run | machine | guest |
//! | --- | --- | --- |
//! | native | `virt` without EL2 | `-kernel` the test guest, at EL1, QEMU's device tree |
//! | Tessel | `virt,virtualization=on` | a direct-mapped domain on a static bank, PL061 passed through |
//! | Xen | `virt,virtualization=on` | an ordinary domU (Debian's Xen lacks `CONFIG_STATIC_MEMORY`, so no direct map), the same PL061 passed through |
//!
//! Logs, the table (`results.md`) and the fetched Xen package are kept in
//! `target/bench/`. `docs/performance.md` records and explains the results.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::Apt;
use crate::build::{self, Images};
use crate::e2e::{BANK_A, BANK_SIZE, MODULE_BASE, MODULE_STRIDE};
use crate::qemu;
use crate::scenario::{Domain, Gic, Module, Scenario};
use crate::util::{self, Result};
use tessel_config::VgicModel;

/// The Debian package that holds Xen 4.17 for arm64.
pub const XEN_PACKAGE: &str = "xen-hypervisor-4.17-arm64";
/// The Xen image inside that package (an arm64 `Image`).
const XEN_IMAGE: &str = "boot/xen-4.17-arm64";
/// QEMU's virtual-time option for every run.
const ICOUNT: &str = "shift=0,sleep=off";
/// CPU model of every run.
const CPU: &str = "cortex-a57";
/// Host RAM, MiB.
const RAM_MIB: u64 = 2048;
/// The PL061 GPIO of QEMU virt whose interrupt the guest raises itself.
const GPIO_NODE: &str = "/pl061@9030000";
const GPIO_BASE: u64 = 0x0903_0000;
/// Its interrupt: SPI 7 = INTID 39.
const GPIO_SPI: u32 = 7;
/// Xen's command line: console on the DT's stdout-path UART. Not
/// `sync_console`: with it Xen counts down "3... 2... 1..." for three
/// seconds at the end of boot, before the domU runs.
const XEN_BOOTARGS: &str = "console=dtuart";
/// Per-run time limit, seconds.
const TIMEOUT_SECS: u64 = 300;
/// The name Tessel's boot report gives a vGIC model (`vGIC model: ...`).
pub fn model_name(m: VgicModel) -> &'static str {
    match m {
        VgicModel::Classic => "classic",
        VgicModel::PerIrq => "per-IRQ",
    }
}

/// The last line of a complete guest report.
const END_MARK: &str = "BENCH end";

/// One measured operation: `n` samples adding up to `total` ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// Number of samples.
    pub n: u64,
    /// Sum of all samples, counter ticks.
    pub total: u64,
    /// Smallest sample (per operation), ticks.
    pub min: u64,
    /// Largest sample (per operation), ticks.
    pub max: u64,
}

impl Op {
    /// Mean ticks per operation.
    pub fn mean(&self) -> f64 {
        self.total as f64 / self.n as f64
    }
}

/// Everything one guest run reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// CNTFRQ_EL0, Hz.
    pub cntfrq: u64,
    /// CNTPCT_EL0 at the guest's first instructions (ticks since reset).
    pub entry: Option<u64>,
    /// Measured operations by name.
    pub ops: BTreeMap<String, Op>,
    /// Operations the guest could not measure, with its reason.
    pub skipped: BTreeMap<String, String>,
}

fn number(s: &str, line: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| format!("bad number `{s}` in guest line `{line}`"))
}

fn parse_op(fields: &[&str], line: &str) -> Result<(String, Op)> {
    let (name, pairs) = fields
        .split_first()
        .ok_or_else(|| format!("operation name missing in `{line}`"))?;
    let mut values = BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got `{p}` in `{line}`"))?;
        values.insert(k, number(v, line)?);
    }
    let get = |k: &str| {
        values
            .get(k)
            .copied()
            .ok_or_else(|| format!("`{k}=` missing in `{line}`"))
    };
    let op = Op {
        n: get("n")?,
        total: get("total")?,
        min: get("min")?,
        max: get("max")?,
    };
    if op.n == 0 {
        return Err(format!("no samples in `{line}`"));
    }
    Ok((name.to_string(), op))
}

/// Reads the `BENCH` lines of a console log (anything before `BENCH` on a
/// line, such as a hypervisor's domain prefix, is ignored). Fails on a
/// malformed line, or if the report never reached `BENCH end`.
pub fn parse(output: &str) -> Result<Report> {
    let mut r = Report::default();
    let mut ended = false;
    for line in output.lines() {
        let Some(pos) = line.find("BENCH ") else {
            continue;
        };
        let line = &line[pos..];
        let fields: Vec<&str> = line.split_ascii_whitespace().skip(1).collect();
        match fields.as_slice() {
            ["cntfrq", hz] => r.cntfrq = number(hz, line)?,
            ["entry", t] => r.entry = Some(number(t, line)?),
            ["op", rest @ ..] => {
                let (name, op) = parse_op(rest, line)?;
                r.ops.insert(name, op);
            }
            ["skip", name, why @ ..] => {
                r.skipped.insert(name.to_string(), why.join(" "));
            }
            ["timeout", ..] => {}
            ["end"] => ended = true,
            _ => return Err(format!("unexpected guest line `{line}`")),
        }
    }
    if !ended {
        return Err(format!("the guest never printed `{END_MARK}`"));
    }
    if r.cntfrq == 0 {
        return Err("the guest did not report CNTFRQ".into());
    }
    Ok(r)
}

/// The rows of the table: guest operation name and description.
const ROWS: &[(&str, &str)] = &[
    ("gicd-read", "vGIC MMIO read (GICD_TYPER)"),
    ("uart-write", "vPL011 data register write"),
    ("psci-version", "HVC PSCI_VERSION round trip"),
    ("sgi", "self-SGI, send to handler"),
    ("vtimer", "virtual timer, expiry to handler"),
    ("spi", "passed-through SPI, raise to handler"),
];

/// Result of one environment: a report or why there is none.
pub type Outcome = std::result::Result<Report, String>;

/// The three runs and the two image sizes.
pub struct Results {
    /// Native run.
    pub native: Outcome,
    /// Tessel run.
    pub tessel: Outcome,
    /// Xen run.
    pub xen: Outcome,
    /// Size of `target/tessel.bin` (default features), bytes.
    pub tessel_size: u64,
    /// Size of `target/tessel-full.bin` (every optional feature), bytes.
    pub tessel_full_size: u64,
    /// Size of Xen's image, bytes.
    pub xen_size: u64,
    /// The vGIC model of Tessel's domain.
    pub vgic: VgicModel,
}

fn cell(o: &Outcome, op: &str) -> Option<f64> {
    o.as_ref().ok()?.ops.get(op).map(Op::mean)
}

fn fmt_value(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// One table row: the three values with `decimals` digits, the ratio
/// Tessel/Xen and whether it is at most `limit`.
fn row(out: &mut String, name: &str, cols: [Option<f64>; 3], decimals: usize, limit: Option<f64>) {
    let [native, tessel, xen] = cols;
    let ratio = match (tessel, xen) {
        (Some(t), Some(x)) if x > 0.0 => Some(t / x),
        _ => None,
    };
    let met = match (ratio, limit) {
        (Some(r), Some(l)) if r <= l => format!("yes (<= {l})"),
        (Some(_), Some(l)) => format!("**no** (<= {l})"),
        (None, Some(_)) => "n/a".into(),
        (_, None) => "no target".into(),
    };
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {met} |",
        fmt_value(native, decimals),
        fmt_value(tessel, decimals),
        fmt_value(xen, decimals),
        ratio.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"))
    );
}

/// The results as a Markdown table (ticks per operation; the counter runs
/// at the guest-reported CNTFRQ), followed by why any cell is missing.
pub fn table(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| operation (counter ticks) | native EL1 | Tessel ({} vGIC) | Xen 4.17 | Tessel/Xen | target met? |",
        model_name(r.vgic)
    );
    s.push_str("| --- | ---: | ---: | ---: | ---: | --- |\n");
    for (op, name) in ROWS {
        let cols = [cell(&r.native, op), cell(&r.tessel, op), cell(&r.xen, op)];
        row(&mut s, name, cols, 2, Some(0.5));
    }
    let entry = |o: &Outcome| o.as_ref().ok().and_then(|r| r.entry).map(|t| t as f64);
    row(
        &mut s,
        "reset to the guest's first instruction",
        [entry(&r.native), entry(&r.tessel), entry(&r.xen)],
        0,
        None,
    );
    row(
        &mut s,
        "image size (bytes; not ticks)",
        [None, Some(r.tessel_size as f64), Some(r.xen_size as f64)],
        0,
        Some(0.2),
    );
    row(
        &mut s,
        "image with the per-IRQ vGIC too (bytes)",
        [
            None,
            Some(r.tessel_full_size as f64),
            Some(r.xen_size as f64),
        ],
        0,
        None,
    );
    let mut notes = String::new();
    for (label, o) in [
        ("native", &r.native),
        ("Tessel", &r.tessel),
        ("Xen", &r.xen),
    ] {
        match o {
            Err(e) => {
                let _ = writeln!(notes, "- {label}: no results: {e}");
            }
            Ok(rep) => {
                for (op, why) in &rep.skipped {
                    let _ = writeln!(notes, "- {label}: `{op}` not measured: {why}");
                }
                if let Some(hz) = Some(rep.cntfrq).filter(|&hz| hz != 62_500_000) {
                    let _ = writeln!(notes, "- {label}: CNTFRQ is {hz} Hz");
                }
            }
        }
    }
    if !notes.is_empty() {
        s.push('\n');
        s.push_str(&notes);
    }
    s
}

/// Fetches Xen (once; cached in `dir`). Returns the image and the package
/// file name (its version).
fn fetch_xen(dir: &Path) -> Result<(PathBuf, String)> {
    let root = dir.join("root");
    let image = root.join(XEN_IMAGE);
    let versions = dir.join("versions.txt");
    if !image.is_file() {
        let apt = Apt::new(&dir.join("apt"))?;
        eprintln!("bench: reading Debian's arm64 package index");
        apt.update()?;
        eprintln!("bench: downloading {XEN_PACKAGE} (arm64)");
        let v = apt.download_unpack(&[XEN_PACKAGE], &root)?;
        util::write(&versions, &v)?;
    }
    build::check_image_header(&image)?;
    let version = std::fs::read_to_string(&versions)
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok((image, version))
}

/// The partial device tree that passes the PL061 through (same bindings for
/// Tessel and Xen; guest address = host address).
fn partial_dts() -> String {
    format!(
        r#"/dts-v1/;
/ {{
	#address-cells = <2>;
	#size-cells = <1>;
	gic: gic {{
		#interrupt-cells = <3>;
		interrupt-controller;
	}};
	passthrough {{
		compatible = "simple-bus";
		ranges;
		#address-cells = <2>;
		#size-cells = <1>;
		gpio@{GPIO_BASE:x} {{
			compatible = "arm,pl061", "arm,primecell";
			reg = <0x0 0x{GPIO_BASE:x} 0x1000>;
			interrupt-parent = <&gic>;
			interrupts = <0 {GPIO_SPI} 4>;
			xen,path = "{GPIO_NODE}";
			xen,reg = <0x0 0x{GPIO_BASE:x} 0x1000 0x0 0x{GPIO_BASE:x}>;
			xen,force-assign-without-iommu;
		}};
	}};
}};
"#
    )
}

/// Which hypervisor a scenario is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hyp {
    Tessel,
    Xen,
}

fn bootargs() -> String {
    format!(
        "tessel-test=bench tessel-name=bench tessel-bench-gpio=0x{GPIO_BASE:x},{}",
        GPIO_SPI + 32
    )
}

fn scenario(hyp: Hyp, gic: Gic, vgic: VgicModel, guest: &Path, partial: &Path) -> Result<Scenario> {
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let direct = hyp == Hyp::Tessel;
    let mut host_dts = format!("\n&{{{GPIO_NODE}}} {{\n\txen,passthrough;\n}};\n");
    if hyp == Hyp::Xen {
        let _ = write!(
            host_dts,
            "\n/ {{\n\tchosen {{\n\t\txen,xen-bootargs = \"{XEN_BOOTARGS}\";\n\t}};\n}};\n"
        );
    }
    // The default (classic) leaves the tree as it always was.
    let per_irq = direct && vgic == VgicModel::PerIrq;
    if per_irq {
        host_dts.push_str(
            "\n/ {\n\tchosen {\n\t\tbench {\n\t\t\ttessel,vgic-model = \"new\";\n\t\t};\n\t};\n};\n",
        );
    }
    Ok(Scenario {
        name: format!(
            "bench-{}{}-gic{}",
            if direct { "tessel" } else { "xen" },
            if per_irq { "-perirq" } else { "" },
            gic.qemu_name()
        ),
        gic,
        cpu: CPU,
        smp: 1,
        ram_mib: RAM_MIB,
        domains: vec![Domain {
            name: "bench".into(),
            cpus: 1,
            memory_kib: BANK_SIZE / 1024,
            vpl011: true,
            direct_map: direct,
            static_mem: if direct {
                vec![(BANK_A, BANK_SIZE)]
            } else {
                vec![]
            },
            kernel: Module {
                file: guest.to_path_buf(),
                addr: MODULE_BASE,
                size: size(guest)?,
            },
            ramdisk: None,
            device_tree: Some(Module {
                file: partial.to_path_buf(),
                addr: MODULE_BASE + MODULE_STRIDE,
                size: size(partial)?,
            }),
            bootargs: bootargs(),
        }],
        timeout_secs: TIMEOUT_SECS,
        expect: if direct {
            vec![format!("vGIC model: {}", model_name(vgic)), END_MARK.into()]
        } else {
            vec![END_MARK.into()]
        },
        forbid: vec![],
        expect_shutdown: false,
        expect_refused: vec![],
        host_dts,
        qemu_args: vec!["-icount".into(), ICOUNT.into()],
        full_image: per_irq,
    })
}

/// The Tessel benchmark run, as `cargo xtask profile` traces it: the
/// scenario, with the partial device tree written to `dir`.
pub fn tessel_scenario(gic: Gic, vgic: VgicModel, guest: &Path, dir: &Path) -> Result<Scenario> {
    let dts = dir.join("passthrough.dts");
    let partial = dir.join("passthrough.dtb");
    util::write(&dts, partial_dts())?;
    util::run(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&partial)
            .arg(&dts),
    )?;
    scenario(Hyp::Tessel, gic, vgic, guest, &partial)
}

/// Fails unless the log holds every line `sc` expects (for Tessel: the
/// boot report's vGIC model, so a run cannot silently use another model).
pub fn check_expected(sc: &Scenario, output: &str) -> Result<()> {
    match sc.expect.iter().find(|e| !output.contains(e.as_str())) {
        Some(e) => Err(format!("the log lacks `{e}`")),
        None => Ok(()),
    }
}

/// Boots `image` under `sc` and reads the guest's report from the log.
fn run_hypervisor(sc: &Scenario, image: &Path, dir: &Path) -> Outcome {
    let dtb = qemu::make_dtb(sc)?;
    let is_tessel = image
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("tessel"));
    if is_tessel {
        sc.preflight(&util::read(&dtb)?)
            .map_err(|e| format!("pre-flight: {e}"))?;
    }
    let log = dir.join(format!("{}.log", sc.name));
    eprintln!("bench: {} (log {})", sc.name, log.display());
    let out = qemu::capture(
        qemu::command(sc, image, &dtb),
        sc.timeout_secs,
        Some(END_MARK),
        &log,
    )?;
    check_expected(sc, &out.output)
        .and_then(|()| parse(&out.output))
        .map_err(|e| format!("{e} (log {})", log.display()))
}

/// Boots the guest directly at EL1, with QEMU's own device tree.
fn run_native(gic: Gic, guest: &Path, dir: &Path) -> Outcome {
    let log = dir.join(format!("bench-native-gic{}.log", gic.qemu_name()));
    eprintln!("bench: native (log {})", log.display());
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-machine", &format!("virt,gic-version={}", gic.qemu_name())])
        .args(["-cpu", CPU, "-smp", "1", "-m", &format!("{RAM_MIB}M")])
        .args(["-nographic", "-icount", ICOUNT, "-kernel"])
        .arg(guest)
        .args(["-append", &bootargs()]);
    let out = qemu::capture(cmd, TIMEOUT_SECS, Some(END_MARK), &log)?;
    parse(&out.output).map_err(|e| format!("{e} (log {})", log.display()))
}

fn file_size(p: &Path) -> Result<u64> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// `cargo xtask bench`: builds, fetches Xen, runs the three boots, prints
/// the table and writes it to `target/bench/results.md`. Returns whether
/// all three runs produced a report (missed targets do not fail it).
pub fn run(gic: Gic, vgic: VgicModel) -> Result<bool> {
    let dir = util::artifacts().join("bench");
    util::mkdir(&dir)?;
    let Images {
        hypervisor,
        hypervisor_full,
        test_guest,
    } = build::all()?;
    // The default image has the classic model only.
    let tessel_image = match vgic {
        VgicModel::Classic => &hypervisor,
        VgicModel::PerIrq => &hypervisor_full,
    };
    let (xen, xen_version) = fetch_xen(&dir.join("xen"))?;
    let partial = dir.join("passthrough.dtb");
    let native = run_native(gic, &test_guest, &dir);
    let tessel = tessel_scenario(gic, vgic, &test_guest, &dir)
        .and_then(|sc| run_hypervisor(&sc, tessel_image, &dir));
    let xen_run = scenario(Hyp::Xen, gic, vgic, &test_guest, &partial)
        .and_then(|sc| run_hypervisor(&sc, &xen, &dir));
    let results = Results {
        native,
        tessel,
        xen: xen_run,
        tessel_size: file_size(&hypervisor)?,
        tessel_full_size: file_size(&hypervisor_full)?,
        xen_size: file_size(&xen)?,
        vgic,
    };
    let qemu_version = util::run(Command::new("qemu-system-aarch64").arg("--version"))?;
    let mut text = format!(
        "QEMU: {}\nmachine: virt, gic-version={}, -cpu {CPU} -smp 1 -m {RAM_MIB}M -icount {ICOUNT}\nTessel: {} vGIC model ({})\nXen: {}\n\n",
        qemu_version.lines().next().unwrap_or("?"),
        gic.qemu_name(),
        model_name(vgic),
        tessel_image.display(),
        if xen_version.is_empty() {
            XEN_PACKAGE
        } else {
            &xen_version
        },
    );
    text.push_str(&table(&results));
    util::write(&dir.join("results.md"), &text)?;
    println!("{text}");
    Ok(results.native.is_ok() && results.tessel.is_ok() && results.xen.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
(XEN) Freed 356kB init memory.
(d1) bench: PASS timer: virtual timer PPI 27 received
(d1) BENCH cntfrq 62500000
(d1) BENCH entry 1234567
(d1) BENCH op gicd-read n=1000 total=150000 min=150 max=151
(d1) ..................................................
(d1) BENCH op sgi n=200 total=60000 min=300 max=301
(d1) BENCH skip spi no tessel-bench-gpio=0xADDR,INTID
(d1) BENCH end
";

    #[test]
    fn reads_a_prefixed_report() {
        let r = parse(LOG).unwrap();
        assert_eq!(r.cntfrq, 62_500_000);
        assert_eq!(r.entry, Some(1_234_567));
        let op = r.ops["gicd-read"];
        assert_eq!((op.n, op.total, op.min, op.max), (1000, 150_000, 150, 151));
        assert!((op.mean() - 150.0).abs() < 1e-9);
        assert_eq!(r.ops["sgi"].n, 200);
        assert!(r.skipped["spi"].starts_with("no tessel-bench-gpio"));
    }

    #[test]
    fn checks_the_expected_lines() {
        let guest = util::root().join("Cargo.toml");
        let sc = scenario(Hyp::Tessel, Gic::V3, VgicModel::PerIrq, &guest, &guest).unwrap();
        let ok = format!("(XEN) bench: vGIC model: per-IRQ\n{LOG}");
        assert!(check_expected(&sc, &ok).is_ok());
        let classic = ok.replace("per-IRQ", "classic");
        assert!(
            check_expected(&sc, &classic)
                .unwrap_err()
                .contains("per-IRQ")
        );
    }

    #[test]
    fn refuses_bad_or_unfinished_reports() {
        assert!(parse("").unwrap_err().contains("BENCH end"));
        let cut = LOG.replace("(d1) BENCH end\n", "");
        assert!(parse(&cut).is_err());
        for bad in [
            "BENCH op x n=1 total=zz min=0 max=0\nBENCH end",
            "BENCH op x n=1 total=1 min=0\nBENCH end",
            "BENCH op x n=0 total=0 min=0 max=0\nBENCH end",
            "BENCH op\nBENCH end",
            "BENCH op x n:1\nBENCH end",
            "BENCH what\nBENCH end",
            "BENCH cntfrq\nBENCH end",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("BENCH end").unwrap_err().contains("CNTFRQ"));
    }

    /// The Tessel boot DTB (QEMU's tree, the bench domain, the PL061 marked
    /// `xen,passthrough`) passes the hypervisor's configuration parser, and
    /// the partial device tree compiles. Needs qemu-system-aarch64 and dtc,
    /// like the e2e pre-flight test.
    #[test]
    fn tessel_boot_dtb_passes_preflight() {
        let dir = util::artifacts().join("bench-test");
        util::mkdir(&dir).unwrap();
        let (dts, partial) = (dir.join("pt.dts"), dir.join("pt.dtb"));
        util::write(&dts, partial_dts()).unwrap();
        util::run(
            Command::new("dtc")
                .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
                .arg(&partial)
                .arg(&dts),
        )
        .unwrap();
        // Any file will do as the kernel: only its size goes into the DT.
        let guest = util::root().join("Cargo.toml");
        for gic in [Gic::V2, Gic::V3] {
            for vgic in [VgicModel::Classic, VgicModel::PerIrq] {
                let sc = scenario(Hyp::Tessel, gic, vgic, &guest, &partial).unwrap();
                let dtb = util::read(&qemu::make_dtb(&sc).unwrap()).unwrap();
                sc.preflight(&dtb).unwrap();
                // The domain gets the model asked for (classic by default).
                let cfg = tessel_config::parse(&dtb).unwrap();
                let dom = cfg.domains[0].as_ref().unwrap();
                let chosen = dom.vgic_model.or(cfg.vgic_model);
                assert_eq!(chosen.unwrap_or(VgicModel::Classic), vgic);
                let line = format!("vGIC model: {}", model_name(vgic));
                assert!(sc.expect.contains(&line), "{:?}", sc.expect);
                let xen = scenario(Hyp::Xen, gic, vgic, &guest, &partial).unwrap();
                assert!(xen.host_dts.contains("xen,xen-bootargs"));
                assert!(!xen.host_dts.contains("vgic"));
                assert!(!xen.domains[0].direct_map);
            }
            // Classic leaves the tree as it was; the logs do not collide.
            let classic = scenario(Hyp::Tessel, gic, VgicModel::Classic, &guest, &partial);
            let new = scenario(Hyp::Tessel, gic, VgicModel::PerIrq, &guest, &partial);
            let (classic, new) = (classic.unwrap(), new.unwrap());
            assert!(!classic.host_dts.contains("vgic-model"));
            assert_ne!(classic.name, new.name);
        }
    }

    #[test]
    fn table_gives_ratios_targets_and_missing_cells() {
        let xen = parse(LOG).unwrap();
        let mut tessel = xen.clone();
        tessel.ops.insert(
            "gicd-read".into(),
            Op {
                n: 1000,
                total: 50_000,
                min: 50,
                max: 50,
            },
        );
        tessel.ops.insert(
            "sgi".into(),
            Op {
                n: 200,
                total: 40_000,
                min: 200,
                max: 200,
            },
        );
        let t = table(&Results {
            native: Err("QEMU failed".into()),
            tessel: Ok(tessel),
            xen: Ok(xen),
            tessel_size: 100,
            tessel_full_size: 120,
            xen_size: 1000,
            vgic: VgicModel::PerIrq,
        });
        assert!(
            t.starts_with("| operation (counter ticks) | native EL1 | Tessel (per-IRQ vGIC) |")
        );
        assert!(t.contains(
            "| vGIC MMIO read (GICD_TYPER) | n/a | 50.00 | 150.00 | 0.33 | yes (<= 0.5) |"
        ));
        assert!(t.contains(
            "| self-SGI, send to handler | n/a | 200.00 | 300.00 | 0.67 | **no** (<= 0.5) |"
        ));
        assert!(
            t.contains("| passed-through SPI, raise to handler | n/a | n/a | n/a | n/a | n/a |")
        );
        assert!(t.contains(
            "| image size (bytes; not ticks) | n/a | 100 | 1000 | 0.10 | yes (<= 0.2) |"
        ));
        assert!(t.contains(
            "| image with the per-IRQ vGIC too (bytes) | n/a | 120 | 1000 | 0.12 | no target |"
        ));
        assert!(t.contains("- native: no results: QEMU failed"));
        assert!(t.contains("- Xen: `spi` not measured: no tessel-bench-gpio=0xADDR,INTID"));
    }
}
