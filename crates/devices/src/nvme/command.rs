//! Parsing a 64-byte submission queue entry into a typed command
//! (NVMe 1.4 §4.2 common command format, §5 admin commands, §6 NVM
//! commands). Pure: the guest's bytes in, a command or the status to
//! complete it with out.

use super::status::Status;

/// Size of a submission queue entry.
pub const SQE_SIZE: usize = 64;

/// The raw fields of a submission queue entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe {
    /// Command Dword 0: opcode, FUSE, PSDT, command identifier.
    pub cdw0: u32,
    /// Namespace Identifier.
    pub nsid: u32,
    /// PRP Entry 1 (data pointer).
    pub prp1: u64,
    /// PRP Entry 2.
    pub prp2: u64,
    /// Command Dwords 10–15.
    pub cdw: [u32; 6],
}

fn dw(b: &[u8; SQE_SIZE], i: usize) -> u32 {
    u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
}

fn qw(b: &[u8; SQE_SIZE], i: usize) -> u64 {
    u64::from(dw(b, i)) | u64::from(dw(b, i + 1)) << 32
}

impl Sqe {
    /// Decodes the entry's bytes.
    pub fn from_bytes(b: &[u8; SQE_SIZE]) -> Self {
        Self {
            cdw0: dw(b, 0),
            nsid: dw(b, 1),
            prp1: qw(b, 6),
            prp2: qw(b, 8),
            cdw: [
                dw(b, 10),
                dw(b, 11),
                dw(b, 12),
                dw(b, 13),
                dw(b, 14),
                dw(b, 15),
            ],
        }
    }

    /// Encodes the entry (for the fake guest driver).
    pub fn to_bytes(&self) -> [u8; SQE_SIZE] {
        let mut b = [0u8; SQE_SIZE];
        b[0..4].copy_from_slice(&self.cdw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        b[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (i, d) in self.cdw.iter().enumerate() {
            b[40 + i * 4..44 + i * 4].copy_from_slice(&d.to_le_bytes());
        }
        b
    }

    /// Opcode (CDW0 bits 7:0).
    pub fn opcode(&self) -> u8 {
        self.cdw0 as u8
    }

    /// Command Identifier (CDW0 bits 31:16).
    pub fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }

    /// Command Dword `n` (10–15).
    pub fn cdw(&self, n: usize) -> u32 {
        self.cdw.get(n.wrapping_sub(10)).copied().unwrap_or(0)
    }

    /// The checks common to every command: no fused operation (FUSES = 0)
    /// and PRPs, not SGLs (SGLS = 0).
    fn check_common(&self) -> Result<(), Status> {
        let fuse = (self.cdw0 >> 8) & 0b11;
        let psdt = (self.cdw0 >> 14) & 0b11;
        if fuse != 0 || psdt != 0 {
            return Err(Status::INVALID_FIELD);
        }
        Ok(())
    }
}

/// Admin opcodes (NVMe 1.4 figure 139).
pub mod admin_opcode {
    /// Delete I/O Submission Queue.
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Get Log Page.
    pub const GET_LOG_PAGE: u8 = 0x02;
    /// Delete I/O Completion Queue.
    pub const DELETE_IO_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Abort.
    pub const ABORT: u8 = 0x08;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Get Features.
    pub const GET_FEATURES: u8 = 0x0a;
    /// Asynchronous Event Request.
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    /// Doorbell Buffer Config.
    pub const DOORBELL_BUFFER_CONFIG: u8 = 0x7c;
}

/// NVM command set opcodes (NVMe 1.4 figure 346).
pub mod io_opcode {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management.
    pub const DATASET_MANAGEMENT: u8 = 0x09;
}

/// An admin command, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// Delete I/O Submission Queue (§5.6).
    DeleteIoSq {
        /// Queue to delete.
        qid: u16,
    },
    /// Create I/O Submission Queue (§5.4).
    CreateIoSq {
        /// New queue's identifier.
        qid: u16,
        /// Entries (1-based).
        entries: u32,
        /// Physically contiguous.
        contiguous: bool,
        /// Completion queue it posts to.
        cqid: u16,
        /// Base address.
        base: u64,
    },
    /// Get Log Page (§5.14).
    GetLogPage {
        /// Log Page Identifier.
        lid: u8,
        /// Retain Asynchronous Event.
        rae: bool,
        /// Bytes requested.
        len: u64,
        /// Byte offset into the log.
        offset: u64,
        /// Namespace.
        nsid: u32,
        /// Data pointer.
        prp: (u64, u64),
    },
    /// Delete I/O Completion Queue (§5.5).
    DeleteIoCq {
        /// Queue to delete.
        qid: u16,
    },
    /// Create I/O Completion Queue (§5.3).
    CreateIoCq {
        /// New queue's identifier.
        qid: u16,
        /// Entries (1-based).
        entries: u32,
        /// Physically contiguous.
        contiguous: bool,
        /// Interrupts enabled.
        ien: bool,
        /// Interrupt vector.
        iv: u16,
        /// Base address.
        base: u64,
    },
    /// Identify (§5.15).
    Identify {
        /// Controller or Namespace Structure.
        cns: u8,
        /// Command Set Identifier (CDW11 bits 31:24).
        csi: u8,
        /// Namespace.
        nsid: u32,
        /// Data pointer.
        prp: (u64, u64),
    },
    /// Abort (§5.1).
    Abort {
        /// Submission queue of the command.
        sqid: u16,
        /// Its identifier.
        cid: u16,
    },
    /// Set Features (§5.21).
    SetFeatures {
        /// Feature Identifier.
        fid: u8,
        /// Save (SV).
        save: bool,
        /// Namespace.
        nsid: u32,
        /// CDW11, the value.
        value: u32,
    },
    /// Get Features (§5.9).
    GetFeatures {
        /// Feature Identifier.
        fid: u8,
        /// Select: 0 current, 1 default, 2 saved, 3 supported capabilities.
        sel: u8,
        /// Namespace.
        nsid: u32,
        /// CDW11 (e.g. the vector for Interrupt Vector Configuration).
        arg: u32,
    },
    /// Asynchronous Event Request (§5.2).
    AsyncEventRequest,
    /// Doorbell Buffer Config (NVMe 1.3 §5.7).
    DoorbellBufferConfig {
        /// Shadow doorbell buffer.
        shadow: u64,
        /// EventIdx buffer.
        eventidx: u64,
    },
}

/// Decodes an admin command.
pub fn parse_admin(sqe: &Sqe) -> Result<AdminCommand, Status> {
    use admin_opcode::*;
    sqe.check_common()?;
    let c10 = sqe.cdw(10);
    let c11 = sqe.cdw(11);
    let qid = c10 as u16;
    let entries = (c10 >> 16) + 1;
    Ok(match sqe.opcode() {
        DELETE_IO_SQ => AdminCommand::DeleteIoSq { qid },
        CREATE_IO_SQ => AdminCommand::CreateIoSq {
            qid,
            entries,
            contiguous: c11 & 1 != 0,
            cqid: (c11 >> 16) as u16,
            base: sqe.prp1,
        },
        GET_LOG_PAGE => {
            let numd = (c10 >> 16) | ((sqe.cdw(11) & 0xffff) << 16);
            AdminCommand::GetLogPage {
                lid: c10 as u8,
                rae: c10 & (1 << 15) != 0,
                len: (u64::from(numd) + 1) * 4,
                offset: u64::from(sqe.cdw(12)) | u64::from(sqe.cdw(13)) << 32,
                nsid: sqe.nsid,
                prp: (sqe.prp1, sqe.prp2),
            }
        }
        DELETE_IO_CQ => AdminCommand::DeleteIoCq { qid },
        CREATE_IO_CQ => AdminCommand::CreateIoCq {
            qid,
            entries,
            contiguous: c11 & 1 != 0,
            ien: c11 & 2 != 0,
            iv: (c11 >> 16) as u16,
            base: sqe.prp1,
        },
        IDENTIFY => AdminCommand::Identify {
            cns: c10 as u8,
            csi: (c11 >> 24) as u8,
            nsid: sqe.nsid,
            prp: (sqe.prp1, sqe.prp2),
        },
        ABORT => AdminCommand::Abort {
            sqid: c10 as u16,
            cid: (c10 >> 16) as u16,
        },
        SET_FEATURES => AdminCommand::SetFeatures {
            fid: c10 as u8,
            save: c10 & (1 << 31) != 0,
            nsid: sqe.nsid,
            value: c11,
        },
        GET_FEATURES => AdminCommand::GetFeatures {
            fid: c10 as u8,
            sel: ((c10 >> 8) & 0b111) as u8,
            nsid: sqe.nsid,
            arg: c11,
        },
        ASYNC_EVENT_REQUEST => AdminCommand::AsyncEventRequest,
        DOORBELL_BUFFER_CONFIG => AdminCommand::DoorbellBufferConfig {
            shadow: sqe.prp1,
            eventidx: sqe.prp2,
        },
        _ => return Err(Status::INVALID_OPCODE),
    })
}

/// An NVM command, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoCommand {
    /// Flush (§6.8); `nsid` may be 0xFFFF_FFFF (every namespace).
    Flush {
        /// Namespace.
        nsid: u32,
    },
    /// Read (§6.9) or Write (§6.15).
    ReadWrite {
        /// Write rather than read.
        write: bool,
        /// Namespace.
        nsid: u32,
        /// Starting LBA.
        slba: u64,
        /// Number of blocks (1-based).
        blocks: u32,
        /// Force Unit Access.
        fua: bool,
        /// Data pointer.
        prp: (u64, u64),
    },
    /// Write Zeroes (§6.16).
    WriteZeroes {
        /// Namespace.
        nsid: u32,
        /// Starting LBA.
        slba: u64,
        /// Number of blocks (1-based).
        blocks: u32,
        /// Force Unit Access (CDW12 bit 30).
        fua: bool,
    },
    /// Dataset Management (§6.7).
    DatasetManagement {
        /// Namespace.
        nsid: u32,
        /// Number of ranges (1-based, up to 256).
        ranges: u32,
        /// Attribute – Deallocate.
        deallocate: bool,
        /// Data pointer (the range list).
        prp: (u64, u64),
    },
}

/// Decodes an NVM command.
pub fn parse_io(sqe: &Sqe) -> Result<IoCommand, Status> {
    use io_opcode::*;
    sqe.check_common()?;
    let slba = u64::from(sqe.cdw(10)) | u64::from(sqe.cdw(11)) << 32;
    let c12 = sqe.cdw(12);
    let blocks = (c12 & 0xffff) + 1;
    Ok(match sqe.opcode() {
        FLUSH => IoCommand::Flush { nsid: sqe.nsid },
        op @ (READ | WRITE) => {
            // PRINFO (bits 29:26): no protection information is formatted,
            // so PRACT and the PRCHK bits must be clear.
            if (c12 >> 26) & 0xf != 0 {
                return Err(Status::INVALID_FIELD);
            }
            IoCommand::ReadWrite {
                write: op == WRITE,
                nsid: sqe.nsid,
                slba,
                blocks,
                fua: c12 & (1 << 30) != 0,
                prp: (sqe.prp1, sqe.prp2),
            }
        }
        WRITE_ZEROES => IoCommand::WriteZeroes {
            nsid: sqe.nsid,
            slba,
            blocks,
            fua: c12 & (1 << 30) != 0,
        },
        DATASET_MANAGEMENT => IoCommand::DatasetManagement {
            nsid: sqe.nsid,
            ranges: (sqe.cdw(10) & 0xff) + 1,
            deallocate: sqe.cdw(11) & (1 << 2) != 0,
            prp: (sqe.prp1, sqe.prp2),
        },
        _ => return Err(Status::INVALID_OPCODE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqe(opcode: u8, cid: u16, nsid: u32, cdw: [u32; 6]) -> Sqe {
        Sqe {
            cdw0: u32::from(opcode) | u32::from(cid) << 16,
            nsid,
            prp1: 0x1000,
            prp2: 0x2000,
            cdw,
        }
    }

    #[test]
    fn test_sqe_bytes_round_trip() {
        let s = sqe(2, 0xbeef, 1, [1, 2, 3, 4, 5, 6]);
        let back = Sqe::from_bytes(&s.to_bytes());
        assert_eq!(back, s);
        assert_eq!(back.cid(), 0xbeef);
        assert_eq!(back.cdw(15), 6);
        assert_eq!(back.cdw(99), 0);
    }

    #[test]
    fn test_parse_read_decodes_lba_count_and_fua() {
        let s = sqe(io_opcode::READ, 1, 1, [0x10, 0x1, 7 | 1 << 30, 0, 0, 0]);
        assert_eq!(
            parse_io(&s),
            Ok(IoCommand::ReadWrite {
                write: false,
                nsid: 1,
                slba: 0x1_0000_0010,
                blocks: 8,
                fua: true,
                prp: (0x1000, 0x2000)
            })
        );
    }

    #[test]
    fn test_parse_write_zeroes_decodes_fua() {
        let s = sqe(
            io_opcode::WRITE_ZEROES,
            1,
            1,
            [0x20, 0, 3 | 1 << 30, 0, 0, 0],
        );
        assert_eq!(
            parse_io(&s),
            Ok(IoCommand::WriteZeroes {
                nsid: 1,
                slba: 0x20,
                blocks: 4,
                fua: true,
            })
        );
    }

    #[test]
    fn test_parse_fused_or_sgl_command_is_invalid_field() {
        let mut s = sqe(io_opcode::READ, 1, 1, [0; 6]);
        s.cdw0 |= 1 << 8;
        assert_eq!(parse_io(&s), Err(Status::INVALID_FIELD));
        let mut s = sqe(admin_opcode::IDENTIFY, 1, 0, [1, 0, 0, 0, 0, 0]);
        s.cdw0 |= 1 << 14;
        assert_eq!(parse_admin(&s), Err(Status::INVALID_FIELD));
    }

    #[test]
    fn test_parse_protection_info_is_invalid_field() {
        let s = sqe(io_opcode::WRITE, 1, 1, [0, 0, 1 << 29, 0, 0, 0]);
        assert_eq!(parse_io(&s), Err(Status::INVALID_FIELD));
    }

    #[test]
    fn test_parse_unknown_opcodes_are_invalid_opcode() {
        assert_eq!(
            parse_io(&sqe(0x05, 1, 1, [0; 6])),
            Err(Status::INVALID_OPCODE),
            "Compare is not supported"
        );
        assert_eq!(
            parse_admin(&sqe(0x80, 1, 0, [0; 6])),
            Err(Status::INVALID_OPCODE),
            "Format NVM is not supported"
        );
    }

    #[test]
    fn test_parse_create_cq_fields() {
        let s = sqe(
            admin_opcode::CREATE_IO_CQ,
            3,
            0,
            [5 | 63 << 16, 1 | 2 | 4 << 16, 0, 0, 0, 0],
        );
        assert_eq!(
            parse_admin(&s),
            Ok(AdminCommand::CreateIoCq {
                qid: 5,
                entries: 64,
                contiguous: true,
                ien: true,
                iv: 4,
                base: 0x1000
            })
        );
    }

    #[test]
    fn test_parse_get_log_page_joins_numdl_numdu_and_offset() {
        let s = sqe(
            admin_opcode::GET_LOG_PAGE,
            1,
            0xffff_ffff,
            [0x02 | 1 << 15 | 127 << 16, 1, 8, 1, 0, 0],
        );
        assert_eq!(
            parse_admin(&s),
            Ok(AdminCommand::GetLogPage {
                lid: 2,
                rae: true,
                len: ((1u64 << 16) + 128) * 4,
                offset: (1 << 32) + 8,
                nsid: 0xffff_ffff,
                prp: (0x1000, 0x2000)
            })
        );
    }
}
