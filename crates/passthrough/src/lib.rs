//! Device assignment from partial device trees, including passthrough without an IOMMU
#![no_std]
