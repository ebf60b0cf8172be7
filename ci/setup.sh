#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test Tessel.
# Idempotent: every step checks before it installs. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs=()
command -v qemu-system-aarch64 >/dev/null || pkgs+=(qemu-system-arm)
command -v dtc >/dev/null || pkgs+=(device-tree-compiler)
command -v cpio >/dev/null || pkgs+=(cpio)
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${pkgs[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

if ! command -v rustup >/dev/null; then
    echo "setup: rustup is required (https://rustup.rs or Debian's 'rustup' package)" >&2
    exit 1
fi
# Automatic toolchain installs may be disabled, so install the pinned
# toolchain, its components and both bare-metal targets explicitly.
rustup toolchain list | grep -q "^$toolchain" || rustup toolchain install "$toolchain" --profile minimal
rustup component add --toolchain "$toolchain" rustfmt clippy llvm-tools >/dev/null 2>&1
rustup target add --toolchain "$toolchain" aarch64-unknown-none-softfloat aarch64-unknown-none >/dev/null 2>&1
echo "setup: toolchain $toolchain with aarch64 targets, qemu-system-aarch64 and dtc are ready"
