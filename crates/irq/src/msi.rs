//! Message-signalled interrupts on x86: the address/data pair written to the
//! local APICs' address window, and the [`MsiSink`] port through which a model
//! sends one.
//!
//! A PCI function's MSI or MSI-X capability holds a message the guest wrote
//! and the device sends it as is. The IOAPIC ([`crate::ioapic`]) builds its
//! message from a redirection table entry, with [`ApicMessage::to_msi`]; KVM's
//! split irqchip expects IOAPIC interrupts in exactly this form (a GSI route
//! of type `KVM_IRQ_ROUTING_MSI`, or `KVM_SIGNAL_MSI`).
//!
//! Format (Intel SDM Vol. 3A, chapter "Advanced Programmable Interrupt
//! Controller (APIC)", section "Message Signalled Interrupts"):
//!
//! ```text
//! address  31..20  0xFEE
//!          19..12  destination ID (physical APIC ID or logical set)
//!           11..4  reserved (extended destination ID / remapping index, unused here)
//!               3  RH, redirection hint
//!               2  DM, destination mode: 0 physical, 1 logical
//! data      15     trigger mode: 0 edge, 1 level
//!           14     level: 1 assert (used by level-triggered messages only)
//!          10..8   delivery mode
//!           7..0   vector
//! ```

use std::fmt::Debug;
use std::sync::Arc;

use counters::InterruptCounters;

/// The local APICs' message address window (address bits 31..20 = 0xFEE).
pub const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;

/// Address bit: destination mode is logical.
pub const MSI_ADDRESS_LOGICAL: u64 = 1 << 2;
/// Address bit: redirection hint.
pub const MSI_ADDRESS_REDIRECTION_HINT: u64 = 1 << 3;
/// Shift of the 8-bit destination ID in the address.
pub const MSI_ADDRESS_DESTINATION_SHIFT: u32 = 12;
/// Shift of the 3-bit delivery mode in the data.
pub const MSI_DATA_DELIVERY_MODE_SHIFT: u32 = 8;
/// Data bit: assert (the "level" bit of a level-triggered message).
pub const MSI_DATA_ASSERT: u32 = 1 << 14;
/// Data bit: level-triggered.
pub const MSI_DATA_LEVEL_TRIGGERED: u32 = 1 << 15;

/// One interrupt message: a 32-bit write of `data` to `address`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MsiMessage {
    /// Where the message is written (0xFEEx_xxxx for a local APIC).
    pub address: u64,
    /// What is written.
    pub data: u32,
}

/// Where a model sends interrupt messages.
///
/// Infallible on purpose: a message on the bus is not refused, and a model
/// can do nothing about a host that fails to inject it. The implementation
/// (in the VMM: `KVM_SIGNAL_MSI`, an irqfd on an MSI route) reports its own
/// host errors.
pub trait MsiSink: Send + Sync + Debug {
    /// Sends `msg` to the local APICs.
    fn deliver(&self, msg: MsiMessage);
}

impl<T: MsiSink + ?Sized> MsiSink for Arc<T> {
    fn deliver(&self, msg: MsiMessage) {
        (**self).deliver(msg);
    }
}

/// A vector and the message it now sends (`None`: none), for
/// [`MsiVectors::update`].
pub type RouteChange = (u16, Option<MsiMessage>);

/// The message-signalled vectors of one function, as the VMM routes them
/// (MSI: up to 32, MSI-X: the table's entries).
///
/// A model keeps the routes equal to what the guest programmed
/// ([`MsiVectors::update`] whenever an enable bit, an address, a data word or
/// a vector count changes, with every vector one guest write changed in one
/// call, so the VMM rebuilds KVM's routing table once per write, not once
/// per vector) and calls [`MsiVectors::send`] only for a vector
/// its capability says to deliver now. The VMM's implementation backs each
/// vector with a KVM GSI route and an irqfd, so that a send is one eventfd
/// write; `send` carries the message too, so a route that lags behind is
/// corrected rather than trusted.
///
/// Infallible like [`MsiSink`]: the implementation logs its host errors.
pub trait MsiVectors: Send + Sync + Debug {
    /// Each `(vector, message)` of `changes`: `vector` now sends `message`,
    /// or nothing (`None`: MSI/MSI-X off, or the vector beyond those
    /// enabled). Every route is in place when it returns.
    fn update(&self, changes: &[RouteChange]);

    /// Sends `vector`, whose message is `message`.
    fn send(&self, vector: u16, message: MsiMessage);

    /// The function's interrupt counters, which its capability model
    /// counts the messages it sends in (none by default: a test port).
    fn counters(&self) -> Option<&InterruptCounters> {
        None
    }
}

impl<T: MsiVectors + ?Sized> MsiVectors for Arc<T> {
    fn update(&self, changes: &[RouteChange]) {
        (**self).update(changes);
    }

    fn send(&self, vector: u16, message: MsiMessage) {
        (**self).send(vector, message);
    }

    fn counters(&self) -> Option<&InterruptCounters> {
        (**self).counters()
    }
}

/// How the receiving local APIC acts on a message (data bits 10..8; the
/// IOAPIC's redirection entries use the same encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Deliver `vector` to every destination processor.
    Fixed,
    /// Deliver `vector` to the destination processor of lowest priority.
    LowestPriority,
    /// System management interrupt; the vector is ignored.
    Smi,
    /// Non-maskable interrupt; the vector is ignored.
    Nmi,
    /// INIT; the vector is ignored.
    Init,
    /// External interrupt: the vector comes from an 8259A-style controller.
    ExtInt,
}

impl DeliveryMode {
    /// Decodes the three delivery-mode bits; `None` for the reserved
    /// encodings 0b011 and 0b110.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits & 0b111 {
            0b000 => Some(Self::Fixed),
            0b001 => Some(Self::LowestPriority),
            0b010 => Some(Self::Smi),
            0b100 => Some(Self::Nmi),
            0b101 => Some(Self::Init),
            0b111 => Some(Self::ExtInt),
            _ => None,
        }
    }

    /// The three-bit encoding.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Fixed => 0b000,
            Self::LowestPriority => 0b001,
            Self::Smi => 0b010,
            Self::Nmi => 0b100,
            Self::Init => 0b101,
            Self::ExtInt => 0b111,
        }
    }

    /// Whether the mode carries a vector the processor acknowledges with an
    /// EOI, so that it may be level-triggered. SMI, NMI, INIT and ExtINT are
    /// edge-only (82093AA datasheet §3.2.4, delivery mode field).
    pub const fn has_eoi(self) -> bool {
        matches!(self, Self::Fixed | Self::LowestPriority)
    }
}

/// The fields of an interrupt message to local APICs in compatibility
/// format (no interrupt remapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApicMessage {
    /// Destination ID: a physical APIC ID, or a logical set when
    /// `logical_destination`.
    pub destination: u8,
    /// Destination mode (address bit 2).
    pub logical_destination: bool,
    /// Interrupt vector.
    pub vector: u8,
    /// Delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Level-triggered: the processor's EOI for `vector` is broadcast back
    /// (to the IOAPIC; in KVM's split irqchip as `KVM_EXIT_IOAPIC_EOI`).
    pub level_triggered: bool,
}

impl ApicMessage {
    /// Encodes the message as the address/data pair.
    ///
    /// The redirection hint is 0, as QEMU and crosvm send IOAPIC messages:
    /// KVM reads the destination mode whatever the hint
    /// (`arch/x86/kvm/irq_comm.c`, `kvm_set_msi_irq`), and a hint of 1 would
    /// turn a fixed logical multicast into lowest-priority delivery to one
    /// processor. A level-triggered message carries level = 1 (assert); for
    /// an edge-triggered one the bit is unused and left 0.
    pub const fn to_msi(self) -> MsiMessage {
        let mut address =
            MSI_ADDRESS_BASE | ((self.destination as u64) << MSI_ADDRESS_DESTINATION_SHIFT);
        if self.logical_destination {
            address |= MSI_ADDRESS_LOGICAL;
        }
        let mut data = self.vector as u32
            | ((self.delivery_mode.bits() as u32) << MSI_DATA_DELIVERY_MODE_SHIFT);
        if self.level_triggered {
            data |= MSI_DATA_LEVEL_TRIGGERED | MSI_DATA_ASSERT;
        }
        MsiMessage { address, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_apic_message_physical_fixed_edge_encodes_sdm_layout() {
        let msg = ApicMessage {
            destination: 0x12,
            logical_destination: false,
            vector: 0x31,
            delivery_mode: DeliveryMode::Fixed,
            level_triggered: false,
        };

        let encoded = msg.to_msi();

        assert_eq!(
            encoded,
            MsiMessage {
                address: 0xFEE1_2000,
                data: 0x0031
            }
        );
    }

    #[test]
    fn test_apic_message_logical_lowest_priority_level_sets_dm_trigger_and_assert() {
        let msg = ApicMessage {
            destination: 0xFF,
            logical_destination: true,
            vector: 0xEC,
            delivery_mode: DeliveryMode::LowestPriority,
            level_triggered: true,
        };

        let encoded = msg.to_msi();

        assert_eq!(
            encoded,
            MsiMessage {
                address: 0xFEEF_F004,
                data: 0xC1EC
            }
        );
    }

    #[test]
    fn test_delivery_mode_reserved_encodings_decode_to_none() {
        let decoded: Vec<_> = (0u8..8).map(DeliveryMode::from_bits).collect();

        assert_eq!(decoded[3], None);
        assert_eq!(decoded[6], None);
        assert_eq!(decoded.iter().flatten().count(), 6);
    }

    #[test]
    fn test_delivery_mode_bits_round_trip() {
        let modes: Vec<_> = (0u8..8).filter_map(DeliveryMode::from_bits).collect();

        let bits: Vec<_> = modes.iter().map(|m| m.bits()).collect();

        assert_eq!(bits, vec![0, 1, 2, 4, 5, 7]);
    }
}
