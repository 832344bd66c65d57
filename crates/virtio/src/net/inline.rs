//! [`InlineNet`]: an activation served on the caller's thread, one queue
//! at a time, by the code the worker runs (without its thread and epoll):
//! the fuzz targets' entry point into receive placement and the control
//! queue, where a run must be deterministic.

use std::sync::Arc;

use counters::FunctionCounters;

use super::worker::{Core, Target};
use super::{CtrlState, NetConfig};
use crate::device::{ActivateError, Activation};

/// A virtio-net activation served on demand by the caller.
#[derive(Debug)]
pub struct InlineNet(Core);

impl InlineNet {
    /// Takes over the queues of `act` as [`crate::VirtioDevice::activate`]
    /// does (rx0 and tx0 required; offloads applied to `cfg`'s backends),
    /// counting in `counters`.
    pub fn new(
        act: Activation,
        cfg: &NetConfig,
        counters: Arc<FunctionCounters>,
    ) -> Result<Self, ActivateError> {
        Core::new(act, cfg, counters).map(Self)
    }

    /// Serves the receive queue of pair `pair` as after a notification:
    /// frames from its backend into the driver's buffers.
    pub fn serve_rx(&mut self, pair: usize) {
        self.0.serve(Target::Rx(pair));
    }

    /// Serves the control queue as after a notification.
    pub fn serve_ctrl(&mut self) {
        self.0.serve(Target::Ctrl);
    }

    /// What the control queue has set.
    pub fn state(&self) -> &CtrlState {
        &self.0.state
    }
}
