//! Tessel's build and test automation (`cargo xtask <command>`).
fn main() {
    eprintln!("xtask: no commands yet");
    std::process::exit(2);
}
