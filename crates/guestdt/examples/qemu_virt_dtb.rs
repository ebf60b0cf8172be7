//! Writes a guest DTB describing QEMU's `virt` board with native addresses,
//! as Tessel would for a direct-mapped guest, so it can be booted on bare
//! QEMU to check that Linux accepts it:
//!
//! ```text
//! cargo run -p tessel-guestdt --example qemu_virt_dtb -- v3 pl011 guest.dtb
//! qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a57 -smp 2 -m 512M \
//!     -nographic -kernel Image -dtb guest.dtb
//! ```
//!
//! Arguments: `v2`|`v3`, `sbsa`|`pl011`, output path.

use tessel_addr::{GuestPhysAddr, GuestRange};
use tessel_guestdt::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gic, uart, out] = args.as_slice() else {
        eprintln!("usage: qemu_virt_dtb v2|v3 sbsa|pl011 OUT.dtb");
        std::process::exit(2);
    };
    let gic = match gic.as_str() {
        "v2" => GicSpec::V2 {
            gicd: GuestPhysAddr(0x0800_0000),
            gicc: GuestPhysAddr(0x0801_0000),
        },
        _ => GicSpec::V3 {
            gicd: GuestPhysAddr(0x0800_0000),
            redistributors: vec![GuestRange::new(GuestPhysAddr(0x080a_0000), 0x00f6_0000)],
        },
    };
    let kind = if uart == "pl011" {
        UartKind::Pl011
    } else {
        UartKind::SbsaUart
    };
    let spec = GuestDtSpec {
        cpus: vec![0, 1],
        cpu_compatible: "arm,cortex-a57".into(),
        memory: vec![GuestRange::new(GuestPhysAddr(0x4000_0000), 0x2000_0000)],
        gic,
        timer: TimerSpec::default(),
        vpl011: Some(UartSpec {
            base: GuestPhysAddr(0x0900_0000),
            size: 0x1000,
            spi: 33,
            kind,
            current_speed: 115_200,
        }),
        chosen: ChosenSpec {
            bootargs: Some("earlycon panic=-1".into()),
            ..ChosenSpec::default()
        },
        partial_dtb: None,
    };
    match spec.generate() {
        Ok(dtb) => std::fs::write(out, dtb).expect("cannot write the DTB"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
