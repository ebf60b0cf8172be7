//! Image header, gzip and placement tests against synthetic kernels.

use proptest::prelude::*;
use tessel_addr::{GuestPhysAddr, GuestRange};
use tessel_loader::gzip::{self, GzipError, crc32_update};
use tessel_loader::*;

const MIB: u64 = 1 << 20;

/// A synthetic arm64 Image of `len` bytes with the given header fields and a
/// recognisable body.
fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    v[..64].fill(0);
    v[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b #0x40
    v[8..16].copy_from_slice(&text_offset.to_le_bytes());
    v[16..24].copy_from_slice(&image_size.to_le_bytes());
    v[24..32].copy_from_slice(&flags.to_le_bytes());
    v[0x38..0x3c].copy_from_slice(b"ARM\x64");
    v
}

/// Wraps raw DEFLATE data in a gzip member (RFC 1952) with an optional
/// file name.
fn gzip_wrap(data: &[u8], name: Option<&str>) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, 6);
    let flg = if name.is_some() { 0x08 } else { 0 };
    let mut out = vec![0x1f, 0x8b, 8, flg, 0, 0, 0, 0, 0, 3];
    if let Some(n) = name {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32_update(0, data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn parses_a_modern_header() {
    let img = image(0, 0x2a0_0000, 0b1010, 4096);
    let h = ImageHeader::parse(&img).unwrap();
    assert_eq!(h.code0, 0x1400_0010);
    assert_eq!(h.text_offset, 0);
    assert_eq!(h.image_size, 0x2a0_0000);
    assert_eq!(h.flags.page_size(), PageSize::K4);
    assert!(h.flags.placement_anywhere());
    assert!(!h.flags.big_endian());
    assert_eq!(h.footprint(4096), 0x2a0_0000);

    let h = ImageHeader::parse(&image(0x8_0000, MIB, 0b0110, 64)).unwrap();
    assert_eq!(h.text_offset, 0x8_0000);
    assert_eq!(h.flags.page_size(), PageSize::K64);
    assert!(!h.flags.placement_anywhere());
}

#[test]
fn header_errors() {
    assert_eq!(ImageHeader::parse(&[0; 63]), Err(ImageError::TooShort(63)));
    let mut img = image(0, MIB, 0, 128);
    img[0x38] = b'X';
    assert!(matches!(
        ImageHeader::parse(&img),
        Err(ImageError::BadMagic(_))
    ));
    assert_eq!(
        ImageHeader::parse(&image(0, MIB, 1, 128)),
        Err(ImageError::BigEndian)
    );
    let msg = ImageError::BadMagic(0x1234).to_string();
    assert!(msg.contains("0x00001234") && msg.contains("0x38"), "{msg}");
}

#[test]
fn pre_3_17_kernel_assumes_text_offset_0x80000() {
    // image_size 0: text_offset field and flags are not trusted.
    let h = ImageHeader::parse(&image(0x1234, 0, 1, 8192)).unwrap();
    assert_eq!(h.text_offset, 0x8_0000);
    assert_eq!(h.image_size, 0);
    assert!(!h.flags.big_endian());
    assert_eq!(h.footprint(8192), 8192);
}

#[test]
fn probe_raw_image() {
    let img = image(0, 8 * MIB, 0b1010, 100_000);
    let info = probe(&img).unwrap();
    assert_eq!(info.format, KernelFormat::Image);
    assert_eq!(info.len, 100_000);
    let mut out = vec![0u8; 100_000];
    assert_eq!(unpack_into(&img, &mut out).unwrap(), 100_000);
    assert_eq!(out, img);
    assert_eq!(
        unpack_into(&img, &mut [0u8; 10]),
        Err(LoaderError::OutputTooSmall {
            need: 100_000,
            have: 10
        })
    );
}

#[test]
fn gzip_kernel_round_trip() {
    let img = image(0, 8 * MIB, 0b1010, 300_000);
    for name in [None, Some("Image")] {
        let gz = gzip_wrap(&img, name);
        let info = probe(&gz).unwrap();
        assert_eq!(info.format, KernelFormat::GzipImage);
        assert_eq!(info.len, img.len() as u64);
        assert_eq!(info.header.image_size, 8 * MIB);
        assert_eq!(unpack(&gz, 1 << 30).unwrap(), img);
        assert_eq!(
            unpack(&gz, 1000),
            Err(LoaderError::TooLarge {
                size: img.len() as u64,
                limit: 1000
            })
        );
    }
}

#[test]
fn gzip_defects_are_detected() {
    let img = image(0, 8 * MIB, 0b1010, 50_000);
    let gz = gzip_wrap(&img, None);
    let n = gz.len();

    let mut bad_crc = gz.clone();
    bad_crc[n - 8] ^= 1;
    assert!(matches!(
        unpack(&bad_crc, 1 << 30),
        Err(LoaderError::Gzip(GzipError::Crc { .. }))
    ));

    let mut small_isize = gz.clone();
    small_isize[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(
        unpack(&small_isize, 1 << 30),
        Err(LoaderError::Gzip(GzipError::LongerThanIsize(1000)))
    );

    let mut big_isize = gz.clone();
    big_isize[n - 4..].copy_from_slice(&60_000u32.to_le_bytes());
    assert_eq!(
        unpack(&big_isize, 1 << 30),
        Err(LoaderError::Gzip(GzipError::ShorterThanIsize {
            got: 50_000,
            isize: 60_000
        }))
    );

    let mut trailing = gz.clone();
    trailing.extend_from_slice(&[0; 16]);
    // ISIZE is read from the end of the module, so trailing bytes make it
    // wrong; either way the module is refused with a gzip error.
    assert!(matches!(
        unpack(&trailing, 1 << 30),
        Err(LoaderError::Gzip(_))
    ));

    // Truncated: the "ISIZE" read from the end is arbitrary data, so the
    // module is refused either as too large or as corrupt, never accepted.
    let truncated = &gz[..n / 2];
    let r = unpack(truncated, 1 << 30);
    assert!(
        matches!(r, Err(LoaderError::Gzip(_) | LoaderError::TooLarge { .. })),
        "{r:?}"
    );
    let mut out = vec![0u8; 1 << 20];
    assert!(matches!(
        gzip::inflate_into(truncated, &mut out),
        Err(GzipError::Corrupt | GzipError::OutputTooSmall { .. })
    ));

    let mut method = gz.clone();
    method[2] = 0;
    assert_eq!(
        probe(&method),
        Err(LoaderError::Gzip(GzipError::UnsupportedMethod(0)))
    );

    // A gzip of something that is not an Image.
    let not_image = gzip_wrap(&[0xaa; 1000], None);
    assert!(matches!(
        probe(&not_image),
        Err(LoaderError::Image(ImageError::BadMagic(_)))
    ));
    let tiny = gzip_wrap(&[1, 2, 3], None);
    assert_eq!(
        probe(&tiny),
        Err(LoaderError::Image(ImageError::TooShort(3)))
    );
}

#[test]
fn gzip_from_the_gzip_tool() {
    let img = image(0, 8 * MIB, 0b1010, 200_000);
    let dir = std::env::temp_dir().join(format!("tessel-loader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("Image");
    std::fs::write(&path, &img).unwrap();
    let status = std::process::Command::new("gzip")
        .args(["-9", "-f", "-k"])
        .arg(&path)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("SKIPPED: gzip tool not available ({other:?})");
            return;
        }
    }
    let gz = std::fs::read(dir.join("Image.gz")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let info = probe(&gz).unwrap();
    assert_eq!(info.format, KernelFormat::GzipImage);
    assert_eq!(unpack(&gz, 1 << 30).unwrap(), img);
}

fn header(text_offset: u64, image_size: u64) -> ImageHeader {
    ImageHeader::parse(&image(text_offset, image_size, 0b1010, 64)).unwrap()
}

fn req<'a>(
    banks: &'a [GuestRange],
    h: &'a ImageHeader,
    len: u64,
    initrd: Option<u64>,
) -> PlacementRequest<'a> {
    PlacementRequest {
        banks,
        kernel: h,
        kernel_len: len,
        dtb_size: 2 * MIB,
        initrd_len: initrd,
    }
}

#[test]
fn typical_placement() {
    let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 256 * MIB)];
    let h = header(0, 0x2a0_0000);
    let p = place(&req(&banks, &h, 30 * MIB, Some(0x120_0000))).unwrap();
    assert_eq!(p.entry, GuestPhysAddr(0x4000_0000));
    assert_eq!(
        p.kernel,
        GuestRange::new(GuestPhysAddr(0x4000_0000), 0x2a0_0000)
    );
    // As high as possible: initrd ends below the bank end, DTB 2 MiB before it.
    let initrd = p.initrd.unwrap();
    assert_eq!(initrd.size, 0x120_0000);
    assert_eq!(initrd.start.0, p.dtb.start.0 + 2 * MIB);
    assert!(initrd.end().unwrap().0 <= 0x5000_0000);
    assert!(0x5000_0000 - initrd.end().unwrap().0 < 2 * MIB);
    assert_eq!(p.dtb.start.0 % (2 * MIB), 0);
    assert_eq!(p.dtb.size, 2 * MIB);
}

#[test]
fn image_size_reserves_bss_beyond_the_file() {
    // File 1 MiB, image_size 20 MiB: the DTB must not land in the BSS even
    // when the bank is just big enough.
    let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 24 * MIB)];
    let h = header(0, 20 * MIB);
    let p = place(&req(&banks, &h, MIB, None)).unwrap();
    assert!(p.dtb.start.0 >= 0x4000_0000 + 20 * MIB);
    assert_eq!(p.initrd, None);
    let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 21 * MIB)];
    assert!(matches!(
        place(&req(&banks, &h, MIB, None)),
        Err(PlacementError::DoesNotFit { .. })
    ));
}

#[test]
fn unaligned_bank_start_and_text_offset() {
    let banks = [GuestRange::new(GuestPhysAddr(0x4010_0000), 64 * MIB)];
    let h = header(0x8_0000, 4 * MIB);
    let p = place(&req(&banks, &h, 3 * MIB, None)).unwrap();
    // Base rounded up to 2 MiB, then text_offset.
    assert_eq!(p.entry, GuestPhysAddr(0x4020_0000 + 0x8_0000));
    // Legacy kernel: image_size 0, text_offset forced to 0x80000.
    let mut legacy = image(0, 0, 0, 64);
    legacy[8..16].copy_from_slice(&0x7777u64.to_le_bytes());
    let h = ImageHeader::parse(&legacy).unwrap();
    let p = place(&req(&banks, &h, 5 * MIB, None)).unwrap();
    assert_eq!(p.entry, GuestPhysAddr(0x4028_0000));
    assert_eq!(p.kernel.size, 5 * MIB);
}

#[test]
fn exact_fit_and_one_block_short() {
    // kernel 0..6 MiB, DTB block 6..8, initrd 8..8+3 MiB = 11 MiB.
    let h = header(0, 6 * MIB);
    let fits = [GuestRange::new(GuestPhysAddr(0x8000_0000), 11 * MIB)];
    let p = place(&req(&fits, &h, MIB, Some(3 * MIB))).unwrap();
    assert_eq!(p.dtb.start, GuestPhysAddr(0x8000_0000 + 6 * MIB));
    assert_eq!(
        p.initrd,
        Some(GuestRange::new(
            GuestPhysAddr(0x8000_0000 + 8 * MIB),
            3 * MIB
        ))
    );
    let short = [GuestRange::new(GuestPhysAddr(0x8000_0000), 11 * MIB - 1)];
    let err = place(&req(&short, &h, MIB, Some(3 * MIB))).unwrap_err();
    assert_eq!(
        err,
        PlacementError::DoesNotFit {
            image_size: 6 * MIB,
            kernel_len: MIB,
            dtb_size: 2 * MIB,
            initrd_len: 3 * MIB,
            need: 11 * MIB,
            bank: short[0],
            have: 11 * MIB - 1,
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("image_size 0x600000")
            && msg.contains("initrd (0x300000)")
            && msg.contains("need 0xb00000")
            && msg.contains("0x80000000+0xafffff")
            && msg.contains("has 0xafffff"),
        "{msg}"
    );
}

#[test]
fn dtb_stays_within_512mib_of_the_kernel_in_a_big_bank() {
    let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 8 << 30)];
    let h = header(0, 40 * MIB);
    let p = place(&req(&banks, &h, 30 * MIB, Some(64 * MIB))).unwrap();
    assert!(p.dtb.end().unwrap().0 <= p.entry.0 + (512 * MIB));
    // And it is as high as that rule allows.
    assert!(p.entry.0 + 512 * MIB - p.dtb.end().unwrap().0 < 2 * MIB);
}

#[test]
fn out_of_reach_errors() {
    // A kernel above 512 MiB leaves no room for the DTB within reach.
    let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 2 << 30)];
    let h = header(0, 520 * MIB);
    assert!(matches!(
        place(&req(&banks, &h, MIB, None)),
        Err(PlacementError::OutOfReach { what }) if what.contains("512 MiB")
    ));
    // An initrd that cannot share a 32 GiB window with the kernel.
    let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 64 << 30)];
    let h = header(0, 16 * MIB);
    assert!(matches!(
        place(&req(&banks, &h, MIB, Some(33 << 30))),
        Err(PlacementError::OutOfReach { what }) if what.contains("32 GiB")
    ));
}

#[test]
fn request_errors() {
    let banks = [GuestRange::new(GuestPhysAddr(0x4000_0000), 64 * MIB)];
    let h = header(0, 4 * MIB);
    assert_eq!(place(&req(&[], &h, MIB, None)), Err(PlacementError::NoRam));
    assert_eq!(
        place(&req(&banks, &h, 0, None)),
        Err(PlacementError::EmptyKernel)
    );
    assert_eq!(
        place(&req(&banks, &h, MIB, Some(0))),
        Err(PlacementError::EmptyInitrd)
    );
    let mut r = req(&banks, &h, MIB, None);
    r.dtb_size = 2 * MIB + 1;
    assert_eq!(place(&r), Err(PlacementError::BadDtbSize(2 * MIB + 1)));
    let wraps = [GuestRange::new(GuestPhysAddr(u64::MAX - MIB), 2 * MIB)];
    assert_eq!(
        place(&req(&wraps, &h, MIB, None)),
        Err(PlacementError::BadBank(wraps[0]))
    );
    // Huge text_offset must not overflow.
    let h = header(u64::MAX - 10, 4 * MIB);
    assert!(matches!(
        place(&req(&banks, &h, MIB, None)),
        Err(PlacementError::DoesNotFit { .. })
    ));
}

fn disjoint(a: &GuestRange, b: &GuestRange) -> bool {
    !a.overlaps(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn placements_obey_the_boot_protocol(
        start in 0u64..(1 << 40),
        size in 1u64..(40u64 << 30),
        text_offset in prop_oneof![Just(0u64), Just(0x8_0000), (0u64..512).prop_map(|p| p << 12)],
        image_size in prop_oneof![Just(0u64), 1u64..(600 * MIB)],
        kernel_len in 1u64..(64 * MIB),
        dtb_size in 1u64..=(2 * MIB),
        initrd in prop::option::of(1u64..(40u64 << 30)),
    ) {
        let banks = [GuestRange::new(GuestPhysAddr(start), size)];
        let h = header(text_offset, image_size);
        let r = PlacementRequest { banks: &banks, kernel: &h, kernel_len, dtb_size, initrd_len: initrd };
        match place(&r) {
            Ok(p) => {
                let bank = banks[0];
                prop_assert_eq!(p.entry, p.kernel.start);
                prop_assert_eq!((p.entry.0 - h.text_offset) % (2 * MIB), 0);
                prop_assert_eq!(p.kernel.size, h.image_size.max(kernel_len));
                prop_assert!(bank.contains_range(&p.kernel));
                prop_assert!(bank.contains_range(&p.dtb));
                prop_assert_eq!(p.dtb.size, dtb_size);
                prop_assert_eq!(p.dtb.start.0 % (2 * MIB), 0);
                prop_assert!(p.dtb.end().unwrap().0 <= p.entry.0 + 512 * MIB);
                prop_assert!(disjoint(&p.kernel, &p.dtb));
                // The DTB's 2 MiB block is its own.
                let dtb_block = GuestRange::new(p.dtb.start, 2 * MIB);
                prop_assert!(disjoint(&p.kernel, &dtb_block));
                prop_assert_eq!(p.initrd.map(|i| i.size), initrd);
                if let Some(i) = p.initrd {
                    prop_assert!(bank.contains_range(&i));
                    prop_assert!(disjoint(&i, &dtb_block));
                    prop_assert!(disjoint(&i, &p.kernel));
                    let window = (p.entry.0 - h.text_offset) / (1 << 30) * (1 << 30);
                    prop_assert!(i.end().unwrap().0 <= window + (32u64 << 30));
                }
            }
            Err(PlacementError::DoesNotFit { need, have, .. }) => {
                prop_assert!(need > have);
                // Independent check: the lowest possible layout overflows.
                let base = u128::from(start).next_multiple_of(2 << 20);
                let kend = base + u128::from(h.text_offset)
                    + u128::from(h.image_size.max(kernel_len));
                let end = kend.next_multiple_of(2 << 20) + (2 << 20)
                    + u128::from(initrd.unwrap_or(0));
                prop_assert!(end > u128::from(start) + u128::from(size));
            }
            Err(PlacementError::OutOfReach { .. }) => {
                // Only for kernels near 512 MiB or initrds of tens of GiB.
                prop_assert!(
                    h.image_size.max(kernel_len) + h.text_offset > 500 * MIB
                        || initrd.unwrap_or(0) > 30u64 << 30
                );
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn gzip_round_trips(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut img = image(0, MIB, 0b1010, 64);
        img.extend_from_slice(&body);
        let gz = gzip_wrap(&img, None);
        prop_assert_eq!(unpack(&gz, 1 << 20).unwrap(), img);
    }

    #[test]
    fn corrupt_gzip_never_panics(idx in 0usize..2000, val in any::<u8>(), cut in 0usize..2000) {
        let img = image(0, MIB, 0b1010, 1500);
        let mut gz = gzip_wrap(&img, Some("vmlinuz"));
        let i = idx % gz.len();
        gz[i] = val;
        gz.truncate(gz.len() - cut % gz.len());
        let _ = probe(&gz);
        let _ = unpack(&gz, 1 << 20);
        let mut out = vec![0u8; 4096];
        let _ = gzip::inflate_into(&gz, &mut out);
    }
}

/// Runs against a real kernel when `TESSEL_TEST_KERNEL` names one (for
/// example Debian's `vmlinuz-*-arm64`, raw or gzip-compressed); skipped
/// otherwise. CI sets it once a kernel is fetched.
#[test]
fn real_kernel_from_env() {
    let Some(path) = std::env::var_os("TESSEL_TEST_KERNEL") else {
        eprintln!("SKIPPED: set TESSEL_TEST_KERNEL=/path/to/vmlinuz to test a real kernel");
        return;
    };
    let module = std::fs::read(&path).unwrap();
    let info = probe(&module).unwrap();
    assert!(info.header.image_size >= info.len, "{info:?}");
    assert!(!info.header.flags.big_endian());
    let image = unpack(&module, 256 * MIB).unwrap();
    assert_eq!(image.len() as u64, info.len);
    // Debian's 512 MiB test guests: kernel, DTB and a 16 MiB initrd fit.
    let banks = [GuestRange::new(GuestPhysAddr(0x5000_0000), 512 * MIB)];
    let p = place(&PlacementRequest {
        banks: &banks,
        kernel: &info.header,
        kernel_len: info.len,
        dtb_size: 2 * MIB,
        initrd_len: Some(16 * MIB),
    })
    .unwrap();
    assert_eq!(p.entry.0, 0x5000_0000 + info.header.text_offset);
    // Re-compressed with the gzip tool, the same Image comes back.
    let tmp = std::env::temp_dir().join(format!("tessel-real-{}", std::process::id()));
    std::fs::write(&tmp, &image).unwrap();
    if std::process::Command::new("gzip")
        .args(["-1", "-f", "-k"])
        .arg(&tmp)
        .status()
        .is_ok_and(|s| s.success())
    {
        let mut gz_path = tmp.clone().into_os_string();
        gz_path.push(".gz");
        let gz = std::fs::read(&gz_path).unwrap();
        std::fs::remove_file(&gz_path).ok();
        assert_eq!(probe(&gz).unwrap().format, KernelFormat::GzipImage);
        assert_eq!(unpack(&gz, 256 * MIB).unwrap(), image);
    }
    std::fs::remove_file(&tmp).ok();
}
