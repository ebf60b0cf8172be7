#!/bin/sh
# Builds Tessel, boots the smoke guests on QEMU with GICv2 and GICv3 and
# checks the console for what must happen. Exits non-zero on any miss.
# Usage: check.sh            (needs qemu-system-aarch64, dtc, llvm-mc)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release -p tessel-hypervisor --target aarch64-unknown-none-softfloat)
tools=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin
bin=$target/aarch64-unknown-none-softfloat/release/tessel.bin
"$tools/rust-objcopy" -O binary "$target/aarch64-unknown-none-softfloat/release/tessel" "$bin"
fail=0
passed=0
failed=0
for gic in 2 3; do
	log=$(INPUT=k "$here/run.sh" "$bin" "$gic" cortex-a57 3 2>&1 || true)
	for want in \
		"GICv$gic: distributor" \
		"4 of 4 CPUs online" \
		"vCPU0 on pCPU0" \
		"vCPU1 on pCPU2" \
		"domain domU3 refused: asks for 4 vCPUs but only 1 physical CPUs are free" \
		"(domU1) smoke guest: hello from EL1" \
		"(domU2) smoke guest: hello from EL1" \
		"(domU1) smoke guest: PSCI version 1.1" \
		"(domU1) smoke guest: unmapped load raised a synchronous external abort" \
		"(domU2) smoke guest: unmapped load raised a synchronous external abort" \
		"(domU2) smoke guest: passthrough device answered" \
		"(domU1) smoke guest: no passthrough device" \
		"MMIO 0xa003000+0x1000 at guest 0xa003000+0x1000" \
		"(domU1) smoke guest: received input: k" \
		"(domU2) smoke guest: no console input" \
		"domain domU1 stopped: powered off" \
		"domain domU2 stopped: powered off" \
		"all domains have stopped; powering off"; do
		if printf '%s\n' "$log" | grep -qF -- "$want"; then
			echo "ok   GICv$gic: $want"
			passed=$((passed + 1))
		else
			echo "FAIL GICv$gic: $want"
			failed=$((failed + 1))
			fail=1
		fi
	done
	if printf '%s\n' "$log" | grep -q "FAIL\|PANIC"; then
		echo "FAIL GICv$gic: a guest or the hypervisor reported a failure"
		printf '%s\n' "$log" | grep "FAIL\|PANIC"
		failed=$((failed + 1))
		fail=1
	fi
done
echo "smoke: $passed passed, $failed failed"
exit $fail
