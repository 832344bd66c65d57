//! What iovm checks of a disk image before a guest may use it: that it is a
//! raw image and not a container format another VMM would have parsed
//! (booting a qcow2 file as raw shows the guest its metadata, and the
//! guest's writes destroy it), and that no other process uses it in a way
//! that conflicts: an open file description lock (`F_OFD_SETLK`, Linux
//! `fcntl(2)`) on the whole file, exclusive for a writable disk, shared for
//! a read-only one, held for as long as the disk is open. Two VMs can then
//! never write one image, and a read-only user never sees it change.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;

/// Formats recognised by their first bytes: (magic, name).
const FORMATS: &[(&[u8], &str)] = &[
    (b"QFI\xfb", "qcow2"),
    (b"KDMV", "VMDK"),
    (b"vhdxfile", "VHDX"),
    (b"conectix", "VHD"),
    (b"<<< Oracle VM VirtualBox Disk Image >>>", "VDI"),
];

/// The container format whose magic `file` starts with, if any.
pub fn container_format(file: &File) -> io::Result<Option<&'static str>> {
    let mut file = file;
    let mut head = [0u8; 64];
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(FORMATS
        .iter()
        .find(|(magic, _)| head[..n].starts_with(magic))
        .map(|(_, name)| *name))
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another open file description holds a conflicting lock.
    Busy,
    /// `fcntl` failed otherwise.
    Io(io::Error),
}

/// Takes the image lock on `file`: exclusive if `write`, shared otherwise.
/// It lasts as long as this open file description.
pub fn lock(file: &File, write: bool) -> Result<(), LockError> {
    let lock = libc::flock {
        l_type: if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: F_OFD_SETLK reads the flock struct, which lives across the
    // call; the descriptor is open.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(LockError::Busy),
        _ => Err(LockError::Io(e)),
    }
}
