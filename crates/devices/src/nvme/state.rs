//! The controller's guest-visible state as plain data (STYLE point 12):
//! registers, queues, features, asynchronous events, error log and SMART
//! counters. Live handles (guest memory, backends, interrupts) live in
//! [`super::controller::Controller`] beside it.

use std::collections::VecDeque;

use super::queue::{CompletionQueue, SubmissionQueue};
use super::regs::Registers;

/// Where the controller is in its life cycle (NVMe 1.4 §7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// CC.EN = 0, CSTS.RDY = 0.
    Disabled,
    /// Processing commands.
    Ready,
    /// CC.EN went to 0; waiting for in-flight I/O before CSTS.RDY = 0.
    Resetting,
    /// CC.SHN written; draining and flushing (CSTS.SHST = 01b).
    ShuttingDown,
    /// Shutdown complete (CSTS.SHST = 10b); nothing runs until a reset.
    ShutDown,
    /// CSTS.CFS = 1: nothing runs until a reset.
    Fatal,
}

/// Feature values (NVMe 1.4 §5.21.1), current settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    /// Arbitration (FID 01h), CDW11 as written.
    pub arbitration: u32,
    /// Power Management (FID 02h): power state and workload hint.
    pub power_management: u32,
    /// Temperature Threshold (FID 04h), composite sensor: over, under (K).
    pub temperature_threshold: (u16, u16),
    /// Volatile Write Cache enabled (FID 06h).
    pub write_cache: bool,
    /// Number of Queues (FID 07h) allocated: (NSQA, NCQA), 0-based; `None`
    /// until the host sets it.
    pub queues: Option<(u16, u16)>,
    /// Interrupt Coalescing (FID 08h): aggregation time and threshold.
    pub interrupt_coalescing: u32,
    /// Interrupt Vector Configuration (FID 09h): Coalescing Disable per
    /// vector.
    pub coalescing_disabled: Vec<bool>,
    /// Asynchronous Event Configuration (FID 0Bh).
    pub async_event_config: u32,
}

impl Features {
    /// Defaults after a controller reset.
    pub fn new(vectors: u16) -> Self {
        Self {
            arbitration: 0,
            power_management: 0,
            temperature_threshold: (OVER_TEMPERATURE_DEFAULT, 0),
            write_cache: true,
            queues: None,
            interrupt_coalescing: 0,
            coalescing_disabled: vec![false; usize::from(vectors)],
            async_event_config: 0,
        }
    }
}

/// Composite temperature the controller reports (50 °C, in kelvins).
pub const COMPOSITE_TEMPERATURE: u16 = 323;
/// Default over-temperature threshold (WCTEMP: 70 °C).
pub const OVER_TEMPERATURE_DEFAULT: u16 = 343;

/// An asynchronous event (NVMe 1.4 figure 145).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsyncEvent {
    /// Asynchronous Event Type (0 error, 1 SMART/health, 2 notice).
    pub kind: u8,
    /// Asynchronous Event Information.
    pub info: u8,
    /// Log page to read to clear it.
    pub log_page: u8,
}

impl AsyncEvent {
    /// Completion DW0.
    pub fn dw0(self) -> u32 {
        u32::from(self.kind & 7) | u32::from(self.info) << 8 | u32::from(self.log_page) << 16
    }
}

/// Asynchronous Event Request bookkeeping (§5.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsyncEvents {
    /// CIDs of outstanding Asynchronous Event Request commands.
    pub outstanding: VecDeque<u16>,
    /// Events waiting for a request.
    pub queued: VecDeque<AsyncEvent>,
    /// Event types reported and not yet cleared by reading their log page.
    pub masked: u8,
}

/// One Error Information log entry (§5.14.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorEntry {
    /// Error Count (unique, increasing).
    pub count: u64,
    /// Submission queue.
    pub sqid: u16,
    /// Command identifier.
    pub cid: u16,
    /// Status field.
    pub status: u16,
    /// Namespace.
    pub nsid: u32,
}

/// Entries the Error Information log keeps (ELPE + 1).
pub const ERROR_LOG_ENTRIES: usize = 16;

/// SMART / Health counters (§5.14.1.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Smart {
    /// 512-byte units read by host commands.
    pub units_read: u64,
    /// 512-byte units written by host commands.
    pub units_written: u64,
    /// Read commands completed.
    pub host_reads: u64,
    /// Write commands completed.
    pub host_writes: u64,
    /// Media and data integrity errors.
    pub media_errors: u64,
    /// Error Information log entries ever made.
    pub error_entries: u64,
}

/// Shadow doorbell and EventIdx buffers (Doorbell Buffer Config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shadow {
    /// Shadow doorbell buffer (one page).
    pub doorbells: u64,
    /// EventIdx buffer (one page).
    pub event_idx: u64,
}

/// Everything the guest can observe of the controller.
#[derive(Clone, Debug)]
pub struct ControllerState {
    /// The register block.
    pub regs: Registers,
    /// Life cycle.
    pub phase: Phase,
    /// Submission queues by QID (0 is the admin queue).
    pub sqs: Vec<Option<SubmissionQueue>>,
    /// Completion queues by QID.
    pub cqs: Vec<Option<CompletionQueue>>,
    /// Features.
    pub features: Features,
    /// Asynchronous events.
    pub events: AsyncEvents,
    /// Error Information log, newest first.
    pub errors: VecDeque<ErrorEntry>,
    /// SMART counters (survive resets).
    pub smart: Smart,
    /// Shadow doorbells, when configured.
    pub shadow: Option<Shadow>,
}
