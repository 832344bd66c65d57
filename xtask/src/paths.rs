//! Where the xtask reads and writes: everything lives under `<workspace>/target/`.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of `xtask/`).
pub fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `<workspace>/target`.
pub fn target() -> PathBuf {
    workspace().join("target")
}

/// The cache of downloaded Debian packages and their unpacked trees.
pub fn debs() -> PathBuf {
    target().join("debs")
}

/// Output of `cargo xtask guest`.
pub fn guest() -> PathBuf {
    target().join("guest")
}

/// Output of `cargo xtask testhost`.
pub fn testhost() -> PathBuf {
    target().join("testhost")
}
