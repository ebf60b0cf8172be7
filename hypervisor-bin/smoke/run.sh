#!/bin/sh
# Boots Tessel on QEMU virt with the smoke guest as a direct-mapped domU.
# Usage: run.sh TESSEL_BIN [2|3] [cpu] [domains]
#   KERNEL=Image INITRD=cpio run.sh ...  boots that Linux kernel (and
#   initramfs) in domU1 instead of the smoke guest (256 MiB, VCPUS vCPUs).
#   GIC version, QEMU CPU model, and how many domains (1, or 3: domU1 with
#   one vCPU, domU2 with two, and domU3 asking for more vCPUs than are left,
#   which Tessel must refuse). With 3 domains, domU2 is also given the
#   virtio-mmio page at 0x0a003000 and its SPI by a partial device tree.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=$1; gic=${2:-3}; cpu=${3:-cortex-a57}; ndom=${4:-1}
out=${TMPDIR:-/tmp}/tessel-smoke.$$
mkdir -p "$out"
tools=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin
llvm-mc -triple=aarch64-none-elf -filetype=obj -o "$out/guest.o" "$here/guest.S"
"$tools/rust-lld" -flavor gnu --image-base=0 -Ttext=0 -e _start -o "$out/guest.elf" "$out/guest.o"
"$tools/rust-objcopy" -O binary "$out/guest.elf" "$out/guest.bin"
kernel=${KERNEL:-$out/guest.bin}
size=$(stat -c %s "$kernel")
kaddr=0x42000000
iaddr=0x44000000
bank=0x4000000
memkib=0x10000
vcpus=1
extra=
loaders="-device loader,file=$kernel,addr=$kaddr,force-raw=on"
if [ -n "${KERNEL:-}" ]; then
	bank=0x10000000
	memkib=0x40000
	vcpus=${VCPUS:-2}
	extra="bootargs = \"console=ttyAMA0 earlycon=pl011,0x9000000 ${BOOTARGS:-}\";"
fi
if [ -n "${INITRD:-}" ]; then
	isize=$(stat -c %s "$INITRD")
	loaders="$loaders -device loader,file=$INITRD,addr=$iaddr,force-raw=on"
fi
machine="virt,virtualization=on,gic-version=$gic"
qemu-system-aarch64 -M "$machine,dumpdtb=$out/host.dtb" -cpu "$cpu" -smp 4 -m 2G -nographic >/dev/null
dtc -q -I dtb -O dts "$out/host.dtb" > "$out/host.dts"
paddr=0x45000000
if [ "$ndom" -gt 1 ]; then
	# Mark the device for passthrough in the host DT and describe it in a
	# partial DT for domU2.
	sed -i 's|^\(\t*\)virtio_mmio@a003000 {|&\n\1\txen,passthrough;|' "$out/host.dts"
	cat > "$out/partial.dts" <<PDTS
/dts-v1/;
/ {
	#address-cells = <2>;
	#size-cells = <2>;
	passthrough {
		compatible = "simple-bus";
		ranges;
		#address-cells = <2>;
		#size-cells = <2>;
		virtio@a003000 {
			compatible = "virtio,mmio";
			reg = <0x0 0xa003000 0x0 0x200>;
			interrupt-parent = <65000>;
			interrupts = <0x0 0x28 0x1>;
			xen,reg = <0x0 0xa003000 0x0 0x1000 0x0 0xa003000>;
			xen,path = "/virtio_mmio@a003000";
			xen,force-assign-without-iommu;
		};
	};
};
PDTS
	dtc -q -I dts -O dtb -o "$out/partial.dtb" "$out/partial.dts"
	psize=$(stat -c %s "$out/partial.dtb")
	loaders="$loaders -device loader,file=$out/partial.dtb,addr=$paddr,force-raw=on"
fi
domain() { # name cpus bank
	ramdisk=
	if [ "$1" = domU2 ]; then
		ramdisk="module@$paddr { compatible = \"multiboot,device-tree\", \"multiboot,module\"; reg = <0x0 $paddr 0x0 $psize>; };"
	fi
	if [ -n "${INITRD:-}" ] && [ "$1" = domU1 ]; then
		ramdisk="module@$iaddr { compatible = \"multiboot,ramdisk\", \"multiboot,module\"; reg = <0x0 $iaddr 0x0 $isize>; };"
	fi
	cat <<DTS
		$1 {
			compatible = "xen,domain";
			#address-cells = <2>;
			#size-cells = <2>;
			memory = <0x0 $memkib>;
			cpus = <$2>;
			direct-map;
			vpl011;
			xen,static-mem = <0x0 $3 0x0 $bank>;
			kernel {
				compatible = "multiboot,kernel", "multiboot,module";
				reg = <0x0 $kaddr 0x0 $size>;
				$extra
			};
			$ramdisk
		};
DTS
}
{
	printf '/ {\n\tchosen {\n\t\t#address-cells = <2>;\n\t\t#size-cells = <2>;\n'
	domain domU1 $vcpus 0x50000000
	if [ "$ndom" -gt 1 ]; then
		domain domU2 2 0x60000000
		domain domU3 4 0x64000000
	fi
	printf '\t};\n};\n'
} >> "$out/host.dts"
dtc -q -I dts -O dtb -o "$out/tessel.dtb" "$out/host.dts"
# INPUT=text is typed on the host console a few seconds after boot.
{ if [ -n "${INPUT:-}" ]; then sleep "${INPUT_DELAY:-4}"; printf "%s" "$INPUT"; fi; } |
timeout ${TIMEOUT:-30} qemu-system-aarch64 -M "$machine" -cpu "$cpu" -smp 4 -m 2G -nographic \
    -kernel "$bin" -dtb "$out/tessel.dtb" \
    $loaders ${QEMU_EXTRA:-}
