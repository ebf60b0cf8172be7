//! VMSAv8-64 stage-2 translation tables (IPA to PA) with block mappings and break-before-make updates
#![no_std]
