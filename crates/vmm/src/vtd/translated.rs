//! A translated function's DMA (VT-d 4.1 §3.4): [`IommuDma`] through the
//! unit's remapper, and on a fault the fault forwarded to the register
//! page at once, so the fault recording register and the fault event
//! (§7.2.1, §7.3) follow the access that caused them.
//!
//! [`Dma::direct`] stays `None`: virtio's `DmaMemory` must not take its
//! untranslated fast path for a translated function.

use std::sync::Arc;

use dma::{Direction, Dma, DmaError, FunctionContext, HostRange};
use iommu::IommuDma;

use super::Vtd;

/// One function's DMA through a [`Vtd`]. Bus Master Enable is checked in
/// front of it, by the builder's [`dma::FunctionDma`].
#[derive(Debug)]
pub struct VtdDma {
    inner: IommuDma,
    unit: Arc<Vtd>,
}

impl VtdDma {
    /// DMA of the function `ctx` describes, through `unit`.
    pub fn new(ctx: Arc<FunctionContext>, unit: Arc<Vtd>) -> Self {
        Self {
            inner: IommuDma::new(ctx, unit.remapper().clone()),
            unit,
        }
    }

    /// `result`, after forwarding the fault it reports, if any.
    fn forward<T>(&self, result: Result<T, DmaError>) -> Result<T, DmaError> {
        if let Err(DmaError::TranslationFault { .. }) = result {
            self.unit.forward_faults();
        }
        result
    }
}

impl Dma for VtdDma {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.forward(self.inner.read(addr, buf))
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.forward(self.inner.write(addr, buf))
    }

    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        self.forward(self.inner.host_ranges(addr, len, dir, out))
    }

    fn translate(&self, addr: u64, len: u64, dir: Direction) -> Result<HostRange<'_>, DmaError> {
        self.forward(self.inner.translate(addr, len, dir))
    }
}
