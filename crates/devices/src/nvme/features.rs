//! Get Features and Set Features (NVMe 1.4 §5.9, §5.21): Arbitration,
//! Power Management, Temperature Threshold, Volatile Write Cache, Number
//! of Queues, Interrupt Coalescing, Interrupt Vector Configuration and
//! Asynchronous Event Configuration. Nothing is saveable.

use super::controller::Controller;
use super::state::{AsyncEvent, Features, COMPOSITE_TEMPERATURE};
use super::status::Status;

/// Arbitration.
pub const ARBITRATION: u8 = 0x01;
/// Power Management.
pub const POWER_MANAGEMENT: u8 = 0x02;
/// Temperature Threshold.
pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
/// Volatile Write Cache.
pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
/// Number of Queues.
pub const NUMBER_OF_QUEUES: u8 = 0x07;
/// Interrupt Coalescing.
pub const INTERRUPT_COALESCING: u8 = 0x08;
/// Interrupt Vector Configuration.
pub const INTERRUPT_VECTOR_CONFIG: u8 = 0x09;
/// Asynchronous Event Configuration.
pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;

/// Get Features SEL = 3: supported capabilities; "changeable" (bit 2).
const CAPABILITY_CHANGEABLE: u32 = 1 << 2;

fn value(f: &Features, c: &Controller, fid: u8, arg: u32) -> Result<u32, Status> {
    Ok(match fid {
        ARBITRATION => f.arbitration,
        POWER_MANAGEMENT => f.power_management,
        TEMPERATURE_THRESHOLD => {
            let (tmpsel, thsel) = ((arg >> 16) & 0xf, (arg >> 20) & 0x3);
            let t = match (tmpsel, thsel) {
                (0, 0) => f.temperature_threshold.0,
                (0, 1) => f.temperature_threshold.1,
                _ => return Err(Status::INVALID_FIELD),
            };
            u32::from(t) | arg & 0x003f_0000
        }
        VOLATILE_WRITE_CACHE => u32::from(f.write_cache),
        NUMBER_OF_QUEUES => {
            let (sq, cq) = f
                .queues
                .unwrap_or((c.limits.max_io_queues - 1, c.limits.max_io_queues - 1));
            u32::from(sq) | u32::from(cq) << 16
        }
        INTERRUPT_COALESCING => f.interrupt_coalescing,
        INTERRUPT_VECTOR_CONFIG => {
            let iv = arg as u16;
            let cd = f
                .coalescing_disabled
                .get(usize::from(iv))
                .ok_or(Status::INVALID_FIELD)?;
            u32::from(iv) | u32::from(*cd) << 16
        }
        ASYNC_EVENT_CONFIG => f.async_event_config,
        _ => return Err(Status::INVALID_FIELD),
    })
}

/// Get Features.
pub fn get(c: &mut Controller, fid: u8, sel: u8, _nsid: u32, arg: u32) -> Result<u32, Status> {
    match sel {
        0 => value(&c.st.features, c, fid, arg),
        // No saved values: "saved" reads the default.
        1 | 2 => value(&Features::new(c.limits.vectors), c, fid, arg),
        3 => value(&c.st.features, c, fid, arg).map(|_| CAPABILITY_CHANGEABLE),
        _ => Err(Status::INVALID_FIELD),
    }
}

/// Set Features; returns completion DW0.
pub fn set(c: &mut Controller, fid: u8, save: bool, _nsid: u32, v: u32) -> Result<u32, Status> {
    if save {
        return Err(Status::FEATURE_NOT_SAVEABLE);
    }
    let max = c.limits.max_io_queues;
    let f = &mut c.st.features;
    match fid {
        ARBITRATION => f.arbitration = v & 0xffff_ff07,
        POWER_MANAGEMENT => {
            // NPSS = 0: only power state 0 exists.
            if v & 0x1f != 0 {
                return Err(Status::INVALID_FIELD);
            }
            f.power_management = v & 0xff;
        }
        TEMPERATURE_THRESHOLD => {
            let (t, tmpsel, thsel) = (v as u16, (v >> 16) & 0xf, (v >> 20) & 0x3);
            match (tmpsel, thsel) {
                (0 | 0xf, 0) => f.temperature_threshold.0 = t,
                (0 | 0xf, 1) => f.temperature_threshold.1 = t,
                _ => return Err(Status::INVALID_FIELD),
            }
            check_temperature(c);
        }
        VOLATILE_WRITE_CACHE => f.write_cache = v & 1 != 0,
        NUMBER_OF_QUEUES => {
            let (nsqr, ncqr) = (v as u16, (v >> 16) as u16);
            if nsqr == u16::MAX || ncqr == u16::MAX {
                return Err(Status::INVALID_FIELD);
            }
            let io_queues_exist = c.st.sqs.iter().skip(1).any(Option::is_some)
                || c.st.cqs.iter().skip(1).any(Option::is_some);
            if io_queues_exist {
                return Err(Status::COMMAND_SEQUENCE_ERROR);
            }
            let alloc = (nsqr.min(max - 1), ncqr.min(max - 1));
            c.st.features.queues = Some(alloc);
            return Ok(u32::from(alloc.0) | u32::from(alloc.1) << 16);
        }
        INTERRUPT_COALESCING => f.interrupt_coalescing = v & 0xffff,
        INTERRUPT_VECTOR_CONFIG => {
            let cd = f
                .coalescing_disabled
                .get_mut(usize::from(v as u16))
                .ok_or(Status::INVALID_FIELD)?;
            *cd = v & (1 << 16) != 0;
        }
        ASYNC_EVENT_CONFIG => f.async_event_config = v & 0x0000_03ff,
        _ => return Err(Status::INVALID_FIELD),
    }
    Ok(0)
}

/// Raises the SMART temperature event when the composite temperature
/// crosses a threshold and the guest enabled that event (AEC bit 1).
fn check_temperature(c: &mut Controller) {
    if temperature_warning(&c.st.features) && c.st.features.async_event_config & (1 << 1) != 0 {
        c.queue_event(AsyncEvent {
            kind: 1,
            info: 0x01,
            log_page: 0x02,
        });
    }
}

/// Whether the composite temperature is past a threshold (SMART critical
/// warning bit 1).
pub fn temperature_warning(f: &Features) -> bool {
    let (over, under) = f.temperature_threshold;
    COMPOSITE_TEMPERATURE >= over || (under != 0 && COMPOSITE_TEMPERATURE <= under)
}
