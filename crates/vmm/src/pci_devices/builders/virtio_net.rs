//! `virtio-net`: a virtio network card on a TAP interface.

use backend::net::{Tap, TapConfig, TapError};
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
/// named by the kernel if none is given), one queue pair unless given; or
/// on copies of the descriptors `n.tap_fds`, a queue pair each.
pub(super) fn build(
    n: &VirtioNetConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Box<dyn VirtioDevice>, PciBuildError> {
    let tap = if n.tap_fds.is_empty() {
        let (name, queues) = (
            n.tap.clone().unwrap_or_default(),
            usize::from(n.queues.unwrap_or(1)),
        );
        crate::reopen::tap(&name, queues, || {
            Tap::open(&TapConfig {
                name: name.clone(),
                queues,
            })
        })
    } else {
        handed_over(n)?
    }
    .map_err(|e| PciBuildError::device("virtio-net", &e))?;
    tracing::info!("virtio-net on TAP interface {}", tap.name());
    let mac = n.mac.unwrap_or_else(|| default_mac(dev.number()));
    let mut cfg = NetConfig::from_tap(mac, tap);
    cfg.counters = dev.counters();
    let net = Net::new(cfg).map_err(|e| PciBuildError::device("virtio-net", &e))?;
    Ok(Box::new(net))
}

/// The TAP of descriptors handed over: copies of them, one queue pair
/// each; a name or a different queue count besides is refused.
fn handed_over(n: &VirtioNetConfig) -> Result<Result<Tap, TapError>, PciBuildError> {
    if n.tap.is_some() {
        return Err(PciBuildError::Device(
            "virtio-net: give a TAP by name (tap=) or by descriptors, not both".into(),
        ));
    }
    if n.queues.is_some_and(|q| usize::from(q) != n.tap_fds.len()) {
        return Err(PciBuildError::Device(format!(
            "virtio-net: {} TAP descriptors make {} queue pairs, not queues={}",
            n.tap_fds.len(),
            n.tap_fds.len(),
            n.queues.unwrap_or_default()
        )));
    }
    let fds = n
        .tap_fds
        .iter()
        .map(|fd| fd.try_clone())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PciBuildError::device("virtio-net: cannot copy a TAP descriptor", &e))?;
    Ok(Tap::from_fds(fds))
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
