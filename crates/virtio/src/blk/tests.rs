//! virtio-blk driven by a fake guest driver: requests written into a mock
//! split queue, checked by status byte, used ring and the backing file.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use backend::{BlockFile, DiskConfig, EngineKind};
use dma::{Dma, GuestDma};

use super::*;
use crate::testutil::{memory, Desc, FakeDriver, FakeIommu, DATA, IOVA_OFFSET, OUTSIDE, TEST_RID};
use crate::VirtioDevice;

const QSIZE: u16 = 64;
const FILE_LEN: u64 = 1 << 20;
const HDR: u64 = DATA;
const BUF: u64 = DATA + 0x1000;
const STATUS: u64 = DATA + 0x80;
const ALL: u64 = F_FLUSH | F_DISCARD | F_WRITE_ZEROES;

/// A file removed on drop.
#[derive(Debug)]
struct TempFile(PathBuf);

impl TempFile {
    fn new(len: u64) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "iovm-vblk-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        Self(path)
    }

    fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        std::fs::File::open(&self.0)
            .unwrap()
            .read_exact_at(&mut b, offset)
            .unwrap();
        b
    }

    fn write_at(&self, offset: u64, data: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.0)
            .unwrap();
        f.write_all_at(data, offset).unwrap();
        f.sync_all().unwrap();
    }

    fn blocks(&self) -> u64 {
        std::fs::metadata(&self.0).unwrap().blocks()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How the device reaches guest memory in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DmaMode {
    /// Guest RAM directly.
    Plain,
    /// Through the function's context and a translating fake IOMMU.
    Translated,
    /// Through a function context whose Bus Master Enable is off.
    BusMasterOff,
}

struct Opts {
    readonly: bool,
    queues: u16,
    features: u64,
    event_idx: bool,
    engine: EngineKind,
    dma: DmaMode,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            readonly: false,
            queues: 1,
            features: ALL,
            event_idx: false,
            engine: EngineKind::Sync,
            dma: DmaMode::Plain,
        }
    }
}

struct Harness {
    dev: Block,
    drv: FakeDriver,
    file: TempFile,
    /// The device's disk, to count the syncs it was given.
    disk: Arc<BlockFile>,
    iommu: Option<Arc<FakeIommu>>,
    counters: Arc<counters::FunctionCounters>,
}

fn device(file: &TempFile, opts: &Opts) -> Block {
    device_on(open_disk(file, opts), opts)
}

fn open_disk(file: &TempFile, opts: &Opts) -> Arc<BlockFile> {
    let disk = BlockFile::open(&DiskConfig {
        path: file.0.clone(),
        readonly: opts.readonly,
        direct: false,
    })
    .unwrap();
    Arc::new(disk)
}

fn device_on(disk: Arc<BlockFile>, opts: &Opts) -> Block {
    let mut cfg = BlockConfig::new(disk, opts.queues);
    cfg.serial = "iovm-serial-0001".into();
    cfg.queue_size = QSIZE;
    cfg.engine = opts.engine;
    Block::new(cfg).unwrap()
}

fn harness(opts: Opts) -> Harness {
    let file = TempFile::new(FILE_LEN);
    let disk = open_disk(&file, &opts);
    let mut dev = device_on(disk.clone(), &opts);
    let sizes = vec![QSIZE; usize::from(opts.queues)];
    let (drv, act, iommu) = match opts.dma {
        DmaMode::Plain => {
            let (drv, act) = FakeDriver::new(&sizes, opts.features, opts.event_idx);
            (drv, act, None)
        }
        DmaMode::Translated => {
            let (drv, act, iommu) = FakeDriver::translated(&sizes, opts.features, opts.event_idx);
            (drv, act, Some(iommu))
        }
        DmaMode::BusMasterOff => {
            let (drv, act) = FakeDriver::bus_master_off(&sizes, opts.features);
            (drv, act, None)
        }
    };
    let counters = act.counters.clone();
    dev.activate(act).unwrap();
    Harness {
        dev,
        drv,
        file,
        disk,
        iommu,
        counters,
    }
}

fn header(ty: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&ty.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

fn range(sector: u64, num: u32, flags: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&sector.to_le_bytes());
    r[8..12].copy_from_slice(&num.to_le_bytes());
    r[12..].copy_from_slice(&flags.to_le_bytes());
    r
}

impl Harness {
    /// Submits `descs` on queue `q`, waits for the chain to come back and
    /// returns (status byte at STATUS, used length).
    fn submit_on(&mut self, q: usize, descs: &[Desc]) -> (u8, u32) {
        let fq = &mut self.drv.queues[q];
        fq.write(STATUS, &[0xff]);
        let before = fq.used_idx();
        let head = fq.add_chain(descs);
        self.drv.kick(q);
        let fq = &self.drv.queues[q];
        fq.wait_used(before.wrapping_add(1));
        let (id, len) = fq.used_elem(before);
        assert_eq!(id, u32::from(head));
        (fq.read(STATUS, 1)[0], len)
    }

    fn submit(&mut self, descs: &[Desc]) -> (u8, u32) {
        self.submit_on(0, descs)
    }

    /// A request with a header, one data buffer at BUF (direction by
    /// type) and a status descriptor.
    fn simple(&mut self, ty: u32, sector: u64, data_len: u32) -> (u8, u32) {
        self.mem_write(HDR, &header(ty, sector));
        let writable = matches!(ty, T_IN | T_GET_ID);
        let mut descs = vec![(HDR, 16, false)];
        if data_len > 0 {
            descs.push((BUF, data_len, writable));
        }
        descs.push((STATUS, 1, true));
        self.submit(&descs)
    }

    fn ranges(&mut self, ty: u32, ranges: &[[u8; 16]]) -> (u8, u32) {
        self.mem_write(HDR, &header(ty, 0));
        let list: Vec<u8> = ranges.iter().flatten().copied().collect();
        self.mem_write(BUF, &list);
        self.submit(&[
            (HDR, 16, false),
            (BUF, list.len() as u32, false),
            (STATUS, 1, true),
        ])
    }

    fn mem_write(&self, addr: u64, data: &[u8]) {
        self.drv.queues[0].write(addr, data);
    }

    fn mem_read(&self, addr: u64, len: usize) -> Vec<u8> {
        self.drv.queues[0].read(addr, len)
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

const OK: u8 = Status::Ok as u8;
const IOERR: u8 = Status::IoErr as u8;
const UNSUPP: u8 = Status::Unsupp as u8;

// ---- data path ----------------------------------------------------------

#[test]
fn test_blk_counters_count_requests_bytes_notifies_and_errors() {
    let mut h = harness(Opts::default());
    h.mem_write(BUF, &pattern(4096, 1));
    assert_eq!(h.simple(T_OUT, 0, 4096).0, OK);
    assert_eq!(h.simple(T_IN, 0, 2048).0, OK);
    assert_eq!(h.simple(T_IN, 8, 1024).0, OK);
    assert_eq!(h.simple(T_FLUSH, 0, 0).0, OK);
    assert_eq!(h.simple(T_IN, FILE_LEN / 512, 512).0, IOERR, "past the end");
    h.mem_write(HDR, &header(T_IN, 0));
    let outside = h.submit(&[(HDR, 16, false), (1 << 40, 512, true), (STATUS, 1, true)]);
    assert_eq!(outside.0, IOERR);

    let f = h.counters.figures();
    assert_eq!(
        (f.get("write_ops"), f.get("write_bytes")),
        (Some(1), Some(4096))
    );
    assert_eq!(
        (f.get("read_ops"), f.get("read_bytes")),
        (Some(2), Some(3072))
    );
    assert_eq!(f.get("flush_ops"), Some(1));
    assert_eq!(f.get("errors_invalid"), Some(1));
    assert_eq!(f.get("errors_dma"), Some(1));
    assert_eq!(f.get("errors_io"), Some(0));
    // Six kicks of the fake driver's notify eventfd, none trapped.
    assert_eq!(f.get("doorbells_ioeventfd"), Some(6));
    assert_eq!(f.get("doorbells_trapped"), Some(0));
}

#[test]
fn test_blk_write_stores_guest_bytes_in_file() {
    let mut h = harness(Opts::default());
    let data = pattern(1024, 3);
    h.mem_write(BUF, &data);

    let (status, len) = h.simple(T_OUT, 8, 1024);

    assert_eq!((status, len), (OK, 1));
    assert_eq!(h.file.read_at(8 * 512, 1024), data);
}

#[test]
fn test_blk_read_copies_file_bytes_into_guest() {
    let mut h = harness(Opts::default());
    let data = pattern(2048, 9);
    h.file.write_at(4096, &data);

    let (status, len) = h.simple(T_IN, 8, 2048);

    assert_eq!((status, len), (OK, 2049));
    assert_eq!(h.mem_read(BUF, 2048), data);
}

#[test]
fn test_blk_read_split_across_descriptors_fills_each_in_order() {
    let mut h = harness(Opts::default());
    let data = pattern(1024, 1);
    h.file.write_at(0, &data);
    h.mem_write(HDR, &header(T_IN, 0));

    let (status, len) = h.submit(&[
        (HDR, 16, false),
        (BUF, 100, true),
        (BUF + 0x2000, 924, true),
        (STATUS, 1, true),
    ]);

    assert_eq!((status, len), (OK, 1025));
    assert_eq!(h.mem_read(BUF, 100), data[..100]);
    assert_eq!(h.mem_read(BUF + 0x2000, 924), data[100..]);
}

#[test]
fn test_blk_header_and_status_sharing_descriptors_are_accepted() {
    // Message framing (§2.6.4): header+data in one descriptor, data+status
    // in another.
    let mut h = harness(Opts::default());
    let data = pattern(512, 5);
    h.mem_write(BUF, &header(T_OUT, 2));
    h.mem_write(BUF + 16, &data);

    let (status, len) = h.submit(&[(BUF, 16 + 512, false), (STATUS, 1, true)]);

    assert_eq!((status, len), (OK, 1));
    assert_eq!(h.file.read_at(1024, 512), data);
}

#[test]
fn test_blk_io_uring_engine_round_trips() {
    let mut h = harness(Opts {
        engine: EngineKind::IoUring,
        ..Opts::default()
    });
    let data = pattern(4096, 11);
    h.mem_write(BUF, &data);

    let w = h.simple(T_OUT, 16, 4096);
    h.mem_write(BUF, &[0u8; 4096]);
    let r = h.simple(T_IN, 16, 4096);

    assert_eq!((w, r), ((OK, 1), (OK, 4097)));
    assert_eq!(h.mem_read(BUF, 4096), data);
}

#[test]
fn test_blk_flush_completes_ok() {
    let mut h = harness(Opts::default());

    let (status, len) = h.simple(T_FLUSH, 0, 0);

    assert_eq!((status, len), (OK, 1));
}

#[test]
fn test_blk_write_without_flush_negotiated_completes_ok() {
    let mut h = harness(Opts {
        features: 0,
        ..Opts::default()
    });
    h.mem_write(BUF, &[0xab; 512]);

    let (status, _) = h.simple(T_OUT, 0, 512);

    assert_eq!(status, OK);
    assert_eq!(h.file.read_at(0, 512), vec![0xab; 512]);
}

#[test]
fn test_blk_discard_punches_a_hole() {
    let mut h = harness(Opts::default());
    h.file.write_at(0, &vec![0x5a; 256 * 1024]);
    let before = h.file.blocks();

    let (status, len) = h.ranges(T_DISCARD, &[range(0, 512, 0)]);

    assert_eq!((status, len), (OK, 1));
    assert!(h.file.blocks() < before, "{} !< {before}", h.file.blocks());
    assert_eq!(h.file.read_at(0, 256 * 1024), vec![0; 256 * 1024]);
}

#[test]
fn test_blk_write_zeroes_zeroes_the_range() {
    let mut h = harness(Opts::default());
    h.file.write_at(0, &[0x77; 8192]);

    let (status, _) = h.ranges(T_WRITE_ZEROES, &[range(2, 4, 0)]);

    assert_eq!(status, OK);
    assert_eq!(h.file.read_at(1024, 2048), vec![0; 2048]);
    assert_eq!(h.file.read_at(0, 1024), vec![0x77; 1024]);
    assert_eq!(h.file.read_at(3072, 1024), vec![0x77; 1024]);
}

#[test]
fn test_blk_write_zeroes_with_unmap_deallocates() {
    let mut h = harness(Opts::default());
    h.file.write_at(0, &vec![0x33; 256 * 1024]);
    let before = h.file.blocks();

    let (status, _) = h.ranges(T_WRITE_ZEROES, &[range(0, 512, RANGE_F_UNMAP)]);

    assert_eq!(status, OK);
    assert!(h.file.blocks() < before);
    assert_eq!(h.file.read_at(0, 256 * 1024), vec![0; 256 * 1024]);
}

/// Without FLUSH the disk is write-through (§5.2.6.2): a discard or
/// write-zeroes is synced before its status is written, on either engine.
#[test]
fn test_blk_write_through_discard_and_write_zeroes_sync_before_completing() {
    for engine in [EngineKind::Sync, EngineKind::IoUring] {
        let mut h = harness(Opts {
            features: F_DISCARD | F_WRITE_ZEROES,
            engine,
            ..Opts::default()
        });
        h.file.write_at(0, &vec![0x33; 8192]);

        let d = h.ranges(T_DISCARD, &[range(0, 4, 0)]).0;
        let after_discard = h.disk.syncs();
        let z = h.ranges(T_WRITE_ZEROES, &[range(4, 4, 0)]).0;
        let after_zeroes = h.disk.syncs();
        let u = h.ranges(T_WRITE_ZEROES, &[range(8, 4, RANGE_F_UNMAP)]).0;

        assert_eq!((d, z, u), (OK, OK, OK), "{engine:?}");
        assert_eq!((after_discard, after_zeroes, h.disk.syncs()), (1, 2, 3));
        assert_eq!(h.file.read_at(0, 6144), vec![0; 6144]);
        assert_eq!(h.file.read_at(6144, 2048), vec![0x33; 2048]);
    }
}

#[test]
fn test_blk_write_back_discard_and_write_zeroes_leave_syncing_to_flush() {
    let mut h = harness(Opts::default());

    let d = h.ranges(T_DISCARD, &[range(0, 4, 0)]).0;
    let z = h.ranges(T_WRITE_ZEROES, &[range(4, 4, 0)]).0;
    let before_flush = h.disk.syncs();
    let f = h.simple(T_FLUSH, 0, 0).0;

    assert_eq!((d, z, f), (OK, OK, OK));
    assert_eq!((before_flush, h.disk.syncs()), (0, 1));
}

#[test]
fn test_blk_get_id_returns_the_serial() {
    let mut h = harness(Opts::default());

    let (status, len) = h.simple(T_GET_ID, 0, 20);

    assert_eq!((status, len), (OK, 21));
    let mut want = b"iovm-serial-0001".to_vec();
    want.resize(20, 0);
    assert_eq!(h.mem_read(BUF, 20), want);
}

// ---- refused requests ---------------------------------------------------

#[test]
fn test_blk_write_on_readonly_device_is_ioerr_and_file_unchanged() {
    let mut h = harness(Opts {
        readonly: true,
        ..Opts::default()
    });
    h.mem_write(BUF, &[0xee; 512]);

    let (status, len) = h.simple(T_OUT, 0, 512);

    assert_eq!((status, len), (IOERR, 1));
    assert_eq!(h.file.read_at(0, 512), vec![0; 512]);
}

#[test]
fn test_blk_discard_and_write_zeroes_on_readonly_device_are_ioerr() {
    let mut h = harness(Opts {
        readonly: true,
        ..Opts::default()
    });

    let d = h.ranges(T_DISCARD, &[range(0, 8, 0)]);
    let z = h.ranges(T_WRITE_ZEROES, &[range(0, 8, 0)]);

    assert_eq!((d.0, z.0), (IOERR, IOERR));
}

#[test]
fn test_blk_read_past_capacity_is_ioerr() {
    let mut h = harness(Opts::default());
    let last = FILE_LEN / 512 - 1;

    let (status, _) = h.simple(T_IN, last, 1024);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_read_of_last_sector_is_ok() {
    let mut h = harness(Opts::default());

    let (status, _) = h.simple(T_IN, FILE_LEN / 512 - 1, 512);

    assert_eq!(status, OK);
}

#[test]
fn test_blk_sector_that_wraps_is_ioerr() {
    let mut h = harness(Opts::default());

    let (status, _) = h.simple(T_OUT, u64::MAX, 512);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_data_not_multiple_of_512_is_ioerr() {
    let mut h = harness(Opts::default());

    let (status, _) = h.simple(T_IN, 0, 100);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_read_with_device_readable_data_is_ioerr() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_IN, 0));

    let (status, _) = h.submit(&[(HDR, 16, false), (BUF, 512, false), (STATUS, 1, true)]);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_write_with_device_writable_data_is_ioerr_and_file_unchanged() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_OUT, 0));
    h.mem_write(BUF, &[0x11; 512]);

    let (status, _) = h.submit(&[(HDR, 16, false), (BUF, 512, true), (STATUS, 1, true)]);

    assert_eq!(status, IOERR);
    assert_eq!(h.file.read_at(0, 512), vec![0; 512]);
}

#[test]
fn test_blk_readable_after_writable_is_ioerr() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_IN, 0));

    let (status, _) = h.submit(&[
        (HDR, 16, false),
        (BUF, 512, true),
        (BUF + 0x1000, 512, false),
        (STATUS, 1, true),
    ]);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_short_header_is_ioerr() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_IN, 0));

    let (status, len) = h.submit(&[(HDR, 8, false), (STATUS, 1, true)]);

    assert_eq!((status, len), (IOERR, 1));
}

#[test]
fn test_blk_unknown_type_is_unsupp() {
    let mut h = harness(Opts::default());

    let (status, _) = h.simple(0x77, 0, 0);

    assert_eq!(status, UNSUPP);
}

#[test]
fn test_blk_discard_with_unmap_flag_is_unsupp() {
    let mut h = harness(Opts::default());

    let (status, _) = h.ranges(T_DISCARD, &[range(0, 8, RANGE_F_UNMAP)]);

    assert_eq!(status, UNSUPP);
}

#[test]
fn test_blk_range_with_unknown_flag_is_unsupp() {
    let mut h = harness(Opts::default());

    let (status, _) = h.ranges(T_WRITE_ZEROES, &[range(0, 8, 0x8)]);

    assert_eq!(status, UNSUPP);
}

#[test]
fn test_blk_discard_not_negotiated_is_unsupp() {
    let mut h = harness(Opts {
        features: F_FLUSH,
        ..Opts::default()
    });

    let (status, _) = h.ranges(T_DISCARD, &[range(0, 8, 0)]);

    assert_eq!(status, UNSUPP);
}

#[test]
fn test_blk_discard_past_capacity_is_ioerr() {
    let mut h = harness(Opts::default());

    let (status, _) = h.ranges(T_DISCARD, &[range(FILE_LEN / 512 - 4, 8, 0)]);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_too_many_discard_ranges_is_ioerr() {
    let mut h = harness(Opts::default());
    let list = vec![range(0, 1, 0); MAX_DISCARD_SEG as usize + 1];

    let (status, _) = h.ranges(T_DISCARD, &list);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_data_buffer_outside_memory_is_ioerr() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_IN, 0));

    let (status, _) = h.submit(&[(HDR, 16, false), (OUTSIDE, 512, true), (STATUS, 1, true)]);

    assert_eq!(status, IOERR);
}

#[test]
fn test_blk_header_outside_memory_is_ioerr() {
    let mut h = harness(Opts::default());

    let (status, _) = h.submit(&[(OUTSIDE, 16, false), (STATUS, 1, true)]);

    assert_eq!(status, IOERR);
}

// ---- chains that cannot be answered --------------------------------------

/// Submits a chain that gets no status; returns its used length.
fn unanswered(h: &mut Harness, descs: &[Desc]) -> (u32, u8) {
    let fq = &mut h.drv.queues[0];
    fq.write(STATUS, &[0xff]);
    let head = fq.add_chain(descs);
    h.drv.kick(0);
    let fq = &h.drv.queues[0];
    fq.wait_used(1);
    let (id, len) = fq.used_elem(0);
    assert_eq!(id, u32::from(head));
    (len, fq.read(STATUS, 1)[0])
}

#[test]
fn test_blk_missing_status_descriptor_returns_chain_with_zero_len() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_OUT, 0));

    let (len, status) = unanswered(&mut h, &[(HDR, 16, false), (STATUS, 512, false)]);

    assert_eq!((len, status), (0, 0xff));
}

#[test]
fn test_blk_status_outside_memory_returns_chain_with_zero_len_and_needs_reset() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_FLUSH, 0));

    let (len, _) = unanswered(&mut h, &[(HDR, 16, false), (OUTSIDE, 1, true)]);

    assert_eq!(len, 0);
    assert_eq!(h.drv.signals.needs_reset.load(Ordering::SeqCst), 1);
}

#[test]
fn test_blk_looping_chain_returns_with_zero_len() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_IN, 0));
    let fq = &mut h.drv.queues[0];
    fq.write_desc(0, HDR, 16, 1, 1);
    fq.write_desc(1, BUF, 512, 1 | 2, 0);
    fq.publish(0);
    h.drv.kick(0);

    let fq = &h.drv.queues[0];
    fq.wait_used(1);

    assert_eq!(fq.used_elem(0), (0, 0));
}

#[test]
fn test_blk_next_index_past_the_table_returns_with_zero_len() {
    let mut h = harness(Opts::default());
    let fq = &mut h.drv.queues[0];
    fq.write_desc(0, HDR, 16, 1, QSIZE + 5);
    fq.publish(0);
    h.drv.kick(0);

    let fq = &h.drv.queues[0];
    fq.wait_used(1);

    assert_eq!(fq.used_elem(0), (0, 0));
}

#[test]
fn test_blk_descriptor_table_entry_outside_memory_returns_with_zero_len() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_IN, 0));
    let fq = &mut h.drv.queues[0];
    // An indirect table whose second entry lies past guest RAM.
    let table = crate::testutil::MEM_SIZE - 16;
    fq.write(table, &[0u8; 16]);
    fq.write_desc(0, table, 32, crate::testutil::F_INDIRECT, 0);
    fq.publish(0);
    h.drv.kick(0);

    let fq = &h.drv.queues[0];
    fq.wait_used(1);

    assert_eq!(fq.used_elem(0), (0, 0));
}

#[test]
fn test_blk_too_long_indirect_chain_returns_with_zero_len() {
    let mut h = harness(Opts::default());
    h.mem_write(HDR, &header(T_IN, 0));
    let mut descs: Vec<Desc> = vec![(HDR, 16, false)];
    descs.extend((0..u64::from(QSIZE) * 2).map(|k| (BUF + 512 * k, 512, true)));
    descs.push((STATUS, 1, true));
    let fq = &mut h.drv.queues[0];
    fq.write(STATUS, &[0xff]);
    fq.add_indirect_chain(0x30_0000, &descs);
    h.drv.kick(0);

    let fq = &h.drv.queues[0];
    fq.wait_used(1);

    assert_eq!(fq.used_elem(0).1, 0);
    assert_eq!(fq.read(STATUS, 1)[0], 0xff);
}

#[test]
fn test_blk_indirect_chain_is_served() {
    let mut h = harness(Opts::default());
    let data = pattern(512, 2);
    h.file.write_at(0, &data);
    h.mem_write(HDR, &header(T_IN, 0));
    let fq = &mut h.drv.queues[0];
    fq.write(STATUS, &[0xff]);
    fq.add_indirect_chain(
        0x30_0000,
        &[(HDR, 16, false), (BUF, 512, true), (STATUS, 1, true)],
    );
    h.drv.kick(0);

    let fq = &h.drv.queues[0];
    fq.wait_used(1);

    assert_eq!(fq.used_elem(0).1, 513);
    assert_eq!(fq.read(STATUS, 1)[0], OK);
    assert_eq!(fq.read(BUF, 512), data);
}

#[test]
fn test_blk_head_index_past_the_queue_asks_for_reset() {
    let mut h = harness(Opts::default());
    h.drv.queues[0].publish(QSIZE + 1);
    h.drv.kick(0);

    let start = std::time::Instant::now();
    while h.drv.signals.resets() == 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }

    assert_eq!(h.drv.queues[0].used_idx(), 0);
}

#[test]
fn test_blk_good_request_after_bad_chain_is_served() {
    let mut h = harness(Opts::default());
    let fq = &mut h.drv.queues[0];
    fq.write_desc(0, HDR, 16, 1, QSIZE + 5);
    fq.publish(0);
    fq.write_desc(1, HDR, 16, 1, 2);
    fq.write_desc(2, STATUS, 1, 2, 0);
    fq.publish(1);
    h.mem_write(HDR, &header(T_FLUSH, 0));
    h.drv.kick(0);

    let fq = &h.drv.queues[0];
    fq.wait_used(2);

    assert_eq!(fq.used_elem(1), (1, 1));
    assert_eq!(fq.read(STATUS, 1)[0], OK);
}

// ---- notifications, queues, lifecycle ------------------------------------

#[test]
fn test_blk_completion_signals_its_queue() {
    let mut h = harness(Opts::default());

    h.simple(T_FLUSH, 0, 0);

    assert_eq!(h.drv.signals.wait_used_calls(1), vec![0]);
}

#[test]
fn test_blk_event_index_not_reached_suppresses_the_interrupt() {
    let mut h = harness(Opts {
        event_idx: true,
        ..Opts::default()
    });
    h.drv.queues[0].set_used_event(5);

    h.simple(T_FLUSH, 0, 0);

    assert!(h.drv.signals.used_calls().is_empty());
}

#[test]
fn test_blk_event_index_reached_sends_the_interrupt() {
    let mut h = harness(Opts {
        event_idx: true,
        ..Opts::default()
    });
    h.drv.queues[0].set_used_event(1);

    h.simple(T_FLUSH, 0, 0);
    let first = h.drv.signals.used_calls();
    h.simple(T_FLUSH, 0, 0);

    assert!(first.is_empty());
    assert_eq!(h.drv.signals.wait_used_calls(1), vec![0]);
}

#[test]
fn test_blk_idle_device_rearms_notifications_at_the_next_avail_index() {
    let mut h = harness(Opts {
        event_idx: true,
        ..Opts::default()
    });
    let fq = &h.drv.queues[0];
    let avail_event_at = fq.used + 4 + 8 * u64::from(QSIZE);

    for _ in 0..3 {
        h.simple(T_IN, 0, 512);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut avail_event = 0;
    while std::time::Instant::now() < deadline {
        avail_event = u16::from_le_bytes(
            h.drv.queues[0].read(avail_event_at, 2)[..]
                .try_into()
                .unwrap(),
        );
        if avail_event == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    assert_eq!(
        avail_event, 3,
        "the driver is asked to notify the next request"
    );
}

#[test]
fn test_blk_request_on_second_queue_signals_that_queue() {
    let mut h = harness(Opts {
        queues: 2,
        ..Opts::default()
    });
    h.mem_write(HDR, &header(T_FLUSH, 0));

    let (status, _) = h.submit_on(1, &[(HDR, 16, false), (STATUS, 1, true)]);

    assert_eq!(status, OK);
    assert_eq!(h.drv.signals.wait_used_calls(1), vec![1]);
}

#[test]
fn test_blk_requests_available_before_activation_are_served() {
    let file = TempFile::new(FILE_LEN);
    let mut dev = device(&file, &Opts::default());
    let (mut drv, act) = FakeDriver::new(&[QSIZE], ALL, false);
    drv.queues[0].write(HDR, &header(T_FLUSH, 0));
    drv.queues[0].add_chain(&[(HDR, 16, false), (STATUS, 1, true)]);

    dev.activate(act).unwrap();

    drv.queues[0].wait_used(1);
}

#[test]
fn test_blk_immediate_answer_before_activation_is_signalled() {
    let file = TempFile::new(FILE_LEN);
    let mut dev = device(&file, &Opts::default());
    let (mut drv, act) = FakeDriver::new(&[QSIZE], ALL, false);
    drv.queues[0].write(HDR, &header(T_GET_ID, 0));
    drv.queues[0].add_chain(&[(HDR, 16, false), (BUF, 20, true), (STATUS, 1, true)]);

    dev.activate(act).unwrap();
    drv.queues[0].wait_used(1);

    assert_eq!(drv.signals.wait_used_calls(1), vec![0]);
}

#[test]
fn test_blk_reset_stops_serving_the_queue() {
    let mut h = harness(Opts::default());
    h.simple(T_FLUSH, 0, 0);

    h.dev.reset();
    h.drv.queues[0].add_chain(&[(HDR, 16, false), (STATUS, 1, true)]);
    h.drv.kick(0);
    std::thread::sleep(std::time::Duration::from_millis(50));

    assert_eq!(h.drv.queues[0].used_idx(), 1);
}

#[test]
fn test_blk_activate_without_queue_zero_fails() {
    let file = TempFile::new(FILE_LEN);
    let mut dev = device(&file, &Opts::default());
    let (_drv, mut act) = FakeDriver::new(&[QSIZE], ALL, false);
    act.queues.clear();

    let r = dev.activate(act);

    assert!(matches!(r, Err(crate::ActivateError::MissingQueue(0))));
}

// ---- configuration space and features ------------------------------------

#[test]
fn test_blk_config_space_reports_capacity_and_limits() {
    let file = TempFile::new(FILE_LEN);
    let dev = device(
        &file,
        &Opts {
            queues: 4,
            ..Opts::default()
        },
    );
    let mut b = [0u8; CONFIG_LEN];

    dev.read_config(0, &mut b);

    assert_eq!(
        u64::from_le_bytes(b[0..8].try_into().unwrap()),
        FILE_LEN / 512
    );
    assert_eq!(
        u32::from_le_bytes(b[12..16].try_into().unwrap()),
        u32::from(QSIZE) - 2
    );
    assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 512);
    assert_eq!(u16::from_le_bytes(b[34..36].try_into().unwrap()), 4);
    assert_eq!(
        u32::from_le_bytes(b[40..44].try_into().unwrap()),
        MAX_DISCARD_SEG
    );
    assert_eq!(b[56], 1);
}

#[test]
fn test_blk_config_read_at_any_offset_and_width_is_bounded() {
    let file = TempFile::new(FILE_LEN);
    let dev = device(&file, &Opts::default());
    let mut tail = [0xffu8; 8];
    let mut far = [0xffu8; 4];

    dev.read_config(CONFIG_LEN as u64 - 2, &mut tail);
    dev.read_config(u64::MAX - 1, &mut far);

    assert_eq!(tail[2..], [0; 6]);
    assert_eq!(far, [0; 4]);
}

#[test]
fn test_blk_config_write_changes_nothing() {
    let file = TempFile::new(FILE_LEN);
    let mut dev = device(&file, &Opts::default());
    let before = *dev.config_space();

    dev.write_config(0, &[0xff; 8]);
    dev.write_config(u64::MAX, &[1]);

    assert_eq!(*dev.config_space(), before);
}

#[test]
fn test_blk_features_of_readonly_device_offer_ro_without_discard() {
    let file = TempFile::new(FILE_LEN);
    let dev = device(
        &file,
        &Opts {
            readonly: true,
            ..Opts::default()
        },
    );

    let f = dev.features();

    assert_eq!(
        f & (F_RO | F_DISCARD | F_WRITE_ZEROES | F_FLUSH),
        F_RO | F_FLUSH
    );
    assert_eq!(f & F_MQ, 0);
}

#[test]
fn test_blk_features_of_multiqueue_device_offer_mq() {
    let file = TempFile::new(FILE_LEN);
    let dev = device(
        &file,
        &Opts {
            queues: 2,
            ..Opts::default()
        },
    );

    assert_eq!(dev.queue_max_sizes(), vec![QSIZE; 2]);
    assert_ne!(dev.features() & F_MQ, 0);
}

#[test]
fn test_blk_new_with_bad_queue_size_fails() {
    let file = TempFile::new(FILE_LEN);
    let disk = BlockFile::open(&DiskConfig {
        path: file.0.clone(),
        readonly: false,
        direct: false,
    })
    .unwrap();
    let mut cfg = BlockConfig::new(Arc::new(disk), 1);
    cfg.queue_size = 100;

    assert!(matches!(Block::new(cfg), Err(BlockError::QueueSize(100))));
}

// ---- the parser alone ------------------------------------------------------

fn limits() -> Limits {
    Limits {
        capacity: 2048,
        readonly: false,
        max_descriptors: 8,
        discard: true,
        write_zeroes: true,
        max_discard_sectors: 1024,
        max_discard_seg: 2,
        max_write_zeroes_sectors: 1024,
        max_write_zeroes_seg: 1,
    }
}

fn seg(addr: u64, len: u32, writable: bool) -> crate::Segment {
    crate::Segment {
        addr,
        len,
        writable,
    }
}

#[test]
fn test_parse_read_gives_offset_and_buffers() {
    let dma = GuestDma::new(memory());
    dma.write(HDR, &header(T_IN, 3)).unwrap();

    let r = parse_segments(
        &[
            seg(HDR, 16, false),
            seg(BUF, 1024, true),
            seg(STATUS, 1, true),
        ],
        &dma,
        &limits(),
    );

    assert_eq!(
        r,
        Ok(Request {
            status: STATUS,
            kind: RequestKind::Read {
                offset: 3 * 512,
                data: vec![(BUF, 1024)]
            }
        })
    );
}

#[test]
fn test_parse_status_inside_data_descriptor_is_its_last_byte() {
    let dma = GuestDma::new(memory());
    dma.write(HDR, &header(T_IN, 0)).unwrap();

    let r = parse_segments(&[seg(HDR, 16, false), seg(BUF, 513, true)], &dma, &limits()).unwrap();

    assert_eq!(r.status, BUF + 512);
    assert_eq!(
        r.kind,
        RequestKind::Read {
            offset: 0,
            data: vec![(BUF, 512)]
        }
    );
}

#[test]
fn test_parse_readable_last_descriptor_is_no_status() {
    let dma = GuestDma::new(memory());

    let r = parse_segments(&[seg(HDR, 16, false)], &dma, &limits());

    assert_eq!(r, Err(ParseError::NoStatus));
}

#[test]
fn test_parse_discard_ranges_become_byte_ranges() {
    let dma = GuestDma::new(memory());
    dma.write(HDR, &header(T_DISCARD, 0)).unwrap();
    dma.write(BUF, &range(8, 16, 0)).unwrap();
    dma.write(BUF + 16, &range(100, 0, 0)).unwrap();

    let r = parse_segments(
        &[
            seg(HDR, 16, false),
            seg(BUF, 32, false),
            seg(STATUS, 1, true),
        ],
        &dma,
        &limits(),
    )
    .unwrap();

    assert_eq!(
        r.kind,
        RequestKind::Discard {
            ranges: vec![(8 * 512, 16 * 512)]
        }
    );
}

#[test]
fn test_parse_range_longer_than_the_limit_is_ioerr() {
    let dma = GuestDma::new(memory());
    dma.write(HDR, &header(T_WRITE_ZEROES, 0)).unwrap();
    dma.write(BUF, &range(0, 1025, 0)).unwrap();

    let r = parse_segments(
        &[
            seg(HDR, 16, false),
            seg(BUF, 16, false),
            seg(STATUS, 1, true),
        ],
        &dma,
        &limits(),
    )
    .unwrap();

    assert!(matches!(
        r.kind,
        RequestKind::Fail {
            status: Status::IoErr,
            reason: RequestError::RangeTooLong(1025)
        }
    ));
}

#[test]
fn test_parse_range_list_not_multiple_of_16_is_ioerr() {
    let dma = GuestDma::new(memory());
    dma.write(HDR, &header(T_DISCARD, 0)).unwrap();

    let r = parse_segments(
        &[
            seg(HDR, 16, false),
            seg(BUF, 20, false),
            seg(STATUS, 1, true),
        ],
        &dma,
        &limits(),
    )
    .unwrap();

    assert!(matches!(
        r.kind,
        RequestKind::Fail {
            reason: RequestError::BadRangeList(20),
            ..
        }
    ));
}

// ---- the function's DMA context -----------------------------------------

const TABLE: u64 = DATA + 0x3000;
const BUF2: u64 = DATA + 0x8000;

#[test]
fn test_blk_rings_indirect_tables_and_buffers_all_go_through_the_functions_dma() {
    let mut h = harness(Opts {
        dma: DmaMode::Translated,
        ..Opts::default()
    });
    let data = pattern(1024, 5);
    h.mem_write(BUF, &data);
    assert_eq!(h.simple(T_OUT, 8, 1024), (OK, 1));
    assert_eq!(h.file.read_at(8 * 512, 1024), data);
    h.mem_write(HDR, &header(T_IN, 8));
    h.mem_write(STATUS, &[0xff]);
    let q = &mut h.drv.queues[0];
    q.add_indirect_chain(
        TABLE,
        &[(HDR, 16, false), (BUF2, 1024, true), (STATUS, 1, true)],
    );
    h.drv.kick(0);
    h.drv.queues[0].wait_used(2);
    assert_eq!(
        h.mem_read(BUF2, 1024),
        data,
        "read through an indirect table"
    );
    assert_eq!(h.mem_read(STATUS, 1), vec![OK]);

    let iommu = h.iommu.as_ref().unwrap();
    let accesses = iommu.accesses();
    assert!(
        accesses
            .iter()
            .all(|&(rid, addr)| rid == TEST_RID && addr >= IOVA_OFFSET),
        "every access with the function's requester ID, at a bus address: {accesses:x?}"
    );
    let q = &h.drv.queues[0];
    let size = u64::from(QSIZE);
    for (what, gpa, len) in [
        ("descriptor table", q.desc_table, 16 * size),
        ("available ring", q.avail, 4 + 2 * size),
        ("used ring", q.used, 4 + 8 * size),
        ("indirect table", TABLE, 48),
        ("header", HDR, 16),
        ("written data", BUF, 1024),
        ("read data", BUF2, 1024),
        ("status", STATUS, 1),
    ] {
        assert!(
            iommu.touched(gpa + IOVA_OFFSET, len),
            "{what} not reached through the IOMMU"
        );
    }
}

#[test]
fn test_blk_translation_fault_on_a_data_buffer_is_ioerr() {
    let mut h = harness(Opts {
        dma: DmaMode::Translated,
        ..Opts::default()
    });
    h.mem_write(HDR, &header(T_IN, 0));
    // A bus address the IOMMU has no mapping for (below its window).
    let unmapped = BUF.wrapping_sub(IOVA_OFFSET);
    let (status, _) = h.submit(&[(HDR, 16, false), (unmapped, 512, true), (STATUS, 1, true)]);
    assert_eq!(status, IOERR);
    h.mem_write(HDR, &header(T_OUT, 0));
    let (status, _) = h.submit(&[(HDR, 16, false), (unmapped, 512, false), (STATUS, 1, true)]);
    assert_eq!(status, IOERR);
    assert_eq!(h.file.read_at(0, 512), vec![0u8; 512], "nothing written");
}

#[test]
fn test_blk_translation_fault_on_the_status_byte_needs_reset() {
    let mut h = harness(Opts {
        dma: DmaMode::Translated,
        ..Opts::default()
    });
    h.file.write_at(0, &pattern(512, 3));
    h.mem_write(HDR, &header(T_IN, 0));
    let unmapped = STATUS.wrapping_sub(IOVA_OFFSET);

    let (len, status) = unanswered(
        &mut h,
        &[(HDR, 16, false), (BUF, 512, true), (unmapped, 1, true)],
    );

    assert_eq!((len, status), (0, 0xff), "returned unanswered");
    assert_eq!(h.drv.signals.needs_reset.load(Ordering::SeqCst), 1);
    assert_eq!(h.mem_read(BUF, 512), vec![0u8; 512], "nothing read for it");
    assert_eq!(h.simple(T_IN, 0, 512), (OK, 513), "the queue still serves");
}

#[test]
fn test_blk_with_bus_master_off_reads_no_ring_and_writes_nothing() {
    let mut h = harness(Opts {
        dma: DmaMode::BusMasterOff,
        ..Opts::default()
    });
    h.file.write_at(0, &pattern(512, 1));
    h.mem_write(HDR, &header(T_IN, 0));
    h.mem_write(STATUS, &[0xff]);
    h.drv.queues[0].add_chain(&[(HDR, 16, false), (BUF, 512, true), (STATUS, 1, true)]);
    h.drv.kick(0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(h.drv.queues[0].used_idx(), 0, "nothing used");
    assert_eq!(h.mem_read(STATUS, 1), vec![0xff], "no status written");
    assert_eq!(h.mem_read(BUF, 512), vec![0u8; 512], "no data written");
}
