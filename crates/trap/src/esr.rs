//! `ESR_EL2` (Exception Syndrome Register, EL2) decoding.
//!
//! References are to the Arm Architecture Reference Manual for A-profile
//! (DDI 0487), section D24.2.46 "ESR_EL2" and its ISS encodings
//! (section numbers follow issue K.a; the register pages are stable across
//! issues under the name "ESR_EL2").
//!
//! [`decode`] never fails: every 64-bit value maps to an [`Exception`]
//! (unknown classes become [`Exception::Other`]). Turning a data abort into an
//! emulated MMIO access is a separate, fallible step
//! ([`DataAbort::mmio_access`]), because only aborts with a valid instruction
//! syndrome can be emulated.

use core::fmt;

use tessel_addr::{AccessSize, GuestPhysAddr};

/// ESR_EL2.EC, bits \[31:26\]: exception class.
const EC_SHIFT: u32 = 26;
/// ESR_EL2.IL, bit \[25\]: 32-bit instruction length.
const IL_BIT: u64 = 1 << 25;
/// ESR_EL2.ISS, bits \[24:0\].
const ISS_MASK: u64 = (1 << 25) - 1;
/// ESR_EL2.ISS2, bits \[55:32\] (FEAT_LS64 / FEAT_THE data).
const ISS2_SHIFT: u32 = 32;
const ISS2_MASK: u64 = (1 << 24) - 1;

/// Exception classes (ESR_EL2.EC) a hypervisor distinguishes.
///
/// DDI 0487, D24.2.46, table "ESR_ELx.EC".
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ExceptionClass {
    /// 0x00: unknown reason (e.g. an UNDEFINED instruction trapped to EL2).
    Unknown,
    /// 0x01: trapped WFI/WFE/WFIT/WFET (HCR_EL2.TWI/TWE).
    Wfx,
    /// 0x07: trapped SVE/SIMD/FP access (CPTR_EL2).
    SimdFp,
    /// 0x0E: illegal execution state.
    IllegalState,
    /// 0x12: HVC from AArch32.
    Hvc32,
    /// 0x13: SMC from AArch32 (HCR_EL2.TSC).
    Smc32,
    /// 0x15: SVC from AArch64.
    Svc64,
    /// 0x16: HVC from AArch64.
    Hvc64,
    /// 0x17: SMC from AArch64 trapped by HCR_EL2.TSC.
    Smc64,
    /// 0x18: trapped MSR/MRS/system instruction from AArch64.
    SysReg,
    /// 0x20: instruction abort from a lower exception level (a stage-2 fault on fetch).
    InstrAbortLower,
    /// 0x21: instruction abort taken without a change of exception level.
    InstrAbortSame,
    /// 0x22: PC alignment fault.
    PcAlignment,
    /// 0x24: data abort from a lower exception level (stage-2 fault: MMIO emulation).
    DataAbortLower,
    /// 0x25: data abort taken without a change of exception level (a hypervisor bug).
    DataAbortSame,
    /// 0x26: SP alignment fault.
    SpAlignment,
    /// 0x2F: SError exception.
    SError,
    /// 0x3C: BRK instruction from AArch64.
    Brk64,
    /// Any other class (raw EC value).
    Other(u8),
}

impl ExceptionClass {
    /// Decodes a 6-bit EC value.
    pub const fn from_raw(ec: u8) -> Self {
        match ec {
            0x00 => Self::Unknown,
            0x01 => Self::Wfx,
            0x07 => Self::SimdFp,
            0x0E => Self::IllegalState,
            0x12 => Self::Hvc32,
            0x13 => Self::Smc32,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg,
            0x20 => Self::InstrAbortLower,
            0x21 => Self::InstrAbortSame,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2F => Self::SError,
            0x3C => Self::Brk64,
            other => Self::Other(other & 0x3f),
        }
    }

    /// The raw 6-bit EC value.
    pub const fn raw(self) -> u8 {
        match self {
            Self::Unknown => 0x00,
            Self::Wfx => 0x01,
            Self::SimdFp => 0x07,
            Self::IllegalState => 0x0E,
            Self::Hvc32 => 0x12,
            Self::Smc32 => 0x13,
            Self::Svc64 => 0x15,
            Self::Hvc64 => 0x16,
            Self::Smc64 => 0x17,
            Self::SysReg => 0x18,
            Self::InstrAbortLower => 0x20,
            Self::InstrAbortSame => 0x21,
            Self::PcAlignment => 0x22,
            Self::DataAbortLower => 0x24,
            Self::DataAbortSame => 0x25,
            Self::SpAlignment => 0x26,
            Self::SError => 0x2F,
            Self::Brk64 => 0x3C,
            Self::Other(ec) => ec,
        }
    }
}

/// The raw fields common to every syndrome.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Syndrome {
    /// Exception class.
    pub ec: ExceptionClass,
    /// IL: the trapped instruction was 32 bits long (always true for A64;
    /// the caller advances ELR_EL2 by 4 or 2 accordingly).
    pub il32: bool,
    /// Instruction-specific syndrome, bits \[24:0\].
    pub iss: u32,
    /// ISS2, bits \[55:32\].
    pub iss2: u32,
}

impl Syndrome {
    /// Splits a raw ESR_EL2 value into its fields.
    pub const fn from_raw(esr: u64) -> Self {
        Self {
            ec: ExceptionClass::from_raw(((esr >> EC_SHIFT) & 0x3f) as u8),
            il32: esr & IL_BIT != 0,
            iss: (esr & ISS_MASK) as u32,
            iss2: ((esr >> ISS2_SHIFT) & ISS2_MASK) as u32,
        }
    }

    /// How far to advance ELR_EL2 to skip the trapped instruction.
    pub const fn instr_len(&self) -> u64 {
        if self.il32 { 4 } else { 2 }
    }
}

/// Which wait instruction trapped (ISS TI field, bits \[1:0\]; DDI 0487
/// D24.2.46 "ISS encoding for an exception from a WF* instruction").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum WfxKind {
    /// WFI: wait for interrupt.
    Wfi,
    /// WFE: wait for event.
    Wfe,
    /// WFIT: WFI with timeout (FEAT_WFxT), timeout in the register `rv`.
    Wfit,
    /// WFET: WFE with timeout (FEAT_WFxT).
    Wfet,
}

/// A system-register encoding (op0, op1, CRn, CRm, op2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct SysRegId {
    /// op0 (2 bits).
    pub op0: u8,
    /// op1 (3 bits).
    pub op1: u8,
    /// CRn (4 bits).
    pub crn: u8,
    /// CRm (4 bits).
    pub crm: u8,
    /// op2 (3 bits).
    pub op2: u8,
}

impl SysRegId {
    /// Builds an encoding from its five fields.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }
}

impl fmt::Display for SysRegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

/// ICC_SGI1R_EL1 (S3_0_C12_C11_5): generate a Group 1 SGI for the current
/// security state. GIC Architecture Specification IHI 0069, 12.2.22; trapped
/// by ICH_HCR_EL2.TALL1 or always when the vGIC emulates SGIs in software.
pub const ICC_SGI1R_EL1: SysRegId = SysRegId::new(3, 0, 12, 11, 5);
/// ICC_ASGI1R_EL1 (S3_1_C12_C11_6): generate a Group 1 SGI for the other
/// security state. IHI 0069, 12.2.1.
pub const ICC_ASGI1R_EL1: SysRegId = SysRegId::new(3, 1, 12, 11, 6);
/// ICC_SGI0R_EL1 (S3_2_C12_C11_7): generate a Group 0 SGI. IHI 0069, 12.2.21.
pub const ICC_SGI0R_EL1: SysRegId = SysRegId::new(3, 2, 12, 11, 7);

/// A trapped MSR/MRS (DDI 0487 D24.2.46, "ISS encoding for an exception from
/// MSR, MRS, or System instruction execution in AArch64 state").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct SysRegAccess {
    /// The register accessed.
    pub id: SysRegId,
    /// Rt, the general-purpose register (31 = XZR).
    pub rt: u8,
    /// Direction: true for a read (MRS), false for a write (MSR).
    pub read: bool,
}

/// Fault status code class (DFSC/IFSC, bits \[5:0\]; DDI 0487 D24.2.46).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FaultStatus {
    /// Address size fault at the given lookup level (0..=3).
    AddressSize(u8),
    /// Translation fault at the given level: nothing mapped (the MMIO case).
    Translation(u8),
    /// Access flag fault at the given level.
    AccessFlag(u8),
    /// Permission fault at the given level.
    Permission(u8),
    /// Synchronous external abort, not on a translation table walk (0x10).
    SyncExternal,
    /// Alignment fault (0x21).
    Alignment,
    /// TLB conflict abort (0x30).
    TlbConflict,
    /// Any other code.
    Other(u8),
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressSize(l) => write!(f, "address size fault, level {l}"),
            Self::Translation(l) => write!(f, "translation fault, level {l}"),
            Self::AccessFlag(l) => write!(f, "access flag fault, level {l}"),
            Self::Permission(l) => write!(f, "permission fault, level {l}"),
            Self::SyncExternal => f.write_str("synchronous external abort"),
            Self::Alignment => f.write_str("alignment fault"),
            Self::TlbConflict => f.write_str("TLB conflict abort"),
            Self::Other(c) => write!(f, "fault status code {c:#04x}"),
        }
    }
}

impl FaultStatus {
    /// Decodes a 6-bit fault status code.
    #[inline]
    pub const fn from_raw(fsc: u8) -> Self {
        let level = fsc & 0b11;
        match fsc & 0x3f {
            0x00..=0x03 => Self::AddressSize(level),
            0x04..=0x07 => Self::Translation(level),
            0x08..=0x0B => Self::AccessFlag(level),
            0x0C..=0x0F => Self::Permission(level),
            0x10 => Self::SyncExternal,
            0x21 => Self::Alignment,
            0x30 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }
}

/// Every field of a data-abort ISS (DDI 0487 D24.2.46, "ISS encoding for an
/// exception from a Data Abort").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct DataAbort {
    /// ISV, bit \[24\]: bits \[23:14\] hold a valid instruction syndrome.
    pub isv: bool,
    /// SAS, bits \[23:22\]: access size (0 byte, 1 halfword, 2 word, 3 doubleword).
    pub sas: u8,
    /// SSE, bit \[21\]: the load sign-extends.
    pub sse: bool,
    /// SRT, bits \[20:16\]: the transfer register (31 = XZR).
    pub srt: u8,
    /// SF, bit \[15\]: the transfer register is 64-bit (Xt, not Wt).
    pub sf: bool,
    /// AR, bit \[14\]: acquire/release semantics.
    pub ar: bool,
    /// VNCR, bit \[13\]: the fault came from a VNCR_EL2-relative access.
    pub vncr: bool,
    /// FnV, bit \[10\]: FAR is not valid.
    pub fnv: bool,
    /// EA, bit \[9\]: external abort type (implementation defined).
    pub ea: bool,
    /// CM, bit \[8\]: the fault came from a cache maintenance or address translation instruction.
    pub cm: bool,
    /// S1PTW, bit \[7\]: stage-2 fault on a stage-1 translation table walk.
    pub s1ptw: bool,
    /// WnR, bit \[6\]: the access was a write.
    pub wnr: bool,
    /// DFSC, bits \[5:0\]: data fault status code.
    pub dfsc: FaultStatus,
}

/// Why a data abort cannot be emulated as a single MMIO access.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum EsrError {
    /// ISV = 0: no instruction syndrome (load/store pair, writeback,
    /// SIMD/FP register or exclusive access); the caller injects an abort.
    NoSyndrome,
    /// Stage-2 fault during a stage-1 page-table walk (S1PTW = 1): the
    /// guest's page tables point outside its memory.
    StageOneWalk,
    /// A cache maintenance or AT instruction (CM = 1) hit the region.
    CacheMaintenance,
    /// FAR_EL2 is not valid (FnV = 1), so the faulting address is unknown.
    FarNotValid,
    /// The fault is not a translation/access-flag fault on an unmapped page
    /// (e.g. an alignment or external abort); it carries the status code.
    NotEmulatable(FaultStatus),
}

impl fmt::Display for EsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSyndrome => f.write_str(
                "data abort without instruction syndrome (ISV=0): access cannot be emulated",
            ),
            Self::StageOneWalk => {
                f.write_str("stage-2 fault on a stage-1 translation table walk (S1PTW=1)")
            }
            Self::CacheMaintenance => {
                f.write_str("cache maintenance or address translation instruction (CM=1)")
            }
            Self::FarNotValid => f.write_str("fault address register not valid (FnV=1)"),
            Self::NotEmulatable(fsc) => write!(f, "data abort with fault status: {fsc}"),
        }
    }
}

/// A decoded, emulatable guest MMIO access.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct MmioAccess {
    /// Faulting intermediate physical address (guest physical).
    pub ipa: GuestPhysAddr,
    /// Access width.
    pub size: AccessSize,
    /// True for a store, false for a load.
    pub write: bool,
    /// Transfer register number; 31 means XZR (reads as zero, writes ignored).
    pub reg: u8,
    /// Loads sign-extend the value to the register width.
    pub sign_extend: bool,
    /// The register is 64-bit (Xt); otherwise 32-bit (Wt), upper half zeroed.
    pub sixty_four: bool,
    /// Load-acquire/store-release semantics (the emulation is already ordered).
    pub acquire_release: bool,
}

/// Register number encoding XZR/WZR in SRT/Rt.
pub const XZR: u8 = 31;

impl MmioAccess {
    /// Whether the transfer register is XZR/WZR.
    pub const fn is_zero_register(&self) -> bool {
        self.reg == XZR
    }

    /// The value a store writes, given the current content of the transfer
    /// register (`xt`, ignored for XZR), truncated to the access width.
    pub const fn store_value(&self, xt: u64) -> u64 {
        if self.is_zero_register() {
            0
        } else {
            xt & self.size.mask()
        }
    }

    /// The value a load leaves in the transfer register, given the raw value
    /// the device returned: truncated to the access width, sign-extended if
    /// SSE, and cut to 32 bits (upper half zero) for a Wt register.
    ///
    /// Returns `None` for XZR, whose writes are discarded.
    #[inline]
    pub const fn load_value(&self, raw: u64) -> Option<u64> {
        if self.is_zero_register() {
            return None;
        }
        let bits = self.size.bytes() * 8;
        let mut v = raw & self.size.mask();
        if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            v = (((v << shift) as i64) >> shift) as u64;
        }
        if !self.sixty_four {
            v &= 0xffff_ffff;
        }
        Some(v)
    }
}

/// HPFAR_EL2.FIPA, bits \[47:4\]: IPA bits \[55:12\] of the faulting address
/// (DDI 0487 D24.2.82 "HPFAR_EL2"; \[47:44\] are RES0 without FEAT_D128/LPA).
const HPFAR_FIPA_SHIFT: u32 = 4;
const HPFAR_FIPA_MASK: u64 = (1 << 44) - 1;

/// The faulting IPA: HPFAR_EL2.FIPA gives the page, FAR_EL2 the byte offset.
pub const fn fault_ipa(hpfar: u64, far: u64) -> GuestPhysAddr {
    let page = ((hpfar >> HPFAR_FIPA_SHIFT) & HPFAR_FIPA_MASK) << 12;
    GuestPhysAddr(page | (far & 0xfff))
}

impl DataAbort {
    /// Decodes a data-abort ISS.
    pub const fn from_iss(iss: u32) -> Self {
        Self {
            isv: iss & (1 << 24) != 0,
            sas: ((iss >> 22) & 0b11) as u8,
            sse: iss & (1 << 21) != 0,
            srt: ((iss >> 16) & 0x1f) as u8,
            sf: iss & (1 << 15) != 0,
            ar: iss & (1 << 14) != 0,
            vncr: iss & (1 << 13) != 0,
            fnv: iss & (1 << 10) != 0,
            ea: iss & (1 << 9) != 0,
            cm: iss & (1 << 8) != 0,
            s1ptw: iss & (1 << 7) != 0,
            wnr: iss & (1 << 6) != 0,
            dfsc: FaultStatus::from_raw((iss & 0x3f) as u8),
        }
    }

    /// The access width from SAS.
    pub const fn size(&self) -> AccessSize {
        match self.sas {
            0 => AccessSize::Byte,
            1 => AccessSize::Half,
            2 => AccessSize::Word,
            _ => AccessSize::Double,
        }
    }

    /// Turns the abort into an MMIO access to emulate, given HPFAR_EL2 and
    /// FAR_EL2 read at the time of the trap.
    ///
    /// Only translation and access-flag faults with a valid syndrome are
    /// emulatable; everything else is an error the caller reports to the
    /// guest as an abort.
    pub const fn mmio_access(&self, hpfar: u64, far: u64) -> Result<MmioAccess, EsrError> {
        if self.s1ptw {
            return Err(EsrError::StageOneWalk);
        }
        if self.cm {
            return Err(EsrError::CacheMaintenance);
        }
        match self.dfsc {
            FaultStatus::Translation(_) | FaultStatus::AccessFlag(_) => {}
            other => return Err(EsrError::NotEmulatable(other)),
        }
        if !self.isv {
            return Err(EsrError::NoSyndrome);
        }
        if self.fnv {
            return Err(EsrError::FarNotValid);
        }
        Ok(MmioAccess {
            ipa: fault_ipa(hpfar, far),
            size: self.size(),
            write: self.wnr,
            reg: self.srt,
            sign_extend: self.sse,
            sixty_four: self.sf,
            acquire_release: self.ar,
        })
    }
}

/// A decoded ESR_EL2 value.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Exception {
    /// Trapped WFI/WFE.
    Wfx(WfxKind),
    /// HVC from AArch64, with its 16-bit immediate.
    Hvc64 {
        /// The immediate (`hvc #imm`); PSCI and SMCCC use 0.
        imm: u16,
    },
    /// SMC from AArch64 trapped by HCR_EL2.TSC. ELR_EL2 points at the SMC
    /// itself, so the caller must skip it.
    Smc64 {
        /// The immediate (`smc #imm`).
        imm: u16,
    },
    /// Trapped MSR/MRS.
    SysReg(SysRegAccess),
    /// Data abort from the guest (stage-2 fault).
    DataAbortLower(DataAbort),
    /// Instruction abort from the guest (stage-2 fault on a fetch).
    InstrAbortLower {
        /// IFSC.
        ifsc: FaultStatus,
        /// S1PTW: the fault happened on a stage-1 table walk.
        s1ptw: bool,
    },
    /// SError (asynchronous abort) routed to EL2.
    SError {
        /// Raw ISS (implementation defined or RAS syndrome).
        iss: u32,
    },
    /// Anything else: the caller treats it as an unexpected guest exception.
    Other(Syndrome),
}

/// Decodes a raw ESR_EL2 value. Never panics.
pub const fn decode(esr: u64) -> Exception {
    let syn = Syndrome::from_raw(esr);
    let iss = syn.iss;
    match syn.ec {
        ExceptionClass::Wfx => Exception::Wfx(match iss & 0b11 {
            0 => WfxKind::Wfi,
            1 => WfxKind::Wfe,
            2 => WfxKind::Wfit,
            _ => WfxKind::Wfet,
        }),
        ExceptionClass::Hvc64 => Exception::Hvc64 { imm: iss as u16 },
        ExceptionClass::Smc64 => Exception::Smc64 { imm: iss as u16 },
        ExceptionClass::SysReg => Exception::SysReg(SysRegAccess {
            id: SysRegId {
                op0: ((iss >> 20) & 0b11) as u8,
                op2: ((iss >> 17) & 0b111) as u8,
                op1: ((iss >> 14) & 0b111) as u8,
                crn: ((iss >> 10) & 0xf) as u8,
                crm: ((iss >> 1) & 0xf) as u8,
            },
            rt: ((iss >> 5) & 0x1f) as u8,
            read: iss & 1 != 0,
        }),
        ExceptionClass::DataAbortLower => Exception::DataAbortLower(DataAbort::from_iss(iss)),
        ExceptionClass::InstrAbortLower => Exception::InstrAbortLower {
            ifsc: FaultStatus::from_raw((iss & 0x3f) as u8),
            s1ptw: iss & (1 << 7) != 0,
        },
        ExceptionClass::SError => Exception::SError { iss },
        _ => Exception::Other(syn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn esr(ec: u64, iss: u64) -> u64 {
        (ec << 26) | IL_BIT | iss
    }

    #[test]
    fn fault_status_reads_as_words() {
        use alloc::string::ToString;
        assert_eq!(
            FaultStatus::from_raw(0x06).to_string(),
            "translation fault, level 2"
        );
        assert_eq!(
            EsrError::NotEmulatable(FaultStatus::from_raw(0x0D)).to_string(),
            "data abort with fault status: permission fault, level 1"
        );
        assert_eq!(
            FaultStatus::from_raw(0x35).to_string(),
            "fault status code 0x35"
        );
    }

    #[test]
    fn decodes_wfi_and_wfe() {
        assert_eq!(decode(esr(0x01, 0)), Exception::Wfx(WfxKind::Wfi));
        assert_eq!(decode(esr(0x01, 1)), Exception::Wfx(WfxKind::Wfe));
        assert_eq!(decode(esr(0x01, 2)), Exception::Wfx(WfxKind::Wfit));
    }

    #[test]
    fn decodes_hvc_immediate() {
        assert_eq!(decode(esr(0x16, 0x1234)), Exception::Hvc64 { imm: 0x1234 });
        assert_eq!(decode(esr(0x17, 0)), Exception::Smc64 { imm: 0 });
    }

    /// Encodes a trapped MSR/MRS ISS the way the CPU reports it.
    fn sysreg_iss(id: SysRegId, rt: u8, read: bool) -> u64 {
        (u64::from(id.op0) << 20)
            | (u64::from(id.op2) << 17)
            | (u64::from(id.op1) << 14)
            | (u64::from(id.crn) << 10)
            | (u64::from(rt) << 5)
            | (u64::from(id.crm) << 1)
            | u64::from(read)
    }

    #[test]
    fn decodes_sgi_register_writes() {
        for id in [ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1] {
            let e = decode(esr(0x18, sysreg_iss(id, 7, false)));
            assert_eq!(
                e,
                Exception::SysReg(SysRegAccess {
                    id,
                    rt: 7,
                    read: false
                })
            );
        }
        // `msr icc_sgi1r_el1, x3` as reported by hardware: ISS 0x3a_3076.
        let Exception::SysReg(a) = decode(esr(0x18, 0x3a_3076)) else {
            panic!("not a sysreg trap");
        };
        assert_eq!(a.id, ICC_SGI1R_EL1);
        assert_eq!(a.rt, 3);
        assert!(!a.read);
        assert_eq!(ICC_SGI1R_EL1.to_string(), "S3_0_C12_C11_5");
    }

    #[test]
    fn decodes_word_store_to_mmio() {
        // str w2, [x0] faulting on a translation fault at level 3.
        let iss = (1 << 24) | (2 << 22) | (2 << 16) | (1 << 6) | 0x07;
        let Exception::DataAbortLower(da) = decode(esr(0x24, iss)) else {
            panic!("not a data abort");
        };
        let a = da
            .mmio_access((0x0800_0000 >> 12) << 4, 0xffff_0000_0000_0104)
            .unwrap();
        assert_eq!(a.ipa, GuestPhysAddr(0x0800_0104));
        assert_eq!(a.size, AccessSize::Word);
        assert!(a.write);
        assert_eq!(a.reg, 2);
        assert!(!a.sixty_four);
        assert_eq!(a.store_value(0xdead_beef_1234_5678), 0x1234_5678);
    }

    #[test]
    fn load_sign_and_zero_extension() {
        let mut a = MmioAccess {
            ipa: GuestPhysAddr(0),
            size: AccessSize::Byte,
            write: false,
            reg: 0,
            sign_extend: true,
            sixty_four: true,
            acquire_release: false,
        };
        // ldrsb x0: 0x80 -> 0xffff_ffff_ffff_ff80
        assert_eq!(a.load_value(0x1280), Some(0xffff_ffff_ffff_ff80));
        // ldrsb w0: upper half zero.
        a.sixty_four = false;
        assert_eq!(a.load_value(0x80), Some(0xffff_ff80));
        // ldrb w0: zero-extended.
        a.sign_extend = false;
        assert_eq!(a.load_value(0xff80), Some(0x80));
        // ldrsh x0 of a positive value stays positive.
        a.size = AccessSize::Half;
        a.sign_extend = true;
        a.sixty_four = true;
        assert_eq!(a.load_value(0x7fff), Some(0x7fff));
        // 64-bit load keeps all bits.
        a.size = AccessSize::Double;
        assert_eq!(a.load_value(u64::MAX - 1), Some(u64::MAX - 1));
    }

    #[test]
    fn zero_register_reads_zero_and_discards_loads() {
        let a = MmioAccess {
            ipa: GuestPhysAddr(0),
            size: AccessSize::Word,
            write: true,
            reg: XZR,
            sign_extend: false,
            sixty_four: false,
            acquire_release: false,
        };
        assert_eq!(a.store_value(0x55), 0);
        assert_eq!(a.load_value(0x55), None);
    }

    #[test]
    fn aborts_that_cannot_be_emulated() {
        // ISV = 0 (e.g. ldp): translation fault but no syndrome.
        let da = DataAbort::from_iss(0x07);
        assert_eq!(da.mmio_access(0, 0), Err(EsrError::NoSyndrome));
        // S1PTW.
        let da = DataAbort::from_iss((1 << 24) | (1 << 7) | 0x07);
        assert_eq!(da.mmio_access(0, 0), Err(EsrError::StageOneWalk));
        // Cache maintenance.
        let da = DataAbort::from_iss((1 << 24) | (1 << 8) | 0x06);
        assert_eq!(da.mmio_access(0, 0), Err(EsrError::CacheMaintenance));
        // Permission fault.
        let da = DataAbort::from_iss((1 << 24) | 0x0f);
        assert_eq!(
            da.mmio_access(0, 0),
            Err(EsrError::NotEmulatable(FaultStatus::Permission(3)))
        );
        // FnV.
        let da = DataAbort::from_iss((1 << 24) | (1 << 10) | 0x07);
        assert_eq!(da.mmio_access(0, 0), Err(EsrError::FarNotValid));
    }

    #[test]
    fn unknown_classes_are_other() {
        let Exception::Other(s) = decode(esr(0x3f, 5)) else {
            panic!()
        };
        assert_eq!(s.ec, ExceptionClass::Other(0x3f));
        assert_eq!(s.iss, 5);
        assert_eq!(s.instr_len(), 4);
    }

    #[test]
    fn exception_class_round_trips() {
        for raw in 0u8..64 {
            assert_eq!(ExceptionClass::from_raw(raw).raw(), raw);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decode_never_panics(raw in any::<u64>(), hpfar in any::<u64>(), far in any::<u64>(), v in any::<u64>()) {
            let e = decode(raw);
            if let Exception::DataAbortLower(da) = e
                && let Ok(a) = da.mmio_access(hpfar, far)
            {
                prop_assert_eq!(a.ipa.0 & 0xfff, far & 0xfff);
                prop_assert_eq!(a.store_value(v) & !a.size.mask(), 0);
                if let Some(l) = a.load_value(v)
                    && !a.sixty_four
                {
                    prop_assert_eq!(l >> 32, 0);
                }
            }
        }

        #[test]
        fn sysreg_fields_round_trip(op0 in 0u8..4, op1 in 0u8..8, crn in 0u8..16, crm in 0u8..16, op2 in 0u8..8, rt in 0u8..32, read in any::<bool>()) {
            let id = SysRegId::new(op0, op1, crn, crm, op2);
            prop_assert_eq!(decode(esr(0x18, sysreg_iss(id, rt, read))), Exception::SysReg(SysRegAccess { id, rt, read }));
        }
    }
}
