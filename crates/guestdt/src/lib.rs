//! Guest device-tree generation for dom0less domains
#![no_std]
