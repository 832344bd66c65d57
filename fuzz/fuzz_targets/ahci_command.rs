//! Fuzzes the AHCI controller's parsing of guest-written command slots:
//! the command header (`CommandHeader::parse`), the command FIS
//! (`Taskfile::from_h2d`), the ATA decode (`AtaCommand::decode`) and the
//! PRDT walk (`command::walk`).
//!
//! Input layout: a 32-byte command header, a 64-byte command FIS area,
//! then guest RAM from address 0 (at most 64 KiB), where the PRDT is read
//! from (at the header's CTBA + 0x80). The walk must describe exactly the
//! transfer, never more than `MAX_SEGMENTS` segments, every one even and
//! at most 4 MiB, and never read outside RAM.

#![no_main]

use devices::ahci::command::{self, CommandHeader, CFIS_SIZE, MAX_SEGMENTS, PRDT_OFFSET};
use devices::ahci::fis::Taskfile;
use devices::ahci::{AtaCommand, SECTOR};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((cfis, ram)) = rest.split_first_chunk::<CFIS_SIZE>() else {
        return;
    };
    let ram = &ram[..ram.len().min(0x1_0000)];
    let h = CommandHeader::parse(header);
    assert_eq!(h.ctba & 0x7f, 0, "CTBA is 128-byte aligned");
    if !h.cfl_valid() {
        return;
    }
    let Some(tf) = Taskfile::from_h2d(&cfis[..usize::from(h.cfl) * 4]) else {
        return;
    };
    let len = match AtaCommand::decode(&tf) {
        AtaCommand::ReadWrite { sectors, .. } => u64::from(sectors) * SECTOR,
        AtaCommand::Dsm { blocks, .. } => u64::from(blocks) * SECTOR,
        AtaCommand::Identify => 512,
        AtaCommand::ReadLogExt { pages, .. } => u64::from(pages) * 512,
        _ => return,
    };
    let mut reads = 0usize;
    let read = |addr: u64, out: &mut [u8]| -> Result<(), ()> {
        reads += 1;
        let start = usize::try_from(addr).map_err(|_| ())?;
        let end = start.checked_add(out.len()).ok_or(())?;
        out.copy_from_slice(ram.get(start..end).ok_or(())?);
        Ok(())
    };
    let prdt = h.ctba.wrapping_add(PRDT_OFFSET);
    if let Ok(segs) = command::walk(prdt, h.prdtl, len, read) {
        let total: u64 = segs.iter().map(|s| s.1).sum();
        assert_eq!(total, len, "segments cover the transfer exactly");
        assert!(segs.len() <= MAX_SEGMENTS);
        assert!(segs.iter().all(|&(a, n)| a & 1 == 0 && n > 0 && n <= 4 << 20));
    }
    assert!(reads <= 2 * usize::from(h.prdtl) + 1, "no entry read twice over");
});
