//! A panic in any iovm thread ends the process: a vCPU or device worker
//! that died would leave the machine half alive (a guest waiting forever on
//! a device, a main thread waiting forever on a vCPU). The hook prints one
//! line naming the thread and the place, restores the terminal and exits
//! with [`vm::EXIT_INTERNAL`]. What the guest was told is complete is on
//! the host already (a flush completes only after the host's own flush),
//! so exiting loses nothing the guest was promised.
//!
//! For the tests, `IOVM_TEST_INJECT_PANIC=device-worker` makes the first
//! virtio device worker that wakes for a queue event panic.

use vmm::vm;

/// The environment variable of the test-only panic injection.
const INJECT_ENV: &str = "IOVM_TEST_INJECT_PANIC";

/// Installs the hook (and the injection, when the environment asks).
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        crate::terminal::restore();
        eprintln!(
            "\r\niovm: internal error: thread '{name}' panicked at {place}: {message}; \
             ending the machine (exit status {})",
            vm::EXIT_INTERNAL
        );
        std::process::exit(vm::EXIT_INTERNAL);
    }));
    if std::env::var(INJECT_ENV).as_deref() == Ok("device-worker") {
        vmm::testing::inject_device_worker_panic();
    }
}
