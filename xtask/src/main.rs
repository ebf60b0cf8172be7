//! Tessel's build and test automation (`cargo xtask <command>`).
mod linux;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fetch-linux") => {
            let dir = std::path::Path::new("target/linux");
            let result = linux::fetch(dir).and_then(|g| {
                let img = linux::initramfs(&g)?;
                std::fs::write(dir.join("initramfs.cpio"), img).map_err(|e| e.to_string())?;
                println!("kernel: {}", g.kernel.display());
                println!("initramfs: {}", dir.join("initramfs.cpio").display());
                Ok(())
            });
            if let Err(e) = result {
                eprintln!("xtask: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("xtask: no such command");
            std::process::exit(2);
        }
    }
}
