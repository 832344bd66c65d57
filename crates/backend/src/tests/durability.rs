//! Write-through mode: a discard or write-zeroes asked `dsync` is followed
//! by a sync before it completes, on both engines; without `dsync` none is.

use super::*;

fn zeroes(offset: u64, len: u64, dsync: bool) -> Op {
    Op::WriteZeroes { offset, len, dsync }
}

fn discard(offset: u64, len: u64, dsync: bool) -> Op {
    Op::Discard { offset, len, dsync }
}

/// Runs `op` on engine `which` (0 sync, 1 io_uring) over a file of 0x5a
/// bytes in `dir`; returns the completion, the syncs the file saw and its
/// contents.
fn run_on(dir: &str, which: usize, readonly: bool, op: Op) -> (Completion, u64, Vec<u8>) {
    let t = TempFile::new(dir, 0);
    std::fs::write(&t.0, vec![0x5au8; 64 << 10]).unwrap();
    let file = open(&t, false, readonly);
    let notify = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = engines(&file, &notify).remove(which);
    let c = run_one(e.as_mut(), Request { tag: 4, op });
    (c, file.syncs(), std::fs::read(&t.0).unwrap())
}

#[test]
fn test_engines_write_through_write_zeroes_syncs_once_then_completes() {
    for which in 0..2 {
        let (c, syncs, data) = run_on("/tmp", which, false, zeroes(4096, 8192, true));
        assert_eq!(c.result, Ok(0), "engine {which}");
        assert_eq!(syncs, 1, "engine {which}");
        assert!(data[4096..12288].iter().all(|&b| b == 0));
        assert_eq!(data[12288], 0x5a);
    }
}

#[test]
fn test_engines_write_through_discard_syncs_once_then_completes() {
    for which in 0..2 {
        let (c, syncs, data) = run_on("/tmp", which, false, discard(0, 0x8000, true));
        assert_eq!(c.result, Ok(0), "engine {which}");
        assert_eq!(syncs, 1, "engine {which}");
        assert!(data[..0x8000].iter().all(|&b| b == 0));
        assert_eq!(data[0x8000], 0x5a);
    }
}

#[test]
fn test_engines_write_back_discard_and_zeroes_do_not_sync() {
    for which in 0..2 {
        let (c, syncs, _) = run_on("/tmp", which, false, zeroes(0, 4096, false));
        assert_eq!((c.result, syncs), (Ok(0), 0), "engine {which}");
        let (c, syncs, _) = run_on("/tmp", which, false, discard(0, 4096, false));
        assert_eq!((c.result, syncs), (Ok(0), 0), "engine {which}");
    }
}

/// tmpfs has no `FALLOC_FL_ZERO_RANGE`: the zeros are written, then synced.
#[test]
fn test_engines_write_through_zeroes_by_writing_sync_too() {
    for which in 0..2 {
        let (c, syncs, data) = run_on("/dev/shm", which, false, zeroes(100, 3000, true));
        assert_eq!(c.result, Ok(0), "engine {which}");
        assert_eq!(syncs, 1, "engine {which}");
        assert!(data[100..3100].iter().all(|&b| b == 0));
        assert_eq!(data[99], 0x5a);
        assert_eq!(data[3100], 0x5a);
    }
}

#[test]
fn test_engines_refused_write_through_discard_issues_no_sync() {
    for which in 0..2 {
        let (c, syncs, _) = run_on("/tmp", which, true, discard(0, 4096, true));
        assert_eq!((c.result, syncs), (Err(libc::EROFS), 0), "engine {which}");
        let (c, syncs, _) = run_on("/tmp", which, false, zeroes(60 << 10, 8192, true));
        assert_eq!((c.result, syncs), (Err(libc::EINVAL), 0), "engine {which}");
    }
}

#[test]
fn test_engines_flush_counts_one_sync() {
    for which in 0..2 {
        let (c, syncs, _) = run_on("/tmp", which, false, Op::Flush);
        assert_eq!((c.result, syncs), (Ok(0), 1), "engine {which}");
    }
}
