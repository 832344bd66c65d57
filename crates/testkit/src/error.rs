//! The harness's errors.

use std::path::PathBuf;

/// Why the harness could not run guests. Failures of iovm or of a guest are not errors:
/// they are in the [`crate::RunResult`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `IOVM_TEST_MODE` has a value other than `direct`, `testhost` or `auto`.
    #[error("IOVM_TEST_MODE={0:?}: expected direct, testhost or auto")]
    BadMode(String),
    /// A prebuilt image or tool is missing.
    #[error("{what} not found at {}: run `cargo xtask {xtask}` first", path.display())]
    MissingImage {
        /// What is missing.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The xtask subcommand that builds it.
        xtask: &'static str,
    },
    /// A test-host knob ([`crate::knobs`]) has a value that cannot be used.
    #[error("{0}")]
    BadKnob(String),
    /// A [`crate::GuestRun`] cannot be run as given.
    #[error("run {name:?}: {reason}")]
    InvalidRun {
        /// The run's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Attaches a description to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
