//! Durability of TRIM (ACS-4 §7.5 DATA SET MANAGEMENT) with the write
//! cache off (SET FEATURES 82h, §7.45.7): the deallocation is synced before
//! the command completes, as writes are; with the cache on it waits for
//! FLUSH CACHE.

use backend::EngineKind;

use super::driver::*;

/// TRIM of 8 sectors at LBA 0 and 8 at LBA 64, its range list at DATA.
fn trim(d: &mut Driver) -> u32 {
    let mut payload = vec![0u8; 512];
    payload[..8].copy_from_slice(&(8u64 << 48).to_le_bytes());
    payload[8..16].copy_from_slice(&(8u64 << 48 | 64).to_le_bytes());
    d.dma.write(DATA, &payload).unwrap();
    d.run(0, &cmd(0x06, 1, 1, 0), &[(DATA, 512)], true)
}

fn driver(engine: EngineKind) -> Driver {
    let mut d = Driver::with(Setup {
        disks: vec![Some(DiskSpec {
            bytes: 1 << 20,
            ..Default::default()
        })],
        engine,
        ..Default::default()
    });
    d.bring_up();
    d.file(0).write_at(0, &vec![0xaa; 1 << 20]);
    d
}

fn syncs(d: &Driver) -> u64 {
    d.block_files[0].as_ref().map_or(0, |f| f.syncs())
}

#[test]
fn test_ahci_write_cache_off_trim_syncs_before_completing() {
    for engine in [EngineKind::Sync, EngineKind::IoUring] {
        let mut d = driver(engine);
        assert_eq!(d.run(0, &cmd(0xef, 0x82, 0, 0), &[], false) & 0xff, TFD_OK);

        let tfd = trim(&mut d);

        assert_eq!(tfd & 0xff, TFD_OK, "{engine:?}");
        assert_eq!(syncs(&d), 2, "one per range, {engine:?}");
        assert_eq!(d.file(0).read_at(64 * 512, 4096), vec![0u8; 4096]);
        assert_eq!(d.file(0).read_at(8 * 512, 512), vec![0xaa; 512]);
    }
}

#[test]
fn test_ahci_write_cache_on_trim_leaves_syncing_to_flush_cache() {
    let mut d = driver(EngineKind::Sync);

    let tfd = trim(&mut d);
    let before_flush = syncs(&d);
    let flush = d.run(0, &cmd(0xea, 0, 0, 0), &[], false);

    assert_eq!((tfd & 0xff, flush & 0xff), (TFD_OK, TFD_OK));
    assert_eq!((before_flush, syncs(&d)), (0, 1));
}
