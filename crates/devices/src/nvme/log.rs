//! Get Log Page (NVMe 1.4 §5.14): Error Information, SMART / Health
//! Information, Firmware Slot Information, Commands Supported and Effects.
//! Reading a log with RAE = 0 clears the asynchronous event type it
//! belongs to.

use super::command::{admin_opcode, io_opcode};
use super::controller::Controller;
use super::features::temperature_warning;
use super::identify::NSID_ALL;
use super::state::{COMPOSITE_TEMPERATURE, ERROR_LOG_ENTRIES};
use super::status::Status;

/// Error Information.
pub const ERROR_INFORMATION: u8 = 0x01;
/// SMART / Health Information.
pub const SMART_HEALTH: u8 = 0x02;
/// Firmware Slot Information.
pub const FIRMWARE_SLOT: u8 = 0x03;
/// Commands Supported and Effects.
pub const COMMANDS_EFFECTS: u8 = 0x05;

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// Get Log Page: copies `len` bytes of log `lid` from `offset`.
pub fn get(
    c: &mut Controller,
    lid: u8,
    rae: bool,
    len: u64,
    offset: u64,
    nsid: u32,
    prp: (u64, u64),
) -> Result<u32, Status> {
    if offset & 3 != 0 || len > c.limits.max_transfer {
        return Err(Status::INVALID_FIELD);
    }
    let (log, event_kind) = match lid {
        ERROR_INFORMATION => (error_log(c), Some(0)),
        SMART_HEALTH => {
            // Per-namespace SMART is not supported (LPA bit 0 = 0).
            if nsid != 0 && nsid != NSID_ALL {
                return Err(Status::INVALID_FIELD);
            }
            (smart_log(c), Some(1))
        }
        FIRMWARE_SLOT => {
            let mut b = vec![0u8; 512];
            b[0] = 1; // AFI: slot 1 active
            let mut fr = [b' '; 8];
            for (d, s) in fr.iter_mut().zip(c.limits.firmware.bytes()) {
                *d = s;
            }
            put(&mut b, 8, &fr);
            (b, None)
        }
        COMMANDS_EFFECTS => (effects_log(), None),
        _ => return Err(Status::INVALID_LOG_PAGE),
    };
    let start = usize::try_from(offset).map_err(|_| Status::INVALID_FIELD)?;
    if start >= log.len() {
        return Err(Status::INVALID_FIELD);
    }
    // Bytes past the end of the log read as zero.
    let mut data = vec![0u8; len as usize];
    let n = (log.len() - start).min(data.len());
    data[..n].copy_from_slice(&log[start..start + n]);
    c.write_data(prp, &data)?;
    if let (false, Some(kind)) = (rae, event_kind) {
        c.st.events.masked &= !(1u8 << kind);
        c.deliver_events();
    }
    Ok(0)
}

fn error_log(c: &Controller) -> Vec<u8> {
    let mut b = vec![0u8; 64 * ERROR_LOG_ENTRIES];
    for (i, e) in c.st.errors.iter().enumerate() {
        let at = i * 64;
        put(&mut b, at, &e.count.to_le_bytes());
        put(&mut b, at + 8, &e.sqid.to_le_bytes());
        put(&mut b, at + 10, &e.cid.to_le_bytes());
        put(&mut b, at + 12, &e.status.to_le_bytes());
        put(&mut b, at + 14, &0xffffu16.to_le_bytes()); // parameter location: n/a
        put(&mut b, at + 24, &e.nsid.to_le_bytes());
    }
    b
}

fn smart_log(c: &Controller) -> Vec<u8> {
    let s = &c.st.smart;
    let mut b = vec![0u8; 512];
    b[0] = u8::from(temperature_warning(&c.st.features)) << 1; // critical warning
    put(&mut b, 1, &COMPOSITE_TEMPERATURE.to_le_bytes());
    b[3] = 100; // available spare
    b[4] = 10; // available spare threshold
    b[5] = 0; // percentage used
              // Data units are thousands of 512-byte units, rounded up.
    put(
        &mut b,
        32,
        &u128::from(s.units_read.div_ceil(1000)).to_le_bytes(),
    );
    put(
        &mut b,
        48,
        &u128::from(s.units_written.div_ceil(1000)).to_le_bytes(),
    );
    put(&mut b, 64, &u128::from(s.host_reads).to_le_bytes());
    put(&mut b, 80, &u128::from(s.host_writes).to_le_bytes());
    put(&mut b, 160, &u128::from(s.media_errors).to_le_bytes());
    put(&mut b, 176, &u128::from(s.error_entries).to_le_bytes());
    b
}

fn effects_log() -> Vec<u8> {
    const CSUPP: u32 = 1;
    const LBCC: u32 = 1 << 1;
    let mut b = vec![0u8; 4096];
    let admin = [
        admin_opcode::DELETE_IO_SQ,
        admin_opcode::CREATE_IO_SQ,
        admin_opcode::GET_LOG_PAGE,
        admin_opcode::DELETE_IO_CQ,
        admin_opcode::CREATE_IO_CQ,
        admin_opcode::IDENTIFY,
        admin_opcode::ABORT,
        admin_opcode::SET_FEATURES,
        admin_opcode::GET_FEATURES,
        admin_opcode::ASYNC_EVENT_REQUEST,
        admin_opcode::DOORBELL_BUFFER_CONFIG,
    ];
    for op in admin {
        put(&mut b, usize::from(op) * 4, &CSUPP.to_le_bytes());
    }
    let io = [
        (io_opcode::FLUSH, CSUPP),
        (io_opcode::WRITE, CSUPP | LBCC),
        (io_opcode::READ, CSUPP),
        (io_opcode::WRITE_ZEROES, CSUPP | LBCC),
        (io_opcode::DATASET_MANAGEMENT, CSUPP | LBCC),
    ];
    for (op, e) in io {
        put(&mut b, 1024 + usize::from(op) * 4, &e.to_le_bytes());
    }
    b
}
