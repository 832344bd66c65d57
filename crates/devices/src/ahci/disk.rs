//! A SATA disk behind one port (ACS-3): a backend file seen as 512-byte
//! sectors, with the device state ATA commands change (write cache,
//! look-ahead, multiple count, transfer mode, power mode) and its NCQ
//! error state (SATA 3.x §13.6.3.2: after a queued command fails, the
//! device aborts queued commands until log 10h is read).

use std::sync::Arc;

use backend::{BlockFile, Engine, EngineKind};
use vmm_sys_util::eventfd::EventFd;

use super::identify::{self, IdentifyInput};
use super::log::NcqError;
use super::AhciError;

/// How one disk is built.
#[derive(Clone, Debug)]
pub struct SataDiskConfig {
    /// The host file or block device.
    pub disk: Arc<BlockFile>,
    /// Writes refused (also when the file was opened read-only).
    pub readonly: bool,
    /// Serial number (up to 20 ASCII characters).
    pub serial: String,
    /// Model number (up to 40).
    pub model: String,
    /// Offer TRIM (DATA SET MANAGEMENT) and punch holes for it.
    pub discard: bool,
}

/// Firmware revision every disk reports.
pub const FIRMWARE: &str = "1.0";

/// Settings SET FEATURES and friends change; back to these defaults on a
/// device reset (no Software Settings Preservation is offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Volatile write cache enabled.
    pub write_cache: bool,
    /// Read look-ahead enabled.
    pub look_ahead: bool,
    /// SET MULTIPLE MODE count.
    pub multiple: u8,
    /// Selected UDMA mode.
    pub udma: Option<u8>,
    /// In Standby (CHECK POWER MODE reports 00h).
    pub standby: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            write_cache: true,
            look_ahead: true,
            multiple: 0,
            udma: Some(6),
            standby: false,
        }
    }
}

/// One disk.
#[derive(Debug)]
pub struct Disk {
    /// Capacity in sectors.
    pub sectors: u64,
    /// Writes refused.
    pub readonly: bool,
    /// TRIM offered.
    pub trim: bool,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Current settings.
    pub settings: Settings,
    /// The failed queued command, until log 10h is read.
    pub ncq_error: Option<NcqError>,
    /// The backend.
    pub engine: Box<dyn Engine>,
}

impl Disk {
    /// A disk on `cfg`, its completions signalled on `notify`.
    pub fn new(
        cfg: &SataDiskConfig,
        kind: EngineKind,
        notify: &EventFd,
    ) -> Result<Self, AhciError> {
        let sectors = identify::sectors_of(cfg.disk.size());
        if sectors == 0 {
            return Err(AhciError::DiskTooSmall(cfg.disk.size()));
        }
        let engine = backend::new_engine(cfg.disk.clone(), kind, 64, notify)?;
        Ok(Self {
            sectors,
            readonly: cfg.readonly || cfg.disk.readonly(),
            trim: cfg.discard && !cfg.readonly && !cfg.disk.readonly(),
            serial: cfg.serial.clone(),
            model: cfg.model.clone(),
            settings: Settings::default(),
            ncq_error: None,
            engine,
        })
    }

    /// The IDENTIFY DEVICE page.
    pub fn identify(&self) -> [u8; 512] {
        identify::identify(&IdentifyInput {
            serial: &self.serial,
            firmware: FIRMWARE,
            model: &self.model,
            sectors: self.sectors,
            write_cache: self.settings.write_cache,
            look_ahead: self.settings.look_ahead,
            trim: self.trim,
            multiple: self.settings.multiple,
            udma: self.settings.udma,
        })
    }

    /// A device reset (COMRESET, SRST): settings back to defaults, NCQ
    /// error state gone.
    pub fn reset(&mut self) {
        self.settings = Settings::default();
        self.ncq_error = None;
    }

    /// The byte range of `sectors` sectors from `lba`, if inside the disk.
    pub fn byte_range(&self, lba: u64, sectors: u64) -> Option<(u64, u64)> {
        let end = lba.checked_add(sectors)?;
        (end <= self.sectors).then(|| (lba * super::ata::SECTOR, sectors * super::ata::SECTOR))
    }
}
