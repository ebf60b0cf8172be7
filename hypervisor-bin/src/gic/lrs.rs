//! The physical list registers of the calling CPU's virtual interface,
//! exposed to the vGIC through its `ListRegisters` trait.
//!
//! GICv3: `ICH_LR<n>_EL2`, `ICH_VTR_EL2`, `ICH_HCR_EL2` (IHI 0069, 12.4).
//! GICv2: `GICH_LR<n>`, `GICH_VTR`, `GICH_HCR` (IHI 0048B, 5.3).

use super::{GIC, Gic};
use crate::boot::MAX_CPUS;
use crate::mmio::Mmio;
use core::arch::asm;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use tessel_vgic::lr::{
    ListRegisters, LrState, LrStatus, decode_v2, decode_v2_state, decode_v3, decode_v3_state,
    encode_v2, encode_v3,
};

/// GICH_HCR (IHI 0048B, 5.3.1).
const GICH_HCR: usize = 0x000;
/// GICH_VTR (IHI 0048B, 5.3.2): ListRegs in \[5:0\].
const GICH_VTR: usize = 0x004;
/// GICH_LR0 (IHI 0048B, 5.3.11), 4 bytes each.
const GICH_LR0: usize = 0x100;
/// ICH_HCR_EL2.UIE / GICH_HCR.UIE: underflow maintenance interrupt enable.
const HCR_UIE: u64 = 1 << 1;
/// Most list registers either architecture defines (GICv3: 16, GICv2: 64;
/// we use at most 16).
const MAX_LRS: usize = 16;

macro_rules! ich_lr {
    ($op:ident, $i:expr, $v:expr) => {
        ich_lr!(@dispatch $op, $i, $v,
            0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2",
            3 => "S3_4_C12_C12_3", 4 => "S3_4_C12_C12_4", 5 => "S3_4_C12_C12_5",
            6 => "S3_4_C12_C12_6", 7 => "S3_4_C12_C12_7", 8 => "S3_4_C12_C13_0",
            9 => "S3_4_C12_C13_1", 10 => "S3_4_C12_C13_2", 11 => "S3_4_C12_C13_3",
            12 => "S3_4_C12_C13_4", 13 => "S3_4_C12_C13_5", 14 => "S3_4_C12_C13_6",
            15 => "S3_4_C12_C13_7")
    };
    (@dispatch read, $i:expr, $v:expr, $($n:literal => $enc:literal),*) => {
        match $i {
            $($n => {
                // SAFETY: reading a list register of this CPU's virtual
                // interface has no side effects.
                unsafe { asm!(concat!("mrs {}, ", $enc), out(reg) $v, options(nomem, nostack)) }
            })*
            _ => {}
        }
    };
    (@dispatch write, $i:expr, $v:expr, $($n:literal => $enc:literal),*) => {
        match $i {
            $($n => {
                // SAFETY: list registers only affect the virtual interrupts
                // of the guest running on this CPU.
                unsafe { asm!(concat!("msr ", $enc, ", {}"), in(reg) $v, options(nostack)) }
            })*
            _ => {}
        }
    };
}

/// ICH_VTR_EL2 (S3_4_C12_C11_1).
fn ich_vtr() -> u64 {
    let v: u64;
    // SAFETY: reading an ID-like register has no side effects.
    unsafe { asm!("mrs {}, S3_4_C12_C11_1", out(reg) v, options(nomem, nostack)) };
    v
}

/// ICH_HCR_EL2 (S3_4_C12_C11_0).
fn ich_hcr() -> u64 {
    let v: u64;
    // SAFETY: reading has no side effects.
    unsafe { asm!("mrs {}, S3_4_C12_C11_0", out(reg) v, options(nomem, nostack)) };
    v
}

fn set_ich_hcr(v: u64) {
    // SAFETY: controls the virtual interface of the guest on this CPU.
    unsafe { asm!("msr S3_4_C12_C11_0, {}", "isb", in(reg) v, options(nostack)) };
}

/// This CPU's list registers: `ICH_LR<n>_EL2` on GICv3, the `GICH_LR<n>`
/// of the GICH frame on GICv2. One struct for both, so that the count
/// every access checks is one field at one place.
pub struct HwLrs {
    /// Implemented list registers.
    count: usize,
    /// The GICv2 GICH frame (banked per CPU at one address); `None` on
    /// GICv3.
    gich: Option<Mmio>,
}

/// Implemented list registers per pCPU, read once from ICH_VTR_EL2 or
/// GICH_VTR (0 until then), with [`COUNT_V2`] set on a GICv2: every exit
/// builds an [`HwLrs`].
static COUNT: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// In a [`COUNT`] slot: the list registers are GICv2 ones.
const COUNT_V2: u8 = 0x80;
/// The GICv2 GICH frame's address, stored before the first [`COUNT`] slot
/// with [`COUNT_V2`] (0 until then).
static GICH_BASE: AtomicU64 = AtomicU64::new(0);

impl HwLrs {
    /// How many list registers the calling CPU has, once an [`HwLrs`] was
    /// built on it (`None` before): all a quiet exit needs to know, without
    /// the GICv2 frame lookup.
    #[inline]
    pub fn count_this_cpu() -> Option<usize> {
        let cached = COUNT.get(super::this_cpu())?.load(Ordering::Relaxed) & !COUNT_V2;
        (cached != 0).then_some(usize::from(cached))
    }

    /// The list registers of the calling CPU, or `None` without a virtual
    /// interface.
    #[inline]
    pub fn this_cpu() -> Option<Self> {
        let slot = COUNT.get(super::this_cpu())?;
        let cached = slot.load(Ordering::Relaxed);
        // A GICv3 CPU that was seen before (so `GIC` is set): the slot
        // alone says everything, which spares every exit the `GIC` lookup.
        if cached != 0 && cached & COUNT_V2 == 0 {
            return Some(HwLrs {
                count: usize::from(cached),
                gich: None,
            });
        }
        // Likewise on GICv2, with the GICH frame remembered.
        if cached & COUNT_V2 != 0 {
            let base = GICH_BASE.load(Ordering::Relaxed);
            if base != 0 {
                return Some(HwLrs {
                    count: usize::from(cached & !COUNT_V2),
                    // SAFETY: `base` was stored below from the GIC's own
                    // GICH frame (`GicV2::gich`), which meets `Mmio::new`'s
                    // contract.
                    gich: Some(unsafe { Mmio::new(base) }),
                });
            }
        }
        let gic = GIC.get()?;
        let mut count = usize::from(cached & !COUNT_V2);
        if count == 0 {
            let (n, flag) = match gic {
                Gic::V3(_) => ((ich_vtr() & 0x1f) as usize + 1, 0),
                Gic::V2(g) => {
                    let gich = g.gich()?;
                    GICH_BASE.store(gich.base(), Ordering::Relaxed);
                    ((gich.read32(GICH_VTR) & 0x3f) as usize + 1, COUNT_V2)
                }
            };
            count = n.min(MAX_LRS);
            slot.store(count as u8 | flag, Ordering::Relaxed);
        }
        match gic {
            Gic::V3(_) => Some(HwLrs { count, gich: None }),
            Gic::V2(g) => Some(HwLrs {
                count,
                gich: Some(g.gich()?),
            }),
        }
    }
}

impl ListRegisters for HwLrs {
    #[inline]
    fn count(&self) -> usize {
        self.count
    }

    #[inline]
    fn read(&self, i: usize) -> LrState {
        if i >= self.count {
            return LrState::INVALID;
        }
        match self.gich {
            None => {
                let mut v: u64 = 0;
                ich_lr!(read, i, v);
                decode_v3(v)
            }
            Some(gich) => decode_v2(gich.read32(GICH_LR0 + 4 * i)),
        }
    }

    #[inline]
    fn read_state(&self, i: usize) -> (u32, LrStatus) {
        if i >= self.count {
            return (0, LrStatus::Invalid);
        }
        match self.gich {
            None => {
                let mut v: u64 = 0;
                ich_lr!(read, i, v);
                decode_v3_state(v)
            }
            Some(gich) => decode_v2_state(gich.read32(GICH_LR0 + 4 * i)),
        }
    }

    #[inline]
    fn write(&mut self, i: usize, lr: LrState) {
        if i >= self.count {
            return;
        }
        match self.gich {
            None => {
                let v = encode_v3(&lr);
                ich_lr!(write, i, v);
            }
            Some(gich) => gich.write32(GICH_LR0 + 4 * i, encode_v2(&lr)),
        }
    }

    fn set_underflow_irq(&mut self, on: bool) {
        match self.gich {
            None => {
                let h = ich_hcr();
                set_ich_hcr(if on { h | HCR_UIE } else { h & !HCR_UIE });
            }
            Some(gich) => {
                let h = gich.read32(GICH_HCR);
                let uie = HCR_UIE as u32;
                gich.write32(GICH_HCR, if on { h | uie } else { h & !uie });
            }
        }
    }
}
