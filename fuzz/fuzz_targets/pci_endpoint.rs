//! Fuzzes a PCI Express endpoint's configuration space with every kind of
//! capability iovm's devices use (power management, MSI with per-vector
//! masks, MSI-X with its table and PBA in BAR 0, PCI Express), together
//! with the message routing a device model keeps in step with it
//! (`pci::caps::routing`), and the device signalling vectors meanwhile.
//!
//! Input layout: records of 8 bytes: an operation selector (configuration
//! write or read, MSI-X table/PBA write or read, signal a vector), a 2-byte
//! offset, a width selector (1, 2, 4, 8 or an odd 3), then 4 bytes of
//! value. Nothing may panic, and after every step: the routes installed
//! are exactly those the registers ask for (no vector routed that the
//! guest did not program, none missing), the identity registers keep their
//! values, and a vector reported as sent went out with its current route.

#![no_main]

mod pci_common;

use std::sync::Arc;

use irq::recording::RecordingVectors;
use libfuzzer_sys::fuzz_target;
use pci::bar::{BarKind, BarSpec};
use pci::caps::endpoint::EndpointConfig;
use pci::caps::msi::MsiConfig;
use pci::caps::pm::PmConfig;
use pci::caps::routing::{MsiRouting, Signal};
use pci::config::{Identity, Type0Config};

const VECTORS: u16 = 8;
const VENDOR: u16 = 0x1b36;
const DEVICE: u16 = 0x0010;

fn endpoint() -> EndpointConfig {
    let id = Identity {
        vendor: VENDOR,
        device: DEVICE,
        class: 0x01_08_02,
        revision: 2,
        subsystem_vendor: VENDOR,
        subsystem: DEVICE,
    };
    let bar = BarSpec {
        index: 0,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: 0x4000,
    };
    let config = Type0Config::new(id, &[bar], 1).expect("header");
    EndpointConfig::new(config, |list| {
        list.power_management(PmConfig::default())?;
        list.msi(MsiConfig {
            vectors: 32,
            address64: true,
            per_vector_mask: true,
        })?;
        list.msix(pci_common::msix_in_bar0(VECTORS))?;
        list.pci_express(pci_common::pcie_endpoint())
        .map(|_| ())
    })
    .expect("endpoint")
}

fuzz_target!(|data: &[u8]| {
    let vectors = Arc::new(RecordingVectors::new());
    let mut routing = MsiRouting::new(vectors.clone());
    let mut ep = endpoint();
    for r in data.chunks_exact(8) {
        let raw = u64::from(u16::from_le_bytes([r[1], r[2]]));
        let width = [1usize, 2, 4, 8, 3][usize::from(r[3]) % 5];
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&r[4..8]);
        bytes[4..].copy_from_slice(&r[4..8]);
        // Table and PBA accesses land in 0x2000..0x3100 of BAR 0 mostly.
        let bar_offset = 0x2000 + (raw & 0x1fff);
        match r[0] % 5 {
            0 => {
                let e = ep.write((raw & 0xfff) as usize, &bytes[..width]);
                routing.after_config_write(&ep, &e);
            }
            1 => {
                let mut out = [0u8; 8];
                ep.read((raw & 0xfff) as usize, &mut out[..width]);
            }
            2 => {
                if let Some(e) = ep.bar_write(0, bar_offset, &bytes[..width]) {
                    routing.after_table_write(&ep, &e);
                }
            }
            3 => {
                let mut out = [0u8; 8];
                ep.bar_read(0, bar_offset, &mut out[..width]);
            }
            _ => {
                let vector = u16::from(r[4]) % 40;
                vectors.take();
                if routing.signal(&mut ep, vector) == Signal::Sent {
                    let sent = vectors.take();
                    assert_eq!(sent.len(), 1);
                    assert_eq!(Some(sent[0].1), vectors.route(vector), "sent on its route");
                }
            }
        }
        let wanted = MsiRouting::wanted(&ep);
        for v in 0..40u16 {
            let want = wanted.get(usize::from(v)).copied().flatten();
            assert_eq!(vectors.route(v), want, "vector {v}");
        }
        let mut id = [0u8; 4];
        ep.read(0, &mut id);
        assert_eq!(u16::from_le_bytes([id[0], id[1]]), VENDOR);
        assert_eq!(u16::from_le_bytes([id[2], id[3]]), DEVICE);
    }
});
