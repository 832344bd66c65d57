//! Opening host storage: a regular file or a block device, its size, and
//! the alignment `O_DIRECT` needs; raw images only, locked while open
//! ([`crate::image`]).
//!
//! `O_DIRECT` is tried first; a filesystem that refuses it (`EINVAL`, e.g.
//! tmpfs before Linux 6.6) gets buffered I/O and one log line. A second,
//! buffered descriptor serves requests whose buffers or offsets are not
//! aligned to the logical block size: Linux keeps the page cache coherent
//! with direct I/O on the same file (a direct read or write first writes
//! back and invalidates cached pages of its range).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;

use dma::HostRange;
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr};

use crate::BackendError;

ioctl_ior_nr!(BLKGETSIZE64, 0x12, 114, u64);
ioctl_io_nr!(BLKSSZGET, 0x12, 104);
ioctl_io_nr!(BLKDISCARD, 0x12, 119);

/// How to open a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// A regular file or a block device.
    pub path: PathBuf,
    /// Open read-only: writes, discards and write-zeroes fail with `EROFS`.
    pub readonly: bool,
    /// Try `O_DIRECT` (bypass the host page cache).
    pub direct: bool,
}

/// What is behind the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file: discard punches holes.
    Regular,
    /// A block device: discard is `BLKDISCARD`.
    BlockDevice,
}

/// An open disk.
#[derive(Debug)]
pub struct BlockFile {
    direct: Option<File>,
    buffered: File,
    size: u64,
    block_size: u32,
    kind: FileKind,
    readonly: bool,
    path: PathBuf,
}

fn open_with(path: &PathBuf, readonly: bool, flags: i32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(!readonly)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
}

impl BlockFile {
    /// The same disk through duplicated descriptors: they share the open
    /// file descriptions, so the image lock too (iovm keeps one when it
    /// runs as an ordinary user, who may not open the image again).
    pub fn try_clone(&self) -> Result<Self, BackendError> {
        let dup = |f: &File| {
            f.try_clone().map_err(|source| BackendError::Open {
                path: self.path.display().to_string(),
                source,
            })
        };
        Ok(Self {
            direct: self.direct.as_ref().map(dup).transpose()?,
            buffered: dup(&self.buffered)?,
            size: self.size,
            block_size: self.block_size,
            kind: self.kind,
            readonly: self.readonly,
            path: self.path.clone(),
        })
    }

    /// Opens the disk `cfg` describes.
    pub fn open(cfg: &DiskConfig) -> Result<Self, BackendError> {
        let name = cfg.path.display().to_string();
        let open_err = |source| BackendError::Open {
            path: name.clone(),
            source,
        };
        let geometry = |source| BackendError::Geometry {
            path: name.clone(),
            source,
        };
        let buffered = open_with(&cfg.path, cfg.readonly, 0).map_err(open_err)?;
        let meta = buffered.metadata().map_err(geometry)?;
        let kind = if meta.file_type().is_block_device() {
            FileKind::BlockDevice
        } else if meta.is_file() {
            FileKind::Regular
        } else {
            return Err(BackendError::NotADisk { path: name });
        };
        if let Some(format) = crate::image::container_format(&buffered).map_err(geometry)? {
            return Err(BackendError::NotRaw { path: name, format });
        }
        match crate::image::lock(&buffered, !cfg.readonly) {
            Ok(()) => {}
            Err(crate::image::LockError::Busy) => {
                return Err(BackendError::Locked {
                    path: name,
                    readonly: cfg.readonly,
                })
            }
            Err(crate::image::LockError::Io(source)) => {
                return Err(BackendError::Lock { path: name, source })
            }
        }
        let size = match kind {
            FileKind::Regular => meta.len(),
            FileKind::BlockDevice => block_device_size(&buffered).map_err(geometry)?,
        };
        let direct = if cfg.direct {
            match open_with(&cfg.path, cfg.readonly, libc::O_DIRECT) {
                Ok(f) => Some(f),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::info!(
                        "{name}: O_DIRECT refused by the filesystem, using buffered I/O"
                    );
                    None
                }
                Err(e) => return Err(open_err(e)),
            }
        } else {
            None
        };
        let block_size = match (&direct, kind) {
            (_, FileKind::BlockDevice) => {
                logical_block_size(direct.as_ref().unwrap_or(&buffered)).map_err(geometry)?
            }
            (Some(f), FileKind::Regular) => probe_direct_alignment(f, size),
            (None, FileKind::Regular) => 512,
        };
        Ok(Self {
            direct,
            buffered,
            size,
            block_size,
            kind,
            readonly: cfg.readonly,
            path: cfg.path.clone(),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The logical block size: the alignment (of offsets, lengths and
    /// buffer addresses) direct I/O needs. Requests not aligned to it go
    /// through the buffered descriptor. 512 for a buffered regular file.
    pub fn logical_block_size(&self) -> u32 {
        self.block_size
    }

    /// Whether `O_DIRECT` is in use.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Regular file or block device.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Whether writes are refused.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The path it was opened from.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// The descriptor for a transfer at `offset` over `ranges`: the direct
    /// one when everything is aligned, else the buffered one.
    pub(crate) fn fd_for(&self, offset: u64, ranges: &[HostRange]) -> RawFd {
        // The block size is a power of two: aligned means no low bits.
        let low = u64::from(self.block_size) - 1;
        let aligned = |v: u64| v & low == 0;
        match &self.direct {
            Some(f)
                if aligned(offset)
                    && ranges
                        .iter()
                        .all(|r| aligned(r.addr() as u64) && aligned(r.len() as u64)) =>
            {
                f.as_raw_fd()
            }
            _ => self.buffered.as_raw_fd(),
        }
    }

    /// The buffered descriptor (flush, fallocate).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.buffered.as_raw_fd()
    }

    /// Deallocates `offset..offset+len` (synchronously).
    pub(crate) fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        match self.kind {
            FileKind::Regular => fallocate(
                self.raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            ),
            FileKind::BlockDevice => {
                let range = [offset, len];
                // SAFETY: BLKDISCARD reads two u64 (start, length) from the
                // pointer, which points at a live array of two u64.
                let r = unsafe {
                    vmm_sys_util::ioctl::ioctl_with_ref(&self.buffered, BLKDISCARD(), &range)
                };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Writes zeros over `offset..offset+len` with plain writes (the
    /// fallback when `FALLOC_FL_ZERO_RANGE` is not supported).
    pub(crate) fn write_zeroes_by_writing(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK) as usize;
            self.buffered.write_all_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// `fallocate(2)` on `fd`.
pub(crate) fn fallocate(fd: RawFd, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: fallocate takes no pointers; an invalid fd or range is
    // reported as an error.
    let r = unsafe { libc::fallocate64(fd, mode, off, l) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn block_device_size(f: &File) -> io::Result<u64> {
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // at a live u64.
    let r = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ref(f, BLKGETSIZE64(), &mut size) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

fn logical_block_size(f: &File) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at
    // a live c_int.
    let r = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ref(f, BLKSSZGET(), &mut size) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(size).unwrap_or(512).max(512))
}

/// The smallest of 512 and 4096 that a direct read accepts (probed with a
/// read at offset 0 into an aligned buffer); 4096 when nothing can be
/// probed.
fn probe_direct_alignment(f: &File, size: u64) -> u32 {
    let buf = AlignedBuf::new(4096);
    for align in [512u32, 4096] {
        if size < u64::from(align) {
            break;
        }
        // SAFETY: `buf` owns 4096 writable bytes, at least `align`.
        let r = unsafe { libc::pread(f.as_raw_fd(), buf.ptr.cast(), align as usize, 0) };
        if r >= 0 {
            return align;
        }
    }
    4096
}

/// A zeroed heap buffer aligned to 4096 bytes (for the O_DIRECT probe).
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = match std::alloc::Layout::from_size_align(len.max(1), 4096) {
            Ok(l) => l,
            Err(e) => unreachable!("4096 is a power of two: {e}"),
        };
        // SAFETY: the layout has a nonzero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Self { ptr, layout }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated with `layout` and is freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}
