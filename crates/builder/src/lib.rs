//! Pure-logic dom0less domain builder (being written).
#![no_std]
