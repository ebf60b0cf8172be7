//! Cost of the vPL011 transmit path, against writing the same bytes to the
//! same sink without emulation.
//!
//! The guest side is a console driver printing text one byte per trapped
//! UARTDR store, with the FIFOs enabled and the TX, RX and receive-timeout
//! interrupts unmasked, as Linux's `amba-pl011` leaves them. Each emulated
//! byte does what the hypervisor does after a trapped store: find the
//! register offset from the faulting address, perform the write (FIFO push,
//! TX interrupt re-evaluation, line update), drain the FIFO, and hand the
//! drained bytes to the console multiplexer, which prints whole lines with
//! the domain prefix into the host sink.
//!
//! Entries of each group, all printing the same text into the same kind of
//! sink (a reused `Vec<u8>`):
//! * `raw_sink` (the baseline): every byte pushed into the sink directly,
//!   one call per byte, with no UART and no console;
//! * `console_only`: every byte handed to [`Console::guest_output`], which
//!   isolates the multiplexer's share of the full path;
//! * `dr_write`: the full path above for every byte;
//! * `fr_poll_dr_write`: the full path preceded by a trapped UARTFR read
//!   per byte, as a driver that polls "transmit FIFO full" before each
//!   store does.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_main};
use tessel_addr::{AccessSize, GuestPhysAddr};
use tessel_vpl011::console::{Console, ConsoleId, HostConsole};
use tessel_vpl011::{IrqLine, Vpl011, Vpl011Config, regs};

/// Counts level changes, as a vGIC line would see them.
#[derive(Default)]
struct Line {
    edges: u64,
}

impl IrqLine for Line {
    fn set_level(&mut self, _high: bool) {
        self.edges += 1;
    }
}

/// Text a guest prints: `lines` lines of 80 characters, newline included.
fn text(lines: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines * 80);
    for i in 0..lines {
        let line =
            format!("[{i:5}] tessel vpl011 bench: the quick brown fox jumps over the lazy dog");
        out.extend_from_slice(line.as_bytes());
        out.resize(out.len() + 79 - line.len(), b'.');
        out.push(b'\n');
    }
    out
}

/// A UART configured the way Linux's driver leaves it: FIFOs on, 8-bit
/// words, UART/TX/RX enabled, TX/RX/RT interrupts unmasked.
fn uart() -> Vpl011<Line> {
    let mut u = Vpl011::new(Line::default());
    let lcr_h = regs::lcr_h::FEN | (0b11 << 5);
    u.write(regs::LCR_H, AccessSize::Word, u64::from(lcr_h))
        .unwrap();
    u.write(regs::CR, AccessSize::Word, 0x301).unwrap();
    let imsc = regs::int::TX | regs::int::RX | regs::int::RT;
    u.write(regs::IMSC, AccessSize::Word, u64::from(imsc))
        .unwrap();
    u
}

/// Everything one domain's console path needs.
struct Path {
    cfg: Vpl011Config,
    dev: Vpl011<Line>,
    console: Console,
    id: ConsoleId,
    drained: Vec<u8>,
}

impl Path {
    fn new() -> Self {
        let mut console = Console::new();
        let id = console.add_domain("domU1");
        Self {
            cfg: Vpl011Config::VIRTUAL,
            dev: uart(),
            console,
            id,
            drained: Vec::with_capacity(regs::FRAME_SIZE as usize),
        }
    }

    /// One trapped access's address decode.
    fn offset(&self, reg: u64) -> u64 {
        let gpa = GuestPhysAddr(self.cfg.base.0 + reg);
        self.cfg.offset_of(black_box(gpa)).unwrap()
    }

    /// One trapped UARTDR store, handled as the hypervisor does.
    fn store(&mut self, byte: u8, out: &mut Vec<u8>) {
        let off = self.offset(regs::DR);
        self.dev
            .write(off, AccessSize::Word, u64::from(byte))
            .unwrap();
        self.drained.clear();
        let drained = &mut self.drained;
        self.dev.drain_tx(|b| drained.push(b));
        self.console
            .guest_output(self.id, &self.drained, out)
            .unwrap();
    }

    /// One trapped UARTFR load; `true` when the transmit FIFO is full.
    fn tx_full(&mut self) -> bool {
        let off = self.offset(regs::FR);
        let fr = self.dev.read(off, AccessSize::Word).unwrap();
        fr & u64::from(regs::fr::TXFF) != 0
    }
}

fn tx(c: &mut Criterion) {
    for lines in [1usize, 16] {
        let bytes = text(lines);
        let mut group = c.benchmark_group(format!("vpl011_tx_{}B", bytes.len()));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut out = Vec::with_capacity(2 * bytes.len());

        group.bench_function("raw_sink", |b| {
            b.iter(|| {
                out.clear();
                for &byte in black_box(&bytes) {
                    out.write_bytes(&[byte]);
                }
                black_box(out.len())
            })
        });

        let mut console = Console::new();
        let id = console.add_domain("domU1");
        group.bench_function("console_only", |b| {
            b.iter(|| {
                out.clear();
                for &byte in black_box(&bytes) {
                    console.guest_output(id, &[byte], &mut out).unwrap();
                }
                black_box(out.len())
            })
        });

        // One checked pass first: the sink sees every line with its
        // prefix, nothing is dropped or overflows.
        let mut path = Path::new();
        out.clear();
        for &byte in &bytes {
            path.store(byte, &mut out);
        }
        assert_eq!(out.len(), bytes.len() + lines * "(domU1) ".len());
        assert_eq!(path.dev.tx_overflows(), 0);

        group.bench_function("dr_write", |b| {
            b.iter(|| {
                out.clear();
                for &byte in black_box(&bytes) {
                    path.store(byte, &mut out);
                }
                black_box(out.len())
            })
        });
        let mut path = Path::new();
        group.bench_function("fr_poll_dr_write", |b| {
            b.iter(|| {
                out.clear();
                for &byte in black_box(&bytes) {
                    while path.tx_full() {}
                    path.store(byte, &mut out);
                }
                black_box(out.len())
            })
        });
        group.finish();
    }
}

/// Runs every group. The short default timings keep a full run quick;
/// command-line options (`--measurement-time`, `--warm-up-time`,
/// `--sample-size`) override them.
fn benches() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .configure_from_args();
    tx(&mut c);
    c.final_summary();
}

criterion_main!(benches);
