//! The General Purpose Logs READ LOG EXT returns (ACS-3 §9): the log
//! directory (00h) and the NCQ Command Error log (10h, SATA 3.x
//! §13.7.4) that libata's error handler reads after a queued command
//! failed. Reading log 10h clears the device's NCQ error state.

/// Log address: the directory.
pub const DIRECTORY: u8 = 0x00;
/// Log address: NCQ Command Error.
pub const NCQ_ERROR: u8 = 0x10;
/// Bytes per log page.
pub const PAGE: usize = 512;

/// What log 10h reports about the queued command that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NcqError {
    /// Its tag.
    pub tag: u8,
    /// Status.
    pub status: u8,
    /// Error.
    pub error: u8,
    /// Its LBA.
    pub lba: u64,
    /// Its sector count.
    pub count: u16,
}

/// Pages of log `log`, 0 when not supported.
pub fn pages(log: u8) -> u16 {
    match log {
        DIRECTORY | NCQ_ERROR => 1,
        _ => 0,
    }
}

fn checksum(page: &mut [u8; PAGE]) {
    let sum = page[..PAGE - 1].iter().fold(0u8, |a, &x| a.wrapping_add(x));
    page[PAGE - 1] = 0u8.wrapping_sub(sum);
}

/// Page 0 of log `log` (only one-page logs exist here), or `None`.
pub fn page(log: u8, ncq: Option<&NcqError>) -> Option<[u8; PAGE]> {
    let mut p = [0u8; PAGE];
    match log {
        DIRECTORY => {
            p[0] = 1; // General Purpose Logging version 1
            let at = 2 * usize::from(NCQ_ERROR);
            p[at..at + 2].copy_from_slice(&pages(NCQ_ERROR).to_le_bytes());
        }
        NCQ_ERROR => match ncq {
            Some(e) => {
                p[0] = e.tag & 0x1f;
                p[2] = e.status;
                p[3] = e.error;
                p[4] = e.lba as u8;
                p[5] = (e.lba >> 8) as u8;
                p[6] = (e.lba >> 16) as u8;
                p[7] = 0x40;
                p[8] = (e.lba >> 24) as u8;
                p[9] = (e.lba >> 32) as u8;
                p[10] = (e.lba >> 40) as u8;
                p[12] = e.count as u8;
                p[13] = (e.count >> 8) as u8;
                checksum(&mut p);
            }
            None => {
                // NQ: the last error was not a queued command's.
                p[0] = 0x80;
                checksum(&mut p);
            }
        },
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_log_directory_lists_the_ncq_error_log() {
        let p = page(DIRECTORY, None).unwrap();
        assert_eq!(u16::from_le_bytes([p[0], p[1]]), 1);
        assert_eq!(u16::from_le_bytes([p[0x20], p[0x21]]), 1);
    }

    #[test]
    fn test_log_ncq_error_names_the_tag_with_a_valid_checksum() {
        let e = NcqError {
            tag: 9,
            status: 0x41,
            error: 0x10,
            lba: 0x1234,
            count: 8,
        };
        let p = page(NCQ_ERROR, Some(&e)).unwrap();
        assert_eq!(p[0], 9);
        assert_eq!((p[2], p[3]), (0x41, 0x10));
        assert_eq!(p.iter().fold(0u8, |a, &x| a.wrapping_add(x)), 0);
    }

    #[test]
    fn test_log_without_error_sets_nq() {
        let p = page(NCQ_ERROR, None).unwrap();
        assert_eq!(p[0] & 0x80, 0x80);
    }

    #[test]
    fn test_log_unknown_log_is_none() {
        assert!(page(0x30, None).is_none());
        assert_eq!(pages(0x13), 0);
    }
}
