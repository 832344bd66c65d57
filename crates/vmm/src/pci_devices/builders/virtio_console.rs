//! `virtio-console`: a virtio console (`hvc0`) on iovm's console, whose
//! input then goes to it instead of COM1.

use std::sync::Arc;

use virtio::console::{Console, ConsoleConfig, ConsoleInput as VirtioInput};
use virtio::VirtioDevice;

use crate::console::ConsoleInput;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::PciBuildError;

/// A console writing to iovm's console and taking its input.
pub(super) fn build(
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Box<dyn VirtioDevice>, PciBuildError> {
    let console = Console::new(ConsoleConfig::new(dev.console_output()))
        .map_err(|e| PciBuildError::device("virtio-console", &e))?;
    dev.console_input(Arc::new(HvcInput(console.input())));
    Ok(Box::new(console))
}

/// The virtio console's input handle as iovm's console sees it.
struct HvcInput(VirtioInput);

impl ConsoleInput for HvcInput {
    fn enqueue_input(&self, data: &[u8]) -> usize {
        self.0.push(data)
    }
}
