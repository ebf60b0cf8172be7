//! Boot configuration from a host device tree with Xen dom0less bindings
#![no_std]
