//! The ATA commands a SATA disk answers (ACS-3 §7), decoded from a
//! taskfile as a pure function: opcode, LBA, count, queue tag, direction.
//! Anything not listed decodes to [`AtaCommand::Unsupported`], which the
//! device aborts with ERR and ABRT.

use super::fis::{Outputs, Taskfile};
use super::regs::status;

/// Opcodes (ACS-3 Table 206).
pub mod op {
    /// DATA SET MANAGEMENT (TRIM).
    pub const DSM: u8 = 0x06;
    /// READ DMA EXT.
    pub const READ_DMA_EXT: u8 = 0x25;
    /// READ LOG EXT.
    pub const READ_LOG_EXT: u8 = 0x2f;
    /// WRITE DMA EXT.
    pub const WRITE_DMA_EXT: u8 = 0x35;
    /// READ FPDMA QUEUED.
    pub const READ_FPDMA: u8 = 0x60;
    /// WRITE FPDMA QUEUED.
    pub const WRITE_FPDMA: u8 = 0x61;
    /// SET MULTIPLE MODE.
    pub const SET_MULTIPLE: u8 = 0xc6;
    /// READ DMA (28-bit).
    pub const READ_DMA: u8 = 0xc8;
    /// WRITE DMA (28-bit).
    pub const WRITE_DMA: u8 = 0xca;
    /// STANDBY IMMEDIATE.
    pub const STANDBY_IMMEDIATE: u8 = 0xe0;
    /// IDLE IMMEDIATE.
    pub const IDLE_IMMEDIATE: u8 = 0xe1;
    /// STANDBY.
    pub const STANDBY: u8 = 0xe2;
    /// IDLE.
    pub const IDLE: u8 = 0xe3;
    /// CHECK POWER MODE.
    pub const CHECK_POWER_MODE: u8 = 0xe5;
    /// FLUSH CACHE.
    pub const FLUSH: u8 = 0xe7;
    /// FLUSH CACHE EXT.
    pub const FLUSH_EXT: u8 = 0xea;
    /// IDENTIFY DEVICE.
    pub const IDENTIFY: u8 = 0xec;
    /// SET FEATURES.
    pub const SET_FEATURES: u8 = 0xef;
}

/// Error register bits (ACS-3 §6.3).
pub mod error {
    /// Aborted Command.
    pub const ABRT: u8 = 1 << 2;
    /// ID Not Found (LBA out of range).
    pub const IDNF: u8 = 1 << 4;
    /// Uncorrectable Error.
    pub const UNC: u8 = 1 << 6;
}

/// Sector size (logical block) of every SATA disk here.
pub const SECTOR: u64 = 512;

/// A decoded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtaCommand {
    /// IDENTIFY DEVICE: 512 bytes of PIO data in.
    Identify,
    /// A DMA read or write of `sectors` sectors at `lba`; `tag` for the
    /// FPDMA (NCQ) forms.
    ReadWrite {
        /// Host to device.
        write: bool,
        /// First sector.
        lba: u64,
        /// Sectors, 1–65536.
        sectors: u32,
        /// Queue tag of READ/WRITE FPDMA QUEUED.
        tag: Option<u8>,
        /// Forced Unit Access (FPDMA only).
        fua: bool,
    },
    /// FLUSH CACHE or FLUSH CACHE EXT.
    Flush,
    /// DATA SET MANAGEMENT with `blocks` 512-byte blocks of ranges; `trim`
    /// when the TRIM bit is set.
    Dsm {
        /// Blocks of LBA range entries, 1–65536.
        blocks: u32,
        /// The TRIM bit (feature bit 0).
        trim: bool,
    },
    /// SET FEATURES: subcommand and count.
    SetFeatures {
        /// Feature (subcommand).
        sub: u8,
        /// Count (subcommand specific).
        count: u8,
    },
    /// SET MULTIPLE MODE with `count` sectors per DRQ block.
    SetMultiple(u8),
    /// READ LOG EXT of `pages` pages from `page` of log `log`.
    ReadLogExt {
        /// Log address.
        log: u8,
        /// First page.
        page: u16,
        /// Pages, 1–65536.
        pages: u32,
    },
    /// STANDBY or STANDBY IMMEDIATE.
    Standby,
    /// IDLE or IDLE IMMEDIATE.
    Idle,
    /// CHECK POWER MODE.
    CheckPowerMode,
    /// Anything else.
    Unsupported(u8),
}

/// A 16-bit count where 0 means 65536 (ACS-3 §7.1).
fn count16(v: u16) -> u32 {
    if v == 0 {
        65536
    } else {
        u32::from(v)
    }
}

/// An 8-bit count where 0 means 256.
fn count8(v: u16) -> u32 {
    match v & 0xff {
        0 => 256,
        n => u32::from(n),
    }
}

impl AtaCommand {
    /// Decodes a command taskfile.
    pub fn decode(tf: &Taskfile) -> Self {
        let rw = |write, lba, sectors| Self::ReadWrite {
            write,
            lba,
            sectors,
            tag: None,
            fua: false,
        };
        match tf.command {
            op::IDENTIFY => Self::Identify,
            op::READ_DMA_EXT => rw(false, tf.lba, count16(tf.count)),
            op::WRITE_DMA_EXT => rw(true, tf.lba, count16(tf.count)),
            op::READ_DMA => rw(false, tf.lba28(), count8(tf.count)),
            op::WRITE_DMA => rw(true, tf.lba28(), count8(tf.count)),
            op::READ_FPDMA | op::WRITE_FPDMA => Self::ReadWrite {
                write: tf.command == op::WRITE_FPDMA,
                lba: tf.lba,
                sectors: count16(tf.features),
                tag: Some(((tf.count >> 3) & 0x1f) as u8),
                fua: tf.device & 0x80 != 0,
            },
            op::FLUSH | op::FLUSH_EXT => Self::Flush,
            op::DSM => Self::Dsm {
                blocks: count16(tf.count),
                trim: tf.features & 1 != 0,
            },
            op::SET_FEATURES => Self::SetFeatures {
                sub: tf.features as u8,
                count: tf.count as u8,
            },
            op::SET_MULTIPLE => Self::SetMultiple(tf.count as u8),
            op::READ_LOG_EXT => Self::ReadLogExt {
                log: tf.lba as u8,
                page: (tf.lba >> 8) as u16,
                pages: count16(tf.count),
            },
            op::STANDBY | op::STANDBY_IMMEDIATE => Self::Standby,
            op::IDLE | op::IDLE_IMMEDIATE => Self::Idle,
            op::CHECK_POWER_MODE => Self::CheckPowerMode,
            other => Self::Unsupported(other),
        }
    }

    /// Whether this is a queued (NCQ) command.
    pub fn queued(&self) -> bool {
        matches!(self, Self::ReadWrite { tag: Some(_), .. })
    }
}

/// Normal outputs: DRDY (and DSC), no error.
pub fn ok() -> Outputs {
    Outputs {
        status: status::DRDY | status::DSC,
        ..Default::default()
    }
}

/// Error outputs with `error` bits (ERR, DRDY and DSC in status).
pub fn fail(error: u8) -> Outputs {
    Outputs {
        status: status::DRDY | status::DSC | status::ERR,
        error,
        ..Default::default()
    }
}

/// The device's answer to an unsupported or invalid command.
pub fn abort() -> Outputs {
    fail(error::ABRT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tf(command: u8, features: u16, count: u16, lba: u64) -> Taskfile {
        Taskfile {
            is_command: true,
            command,
            features,
            count,
            lba,
            device: 0x40,
            ..Default::default()
        }
    }

    #[test]
    fn test_ata_fpdma_takes_tag_from_count_and_length_from_features() {
        let c = AtaCommand::decode(&tf(op::READ_FPDMA, 8, 7 << 3, 100));
        assert_eq!(
            c,
            AtaCommand::ReadWrite {
                write: false,
                lba: 100,
                sectors: 8,
                tag: Some(7),
                fua: false
            }
        );
        assert!(c.queued());
    }

    #[test]
    fn test_ata_zero_counts_mean_the_maximum() {
        let ext = AtaCommand::decode(&tf(op::WRITE_DMA_EXT, 0, 0, 0));
        assert!(matches!(ext, AtaCommand::ReadWrite { sectors: 65536, .. }));
        let short = AtaCommand::decode(&tf(op::READ_DMA, 0, 0, 0));
        assert!(matches!(short, AtaCommand::ReadWrite { sectors: 256, .. }));
    }

    #[test]
    fn test_ata_read_log_ext_address_and_page() {
        let c = AtaCommand::decode(&tf(op::READ_LOG_EXT, 0, 1, 0x0210));
        assert_eq!(
            c,
            AtaCommand::ReadLogExt {
                log: 0x10,
                page: 2,
                pages: 1
            }
        );
    }

    #[test]
    fn test_ata_unknown_opcodes_are_unsupported() {
        assert_eq!(
            AtaCommand::decode(&tf(0x00, 0, 0, 0)),
            AtaCommand::Unsupported(0)
        );
        assert_eq!(
            AtaCommand::decode(&tf(0xa0, 0, 0, 0)),
            AtaCommand::Unsupported(0xa0)
        );
    }
}
