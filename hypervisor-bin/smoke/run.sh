#!/bin/sh
# Boots Tessel on QEMU virt with the smoke guest as a direct-mapped domU.
# Usage: run.sh TESSEL_BIN [2|3] [cpu]   (GIC version, QEMU CPU model)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=$1; gic=${2:-3}; cpu=${3:-cortex-a57}
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
cat >> "$out/host.dts" <<DTS
/ {
	chosen {
		#address-cells = <2>;
		#size-cells = <2>;
		domU1 {
			compatible = "xen,domain";
			#address-cells = <2>;
			#size-cells = <2>;
			memory = <0x0 0x10000>;
			cpus = <1>;
			direct-map;
			vpl011;
			xen,static-mem = <0x0 0x50000000 0x0 0x4000000>;
			kernel {
				compatible = "multiboot,kernel", "multiboot,module";
				reg = <0x0 0x4a000000 0x0 $size>;
			};
		};
	};
};
DTS
dtc -q -I dts -O dtb -o "$out/tessel.dtb" "$out/host.dts"
timeout 30 qemu-system-aarch64 -M "$machine" -cpu "$cpu" -smp 4 -m 2G -nographic \
    -kernel "$bin" -dtb "$out/tessel.dtb" \
    -device loader,file="$out/guest.bin",addr=0x4a000000,force-raw=on ${QEMU_EXTRA:-}
