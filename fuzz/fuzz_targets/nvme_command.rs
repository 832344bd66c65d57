//! Fuzzes the NVMe controller's parsing of guest-written submission queue
//! entries (`parse_admin`, `parse_io`) and its PRP walk (`prp::walk`).
//!
//! Input layout: a 64-byte submission entry, one byte choosing the page
//! size (4 KiB to 64 KiB), then guest RAM from address 0 (at most 64 KiB),
//! where PRP lists are read from. The walk's result must describe exactly
//! the transfer, never exceed MDTS, and never read a list outside RAM.

#![no_main]

use devices::nvme::command::{parse_admin, parse_io, IoCommand, Sqe, SQE_SIZE};
use devices::nvme::prp;
use libfuzzer_sys::fuzz_target;

/// MDTS as the controller advertises it: 512 KiB.
const MAX_TRANSFER: u64 = 512 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((entry, rest)) = data.split_first_chunk::<SQE_SIZE>() else {
        return;
    };
    let Some((&shift, ram)) = rest.split_first() else {
        return;
    };
    let ram = &ram[..ram.len().min(0x1_0000)];
    let sqe = Sqe::from_bytes(entry);
    let _ = parse_admin(&sqe);
    let Ok(cmd) = parse_io(&sqe) else {
        return;
    };
    let IoCommand::ReadWrite {
        blocks,
        prp: (p1, p2),
        ..
    } = cmd
    else {
        return;
    };
    let page_size = 4096u64 << (shift % 5);
    let len = u64::from(blocks) * 512;
    let mut read_list = |addr: u64, out: &mut [u64]| -> Result<(), ()> {
        let start = usize::try_from(addr).map_err(|_| ())?;
        let end = start.checked_add(out.len() * 8).ok_or(())?;
        let bytes = ram.get(start..end).ok_or(())?;
        for (e, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *e = u64::from_le_bytes(b.try_into().map_err(|_| ())?);
        }
        Ok(())
    };
    if let Ok(segments) = prp::walk(p1, p2, len, page_size, MAX_TRANSFER, &mut read_list) {
        let total: u64 = segments.iter().map(|s| s.1).sum();
        assert_eq!(total, len, "segments cover the transfer exactly");
        assert!(len <= MAX_TRANSFER);
        assert!(segments.iter().all(|s| s.1 > 0));
    }
});
