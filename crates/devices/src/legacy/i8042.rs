//! The i8042 keyboard controller, modelled only as far as its "pulse reset
//! line" command (`0xFE` written to the command port 0x64), which Linux uses as
//! a fallback way to reboot. `vm-superio`'s [`vm_superio::I8042Device`] does the
//! decoding; this adapter turns its trigger into a [`GuestRequest::Reset`].
//!
//! The bus maps port 0x60 to offset 0 and port 0x64 to offset 4.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::bus::BusDevice;
use crate::lifecycle::{GuestRequest, LifecycleSink};

/// Offset of the command/status port (0x64) from the data port (0x60).
pub const I8042_COMMAND_OFFSET: u64 = 4;

/// Turns the reset trigger into a lifecycle request.
#[derive(Debug, Clone)]
pub struct ResetTrigger(Arc<dyn LifecycleSink>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(GuestRequest::Reset);
        Ok(())
    }
}

/// The controller.
#[derive(Debug)]
pub struct I8042 {
    inner: I8042Device<ResetTrigger>,
}

impl I8042 {
    /// A controller whose reset command is reported to `sink`.
    pub fn new(sink: Arc<dyn LifecycleSink>) -> Self {
        Self {
            inner: I8042Device::new(ResetTrigger(sink)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(off), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.inner.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(off), Some(&value)) = (u8::try_from(offset), data.first()) {
            let Ok(()) = self.inner.write(off, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::testing::RecordingSink;

    #[test]
    fn test_i8042_reset_command_requests_reset() {
        let sink = Arc::new(RecordingSink::default());
        let mut dev = I8042::new(sink.clone());
        dev.write(I8042_COMMAND_OFFSET, &[0xFE]);
        assert_eq!(sink.taken(), vec![GuestRequest::Reset]);
    }

    #[test]
    fn test_i8042_other_writes_do_nothing() {
        let sink = Arc::new(RecordingSink::default());
        let mut dev = I8042::new(sink.clone());
        dev.write(0, &[0xFE]);
        dev.write(I8042_COMMAND_OFFSET, &[0xAD]);
        dev.write(u64::MAX, &[0xFE]);
        assert!(sink.taken().is_empty());
    }

    #[test]
    fn test_i8042_status_reads_input_buffer_empty() {
        let sink = Arc::new(RecordingSink::default());
        let mut dev = I8042::new(sink);
        let mut status = [0xffu8];
        dev.read(I8042_COMMAND_OFFSET, &mut status);
        assert_eq!(status[0] & 0x02, 0);
    }
}
