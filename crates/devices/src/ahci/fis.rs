//! Frame Information Structures (SATA 3.x §10.5) as the HBA sees them: the
//! Register Host-to-Device FIS software puts in a command table, and the
//! FISes the device sends back, which the HBA copies into the port's
//! received-FIS area (AHCI 1.3.1 §4.2.1).

/// FIS type: Register, Host to Device.
pub const TYPE_H2D: u8 = 0x27;
/// FIS type: Register, Device to Host.
pub const TYPE_D2H: u8 = 0x34;
/// FIS type: PIO Setup (device to host).
pub const TYPE_PIO_SETUP: u8 = 0x5f;
/// FIS type: Set Device Bits (device to host).
pub const TYPE_SDB: u8 = 0xa1;

/// Offsets of the received-FIS area (256 bytes at PxFB, §4.2.1).
pub mod rfis {
    /// PIO Setup FIS.
    pub const PSFIS: u64 = 0x20;
    /// D2H Register FIS.
    pub const RFIS: u64 = 0x40;
    /// Set Device Bits FIS.
    pub const SDBFIS: u64 = 0x58;
}

/// The shadow registers of an ATA command (ACS-3 §7, "Inputs"), from a
/// Register H2D FIS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taskfile {
    /// The C bit: a command (1) or a device control update (0, e.g. SRST).
    pub is_command: bool,
    /// Port multiplier port.
    pub pmp: u8,
    /// Command opcode.
    pub command: u8,
    /// Feature, 16 bits (7:0 and the EXT byte).
    pub features: u16,
    /// LBA, 48 bits.
    pub lba: u64,
    /// Device register.
    pub device: u8,
    /// Count, 16 bits.
    pub count: u16,
    /// Device Control register (bit 2: SRST).
    pub control: u8,
}

/// Device Control: Software Reset.
pub const CONTROL_SRST: u8 = 1 << 2;

impl Taskfile {
    /// Parses a Register H2D FIS; `None` if `fis` is shorter than 20 bytes
    /// or is another type.
    pub fn from_h2d(fis: &[u8]) -> Option<Self> {
        let f = fis.get(..20)?;
        if f[0] != TYPE_H2D {
            return None;
        }
        let lba = u64::from(f[4])
            | u64::from(f[5]) << 8
            | u64::from(f[6]) << 16
            | u64::from(f[8]) << 24
            | u64::from(f[9]) << 32
            | u64::from(f[10]) << 40;
        Some(Self {
            is_command: f[1] & 0x80 != 0,
            pmp: f[1] & 0x0f,
            command: f[2],
            features: u16::from(f[3]) | u16::from(f[11]) << 8,
            lba,
            device: f[7],
            count: u16::from(f[12]) | u16::from(f[13]) << 8,
            control: f[15],
        })
    }

    /// The 28-bit LBA of a non-EXT command (device bits 3:0 on top).
    pub fn lba28(&self) -> u64 {
        (self.lba & 0x00ff_ffff) | u64::from(self.device & 0x0f) << 24
    }

    /// Encodes a Register H2D FIS (the fake driver's and the fuzzer's side).
    pub fn to_h2d(&self) -> [u8; 20] {
        let mut f = [0u8; 20];
        f[0] = TYPE_H2D;
        f[1] = self.pmp & 0x0f | if self.is_command { 0x80 } else { 0 };
        f[2] = self.command;
        f[3] = self.features as u8;
        f[4] = self.lba as u8;
        f[5] = (self.lba >> 8) as u8;
        f[6] = (self.lba >> 16) as u8;
        f[7] = self.device;
        f[8] = (self.lba >> 24) as u8;
        f[9] = (self.lba >> 32) as u8;
        f[10] = (self.lba >> 40) as u8;
        f[11] = (self.features >> 8) as u8;
        f[12] = self.count as u8;
        f[13] = (self.count >> 8) as u8;
        f[15] = self.control;
        f
    }
}

/// The outputs of a completed command (ACS-3 "Normal/Error Outputs").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Status register.
    pub status: u8,
    /// Error register.
    pub error: u8,
    /// Count (e.g. CHECK POWER MODE's power state).
    pub count: u16,
    /// LBA.
    pub lba: u64,
    /// Device register.
    pub device: u8,
}

/// A Register D2H FIS with `o`; `interrupt` sets the I bit.
pub fn d2h(o: &Outputs, interrupt: bool) -> [u8; 20] {
    let mut f = [0u8; 20];
    f[0] = TYPE_D2H;
    f[1] = if interrupt { 0x40 } else { 0 };
    f[2] = o.status;
    f[3] = o.error;
    f[4] = o.lba as u8;
    f[5] = (o.lba >> 8) as u8;
    f[6] = (o.lba >> 16) as u8;
    f[7] = o.device;
    f[8] = (o.lba >> 24) as u8;
    f[9] = (o.lba >> 32) as u8;
    f[10] = (o.lba >> 40) as u8;
    f[12] = o.count as u8;
    f[13] = (o.count >> 8) as u8;
    f
}

/// A PIO Setup FIS for a device-to-host transfer of `bytes` (the last
/// DRQ block), ending with status `e_status` (byte 15, which Linux reads
/// as the command's final status).
pub fn pio_setup_in(bytes: u16, e_status: u8) -> [u8; 20] {
    let mut f = [0u8; 20];
    f[0] = TYPE_PIO_SETUP;
    f[1] = 0x40 | 0x20; // I, D (device to host)
    f[2] = super::regs::status::DRDY | super::regs::status::DSC | super::regs::status::DRQ;
    f[15] = e_status;
    f[16] = bytes as u8;
    f[17] = (bytes >> 8) as u8;
    f
}

/// A Set Device Bits FIS (I bit set) completing the queued commands whose
/// tags are set in `sactive`, with `status` (its bits 6:4 and 2:0 carried)
/// and `error`.
pub fn sdb(sactive: u32, status: u8, error: u8) -> [u8; 8] {
    let mut f = [0u8; 8];
    f[0] = TYPE_SDB;
    f[1] = 0x40;
    f[2] = status & 0x77;
    f[3] = error;
    f[4..].copy_from_slice(&sactive.to_le_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fis_h2d_round_trips_every_field() {
        let tf = Taskfile {
            is_command: true,
            pmp: 3,
            command: 0x60,
            features: 0x1234,
            lba: 0xba98_7654_3210,
            device: 0x40,
            count: 0xf8,
            control: 0x08,
        };
        assert_eq!(Taskfile::from_h2d(&tf.to_h2d()), Some(tf));
    }

    #[test]
    fn test_fis_h2d_refuses_other_types_and_short_input() {
        let mut f = Taskfile::default().to_h2d();
        assert!(Taskfile::from_h2d(&f[..19]).is_none());
        f[0] = TYPE_D2H;
        assert!(Taskfile::from_h2d(&f).is_none());
    }

    #[test]
    fn test_fis_lba28_takes_device_bits() {
        let tf = Taskfile {
            lba: 0xff12_3456,
            device: 0xe7,
            ..Default::default()
        };
        assert_eq!(tf.lba28(), 0x0712_3456);
    }

    #[test]
    fn test_fis_sdb_carries_tags_and_status() {
        let f = sdb(0x8000_0001, 0x41, 0x04);
        assert_eq!(f[0], TYPE_SDB);
        assert_eq!(f[1] & 0x40, 0x40);
        assert_eq!((f[2], f[3]), (0x41, 0x04));
        assert_eq!(u32::from_le_bytes([f[4], f[5], f[6], f[7]]), 0x8000_0001);
    }
}
