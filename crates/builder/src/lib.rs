//! The dom0less domain builder: turns the parsed configuration into one
//! plan per domain, without touching hardware.
//!
//! Input:
//! * the parsed host device tree and `/chosen` domains
//!   ([`tessel_config::BootConfig`]);
//! * what only the running hypervisor knows ([`HostFacts`]): where its
//!   image and the host DTB are, which physical CPUs are free, how many
//!   SPIs the GIC implements, the stage-2 layout the CPU supports;
//! * read access to the boot modules ([`ModuleMemory`]).
//!
//! Output: for each valid domain, in `/chosen` order, a [`DomainPlan`] or a
//! [`BuildError`] naming the node and property at fault. A refused domain
//! gives back everything it took; the other domains are planned anyway.
//!
//! A plan holds the domain-creation flags (tessel-domctl, validated), the
//! RAM layout (tessel-static-mem), the pCPU pinned to each vCPU, the VMID,
//! the vGIC (the host's frames for a direct-mapped domain, Xen's virtual
//! layout otherwise), the vPL011 (the host console UART's address and SPI
//! for a direct-mapped domain, 0x2200_0000 / SPI 32 otherwise), the
//! assigned devices (tessel-passthrough), the kernel/initrd/DTB placement
//! (tessel-loader), the guest device tree (tessel-guestdt, generated), the
//! stage-2 mappings with their attributes and the copies to make. The
//! hypervisor only carries it out: builds the tables, copies the bytes,
//! creates the vGIC and vPL011 and starts the vCPUs.
//!
//! Rules the builder adds on top of the crates it drives:
//! * one physical CPU per vCPU, within `xen,vcpu` hard affinity;
//! * `xen,static-mem` banks of every domain are reserved before any domain
//!   gets heap RAM (as Xen does at early boot);
//! * no two stage-2 mappings of a domain overlap, none hides an emulated
//!   frame (vGIC, vPL011), all fit the guest IPA and host PA sizes;
//! * VMIDs are consecutive from 1 over the domains that get a plan.
//!
//! ```
//! use tessel_addr::HostRange;
//! use tessel_builder::ModuleMemory;
//!
//! /// Boot modules kept in a buffer that stands for host RAM from `base`.
//! struct Buffer { base: u64, bytes: Vec<u8> }
//! impl<'m> ModuleMemory<'m> for &'m Buffer {
//!     fn bytes(&self, r: HostRange) -> Option<&'m [u8]> {
//!         let off = usize::try_from(r.start.0.checked_sub(self.base)?).ok()?;
//!         self.bytes.get(off..off.checked_add(usize::try_from(r.size).ok()?)?)
//!     }
//! }
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod builder;
mod error;
mod pcpu;
mod plan;

use alloc::vec::Vec;

use tessel_addr::HostRange;
use tessel_stage2::Stage2Config;

pub use builder::{Builder, Outcomes, kept_memory, kept_regions, plan_all};
pub use error::{BuildError, BuildErrorKind, Reason};
pub use plan::{
    BootImages, CopyMethod, CopyOp, CopySource, DomainPlan, HwIrq, Mapping, MappingKind, VgicPlan,
};

/// Room reserved for a guest's device tree: Linux wants it within a
/// 2 MiB-aligned 2 MiB window (Documentation/arch/arm64/booting.rst).
pub const DTB_SLOT: u64 = 2 << 20;

/// The virtual timer PPI of every vCPU, backed by the same physical PPI.
pub const VTIMER_PPI: u32 = tessel_vgic::VIRT_TIMER_PPI;

/// Read access to boot modules (kernels, ramdisks, partial device trees)
/// in host memory.
pub trait ModuleMemory<'m> {
    /// The bytes of `range`, or `None` if it is not readable memory.
    fn bytes(&self, range: HostRange) -> Option<&'m [u8]>;
}

/// What the running hypervisor knows about the host beyond the device
/// tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// The hypervisor image, with its stacks, heap and tables.
    pub image: HostRange,
    /// The host device tree blob.
    pub dtb: HostRange,
    /// Which physical CPUs may run a vCPU, by Tessel CPU number (0 = the
    /// boot CPU, then the others in device-tree order).
    pub free_pcpus: Vec<bool>,
    /// SPIs the host GIC implements (the default `nr_spis`).
    pub gic_spis: u32,
    /// The stage-2 layout this CPU supports (IPA size, PA range, VMID width).
    pub stage2: Stage2Config,
}
