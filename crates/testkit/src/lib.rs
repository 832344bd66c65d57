//! Test harness for booting real guests with iovm.
//!
//! Integration tests describe guest runs ([`GuestRun`]) and hand them to [`run_batch`] (or
//! a [`Batch`] when they need a scratch directory). Where this machine has hardware KVM the
//! runs spawn iovm directly; where `/dev/kvm` is PVM or absent they run inside the nested
//! test host (QEMU TCG with emulated SVM, booted once per batch). See [`Mode`].
//!
//! ```no_run
//! use testkit::{run_batch, GuestRun};
//! use std::path::Path;
//! // In the iovm crate's integration tests: Path::new(env!("CARGO_BIN_EXE_iovm")).
//! let iovm = Path::new("target/debug/iovm");
//! let results = run_batch(iovm, &[GuestRun::new("lspci").script("lspci")]).unwrap();
//! results[0].assert_success();
//! assert!(results[0].script_output().contains("Host bridge"));
//! ```
//!
//! # Images
//! The guest (`target/guest/{vmlinuz,vmlinux,initramfs.cpio.gz,initramfs.cpio}`) is built
//! by `cargo xtask guest`,
//! the test host (`target/testhost/`) by `cargo xtask testhost`; `cargo xtask test` builds
//! both when missing. A missing image is an error ([`Error::MissingImage`]), never a skip.
//!
//! # Marker lines
//! The guest's `/init` prints, on its console, exactly:
//! - `IOVM-GUEST: boot done uptime=<seconds>` once user space is up and the drivers for the
//!   devices present are loaded ([`markers::GUEST_BOOT_DONE`]);
//! - `IOVM-GUEST: exit status=<N>` after the `iovm.run` script exits with status N
//!   ([`markers::GUEST_EXIT_STATUS`]), then it powers off with `poweroff -f`.
//!
//! The harness types a run's [`GuestRun::stdin`] only once the boot marker has appeared
//! and [`STDIN_DELAY`] more have passed (input sent earlier is partly lost while `/init`
//! is still busy).
//!
//! In test host mode the batch script brackets each run with
//! `@@IOVM-BATCH begin <name> t=<uptime>@@` and `@@IOVM-BATCH end <name> rc=<N> t=<uptime>@@`,
//! prints `@@IOVM-BATCH timeout <name>@@` when it kills a run, and
//! `@@IOVM-BATCH done@@` at the end ([`markers::BATCH`]).
//!
//! # Custom scripts
//! Drivers that need more than a list of iovm runs (the benchmark runs QEMU too and times
//! every run itself) stage executables and files with [`Batch::stage_binary`] and
//! [`Batch::stage_dir`] and run their own shell script with [`Batch::run_script`], in one
//! boot of the test host or on this machine.
//!
//! # Environment
//! - `IOVM_TEST_MODE=direct|testhost|auto` forces the mode ([`MODE_ENV`]).
//! - `IOVM_TEST_VERBOSE=1` streams consoles to stderr while they run.
//! - `IOVM_TEST_IOVM_LOG=FILTER` sets `IOVM_LOG` for iovm inside the test host.
//! - `IOVM_TEST_RUNS=a,b` runs only the guest runs named `a` and `b` (a
//!   shortcut while developing: tests of the other runs then fail).
//! - `IOVM_TEST_KEEP=1` keeps scratch directories (with `testhost-console.log`).
#![deny(missing_docs)]

mod base64;
mod batch;
mod capture;
mod direct;
mod error;
pub mod host_devices;
pub mod images;
pub mod knobs;
pub mod losses;
pub mod markers;
mod mode;
mod run;
mod script;
mod stage;
pub mod testhost;
mod watch;

pub use batch::{run_batch, Batch};
pub use capture::Stream;
pub use error::Error;
pub use host_devices::HostDevices;
pub use mode::{detect, Mode, MODE_ENV};
pub use run::{
    GuestRun, RunResult, BASE_CMDLINE, BZIMAGE_KERNEL, DEFAULT_INITRAMFS, DEFAULT_KERNEL,
    DEFAULT_TIMEOUT, GZIP_INITRAMFS, MAX_CMDLINE, STDIN_DELAY,
};
pub use script::{guest_script_word, ScriptOutput, SCRIPT_END};
