//! Random guest MMIO accesses, console input and transmit drains against
//! the vPL011 and its console: nothing may panic, and the interrupt line
//! must always equal (RIS & IMSC) != 0.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessel_addr::AccessSize;
use tessel_vpl011::console::Console;
use tessel_vpl011::{IrqLine, Vpl011, regs};

#[derive(Default)]
struct Line {
    level: bool,
}

impl IrqLine for Line {
    fn set_level(&mut self, high: bool) {
        assert_ne!(self.level, high, "set_level called without a change");
        self.level = high;
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Read { offset: u16, size: u8 },
    Write { offset: u16, size: u8, value: u64 },
    HostInput(u8),
    Drain,
    Snapshot,
}

fn size(s: u8) -> AccessSize {
    match s % 4 {
        0 => AccessSize::Byte,
        1 => AccessSize::Half,
        2 => AccessSize::Word,
        _ => AccessSize::Double,
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut con = Console::new();
    let a = con.add_domain("domU1");
    let _b = con.add_domain("domU2");
    let mut out = Vec::new();
    let mut uart = Vpl011::new(Line::default());
    for op in ops {
        match op {
            Op::Read { offset, size: s } => {
                let _ = uart.read(u64::from(offset), size(s));
                let _ = con.feed(a, &mut uart);
            }
            Op::Write {
                offset,
                size: s,
                value,
            } => {
                let _ = uart.write(u64::from(offset), size(s), value);
            }
            Op::HostInput(b) => {
                if con.host_input(b, &mut out) == Some(a) {
                    let _ = con.feed(a, &mut uart);
                }
            }
            Op::Drain => {
                let mut bytes = Vec::new();
                uart.drain_tx(|b| bytes.push(b));
                let _ = con.guest_output(a, &bytes, &mut out);
            }
            Op::Snapshot => {
                let state = uart.state();
                let (restored, _) = Vpl011::from_state(&state, Line::default());
                assert_eq!(restored.state(), state);
                uart = restored;
            }
        }
        let st = uart.state();
        assert_eq!(uart.irq_level(), st.ris & st.imsc != 0);
        assert_eq!(uart.irq_line().level, uart.irq_level());
        let fr = uart.read(regs::FR, AccessSize::Word).unwrap_or(0) as u32;
        assert_eq!(fr & regs::fr::RXFE != 0, uart.rx_len() == 0);
        out.clear();
    }
    con.report_drops(&mut out);
    let _ = con.flush_output(a, &mut out);
});
