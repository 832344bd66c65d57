//! Data through the disk: non-queued and queued reads and writes, flush,
//! TRIM, power modes and features.

use super::driver::{cmd, dma_ext, fpdma, pattern, Driver, DATA, TFD_OK};
use crate::ahci::regs::{pis, port};

#[test]
fn test_io_write_then_read_dma_ext() {
    let mut d = Driver::new();
    d.bring_up();
    let data = pattern(8192, 1);
    d.dma.write(DATA, &data).unwrap();
    let tfd = d.run(
        0,
        &dma_ext(true, 100, 16),
        &[(DATA, 4096), (DATA + 4096, 4096)],
        true,
    );
    assert_eq!(tfd & 0xff, TFD_OK);
    assert_eq!(d.file(0).read_at(100 * 512, 8192), data);
    assert_eq!(d.prdbc(0, 0), 8192);
    d.dma.write(DATA + 0x10000, &[0u8; 8192]).unwrap();
    let tfd = d.run(
        0,
        &dma_ext(false, 100, 16),
        &[(DATA + 0x10000, 8192)],
        false,
    );
    assert_eq!(tfd & 0xff, TFD_OK);
    assert_eq!(d.read_mem(DATA + 0x10000, 8192), data);
    let r = d.rfis(0);
    assert_eq!(
        (r[0x40], r[0x41] & 0x40, r[0x42]),
        (0x34, 0x40, 0x50),
        "D2H with I"
    );
    assert_ne!(d.pr(0, port::IS) & pis::DHRS, 0);
}

#[test]
fn test_io_lba28_read_dma() {
    let mut d = Driver::new();
    d.bring_up();
    let data = pattern(1024, 9);
    d.file(0).write_at(7 * 512, &data);
    let tfd = d.run(0, &cmd(0xc8, 0, 2, 7), &[(DATA, 1024)], false);
    assert_eq!(tfd & 0xff, TFD_OK);
    assert_eq!(d.read_mem(DATA, 1024), data);
}

#[test]
fn test_io_ncq_32_commands_complete_by_sdb() {
    let mut d = Driver::new();
    d.bring_up();
    for slot in 0..32u8 {
        let buf = DATA + u64::from(slot) * 4096;
        d.dma.write(buf, &pattern(4096, slot)).unwrap();
        d.prepare_ncq(0, slot, true, u64::from(slot) * 8, 8, buf);
    }
    d.pw(0, port::SACT, u32::MAX);
    d.pw(0, port::CI, u32::MAX);
    assert_eq!(d.pr(0, port::CI), 0, "accepted: CI clears at once");
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::SACT), 0, "all completed");
    assert_eq!(d.pr(0, port::TFD) & 0x81, 0x00);
    let r = d.rfis(0);
    assert_eq!(r[0x58], 0xa1, "SDB FIS");
    assert_ne!(d.pr(0, port::IS) & pis::SDBS, 0);
    for slot in 0..32u8 {
        assert_eq!(
            d.file(0).read_at(u64::from(slot) * 4096, 4096),
            pattern(4096, slot)
        );
    }
    // Read them back queued.
    for slot in 0..32u8 {
        let buf = DATA + 0x40_0000 + u64::from(slot) * 4096;
        d.prepare_ncq(0, slot, false, u64::from(slot) * 8, 8, buf);
    }
    let before = d.msi_count();
    d.pw(0, port::SACT, u32::MAX);
    d.pw(0, port::CI, u32::MAX);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::SACT), 0);
    assert!(d.msi_count() - before <= 2, "completions share messages");
    for slot in 0..32u8 {
        let buf = DATA + 0x40_0000 + u64::from(slot) * 4096;
        assert_eq!(d.read_mem(buf, 4096), pattern(4096, slot));
    }
}

#[test]
fn test_io_ncq_with_the_uring_engine() {
    let mut d = Driver::with(super::driver::Setup {
        engine: backend::EngineKind::IoUring,
        ..Default::default()
    });
    d.bring_up();
    for slot in 0..8u8 {
        let buf = DATA + u64::from(slot) * 8192;
        d.dma.write(buf, &pattern(8192, slot)).unwrap();
        d.prepare_ncq(0, slot, true, u64::from(slot) * 16, 16, buf);
    }
    d.pw(0, port::SACT, 0xff);
    d.pw(0, port::CI, 0xff);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::SACT), 0);
    assert_eq!(d.file(0).read_at(7 * 8192, 8192), pattern(8192, 7));
}

#[test]
fn test_io_ncq_fua_and_tag_in_count() {
    let mut d = Driver::new();
    d.bring_up();
    let mut tf = fpdma(true, 5, 0, 1);
    tf.device |= 0x80;
    d.dma.write(DATA, &[7u8; 512]).unwrap();
    d.prepare(0, 5, &tf, &[(DATA, 512)], true);
    d.pw(0, port::SACT, 1 << 5);
    d.pw(0, port::CI, 1 << 5);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::SACT), 0);
    assert_eq!(d.file(0).read_at(0, 512), vec![7u8; 512]);
}

#[test]
fn test_io_flush_and_flush_ext() {
    let mut d = Driver::new();
    d.bring_up();
    assert_eq!(d.run(0, &cmd(0xea, 0, 0, 0), &[], false) & 0xff, TFD_OK);
    assert_eq!(d.run(0, &cmd(0xe7, 0, 0, 0), &[], false) & 0xff, TFD_OK);
    assert_eq!(d.pr(0, port::CI), 0);
}

#[test]
fn test_io_trim_punches_holes() {
    let mut d = Driver::with(super::driver::Setup {
        disks: vec![Some(super::driver::DiskSpec {
            bytes: 8 << 20,
            ..Default::default()
        })],
        ..Default::default()
    });
    d.bring_up();
    d.file(0).write_at(0, &vec![0xaa; 4 << 20]);
    let before = d.file(0).allocated_blocks();
    let mut payload = vec![0u8; 512];
    // 2048 sectors at LBA 0, then 2048 at LBA 4096.
    payload[..8].copy_from_slice(&(2048u64 << 48).to_le_bytes());
    payload[8..16].copy_from_slice(&(2048u64 << 48 | 4096).to_le_bytes());
    d.dma.write(DATA, &payload).unwrap();
    let tfd = d.run(0, &cmd(0x06, 1, 1, 0), &[(DATA, 512)], true);
    assert_eq!(tfd & 0xff, TFD_OK);
    assert_eq!(d.file(0).read_at(0, 4096), vec![0u8; 4096]);
    assert_eq!(d.file(0).read_at(2048 * 512, 512), vec![0xaa; 512]);
    assert!(d.file(0).allocated_blocks() < before, "a hole was punched");
}

#[test]
fn test_io_standby_and_check_power_mode() {
    let mut d = Driver::new();
    d.bring_up();
    d.run(0, &cmd(0xe5, 0, 0, 0), &[], false);
    assert_eq!(d.rfis(0)[0x40 + 12], 0xff, "active");
    assert_eq!(d.run(0, &cmd(0xe0, 0, 0, 0), &[], false) & 0xff, TFD_OK);
    d.run(0, &cmd(0xe5, 0, 0, 0), &[], false);
    assert_eq!(d.rfis(0)[0x40 + 12], 0x00, "standby");
    d.run(0, &dma_ext(false, 0, 1), &[(DATA, 512)], false);
    d.run(0, &cmd(0xe5, 0, 0, 0), &[], false);
    assert_eq!(d.rfis(0)[0x40 + 12], 0xff, "media access wakes it");
}

#[test]
fn test_io_set_features_write_cache_shows_in_identify() {
    let mut d = Driver::new();
    d.bring_up();
    let word85 = |id: &[u8]| u16::from_le_bytes([id[170], id[171]]);
    assert_ne!(word85(&d.identify(0).1) & (1 << 5), 0);
    assert_eq!(d.run(0, &cmd(0xef, 0x82, 0, 0), &[], false) & 0xff, TFD_OK);
    assert_eq!(word85(&d.identify(0).1) & (1 << 5), 0);
    // Writes are durable on completion now; still correct.
    d.dma.write(DATA, &[3u8; 512]).unwrap();
    d.run(0, &dma_ext(true, 1, 1), &[(DATA, 512)], true);
    assert_eq!(d.file(0).read_at(512, 512), vec![3u8; 512]);
    // Transfer mode UDMA/133 as libata sets it.
    assert_eq!(
        d.run(0, &cmd(0xef, 0x03, 0x46, 0), &[], false) & 0xff,
        TFD_OK
    );
}

#[test]
fn test_io_two_disks_on_two_ports_at_once() {
    let mut d = Driver::with(super::driver::Setup {
        disks: vec![Some(Default::default()), Some(Default::default())],
        ..Default::default()
    });
    d.bring_up();
    for p in 0..2usize {
        for slot in 0..4u8 {
            let buf = DATA + (p as u64 * 4 + u64::from(slot)) * 4096;
            d.dma
                .write(buf, &pattern(4096, slot + 10 * p as u8))
                .unwrap();
            d.prepare_ncq(p, slot, true, u64::from(slot) * 8, 8, buf);
        }
        d.pw(p, port::SACT, 0xf);
        d.pw(p, port::CI, 0xf);
    }
    d.ahci.wait_idle();
    for p in 0..2usize {
        assert_eq!(d.pr(p, port::SACT), 0);
        for slot in 0..4u8 {
            assert_eq!(
                d.file(p).read_at(u64::from(slot) * 4096, 4096),
                pattern(4096, slot + 10 * p as u8)
            );
        }
    }
}
