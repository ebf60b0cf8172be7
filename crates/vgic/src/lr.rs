//! List registers: the model-independent [`LrState`], the
//! [`ListRegisters`] trait the binary implements, and pure encoders and
//! decoders for the GICv3 `ICH_LR<n>_EL2` and GICv2 `GICH_LR<n>` formats.

/// State field of a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LrStatus {
    /// Unused (`0b00`).
    #[default]
    Invalid,
    /// Pending (`0b01`).
    Pending,
    /// Active (`0b10`).
    Active,
    /// Pending and active (`0b11`).
    PendingActive,
}

impl LrStatus {
    const fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0,
            Self::Pending => 1,
            Self::Active => 2,
            Self::PendingActive => 3,
        }
    }

    const fn from_bits(b: u64) -> Self {
        match b & 3 {
            0 => Self::Invalid,
            1 => Self::Pending,
            2 => Self::Active,
            _ => Self::PendingActive,
        }
    }

    /// Whether the pending bit is set.
    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    /// Whether the active bit is set.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }

    /// Builds the state from its two bits.
    pub const fn from_flags(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }
}

/// One list register's content, independent of the GIC version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LrState {
    /// Virtual INTID presented to the guest.
    pub intid: u32,
    /// Priority (8-bit; GICv2 keeps the top 5 bits).
    pub priority: u8,
    /// Pending/active state.
    pub state: LrStatus,
    /// Physical INTID when hardware-mapped (`HW = 1`): the guest's
    /// deactivation deactivates this interrupt.
    pub hw: Option<u32>,
    /// Group 1 (`true`) or Group 0.
    pub group1: bool,
    /// GICv2 SGIs: the requesting CPU (`CPUID`); zero otherwise.
    pub source_cpu: u8,
    /// Request a maintenance interrupt when the guest EOIs it (only for
    /// software interrupts; used for level-sensitive sources).
    pub eoi_maintenance: bool,
}

impl LrState {
    /// An empty list register.
    pub const INVALID: Self = Self {
        intid: 0,
        priority: 0,
        state: LrStatus::Invalid,
        hw: None,
        group1: false,
        source_cpu: 0,
        eoi_maintenance: false,
    };
}

/// A vCPU's list registers (real ones in the binary, an array in tests).
pub trait ListRegisters {
    /// Number of implemented list registers (`ICH_VTR_EL2.ListRegs + 1`,
    /// or `GICH_VTR.ListRegs + 1`).
    fn count(&self) -> usize;
    /// Reads list register `i` (`i < count()`).
    fn read(&self, i: usize) -> LrState;
    /// The INTID and state of list register `i` (`i < count()`): all that
    /// folding it back needs, which an implementation may read without
    /// decoding the rest (see [`decode_v3_state`], [`decode_v2_state`]).
    fn read_state(&self, i: usize) -> (u32, LrStatus) {
        let lr = self.read(i);
        (lr.intid, lr.state)
    }
    /// Writes list register `i` (`i < count()`).
    fn write(&mut self, i: usize, lr: LrState);
    /// Enables or disables the underflow maintenance interrupt
    /// (`ICH_HCR_EL2.UIE` / `GICH_HCR.UIE`), requested when pending
    /// interrupts did not fit.
    fn set_underflow_irq(&mut self, on: bool);
}

// ICH_LR<n>_EL2 fields, GIC Architecture Specification IHI 0069H, 12.4.6.
const V3_VINTID_MASK: u64 = 0xFFFF_FFFF; // [31:0]
const V3_PINTID_SHIFT: u32 = 32; // [44:32] when HW == 1
const V3_PINTID_MASK: u64 = 0x1FFF;
const V3_EOI: u64 = 1 << 41; // EOI maintenance when HW == 0
const V3_PRIORITY_SHIFT: u32 = 48; // [55:48]
const V3_GROUP: u64 = 1 << 60;
const V3_HW: u64 = 1 << 61;
const V3_STATE_SHIFT: u32 = 62; // [63:62]

/// Encodes an `ICH_LR<n>_EL2` value (IHI 0069 12.4.6).
pub fn encode_v3(lr: &LrState) -> u64 {
    let mut v = u64::from(lr.intid) & V3_VINTID_MASK;
    v |= u64::from(lr.priority) << V3_PRIORITY_SHIFT;
    if lr.group1 {
        v |= V3_GROUP;
    }
    match lr.hw {
        Some(p) => v |= V3_HW | ((u64::from(p) & V3_PINTID_MASK) << V3_PINTID_SHIFT),
        None if lr.eoi_maintenance => v |= V3_EOI,
        None => {}
    }
    v | lr.state.bits() << V3_STATE_SHIFT
}

/// The INTID and state of an `ICH_LR<n>_EL2` value: the fields of
/// [`decode_v3`] that [`ListRegisters::read_state`] returns.
pub fn decode_v3_state(v: u64) -> (u32, LrStatus) {
    (
        (v & V3_VINTID_MASK) as u32,
        LrStatus::from_bits(v >> V3_STATE_SHIFT),
    )
}

/// Decodes an `ICH_LR<n>_EL2` value.
pub fn decode_v3(v: u64) -> LrState {
    let hw = v & V3_HW != 0;
    LrState {
        intid: (v & V3_VINTID_MASK) as u32,
        priority: (v >> V3_PRIORITY_SHIFT) as u8,
        state: LrStatus::from_bits(v >> V3_STATE_SHIFT),
        hw: hw.then_some(((v >> V3_PINTID_SHIFT) & V3_PINTID_MASK) as u32),
        group1: v & V3_GROUP != 0,
        source_cpu: 0,
        eoi_maintenance: !hw && v & V3_EOI != 0,
    }
}

// GICH_LR<n> fields, GIC Architecture Specification IHI 0048B, 5.3.11.
const V2_VID_MASK: u32 = 0x3FF; // VirtualID [9:0]
const V2_PID_SHIFT: u32 = 10; // PhysicalID [19:10] when HW == 1
const V2_CPUID_MASK: u32 = 0x7; // CPUID [12:10] when HW == 0
const V2_EOI: u32 = 1 << 19; // EOI maintenance when HW == 0
const V2_PRIORITY_SHIFT: u32 = 23; // [27:23], priority bits [7:3]
const V2_STATE_SHIFT: u32 = 28; // [29:28]
const V2_GRP1: u32 = 1 << 30;
const V2_HW: u32 = 1 << 31;

/// Encodes a `GICH_LR<n>` value (IHI 0048B 5.3.11): 10-bit virtual ID,
/// `CPUID` for SGIs, 5-bit priority. Fields wider than the format are
/// truncated; callers only build LRs for INTIDs below 1020.
#[inline]
pub fn encode_v2(lr: &LrState) -> u32 {
    let mut v = lr.intid & V2_VID_MASK;
    v |= u32::from(lr.priority >> 3) << V2_PRIORITY_SHIFT;
    v |= (lr.state.bits() as u32) << V2_STATE_SHIFT;
    if lr.group1 {
        v |= V2_GRP1;
    }
    match lr.hw {
        Some(p) => v |= V2_HW | ((p & V2_VID_MASK) << V2_PID_SHIFT),
        None => {
            v |= (u32::from(lr.source_cpu) & V2_CPUID_MASK) << V2_PID_SHIFT;
            if lr.eoi_maintenance {
                v |= V2_EOI;
            }
        }
    }
    v
}

/// The INTID and state of a `GICH_LR<n>` value: the fields of
/// [`decode_v2`] that [`ListRegisters::read_state`] returns.
pub fn decode_v2_state(v: u32) -> (u32, LrStatus) {
    (
        v & V2_VID_MASK,
        LrStatus::from_bits(u64::from(v >> V2_STATE_SHIFT)),
    )
}

/// Decodes a `GICH_LR<n>` value.
pub fn decode_v2(v: u32) -> LrState {
    let hw = v & V2_HW != 0;
    LrState {
        intid: v & V2_VID_MASK,
        priority: (((v >> V2_PRIORITY_SHIFT) & 0x1F) as u8) << 3,
        state: LrStatus::from_bits(u64::from(v >> V2_STATE_SHIFT)),
        hw: hw.then_some((v >> V2_PID_SHIFT) & V2_VID_MASK),
        group1: v & V2_GRP1 != 0,
        source_cpu: if hw {
            0
        } else {
            ((v >> V2_PID_SHIFT) & V2_CPUID_MASK) as u8
        },
        eoi_maintenance: !hw && v & V2_EOI != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v3_known_encoding() {
        // vINTID 27, HW-mapped to 27, priority 0xa0, group 1, pending.
        let lr = LrState {
            intid: 27,
            priority: 0xA0,
            state: LrStatus::Pending,
            hw: Some(27),
            group1: true,
            source_cpu: 0,
            eoi_maintenance: false,
        };
        assert_eq!(
            encode_v3(&lr),
            0x7000_0000_0000_001B | 0xA0 << 48 | 27 << 32
        );
        assert_eq!(decode_v3(encode_v3(&lr)), lr);
    }

    #[test]
    fn v2_known_encoding() {
        // SGI 3 from CPU 2, priority 0xa0 (0x14 in [27:23]), active.
        let lr = LrState {
            intid: 3,
            priority: 0xA0,
            state: LrStatus::Active,
            hw: None,
            group1: false,
            source_cpu: 2,
            eoi_maintenance: false,
        };
        assert_eq!(encode_v2(&lr), 3 | 2 << 10 | 0x14 << 23 | 2 << 28);
        let hw = LrState {
            intid: 40,
            hw: Some(40),
            state: LrStatus::Pending,
            ..lr
        };
        assert_eq!(
            encode_v2(&hw),
            40 | 40 << 10 | 0x14 << 23 | 1 << 28 | 1 << 31
        );
    }

    fn arb_lr(intid_max: u32, v2: bool) -> impl Strategy<Value = LrState> {
        (
            0..intid_max,
            any::<u8>(),
            0u64..4,
            proptest::option::of(16..intid_max),
            any::<bool>(),
            0u8..8,
            any::<bool>(),
        )
            .prop_map(move |(intid, prio, st, hw, g, src, eoi)| LrState {
                intid,
                priority: if v2 { prio & 0xF8 } else { prio },
                state: LrStatus::from_bits(st),
                hw,
                group1: g,
                source_cpu: if hw.is_some() || !v2 { 0 } else { src },
                eoi_maintenance: eoi && hw.is_none(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn v3_roundtrip(lr in arb_lr(8192, false)) {
            prop_assert_eq!(decode_v3(encode_v3(&lr)), lr);
        }

        #[test]
        fn v2_roundtrip(lr in arb_lr(1020, true)) {
            prop_assert_eq!(decode_v2(encode_v2(&lr)), lr);
        }

        #[test]
        fn state_decoders_agree(raw in any::<u64>()) {
            let v3 = decode_v3(raw);
            prop_assert_eq!(decode_v3_state(raw), (v3.intid, v3.state));
            let v2 = decode_v2(raw as u32);
            prop_assert_eq!(decode_v2_state(raw as u32), (v2.intid, v2.state));
        }

        #[test]
        fn v3_decode_total(raw in any::<u64>()) {
            let lr = decode_v3(raw);
            // Re-encoding a decoded value keeps every field the format defines.
            prop_assert_eq!(decode_v3(encode_v3(&lr)), lr);
        }
    }
}
