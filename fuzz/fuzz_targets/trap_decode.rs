//! Guest traps end to end through tessel-trap: arbitrary ESR_EL2, HPFAR_EL2,
//! FAR_EL2 and register values are decoded, data aborts are turned into MMIO
//! accesses and emulated against a registry of arbitrary regions backed by a
//! plain register file, and HVCs are handed to the PSCI state machine.
//!
//! Properties: nothing panics; the exception class round-trips; a data
//! abort's decoded fields re-encode to its ISS; an access is emulatable
//! exactly when the syndrome says so, at the IPA HPFAR/FAR give, and its
//! load and store values keep to the access width, sign and register size;
//! the MMIO registry agrees with a linear scan and never lets an access run
//! past its region; PSCI keeps the caller's and target's power states
//! consistent with its outcomes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessel_addr::{GuestPhysAddr, GuestRange};
use tessel_trap::esr::{self, FaultStatus, XZR};
use tessel_trap::psci::{fid, ret};
use tessel_trap::{
    DataAbort, Exception, ExceptionClass, MmioRegions, PsciAction, VcpuPower, VcpuTable,
};

#[derive(Arbitrary, Debug)]
struct Trap {
    esr: u64,
    hpfar: u64,
    far: u64,
    /// x0..x3 (PSCI arguments) and the transfer register's value.
    x: [u64; 4],
    xt: u64,
    /// Value the emulated device returns for a load.
    device: u64,
    caller: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    regions: Vec<(u32, u16)>,
    nvcpus: u8,
    traps: Vec<Trap>,
}

/// Bits of a data-abort ISS that `DataAbort` decodes.
const DA_ISS_BITS: u32 = (1 << 24)
    | (0b11 << 22)
    | (1 << 21)
    | (0x1f << 16)
    | (1 << 15)
    | (1 << 14)
    | (1 << 13)
    | (1 << 10)
    | (1 << 9)
    | (1 << 8)
    | (1 << 7)
    | (1 << 6)
    | 0x3f;

fn fsc_raw(f: FaultStatus) -> u8 {
    match f {
        FaultStatus::AddressSize(l) => l,
        FaultStatus::Translation(l) => 0x04 | l,
        FaultStatus::AccessFlag(l) => 0x08 | l,
        FaultStatus::Permission(l) => 0x0c | l,
        FaultStatus::SyncExternal => 0x10,
        FaultStatus::Alignment => 0x21,
        FaultStatus::TlbConflict => 0x30,
        FaultStatus::Other(v) => v,
    }
}

fn encode(d: &DataAbort) -> u32 {
    let b = |v: bool, bit: u32| u32::from(v) << bit;
    b(d.isv, 24)
        | (u32::from(d.sas) << 22)
        | b(d.sse, 21)
        | (u32::from(d.srt) << 16)
        | b(d.sf, 15)
        | b(d.ar, 14)
        | b(d.vncr, 13)
        | b(d.fnv, 10)
        | b(d.ea, 9)
        | b(d.cm, 8)
        | b(d.s1ptw, 7)
        | b(d.wnr, 6)
        | u32::from(fsc_raw(d.dfsc))
}

/// Emulates one data abort against the regions and a register file.
fn data_abort(t: &Trap, iss: u32, regions: &MmioRegions<usize>, regs: &mut [u64]) {
    let da = DataAbort::from_iss(iss);
    assert_eq!(encode(&da), iss & DA_ISS_BITS, "{da:?}");
    let emulatable = da.isv
        && !da.fnv
        && !da.s1ptw
        && !da.cm
        && matches!(
            da.dfsc,
            FaultStatus::Translation(_) | FaultStatus::AccessFlag(_)
        );
    let access = match da.mmio_access(t.hpfar, t.far) {
        Ok(a) => a,
        Err(e) => {
            assert!(!emulatable, "refused {da:?}: {e}");
            let _ = e.to_string();
            return;
        }
    };
    assert!(emulatable, "accepted {da:?}");
    assert_eq!(access.ipa, esr::fault_ipa(t.hpfar, t.far));
    assert_eq!(access.ipa.0 & 0xfff, t.far & 0xfff);
    assert_eq!(access.ipa.0 >> 12, (t.hpfar >> 4) & ((1 << 44) - 1));
    assert_eq!(access.size.bytes(), 1 << da.sas);
    assert_eq!(access.write, da.wnr);
    assert_eq!(access.reg, da.srt);

    let len = access.size.bytes();
    let found = regions.lookup_access(access.ipa, len);
    // Model: the one region containing the IPA, if the access fits in it.
    let model = regions
        .iter()
        .find(|(r, _)| r.contains(access.ipa))
        .filter(|(r, _)| {
            u128::from(access.ipa.0) + u128::from(len) <= u128::from(r.start.0) + u128::from(r.size)
        })
        .map(|(r, d)| (*d, access.ipa.0 - r.start.0));
    assert_eq!(found.map(|(d, off)| (*d, off)), model);
    let Some((&dev, off)) = found else { return };
    assert!(off + len <= regions.iter().nth(dev).map_or(u64::MAX, |(r, _)| r.size));
    let slot = &mut regs[dev % regs.len()];

    if access.write {
        let v = access.store_value(t.xt);
        assert!(v <= access.size.mask());
        if access.is_zero_register() {
            assert_eq!(v, 0);
        } else {
            assert_eq!(v, t.xt & access.size.mask());
        }
        *slot = v;
    } else {
        let raw = t.device ^ *slot;
        match access.load_value(raw) {
            None => assert_eq!(access.reg, XZR),
            Some(v) => {
                assert_ne!(access.reg, XZR);
                let mask = access.size.mask();
                let reg_mask = if access.sixty_four {
                    u64::MAX
                } else {
                    0xffff_ffff
                };
                assert_eq!(v & mask & reg_mask, raw & mask & reg_mask, "low bits kept");
                assert_eq!(v & !reg_mask, 0, "Wt upper half not zero");
                let bits = len * 8;
                if bits < 64 {
                    let sign = raw >> (bits - 1) & 1 == 1;
                    let high = v & !mask & reg_mask;
                    if access.sign_extend && sign {
                        assert_eq!(high, !mask & reg_mask, "not sign-extended");
                    } else {
                        assert_eq!(high, 0, "extended without SSE");
                    }
                }
            }
        }
    }
}

fn psci(t: &Trap, table: &mut VcpuTable) {
    let caller = usize::from(t.caller) % (table.len() + 1);
    let before = table.clone();
    let out = match table.call(caller, t.x) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.to_string();
            assert_ne!(before.state(caller), Some(VcpuPower::On));
            assert_eq!(*table, before, "failed call changed state");
            return;
        }
    };
    assert_eq!(before.state(caller), Some(VcpuPower::On));
    match out.action {
        PsciAction::StartVcpu {
            vcpu,
            entry,
            context_id,
        } => {
            assert_eq!(out.ret, ret::SUCCESS as u64);
            assert_eq!(before.state(vcpu), Some(VcpuPower::Off));
            assert_eq!(
                table.state(vcpu),
                Some(VcpuPower::OnPending { entry, context_id })
            );
            assert_eq!(entry & 3, 0);
            table.started(vcpu).expect("pending vCPU starts");
        }
        PsciAction::StopVcpu { last } => {
            assert_eq!(table.state(caller), Some(VcpuPower::Off));
            assert_eq!(last, table.all_off());
        }
        PsciAction::SystemReset => table.reset(),
        PsciAction::SystemOff | PsciAction::Wfi | PsciAction::None => {
            assert_eq!(*table, before, "{:#x} changed power states", t.x[0]);
        }
    }
    if t.x[0] as u32 == fid::PSCI_VERSION {
        assert_eq!(out.ret, 0x1_0001);
    }
}

fuzz_target!(|input: Input| {
    let mut regions = MmioRegions::new();
    let mut accepted: Vec<GuestRange> = Vec::new();
    for (i, &(page, pages)) in input.regions.iter().take(16).enumerate() {
        let r = GuestRange::new(GuestPhysAddr(u64::from(page) << 12), u64::from(pages) << 8);
        let clash = r.is_empty() || accepted.iter().any(|a| a.overlaps(&r));
        assert_eq!(regions.register(r, i).is_ok(), !clash);
        if !clash {
            accepted.push(r);
        }
    }
    // Device handles become indices into the sorted region list.
    let mut indexed = MmioRegions::new();
    for (i, (r, _)) in regions.iter().enumerate() {
        indexed
            .register(*r, i)
            .expect("re-registering disjoint regions");
    }
    let mut regs = vec![0u64; accepted.len().max(1)];
    let mut table = VcpuTable::new(usize::from(input.nvcpus % 64));

    for t in input.traps.iter().take(64) {
        let syn = esr::Syndrome::from_raw(t.esr);
        assert_eq!(syn.ec.raw(), ((t.esr >> 26) & 0x3f) as u8);
        assert_eq!(ExceptionClass::from_raw(syn.ec.raw()), syn.ec);
        assert_eq!(syn.iss, (t.esr & 0x1ff_ffff) as u32);
        assert!(matches!(syn.instr_len(), 2 | 4));
        match esr::decode(t.esr) {
            Exception::DataAbortLower(da) => {
                assert_eq!(da, DataAbort::from_iss(syn.iss));
                data_abort(t, syn.iss, &indexed, &mut regs);
            }
            Exception::Hvc64 { imm } => {
                assert_eq!(u32::from(imm), syn.iss & 0xffff);
                psci(t, &mut table);
            }
            Exception::SysReg(s) => {
                assert_eq!(syn.ec, ExceptionClass::SysReg);
                let _ = s.id.to_string();
            }
            Exception::Other(o) => assert_eq!(o, syn),
            _ => {}
        }
    }
});
