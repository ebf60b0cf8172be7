//! Arbitrary map, remap, unmap and protect sequences on tessel-stage2 over
//! the fake table memory (with injected allocation failures), checked
//! against a list of IPA intervals.
//!
//! Properties: nothing panics; an operation succeeds exactly when the model
//! says it is valid (given enough table memory), and a failed one leaves
//! every translation unchanged; `translate` and `for_each_mapping` agree
//! with the model (output address, attributes, leaf size aligned and
//! covering exactly the mapped bytes).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessel_addr::{GuestPhysAddr, GuestRange, HostPhysAddr, PAGE_SIZE, SIZE_1G, SIZE_2M};
use tessel_stage2::fake::{FakeMemory, FakeTlb};
use tessel_stage2::{Access, Attrs, MapError, MemoryType, Stage2, Stage2Config};

const PA_RANGES: [u8; 7] = [32, 36, 40, 42, 44, 48, 52];

/// An address or size: `units` of 4 KiB, 2 MiB or 1 GiB plus `pages` 4 KiB
/// pages, so block-aligned and ragged ranges are both common.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Span {
    unit: u8,
    units: u16,
    pages: u16,
    /// Sub-page byte offset (only used when `misalign` is set).
    bytes: u16,
    misalign: bool,
}

impl Span {
    fn value(self) -> u64 {
        self.value_below(1024)
    }

    /// A size: below 1 GiB + 2 MiB.
    fn size(self) -> u64 {
        self.value_below(2)
    }

    fn value_below(self, gib: u16) -> u64 {
        let (unit, max) = match self.unit % 3 {
            0 => (PAGE_SIZE, 512),
            1 => (SIZE_2M, 512),
            _ => (SIZE_1G, gib),
        };
        let v = u64::from(self.units % max) * unit + u64::from(self.pages % 512) * PAGE_SIZE;
        if self.misalign {
            v + u64::from(self.bytes % 4096)
        } else {
            v
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Attr {
    memory: u8,
    access: u8,
}

impl Attr {
    fn get(self) -> Attrs {
        let memory = match self.memory % 3 {
            0 => MemoryType::Normal,
            1 => MemoryType::NormalNonCacheable,
            _ => MemoryType::Device,
        };
        Attrs::new(memory, Access::from_bits_truncate(self.access))
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// `map`, or `remap` when `replace` is set.
    Map {
        ipa: Span,
        size: Span,
        pa: Span,
        attrs: Attr,
        replace: bool,
    },
    Unmap {
        ipa: Span,
        size: Span,
    },
    Protect {
        ipa: Span,
        size: Span,
        attrs: Attr,
    },
    /// Caps the live tables (None: no cap).
    Limit(Option<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    pa_range: u8,
    ipa_bits: u8,
    ops: Vec<Op>,
    probes: Vec<Span>,
}

/// `[start, end)` mapped to `pa` with `attrs`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Interval {
    start: u64,
    end: u64,
    pa: u64,
    attrs: Attrs,
}

#[derive(Default, Clone, Debug)]
struct Model {
    /// Sorted, disjoint.
    iv: Vec<Interval>,
}

impl Model {
    /// Cuts the interval that strictly contains `x`, if any, in two at `x`.
    fn split(&mut self, x: u64) {
        let Some(k) = self.iv.iter().position(|i| i.start < x && x < i.end) else {
            return;
        };
        let i = self.iv[k];
        self.iv[k].end = x;
        let upper = Interval {
            start: x,
            pa: i.pa + (x - i.start),
            ..i
        };
        self.iv.insert(k + 1, upper);
    }

    /// Removes `[s, e)` and returns the removed parts.
    fn take(&mut self, s: u64, e: u64) -> Vec<Interval> {
        self.split(s);
        self.split(e);
        let (inside, outside) = self.iv.iter().partition(|i| s <= i.start && i.end <= e);
        self.iv = outside;
        inside
    }

    fn put(&mut self, parts: impl IntoIterator<Item = Interval>) {
        self.iv.extend(parts);
        self.iv.sort_by_key(|i| i.start);
    }

    fn first_mapped(&self, s: u64, e: u64) -> Option<u64> {
        self.iv
            .iter()
            .find(|i| i.end > s && i.start < e)
            .map(|i| i.start.max(s))
    }

    fn first_hole(&self, s: u64, e: u64) -> Option<u64> {
        let mut at = s;
        for i in self.iv.iter().filter(|i| i.end > s && i.start < e) {
            if i.start > at {
                return Some(at);
            }
            at = i.end;
        }
        (at < e).then_some(at)
    }

    fn lookup(&self, ipa: u64) -> Option<(u64, Attrs)> {
        self.iv
            .iter()
            .find(|i| i.start <= ipa && ipa < i.end)
            .map(|i| (i.pa + (ipa - i.start), i.attrs))
    }
}

type S2 = Stage2<FakeMemory, FakeTlb>;

/// Caps a mapping that can only use 4 KiB pages (IPA and PA disagree
/// modulo 2 MiB) at 64 MiB, so an input costs milliseconds, not seconds.
fn page_bound(ipa: u64, size: u64, pa: u64) -> u64 {
    if (ipa ^ pa) % SIZE_2M != 0 {
        size.min(64 << 20)
    } else {
        size
    }
}

fn check(s2: &S2, model: &Model, probes: &[u64]) {
    let mut points: Vec<u64> = probes.to_vec();
    for i in &model.iv {
        points.extend([i.start, i.end - 1, i.start + (i.end - i.start) / 2, i.end]);
        points.push(i.start.wrapping_sub(1));
    }
    for ipa in points {
        let t = s2.translate(GuestPhysAddr(ipa));
        let want = model.lookup(ipa);
        assert_eq!(t.map(|t| (t.pa.0, t.attrs)), want, "translate({ipa:#x})");
        if let Some(t) = t {
            assert!(matches!(
                (t.level, t.block_size),
                (1, SIZE_1G) | (2, SIZE_2M) | (3, PAGE_SIZE)
            ));
            assert_eq!(t.pa.0 % t.block_size, ipa % t.block_size);
        }
    }
    // Leaves cover exactly the model, in IPA order.
    let mut covered = 0u64;
    let mut last_end = 0u64;
    s2.for_each_mapping(|m| {
        assert!(m.ipa.start.0 >= last_end, "mappings out of order");
        last_end = m.ipa.start.0 + m.ipa.size;
        assert_eq!(m.ipa.start.0 % m.ipa.size, 0, "unaligned leaf");
        assert_eq!(m.pa.0 % m.ipa.size, 0, "unaligned output");
        let first = model.lookup(m.ipa.start.0);
        let last = model.lookup(last_end - 1);
        assert_eq!(first, Some((m.pa.0, m.attrs)), "leaf {m:?}");
        assert_eq!(last, Some((m.pa.0 + m.ipa.size - 1, m.attrs)), "leaf {m:?}");
        covered += m.ipa.size;
    });
    let want: u64 = model.iv.iter().map(|i| i.end - i.start).sum();
    assert_eq!(covered, want, "leaves do not cover the mapped bytes");
}

fuzz_target!(|input: Input| {
    let pa = PA_RANGES[usize::from(input.pa_range) % PA_RANGES.len()];
    let ipa_bits = 25 + input.ipa_bits % 28;
    let Ok(config) = Stage2Config::new(pa, ipa_bits) else {
        return;
    };
    let Ok(mut s2) = Stage2::new(config, FakeMemory::new(), FakeTlb::default()) else {
        return;
    };
    let space = config.ipa_size();
    let pa_limit = 1u128 << config.pa_bits();
    let mut model = Model::default();
    let mut limited = false;
    let probes: Vec<u64> = input.probes.iter().take(16).map(|s| s.value()).collect();

    for op in input.ops.iter().take(24) {
        // Common checks: (ipa, size, pa, attrs) and whether the model
        // accepts the shape.
        let shape = |ipa: u64, size: u64| {
            let r = GuestRange::new(GuestPhysAddr(ipa), size);
            size != 0
                && r.is_aligned(PAGE_SIZE)
                && u128::from(ipa) + u128::from(size) <= u128::from(space)
        };
        let out_ok = |pa: u64, size: u64, a: Attrs| {
            pa % PAGE_SIZE == 0
                && u128::from(pa) + u128::from(size) <= pa_limit
                && !(a.memory == MemoryType::Device && a.access.contains(Access::EXECUTE))
        };
        let before = model.clone();
        let (res, valid) = match *op {
            Op::Limit(l) => {
                s2.memory()
                    .set_limit(l.map(|n| s2.memory().live_tables() + usize::from(n % 8)));
                limited = l.is_some();
                continue;
            }
            Op::Map {
                ipa,
                size,
                pa,
                attrs,
                replace,
            } => {
                let (i, p, a) = (ipa.value(), pa.value(), attrs.get());
                let n = page_bound(i, size.size(), p);
                let r = GuestRange::new(GuestPhysAddr(i), n);
                let res = if replace {
                    s2.remap(r, HostPhysAddr(p), a)
                } else {
                    s2.map(r, HostPhysAddr(p), a)
                };
                let valid = shape(i, n) && out_ok(p, n, a);
                let clash = model.first_mapped(i, i + n).filter(|_| valid && !replace);
                if let Some(at) = clash {
                    let want = Err(MapError::AlreadyMapped {
                        ipa: GuestPhysAddr(at),
                    });
                    assert_eq!(res, want);
                    continue;
                }
                if valid && res.is_ok() {
                    model.take(i, i + n);
                    model.put([Interval {
                        start: i,
                        end: i + n,
                        pa: p,
                        attrs: a,
                    }]);
                }
                (res, valid)
            }
            Op::Unmap { ipa, size } => {
                let (i, n) = (ipa.value(), size.size());
                let res = s2.unmap(GuestRange::new(GuestPhysAddr(i), n));
                let valid = shape(i, n);
                if valid && res.is_ok() {
                    model.take(i, i + n);
                }
                (res, valid)
            }
            Op::Protect { ipa, size, attrs } => {
                let (i, n, a) = (ipa.value(), size.size(), attrs.get());
                let res = s2.protect(GuestRange::new(GuestPhysAddr(i), n), a);
                let valid = shape(i, n) && out_ok(0, 0, a);
                if valid {
                    match model.first_hole(i, i + n) {
                        Some(at) => {
                            assert_eq!(
                                res,
                                Err(MapError::NotMapped {
                                    ipa: GuestPhysAddr(at)
                                })
                            );
                            continue;
                        }
                        None if res.is_ok() => {
                            let parts = model.take(i, i + n);
                            model.put(parts.into_iter().map(|p| Interval { attrs: a, ..p }));
                        }
                        None => {}
                    }
                }
                (res, valid)
            }
        };
        match res {
            Ok(()) => assert!(valid, "{op:?} accepted"),
            Err(MapError::OutOfMemory { .. }) if limited && valid => {}
            Err(e) => {
                let _ = e.to_string();
                assert!(!valid, "{op:?} refused: {e}");
                assert_eq!(model.iv, before.iv);
            }
        }
        check(&s2, &model, &probes);
    }
});
