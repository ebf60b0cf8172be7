//! Domain-creation flags: public Xen-compatible bits, internal bits such as direct-map, and their validation
#![no_std]
