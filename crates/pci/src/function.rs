//! What the root complex needs of a PCI function: its configuration space and
//! its BARs, addressed by offset (STYLE point 3: the bus owns placement).

use crate::bar::BarSpec;
use crate::config::{BarWindow, ConfigWriteEffects};

/// One PCI function as the configuration mechanism and the BAR decoders see it.
pub trait PciFunction: Send {
    /// Reads configuration space at `offset` (0–4095).
    fn config_read(&self, offset: usize, data: &mut [u8]);

    /// Writes configuration space; returns what the VMM must apply.
    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects;

    /// Reads `data.len()` bytes at `offset` inside BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);

    /// Writes at `offset` inside BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);

    /// Every BAR and the window it decodes now (`None`: its space is not
    /// enabled in the command register), as [`crate::header::decoded_bar_windows`]
    /// computes it from the header.
    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)>;
}
