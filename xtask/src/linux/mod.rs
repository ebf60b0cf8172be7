//! Real Linux guests: Debian's arm64 cloud kernel and `busybox-static`,
//! fetched with apt for the arm64 architecture without touching the host's
//! packages, and an initramfs whose `/init` checks what a scenario asks for.
//!
//! Nothing is installed on the host and root is not needed: apt runs with its
//! own lists and cache directories under `target/linux/apt`, `apt-get
//! download` fetches the `.deb` files, and `dpkg -x` unpacks them into
//! `target/linux/root`. Everything is cached; a second run does no network
//! access. The exact package versions are recorded in
//! `target/linux/versions.txt`.
//!
//! The init script reads its checks from the kernel command line:
//!
//! | parameter | check, printed as `PASS name` / `FAIL name: why` |
//! | --- | --- |
//! | (always) | `userspace`: init runs |
//! | `tessel.ram=BASE-END[,BASE-END]` | `iomem-ram`: `/proc/iomem` lists exactly these System RAM ranges (hex, inclusive end as the kernel prints them) |
//! | `tessel.disk=TEXT` | `virtio-blk`: loads the virtio modules in dependency order, reads `/dev/vda` and finds `TEXT` at its start |
//! | `tessel.cpus=N` | `smp`: N CPUs are online |
//!
//! It then prints `DONE` and powers off.

pub mod cpio;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::apt::Apt;
use crate::util::Result;

/// The virtio modules a passthrough scenario needs; their load order comes
/// from each module's own `depends=` record, not from this list's order.
pub const VIRTIO_MODULES: &[&str] = &["virtio_blk", "virtio_mmio", "virtio", "virtio_ring"];

/// Debian packages fetched: the cloud kernel metapackage (resolved to the
/// versioned image package it depends on) and a static busybox.
const KERNEL_META: &str = "linux-image-cloud-arm64";
const BUSYBOX: &str = "busybox-static";

/// Where the unpacked guest files are.
pub struct LinuxGuest {
    /// The arm64 kernel `Image`.
    pub kernel: PathBuf,
    /// `lib/modules/<version>` of that kernel.
    pub modules: PathBuf,
    /// The static busybox binary.
    pub busybox: PathBuf,
}

/// Fetches (or finds in the cache) the kernel and busybox under `dir`
/// (normally `target/linux`).
pub fn fetch(dir: &Path) -> Result<LinuxGuest> {
    let root = dir.join("root");
    if let Some(guest) = find_unpacked(&root) {
        return Ok(guest);
    }
    let apt = Apt::new(&dir.join("apt"))?;
    eprintln!("linux: reading Debian's arm64 package index");
    apt.update()?;
    // The metapackage depends on exactly one versioned image package.
    let deps = apt.cache(&["depends", KERNEL_META])?;
    let image_pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| format!("{KERNEL_META} has no linux-image dependency:\n{deps}"))?
        .to_string();
    eprintln!("linux: downloading {image_pkg} and {BUSYBOX} (arm64)");
    let versions = apt.download_unpack(&[&image_pkg, BUSYBOX], &root)?;
    fs::write(dir.join("versions.txt"), &versions).map_err(|e| e.to_string())?;
    eprint!("linux: fetched\n{versions}");
    find_unpacked(&root)
        .ok_or_else(|| format!("no kernel or busybox found under {}", root.display()))
}

fn find_unpacked(root: &Path) -> Option<LinuxGuest> {
    let boot = fs::read_dir(root.join("boot")).ok()?;
    let kernel = boot.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
    })?;
    let version = kernel
        .file_name()?
        .to_string_lossy()
        .strip_prefix("vmlinuz-")?
        .to_string();
    let modules = root.join("lib/modules").join(version);
    let busybox = root.join("bin/busybox");
    (modules.is_dir() && busybox.is_file()).then_some(LinuxGuest {
        kernel,
        modules,
        busybox,
    })
}

/// Reads a kernel module's `depends=` record from its `.modinfo` strings.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Orders modules so every module comes after the modules it depends on.
/// `deps` maps each module to its dependencies; a dependency outside the map
/// or a cycle is an error.
pub fn load_order(deps: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>> {
    fn visit(
        m: &str,
        deps: &BTreeMap<String, Vec<String>>,
        state: &mut BTreeMap<String, bool>,
        out: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(m) {
            Some(true) => return Ok(()),
            Some(false) => return Err(format!("module dependency cycle through {m}")),
            None => {}
        }
        let d = deps
            .get(m)
            .ok_or_else(|| format!("module {m} is needed but was not found"))?;
        state.insert(m.to_string(), false);
        for dep in d {
            visit(dep, deps, state, out)?;
        }
        state.insert(m.to_string(), true);
        out.push(m.to_string());
        Ok(())
    }
    let mut state = BTreeMap::new();
    let mut out = Vec::new();
    for m in deps.keys() {
        visit(m, deps, &mut state, &mut out)?;
    }
    Ok(out)
}

/// Finds `<name>.ko` anywhere under the kernel's module tree.
fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if let Some(found) = find_module(&p, name) {
                return Some(found);
            }
        } else if p
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == format!("{name}.ko"))
        {
            return Some(p);
        }
    }
    None
}

/// The `/init` script. Module names are filled in dependency order.
fn init_script(modules: &[String]) -> String {
    let mods = modules.join(" ");
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
pass() {{ echo "PASS $1"; }}
fail() {{ echo "FAIL $1: $2"; }}
pass userspace
arg() {{ for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${{w#*=}}";; esac; done; }}
ram=$(arg tessel.ram)
if [ -n "$ram" ]; then
    want=$(echo "$ram" | tr ',' '\n' | tr 'A-F' 'a-f' | sed 's/^0x//; s/-0x/-/' | sort)
    got=$(grep ' : System RAM$' /proc/iomem | sed 's/ : System RAM//; s/^ *//' | sort)
    if [ "$want" = "$got" ]; then pass iomem-ram; else fail iomem-ram "want [$want] got [$got]"; fi
fi
disk=$(arg tessel.disk)
if [ -n "$disk" ]; then
    for m in {mods}; do insmod /lib/modules/$m.ko || fail virtio-blk "insmod $m"; done
    n=0; while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
    if [ -b /dev/vda ]; then
        head=$(head -c ${{#disk}} /dev/vda)
        if [ "$head" = "$disk" ]; then pass virtio-blk; else fail virtio-blk "read [$head]"; fi
    else
        fail virtio-blk "no /dev/vda"
    fi
fi
cpus=$(arg tessel.cpus)
if [ -n "$cpus" ]; then
    n=0; while [ "$(grep -c ^processor /proc/cpuinfo)" -lt "$cpus" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
    online=$(grep -c ^processor /proc/cpuinfo)
    if [ "$online" = "$cpus" ]; then pass smp; else fail smp "$online of $cpus CPUs online"; fi
fi
echo DONE
poweroff -f
"#
    )
}

/// Builds the initramfs (an uncompressed newc cpio archive) for `guest`.
pub fn initramfs(guest: &LinuxGuest) -> Result<Vec<u8>> {
    let mut deps = BTreeMap::new();
    let mut files = Vec::new();
    for name in VIRTIO_MODULES {
        let path = find_module(&guest.modules, name).ok_or_else(|| {
            format!(
                "module {name}.ko not found under {}",
                guest.modules.display()
            )
        })?;
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        deps.insert(name.to_string(), module_depends(&bytes));
        files.push((name.to_string(), bytes));
    }
    let order = load_order(&deps)?;
    let busybox =
        fs::read(&guest.busybox).map_err(|e| format!("{}: {e}", guest.busybox.display()))?;
    let mut a = cpio::Archive::new();
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules"] {
        a.dir(d);
    }
    a.char_dev("dev/console", 5, 1);
    a.file("bin/busybox", 0o755, &busybox);
    for (name, bytes) in &files {
        a.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
    }
    a.file("init", 0o755, init_script(&order).as_bytes());
    Ok(a.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_depends_from_modinfo() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=virtio,virtio_ring\0name=virtio_mmio\0";
        assert_eq!(module_depends(ko), ["virtio", "virtio_ring"]);
        assert!(module_depends(b"\0depends=\0name=x\0").is_empty());
    }

    #[test]
    fn orders_dependencies_first() {
        let mut d = BTreeMap::new();
        d.insert(
            "virtio_blk".to_string(),
            vec!["virtio".into(), "virtio_ring".into()],
        );
        d.insert(
            "virtio_mmio".to_string(),
            vec!["virtio".into(), "virtio_ring".into()],
        );
        d.insert("virtio".to_string(), vec!["virtio_ring".into()]);
        d.insert("virtio_ring".to_string(), vec![]);
        let order = load_order(&d).unwrap();
        let pos = |m: &str| order.iter().position(|x| x == m).unwrap();
        assert_eq!(order.len(), 4);
        assert!(pos("virtio_ring") < pos("virtio"));
        assert!(pos("virtio") < pos("virtio_mmio"));
        assert!(pos("virtio") < pos("virtio_blk"));
    }

    #[test]
    fn rejects_missing_modules_and_cycles() {
        let mut d = BTreeMap::new();
        d.insert("a".to_string(), vec!["b".into()]);
        assert!(load_order(&d).unwrap_err().contains("b is needed"));
        d.insert("b".to_string(), vec!["a".into()]);
        assert!(load_order(&d).unwrap_err().contains("cycle"));
    }

    #[test]
    fn init_script_loads_modules_in_given_order() {
        let s = init_script(&["virtio_ring".into(), "virtio".into()]);
        assert!(s.contains("for m in virtio_ring virtio; do"));
        assert!(s.starts_with("#!/bin/busybox sh\n"));
    }
}
