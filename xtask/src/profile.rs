//! `cargo xtask profile [--gic v2|v3]`: where the hypervisor's instructions
//! go on each kind of trap.
//!
//! Boots the benchmark guest on Tessel exactly as `cargo xtask bench` does,
//! but with QEMU translating one instruction per block and logging every
//! block it executes (`-singlestep -d exec,nochain`), so each logged line is
//! one executed instruction. The log is read as it is written (hundreds of
//! megabytes, never stored), each program counter is named from the
//! hypervisor's symbol table, and the stream is cut into exits where it
//! enters the EL2 vector table. Each exit is classed by the functions it ran (an SGI
//! register trap, a vGIC read, a physical interrupt, ...), and per class the
//! tool prints the median number of hypervisor instructions per exit and the
//! functions that account for them in exits near the median.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::scenario::Gic;
use crate::util::{self, Result};
use crate::{bench, build, qemu};
use tessel_config::VgicModel;

/// Where QEMU's `virt` board starts RAM. QEMU's own boot stub runs from
/// its first page, then jumps to the loaded Image's first instruction.
const RAM_BASE: u64 = 0x4000_0000;
/// The end of the region the boot stub may occupy.
const STUB_END: u64 = RAM_BASE + 0x1000;
/// The hypervisor's first instruction.
const IMAGE_ENTRY: &str = "_start";
/// The EL2 vector table; slot `n` is at `n * 0x80` (Arm ARM D1.10.2).
const VECTORS_SYMBOL: &str = "exception_vectors";
/// How many functions to list per class.
const TOP: usize = 14;

/// The hypervisor's function symbols, sorted by address.
struct Symbols {
    starts: Vec<u64>,
    names: Vec<String>,
    end: u64,
}

impl Symbols {
    /// Parses `llvm-nm -n -C --defined-only` output (link-time addresses).
    fn parse(nm: &str) -> Self {
        Self::parse_at(nm, 0)
    }

    /// Moves every symbol by `delta` (to where the image was loaded).
    fn relocate(&mut self, delta: u64) {
        for s in &mut self.starts {
            *s += delta;
        }
        self.end += delta;
    }

    /// Parses `llvm-nm` output, relocated by `base`.
    fn parse_at(nm: &str, base: u64) -> Self {
        let mut pairs: Vec<(u64, String)> = nm
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                let code = matches!(kind, "t" | "T" | "w" | "W") && !name.starts_with('$');
                code.then(|| (addr + base, strip_hash(name).to_string()))
            })
            .collect();
        pairs.sort();
        let end = pairs.last().map_or(0, |p| p.0 + 0x1_0000);
        let (starts, names) = pairs.into_iter().unzip();
        Self { starts, names, end }
    }

    /// The function containing `pc`, or `None` outside the hypervisor.
    fn index(&self, pc: u64) -> Option<usize> {
        if pc > self.end {
            return None;
        }
        self.starts.partition_point(|&s| s <= pc).checked_sub(1)
    }
}

/// Drops a Rust symbol's `::h0123...` hash suffix.
fn strip_hash(name: &str) -> &str {
    match name.rfind("::h") {
        Some(i) if name.len() - i == 19 => &name[..i],
        _ => name,
    }
}

/// The guest PC of one `-d exec` line: `Trace N: 0xHOST [CS_BASE/PC/FLAGS/...]`.
fn trace_pc(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("Trace ")?;
    let inner = &rest[rest.find('[')? + 1..];
    let mut fields = inner.split('/');
    fields.next()?;
    u64::from_str_radix(fields.next()?, 16).ok()
}

/// Names the kind of exit from its vector slot and the functions it ran.
fn classify(slot: Option<u64>, ran: &[&str]) -> &'static str {
    let has = |s: &str| ran.iter().any(|f| f.contains(s));
    match slot {
        Some(9 | 13) => return "physical interrupt from a guest",
        Some(5) => return "physical interrupt at EL2",
        Some(8 | 12) => {}
        _ => return "other",
    }
    // Much of the trap handling is inlined into `guest_sync_entry`, so a
    // class is told by the out-of-line functions it reached: an exit that
    // injected (`modify_dyn`, or `latch` when the SGI is still held in
    // a list register), ran the GICD_SGIR shortcut (`write_sgir`), or
    // refilled the list registers (`refresh_slow`: the GICD_SGIR shortcut
    // and its send, when inlined, leave nothing else) with no general
    // register write in the vGIC's frame emulation is an SGI send:
    // ICC_SGI1R_EL1 on GICv3, GICD_SGIR on GICv2.
    let injects = has("modify_dyn") || has("::latch") || has("write_sgir") || has("refresh_slow");
    let reg_write = has("dist_write") || has("write_at");
    if has("Vpl011") {
        "vPL011 access"
    } else if has("psci") {
        "PSCI call"
    } else if has("sysreg_sgi") || (injects && !reg_write) {
        "SGI send (ICC_SGI1R_EL1 or GICD_SGIR)"
    } else if has("mmio_write") || reg_write {
        "vGIC MMIO write"
    } else if has("mmio_read") {
        "vGIC MMIO read"
    } else {
        "other (vGIC reads inlined into guest_sync_entry land here)"
    }
}

/// Per class: hypervisor instructions of each exit, and per function the
/// instructions of the exits near the median.
#[derive(Default)]
struct Class {
    lengths: Vec<usize>,
    exits: Vec<Vec<(usize, usize)>>,
    /// Per exit, instructions by link-time address (for `pcs_out`).
    pcs: Vec<Vec<(u64, usize)>>,
}

/// Reads the trace and prints the table; returns the text. `syms` are at
/// link-time addresses: the first instruction executed past QEMU's boot
/// stub is the image's entry, which gives the load address.
///
/// With `pcs_out`, also appends to it, per class, the instructions per exit
/// at each link-time address, averaged over the exits near the median: the
/// input for mapping a path to source lines (`llvm-objdump -d -l`).
fn analyse(
    trace: impl BufRead,
    mut syms: Symbols,
    mut pcs_out: Option<&mut String>,
) -> Result<String> {
    let image_entry = syms
        .names
        .iter()
        .position(|n| n == IMAGE_ENTRY)
        .map(|i| syms.starts[i])
        .ok_or_else(|| format!("no {IMAGE_ENTRY} symbol in the hypervisor ELF"))?;
    let link_start = syms.starts.first().copied().unwrap_or(0);
    let mut lines = trace.lines();
    loop {
        let line = lines
            .next()
            .ok_or("the trace ended before the hypervisor started")?
            .map_err(|e| format!("reading the trace: {e}"))?;
        if let Some(pc) = trace_pc(&line).filter(|&pc| pc >= STUB_END) {
            syms.relocate(pc - image_entry);
            break;
        }
    }
    let delta = syms.starts.first().copied().unwrap_or(0) - link_start;
    let want_pcs = pcs_out.is_some();
    let syms = &syms;
    let vectors = syms
        .names
        .iter()
        .position(|n| n == VECTORS_SYMBOL)
        .ok_or_else(|| format!("no {VECTORS_SYMBOL} symbol in the hypervisor ELF"))?;
    let mut classes: BTreeMap<&'static str, Class> = BTreeMap::new();
    type Exit = (Option<u64>, HashMap<usize, usize>, HashMap<u64, usize>);
    let mut cur: Option<Exit> = None;
    let mut prev = None;
    let close = |(slot, counts, pcs): Exit, classes: &mut BTreeMap<&'static str, Class>| {
        let ran: Vec<&str> = counts.keys().map(|&i| syms.names[i].as_str()).collect();
        let class = classes.entry(classify(slot, &ran)).or_default();
        class.lengths.push(counts.values().sum());
        class.exits.push(counts.into_iter().collect());
        class.pcs.push(pcs.into_iter().collect());
    };
    for line in lines {
        let line = line.map_err(|e| format!("reading the trace: {e}"))?;
        let Some(pc) = trace_pc(&line) else { continue };
        let Some(f) = syms.index(pc) else { continue };
        // An exit starts at its vector slot (the first vector-table
        // instruction after code elsewhere).
        if f == vectors && prev != Some(vectors) {
            if let Some(done) = cur.take() {
                close(done, &mut classes);
            }
            cur = Some((
                Some((pc - syms.starts[f]) / 0x80),
                HashMap::new(),
                HashMap::new(),
            ));
        }
        prev = Some(f);
        if let Some((_, c, p)) = cur.as_mut() {
            *c.entry(f).or_default() += 1;
            if want_pcs {
                *p.entry(pc - delta).or_default() += 1;
            }
        }
    }
    if let Some(done) = cur.take() {
        close(done, &mut classes);
    }
    let mut out = String::new();
    for (name, class) in &classes {
        let mut sorted = class.lengths.clone();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        let near = |n: usize| n.abs_diff(median) <= (median / 20).max(8);
        let mut per_fn: HashMap<usize, usize> = HashMap::new();
        let mut per_pc: BTreeMap<u64, usize> = BTreeMap::new();
        let mut picked = 0usize;
        for ((exit, pcs), &len) in class.exits.iter().zip(&class.pcs).zip(&class.lengths) {
            if near(len) {
                picked += 1;
                for &(f, n) in exit {
                    *per_fn.entry(f).or_default() += n;
                }
                for &(pc, n) in pcs {
                    *per_pc.entry(pc).or_default() += n;
                }
            }
        }
        if let Some(o) = pcs_out.as_deref_mut() {
            for (pc, n) in &per_pc {
                o.push_str(&format!(
                    "{name}\t{pc:#x}\t{:.2}\n",
                    *n as f64 / picked.max(1) as f64
                ));
            }
        }
        out.push_str(&format!(
            "{name}: {} exits, median {median} hypervisor instructions (min {}, max {})\n",
            class.lengths.len(),
            sorted.first().copied().unwrap_or(0),
            sorted.last().copied().unwrap_or(0),
        ));
        let mut top: Vec<(usize, usize)> = per_fn.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (f, n) in top.into_iter().take(TOP) {
            let mut fname = syms.names[f].clone();
            fname.truncate(100);
            out.push_str(&format!(
                "  {:8.1}  {fname}\n",
                n as f64 / picked.max(1) as f64
            ));
        }
    }
    Ok(out)
}

/// `llvm-nm` from the toolchain's llvm-tools, next to its objcopy.
fn nm(elf: &Path) -> Result<String> {
    let tool = build::llvm_tool("llvm-nm")?;
    util::run(
        Command::new(tool)
            .args(["-n", "-C", "--defined-only"])
            .arg(elf),
    )
}

/// Runs the traced benchmark boot and prints the profile.
pub fn run(gic: Gic, vgic: VgicModel) -> Result<bool> {
    let images = build::all()?;
    let dir = util::artifacts().join("bench");
    util::mkdir(&dir)?;
    let sc = bench::tessel_scenario(gic, vgic, &images.test_guest, &dir)?;
    let dtb = qemu::make_dtb(&sc)?;
    // The default image has the classic model only.
    let (flavour, image) = match vgic {
        VgicModel::Classic => (build::Flavour::Default, &images.hypervisor),
        VgicModel::PerIrq => (build::Flavour::Full, &images.hypervisor_full),
    };
    let syms = Symbols::parse(&nm(&build::hypervisor_elf(flavour))?);
    let mut cmd = qemu::command(&sc, image, &dtb);
    cmd.args(["-singlestep", "-d", "exec,nochain", "-D", "/dev/stderr"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "profile: tracing {} ({} vGIC model; takes about a minute)",
        sc.name,
        bench::model_name(vgic)
    );
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let console = child.stdout.take().ok_or("no QEMU stdout")?;
    let console = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(console).lines().map_while(|l| l.ok()) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let trace = child.stderr.take().ok_or("no QEMU stderr")?;
    // TESSEL_PROFILE_PCS=<file>: also write instructions per address.
    let pcs_path = std::env::var_os("TESSEL_PROFILE_PCS");
    let mut pcs = String::new();
    let table = analyse(
        BufReader::with_capacity(1 << 20, trace),
        syms,
        pcs_path.is_some().then_some(&mut pcs),
    );
    if let Some(p) = &pcs_path {
        util::write(Path::new(p), &pcs)?;
    }
    let _ = child.wait();
    let console = console.join().unwrap_or_default();
    let log = dir.join(format!("{}-profile.log", sc.name));
    util::write(&log, &console)?;
    let table = table?;
    let report = bench::check_expected(&sc, &console)
        .and_then(|()| bench::parse(&console))
        .map_err(|e| format!("{e} (log {})", log.display()))?;
    println!(
        "Tessel, {} vGIC model, GIC{}\n",
        bench::model_name(vgic),
        gic.qemu_name()
    );
    println!("{table}");
    for (op, o) in &report.ops {
        println!("{op}: {:.2} counter ticks per operation", o.mean());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NM: &str = "\
0000000000000000 T _start
0000000000000800 T exception_vectors
0000000000000f90 t exception_common
0000000000000fe4 T exception_return
0000000000001000 t _ZN6tessel4vcpu4psci17h0123456789abcdefE
0000000000001000 t tessel::vcpu::psci::h0123456789abcdef
0000000000001100 T handle_exception
";

    fn line(pc: u64) -> String {
        format!("Trace 0: 0x7f00 [0000000000000000/{pc:016x}/00000061/ff020201] \n")
    }

    #[test]
    fn names_pcs_and_cuts_exits() {
        let base = 0x4020_0000;
        let syms = Symbols::parse_at(NM, base);
        assert_eq!(
            syms.index(base + 0xf94).map(|i| syms.names[i].as_str()),
            Some("exception_common")
        );
        assert_eq!(syms.index(0x5000_0000), None);
        // QEMU's boot stub, then the image's first instruction.
        let mut trace = line(RAM_BASE) + &line(RAM_BASE + 4) + &line(base);
        for _ in 0..2 {
            // Lower-EL sync vector slot (2), entry (3), handler, PSCI (2),
            // return (1), guest (2).
            for pc in [
                0xc08, 0xc0c, 0xf90, 0xf94, 0xf98, 0x1100, 0x1000, 0x1004, 0xfe4,
            ] {
                trace.push_str(&line(base + pc));
            }
            trace.push_str(&line(0x5000_0000));
            trace.push_str(&line(0x5000_0004));
        }
        let mut pcs = String::new();
        let out = analyse(trace.as_bytes(), Symbols::parse(NM), Some(&mut pcs)).unwrap();
        assert!(pcs.contains("PSCI call\t0x1000\t1.00\n"), "{pcs}");
        assert!(
            out.starts_with("PSCI call: 2 exits, median 9 hypervisor instructions"),
            "{out}"
        );
        assert!(out.contains("3.0  exception_common"), "{out}");
        assert!(out.contains("2.0  tessel::vcpu::psci"), "{out}");
    }

    #[test]
    fn ignores_other_log_lines() {
        assert_eq!(
            trace_pc("Trace 0: 0x7fe4 [0000000000000000/0000000040000004/00000061/ff020201] "),
            Some(0x4000_0004)
        );
        assert_eq!(trace_pc("Linking TBs 0x1 [0x2] index 0 -> 0x3 [0x4]"), None);
        assert_eq!(strip_hash("tessel::run::hb93be0e3c45cfb59"), "tessel::run");
        assert_eq!(strip_hash("handle_exception"), "handle_exception");
    }
}
