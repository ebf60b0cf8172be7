//! Guest device trees from arbitrary `GuestDtSpec`s. The first `HEAD`
//! bytes build the spec by hand: every field has a valid default (an
//! all-zero head is a valid one-vCPU GICv2 guest with a vPL011), and bits of
//! a mode word swap fields for raw, usually invalid, values. Whatever follows
//! the head is the partial DTB for passthrough, so real partial DTBs work as
//! seeds behind a zero head.
//!
//! Properties: generation never panics; a generated tree fits the size
//! limit, parses back with tessel-config's independent reader, and holds
//! exactly the requested vCPUs (MPIDRs in order), RAM banks, bootargs,
//! initrd, vGIC frames (none wrapping the address space) and vPL011, with
//! the root `interrupt-parent` naming the vGIC; a copied `/passthrough`
//! keeps every node of the partial DT and none of the `xen,*` properties
//! Tessel consumes.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tessel_addr::{GuestPhysAddr, GuestRange};
use tessel_config::{DeviceTree, NodeId};
use tessel_guestdt::{
    ChosenSpec, GICV2_GICD_SIZE, GICV3_GICD_SIZE, GICV3_GICR_STRIDE, GicSpec, GuestDtSpec,
    MAX_DTB_SIZE, MPIDR_AFFINITY_MASK, TimerSpec, UartKind, UartSpec, parse_partial,
};

/// Bytes that build the spec; the rest is the partial DTB.
const HEAD: usize = 160;

fn take<'a, T: Arbitrary<'a> + Default>(u: &mut Unstructured<'a>) -> T {
    u.arbitrary().unwrap_or_default()
}

fn build<'a>(head: &[u8], partial: Option<&'a [u8]>) -> (GuestDtSpec<'a>, usize) {
    let u = &mut Unstructured::new(head);
    let mode: u16 = take(u);
    let raw = |bit: u32| mode & (1 << bit) != 0;
    let v3: bool = take(u);

    let ncpus = 1 + usize::from(take::<u8>(u)) % if v3 { 40 } else { 9 };
    let cpus = (0..ncpus)
        .map(|i| {
            if raw(0) {
                let mask = if raw(1) {
                    u64::MAX
                } else {
                    MPIDR_AFFINITY_MASK
                };
                take::<u64>(u) & mask
            } else {
                let i = i as u64;
                (i & 0xf) | ((i >> 4) << 8)
            }
        })
        .collect();
    let cpu_compatible = if raw(2) {
        take::<String>(u)
    } else {
        "arm,cortex-a57".into()
    };

    let nbanks = usize::from(take::<u8>(u) % 4) + usize::from(!raw(3));
    let mut cursor = 0x4000_0000u64;
    let memory: Vec<GuestRange> = (0..nbanks)
        .map(|_| {
            if raw(4) {
                GuestRange::new(GuestPhysAddr(take(u)), take(u))
            } else {
                let start = cursor + (u64::from(take::<u8>(u)) << 21);
                let size = (u64::from(take::<u16>(u)) + 1) << 16;
                cursor = start + size;
                GuestRange::new(GuestPhysAddr(start), size)
            }
        })
        .collect();

    let gic = if v3 {
        let nregions = 1 + usize::from(take::<u8>(u) % 3);
        let redistributors = (0..nregions)
            .map(|i| {
                if raw(6) {
                    GuestRange::new(GuestPhysAddr(take(u)), take(u))
                } else {
                    let start = 0x080a_0000 + i as u64 * 0x0200_0000;
                    GuestRange::new(GuestPhysAddr(start), ncpus as u64 * GICV3_GICR_STRIDE)
                }
            })
            .collect();
        let gicd = if raw(5) { take(u) } else { 0x0800_0000 };
        GicSpec::V3 {
            gicd: GuestPhysAddr(gicd),
            redistributors,
        }
    } else {
        let (gicd, gicc) = if raw(5) {
            (take(u), take(u))
        } else {
            (0x0800_0000, 0x0801_0000)
        };
        GicSpec::V2 {
            gicd: GuestPhysAddr(gicd),
            gicc: GuestPhysAddr(gicc),
        }
    };

    let d = TimerSpec::default();
    let ppi = |u: &mut Unstructured<'_>, default: u32| {
        if raw(7) {
            take::<u32>(u)
        } else {
            16 + (default - 16 + u32::from(take::<u8>(u))) % 16
        }
    };
    let timer = TimerSpec {
        secure_phys: ppi(u, d.secure_phys),
        nonsecure_phys: ppi(u, d.nonsecure_phys),
        virt: ppi(u, d.virt),
        clock_frequency: take(u),
    };

    let vpl011 = (!raw(8)).then(|| {
        let (base, size, spi) = if raw(9) {
            (take(u), take(u), take(u))
        } else {
            (
                0x0900_0000,
                0x1000,
                32 + (1 + u32::from(take::<u16>(u))) % 988,
            )
        };
        UartSpec {
            base: GuestPhysAddr(base),
            size,
            spi,
            kind: if take(u) {
                UartKind::Pl011
            } else {
                UartKind::SbsaUart
            },
            current_speed: take(u),
        }
    });

    let bootargs = if raw(10) {
        Some(take::<String>(u))
    } else {
        take::<bool>(u).then(|| "console=ttyAMA0 earlycon".into())
    };
    let stdout_path = raw(11).then(|| take::<String>(u));
    let initrd = if raw(12) {
        Some(GuestRange::new(GuestPhysAddr(take(u)), take(u)))
    } else {
        let b = memory.first().copied();
        b.filter(|_| take::<bool>(u))
            .map(|b| GuestRange::new(b.start, b.size.min(0x10_0000)))
    };
    let limit = if raw(13) {
        take::<u32>(u) as usize
    } else {
        MAX_DTB_SIZE
    };

    let spec = GuestDtSpec {
        cpus,
        cpu_compatible,
        memory,
        gic,
        timer,
        vpl011,
        chosen: ChosenSpec {
            bootargs,
            stdout_path,
            initrd,
        },
        partial_dtb: partial,
    };
    (spec, limit)
}

fn be_cells(v: &[u8]) -> Vec<u64> {
    assert_eq!(v.len() % 4, 0, "cells property of {} bytes", v.len());
    v.chunks(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

/// `(address, size)` pairs of a `reg` with 2 address and 2 size cells.
fn reg64(v: &[u8]) -> Vec<(u64, u64)> {
    let c = be_cells(v);
    assert_eq!(c.len() % 4, 0);
    c.chunks(4)
        .map(|q| ((q[0] << 32) | q[1], (q[2] << 32) | q[3]))
        .collect()
}

fn subtree_size(dt: &DeviceTree, id: NodeId) -> usize {
    1 + dt.children(id).map(|c| subtree_size(dt, c)).sum::<usize>()
}

fn check(spec: &GuestDtSpec<'_>, limit: usize, dtb: &[u8]) {
    assert!(dtb.len() <= limit.min(MAX_DTB_SIZE));
    let dt = DeviceTree::parse(dtb).expect("generated DTB does not parse back");
    let root = dt.root();
    assert_eq!(dt.prop_u32(root, "#address-cells"), Some(2));
    assert_eq!(dt.prop_u32(root, "#size-cells"), Some(2));

    // vCPUs, in order, with their MPIDRs.
    let cpus = dt.find_path("/cpus").expect("/cpus");
    let ac = dt
        .prop_u32(cpus, "#address-cells")
        .expect("cpus #address-cells");
    let got: Vec<u64> = dt
        .children(cpus)
        .filter(|&c| dt.prop_str(c, "device_type") == Some("cpu"))
        .map(|c| {
            let cells = be_cells(dt.prop(c, "reg").expect("cpu reg"));
            assert_eq!(cells.len(), ac as usize);
            cells.iter().fold(0, |acc, c| (acc << 32) | c)
        })
        .collect();
    assert_eq!(got, spec.cpus);

    // Exactly one memory node, listing every bank.
    let mems: Vec<NodeId> = dt
        .children(root)
        .filter(|&c| dt.prop_str(c, "device_type") == Some("memory"))
        .collect();
    assert_eq!(mems.len(), 1);
    let banks: Vec<(u64, u64)> = spec.memory.iter().map(|b| (b.start.0, b.size)).collect();
    assert_eq!(reg64(dt.prop(mems[0], "reg").expect("memory reg")), banks);

    // /chosen.
    let chosen = dt.find_path("/chosen").expect("/chosen");
    let want_args = spec.chosen.bootargs.as_deref().filter(|b| !b.is_empty());
    assert_eq!(dt.prop_str(chosen, "bootargs"), want_args);
    let u64prop = |n: &str| dt.prop(chosen, n).map(reg64_one);
    match spec.chosen.initrd {
        Some(r) => {
            assert_eq!(u64prop("linux,initrd-start"), Some(r.start.0));
            assert_eq!(u64prop("linux,initrd-end"), Some(r.start.0 + r.size));
        }
        None => assert_eq!(u64prop("linux,initrd-start"), None),
    }

    // The vGIC is the root's interrupt parent and has the requested frames.
    let ph = dt
        .prop_u32(root, "interrupt-parent")
        .expect("interrupt-parent");
    let gic = dt.find_phandle(ph).expect("interrupt-parent resolves");
    assert!(dt.prop(gic, "interrupt-controller").is_some());
    let frames = reg64(dt.prop(gic, "reg").expect("gic reg"));
    for &(base, size) in &frames {
        assert!(
            base.checked_add(size).is_some(),
            "GIC frame {base:#x}+{size:#x} wraps"
        );
    }
    match &spec.gic {
        GicSpec::V2 { gicd, .. } => {
            assert!(dt.is_compatible(gic, "arm,gic-400"));
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[0], (gicd.0, GICV2_GICD_SIZE));
        }
        GicSpec::V3 {
            gicd,
            redistributors,
        } => {
            assert!(dt.is_compatible(gic, "arm,gic-v3"));
            assert_eq!(frames[0], (gicd.0, GICV3_GICD_SIZE));
            let rd: Vec<(u64, u64)> = redistributors.iter().map(|r| (r.start.0, r.size)).collect();
            assert_eq!(&frames[1..], rd.as_slice());
        }
    }

    // The vPL011.
    if let (Some(u), Some(path)) = (&spec.vpl011, spec.uart_path()) {
        let n = dt.find_path(&path).expect("vPL011 node");
        assert_eq!(
            reg64(dt.prop(n, "reg").expect("uart reg")),
            [(u.base.0, u.size)]
        );
        let irq = be_cells(dt.prop(n, "interrupts").expect("uart interrupts"));
        assert_eq!(irq, [0, u64::from(u.spi - 32), 4]);
    }

    // Passthrough: every node copied, consumed properties stripped.
    let partial = spec.partial_dtb.and_then(|b| parse_partial(b).ok());
    let pt = partial.as_ref().and_then(|p| {
        let pt = p
            .children(p.root())
            .find(|&c| p.node(c).name == "passthrough")?;
        Some((p, pt))
    });
    if let Some((p, pt)) = pt {
        let out = dt.find_path("/passthrough").expect("/passthrough copied");
        assert_eq!(subtree_size(&dt, out), subtree_size(p, pt));
        let mut stack = vec![out];
        while let Some(n) = stack.pop() {
            for p in &dt.node(n).props {
                assert!(
                    !matches!(
                        p.name.as_str(),
                        "xen,reg" | "xen,path" | "xen,force-assign-without-iommu"
                    ),
                    "{} kept in {}",
                    p.name,
                    dt.path(n)
                );
            }
            stack.extend(dt.children(n));
        }
    }
}

fn reg64_one(v: &[u8]) -> u64 {
    let c = be_cells(v);
    assert_eq!(c.len(), 2);
    (c[0] << 32) | c[1]
}

fuzz_target!(|data: &[u8]| {
    let (head, tail) = data.split_at(data.len().min(HEAD));
    let partial = (!tail.is_empty()).then_some(tail);
    let (spec, limit) = build(head, partial);
    match spec.generate_with_limit(limit) {
        Ok(dtb) => check(&spec, limit, &dtb),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
