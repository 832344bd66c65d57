//! Where the prebuilt images live (`<workspace>/target/guest`, `<workspace>/target/testhost`)
//! and checks that they exist.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The workspace root, from this crate's location.
pub fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `<workspace>/target/guest`: the test guest's kernel (`vmlinuz`, and `vmlinux` for PVH
/// boot) and initramfs (`initramfs.cpio.gz`, and `initramfs.cpio` uncompressed).
pub fn guest_dir() -> PathBuf {
    workspace().join("target/guest")
}

/// `<workspace>/target/testhost`: the test host's kernel, initramfs and QEMU.
pub fn testhost_dir() -> PathBuf {
    workspace().join("target/testhost")
}

fn require(what: &'static str, path: PathBuf, xtask: &'static str) -> Result<PathBuf, Error> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingImage { what, path, xtask })
    }
}

/// Checks that the guest image exists and returns its directory.
pub fn require_guest() -> Result<PathBuf, Error> {
    let dir = guest_dir();
    require(
        "guest kernel",
        dir.join(crate::run::BZIMAGE_KERNEL),
        "guest",
    )?;
    require(
        "guest ELF kernel",
        dir.join(crate::run::DEFAULT_KERNEL),
        "guest",
    )?;
    require(
        "guest initramfs",
        dir.join(crate::run::GZIP_INITRAMFS),
        "guest",
    )?;
    require(
        "guest initramfs, uncompressed",
        dir.join(crate::run::DEFAULT_INITRAMFS),
        "guest",
    )?;
    Ok(dir)
}

/// The files of the test host.
#[derive(Debug, Clone)]
pub struct TestHost {
    /// The test host's kernel.
    pub vmlinuz: PathBuf,
    /// Its initramfs.
    pub initramfs: PathBuf,
    /// The unpacked QEMU 7.2 `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// Firmware directories for QEMU's `-L`.
    pub firmware: Vec<PathBuf>,
}

/// Checks that the test host exists.
pub fn require_testhost() -> Result<TestHost, Error> {
    let dir = testhost_dir();
    let qemu_root = dir.join("qemu");
    Ok(TestHost {
        vmlinuz: require("test host kernel", dir.join("vmlinuz"), "testhost")?,
        initramfs: require(
            "test host initramfs",
            dir.join("initramfs.cpio.gz"),
            "testhost",
        )?,
        qemu: require(
            "QEMU 7.2 for the test host",
            qemu_root.join("usr/bin/qemu-system-x86_64"),
            "testhost",
        )?,
        firmware: vec![
            qemu_root.join("usr/share/seabios"),
            qemu_root.join("usr/share/qemu"),
        ],
    })
}
