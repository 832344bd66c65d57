//! The guest kernel as an uncompressed ELF `vmlinux`, for iovm's PVH boot
//! (`crates/vmm/src/boot/pvh.rs`): the compressed payload of Debian's
//! bzImage (boot protocol 2.08's `payload_offset` and `payload_length`, Linux
//! `Documentation/arch/x86/boot.rst`), decompressed by the host's `xz` (or
//! `gzip`). Written next to `vmlinuz` as `vmlinux` whenever it is missing or
//! older than `vmlinuz`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Offset of `setup_sects` in the bzImage.
const SETUP_SECTS: usize = 0x1f1;
/// Offset of `payload_offset` (u32) in the bzImage; `payload_length` follows.
const PAYLOAD_OFFSET: usize = 0x248;
/// xz's stream magic.
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
/// gzip's magic.
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";

/// Where the compressed kernel lies in `bzimage`.
pub fn payload(bzimage: &[u8]) -> Result<&[u8]> {
    let u32_at = |o: usize| -> Result<usize> {
        let b = bzimage
            .get(o..o + 4)
            .context("the bzImage is too short for its boot header")?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let sects = match bzimage.get(SETUP_SECTS).copied() {
        Some(0) => 4,
        Some(n) => usize::from(n),
        None => bail!("the bzImage is too short for its boot header"),
    };
    let start = (sects + 1) * 512 + u32_at(PAYLOAD_OFFSET)?;
    let len = u32_at(PAYLOAD_OFFSET + 4)?;
    bzimage
        .get(start..start + len)
        .context("the bzImage's payload lies outside the file")
}

/// Writes `out`, the ELF kernel inside `vmlinuz`, unless it is newer.
pub fn ensure(vmlinuz: &Path, out: &Path) -> Result<()> {
    let newer = |a: &Path, b: &Path| -> bool {
        let m = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((m(a), m(b)), (Some(x), Some(y)) if x >= y)
    };
    if newer(out, vmlinuz) {
        return Ok(());
    }
    let image = fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let packed = payload(&image)?;
    let tool = if packed.starts_with(XZ_MAGIC) {
        ["xz", "-dc", "--single-stream"].as_slice()
    } else if packed.starts_with(GZIP_MAGIC) {
        ["gzip", "-dc"].as_slice()
    } else {
        bail!(
            "{}: the kernel is compressed neither with xz nor gzip; iovm boots the bzImage itself",
            vmlinuz.display()
        );
    };
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("could not run {} (apt-get install xz-utils)", tool[0]))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let data = packed.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output()?;
    // gzip ends with status 2 ("trailing garbage ignored") on the size word
    // the kernel appends to its payload; what counts is the ELF it wrote.
    let _ = feeder.join();
    if !output.stdout.starts_with(b"\x7fELF") {
        bail!(
            "{} -dc of {}'s payload gave no ELF kernel",
            tool[0],
            vmlinuz.display()
        );
    }
    let tmp = out.with_extension("tmp");
    fs::write(&tmp, &output.stdout).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, out)?;
    println!(
        "xtask: {} ({} MiB, for PVH boot) extracted from {}",
        out.display(),
        output.stdout.len() >> 20,
        vmlinuz.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_payload_follows_the_setup_sectors_and_offset() {
        let mut img = vec![0u8; 0x2000];
        img[SETUP_SECTS] = 3;
        img[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&0x10u32.to_le_bytes());
        img[PAYLOAD_OFFSET + 4..PAYLOAD_OFFSET + 8].copy_from_slice(&6u32.to_le_bytes());
        let at = 4 * 512 + 0x10;
        img[at..at + 6].copy_from_slice(XZ_MAGIC);
        assert_eq!(payload(&img).unwrap(), XZ_MAGIC);
        img[PAYLOAD_OFFSET + 4..PAYLOAD_OFFSET + 8].copy_from_slice(&0x10_0000u32.to_le_bytes());
        assert!(payload(&img).is_err(), "a payload past the end");
        assert!(payload(&img[..0x100]).is_err());
    }
}
