//! Per-domain registry of emulated MMIO regions.
//!
//! A stage-2 translation fault on an address with no RAM mapping is looked
//! up here; the registry returns the device handle and the offset of the
//! access inside the device's frame. Regions never overlap, so a lookup has
//! at most one answer.

use alloc::vec::Vec;
use core::fmt;

use tessel_addr::{Address, GuestPhysAddr, GuestRange};

/// Why a region could not be registered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MmioRegionError {
    /// The region has size zero or wraps past the top of the address space.
    Invalid(GuestRange),
    /// The region overlaps one already registered.
    Overlap {
        /// The region being added.
        new: GuestRange,
        /// The region already present.
        existing: GuestRange,
    },
}

impl fmt::Display for MmioRegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(r) => write!(f, "MMIO region {r} is empty or wraps around"),
            Self::Overlap { new, existing } => {
                write!(f, "MMIO region {new} overlaps registered region {existing}")
            }
        }
    }
}

/// Emulated MMIO regions of one domain, each mapped to a device handle `T`
/// (for example an enum naming the vGIC distributor or a vPL011 instance).
#[derive(Clone, Debug)]
pub struct MmioRegions<T> {
    /// Sorted by start address, pairwise disjoint.
    regions: Vec<(GuestRange, T)>,
}

impl<T> Default for MmioRegions<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> MmioRegions<T> {
    /// An empty registry.
    pub const fn new() -> Self {
        Self {
            regions: Vec::new(),
        }
    }

    /// Registers `range` for `device`. Fails if it is empty, wraps, or
    /// overlaps a region already registered (which is left unchanged).
    pub fn register(&mut self, range: GuestRange, device: T) -> Result<(), MmioRegionError> {
        if range.is_empty() || range.end().is_none() {
            return Err(MmioRegionError::Invalid(range));
        }
        if let Some((existing, _)) = self.regions.iter().find(|(r, _)| r.overlaps(&range)) {
            return Err(MmioRegionError::Overlap {
                new: range,
                existing: *existing,
            });
        }
        let pos = self.regions.partition_point(|(r, _)| r.start < range.start);
        self.regions.insert(pos, (range, device));
        Ok(())
    }

    /// Finds the region containing `ipa`: the device and the offset of
    /// `ipa` from the region's start.
    pub fn lookup(&self, ipa: GuestPhysAddr) -> Option<(&T, u64)> {
        let idx = self.regions.partition_point(|(r, _)| r.start <= ipa);
        let (range, dev) = self.regions.get(idx.checked_sub(1)?)?;
        if range.contains(ipa) {
            Some((dev, ipa.offset_from(range.start)?))
        } else {
            None
        }
    }

    /// Like [`lookup`](Self::lookup) but also checks that an access of
    /// `len` bytes at `ipa` stays inside the region.
    pub fn lookup_access(&self, ipa: GuestPhysAddr, len: u64) -> Option<(&T, u64)> {
        let (dev, off) = self.lookup(ipa)?;
        let range = self.regions.iter().find(|(r, _)| r.contains(ipa))?.0;
        let end = off.checked_add(len)?;
        (end <= range.size).then_some((dev, off))
    }

    /// All registered regions in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&GuestRange, &T)> {
        self.regions.iter().map(|(r, d)| (r, d))
    }

    /// Number of registered regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether no region is registered.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, size: u64) -> GuestRange {
        GuestRange::new(GuestPhysAddr(start), size)
    }

    #[test]
    fn lookup_returns_device_and_offset() {
        let mut m = MmioRegions::new();
        m.register(r(0x0800_0000, 0x1_0000), "gicd").unwrap();
        m.register(r(0x0900_0000, 0x1000), "uart").unwrap();
        assert_eq!(m.lookup(GuestPhysAddr(0x0800_0104)), Some((&"gicd", 0x104)));
        assert_eq!(m.lookup(GuestPhysAddr(0x0900_0018)), Some((&"uart", 0x18)));
        assert_eq!(m.lookup(GuestPhysAddr(0x0901_0000)), None);
        assert_eq!(m.lookup(GuestPhysAddr(0x07ff_ffff)), None);
        assert_eq!(m.lookup(GuestPhysAddr(0x0801_0000)), None);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn refuses_overlap_and_empty() {
        let mut m = MmioRegions::new();
        m.register(r(0x1000, 0x1000), 1).unwrap();
        assert_eq!(
            m.register(r(0x1800, 0x1000), 2),
            Err(MmioRegionError::Overlap {
                new: r(0x1800, 0x1000),
                existing: r(0x1000, 0x1000)
            })
        );
        assert_eq!(
            m.register(r(0x3000, 0), 3),
            Err(MmioRegionError::Invalid(r(0x3000, 0)))
        );
        assert!(matches!(
            m.register(r(u64::MAX - 10, 0x100), 4),
            Err(MmioRegionError::Invalid(_))
        ));
        // Adjacent is fine.
        m.register(r(0x2000, 0x1000), 5).unwrap();
        assert_eq!(m.lookup(GuestPhysAddr(0x2000)), Some((&5, 0)));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn access_must_stay_inside_region() {
        let mut m = MmioRegions::new();
        m.register(r(0x1000, 0x1000), ()).unwrap();
        assert!(m.lookup_access(GuestPhysAddr(0x1ffc), 4).is_some());
        assert!(m.lookup_access(GuestPhysAddr(0x1ffc), 8).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn registry_agrees_with_linear_scan(
            regs in proptest::collection::vec((0u64..0x40, 1u64..0x8), 0..12),
            probes in proptest::collection::vec(0u64..0x50, 0..32),
        ) {
            let mut m = MmioRegions::new();
            let mut accepted: Vec<GuestRange> = Vec::new();
            for (i, (s, n)) in regs.iter().enumerate() {
                let range = r(s * 0x1000, n * 0x1000);
                let clash = accepted.iter().any(|a| a.overlaps(&range));
                prop_assert_eq!(m.register(range, i).is_ok(), !clash);
                if !clash { accepted.push(range); }
            }
            for p in probes {
                let ipa = GuestPhysAddr(p * 0x1000 + 8);
                let expect = accepted.iter().find(|a| a.contains(ipa)).map(|a| ipa.0 - a.start.0);
                prop_assert_eq!(m.lookup(ipa).map(|(_, off)| off), expect);
            }
        }
    }
}
