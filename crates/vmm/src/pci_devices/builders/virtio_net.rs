//! `virtio-net`: a virtio network card on a TAP interface.

use backend::net::{Tap, TapConfig};
use virtio::net::{Net, NetConfig};
use virtio::VirtioDevice;

use crate::config::VirtioNetConfig;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::PciBuildError;

/// The MAC address of the `n`th card (from 1) when the user gave none:
/// QEMU's locally administered prefix 52:54:00, then 12:34:n.
fn default_mac(n: u32) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x12, 0x34, n as u8]
}

/// A card on the TAP interface `n.tap` (opened, or created; a new one
/// named by the kernel if none is given), one queue pair unless given.
pub(super) fn build(
    n: &VirtioNetConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Box<dyn VirtioDevice>, PciBuildError> {
    let tap = Tap::open(&TapConfig {
        name: n.tap.clone().unwrap_or_default(),
        queues: usize::from(n.queues.unwrap_or(1)),
    })
    .map_err(|e| PciBuildError::device("virtio-net", &e))?;
    tracing::info!("virtio-net on TAP interface {}", tap.name());
    let mac = n.mac.unwrap_or_else(|| default_mac(dev.number()));
    let mut cfg = NetConfig::from_tap(mac, tap);
    cfg.counters = dev.counters();
    let net = Net::new(cfg).map_err(|e| PciBuildError::device("virtio-net", &e))?;
    Ok(Box::new(net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_mac_is_qemu_prefix_then_card_number() {
        assert_eq!(default_mac(1), [0x52, 0x54, 0x00, 0x12, 0x34, 1]);
        assert_eq!(default_mac(7), [0x52, 0x54, 0x00, 0x12, 0x34, 7]);
    }
}
