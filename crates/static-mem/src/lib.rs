//! Static memory banks (xen,static-mem): validation, reservation and guest RAM layout
#![no_std]
