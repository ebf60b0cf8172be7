//! PSCI 1.1 emulation over an explicit vCPU power state machine.
//!
//! References: Arm Power State Coordination Interface, DEN0022 (issue
//! F.b, PSCI 1.1) §5 "Function descriptions" and table 5 "Return error
//! codes"; SMC Calling Convention DEN0028 §2.5 (function identifiers).
//!
//! Guests call PSCI through HVC (the guest device tree says
//! `method = "hvc"`); SMCs trapped with HCR_EL2.TSC are handled the same way.
//! [`VcpuTable::call`] takes the caller's vCPU index and x0..x3 and returns
//! the value for x0 plus a [`PsciAction`] the binary must carry out (start or
//! stop a vCPU, power the domain off, ...).
//!
//! # vCPU power state machine
//!
//! ```text
//!            CPU_ON (by another vCPU)         started()
//!   Off ───────────────────────────▶ OnPending ─────────▶ On
//!    ▲                                                     │
//!    └──────────────────── CPU_OFF (by itself) ────────────┘
//!    ▲
//!    └── force_off() from any state (domain stop / fault)
//! ```
//!
//! vCPU 0 starts `On`, every other vCPU `Off` (as in Xen: secondaries wait
//! for CPU_ON). Only a vCPU that is `On` can make calls.

use alloc::vec::Vec;
use core::fmt;

/// PSCI return codes (DEN0022 table 5), as the signed values placed in x0.
pub mod ret {
    /// The call succeeded.
    pub const SUCCESS: i64 = 0;
    /// The function is not implemented.
    pub const NOT_SUPPORTED: i64 = -1;
    /// A parameter is invalid (e.g. an unknown MPIDR).
    pub const INVALID_PARAMETERS: i64 = -2;
    /// The operation is denied.
    pub const DENIED: i64 = -3;
    /// CPU_ON: the target is already on.
    pub const ALREADY_ON: i64 = -4;
    /// CPU_ON: the target is already being turned on.
    pub const ON_PENDING: i64 = -5;
    /// Internal failure.
    pub const INTERNAL_FAILURE: i64 = -6;
    /// The entry point address is invalid.
    pub const INVALID_ADDRESS: i64 = -9;
}

/// AFFINITY_INFO results (DEN0022 §5.7).
pub mod affinity {
    /// At least one core in the affinity instance is on.
    pub const ON: i64 = 0;
    /// All cores in the affinity instance are off.
    pub const OFF: i64 = 1;
    /// At least one core is being turned on (none is on).
    pub const ON_PENDING: i64 = 2;
}

/// PSCI function identifiers (DEN0022 table 6). 32-bit calling convention
/// values; the 64-bit variant of a function sets bit 30 (`0xC400_xxxx`).
pub mod fid {
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND.
    pub const CPU_SUSPEND: u32 = 0x8400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON.
    pub const CPU_ON: u32 = 0x8400_0003;
    /// AFFINITY_INFO.
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    /// MIGRATE.
    pub const MIGRATE: u32 = 0x8400_0005;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// MIGRATE_INFO_UP_CPU.
    pub const MIGRATE_INFO_UP_CPU: u32 = 0x8400_0007;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000A;
    /// SYSTEM_SUSPEND.
    pub const SYSTEM_SUSPEND: u32 = 0x8400_000E;
    /// SYSTEM_RESET2.
    pub const SYSTEM_RESET2: u32 = 0x8400_0012;
    /// Bit 30 of a function ID: SMC64/HVC64 calling convention.
    pub const SMC64: u32 = 1 << 30;
    /// Xen's legacy PSCI 0.1 CPU_OFF identifier (advertised as `cpu_off = 1`
    /// in the guest device tree's psci node).
    pub const LEGACY_CPU_OFF: u32 = 1;
    /// Xen's legacy PSCI 0.1 CPU_ON identifier (`cpu_on = 2`).
    pub const LEGACY_CPU_ON: u32 = 2;
}

/// The PSCI version reported by PSCI_VERSION: major 1 in \[31:16\], minor 1.
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;

/// MIGRATE_INFO_TYPE result: "Trusted OS is not present or does not
/// require migration" (DEN0022 §5.9).
pub const MIGRATE_NOT_REQUIRED: i64 = 2;

/// The PSCI functions Tessel emulates.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PsciFunction {
    /// PSCI_VERSION.
    Version,
    /// CPU_SUSPEND (treated as WFI).
    CpuSuspend,
    /// CPU_OFF.
    CpuOff,
    /// CPU_ON.
    CpuOn,
    /// AFFINITY_INFO.
    AffinityInfo,
    /// MIGRATE_INFO_TYPE.
    MigrateInfoType,
    /// SYSTEM_OFF.
    SystemOff,
    /// SYSTEM_RESET.
    SystemReset,
    /// PSCI_FEATURES.
    Features,
}

impl PsciFunction {
    /// Decodes the function ID in w0 (bits \[63:32\] of x0 are ignored, as
    /// SMCCC requires). Returns the function and whether the SMC64 variant
    /// was used (arguments are then 64-bit, else 32-bit).
    pub const fn decode(x0: u64) -> Option<(Self, bool)> {
        let id = x0 as u32;
        let f = match id {
            fid::LEGACY_CPU_OFF => return Some((Self::CpuOff, true)),
            fid::LEGACY_CPU_ON => return Some((Self::CpuOn, true)),
            fid::PSCI_VERSION => Self::Version,
            fid::CPU_OFF => Self::CpuOff,
            fid::MIGRATE_INFO_TYPE => Self::MigrateInfoType,
            fid::SYSTEM_OFF => Self::SystemOff,
            fid::SYSTEM_RESET => Self::SystemReset,
            fid::PSCI_FEATURES => Self::Features,
            _ => {
                // Functions that have both an SMC32 and an SMC64 variant.
                let smc64 = id & fid::SMC64 != 0;
                let f = match id & !fid::SMC64 {
                    fid::CPU_SUSPEND => Self::CpuSuspend,
                    fid::CPU_ON => Self::CpuOn,
                    fid::AFFINITY_INFO => Self::AffinityInfo,
                    _ => return None,
                };
                return Some((f, smc64));
            }
        };
        Some((f, false))
    }
}

/// Power state of one vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum VcpuPower {
    /// Not running; CPU_ON may start it.
    Off,
    /// CPU_ON accepted; the binary has not started it yet.
    OnPending {
        /// Entry point (guest physical; MMU off at entry).
        entry: u64,
        /// Value for x0 at entry.
        context_id: u64,
    },
    /// Running.
    On,
}

impl fmt::Display for VcpuPower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::OnPending { entry, .. } => write!(f, "starting at {entry:#x}"),
            Self::On => f.write_str("on"),
        }
    }
}

/// What the binary must do after a PSCI call.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PsciAction {
    /// Nothing: return to the caller with `ret` in x0.
    None,
    /// Return `ret`, and treat the call as WFI (CPU_SUSPEND).
    Wfi,
    /// Return `ret` to the caller and start `vcpu` at EL1h, MMU off, with
    /// PC = `entry` and x0 = `context_id`; then call
    /// [`VcpuTable::started`].
    StartVcpu {
        /// Target vCPU index.
        vcpu: usize,
        /// Entry point.
        entry: u64,
        /// Value for the target's x0.
        context_id: u64,
    },
    /// The caller turned itself off: do not return to it. `last` is true if
    /// no vCPU of the domain is on or pending any more.
    StopVcpu {
        /// Whether this was the domain's last running vCPU.
        last: bool,
    },
    /// Power the whole domain off.
    SystemOff,
    /// Reset the whole domain.
    SystemReset,
}

/// The result of a PSCI call.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PsciOutcome {
    /// Value for the caller's x0 (a PSCI return code, sign-extended).
    pub ret: u64,
    /// What the binary must do.
    pub action: PsciAction,
}

impl PsciOutcome {
    const fn ret(code: i64) -> Self {
        Self {
            ret: code as u64,
            action: PsciAction::None,
        }
    }
}

/// A misuse of the vCPU table by the hypervisor itself (not by a guest).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum VcpuPowerError {
    /// The vCPU index is out of range.
    NoSuchVcpu(usize),
    /// The vCPU is not in the state the operation needs.
    WrongState {
        /// The vCPU.
        vcpu: usize,
        /// Its current state.
        state: VcpuPower,
    },
}

impl fmt::Display for VcpuPowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchVcpu(v) => write!(f, "vCPU {v} does not exist"),
            Self::WrongState { vcpu, state } => write!(f, "vCPU {vcpu} is {state}"),
        }
    }
}

/// MPIDR affinity bits a guest may name: Aff3 \[39:32\], Aff2..Aff0 \[23:0\].
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// The virtual MPIDR affinity of vCPU `index`: Aff0 = index & 0xf,
/// Aff1 = index >> 4 (16 vCPUs per cluster, as the guest DT's `cpu@` nodes
/// and the GICv3 redistributors say).
pub const fn vcpu_mpidr(index: usize) -> u64 {
    let i = index as u64;
    (i & 0xf) | ((i >> 4) << 8)
}

/// The vCPU index whose affinity is `mpidr` (non-affinity bits ignored).
pub const fn mpidr_to_index(mpidr: u64) -> Option<usize> {
    let m = mpidr & MPIDR_AFFINITY_MASK;
    let aff0 = m & 0xff;
    let aff1 = (m >> 8) & 0xff;
    if aff0 > 0xf || m >> 16 != 0 {
        return None;
    }
    Some((aff1 * 16 + aff0) as usize)
}

/// Power state of every vCPU of one domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuTable {
    vcpus: Vec<VcpuPower>,
}

impl VcpuTable {
    /// A domain with `count` vCPUs: vCPU 0 on, the others off.
    pub fn new(count: usize) -> Self {
        let mut vcpus = alloc::vec![VcpuPower::Off; count];
        if let Some(first) = vcpus.first_mut() {
            *first = VcpuPower::On;
        }
        Self { vcpus }
    }

    /// Number of vCPUs.
    pub fn len(&self) -> usize {
        self.vcpus.len()
    }

    /// Whether the domain has no vCPU.
    pub fn is_empty(&self) -> bool {
        self.vcpus.is_empty()
    }

    /// The state of vCPU `vcpu`.
    pub fn state(&self, vcpu: usize) -> Option<VcpuPower> {
        self.vcpus.get(vcpu).copied()
    }

    /// Whether no vCPU is on or pending.
    pub fn all_off(&self) -> bool {
        self.vcpus.iter().all(|s| *s == VcpuPower::Off)
    }

    /// Records that the binary started a pending vCPU (OnPending -> On).
    pub fn started(&mut self, vcpu: usize) -> Result<(), VcpuPowerError> {
        let slot = self
            .vcpus
            .get_mut(vcpu)
            .ok_or(VcpuPowerError::NoSuchVcpu(vcpu))?;
        match *slot {
            VcpuPower::OnPending { .. } => {
                *slot = VcpuPower::On;
                Ok(())
            }
            state => Err(VcpuPowerError::WrongState { vcpu, state }),
        }
    }

    /// Turns a vCPU off whatever its state (domain stop or reset).
    pub fn force_off(&mut self, vcpu: usize) -> Result<(), VcpuPowerError> {
        let slot = self
            .vcpus
            .get_mut(vcpu)
            .ok_or(VcpuPowerError::NoSuchVcpu(vcpu))?;
        *slot = VcpuPower::Off;
        Ok(())
    }

    /// Back to the boot state (vCPU 0 on, others off), for SYSTEM_RESET.
    pub fn reset(&mut self) {
        *self = Self::new(self.vcpus.len());
    }

    /// Handles a PSCI call made by vCPU `caller` with arguments x0..x3.
    ///
    /// Unknown function IDs return NOT_SUPPORTED. Fails only if `caller`
    /// does not exist or is not running (a hypervisor bug, not a guest one).
    pub fn call(&mut self, caller: usize, x: [u64; 4]) -> Result<PsciOutcome, VcpuPowerError> {
        match self.state(caller) {
            None => return Err(VcpuPowerError::NoSuchVcpu(caller)),
            Some(VcpuPower::On) => {}
            Some(state) => {
                return Err(VcpuPowerError::WrongState {
                    vcpu: caller,
                    state,
                });
            }
        }
        let Some((func, smc64)) = PsciFunction::decode(x[0]) else {
            return Ok(PsciOutcome::ret(ret::NOT_SUPPORTED));
        };
        // SMC32 callers pass 32-bit arguments: ignore the upper halves.
        let arg = |i: usize| {
            let v = x.get(i).copied().unwrap_or(0);
            if smc64 { v } else { v & 0xffff_ffff }
        };
        Ok(match func {
            PsciFunction::Version => PsciOutcome::ret(i64::from(PSCI_VERSION_1_1)),
            PsciFunction::Features => PsciOutcome::ret(Self::features(x[1] as u32)),
            PsciFunction::MigrateInfoType => PsciOutcome::ret(MIGRATE_NOT_REQUIRED),
            PsciFunction::CpuSuspend => PsciOutcome {
                ret: ret::SUCCESS as u64,
                action: PsciAction::Wfi,
            },
            PsciFunction::SystemOff => PsciOutcome {
                ret: ret::SUCCESS as u64,
                action: PsciAction::SystemOff,
            },
            PsciFunction::SystemReset => PsciOutcome {
                ret: ret::SUCCESS as u64,
                action: PsciAction::SystemReset,
            },
            PsciFunction::AffinityInfo => PsciOutcome::ret(self.affinity_info(arg(1), arg(2))),
            PsciFunction::CpuOn => self.cpu_on(arg(1), arg(2), arg(3)),
            PsciFunction::CpuOff => {
                // `caller` was checked above.
                if let Some(slot) = self.vcpus.get_mut(caller) {
                    *slot = VcpuPower::Off;
                }
                PsciOutcome {
                    ret: ret::SUCCESS as u64,
                    action: PsciAction::StopVcpu {
                        last: self.all_off(),
                    },
                }
            }
        })
    }

    /// PSCI_FEATURES: 0 for an implemented function (for CPU_SUSPEND: the
    /// original power_state format, platform-coordinated mode), else
    /// NOT_SUPPORTED.
    fn features(id: u32) -> i64 {
        // The legacy 0.1 IDs are not PSCI function IDs and are not queried.
        match id {
            fid::LEGACY_CPU_OFF | fid::LEGACY_CPU_ON => ret::NOT_SUPPORTED,
            _ if PsciFunction::decode(u64::from(id)).is_some() => ret::SUCCESS,
            _ => ret::NOT_SUPPORTED,
        }
    }

    fn cpu_on(&mut self, target: u64, entry: u64, context_id: u64) -> PsciOutcome {
        let Some(vcpu) = mpidr_to_index(target).filter(|&v| v < self.vcpus.len()) else {
            return PsciOutcome::ret(ret::INVALID_PARAMETERS);
        };
        if entry & 0b11 != 0 {
            // A64 instructions are 4-byte aligned.
            return PsciOutcome::ret(ret::INVALID_ADDRESS);
        }
        match self.vcpus.get_mut(vcpu) {
            Some(VcpuPower::On) => PsciOutcome::ret(ret::ALREADY_ON),
            Some(VcpuPower::OnPending { .. }) => PsciOutcome::ret(ret::ON_PENDING),
            Some(slot) => {
                *slot = VcpuPower::OnPending { entry, context_id };
                PsciOutcome {
                    ret: ret::SUCCESS as u64,
                    action: PsciAction::StartVcpu {
                        vcpu,
                        entry,
                        context_id,
                    },
                }
            }
            None => PsciOutcome::ret(ret::INVALID_PARAMETERS),
        }
    }

    /// AFFINITY_INFO(target_affinity, lowest_affinity_level).
    fn affinity_info(&self, target: u64, level: u64) -> i64 {
        // Affinity fields at or below `level` are ignored.
        let ignore = match level {
            0 => 0,
            1 => 0xff,
            2 => 0xff_ffff,
            3 => MPIDR_AFFINITY_MASK,
            _ => return ret::INVALID_PARAMETERS,
        };
        let want = target & MPIDR_AFFINITY_MASK & !ignore;
        let mut matched = false;
        let mut pending = false;
        for (i, s) in self.vcpus.iter().enumerate() {
            if vcpu_mpidr(i) & !ignore != want {
                continue;
            }
            matched = true;
            match s {
                VcpuPower::On => return affinity::ON,
                VcpuPower::OnPending { .. } => pending = true,
                VcpuPower::Off => {}
            }
        }
        match (matched, pending) {
            (false, _) => ret::INVALID_PARAMETERS,
            (true, true) => affinity::ON_PENDING,
            (true, false) => affinity::OFF,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn neg(code: i64) -> u64 {
        code as u64
    }

    #[test]
    fn power_errors_name_the_state() {
        use alloc::string::ToString;
        let e = VcpuPowerError::WrongState {
            vcpu: 1,
            state: VcpuPower::OnPending {
                entry: 0x4008_0000,
                context_id: 0,
            },
        };
        assert_eq!(e.to_string(), "vCPU 1 is starting at 0x40080000");
        let off = VcpuPowerError::WrongState {
            vcpu: 0,
            state: VcpuPower::Off,
        };
        assert_eq!(off.to_string(), "vCPU 0 is off");
    }

    #[test]
    fn version_features_and_migrate() {
        let mut t = VcpuTable::new(2);
        let o = t.call(0, [u64::from(fid::PSCI_VERSION), 0, 0, 0]).unwrap();
        assert_eq!(o.ret, 0x1_0001);
        let o = t
            .call(
                0,
                [
                    u64::from(fid::PSCI_FEATURES),
                    u64::from(fid::CPU_ON | fid::SMC64),
                    0,
                    0,
                ],
            )
            .unwrap();
        assert_eq!(o.ret, 0);
        let o = t
            .call(
                0,
                [u64::from(fid::PSCI_FEATURES), u64::from(fid::MIGRATE), 0, 0],
            )
            .unwrap();
        assert_eq!(o.ret, neg(ret::NOT_SUPPORTED));
        let o = t
            .call(0, [u64::from(fid::MIGRATE_INFO_TYPE), 0, 0, 0])
            .unwrap();
        assert_eq!(o.ret, 2);
        let o = t.call(0, [0x8400_00ff, 0, 0, 0]).unwrap();
        assert_eq!(o, PsciOutcome::ret(ret::NOT_SUPPORTED));
        assert_eq!(o.ret, u64::MAX);
    }

    #[test]
    fn cpu_on_lifecycle() {
        let mut t = VcpuTable::new(2);
        let on = u64::from(fid::CPU_ON | fid::SMC64);
        let o = t.call(0, [on, 1, 0x4008_0000, 0xabcd]).unwrap();
        assert_eq!(o.ret, 0);
        assert_eq!(
            o.action,
            PsciAction::StartVcpu {
                vcpu: 1,
                entry: 0x4008_0000,
                context_id: 0xabcd
            }
        );
        // Before the binary starts it: ON_PENDING.
        assert_eq!(
            t.call(0, [on, 1, 0x4008_0000, 0]).unwrap().ret,
            neg(ret::ON_PENDING)
        );
        let info = u64::from(fid::AFFINITY_INFO);
        assert_eq!(t.call(0, [info, 1, 0, 0]).unwrap().ret, 2);
        // A pending vCPU cannot make calls.
        assert!(t.call(1, [info, 0, 0, 0]).is_err());
        t.started(1).unwrap();
        assert_eq!(
            t.call(0, [on, 1, 0x4008_0000, 0]).unwrap().ret,
            neg(ret::ALREADY_ON)
        );
        assert_eq!(t.call(0, [info, 1, 0, 0]).unwrap().ret, 0);
        // vCPU 1 turns itself off.
        let o = t.call(1, [u64::from(fid::CPU_OFF), 0, 0, 0]).unwrap();
        assert_eq!(o.action, PsciAction::StopVcpu { last: false });
        assert_eq!(t.state(1), Some(VcpuPower::Off));
        assert_eq!(t.call(0, [info, 1, 0, 0]).unwrap().ret, 1);
        // And can be started again.
        assert_eq!(t.call(0, [on, 1, 0x4000_0000, 0]).unwrap().ret, 0);
    }

    #[test]
    fn cpu_on_errors() {
        let mut t = VcpuTable::new(2);
        let on = u64::from(fid::CPU_ON | fid::SMC64);
        assert_eq!(
            t.call(0, [on, 2, 0x1000, 0]).unwrap().ret,
            neg(ret::INVALID_PARAMETERS)
        );
        assert_eq!(
            t.call(0, [on, 0x100, 0x1000, 0]).unwrap().ret,
            neg(ret::INVALID_PARAMETERS)
        );
        assert_eq!(
            t.call(0, [on, 1, 0x1002, 0]).unwrap().ret,
            neg(ret::INVALID_ADDRESS)
        );
        assert_eq!(
            t.call(0, [on, 0, 0x1000, 0]).unwrap().ret,
            neg(ret::ALREADY_ON)
        );
        assert_eq!(t.state(1), Some(VcpuPower::Off));
    }

    #[test]
    fn smc32_arguments_are_truncated() {
        let mut t = VcpuTable::new(2);
        let o = t
            .call(
                0,
                [
                    u64::from(fid::CPU_ON),
                    0xffff_ffff_0000_0001,
                    0x1_4000_0000,
                    7,
                ],
            )
            .unwrap();
        assert_eq!(
            o.action,
            PsciAction::StartVcpu {
                vcpu: 1,
                entry: 0x4000_0000,
                context_id: 7
            }
        );
    }

    #[test]
    fn legacy_xen_ids() {
        let mut t = VcpuTable::new(2);
        let o = t.call(0, [2, 1, 0x4000_0000, 0]).unwrap();
        assert!(matches!(o.action, PsciAction::StartVcpu { vcpu: 1, .. }));
        t.started(1).unwrap();
        let o = t.call(1, [1, 0, 0, 0]).unwrap();
        assert_eq!(o.action, PsciAction::StopVcpu { last: false });
        let o = t.call(0, [1, 0, 0, 0]).unwrap();
        assert_eq!(o.action, PsciAction::StopVcpu { last: true });
        assert!(t.all_off());
    }

    #[test]
    fn system_calls_and_suspend() {
        let mut t = VcpuTable::new(1);
        assert_eq!(
            t.call(0, [u64::from(fid::SYSTEM_OFF), 0, 0, 0])
                .unwrap()
                .action,
            PsciAction::SystemOff
        );
        assert_eq!(
            t.call(0, [u64::from(fid::SYSTEM_RESET), 0, 0, 0])
                .unwrap()
                .action,
            PsciAction::SystemReset
        );
        let o = t
            .call(
                0,
                [u64::from(fid::CPU_SUSPEND | fid::SMC64), 0, 0x4000_0000, 0],
            )
            .unwrap();
        assert_eq!((o.ret, o.action), (0, PsciAction::Wfi));
    }

    #[test]
    fn affinity_levels() {
        let mut t = VcpuTable::new(20);
        // vCPU 17 = cluster 1, core 1.
        assert_eq!(vcpu_mpidr(17), 0x101);
        assert_eq!(mpidr_to_index(0x8000_0101), Some(17));
        let info = u64::from(fid::AFFINITY_INFO | fid::SMC64);
        assert_eq!(t.call(0, [info, 0x101, 0, 0]).unwrap().ret, 1);
        // Level 1: cluster 0 contains vCPU 0, which is on.
        assert_eq!(t.call(0, [info, 0x005, 1, 0]).unwrap().ret, 0);
        // Cluster 1 all off.
        assert_eq!(t.call(0, [info, 0x100, 1, 0]).unwrap().ret, 1);
        // Cluster 2 does not exist.
        assert_eq!(
            t.call(0, [info, 0x200, 1, 0]).unwrap().ret,
            neg(ret::INVALID_PARAMETERS)
        );
        assert_eq!(
            t.call(0, [info, 0, 4, 0]).unwrap().ret,
            neg(ret::INVALID_PARAMETERS)
        );
        t.call(0, [u64::from(fid::CPU_ON | fid::SMC64), 0x103, 0x1000, 0])
            .unwrap();
        assert_eq!(t.call(0, [info, 0x100, 1, 0]).unwrap().ret, 2);
        assert_eq!(t.call(0, [info, 0, 3, 0]).unwrap().ret, 0);
    }

    #[test]
    fn hypervisor_misuse_is_an_error() {
        let mut t = VcpuTable::new(2);
        assert_eq!(t.call(5, [0, 0, 0, 0]), Err(VcpuPowerError::NoSuchVcpu(5)));
        assert!(matches!(
            t.started(1),
            Err(VcpuPowerError::WrongState { vcpu: 1, .. })
        ));
        assert!(t.force_off(9).is_err());
        t.force_off(0).unwrap();
        assert!(t.all_off());
        t.reset();
        assert_eq!(t.state(0), Some(VcpuPower::On));
    }

    fn call_strategy() -> impl Strategy<Value = (usize, [u64; 4])> {
        let fids = prop::sample::select(vec![
            1u64,
            2,
            u64::from(fid::CPU_ON),
            u64::from(fid::CPU_ON | fid::SMC64),
            u64::from(fid::CPU_OFF),
            u64::from(fid::AFFINITY_INFO | fid::SMC64),
            u64::from(fid::CPU_SUSPEND),
            u64::from(fid::PSCI_VERSION),
            0x8400_0042,
        ]);
        (
            0usize..5,
            fids,
            0u64..6,
            prop_oneof![Just(0x4000_0000u64), any::<u64>()],
            0u64..3,
        )
            .prop_map(|(c, f, t, e, l)| (c, [f, t, e, l]))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random calls (plus the binary starting pending vCPUs) keep the
        /// state machine consistent.
        #[test]
        fn random_calls_keep_invariants(
            ops in proptest::collection::vec((call_strategy(), any::<bool>()), 1..64)
        ) {
            let mut t = VcpuTable::new(4);
            for ((caller, x), start_pending) in ops {
                let before = t.clone();
                match t.call(caller, x) {
                    Err(_) => {
                        // Only non-running or nonexistent callers fail, and
                        // they change nothing.
                        prop_assert_ne!(before.state(caller), Some(VcpuPower::On));
                        prop_assert_eq!(&t, &before);
                    }
                    Ok(o) => {
                        match o.action {
                            PsciAction::StartVcpu { vcpu, entry, context_id } => {
                                prop_assert_eq!(before.state(vcpu), Some(VcpuPower::Off));
                                prop_assert_eq!(t.state(vcpu), Some(VcpuPower::OnPending { entry, context_id }));
                                prop_assert_eq!(o.ret, 0);
                            }
                            PsciAction::StopVcpu { last } => {
                                prop_assert_eq!(t.state(caller), Some(VcpuPower::Off));
                                prop_assert_eq!(last, t.all_off());
                            }
                            _ => {
                                // No other call changes any state.
                                prop_assert_eq!(&t, &before);
                            }
                        }
                        // Nobody except the caller and a started target changed.
                        for v in 0..t.len() {
                            if v != caller && !matches!(o.action, PsciAction::StartVcpu { vcpu, .. } if vcpu == v) {
                                prop_assert_eq!(t.state(v), before.state(v));
                            }
                        }
                    }
                }
                if start_pending {
                    for v in 0..t.len() {
                        if matches!(t.state(v), Some(VcpuPower::OnPending { .. })) {
                            t.started(v).unwrap();
                        }
                    }
                }
                // AFFINITY_INFO agrees with the table for every vCPU.
                if let Some(c) = (0..t.len()).find(|&v| t.state(v) == Some(VcpuPower::On)) {
                    for v in 0..t.len() {
                        let mut probe = t.clone();
                        let r = probe.call(c, [u64::from(fid::AFFINITY_INFO), vcpu_mpidr(v), 0, 0]).unwrap().ret as i64;
                        let expect = match t.state(v).unwrap() {
                            VcpuPower::On => affinity::ON,
                            VcpuPower::Off => affinity::OFF,
                            VcpuPower::OnPending { .. } => affinity::ON_PENDING,
                        };
                        prop_assert_eq!(r, expect);
                    }
                }
            }
        }
    }
}
