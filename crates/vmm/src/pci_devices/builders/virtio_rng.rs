//! `virtio-rng`: a virtio entropy source fed by the host's `getrandom`.

use virtio::rng::{Rng, RngConfig};
use virtio::VirtioDevice;

use crate::pci_devices::PciBuildError;

/// An entropy source with the default limits; it has no options.
pub(super) fn build() -> Result<Box<dyn VirtioDevice>, PciBuildError> {
    let rng =
        Rng::new(RngConfig::default()).map_err(|e| PciBuildError::device("virtio-rng", &e))?;
    Ok(Box::new(rng))
}
