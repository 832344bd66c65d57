//! Durability of the commands that change the medium without carrying
//! data (NVMe 1.4 §5.21.1.6 Volatile Write Cache, §6.16 Write Zeroes FUA):
//! with the cache off, Write Zeroes and Dataset Management deallocations
//! are synced before their completion is posted; with it on, only a Write
//! Zeroes with FUA is.

use backend::EngineKind;

use super::driver::*;
use crate::nvme::command::Sqe;

const WRITE_ZEROES: u8 = 0x08;
const DSM: u8 = 0x09;
const FUA: u32 = 1 << 30;

/// Write Zeroes of 8 blocks at LBA 16, `extra` ORed into CDW12.
fn write_zeroes(extra: u32) -> Sqe {
    sqe(WRITE_ZEROES, 1, (0, 0), [16, 0, 7 | extra, 0, 0, 0])
}

/// A Dataset Management deallocate of two ranges (8 blocks at LBA 64 and
/// 8 at LBA 128), its range list at DATA.
fn deallocate_two(d: &Driver) -> Sqe {
    let mut ranges = [0u8; 32];
    for (i, slba) in [64u64, 128].into_iter().enumerate() {
        ranges[i * 16 + 4..i * 16 + 8].copy_from_slice(&8u32.to_le_bytes());
        ranges[i * 16 + 8..i * 16 + 16].copy_from_slice(&slba.to_le_bytes());
    }
    d.dma.write(DATA, &ranges).unwrap();
    sqe(DSM, 1, (DATA, 0), [1, 1 << 2, 0, 0, 0, 0])
}

fn driver(engine: EngineKind) -> Driver {
    let mut d = Driver::with(Setup {
        engine,
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    std::fs::write(&d.files[0].0, vec![0x55u8; 4 << 20]).unwrap();
    d
}

#[test]
fn test_nvme_write_cache_off_write_zeroes_and_deallocate_sync_before_completing() {
    for engine in [EngineKind::Sync, EngineKind::IoUring] {
        let mut d = driver(engine);
        assert!(d.admin(set_features(0x06, 0)).ok());

        let wz = d.io(1, write_zeroes(0));
        let after_wz = d.disks[0].syncs();
        let sqe = deallocate_two(&d);
        let dsm = d.io(1, sqe);

        assert!(wz.ok() && dsm.ok(), "{engine:?}");
        assert_eq!((after_wz, d.disks[0].syncs()), (1, 3), "one per range");
        assert!(d.files[0]
            .read_at(16 * 512, 8 * 512)
            .iter()
            .all(|&b| b == 0));
        assert!(d.files[0]
            .read_at(64 * 512, 8 * 512)
            .iter()
            .all(|&b| b == 0));
        assert_eq!(d.files[0].read_at(24 * 512, 1), [0x55]);
    }
}

#[test]
fn test_nvme_write_cache_on_only_write_zeroes_with_fua_syncs() {
    let mut d = driver(EngineKind::Sync);

    let plain = d.io(1, write_zeroes(0));
    let sqe = deallocate_two(&d);
    let dsm = d.io(1, sqe);
    let before_fua = d.disks[0].syncs();
    let fua = d.io(1, write_zeroes(FUA));

    assert!(plain.ok() && dsm.ok() && fua.ok());
    assert_eq!((before_fua, d.disks[0].syncs()), (0, 1));
}

#[test]
fn test_nvme_write_zeroes_with_fua_through_io_uring_syncs() {
    let mut d = driver(EngineKind::IoUring);

    let c = d.io(1, write_zeroes(FUA));

    assert!(c.ok());
    assert_eq!(d.disks[0].syncs(), 1);
    assert!(d.files[0]
        .read_at(16 * 512, 8 * 512)
        .iter()
        .all(|&b| b == 0));
}
