//! QEMU invocation: host device-tree generation and runs with a timeout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::scenario::Scenario;
use crate::util::{self, Result};

const QEMU: &str = "qemu-system-aarch64";

/// Builds the host DTB of `sc`: QEMU's own tree for the same machine
/// options plus the scenario's `/chosen` domain nodes. Returns its path
/// (`target/boot/<name>.dtb`; the `.dts` is kept next to it).
pub fn make_dtb(sc: &Scenario) -> Result<PathBuf> {
    let dir = util::artifacts().join("boot");
    util::mkdir(&dir)?;
    let base = dir.join(format!("{}-qemu.dtb", sc.name));
    let mut cmd = Command::new(QEMU);
    let mut args = sc.machine_args();
    if let Some(m) = args.iter_mut().find(|a| a.starts_with("virt,")) {
        m.push_str(&format!(",dumpdtb={}", base.display()));
    }
    cmd.args(&args).stdin(Stdio::null());
    util::run(&mut cmd)?;
    let dts = util::run(
        Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts"])
            .arg(&base),
    )?;
    let full = format!("{dts}{}", sc.chosen_dts());
    let dts_path = dir.join(format!("{}.dts", sc.name));
    util::write(&dts_path, &full)?;
    let dtb = dir.join(format!("{}.dtb", sc.name));
    util::run(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&dts_path),
    )?;
    Ok(dtb)
}

/// The QEMU command line that boots `hypervisor` with `dtb` for `sc`.
pub fn command(sc: &Scenario, hypervisor: &Path, dtb: &Path) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(sc.machine_args())
        .arg("-kernel")
        .arg(hypervisor)
        .arg("-dtb")
        .arg(dtb)
        .args(sc.loader_args())
        .args(&sc.qemu_args);
    cmd
}

/// Interactive run: the console is the terminal (Ctrl-A X quits QEMU).
/// With a timeout, QEMU is killed when it expires.
pub fn run_interactive(sc: &Scenario, hypervisor: &Path, timeout: Option<u64>) -> Result<()> {
    let dtb = make_dtb(sc)?;
    let mut cmd = command(sc, hypervisor, &dtb);
    eprintln!("xtask: {cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            eprintln!("xtask: QEMU exited ({status})");
            return Ok(());
        }
        if timeout.is_some_and(|t| start.elapsed() > Duration::from_secs(t)) {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("\nxtask: timeout, QEMU killed");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Result of a captured run.
pub struct Captured {
    /// Everything QEMU wrote to its serial console (stdout) and stderr.
    pub output: String,
    /// QEMU exited by itself (guest/hypervisor power-off) before the timeout.
    pub exited: bool,
}

/// Runs `sc` booting `dtb` with the console captured into `log`, killing QEMU after the
/// scenario's timeout.
pub fn run_captured(sc: &Scenario, hypervisor: &Path, dtb: &Path, log: &Path) -> Result<Captured> {
    let cmd = command(sc, hypervisor, dtb);
    // The command line next to the log, to reproduce a failure by hand.
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    util::write(&log.with_extension("cmd"), line.join(" ") + "\n")?;
    capture(cmd, sc.timeout_secs, None, log)
}

/// Runs `cmd` (a QEMU command line) with its output captured into `log`.
/// QEMU is killed after `timeout_secs`, or as soon as the output contains
/// `done` if that is given (for runs that never power off by themselves);
/// `exited` is true in that second case too.
pub fn capture(
    mut cmd: Command,
    timeout_secs: u64,
    done: Option<&str>,
    log: &Path,
) -> Result<Captured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut readers = Vec::new();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for mut stream in streams.into_iter().flatten() {
        let buf = Arc::clone(&buf);
        readers.push(std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(chunk.get(..n).unwrap_or_default());
                }
            }
        }));
    }
    let start = Instant::now();
    let exited = loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break true;
        }
        let finished = done.is_some_and(|d| {
            buf.lock()
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(d))
        });
        if finished {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        if start.elapsed() > Duration::from_secs(timeout_secs) {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for r in readers {
        let _ = r.join();
    }
    let bytes = buf.lock().map(|b| b.clone()).unwrap_or_default();
    let mut output = String::from_utf8_lossy(&bytes).replace('\r', "");
    if !exited {
        output.push_str(&format!(
            "\n[xtask: timeout after {timeout_secs} s, QEMU killed]\n"
        ));
    }
    util::write(log, &output)?;
    Ok(Captured { output, exited })
}
