//! Errors and recovery as libata's error handler does it: TFES with CI
//! left set, the engine restarted, READ LOG EXT 10h for a queued failure.

use super::driver::{cmd, dma_ext, pattern, Driver, DATA, TFD_OK};
use crate::ahci::regs::{pcmd, pis, port};

/// libahci's recovery: engine stopped and restarted, IS cleared.
fn restart(d: &mut Driver, p: usize) {
    d.stop_port(p);
    let is = d.pr(p, port::IS);
    d.pw(p, port::IS, is);
    let c = d.pr(p, port::CMD);
    d.pw(p, port::CMD, c | pcmd::ST);
}

#[test]
fn test_errors_unsupported_command_aborts_and_keeps_ci() {
    let mut d = Driver::new();
    d.bring_up();
    let tfd = d.run(0, &cmd(0xb0, 0xd0, 0, 0), &[], false);
    assert_eq!(tfd, 0x0451, "ERR with ABRT");
    assert_eq!(d.pr(0, port::CI), 1, "CI stays set");
    assert_ne!(d.pr(0, port::IS) & pis::TFES, 0);
    let r = d.rfis(0);
    assert_eq!((r[0x42], r[0x43]), (0x51, 0x04));
    // The list is halted: a further command waits.
    d.prepare(0, 1, &cmd(0xe7, 0, 0, 0), &[], false);
    d.issue(0, 1);
    assert_eq!(d.pr(0, port::CI), 0b11);
    restart(&mut d, 0);
    assert_eq!(d.pr(0, port::CI), 0);
    assert_eq!(d.run(0, &cmd(0xe7, 0, 0, 0), &[], false) & 0xff, TFD_OK);
}

#[test]
fn test_errors_nop_and_packet_abort() {
    let mut d = Driver::new();
    d.bring_up();
    for op in [0x00u8, 0xa0, 0xa1, 0x91, 0xf5] {
        assert_eq!(d.run(0, &cmd(op, 0, 0, 0), &[], false), 0x0451, "{op:#x}");
        restart(&mut d, 0);
    }
}

#[test]
fn test_errors_lba_past_end_is_idnf() {
    let mut d = Driver::new();
    d.bring_up();
    let sectors = (4 << 20) / 512;
    let tfd = d.run(0, &dma_ext(false, sectors - 1, 2), &[(DATA, 1024)], false);
    assert_eq!(tfd, 0x1051);
    restart(&mut d, 0);
    let tfd = d.run(0, &dma_ext(false, sectors - 2, 2), &[(DATA, 1024)], false);
    assert_eq!(tfd & 0xff, TFD_OK);
    let tfd = d.run(0, &dma_ext(false, u64::MAX >> 16, 1), &[(DATA, 512)], false);
    assert_eq!(tfd, 0x1051, "48-bit LBA far past the end");
}

#[test]
fn test_errors_ncq_failure_read_log_ext_and_retry() {
    let mut d = Driver::new();
    d.bring_up();
    let sectors = (4 << 20) / 512;
    for slot in 0..4u8 {
        let buf = DATA + u64::from(slot) * 4096;
        d.dma.write(buf, &pattern(4096, slot)).unwrap();
        let lba = if slot == 2 {
            sectors
        } else {
            u64::from(slot) * 8
        };
        d.prepare_ncq(0, slot, true, lba, 8, buf);
    }
    d.pw(0, port::SACT, 0xf);
    d.pw(0, port::CI, 0xf);
    d.ahci.wait_idle();
    let is = d.pr(0, port::IS);
    assert_ne!(is & pis::TFES, 0);
    assert_ne!(is & pis::SDBS, 0);
    assert_eq!(d.pr(0, port::TFD), 0x1051, "IDNF");
    assert_ne!(
        d.pr(0, port::SACT) & 0b100,
        0,
        "the failed tag stays in SACT"
    );
    let r = d.rfis(0);
    assert_eq!((r[0x58], r[0x5a] & 0x01), (0xa1, 0x01), "SDB FIS with ERR");
    // libata EH: restart the engine, then read log 10h.
    restart(&mut d, 0);
    assert_eq!(d.pr(0, port::SACT), 0);
    d.dma.write(DATA + 0x10000, &[0u8; 512]).unwrap();
    let tfd = d.run(0, &cmd(0x2f, 0, 1, 0x10), &[(DATA + 0x10000, 512)], false);
    assert_eq!(tfd & 0xff, TFD_OK);
    let log = d.read_mem(DATA + 0x10000, 512);
    assert_eq!(log[0], 2, "tag 2, NQ clear");
    assert_eq!((log[2], log[3]), (0x51, 0x10));
    assert_eq!(
        log.iter().fold(0u8, |a, &x| a.wrapping_add(x)),
        0,
        "checksum"
    );
    // Read again: no error pending any more.
    d.run(0, &cmd(0x2f, 0, 1, 0x10), &[(DATA + 0x10000, 512)], false);
    assert_eq!(d.read_mem(DATA + 0x10000, 1)[0] & 0x80, 0x80);
    // The retried commands go through.
    d.prepare_ncq(0, 0, true, 0, 8, DATA);
    d.pw(0, port::SACT, 1);
    d.pw(0, port::CI, 1);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::SACT), 0);
    assert_eq!(d.file(0).read_at(0, 4096), pattern(4096, 0));
}

#[test]
fn test_errors_ncq_while_error_pending_is_refused() {
    let mut d = Driver::new();
    d.bring_up();
    d.prepare_ncq(0, 0, false, 1 << 40, 1, DATA);
    d.pw(0, port::SACT, 1);
    d.pw(0, port::CI, 1);
    d.ahci.wait_idle();
    restart(&mut d, 0);
    // Without reading the log first, queued commands fail again.
    d.prepare_ncq(0, 1, false, 0, 1, DATA);
    d.pw(0, port::SACT, 2);
    d.pw(0, port::CI, 2);
    d.ahci.wait_idle();
    assert_ne!(d.pr(0, port::IS) & pis::TFES, 0);
    assert_eq!(d.pr(0, port::TFD), 0x0451);
}

#[test]
fn test_errors_read_log_directory_and_unknown_log() {
    let mut d = Driver::new();
    d.bring_up();
    let tfd = d.run(0, &cmd(0x2f, 0, 1, 0x00), &[(DATA, 512)], false);
    assert_eq!(tfd & 0xff, TFD_OK);
    let dir = d.read_mem(DATA, 512);
    assert_eq!((dir[0], dir[0x20]), (1, 1));
    assert_eq!(
        d.run(0, &cmd(0x2f, 0, 1, 0x30), &[(DATA, 512)], false),
        0x0451
    );
    restart(&mut d, 0);
    assert_eq!(
        d.run(0, &cmd(0x2f, 0, 2, 0x10), &[(DATA, 1024)], false),
        0x0451
    );
}

#[test]
fn test_errors_write_to_readonly_disk_aborts() {
    let mut d = Driver::with(super::driver::Setup {
        disks: vec![Some(super::driver::DiskSpec {
            readonly: true,
            ..Default::default()
        })],
        ..Default::default()
    });
    d.bring_up();
    let tfd = d.run(0, &dma_ext(true, 0, 1), &[(DATA, 512)], true);
    assert_eq!(tfd, 0x0451);
    let id = d.identify(0);
    let _ = id;
    restart(&mut d, 0);
    let word169 = u16::from_le_bytes([d.identify(0).1[338], d.identify(0).1[339]]);
    assert_eq!(word169 & 1, 0, "no TRIM on a read-only disk");
}

#[test]
fn test_errors_software_reset_sequence() {
    let mut d = Driver::new();
    d.bring_up();
    // libahci softreset: SRST set (R|C in the header), then cleared.
    let mut tf = cmd(0, 0, 0, 0);
    tf.is_command = false;
    tf.control = 0x04;
    d.run(0, &tf, &[], false);
    assert_eq!(d.pr(0, port::TFD) & 0x80, 0x80, "BSY during SRST");
    assert_eq!(d.pr(0, port::CI), 0);
    tf.control = 0;
    d.run(0, &tf, &[], false);
    assert_eq!(d.pr(0, port::TFD), 0x150);
    assert_eq!(d.pr(0, port::SIG), 0x101);
    assert_eq!(d.identify(0).0 & 0xff, TFD_OK);
}
