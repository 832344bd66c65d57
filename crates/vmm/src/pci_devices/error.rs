//! Why the PCI tree could not be built, and the one-line form of an
//! error's causes that device errors are written in.

use std::fmt::Display;

use pci::root::AttachError;

use crate::topology::TopologyError;

/// Why the PCI tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PciBuildError {
    /// The requested tree breaks a rule.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The root complex refused a placement (a bug: the plan was checked).
    #[error("cannot place a device: {0}")]
    Attach(#[from] AttachError),
    /// A device could not be built.
    #[error("{0}")]
    Device(String),
}

impl PciBuildError {
    /// A device failed: `what` (its kind, perhaps with its file), then `e`
    /// and its causes.
    pub(crate) fn device(what: impl Display, e: &dyn std::error::Error) -> Self {
        Self::Device(format!("{what}: {}", chain(e)))
    }
}

/// An error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn test_device_error_names_the_device_then_every_cause() {
        let e = Outer(std::io::Error::other("inner"));
        let text = PciBuildError::device("nvme-ns /x.img", &e).to_string();
        assert_eq!(text, "nvme-ns /x.img: outer: inner");
    }
}
