//! Inflate speed: ours (`tessel_loader::inflate`) against `miniz_oxide`'s
//! core decoder, as the loader used it (one flat, non-wrapping output
//! buffer), on the same DEFLATE stream in the same run.
//!
//! The payload is a synthetic kernel-like image: aarch64-style instruction
//! words drawn from a skewed set of opcodes with a few register and
//! immediate fields, repeated prologues and epilogues, string tables and
//! zero padding: 2.5:1 at level 9 (Debian's arm64 `Image` is 2.75:1).
//! Set `TESSEL_BENCH_KERNEL=/path/to/Image` (an uncompressed arm64 Image,
//! such as Debian's `vmlinuz`) to measure a real kernel instead.
//!
//! Both are built as the bench profile (inheriting release) builds them:
//! tessel-loader at opt-level "z", as in the hypervisor image, and
//! `miniz_oxide` at "s" (in the image it was at "z").
//!
//! `cargo bench -p tessel-loader --bench inflate`
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// About `len` bytes of kernel-like data.
fn synthetic_kernel(len: usize) -> Vec<u8> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    // A vocabulary of whole instructions, the common ones first (picked
    // with a skewed distribution), as compilers reuse a few register and
    // immediate combinations.
    let vocab: Vec<u32> = (0..512)
        .map(|_| {
            let op = (r.next() as u32) & 0xffc0_0000;
            let regs = (r.below(4) | r.below(4) << 5 | r.below(8) << 16) as u32;
            op | regs | ((r.below(16) as u32) << 10)
        })
        .collect();
    let prologue: [u32; 4] = [0xa9bf_7bfd, 0x9100_03fd, 0xa901_53f3, 0xd503_233f];
    let epilogue: [u32; 3] = [0xa941_53f3, 0xa8c1_7bfd, 0xd65f_03c0];
    let words = [
        "kernel",
        "device",
        "memory",
        "irq",
        "failed",
        "error",
        "%s: %d\n",
        "driver",
        "module",
        "virtio",
        "pci",
        "probe",
        "unable to",
        "allocate",
        "timer",
    ];
    let mut out = Vec::with_capacity(len + 4096);
    while out.len() < len {
        match r.below(100) {
            // A function: prologue, body, epilogue.
            0..=84 => {
                for w in prologue.iter().take(1 + r.below(4) as usize) {
                    out.extend_from_slice(&w.to_le_bytes());
                }
                for _ in 0..4 + r.below(60) {
                    let w = if r.below(16) == 0 {
                        // A call: `bl` with a unique offset.
                        0x9400_0000 | (r.next() as u32 & 0x3ff_ffff)
                    } else {
                        let k = r.below(512) * r.below(512) * r.below(512) / (512 * 512);
                        vocab[k as usize]
                    };
                    out.extend_from_slice(&w.to_le_bytes());
                }
                for w in epilogue {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
            // Strings.
            85..=94 => {
                for _ in 0..1 + r.below(8) {
                    out.extend_from_slice(words[r.below(words.len() as u64) as usize].as_bytes());
                    out.push(if r.below(4) == 0 { 0 } else { b' ' });
                }
            }
            // Data: pointers into the image and zero padding.
            _ => {
                for _ in 0..r.below(32) {
                    let p = 0xffff_8000_0800_0000u64 + r.below(1 << 20) * 8;
                    out.extend_from_slice(&p.to_le_bytes());
                }
                out.resize(out.len() + r.below(512) as usize, 0);
            }
        }
    }
    out.truncate(len);
    out
}

fn ours(stream: &[u8], out: &mut [u8]) -> usize {
    tessel_loader::inflate::inflate(stream, out)
        .expect("ours failed")
        .written
}

fn miniz(stream: &[u8], out: &mut [u8]) -> usize {
    let mut st = Box::<DecompressorOxide>::default();
    let (status, _, written) = decompress(
        &mut st,
        stream,
        out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    assert_eq!(status, TINFLStatus::Done);
    written
}

fn bench(c: &mut Criterion) {
    let data = match std::env::var_os("TESSEL_BENCH_KERNEL") {
        Some(p) => std::fs::read(p).expect("TESSEL_BENCH_KERNEL"),
        None => synthetic_kernel(8 << 20),
    };
    let stream = miniz_oxide::deflate::compress_to_vec(&data, 9);
    eprintln!(
        "payload: {} bytes, deflated to {} ({:.2}:1)",
        data.len(),
        stream.len(),
        data.len() as f64 / stream.len() as f64
    );
    let mut out = vec![0u8; data.len()];
    assert_eq!(ours(&stream, &mut out), data.len());
    assert!(out == data, "ours inflated something else");
    out.fill(0);
    assert_eq!(miniz(&stream, &mut out), data.len());
    assert!(out == data, "miniz_oxide inflated something else");

    let mut g = c.benchmark_group("inflate");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    g.bench_function("tessel", |b| b.iter(|| ours(&stream, &mut out)));
    g.bench_function("miniz_oxide", |b| b.iter(|| miniz(&stream, &mut out)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
