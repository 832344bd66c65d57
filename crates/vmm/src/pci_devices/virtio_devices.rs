//! Builds the virtio-pci functions the user asked for: a device type
//! (`virtio::blk`, `net`, `console`, `rng`) behind the virtio-pci transport,
//! its queues' notify addresses handed to the root complex as ioeventfds.

use std::sync::{Arc, Mutex};

use backend::net::{Tap, TapConfig};
use backend::{BlockFile, DiskConfig};
use pci::root::SharedFunction;
use virtio::blk::{Block, BlockConfig};
use virtio::console::{Console as VirtioConsole, ConsoleConfig, ConsoleInput as VirtioInput};
use virtio::net::{Net, NetConfig};
use virtio::pci::{VirtioPci, VirtioPciConfig};
use virtio::rng::{Rng, RngConfig};
use virtio::VirtioDevice;

use super::{chain, PciBuildError, Wiring};
use crate::config::{VirtioBlkConfig, VirtioConfig, VirtioKind, VirtioNetConfig};
use crate::console::ConsoleInput;
use crate::pci_host::{BarEventFd, PciRoot};

/// The MAC address of the `n`th card (from 1) when the user gave none:
/// QEMU's locally administered prefix 52:54:00, then 12:34:n.
fn default_mac(n: u32) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x12, 0x34, n as u8]
}

/// Counts of each type built so far, for default names.
#[derive(Debug, Default)]
pub struct VirtioCounts {
    blk: u32,
    net: u32,
}

/// Builds the function for `cfg` on `pci`, wired by `wiring`, in a machine of
/// `cpus` vCPUs; the caller places it on the tree.
pub fn build(
    cfg: &VirtioConfig,
    pci: &PciRoot,
    wiring: &mut dyn Wiring,
    intx: Arc<dyn irq::IrqLine>,
    cpus: u32,
    counts: &mut VirtioCounts,
) -> Result<SharedFunction, PciBuildError> {
    let name = match cfg.device {
        VirtioKind::Blk(_) => "virtio-blk",
        VirtioKind::Net(_) => "virtio-net",
        VirtioKind::Console => "virtio-console",
        VirtioKind::Rng => "virtio-rng",
    };
    let failed = |e: &dyn std::error::Error| PciBuildError::Device(format!("{name}: {}", chain(e)));
    let device: Box<dyn VirtioDevice> = match &cfg.device {
        VirtioKind::Blk(b) => {
            counts.blk += 1;
            Box::new(block(b, cpus, counts.blk)?)
        }
        VirtioKind::Net(n) => {
            counts.net += 1;
            Box::new(net(n, counts.net)?)
        }
        VirtioKind::Console => {
            let console = VirtioConsole::new(ConsoleConfig::new(wiring.console_output()))
                .map_err(|e| failed(&e))?;
            wiring.console_input(Arc::new(HvcInput(console.input())));
            Box::new(console)
        }
        VirtioKind::Rng => Box::new(Rng::new(RngConfig::default()).map_err(|e| failed(&e))?),
    };
    let mut transport = VirtioPciConfig::new(
        device,
        wiring.memory(),
        wiring.dma(),
        wiring.msi_vectors(),
        intx,
    );
    if cfg.no_msix {
        transport.msix_vectors = 0;
    }
    let function = VirtioPci::new(transport).map_err(|e| failed(&e))?;
    let fds = function
        .notify_eventfds()
        .into_iter()
        .map(|(bar, offset, fd)| BarEventFd { bar, offset, fd })
        .collect();
    let shared: SharedFunction = Arc::new(Mutex::new(function));
    pci.add_bar_eventfds(&shared, fds, true);
    Ok(shared)
}

fn block(b: &VirtioBlkConfig, cpus: u32, n: u32) -> Result<Block, PciBuildError> {
    let failed = |e: &dyn std::error::Error| {
        PciBuildError::Device(format!("virtio-blk {}: {}", b.path.display(), chain(e)))
    };
    let file = BlockFile::open(&DiskConfig {
        path: b.path.clone(),
        readonly: b.readonly,
        direct: true,
    })
    .map_err(|e| failed(&e))?;
    let queues = b.queues.unwrap_or_else(|| cpus.clamp(1, 64) as u16);
    let mut cfg = BlockConfig::new(Arc::new(file), queues);
    cfg.readonly = b.readonly;
    cfg.serial = b.serial.clone().unwrap_or_else(|| format!("IOVM-VBLK{n}"));
    Block::new(cfg).map_err(|e| failed(&e))
}

fn net(n: &VirtioNetConfig, index: u32) -> Result<Net, PciBuildError> {
    let name = n.tap.clone().unwrap_or_default();
    let tap = Tap::open(&TapConfig {
        name: name.clone(),
        queues: usize::from(n.queues.unwrap_or(1)),
    })
    .map_err(|e| PciBuildError::Device(format!("virtio-net: {}", chain(&e))))?;
    tracing::info!("virtio-net on TAP interface {}", tap.name());
    let mac = n.mac.unwrap_or_else(|| default_mac(index));
    Net::new(NetConfig::from_tap(mac, tap))
        .map_err(|e| PciBuildError::Device(format!("virtio-net: {}", chain(&e))))
}

/// The virtio console's input handle as iovm's console sees it.
struct HvcInput(VirtioInput);

impl ConsoleInput for HvcInput {
    fn enqueue_input(&self, data: &[u8]) -> usize {
        self.0.push(data)
    }
}
