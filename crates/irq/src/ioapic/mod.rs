//! The I/O APIC the guest programs itself: an Intel 82093AA (datasheet
//! 290566) with the EOI register of version 0x20 IOAPICs, in user space, for
//! KVM's split irqchip.
//!
//! Pins carry device interrupts in ([`Ioapic::set_irq`]); each pin's
//! redirection entry (§3.2.4) turns an interrupt into a message to the local
//! APICs, sent through an [`MsiSink`] in the MSI format
//! ([`crate::msi::ApicMessage`]). The guest reaches the registers through a
//! small MMIO window ([`Ioapic::mmio_read`], [`Ioapic::mmio_write`]):
//!
//! ```text
//! offset 0x00  IOREGSEL  index of the register IOWIN shows (8 bits)
//! offset 0x10  IOWIN     32-bit window: 0x00 IOAPICID, 0x01 IOAPICVER,
//!                        0x02 IOAPICARB, 0x10 + 2n / 0x11 + 2n pin n's entry
//! offset 0x40  EOI       write a vector: its level-triggered entries' Remote
//!                        IRR is cleared (version 0x20)
//! ```
//!
//! Edge-triggered pins send on a rising edge of the asserted input when
//! unmasked; an edge on a masked pin is lost (§3.2.4, mask bit). A
//! level-triggered pin is a small state machine:
//!
//! ```text
//!              asserted, unmasked, Remote IRR clear: send the message
//!   ┌──────┐ ─────────────────────────────────────────────▶ ┌────────────┐
//!   │ idle │                                                │ in service │
//!   └──────┘ ◀───────────────────────────────────────────── │ Remote IRR │
//!              EOI for the entry's vector (EOI register, or └────────────┘
//!              Ioapic::end_of_interrupt); if the pin is still
//!              asserted and unmasked it is sent again at once
//! ```
//!
//! Asserting a masked level pin sends nothing; unmasking it while asserted
//! sends. An active-low entry inverts its input. Delivery status is never
//! "send pending": a message is handed to the sink at once.
//!
//! # Wiring to KVM's split irqchip (in the VMM)
//! - `KVM_EXIT_IOAPIC_EOI` carries a vector: call [`Ioapic::end_of_interrupt`].
//! - KVM only exits on the EOI of vectors it finds in GSI routes
//!   `0..pins` of type MSI (`kvm_scan_ioapic_routes`; enable the capability
//!   with `nr_reserved_ioapic_pins` = pins). So GSI `pin` must carry
//!   [`Ioapic::route`] for every pin, masked or not. A register write that
//!   changes a route says so ([`IoapicWriteEffect::RouteChanged`]) and holds
//!   back the delivery the write would cause: install the route, then call
//!   [`Ioapic::service`], before another EOI can arrive (under the same lock).
//!
//! # Threat table (what a hostile guest can write, what happens)
//!
//! | guest writes                               | result                                   |
//! |--------------------------------------------|------------------------------------------|
//! | any value to IOREGSEL, any access size     | bits 7..0 kept, the rest dropped         |
//! | IOWIN or EOI with a non-dword access       | reads 0, writes dropped                  |
//! | any other offset of the window             | reads 0, writes dropped                  |
//! | IOWIN at an index naming no register       | reads all-ones, writes dropped           |
//! |   (0x03–0x0F, entries past the last pin)   |                                          |
//! | read-only or reserved bits (IOAPICVER,     | writable masks drop them                 |
//! |   IOAPICARB, delivery status, Remote IRR,  |                                          |
//! |   entry bits 47..17, ID bits but 27..24)   |                                          |
//! | reserved delivery mode (0b011, 0b110)      | pin sends nothing, has no route, never   |
//! |                                            |   sets Remote IRR                        |
//! | SMI/NMI/INIT/ExtINT programmed level       | treated as edge (§3.2.4): no Remote IRR  |
//! |                                            |   left waiting for an EOI                |
//! | any vector, destination, destination mode  | sent as programmed; the local APICs      |
//! |                                            |   (KVM) judge them                       |
//! | EOI while a level pin stays asserted       | one message per EOI: the guest paces it  |
//! | EOI for a vector no entry holds            | nothing                                  |
//!
//! A pin number out of range in [`Ioapic::set_irq`] is the VMM's mistake, not
//! the guest's: it is an error, and changes nothing.

mod line;
pub mod regs;
mod state;
#[cfg(test)]
mod tests;

pub use line::{IoapicLine, WirePolarity};
pub use regs::RedirectionEntry;
pub use state::IoapicState;

use crate::msi::{MsiMessage, MsiSink};
use regs::{Register, EOI_OFFSET, IOREGSEL_OFFSET, IOWIN_OFFSET};

/// Pins of the PC's IOAPIC.
pub const DEFAULT_PINS: usize = 24;

/// What an IOAPIC is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoapicConfig {
    /// Input pins, 1 to [`regs::MAX_PINS`] (IOAPICVER reports pins − 1).
    pub pins: usize,
    /// APIC ID at reset (4 bits), as the MADT's I/O APIC entry announces it.
    pub id: u8,
}

impl Default for IoapicConfig {
    fn default() -> Self {
        Self {
            pins: DEFAULT_PINS,
            id: 0,
        }
    }
}

/// Why an IOAPIC could not be built or driven.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IoapicError {
    /// The pin count cannot be addressed by an 8-bit IOREGSEL.
    #[error("an IOAPIC has 1 to {max} pins, not {pins}")]
    PinCount {
        /// Pins asked for.
        pins: usize,
        /// Most pins possible.
        max: usize,
    },
    /// A pin beyond the last one.
    #[error("pin {pin} does not exist: the IOAPIC has {pins} pins")]
    PinOutOfRange {
        /// The pin asked for.
        pin: usize,
        /// Pins of the IOAPIC.
        pins: usize,
    },
    /// A saved state whose tables disagree in length.
    #[error("saved state has {entries} redirection entries but {levels} input levels")]
    StateMismatch {
        /// Redirection entries.
        entries: usize,
        /// Input levels.
        levels: usize,
    },
}

/// What a guest register write changed outside the model, for the VMM to
/// apply (the model never reaches into KVM itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum IoapicWriteEffect {
    /// Nothing to apply.
    None,
    /// `pin`'s message changed (vector, destination, modes): route GSI `pin`
    /// to `route` (`None`: remove it), then call [`Ioapic::service`]`(pin)`,
    /// which sends what the write held back.
    RouteChanged {
        /// The pin.
        pin: usize,
        /// Its new message, as [`Ioapic::route`] returns it.
        route: Option<MsiMessage>,
    },
}

/// An IOAPIC: its state and the sink its messages leave by.
#[derive(Debug)]
pub struct Ioapic<S> {
    state: IoapicState,
    sink: S,
}

impl<S: MsiSink> Ioapic<S> {
    /// An IOAPIC at reset: every entry masked, every input low.
    pub fn new(config: IoapicConfig, sink: S) -> Result<Self, IoapicError> {
        Ok(Self {
            state: IoapicState::new(&config)?,
            sink,
        })
    }

    /// An IOAPIC in a saved state (reduced to what hardware can hold, see
    /// [`IoapicState::sanitized`]). Nothing is sent on restore.
    pub fn from_state(state: IoapicState, sink: S) -> Result<Self, IoapicError> {
        Ok(Self {
            state: state.sanitized()?,
            sink,
        })
    }

    /// The guest-visible state.
    pub fn state(&self) -> &IoapicState {
        &self.state
    }

    /// The sink messages leave by.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Number of input pins.
    pub fn pins(&self) -> usize {
        self.state.pins()
    }

    /// The message `pin` sends, whether masked or not: what GSI `pin` routes
    /// to in KVM's split irqchip. `None` for a reserved delivery mode or a
    /// pin out of range.
    pub fn route(&self, pin: usize) -> Option<MsiMessage> {
        self.state.redirection.get(pin).and_then(|e| e.message())
    }

    /// The guest reads `data.len()` bytes at `offset` in the register window.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        let value = match (offset, data.len()) {
            (IOREGSEL_OFFSET, _) => u32::from(self.state.ioregsel),
            (IOWIN_OFFSET, 4) => self.state.read_register(self.state.ioregsel),
            _ => 0,
        };
        data.fill(0);
        for (byte, value) in data.iter_mut().zip(value.to_le_bytes()) {
            *byte = value;
        }
    }

    /// The guest writes `data` at `offset` in the register window.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) -> IoapicWriteEffect {
        match (offset, data) {
            (IOREGSEL_OFFSET, [index, ..]) => {
                self.state.ioregsel = *index;
                IoapicWriteEffect::None
            }
            (IOWIN_OFFSET, &[a, b, c, d]) => self.write_window(u32::from_le_bytes([a, b, c, d])),
            (EOI_OFFSET, &[vector, _, _, _]) => {
                self.end_of_interrupt(vector);
                IoapicWriteEffect::None
            }
            _ => IoapicWriteEffect::None,
        }
    }

    /// A device drives `pin`'s input to electrical `level` (`true` = high);
    /// the entry's polarity decides whether that asserts the pin.
    pub fn set_irq(&mut self, pin: usize, level: bool) -> Result<(), IoapicError> {
        let pins = self.pins();
        let was = self.state.asserted(pin);
        let slot = self
            .state
            .input_levels
            .get_mut(pin)
            .ok_or(IoapicError::PinOutOfRange { pin, pins })?;
        *slot = level;
        let entry = self.state.redirection[pin];
        if entry.level_sensitive() {
            self.service(pin);
        } else if self.state.asserted(pin) && !was && !entry.masked() {
            self.send(entry);
        }
        Ok(())
    }

    /// The local APICs acknowledged `vector` (an EOI register write, or
    /// `KVM_EXIT_IOAPIC_EOI`): every entry with that vector and Remote IRR
    /// set leaves service, and is sent again if its pin is still asserted.
    pub fn end_of_interrupt(&mut self, vector: u8) {
        self.end_of_interrupt_where(|_, entry| entry.vector() == vector);
    }

    /// An EOI that concerns the pins `matches` picks (by pin number and
    /// entry): each with Remote IRR set leaves service and is sent again
    /// if still asserted. The VMM uses it when interrupt remapping makes
    /// the vector the local APIC saw differ from the entry's.
    pub fn end_of_interrupt_where(&mut self, matches: impl Fn(usize, RedirectionEntry) -> bool) {
        for pin in 0..self.pins() {
            let entry = self.state.redirection[pin];
            if entry.remote_irr() && matches(pin, entry) {
                self.state.redirection[pin] = entry.with_remote_irr(false);
                self.service(pin);
            }
        }
    }

    /// Sends `pin`'s message if the pin is level-sensitive, asserted,
    /// unmasked and not in service (Remote IRR clear), and sets Remote IRR.
    /// Does nothing otherwise, so calling it again is harmless; a pin out of
    /// range is ignored.
    pub fn service(&mut self, pin: usize) {
        let Some(&entry) = self.state.redirection.get(pin) else {
            return;
        };
        if entry.level_sensitive()
            && !entry.masked()
            && !entry.remote_irr()
            && self.state.asserted(pin)
            && self.send(entry)
        {
            self.state.redirection[pin] = entry.with_remote_irr(true);
        }
    }

    /// Sends `entry`'s message; `false` if its delivery mode is reserved.
    fn send(&self, entry: RedirectionEntry) -> bool {
        match entry.message() {
            Some(msg) => {
                self.sink.deliver(msg);
                true
            }
            None => false,
        }
    }

    fn write_window(&mut self, value: u32) -> IoapicWriteEffect {
        let Some(register) = Register::decode(self.state.ioregsel, self.pins()) else {
            return IoapicWriteEffect::None;
        };
        match register {
            Register::Id => {
                let old = u32::from(self.state.id) << 24;
                let new = regs::apply_write(old, value, register.writable());
                self.state.id = new.to_be_bytes()[0] & 0x0F;
                IoapicWriteEffect::None
            }
            Register::Version | Register::Arbitration => IoapicWriteEffect::None,
            Register::Redirection { pin, high } => {
                let before = self.state.redirection[pin];
                let after = before.written(high, value);
                self.state.redirection[pin] = after;
                let route = after.message();
                if route != before.message() {
                    return IoapicWriteEffect::RouteChanged { pin, route };
                }
                self.service(pin);
                IoapicWriteEffect::None
            }
        }
    }
}
