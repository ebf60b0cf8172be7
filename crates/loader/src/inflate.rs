//! A compact, allocation-free DEFLATE (RFC 1951) decoder.
//!
//! It inflates into one flat output buffer (for the hypervisor: the guest
//! RAM the kernel goes to), so back-references are copied from the output
//! already written and no 32 KiB window is kept. Its state, two Huffman
//! trees and a code length array, lives on the stack (about 5.6 KiB).
//!
//! Written for image size: it replaced `miniz_oxide`'s core decoder, which
//! took about 7 KB of the hypervisor image (code, tables and panic
//! messages); this one is about 3 KB of code and 0.2 KB of tables. It is
//! checked against `miniz_oxide` by differential property tests
//! (`tests/inflate.rs`) and by the `inflate_diff` fuzz target.
//!
//! # Decoding
//!
//! Input bits are kept in a 64-bit buffer that the hot loop refills with
//! eight bytes at a time (branch-free), enough for a whole length/distance
//! pair (at most 48 bits); block headers refill byte by byte. Each Huffman
//! tree has a 10-bit lookup table indexed by the next input bits; the rarer
//! longer codes are decoded canonically from the per-length code counts
//! (RFC 1951, 3.2.2). Matches are copied byte by byte where they overlap
//! their source, as a one-byte run (`fill`) or with `memcpy` when long.
//!
//! # Validity
//!
//! Every malformed stream is an [`InflateError`], never a panic: all
//! indexing is checked or masked to the table size. Past the end of the
//! input the reader supplies zero bits, so that the table lookups need no
//! bounds; using any of them is [`InflateError::Truncated`].
//!
//! Trees follow zlib's rules (`inftrees.c`), which `miniz_oxide` shares: an
//! over-subscribed set of code lengths is refused, and so is an incomplete
//! one, except that a literal/length or distance tree may have no codes at
//! all or a single one-bit code, as some encoders write for a block without
//! matches. Decoding a code such a tree leaves unassigned is
//! [`InflateError::InvalidCode`]. The code length code must be complete, and
//! the literal/length code must have an end-of-block code.

/// Bits of the first-level lookup table of each Huffman tree. Codes up to
/// this long are decoded by one table read; longer ones by counting. 10
/// bits keep almost all literal/length codes of real streams in the table.
const FAST_BITS: u32 = 10;
const FAST_SIZE: usize = 1 << FAST_BITS;
/// A table entry is `length << SYM_BITS | symbol`; symbols are below 288.
const SYM_BITS: u32 = 9;
/// Longest Huffman code (RFC 1951, 3.2.7: code lengths are 0..15).
const MAX_BITS: usize = 15;
/// Literal/length symbols of the fixed code, 0..287 (RFC 1951, 3.2.6); a
/// dynamic block uses at most 286 (3.2.7, HLIT).
const MAX_LIT: usize = 288;
/// Distance symbols a dynamic block may define (RFC 1951, 3.2.7, HDIST).
const MAX_DIST: usize = 30;
/// Literal/length symbol that ends a block (RFC 1951, 3.2.5).
const END_OF_BLOCK: usize = 256;
/// Order in which the code length code lengths are stored (RFC 1951, 3.2.7).
const CLEN_ORDER: [u8; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Why a DEFLATE stream could not be inflated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InflateError {
    /// The input ends before the final block does.
    Truncated,
    /// The output buffer is full but the stream has more to write; the
    /// buffer holds the first `out.len()` bytes of the data.
    OutputFull,
    /// A block header has the reserved type 3 (RFC 1951, 3.2.3).
    BlockType,
    /// A stored block's NLEN is not the complement of its LEN (RFC 1951,
    /// 3.2.4).
    StoredLength,
    /// A dynamic block declares more than 286 literal/length or 30 distance
    /// codes (RFC 1951, 3.2.7).
    TooManyCodes,
    /// A code length repeat (symbol 16) has no previous length, or a repeat
    /// runs past the declared number of code lengths (RFC 1951, 3.2.7).
    BadRepeat,
    /// A set of code lengths defines more codes than its bits allow.
    OverSubscribed,
    /// A set of code lengths leaves codes unused where that is not allowed
    /// (see the module documentation).
    Incomplete,
    /// The literal/length code has no end-of-block code (symbol 256).
    NoEndOfBlock,
    /// The input holds a code that its (incomplete) tree does not assign.
    InvalidCode,
    /// A fixed-code block uses literal/length symbol 286 or 287 or distance
    /// symbol 30 or 31, which take part in the code but never occur in the
    /// data (RFC 1951, 3.2.6).
    InvalidSymbol,
    /// A distance reaches back before the start of the output.
    DistanceTooFar,
}

/// What a successful [`inflate`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Inflated {
    /// Input bytes used, up to and including the byte that holds the end of
    /// the final block (what follows is, for gzip, the trailer).
    pub consumed: usize,
    /// Bytes written to the start of the output.
    pub written: usize,
}

/// Inflates the raw DEFLATE stream at the start of `input` into `out`.
///
/// On [`InflateError::OutputFull`], `out` holds as much of the data as fits,
/// so a caller that only wants a prefix can treat it as success.
pub fn inflate(input: &[u8], out: &mut [u8]) -> Result<Inflated, InflateError> {
    let mut b = Bits {
        input,
        pos: 0,
        bits: 0,
        count: 0,
        pad: 0,
    };
    let mut at = 0;
    let mut lit = Tree::new();
    let mut dist = Tree::new();
    let r = blocks(&mut b, out, &mut at, &mut lit, &mut dist);
    // Whatever happened, bits past the end of the input must not have been
    // used (they read as zeros).
    b.check()?;
    r?;
    Ok(Inflated {
        consumed: b.pos - b.real_bytes(),
        written: at,
    })
}

/// A canonical Huffman code (RFC 1951, 3.2.2).
struct Tree {
    /// Indexed by the next `FAST_BITS` input bits: `length << SYM_BITS |
    /// symbol` for codes of up to `FAST_BITS` bits, 0 where a longer (or no)
    /// code starts with those bits.
    fast: [u16; FAST_SIZE],
    /// Number of codes of each length (index 0 unused).
    counts: [u16; MAX_BITS + 1],
    /// Symbols ordered by code (by length, then by symbol value).
    syms: [u16; MAX_LIT],
}

impl Tree {
    const fn new() -> Self {
        Self {
            fast: [0; FAST_SIZE],
            counts: [0; MAX_BITS + 1],
            syms: [0; MAX_LIT],
        }
    }

    /// Builds the code for `lengths[symbol]` (0 = unused). `complete`
    /// refuses every incomplete code; otherwise zlib's exceptions apply.
    fn build(&mut self, lengths: &[u8], complete: bool) -> Result<(), InflateError> {
        self.counts = [0; MAX_BITS + 1];
        for &l in lengths {
            self.counts[usize::from(l) & MAX_BITS] += 1;
        }
        self.counts[0] = 0;
        // Codes left at each length, and where each length's symbols start.
        let mut left = 1i32;
        let mut max = 0;
        let mut offs = [0u16; MAX_BITS + 1];
        for len in 1..MAX_BITS + 1 {
            let n = self.counts[len];
            left = 2 * left - i32::from(n);
            if left < 0 {
                return Err(InflateError::OverSubscribed);
            }
            if n != 0 {
                max = len;
            }
            offs[len] = offs[len - 1] + self.counts[len - 1];
        }
        if left > 0 && (complete || max > 1) {
            return Err(InflateError::Incomplete);
        }
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                let o = &mut offs[usize::from(l) & MAX_BITS];
                if let Some(s) = self.syms.get_mut(usize::from(*o)) {
                    *s = sym as u16;
                }
                *o += 1;
            }
        }
        // Fill the table with the short codes, bit-reversed (Huffman codes
        // are packed starting with their most significant bit, 3.1.1).
        self.fast = [0; FAST_SIZE];
        let mut code = 0u16;
        let mut idx = 0;
        for len in 1..FAST_BITS + 1 {
            for _ in 0..self.counts[len as usize] {
                let sym = self.syms.get(idx).copied().unwrap_or(0);
                let entry = (len as u16) << SYM_BITS | sym;
                let mut i = usize::from(code.reverse_bits() >> (16 - len));
                while i < FAST_SIZE {
                    self.fast[i] = entry;
                    i += 1 << len;
                }
                code += 1;
                idx += 1;
            }
            code <<= 1;
        }
        Ok(())
    }

    /// Decodes a code longer than `FAST_BITS` (or an unassigned one) at
    /// the start of `bits`, returning its length and symbol, by walking the
    /// lengths: the codes of one length are consecutive integers, following
    /// those of the shorter lengths (RFC 1951, 3.2.2).
    #[inline(never)]
    fn decode_long(&self, bits: u64) -> Result<(u32, usize), InflateError> {
        // The next 16 bits as a number read most significant bit first.
        let next = u32::from((bits as u16).reverse_bits());
        let mut first = 0u32; // first code of this length
        let mut index = 0u32; // its position in `syms`
        for len in 1..MAX_BITS as u32 + 1 {
            let code = next >> (16 - len);
            let count = u32::from(self.counts[len as usize]);
            // `code >= first` holds as no shorter code matched.
            let i = code.wrapping_sub(first);
            if i < count {
                let sym = self.syms.get((index + i) as usize);
                return Ok((len, usize::from(*sym.ok_or(InflateError::InvalidCode)?)));
            }
            index += count;
            first = (first + count) << 1;
        }
        Err(InflateError::InvalidCode)
    }
}

/// The input bit reader (RFC 1951, 3.1.1: bits are packed starting with
/// the least significant bit of each byte).
#[derive(Clone, Copy)]
struct Bits<'i> {
    input: &'i [u8],
    /// Next input byte to load into `bits`.
    pos: usize,
    /// Input bits not yet used, the next one in bit 0.
    bits: u64,
    /// Number of valid bits in `bits` (at most 63), counting `pad`.
    count: u32,
    /// Zero bytes loaded past the end of the input. Decoding may look at
    /// them but must not use them: see [`Bits::check`].
    pad: u32,
}

impl Bits<'_> {
    /// Loads input bytes one at a time until at least 56 bits are
    /// buffered, past the end of the input as zeros.
    #[inline(never)]
    fn refill_slow(mut self) -> Result<Self, InflateError> {
        while self.count < 56 {
            match self.input.get(self.pos) {
                Some(&b) => {
                    self.bits |= u64::from(b) << self.count;
                    self.pos += 1;
                }
                None => {
                    self.check()?;
                    self.pad += 1;
                }
            }
            self.count += 8;
        }
        Ok(self)
    }

    /// [`Bits::refill_slow`] for the header decoding.
    fn fill(&mut self) -> Result<(), InflateError> {
        *self = self.refill_slow()?;
        Ok(())
    }

    /// [`Bits::refill_slow`] for the hot loop: where the input has eight
    /// more bytes, loads them at once, without a branch on how many it
    /// keeps (as many whole bytes as fit). Bits above `count` are then
    /// either zero or these same input bits again.
    #[inline(always)]
    fn refill(&mut self) -> Result<(), InflateError> {
        match self.input.get(self.pos..).and_then(|s| s.first_chunk()) {
            Some(w) => {
                self.bits |= u64::from_le_bytes(*w) << self.count;
                self.pos += ((63 - self.count) / 8) as usize;
                self.count |= 56;
            }
            None => *self = self.refill_slow()?,
        }
        Ok(())
    }

    /// Fails if bits past the end of the input have been used.
    fn check(&self) -> Result<(), InflateError> {
        if self.count < 8 * self.pad {
            Err(InflateError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Whole input bytes buffered but not used (after [`Bits::check`]).
    fn real_bytes(&self) -> usize {
        ((self.count - 8 * self.pad) / 8) as usize
    }

    /// Takes `n` (at most 32) buffered bits.
    #[inline(always)]
    fn take(&mut self, n: u32) -> usize {
        let v = self.bits & ((1 << n) - 1);
        self.bits >>= n;
        self.count -= n;
        v as usize
    }

    /// Decodes one symbol of `t` (at least 15 bits buffered).
    #[inline(always)]
    fn decode(&mut self, t: &Tree) -> Result<usize, InflateError> {
        let e = t.fast[self.bits as usize & (FAST_SIZE - 1)];
        let (len, sym) = if e != 0 {
            (
                u32::from(e >> SYM_BITS),
                usize::from(e & ((1 << SYM_BITS) - 1)),
            )
        } else {
            t.decode_long(self.bits)?
        };
        self.take(len);
        Ok(sym)
    }
}

/// Inflates blocks up to and including the final one.
fn blocks(
    b: &mut Bits,
    out: &mut [u8],
    at: &mut usize,
    lit: &mut Tree,
    dist: &mut Tree,
) -> Result<(), InflateError> {
    loop {
        b.fill()?;
        // BFINAL, then BTYPE (RFC 1951, 3.2.3).
        let header = b.take(3);
        match header >> 1 {
            0 => stored(b, out, at)?,
            1 => fixed(lit, dist)?,
            2 => dynamic(b, lit, dist)?,
            _ => return Err(InflateError::BlockType),
        }
        if header >> 1 != 0 {
            codes(b, out, at, lit, dist)?;
        }
        if header & 1 != 0 {
            return Ok(());
        }
    }
}

/// A stored block (RFC 1951, 3.2.4): byte-aligned LEN, NLEN, then LEN bytes
/// copied from the input.
fn stored(b: &mut Bits, out: &mut [u8], at: &mut usize) -> Result<(), InflateError> {
    b.fill()?;
    b.take(b.count % 8);
    let len = b.take(16);
    let nlen = b.take(16);
    b.check()?;
    if len != !nlen & 0xffff {
        return Err(InflateError::StoredLength);
    }
    // Give back the whole bytes still buffered; read the data directly.
    b.pos -= b.real_bytes();
    b.bits = 0;
    b.count = 0;
    b.pad = 0;
    let n = len.min(out.len() - *at);
    let src = b
        .input
        .get(b.pos..b.pos + n)
        .ok_or(InflateError::Truncated)?;
    out.get_mut(*at..*at + n)
        .ok_or(InflateError::OutputFull)?
        .copy_from_slice(src);
    b.pos += n;
    *at += n;
    if n < len {
        return Err(InflateError::OutputFull);
    }
    Ok(())
}

/// Reads a dynamic block's code lengths and builds its trees (RFC 1951,
/// 3.2.7).
fn dynamic(b: &mut Bits, lit: &mut Tree, dist: &mut Tree) -> Result<(), InflateError> {
    b.fill()?;
    let nlit = b.take(5) + 257;
    let ndist = b.take(5) + 1;
    let nclen = b.take(4) + 4;
    if nlit > MAX_LIT - 2 || ndist > MAX_DIST {
        return Err(InflateError::TooManyCodes);
    }
    // The code length code is built in `lit`, which comes next.
    let mut lengths = [0u8; MAX_LIT - 2 + MAX_DIST];
    for &i in CLEN_ORDER.iter().take(nclen) {
        b.fill()?;
        lengths[usize::from(i)] = b.take(3) as u8;
    }
    lit.build(&lengths[..CLEN_ORDER.len()], true)?;
    let total = nlit + ndist;
    let mut n = 0;
    while n < total {
        b.fill()?;
        let (len, repeat) = match b.decode(lit)? {
            sym @ 0..=15 => (sym as u8, 1),
            16 => {
                let prev = lengths.get(n.wrapping_sub(1));
                (*prev.ok_or(InflateError::BadRepeat)?, 3 + b.take(2))
            }
            17 => (0, 3 + b.take(3)),
            _ => (0, 11 + b.take(7)),
        };
        let end = n + repeat;
        if end > total {
            return Err(InflateError::BadRepeat);
        }
        lengths
            .get_mut(n..end)
            .ok_or(InflateError::BadRepeat)?
            .fill(len);
        n = end;
    }
    let (l, d) = lengths.split_at(nlit);
    if l.get(END_OF_BLOCK) == Some(&0) {
        return Err(InflateError::NoEndOfBlock);
    }
    lit.build(l, false)?;
    dist.build(d.get(..ndist).unwrap_or(&[]), false)
}

/// Decodes a Huffman-coded block's data up to its end-of-block code (RFC
/// 1951, 3.2.5). The hot loop: it works on local copies of the reader and
/// the output position.
fn codes(
    bits: &mut Bits,
    out: &mut [u8],
    at: &mut usize,
    lit: &Tree,
    dist: &Tree,
) -> Result<(), InflateError> {
    let mut b = *bits;
    let mut pos = *at;
    let r = (|| {
        loop {
            // Enough for a length code with extra bits and a distance code
            // with extra bits: 15 + 5 + 15 + 13 = 48 bits.
            b.refill()?;
            let sym = b.decode(lit)?;
            if sym < END_OF_BLOCK {
                *out.get_mut(pos).ok_or(InflateError::OutputFull)? = sym as u8;
                pos += 1;
                continue;
            }
            if sym == END_OF_BLOCK {
                return Ok(());
            }
            // Lengths 286 and 287 and distances 30 and 31 are refused here.
            let l = *LENGTHS.get(sym - 257).ok_or(InflateError::InvalidSymbol)?;
            let len = (l & 0xffff) as usize + b.take(l >> 16);
            let d = *DISTANCES
                .get(b.decode(dist)?)
                .ok_or(InflateError::InvalidSymbol)?;
            let d = (d & 0xffff) as usize + b.take(d >> 16);
            pos = copy(out, pos, d, len)?;
        }
    })();
    *bits = b;
    *at = pos;
    r
}

/// Appends `len` bytes at `at`, copied from `dist` bytes back (the two may
/// overlap: a run repeats the last `dist` bytes). Returns the new end.
#[inline(always)]
fn copy(out: &mut [u8], at: usize, dist: usize, len: usize) -> Result<usize, InflateError> {
    let from = at.checked_sub(dist).ok_or(InflateError::DistanceTooFar)?;
    let n = len.min(out.len() - at);
    let w = out.get_mut(from..at + n).ok_or(InflateError::OutputFull)?;
    if dist == 1 {
        // A run of one byte (zero padding, mostly).
        if let Some(&c) = w.first() {
            w.fill(c);
        }
    } else if dist >= n && n >= 16 {
        // No overlap, and long enough to pay for a `memcpy` call (which
        // copies words, not bytes).
        if let Some((src, dst)) = w.split_at_mut_checked(dist)
            && let Some(src) = src.get(..dst.len())
        {
            dst.copy_from_slice(src);
        }
    } else {
        for i in dist..w.len() {
            w[i] = w[i - dist];
        }
    }
    if n < len {
        return Err(InflateError::OutputFull);
    }
    Ok(at + n)
}

/// Base value and extra bits, as `base | extra << 16`, of the first `N`
/// codes of the length or the distance alphabet (RFC 1951, 3.2.5): the first
/// `2 * group` codes stand for `first + code` without extra bits, then come
/// `group` codes for each number of extra bits 1, 2, ...
const fn base_extra<const N: usize>(group: usize, first: usize) -> [u32; N] {
    let mut t = [0; N];
    let mut c = 0;
    while c < N {
        t[c] = if c < 2 * group {
            (first + c) as u32
        } else {
            let extra = c / group - 1;
            ((((group + c % group) << extra) + first) | extra << 16) as u32
        };
        c += 1;
    }
    t
}

/// Length codes, symbols 257..285 (RFC 1951, 3.2.5): lengths 3..10, four
/// codes for each number of extra bits 1..5, and 258 (which breaks the
/// pattern).
const LENGTHS: [u32; 29] = {
    let mut t = base_extra::<29>(4, 3);
    t[28] = 258;
    t
};

/// Distance codes 0..29 (RFC 1951, 3.2.5): distances 1..4, then two codes
/// for each number of extra bits 1..13.
const DISTANCES: [u32; 30] = base_extra::<30>(2, 1);

/// Builds the fixed codes (RFC 1951, 3.2.6). Distance symbols 30 and 31
/// get codes too, so that they decode (and are refused) rather than being
/// unassigned.
fn fixed(lit: &mut Tree, dist: &mut Tree) -> Result<(), InflateError> {
    let mut lengths = [8u8; MAX_LIT];
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lit.build(&lengths, false)?;
    dist.build(&[5; 32], false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_distance_tables_match_rfc_1951() {
        // RFC 1951, 3.2.5, as printed there.
        let lengths = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        let length_extra = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        let distances = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        for (c, &e) in LENGTHS.iter().enumerate() {
            assert_eq!((e & 0xffff, e >> 16), (lengths[c], length_extra[c]), "{c}");
        }
        for (c, &e) in DISTANCES.iter().enumerate() {
            let extra = if c < 4 { 0 } else { c as u32 / 2 - 1 };
            assert_eq!((e & 0xffff, e >> 16), (distances[c], extra), "{c}");
        }
    }
}
