//! Fuzzes the whole NVMe controller as a guest drives it: PCI
//! configuration writes, BAR 0 register writes (CC, AQA, ASQ, ACQ, INTMS,
//! NSSR, ...), doorbell writes and register reads, with guest RAM that the
//! input fills (queues, commands, PRP lists, data), so that admin commands
//! (queue creation and deletion, Identify, Get/Set Features, Get Log Page,
//! Doorbell Buffer Config, Abort, Asynchronous Event Request) and I/O run
//! against a small namespace file. The controller runs inline, without
//! its worker thread, on the synchronous backend.
//!
//! Input layout: one flag byte (bit 0: start from Linux's bring-up: memory
//! and bus mastering on, MSI-X on, an admin queue of 16 entries at 0x1000
//! and 0x2000, CC.EN set), 16 KiB of guest RAM from address 0, then records
//! of 12 bytes: an operation selector (register or doorbell write, register
//! read, configuration write, MSI-X table write), a 2-byte offset, a width
//! selector, and 8 bytes of value. Nothing may panic or hang; CSTS never
//! reads as all ones; and the reserved and read-only registers keep their
//! values (CAP, VS).

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use backend::{BlockFile, DiskConfig, EngineKind};
use devices::nvme::regs::{self, cc};
use devices::nvme::{NamespaceConfig, Nvme, NvmeConfig, NVME_BAR};
use dma::{Dma, GuestDma};
use irq::recording::{RecordingLine, RecordingVectors};
use libfuzzer_sys::fuzz_target;
use pci::function::PciFunction;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest RAM: what the input fills, then zeroes.
const RAM: usize = 0x10_0000;
/// The part of RAM the input fills.
const FILLED: usize = 0x4000;

/// One 1 MiB namespace file in /dev/shm for the whole run.
fn disk() -> Arc<BlockFile> {
    static DISK: OnceLock<Arc<BlockFile>> = OnceLock::new();
    DISK.get_or_init(|| {
        let path = PathBuf::from(format!("/dev/shm/iovm-fuzz-nvme-{}.img", std::process::id()));
        std::fs::write(&path, vec![0u8; 1 << 20]).expect("namespace file");
        let file = BlockFile::open(&DiskConfig {
            path: path.clone(),
            readonly: false,
            direct: false,
        })
        .expect("open the namespace file");
        let _ = std::fs::remove_file(&path);
        Arc::new(file)
    })
    .clone()
}

fn write_bar(nvme: &mut Nvme, offset: u64, value: &[u8]) {
    nvme.bar_write(NVME_BAR, offset, value);
}

fn read_bar(nvme: &mut Nvme, offset: u64, len: usize) -> u64 {
    let mut out = [0u8; 8];
    nvme.bar_read(NVME_BAR, offset, &mut out[..len]);
    u64::from_le_bytes(out)
}

/// Linux's order: PCI on, MSI-X enabled in config space, admin queue,
/// CC.EN.
fn bring_up(nvme: &mut Nvme) {
    nvme.config_write(0x04, &0x0006u16.to_le_bytes());
    let mut cap = 0x40usize;
    for _ in 0..16 {
        let mut h = [0u8; 2];
        nvme.config_read(cap, &mut h);
        if h[0] == 0x11 {
            nvme.config_write(cap + 2, &0x8000u16.to_le_bytes());
            break;
        }
        if h[1] == 0 {
            break;
        }
        cap = usize::from(h[1]);
    }
    write_bar(nvme, regs::AQA as u64, &(15u32 << 16 | 15).to_le_bytes());
    write_bar(nvme, regs::ASQ as u64, &0x1000u64.to_le_bytes());
    write_bar(nvme, regs::ACQ as u64, &0x2000u64.to_le_bytes());
    let en = cc::EN | 6 << cc::IOSQES_SHIFT | 4 << cc::IOCQES_SHIFT;
    write_bar(nvme, regs::CC as u64, &en.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (ram, records) = rest.split_at(rest.len().min(FILLED));
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).expect("RAM");
    let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
    dma.write(0, ram).expect("fill RAM");
    let cfg = NvmeConfig {
        max_io_queues: 4,
        max_queue_entries: 64,
        mdts: 3,
        engine: EngineKind::Sync,
        namespaces: vec![NamespaceConfig {
            disk: disk(),
            block_size: 512,
            readonly: false,
        }],
        ..NvmeConfig::default()
    };
    let vectors = Arc::new(RecordingVectors::new());
    let mut nvme = Nvme::new(cfg, dma, vectors, Arc::new(RecordingLine::new())).expect("NVMe");
    let cap = read_bar(&mut nvme, regs::CAP as u64, 8);
    let vs = read_bar(&mut nvme, regs::VS as u64, 4);
    if flags & 1 != 0 {
        bring_up(&mut nvme);
    }
    for r in records.chunks_exact(12) {
        let offset = u64::from(u16::from_le_bytes([r[1], r[2]]));
        let width = [4usize, 8, 1, 2][usize::from(r[3]) % 4];
        let value = &r[4..4 + width];
        match r[0] % 6 {
            // Registers and doorbells (0x1000 + 8 per queue pair) most often.
            0 | 1 => write_bar(&mut nvme, offset & 0x10ff, value),
            2 => {
                let _ = read_bar(&mut nvme, offset & 0x3fff, width);
            }
            3 => {
                nvme.config_write(usize::from(r[1]), value);
            }
            4 => write_bar(&mut nvme, 0x2000 + (offset & 0x1fff), value),
            _ => write_bar(&mut nvme, regs::CC as u64, value),
        }
        let csts = read_bar(&mut nvme, regs::CSTS as u64, 4);
        assert_ne!(csts, 0xffff_ffff, "CSTS reads as a device that is gone");
        assert_eq!(read_bar(&mut nvme, regs::CAP as u64, 8), cap, "CAP is read-only");
        assert_eq!(read_bar(&mut nvme, regs::VS as u64, 4), vs, "VS is read-only");
    }
});
