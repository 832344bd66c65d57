//! `struct virtio_net_hdr_v1` (virtio 1.2 §5.1.6): the 12 bytes before
//! every frame, checked against the negotiated features in both
//! directions.

use super::{
    F_CSUM, F_GUEST_CSUM, F_GUEST_ECN, F_GUEST_TSO4, F_GUEST_TSO6, F_GUEST_UFO, F_HOST_ECN,
    F_HOST_TSO4, F_HOST_TSO6, F_HOST_UFO,
};

/// Length of the header (with `num_buffers`, always present in 1.0+).
pub(crate) const HDR_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS: usize = 10;

/// `flags`: the checksum from `csum_start` on is to be completed.
pub(crate) const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was validated (device to driver only).
pub(crate) const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub(crate) const GSO_NONE: u8 = 0;
pub(crate) const GSO_TCPV4: u8 = 1;
pub(crate) const GSO_UDP: u8 = 3;
pub(crate) const GSO_TCPV6: u8 = 4;
pub(crate) const GSO_ECN: u8 = 0x80;

/// Why a header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HdrError {
    /// Flags the sender may not set.
    #[error("header flags {0:#x} not allowed")]
    Flags(u8),
    /// A segmentation type that was not negotiated (or is unknown).
    #[error("GSO type {0:#x} not negotiated")]
    Gso(u8),
    /// Segmentation without a segment size.
    #[error("GSO without a segment size")]
    GsoSize,
}

/// Checks a header the driver sent with a frame (§5.1.6.2.1).
pub(crate) fn check_tx(hdr: &[u8; HDR_LEN], features: u64) -> Result<(), HdrError> {
    let flags = hdr[0];
    if flags & !F_NEEDS_CSUM != 0 || (flags & F_NEEDS_CSUM != 0 && features & F_CSUM == 0) {
        return Err(HdrError::Flags(flags));
    }
    check_gso(
        hdr,
        features,
        F_HOST_TSO4,
        F_HOST_TSO6,
        F_HOST_ECN,
        F_HOST_UFO,
    )
}

/// Checks and completes a header the host sent with a frame for the
/// driver: without `GUEST_CSUM` the flags are cleared (`DATA_VALID` is
/// only allowed with it, §5.1.6.4.1) and a partial checksum is refused;
/// `num_buffers` is set.
pub(crate) fn fix_rx(
    hdr: &mut [u8; HDR_LEN],
    features: u64,
    num_buffers: u16,
) -> Result<(), HdrError> {
    let flags = hdr[0];
    if features & F_GUEST_CSUM == 0 {
        if flags & F_NEEDS_CSUM != 0 {
            return Err(HdrError::Flags(flags));
        }
        hdr[0] = 0;
    } else if flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Err(HdrError::Flags(flags));
    }
    check_gso(
        hdr,
        features,
        F_GUEST_TSO4,
        F_GUEST_TSO6,
        F_GUEST_ECN,
        F_GUEST_UFO,
    )?;
    hdr[NUM_BUFFERS..NUM_BUFFERS + 2].copy_from_slice(&num_buffers.to_le_bytes());
    Ok(())
}

fn check_gso(
    hdr: &[u8; HDR_LEN],
    features: u64,
    tso4: u64,
    tso6: u64,
    ecn: u64,
    ufo: u64,
) -> Result<(), HdrError> {
    let gso = hdr[1];
    let needed = match gso & !GSO_ECN {
        GSO_NONE if gso & GSO_ECN == 0 => return Ok(()),
        GSO_TCPV4 => tso4,
        GSO_TCPV6 => tso6,
        GSO_UDP => ufo,
        _ => return Err(HdrError::Gso(gso)),
    };
    if features & needed == 0 || (gso & GSO_ECN != 0 && features & ecn == 0) {
        return Err(HdrError::Gso(gso));
    }
    if u16::from_le_bytes([hdr[4], hdr[5]]) == 0 {
        return Err(HdrError::GsoSize);
    }
    Ok(())
}
