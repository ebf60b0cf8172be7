//! Per-domain vGIC configuration: version, vCPU affinities, SPI count and
//! the guest-physical layout of the register frames.

use alloc::vec::Vec;

use tessel_addr::{Address, GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};

use crate::{ConfigError, GicVersion, MAX_SPIS, MAX_VCPUS, MAX_VCPUS_V2};

/// Size of the GICv2 distributor frame exposed to a guest (IHI 0048B 4.1.2).
pub const V2_GICD_SIZE: u64 = 0x1000;
/// Size of the GICv2 CPU-interface window given to a guest: 8 KiB so that
/// `GICC_DIR` at +0x1000 is reachable (spec §3.3).
pub const V2_GICC_SIZE: u64 = 0x2000;
/// Size of the GICv3 distributor frame (IHI 0069 12.8).
pub const V3_GICD_SIZE: u64 = 0x1_0000;
/// Size of one GICv3 redistributor: `RD_base` + `SGI_base`, 64 KiB each
/// (IHI 0069 12.10).
pub const V3_GICR_STRIDE: u64 = 0x2_0000;
/// Xen's virtual-platform GICD base (both versions).
pub const XEN_GICD_BASE: u64 = 0x0300_1000;
/// Xen's virtual-platform GICv2 GICC base.
pub const XEN_GICC_BASE: u64 = 0x0300_2000;
/// Xen's virtual-platform GICv3 redistributor region base.
pub const XEN_GICR_BASE: u64 = 0x0302_0000;
/// Xen's virtual-platform GICv3 redistributor region size (128 vCPUs).
pub const XEN_GICR_SIZE: u64 = 0x100_0000;

/// One redistributor region as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RedistRegion {
    /// Guest-physical base and size of the region.
    pub range: GuestRange,
    /// vCPU served by the region's first frame.
    pub first_vcpu: usize,
    /// Number of the domain's vCPUs served by this region (the last region
    /// may be larger than needed; frames past this count read as zero).
    pub nr_frames: usize,
}

/// Where the guest finds its GIC frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VgicLayout {
    /// GICv2: a 4 KiB distributor and an 8 KiB CPU-interface window.
    V2 {
        /// Distributor base.
        gicd: GuestPhysAddr,
        /// CPU-interface window base (backed by the host GICV frame).
        gicc: GuestPhysAddr,
    },
    /// GICv3: a 64 KiB distributor and one or more redistributor regions.
    V3 {
        /// Distributor base.
        gicd: GuestPhysAddr,
        /// Redistributor regions in order; vCPU frames are numbered across
        /// them.
        redists: Vec<RedistRegion>,
    },
}

/// The host GIC, as the platform description gives it, for direct-mapped
/// domains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostGic {
    /// A GICv2 host.
    V2 {
        /// Host distributor base.
        gicd: HostPhysAddr,
        /// Host CPU-interface base.
        gicc: HostPhysAddr,
    },
    /// A GICv3 host.
    V3 {
        /// Host distributor base.
        gicd: HostPhysAddr,
        /// Every host redistributor region, in device-tree order (need not
        /// be contiguous). Frames are taken at a 128 KiB stride.
        redists: Vec<HostRange>,
    },
}

impl VgicLayout {
    /// The layout of a direct-mapped domain: the guest sees the host's own
    /// frames. For GICv3 the host regions are taken in order until they
    /// cover `nr_vcpus` frames (spec §3.5); later regions are dropped.
    pub fn native(host: &HostGic, nr_vcpus: usize) -> Result<Self, ConfigError> {
        match host {
            HostGic::V2 { gicd, gicc } => Ok(Self::V2 {
                gicd: GuestPhysAddr::identity(*gicd),
                gicc: GuestPhysAddr::identity(*gicc),
            }),
            HostGic::V3 { gicd, redists } => {
                let mut out = Vec::new();
                let mut covered = 0usize;
                for r in redists {
                    if covered >= nr_vcpus {
                        break;
                    }
                    let frames = usize::try_from(r.size / V3_GICR_STRIDE).unwrap_or(usize::MAX);
                    if frames == 0 || !r.start.is_aligned(0x1_0000) {
                        return Err(ConfigError::BadRegion {
                            region: "GICR",
                            base: r.start.as_u64(),
                        });
                    }
                    let used = frames.min(nr_vcpus - covered);
                    out.push(RedistRegion {
                        range: GuestRange::new(GuestPhysAddr::identity(r.start), r.size),
                        first_vcpu: covered,
                        nr_frames: used,
                    });
                    covered += used;
                }
                if covered < nr_vcpus {
                    return Err(ConfigError::RedistributorsTooFew {
                        frames: covered,
                        nr_vcpus,
                    });
                }
                Ok(Self::V3 {
                    gicd: GuestPhysAddr::identity(*gicd),
                    redists: out,
                })
            }
        }
    }

    /// Xen's virtual-platform layout (`public/arch-arm.h`): GICD at
    /// 0x0300_1000; GICv2 GICC at 0x0300_2000; GICv3 one 16 MiB
    /// redistributor region at 0x0302_0000.
    pub fn xen_virtual(version: GicVersion, nr_vcpus: usize) -> Self {
        match version {
            GicVersion::V2 => Self::V2 {
                gicd: GuestPhysAddr(XEN_GICD_BASE),
                gicc: GuestPhysAddr(XEN_GICC_BASE),
            },
            GicVersion::V3 => Self::V3 {
                gicd: GuestPhysAddr(XEN_GICD_BASE),
                redists: alloc::vec![RedistRegion {
                    range: GuestRange::new(GuestPhysAddr(XEN_GICR_BASE), XEN_GICR_SIZE),
                    first_vcpu: 0,
                    nr_frames: nr_vcpus.min((XEN_GICR_SIZE / V3_GICR_STRIDE) as usize),
                }],
            },
        }
    }

    /// The version this layout is for.
    pub fn version(&self) -> GicVersion {
        match self {
            Self::V2 { .. } => GicVersion::V2,
            Self::V3 { .. } => GicVersion::V3,
        }
    }

    /// The GICv2 CPU-interface window the guest sees (8 KiB), if any.
    pub fn cpu_interface(&self) -> Option<GuestRange> {
        match self {
            Self::V2 { gicc, .. } => Some(GuestRange::new(*gicc, V2_GICC_SIZE)),
            Self::V3 { .. } => None,
        }
    }

    /// The distributor frame.
    pub fn distributor(&self) -> GuestRange {
        match self {
            Self::V2 { gicd, .. } => GuestRange::new(*gicd, V2_GICD_SIZE),
            Self::V3 { gicd, .. } => GuestRange::new(*gicd, V3_GICD_SIZE),
        }
    }
}

/// What a [`MmioRegion`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// The distributor; trap and forward to [`crate::VirtualGic::mmio_read`]
    /// / [`crate::VirtualGic::mmio_write`].
    Distributor,
    /// Redistributor region `index`; trap and forward likewise.
    Redistributor {
        /// Index into the layout's region list.
        index: usize,
    },
    /// The GICv2 CPU interface: map onto the host GICV frame in stage 2,
    /// do not trap.
    CpuInterface,
}

/// A guest-physical region of the vGIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioRegion {
    /// What it is.
    pub kind: RegionKind,
    /// Where it is.
    pub range: GuestRange,
}

/// Everything needed to build a domain's vGIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgicConfig {
    /// Guest GIC version (must match `layout`).
    pub version: GicVersion,
    /// Frame addresses.
    pub layout: VgicLayout,
    /// Number of vCPUs.
    pub nr_vcpus: usize,
    /// Number of SPIs; rounded up to a multiple of 32, at most [`MAX_SPIS`].
    pub nr_spis: usize,
    /// Virtual `MPIDR_EL1` of each vCPU (affinity fields are used).
    pub vcpu_mpidr: Vec<u64>,
}

/// The virtual MPIDR Xen gives vCPU `i`: Aff0 = i & 0xF, Aff1 = i >> 4,
/// with the RES1 bit 31 set.
pub fn xen_vcpu_mpidr(i: usize) -> u64 {
    let i = i as u64;
    (1 << 31) | (((i >> 4) & 0xFF) << 8) | (i & 0xF)
}

/// Affinity bits of an MPIDR (Aff3 `[39:32]`, Aff2..Aff0 `[23:0]`).
pub const MPIDR_AFF_MASK: u64 = 0xFF_00FF_FFFF;

impl VgicConfig {
    /// A configuration with Xen's vCPU affinities.
    pub fn new(version: GicVersion, layout: VgicLayout, nr_vcpus: usize, nr_spis: usize) -> Self {
        Self {
            version,
            layout,
            nr_vcpus,
            nr_spis,
            vcpu_mpidr: (0..nr_vcpus).map(xen_vcpu_mpidr).collect(),
        }
    }

    /// Checks the configuration and returns it with `nr_spis` rounded up.
    pub fn validated(mut self) -> Result<Self, ConfigError> {
        let max = match self.version {
            GicVersion::V2 => MAX_VCPUS_V2,
            GicVersion::V3 => MAX_VCPUS,
        };
        if self.nr_vcpus == 0 || self.nr_vcpus > max {
            return Err(ConfigError::VcpuCount {
                nr_vcpus: self.nr_vcpus,
                max,
            });
        }
        let rounded = self.nr_spis.div_ceil(32).saturating_mul(32);
        if rounded > MAX_SPIS {
            return Err(ConfigError::SpiCount {
                nr_spis: self.nr_spis,
            });
        }
        self.nr_spis = rounded;
        if self.vcpu_mpidr.len() != self.nr_vcpus {
            return Err(ConfigError::MpidrCount {
                given: self.vcpu_mpidr.len(),
                nr_vcpus: self.nr_vcpus,
            });
        }
        for (i, m) in self.vcpu_mpidr.iter().enumerate() {
            if self.vcpu_mpidr[..i]
                .iter()
                .any(|o| o & MPIDR_AFF_MASK == m & MPIDR_AFF_MASK)
            {
                return Err(ConfigError::DuplicateMpidr { vcpu: i });
            }
        }
        if self.layout.version() != self.version {
            return Err(ConfigError::LayoutVersion);
        }
        let d = self.layout.distributor();
        if !d.start.is_aligned(0x1000) || d.end().is_none() {
            return Err(ConfigError::BadRegion {
                region: "GICD",
                base: d.start.as_u64(),
            });
        }
        match &self.layout {
            VgicLayout::V2 { gicc, .. } => {
                if !gicc.is_aligned(0x1000) || gicc.checked_add(V2_GICC_SIZE).is_none() {
                    return Err(ConfigError::BadRegion {
                        region: "GICC",
                        base: gicc.as_u64(),
                    });
                }
            }
            VgicLayout::V3 { redists, .. } => {
                let mut next = 0usize;
                for r in redists {
                    let frames = r.range.size / V3_GICR_STRIDE;
                    if !r.range.start.is_aligned(0x1_0000)
                        || r.range.end().is_none()
                        || r.first_vcpu != next
                        || r.nr_frames == 0
                        || (r.nr_frames as u64) > frames
                    {
                        return Err(ConfigError::BadRegion {
                            region: "GICR",
                            base: r.range.start.as_u64(),
                        });
                    }
                    next += r.nr_frames;
                }
                if next < self.nr_vcpus {
                    return Err(ConfigError::RedistributorsTooFew {
                        frames: next,
                        nr_vcpus: self.nr_vcpus,
                    });
                }
            }
        }
        // No two frames overlap; `regions` lists them in the order checked
        // above: the distributor, then the CPU interface or the
        // redistributors.
        let regions = self.regions();
        for (i, a) in regions.iter().enumerate() {
            if let Some(b) = regions[..i].iter().find(|b| b.range.overlaps(&a.range)) {
                return Err(ConfigError::Overlap {
                    a: b.range.start.as_u64(),
                    b: a.range.start.as_u64(),
                });
            }
        }
        Ok(self)
    }

    /// The regions to install for this configuration.
    pub fn regions(&self) -> Vec<MmioRegion> {
        let mut v = alloc::vec![MmioRegion {
            kind: RegionKind::Distributor,
            range: self.layout.distributor(),
        }];
        match &self.layout {
            VgicLayout::V2 { gicc, .. } => v.push(MmioRegion {
                kind: RegionKind::CpuInterface,
                range: GuestRange::new(*gicc, V2_GICC_SIZE),
            }),
            VgicLayout::V3 { redists, .. } => {
                for (index, r) in redists.iter().enumerate() {
                    v.push(MmioRegion {
                        kind: RegionKind::Redistributor { index },
                        range: r.range,
                    });
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_v3_trims_regions_and_skips_gaps() {
        let host = HostGic::V3 {
            gicd: HostPhysAddr(0x0800_0000),
            redists: alloc::vec![
                HostRange::new(HostPhysAddr(0x080A_0000), 2 * V3_GICR_STRIDE),
                HostRange::new(HostPhysAddr(0x4000_0000), 4 * V3_GICR_STRIDE),
                HostRange::new(HostPhysAddr(0x5000_0000), 4 * V3_GICR_STRIDE),
            ],
        };
        let l = VgicLayout::native(&host, 3).unwrap();
        let VgicLayout::V3 { gicd, redists } = &l else {
            panic!("v3 expected")
        };
        assert_eq!(gicd.0, 0x0800_0000);
        assert_eq!(redists.len(), 2);
        assert_eq!(redists[0].nr_frames, 2);
        assert_eq!(redists[1].first_vcpu, 2);
        assert_eq!(redists[1].nr_frames, 1);
        assert_eq!(
            VgicLayout::native(&host, 11),
            Err(ConfigError::RedistributorsTooFew {
                frames: 10,
                nr_vcpus: 11
            })
        );
    }

    #[test]
    fn xen_layout_constants() {
        let l = VgicLayout::xen_virtual(GicVersion::V2, 2);
        assert_eq!(
            l.distributor(),
            GuestRange::new(GuestPhysAddr(0x0300_1000), 0x1000)
        );
        assert_eq!(
            l.cpu_interface(),
            Some(GuestRange::new(GuestPhysAddr(0x0300_2000), 0x2000))
        );
        let l = VgicLayout::xen_virtual(GicVersion::V3, 4);
        assert_eq!(l.distributor().size, 0x1_0000);
        assert_eq!(l.cpu_interface(), None);
    }

    #[test]
    fn validation_rejects_bad_configs() {
        let l2 = VgicLayout::xen_virtual(GicVersion::V2, 9);
        let c = VgicConfig::new(GicVersion::V2, l2.clone(), 9, 32);
        assert_eq!(
            c.validated(),
            Err(ConfigError::VcpuCount {
                nr_vcpus: 9,
                max: 8
            })
        );
        let c = VgicConfig::new(GicVersion::V2, l2.clone(), 2, 961);
        assert!(matches!(c.validated(), Err(ConfigError::SpiCount { .. })));
        let c = VgicConfig::new(GicVersion::V2, l2.clone(), 2, 33)
            .validated()
            .unwrap();
        assert_eq!(c.nr_spis, 64);
        let mut c = VgicConfig::new(GicVersion::V2, l2.clone(), 2, 32);
        c.vcpu_mpidr[1] = c.vcpu_mpidr[0];
        assert_eq!(c.validated(), Err(ConfigError::DuplicateMpidr { vcpu: 1 }));
        let c = VgicConfig::new(GicVersion::V3, l2, 2, 32);
        assert_eq!(c.validated(), Err(ConfigError::LayoutVersion));
        let overlapping = VgicLayout::V2 {
            gicd: GuestPhysAddr(0x1000),
            gicc: GuestPhysAddr(0x1000),
        };
        let c = VgicConfig::new(GicVersion::V2, overlapping, 1, 32);
        assert!(matches!(c.validated(), Err(ConfigError::Overlap { .. })));
    }

    #[test]
    fn xen_mpidr_split() {
        assert_eq!(xen_vcpu_mpidr(0) & MPIDR_AFF_MASK, 0);
        assert_eq!(xen_vcpu_mpidr(17) & MPIDR_AFF_MASK, 0x101);
    }
}
