//! Fuzzes the virtio-pci transport (`virtio::pci`) as a guest drives it,
//! with a virtio-rng device behind it: the common configuration (feature
//! negotiation, device status, queue setup and enable), notifications,
//! the ISR, the device-specific configuration, the `VIRTIO_PCI_CAP_PCI_CFG`
//! window, the MSI-X table and PCI configuration writes, over guest RAM the
//! input fills (the rings the device reads once the driver sets
//! DRIVER_OK). Activation starts the device's worker; a reset stops it.
//!
//! Input layout: 16 KiB of guest RAM from address 0, then records of 12
//! bytes: an operation selector, a 2-byte offset, a width selector, and 8
//! bytes of value. Nothing may panic or hang; the number of queues and the
//! PCI identity never change; a one-byte write of 0 to the device status
//! reads back as 0 (the reset is complete when the write returns).

#![no_main]

use std::sync::Arc;

use dma::{Dma, GuestDma};
use irq::recording::{RecordingLine, RecordingVectors};
use libfuzzer_sys::fuzz_target;
use pci::function::PciFunction;
use virtio::pci::layout::{COMMON_OFFSET, DEVICE_OFFSET, ISR_OFFSET, NOTIFY_OFFSET, VIRTIO_BAR};
use virtio::pci::{VirtioPci, VirtioPciConfig};
use virtio::rng::{Rng, RngConfig};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const RAM: usize = 0x10_0000;
const FILLED: usize = 0x4000;
/// Common configuration: `num_queues` and `device_status`.
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;

fn read(dev: &mut VirtioPci, offset: u64, len: usize) -> u64 {
    let mut out = [0u8; 8];
    dev.bar_read(VIRTIO_BAR, offset, &mut out[..len]);
    u64::from_le_bytes(out)
}

fuzz_target!(|data: &[u8]| {
    let (ram, records) = data.split_at(data.len().min(FILLED));
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).expect("RAM");
    let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
    dma.write(0, ram).expect("fill RAM");
    let rng = Rng::new(RngConfig::default()).expect("virtio-rng");
    let cfg = VirtioPciConfig::new(
        Box::new(rng),
        dma,
        Arc::new(RecordingVectors::new()),
        Arc::new(RecordingLine::new()),
    );
    let mut dev = VirtioPci::new(cfg).expect("transport");
    // Memory decoding and bus mastering on, as a driver leaves them.
    dev.config_write(0x04, &0x0006u16.to_le_bytes());
    let mut id = [0u8; 4];
    dev.config_read(0, &mut id);
    let queues = read(&mut dev, COMMON_OFFSET + NUM_QUEUES, 2);
    for r in records.chunks_exact(12) {
        let offset = u64::from(u16::from_le_bytes([r[1], r[2]]));
        let width = [1usize, 2, 4, 8][usize::from(r[3]) % 4];
        let value = &r[4..4 + width];
        match r[0] % 8 {
            0..=2 => dev.bar_write(VIRTIO_BAR, COMMON_OFFSET + (offset & 0x3f), value),
            3 => {
                let _ = read(&mut dev, COMMON_OFFSET + (offset & 0x3f), width);
            }
            4 => dev.bar_write(VIRTIO_BAR, NOTIFY_OFFSET + (offset & 0xff), value),
            5 => {
                let _ = read(&mut dev, ISR_OFFSET, 1);
                dev.bar_write(VIRTIO_BAR, DEVICE_OFFSET + (offset & 0xff), value);
            }
            6 => {
                dev.config_write(usize::from(r[1]), value);
            }
            _ => dev.bar_write(VIRTIO_BAR, offset, value),
        }
        if r[0] % 8 == 0 && offset & 0x3f == DEVICE_STATUS && width == 1 && value[0] == 0 {
            assert_eq!(
                read(&mut dev, COMMON_OFFSET + DEVICE_STATUS, 1),
                0,
                "a reset is complete when its write returns"
            );
        }
        assert_eq!(read(&mut dev, COMMON_OFFSET + NUM_QUEUES, 2), queues);
        let mut now = [0u8; 4];
        dev.config_read(0, &mut now);
        assert_eq!(now, id, "the PCI identity stays");
    }
});
