//! One PCI function's DMA through the remapping unit (VT-d 4.1 §3.4): a
//! [`Dma`] that translates every access with the requester ID the function
//! carries at that moment, then reaches guest RAM.
//!
//! An access is translated whole before any byte moves: a range spanning
//! pages is split into pieces, and if any page faults the access fails
//! with [`DmaError::TranslationFault`] and nothing is read or written.
//! A write is also checked against guest RAM before it starts, so a
//! translation into a hole writes nothing either.

use std::sync::Arc;

use dma::{checked_end, Direction, Dma, DmaError, FunctionContext, HostRange};

use crate::remapper::{Piece, Remapper};

/// The [`Dma`] of one function behind a [`Remapper`]. Bus Master Enable is
/// not its business: the VMM wraps it in a [`dma::FunctionDma`].
#[derive(Debug, Clone)]
pub struct IommuDma {
    ctx: Arc<FunctionContext>,
    remapper: Arc<Remapper>,
}

/// A guest-RAM error on a translated piece, as the device sees it: about
/// its bus address, not the guest-physical one.
fn on_bus(err: DmaError, addr: u64, len: u64) -> DmaError {
    match err {
        DmaError::NoHostMapping { .. } => DmaError::NoHostMapping { addr },
        DmaError::OutOfRange { .. } | DmaError::Overflow { .. } => {
            DmaError::OutOfRange { addr, len }
        }
        other => other,
    }
}

/// A piece length as a buffer index (pieces never exceed the buffer, whose
/// length is a `usize`; a larger one fails the slice lookup instead).
fn as_index(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl IommuDma {
    /// DMA of the function `ctx` describes (its requester ID is read on
    /// every access, so bus renumbering is followed) through `remapper`.
    pub fn new(ctx: Arc<FunctionContext>, remapper: Arc<Remapper>) -> Self {
        Self { ctx, remapper }
    }

    /// The translated pieces of `addr..addr+len`, or the fault.
    fn pieces(&self, addr: u64, len: u64, dir: Direction) -> Result<Vec<Piece>, DmaError> {
        checked_end(addr, len)?;
        let requester = self.ctx.requester();
        self.remapper
            .translate_range(requester, addr, len, dir)
            .map_err(|f| DmaError::TranslationFault {
                addr: f.addr,
                requester,
            })
    }
}

impl Dma for IommuDma {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len() as u64;
        let ram = self.remapper.ram();
        let mut done = 0usize;
        for piece in self.pieces(addr, len, Direction::ToDevice)? {
            let n = as_index(piece.len);
            let chunk = buf
                .get_mut(done..done.saturating_add(n))
                .ok_or(DmaError::OutOfRange { addr, len })?;
            ram.read(piece.gpa, chunk)
                .map_err(|e| on_bus(e, addr, len))?;
            done += n;
        }
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        let len = buf.len() as u64;
        let ram = self.remapper.ram();
        let pieces = self.pieces(addr, len, Direction::FromDevice)?;
        if pieces.len() > 1 {
            // Check every piece is backed before writing the first one.
            let mut scratch = Vec::new();
            for piece in &pieces {
                ram.host_ranges(piece.gpa, piece.len, Direction::FromDevice, &mut scratch)
                    .map_err(|e| on_bus(e, addr, len))?;
            }
        }
        let mut done = 0usize;
        for piece in pieces {
            let n = as_index(piece.len);
            let chunk = buf
                .get(done..done.saturating_add(n))
                .ok_or(DmaError::OutOfRange { addr, len })?;
            ram.write(piece.gpa, chunk)
                .map_err(|e| on_bus(e, addr, len))?;
            done += n;
        }
        Ok(())
    }

    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        let pieces = self.pieces(addr, len, dir)?;
        let mark = out.len();
        let ram = self.remapper.ram();
        for piece in pieces {
            if let Err(e) = ram.host_ranges(piece.gpa, piece.len, dir, out) {
                out.truncate(mark);
                return Err(on_bus(e, addr, len));
            }
        }
        Ok(())
    }

    fn translate(&self, addr: u64, len: u64, dir: Direction) -> Result<HostRange<'_>, DmaError> {
        checked_end(addr, len)?;
        if len == 0 {
            return Err(DmaError::OutOfRange { addr, len });
        }
        let requester = self.ctx.requester();
        let piece = self.remapper.translate(requester, addr, dir).map_err(|f| {
            DmaError::TranslationFault {
                addr: f.addr,
                requester,
            }
        })?;
        self.remapper
            .ram()
            .translate(piece.gpa, piece.len.min(len), dir)
            .map_err(|e| on_bus(e, addr, len))
    }
}

#[cfg(test)]
mod tests;
