//! A hostile guest: every path of the threat table in `ahci/mod.rs` has
//! defined behaviour, never a panic, a hang, or an access outside guest
//! memory or the file.

use pci::function::PciFunction;
use pci::testing::ConfigDriver;

use super::driver::{
    clb, cmd, ctba, dma_ext, fpdma, pattern, port_offset, DiskSpec, Driver, Setup, DATA, OUTSIDE,
    TFD_OK,
};
use crate::ahci::command::CommandHeader;
use crate::ahci::regs::{self, pcmd, pis, port};
use crate::ahci::ABAR;

#[test]
fn test_hostile_prdtl_65535_reads_only_what_it_needs() {
    let mut d = Driver::new();
    d.bring_up();
    let h = CommandHeader {
        cfl: 5,
        prdtl: u16::MAX,
        ctba: ctba(0, 0),
        ..Default::default()
    };
    d.prepare_raw(
        0,
        0,
        &h.to_bytes(),
        &dma_ext(false, 0, 1).to_h2d(),
        &[(DATA, 512)],
    );
    d.issue(0, 0);
    assert_eq!(d.pr(0, port::TFD) & 0xff, TFD_OK);
    assert_eq!(d.prdbc(0, 0), 512);
}

#[test]
fn test_hostile_prdtl_65535_of_tiny_entries_is_aborted() {
    let mut d = Driver::new();
    d.bring_up();
    // 32 MiB in 2-byte entries would need far more than 1024 segments;
    // the table itself runs past RAM's PRDT area without harm.
    let h = CommandHeader {
        cfl: 5,
        prdtl: u16::MAX,
        ctba: DATA,
        ..Default::default()
    };
    let mut table = vec![0u8; 0x80];
    table[..20].copy_from_slice(&dma_ext(false, 0, 8).to_h2d());
    for i in 0..2048u64 {
        table.extend_from_slice(&crate::ahci::command::Prd::encode(
            DATA + 0x10_0000 + i * 2,
            2,
        ));
    }
    d.dma.write(DATA, &table).unwrap();
    d.dma.write(clb(0), &h.to_bytes()).unwrap();
    d.issue(0, 0);
    assert_eq!(d.pr(0, port::TFD), 0x0451);
}

#[test]
fn test_hostile_odd_and_zero_byte_counts_round_up() {
    let mut d = Driver::new();
    d.bring_up();
    let data = pattern(512, 4);
    d.file(0).write_at(0, &data);
    // 511 bytes (odd) and 0 bytes: 512 and 2 covered, 512 used.
    d.run(
        0,
        &dma_ext(false, 0, 1),
        &[(DATA, 511), (DATA + 0x1000, 0)],
        false,
    );
    assert_eq!(d.pr(0, port::TFD) & 0xff, TFD_OK);
    assert_eq!(d.read_mem(DATA, 512), data);
}

#[test]
fn test_hostile_prds_shorter_than_transfer_overflow() {
    let mut d = Driver::new();
    d.bring_up();
    d.dma.write(DATA, &[0x5a; 1024]).unwrap();
    d.run(0, &dma_ext(true, 0, 2), &[(DATA, 512)], true);
    assert_ne!(d.pr(0, port::IS) & pis::OFS, 0);
    assert_eq!(d.pr(0, port::CI), 1, "not completed");
    assert_eq!(
        d.file(0).read_at(0, 1024),
        vec![0u8; 1024],
        "nothing written"
    );
    d.run(0, &dma_ext(false, 0, 1), &[], false);
}

#[test]
fn test_hostile_prds_longer_than_transfer_report_bytes_moved() {
    let mut d = Driver::new();
    d.bring_up();
    d.dma.write(DATA + 512, &[0xee; 512]).unwrap();
    d.run(
        0,
        &dma_ext(false, 0, 1),
        &[(DATA, 4096), (OUTSIDE, 4096)],
        false,
    );
    assert_eq!(d.pr(0, port::TFD) & 0xff, TFD_OK);
    assert_eq!(d.prdbc(0, 0), 512);
    assert_eq!(
        d.read_mem(DATA + 512, 512),
        vec![0xee; 512],
        "past the transfer untouched"
    );
}

#[test]
fn test_hostile_data_buffer_outside_ram() {
    let mut d = Driver::new();
    d.bring_up();
    d.run(0, &dma_ext(false, 0, 1), &[(OUTSIDE, 512)], false);
    assert_ne!(d.pr(0, port::IS) & pis::HBDS, 0);
    d.run(0, &cmd(0xec, 0, 0, 0), &[(u64::MAX - 100, 512)], false);
}

#[test]
fn test_hostile_clb_fb_ctba_unmapped() {
    let mut d = Driver::new();
    d.bring_up();
    // CTBA outside RAM.
    let h = CommandHeader {
        cfl: 5,
        ctba: OUTSIDE,
        ..Default::default()
    };
    d.dma.write(clb(0), &h.to_bytes()).unwrap();
    d.issue(0, 0);
    assert_ne!(d.pr(0, port::IS) & pis::HBFS, 0);
    // CLB outside RAM.
    d.stop_port(0);
    d.pw(0, port::CLBU, 1);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c | pcmd::ST);
    d.issue(0, 3);
    assert_ne!(d.pr(0, port::IS) & pis::HBFS, 0);
    // FB outside RAM: the D2H FIS cannot land.
    d.stop_port(0);
    d.pw(0, port::IS, u32::MAX);
    d.pw(0, port::CLBU, 0);
    d.pw(0, port::FBU, 0x40);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c | pcmd::ST);
    d.run(0, &cmd(0xe7, 0, 0, 0), &[], false);
    assert_ne!(d.pr(0, port::IS) & pis::HBFS, 0);
}

#[test]
fn test_hostile_clb_pointing_into_its_own_mmio_reads_ram_only() {
    // Bus addresses are guest RAM; an address that is the ABAR's is
    // just an address outside RAM here: HBFS, no register re-entry.
    let mut d = Driver::new();
    d.bring_up();
    d.stop_port(0);
    d.pw(0, port::CLB, 0xfebf_0000);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c | pcmd::ST);
    d.issue(0, 0);
    assert_ne!(d.pr(0, port::IS) & pis::HBFS, 0);
}

#[test]
fn test_hostile_ci_and_sact_while_stopped_are_ignored() {
    let mut d = Driver::new();
    d.bring_up();
    d.stop_port(0);
    d.pw(0, port::SACT, 1);
    d.pw(0, port::CI, 1);
    assert_eq!(d.pr(0, port::CI), 0);
    assert_eq!(d.pr(0, port::SACT), 0);
}

#[test]
fn test_hostile_sact_without_ci_does_nothing() {
    let mut d = Driver::new();
    d.bring_up();
    d.pw(0, port::SACT, 0xff);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::SACT), 0xff);
    assert_eq!(d.pr(0, port::IS) & pis::SDBS, 0);
}

#[test]
fn test_hostile_ncq_tag_not_slot_is_aborted() {
    let mut d = Driver::new();
    d.bring_up();
    let tf = fpdma(false, 7, 0, 1);
    d.prepare(0, 3, &tf, &[(DATA, 512)], false);
    d.pw(0, port::SACT, 1 << 3);
    d.pw(0, port::CI, 1 << 3);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::TFD), 0x0451);
    assert_ne!(d.pr(0, port::IS) & pis::TFES, 0);
    assert_eq!(d.pr(0, port::CI), 1 << 3);
}

#[test]
fn test_hostile_ncq_without_sact_is_aborted() {
    let mut d = Driver::new();
    d.bring_up();
    d.prepare_ncq(0, 0, false, 0, 1, DATA);
    d.issue(0, 0);
    assert_eq!(d.pr(0, port::TFD), 0x0451);
}

#[test]
fn test_hostile_non_queued_during_ncq_is_aborted() {
    let mut d = Driver::with(Setup {
        engine: backend::EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up();
    d.prepare_ncq(0, 0, false, 0, 8, DATA);
    d.prepare(0, 1, &cmd(0xe7, 0, 0, 0), &[], false);
    d.pw(0, port::SACT, 1);
    d.pw(0, port::CI, 0b11);
    d.ahci.wait_idle();
    // Either the flush ran after the queued read finished, or it was
    // aborted while the read ran: never both at once, never a hang.
    let tfes = d.pr(0, port::IS) & pis::TFES != 0;
    assert!(tfes || d.pr(0, port::CI) == 0);
    assert_eq!(d.pr(0, port::SACT), 0, "the queued read completed");
}

#[test]
fn test_hostile_dsm_range_overflow_discards_nothing() {
    let mut d = Driver::new();
    d.bring_up();
    d.file(0).write_at(0, &[0xaa; 4096]);
    let sectors = (4 << 20) / 512u64;
    let mut payload = vec![0u8; 512];
    payload[..8].copy_from_slice(&(8u64 << 48).to_le_bytes());
    payload[8..16].copy_from_slice(&(0xffffu64 << 48 | (sectors - 1)).to_le_bytes());
    d.dma.write(DATA, &payload).unwrap();
    assert_eq!(d.run(0, &cmd(0x06, 1, 1, 0), &[(DATA, 512)], true), 0x0451);
    assert_eq!(d.file(0).read_at(0, 4096), vec![0xaa; 4096]);
    // A count beyond IDENTIFY word 105, and TRIM bit clear.
    d.stop_port(0);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c | pcmd::ST);
    assert_eq!(d.run(0, &cmd(0x06, 1, 0, 0), &[(DATA, 512)], true), 0x0451);
    d.stop_port(0);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c | pcmd::ST);
    assert_eq!(d.run(0, &cmd(0x06, 0, 1, 0), &[(DATA, 512)], true), 0x0451);
}

#[test]
fn test_hostile_dsm_with_discard_off_is_aborted() {
    let mut d = Driver::with(Setup {
        disks: vec![Some(DiskSpec {
            discard: false,
            ..DiskSpec::default()
        })],
        ..Setup::default()
    });
    d.bring_up();
    d.dma.write(DATA, &(8u64 << 48).to_le_bytes()).unwrap();
    assert_eq!(d.run(0, &cmd(0x06, 1, 1, 0), &[(DATA, 512)], true), 0x0451);
}

#[test]
fn test_hostile_stop_during_ncq_drops_completions() {
    let mut d = Driver::with(Setup {
        engine: backend::EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up();
    for slot in 0..16u8 {
        d.prepare_ncq(
            0,
            slot,
            false,
            u64::from(slot) * 8,
            8,
            DATA + u64::from(slot) * 4096,
        );
    }
    d.pw(0, port::SACT, 0xffff);
    d.pw(0, port::CI, 0xffff);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c & !pcmd::ST);
    assert_eq!(d.pr(0, port::SACT), 0);
    assert_eq!(d.pr(0, port::CI), 0);
    d.pw(0, port::IS, u32::MAX);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::CMD) & pcmd::CR, 0, "CR clears once drained");
    assert_eq!(d.pr(0, port::SACT), 0, "nothing posted after the stop");
    assert_eq!(d.pr(0, port::IS) & pis::SDBS, 0);
}

#[test]
fn test_hostile_hba_reset_during_ncq() {
    let mut d = Driver::with(Setup {
        engine: backend::EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up();
    for slot in 0..8u8 {
        d.prepare_ncq(0, slot, true, u64::from(slot) * 8, 8, DATA);
    }
    d.pw(0, port::SACT, 0xff);
    d.pw(0, port::CI, 0xff);
    d.reset_hba();
    assert_eq!(d.pr(0, port::SACT), 0);
    assert_eq!(d.pr(0, port::CMD) & (pcmd::ST | pcmd::CR), 0);
    d.bring_up();
    assert_eq!(d.identify(0).0 & 0xff, TFD_OK);
}

#[test]
fn test_hostile_comreset_while_running() {
    let mut d = Driver::with(Setup {
        engine: backend::EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up();
    d.prepare_ncq(0, 0, false, 0, 8, DATA);
    d.pw(0, port::SACT, 1);
    d.pw(0, port::CI, 1);
    d.pw(0, port::SCTL, 0x301);
    d.pw(0, port::SCTL, 0x300);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::SSTS), 0x133);
    // The abandoned command stays in SACT until the engine stops.
    d.stop_port(0);
    assert_eq!(d.pr(0, port::SACT), 0);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c | pcmd::ST);
    assert_eq!(d.identify(0).0 & 0xff, TFD_OK);
}

#[test]
fn test_hostile_bad_cfl_and_fis_type() {
    let mut d = Driver::new();
    d.bring_up();
    for (cfl, ty) in [(0u8, 0x27u8), (4, 0x27), (17, 0x27), (5, 0x34)] {
        let h = CommandHeader {
            cfl,
            ctba: ctba(0, 0),
            ..Default::default()
        };
        let mut fis = cmd(0xec, 0, 0, 0).to_h2d();
        fis[0] = ty;
        d.prepare_raw(0, 0, &h.to_bytes(), &fis, &[(DATA, 512)]);
        d.issue(0, 0);
        assert_ne!(d.pr(0, port::IS) & pis::IFS, 0, "CFL {cfl} type {ty:#x}");
        d.stop_port(0);
        d.pw(0, port::IS, u32::MAX);
        let c = d.pr(0, port::CMD);
        d.pw(0, port::CMD, c | pcmd::ST);
    }
}

#[test]
fn test_hostile_odd_mmio_widths_and_offsets() {
    let mut d = Driver::new();
    d.bring_up();
    let ci = port_offset(0, port::CI);
    // Byte, word and quad accesses everywhere, misaligned, and past the
    // implemented ports.
    for off in (0..0x1000u64).step_by(3) {
        let mut b1 = [0u8; 1];
        let mut b2 = [0u8; 2];
        let mut b8 = [0u8; 8];
        d.ahci.bar_read(ABAR, off, &mut b1);
        d.ahci.bar_read(ABAR, off, &mut b2);
        d.ahci.bar_read(ABAR, off, &mut b8);
        if off != regs::GHC as u64 && off != ci && off + 8 <= regs::HBA_SIZE as u64 {
            d.ahci.bar_write(ABAR, off, &[0u8]);
        }
    }
    d.ahci.bar_read(ABAR, u64::MAX - 3, &mut [0u8; 8]);
    d.ahci.bar_write(ABAR, u64::MAX - 3, &[0xff; 8]);
    d.ahci.bar_write(ABAR, 0x1000 - 2, &[0xff; 8]);
    d.ahci.bar_write(ABAR, 0x17c, &[0xff; 8]);
    // A byte write to PxCI issues the slot it sets.
    d.prepare(0, 1, &cmd(0xe7, 0, 0, 0), &[], false);
    d.ahci.bar_write(ABAR, ci, &[0b10]);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::CI) & 0b10, 0);
    // An 8-byte write over SACT and CI.
    d.ahci.bar_write(ABAR, port_offset(0, port::SACT), &[0; 8]);
    let _ = d.pr(0, port::TFD);
}

#[test]
fn test_hostile_dma_with_bus_master_off_waits() {
    let mut d = Driver::new();
    d.bring_up();
    d.ahci.set_command(pci::config::command::MEMORY);
    d.prepare(0, 0, &cmd(0xe7, 0, 0, 0), &[], false);
    d.issue(0, 0);
    assert_eq!(d.pr(0, port::CI), 1, "nothing fetched");
    d.enable_pci();
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::CI), 0, "fetched once bus mastering is back");
}

#[test]
fn test_hostile_srst_during_ncq_abandons_the_queued_commands() {
    let mut d = Driver::with(Setup {
        engine: backend::EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up();
    for slot in 0..4u8 {
        d.prepare_ncq(0, slot, false, u64::from(slot) * 8, 8, DATA);
    }
    d.pw(0, port::SACT, 0xf);
    d.pw(0, port::CI, 0xf);
    let mut tf = cmd(0, 0, 0, 0);
    tf.is_command = false;
    tf.control = 0x04;
    d.prepare(0, 5, &tf, &[], false);
    d.pw(0, port::CI, 1 << 5);
    d.pw(0, port::IS, u32::MAX);
    d.ahci.wait_idle();
    assert_eq!(d.pr(0, port::IS) & pis::SDBS, 0, "no completion posted");
    assert_eq!(d.pr(0, port::CI) & (1 << 5), 0, "the control FIS completed");
    d.stop_port(0);
    assert_eq!(d.pr(0, port::SACT), 0);
    let c = d.pr(0, port::CMD);
    d.pw(0, port::CMD, c | pcmd::ST);
    tf.control = 0;
    d.run(0, &tf, &[], false);
    assert_eq!(d.pr(0, port::TFD), 0x150);
    assert_eq!(d.identify(0).0 & 0xff, TFD_OK);
}
