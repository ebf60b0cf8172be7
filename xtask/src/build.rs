//! `cargo xtask build`: the hypervisor image and the test guests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result};

/// Target of the EL2 hypervisor (no FP/SIMD at EL2).
pub const HYP_TARGET: &str = "aarch64-unknown-none-softfloat";
/// Target of the bare-metal test guest.
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// Offset of the arm64 Image header magic ("ARM\x64").
const IMAGE_MAGIC_OFFSET: usize = 0x38;
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Paths of the built images.
pub struct Images {
    /// The hypervisor raw image (`target/tessel.bin`).
    pub hypervisor: PathBuf,
    /// The test guest raw image (`target/test-guest.bin`).
    pub test_guest: PathBuf,
}

/// A tool from the toolchain's llvm-tools component (`llvm-nm`,
/// `rust-objcopy`, ...), if installed.
pub fn llvm_tool(name: &str) -> Result<PathBuf> {
    let sysroot = util::run(Command::new("rustc").args(["--print", "sysroot"]))?;
    let vv = util::run(Command::new("rustc").arg("-vV"))?;
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("x86_64-unknown-linux-gnu");
    let candidate = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin")
        .join(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    Err(format!(
        "no {name} in the toolchain: run `rustup component add llvm-tools`"
    ))
}

/// `rust-objcopy` from the toolchain's llvm-tools, or an objcopy on PATH.
fn objcopy() -> Result<PathBuf> {
    if let Ok(tool) = llvm_tool("rust-objcopy") {
        return Ok(tool);
    }
    for name in ["rust-objcopy", "llvm-objcopy", "aarch64-linux-gnu-objcopy"] {
        if Command::new(name).arg("--version").output().is_ok() {
            return Ok(PathBuf::from(name));
        }
    }
    Err("no objcopy found: run `rustup component add llvm-tools`".into())
}

/// Checks that `image` starts with an arm64 Image header.
pub fn check_image_header(image: &Path) -> Result<()> {
    let data = util::read(image)?;
    let magic = data.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4);
    if magic != Some(IMAGE_MAGIC.as_slice()) {
        return Err(format!(
            "{}: no arm64 Image header (magic \"ARM\\x64\" missing at offset {IMAGE_MAGIC_OFFSET:#x})",
            image.display()
        ));
    }
    Ok(())
}

fn cargo_build(package: &str, target: &str, extra_env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(util::root())
        .args(["build", "--release", "-p", package, "--target", target]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    util::run_visible(&mut cmd)
}

fn to_binary(elf: &Path, out: &Path) -> Result<()> {
    util::run(
        Command::new(objcopy()?)
            .args(["-O", "binary"])
            .arg(elf)
            .arg(out),
    )?;
    check_image_header(out)
}

/// The hypervisor ELF (with symbols) that `target/tessel.bin` comes from.
pub fn hypervisor_elf() -> PathBuf {
    util::cargo_target_dir()
        .join(HYP_TARGET)
        .join("release/tessel")
}

/// Builds the hypervisor only.
pub fn hypervisor() -> Result<PathBuf> {
    cargo_build("tessel-hypervisor", HYP_TARGET, &[])?;
    let elf = hypervisor_elf();
    let out = util::artifacts().join("tessel.bin");
    util::mkdir(&util::artifacts())?;
    to_binary(&elf, &out)?;
    Ok(out)
}

/// Builds the test guest only. It is position independent: it relocates
/// itself, so the same image runs at guest 0x4000_0000 and at any static
/// bank of a direct-mapped domain.
///
/// It runs with its MMU off, where every access is Device memory and an
/// unaligned one faults, so it is compiled with `+strict-align`. rustc does
/// not know that LLVM feature by name and warns that it passes it through;
/// the warning is expected.
pub fn test_guest() -> Result<PathBuf> {
    cargo_build(
        "tessel-test-guest",
        GUEST_TARGET,
        &[(
            "CARGO_TARGET_AARCH64_UNKNOWN_NONE_RUSTFLAGS",
            "-C relocation-model=pie -C target-feature=+strict-align",
        )],
    )?;
    let elf = util::cargo_target_dir()
        .join(GUEST_TARGET)
        .join("release/test-guest");
    let out = util::artifacts().join("test-guest.bin");
    util::mkdir(&util::artifacts())?;
    to_binary(&elf, &out)?;
    Ok(out)
}

/// Builds everything.
pub fn all() -> Result<Images> {
    let hypervisor = hypervisor()?;
    let test_guest = test_guest()?;
    println!(
        "built {} and {}",
        hypervisor.display(),
        test_guest.display()
    );
    Ok(Images {
        hypervisor,
        test_guest,
    })
}
