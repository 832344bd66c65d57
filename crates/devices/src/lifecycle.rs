//! Requests a guest makes of the machine as a whole: power off, reset, or
//! "I have panicked".

use std::fmt::Debug;

/// What the guest asked the machine to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRequest {
    /// ACPI S5 soft-off (ACPI 6.5 §7.4.2, `\_S5`), reached through the sleep
    /// control register.
    PowerOff,
    /// A platform reset: the ACPI reset register, the i8042 `0xFE` command, or
    /// a triple fault.
    Reset,
    /// The guest kernel reported a panic through the pvpanic port.
    Panic,
}

/// Where devices send [`GuestRequest`]s; the VMM decides what they mean.
pub trait LifecycleSink: Send + Sync + Debug {
    /// Records a request. It must not block: it runs on a vCPU thread.
    fn request(&self, request: GuestRequest);
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Mutex;

    use super::{GuestRequest, LifecycleSink};

    /// Remembers every request, in order.
    #[derive(Debug, Default)]
    pub struct RecordingSink(pub Mutex<Vec<GuestRequest>>);

    impl RecordingSink {
        pub fn taken(&self) -> Vec<GuestRequest> {
            self.0.lock().unwrap().clone()
        }
    }

    impl LifecycleSink for RecordingSink {
        fn request(&self, request: GuestRequest) {
            self.0.lock().unwrap().push(request);
        }
    }
}
