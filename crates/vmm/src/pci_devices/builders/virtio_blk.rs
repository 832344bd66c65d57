//! `virtio-blk`: a virtio block device on a file or host block device.

use std::sync::Arc;

use virtio::blk::{Block, BlockConfig};
use virtio::VirtioDevice;

use crate::config::VirtioBlkConfig;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::disk::open_disk;
use crate::pci_devices::PciBuildError;

/// A block device with one request queue per vCPU (at most 64) and serial
/// `IOVM-VBLK` + its number unless given.
pub(super) fn build(
    b: &VirtioBlkConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Box<dyn VirtioDevice>, PciBuildError> {
    let file = open_disk("virtio-blk", &b.path, b.readonly)?;
    let queues = b.queues.unwrap_or_else(|| dev.cpus().clamp(1, 64) as u16);
    let mut cfg = BlockConfig::new(Arc::new(file), queues);
    cfg.readonly = b.readonly;
    cfg.serial = b
        .serial
        .clone()
        .unwrap_or_else(|| format!("IOVM-VBLK{}", dev.number()));
    dev.counters().set_class(counters::IoClass::Block);
    let block = Block::new(cfg)
        .map_err(|e| PciBuildError::device(format_args!("virtio-blk {}", b.path.display()), &e))?;
    Ok(Box::new(block))
}
