//! A TAP interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`):
//! one non-blocking file descriptor per queue pair (`IFF_MULTI_QUEUE` when
//! there are several), each frame preceded by a 12-byte virtio-net header.
//!
//! `TUNSETIFF` with a name attaches to that interface if it exists (the
//! caller must own it or hold `CAP_NET_ADMIN`) and creates it otherwise;
//! an empty name lets the kernel pick one (`tap0`, `tap1`, ...). A
//! persistent interface created without `multi_queue` cannot be opened
//! with several queues: the kernel refuses (`EINVAL`).
//!
//! [`Tap::from_fds`] takes descriptors someone else opened (a management
//! stack that holds `CAP_NET_ADMIN` and passes them over a socket, as
//! libvirt does), so iovm itself needs no privilege: each must be a TAP
//! opened with `IFF_VNET_HDR`, all of one interface.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref, ioctl_with_val};

use super::{FrameIo, Offloads, VNET_HDR_LEN};

const TUN_PATH: &str = "/dev/net/tun";
const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// Why a TAP interface could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit `IFNAMSIZ` (15 bytes) or contains a NUL.
    #[error("invalid TAP interface name {name:?}")]
    InvalidName {
        /// The name asked for.
        name: String,
    },
    /// Zero queue pairs were asked for.
    #[error("TAP interface {name:?}: at least one queue is needed")]
    NoQueues {
        /// The name asked for.
        name: String,
    },
    /// `/dev/net/tun` could not be opened.
    #[error("TAP interface {name:?}: cannot open {TUN_PATH}")]
    OpenTun {
        /// The name asked for.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNSETIFF` failed: no permission, or an existing interface of
    /// another kind (TUN, or without multi-queue support).
    #[error("TAP interface {name:?}: cannot attach queue {queue} (TUNSETIFF)")]
    SetIff {
        /// The name asked for.
        name: String,
        /// Which queue.
        queue: usize,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNSETVNETHDRSZ` failed.
    #[error("TAP interface {name}: cannot set the virtio-net header size")]
    VnetHdrSize {
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNSETOFFLOAD` failed.
    #[error("TAP interface {name}: cannot set offloads {flags:#x}")]
    Offload {
        /// The interface.
        name: String,
        /// The `TUN_F_*` flags.
        flags: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNGETIFF` failed on a descriptor handed over: not a TUN/TAP one.
    #[error("descriptor {fd} is not an attached TUN/TAP descriptor (TUNGETIFF)")]
    GetIff {
        /// The descriptor.
        fd: RawFd,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A descriptor handed over is a TUN (not TAP) or lacks the virtio-net
    /// header.
    #[error("descriptor {fd} of interface {name} must be a TAP opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (its flags are {flags:#x})")]
    NotVnetTap {
        /// The descriptor.
        fd: RawFd,
        /// Its interface.
        name: String,
        /// Its `IFF_*` flags.
        flags: i32,
    },
    /// Descriptors handed over belong to different interfaces.
    #[error("descriptors of two interfaces ({first} and {other}) given for one card")]
    TwoInterfaces {
        /// The first descriptor's interface.
        first: String,
        /// Another's.
        other: String,
    },
    /// A descriptor handed over could not be made non-blocking.
    #[error("descriptor {fd}: cannot make it non-blocking")]
    NonBlocking {
        /// The descriptor.
        fd: RawFd,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNSETQUEUE` failed.
    #[error("TAP interface {name}: cannot attach or detach queue {queue}")]
    Queue {
        /// The interface.
        name: String,
        /// Which queue.
        queue: usize,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Which TAP interface to open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name (at most 15 bytes); empty: the kernel picks one.
    pub name: String,
    /// File descriptors (queue pairs) to open; more than one makes a
    /// multi-queue interface.
    pub queues: usize,
}

/// `struct ifreq` with the `ifr_flags` member of its union; padded to the
/// kernel's 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReq {
    fn new(name: &[u8; IFNAMSIZ], flags: libc::c_int) -> Self {
        Self {
            name: *name,
            // The IFF_* flags used here fit in 16 bits.
            flags: flags as libc::c_short,
            _pad: [0; 22],
        }
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

fn encode_name(name: &str) -> Result<[u8; IFNAMSIZ], TapError> {
    let bytes = name.as_bytes();
    if bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(TapError::InvalidName { name: name.into() });
    }
    let mut out = [0u8; IFNAMSIZ];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open TAP interface: its name and one queue per file descriptor.
#[derive(Debug)]
pub struct Tap {
    name: String,
    queues: Vec<TapQueue>,
}

impl Tap {
    /// Opens (or creates) the interface `cfg` names, with `cfg.queues`
    /// non-blocking queues, each set up for 12-byte virtio-net headers and
    /// no offloads (a device sets them once the guest has negotiated).
    pub fn open(cfg: &TapConfig) -> Result<Self, TapError> {
        let mut name = encode_name(&cfg.name)?;
        if cfg.queues == 0 {
            return Err(TapError::NoQueues {
                name: cfg.name.clone(),
            });
        }
        let multi = cfg.queues > 1;
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if multi {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let mut queues = Vec::with_capacity(cfg.queues);
        let mut actual = cfg.name.clone();
        for index in 0..cfg.queues {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(TUN_PATH)
                .map_err(|source| TapError::OpenTun {
                    name: actual.clone(),
                    source,
                })?;
            let mut req = IfReq::new(&name, flags);
            // SAFETY: TUNSETIFF reads and writes a `struct ifreq` through
            // the pointer, which points at a live 40-byte `IfReq` laid out
            // as the kernel's (name, then the flags member of the union).
            let r = unsafe { ioctl_with_mut_ref(&file, libc::TUNSETIFF, &mut req) };
            check(r).map_err(|source| TapError::SetIff {
                name: actual.clone(),
                queue: index,
                source,
            })?;
            // The kernel fills in the name it chose (for an empty or a
            // `%d` template name); later queues attach to that one.
            actual = req.name();
            name = req.name;
            let hdr_len = VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer,
            // which points at a live c_int.
            let r = unsafe { ioctl_with_ref(&file, libc::TUNSETVNETHDRSZ, &hdr_len) };
            check(r).map_err(|source| TapError::VnetHdrSize {
                name: actual.clone(),
                source,
            })?;
            queues.push(TapQueue {
                file,
                name: actual.clone(),
                index,
                multi,
                enabled: AtomicBool::new(true),
            });
        }
        let tap = Self {
            name: actual,
            queues,
        };
        tap.set_offloads(Offloads::default())?;
        Ok(tap)
    }

    /// The same interface through duplicated descriptors, set up afresh as
    /// [`Tap::from_fds`] does (iovm keeps one when it runs as an ordinary
    /// user, who may not attach to the interface again).
    pub fn try_clone(&self) -> Result<Self, TapError> {
        let fds = self
            .queues
            .iter()
            .map(|q| {
                q.file
                    .try_clone()
                    .map(OwnedFd::from)
                    .map_err(|source| TapError::OpenTun {
                        name: self.name.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_fds(fds)
    }

    /// A TAP interface from descriptors opened elsewhere, one queue each,
    /// in order: each is checked to be a TAP with virtio-net headers, of
    /// the same interface as the first, then made non-blocking and set up
    /// for 12-byte headers and no offloads, as [`Tap::open`] does.
    pub fn from_fds(fds: Vec<OwnedFd>) -> Result<Self, TapError> {
        if fds.is_empty() {
            return Err(TapError::NoQueues {
                name: String::new(),
            });
        }
        let multi = fds.len() > 1;
        let mut queues = Vec::with_capacity(fds.len());
        let mut first: Option<String> = None;
        for (index, fd) in fds.into_iter().enumerate() {
            let file = File::from(fd);
            let raw = file.as_raw_fd();
            let mut req = IfReq::new(&[0; IFNAMSIZ], 0);
            // SAFETY: TUNGETIFF writes a `struct ifreq` through the pointer,
            // which points at a live 40-byte `IfReq`.
            let r = unsafe { ioctl_with_mut_ref(&file, libc::TUNGETIFF, &mut req) };
            check(r).map_err(|source| TapError::GetIff { fd: raw, source })?;
            let name = req.name();
            let flags = i32::from(req.flags);
            let wanted = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
            if flags & wanted != wanted {
                return Err(TapError::NotVnetTap {
                    fd: raw,
                    name,
                    flags,
                });
            }
            match &first {
                Some(f) if *f != name => {
                    return Err(TapError::TwoInterfaces {
                        first: f.clone(),
                        other: name,
                    })
                }
                _ => first = Some(name.clone()),
            }
            // SAFETY: F_GETFL/F_SETFL on an open descriptor take no pointers.
            let r = unsafe {
                let fl = libc::fcntl(raw, libc::F_GETFL);
                if fl < 0 {
                    fl
                } else {
                    libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK)
                }
            };
            check(r).map_err(|source| TapError::NonBlocking { fd: raw, source })?;
            let hdr_len = VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer,
            // which points at a live c_int.
            let r = unsafe { ioctl_with_ref(&file, libc::TUNSETVNETHDRSZ, &hdr_len) };
            check(r).map_err(|source| TapError::VnetHdrSize {
                name: name.clone(),
                source,
            })?;
            queues.push(TapQueue {
                file,
                name,
                index,
                multi,
                enabled: AtomicBool::new(true),
            });
        }
        let tap = Self {
            name: first.unwrap_or_default(),
            queues,
        };
        tap.set_offloads(Offloads::default())?;
        Ok(tap)
    }

    /// The interface's name (as the kernel chose it, for an empty name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queues, in order.
    pub fn queues(&self) -> &[TapQueue] {
        &self.queues
    }

    /// Gives up the interface for its queues (the interface lives while
    /// one of them is open, or longer if it is persistent).
    pub fn into_queues(self) -> Vec<TapQueue> {
        self.queues
    }

    /// Sets the offloads of the interface (one setting for all queues).
    pub fn set_offloads(&self, offloads: Offloads) -> Result<(), TapError> {
        match self.queues.first() {
            Some(q) => q.offloads(offloads),
            None => Ok(()),
        }
    }
}

/// One file descriptor of a TAP interface: one queue pair's frames.
#[derive(Debug)]
pub struct TapQueue {
    file: File,
    name: String,
    index: usize,
    multi: bool,
    enabled: AtomicBool,
}

impl TapQueue {
    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame (header first) into `bufs` (`readv`).
    pub fn read_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        (&self.file).read_vectored(bufs)
    }

    /// Sets the interface's offloads (`TUNSETOFFLOAD`).
    pub fn offloads(&self, offloads: Offloads) -> Result<(), TapError> {
        let flags = offloads.tun_flags();
        // SAFETY: TUNSETOFFLOAD takes its argument by value and reads no
        // memory of ours.
        let r =
            unsafe { ioctl_with_val(&self.file, libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
        check(r).map_err(|source| TapError::Offload {
            name: self.name.clone(),
            flags,
            source,
        })
    }

    /// Attaches or detaches this queue (`TUNSETQUEUE`); a single-queue
    /// interface has nothing to switch and always succeeds.
    pub fn attach(&self, enabled: bool) -> Result<(), TapError> {
        if !self.multi || self.enabled.load(Ordering::SeqCst) == enabled {
            return Ok(());
        }
        let flags = if enabled {
            libc::IFF_ATTACH_QUEUE
        } else {
            libc::IFF_DETACH_QUEUE
        };
        let mut req = IfReq::new(&[0; IFNAMSIZ], flags);
        // SAFETY: TUNSETQUEUE reads a `struct ifreq` through the pointer,
        // which points at a live 40-byte `IfReq`.
        let r = unsafe { ioctl_with_mut_ref(&self.file, libc::TUNSETQUEUE, &mut req) };
        check(r).map_err(|source| TapError::Queue {
            name: self.name.clone(),
            queue: self.index,
            source,
        })?;
        self.enabled.store(enabled, Ordering::SeqCst);
        Ok(())
    }
}

impl AsRawFd for TapQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl FrameIo for TapQueue {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    fn write_frame(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.file).write_vectored(bufs)
    }

    fn set_offloads(&self, offloads: Offloads) -> io::Result<()> {
        self.offloads(offloads).map_err(io::Error::other)
    }

    fn set_enabled(&self, enabled: bool) -> io::Result<()> {
        self.attach(enabled).map_err(io::Error::other)
    }
}
