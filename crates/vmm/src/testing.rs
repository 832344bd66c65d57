//! Hooks the integration tests use to reach states a healthy guest never
//! causes. Nothing here runs unless a test asks.

/// The next virtio device worker that wakes for a queue event panics.
pub fn inject_device_worker_panic() {
    virtio::inject_worker_panic();
}
