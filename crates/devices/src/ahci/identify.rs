//! IDENTIFY DEVICE data (ACS-3 §7.12.7): the 256 words a SATA disk
//! returns, with the ones Linux's libata reads filled in: LBA and LBA48
//! capacity, UDMA modes, NCQ with queue depth 32, FLUSH CACHE [EXT],
//! General Purpose Logging, write cache and look-ahead, DSM TRIM with
//! deterministic zeroes after trim, non-rotating media.

use super::ata::SECTOR;

/// What IDENTIFY reports about one disk.
#[derive(Clone, Debug)]
pub struct IdentifyInput<'a> {
    /// Serial number (20 ASCII characters, padded).
    pub serial: &'a str,
    /// Firmware revision (8).
    pub firmware: &'a str,
    /// Model number (40).
    pub model: &'a str,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Volatile write cache enabled.
    pub write_cache: bool,
    /// Read look-ahead enabled.
    pub look_ahead: bool,
    /// TRIM offered.
    pub trim: bool,
    /// Sectors per DRQ block set by SET MULTIPLE MODE (0: off).
    pub multiple: u8,
    /// Selected UDMA mode (0–6), if any.
    pub udma: Option<u8>,
}

/// The 512-byte-block count word 105 allows in one DSM command.
pub const DSM_MAX_BLOCKS: u16 = 8;
/// Sectors per DRQ block at most (word 47).
pub const MAX_MULTIPLE: u8 = 16;

/// Writes `s` into `words` as ATA strings are stored: two characters per
/// word, the first in the high byte, padded with spaces.
fn put_string(words: &mut [u16], s: &str) {
    let mut bytes = s.bytes().filter(|b| b.is_ascii_graphic() || *b == b' ');
    for w in words.iter_mut() {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *w = u16::from(hi) << 8 | u16::from(lo);
    }
}

/// The IDENTIFY DEVICE page, as 512 bytes in little-endian word order,
/// with the integrity word (255) set.
pub fn identify(d: &IdentifyInput<'_>) -> [u8; 512] {
    let mut w = [0u16; 256];
    let lba28 = d.sectors.min(0x0fff_ffff);
    w[0] = 0x0040; // ATA device, fixed
    w[1] = 16383; // obsolete CHS geometry
    w[3] = 16;
    w[6] = 63;
    put_string(&mut w[10..20], d.serial);
    put_string(&mut w[23..27], d.firmware);
    put_string(&mut w[27..47], d.model);
    w[47] = 0x8000 | u16::from(MAX_MULTIPLE);
    w[49] = 1 << 11 | 1 << 10 | 1 << 9 | 1 << 8; // IORDY, IORDY disable, LBA, DMA
    w[50] = 0x4000;
    w[53] = 1 << 2 | 1 << 1; // words 88 and 64–70 valid
    w[54] = 16383;
    w[55] = 16;
    w[56] = 63;
    let chs = (16383u32 * 16 * 63).min(lba28 as u32);
    w[57] = chs as u16;
    w[58] = (chs >> 16) as u16;
    w[59] = if d.multiple != 0 {
        0x0100 | u16::from(d.multiple)
    } else {
        0
    };
    w[60] = lba28 as u16;
    w[61] = (lba28 >> 16) as u16;
    w[63] = 0x0007; // multiword DMA 0–2 supported
    w[64] = 0x0003; // PIO 3–4
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    if d.trim {
        w[69] = 1 << 14 | 1 << 5; // deterministic read after trim, zeroes
    }
    w[75] = 31; // queue depth 32
    w[76] = 1 << 8 | 1 << 3 | 1 << 2 | 1 << 1; // NCQ; Gen1–3
    w[77] = 3 << 1; // current speed Gen3
    w[80] = 0x01f0; // ATA-4 .. ACS-2
    w[81] = 0x0110;
    let wc = 1 << 5;
    let la = 1 << 6;
    w[82] = wc | la;
    w[83] = 1 << 14 | 1 << 13 | 1 << 12 | 1 << 10; // FLUSH EXT, FLUSH, LBA48
    w[84] = 1 << 14 | 1 << 5; // GPL
    w[85] = if d.write_cache { wc } else { 0 } | if d.look_ahead { la } else { 0 };
    w[86] = 1 << 13 | 1 << 12 | 1 << 10;
    w[87] = 1 << 14 | 1 << 5;
    w[88] = 0x007f | d.udma.map_or(0, |m| 1 << (8 + u16::from(m.min(6))));
    for (i, word) in w[100..104].iter_mut().enumerate() {
        *word = (d.sectors >> (16 * i)) as u16;
    }
    if d.trim {
        w[105] = DSM_MAX_BLOCKS;
    }
    w[106] = 0x4000; // one logical sector per physical sector, 512 bytes
    if d.trim {
        w[169] = 1; // TRIM
    }
    w[217] = 1; // non-rotating media
    w[222] = 0x1000 | 0x003f; // Serial ATA, revisions up to 3.0
    let mut b = [0u8; 512];
    for (chunk, word) in b.chunks_exact_mut(2).zip(w) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    b[510] = 0xa5;
    let sum = b[..511].iter().fold(0u8, |a, &x| a.wrapping_add(x));
    b[511] = 0u8.wrapping_sub(sum);
    b
}

/// Capacity of a disk of `bytes` bytes, in whole sectors.
pub fn sectors_of(bytes: u64) -> u64 {
    bytes / SECTOR
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(sectors: u64) -> IdentifyInput<'static> {
        IdentifyInput {
            serial: "SER123",
            firmware: "1.0",
            model: "iovm SATA disk",
            sectors,
            write_cache: true,
            look_ahead: true,
            trim: true,
            multiple: 0,
            udma: Some(6),
        }
    }

    fn word(b: &[u8; 512], i: usize) -> u16 {
        u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
    }

    #[test]
    fn test_identify_words_libata_reads() {
        let b = identify(&input(1 << 30));
        assert_eq!(word(&b, 0) & 0x8000, 0, "ATA device");
        assert_ne!(word(&b, 49) & (1 << 9), 0, "LBA");
        assert_eq!(word(&b, 75), 31);
        assert_ne!(word(&b, 76) & (1 << 8), 0, "NCQ");
        assert_ne!(word(&b, 83) & (1 << 10), 0, "LBA48");
        assert_ne!(word(&b, 83) & (1 << 13), 0, "FLUSH EXT");
        assert_ne!(word(&b, 84) & (1 << 5), 0, "GPL");
        assert_eq!(word(&b, 169) & 1, 1, "TRIM");
        assert_eq!(word(&b, 217), 1, "SSD");
        assert_eq!(word(&b, 60), 0xffff);
        assert_eq!(word(&b, 61), 0x0fff);
        assert_eq!(word(&b, 100), 0);
        assert_eq!(word(&b, 101), 1 << 14);
    }

    #[test]
    fn test_identify_strings_are_byte_swapped_and_padded() {
        let b = identify(&input(1000));
        assert_eq!(&b[54..58], b"oimv");
        assert_eq!(&b[92..94], b"  ");
    }

    #[test]
    fn test_identify_checksum_sums_to_zero() {
        let b = identify(&input(1000));
        assert_eq!(b[510], 0xa5);
        assert_eq!(b.iter().fold(0u8, |a, &x| a.wrapping_add(x)), 0);
    }

    #[test]
    fn test_identify_without_trim_hides_it() {
        let mut i = input(1000);
        i.trim = false;
        let b = identify(&i);
        assert_eq!(word(&b, 169), 0);
        assert_eq!(word(&b, 105), 0);
    }
}
