#!/usr/bin/env bash
# Everything CI checks, in the order a developer would want to see failures:
# formatting, lints (host and aarch64 targets), then the README's test command
# (`cargo xtask test`: host unit tests and the QEMU end-to-end scenarios), then
# time-bounded fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh

step() { echo; echo "=== $* ==="; }
step "rustfmt"
cargo fmt --all -- --check
step "clippy (host crates)"
cargo clippy --all-targets -- -D warnings
cargo clippy -p tessel-vgic -p tessel-builder --no-default-features --all-targets -- -D warnings
step "clippy (EL2 binary)"
cargo clippy -p tessel-hypervisor --target aarch64-unknown-none-softfloat -- -D warnings
cargo clippy -p tessel-hypervisor --target aarch64-unknown-none-softfloat --features vgic-per-irq -- -D warnings
step "clippy (test guest)"
cargo clippy -p tessel-test-guest --target aarch64-unknown-none -- -D warnings
step "tests: cargo xtask test"
cargo xtask test
step "fuzzing"
bash ci/fuzz.sh
