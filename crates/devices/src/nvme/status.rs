//! Completion status codes (NVMe 1.4 §4.6.1.2, figures 125–130): the
//! Status Field of a completion queue entry, as the guest sees it.

/// A completion status: type, code and the Do Not Retry bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// Status Code Type (0 generic, 1 command specific, 2 media).
    pub sct: u8,
    /// Status Code.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
}

const fn generic(sc: u8) -> Status {
    Status {
        sct: 0,
        sc,
        dnr: sc != 0,
    }
}

const fn specific(sc: u8) -> Status {
    Status {
        sct: 1,
        sc,
        dnr: true,
    }
}

impl Status {
    /// Successful Completion.
    pub const SUCCESS: Self = generic(0x00);
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: Self = generic(0x01);
    /// Invalid Field in Command.
    pub const INVALID_FIELD: Self = generic(0x02);
    /// Data Transfer Error.
    pub const DATA_TRANSFER_ERROR: Self = generic(0x04);
    /// Internal Error.
    pub const INTERNAL_ERROR: Self = generic(0x06);
    /// Command Abort Requested.
    pub const ABORT_REQUESTED: Self = Status {
        sct: 0,
        sc: 0x07,
        dnr: false,
    };
    /// Command Aborted due to SQ Deletion.
    pub const ABORTED_SQ_DELETION: Self = generic(0x08);
    /// Invalid Namespace or Format.
    pub const INVALID_NAMESPACE: Self = generic(0x0b);
    /// Command Sequence Error.
    pub const COMMAND_SEQUENCE_ERROR: Self = generic(0x0c);
    /// PRP Offset Invalid.
    pub const PRP_OFFSET_INVALID: Self = generic(0x13);
    /// Namespace is Write Protected.
    pub const NAMESPACE_WRITE_PROTECTED: Self = generic(0x20);
    /// LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: Self = generic(0x80);
    /// Completion Queue Invalid (Create I/O SQ).
    pub const COMPLETION_QUEUE_INVALID: Self = specific(0x00);
    /// Invalid Queue Identifier.
    pub const INVALID_QUEUE_ID: Self = specific(0x01);
    /// Invalid Queue Size.
    pub const INVALID_QUEUE_SIZE: Self = specific(0x02);
    /// Asynchronous Event Request Limit Exceeded.
    pub const AER_LIMIT_EXCEEDED: Self = specific(0x05);
    /// Invalid Interrupt Vector.
    pub const INVALID_INTERRUPT_VECTOR: Self = specific(0x08);
    /// Invalid Log Page.
    pub const INVALID_LOG_PAGE: Self = specific(0x09);
    /// Invalid Queue Deletion (the CQ still has SQs).
    pub const INVALID_QUEUE_DELETION: Self = specific(0x0c);
    /// Feature Identifier Not Saveable.
    pub const FEATURE_NOT_SAVEABLE: Self = specific(0x0d);
    /// Write Fault (media error).
    pub const WRITE_FAULT: Self = Status {
        sct: 2,
        sc: 0x80,
        dnr: false,
    };
    /// Unrecovered Read Error (media error).
    pub const UNRECOVERED_READ_ERROR: Self = Status {
        sct: 2,
        sc: 0x81,
        dnr: false,
    };

    /// Whether this is Successful Completion.
    pub fn is_success(self) -> bool {
        self.sct == 0 && self.sc == 0
    }

    /// The 15-bit Status Field (CQE DW3 bits 31:17, without the phase tag).
    pub fn field(self) -> u16 {
        u16::from(self.sc) | (u16::from(self.sct & 7) << 8) | (u16::from(self.dnr) << 14)
    }
}
