//! Reads and writes through PRPs, flush, write zeroes, deallocate, the
//! NVM command checks, and interrupts.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use backend::EngineKind;
use pci::testing::ConfigDriver;

use super::driver::*;
use crate::nvme::status::Status;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write_list(d: &Driver, at: u64, entries: &[u64]) {
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    d.dma.write(at, &bytes).unwrap();
}

#[test]
fn test_nvme_write_then_read_single_page() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let data = pattern(4096, 1);
    d.dma.write(DATA, &data).unwrap();
    assert!(d.io(1, rw(true, 1, 8, 8, (DATA, 0))).ok());
    assert!(
        d.files[0].read_at(8 * 512, 4096) == data,
        "bytes at LBA 8 in the file"
    );
    d.dma.write(DATA, &[0; 4096]).unwrap();
    assert!(d.io(1, rw(false, 1, 8, 8, (DATA, 0))).ok());
    let mut back = vec![0u8; 4096];
    d.dma.read(DATA, &mut back).unwrap();
    assert!(back == data);
}

#[test]
fn test_nvme_two_pages_through_prp2() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let data = pattern(8192, 2);
    d.dma.write(DATA, &data[..4096]).unwrap();
    d.dma.write(DATA + 0x10_000, &data[4096..]).unwrap();
    let c = d.io(1, rw(true, 1, 100, 16, (DATA, DATA + 0x10_000)));
    assert!(c.ok());
    assert!(d.files[0].read_at(100 * 512, 8192) == data);
}

#[test]
fn test_nvme_prp_list_spanning_several_pages_with_misaligned_prp1() {
    let mut d = Driver::with(Setup {
        mdts: 9,
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    // 79 blocks: PRP1 at offset 0x200 (3.5 KiB), then 9 list entries.
    let len = 79 * 512;
    let data = pattern(len, 3);
    let prp1 = DATA + 0x200;
    let pages: Vec<u64> = (0..9).map(|i| DATA + 0x10_0000 + i * 0x2000).collect();
    d.dma.write(prp1, &data[..0xe00]).unwrap();
    for (i, p) in pages.iter().enumerate() {
        let start = 0xe00 + i * 4096;
        let end = (start + 4096).min(len);
        d.dma.write(*p, &data[start..end]).unwrap();
    }
    write_list(&d, LISTS, &pages);
    assert!(d.io(1, rw(true, 1, 0, 79, (prp1, LISTS))).ok());
    assert!(d.files[0].read_at(0, len) == data, "file holds the data");
    for p in &pages {
        d.dma.write(*p, &[0; 4096]).unwrap();
    }
    assert!(d.io(1, rw(false, 1, 0, 79, (prp1, LISTS))).ok());
    let mut back = vec![0u8; 4096];
    d.dma.read(pages[8], &mut back).unwrap();
    assert!(back[..len - 0xe00 - 8 * 4096] == data[0xe00 + 8 * 4096..]);
}

#[test]
fn test_nvme_prp_list_chained_across_list_pages() {
    let mut d = Driver::with(Setup {
        mdts: 9,
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    // List starts at the last two slots of a page: one data entry, then
    // a chain pointer to a second list page.
    let list = LISTS + 0x1000 - 16;
    let pages = [DATA + 0x1000, DATA + 0x3000, DATA + 0x5000];
    write_list(&d, list, &[pages[0], LISTS + 0x2000]);
    write_list(&d, LISTS + 0x2000, &pages[1..]);
    let data = pattern(16384, 4);
    d.dma.write(DATA, &data[..4096]).unwrap();
    for (i, p) in pages.iter().enumerate() {
        d.dma
            .write(*p, &data[4096 * (i + 1)..4096 * (i + 2)])
            .unwrap();
    }
    assert!(d.io(1, rw(true, 1, 64, 32, (DATA, list))).ok());
    assert!(d.files[0].read_at(64 * 512, 16384) == data);
}

#[test]
fn test_nvme_prp_errors() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    write_list(&d, LISTS, &[DATA + 0x1000, DATA + 0x2010]);
    let cases = [
        (
            rw(true, 1, 0, 16, (DATA, DATA + 0x1010)),
            Status::PRP_OFFSET_INVALID,
        ),
        (
            rw(true, 1, 0, 24, (DATA, LISTS)),
            Status::PRP_OFFSET_INVALID,
        ),
        (rw(true, 1, 0, 8, (DATA + 2, 0)), Status::PRP_OFFSET_INVALID),
        (
            rw(true, 1, 0, 24, (DATA, OUTSIDE)),
            Status::DATA_TRANSFER_ERROR,
        ),
        (
            rw(false, 1, 0, 8, (OUTSIDE, 0)),
            Status::DATA_TRANSFER_ERROR,
        ),
        (
            rw(false, 1, 0, 16, (DATA, OUTSIDE)),
            Status::DATA_TRANSFER_ERROR,
        ),
        (rw(false, 1, 0, 257, (DATA, LISTS)), Status::INVALID_FIELD),
    ];
    for (cmd, want) in cases {
        let c = d.io(1, cmd);
        assert!(c.is(want), "{cmd:?}: got {:#x}, want {want:?}", c.status);
    }
}

#[test]
fn test_nvme_transfer_of_exactly_mdts_is_accepted() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let pages: Vec<u64> = (1..32).map(|i| DATA + i * 0x1000).collect();
    write_list(&d, LISTS, &pages);
    assert!(
        d.io(1, rw(false, 1, 0, 256, (DATA, LISTS))).ok(),
        "128 KiB = MDTS"
    );
}

#[test]
fn test_nvme_lba_namespace_and_write_protect_checks() {
    let mut d = Driver::with(Setup {
        namespaces: vec![
            NsSpec::default(),
            NsSpec {
                readonly: true,
                ..NsSpec::default()
            },
        ],
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    let cases = [
        (rw(false, 1, 8191, 2, (DATA, 0)), Status::LBA_OUT_OF_RANGE),
        (
            rw(false, 1, u64::MAX, 1, (DATA, 0)),
            Status::LBA_OUT_OF_RANGE,
        ),
        (rw(false, 0, 0, 1, (DATA, 0)), Status::INVALID_NAMESPACE),
        (rw(false, 3, 0, 1, (DATA, 0)), Status::INVALID_NAMESPACE),
        (
            rw(false, 0xffff_ffff, 0, 1, (DATA, 0)),
            Status::INVALID_NAMESPACE,
        ),
        (
            rw(true, 2, 0, 1, (DATA, 0)),
            Status::NAMESPACE_WRITE_PROTECTED,
        ),
        (
            sqe(0x08, 2, (0, 0), [0, 0, 0, 0, 0, 0]),
            Status::NAMESPACE_WRITE_PROTECTED,
        ),
        (
            sqe(0x08, 1, (0, 0), [8190, 0, 3, 0, 0, 0]),
            Status::LBA_OUT_OF_RANGE,
        ),
        (sqe(0x05, 1, (0, 0), [0; 6]), Status::INVALID_OPCODE),
        (sqe(0x00, 0, (0, 0), [0; 6]), Status::INVALID_NAMESPACE),
    ];
    for (cmd, want) in cases {
        let c = d.io(1, cmd);
        assert!(c.is(want), "{cmd:?}: got {:#x}, want {want:?}", c.status);
    }
    assert!(
        d.io(1, rw(false, 2, 0, 1, (DATA, 0))).ok(),
        "reads of a protected namespace"
    );
    assert!(d.io(1, rw(false, 1, 8191, 1, (DATA, 0))).ok(), "last block");
}

#[test]
fn test_nvme_4k_namespace_maps_lbas_to_4k_offsets() {
    let mut d = Driver::with(Setup {
        namespaces: vec![NsSpec {
            block_size: 4096,
            ..NsSpec::default()
        }],
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    let data = pattern(4096, 9);
    d.dma.write(DATA, &data).unwrap();
    assert!(d.io(1, rw(true, 1, 3, 1, (DATA, 0))).ok());
    assert!(d.files[0].read_at(3 * 4096, 4096) == data);
}

#[test]
fn test_nvme_flush_single_and_all_namespaces() {
    let mut d = Driver::with(Setup {
        namespaces: vec![NsSpec::default(), NsSpec::default()],
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    assert!(d.io(1, sqe(0x00, 1, (0, 0), [0; 6])).ok());
    assert!(d.io(1, sqe(0x00, 0xffff_ffff, (0, 0), [0; 6])).ok());
}

#[test]
fn test_nvme_dsm_deallocate_punches_a_hole() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    std::fs::write(&d.files[0].0, vec![0x77u8; 4 << 20]).unwrap();
    let before = std::fs::metadata(&d.files[0].0).unwrap().blocks();
    // Two ranges: LBA 2048 + 2048 blocks, and an empty one.
    let mut ranges = [0u8; 32];
    ranges[4..8].copy_from_slice(&2048u32.to_le_bytes());
    ranges[8..16].copy_from_slice(&2048u64.to_le_bytes());
    d.dma.write(DATA, &ranges).unwrap();
    let c = d.io(1, sqe(0x09, 1, (DATA, 0), [1, 1 << 2, 0, 0, 0, 0]));
    assert!(c.ok());
    let after = std::fs::metadata(&d.files[0].0).unwrap().blocks();
    assert!(after < before, "st_blocks {before} -> {after}");
    assert!(d.files[0].read_at(1 << 20, 1 << 20).iter().all(|&b| b == 0));
    assert_eq!(d.files[0].read_at((1 << 20) - 1, 1), [0x77]);
}

#[test]
fn test_nvme_dsm_out_of_range_and_hints_only() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let mut range = [0u8; 16];
    range[4..8].copy_from_slice(&16u32.to_le_bytes());
    range[8..16].copy_from_slice(&8190u64.to_le_bytes());
    d.dma.write(DATA, &range).unwrap();
    let c = d.io(1, sqe(0x09, 1, (DATA, 0), [0, 1 << 2, 0, 0, 0, 0]));
    assert!(c.is(Status::LBA_OUT_OF_RANGE));
    let c = d.io(1, sqe(0x09, 1, (DATA, 0), [0, 1, 0, 0, 0, 0]));
    assert!(c.ok(), "integral read hint only: nothing to do");
    let c = d.io(1, sqe(0x09, 1, (OUTSIDE, 0), [0, 1 << 2, 0, 0, 0, 0]));
    assert!(c.is(Status::DATA_TRANSFER_ERROR));
}

#[test]
fn test_nvme_write_zeroes_zeroes_the_range() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    std::fs::write(&d.files[0].0, vec![0x55u8; 4 << 20]).unwrap();
    let c = d.io(1, sqe(0x08, 1, (0, 0), [16, 0, 7, 0, 0, 0]));
    assert!(c.ok());
    assert!(d.files[0]
        .read_at(16 * 512, 8 * 512)
        .iter()
        .all(|&b| b == 0));
    assert_eq!(d.files[0].read_at(24 * 512, 1), [0x55]);
}

#[test]
fn test_nvme_write_cache_disabled_writes_still_land() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    assert!(d.admin(set_features(0x06, 0)).ok());
    d.dma.write(DATA, &pattern(512, 5)).unwrap();
    assert!(d.io(1, rw(true, 1, 1, 1, (DATA, 0))).ok());
    assert_eq!(d.files[0].read_at(512, 512), pattern(512, 5));
}

#[test]
fn test_nvme_smart_counts_host_commands_and_data_units() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    for _ in 0..3 {
        assert!(d.io(1, rw(true, 1, 0, 8, (DATA, 0))).ok());
    }
    assert!(d.io(1, rw(false, 1, 0, 8, (DATA, 0))).ok());
    let (c, smart) = d.log(0x02, 512, false);
    assert!(c.ok());
    let u = |at: usize| u64::from_le_bytes(smart[at..at + 8].try_into().unwrap());
    assert_eq!(u(32), 1, "data units read (1000s of 512 B, rounded up)");
    assert_eq!(u(48), 1, "data units written");
    assert_eq!(u(64), 1, "host reads");
    assert_eq!(u(80), 3, "host writes");
}

#[test]
fn test_nvme_completion_raises_the_queue_msix_vector() {
    let mut d = Driver::new();
    d.bring_up_with_queues(2);
    d.vectors.take();
    assert!(d.io(2, rw(false, 1, 0, 1, (DATA, 0))).ok());
    assert_eq!(d.vectors.sent_vectors(), vec![2]);
    d.vectors.take();
    d.admin(identify(1, 0));
    assert_eq!(d.vectors.sent_vectors(), vec![0]);
}

#[test]
fn test_nvme_intx_level_follows_unconsumed_completions_and_intms() {
    let mut d = Driver::new();
    d.enable_pci();
    d.enable();
    d.push(0, identify(1, 0));
    d.ring_sq(0);
    assert!(d.line.level(), "INTA asserted while the CQE is unconsumed");
    assert_ne!(d.nvme.config_read32(4) >> 16 & 0x08, 0, "Interrupt Status");
    d.write32(0x0c, 1); // INTMS
    assert!(!d.line.level(), "masked");
    d.write32(0x10, 1); // INTMC
    assert!(d.line.level());
    d.pop(0).unwrap();
    assert!(!d.line.level(), "deasserted once the head moves");
}

#[test]
fn test_nvme_intx_disable_masks_the_line_not_the_status() {
    let mut d = Driver::new();
    d.enable_pci();
    d.nvme.config_write16(4, 0x0406);
    d.enable();
    d.push(0, identify(1, 0));
    d.ring_sq(0);
    assert!(!d.line.level());
    assert_ne!(d.nvme.config_read32(4) >> 16 & 0x08, 0);
}

#[test]
fn test_nvme_msi_vectors_are_masked_by_intms_and_sent_on_intmc() {
    let mut d = Driver::new();
    d.enable_pci();
    d.enable_msi(4);
    d.enable();
    d.vectors.take();
    d.write32(0x0c, 1);
    d.push(0, identify(1, 0));
    d.ring_sq(0);
    assert!(d.vectors.sent_vectors().is_empty(), "masked by INTMS");
    d.write32(0x10, 1);
    assert_eq!(d.vectors.sent_vectors(), vec![0]);
    assert!(!d.line.level(), "no INTx with MSI on");
}

#[test]
fn test_nvme_full_cq_holds_completions_until_the_head_moves() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(d.admin(create_cq(1, 2, cq_addr(1), 1)).ok());
    assert!(d.admin(create_sq(1, 8, sq_addr(1), 1)).ok());
    d.queues[1] = Some(QueuePair {
        sq: sq_addr(1),
        cq: cq_addr(1),
        entries: 8,
        tail: 0,
        head: 0,
        phase: true,
    });
    for _ in 0..3 {
        d.push(1, rw(false, 1, 0, 1, (DATA, 0)));
    }
    d.ring_sq(1);
    // The CQ has 2 entries (holds 1); the driver's pop uses the SQ size, so
    // read the CQ by hand.
    let mut b = [0u8; 32];
    d.dma.read(cq_addr(1), &mut b).unwrap();
    assert_eq!(b[14] & 1, 1, "first entry posted");
    assert_eq!(b[30] & 1, 0, "second slot not written: queue full");
    d.write32(0x1000 + 12, 1); // consume entry 0
    d.dma.read(cq_addr(1), &mut b).unwrap();
    assert_eq!(b[30] & 1, 1, "second entry posted after the head moved");
}

#[test]
fn test_nvme_io_through_io_uring() {
    let mut d = Driver::with(Setup {
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    let data = pattern(8192, 6);
    d.dma.write(DATA, &data).unwrap();
    assert!(d.io(1, rw(true, 1, 32, 16, (DATA, DATA + 0x1000))).ok());
    assert!(d.io(1, sqe(0x00, 1, (0, 0), [0; 6])).ok());
    assert!(d.files[0].read_at(32 * 512, 8192) == data);
    d.dma.write(DATA, &[0; 8192]).unwrap();
    assert!(d.io(1, rw(false, 1, 32, 16, (DATA, DATA + 0x1000))).ok());
    let mut back = vec![0u8; 8192];
    d.dma.read(DATA, &mut back).unwrap();
    assert!(back == data);
}

#[test]
fn test_nvme_many_commands_in_one_doorbell() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let mut cids = Vec::new();
    for i in 0..20u64 {
        d.dma.write(DATA + i * 0x1000, &[i as u8; 512]).unwrap();
        cids.push(d.push(1, rw(true, 1, i, 1, (DATA + i * 0x1000, 0))));
    }
    d.ring_sq(1);
    d.nvme.wait_idle();
    let mut done = Vec::new();
    while let Some(c) = d.pop(1) {
        assert!(c.ok());
        done.push(c.cid);
    }
    done.sort_unstable();
    cids.sort_unstable();
    assert_eq!(done, cids);
    assert_eq!(d.files[0].read_at(19 * 512, 1), [19]);
}

#[test]
fn test_nvme_no_fetch_without_bus_master() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    d.nvme.config_write16(4, 0x0002);
    d.push(1, rw(false, 1, 0, 1, (DATA, 0)));
    d.ring_sq(1);
    assert!(d.pop(1).is_none(), "bus mastering off: nothing fetched");
    d.nvme.config_write16(4, 0x0006);
    d.nvme.poll();
    assert!(d.pop(1).expect("fetched once bus mastering is back").ok());
}

/// Fetches what SQ 1 holds without collecting backend completions, so
/// the commands stay in flight.
fn fetch_without_reaping(d: &mut Driver) {
    let tail = d.queues[1].unwrap().tail;
    d.nvme.with_controller(|c| {
        if let Some(sq) = c.st.sqs[1].as_mut() {
            sq.tail = tail;
        }
        c.process_submissions(1);
        c.submit_backends();
    });
}

#[test]
fn test_nvme_delete_sq_with_io_in_flight_completes_after_it() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let mut cids: Vec<u16> = (0..8)
        .map(|i| d.push(1, rw(false, 1, i * 8, 8, (DATA + i * 0x1000, 0))))
        .collect();
    fetch_without_reaping(&mut d);
    let del = d.push(0, delete_sq(1));
    d.ring_sq(0);
    assert!(
        d.pop(0).is_none(),
        "deletion waits for the queue's commands"
    );
    d.nvme.poll();
    let mut done = Vec::new();
    while let Some(c) = d.pop(1) {
        assert!(c.ok());
        done.push(c.cid);
    }
    done.sort_unstable();
    cids.sort_unstable();
    assert_eq!(done, cids, "every command of the deleted SQ completed");
    let c = d.pop(0).expect("delete completes");
    assert_eq!((c.cid, c.status), (del, 0));
    assert!(d.admin(delete_cq(1)).ok());
}

#[test]
fn test_nvme_reset_with_io_in_flight_keeps_ready_until_drained() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    for i in 0..4u64 {
        d.push(1, rw(false, 1, i * 8, 8, (DATA + i * 0x1000, 0)));
    }
    fetch_without_reaping(&mut d);
    let rdy = d.nvme.with_controller(|c| {
        c.write_register(crate::nvme::regs::CC, &0u32.to_le_bytes());
        c.st.regs.csts() & 1
    });
    assert_eq!(
        rdy, 1,
        "RDY stays set while the backend holds guest buffers"
    );
    assert_eq!(
        d.csts() & 1,
        0,
        "cleared once the completions are collected"
    );
    let mut cqe = [0u8; 16];
    d.dma.read(cq_addr(1), &mut cqe).unwrap();
    assert_eq!(cqe[14] & 1, 0, "dropped, not posted after the reset");
    d.enable();
    let (c, _) = d.identify(1, 0);
    assert!(c.ok());
}

#[test]
fn test_nvme_reset_with_io_uring_in_flight_settles() {
    let mut d = Driver::with(Setup {
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    for i in 0..16u64 {
        d.push(1, rw(false, 1, i * 8, 8, (DATA + i * 0x1000, 0)));
    }
    d.ring_sq(1);
    d.write32(crate::nvme::regs::CC as u64, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.csts() & 1 != 0 {
        assert!(std::time::Instant::now() < deadline, "RDY never cleared");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(d.nvme.with_controller(|c| c.in_flight()), 0);
}

/// Teardown (hot-unplug, VF disable, machine end) with reads in flight:
/// dropping the controller waits for the kernel to finish them, and then
/// nothing of the device holds guest memory any more.
#[test]
fn test_nvme_dropped_with_io_uring_reads_in_flight_lets_them_land_first() {
    let mut d = Driver::with(Setup {
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    let content = pattern(16 * 4096, 9);
    std::fs::write(&d.files[0].0, &content).unwrap();
    for i in 0..16u64 {
        d.push(1, rw(false, 1, i * 8, 8, (DATA + i * 0x1000, 0)));
    }
    d.ring_sq(1);
    let Driver {
        nvme, dma, files, ..
    } = d;

    drop(nvme);

    let mut landed = vec![0u8; content.len()];
    dma.read(DATA, &mut landed).unwrap();
    assert!(
        landed == content,
        "every read finished before the teardown did"
    );
    assert_eq!(Arc::strong_count(&dma), 1, "no handle left with the engine");
    drop(files);
}

#[test]
fn test_nvme_backend_failure_is_a_media_error() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    // The host file shrinks under the guest: reads past its end fail.
    std::fs::File::options()
        .write(true)
        .open(&d.files[0].0)
        .unwrap()
        .set_len(0)
        .unwrap();
    let c = d.io(1, rw(false, 1, 16, 8, (DATA, 0)));
    assert!(
        c.is(Status::UNRECOVERED_READ_ERROR),
        "status {:#x}",
        c.status
    );
    let (_, smart) = d.log(0x02, 512, false);
    assert_eq!(smart[160], 1, "media errors");
}

#[test]
fn test_nvme_enable_during_reset_drain_takes_effect_after_it() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    d.push(1, rw(false, 1, 0, 8, (DATA, 0)));
    fetch_without_reaping(&mut d);
    let cc_value = Driver::cc_value();
    let rdy = d.nvme.with_controller(|c| {
        c.write_register(crate::nvme::regs::CC, &0u32.to_le_bytes());
        c.write_register(crate::nvme::regs::CC, &cc_value.to_le_bytes());
        c.reap_completions();
        c.st.regs.csts()
    });
    assert_eq!(rdy, 1, "ready again once the drain finished");
    d.queues[0] = Some(QueuePair {
        sq: ASQ,
        cq: ACQ,
        entries: ADMIN_ENTRIES,
        tail: 0,
        head: 0,
        phase: true,
    });
    d.dma.write(ACQ, &[0u8; 512]).unwrap();
    let (c, _) = d.identify(1, 0);
    assert!(c.ok());
}
