//! arm64 kernel Image parsing and placement of kernel, DTB and initrd in guest RAM
#![no_std]
