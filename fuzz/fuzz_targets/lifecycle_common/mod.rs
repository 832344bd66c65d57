//! A lifecycle sink that records what the guest asked the machine to do,
//! for the fuzz targets of devices that power off, reset or report a panic.

use std::sync::Mutex;

use devices::{GuestRequest, LifecycleSink};

/// Remembers every request, oldest first.
#[derive(Debug, Default)]
pub struct Requests(Mutex<Vec<GuestRequest>>);

impl Requests {
    /// The requests so far, forgetting them.
    pub fn take(&self) -> Vec<GuestRequest> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl LifecycleSink for Requests {
    fn request(&self, request: GuestRequest) {
        self.0.lock().unwrap().push(request);
    }
}
