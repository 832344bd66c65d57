//! A type 0 (endpoint) configuration space header (PCI Local Bus 3.0 §6.1,
//! PCIe 6.0 §7.5.1.2) with its registers as data, and the consequences of a
//! guest write returned as a value.

use crate::bar::{BarError, BarSpec, TYPE0_BARS};
use crate::header::{self, CommonState};
use crate::regs::{MaskError, RegisterMask};

/// Size of a PCIe function's configuration space.
pub const CONFIG_SPACE_SIZE: usize = 4096;

/// Command register offset.
pub const COMMAND: usize = 0x04;
/// Status register offset.
pub const STATUS: usize = 0x06;
const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
const SUBSYSTEM_ID: usize = 0x2e;
/// Expansion ROM base address register of a type 0 header.
pub const EXPANSION_ROM: usize = 0x30;
const HEADER_TYPE_ENDPOINT: u8 = 0x00;

/// Command register bits (PCI 3.0 §6.2.2).
pub mod command {
    /// I/O space decoding.
    pub const IO: u16 = 1 << 0;
    /// Memory space decoding.
    pub const MEMORY: u16 = 1 << 1;
    /// The function may master the bus (DMA, MSI).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// Parity error response.
    pub const PARITY: u16 = 1 << 6;
    /// SERR# enable.
    pub const SERR: u16 = 1 << 8;
    /// INTx emulation disabled.
    pub const INTX_DISABLE: u16 = 1 << 10;
    /// Every bit an endpoint implements.
    pub const WRITABLE: u16 = IO | MEMORY | BUS_MASTER | PARITY | SERR | INTX_DISABLE;
}

/// Status register bits (PCI 3.0 §6.2.3).
pub mod status {
    /// An INTx interrupt is pending.
    pub const INTERRUPT: u16 = 1 << 3;
    /// A capability list is present.
    pub const CAPABILITIES: u16 = 1 << 4;
    /// The error bits, each cleared by writing 1.
    pub const W1C: u16 = (1 << 8) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15);
}

/// Who the function is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code: base class, sub-class, programming interface (24 bits).
    pub class: u32,
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// Why a header could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A BAR is invalid.
    #[error(transparent)]
    Bar(#[from] BarError),
    /// A register mask is invalid (a bug in a device model).
    #[error(transparent)]
    Mask(#[from] MaskError),
}

/// A BAR's decoded window: where it is and how large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarWindow {
    /// Guest-physical (or I/O port) address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A BAR whose decoded window changed with a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarChange {
    /// BAR index.
    pub index: usize,
    /// Whether it is an I/O BAR.
    pub io: bool,
    /// The window before the write (`None`: not decoding).
    pub old: Option<BarWindow>,
    /// The window after it.
    pub new: Option<BarWindow>,
}

/// What a configuration write changed that the VMM must act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigWriteEffects {
    /// BAR windows that moved, appeared or disappeared.
    pub bars: Vec<BarChange>,
    /// New bus-master state, if it changed.
    pub bus_master: Option<bool>,
    /// New INTx-disable state, if it changed.
    pub intx_disabled: Option<bool>,
    /// Forwarding changes of a bridge (type 1 header); empty for type 0.
    pub bridge: crate::type1::BridgeWriteEffects,
    /// What changed in a physical function's SR-IOV capability (VFs
    /// enabled or disabled, VF memory decoding, VF BARs moved).
    pub sriov: Option<crate::caps::sriov::SriovEffect>,
    /// What a write to a hot-plug root port's Slot Control commanded (slot
    /// power switched, indicators), if anything changed.
    pub slot: Option<crate::caps::slot::SlotWriteEffects>,
}

/// A type 0 configuration space: a function's own header, or an SR-IOV
/// virtual function's ([`Type0Config::virtual_function`], `vf.rs`), whose
/// BARs are its PF's to place.
#[derive(Clone, Debug)]
pub struct Type0Config {
    pub(crate) regs: RegisterMask,
    pub(crate) bars: Vec<BarSpec>,
    /// A VF's BAR windows, as its PF's SR-IOV capability places them;
    /// `None` for a function that decodes its own BARs.
    pub(crate) vf_windows: Option<Vec<(BarSpec, Option<BarWindow>)>>,
}

impl Type0Config {
    /// A header for `id` with `bars` and interrupt pin `pin` (0: none, 1–4: INTA–INTD).
    pub fn new(id: Identity, bars: &[BarSpec], pin: u8) -> Result<Self, ConfigError> {
        let mut regs = RegisterMask::new(CONFIG_SPACE_SIZE);
        header::install_common(&mut regs, &id, HEADER_TYPE_ENDPOINT, pin)?;
        regs.set_value(SUBSYSTEM_VENDOR_ID, 2, id.subsystem_vendor.into())?;
        regs.set_value(SUBSYSTEM_ID, 2, id.subsystem.into())?;
        header::install_bars(&mut regs, bars, TYPE0_BARS)?;
        Ok(Self {
            regs,
            bars: bars.to_vec(),
            vf_windows: None,
        })
    }

    /// Gives the function an expansion ROM BAR (offset 0x30) of `size` bytes
    /// (a power of two, at least 2 KiB), sized and placed by the guest like a
    /// memory BAR (PCI 3.0 §6.2.5.2). Without one the register reads 0.
    /// Only the register is modelled: no iovm device ships a ROM image, so
    /// the window is never mapped.
    pub fn with_expansion_rom(mut self, size: u32) -> Result<Self, ConfigError> {
        self.regs
            .set_masks(EXPANSION_ROM, 4, crate::bar::rom_writable_mask(size)?, 0)?;
        Ok(self)
    }

    /// Reads config space as the guest sees it.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        self.regs.read(offset, data);
    }

    /// The register block, for capability models ([`crate::caps`]) that keep
    /// their state in configuration space.
    pub fn regs(&self) -> &RegisterMask {
        &self.regs
    }

    /// The register block, mutable: for laying out capabilities and for
    /// device-side changes to their registers. Guest writes go through
    /// [`Type0Config::write`].
    pub fn regs_mut(&mut self) -> &mut RegisterMask {
        &mut self.regs
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        header::command(&self.regs)
    }

    /// The decoded window of every BAR, given the command register (for a
    /// VF: as its PF last placed them).
    pub fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        match &self.vf_windows {
            Some(windows) => windows.clone(),
            None => header::decoded_bar_windows(&self.regs, &self.bars),
        }
    }

    /// Applies a guest write and says what changed.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let before = CommonState::of(&self.regs, &self.bars);
        self.regs.write(offset, data);
        before.effects(&CommonState::of(&self.regs, &self.bars))
    }

    /// Sets or clears the status register's interrupt bit (the device's INTx state).
    pub fn set_interrupt_status(&mut self, pending: bool) {
        let cur = self.regs.read_le(STATUS, 2) as u16;
        let new = if pending {
            cur | status::INTERRUPT
        } else {
            cur & !status::INTERRUPT
        };
        self.regs.set_value(STATUS, 2, new.into()).ok();
    }

    /// Raises status error bits (e.g. "received master abort") from the device side.
    pub fn raise_status(&mut self, bits: u16) {
        self.regs.device_set(STATUS, 2, bits.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::BarKind;

    fn id() -> Identity {
        Identity {
            vendor: 0x1b36,
            device: 0x0010,
            class: 0x01_08_02,
            revision: 2,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        }
    }

    fn cfg() -> Type0Config {
        let bars = [
            BarSpec {
                index: 0,
                kind: BarKind::Mem64 {
                    prefetchable: false,
                },
                size: 0x4000,
            },
            BarSpec {
                index: 2,
                kind: BarKind::Io,
                size: 0x20,
            },
        ];
        Type0Config::new(id(), &bars, 1).unwrap()
    }

    #[test]
    fn test_expansion_rom_sizes_like_a_memory_bar_and_keeps_enable() {
        let mut c = cfg().with_expansion_rom(0x8000).unwrap();
        let mut plain = cfg();

        c.write(EXPANSION_ROM, &0xffff_fffeu32.to_le_bytes());
        let sized = read32(&c, EXPANSION_ROM);
        c.write(EXPANSION_ROM, &0xfebc_0001u32.to_le_bytes());
        let placed = read32(&c, EXPANSION_ROM);
        plain.write(EXPANSION_ROM, &u32::MAX.to_le_bytes());

        assert_eq!(sized, 0xffff_8000, "32 KiB, Enable clear");
        assert_eq!(placed, 0xfebc_0001);
        assert_eq!(read32(&plain, EXPANSION_ROM), 0, "no ROM: reads 0");
        assert!(cfg().with_expansion_rom(0x400).is_err(), "below 2 KiB");
        assert!(
            cfg().with_expansion_rom(0x3000).is_err(),
            "not a power of two"
        );
    }

    fn read32(c: &Type0Config, off: usize) -> u32 {
        let mut d = [0u8; 4];
        c.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn test_identity_registers() {
        let c = cfg();
        assert_eq!(read32(&c, 0), 0x0010_1b36);
        assert_eq!(read32(&c, 8), 0x0108_0202);
        assert_eq!(read32(&c, 0x2c), 0x1100_1af4);
        assert_eq!(read32(&c, 0x3c) >> 8 & 0xff, 1, "INTA");
    }

    #[test]
    fn test_identity_is_read_only() {
        let mut c = cfg();
        c.write(0, &[0xff; 4]);
        c.write(8, &[0xff; 4]);
        assert_eq!(read32(&c, 0), 0x0010_1b36);
        assert_eq!(read32(&c, 8), 0x0108_0202);
    }

    #[test]
    fn test_bar_sizing_reads_back_size_mask() {
        let mut c = cfg();
        c.write(0x10, &[0xff; 4]);
        c.write(0x14, &[0xff; 4]);
        assert_eq!(
            read32(&c, 0x10),
            0xffff_c004,
            "64-bit, non-prefetchable, 16 KiB"
        );
        assert_eq!(read32(&c, 0x14), 0xffff_ffff);
        c.write(0x18, &[0xff; 4]);
        assert_eq!(read32(&c, 0x18), 0xffff_ffe1, "I/O, 32 bytes");
        assert_eq!(read32(&c, 0x1c), 0, "BAR 3 is not implemented");
    }

    #[test]
    fn test_bar_move_is_reported_only_while_decoding() {
        let mut c = cfg();
        let e = c.write(0x10, &0xfebf_0000u32.to_le_bytes());
        assert!(e.bars.is_empty(), "memory decoding is off");
        let e = c.write(COMMAND, &command::MEMORY.to_le_bytes());
        assert_eq!(
            e.bars,
            vec![BarChange {
                index: 0,
                io: false,
                old: None,
                new: Some(BarWindow {
                    addr: 0xfebf_0000,
                    size: 0x4000
                })
            }]
        );
        let e = c.write(0x14, &1u32.to_le_bytes());
        assert_eq!(e.bars[0].new.unwrap().addr, 0x1_febf_0000);
        let e = c.write(COMMAND, &0u16.to_le_bytes());
        assert_eq!(e.bars[0].new, None);
    }

    #[test]
    fn test_command_bits_and_effects() {
        let mut c = cfg();
        let e = c.write(COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), command::WRITABLE);
        assert_eq!(e.bus_master, Some(true));
        assert_eq!(e.intx_disabled, Some(true));
        assert_eq!(e.bars.len(), 2, "both BARs start decoding at address 0");
        let e = c.write(COMMAND, &command::WRITABLE.to_le_bytes());
        assert_eq!(e, ConfigWriteEffects::default());
    }

    #[test]
    fn test_status_error_bits_are_write_one_to_clear() {
        let mut c = cfg();
        c.raise_status(1 << 13);
        c.set_interrupt_status(true);
        c.write(STATUS, &0u16.to_le_bytes());
        assert_eq!(
            read32(&c, 4) >> 16,
            (1 << 13) | u32::from(status::INTERRUPT)
        );
        c.write(STATUS, &0xffffu16.to_le_bytes());
        assert_eq!(
            read32(&c, 4) >> 16,
            u32::from(status::INTERRUPT),
            "interrupt bit is read-only"
        );
    }

    #[test]
    fn test_overlapping_bars_are_refused() {
        let bars = [
            BarSpec {
                index: 0,
                kind: BarKind::Mem64 {
                    prefetchable: false,
                },
                size: 0x1000,
            },
            BarSpec {
                index: 1,
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
                size: 0x1000,
            },
        ];
        assert!(matches!(
            Type0Config::new(id(), &bars, 0),
            Err(ConfigError::Bar(BarError::Overlap { index: 1 }))
        ));
    }

    #[test]
    fn test_hostile_offsets_and_sizes_do_not_panic() {
        let mut c = cfg();
        c.write(CONFIG_SPACE_SIZE - 1, &[0xff; 8]);
        c.write(usize::MAX, &[1]);
        let mut d = [0u8; 8];
        c.read(CONFIG_SPACE_SIZE - 2, &mut d);
        assert_eq!(d, [0; 8]);
    }
}
