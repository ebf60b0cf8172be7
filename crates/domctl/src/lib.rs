//! Domain-creation flags and the rules that govern them.
//!
//! Tessel keeps Xen's ABI for the public part of
//! `xen_domctl_createdomain.flags` (bits 0..=8, same numbers and meanings) and
//! reserves the top four bits of the same 32-bit word for properties that only
//! the hypervisor's own domain builder may set: direct-map, static memory,
//! privileged and hardware domain.
//!
//! Two constructors make the split impossible to get wrong:
//!
//! * [`CreateDomainRequest::from_user`] takes a raw `u32` from outside (a
//!   configuration tool, a future control interface) and refuses any internal
//!   or unknown bit with a typed error ([`DomctlError::InternalBitsSet`],
//!   [`DomctlError::UnknownBitsSet`]).
//! * [`CreateDomainRequest::from_builder`] is the builder's explicit path; it
//!   takes [`DomainFlags`] directly and may include [`DomainFlags::INTERNAL`]
//!   bits.
//!
//! Every consistency rule lives in one place, [`CreateDomainRequest::validate`]:
//! HVM and HAP are required on Arm, S3_INTEGRITY/OOS_OFF/NESTED_VIRT are
//! refused, IOMMU and VPMU need host support, direct-map requires static
//! memory, device passthrough without an IOMMU requires direct-map, and the
//! vCPU count must be within what the vGIC supports.
//!
//! ```
//! use tessel_domctl::{CreateDomainRequest, DomainFlags, GicVersion, HostCapabilities};
//!
//! let host = HostCapabilities { iommu: false, vpmu: false, gic: GicVersion::V3 };
//! // What the dom0less builder creates for a 1:1 guest with a passed-through device.
//! let req = CreateDomainRequest::from_builder(
//!     DomainFlags::DOM0LESS_DEFAULT | DomainFlags::DIRECTMAP | DomainFlags::STATIC_MEMORY,
//!     2,
//! )
//! .with_passthrough(true);
//! assert!(req.validate(&host).is_ok());
//! assert!(req.flags().is_direct_mapped());
//!
//! // Nobody outside the hypervisor can ask for direct-map.
//! let raw = (DomainFlags::DOM0LESS_DEFAULT | DomainFlags::DIRECTMAP).bits();
//! assert!(CreateDomainRequest::from_user(raw, 2).is_err());
//! ```
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

use bitflags::bitflags;
use static_assertions::const_assert;

bitflags! {
    /// The 32-bit domain-creation flag word.
    ///
    /// Bits 0..=8 are the public flags of `xen_domctl_createdomain.flags`
    /// (Xen public/domctl.h, `XEN_DOMCTL_CDF_*`, interface version 0x18), with
    /// Xen's bit numbers. Bits 28..=31 are Tessel-internal (the equivalent of
    /// Xen's separate `CDF_*` argument of `domain_create`, xen/include/xen/domain.h).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    pub struct DomainFlags: u32 {
        /// `XEN_DOMCTL_CDF_hvm`: hardware-virtualised guest (required on Arm).
        const HVM = 1 << 0;
        /// `XEN_DOMCTL_CDF_hap`: hardware-assisted paging, stage-2 translation
        /// (required on Arm).
        const HAP = 1 << 1;
        /// `XEN_DOMCTL_CDF_s3_integrity`: x86 tboot S3 integrity (refused on Arm).
        const S3_INTEGRITY = 1 << 2;
        /// `XEN_DOMCTL_CDF_oos_off`: x86 shadow out-of-sync off (refused on Arm).
        const OOS_OFF = 1 << 3;
        /// `XEN_DOMCTL_CDF_xs_domain`: the domain runs xenstored.
        const XS_DOMAIN = 1 << 4;
        /// `XEN_DOMCTL_CDF_iommu`: devices are assigned through the host IOMMU.
        const IOMMU = 1 << 5;
        /// `XEN_DOMCTL_CDF_nested_virt`: nested virtualisation (refused on Arm).
        const NESTED_VIRT = 1 << 6;
        /// `XEN_DOMCTL_CDF_vpmu`: virtual PMU.
        const VPMU = 1 << 7;
        /// `XEN_DOMCTL_CDF_trap_unmapped_accesses`: accesses to unmapped guest
        /// physical addresses fault instead of reading as zero (dom0less default).
        const TRAP_UNMAPPED_ACCESSES = 1 << 8;

        /// Internal: hardware domain (owns the devices not given to others).
        const HARDWARE = 1 << 28;
        /// Internal: control (privileged) domain.
        const PRIVILEGED = 1 << 29;
        /// Internal: guest RAM comes from `xen,static-mem` banks.
        const STATIC_MEMORY = 1 << 30;
        /// Internal: direct-mapped (1:1) domain, guest-physical == host-physical.
        const DIRECTMAP = 1 << 31;
    }
}

/// Mask of the public flags (Xen `XEN_DOMCTL_CDF_*`, bits 0..=8).
pub const PUBLIC_MASK: u32 = (1 << 9) - 1;
/// Mask of the internal flags (top four bits of the word).
pub const INTERNAL_MASK: u32 = 0xf000_0000;

// The two masks are disjoint, and every defined flag lies in exactly one of
// them (so the word has no "named but unclassified" bit).
const_assert!(PUBLIC_MASK & INTERNAL_MASK == 0);
const_assert!(DomainFlags::all().bits() == PUBLIC_MASK | INTERNAL_MASK);
// Xen's XEN_DOMCTL_CDF_MAX is bit 8: the public part must end there.
const_assert!(PUBLIC_MASK == (DomainFlags::TRAP_UNMAPPED_ACCESSES.bits() << 1) - 1);
// The internal bits sit at the top of the 32-bit field, far from any future
// public growth (Xen has used 9 bits in 20 years).
const_assert!(INTERNAL_MASK.trailing_zeros() >= 16);
const_assert!(PUBLIC_MASK.leading_zeros() >= 16);

impl DomainFlags {
    /// All public flags.
    pub const PUBLIC: Self = Self::from_bits_retain(PUBLIC_MASK);
    /// All internal flags.
    pub const INTERNAL: Self = Self::from_bits_retain(INTERNAL_MASK);
    /// The flags Xen's dom0less builder gives every domU (spec §4.4):
    /// HVM | HAP | TRAP_UNMAPPED_ACCESSES.
    pub const DOM0LESS_DEFAULT: Self = Self::HVM
        .union(Self::HAP)
        .union(Self::TRAP_UNMAPPED_ACCESSES);
    /// Public flags an Arm guest must have.
    pub const ARM_REQUIRED: Self = Self::HVM.union(Self::HAP);
    /// Public flags an Arm guest may have in addition to [`Self::ARM_REQUIRED`].
    pub const ARM_OPTIONAL: Self = Self::XS_DOMAIN
        .union(Self::IOMMU)
        .union(Self::VPMU)
        .union(Self::TRAP_UNMAPPED_ACCESSES);
    /// Public flags that have no meaning on Arm and are refused.
    pub const ARM_UNSUPPORTED: Self = Self::S3_INTEGRITY
        .union(Self::OOS_OFF)
        .union(Self::NESTED_VIRT);

    /// Whether guest-physical equals host-physical for this domain.
    pub const fn is_direct_mapped(self) -> bool {
        self.contains(Self::DIRECTMAP)
    }

    /// Whether the domain's RAM comes from `xen,static-mem` banks.
    pub const fn uses_static_memory(self) -> bool {
        self.contains(Self::STATIC_MEMORY)
    }

    /// Whether devices are assigned to the domain through the host IOMMU.
    pub const fn uses_iommu(self) -> bool {
        self.contains(Self::IOMMU)
    }

    /// Whether this is the control (privileged) domain.
    pub const fn is_privileged(self) -> bool {
        self.contains(Self::PRIVILEGED)
    }

    /// Whether this is the hardware domain.
    pub const fn is_hardware(self) -> bool {
        self.contains(Self::HARDWARE)
    }

    /// Whether unmapped guest-physical accesses should fault.
    pub const fn traps_unmapped_accesses(self) -> bool {
        self.contains(Self::TRAP_UNMAPPED_ACCESSES)
    }

    /// The public part of the word.
    pub const fn public(self) -> Self {
        self.intersection(Self::PUBLIC)
    }

    /// The internal part of the word.
    pub const fn internal(self) -> Self {
        self.intersection(Self::INTERNAL)
    }
}

/// Writes flag names joined by `|` (`HVM|HAP`), with any unnamed bits as hex.
struct Names(DomainFlags);

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, _) in self.0.iter_names() {
            if !first {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            first = false;
        }
        let unnamed = self.0.bits() & !DomainFlags::all().bits();
        if unnamed != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unnamed:#x}")?;
            first = false;
        }
        if first {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}

/// Flag names joined by `|` (`HVM|HAP|TRAP_UNMAPPED_ACCESSES`), unnamed
/// bits in hex, `(none)` for the empty set.
impl fmt::Display for DomainFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Names(*self), f)
    }
}

/// The host's GIC version, which bounds how many vCPUs a guest may have.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum GicVersion {
    /// GICv2: the vGIC's 8-bit CPU target fields allow at most 8 vCPUs
    /// (GIC Architecture Specification IHI 0048B, 4.3.12 GICD_ITARGETSR).
    V2,
    /// GICv3: limited by Tessel's guest redistributor window, 16 MiB at
    /// 128 KiB per vCPU = 128 vCPUs (Xen GUEST_MAX_VCPUS, spec §3.1).
    V3,
}

impl GicVersion {
    /// Largest vCPU count a guest may have with this vGIC.
    pub const fn max_vcpus(self) -> u32 {
        match self {
            Self::V2 => 8,
            Self::V3 => 128,
        }
    }
}

impl fmt::Display for GicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V2 => "GICv2",
            Self::V3 => "GICv3",
        })
    }
}

/// What the host offers, as far as domain creation cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostCapabilities {
    /// A stage-2-capable IOMMU (SMMU) is present and enabled.
    pub iommu: bool,
    /// A virtual PMU can be offered to guests.
    pub vpmu: bool,
    /// The host interrupt controller (guests get the same vGIC version).
    pub gic: GicVersion,
}

/// Why a domain-creation request was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DomctlError {
    /// A request from outside carried bits reserved for the hypervisor.
    InternalBitsSet {
        /// The offending bits.
        bits: u32,
    },
    /// A request from outside carried bits no flag is defined for.
    UnknownBitsSet {
        /// The offending bits.
        bits: u32,
    },
    /// HVM and/or HAP is missing; every Arm guest needs both.
    MissingRequired {
        /// The required flags that are absent.
        missing: DomainFlags,
    },
    /// Flags that have no meaning on Arm were requested.
    UnsupportedOnArm {
        /// The offending flags.
        flags: DomainFlags,
    },
    /// IOMMU was requested but the host has no IOMMU.
    IommuUnavailable,
    /// VPMU was requested but the host cannot offer one.
    VpmuUnavailable,
    /// Direct-map was requested without static memory.
    DirectMapWithoutStaticMemory,
    /// Devices are passed through, there is no IOMMU translation for the
    /// domain, and the domain is not direct-mapped: DMA would hit the wrong
    /// host addresses.
    PassthroughNeedsDirectMap,
    /// Zero vCPUs requested.
    NoVcpus,
    /// More vCPUs requested than the vGIC supports.
    TooManyVcpus {
        /// Requested vCPU count.
        requested: u32,
        /// Largest count the vGIC supports.
        max: u32,
        /// The vGIC version that imposes the limit.
        gic: GicVersion,
    },
}

impl fmt::Display for DomctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InternalBitsSet { bits } => write!(
                f,
                "flags {} ({bits:#x}) are internal to the hypervisor and cannot be requested",
                Names(DomainFlags::from_bits_retain(bits))
            ),
            Self::UnknownBitsSet { bits } => {
                write!(f, "unknown domain-creation flag bits {bits:#x}")
            }
            Self::MissingRequired { missing } => write!(
                f,
                "Arm guests require HVM and HAP (missing: {})",
                Names(missing)
            ),
            Self::UnsupportedOnArm { flags } => {
                write!(f, "flags {} are not supported on Arm", Names(flags))
            }
            Self::IommuUnavailable => f.write_str("IOMMU requested but the host has no IOMMU"),
            Self::VpmuUnavailable => {
                f.write_str("virtual PMU requested but the host cannot provide one")
            }
            Self::DirectMapWithoutStaticMemory => {
                f.write_str("direct-map requires static memory (xen,static-mem)")
            }
            Self::PassthroughNeedsDirectMap => f.write_str(
                "device assignment without an IOMMU requires direct-map \
                 (guest-physical must equal host-physical for DMA)",
            ),
            Self::NoVcpus => f.write_str("a domain needs at least one vCPU"),
            Self::TooManyVcpus {
                requested,
                max,
                gic,
            } => write!(
                f,
                "{requested} vCPUs requested but the {gic} vGIC supports at most {max}"
            ),
        }
    }
}

impl core::error::Error for DomctlError {}

/// A request to create a domain: flags, vCPU count and whether devices are
/// passed through.
///
/// Built either from untrusted input ([`Self::from_user`], which refuses
/// internal bits) or by the hypervisor's domain builder
/// ([`Self::from_builder`]). The fields are private so no other path exists.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CreateDomainRequest {
    flags: DomainFlags,
    max_vcpus: u32,
    passthrough: bool,
}

impl CreateDomainRequest {
    /// Accepts a raw flag word from outside the hypervisor.
    ///
    /// Refuses bits with no defined flag ([`DomctlError::UnknownBitsSet`],
    /// checked first) and internal bits ([`DomctlError::InternalBitsSet`]),
    /// like Xen's `sanitise_domain_config` ("Unknown CDF flags") but with the
    /// internal bits reported distinctly. The remaining rules are checked by
    /// [`Self::validate`].
    pub fn from_user(raw_flags: u32, max_vcpus: u32) -> Result<Self, DomctlError> {
        let unknown = raw_flags & !DomainFlags::all().bits();
        if unknown != 0 {
            return Err(DomctlError::UnknownBitsSet { bits: unknown });
        }
        let internal = raw_flags & INTERNAL_MASK;
        if internal != 0 {
            return Err(DomctlError::InternalBitsSet { bits: internal });
        }
        Ok(Self {
            flags: DomainFlags::from_bits_retain(raw_flags),
            max_vcpus,
            passthrough: false,
        })
    }

    /// The domain builder's path: any defined flags, internal ones included.
    pub const fn from_builder(flags: DomainFlags, max_vcpus: u32) -> Self {
        Self {
            flags,
            max_vcpus,
            passthrough: false,
        }
    }

    /// Records whether devices will be passed through to the domain.
    #[must_use]
    pub const fn with_passthrough(mut self, passthrough: bool) -> Self {
        self.passthrough = passthrough;
        self
    }

    /// The requested flags.
    pub const fn flags(&self) -> DomainFlags {
        self.flags
    }

    /// The requested vCPU count.
    pub const fn max_vcpus(&self) -> u32 {
        self.max_vcpus
    }

    /// Whether devices will be passed through.
    pub const fn has_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Checks every domain-creation rule against the host; the first broken
    /// rule is returned. Order: required flags, Arm-unsupported flags, host
    /// IOMMU, host vPMU, direct-map vs static memory, passthrough vs
    /// IOMMU/direct-map, vCPU count.
    pub fn validate(&self, host: &HostCapabilities) -> Result<(), DomctlError> {
        let f = self.flags;
        let missing = DomainFlags::ARM_REQUIRED.difference(f);
        if !missing.is_empty() {
            return Err(DomctlError::MissingRequired { missing });
        }
        let unsupported = f.intersection(DomainFlags::ARM_UNSUPPORTED);
        if !unsupported.is_empty() {
            return Err(DomctlError::UnsupportedOnArm { flags: unsupported });
        }
        if f.uses_iommu() && !host.iommu {
            return Err(DomctlError::IommuUnavailable);
        }
        if f.contains(DomainFlags::VPMU) && !host.vpmu {
            return Err(DomctlError::VpmuUnavailable);
        }
        if f.is_direct_mapped() && !f.uses_static_memory() {
            return Err(DomctlError::DirectMapWithoutStaticMemory);
        }
        if self.passthrough && !f.uses_iommu() && !f.is_direct_mapped() {
            return Err(DomctlError::PassthroughNeedsDirectMap);
        }
        let max = host.gic.max_vcpus();
        if self.max_vcpus == 0 {
            return Err(DomctlError::NoVcpus);
        }
        if self.max_vcpus > max {
            return Err(DomctlError::TooManyVcpus {
                requested: self.max_vcpus,
                max,
                gic: host.gic,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    const HOST: HostCapabilities = HostCapabilities {
        iommu: false,
        vpmu: false,
        gic: GicVersion::V3,
    };
    const HOST_IOMMU: HostCapabilities = HostCapabilities {
        iommu: true,
        vpmu: true,
        gic: GicVersion::V2,
    };

    fn builder(flags: DomainFlags) -> CreateDomainRequest {
        CreateDomainRequest::from_builder(flags, 1)
    }

    #[test]
    fn flags_display_by_name() {
        let f = DomainFlags::DOM0LESS_DEFAULT | DomainFlags::DIRECTMAP;
        assert_eq!(f.to_string(), "HVM|HAP|TRAP_UNMAPPED_ACCESSES|DIRECTMAP");
        assert_eq!(DomainFlags::empty().to_string(), "(none)");
    }

    #[test]
    fn public_bits_match_xen_abi() {
        let expected = [
            (DomainFlags::HVM, 0),
            (DomainFlags::HAP, 1),
            (DomainFlags::S3_INTEGRITY, 2),
            (DomainFlags::OOS_OFF, 3),
            (DomainFlags::XS_DOMAIN, 4),
            (DomainFlags::IOMMU, 5),
            (DomainFlags::NESTED_VIRT, 6),
            (DomainFlags::VPMU, 7),
            (DomainFlags::TRAP_UNMAPPED_ACCESSES, 8),
        ];
        for (flag, bit) in expected {
            assert_eq!(flag.bits(), 1 << bit, "{flag:?}");
        }
        assert_eq!(DomainFlags::PUBLIC.bits(), 0x1ff);
        assert_eq!(DomainFlags::DOM0LESS_DEFAULT.bits(), 0x103);
    }

    #[test]
    fn internal_bits_are_at_the_top_and_disjoint() {
        for flag in [
            DomainFlags::DIRECTMAP,
            DomainFlags::STATIC_MEMORY,
            DomainFlags::PRIVILEGED,
            DomainFlags::HARDWARE,
        ] {
            assert!(DomainFlags::INTERNAL.contains(flag));
            assert!(!DomainFlags::PUBLIC.intersects(flag));
            assert!(flag.bits() >= 1 << 28);
        }
        let all = DomainFlags::all();
        assert_eq!(all.public() | all.internal(), all);
    }

    #[test]
    fn user_path_accepts_public_flags() {
        let req = CreateDomainRequest::from_user(0x103, 4).unwrap();
        assert_eq!(req.flags(), DomainFlags::DOM0LESS_DEFAULT);
        assert_eq!(req.max_vcpus(), 4);
        assert!(!req.has_passthrough());
        assert!(req.validate(&HOST).is_ok());
    }

    #[test]
    fn user_path_refuses_every_internal_bit() {
        for flag in DomainFlags::INTERNAL.iter() {
            let raw = DomainFlags::DOM0LESS_DEFAULT.bits() | flag.bits();
            assert_eq!(
                CreateDomainRequest::from_user(raw, 1),
                Err(DomctlError::InternalBitsSet { bits: flag.bits() })
            );
        }
        let err = CreateDomainRequest::from_user(0x3 | 0xc000_0000, 1).unwrap_err();
        assert_eq!(err, DomctlError::InternalBitsSet { bits: 0xc000_0000 });
        assert_eq!(
            err.to_string(),
            "flags STATIC_MEMORY|DIRECTMAP (0xc0000000) are internal to the hypervisor \
             and cannot be requested"
        );
    }

    #[test]
    fn user_path_refuses_unknown_bits() {
        let err = CreateDomainRequest::from_user(0x3 | 0x200 | 0x1_0000, 1).unwrap_err();
        assert_eq!(err, DomctlError::UnknownBitsSet { bits: 0x1_0200 });
        assert_eq!(err.to_string(), "unknown domain-creation flag bits 0x10200");
        // Unknown bits are reported even when internal bits are present too.
        assert_eq!(
            CreateDomainRequest::from_user(0x8000_0400, 1),
            Err(DomctlError::UnknownBitsSet { bits: 0x400 })
        );
    }

    #[test]
    fn builder_path_may_set_internal_bits() {
        let req = builder(
            DomainFlags::DOM0LESS_DEFAULT
                | DomainFlags::DIRECTMAP
                | DomainFlags::STATIC_MEMORY
                | DomainFlags::PRIVILEGED
                | DomainFlags::HARDWARE,
        );
        assert!(req.validate(&HOST).is_ok());
        let f = req.flags();
        assert!(f.is_direct_mapped() && f.uses_static_memory());
        assert!(f.is_privileged() && f.is_hardware());
        assert!(f.traps_unmapped_accesses());
        assert!(!f.uses_iommu());
    }

    #[test]
    fn hvm_and_hap_are_required() {
        let err = builder(DomainFlags::HVM).validate(&HOST).unwrap_err();
        assert_eq!(
            err,
            DomctlError::MissingRequired {
                missing: DomainFlags::HAP
            }
        );
        assert_eq!(
            err.to_string(),
            "Arm guests require HVM and HAP (missing: HAP)"
        );
        let err = builder(DomainFlags::empty()).validate(&HOST).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Arm guests require HVM and HAP (missing: HVM|HAP)"
        );
    }

    #[test]
    fn x86_only_flags_are_refused() {
        for flag in [
            DomainFlags::S3_INTEGRITY,
            DomainFlags::OOS_OFF,
            DomainFlags::NESTED_VIRT,
        ] {
            let req = CreateDomainRequest::from_user((DomainFlags::ARM_REQUIRED | flag).bits(), 1)
                .unwrap();
            assert_eq!(
                req.validate(&HOST_IOMMU),
                Err(DomctlError::UnsupportedOnArm { flags: flag })
            );
        }
        let err = builder(DomainFlags::ARM_REQUIRED | DomainFlags::ARM_UNSUPPORTED)
            .validate(&HOST)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "flags S3_INTEGRITY|OOS_OFF|NESTED_VIRT are not supported on Arm"
        );
    }

    #[test]
    fn optional_flags_are_accepted_when_the_host_supports_them() {
        let req = builder(DomainFlags::ARM_REQUIRED | DomainFlags::ARM_OPTIONAL);
        assert!(req.validate(&HOST_IOMMU).is_ok());
    }

    #[test]
    fn iommu_needs_a_host_iommu() {
        let err = builder(DomainFlags::ARM_REQUIRED | DomainFlags::IOMMU)
            .validate(&HOST)
            .unwrap_err();
        assert_eq!(err, DomctlError::IommuUnavailable);
        assert_eq!(err.to_string(), "IOMMU requested but the host has no IOMMU");
    }

    #[test]
    fn vpmu_needs_host_support() {
        let err = builder(DomainFlags::ARM_REQUIRED | DomainFlags::VPMU)
            .validate(&HOST)
            .unwrap_err();
        assert_eq!(err, DomctlError::VpmuUnavailable);
        assert_eq!(
            err.to_string(),
            "virtual PMU requested but the host cannot provide one"
        );
    }

    #[test]
    fn direct_map_requires_static_memory() {
        let err = builder(DomainFlags::DOM0LESS_DEFAULT | DomainFlags::DIRECTMAP)
            .validate(&HOST)
            .unwrap_err();
        assert_eq!(err, DomctlError::DirectMapWithoutStaticMemory);
        assert_eq!(
            err.to_string(),
            "direct-map requires static memory (xen,static-mem)"
        );
        // Static memory alone (packed into the guest RAM windows) is fine.
        assert!(
            builder(DomainFlags::DOM0LESS_DEFAULT | DomainFlags::STATIC_MEMORY)
                .validate(&HOST)
                .is_ok()
        );
    }

    #[test]
    fn passthrough_without_iommu_requires_direct_map() {
        let plain = builder(DomainFlags::DOM0LESS_DEFAULT).with_passthrough(true);
        let err = plain.validate(&HOST).unwrap_err();
        assert_eq!(err, DomctlError::PassthroughNeedsDirectMap);
        assert!(
            err.to_string()
                .starts_with("device assignment without an IOMMU requires direct-map")
        );
        // A host IOMMU the domain does not use does not help.
        assert_eq!(
            plain.validate(&HOST_IOMMU),
            Err(DomctlError::PassthroughNeedsDirectMap)
        );
        // Through the IOMMU: fine.
        let via_iommu =
            builder(DomainFlags::DOM0LESS_DEFAULT | DomainFlags::IOMMU).with_passthrough(true);
        assert!(via_iommu.validate(&HOST_IOMMU).is_ok());
        // 1:1 without an IOMMU: fine.
        let direct = builder(
            DomainFlags::DOM0LESS_DEFAULT | DomainFlags::DIRECTMAP | DomainFlags::STATIC_MEMORY,
        )
        .with_passthrough(true);
        assert!(direct.validate(&HOST).is_ok());
        // Without passthrough, a plain domain needs neither.
        assert!(
            builder(DomainFlags::DOM0LESS_DEFAULT)
                .validate(&HOST)
                .is_ok()
        );
    }

    #[test]
    fn vcpu_count_is_bounded_by_the_vgic() {
        let mk = |n| CreateDomainRequest::from_builder(DomainFlags::DOM0LESS_DEFAULT, n);
        let err = mk(0).validate(&HOST).unwrap_err();
        assert_eq!(err, DomctlError::NoVcpus);
        assert_eq!(err.to_string(), "a domain needs at least one vCPU");

        assert!(mk(8).validate(&HOST_IOMMU).is_ok());
        let err = mk(9).validate(&HOST_IOMMU).unwrap_err();
        assert_eq!(
            err,
            DomctlError::TooManyVcpus {
                requested: 9,
                max: 8,
                gic: GicVersion::V2
            }
        );
        assert_eq!(
            err.to_string(),
            "9 vCPUs requested but the GICv2 vGIC supports at most 8"
        );

        assert!(mk(128).validate(&HOST).is_ok());
        assert_eq!(
            mk(129).validate(&HOST).unwrap_err().to_string(),
            "129 vCPUs requested but the GICv3 vGIC supports at most 128"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// For any raw word, the user path accepts exactly the words made of
        /// public bits, and its error names exactly the offending bits.
        #[test]
        fn user_path_accepts_exactly_public_words(raw: u32, vcpus in 0u32..200) {
            match CreateDomainRequest::from_user(raw, vcpus) {
                Ok(req) => {
                    proptest::prop_assert_eq!(raw & !PUBLIC_MASK, 0);
                    proptest::prop_assert_eq!(req.flags().bits(), raw);
                    proptest::prop_assert!(req.flags().internal().is_empty());
                }
                Err(DomctlError::UnknownBitsSet { bits }) => {
                    proptest::prop_assert_eq!(bits, raw & !(PUBLIC_MASK | INTERNAL_MASK));
                    proptest::prop_assert_ne!(bits, 0);
                }
                Err(DomctlError::InternalBitsSet { bits }) => {
                    proptest::prop_assert_eq!(raw & !(PUBLIC_MASK | INTERNAL_MASK), 0);
                    proptest::prop_assert_eq!(bits, raw & INTERNAL_MASK);
                    proptest::prop_assert_ne!(bits, 0);
                }
                Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
            }
        }

        /// validate() accepts exactly the combinations the rules allow.
        #[test]
        fn validate_matches_the_rules(
            raw: u32,
            vcpus in 0u32..200,
            passthrough: bool,
            iommu: bool,
            vpmu: bool,
            v3: bool,
            arm_shaped: bool,
        ) {
            let mut flags = DomainFlags::from_bits_truncate(raw);
            if arm_shaped {
                // Half the cases get past the first two rules, so the later
                // ones are exercised too.
                flags = (flags | DomainFlags::ARM_REQUIRED).difference(DomainFlags::ARM_UNSUPPORTED);
            }
            let gic = if v3 { GicVersion::V3 } else { GicVersion::V2 };
            let host = HostCapabilities { iommu, vpmu, gic };
            let req = CreateDomainRequest::from_builder(flags, vcpus).with_passthrough(passthrough);
            let expected_ok = flags.contains(DomainFlags::ARM_REQUIRED)
                && !flags.intersects(DomainFlags::ARM_UNSUPPORTED)
                && (iommu || !flags.uses_iommu())
                && (vpmu || !flags.contains(DomainFlags::VPMU))
                && (flags.uses_static_memory() || !flags.is_direct_mapped())
                && (!passthrough || flags.uses_iommu() || flags.is_direct_mapped())
                && (1..=gic.max_vcpus()).contains(&vcpus);
            proptest::prop_assert_eq!(req.validate(&host).is_ok(), expected_ok);
        }
    }

    #[test]
    fn every_raw_word_is_either_accepted_or_refused_with_the_right_reason() {
        // A sweep over single bits and some combinations: from_user never
        // accepts a word with a bit outside PUBLIC_MASK.
        for bit in 0..32 {
            let raw = 0x3 | (1u32 << bit);
            match CreateDomainRequest::from_user(raw, 1) {
                Ok(req) => assert_eq!(req.flags().bits() & !PUBLIC_MASK, 0),
                Err(DomctlError::InternalBitsSet { bits }) => {
                    assert_eq!(bits, 1 << bit);
                    assert_ne!(INTERNAL_MASK & bits, 0);
                }
                Err(DomctlError::UnknownBitsSet { bits }) => {
                    assert_eq!(bits, 1 << bit);
                    assert_eq!(bits & (PUBLIC_MASK | INTERNAL_MASK), 0);
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    }
}
