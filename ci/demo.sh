#!/usr/bin/env bash
# Boots the default demo on QEMU: Tessel with two domains (see README).
# Extra arguments go to `cargo xtask run` (for example `--gic v2`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
exec cargo xtask run "$@"
