//! The contract between an address-space bus and the device behind a range.

/// A device that owns a range of port I/O or MMIO space.
///
/// `offset` is relative to the start of the range the device was registered
/// at; `data.len()` is the access size (1, 2, 4 or 8 bytes). A device must
/// answer every offset in its range: an access to a register it does not model
/// reads as zero or all-ones as its specification says and writes are dropped.
pub trait BusDevice: Send {
    /// The guest reads `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);

    /// The guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}
