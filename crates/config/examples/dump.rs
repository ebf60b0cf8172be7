//! Prints what `tessel-config` reads from a DTB: `cargo run --example dump -- FILE.dtb`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: dump FILE.dtb");
    let bytes = std::fs::read(&path).expect("cannot read the DTB");
    match tessel_config::parse(&bytes) {
        Err(e) => println!("fatal: {e}"),
        Ok(cfg) => {
            println!("{:#x?}", cfg.host);
            println!("xen bootargs: {:?}", cfg.xen_bootargs);
            for m in &cfg.modules {
                println!("module {:?} {} {:?} {}", m.kind, m.range, m.domain, m.path);
            }
            for d in &cfg.domains {
                match d {
                    Ok(d) => println!("domain {d:#x?}"),
                    Err(e) => println!("refused: {e}"),
                }
            }
            for w in &cfg.warnings {
                println!("warning: {w}");
            }
        }
    }
}
