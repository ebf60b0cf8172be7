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
    /// The hypervisor raw image (`target/tessel.bin`), default features:
    /// the classic vGIC model only.
    pub hypervisor: PathBuf,
    /// The hypervisor with every optional feature (`target/tessel-full.bin`):
    /// also the per-IRQ vGIC model.
    pub hypervisor_full: PathBuf,
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

fn cargo_build(
    package: &str,
    target: &str,
    features: &[&str],
    extra_env: &[(&str, &str)],
) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(util::root())
        .args(["build", "--release", "-p", package, "--target", target]);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
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

/// Which build of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Default features (`target/tessel.bin`): what the README's demo
    /// boots and what the image-size figure measures.
    Default,
    /// Every optional feature (`target/tessel-full.bin`): the per-IRQ vGIC
    /// model too.
    Full,
}

impl Flavour {
    fn stem(self) -> &'static str {
        match self {
            Self::Default => "tessel",
            Self::Full => "tessel-full",
        }
    }

    fn features(self) -> &'static [&'static str] {
        match self {
            Self::Default => &[],
            Self::Full => &["vgic-per-irq"],
        }
    }
}

/// The hypervisor ELF (with symbols) that `target/<stem>.bin` comes from,
/// kept beside it (`target/<stem>.elf`): both flavours link to the same
/// cargo output path.
pub fn hypervisor_elf(flavour: Flavour) -> PathBuf {
    util::artifacts().join(format!("{}.elf", flavour.stem()))
}

/// Builds one flavour of the hypervisor.
pub fn hypervisor(flavour: Flavour) -> Result<PathBuf> {
    cargo_build("tessel-hypervisor", HYP_TARGET, flavour.features(), &[])?;
    let built = util::cargo_target_dir()
        .join(HYP_TARGET)
        .join("release/tessel");
    util::mkdir(&util::artifacts())?;
    let elf = hypervisor_elf(flavour);
    std::fs::copy(&built, &elf)
        .map_err(|e| format!("copy {} to {}: {e}", built.display(), elf.display()))?;
    let out = util::artifacts().join(format!("{}.bin", flavour.stem()));
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
        &[],
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
    images(true)
}

/// Builds the default hypervisor and the test guest, and the full
/// hypervisor too if `full` (else `hypervisor_full` names whatever an
/// earlier build left there: only scenarios that need it read it).
pub fn images(full: bool) -> Result<Images> {
    let hypervisor_full = if full {
        hypervisor(Flavour::Full)?
    } else {
        util::artifacts().join("tessel-full.bin")
    };
    let hypervisor = hypervisor(Flavour::Default)?;
    let test_guest = test_guest()?;
    println!(
        "built {}{} and {}",
        hypervisor.display(),
        if full {
            format!(", {}", hypervisor_full.display())
        } else {
            String::new()
        },
        test_guest.display()
    );
    Ok(Images {
        hypervisor,
        hypervisor_full,
        test_guest,
    })
}
