//! The VT-d register page on the MMIO bus (VT-d 4.1 §11.4): one 4 KiB
//! page at [`VTD_START`](crate::layout::VTD_START), every access handed to
//! the unit.

use std::sync::Arc;

use devices::BusDevice;

use super::Vtd;

/// The [`BusDevice`] of a [`Vtd`]'s registers.
#[derive(Debug)]
pub struct RegisterPage {
    unit: Arc<Vtd>,
}

impl RegisterPage {
    /// The page of `unit`.
    pub fn new(unit: Arc<Vtd>) -> Self {
        Self { unit }
    }
}

/// An offset inside the page as an index; one beyond it misses every
/// register (the bus only forwards offsets inside the page).
fn index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl BusDevice for RegisterPage {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.unit.read(index(offset), data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.unit.write(index(offset), data);
    }
}
