//! Volatile access to device registers by byte offset from a base address.

/// A block of memory-mapped registers at a fixed physical (= virtual, the
/// EL2 map is an identity map) address.
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// Wraps the register block at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a device register block that is mapped
    /// as Device memory in the EL2 stage-1 tables (or the MMU is off), and
    /// accessing its registers must have no effect on memory safety.
    pub const unsafe fn new(base: u64) -> Self {
        Self {
            base: base as usize,
        }
    }

    /// Base address of the block.
    pub fn base(&self) -> u64 {
        self.base as u64
    }

    /// The register block at `offset` from this one.
    pub fn offset(&self, offset: usize) -> Self {
        Self {
            base: self.base + offset,
        }
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract makes every register of the block valid
        // to access; the offsets used are register offsets from the specs.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Reads the 64-bit register at `offset`.
    pub fn read64(&self, offset: usize) -> u64 {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }

    /// Writes the 64-bit register at `offset`.
    pub fn write64(&self, offset: usize, value: u64) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u64, value) }
    }

    /// Writes the 8-bit register at `offset`.
    pub fn write8(&self, offset: usize, value: u8) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u8, value) }
    }
}
