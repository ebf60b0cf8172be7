#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 30 s each).
# Fuzzing needs a nightly compiler; the targets live outside the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain; skipping fuzzing" >&2
    exit 0
fi
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked --quiet
cd fuzz
targets=$(cargo +nightly fuzz list)
for t in $targets; do
    echo "fuzz: $t for ${secs}s"
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- -max_total_time="$secs" -print_final_stats=0 >"/tmp/fuzz-$t.log" 2>&1 || {
        echo "fuzz: $t FAILED"; tail -40 "/tmp/fuzz-$t.log"; exit 1; }
done
echo "fuzz: all targets ran ${secs}s without a crash"
