//! Tessel's build and test automation (`cargo xtask <command>`).
//!
//! ```text
//! cargo xtask build                      hypervisor -> target/tessel.bin, test guest -> target/test-guest.bin
//! cargo xtask run [--gic v2|v3] [--timeout SECS]
//!                                        boot the two-domain demo on QEMU, console on the terminal
//! cargo xtask dtb [--gic v2|v3]          write the demo's host DTB/DTS to target/boot/
//! cargo xtask e2e [--gic v2|v3] [--only NAME] [--linux]
//!                                        run the test-guest scenarios (with --linux: the
//!                                        Linux-guest scenarios instead), logs in target/e2e/
//! cargo xtask test                       cargo test (workspace), then both e2e suites, with a summary
//! cargo xtask fetch-linux                fetch a Debian arm64 kernel and build an initramfs
//! cargo xtask bench [--gic v2|v3] [--vgic classic|new]
//!                                        trap and interrupt costs: native, Tessel, Xen 4.17 (docs/performance.md)
//! cargo xtask profile [--gic v2|v3] [--vgic classic|new]
//!                                        Tessel's instructions per exit, by function (traced bench run)
//! ```
mod apt;
mod bench;
mod build;
mod e2e;
mod e2e_linux;
mod linux;
mod profile;
mod qemu;
mod scenario;
mod util;

use std::process::{Command, ExitCode};

use scenario::Gic;
use tessel_config::VgicModel;
use util::Result;

/// Parsed command-line options (a tiny parser: `--name value` pairs and flags).
#[derive(Debug, Default)]
struct Options {
    gic: Option<Gic>,
    vgic: Option<VgicModel>,
    timeout: Option<u64>,
    only: Option<String>,
    linux: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("option {a} needs a value"))
        };
        match a.as_str() {
            "--gic" => {
                let v = value()?;
                o.gic = Some(
                    Gic::parse(&v).ok_or_else(|| format!("--gic: expected v2 or v3, got {v}"))?,
                );
            }
            "--vgic" => {
                let v = value()?;
                o.vgic =
                    Some(VgicModel::from_name(&v).ok_or_else(|| {
                        format!("--vgic: expected {}, got {v}", VgicModel::ACCEPTED)
                    })?);
            }
            "--timeout" => {
                let v = value()?;
                o.timeout = Some(
                    v.parse()
                        .map_err(|_| format!("--timeout: not a number of seconds: {v}"))?,
                );
            }
            "--only" => o.only = Some(value()?),
            "--linux" => o.linux = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn gics(o: &Options) -> Vec<Gic> {
    o.gic.map_or_else(|| vec![Gic::V2, Gic::V3], |g| vec![g])
}

/// The Tessel domain's vGIC model for `bench` and `profile` (default classic).
fn vgic(o: &Options) -> VgicModel {
    o.vgic.unwrap_or(VgicModel::Classic)
}

fn fetch_linux() -> Result<()> {
    let dir = util::artifacts().join("linux");
    let g = linux::fetch(&dir)?;
    let img = linux::initramfs(&g)?;
    util::write(&dir.join("initramfs.cpio"), img)?;
    println!("kernel: {}", g.kernel.display());
    println!("initramfs: {}", dir.join("initramfs.cpio").display());
    Ok(())
}

fn test_all(o: &Options) -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_test = |args: &[&str]| -> Result<bool> {
        Ok(Command::new(&cargo)
            .current_dir(util::root())
            .arg("test")
            .args(args)
            .status()
            .map_err(|e| format!("cannot run cargo test: {e}"))?
            .success())
    };
    // The workspace build unifies features, so it has the per-IRQ vGIC;
    // the default hypervisor image does not: test the crates that change
    // without it once more that way.
    let unit_ok = cargo_test(&[])?
        & cargo_test(&[
            "-p",
            "tessel-vgic",
            "-p",
            "tessel-builder",
            "--no-default-features",
        ])?;
    let unit = if unit_ok { "ok" } else { "FAILED" };
    let e2e = build::all().and_then(|images| {
        let (p, f) = e2e::run(&images, &gics(o), o.only.as_deref())?;
        let (lp, lf) = e2e_linux::run(&images.hypervisor, &gics(o), o.only.as_deref())?;
        Ok((p + lp, f + lf))
    });
    match e2e {
        Ok((passed, failed)) => {
            println!(
                "summary: unit/integration tests {unit}, e2e {passed} passed, {failed} failed"
            );
            Ok(unit_ok && failed == 0)
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            println!("summary: unit/integration tests {unit}, e2e not run or not finished");
            Ok(false)
        }
    }
}

fn real_main(args: &[String]) -> Result<bool> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(
            "usage: cargo xtask <build|run|dtb|e2e|test|fetch-linux|bench|profile> [options]"
                .into(),
        );
    };
    let o = parse_options(rest)?;
    match cmd.as_str() {
        "build" => build::all().map(|_| true),
        "run" => {
            let images = build::images(false)?;
            let sc = e2e::demo(o.gic.unwrap_or(Gic::V3), &images)?;
            qemu::run_interactive(&sc, &images.hypervisor, o.timeout)?;
            Ok(true)
        }
        "dtb" => {
            // Only the guest image is needed (its size goes into the DTB).
            let images = build::Images {
                hypervisor: util::artifacts().join("tessel.bin"),
                hypervisor_full: util::artifacts().join("tessel-full.bin"),
                test_guest: build::test_guest()?,
            };
            let sc = e2e::demo(o.gic.unwrap_or(Gic::V3), &images)?;
            let dtb = qemu::make_dtb(&sc)?;
            sc.preflight(&util::read(&dtb)?)?;
            println!("{}", dtb.display());
            Ok(true)
        }
        "e2e" => {
            // Linux runs on the default image only.
            let images = build::images(!o.linux)?;
            let (_, failed) = if o.linux {
                e2e_linux::run(&images.hypervisor, &gics(&o), o.only.as_deref())?
            } else {
                e2e::run(&images, &gics(&o), o.only.as_deref())?
            };
            Ok(failed == 0)
        }
        "test" => test_all(&o),
        "bench" => bench::run(o.gic.unwrap_or(Gic::V3), vgic(&o)),
        "profile" => profile::run(o.gic.unwrap_or(Gic::V3), vgic(&o)),
        "fetch-linux" => fetch_linux().map(|_| true),
        other => Err(format!("unknown command {other}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match real_main(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        parse_options(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn vgic_option_defaults_to_classic_and_takes_the_dt_names() {
        assert_eq!(vgic(&parse(&[]).unwrap()), VgicModel::Classic);
        let o = parse(&["--gic", "v2", "--vgic", "new"]).unwrap();
        assert_eq!((o.gic, vgic(&o)), (Some(Gic::V2), VgicModel::PerIrq));
        assert_eq!(
            vgic(&parse(&["--vgic", "per-irq"]).unwrap()),
            VgicModel::PerIrq
        );
        assert_eq!(
            vgic(&parse(&["--vgic", "classic"]).unwrap()),
            VgicModel::Classic
        );
        assert!(parse(&["--vgic", "old"]).unwrap_err().contains("--vgic"));
        assert!(parse(&["--vgic"]).unwrap_err().contains("needs a value"));
    }
}
