//! Engines against temporary files, with a small guest RAM as the other
//! end of every transfer.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dma::{Direction, Dma, GuestBuffers, GuestDma};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;

/// A file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(dir: &str, len: u64) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "iovm-backend-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let path = PathBuf::from(dir).join(name);
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ram() -> Arc<dyn Dma> {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    Arc::new(GuestDma::new(Arc::new(mem)))
}

fn open(t: &TempFile, direct: bool, readonly: bool) -> Arc<BlockFile> {
    Arc::new(
        BlockFile::open(&DiskConfig {
            path: t.0.clone(),
            readonly,
            direct,
        })
        .unwrap(),
    )
}

fn engines(file: &Arc<BlockFile>, notify: &EventFd) -> Vec<Box<dyn Engine>> {
    vec![
        Box::new(SyncEngine::new(file.clone(), notify).unwrap()),
        Box::new(UringEngine::new(file.clone(), 16, notify).unwrap()),
    ]
}

fn run_one(engine: &mut dyn Engine, req: Request) -> Completion {
    engine.push(req);
    engine.submit();
    let mut out = Vec::new();
    while out.is_empty() {
        engine.wait();
        engine.reap(&mut out);
    }
    out[0]
}

fn bufs(dma: &Arc<dyn Dma>, segs: &[(u64, u64)], dir: Direction) -> GuestBuffers {
    GuestBuffers::new(dma.clone(), segs, dir).unwrap()
}

#[test]
fn test_block_file_regular_file_reports_size_and_kind() {
    let t = TempFile::new("/tmp", 1 << 20);
    let f = open(&t, true, false);
    assert_eq!(f.size(), 1 << 20);
    assert_eq!(f.kind(), FileKind::Regular);
    assert!([512, 4096].contains(&f.logical_block_size()));
}

#[test]
fn test_block_file_buffered_reports_512_byte_blocks() {
    let t = TempFile::new("/tmp", 4096);
    let f = open(&t, false, false);
    assert!(!f.is_direct());
    assert_eq!(f.logical_block_size(), 512);
}

#[test]
fn test_block_file_on_shm_opens_direct_or_buffered() {
    let t = TempFile::new("/dev/shm", 8192);
    let f = open(&t, true, false);
    assert_eq!(f.size(), 8192);
}

#[test]
fn test_block_file_missing_path_is_open_error() {
    let err = BlockFile::open(&DiskConfig {
        path: "/nonexistent/iovm-disk".into(),
        readonly: true,
        direct: false,
    });
    assert!(matches!(err, Err(BackendError::Open { .. })));
}

#[test]
fn test_block_file_directory_is_not_a_disk() {
    let err = BlockFile::open(&DiskConfig {
        path: "/tmp".into(),
        readonly: true,
        direct: false,
    });
    assert!(matches!(
        err,
        Err(BackendError::NotADisk { .. }) | Err(BackendError::Open { .. })
    ));
}

fn try_open(t: &TempFile, readonly: bool) -> Result<BlockFile, BackendError> {
    BlockFile::open(&DiskConfig {
        path: t.0.clone(),
        readonly,
        direct: false,
    })
}

#[test]
fn test_a_writable_image_backs_one_disk_at_a_time() {
    let t = TempFile::new("/tmp", 1 << 20);
    let first = try_open(&t, false).unwrap();
    let err = try_open(&t, false).unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Locked {
                readonly: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    assert!(
        matches!(
            try_open(&t, true),
            Err(BackendError::Locked { readonly: true, .. })
        ),
        "a reader waits for the writer too"
    );
    drop(first);
    let again = try_open(&t, false);
    assert!(again.is_ok(), "the lock goes with the disk");
}

#[test]
fn test_read_only_disks_share_an_image_and_keep_writers_out() {
    let t = TempFile::new("/tmp", 1 << 20);
    let a = try_open(&t, true).unwrap();
    let b = try_open(&t, true).unwrap();
    assert!(matches!(
        try_open(&t, false),
        Err(BackendError::Locked { .. })
    ));
    drop((a, b));
    assert!(try_open(&t, false).is_ok());
}

#[test]
fn test_container_formats_are_refused_by_name() {
    for (magic, name) in [
        (&b"QFI\xfb\0\0\0\x03"[..], "qcow2"),
        (&b"KDMV\x01\0\0\0"[..], "VMDK"),
        (&b"vhdxfile"[..], "VHDX"),
    ] {
        let t = TempFile::new("/tmp", 1 << 16);
        std::fs::write(&t.0, magic).unwrap();
        let err = try_open(&t, false).unwrap_err();
        assert!(
            matches!(err, BackendError::NotRaw { format, .. } if format == name),
            "{err}"
        );
        assert!(err.to_string().contains("qemu-img convert -O raw"), "{err}");
    }
    let raw = TempFile::new("/tmp", 4);
    std::fs::write(&raw.0, b"QFI").unwrap();
    assert!(
        try_open(&raw, false).is_ok(),
        "a short raw image is still raw"
    );
}

#[test]
fn test_engines_write_then_read_round_trip_through_guest_memory() {
    for direct in [true, false] {
        let t = TempFile::new("/tmp", 1 << 20);
        let file = open(&t, direct, false);
        let notify = EventFd::new(EFD_NONBLOCK).unwrap();
        for mut e in engines(&file, &notify) {
            let dma = ram();
            let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
            dma.write(0x4000, &pattern[..4096]).unwrap();
            dma.write(0x9000, &pattern[4096..]).unwrap();
            let b = bufs(&dma, &[(0x4000, 4096), (0x9000, 4096)], Direction::ToDevice);
            let c = run_one(
                e.as_mut(),
                Request {
                    tag: 7,
                    op: Op::Write {
                        offset: 0x2_0000,
                        buffers: b,
                        dsync: false,
                    },
                },
            );
            assert_eq!(
                c,
                Completion {
                    tag: 7,
                    result: Ok(8192)
                }
            );
            let mut host = vec![0u8; 8192];
            std::fs::File::open(&t.0)
                .unwrap()
                .read_exact_at(&mut host, 0x2_0000)
                .unwrap();
            assert_eq!(host, pattern);
            let b = bufs(&dma, &[(0x2_0000, 8192)], Direction::FromDevice);
            let c = run_one(
                e.as_mut(),
                Request {
                    tag: 8,
                    op: Op::Read {
                        offset: 0x2_0000,
                        buffers: b,
                    },
                },
            );
            assert_eq!(c.result, Ok(8192));
            let mut back = vec![0u8; 8192];
            dma.read(0x2_0000, &mut back).unwrap();
            assert_eq!(back, pattern);
            assert!(notify.read().unwrap() >= 1, "completion was notified");
        }
    }
}

#[test]
fn test_engines_misaligned_buffers_take_the_buffered_path() {
    let t = TempFile::new("/tmp", 1 << 16);
    let file = open(&t, true, false);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    for mut e in engines(&file, &notify) {
        let dma = ram();
        dma.write(0x1004, b"misaligned!").unwrap();
        let b = bufs(&dma, &[(0x1004, 11)], Direction::ToDevice);
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 1,
                op: Op::Write {
                    offset: 3,
                    buffers: b,
                    dsync: true,
                },
            },
        );
        assert_eq!(c.result, Ok(11));
        let mut host = [0u8; 11];
        std::fs::File::open(&t.0)
            .unwrap()
            .read_exact_at(&mut host, 3)
            .unwrap();
        assert_eq!(&host, b"misaligned!");
    }
}

#[test]
fn test_engines_refuse_requests_past_the_end_of_the_file() {
    let t = TempFile::new("/tmp", 8192);
    let file = open(&t, false, false);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    for mut e in engines(&file, &notify) {
        let dma = ram();
        let b = bufs(&dma, &[(0, 4096)], Direction::ToDevice);
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 2,
                op: Op::Write {
                    offset: 8192 - 512,
                    buffers: b,
                    dsync: false,
                },
            },
        );
        assert_eq!(c.result, Err(libc::EINVAL));
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 3,
                op: Op::Discard {
                    offset: u64::MAX - 1,
                    len: 2,
                },
            },
        );
        assert_eq!(c.result, Err(libc::EINVAL));
        assert_eq!(
            std::fs::metadata(&t.0).unwrap().len(),
            8192,
            "file not grown"
        );
    }
}

#[test]
fn test_engines_readonly_file_refuses_writes_with_erofs() {
    let t = TempFile::new("/tmp", 8192);
    let file = open(&t, false, true);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    for mut e in engines(&file, &notify) {
        let dma = ram();
        let b = bufs(&dma, &[(0, 512)], Direction::ToDevice);
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 4,
                op: Op::Write {
                    offset: 0,
                    buffers: b,
                    dsync: false,
                },
            },
        );
        assert_eq!(c.result, Err(libc::EROFS));
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 5,
                op: Op::WriteZeroes {
                    offset: 0,
                    len: 512,
                },
            },
        );
        assert_eq!(c.result, Err(libc::EROFS));
    }
}

#[test]
fn test_engines_flush_completes() {
    let t = TempFile::new("/tmp", 8192);
    let file = open(&t, true, false);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    for mut e in engines(&file, &notify) {
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 9,
                op: Op::Flush,
            },
        );
        assert_eq!(
            c,
            Completion {
                tag: 9,
                result: Ok(0)
            }
        );
    }
}

#[test]
fn test_engines_discard_punches_a_hole_and_reads_zero() {
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    for which in 0..2 {
        let t = TempFile::new("/tmp", 0);
        std::fs::write(&t.0, vec![0xabu8; 1 << 20]).unwrap();
        let file = open(&t, false, false);
        let mut e = engines(&file, &notify).remove(which);
        run_one(
            e.as_mut(),
            Request {
                tag: 1,
                op: Op::Flush,
            },
        );
        let before = std::fs::metadata(&t.0).unwrap().blocks();
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 2,
                op: Op::Discard {
                    offset: 0x1_0000,
                    len: 0x8_0000,
                },
            },
        );
        assert_eq!(c.result, Ok(0));
        let after = std::fs::metadata(&t.0).unwrap().blocks();
        assert!(after < before, "st_blocks {before} -> {after}");
        let data = std::fs::read(&t.0).unwrap();
        assert_eq!(data.len(), 1 << 20, "size kept");
        assert!(data[0x1_0000..0x9_0000].iter().all(|&b| b == 0));
        assert_eq!(data[0xffff], 0xab);
        assert_eq!(data[0x9_0000], 0xab);
    }
}

#[test]
fn test_engines_write_zeroes_zero_the_range_only() {
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    for which in 0..2 {
        let t = TempFile::new("/tmp", 0);
        std::fs::write(&t.0, vec![0x5au8; 64 << 10]).unwrap();
        let file = open(&t, true, false);
        let mut e = engines(&file, &notify).remove(which);
        let c = run_one(
            e.as_mut(),
            Request {
                tag: 3,
                op: Op::WriteZeroes {
                    offset: 4096,
                    len: 8192,
                },
            },
        );
        assert_eq!(c.result, Ok(0));
        let data = std::fs::read(&t.0).unwrap();
        assert!(data[4096..12288].iter().all(|&b| b == 0));
        assert_eq!(data[4095], 0x5a);
        assert_eq!(data[12288], 0x5a);
    }
}

/// The ring refuses operations other than the engine's own (a no-op, an
/// open) with EACCES, and refuses new registrations.
#[test]
fn test_uring_engine_ring_is_restricted_to_its_own_operations() {
    let t = TempFile::new("/tmp", 1 << 20);
    let file = open(&t, false, false);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = UringEngine::new(file, 4, &notify).unwrap();
    let ring = e.ring_mut();
    let path = c"/etc/hostname";
    let sqes = [
        io_uring::opcode::Nop::new().build().user_data(1),
        io_uring::opcode::OpenAt::new(io_uring::types::Fd(libc::AT_FDCWD), path.as_ptr())
            .build()
            .user_data(2),
    ];
    for sqe in &sqes {
        // SAFETY: the path outlives the submission, which completes here.
        unsafe { ring.submission().push(sqe).unwrap() };
        ring.submit_and_wait(1).unwrap();
        let results: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        assert_eq!(results, [(sqe.get_user_data(), -libc::EACCES)]);
    }
    let other = EventFd::new(EFD_NONBLOCK).unwrap();
    assert!(ring
        .submitter()
        .register_eventfd(std::os::fd::AsRawFd::as_raw_fd(&other))
        .is_err());
}

/// More requests than the ring holds, asked direct (two per `io_uring_enter`
/// where the file system allows it) and buffered (a whole batch per call):
/// every one completes once.
#[test]
fn test_uring_engine_batches_many_requests_with_tags() {
    for direct in [true, false] {
        uring_batch_round_trip(direct);
    }
}

fn uring_batch_round_trip(direct: bool) {
    let t = TempFile::new("/tmp", 1 << 20);
    let file = open(&t, direct, false);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = UringEngine::new(file, 4, &notify).unwrap();
    let dma = ram();
    for i in 0..32u64 {
        dma.write(i * 4096, &[i as u8; 4096]).unwrap();
        let b = bufs(&dma, &[(i * 4096, 4096)], Direction::ToDevice);
        e.push(Request {
            tag: 100 + i,
            op: Op::Write {
                offset: i * 4096,
                buffers: b,
                dsync: false,
            },
        });
    }
    e.submit();
    let mut out = Vec::new();
    while out.len() < 32 {
        e.wait();
        e.reap(&mut out);
    }
    let mut tags: Vec<u64> = out.iter().map(|c| c.tag).collect();
    tags.sort_unstable();
    assert_eq!(tags, (100..132).collect::<Vec<_>>());
    assert!(out.iter().all(|c| c.result == Ok(4096)));
    assert_eq!(e.in_flight(), 0);
    let data = std::fs::read(&t.0).unwrap();
    assert_eq!(data[31 * 4096], 31);
}

#[test]
fn test_new_engine_sync_kind_gives_a_working_engine() {
    let t = TempFile::new("/tmp", 4096);
    let file = open(&t, false, false);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = new_engine(file, EngineKind::Sync, 8, &notify).unwrap();
    let c = run_one(
        e.as_mut(),
        Request {
            tag: 1,
            op: Op::Flush,
        },
    );
    assert_eq!(c.result, Ok(0));
}

/// Needs a scratch block device whose contents may be destroyed, named by
/// `IOVM_TEST_BLOCK_DEVICE` (e.g. a loop device over an 8 MiB file):
/// `cargo test -p backend -- --ignored`.
#[test]
#[ignore = "needs a scratch block device in IOVM_TEST_BLOCK_DEVICE"]
fn test_block_device_geometry_io_discard_and_zeroes() {
    let path = std::env::var("IOVM_TEST_BLOCK_DEVICE").expect("IOVM_TEST_BLOCK_DEVICE");
    let file = Arc::new(
        BlockFile::open(&DiskConfig {
            path: path.clone().into(),
            readonly: false,
            direct: true,
        })
        .unwrap(),
    );
    assert_eq!(file.kind(), FileKind::BlockDevice);
    assert!(file.size() >= 1 << 20);
    assert!([512, 4096].contains(&file.logical_block_size()));
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    for mut e in engines(&file, &notify) {
        let dma = ram();
        dma.write(0x3000, &[0xc3; 4096]).unwrap();
        let b = bufs(&dma, &[(0x3000, 4096)], Direction::ToDevice);
        let w = Op::Write {
            offset: 0x1_0000,
            buffers: b,
            dsync: true,
        };
        assert_eq!(
            run_one(e.as_mut(), Request { tag: 1, op: w }).result,
            Ok(4096)
        );
        let z = Op::WriteZeroes {
            offset: 0x1_0000,
            len: 4096,
        };
        assert_eq!(run_one(e.as_mut(), Request { tag: 2, op: z }).result, Ok(0));
        let b = bufs(&dma, &[(0x3000, 4096)], Direction::FromDevice);
        let r = Op::Read {
            offset: 0x1_0000,
            buffers: b,
        };
        assert_eq!(
            run_one(e.as_mut(), Request { tag: 3, op: r }).result,
            Ok(4096)
        );
        let mut back = [0xffu8; 4096];
        dma.read(0x3000, &mut back).unwrap();
        assert!(back.iter().all(|&x| x == 0), "zeroed");
        let d = Op::Discard {
            offset: 0,
            len: 1 << 20,
        };
        assert_eq!(run_one(e.as_mut(), Request { tag: 4, op: d }).result, Ok(0));
        let f = Op::Flush;
        assert_eq!(run_one(e.as_mut(), Request { tag: 5, op: f }).result, Ok(0));
    }
}
