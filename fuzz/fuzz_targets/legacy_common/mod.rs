//! What the legacy-device fuzz targets share: guest port accesses decoded
//! from the input.

/// One guest access to a device's port window.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    /// A write (else a read).
    pub write: bool,
    /// Offset in the window; may lie past it.
    pub offset: u64,
    /// Bytes accessed (1, 2, 4, or an odd 3).
    pub width: usize,
    /// The bytes written (the first `width` of them).
    pub value: [u8; 4],
}

/// Accesses from records of 4 bytes: the first byte's bit 0 selects a
/// write or a read, bits 1-2 the width (1, 2, 4 or 3 bytes), bit 7 an
/// offset past the window; the second byte is the offset in the window
/// (modulo `span`); the last two bytes are the value (repeated to 4).
pub fn accesses(data: &[u8], span: u64) -> impl Iterator<Item = Access> + '_ {
    data.chunks_exact(4).map(move |r| {
        let past = u64::from(r[0] >> 7) * span;
        Access {
            write: r[0] & 1 != 0,
            offset: u64::from(r[1]) % span.max(1) + past,
            width: [1, 2, 4, 3][usize::from(r[0] >> 1) % 4],
            value: [r[2], r[3], r[2], r[3]],
        }
    })
}
