//! Sharing the one physical console between domains.
//!
//! Output: each domain's UART output is collected per domain and printed
//! one whole line at a time, prefixed with the domain's name
//! (`(domU1) hello`), so lines from different domains never interleave. A
//! line longer than [`LINE_MAX`] is printed in pieces; no byte is lost.
//!
//! Input: bytes typed on the physical console go to one domain at a time.
//! Pressing Ctrl-a three times in a row moves input to the next domain (in
//! registration order, wrapping around) and announces the switch, as Xen
//! does. Ctrl-a presses fewer than three in a row are delivered to the
//! domain when the next other byte arrives.
//!
//! Back-pressure: input a domain has not yet read waits in a per-domain
//! buffer of [`INPUT_BUFFER`] bytes and is fed into its receive FIFO as the
//! guest reads ([`Console::feed`]). Bytes arriving with the buffer full are
//! dropped and counted; [`Console::report_drops`] prints the count.
//!
//! ```
//! use tessel_vpl011::console::Console;
//!
//! let mut out = Vec::new();
//! let mut con = Console::new();
//! let d1 = con.add_domain("domU1");
//! con.guest_output(d1, b"hello\nwor", &mut out).unwrap();
//! assert_eq!(out, b"(domU1) hello\n");
//! ```

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{IrqLine, Vpl011};

/// Longest output line kept per domain before it is printed anyway.
pub const LINE_MAX: usize = 256;
/// Input bytes buffered per domain while its receive FIFO is full.
pub const INPUT_BUFFER: usize = 4096;
/// The input-switch key, Ctrl-a.
pub const SWITCH_KEY: u8 = 0x01;
/// Consecutive presses of [`SWITCH_KEY`] that switch input.
pub const SWITCH_PRESSES: u8 = 3;

/// The hypervisor's own console output (the physical UART driver).
pub trait HostConsole {
    /// Writes `bytes` as they are.
    fn write_bytes(&mut self, bytes: &[u8]);
}

/// Collecting output in memory (tests, or a log buffer).
impl HostConsole for Vec<u8> {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Handle of a domain registered with [`Console::add_domain`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct ConsoleId(usize);

/// A handle that does not belong to this console.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnknownConsole(pub ConsoleId);

impl fmt::Display for UnknownConsole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "console: no domain registered as #{}", self.0.0)
    }
}

impl core::error::Error for UnknownConsole {}

#[derive(Debug)]
struct DomainConsole {
    name: String,
    line: Vec<u8>,
    input: VecDeque<u8>,
    dropped_total: u64,
    dropped_unreported: u64,
}

/// The console multiplexer. See the module documentation.
#[derive(Debug, Default)]
pub struct Console {
    domains: Vec<DomainConsole>,
    focus: usize,
    switch_presses: u8,
}

/// Writes `(name) ` to `out`.
fn prefix(out: &mut impl HostConsole, name: &str) {
    out.write_bytes(b"(");
    out.write_bytes(name.as_bytes());
    out.write_bytes(b") ");
}

impl Console {
    /// An empty console with no domains.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a domain by name. The first domain registered receives
    /// input first.
    pub fn add_domain(&mut self, name: &str) -> ConsoleId {
        self.domains.push(DomainConsole {
            name: String::from(name),
            line: Vec::with_capacity(LINE_MAX),
            input: VecDeque::new(),
            dropped_total: 0,
            dropped_unreported: 0,
        });
        ConsoleId(self.domains.len() - 1)
    }

    /// The name a domain was registered with.
    pub fn name(&self, id: ConsoleId) -> Option<&str> {
        self.domains.get(id.0).map(|d| d.name.as_str())
    }

    /// The domain currently receiving input, if any domain is registered.
    pub fn focus(&self) -> Option<ConsoleId> {
        (self.focus < self.domains.len()).then_some(ConsoleId(self.focus))
    }

    fn domain_mut(&mut self, id: ConsoleId) -> Result<&mut DomainConsole, UnknownConsole> {
        self.domains.get_mut(id.0).ok_or(UnknownConsole(id))
    }

    /// Takes output bytes of domain `id` (drained from its vPL011) and
    /// prints every completed line, prefixed with the domain's name. A line
    /// reaching [`LINE_MAX`] bytes without a newline is printed at once,
    /// ended with a newline, and continues on the next prefixed line.
    pub fn guest_output(
        &mut self,
        id: ConsoleId,
        bytes: &[u8],
        out: &mut impl HostConsole,
    ) -> Result<(), UnknownConsole> {
        let dom = self.domain_mut(id)?;
        for &b in bytes {
            dom.line.push(b);
            if b == b'\n' {
                prefix(out, &dom.name);
                out.write_bytes(&dom.line);
                dom.line.clear();
            } else if dom.line.len() >= LINE_MAX {
                prefix(out, &dom.name);
                out.write_bytes(&dom.line);
                out.write_bytes(b"\n");
                dom.line.clear();
            }
        }
        Ok(())
    }

    /// Prints a partial line of domain `id`, if any (for example when the
    /// domain stops), ended with a newline.
    pub fn flush_output(
        &mut self,
        id: ConsoleId,
        out: &mut impl HostConsole,
    ) -> Result<(), UnknownConsole> {
        let dom = self.domain_mut(id)?;
        if !dom.line.is_empty() {
            prefix(out, &dom.name);
            out.write_bytes(&dom.line);
            out.write_bytes(b"\n");
            dom.line.clear();
        }
        Ok(())
    }

    /// Prints which domain receives input, e.g.
    /// `(tessel) input to domU2 (type 'CTRL-a' three times to switch input)`.
    pub fn announce_focus(&self, out: &mut impl HostConsole) {
        if let Some(dom) = self.domains.get(self.focus) {
            out.write_bytes(b"(tessel) input to ");
            out.write_bytes(dom.name.as_bytes());
            out.write_bytes(b" (type 'CTRL-a' three times to switch input)\n");
        }
    }

    /// Takes one byte typed on the physical console. Returns the domain
    /// whose input buffer received bytes (the caller then calls
    /// [`Console::feed`] for it), or `None` if the byte was a Ctrl-a being
    /// counted, switched input, or there is no domain.
    pub fn host_input(&mut self, byte: u8, out: &mut impl HostConsole) -> Option<ConsoleId> {
        if self.domains.is_empty() {
            return None;
        }
        if byte == SWITCH_KEY {
            self.switch_presses += 1;
            if self.switch_presses >= SWITCH_PRESSES {
                self.switch_presses = 0;
                self.focus = (self.focus + 1) % self.domains.len();
                self.announce_focus(out);
            }
            return None;
        }
        let held = core::mem::take(&mut self.switch_presses);
        let id = ConsoleId(self.focus);
        let dom = self.domains.get_mut(self.focus)?;
        for b in core::iter::repeat_n(SWITCH_KEY, usize::from(held)).chain([byte]) {
            if dom.input.len() < INPUT_BUFFER {
                dom.input.push_back(b);
            } else {
                dom.dropped_total = dom.dropped_total.saturating_add(1);
                dom.dropped_unreported = dom.dropped_unreported.saturating_add(1);
            }
        }
        Some(id)
    }

    /// Moves buffered input of domain `id` into its UART's receive FIFO as
    /// far as there is room. Call after [`Console::host_input`] and after
    /// every guest read of UARTDR. Returns the number of bytes moved.
    pub fn feed<I: IrqLine>(
        &mut self,
        id: ConsoleId,
        uart: &mut Vpl011<I>,
    ) -> Result<usize, UnknownConsole> {
        let dom = self.domain_mut(id)?;
        let (front, back) = dom.input.as_slices();
        let mut moved = uart.receive(front);
        if moved == front.len() {
            moved += uart.receive(back);
        }
        dom.input.drain(..moved);
        Ok(moved)
    }

    /// Input bytes of domain `id` waiting for room in its receive FIFO.
    pub fn pending_input(&self, id: ConsoleId) -> Option<usize> {
        self.domains.get(id.0).map(|d| d.input.len())
    }

    /// Input bytes of domain `id` dropped since boot because its buffer was
    /// full.
    pub fn dropped_input(&self, id: ConsoleId) -> Option<u64> {
        self.domains.get(id.0).map(|d| d.dropped_total)
    }

    /// Prints, for each domain that dropped input since the last report,
    /// `(tessel) domU1: 12 input bytes dropped`, and returns how many lines
    /// were printed.
    pub fn report_drops(&mut self, out: &mut impl HostConsole) -> usize {
        let mut lines = 0;
        for dom in &mut self.domains {
            let n = core::mem::take(&mut dom.dropped_unreported);
            if n > 0 {
                let mut msg = String::new();
                // Writing to a String cannot fail.
                let _ = fmt::write(
                    &mut msg,
                    format_args!(
                        "(tessel) {}: {n} input byte{} dropped\n",
                        dom.name,
                        if n == 1 { "" } else { "s" }
                    ),
                );
                out.write_bytes(msg.as_bytes());
                lines += 1;
            }
        }
        lines
    }
}
