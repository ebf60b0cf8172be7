//! Boot scenarios as data: QEMU machine, domains, boot modules, and what the
//! console must show.
//!
//! A scenario becomes a host device tree: QEMU's own DTB for the same
//! machine options (`-machine dumpdtb=`), decompiled with dtc, with the
//! dom0less `xen,domain` nodes appended under `/chosen`, recompiled. Every
//! boot module is loaded by a QEMU `-device loader` at the address its
//! `multiboot,module` node names.

use std::fmt::Write as _;
use std::path::PathBuf;

/// GIC version of the QEMU `virt` machine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gic {
    /// GICv2 (with virtualization extensions: GICH at 0x0803_0000).
    V2,
    /// GICv3.
    V3,
}

impl Gic {
    /// The `gic-version=` value.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Gic::V2 => "2",
            Gic::V3 => "3",
        }
    }

    /// Parses "v2"/"2"/"v3"/"3".
    pub fn parse(s: &str) -> Option<Gic> {
        match s {
            "v2" | "2" => Some(Gic::V2),
            "v3" | "3" => Some(Gic::V3),
            _ => None,
        }
    }
}

/// One boot module (kernel, ramdisk or partial device tree).
#[derive(Clone, Debug)]
pub struct Module {
    /// File QEMU loads.
    pub file: PathBuf,
    /// Host physical load address.
    pub addr: u64,
    /// Size recorded in the module node's `reg` (the file's size).
    pub size: u64,
}

/// One dom0less domain (`/chosen/<name>`, compatible "xen,domain").
#[derive(Clone, Debug)]
pub struct Domain {
    /// Node name; the test guest also prints it before every line.
    pub name: String,
    /// Number of vCPUs (`cpus`).
    pub cpus: u32,
    /// RAM size in KiB (`memory`).
    pub memory_kib: u64,
    /// Emulated SBSA UART (`vpl011`).
    pub vpl011: bool,
    /// 1:1 guest-physical == host-physical (`direct-map`).
    pub direct_map: bool,
    /// Static RAM banks (`xen,static-mem`), (start, size).
    pub static_mem: Vec<(u64, u64)>,
    /// The kernel module.
    pub kernel: Module,
    /// Optional initrd module.
    pub ramdisk: Option<Module>,
    /// Optional partial device tree for passthrough (`multiboot,device-tree`).
    pub device_tree: Option<Module>,
    /// Kernel command line (`bootargs` of the kernel module).
    pub bootargs: String,
}

/// A whole boot: machine options, domains, and expectations.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name (log and DTB file names).
    pub name: String,
    /// GIC version.
    pub gic: Gic,
    /// QEMU CPU model (`-cpu`): `cortex-a57` (Armv8.0) or `max` (every
    /// feature QEMU emulates: pointer authentication, SVE, GICv3 sysregs...).
    pub cpu: &'static str,
    /// Physical CPUs (`-smp`).
    pub smp: u32,
    /// Host RAM in MiB (`-m`).
    pub ram_mib: u64,
    /// The domains under /chosen.
    pub domains: Vec<Domain>,
    /// Seconds before QEMU is killed.
    pub timeout_secs: u64,
    /// Substrings that must each appear in the console output.
    pub expect: Vec<String>,
    /// Substrings that must not appear.
    pub forbid: Vec<String>,
    /// Whether QEMU must exit by itself (clean power-off) before the timeout.
    pub expect_shutdown: bool,
    /// Domains whose configuration the hypervisor must refuse.
    pub expect_refused: Vec<String>,
    /// DTS appended after `/chosen` (e.g. `xen,passthrough` on a host node).
    pub host_dts: String,
    /// Extra QEMU arguments for the real run (drives, devices).
    pub qemu_args: Vec<String>,
    /// Runs on `target/tessel-full.bin` (every optional feature, e.g. the
    /// per-IRQ vGIC model) instead of the default `target/tessel.bin`.
    pub full_image: bool,
}

/// `reg`-style pair of 2-cell values.
fn cells2(v: u64) -> String {
    format!("0x{:x} 0x{:x}", v >> 32, v & 0xffff_ffff)
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Scenario {
    /// The `-machine` option value.
    pub fn machine(&self) -> String {
        format!(
            "virt,virtualization=on,gic-version={}",
            self.gic.qemu_name()
        )
    }

    /// QEMU arguments shared by the DTB dump and the real run.
    pub fn machine_args(&self) -> Vec<String> {
        vec![
            "-machine".into(),
            self.machine(),
            "-cpu".into(),
            self.cpu.into(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            format!("{}M", self.ram_mib),
            "-nographic".into(),
        ]
    }

    /// `-device loader` arguments for every module.
    pub fn loader_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for d in &self.domains {
            let modules = std::iter::once(&d.kernel)
                .chain(d.ramdisk.as_ref())
                .chain(d.device_tree.as_ref());
            for m in modules {
                args.push("-device".into());
                args.push(format!(
                    "loader,file={},addr=0x{:x},force-raw=on",
                    m.file.display(),
                    m.addr
                ));
            }
        }
        args
    }

    /// Checks the generated DTB with the hypervisor's configuration parser:
    /// the domains listed in `expect_refused` are refused, all others valid.
    pub fn preflight(&self, dtb: &[u8]) -> Result<(), String> {
        let cfg = tessel_config::parse(dtb).map_err(|e| format!("host DTB refused: {e}"))?;
        if cfg.domains.len() != self.domains.len() {
            return Err(format!(
                "parser found {} domains, scenario has {}",
                cfg.domains.len(),
                self.domains.len()
            ));
        }
        for (d, parsed) in self.domains.iter().zip(&cfg.domains) {
            let refused = self.expect_refused.contains(&d.name);
            match (parsed, refused) {
                (Ok(_), false) | (Err(_), true) => {}
                (Ok(_), true) => {
                    return Err(format!("domain {} was expected to be refused", d.name));
                }
                (Err(e), false) => return Err(format!("domain {} refused: {e}", d.name)),
            }
        }
        Ok(())
    }

    /// DTS source to append to QEMU's decompiled tree: re-opens `/chosen`
    /// and adds one `xen,domain` node per domain.
    pub fn chosen_dts(&self) -> String {
        let mut s = String::new();
        s.push_str("\n/ {\n\tchosen {\n\t\t#address-cells = <0x2>;\n\t\t#size-cells = <0x2>;\n");
        for d in &self.domains {
            let _ = writeln!(s, "\t\t{} {{", d.name);
            s.push_str("\t\t\tcompatible = \"xen,domain\";\n");
            s.push_str("\t\t\t#address-cells = <0x2>;\n\t\t\t#size-cells = <0x2>;\n");
            let _ = writeln!(s, "\t\t\tmemory = <{}>;", cells2(d.memory_kib));
            let _ = writeln!(s, "\t\t\tcpus = <0x{:x}>;", d.cpus);
            if d.vpl011 {
                s.push_str("\t\t\tvpl011;\n");
            }
            if d.direct_map {
                s.push_str("\t\t\tdirect-map;\n");
            }
            if !d.static_mem.is_empty() {
                let banks: Vec<String> = d
                    .static_mem
                    .iter()
                    .map(|&(a, n)| format!("{} {}", cells2(a), cells2(n)))
                    .collect();
                let _ = writeln!(s, "\t\t\txen,static-mem = <{}>;", banks.join(" "));
            }
            let _ = writeln!(s, "\t\t\tmodule@{:x} {{", d.kernel.addr);
            s.push_str("\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n");
            let _ = writeln!(
                s,
                "\t\t\t\treg = <{} {}>;",
                cells2(d.kernel.addr),
                cells2(d.kernel.size)
            );
            let _ = writeln!(s, "\t\t\t\tbootargs = \"{}\";", quote(&d.bootargs));
            s.push_str("\t\t\t};\n");
            if let Some(r) = &d.ramdisk {
                let _ = writeln!(s, "\t\t\tmodule@{:x} {{", r.addr);
                s.push_str("\t\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n");
                let _ = writeln!(s, "\t\t\t\treg = <{} {}>;", cells2(r.addr), cells2(r.size));
                s.push_str("\t\t\t};\n");
            }
            if let Some(p) = &d.device_tree {
                let _ = writeln!(s, "\t\t\tmodule@{:x} {{", p.addr);
                s.push_str(
                    "\t\t\t\tcompatible = \"multiboot,device-tree\", \"multiboot,module\";\n",
                );
                let _ = writeln!(s, "\t\t\t\treg = <{} {}>;", cells2(p.addr), cells2(p.size));
                s.push_str("\t\t\t};\n");
            }
            s.push_str("\t\t};\n");
        }
        s.push_str("\t};\n};\n");
        s.push_str(&self.host_dts);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_dts_describes_domains_and_modules() {
        let sc = Scenario {
            name: "t".into(),
            gic: Gic::V3,
            cpu: "cortex-a57",
            smp: 2,
            ram_mib: 2048,
            domains: vec![Domain {
                name: "dom1".into(),
                cpus: 1,
                memory_kib: 65536,
                vpl011: true,
                direct_map: true,
                static_mem: vec![(0x6000_0000, 0x400_0000)],
                kernel: Module {
                    file: "k.bin".into(),
                    addr: 0x5000_0000,
                    size: 0x1234,
                },
                ramdisk: None,
                device_tree: None,
                bootargs: "tessel-test=basic \"x\"".into(),
            }],
            timeout_secs: 1,
            expect: vec![],
            forbid: vec![],
            expect_shutdown: true,
            expect_refused: vec![],
            host_dts: String::new(),
            qemu_args: vec![],
            full_image: false,
        };
        let dts = sc.chosen_dts();
        assert!(dts.contains("dom1 {"));
        assert!(dts.contains("memory = <0x0 0x10000>;"));
        assert!(dts.contains("xen,static-mem = <0x0 0x60000000 0x0 0x4000000>;"));
        assert!(dts.contains("direct-map;"));
        assert!(dts.contains("module@50000000 {"));
        assert!(dts.contains("reg = <0x0 0x50000000 0x0 0x1234>;"));
        assert!(dts.contains("bootargs = \"tessel-test=basic \\\"x\\\"\";"));
        assert!(
            sc.loader_args()
                .contains(&"loader,file=k.bin,addr=0x50000000,force-raw=on".to_string())
        );
    }
}
