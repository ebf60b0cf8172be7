//! Guest RAM for dom0less domains: `xen,static-mem` banks, the host memory
//! map they are carved from, and the guest-physical layout of every domain's
//! RAM.
//!
//! # API summary
//!
//! * [`parse_banks`]`(prop, address_cells, size_cells) -> Result<Vec<HostRange>, BankError>`
//!   decodes a `xen,static-mem` property (cells of the domain's parent,
//!   `/chosen`).
//! * [`HostMemory::new`]`(ram, reserved) -> Result<HostMemory, RamError>` builds
//!   the host map from `/memory` and the [`Reserved`] regions (hypervisor
//!   image, boot modules, device MMIO, DT reserved memory), each tagged with a
//!   [`ReservedKind`] so errors can say what a bank hits.
//! * [`HostMemory::reserve_static`]`(domain, banks) -> Result<(), BankError>`
//!   validates (aligned, non-empty, inside RAM, no overlap with anything) and
//!   reserves a domain's banks. Call it for every static domain first, as Xen
//!   does at early boot, so heap allocations can never take a static bank.
//! * [`HostMemory::allocate_static`]`(domain, memory_kib, direct_map) -> Result<RamLayout, LayoutError>`
//!   claims the reserved banks (once) and lays them out: 1:1 for a
//!   direct-mapped domain, packed into Xen's guest RAM windows
//!   ([`GUEST_RAM0`], [`GUEST_RAM1`]) otherwise.
//! * [`HostMemory::allocate_heap`]`(domain, memory_kib) -> Result<RamLayout, LayoutError>`
//!   gives a domain without static memory RAM from what is left, in large
//!   aligned chunks.
//! * [`HostMemory::release`]`(domain) -> u64` gives everything back (for a
//!   destroyed domain or a failed build).
//! * [`RamLayout`]: [`pieces`](RamLayout::pieces) (guest range -> host
//!   address, for stage-2), [`guest_banks`](RamLayout::guest_banks) (for the
//!   guest DT `memory` node) and [`gpa_to_hpa`](RamLayout::gpa_to_hpa).
//! * [`static_layout`] is the pure layout function behind `allocate_static`.
//!
//! Error messages name the bank and what it hits but not the domain; the
//! domain builder prefixes e.g. `domU1: xen,static-mem: `.
//!
//! ```
//! use tessel_addr::{GuestPhysAddr, HostPhysAddr, HostRange};
//! use tessel_static_mem::{HostMemory, Reserved, ReservedKind};
//!
//! let ram = [HostRange::new(HostPhysAddr(0x4000_0000), 0x8000_0000)];
//! let kernel = Reserved::new(
//!     HostRange::new(HostPhysAddr(0x4400_0000), 0x100_0000),
//!     ReservedKind::Module { kind: "multiboot,kernel".into(), domain: "domU1".into() },
//! );
//! let mut mem = HostMemory::new(&ram, vec![kernel]).unwrap();
//!
//! // A bank on top of the kernel module is refused, naming both.
//! let bad = [HostRange::new(HostPhysAddr(0x4000_0000), 0x1000_0000)];
//! let err = mem.reserve_static("domU1", &bad).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "bank 0x40000000+0x10000000 overlaps the multiboot,kernel module of domU1 \
//!      at 0x44000000+0x1000000"
//! );
//!
//! // A direct-mapped domain on a free bank.
//! let bank = [HostRange::new(HostPhysAddr(0x5000_0000), 0x1000_0000)];
//! mem.reserve_static("domU1", &bank).unwrap();
//! let l1 = mem.allocate_static("domU1", 0x1000_0000 / 1024, true).unwrap();
//! assert_eq!(l1.gpa_to_hpa(GuestPhysAddr(0x5000_0000)), Some(HostPhysAddr(0x5000_0000)));
//!
//! // A heap domain gets the rest, at Xen's guest RAM base.
//! let l2 = mem.allocate_heap("domU2", 256 * 1024).unwrap();
//! assert_eq!(l2.guest_banks()[0].start, GuestPhysAddr(0x4000_0000));
//! assert!(l2.host_ranges().all(|r| !r.overlaps(&bank[0])));
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod banks;
mod host;
mod layout;

pub use banks::{BankError, MAX_BANKS, Reserved, ReservedKind, parse_banks};
pub use host::{HostMemory, RamError};
pub use layout::{
    GUEST_RAM_CAPACITY, GUEST_RAM_WINDOWS, GUEST_RAM0, GUEST_RAM1, LayoutError, Piece, RamLayout,
    static_layout,
};

#[cfg(test)]
mod tests;
