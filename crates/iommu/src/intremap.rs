//! Interrupt remapping (VT-d 4.1 chapter 5, §9.10): the interrupt
//! remapping table the guest points IRTA at, and the translation of an
//! interrupt request (an MSI write or an IOAPIC message) through it.
//!
//! ```text
//!  remappable request: address 0xFEE | handle[14:0] 19:5 | format 4 | SHV 3 | handle[15] 2
//!                      data 15:0 subhandle (used when SHV)
//!  index = handle (+ subhandle if SHV) ──▶ IRTE at table + 16 × index
//!  IRTE lo: P 0, FPD 1, DM 2, RH 3, TM 4, DLM 7:5, V 23:16, DST 63:32
//!       hi: SID 15:0, SQ 17:16, SVT 19:18 (bits 79:64, 81:80, 83:82)
//! ```
//!
//! The translated message is in the form KVM's split irqchip takes: an
//! x2APIC destination's bits 31:8 in the address's upper half (KVM's
//! `KVM_X2APIC_API_USE_32BIT_IDS` format) and bits 7:0 in bits 19:12.
//!
//! Nothing is cached here; the VMM installs translated messages as KVM
//! routes, and those are the cache the interrupt entry cache invalidation
//! (§6.5.2.7) and the enable bits refresh.

use std::sync::{Arc, Mutex, PoisonError};

use dma::{Dma, RequesterId};
use irq::msi::{MsiMessage, MSI_ADDRESS_BASE};

use crate::fault::FaultReason;

/// Address bit 4: the request is in remappable format (§5.1.2.2).
const FORMAT_REMAPPABLE: u64 = 1 << 4;
/// Address bit 3: Subhandle Valid.
const SHV: u64 = 1 << 3;

/// One decoded interrupt remapping table entry (§9.10, remapped format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irte {
    /// Fault Processing Disable: faults through this entry are not
    /// recorded.
    pub fpd: bool,
    /// Destination Mode: logical.
    pub logical: bool,
    /// Redirection Hint.
    pub redirection_hint: bool,
    /// Trigger Mode: level.
    pub level: bool,
    /// Delivery Mode (DLM).
    pub delivery_mode: u8,
    /// Vector.
    pub vector: u8,
    /// Destination ID: 32 bits in x2APIC mode, 8 in xAPIC mode.
    pub destination: u32,
    /// Source validation (SVT, SQ, SID).
    pub source: SourceCheck,
}

/// How the entry validates the requester (§9.10, SVT and SQ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceCheck {
    /// SVT 0: any requester.
    None,
    /// SVT 1: the requester ID equals `sid`, ignoring function bits as
    /// `ignore` says (SQ: 0 none, 1 bit 2, 2 bits 2:1, 3 bits 2:0).
    Exact {
        /// The expected source ID.
        sid: u16,
        /// Function bits to ignore (mask over the low 3 bits).
        ignore: u16,
    },
    /// SVT 2: the requester's bus lies in `first..=last`.
    Bus {
        /// Start bus (SID bits 15:8).
        first: u8,
        /// End bus (SID bits 7:0).
        last: u8,
    },
}

impl SourceCheck {
    /// Whether `requester` passes.
    pub fn allows(&self, requester: RequesterId) -> bool {
        match *self {
            Self::None => true,
            Self::Exact { sid, ignore } => requester.0 & !ignore == sid & !ignore,
            Self::Bus { first, last } => (first..=last).contains(&((requester.0 >> 8) as u8)),
        }
    }
}

/// Reserved bits of an IRTE in remapped format, low and high quadwords:
/// lo 14:12 and 31:24, IM (bit 15, posted: CAP.PI is clear); hi 63:20.
const RESERVED_LO: u64 = 0x7 << 12 | 1 << 15 | 0xff << 24;
const RESERVED_HI: u64 = !0xf_ffff;
/// In xAPIC mode only DST bits 47:40 hold the destination.
const XAPIC_DEST_RESERVED: u64 = 0xff << 32 | 0xffff << 48;

/// Why an interrupt request was blocked, and whether it is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptFault {
    /// The fault reason (0x20 to 0x26).
    pub reason: FaultReason,
    /// The interrupt index, when the request had one (FI bits 63:48).
    pub index: Option<u16>,
    /// The entry's FPD was set: the fault is not recorded.
    pub suppressed: bool,
}

impl InterruptFault {
    fn new(reason: FaultReason, index: Option<u16>) -> Self {
        Self {
            reason,
            index,
            suppressed: false,
        }
    }
}

/// Decodes an IRTE; `Ok(None)` if not present.
pub fn decode_irte(lo: u64, hi: u64, x2apic: bool) -> Result<Option<Irte>, FaultReason> {
    if lo & 1 == 0 {
        return Ok(None);
    }
    let dest_reserved = if x2apic { 0 } else { XAPIC_DEST_RESERVED };
    if lo & (RESERVED_LO | dest_reserved) != 0 || hi & RESERVED_HI != 0 {
        return Err(FaultReason::IrteReserved);
    }
    let sid = hi as u16;
    let source = match (hi >> 18) & 0x3 {
        0 => SourceCheck::None,
        1 => SourceCheck::Exact {
            sid,
            ignore: [0, 0b100, 0b110, 0b111][((hi >> 16) & 0x3) as usize],
        },
        2 => SourceCheck::Bus {
            first: (sid >> 8) as u8,
            last: sid as u8,
        },
        _ => return Err(FaultReason::IrteReserved),
    };
    let destination = if x2apic {
        (lo >> 32) as u32
    } else {
        u32::from((lo >> 40) as u8)
    };
    Ok(Some(Irte {
        fpd: lo & 1 << 1 != 0,
        logical: lo & 1 << 2 != 0,
        redirection_hint: lo & 1 << 3 != 0,
        level: lo & 1 << 4 != 0,
        delivery_mode: ((lo >> 5) & 0x7) as u8,
        vector: (lo >> 16) as u8,
        destination,
        source,
    }))
}

impl Irte {
    /// The message this entry delivers (SDM Vol. 3A "Message Signalled
    /// Interrupts", with the destination's bits 31:8 in the upper address
    /// as KVM's 32-bit-ID format takes them).
    pub fn message(&self) -> MsiMessage {
        let dest = u64::from(self.destination);
        let address = MSI_ADDRESS_BASE
            | (dest & 0xff) << 12
            | (dest & !0xff) << 32
            | u64::from(self.logical) << 2
            | u64::from(self.redirection_hint) << 3;
        let trigger = if self.level { 0x3 << 14 } else { 0 };
        MsiMessage {
            address,
            data: u32::from(self.vector) | u32::from(self.delivery_mode) << 8 | trigger,
        }
    }
}

/// The programmed state: what GCMD.IRE, SIRTP (with IRTA) and CFI set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Programmed {
    enabled: bool,
    table: u64,
    entries: u32,
    x2apic: bool,
    compatibility_allowed: bool,
}

/// A unit's interrupt remapping hardware: translates interrupt requests
/// through the table in guest RAM.
#[derive(Debug)]
pub struct InterruptRemapper {
    ram: Arc<dyn Dma>,
    state: Mutex<Programmed>,
}

impl InterruptRemapper {
    /// Remapping off (reset), reading the table through `ram`.
    pub fn new(ram: Arc<dyn Dma>) -> Self {
        Self {
            ram,
            state: Mutex::new(Programmed::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Programmed> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// GCMD.IRE (§11.4.4).
    pub fn set_enabled(&self, on: bool) {
        self.state().enabled = on;
    }

    /// Whether remapping is on.
    pub fn enabled(&self) -> bool {
        self.state().enabled
    }

    /// GCMD.SIRTP latched IRTA: the table, its size and the destination
    /// format.
    pub fn set_table(&self, addr: u64, entries: u32, x2apic: bool) {
        let mut s = self.state();
        s.table = addr;
        s.entries = entries;
        s.x2apic = x2apic;
    }

    /// GCMD.CFI: compatibility-format requests pass while remapping is on.
    pub fn set_compatibility(&self, allowed: bool) {
        self.state().compatibility_allowed = allowed;
    }

    /// Translates the request `msg` from `requester` (§5.1): unchanged
    /// while remapping is off or for an allowed compatibility-format
    /// request; through its IRTE otherwise.
    pub fn remap(
        &self,
        msg: MsiMessage,
        requester: RequesterId,
    ) -> Result<MsiMessage, InterruptFault> {
        let s = *self.state();
        if !s.enabled {
            return Ok(msg);
        }
        if msg.address & FORMAT_REMAPPABLE == 0 {
            return if s.compatibility_allowed {
                Ok(msg)
            } else {
                Err(InterruptFault::new(FaultReason::CompatibilityBlocked, None))
            };
        }
        if msg.address & 0x3 != 0 || msg.address >> 32 != 0 {
            return Err(InterruptFault::new(FaultReason::IrRequestReserved, None));
        }
        let handle = ((msg.address >> 5) & 0x7fff) as u32 | (((msg.address >> 2) & 1) as u32) << 15;
        let index = if msg.address & SHV != 0 {
            handle + (msg.data & 0xffff)
        } else {
            handle
        };
        let index16 = u16::try_from(index).ok();
        if index >= s.entries {
            return Err(InterruptFault::new(
                FaultReason::IrIndexBeyondTable,
                index16,
            ));
        }
        let fault = |reason| InterruptFault::new(reason, index16);
        let mut raw = [0u8; 16];
        self.ram
            .read(s.table.wrapping_add(u64::from(index) * 16), &mut raw)
            .map_err(|_| fault(FaultReason::IrteUnreadable))?;
        let lo = u64::from_le_bytes(raw[..8].try_into().unwrap_or_default());
        let hi = u64::from_le_bytes(raw[8..].try_into().unwrap_or_default());
        let irte = decode_irte(lo, hi, s.x2apic)
            .map_err(fault)?
            .ok_or_else(|| fault(FaultReason::IrteNotPresent))?;
        if !irte.source.allows(requester) {
            return Err(InterruptFault {
                suppressed: irte.fpd,
                ..fault(FaultReason::IrSourceMismatch)
            });
        }
        Ok(irte.message())
    }
}

#[cfg(test)]
mod tests;
