//! Opening a device's disk, the same way for every kind that has one.

use std::path::Path;

use backend::{BlockFile, DiskConfig};

use super::PciBuildError;

/// Opens the disk at `path` for a device of kind `kind` (with `O_DIRECT`
/// where the file system allows); an error names the kind and the file.
pub(crate) fn open_disk(
    kind: &str,
    path: &Path,
    readonly: bool,
) -> Result<BlockFile, PciBuildError> {
    crate::reopen::disk(path, readonly, || {
        BlockFile::open(&DiskConfig {
            path: path.to_path_buf(),
            readonly,
            direct: true,
        })
    })
    .map_err(|e| PciBuildError::device(format_args!("{kind} {}", path.display()), &e))
}
