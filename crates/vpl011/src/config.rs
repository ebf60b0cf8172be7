//! Where a domain's vPL011 lives and which interrupt it raises.
//!
//! An ordinary domain gets Xen's virtual UART: 4 KiB at guest-physical
//! 0x2200_0000 (GUEST_PL011_BASE) raising SPI 32 (GUEST_VPL011_SPI). A
//! direct-mapped (1:1) domain instead sees it at the host console UART's
//! address and interrupt, so nothing in its guest-physical map collides with
//! the host layout it shares. The physical UART itself is never mapped into
//! the guest: every access to that page traps and is emulated.

use core::fmt;

use tessel_addr::{Address, GuestPhysAddr, GuestRange, HostRange, PAGE_SIZE};

use crate::regs::FRAME_SIZE;

/// Guest-physical base of the virtual UART of an ordinary domain
/// (GUEST_PL011_BASE in Xen's public/arch-arm.h).
pub const GUEST_PL011_BASE: GuestPhysAddr = GuestPhysAddr(0x2200_0000);
/// Interrupt of the virtual UART of an ordinary domain (GUEST_VPL011_SPI).
pub const GUEST_VPL011_SPI: u32 = 32;
/// First SPI INTID (GIC Architecture Specification IHI 0069, 2.2.1).
const SPI_FIRST: u32 = 32;
/// Last SPI INTID (IHI 0069, 2.2.1; 1020-1023 are special).
const SPI_LAST: u32 = 1019;

/// Why a direct-mapped domain cannot get a vPL011 at the host UART.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigError {
    /// The host UART's MMIO region is under 4 KiB, so trapping its page
    /// would also trap whatever device shares that page.
    UartTooSmall {
        /// The host UART's region.
        uart: HostRange,
    },
    /// The host UART's base is not page-aligned, so its frame cannot be
    /// trapped on its own.
    UartMisaligned {
        /// The host UART's region.
        uart: HostRange,
    },
    /// The host UART's interrupt is not an SPI (32..=1019), so it cannot be
    /// the vPL011's interrupt.
    NotAnSpi {
        /// The INTID found for the host UART.
        irq: u32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UartTooSmall { uart } => write!(
                f,
                "vpl011: host console UART at {uart} is smaller than 4 KiB; a direct-mapped domain's vPL011 needs a whole page"
            ),
            Self::UartMisaligned { uart } => write!(
                f,
                "vpl011: host console UART at {uart} is not page-aligned; a direct-mapped domain's vPL011 needs a whole page"
            ),
            Self::NotAnSpi { irq } => write!(
                f,
                "vpl011: host console UART interrupt {irq} is not an SPI (32..=1019)"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Placement of one domain's vPL011.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vpl011Config {
    /// Guest-physical base of the 4 KiB register frame.
    pub base: GuestPhysAddr,
    /// INTID of the SPI the UART raises (also its vIRQ on the vGIC).
    pub spi: u32,
}

impl Vpl011Config {
    /// The virtual UART of an ordinary domain: 0x2200_0000, SPI 32.
    pub const VIRTUAL: Self = Self {
        base: GUEST_PL011_BASE,
        spi: GUEST_VPL011_SPI,
    };

    /// The vPL011 of a direct-mapped domain, at the host console UART's
    /// address (`uart`, from its `reg`) raising the host UART's interrupt
    /// (`irq`, an INTID). The region must be page-aligned and at least 4 KiB.
    pub fn direct_mapped(uart: HostRange, irq: u32) -> Result<Self, ConfigError> {
        if uart.size < FRAME_SIZE {
            return Err(ConfigError::UartTooSmall { uart });
        }
        if !uart.start.is_aligned(PAGE_SIZE) {
            return Err(ConfigError::UartMisaligned { uart });
        }
        if !(SPI_FIRST..=SPI_LAST).contains(&irq) {
            return Err(ConfigError::NotAnSpi { irq });
        }
        Ok(Self {
            base: GuestPhysAddr::identity(uart.start),
            spi: irq,
        })
    }

    /// The guest-physical range the hypervisor traps (4 KiB).
    pub fn range(&self) -> GuestRange {
        GuestRange::new(self.base, FRAME_SIZE)
    }

    /// The register offset of `addr` if it falls in the frame.
    pub fn offset_of(&self, addr: GuestPhysAddr) -> Option<u64> {
        if self.range().contains(addr) {
            addr.offset_from(self.base)
        } else {
            None
        }
    }

    /// The smallest `nr_spis` a domain needs to own this interrupt
    /// (Xen rule: at least `spi - 32 + 1`).
    pub fn min_nr_spis(&self) -> u32 {
        self.spi.saturating_sub(SPI_FIRST) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessel_addr::HostPhysAddr;

    #[test]
    fn ordinary_domain_uses_xen_virtual_layout() {
        let c = Vpl011Config::VIRTUAL;
        assert_eq!(c.base, GuestPhysAddr(0x2200_0000));
        assert_eq!(c.spi, 32);
        assert_eq!(c.offset_of(GuestPhysAddr(0x2200_0018)), Some(0x18));
        assert_eq!(c.offset_of(GuestPhysAddr(0x2200_1000)), None);
        assert_eq!(c.min_nr_spis(), 1);
    }

    #[test]
    fn direct_map_reuses_host_uart() {
        let uart = HostRange::new(HostPhysAddr(0x0900_0000), 0x1000);
        let c = Vpl011Config::direct_mapped(uart, 33).unwrap();
        assert_eq!(c.base, GuestPhysAddr(0x0900_0000));
        assert_eq!(c.spi, 33);
        assert_eq!(c.min_nr_spis(), 2);
    }

    #[test]
    fn direct_map_refuses_small_or_odd_uarts() {
        let small = HostRange::new(HostPhysAddr(0xff01_0000), 0x100);
        let e = Vpl011Config::direct_mapped(small, 54).unwrap_err();
        assert_eq!(e, ConfigError::UartTooSmall { uart: small });
        assert_eq!(
            std::format!("{e}"),
            "vpl011: host console UART at 0xff010000+0x100 is smaller than 4 KiB; a direct-mapped domain's vPL011 needs a whole page"
        );
        let odd = HostRange::new(HostPhysAddr(0xff01_0800), 0x1000);
        assert_eq!(
            Vpl011Config::direct_mapped(odd, 54),
            Err(ConfigError::UartMisaligned { uart: odd })
        );
        let ok = HostRange::new(HostPhysAddr(0x0900_0000), 0x1000);
        assert_eq!(
            Vpl011Config::direct_mapped(ok, 27),
            Err(ConfigError::NotAnSpi { irq: 27 })
        );
        assert_eq!(
            Vpl011Config::direct_mapped(ok, 1020),
            Err(ConfigError::NotAnSpi { irq: 1020 })
        );
    }
}
