//! The devices the guest drives: a PL011/SBSA UART and the GIC (v2: GICD +
//! GICC; v3: GICD + GICR + ICC system registers).

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{read_sysreg, write_sysreg};
use tessel_test_guest::fdt::GicInfo;

/// 32-bit MMIO read.
pub fn mmio_read32(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: callers pass device addresses from the guest's DTB (or, in
    // the hostile and forbidden checks, addresses whose faults the sync
    // handler swallows); the access has no Rust-visible aliasing.
    // A plain `ldr` with a base register only: the compiler may otherwise
    // pick a write-back addressing mode, which leaves ESR_EL2.ISV clear and
    // cannot be emulated by a hypervisor (Arm ARM D17.2.40, "ISV").
    unsafe {
        core::arch::asm!("ldr {v:w}, [{a}]", v = out(reg) v, a = in(reg) addr,
            options(nostack, preserves_flags));
    }
    v
}

/// 32-bit MMIO write.
pub fn mmio_write32(addr: u64, v: u32) {
    // SAFETY: as for `mmio_read32`.
    // Base-register-only `str` for the same reason as in `mmio_read32`.
    unsafe {
        core::arch::asm!("str {v:w}, [{a}]", v = in(reg) v, a = in(reg) addr,
            options(nostack, preserves_flags));
    }
}

/// MMIO access of any width (1, 2, 4, 8 bytes) for the hostile guest.
pub fn mmio_any(addr: u64, width: u8, write: bool, v: u64) -> u64 {
    // SAFETY: as for `mmio_read32`; unaligned or bad-width accesses may
    // fault and are swallowed by the hostile-mode sync handler.
    unsafe {
        match (width, write) {
            (1, false) => u64::from(core::ptr::read_volatile(addr as *const u8)),
            (2, false) => u64::from(core::ptr::read_volatile(addr as *const u16)),
            (4, false) => u64::from(core::ptr::read_volatile(addr as *const u32)),
            (_, false) => core::ptr::read_volatile(addr as *const u64),
            (1, true) => {
                core::ptr::write_volatile(addr as *mut u8, v as u8);
                0
            }
            (2, true) => {
                core::ptr::write_volatile(addr as *mut u16, v as u16);
                0
            }
            (4, true) => {
                core::ptr::write_volatile(addr as *mut u32, v as u32);
                0
            }
            (_, true) => {
                core::ptr::write_volatile(addr as *mut u64, v);
                0
            }
        }
    }
}

/// PL011 registers (PrimeCell UART PL011 TRM DDI 0183, 3.2): data register.
const UARTDR: u64 = 0x000;
/// Flag register.
const UARTFR: u64 = 0x018;
/// UARTFR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;

static UART_BASE: AtomicU64 = AtomicU64::new(0);

/// Console writer over the UART found in the DTB.
pub struct Uart;

impl Uart {
    /// Sets the UART base.
    pub fn init(base: u64) {
        UART_BASE.store(base, Ordering::Relaxed);
    }

    fn putc(b: u8) {
        let base = UART_BASE.load(Ordering::Relaxed);
        if base == 0 {
            return;
        }
        let mut spins = 0u32;
        while mmio_read32(base + UARTFR) & FR_TXFF != 0 && spins < 1_000_000 {
            spins += 1;
        }
        mmio_write32(base + UARTDR, u32::from(b));
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                Self::putc(b'\r');
            }
            Self::putc(b);
        }
        Ok(())
    }
}

/// GICD_CTLR (IHI 0048B 4.3.1 / IHI 0069 12.9.4).
const GICD_CTLR: u64 = 0x000;
/// `GICD_ISENABLER<n>` (IHI 0048B 4.3.5).
const GICD_ISENABLER: u64 = 0x100;
/// `GICD_IPRIORITYR<n>` (IHI 0048B 4.3.11).
const GICD_IPRIORITYR: u64 = 0x400;
/// GICD_SGIR (IHI 0048B 4.3.15): GICv2 SGI generation.
const GICD_SGIR: u64 = 0xf00;
/// GICC_CTLR, GICC_PMR, GICC_IAR, GICC_EOIR (IHI 0048B 4.4).
const GICC_CTLR: u64 = 0x00;
const GICC_PMR: u64 = 0x04;
const GICC_IAR: u64 = 0x0c;
const GICC_EOIR: u64 = 0x10;
/// GICD_CTLR.RWP (IHI 0069 12.9.4).
const GICD_CTLR_RWP: u32 = 1 << 31;
/// GICD_CTLR ARE_NS | EnableGrp1A | EnableGrp1 (IHI 0069 12.9.4).
const GICD_CTLR_V3_ENABLE: u32 = (1 << 4) | (1 << 1) | 1;
/// GICR_TYPER (IHI 0069 12.11.35), GICR_WAKER (12.11.38).
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICR_TYPER.Last.
const GICR_TYPER_LAST: u64 = 1 << 4;
/// One redistributor: RD_base + SGI_base frames (IHI 0069 12.10).
const GICR_STRIDE: u64 = 0x2_0000;
/// SGI_base frame offset and its registers (IHI 0069 12.11).
const GICR_SGI_BASE: u64 = 0x1_0000;
const GICR_IGROUPR0: u64 = 0x0080;
const GICR_ISENABLER0: u64 = 0x0100;
const GICR_IPRIORITYR: u64 = 0x0400;

/// Interrupt IDs in use.
pub const TEST_SGI: u32 = 3;
/// Virtual timer PPI (Xen's GUEST_TIMER_VIRT_PPI, QEMU's as well).
pub const VTIMER_PPI: u32 = 27;
/// Spurious interrupt ID.
pub const SPURIOUS: u32 = 1023;

/// The guest's GIC driver.
#[derive(Clone, Copy, Debug)]
pub struct Gic {
    /// Description from the DTB.
    pub info: GicInfo,
    /// This CPU's redistributor (v3).
    pub gicr: u64,
}

impl Gic {
    /// Initializes the distributor and this CPU's interface; enables the
    /// test SGI and the virtual timer PPI.
    pub fn init(info: GicInfo) -> Result<Self, &'static str> {
        let mut gic = Gic { info, gicr: 0 };
        let mask = (1u32 << TEST_SGI) | (1u32 << VTIMER_PPI);
        if info.version == 2 {
            mmio_write32(info.gicd + GICD_CTLR, 1);
            mmio_write32(info.gicd + GICD_IPRIORITYR, 0xa0a0_a0a0);
            mmio_write32(
                info.gicd + GICD_IPRIORITYR + 4 * (VTIMER_PPI as u64 / 4),
                0xa0a0_a0a0,
            );
            mmio_write32(info.gicd + GICD_ISENABLER, mask);
            mmio_write32(info.second + GICC_PMR, 0xf0);
            mmio_write32(info.second + GICC_CTLR, 1);
        } else {
            // System register interface first (ICC_SRE_EL1.SRE).
            let sre = read_sysreg!("S3_0_C12_C12_5");
            write_sysreg!("S3_0_C12_C12_5", sre | 1);
            mmio_write32(info.gicd + GICD_CTLR, GICD_CTLR_V3_ENABLE);
            let _ = crate::arch::wait_for(100, || {
                mmio_read32(info.gicd + GICD_CTLR) & GICD_CTLR_RWP == 0
            });
            gic.gicr = Self::find_redistributor(&info).ok_or("no redistributor for this CPU")?;
            let waker = mmio_read32(gic.gicr + GICR_WAKER);
            mmio_write32(gic.gicr + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
            let _ = crate::arch::wait_for(100, || {
                mmio_read32(gic.gicr + GICR_WAKER) & WAKER_CHILDREN_ASLEEP == 0
            });
            let sgi = gic.gicr + GICR_SGI_BASE;
            mmio_write32(sgi + GICR_IGROUPR0, u32::MAX);
            mmio_write32(sgi + GICR_IPRIORITYR, 0xa0a0_a0a0);
            mmio_write32(
                sgi + GICR_IPRIORITYR + 4 * (VTIMER_PPI as u64 / 4),
                0xa0a0_a0a0,
            );
            mmio_write32(sgi + GICR_ISENABLER0, mask);
            // ICC_PMR_EL1, ICC_IGRPEN1_EL1.
            write_sysreg!("S3_0_C4_C6_0", 0xf0);
            write_sysreg!("S3_0_C12_C12_7", 1);
        }
        Ok(gic)
    }

    fn find_redistributor(info: &GicInfo) -> Option<u64> {
        let me = crate::arch::mpidr();
        // GICR_TYPER.Affinity_Value [63:32] = Aff3.Aff2.Aff1.Aff0.
        let want = ((me >> 32) & 0xff) << 24 | (me & 0xff_ffff);
        let frames = (info.second_size / GICR_STRIDE).max(1);
        for i in 0..frames {
            let rd = info.second + i * GICR_STRIDE;
            let lo = u64::from(mmio_read32(rd + GICR_TYPER));
            let hi = u64::from(mmio_read32(rd + GICR_TYPER + 4));
            if hi == want {
                return Some(rd);
            }
            if lo & GICR_TYPER_LAST != 0 {
                break;
            }
        }
        None
    }

    /// Sends the test SGI to this CPU.
    pub fn self_sgi(&self) {
        if self.info.version == 2 {
            // TargetListFilter = 0b10: "this CPU only".
            mmio_write32(self.info.gicd + GICD_SGIR, (0b10 << 24) | TEST_SGI);
        } else {
            let m = crate::arch::mpidr();
            let aff0 = m & 0xff;
            let v = (1u64 << (aff0 & 0xf))
                | (((m >> 8) & 0xff) << 16)
                | (u64::from(TEST_SGI) << 24)
                | (((m >> 16) & 0xff) << 32)
                | ((aff0 >> 4) << 44)
                | (((m >> 32) & 0xff) << 48);
            // ICC_SGI1R_EL1 (IHI 0069 12.2.22).
            write_sysreg!("S3_0_C12_C11_5", v);
        }
    }

    /// Acknowledges the highest-priority pending interrupt.
    pub fn ack(&self) -> u32 {
        if self.info.version == 2 {
            mmio_read32(self.info.second + GICC_IAR) & 0x3ff
        } else {
            // ICC_IAR1_EL1.
            (read_sysreg!("S3_0_C12_C12_0") & 0xff_ffff) as u32
        }
    }

    /// Ends an interrupt.
    pub fn eoi(&self, intid: u32) {
        if self.info.version == 2 {
            mmio_write32(self.info.second + GICC_EOIR, intid);
        } else {
            // ICC_EOIR1_EL1.
            write_sysreg!("S3_0_C12_C12_1", u64::from(intid));
        }
    }
}
