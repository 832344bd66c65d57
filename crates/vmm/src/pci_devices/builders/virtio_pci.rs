//! The virtio-pci transport every virtio kind sits behind: the device
//! type a `virtio_*` builder made, its queues' notify addresses handed to
//! the root complex as ioeventfds, and its two DMA routes: guest RAM as
//! it is, and in a machine with an IOMMU the translated one, which the
//! transport takes when the driver accepts VIRTIO_F_ACCESS_PLATFORM.

use std::sync::{Arc, Mutex};

use pci::root::SharedFunction;
use virtio::pci::{VirtioPci, VirtioPciConfig};
use virtio::VirtioDevice;

use super::Built;
use crate::config::VirtioConfig;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::{DmaRoute, PciBuildError};
use crate::pci_host::BarEventFd;

/// `device` behind the transport, with the options every virtio kind has
/// (`cfg`).
pub(super) fn build(
    cfg: &VirtioConfig,
    device: Box<dyn VirtioDevice>,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let intx = dev.intx()?;
    let dma = dev.dma(DmaRoute::Bypass);
    let mut transport = VirtioPciConfig::new(device, dma, dev.msi_vectors(), intx);
    transport.platform_dma = dev.platform_dma();
    transport.counters = dev.counters();
    if cfg.no_msix {
        transport.msix_vectors = 0;
    }
    let function = VirtioPci::new(transport).map_err(|e| PciBuildError::device(dev.name(), &e))?;
    let fds = function
        .notify_eventfds()
        .into_iter()
        .map(|(bar, offset, fd)| BarEventFd { bar, offset, fd })
        .collect();
    let shared: SharedFunction = Arc::new(Mutex::new(function));
    dev.bar_eventfds(&shared, fds, true);
    Ok(Built::Function(shared))
}
