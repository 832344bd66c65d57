//! `e1000e`: an emulated Intel 82574L NIC on a TAP interface (the same
//! backend virtio-net uses, one queue), its worker running; interrupts go
//! out through the function's MSI-X/MSI vectors (irqfd) or INTA.

use std::sync::Arc;

use backend::net::{FrameIo, Tap, TapConfig};
use devices::e1000e::{E1000e, E1000eConfig as NicConfig};

use super::Built;
use crate::config::E1000eConfig;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::{DmaRoute, PciBuildError};

/// The MAC address of the `n`th card (from 1) when the user gave none:
/// QEMU's locally administered prefix 52:54:00, then 12:35:n (virtio-net
/// cards use 12:34:n).
fn default_mac(n: u32) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x12, 0x35, n as u8]
}

/// A card on the TAP interface `c.tap` (opened, or created; a new one
/// named by the kernel if none is given).
pub(super) fn build(
    c: &E1000eConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let name = c.tap.clone().unwrap_or_default();
    let tap = crate::reopen::tap(&name, 1, || {
        Tap::open(&TapConfig {
            name: name.clone(),
            queues: 1,
        })
    })
    .map_err(|e| PciBuildError::device("e1000e", &e))?;
    tracing::info!("e1000e on TAP interface {}", tap.name());
    let queue: Arc<dyn FrameIo> = match tap.into_queues().into_iter().next() {
        Some(q) => Arc::new(q),
        None => {
            return Err(PciBuildError::Device(
                "e1000e: the TAP interface has no queue".into(),
            ))
        }
    };
    let cfg = NicConfig {
        mac: c.mac.unwrap_or_else(|| default_mac(dev.number())),
        msix: !c.no_msix,
        msi: !c.no_msi,
        counters: dev.counters(),
    };
    let intx = dev.intx()?;
    let msi = dev.msi_vectors();
    let dma = dev.dma(DmaRoute::Iommu);
    let mut nic = E1000e::new(cfg, dma, msi, intx, Some(queue))
        .map_err(|e| PciBuildError::device("e1000e", &e))?;
    nic.start_worker()
        .map_err(|e| PciBuildError::device("e1000e", &e))?;
    Ok(Built::function(nic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_mac_differs_from_virtio_net_prefix() {
        assert_eq!(default_mac(2), [0x52, 0x54, 0x00, 0x12, 0x35, 2]);
    }
}
