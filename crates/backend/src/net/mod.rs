//! Host networking: where a virtual NIC's frames go.
//!
//! A network device model moves whole Ethernet frames, each preceded by a
//! 12-byte `virtio_net_hdr_v1` (checksum and segmentation offload metadata,
//! virtio 1.2 §5.1.6), through a [`FrameIo`]: one per queue pair. The
//! [`Tap`] backend gives one such queue per file descriptor of a
//! (multi-queue) TAP interface; tests implement [`FrameIo`] on a socket
//! pair instead.
//!
//! ```text
//!  guest TX chain ─▶ device ─write_frame_ranges(hdr, guest ranges)─▶ TAP fd ─▶ host stack
//!  guest RX chain ◀─ device ◀─read_frame(buf)────────── TAP fd ◀─ host stack
//! ```

mod tap;

use std::fmt::Debug;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use dma::HostRange;

pub use tap::{Tap, TapConfig, TapError, TapQueue};

/// Length of the `virtio_net_hdr_v1` (with `num_buffers`) that precedes
/// every frame on a [`FrameIo`].
pub const VNET_HDR_LEN: usize = 12;

/// The offloads the host side may use towards the guest (the guest's
/// negotiated `GUEST_*` features): which partially checksummed or
/// unsegmented frames a [`FrameIo`] may deliver in `read_frame`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Frames with a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub csum: bool,
    /// TCP over IPv4 segmentation (needs `csum`).
    pub tso4: bool,
    /// TCP over IPv6 segmentation (needs `csum`).
    pub tso6: bool,
    /// TCP segmentation with ECN (needs `tso4` or `tso6`).
    pub tso_ecn: bool,
    /// UDP fragmentation offload (needs `csum`).
    pub ufo: bool,
}

impl Offloads {
    /// The `TUN_F_*` flags of `TUNSETOFFLOAD`, dependencies applied: a
    /// segmentation offload without checksum offload is left out.
    pub fn tun_flags(&self) -> u32 {
        let mut f = 0;
        if self.csum {
            f |= libc::TUN_F_CSUM;
            if self.tso4 {
                f |= libc::TUN_F_TSO4;
            }
            if self.tso6 {
                f |= libc::TUN_F_TSO6;
            }
            if self.tso_ecn && (self.tso4 || self.tso6) {
                f |= libc::TUN_F_TSO_ECN;
            }
            if self.ufo {
                f |= libc::TUN_F_UFO;
            }
        }
        f
    }
}

/// One queue pair's frames: a non-blocking endpoint that carries one frame
/// (12-byte `virtio_net_hdr_v1` + Ethernet frame) per read or write.
///
/// The raw fd ([`AsRawFd`]) becomes readable when a frame is waiting; a
/// device waits for it with epoll.
pub trait FrameIo: Send + Sync + Debug + AsRawFd {
    /// Reads one frame into `buf` and returns its length; a frame longer
    /// than `buf` is truncated. Fails with [`io::ErrorKind::WouldBlock`]
    /// when no frame is waiting.
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes one frame gathered from `bufs` (header first).
    fn write_frame(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Writes one frame: `hdr`, then the bytes of `ranges` (guest memory,
    /// which the guest may change at any time: they go to the kernel as
    /// raw iovecs in one `writev`, and this process never reads them).
    /// The default suits any fd that takes a frame per `writev`.
    fn write_frame_ranges(&self, hdr: &[u8], ranges: &[HostRange]) -> io::Result<usize> {
        let mut iov = Vec::with_capacity(ranges.len() + 1);
        iov.push(libc::iovec {
            iov_base: hdr.as_ptr() as *mut libc::c_void,
            iov_len: hdr.len(),
        });
        iov.extend(ranges.iter().map(|r| libc::iovec {
            iov_base: r.addr() as *mut libc::c_void,
            iov_len: r.len(),
        }));
        let count = libc::c_int::try_from(iov.len())
            .ok()
            .filter(|&n| n <= libc::UIO_MAXIOV)
            .ok_or_else(|| io::Error::other(format!("frame in {} pieces", iov.len())))?;
        // SAFETY: each iovec describes either `hdr` or a `HostRange`, whose
        // lifetime (the borrow of its `Dma` handle) covers this call, so
        // its memory stays mapped until `writev` returns; `writev` only
        // reads them.
        let n = unsafe { libc::writev(self.as_raw_fd(), iov.as_ptr(), count) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Sets which offloads frames read from this endpoint may carry.
    fn set_offloads(&self, offloads: Offloads) -> io::Result<()>;

    /// Enables or disables this queue: a disabled queue receives no frames
    /// (for a multi-queue TAP, the kernel stops steering frames to it).
    fn set_enabled(&self, enabled: bool) -> io::Result<()>;
}

#[cfg(test)]
mod tests;
