//! A type 1 (PCI-to-PCI bridge) configuration space header (PCI-to-PCI
//! Bridge Architecture 1.2 §3.2, PCIe 6.0 §7.5.1.3) with its registers as
//! data, the address windows it forwards, and the consequences of a guest
//! write returned as a value.
//!
//! ```text
//!  0x00 Device ID | Vendor ID          0x04 Status | Command
//!  0x08 Class 06/04/00 | Revision      0x0C BIST | Header 01 | Prim. lat. | Cache line
//!  0x10 BAR 0                          0x14 BAR 1
//!  0x18 Sec. lat. | Subordinate | Secondary | Primary bus
//!  0x1C Secondary Status | I/O Limit | I/O Base
//!  0x20 Memory Limit | Memory Base     0x24 Pref. Limit | Pref. Base
//!  0x28 Pref. Base Upper 32            0x2C Pref. Limit Upper 32
//!  0x30 I/O Limit Upper 16 | I/O Base Upper 16
//!  0x34 Capabilities Pointer           0x38 Expansion ROM Base
//!  0x3C Bridge Control | Int. Pin | Int. Line
//! ```
//!
//! Windows: I/O in 4 KiB units (16- or 32-bit), memory in 1 MiB units below
//! 4 GiB, prefetchable memory in 1 MiB units anywhere in 64 bits. A window
//! whose base is above its limit is closed; every window also needs the
//! matching Command decode bit. At reset every window is closed.
//!
//! | Hostile guest write                       | What happens                          |
//! |-------------------------------------------|---------------------------------------|
//! | IDs, class, header type, cap pointer      | read-only: ignored                    |
//! | window type nibbles, reserved bits        | read-only: ignored                    |
//! | I/O upper 16 bits on a 16-bit bridge      | read-only zero                        |
//! | base above limit, overlapping windows     | window closed / reported as written   |
//! | bus numbers in any order                  | stored; routing follows them live     |
//! | secondary status error bits               | writing 1 clears, 0 leaves            |
//! | Secondary Bus Reset                       | reported to the VMM as an effect      |

use std::ops::RangeInclusive;

use crate::bar::BarSpec;
use crate::config::{
    command, status, BarWindow, ConfigError, ConfigWriteEffects, Identity, CONFIG_SPACE_SIZE,
    STATUS,
};
use crate::header::{self, bit_change, CommonState};
use crate::regs::RegisterMask;

/// BAR registers in a type 1 header.
pub const TYPE1_BARS: usize = 2;
/// Class code of a PCI-to-PCI bridge: bridge, PCI-to-PCI, normal decode.
pub const CLASS_PCI_BRIDGE: u32 = 0x06_04_00;

/// Register offsets of the type 1 header.
pub mod reg {
    /// Vendor ID.
    pub const VENDOR_ID: usize = 0x00;
    /// Device ID.
    pub const DEVICE_ID: usize = 0x02;
    /// Revision ID.
    pub const REVISION_ID: usize = 0x08;
    /// Class code (3 bytes).
    pub const CLASS_CODE: usize = 0x09;
    /// Cache Line Size.
    pub const CACHE_LINE_SIZE: usize = 0x0c;
    /// Primary Latency Timer.
    pub const PRIMARY_LATENCY: usize = 0x0d;
    /// Header Type.
    pub const HEADER_TYPE: usize = 0x0e;
    /// Primary Bus Number.
    pub const PRIMARY_BUS: usize = 0x18;
    /// Secondary Bus Number.
    pub const SECONDARY_BUS: usize = 0x19;
    /// Subordinate Bus Number.
    pub const SUBORDINATE_BUS: usize = 0x1a;
    /// Secondary Latency Timer.
    pub const SECONDARY_LATENCY: usize = 0x1b;
    /// I/O Base (8 bits).
    pub const IO_BASE: usize = 0x1c;
    /// I/O Limit (8 bits).
    pub const IO_LIMIT: usize = 0x1d;
    /// Secondary Status.
    pub const SECONDARY_STATUS: usize = 0x1e;
    /// Memory Base.
    pub const MEM_BASE: usize = 0x20;
    /// Memory Limit.
    pub const MEM_LIMIT: usize = 0x22;
    /// Prefetchable Memory Base.
    pub const PREF_BASE: usize = 0x24;
    /// Prefetchable Memory Limit.
    pub const PREF_LIMIT: usize = 0x26;
    /// Prefetchable Base Upper 32 Bits.
    pub const PREF_BASE_UPPER: usize = 0x28;
    /// Prefetchable Limit Upper 32 Bits.
    pub const PREF_LIMIT_UPPER: usize = 0x2c;
    /// I/O Base Upper 16 Bits.
    pub const IO_BASE_UPPER: usize = 0x30;
    /// I/O Limit Upper 16 Bits.
    pub const IO_LIMIT_UPPER: usize = 0x32;
    /// Expansion ROM Base Address.
    pub const ROM: usize = 0x38;
    /// Interrupt Line.
    pub const INTERRUPT_LINE: usize = 0x3c;
    /// Interrupt Pin.
    pub const INTERRUPT_PIN: usize = 0x3d;
    /// Bridge Control.
    pub const BRIDGE_CONTROL: usize = 0x3e;
}

/// Bridge Control bits (Bridge 1.2 §3.2.5.18, PCIe 6.0 §7.5.1.3.13).
pub mod bridge_control {
    /// Parity Error Response Enable.
    pub const PARITY: u16 = 1 << 0;
    /// SERR# Enable.
    pub const SERR: u16 = 1 << 1;
    /// ISA Enable: do not forward the top 768 bytes of each 1 KiB of the
    /// first 64 KiB of I/O space.
    pub const ISA: u16 = 1 << 2;
    /// VGA Enable: forward the legacy VGA memory and I/O ranges.
    pub const VGA: u16 = 1 << 3;
    /// VGA 16-bit decode (else 10-bit, with aliases).
    pub const VGA16: u16 = 1 << 4;
    /// Master Abort Mode (conventional PCI only).
    pub const MASTER_ABORT: u16 = 1 << 5;
    /// Secondary Bus Reset.
    pub const SECONDARY_BUS_RESET: u16 = 1 << 6;
}

/// Secondary Status bits (Bridge 1.2 §3.2.5.7).
pub mod secondary_status {
    /// Error bits, each cleared by writing 1: master data parity error,
    /// signalled/received target abort, received master abort, received
    /// system error, detected parity error.
    pub const W1C: u16 = (1 << 8) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15);
}

const IO_TYPE_32: u8 = 0x01;
const PREF_TYPE_64: u16 = 0x0001;
const HEADER_TYPE_BRIDGE: u8 = 0x01;
const MULTI_FUNCTION: u8 = 0x80;

/// How a type 1 header is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type1Spec {
    /// Vendor, device, class and revision. Type 1 has no subsystem ID
    /// registers (0x2C is a window register), so those fields are unused.
    pub identity: Identity,
    /// PCIe flavour: latency timers and Master Abort Mode read-only zero
    /// (PCIe 6.0 §7.5.1.3); else conventional PCI where they are writable.
    pub pcie: bool,
    /// 32-bit I/O decode (upper 16-bit registers writable); else 16-bit.
    pub io32: bool,
    /// Set the multi-function bit of Header Type.
    pub multi_function: bool,
    /// BARs 0 and 1 (usually none).
    pub bars: Vec<BarSpec>,
    /// Size of the expansion ROM (a power of two ≥ 2 KiB), if any.
    pub rom_size: Option<u32>,
    /// Interrupt pin, 0 (none) or 1–4 (INTA–INTD).
    pub pin: u8,
}

/// The bus numbers a bridge was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusNumbers {
    /// The bus the bridge is on.
    pub primary: u8,
    /// The bus directly behind it.
    pub secondary: u8,
    /// The highest bus behind it.
    pub subordinate: u8,
}

/// Which forwarding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// I/O ports.
    Io,
    /// Non-prefetchable memory below 4 GiB.
    Memory,
    /// Prefetchable memory, 64-bit.
    Prefetchable,
}

/// A forwarding window that opened, closed or moved with a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowChange {
    /// Which window.
    pub kind: WindowKind,
    /// Addresses forwarded before the write (`None`: closed).
    pub old: Option<RangeInclusive<u64>>,
    /// Addresses forwarded after it.
    pub new: Option<RangeInclusive<u64>>,
}

/// What a write to a type 1 header changed of the bridge's forwarding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeWriteEffects {
    /// Windows that opened, closed or moved.
    pub windows: Vec<WindowChange>,
    /// The new bus numbers, if any changed.
    pub bus_numbers: Option<BusNumbers>,
    /// Secondary Bus Reset asserted (`true`) or released, if it changed:
    /// the VMM resets every function behind the bridge on assertion.
    pub secondary_bus_reset: Option<bool>,
    /// VGA Enable, if it changed (legacy VGA ranges forwarded).
    pub vga: Option<bool>,
    /// ISA Enable, if it changed.
    pub isa: Option<bool>,
}

impl BridgeWriteEffects {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A type 1 configuration space.
#[derive(Clone, Debug)]
pub struct Type1Config {
    regs: RegisterMask,
    bars: Vec<BarSpec>,
    io32: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Forwarding {
    io: Option<RangeInclusive<u64>>,
    mem: Option<RangeInclusive<u64>>,
    pref: Option<RangeInclusive<u64>>,
    buses: BusNumbers,
    control: u16,
}

impl Type1Config {
    /// A header as `spec` says, windows closed, bus numbers 0.
    pub fn new(spec: &Type1Spec) -> Result<Self, ConfigError> {
        let id = &spec.identity;
        let mut regs = RegisterMask::new(CONFIG_SPACE_SIZE);
        let header = HEADER_TYPE_BRIDGE
            | if spec.multi_function {
                MULTI_FUNCTION
            } else {
                0
            };
        header::install_common(&mut regs, id, header, spec.pin)?;
        regs.set_masks(reg::PRIMARY_BUS, 3, 0xff_ffff, 0)?;
        if !spec.pcie {
            regs.set_masks(reg::PRIMARY_LATENCY, 1, 0xff, 0)?;
            regs.set_masks(reg::SECONDARY_LATENCY, 1, 0xff, 0)?;
        }

        // Windows: base above limit, i.e. closed.
        let io_type = if spec.io32 { IO_TYPE_32 } else { 0 };
        regs.set_value(reg::IO_BASE, 1, (0xf0 | io_type).into())?;
        regs.set_value(reg::IO_LIMIT, 1, io_type.into())?;
        regs.set_masks(reg::IO_BASE, 2, 0xf0f0, 0)?;
        if spec.io32 {
            regs.set_masks(reg::IO_BASE_UPPER, 4, 0xffff_ffff, 0)?;
        }
        regs.set_masks(reg::SECONDARY_STATUS, 2, 0, secondary_status::W1C.into())?;
        regs.set_value(reg::MEM_BASE, 2, 0xfff0)?;
        regs.set_masks(reg::MEM_BASE, 4, 0xfff0_fff0, 0)?;
        regs.set_value(reg::PREF_BASE, 2, (0xfff0 | PREF_TYPE_64).into())?;
        regs.set_value(reg::PREF_LIMIT, 2, PREF_TYPE_64.into())?;
        regs.set_masks(reg::PREF_BASE, 4, 0xfff0_fff0, 0)?;
        regs.set_value(reg::PREF_BASE_UPPER, 4, 0xffff_ffff)?;
        regs.set_masks(reg::PREF_BASE_UPPER, 8, u64::MAX, 0)?;

        if let Some(size) = spec.rom_size {
            regs.set_masks(reg::ROM, 4, crate::bar::rom_writable_mask(size)?, 0)?;
        }
        let mut bc = bridge_control::PARITY
            | bridge_control::SERR
            | bridge_control::ISA
            | bridge_control::VGA
            | bridge_control::VGA16
            | bridge_control::SECONDARY_BUS_RESET;
        if !spec.pcie {
            bc |= bridge_control::MASTER_ABORT;
        }
        regs.set_masks(reg::BRIDGE_CONTROL, 2, bc.into(), 0)?;
        header::install_bars(&mut regs, &spec.bars, TYPE1_BARS)?;
        Ok(Self {
            regs,
            bars: spec.bars.clone(),
            io32: spec.io32,
        })
    }

    /// Reads config space as the guest sees it.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        self.regs.read(offset, data);
    }

    /// The register block, for capability models.
    pub fn regs(&self) -> &RegisterMask {
        &self.regs
    }

    /// The register block, mutable: for laying out capabilities and
    /// device-side changes. Guest writes go through [`Type1Config::write`].
    pub fn regs_mut(&mut self) -> &mut RegisterMask {
        &mut self.regs
    }

    fn get(&self, offset: usize, len: usize) -> u64 {
        self.regs.read_le(offset, len)
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        header::command(&self.regs)
    }

    /// The Bridge Control register.
    pub fn bridge_control(&self) -> u16 {
        self.get(reg::BRIDGE_CONTROL, 2) as u16
    }

    /// Primary, secondary and subordinate bus numbers as programmed.
    pub fn bus_numbers(&self) -> BusNumbers {
        let b = self.get(reg::PRIMARY_BUS, 4);
        BusNumbers {
            primary: b as u8,
            secondary: (b >> 8) as u8,
            subordinate: (b >> 16) as u8,
        }
    }

    /// Buses whose configuration cycles the bridge forwards
    /// (secondary..=subordinate; empty when subordinate < secondary).
    pub fn bus_range(&self) -> RangeInclusive<u8> {
        let b = self.bus_numbers();
        b.secondary..=b.subordinate
    }

    /// The I/O window as programmed, ignoring the command register.
    pub fn io_range(&self) -> Option<RangeInclusive<u64>> {
        let upper = |off| {
            if self.io32 {
                self.get(off, 2) << 16
            } else {
                0
            }
        };
        let base = upper(reg::IO_BASE_UPPER) | ((self.get(reg::IO_BASE, 1) & 0xf0) << 8);
        let limit = upper(reg::IO_LIMIT_UPPER) | ((self.get(reg::IO_LIMIT, 1) & 0xf0) << 8) | 0xfff;
        (base <= limit).then_some(base..=limit)
    }

    /// The non-prefetchable memory window as programmed.
    pub fn mem_range(&self) -> Option<RangeInclusive<u64>> {
        let base = (self.get(reg::MEM_BASE, 2) & 0xfff0) << 16;
        let limit = ((self.get(reg::MEM_LIMIT, 2) & 0xfff0) << 16) | 0xf_ffff;
        (base <= limit).then_some(base..=limit)
    }

    /// The prefetchable memory window as programmed.
    pub fn pref_range(&self) -> Option<RangeInclusive<u64>> {
        let base = (self.get(reg::PREF_BASE_UPPER, 4) << 32)
            | ((self.get(reg::PREF_BASE, 2) & 0xfff0) << 16);
        let limit = (self.get(reg::PREF_LIMIT_UPPER, 4) << 32)
            | ((self.get(reg::PREF_LIMIT, 2) & 0xfff0) << 16)
            | 0xf_ffff;
        (base <= limit).then_some(base..=limit)
    }

    /// The window of `kind` that is forwarded now (open and decoding enabled).
    pub fn window(&self, kind: WindowKind) -> Option<RangeInclusive<u64>> {
        let cmd = self.command();
        match kind {
            WindowKind::Io => self.io_range().filter(|_| cmd & command::IO != 0),
            WindowKind::Memory => self.mem_range().filter(|_| cmd & command::MEMORY != 0),
            WindowKind::Prefetchable => self.pref_range().filter(|_| cmd & command::MEMORY != 0),
        }
    }

    /// Whether an I/O access to `port` on the primary side is forwarded to
    /// the secondary side: the I/O window (less the ISA aliases when ISA
    /// Enable is set) or, with VGA Enable, the VGA ports.
    pub fn forwards_io(&self, port: u64) -> bool {
        if self.command() & command::IO == 0 {
            return false;
        }
        let bc = self.bridge_control();
        if bc & bridge_control::VGA != 0 && is_vga_port(port, bc & bridge_control::VGA16 != 0) {
            return true;
        }
        let isa_alias = bc & bridge_control::ISA != 0 && port < 0x1_0000 && port & 0x300 != 0;
        !isa_alias && self.io_range().is_some_and(|w| w.contains(&port))
    }

    /// Whether a memory access to `addr` on the primary side is forwarded:
    /// either memory window or, with VGA Enable, 0xA0000–0xBFFFF.
    pub fn forwards_mem(&self, addr: u64) -> bool {
        if self.command() & command::MEMORY == 0 {
            return false;
        }
        let vga = self.bridge_control() & bridge_control::VGA != 0
            && (0xa_0000..=0xb_ffff).contains(&addr);
        vga || [self.mem_range(), self.pref_range()]
            .iter()
            .flatten()
            .any(|w| w.contains(&addr))
    }

    /// Whether the bridge forwards every address of `window` (I/O ports
    /// when `io`) from its primary to its secondary side: that space is
    /// enabled in the command register and one window holds the whole
    /// range (PCI-to-PCI Bridge 1.2 §4.1: a transaction is forwarded when
    /// it falls inside a base/limit window). VGA and ISA ranges are not
    /// considered: BARs are never placed by those rules.
    pub fn forwards_range(&self, io: bool, window: BarWindow) -> bool {
        let Some(last) = window
            .size
            .checked_sub(1)
            .and_then(|s| window.addr.checked_add(s))
        else {
            return false;
        };
        let holds = |w: &RangeInclusive<u64>| w.contains(&window.addr) && w.contains(&last);
        if io {
            self.window(WindowKind::Io).is_some_and(|w| holds(&w))
        } else {
            [
                self.window(WindowKind::Memory),
                self.window(WindowKind::Prefetchable),
            ]
            .iter()
            .flatten()
            .any(holds)
        }
    }

    /// The decoded window of every BAR, given the command register.
    pub fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        header::decoded_bar_windows(&self.regs, &self.bars)
    }

    fn forwarding(&self) -> Forwarding {
        Forwarding {
            io: self.window(WindowKind::Io),
            mem: self.window(WindowKind::Memory),
            pref: self.window(WindowKind::Prefetchable),
            buses: self.bus_numbers(),
            control: self.bridge_control(),
        }
    }

    /// Applies a guest write and says what changed.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let before_common = CommonState::of(&self.regs, &self.bars);
        let before = self.forwarding();
        self.regs.write(offset, data);
        let mut effects = before_common.effects(&CommonState::of(&self.regs, &self.bars));
        let after = self.forwarding();

        let windows = [
            (WindowKind::Io, before.io, after.io),
            (WindowKind::Memory, before.mem, after.mem),
            (WindowKind::Prefetchable, before.pref, after.pref),
        ]
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(kind, old, new)| WindowChange { kind, old, new })
        .collect();
        let control = |bit: u16| bit_change(before.control, after.control, bit);
        effects.bridge = BridgeWriteEffects {
            windows,
            bus_numbers: (before.buses != after.buses).then_some(after.buses),
            secondary_bus_reset: control(bridge_control::SECONDARY_BUS_RESET),
            vga: control(bridge_control::VGA),
            isa: control(bridge_control::ISA),
        };
        effects
    }

    /// Sets or clears Status' Interrupt Status bit (the bridge's own INTx
    /// state, PCI Local Bus 3.0 §6.2.3).
    pub fn set_interrupt_status(&mut self, pending: bool) {
        let cur = self.get(STATUS, 2) as u16;
        let new = if pending {
            cur | status::INTERRUPT
        } else {
            cur & !status::INTERRUPT
        };
        self.regs.set_value(STATUS, 2, new.into()).ok();
    }

    /// Raises Status error bits (primary side) from the device side.
    pub fn raise_status(&mut self, bits: u16) {
        self.regs.device_set(STATUS, 2, (bits & status::W1C).into());
    }

    /// Raises Secondary Status error bits (e.g. a master abort on the
    /// secondary bus) from the device side.
    pub fn raise_secondary_status(&mut self, bits: u16) {
        self.regs.device_set(
            reg::SECONDARY_STATUS,
            2,
            (bits & secondary_status::W1C).into(),
        );
    }
}

/// The legacy VGA I/O ports 0x3B0–0x3BB and 0x3C0–0x3DF; with 10-bit
/// decode their aliases in the first 64 KiB as well.
fn is_vga_port(port: u64, decode16: bool) -> bool {
    if port >= 0x1_0000 {
        return false;
    }
    let p = if decode16 { port } else { port & 0x3ff };
    (0x3b0..=0x3bb).contains(&p) || (0x3c0..=0x3df).contains(&p)
}

#[cfg(test)]
mod tests;
