//! The remapping hardware's register page (VT-d 4.1 §11.4): one
//! 4 KiB page per unit at an MMIO address the VMM chooses, in legacy mode,
//! as data on a [`RegisterMask`] (read-only, read-write and write-1-to-
//! clear bits per byte) plus the few rules that are not per-bit: GCMD's
//! commands, CCMD's and IOTLB's invalidation requests, and fault recording.
//!
//! A write returns the [`Effect`]s the rest of the VMM must carry out (set
//! the root table, turn translation on, invalidate, send the fault event);
//! the register state it reports (GSTS, CAIG, IAIG, FSTS) is already
//! updated when the write returns, as Linux polls for it at once and
//! panics ("DMAR hardware is malfunctioning") after about 10 s.
//!
//! ```text
//!  guest MMIO ──▶ Registers::write ──▶ [Effect] ──▶ apply (Remapper: root table, TE)
//!                   │  GCMD  → GSTS (same write)       invalidation queue (later)
//!                   │  CCMD/IOTLB → ICC/IVT clear, CAIG/IAIG
//!                   │  IQT → ProcessQueue ─▶ process_queue (descriptors from RAM) ─▶ [Effect]
//!  Remapper faults ──▶ forward_faults ──▶ Registers::record_fault ──▶ FaultEvent unless FECTL.IM
//! ```
//!
//! Accesses of any width at any offset are applied byte by byte (Linux
//! uses 8-byte accesses on 64-bit registers and 4-byte ones on GCMD, IQT
//! and the fault record's top dword); bytes outside the implemented
//! registers read as zero and ignore writes.

mod apply;
mod block;
mod capability;
mod command;
mod effect;
mod fault;
mod invalidate;
pub mod layout;
mod queue;

pub use apply::{apply, forward_faults};
pub use block::VERSION;
pub use capability::{cap_value, ecap_value, Options};
pub use effect::{ContextInvalidation, Effect, IotlbInvalidation, IotlbScope};

use pci::regs::RegisterMask;

use crate::caps::Capabilities;
use layout::*;

/// The register page of one remapping unit.
#[derive(Clone, Debug)]
pub struct Registers {
    block: RegisterMask,
}

/// The value and byte mask a guest write put into the register of `len`
/// bytes at `reg`, or `None` if it missed the register.
fn written(offset: usize, data: &[u8], reg: usize, len: usize) -> Option<(u64, u64)> {
    let mut value = 0u64;
    let mut mask = 0u64;
    for (i, &b) in data.iter().enumerate() {
        let Some(pos) = offset.checked_add(i).and_then(|o| o.checked_sub(reg)) else {
            continue;
        };
        if pos < len {
            value |= u64::from(b) << (8 * pos);
            mask |= 0xff << (8 * pos);
        }
    }
    (mask != 0).then_some((value, mask))
}

impl Registers {
    /// The page at reset for a unit with `caps` and `opts`: GSTS 0
    /// (translation off, no root table), FECTL.IM and IECTL.IM set.
    pub fn new(caps: &Capabilities, opts: &Options) -> Self {
        Self {
            block: block::reset_block(caps, opts),
        }
    }

    /// A guest read of `data.len()` bytes at `offset`. No register has a
    /// read side effect.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        self.block.read(offset, data);
    }

    /// A guest write of `data` at `offset`: the register state is updated
    /// before it returns, and the effects are returned in the order the
    /// rest of the VMM must apply them.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Vec<Effect> {
        let mut effects = Vec::new();
        let fectl_before = self.get32(FECTL);
        let iectl_before = self.get32(IECTL);
        self.block.write(offset, data);
        if let Some((value, mask)) = written(offset, data, GCMD, 4) {
            self.command(value as u32, mask as u32, &mut effects);
        }
        if written(offset, data, CCMD, 8).is_some() {
            self.context_command(&mut effects);
        }
        if written(offset, data, IOTLB, 8).is_some() {
            self.iotlb_command(&mut effects);
        }
        self.after_fault_write(fectl_before, &mut effects);
        self.after_invalidation_write(iectl_before, &mut effects);
        let queue_moved = [(IQT, 8), (FSTS, 4), (GCMD, 4)]
            .iter()
            .any(|&(reg, len)| written(offset, data, reg, len).is_some());
        if queue_moved && self.queue_runnable() && self.iqh() != self.iqt() {
            effects.push(Effect::ProcessQueue);
        }
        effects
    }

    /// A register of `len` bytes (device side, no side effect).
    fn get(&self, offset: usize, len: usize) -> u64 {
        self.block.read_le(offset, len)
    }

    fn get32(&self, offset: usize) -> u32 {
        self.get(offset, 4) as u32
    }

    /// Sets a register of `len` bytes from the hardware side, whatever its
    /// guest semantics.
    fn put(&mut self, offset: usize, len: usize, value: u64) {
        if let Err(e) = self.block.set_value(offset, len, value) {
            unreachable!("VT-d register {offset:#x} is inside the page: {e}");
        }
    }

    /// CAP (§11.4.2).
    pub fn cap(&self) -> u64 {
        self.get(CAP, 8)
    }

    /// ECAP (§11.4.3).
    pub fn ecap(&self) -> u64 {
        self.get(ECAP, 8)
    }

    /// GSTS (§11.4.5).
    pub fn gsts(&self) -> u32 {
        self.get32(GSTS)
    }

    /// RTADDR (§11.4.6).
    pub fn rtaddr(&self) -> u64 {
        self.get(RTADDR, 8)
    }

    /// FSTS (§11.4.9).
    pub fn fsts(&self) -> u32 {
        self.get32(FSTS)
    }

    /// FECTL (§11.4.10).
    pub fn fectl(&self) -> u32 {
        self.get32(FECTL)
    }

    /// The fault recording register (§11.4.14): low and high quadwords.
    pub fn fault_record(&self) -> (u64, u64) {
        (self.get(FRCD, 8), self.get(FRCD + 8, 8))
    }

    /// IQA (§11.4, Invalidation Queue Address Register): base and QS.
    pub fn iqa(&self) -> u64 {
        self.get(IQA, 8)
    }

    /// IQH (§11.4, Invalidation Queue Head Register).
    pub fn iqh(&self) -> u64 {
        self.get(IQH, 8)
    }

    /// Sets IQH as the queue processor advances it (bits 18:4 kept).
    pub fn set_iqh(&mut self, offset: u64) {
        self.put(IQH, 8, offset & iq::OFFSET);
    }

    /// IQT (§11.4, Invalidation Queue Tail Register).
    pub fn iqt(&self) -> u64 {
        self.get(IQT, 8)
    }

    /// IRTA (§11.4, Interrupt Remapping Table Address Register).
    pub fn irta(&self) -> u64 {
        self.get(IRTA, 8)
    }
}

#[cfg(test)]
mod tests;
