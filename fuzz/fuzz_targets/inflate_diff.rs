//! Tessel's DEFLATE decoder (`tessel_loader::inflate`) against
//! `miniz_oxide`'s, the crate it replaced, on the same stream and the same
//! flat output buffer.
//!
//! Input: a mode byte, two bytes of output capacity, then either the raw
//! stream (mode bit 0 clear) or data that `miniz_oxide` compresses at the
//! level and strategy the mode byte picks, after which the last bytes of the
//! input overwrite bytes of the stream (so valid streams and slightly broken
//! ones are common without seeds).
//!
//! Properties: nothing panics; ours finishes the stream exactly when
//! `miniz_oxide` does, with the same output and the same number of input
//! bytes used; when the output buffer fills, both stop with the same
//! output, except that ours refuses a literal/length code without an
//! end-of-block code up front (zlib's rule), where `miniz_oxide` fills the
//! buffer first; and the gzip wrapper around ours agrees (`inflate_prefix`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tessel_loader::gzip;
use tessel_loader::inflate::{InflateError, inflate};

/// Number of trailing input bytes used as (offset, value) edits.
const EDITS: usize = 3;

fn deflate(data: &[u8], level: u8, strategy: i32) -> Vec<u8> {
    let flags = create_comp_flags_from_zip_params(level.into(), 0, strategy);
    let mut c = CompressorOxide::new(flags);
    let mut out = vec![0u8; data.len() * 2 + 1024];
    let (status, _, n) = compress(&mut c, data, &mut out, TDEFLFlush::Finish);
    assert_eq!(status, TDEFLStatus::Done);
    out.truncate(n);
    out
}

fuzz_target!(|input: &[u8]| {
    let [mode, c0, c1, rest @ ..] = input else {
        return;
    };
    let cap = usize::from(u16::from_le_bytes([*c0, *c1]));
    let stream = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let (data, edits) = rest.split_at(rest.len().saturating_sub(2 * EDITS));
        let mut s = deflate(data, (mode >> 1) % 11, i32::from(mode >> 5) % 5);
        for e in edits.chunks_exact(2) {
            if e[0] != 0 && !s.is_empty() {
                let i = usize::from(e[0]) * s.len() / 256;
                s[i] ^= e[1];
            }
        }
        s
    };

    let mut ours = vec![0u8; cap];
    let r = inflate(&stream, &mut ours);
    let mut theirs = vec![0u8; cap];
    let mut st = Box::<DecompressorOxide>::default();
    let (status, used, n) = decompress(
        &mut st,
        &stream,
        &mut theirs,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    match &r {
        Ok(done) => {
            assert_eq!(status, TINFLStatus::Done, "only ours accepted");
            assert_eq!((done.consumed, done.written), (used, n));
            assert_eq!(ours[..n], theirs[..n]);
        }
        Err(InflateError::OutputFull) => {
            assert_eq!(status, TINFLStatus::HasMoreOutput, "ours filled the output");
            assert_eq!(ours, theirs);
        }
        // A literal/length code without an end-of-block code is refused
        // when it is read (as zlib does); `miniz_oxide` decodes with it
        // until the output is full or the input ends.
        Err(InflateError::NoEndOfBlock) => assert_ne!(status, TINFLStatus::Done),
        Err(e) => assert!(
            status != TINFLStatus::Done && status != TINFLStatus::HasMoreOutput,
            "only miniz_oxide accepted ({e:?}, {status:?})"
        ),
    }

    // The gzip wrapper's prefix read is the same decoder.
    if matches!(r, Ok(_) | Err(InflateError::OutputFull)) {
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(&stream);
        gz.extend_from_slice(&[0; 8]);
        let mut head = vec![0u8; cap.min(64)];
        let got = gzip::inflate_prefix(&gz, &mut head).expect("prefix refused");
        assert_eq!(got, head.len().min(n));
        assert_eq!(head[..got], theirs[..got]);
    }
});
