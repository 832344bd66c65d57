//! A fake guest driver: guest RAM, a temporary backing file, recorded
//! interrupts, and the register/queue dance Linux's `nvme` driver does on
//! top of the PCI steps of `pci::testing`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use backend::{BlockFile, DiskConfig, EngineKind};
use dma::{Dma, GuestDma};
use irq::recording::{RecordingLine, RecordingVectors};
use pci::config::command;
use pci::message::MsiMessage;
use pci::testing::{BarDriver, ConfigDriver, MsiDriver, MsixDriver};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::nvme::command::Sqe;
use crate::nvme::namespace::NamespaceConfig;
use crate::nvme::regs::{self, cc};
use crate::nvme::status::Status;
use crate::nvme::{Nvme, NvmeConfig, DOORBELL_BASE, NVME_BAR};

/// Guest RAM size.
pub const RAM: u64 = 8 << 20;
/// Admin SQ / CQ.
pub const ASQ: u64 = 0x1_0000;
pub const ACQ: u64 = 0x1_1000;
pub const ADMIN_ENTRIES: u32 = 32;
/// Identify / log buffer.
pub const IDBUF: u64 = 0x1_2000;
/// I/O queue rings: SQ q at IOSQ + q * 0x2000, CQ q at IOCQ + q * 0x1000.
pub const IOSQ: u64 = 0x2_0000;
pub const IOCQ: u64 = 0x6_0000;
pub const IO_ENTRIES: u32 = 32;
/// PRP list pages.
pub const LISTS: u64 = 0x8_0000;
/// Data buffers.
pub const DATA: u64 = 0x10_0000;
/// Address past guest RAM.
pub const OUTSIDE: u64 = 0x4000_0000;

/// A file removed on drop.
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(len: u64) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "iovm-nvme-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
        Self(path)
    }

    pub fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut b = vec![0u8; len];
        std::fs::File::open(&self.0)
            .unwrap()
            .read_exact_at(&mut b, offset)
            .unwrap();
        b
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One namespace to build.
#[derive(Clone, Copy, Debug)]
pub struct NsSpec {
    pub bytes: u64,
    pub block_size: u32,
    pub readonly: bool,
}

impl Default for NsSpec {
    fn default() -> Self {
        Self {
            bytes: 4 << 20,
            block_size: 512,
            readonly: false,
        }
    }
}

/// A completion queue entry as the driver reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    pub dw0: u32,
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: u16,
    pub phase: bool,
    pub status: u16,
}

impl Cqe {
    pub fn ok(&self) -> bool {
        self.status == 0
    }

    pub fn is(&self, s: Status) -> bool {
        self.status == s.field()
    }
}

/// Driver-side state of one queue pair.
#[derive(Clone, Copy, Debug)]
pub struct QueuePair {
    pub sq: u64,
    pub cq: u64,
    pub entries: u32,
    pub tail: u32,
    pub head: u32,
    pub phase: bool,
}

impl QueuePair {
    fn new(sq: u64, cq: u64, entries: u32) -> Self {
        Self {
            sq,
            cq,
            entries,
            tail: 0,
            head: 0,
            phase: true,
        }
    }
}

/// The fake guest.
pub struct Driver {
    pub nvme: Nvme,
    pub dma: Arc<dyn Dma>,
    pub vectors: Arc<RecordingVectors>,
    pub line: Arc<RecordingLine>,
    pub files: Vec<TempFile>,
    /// The namespaces' disks, as the device got them (to count syncs).
    pub disks: Vec<Arc<BlockFile>>,
    /// The function's I/O counters.
    pub counters: Arc<counters::FunctionCounters>,
    pub queues: Vec<Option<QueuePair>>,
    next_cid: u16,
}

/// Wraps the device's guest memory handle.
pub type WrapDma = fn(Arc<dyn Dma>) -> Arc<dyn Dma>;

pub struct Setup {
    /// Wraps the guest memory handle the device gets (to observe or
    /// perturb its accesses).
    pub wrap_dma: Option<WrapDma>,
    pub namespaces: Vec<NsSpec>,
    pub engine: EngineKind,
    pub max_io_queues: u16,
    pub mdts: u8,
    /// Last changes to the controller's config (subsystem, PCI role).
    pub configure: fn(&mut NvmeConfig),
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            wrap_dma: None,
            namespaces: vec![NsSpec::default()],
            engine: EngineKind::Sync,
            max_io_queues: 4,
            mdts: 5,
            configure: |_| {},
        }
    }
}

impl Driver {
    pub fn new() -> Self {
        Self::with(Setup::default())
    }

    pub fn with(setup: Setup) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
        let mut files = Vec::new();
        let mut disks = Vec::new();
        let mut namespaces = Vec::new();
        for ns in &setup.namespaces {
            let f = TempFile::new(ns.bytes);
            let disk = BlockFile::open(&DiskConfig {
                path: f.0.clone(),
                readonly: false,
                direct: true,
            })
            .unwrap();
            let disk = Arc::new(disk);
            disks.push(disk.clone());
            namespaces.push(NamespaceConfig {
                disk,
                block_size: ns.block_size,
                readonly: ns.readonly,
            });
            files.push(f);
        }
        let mut cfg = NvmeConfig {
            max_io_queues: setup.max_io_queues,
            mdts: setup.mdts,
            engine: setup.engine,
            namespaces,
            ..NvmeConfig::default()
        };
        (setup.configure)(&mut cfg);
        let counters = cfg.counters.clone();
        let vectors = Arc::new(RecordingVectors::new());
        let line = Arc::new(RecordingLine::new());
        let device_dma = setup.wrap_dma.map_or(dma.clone(), |w| w(dma.clone()));
        let nvme = Nvme::new(cfg, device_dma, vectors.clone(), line.clone()).unwrap();
        Self {
            nvme,
            dma,
            vectors,
            line,
            files,
            disks,
            counters,
            queues: vec![None; usize::from(setup.max_io_queues) + 1],
            next_cid: 1,
        }
    }

    // ---- PCI and BAR0 ---------------------------------------------------

    pub fn read32(&mut self, offset: u64) -> u32 {
        self.nvme.bar_read32(NVME_BAR, offset)
    }

    pub fn read64(&mut self, offset: u64) -> u64 {
        self.nvme.bar_read64(NVME_BAR, offset)
    }

    pub fn write32(&mut self, offset: u64, v: u32) {
        self.nvme.bar_write32(NVME_BAR, offset, v);
    }

    pub fn write64(&mut self, offset: u64, v: u64) {
        self.nvme.bar_write64(NVME_BAR, offset, v);
    }

    pub fn csts(&mut self) -> u32 {
        self.read32(regs::CSTS as u64)
    }

    /// Memory decoding and bus mastering on.
    pub fn enable_pci(&mut self) {
        self.nvme.set_command(command::MEMORY | command::BUS_MASTER);
    }

    /// MSI-X on, every entry v → vector 0x40 + v on APIC 0.
    pub fn enable_msix(&mut self) {
        let all = self.nvme.msix_layout().expect("MSI-X capability").vectors;
        self.nvme.enable_msix(all, |v| MsiMessage {
            address: 0xfee0_0000,
            data: 0x40 + u32::from(v),
        });
    }

    /// MSI on with `vectors` (power of two) enabled, from vector 0x50.
    pub fn enable_msi(&mut self, vectors: u8) {
        let base = MsiMessage {
            address: 0xfee0_0000,
            data: 0x50,
        };
        self.nvme.enable_msi(base, vectors).expect("MSI capability");
    }

    // ---- controller bring-up ---------------------------------------------

    pub fn cc_value() -> u32 {
        cc::EN | 6 << cc::IOSQES_SHIFT | 4 << cc::IOCQES_SHIFT
    }

    /// Linux's order: disable, wait not ready, admin queue, enable, wait
    /// ready.
    pub fn enable(&mut self) {
        self.write32(regs::CC as u64, 0);
        assert_eq!(self.csts() & 1, 0);
        let aqa = (ADMIN_ENTRIES - 1) << 16 | (ADMIN_ENTRIES - 1);
        self.write32(regs::AQA as u64, aqa);
        self.dma
            .write(ACQ, &vec![0u8; ADMIN_ENTRIES as usize * 16])
            .unwrap();
        self.write64(regs::ASQ as u64, ASQ);
        self.write64(regs::ACQ as u64, ACQ);
        self.write32(regs::CC as u64, Self::cc_value());
        assert_eq!(self.csts() & 3, 1, "ready, not fatal");
        self.queues[0] = Some(QueuePair::new(ASQ, ACQ, ADMIN_ENTRIES));
        for q in self.queues.iter_mut().skip(1) {
            *q = None;
        }
    }

    /// PCI on, MSI-X on, controller enabled.
    pub fn bring_up(&mut self) {
        self.enable_pci();
        self.enable_msix();
        self.enable();
    }

    /// Bring-up plus `n` I/O queue pairs, CQ q on vector q.
    pub fn bring_up_with_queues(&mut self, n: u16) {
        self.bring_up();
        let c = self.admin(set_features(
            0x07,
            u32::from(n - 1) | u32::from(n - 1) << 16,
        ));
        assert!(c.ok());
        for q in 1..=n {
            self.create_queue_pair(q, IO_ENTRIES, q);
        }
    }

    pub fn create_queue_pair(&mut self, qid: u16, entries: u32, vector: u16) {
        // Like Linux, start from a zeroed CQ: no stale phase bits.
        self.dma
            .write(cq_addr(qid), &vec![0u8; entries as usize * 16])
            .unwrap();
        let c = self.admin(create_cq(qid, entries, cq_addr(qid), vector));
        assert!(c.ok(), "create CQ {qid}: {c:?}");
        let c = self.admin(create_sq(qid, entries, sq_addr(qid), qid));
        assert!(c.ok(), "create SQ {qid}: {c:?}");
        self.queues[usize::from(qid)] = Some(QueuePair::new(sq_addr(qid), cq_addr(qid), entries));
    }

    // ---- commands --------------------------------------------------------

    pub fn cid(&mut self) -> u16 {
        self.next_cid = self.next_cid.wrapping_add(1);
        self.next_cid
    }

    /// Puts `sqe` in SQ `qid` (CID assigned) without ringing; returns the CID.
    pub fn push(&mut self, qid: u16, mut sqe: Sqe) -> u16 {
        let cid = self.cid();
        sqe.cdw0 = (sqe.cdw0 & 0xffff) | u32::from(cid) << 16;
        let q = self.queues[usize::from(qid)].as_mut().unwrap();
        let addr = q.sq + u64::from(q.tail) * 64;
        q.tail = (q.tail + 1) % q.entries;
        self.dma.write(addr, &sqe.to_bytes()).unwrap();
        cid
    }

    pub fn ring_sq(&mut self, qid: u16) {
        let tail = self.queues[usize::from(qid)].unwrap().tail;
        self.write32(DOORBELL_BASE + 8 * u64::from(qid), tail);
    }

    /// The next CQE of queue `qid`, if its phase says it is new; consumed
    /// and the head doorbell rung.
    pub fn pop(&mut self, qid: u16) -> Option<Cqe> {
        let cqe = self.take_cqe(qid)?;
        self.ring_cq(qid);
        Some(cqe)
    }

    /// Writes CQ `qid`'s head doorbell with the head consumed so far.
    pub fn ring_cq(&mut self, qid: u16) {
        let head = self.queues[usize::from(qid)].unwrap().head;
        self.write32(DOORBELL_BASE + 8 * u64::from(qid) + 4, head);
    }

    /// The next CQE of queue `qid`, if its phase says it is new; consumed
    /// without a doorbell write (an interrupt handler writes the head once
    /// after its batch: [`Driver::ring_cq`]).
    pub fn take_cqe(&mut self, qid: u16) -> Option<Cqe> {
        let q = self.queues[usize::from(qid)].as_mut().unwrap();
        let mut b = [0u8; 16];
        self.dma
            .read(q.cq + u64::from(q.head) * 16, &mut b)
            .unwrap();
        let dw = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let dw3 = dw(12);
        let cqe = Cqe {
            dw0: dw(0),
            sqhd: dw(8) as u16,
            sqid: (dw(8) >> 16) as u16,
            cid: dw3 as u16,
            phase: dw3 & (1 << 16) != 0,
            status: (dw3 >> 17) as u16,
        };
        if cqe.phase != q.phase {
            return None;
        }
        q.head += 1;
        if q.head == q.entries {
            q.head = 0;
            q.phase = !q.phase;
        }
        Some(cqe)
    }

    /// Submits one command on `qid` and returns its completion.
    pub fn submit(&mut self, qid: u16, sqe: Sqe) -> Cqe {
        let cid = self.push(qid, sqe);
        self.ring_sq(qid);
        self.nvme.wait_idle();
        let cqe = self.pop(qid).expect("a completion");
        assert_eq!(cqe.cid, cid);
        cqe
    }

    pub fn admin(&mut self, sqe: Sqe) -> Cqe {
        self.submit(0, sqe)
    }

    pub fn io(&mut self, qid: u16, sqe: Sqe) -> Cqe {
        self.submit(qid, sqe)
    }

    /// Identify into IDBUF; returns the 4 KiB.
    pub fn identify(&mut self, cns: u8, nsid: u32) -> (Cqe, Vec<u8>) {
        self.dma.write(IDBUF, &[0xee; 4096]).unwrap();
        let c = self.admin(identify(cns, nsid));
        let mut b = vec![0u8; 4096];
        self.dma.read(IDBUF, &mut b).unwrap();
        (c, b)
    }

    /// Get Log Page of `len` bytes into IDBUF.
    pub fn log(&mut self, lid: u8, len: u32, rae: bool) -> (Cqe, Vec<u8>) {
        let numd = len / 4 - 1;
        let sqe = Sqe {
            cdw0: 0x02,
            nsid: 0xffff_ffff,
            prp1: IDBUF,
            prp2: 0,
            cdw: [
                u32::from(lid) | u32::from(rae) << 15 | (numd & 0xffff) << 16,
                numd >> 16,
                0,
                0,
                0,
                0,
            ],
        };
        let c = self.admin(sqe);
        let mut b = vec![0u8; len as usize];
        self.dma.read(IDBUF, &mut b).unwrap();
        (c, b)
    }
}

pub fn sq_addr(qid: u16) -> u64 {
    IOSQ + u64::from(qid) * 0x2000
}

pub fn cq_addr(qid: u16) -> u64 {
    IOCQ + u64::from(qid) * 0x1000
}

pub fn sqe(opcode: u8, nsid: u32, prp: (u64, u64), cdw: [u32; 6]) -> Sqe {
    Sqe {
        cdw0: u32::from(opcode),
        nsid,
        prp1: prp.0,
        prp2: prp.1,
        cdw,
    }
}

pub fn identify(cns: u8, nsid: u32) -> Sqe {
    sqe(0x06, nsid, (IDBUF, 0), [u32::from(cns), 0, 0, 0, 0, 0])
}

pub fn create_cq(qid: u16, entries: u32, base: u64, iv: u16) -> Sqe {
    sqe(
        0x05,
        0,
        (base, 0),
        [
            u32::from(qid) | (entries - 1) << 16,
            0b11 | u32::from(iv) << 16,
            0,
            0,
            0,
            0,
        ],
    )
}

pub fn create_sq(qid: u16, entries: u32, base: u64, cqid: u16) -> Sqe {
    sqe(
        0x01,
        0,
        (base, 0),
        [
            u32::from(qid) | (entries - 1) << 16,
            1 | u32::from(cqid) << 16,
            0,
            0,
            0,
            0,
        ],
    )
}

pub fn delete_sq(qid: u16) -> Sqe {
    sqe(0x00, 0, (0, 0), [u32::from(qid), 0, 0, 0, 0, 0])
}

pub fn delete_cq(qid: u16) -> Sqe {
    sqe(0x04, 0, (0, 0), [u32::from(qid), 0, 0, 0, 0, 0])
}

pub fn set_features(fid: u8, value: u32) -> Sqe {
    sqe(0x09, 0, (0, 0), [u32::from(fid), value, 0, 0, 0, 0])
}

pub fn get_features(fid: u8, arg: u32) -> Sqe {
    sqe(0x0a, 0, (0, 0), [u32::from(fid), arg, 0, 0, 0, 0])
}

/// Read (write = false) or Write of `blocks` blocks at `slba`.
pub fn rw(write: bool, nsid: u32, slba: u64, blocks: u32, prp: (u64, u64)) -> Sqe {
    sqe(
        if write { 0x01 } else { 0x02 },
        nsid,
        prp,
        [slba as u32, (slba >> 32) as u32, blocks - 1, 0, 0, 0],
    )
}
