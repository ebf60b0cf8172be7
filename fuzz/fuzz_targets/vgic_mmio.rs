//! Drives a vGIC with an arbitrary sequence of guest and host operations:
//! MMIO reads and writes anywhere in and around its frames (any width,
//! any vCPU, including out-of-range ones), trapped SGI system-register
//! writes, injections, line changes, hardware mappings and entry/exit
//! rounds with an in-memory list-register file whose contents the "guest"
//! rewrites arbitrarily between flush and sync.
//!
//! Properties: nothing panics; a second domain's vGIC (same model and
//! version) is never affected; list registers only ever hold INTIDs the
//! domain implements, each at most once per vCPU; the two models agree
//! on every MMIO read result for the same operation sequence; and the
//! classic model's direct paths agree with its generic ones
//! (`state::Reference`) on every result and list register.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessel_addr::{AccessSize, GuestPhysAddr};
use tessel_vgic::config::{XEN_GICD_BASE, XEN_GICR_BASE};
use tessel_vgic::classic::Classic;
use tessel_vgic::state::Reference;
use tessel_vgic::{
    Emulator, GicVersion, ListRegisters, LrState, LrStatus, Model, SgiRegister, VcpuId, Vgic,
    VgicConfig, VgicLayout, VirtualGic,
};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Width {
    B,
    H,
    W,
    D,
}

impl Width {
    fn size(self) -> AccessSize {
        match self {
            Self::B => AccessSize::Byte,
            Self::H => AccessSize::Half,
            Self::W => AccessSize::Word,
            Self::D => AccessSize::Double,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Frame {
    Gicd,
    Gicr,
    Anywhere,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Read {
        vcpu: u8,
        frame: Frame,
        off: u32,
        w: Width,
    },
    Write {
        vcpu: u8,
        frame: Frame,
        off: u32,
        w: Width,
        value: u64,
    },
    Sgi {
        vcpu: u8,
        reg: u8,
        value: u64,
    },
    Inject {
        vcpu: u8,
        intid: u16,
    },
    Line {
        vcpu: u8,
        intid: u16,
        level: bool,
    },
    MapHw {
        vcpu: u8,
        virq: u16,
        pintid: u16,
    },
    /// Flush, let the guest scribble over the LRs, sync.
    Round {
        vcpu: u8,
        guest: [u8; 4],
    },
    Maintenance {
        vcpu: u8,
    },
    /// The guest scribbles over the LRs, then the trap-return refresh
    /// (which may take its fast path) runs.
    Refresh {
        vcpu: u8,
        guest: [u8; 4],
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    v3: bool,
    nr_vcpus: u8,
    nr_spis: u16,
    ops: Vec<Op>,
}

struct Lrs {
    regs: [LrState; 4],
}

impl ListRegisters for Lrs {
    fn count(&self) -> usize {
        self.regs.len()
    }
    fn read(&self, i: usize) -> LrState {
        self.regs[i]
    }
    fn write(&mut self, i: usize, lr: LrState) {
        self.regs[i] = lr;
    }
    fn set_underflow_irq(&mut self, _on: bool) {}
}

fn gpa(frame: Frame, off: u32) -> GuestPhysAddr {
    match frame {
        Frame::Gicd => GuestPhysAddr(XEN_GICD_BASE + u64::from(off % 0x1_0000)),
        Frame::Gicr => GuestPhysAddr(XEN_GICR_BASE + u64::from(off % 0x100_0000)),
        Frame::Anywhere => GuestPhysAddr(0x0300_0000 + u64::from(off)),
    }
}

/// What a flush or refresh leaves: only implemented INTIDs, each in at
/// most one list register.
fn check_lrs(lrs: &Lrs, nr_intids: u32) {
    let mut seen = Vec::new();
    for lr in lrs.regs.iter().filter(|l| l.state != LrStatus::Invalid) {
        assert!(lr.intid < nr_intids, "LR holds unimplemented INTID");
        assert!(!seen.contains(&lr.intid), "INTID in two LRs");
        seen.push(lr.intid);
    }
}

/// The guest acks/EOIs/ignores each LR as the bytes say.
fn guest_acts(lrs: &mut Lrs, guest: [u8; 4]) {
    for (lr, b) in lrs.regs.iter_mut().zip(guest) {
        lr.state = match b % 4 {
            0 => lr.state,
            1 => LrStatus::Invalid,
            2 if lr.state != LrStatus::Invalid => LrStatus::Active,
            _ => lr.state,
        };
    }
}

fn apply<G: VirtualGic>(g: &mut G, op: Op, all_lrs: &mut [Lrs]) -> Option<u64> {
    let nr_intids = 32 + g.nr_spis() as u32;
    match op {
        Op::Read {
            vcpu,
            frame,
            off,
            w,
        } => {
            return g
                .mmio_read(VcpuId(vcpu.into()), gpa(frame, off), w.size())
                .ok();
        }
        Op::Write {
            vcpu,
            frame,
            off,
            w,
            value,
        } => {
            let _ = g.mmio_write(VcpuId(vcpu.into()), gpa(frame, off), w.size(), value);
        }
        Op::Sgi { vcpu, reg, value } => {
            let reg = match reg % 3 {
                0 => SgiRegister::Sgi1r,
                1 => SgiRegister::Asgi1r,
                _ => SgiRegister::Sgi0r,
            };
            let _ = g.sysreg_sgi(VcpuId(vcpu.into()), reg, value);
        }
        Op::Inject { vcpu, intid } => {
            let _ = g.inject(VcpuId(vcpu.into()), intid.into());
        }
        Op::Line { vcpu, intid, level } => {
            let _ = g.set_line(VcpuId(vcpu.into()), intid.into(), level);
        }
        Op::MapHw { vcpu, virq, pintid } => {
            let _ = g.map_hw(VcpuId(vcpu.into()), virq.into(), pintid.into());
        }
        Op::Round { vcpu, guest } => {
            let lrs = &mut all_lrs[usize::from(vcpu) % all_lrs.len()];
            let v = VcpuId(vcpu.into());
            if g.flush(v, lrs).is_ok() {
                check_lrs(lrs, nr_intids);
                guest_acts(lrs, guest);
                g.sync(v, lrs).expect("sync after a successful flush");
            }
        }
        Op::Refresh { vcpu, guest } => {
            let lrs = &mut all_lrs[usize::from(vcpu) % all_lrs.len()];
            guest_acts(lrs, guest);
            if g.refresh(VcpuId(vcpu.into()), lrs).is_ok() {
                check_lrs(lrs, nr_intids);
            }
        }
        Op::Maintenance { vcpu } => {
            let lrs = &mut all_lrs[usize::from(vcpu) % all_lrs.len()];
            let _ = g.maintenance(VcpuId(vcpu.into()), lrs);
        }
    }
    None
}

fuzz_target!(|input: Input| {
    let version = if input.v3 {
        GicVersion::V3
    } else {
        GicVersion::V2
    };
    let max = if input.v3 { 20 } else { 8 };
    let nr_vcpus = usize::from(input.nr_vcpus % max) + 1;
    let nr_spis = usize::from(input.nr_spis % 97);
    let cfg = VgicConfig::new(
        version,
        VgicLayout::xen_virtual(version, nr_vcpus),
        nr_vcpus,
        nr_spis,
    );
    let mut classic = Vgic::new(Model::Classic, cfg.clone()).unwrap();
    let mut perirq = Vgic::new(Model::PerIrq, cfg.clone()).unwrap();
    let mut reference = Emulator::<Reference<Classic>>::new(cfg.clone()).unwrap();
    let bystander = Vgic::new(Model::Classic, cfg.clone()).unwrap();
    let bystander2 = Vgic::new(Model::PerIrq, cfg).unwrap();
    let before = (bystander.state_digest(), bystander2.state_digest());
    // One set of list registers per vCPU, as each pinned vCPU has its
    // own physical CPU interface.
    let new_lrs = || -> Vec<Lrs> {
        (0..nr_vcpus)
            .map(|_| Lrs {
                regs: [LrState::INVALID; 4],
            })
            .collect()
    };
    let (mut l1, mut l2, mut l3) = (new_lrs(), new_lrs(), new_lrs());
    for op in input.ops.iter().take(256) {
        let a = apply(&mut classic, *op, &mut l1);
        let b = apply(&mut perirq, *op, &mut l2);
        assert_eq!(a, b, "models disagree on {op:?}");
        let c = apply(&mut reference, *op, &mut l3);
        assert_eq!(a, c, "direct and generic paths disagree on {op:?}");
        assert!(
            l1.iter().zip(&l3).all(|(x, y)| x.regs == y.regs),
            "direct and generic paths fill different LRs after {op:?}"
        );
        assert_eq!(classic.take_kicks(), reference.take_kicks());
    }
    assert_eq!(
        classic.state_digest(),
        reference.state_digest(),
        "direct and generic paths left different states"
    );
    assert_eq!(
        (bystander.state_digest(), bystander2.state_digest()),
        before,
        "another domain's vGIC changed"
    );
});
