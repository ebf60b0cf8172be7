#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 30 s each),
# starting from fuzz/seeds/<target>/ where present (see fuzz/seeds/regen.py).
# cargo-fuzz needs unstable compiler flags (-Zsanitizer); rather than fetch a
# nightly toolchain, which a CI machine may not be allowed to do, the pinned
# toolchain is told to accept them with RUSTC_BOOTSTRAP=1. The x86_64 std
# ships the AddressSanitizer runtime, so nothing else is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
cd fuzz
targets=$(cargo fuzz list)
# Build every target in one cargo invocation (shared dependencies, both
# cores busy); `cargo fuzz run` below then finds them up to date.
echo "fuzz: building $(echo $targets | wc -w) targets"
cargo fuzz build >/tmp/fuzz-build.log 2>&1 || {
    echo "fuzz: build FAILED"; tail -40 /tmp/fuzz-build.log; exit 1; }
for t in $targets; do
    echo "fuzz: $t for ${secs}s"
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    cargo fuzz run "$t" "corpus/$t" "${seeds[@]}" -- -max_total_time="$secs" -print_final_stats=0 >"/tmp/fuzz-$t.log" 2>&1 || {
        echo "fuzz: $t FAILED"; tail -40 "/tmp/fuzz-$t.log"; exit 1; }
done
echo "fuzz: all targets ran ${secs}s without a crash"
