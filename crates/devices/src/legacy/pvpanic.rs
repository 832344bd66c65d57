//! The pvpanic port (QEMU's de-facto standard, ACPI ID `QEMU0001`, I/O port
//! 0x505): a guest kernel writes bit 0 ("panicked") when it panics, which lets
//! the VMM end the run with a crash status instead of waiting on a dead guest.
//! Reading the port returns the events the device supports.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::lifecycle::{GuestRequest, LifecycleSink};

/// The usual I/O port of the device.
pub const PVPANIC_PORT: u16 = 0x505;
/// Event bit: the guest has panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// Event bit: a crash kernel is loaded (reported, not acted on).
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;

/// The pvpanic device.
#[derive(Debug)]
pub struct PvPanic {
    sink: Arc<dyn LifecycleSink>,
}

impl PvPanic {
    /// A device that reports panics to `sink`.
    pub fn new(sink: Arc<dyn LifecycleSink>) -> Self {
        Self { sink }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let value = data.first().copied().unwrap_or(0);
        if value & PVPANIC_PANICKED != 0 {
            self.sink.request(GuestRequest::Panic);
        } else if value & PVPANIC_CRASH_LOADED != 0 {
            ratelimit::info!("guest reports a crash kernel took over after a panic");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::testing::RecordingSink;

    #[test]
    fn test_pvpanic_panicked_bit_requests_panic() {
        let sink = Arc::new(RecordingSink::default());
        let mut dev = PvPanic::new(sink.clone());
        dev.write(0, &[PVPANIC_PANICKED]);
        assert_eq!(sink.taken(), vec![GuestRequest::Panic]);
    }

    #[test]
    fn test_pvpanic_zero_write_is_ignored() {
        let sink = Arc::new(RecordingSink::default());
        let mut dev = PvPanic::new(sink.clone());
        dev.write(0, &[0]);
        dev.write(0, &[]);
        assert!(sink.taken().is_empty());
    }

    #[test]
    fn test_pvpanic_read_reports_capabilities() {
        let sink = Arc::new(RecordingSink::default());
        let mut dev = PvPanic::new(sink);
        let mut data = [0u8; 2];
        dev.read(0, &mut data);
        assert_eq!(data, [PVPANIC_PANICKED | PVPANIC_CRASH_LOADED, 0]);
    }
}
