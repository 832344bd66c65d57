//! Host handles kept for the machine's later builds when iovm gives up
//! root (`--user`, [`sandbox::privileges`]).
//!
//! The first build opens `/dev/kvm`, the disk images, the TAP
//! interfaces, the kernel and initramfs and the PCI serial cards' output
//! files while iovm is still
//! root; then iovm becomes the user, who
//! may not open them again. A guest reboot builds a new machine, which
//! gets duplicates of the first build's descriptors instead (the same open
//! file descriptions: an image keeps its lock, a TAP its interface).
//! Without `--user` nothing is kept and every build opens afresh.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use backend::net::{Tap, TapError};
use backend::{BackendError, BlockFile};

use crate::host::KvmAccessError;

#[derive(Default)]
struct Kept {
    kvm: HashMap<PathBuf, File>,
    outputs: HashMap<PathBuf, File>,
    inputs: HashMap<PathBuf, File>,
    disks: HashMap<(PathBuf, bool), BlockFile>,
    taps: HashMap<(String, usize), Tap>,
}

static KEPT: Mutex<Option<Kept>> = Mutex::new(None);

/// Runs `f` on the kept handles, if iovm will run or runs as a user.
fn with_kept<R>(f: impl FnOnce(&mut Kept) -> R) -> Option<R> {
    if !sandbox::privileges::switching() {
        return None;
    }
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    Some(f(kept.get_or_insert_with(Kept::default)))
}

/// A handle from a kept one (`dup`), or from `open`, kept if the switch
/// to the user is still to come.
fn reuse<K: Eq + std::hash::Hash, T, E>(
    key: K,
    map: impl Fn(&mut Kept) -> &mut HashMap<K, T>,
    dup: impl Fn(&T) -> Result<T, E>,
    open: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let found = with_kept(|k| map(k).get(&key).map(&dup));
    if let Some(Some(handle)) = found {
        return handle;
    }
    let handle = open()?;
    if sandbox::privileges::switch_pending() {
        if let Ok(copy) = dup(&handle) {
            with_kept(|k| map(k).insert(key, copy));
        }
    }
    Ok(handle)
}

/// The KVM device at `path`.
pub(crate) fn kvm(
    path: &Path,
    open: impl FnOnce() -> Result<File, KvmAccessError>,
) -> Result<File, KvmAccessError> {
    reuse(
        path.to_path_buf(),
        |k| &mut k.kvm,
        |f: &File| {
            f.try_clone()
                .map_err(|e| KvmAccessError::Open(path.to_path_buf(), e))
        },
        open,
    )
}

/// The disk image at `path`, read-only or not.
pub(crate) fn disk(
    path: &Path,
    readonly: bool,
    open: impl FnOnce() -> Result<BlockFile, BackendError>,
) -> Result<BlockFile, BackendError> {
    reuse(
        (path.to_path_buf(), readonly),
        |k| &mut k.disks,
        BlockFile::try_clone,
        open,
    )
}

/// The TAP interface `name` with `queues` queues.
pub(crate) fn tap(
    name: &str,
    queues: usize,
    open: impl FnOnce() -> Result<Tap, TapError>,
) -> Result<Tap, TapError> {
    reuse(
        (name.to_string(), queues),
        |k| &mut k.taps,
        Tap::try_clone,
        open,
    )
}

/// An output file at `path` (a PCI serial card's), created or truncated
/// on every build: a kept one is emptied and rewound.
pub(crate) fn output(
    path: &Path,
    open: impl FnOnce() -> std::io::Result<File>,
) -> std::io::Result<File> {
    reuse(
        path.to_path_buf(),
        |k| &mut k.outputs,
        |f: &File| {
            let mut copy = f.try_clone()?;
            copy.set_len(0)?;
            std::io::Seek::rewind(&mut copy)?;
            Ok(copy)
        },
        open,
    )
}

/// A file read once per build (the kernel, the initramfs): a kept one is
/// rewound.
pub(crate) fn input<E>(
    path: &Path,
    open: impl FnOnce() -> Result<File, E>,
    dup_error: impl Fn(std::io::Error) -> E,
) -> Result<File, E> {
    reuse(
        path.to_path_buf(),
        |k| &mut k.inputs,
        |f: &File| {
            let mut copy = f.try_clone().map_err(&dup_error)?;
            std::io::Seek::rewind(&mut copy).map_err(&dup_error)?;
            Ok(copy)
        },
        open,
    )
}

/// Whether the disk at `path` is kept from the first build.
pub(crate) fn has_disk(path: &Path, readonly: bool) -> bool {
    with_kept(|k| k.disks.contains_key(&(path.to_path_buf(), readonly))).unwrap_or(false)
}
