//! Trap decoding (ESR_EL2, data-abort syndromes) and PSCI emulation for Arm guests
#![no_std]
