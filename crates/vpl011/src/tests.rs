//! Host tests of the register behaviour Linux's `amba-pl011` and
//! `sbsa-uart` drivers depend on, of the interrupt line, and of the console
//! multiplexer.

use super::console::{Console, INPUT_BUFFER, LINE_MAX};
use super::regs::{self, fr, int};
use super::*;
use proptest::prelude::*;
use std::vec::Vec;

/// Records every level change the device drives.
#[derive(Default, Debug)]
struct Recorder(Vec<bool>);

impl IrqLine for Recorder {
    fn set_level(&mut self, high: bool) {
        self.0.push(high);
    }
}

type Uart = Vpl011<Recorder>;

fn uart() -> Uart {
    Vpl011::new(Recorder::default())
}

fn r32(u: &mut Uart, off: u64) -> u32 {
    u.read(off, AccessSize::Word).unwrap() as u32
}

fn w32(u: &mut Uart, off: u64, v: u32) {
    u.write(off, AccessSize::Word, u64::from(v)).unwrap();
}

/// Enables FIFOs, as the Linux driver does in `pl011_set_termios`
/// (8N1 with FEN: LCR_H = 0x70).
fn enable_fifos(u: &mut Uart) {
    w32(u, regs::LCR_H, 0x70);
}

fn levels(u: &Uart) -> &[bool] {
    &u.irq_line().0
}

#[test]
fn amba_probe_reads_primecell_ids() {
    let mut u = uart();
    let periph: Vec<u32> = (0..4).map(|i| r32(&mut u, 0xFE0 + 4 * i)).collect();
    let pcell: Vec<u32> = (0..4).map(|i| r32(&mut u, 0xFF0 + 4 * i)).collect();
    assert_eq!(periph, [0x11, 0x10, 0x34, 0x00]);
    assert_eq!(pcell, [0x0D, 0xF0, 0x05, 0xB1]);
    // The AMBA bus assembles the ID from the low byte of each register.
    let cid = pcell
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, b)| acc | (b & 0xff) << (8 * i));
    assert_eq!(cid, 0xB105_F00D);
    let pid = periph
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, b)| acc | (b & 0xff) << (8 * i));
    // Part 0x011, designer 0x41 (Arm), revision 3.
    assert_eq!(pid & 0xfff, 0x011);
    assert_eq!((pid >> 12) & 0xff, 0x41);
    assert_eq!((pid >> 20) & 0xf, 3);
    // ID registers are read-only.
    w32(&mut u, 0xFE0, 0xdead);
    assert_eq!(r32(&mut u, 0xFE0), 0x11);
}

#[test]
fn reset_values() {
    let mut u = uart();
    assert_eq!(r32(&mut u, regs::FR), fr::TXFE | fr::RXFE);
    assert_eq!(r32(&mut u, regs::CR), 0x300);
    assert_eq!(r32(&mut u, regs::IFLS), 0x12);
    assert_eq!(r32(&mut u, regs::IMSC), 0);
    assert_eq!(r32(&mut u, regs::MIS), 0);
    assert!(levels(&u).is_empty());
}

#[test]
fn startup_sequence_registers_read_back() {
    let mut u = uart();
    // pl011_hwinit / pl011_startup / pl011_set_termios, roughly.
    w32(&mut u, regs::CR, 0);
    w32(&mut u, regs::ICR, 0x7ff);
    w32(&mut u, regs::IMSC, 0);
    w32(&mut u, regs::IFLS, 0x12);
    w32(&mut u, regs::IBRD, 13);
    w32(&mut u, regs::FBRD, 1);
    w32(&mut u, regs::LCR_H, 0x70);
    w32(&mut u, regs::CR, 0x301);
    w32(&mut u, regs::DMACR, 0x3);
    w32(&mut u, regs::ILPR, 0x1ab);
    assert_eq!(r32(&mut u, regs::IBRD), 13);
    assert_eq!(r32(&mut u, regs::FBRD), 1);
    assert_eq!(r32(&mut u, regs::LCR_H), 0x70);
    assert_eq!(r32(&mut u, regs::CR), 0x301);
    assert_eq!(r32(&mut u, regs::DMACR), 0x3);
    // Registers keep only their architectural width.
    assert_eq!(r32(&mut u, regs::ILPR), 0xab);
    w32(&mut u, regs::IBRD, 0x12345);
    assert_eq!(r32(&mut u, regs::IBRD), 0x2345);
    w32(&mut u, regs::FBRD, 0xff);
    assert_eq!(r32(&mut u, regs::FBRD), 0x3f);
    assert_eq!(u.fifo_depth(), FIFO_DEPTH);
}

#[test]
fn widths_and_offsets() {
    let mut u = uart();
    assert_eq!(
        u.read(regs::FR, AccessSize::Double),
        Err(MmioError::UnsupportedWidth { offset: regs::FR })
    );
    assert_eq!(
        u.write(regs::DR, AccessSize::Double, 0x41),
        Err(MmioError::UnsupportedWidth { offset: 0 })
    );
    assert_eq!(u.tx_len(), 0, "a rejected write must have no effect");
    assert_eq!(
        u.read(0x1A, AccessSize::Word),
        Err(MmioError::Misaligned {
            offset: 0x1A,
            size: AccessSize::Word
        })
    );
    assert_eq!(
        u.read(0x1000, AccessSize::Byte),
        Err(MmioError::OutOfFrame { offset: 0x1000 })
    );
    assert_eq!(
        std::format!("{}", MmioError::UnsupportedWidth { offset: 0x18 }),
        "vPL011: 64-bit access at offset 0x18; only 8, 16 and 32-bit accesses are supported"
    );
    // Unknown offsets: RAZ/WI.
    w32(&mut u, 0x100, 0xffff_ffff);
    assert_eq!(r32(&mut u, 0x100), 0);
    // ICR is write-only: reads as zero.
    assert_eq!(r32(&mut u, regs::ICR), 0);
    // Byte and halfword accesses.
    assert_eq!(
        u.read(regs::FR, AccessSize::Byte).unwrap(),
        u64::from(fr::TXFE | fr::RXFE)
    );
    w32(&mut u, regs::CR, 0x0301);
    assert_eq!(u.read(regs::CR + 1, AccessSize::Byte).unwrap(), 0x03);
    u.write(regs::CR + 1, AccessSize::Byte, 0x00).unwrap();
    assert_eq!(r32(&mut u, regs::CR), 0x0001);
    u.write(regs::IBRD, AccessSize::Half, 0xabcd).unwrap();
    assert_eq!(u.read(regs::IBRD, AccessSize::Half).unwrap(), 0xabcd);
    // A byte write to the DR error-flag byte transmits nothing.
    u.write(regs::DR + 1, AccessSize::Byte, 0x41).unwrap();
    assert_eq!(u.tx_len(), 0);
    u.write(regs::DR, AccessSize::Byte, 0x41).unwrap();
    assert_eq!(u.tx_len(), 1);
}

#[test]
fn tx_fills_fifo_and_reports_txff() {
    let mut u = uart();
    enable_fifos(&mut u);
    for i in 0..31u32 {
        w32(&mut u, regs::DR, 0x100 | i);
        assert_eq!(r32(&mut u, regs::FR) & fr::TXFF, 0);
    }
    w32(&mut u, regs::DR, 31);
    let f = r32(&mut u, regs::FR);
    assert_ne!(f & fr::TXFF, 0);
    assert_ne!(f & fr::BUSY, 0);
    assert_eq!(f & fr::TXFE, 0);
    // One more byte is lost, as on hardware, and counted.
    w32(&mut u, regs::DR, 0xee);
    assert_eq!(u.tx_overflows(), 1);
    let mut out = Vec::new();
    assert_eq!(u.drain_tx(|b| out.push(b)), 32);
    // Only the low 8 bits are data.
    assert_eq!(out, (0..32u8).collect::<Vec<_>>());
    assert_eq!(r32(&mut u, regs::FR), fr::TXFE | fr::RXFE);
}

#[test]
fn without_fifos_tx_holds_one_byte() {
    let mut u = uart();
    w32(&mut u, regs::DR, b'a'.into());
    assert_ne!(r32(&mut u, regs::FR) & fr::TXFF, 0);
    // TX interrupt only when the holding register is empty.
    assert_eq!(r32(&mut u, regs::RIS) & int::TX, 0);
    u.drain_tx(|_| {});
    assert_ne!(r32(&mut u, regs::RIS) & int::TX, 0);
}

#[test]
fn tx_interrupt_follows_level_and_drain() {
    let mut u = uart();
    enable_fifos(&mut u);
    // TXIFLSEL = 1/8: TX when the FIFO holds at most 4 bytes.
    w32(&mut u, regs::IFLS, 0);
    w32(&mut u, regs::ICR, int::ALL);
    w32(&mut u, regs::IMSC, int::TX);
    assert_eq!(levels(&u), [] as [bool; 0]);
    // The Linux tx path writes first, then unmasks TX; the write leaves the
    // FIFO below the level, so TX is raised at once.
    w32(&mut u, regs::DR, b'a'.into());
    assert!(u.irq_level());
    for _ in 0..4 {
        w32(&mut u, regs::DR, b'b'.into());
    }
    // Five bytes: above 1/8, so TX drops.
    assert!(!u.irq_level());
    u.drain_tx(|_| {});
    assert!(u.irq_level());
    // Masking TX (pl011_stop_tx) lowers the line.
    w32(&mut u, regs::IMSC, 0);
    assert_eq!(levels(&u), [true, false, true, false]);
    assert_eq!(r32(&mut u, regs::MIS), 0);
    assert_ne!(r32(&mut u, regs::RIS) & int::TX, 0);
}

#[test]
fn rx_push_clears_rxfe_and_fills() {
    let mut u = uart();
    enable_fifos(&mut u);
    assert_eq!(u.receive(b"hi"), 2);
    let f = r32(&mut u, regs::FR);
    assert_eq!(f & fr::RXFE, 0);
    assert_eq!(f & fr::RXFF, 0);
    assert_eq!(r32(&mut u, regs::DR), u32::from(b'h'));
    assert_eq!(r32(&mut u, regs::DR), u32::from(b'i'));
    assert_ne!(r32(&mut u, regs::FR) & fr::RXFE, 0);
    // Empty FIFO reads 0.
    assert_eq!(r32(&mut u, regs::DR), 0);
    // The FIFO takes at most 32 bytes.
    let data = [0x55u8; 40];
    assert_eq!(u.receive(&data), 32);
    assert_ne!(r32(&mut u, regs::FR) & fr::RXFF, 0);
    assert_eq!(u.rx_space(), 0);
    assert_eq!(u.receive(b"x"), 0);
}

#[test]
fn rx_without_fifos_takes_one_byte() {
    let mut u = uart();
    assert_eq!(u.receive(b"ab"), 1);
    assert_ne!(r32(&mut u, regs::FR) & fr::RXFF, 0);
    // With FIFOs off the trigger is one byte: RX, not RT.
    assert_eq!(r32(&mut u, regs::RIS) & (int::RX | int::RT), int::RX);
}

#[test]
fn rx_interrupt_at_ifls_level() {
    let mut u = uart();
    enable_fifos(&mut u);
    // RXIFLSEL = 1/4 -> 8 bytes.
    w32(&mut u, regs::IFLS, 1 << 3);
    w32(&mut u, regs::ICR, int::ALL);
    w32(&mut u, regs::IMSC, int::RX);
    u.receive(&[1; 7]);
    assert_eq!(r32(&mut u, regs::RIS) & int::RX, 0);
    assert!(!u.irq_level());
    u.receive(&[2]);
    assert_ne!(r32(&mut u, regs::RIS) & int::RX, 0);
    assert_eq!(r32(&mut u, regs::MIS), int::RX);
    assert!(u.irq_level());
    // Reading one byte takes the FIFO below the level: RX clears.
    r32(&mut u, regs::DR);
    assert_eq!(r32(&mut u, regs::RIS) & int::RX, 0);
    assert!(!u.irq_level());
    assert_eq!(levels(&u), [true, false]);
}

#[test]
fn rx_trigger_levels_for_every_ifls_setting() {
    for (sel, bytes) in [(0u32, 4usize), (1, 8), (2, 16), (3, 24), (4, 28)] {
        let mut u = uart();
        enable_fifos(&mut u);
        w32(&mut u, regs::IFLS, sel << 3);
        u.receive(&std::vec![0; bytes - 1]);
        assert_eq!(r32(&mut u, regs::RIS) & int::RX, 0, "sel {sel}");
        u.receive(&[0]);
        assert_ne!(r32(&mut u, regs::RIS) & int::RX, 0, "sel {sel}");
    }
}

#[test]
fn receive_timeout_signals_data_below_level() {
    let mut u = uart();
    enable_fifos(&mut u);
    w32(&mut u, regs::ICR, int::ALL);
    w32(&mut u, regs::IMSC, int::RX | int::RT);
    // One keystroke: below the half-full level, so RT, not RX.
    u.receive(b"a");
    assert_eq!(r32(&mut u, regs::MIS), int::RT);
    assert!(u.irq_level());
    // Draining the FIFO clears RT.
    r32(&mut u, regs::DR);
    assert_eq!(r32(&mut u, regs::RIS) & int::RT, 0);
    assert!(!u.irq_level());
    // Data left below the level after a burst is signalled with RT.
    u.receive(&[7; 17]);
    assert_eq!(r32(&mut u, regs::MIS), int::RX);
    r32(&mut u, regs::DR);
    r32(&mut u, regs::DR);
    assert_eq!(r32(&mut u, regs::MIS), int::RT);
    assert_eq!(levels(&u), [true, false, true]);
}

#[test]
fn icr_clears_and_mis_is_ris_and_imsc() {
    let mut u = uart();
    enable_fifos(&mut u);
    u.receive(b"x");
    let ris = r32(&mut u, regs::RIS);
    assert_eq!(ris, int::RT | int::TX);
    assert_eq!(r32(&mut u, regs::MIS), 0);
    w32(&mut u, regs::IMSC, int::RT | int::RX);
    assert_eq!(r32(&mut u, regs::MIS), int::RT);
    assert!(u.irq_level());
    // Write-1-to-clear: writing TX leaves RT alone.
    w32(&mut u, regs::ICR, int::TX);
    assert_eq!(r32(&mut u, regs::RIS), int::RT);
    assert!(u.irq_level());
    w32(&mut u, regs::ICR, int::RT);
    assert_eq!(r32(&mut u, regs::RIS), 0);
    assert!(!u.irq_level());
    // The data is still there to read.
    assert_eq!(r32(&mut u, regs::DR), u32::from(b'x'));
    assert_eq!(levels(&u), [true, false]);
}

#[test]
fn ifls_change_reevaluates_rx() {
    let mut u = uart();
    enable_fifos(&mut u);
    u.receive(&[0; 6]);
    assert_eq!(r32(&mut u, regs::RIS) & int::RX, 0);
    // Lowering the level to 1/8 (4 bytes) puts the FIFO above it.
    w32(&mut u, regs::IFLS, 0);
    assert_ne!(r32(&mut u, regs::RIS) & int::RX, 0);
}

#[test]
fn snapshot_round_trip() {
    let mut u = uart();
    enable_fifos(&mut u);
    w32(&mut u, regs::IMSC, int::RT);
    w32(&mut u, regs::IBRD, 26);
    u.receive(b"abc");
    w32(&mut u, regs::DR, u32::from(b'z'));
    let s = u.state();
    let (mut v, level) = Vpl011::from_state(&s, Recorder::default());
    assert!(level);
    assert_eq!(levels(&v), [true]);
    assert_eq!(v.state(), s);
    assert_eq!(r32(&mut v, regs::DR), u32::from(b'a'));
    assert_eq!(r32(&mut v, regs::IBRD), 26);
    let mut tx = Vec::new();
    v.drain_tx(|b| tx.push(b));
    assert_eq!(tx, b"z");
    // A corrupt snapshot is masked to architectural widths.
    let bad = Vpl011State {
        imsc: u32::MAX,
        ris: u32::MAX,
        cr: u32::MAX,
        ..Vpl011State::default()
    };
    let (w, _) = Vpl011::from_state(&bad, Recorder::default());
    assert_eq!(w.state().imsc, int::ALL);
    assert_eq!(w.state().cr, 0xffff);
}

#[derive(Debug, Clone)]
enum Op {
    Read(u64, u8),
    Write(u64, u8, u64),
    Receive(Vec<u8>),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    let off = prop_oneof![(0u64..0x50), (0xfe0u64..0x1004), any::<u64>()];
    prop_oneof![
        (off.clone(), 0u8..4).prop_map(|(o, s)| Op::Read(o, s)),
        (off, 0u8..4, any::<u64>()).prop_map(|(o, s, v)| Op::Write(o, s, v)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Receive),
        Just(Op::Drain),
    ]
}

fn size(s: u8) -> AccessSize {
    match s {
        0 => AccessSize::Byte,
        1 => AccessSize::Half,
        2 => AccessSize::Word,
        _ => AccessSize::Double,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the guest and the console do: no panic, the line level
    /// always equals (RIS & IMSC) != 0, the recorded level sequence
    /// alternates, FIFOs stay within depth, FR agrees with the FIFOs, and
    /// received bytes come out in order.
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..60)) {
        let mut u = uart();
        let mut expected_rx: std::collections::VecDeque<u8> = Default::default();
        for op in ops {
            match op {
                Op::Read(o, s) => {
                    let rx_before = u.rx_len();
                    let r = u.read(o, size(s));
                    if let Ok(v) = r
                        && o == regs::DR
                        && rx_before > 0
                    {
                        prop_assert_eq!(Some(v as u8), expected_rx.pop_front());
                    }
                }
                Op::Write(o, s, v) => { let _ = u.write(o, size(s), v); }
                Op::Receive(bytes) => {
                    let n = u.receive(&bytes);
                    expected_rx.extend(&bytes[..n]);
                }
                Op::Drain => { u.drain_tx(|_| {}); }
            }
            let st = u.state();
            prop_assert_eq!(u.irq_level(), st.ris & st.imsc != 0);
            prop_assert!(u.rx_len() <= FIFO_DEPTH && u.tx_len() <= FIFO_DEPTH);
            prop_assert_eq!(u.rx_len(), expected_rx.len());
            let f = u.read(regs::FR, AccessSize::Word).unwrap() as u32;
            prop_assert_eq!(f & fr::RXFE != 0, u.rx_len() == 0);
            prop_assert_eq!(f & fr::TXFE != 0, u.tx_len() == 0);
        }
        let seq = &u.irq_line().0;
        for w in seq.windows(2) {
            prop_assert_ne!(w[0], w[1]);
        }
        if let Some(first) = seq.first() {
            prop_assert!(*first);
        }
    }

    /// `write_through` is `write` then `drain_tx`: same result, same
    /// state, same bytes out, same line level, for any sequence.
    #[test]
    fn write_through_is_write_then_drain(ops in proptest::collection::vec(op(), 1..60)) {
        let (mut a, mut b) = (uart(), uart());
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Read(o, s) => {
                    prop_assert_eq!(a.read(o, size(s)), b.read(o, size(s)));
                }
                Op::Write(o, s, v) => {
                    let ra = a.write_through(o, size(s), v, |x| out_a.push(x));
                    let rb = b.write(o, size(s), v).map(|()| b.drain_tx(|x| out_b.push(x)));
                    prop_assert_eq!(ra, rb);
                }
                Op::Receive(bytes) => {
                    prop_assert_eq!(a.receive(&bytes), b.receive(&bytes));
                }
                Op::Drain => {
                    a.drain_tx(|x| out_a.push(x));
                    b.drain_tx(|x| out_b.push(x));
                }
            }
            prop_assert_eq!(a.state(), b.state());
            prop_assert_eq!(a.irq_level(), b.irq_level());
            prop_assert_eq!(&out_a, &out_b);
        }
    }

    /// Console output never loses or reorders a byte, whatever the chunking.
    #[test]
    fn console_output_is_lossless(chunks in proptest::collection::vec(
        proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..300), 0..8)) {
        let mut con = Console::new();
        let id = con.add_domain("d");
        let mut out = Vec::new();
        let mut all = Vec::new();
        for c in &chunks {
            con.guest_output(id, c, &mut out).unwrap();
            all.extend_from_slice(c);
        }
        con.flush_output(id, &mut out).unwrap();
        // Strip the prefixes and the newlines added at forced breaks.
        let mut rebuilt = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            prop_assert!(rest.starts_with(b"(d) "));
            rest = &rest[4..];
            let end = rest.iter().position(|&b| b == b'\n').unwrap();
            let line = &rest[..=end];
            rest = &rest[end + 1..];
            prop_assert!(line.len() <= LINE_MAX + 1);
            if line.len() == LINE_MAX + 1 || !all[rebuilt.len()..].starts_with(line) {
                rebuilt.extend_from_slice(&line[..line.len() - 1]);
            } else {
                rebuilt.extend_from_slice(line);
            }
        }
        prop_assert_eq!(rebuilt, all);
    }
}

// ---------------------------------------------------------------- console

#[test]
fn console_prefixes_whole_lines_per_domain() {
    let mut con = Console::new();
    let a = con.add_domain("domU1");
    let b = con.add_domain("domU2");
    let mut out = Vec::new();
    con.guest_output(a, b"hel", &mut out).unwrap();
    con.guest_output(b, b"other\n", &mut out).unwrap();
    con.guest_output(a, b"lo\n", &mut out).unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "(domU2) other\n(domU1) hello\n"
    );
}

#[test]
fn console_breaks_overlong_lines_without_loss() {
    let mut con = Console::new();
    let a = con.add_domain("d");
    let mut out = Vec::new();
    let long = std::vec![b'x'; LINE_MAX + 10];
    con.guest_output(a, &long, &mut out).unwrap();
    let mut expected = b"(d) ".to_vec();
    expected.extend(std::iter::repeat_n(b'x', LINE_MAX));
    expected.push(b'\n');
    assert_eq!(out, expected);
    con.flush_output(a, &mut out).unwrap();
    assert!(out.ends_with(b"(d) xxxxxxxxxx\n"));
    // Nothing left to flush.
    let len = out.len();
    con.flush_output(a, &mut out).unwrap();
    assert_eq!(out.len(), len);
}

#[test]
fn vpl011_output_reaches_console() {
    let mut con = Console::new();
    let id = con.add_domain("domU1");
    let mut u = uart();
    let mut out = Vec::new();
    for &b in b"hello\n" {
        w32(&mut u, regs::DR, b.into());
        let mut bytes = Vec::new();
        u.drain_tx(|b| bytes.push(b));
        con.guest_output(id, &bytes, &mut out).unwrap();
    }
    assert_eq!(out, b"(domU1) hello\n");
}

#[test]
fn three_ctrl_a_switch_input_and_announce() {
    let mut con = Console::new();
    let a = con.add_domain("domU1");
    let b = con.add_domain("domU2");
    let mut out = Vec::new();
    assert_eq!(con.focus(), Some(a));
    assert_eq!(con.host_input(b'x', &mut out), Some(a));
    for _ in 0..3 {
        assert_eq!(con.host_input(0x01, &mut out), None);
    }
    assert_eq!(con.focus(), Some(b));
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "(tessel) input to domU2 (type 'CTRL-a' three times to switch input)\n"
    );
    assert_eq!(con.host_input(b'y', &mut out), Some(b));
    assert_eq!(con.pending_input(a), Some(1));
    assert_eq!(con.pending_input(b), Some(1));
    // Wraps around to the first domain.
    for _ in 0..3 {
        con.host_input(0x01, &mut out);
    }
    assert_eq!(con.focus(), Some(a));
    assert!(
        out.ends_with(b"(tessel) input to domU1 (type 'CTRL-a' three times to switch input)\n")
    );
}

#[test]
fn fewer_than_three_ctrl_a_are_delivered() {
    let mut con = Console::new();
    let a = con.add_domain("domU1");
    con.add_domain("domU2");
    let mut out = Vec::new();
    con.host_input(0x01, &mut out);
    con.host_input(0x01, &mut out);
    assert_eq!(con.host_input(b'c', &mut out), Some(a));
    assert_eq!(con.focus(), Some(a));
    assert!(out.is_empty());
    let mut u = uart();
    enable_fifos(&mut u);
    con.feed(a, &mut u).unwrap();
    let got: Vec<u32> = (0..3).map(|_| r32(&mut u, regs::DR)).collect();
    assert_eq!(got, [1, 1, u32::from(b'c')]);
}

#[test]
fn input_without_domains_is_discarded() {
    let mut con = Console::new();
    let mut out = Vec::new();
    assert_eq!(con.host_input(b'a', &mut out), None);
    assert_eq!(con.focus(), None);
}

#[test]
fn back_pressure_buffers_and_counts_drops() {
    let mut con = Console::new();
    let a = con.add_domain("domU1");
    let mut out = Vec::new();
    let mut u = uart();
    enable_fifos(&mut u);
    // The guest does not read: the FIFO takes 32, the buffer 4096.
    for i in 0..(FIFO_DEPTH + INPUT_BUFFER + 12) {
        con.host_input(b'a' + (i % 26) as u8, &mut out);
        con.feed(a, &mut u).unwrap();
    }
    assert_eq!(u.rx_len(), FIFO_DEPTH);
    assert_eq!(con.pending_input(a), Some(INPUT_BUFFER));
    assert_eq!(con.dropped_input(a), Some(12));
    assert_eq!(con.report_drops(&mut out), 1);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "(tessel) domU1: 12 input bytes dropped\n"
    );
    // Reported once; the total stays.
    assert_eq!(con.report_drops(&mut out), 0);
    assert_eq!(con.dropped_input(a), Some(12));
    // The guest reads everything: buffered input follows in order.
    let mut got = Vec::new();
    while u.rx_len() > 0 {
        got.push(r32(&mut u, regs::DR) as u8);
        con.feed(a, &mut u).unwrap();
    }
    assert_eq!(got.len(), FIFO_DEPTH + INPUT_BUFFER);
    let expected: Vec<u8> = (0..got.len()).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(got, expected);
    assert_eq!(con.pending_input(a), Some(0));
}

#[test]
fn feeding_raises_rx_interrupt() {
    let mut con = Console::new();
    let a = con.add_domain("domU1");
    let mut out = Vec::new();
    let mut u = uart();
    enable_fifos(&mut u);
    w32(&mut u, regs::IMSC, int::RX | int::RT);
    con.host_input(b'q', &mut out);
    assert!(!u.irq_level());
    assert_eq!(con.feed(a, &mut u), Ok(1));
    assert!(u.irq_level());
    assert_eq!(r32(&mut u, regs::DR), u32::from(b'q'));
    assert!(!u.irq_level());
}

#[test]
fn unknown_console_id_is_an_error() {
    let mut other = Console::new();
    other.add_domain("a");
    let stray = other.add_domain("b");
    let mut con = Console::new();
    con.add_domain("only");
    let mut out = Vec::new();
    assert!(con.guest_output(stray, b"x", &mut out).is_err());
    assert_eq!(con.name(stray), None);
    assert!(con.feed(stray, &mut uart()).is_err());
}

/// The shape of Linux's `pl011_int` for receive: while MIS is non-zero,
/// clear the other interrupts, then read UARTDR until RXFE. The hypervisor
/// refills the FIFO from the console backlog after every read.
#[test]
fn linux_rx_handler_drains_a_console_backlog() {
    let mut con = Console::new();
    let a = con.add_domain("domU1");
    let mut out = Vec::new();
    let mut u = uart();
    enable_fifos(&mut u);
    w32(&mut u, regs::ICR, int::RX | int::RT);
    w32(&mut u, regs::IMSC, int::RX | int::RT);
    let typed: Vec<u8> = (0..100u8).map(|i| b'0' + i % 10).collect();
    for &b in &typed {
        con.host_input(b, &mut out);
    }
    con.feed(a, &mut u).unwrap();
    assert!(u.irq_level());
    let mut got = Vec::new();
    let mut passes = 0;
    loop {
        let mis = r32(&mut u, regs::MIS);
        if mis == 0 {
            break;
        }
        passes += 1;
        assert!(passes < 256, "interrupt never settles");
        w32(&mut u, regs::ICR, mis & !(int::TX | int::RT | int::RX));
        while r32(&mut u, regs::FR) & fr::RXFE == 0 {
            got.push(r32(&mut u, regs::DR) as u8);
            con.feed(a, &mut u).unwrap();
        }
    }
    assert_eq!(got, typed);
    assert!(!u.irq_level());
    assert_eq!(levels(&u), [true, false]);
    assert_eq!(con.pending_input(a), Some(0));
}

/// The shape of Linux's PIO transmit path: write up to half a FIFO, unmask
/// TX if more is queued, and on each TX interrupt write more until the
/// queue is empty, then mask TX. The hypervisor drains after every write.
#[test]
fn linux_tx_path_sends_everything_and_settles() {
    let mut u = uart();
    enable_fifos(&mut u);
    w32(&mut u, regs::ICR, int::ALL);
    let msg: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    let mut queue = msg.iter().copied();
    let mut sent = Vec::new();
    let mut tx_chars = |u: &mut Uart, sent: &mut Vec<u8>| -> bool {
        for _ in 0..FIFO_DEPTH / 2 {
            if r32(u, regs::FR) & fr::TXFF != 0 {
                return true;
            }
            match queue.next() {
                Some(b) => {
                    w32(u, regs::DR, b.into());
                    u.drain_tx(|b| sent.push(b));
                }
                None => return false,
            }
        }
        true
    };
    // pl011_start_tx_pio.
    if tx_chars(&mut u, &mut sent) {
        w32(&mut u, regs::IMSC, int::TX);
    }
    let mut irqs = 0;
    while u.irq_level() {
        irqs += 1;
        assert!(irqs < 100, "TX interrupt never settles");
        assert_ne!(r32(&mut u, regs::MIS) & int::TX, 0);
        if !tx_chars(&mut u, &mut sent) {
            // pl011_stop_tx.
            w32(&mut u, regs::IMSC, 0);
        }
    }
    assert_eq!(sent, msg);
    assert!(irqs >= 100 / (FIFO_DEPTH / 2) - 1);
    assert_eq!(levels(&u).last(), Some(&false));
    assert_eq!(r32(&mut u, regs::FR), fr::TXFE | fr::RXFE);
}
