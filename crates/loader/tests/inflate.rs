//! The DEFLATE decoder (`tessel_loader::inflate`) against `miniz_oxide`:
//! streams `miniz_oxide` writes at every level and strategy inflate to the
//! input, corrupted ones never panic and never inflate to anything
//! `miniz_oxide` would not, and hand-built streams hit each error.

use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use proptest::prelude::*;
use tessel_loader::gzip::{self, GzipError, crc32_update};
use tessel_loader::inflate::{InflateError, Inflated, inflate};

/// Raw DEFLATE of `data` by `miniz_oxide` at `level` (0..=10) and zip
/// `strategy` (0 default, 1 filtered, 2 Huffman only, 3 RLE, 4 fixed
/// codes), flushing with `flush` after every `chunk` bytes.
fn deflate(data: &[u8], level: u8, strategy: i32, chunk: usize, flush: TDEFLFlush) -> Vec<u8> {
    let flags = create_comp_flags_from_zip_params(level.into(), 0, strategy);
    let mut c = CompressorOxide::new(flags);
    let mut pieces: Vec<&[u8]> = data.chunks(chunk.max(1)).collect();
    if pieces.is_empty() {
        pieces.push(&[]);
    }
    // Room for every piece stored, with a block header and a flush marker.
    let mut out = vec![0u8; data.len() + 32 * pieces.len() + 1024];
    let mut at = 0;
    let last = pieces.len() - 1;
    for (i, mut piece) in pieces.into_iter().enumerate() {
        let f = if i == last { TDEFLFlush::Finish } else { flush };
        loop {
            let (status, used, wrote) = compress(&mut c, piece, &mut out[at..], f);
            assert!(status != TDEFLStatus::Okay || used + wrote > 0 || piece.is_empty());
            at += wrote;
            piece = &piece[used..];
            match status {
                TDEFLStatus::Done => break,
                TDEFLStatus::Okay if piece.is_empty() && f != TDEFLFlush::Finish => break,
                TDEFLStatus::Okay => {}
                s => panic!("compressor failed: {s:?}"),
            }
        }
    }
    out.truncate(at);
    out
}

/// What `miniz_oxide` makes of `stream` in a flat buffer of `cap` bytes:
/// the output if it finishes the stream.
fn reference(stream: &[u8], cap: usize) -> Option<Vec<u8>> {
    let mut st = Box::<DecompressorOxide>::default();
    let mut out = vec![0u8; cap];
    let (status, _, n) = decompress(
        &mut st,
        stream,
        &mut out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    (status == TINFLStatus::Done).then(|| {
        out.truncate(n);
        out
    })
}

/// Ours, into a fresh buffer of `cap` bytes.
fn ours(stream: &[u8], cap: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = vec![0u8; cap];
    let done = inflate(stream, &mut out)?;
    out.truncate(done.written);
    Ok(out)
}

/// Inflates a valid stream of `data` and checks everything about it.
fn round_trip(stream: &[u8], data: &[u8]) {
    let mut out = vec![0u8; data.len()];
    let done = inflate(stream, &mut out).expect("valid stream refused");
    assert_eq!(
        done,
        Inflated {
            consumed: stream.len(),
            written: data.len()
        }
    );
    assert!(out == data, "inflated to something else");
    // Data after the stream is not read.
    let mut longer = stream.to_vec();
    longer.extend_from_slice(&[0xff; 9]);
    let mut out2 = vec![0u8; data.len() + 1];
    assert_eq!(inflate(&longer, &mut out2), Ok(done));
    // One byte short of room: as much as fits, then `OutputFull`.
    if let Some(short) = data.len().checked_sub(1) {
        let mut out3 = vec![0u8; short];
        assert_eq!(inflate(stream, &mut out3), Err(InflateError::OutputFull));
        assert!(out3[..] == data[..short]);
    }
}

/// Kernel-like data: runs, text from a small alphabet, random bytes and
/// copies of earlier data up to the 32 KiB window and beyond.
fn structured() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u8..5, any::<u16>(), any::<u8>()), 0..60).prop_map(|ops| {
        let mut v = Vec::new();
        for (kind, n, b) in ops {
            let n = usize::from(n);
            match kind {
                0 => v.resize(v.len() + n % 300, b),
                1 => v.extend((0..n % 500).map(|i| b"etaoin shrdlu"[(i * 7 + n) % 13])),
                2 => v.extend((0..n % 64).map(|i| (i as u8).wrapping_mul(b) ^ (n as u8))),
                3 if !v.is_empty() => {
                    let from = n % v.len();
                    let len = usize::from(b) + 3;
                    for i in 0..len {
                        v.push(v[from + i % (v.len() - from)]);
                    }
                }
                _ => {
                    let back = (n % 40_000).min(v.len());
                    let start = v.len() - back;
                    let end = (start + 200).min(v.len());
                    v.extend_from_within(start..end);
                }
            }
        }
        v
    })
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..3000), structured()]
}

fn flush_mode() -> impl Strategy<Value = TDEFLFlush> {
    prop_oneof![
        Just(TDEFLFlush::None),
        Just(TDEFLFlush::Sync),
        Just(TDEFLFlush::Full),
        Just(TDEFLFlush::Partial),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn inflates_what_miniz_oxide_deflates(
        data in data(),
        level in 0u8..=10,
        strategy in 0i32..=4,
        chunk in 1usize..5000,
        flush in flush_mode(),
    ) {
        let stream = deflate(&data, level, strategy, chunk, flush);
        round_trip(&stream, &data);
    }

    #[test]
    fn prefix_is_the_start_of_the_data(data in data(), level in 0u8..=10, cut in 0usize..300) {
        let stream = deflate(&data, level, 0, usize::MAX, TDEFLFlush::Finish);
        let n = cut.min(data.len() + 3);
        let mut out = vec![0u8; n];
        let got = match inflate(&stream, &mut out) {
            Ok(done) => done.written,
            Err(InflateError::OutputFull) => n,
            Err(e) => panic!("{e:?}"),
        };
        prop_assert_eq!(got, n.min(data.len()));
        prop_assert_eq!(&out[..got], &data[..got]);
        // The same through the gzip wrapper.
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(&stream);
        gz.extend_from_slice(&crc32_update(0, &data).to_le_bytes());
        gz.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let mut head = vec![0u8; n];
        prop_assert_eq!(gzip::inflate_prefix(&gz, &mut head), Ok(got));
        prop_assert_eq!(&head[..got], &data[..got]);
        let mut all = vec![0u8; data.len()];
        prop_assert_eq!(gzip::inflate_into(&gz, &mut all), Ok(data.len()));
        prop_assert_eq!(all, data);
    }

    #[test]
    fn stored_blocks_of_any_split(data in data(), sizes in prop::collection::vec(0usize..3000, 1..6)) {
        let mut w = BitWriter::default();
        let mut rest = &data[..];
        for (i, &s) in sizes.iter().enumerate() {
            let last = i == sizes.len() - 1;
            let n = if last { rest.len().min(65_535) } else { s.min(rest.len()) };
            // A fixed block with a literal first, so the stored one starts
            // unaligned.
            if i % 2 == 1 && n > 0 {
                w.bits(0b010, 3);
                w.fixed_lit(rest[0]);
                w.code(0, 7);
                w.stored(last, &rest[1..n]);
            } else {
                w.stored(last, &rest[..n]);
            }
            rest = &rest[n..];
        }
        let stream = w.finish();
        let expect = &data[..data.len() - rest.len()];
        round_trip(&stream, expect);
        prop_assert_eq!(reference(&stream, expect.len()), Some(expect.to_vec()));
    }

    /// Flipped, overwritten and cut-off bytes: ours never panics, and what
    /// it accepts `miniz_oxide` accepts with the same output.
    #[test]
    fn corrupt_streams_agree_with_miniz_oxide(
        data in data(),
        level in 0u8..=10,
        strategy in 0i32..=4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..4),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        slack in 0usize..64,
    ) {
        let mut stream = deflate(&data, level, strategy, usize::MAX, TDEFLFlush::Finish);
        for (at, v, flip) in edits {
            let i = at.index(stream.len());
            if flip { stream[i] ^= 1 << (v % 8) } else { stream[i] = v }
        }
        if do_cut {
            stream.truncate(cut.index(stream.len() + 1));
        }
        let cap = data.len() + slack;
        if let Ok(out) = ours(&stream, cap) {
            prop_assert_eq!(Some(out), reference(&stream, cap));
        }
    }

    #[test]
    fn arbitrary_bytes_agree_with_miniz_oxide(stream in prop::collection::vec(any::<u8>(), 0..600), cap in 0usize..5000) {
        if let Ok(out) = ours(&stream, cap) {
            prop_assert_eq!(Some(out), reference(&stream, cap));
        }
    }
}

#[test]
fn every_proper_prefix_is_truncated() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i * i / 7 % 61) as u8).collect();
    for level in [0, 1, 6, 9] {
        let stream = deflate(&data, level, 0, 1500, TDEFLFlush::Sync);
        round_trip(&stream, &data);
        for cut in 0..stream.len() {
            assert_eq!(
                ours(&stream[..cut], data.len()),
                Err(InflateError::Truncated),
                "level {level} cut at {cut}"
            );
        }
    }
}

#[test]
fn long_kernel_like_data_with_far_matches() {
    // 1 MiB: instruction-like words, repeated 4 KiB pages 8..32 KiB apart.
    let mut data = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while data.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(5) && data.len() > 32 * 1024 {
            let back = 8 * 1024 + (x as usize >> 8) % (24 * 1024);
            let start = data.len() - back;
            data.extend_from_within(start..start + 4096);
        } else {
            let op =
                [0x9100_0000u32, 0xf940_0000, 0xaa00_03e0, 0x9400_0000][(x >> 20) as usize % 4];
            data.extend_from_slice(&(op | (x as u32 & 0x3ff)).to_le_bytes());
        }
    }
    for level in [1, 6, 10] {
        round_trip(
            &deflate(&data, level, 0, usize::MAX, TDEFLFlush::Finish),
            &data,
        );
    }
}

/// Builds DEFLATE streams bit by bit (RFC 1951, 3.1.1).
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// `n` bits of `v`, least significant first (header fields, extra
    /// bits).
    fn bits(&mut self, v: u32, n: u32) {
        self.acc |= u64::from(v) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code of `len` bits, most significant first.
    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.bits(code >> i & 1, 1);
        }
    }

    /// The fixed code of literal/length symbol `sym` (RFC 1951, 3.2.6).
    fn fixed_sym(&mut self, sym: u32) {
        match sym {
            0..=143 => self.code(0x30 + sym, 8),
            144..=255 => self.code(0x190 + sym - 144, 9),
            256..=279 => self.code(sym - 256, 7),
            _ => self.code(0xc0 + sym - 280, 8),
        }
    }

    fn fixed_lit(&mut self, b: u8) {
        self.fixed_sym(u32::from(b));
    }

    /// A stored block; pads to a byte boundary first.
    fn stored(&mut self, last: bool, data: &[u8]) {
        self.bits(u32::from(last), 3);
        if self.n > 0 {
            self.bits(0, 8 - self.n);
        }
        let len = data.len() as u32;
        self.bits(len, 16);
        self.bits(!len & 0xffff, 16);
        for &b in data {
            self.bits(u32::from(b), 8);
        }
    }

    /// A dynamic block header with the code length code `clen` (lengths
    /// in RFC order: 16, 17, 18, 0, 8, ...) for `nlit`/`ndist` codes.
    fn dynamic_header(&mut self, last: bool, nlit: u32, ndist: u32, clen: &[u32]) {
        self.bits(u32::from(last) | 2 << 1, 3);
        self.bits(nlit - 257, 5);
        self.bits(ndist - 1, 5);
        self.bits(clen.len() as u32 - 4, 4);
        for &l in clen {
            self.bits(l, 3);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.bits(0, 8 - self.n);
        }
        self.out
    }
}

/// A fixed-code block of `f`'s symbols.
fn fixed(f: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.bits(0b011, 3);
    f(&mut w);
    w.finish()
}

/// Code length codes used below, in RFC order (16, 17, 18, 0, 8, 7, 9, 6,
/// 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15): symbols 0 and 18, one bit each
/// (0 = "0", 18 = "1").
const CL_0_18: [u32; 4] = [0, 0, 1, 1];
/// Symbols 0, 1, 2 and 18, two bits each: "00", "01", "10", "11".
const CL_0_1_2_18: [u32; 18] = [0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2];

/// Writes `n` zero code lengths with symbol 18 ("11" in CL_0_1_2_18, or "1"
/// in CL_0_18).
fn zeros(w: &mut BitWriter, mut n: u32, code: u32, len: u32) {
    while n > 0 {
        let k = n.min(138);
        assert!(k >= 11);
        w.code(code, len);
        w.bits(k - 11, 7);
        n -= k;
    }
}

/// A final dynamic block: header for `nlit`/`ndist` codes with the code
/// length code `clen`, then `body` (the code lengths and data).
fn dynamic(nlit: u32, ndist: u32, clen: &[u32], body: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.dynamic_header(true, nlit, ndist, clen);
    body(&mut w);
    w.finish()
}

/// A dynamic block whose literal/length code is 0 -> "0", 256 -> "10",
/// 257 (length 3) -> "11", and whose distance code is `dist_lens` (at most
/// a one-bit code for distance 1), then `body`.
fn small_dynamic(dist_lens: &[u32], body: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
    dynamic(258, dist_lens.len() as u32, &CL_0_1_2_18, |w| {
        w.code(0b01, 2); // symbol 0: length 1
        zeros(w, 255, 0b11, 2);
        w.code(0b10, 2); // 256: length 2
        w.code(0b10, 2); // 257: length 2
        for &l in dist_lens {
            w.code(l, 2); // lengths 0..2 are their own codes
        }
        body(w);
    })
}

/// A literal/length code of just the end of block (one bit) and no
/// distance codes, then the one bit `last`.
fn only_end_of_block(last: u32) -> Vec<u8> {
    dynamic(257, 1, &CL_0_1_2_18, |w| {
        zeros(w, 256, 0b11, 2);
        w.code(0b01, 2);
        w.code(0b00, 2);
        w.code(last, 1);
    })
}

#[test]
fn each_error_class_is_reported() {
    use InflateError::*;
    let e = |s: &[u8]| ours(s, 1000).unwrap_err();

    // Block type 3 (RFC 1951, 3.2.3).
    assert_eq!(e(&[0b111]), BlockType);
    // Stored LEN 5 with NLEN 0, and LEN/NLEN right but data missing.
    assert_eq!(e(&[1, 5, 0, 0, 0]), StoredLength);
    assert_eq!(e(&[1, 5, 0, 0xfa, 0xff, 1, 2, 3]), Truncated);
    assert_eq!(e(&[]), Truncated);
    // A fixed block without an end-of-block code.
    assert_eq!(e(&fixed(|w| w.fixed_lit(b'a'))[..1]), Truncated);

    // Too many codes: HLIT = 287 or HDIST = 31 (3.2.7).
    assert_eq!(e(&dynamic(287, 30, &[0; 19], |_| {})), TooManyCodes);
    assert_eq!(e(&dynamic(286, 31, &[0; 19], |_| {})), TooManyCodes);
    // The code length code: all zero (incomplete), four one-bit codes
    // (over-subscribed), a single one-bit code (incomplete: it must be
    // complete, unlike the other two codes).
    assert_eq!(e(&dynamic(257, 1, &[0; 19], |_| {})), Incomplete);
    let pad = |w: &mut BitWriter| w.bits(0, 32);
    assert_eq!(e(&dynamic(257, 1, &[1, 1, 1, 1], pad)), OverSubscribed);
    assert_eq!(e(&dynamic(257, 1, &[0, 0, 0, 1], pad)), Incomplete);

    // Repeat (16) of no previous length: code lengths 0 -> "0", 16 -> "1".
    let repeat_first = dynamic(257, 1, &[1, 0, 0, 1], |w| {
        w.code(1, 1);
        w.bits(0, 2);
    });
    assert_eq!(e(&repeat_first), BadRepeat);
    // A zero run (18) past the 258 declared lengths.
    let overrun = dynamic(257, 1, &CL_0_18, |w| {
        zeros(w, 138, 1, 1);
        w.code(1, 1);
        w.bits(127, 7);
    });
    assert_eq!(e(&overrun), BadRepeat);
    // All 258 lengths zero: no end-of-block code.
    let no_eob = dynamic(257, 1, &CL_0_18, |w| zeros(w, 258, 1, 1));
    assert_eq!(e(&no_eob), NoEndOfBlock);

    // Literal/length codes: three one-bit codes (over-subscribed); two
    // two-bit codes (incomplete with codes longer than one bit).
    let over = dynamic(258, 1, &CL_0_1_2_18, |w| {
        for _ in 0..3 {
            w.code(0b01, 2);
        }
        zeros(w, 253, 0b11, 2);
        w.code(0b01, 2);
        w.code(0b00, 2);
        w.code(0b00, 2);
    });
    assert_eq!(e(&over), OverSubscribed);
    let incomplete = dynamic(257, 1, &CL_0_1_2_18, |w| {
        w.code(0b10, 2);
        zeros(w, 255, 0b11, 2);
        w.code(0b10, 2);
        w.code(0b00, 2);
    });
    assert_eq!(e(&incomplete), Incomplete);

    // zlib's exceptions: one one-bit distance code is accepted ...
    let ok = small_dynamic(&[1], |w| {
        w.code(0, 1); // literal 0
        w.code(0b11, 2); // length 3
        w.code(0, 1); // distance 1
        w.code(0b10, 2); // end of block
    });
    assert_eq!(ours(&ok, 1000), Ok(vec![0; 4]));
    assert_eq!(reference(&ok, 1000), Some(vec![0; 4]));
    // ... but its unassigned code is not.
    let bad = small_dynamic(&[1], |w| {
        w.code(0, 1);
        w.code(0b11, 2);
        w.code(1, 1);
    });
    assert_eq!(e(&bad), InvalidCode);
    // No distance codes at all: fine for literals only, not for a match.
    let ok = small_dynamic(&[0], |w| {
        w.code(0, 1);
        w.code(0b10, 2);
    });
    assert_eq!(ours(&ok, 1000), Ok(vec![0]));
    assert_eq!(reference(&ok, 1000), Some(vec![0]));
    let bad = small_dynamic(&[0], |w| {
        w.code(0, 1);
        w.code(0b11, 2);
        w.code(0, 1);
    });
    assert_eq!(e(&bad), InvalidCode);
    // A literal/length code of just the end of block, one bit.
    assert_eq!(ours(&only_end_of_block(0), 10), Ok(vec![]));
    assert_eq!(e(&only_end_of_block(1)), InvalidCode);

    // Fixed codes that take part in the code but not in the data (3.2.6).
    assert_eq!(e(&fixed(|w| w.fixed_sym(286))), InvalidSymbol);
    assert_eq!(e(&fixed(|w| w.fixed_sym(287))), InvalidSymbol);
    let dist30 = fixed(|w| {
        w.fixed_lit(1);
        w.fixed_sym(257);
        w.code(30, 5);
    });
    assert_eq!(e(&dist30), InvalidSymbol);
    // Distances before the start of the output.
    assert_eq!(
        e(&fixed(|w| {
            w.fixed_sym(257);
            w.code(0, 5);
        })),
        DistanceTooFar
    );
    let too_far = fixed(|w| {
        w.fixed_lit(1);
        w.fixed_lit(2);
        w.fixed_sym(257);
        w.code(2, 5); // distance 3
    });
    assert_eq!(e(&too_far), DistanceTooFar);
    let just_right = fixed(|w| {
        w.fixed_lit(1);
        w.fixed_lit(2);
        w.fixed_sym(285); // length 258
        w.code(1, 5); // distance 2
        w.fixed_sym(256);
    });
    let run: Vec<u8> = (0..260).map(|i| [1, 2][i % 2]).collect();
    assert_eq!(ours(&just_right, 1000).as_deref(), Ok(&run[..]));
    assert_eq!(reference(&just_right, 1000).as_deref(), Some(&run[..]));
}

#[test]
fn output_overflow_is_reported_and_mapped_for_gzip() {
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for level in [0, 1, 9] {
        let stream = deflate(&data, level, 0, usize::MAX, TDEFLFlush::Finish);
        for room in [0, 1, 100, 2999] {
            let mut out = vec![0u8; room];
            assert_eq!(inflate(&stream, &mut out), Err(InflateError::OutputFull));
            assert!(out == data[..room]);
        }
        // gzip with an ISIZE too small: the data does not fit.
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(&stream);
        gz.extend_from_slice(&crc32_update(0, &data).to_le_bytes());
        gz.extend_from_slice(&2000u32.to_le_bytes());
        let mut out = vec![0u8; 4000];
        assert_eq!(
            gzip::inflate_into(&gz, &mut out),
            Err(GzipError::LongerThanIsize(2000))
        );
        // A corrupt stream is `Corrupt`.
        gz[10] |= 0b110;
        assert_eq!(gzip::inflate_into(&gz, &mut out), Err(GzipError::Corrupt));
    }
}
