//! Debian arm64 packages fetched without root and without touching the
//! host's own packages.
//!
//! apt runs with its own lists and cache directories under one directory,
//! selects the arm64 architecture, `apt-get download` fetches the `.deb`
//! files and `dpkg -x` unpacks them. Nothing is installed on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result};

/// An apt configuration whose state and cache live under one directory.
pub struct Apt {
    dir: PathBuf,
    opts: Vec<String>,
}

impl Apt {
    /// Uses (and creates) `dir` for apt's lists, cache and downloads.
    pub fn new(dir: &Path) -> Result<Apt> {
        for d in ["lists/partial", "cache/archives/partial", "debs"] {
            util::mkdir(&dir.join(d))?;
        }
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let opts = vec![
            "-q".into(),
            "-oAPT::Architecture=arm64".into(),
            "-oAPT::Architectures=arm64".into(),
            format!("-oDir::State::Lists={}", dir.join("lists").display()),
            format!("-oDir::Cache={}", dir.join("cache").display()),
            "-oDir::State::status=/dev/null".into(),
            "-oDebug::NoLocking=1".into(),
            format!("-oAPT::Sandbox::User={user}"),
        ];
        Ok(Apt {
            dir: dir.to_path_buf(),
            opts,
        })
    }

    /// Reads Debian's arm64 package index (`apt-get update`).
    pub fn update(&self) -> Result<()> {
        util::run(Command::new("apt-get").args(&self.opts).arg("update")).map(|_| ())
    }

    /// Runs `apt-cache` with `args` and returns its output.
    pub fn cache(&self, args: &[&str]) -> Result<String> {
        util::run(Command::new("apt-cache").args(&self.opts).args(args))
    }

    /// Downloads `packages` and unpacks every fetched `.deb` into `root`.
    /// Returns the file names of the packages, one a line (their versions).
    pub fn download_unpack(&self, packages: &[&str], root: &Path) -> Result<String> {
        let debs = self.dir.join("debs");
        util::run(
            Command::new("apt-get")
                .current_dir(&debs)
                .args(&self.opts)
                .arg("download")
                .args(packages),
        )?;
        util::mkdir(root)?;
        let mut versions = String::new();
        let entries = fs::read_dir(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_some_and(|e| e == "deb") {
                util::run(Command::new("dpkg").arg("-x").arg(&path).arg(root))?;
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                versions.push_str(&name.replace("%3a", ":"));
                versions.push('\n');
            }
        }
        Ok(versions)
    }
}
