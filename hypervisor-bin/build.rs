//! Link settings for the EL2 image: our own linker script and a static PIE
//! (the entry code applies its own relative relocations, packed as RELR).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed={dir}/linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("aarch64-") && target.contains("none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=--pie");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-znostart-stop-gc");
        println!("cargo:rustc-link-arg-bins=-zpack-relative-relocs");
        println!("cargo:rustc-link-arg-bins=-zseparate-loadable-segments");
    }
}
