//! A batch of guest runs sharing one scratch directory (and, in test host mode, one boot of
//! the test host).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capture::{verbose_env, Stream};
use crate::error::{Error, IoContext};
use crate::host_devices::HostDevices;
use crate::images;
use crate::mode::Mode;
use crate::run::{GuestRun, RunResult};
use crate::{direct, testhost};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs guests and owns a scratch directory for their files.
///
/// The scratch directory (`<workspace>/target/testkit/batch-…`) is shared read-write with
/// iovm: put disk images there before [`Batch::run`], refer to them as `{scratch}/…` in
/// [`GuestRun::args`], and read what the guests wrote after. It is removed when the batch
/// is dropped, unless `IOVM_TEST_KEEP=1`.
#[derive(Debug)]
pub struct Batch {
    mode: Mode,
    scratch: PathBuf,
    stream: Stream,
    disk: Option<PathBuf>,
    silence: Option<Duration>,
    devices: HostDevices,
}

impl Batch {
    /// A batch in the mode of this machine ([`Mode::from_host`]).
    pub fn new() -> Result<Batch, Error> {
        Batch::with_mode(Mode::from_host()?)
    }

    /// A batch in the given mode.
    pub fn with_mode(mode: Mode) -> Result<Batch, Error> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let scratch = images::workspace().join("target/testkit").join(format!(
            "batch-{}-{}-{nanos:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&scratch).ctx(|| format!("creating {}", scratch.display()))?;
        Ok(Batch {
            mode,
            scratch,
            stream: if verbose_env() {
                Stream::Stderr
            } else {
                Stream::Off
            },
            disk: None,
            silence: None,
            devices: HostDevices::default(),
        })
    }

    /// Streams consoles to stderr while running (default: `IOVM_TEST_VERBOSE=1`).
    pub fn stream(mut self, on: bool) -> Self {
        self.stream = if on { Stream::Stderr } else { Stream::Off };
        self
    }

    /// Streams consoles to `to` while running (see [`Stream`]).
    pub fn stream_to(mut self, to: Stream) -> Self {
        self.stream = to;
        self
    }

    /// Gives [`Batch::run_script`]'s script a disk: the raw image `image` on this machine,
    /// named by `$DISK` in the script. Directly on this machine `$DISK` is `image` itself;
    /// in the test host it is `/dev/vda`, a virtio disk the test host's QEMU backs with
    /// `image` with `cache=none` (so `O_DIRECT` there reaches this machine's disk).
    pub fn with_disk(mut self, image: impl Into<PathBuf>) -> Self {
        self.disk = Some(image.into());
        self
    }

    /// Gives the test host an NVMe controller it can assign, backed by the
    /// raw image `image` on this machine, under an emulated VT-d
    /// ([`HostDevices`]; at [`crate::host_devices::ASSIGNABLE_NVME_BDF`]
    /// there). Directly on a machine with hardware KVM there is no such
    /// device: tests that need it run in the test host only.
    pub fn with_assignable_nvme(mut self, image: impl Into<PathBuf>) -> Self {
        self.devices.assignable_nvme = Some(image.into());
        self
    }

    /// Gives the test host an AHCI controller it can assign, its disk backed
    /// by the raw image `image` on this machine, in an IOMMU group with a
    /// function the test host keeps ([`HostDevices`]; at
    /// [`Batch::devices`]`().ahci_bdf()` there). Test host only, like
    /// [`Batch::with_assignable_nvme`].
    pub fn with_assignable_ahci(mut self, image: impl Into<PathBuf>) -> Self {
        self.devices.assignable_ahci = Some(image.into());
        self
    }

    /// The test host's extra devices.
    pub fn devices(&self) -> &HostDevices {
        &self.devices
    }

    /// Makes [`Batch::run_script`] give up on a script (and its test host) that prints
    /// nothing for `limit`: under TCG the nested test host sometimes stops dead
    /// (`docs/test-host.md`), and a long script would otherwise wait out its whole timeout.
    pub fn silence_limit(mut self, limit: Duration) -> Self {
        self.silence = Some(limit);
        self
    }

    /// The limit of [`Batch::silence_limit`].
    pub(crate) fn silence(&self) -> Option<Duration> {
        self.silence
    }

    /// The disk of [`Batch::with_disk`].
    pub(crate) fn disk(&self) -> Option<&Path> {
        self.disk.as_deref()
    }

    /// The mode this batch runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The scratch directory on this machine.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// Where consoles are streamed while running.
    pub(crate) fn streaming(&self) -> Stream {
        self.stream
    }

    /// Runs `runs` in order with the iovm binary `iovm` and returns one result per run, in
    /// the same order. Errors only if nothing could be run (missing images, invalid runs,
    /// QEMU not startable). A test host that dies or stops making progress half way is
    /// replaced by a new one for the runs that did not finish (announced on standard error),
    /// up to [`crate::testhost::TESTHOST_BOOTS`] boots; runs still unfinished then carry
    /// [`RunResult::harness_error`].
    ///
    /// With `IOVM_TEST_RUNS=a,b` only the runs named `a` and `b` run (a
    /// developer's shortcut; the results of the others are missing).
    pub fn run(&self, iovm: &Path, runs: &[GuestRun]) -> Result<Vec<RunResult>, Error> {
        let only = std::env::var(RUNS_ENV).ok();
        let runs: Vec<GuestRun> = runs
            .iter()
            .filter(|r| {
                only.as_deref()
                    .is_none_or(|o| o.split(',').any(|n| n == r.name))
            })
            .cloned()
            .collect();
        let runs = runs.as_slice();
        let mut names = BTreeSet::new();
        for run in runs {
            run.validate()?;
            if !names.insert(run.name.as_str()) {
                return Err(Error::InvalidRun {
                    name: run.name.clone(),
                    reason: "two runs in the batch have this name".into(),
                });
            }
        }
        if !iovm.is_file() {
            return Err(Error::MissingImage {
                what: "iovm binary",
                path: iovm.to_path_buf(),
                xtask: "demo",
            });
        }
        let guest_dir = images::require_guest()?;
        match self.mode {
            Mode::Direct => runs
                .iter()
                .map(|r| direct::run_one(iovm, r, &guest_dir, &self.scratch, self.stream))
                .collect(),
            Mode::TestHost => {
                let host = images::require_testhost()?;
                eprintln!(
                    "testkit: running {} guest(s) inside the nested test host (QEMU TCG); \
                     console log in {}",
                    runs.len(),
                    self.scratch.join("testhost-console.log").display()
                );
                testhost::run_batch(
                    &host,
                    iovm,
                    runs,
                    &guest_dir,
                    &self.scratch,
                    self.stream,
                    &self.devices,
                )
            }
        }
    }
}

/// Names the only runs a batch runs, comma-separated (unset: all).
pub const RUNS_ENV: &str = "IOVM_TEST_RUNS";

impl Drop for Batch {
    fn drop(&mut self) {
        if std::env::var("IOVM_TEST_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("testkit: keeping {}", self.scratch.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Runs `runs` in a new [`Batch`] in this machine's mode. See [`Batch::run`].
pub fn run_batch(iovm: &Path, runs: &[GuestRun]) -> Result<Vec<RunResult>, Error> {
    Batch::new()?.run(iovm, runs)
}
