//! The integrated BM PHY of the 82574L (an 88E1149-style 10/100/1000
//! copper PHY) behind MDIC (datasheet §10.2.2.5 and §8.1 of the PHY
//! register chapter): IEEE registers 0–15 on every page, vendor registers
//! 16–31 per page (page select in register 22).
//!
//! The link partner is always there and always agrees on 1000 Mb/s full
//! duplex: auto-negotiation completes at once. The link is down while the
//! PHY is powered down (BMCR.PDOWN) or the host side has no carrier; PHY
//! loopback (BMCR.LOOPBACK) forces it up.

use std::collections::BTreeMap;

/// The PHY's MDIO address.
pub const ADDRESS: u32 = 1;
/// PHY identifier 1 (Marvell OUI).
pub const ID1: u16 = 0x0141;
/// PHY identifier 2 (BME1000 revision 2).
pub const ID2: u16 = 0x0cb1;

/// Basic Mode Control.
pub const BMCR: u32 = 0;
/// Basic Mode Status.
pub const BMSR: u32 = 1;
/// Page select (BM PHY).
pub const PAGE_SELECT: u32 = 22;

/// BMCR bits.
pub mod bmcr {
    /// Restart auto-negotiation (self-clearing).
    pub const ANRESTART: u16 = 1 << 9;
    /// Isolate.
    pub const ISOLATE: u16 = 1 << 10;
    /// Power down.
    pub const PDOWN: u16 = 1 << 11;
    /// Loopback.
    pub const LOOPBACK: u16 = 1 << 14;
    /// Reset (self-clearing).
    pub const RESET: u16 = 1 << 15;
}

/// BMSR with link and auto-negotiation complete.
const BMSR_UP: u16 = 0x796d;
/// BMSR without link.
const BMSR_DOWN: u16 = 0x7949;
/// Highest page kept (pages above read 0 and ignore writes).
const MAX_PAGE: u16 = 1023;

/// Reset values of page-independent registers 0–15 (0 for unlisted).
fn ieee_reset(reg: u32) -> u16 {
    match reg {
        0 => 0x1140,
        2 => ID1,
        3 => ID2,
        4 => 0x0de1,
        7 => 0x2001,
        9 => 0x0300,
        15 => 0x3000,
        _ => 0,
    }
}

/// The PHY's registers.
#[derive(Clone, Debug)]
pub struct Phy {
    ieee: [u16; 16],
    page: u16,
    /// Registers 16–31 by (page, register).
    paged: BTreeMap<(u16, u8), u16>,
}

impl Default for Phy {
    fn default() -> Self {
        Self::new()
    }
}

impl Phy {
    /// A PHY after power-on.
    pub fn new() -> Self {
        let mut ieee = [0u16; 16];
        for (r, v) in ieee.iter_mut().enumerate() {
            *v = ieee_reset(r as u32);
        }
        Self {
            ieee,
            page: 0,
            paged: BTreeMap::new(),
        }
    }

    /// BMCR.
    pub fn bmcr(&self) -> u16 {
        self.ieee[0]
    }

    /// Whether the PHY loops transmitted frames back.
    pub fn loopback(&self) -> bool {
        self.bmcr() & bmcr::LOOPBACK != 0
    }

    /// Whether the link is up, given the host side's carrier.
    pub fn link(&self, carrier: bool) -> bool {
        let b = self.bmcr();
        if b & (bmcr::PDOWN | bmcr::ISOLATE) != 0 {
            return false;
        }
        carrier || self.loopback()
    }

    /// Reads register `reg` (0–31) with the host side's `carrier`.
    pub fn read(&self, reg: u32, carrier: bool) -> u16 {
        let up = self.link(carrier);
        match reg {
            BMSR if up => BMSR_UP,
            BMSR => BMSR_DOWN,
            5 if up => 0x45e1,
            10 if up => 0x3c00,
            5 | 10 => 0,
            6 => 0x000f,
            0..=15 => self.ieee[reg as usize],
            PAGE_SELECT => self.page,
            17 if self.page == 0 && up => 0xac00,
            17 if self.page == 0 => 0,
            16..=31 => self
                .paged
                .get(&(self.page, reg as u8))
                .copied()
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// Writes register `reg` (0–31); read-only registers ignore it.
    pub fn write(&mut self, reg: u32, value: u16) {
        match reg {
            BMCR => {
                let mut v = value & !(bmcr::RESET | bmcr::ANRESTART);
                if value & bmcr::RESET != 0 {
                    // A software reset keeps the configured bits, as the
                    // BM PHY applies its pending settings on reset.
                    v &= !bmcr::PDOWN;
                }
                self.ieee[0] = v;
            }
            4 | 7 | 9 => self.ieee[reg as usize] = value,
            PAGE_SELECT => self.page = value.min(MAX_PAGE + 1),
            16..=31 if self.page <= MAX_PAGE && !(self.page == 0 && reg == 17) => {
                self.paged.insert((self.page, reg as u8), value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_phy_id_is_bme1000_r2() {
        let p = Phy::new();
        assert_eq!(
            u32::from(p.read(2, true)) << 16 | u32::from(p.read(3, true)),
            0x0141_0cb1
        );
    }

    #[test]
    fn test_phy_power_down_drops_link() {
        let mut p = Phy::new();
        assert_ne!(p.read(BMSR, true) & 4, 0);
        p.write(BMCR, 0x1140 | bmcr::PDOWN);
        assert_eq!(p.read(BMSR, true) & 4, 0);
        p.write(BMCR, 0x1140);
        assert_ne!(p.read(BMSR, true) & 0x24, 0);
    }

    #[test]
    fn test_phy_reset_and_restart_self_clear() {
        let mut p = Phy::new();
        p.write(BMCR, 0x1140 | bmcr::RESET | bmcr::ANRESTART);
        assert_eq!(p.bmcr(), 0x1140);
    }

    #[test]
    fn test_phy_paged_registers_are_per_page() {
        let mut p = Phy::new();
        p.write(PAGE_SELECT, 769);
        p.write(16, 0x44);
        p.write(PAGE_SELECT, 2);
        assert_eq!(p.read(16, true), 0);
        p.write(PAGE_SELECT, 769);
        assert_eq!(p.read(16, true), 0x44);
    }

    #[test]
    fn test_phy_page_out_of_range_ignores_writes() {
        let mut p = Phy::new();
        p.write(PAGE_SELECT, 0xffff);
        p.write(20, 5);
        assert_eq!(p.read(20, true), 0);
    }
}
