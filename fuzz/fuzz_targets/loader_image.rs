//! Kernel modules and guest RAM layouts for tessel-loader: the first
//! `PARAMS` bytes choose the RAM banks, DTB and initrd sizes and a synthetic
//! Image header; the rest is the kernel module (raw Image, gzip or junk), so
//! real kernels can be used as seeds behind a fixed-size prefix.
//!
//! Properties: nothing panics; `probe` agrees with `ImageHeader::parse` and
//! the gzip trailer; a successful `unpack_into` reproduces the probed header
//! and length (and CRC for gzip) and a buffer one byte short is refused; a
//! successful placement keeps kernel, DTB and initrd inside the first RAM
//! bank, pairwise disjoint, with the arm64 boot protocol's alignment (2 MiB
//! base text_offset below the entry, 8-byte aligned DTB of at most 2 MiB
//! ending within 512 MiB of the entry, initrd in a 1 GiB aligned 32 GiB
//! window covering the kernel); placement errors are the documented ones.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tessel_addr::{GuestPhysAddr, GuestRange, SIZE_1G, SIZE_2M};
use tessel_loader::gzip::{self, crc32_update};
use tessel_loader::placement::{DTB_MAX_DISTANCE, MAX_FDT_SIZE, MIN_FDT_ALIGN};
use tessel_loader::{
    ImageFlags, ImageHeader, KernelFormat, LoaderError, PlacementError, PlacementRequest, place,
    probe, unpack_into,
};

/// Bytes of layout parameters in front of the module.
const PARAMS: usize = 95;
/// Largest (decompressed) kernel the target unpacks.
const UNPACK_LIMIT: u64 = 4 << 20;

#[derive(Arbitrary, Debug)]
struct Params {
    banks: [(u64, u64); 3],
    nbanks: u8,
    /// Right shift applied to addresses and sizes, so that realistic values
    /// (MiB to GiB) are as common as extreme ones.
    shift: u8,
    dtb_size: u32,
    initrd: Option<u64>,
    text_offset: u64,
    image_size: u64,
    flags: u64,
    kernel_len: u64,
}

fn end(r: &GuestRange) -> u128 {
    u128::from(r.start.0) + u128::from(r.size)
}

/// Checks one placement request's result against the boot protocol.
fn check_place(req: &PlacementRequest<'_>) {
    let res = place(req);
    let Some(&bank) = req.banks.first() else {
        assert_eq!(res, Err(PlacementError::NoRam));
        return;
    };
    let h = req.kernel;
    let p = match res {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            match e {
                PlacementError::BadBank(b) => assert!(b.is_empty() || b.end().is_none()),
                PlacementError::BadDtbSize(s) => assert!(s == 0 || s > MAX_FDT_SIZE),
                PlacementError::EmptyKernel => assert_eq!(req.kernel_len, 0),
                PlacementError::EmptyInitrd => assert_eq!(req.initrd_len, Some(0)),
                PlacementError::DoesNotFit { need, have, .. } => {
                    assert!(need > have);
                    // The lowest possible layout really overflows the bank.
                    let base = u128::from(bank.start.0).next_multiple_of(u128::from(SIZE_2M));
                    let kend =
                        base + u128::from(h.text_offset) + u128::from(h.footprint(req.kernel_len));
                    let lowest_end = kend.next_multiple_of(u128::from(SIZE_2M))
                        + u128::from(SIZE_2M)
                        + u128::from(req.initrd_len.unwrap_or(0));
                    assert!(lowest_end > end(&bank));
                }
                PlacementError::OutOfReach { .. } | PlacementError::NoRam => {}
            }
            return;
        }
    };
    // Kernel: entered at its first byte, text_offset above a 2 MiB aligned
    // base in the bank, reserving max(image_size, file length).
    assert_eq!(p.entry, p.kernel.start);
    let base = p
        .entry
        .0
        .checked_sub(h.text_offset)
        .expect("entry below text_offset");
    assert_eq!(base % SIZE_2M, 0, "kernel base not 2 MiB aligned");
    assert!(base >= bank.start.0, "kernel base below the bank");
    assert_eq!(p.kernel.size, h.image_size.max(req.kernel_len));
    // DTB: its own 2 MiB block, 8-byte aligned, within 512 MiB of the entry.
    assert_eq!(p.dtb.size, req.dtb_size);
    assert!(p.dtb.size <= MAX_FDT_SIZE);
    assert_eq!(p.dtb.start.0 % MIN_FDT_ALIGN, 0);
    assert_eq!(p.dtb.start.0 % SIZE_2M, 0);
    assert!(end(&p.dtb) <= u128::from(p.entry.0) + u128::from(DTB_MAX_DISTANCE));
    let dtb_block = GuestRange::new(p.dtb.start, SIZE_2M);
    let mut all = vec![p.kernel, p.dtb];
    assert_eq!(p.initrd.map(|i| i.size), req.initrd_len);
    if let Some(i) = p.initrd {
        all.push(i);
        assert!(!i.overlaps(&dtb_block));
        let lo =
            u128::from(p.kernel.start.0.min(i.start.0)) / u128::from(SIZE_1G) * u128::from(SIZE_1G);
        let hi = end(&p.kernel).max(end(&i));
        assert!(hi - lo <= 32 * u128::from(SIZE_1G), "initrd window");
    }
    assert!(!p.kernel.overlaps(&dtb_block));
    for (n, a) in all.iter().enumerate() {
        assert!(a.end().is_some());
        assert!(bank.contains_range(a), "{a} outside {bank}");
        for b in &all[n + 1..] {
            assert!(!a.overlaps(b), "{a} overlaps {b}");
        }
    }
}

fn check_unpack(module: &[u8]) {
    let info = match probe(module) {
        Ok(info) => info,
        Err(e) => {
            let _ = e.to_string();
            if !gzip::is_gzip(module) {
                assert_eq!(
                    e,
                    LoaderError::Image(ImageHeader::parse(module).unwrap_err())
                );
            }
            return;
        }
    };
    match info.format {
        KernelFormat::Image => {
            assert!(!gzip::is_gzip(module));
            assert_eq!(info.len, module.len() as u64);
            assert_eq!(ImageHeader::parse(module), Ok(info.header));
        }
        KernelFormat::GzipImage => {
            assert!(gzip::is_gzip(module));
            assert_eq!(Ok(info.len), gzip::uncompressed_size(module).map(u64::from));
        }
    }
    if info.len > UNPACK_LIMIT {
        return;
    }
    let len = info.len as usize;
    let mut out = vec![0u8; len + 16];
    match unpack_into(module, &mut out) {
        Ok(n) => {
            assert_eq!(n, len);
            let out = &out[..n];
            assert_eq!(ImageHeader::parse(out), Ok(info.header));
            match info.format {
                KernelFormat::Image => assert_eq!(out, module),
                KernelFormat::GzipImage => {
                    let t = &module[module.len() - 8..module.len() - 4];
                    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                    assert_eq!(crc32_update(0, out), crc);
                }
            }
            // One byte short must be refused, never truncated silently.
            let mut short = vec![0u8; len.saturating_sub(1)];
            assert!(unpack_into(module, &mut short).is_err());
        }
        Err(e) => {
            let _ = e.to_string();
            assert_eq!(
                info.format,
                KernelFormat::GzipImage,
                "raw copy failed: {e:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, module) = data.split_at(data.len().min(PARAMS));
    let Ok(p) = Params::arbitrary(&mut Unstructured::new(head)) else {
        return;
    };
    let s = u32::from(p.shift % 64);
    let banks: Vec<GuestRange> = p.banks[..usize::from(p.nbanks % 4)]
        .iter()
        .map(|&(a, n)| GuestRange::new(GuestPhysAddr(a >> s), n >> s))
        .collect();
    let dtb_size = u64::from(p.dtb_size) >> (s % 16);
    let initrd_len = p.initrd.map(|n| n >> s);

    // A synthetic header: every field value, including pre-3.17 kernels.
    let synthetic = ImageHeader {
        code0: 0,
        text_offset: p.text_offset >> s,
        image_size: p.image_size >> s,
        flags: ImageFlags(p.flags),
    };
    check_place(&PlacementRequest {
        banks: &banks,
        kernel: &synthetic,
        kernel_len: p.kernel_len >> s,
        dtb_size,
        initrd_len,
    });

    // The real pipeline: probe the module, unpack it, place what it says.
    check_unpack(module);
    if let Ok(info) = probe(module) {
        check_place(&PlacementRequest {
            banks: &banks,
            kernel: &info.header,
            kernel_len: info.len,
            dtb_size,
            initrd_len,
        });
    }
});
