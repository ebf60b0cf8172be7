//! Virtual GICv2/GICv3 distributor and redistributor emulation, classic and per-IRQ models
#![no_std]
