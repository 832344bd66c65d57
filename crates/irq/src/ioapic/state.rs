//! The IOAPIC's guest-visible state as plain data, apart from the port its
//! messages leave by, so it can be saved, restored and built hostile in tests.

use super::regs::{self, RedirectionEntry, Register};
use super::{IoapicConfig, IoapicError};

/// Everything the guest can observe of the IOAPIC, and the input pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoapicState {
    /// APIC ID (IOAPICID bits 27..24; 4 bits).
    pub id: u8,
    /// IOREGSEL: the index IOWIN shows.
    pub ioregsel: u8,
    /// The redirection table, one entry per pin.
    pub redirection: Vec<RedirectionEntry>,
    /// Electrical level of each input pin (`true` = high), before the
    /// entry's polarity is applied.
    pub input_levels: Vec<bool>,
}

impl IoapicState {
    /// The state after reset: every entry masked, every input low.
    pub fn new(config: &IoapicConfig) -> Result<Self, IoapicError> {
        check_pins(config.pins)?;
        Ok(Self {
            id: config.id & 0x0F,
            ioregsel: 0,
            redirection: vec![RedirectionEntry::RESET; config.pins],
            input_levels: vec![false; config.pins],
        })
    }

    /// The state reduced to what the hardware can hold: a 4-bit ID, entries
    /// without reserved or inconsistent read-only bits. Fails only when the
    /// tables have an impossible or mismatched length.
    pub fn sanitized(mut self) -> Result<Self, IoapicError> {
        check_pins(self.redirection.len())?;
        if self.input_levels.len() != self.redirection.len() {
            return Err(IoapicError::StateMismatch {
                entries: self.redirection.len(),
                levels: self.input_levels.len(),
            });
        }
        self.id &= 0x0F;
        for entry in &mut self.redirection {
            *entry = entry.sanitized();
        }
        Ok(self)
    }

    /// Number of input pins.
    pub fn pins(&self) -> usize {
        self.redirection.len()
    }

    /// Whether `pin`'s input is asserted: its level, inverted for an
    /// active-low entry. `false` for a pin out of range.
    pub fn asserted(&self, pin: usize) -> bool {
        match (self.input_levels.get(pin), self.redirection.get(pin)) {
            (Some(&level), Some(entry)) => level != entry.active_low(),
            _ => false,
        }
    }

    /// What IOWIN reads when IOREGSEL holds `index`.
    pub fn read_register(&self, index: u8) -> u32 {
        match Register::decode(index, self.pins()) {
            Some(Register::Id | Register::Arbitration) => u32::from(self.id & 0x0F) << 24,
            Some(Register::Version) => version_register(self.pins()),
            Some(Register::Redirection { pin, high }) => self.redirection[pin].dword(high),
            None => regs::UNDEFINED_READ,
        }
    }
}

/// IOAPICVER's value for an IOAPIC with `pins` pins (1..=MAX_PINS).
fn version_register(pins: usize) -> u32 {
    let max_entry = u32::try_from(pins.saturating_sub(1)).unwrap_or(0) & 0xFF;
    u32::from(regs::VERSION) | (max_entry << 16)
}

fn check_pins(pins: usize) -> Result<(), IoapicError> {
    if (1..=regs::MAX_PINS).contains(&pins) {
        Ok(())
    } else {
        Err(IoapicError::PinCount {
            pins,
            max: regs::MAX_PINS,
        })
    }
}
