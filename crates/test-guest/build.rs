//! Links the test guest with its own script as a static PIE.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rerun-if-changed={dir}/linker.ld");
    if std::env::var("TARGET").is_ok_and(|t| t.starts_with("aarch64-unknown-none")) {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=-pie");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    }
}
