//! The NVM (EEPROM) image and its EERD read port (82574 datasheet §6,
//! §10.2.2.3): the MAC address in words 0–2, and word 0x3F chosen so that
//! words 0x00–0x3F sum to 0xBABA, which the driver checks at probe and
//! `ethtool -t` checks again.

use super::regs::eerd;

/// Words in the image (EECD advertises 256).
pub const WORDS: usize = 256;
/// The word that makes the checksum.
pub const CHECKSUM_WORD: usize = 0x3f;
/// What words 0x00–0x3F sum to.
pub const CHECKSUM_SUM: u16 = 0xbaba;
/// Initialization Control 2 (no manageability, no flow control bits).
const INIT_CONTROL2: usize = 0x0f;
/// Pointer to an alternate MAC address: none.
const ALT_MAC_PTR: usize = 0x37;
/// Printed board assembly number words.
const PBA_WORDS: [usize; 2] = [0x08, 0x09];

/// The NVM image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nvm {
    words: [u16; WORDS],
}

impl Nvm {
    /// An image holding `mac`, with a valid checksum.
    pub fn new(mac: [u8; 6]) -> Self {
        let mut words = [0u16; WORDS];
        for (i, pair) in mac.chunks_exact(2).enumerate() {
            words[i] = u16::from_le_bytes([pair[0], pair[1]]);
        }
        words[INIT_CONTROL2] = 0;
        words[ALT_MAC_PTR] = 0xffff;
        words[PBA_WORDS[0]] = 0x1000;
        words[PBA_WORDS[1]] = 0x00ff;
        let sum = words[..CHECKSUM_WORD]
            .iter()
            .fold(0u16, |a, &w| a.wrapping_add(w));
        words[CHECKSUM_WORD] = CHECKSUM_SUM.wrapping_sub(sum);
        Self { words }
    }

    /// Word `addr` (0 past the end).
    pub fn word(&self, addr: usize) -> u16 {
        self.words.get(addr).copied().unwrap_or(0)
    }

    /// The MAC address the image holds.
    pub fn mac(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        for i in 0..3 {
            m[2 * i..2 * i + 2].copy_from_slice(&self.words[i].to_le_bytes());
        }
        m
    }

    /// What EERD reads after a guest writes `value`: with START, the
    /// addressed word and DONE (an address past the image reads 0);
    /// without, the value as written.
    pub fn eerd(&self, value: u32) -> u32 {
        if value & eerd::START == 0 {
            return value & 0xffff & !eerd::DONE;
        }
        let addr = ((value >> eerd::ADDR_SHIFT) & 0x3fff) as usize;
        let data = u32::from(self.word(addr));
        (value & 0xfffc) | eerd::DONE | data << eerd::DATA_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_nvm_checksum_words_sum_to_baba() {
        let n = Nvm::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let sum = (0..=CHECKSUM_WORD).fold(0u16, |a, i| a.wrapping_add(n.word(i)));
        assert_eq!(sum, CHECKSUM_SUM);
        assert_eq!(n.mac(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn test_eerd_read_returns_word_and_done() {
        let n = Nvm::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let v = n.eerd(eerd::START | 1 << eerd::ADDR_SHIFT);
        assert_ne!(v & eerd::DONE, 0);
        assert_eq!(v >> eerd::DATA_SHIFT, 0x1200);
    }

    #[test]
    fn test_eerd_address_past_image_reads_zero() {
        let n = Nvm::new([2, 0, 0, 0, 0, 1]);
        let v = n.eerd(eerd::START | 0x3fff << eerd::ADDR_SHIFT);
        assert_eq!(v >> eerd::DATA_SHIFT, 0);
        assert_ne!(v & eerd::DONE, 0);
    }
}
