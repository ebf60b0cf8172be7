#!/bin/sh
# Boots Tessel on QEMU virt with the smoke guest as a direct-mapped domU.
# Usage: run.sh TESSEL_BIN [2|3] [cpu] [domains]
#   GIC version, QEMU CPU model, and how many domains (1, or 3: domU1 with
#   one vCPU, domU2 with two, and domU3 asking for more vCPUs than are left,
#   which Tessel must refuse).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=$1; gic=${2:-3}; cpu=${3:-cortex-a57}; ndom=${4:-1}
out=${TMPDIR:-/tmp}/tessel-smoke.$$
mkdir -p "$out"
tools=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin
llvm-mc -triple=aarch64-none-elf -filetype=obj -o "$out/guest.o" "$here/guest.S"
"$tools/rust-lld" -flavor gnu --image-base=0 -Ttext=0 -e _start -o "$out/guest.elf" "$out/guest.o"
"$tools/rust-objcopy" -O binary "$out/guest.elf" "$out/guest.bin"
size=$(stat -c %s "$out/guest.bin")
machine="virt,virtualization=on,gic-version=$gic"
qemu-system-aarch64 -M "$machine,dumpdtb=$out/host.dtb" -cpu "$cpu" -smp 4 -m 2G -nographic >/dev/null
dtc -q -I dtb -O dts "$out/host.dtb" > "$out/host.dts"
domain() { # name cpus bank
	cat <<DTS
		$1 {
			compatible = "xen,domain";
			#address-cells = <2>;
			#size-cells = <2>;
			memory = <0x0 0x10000>;
			cpus = <$2>;
			direct-map;
			vpl011;
			xen,static-mem = <0x0 $3 0x0 0x4000000>;
			kernel {
				compatible = "multiboot,kernel", "multiboot,module";
				reg = <0x0 0x4a000000 0x0 $size>;
			};
		};
DTS
}
{
	printf '/ {\n\tchosen {\n\t\t#address-cells = <2>;\n\t\t#size-cells = <2>;\n'
	domain domU1 1 0x50000000
	if [ "$ndom" -gt 1 ]; then
		domain domU2 2 0x54000000
		domain domU3 4 0x58000000
	fi
	printf '\t};\n};\n'
} >> "$out/host.dts"
dtc -q -I dts -O dtb -o "$out/tessel.dtb" "$out/host.dts"
timeout 30 qemu-system-aarch64 -M "$machine" -cpu "$cpu" -smp 4 -m 2G -nographic \
    -kernel "$bin" -dtb "$out/tessel.dtb" \
    -device loader,file="$out/guest.bin",addr=0x4a000000,force-raw=on ${QEMU_EXTRA:-}
