//! A writer for the `newc` cpio format (the one the Linux kernel unpacks as an initramfs,
//! see the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Writing it ourselves means no `cpio` tool is needed on the host and device nodes
//! (`/dev/console`) can be added without root privileges.

use std::io::{self, Write};

/// The kind of an archive entry, with the bits of `st_mode` it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (`S_IFDIR`).
    Dir,
    /// A regular file (`S_IFREG`).
    File,
    /// A symbolic link (`S_IFLNK`); its data is the link target.
    Symlink,
    /// A character device (`S_IFCHR`) with its major and minor numbers.
    CharDev { major: u32, minor: u32 },
}

impl Kind {
    fn type_bits(self) -> u32 {
        match self {
            Kind::Dir => 0o040000,
            Kind::File => 0o100000,
            Kind::Symlink => 0o120000,
            Kind::CharDev { .. } => 0o020000,
        }
    }
}

/// Writes entries one after another, then the trailer on [`CpioWriter::finish`].
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// Appends one entry. `name` is the path inside the archive without a leading `/`;
    /// `perm` holds the permission bits (e.g. `0o755`).
    pub fn entry(&mut self, name: &str, kind: Kind, perm: u32, data: &[u8]) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid cpio entry name {name:?}"),
            ));
        }
        if matches!(kind, Kind::Dir | Kind::CharDev { .. }) && !data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio entry {name:?}: directories and devices carry no data"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio entry {name:?} is larger than 4 GiB"),
            )
        })?;
        let (rmajor, rminor) = match kind {
            Kind::CharDev { major, minor } => (major, minor),
            _ => (0, 0),
        };
        let nlink = if kind == Kind::Dir { 2 } else { 1 };
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(
            name,
            ino,
            kind.type_bits() | (perm & 0o7777),
            nlink,
            size,
            rmajor,
            rminor,
        )?;
        self.write_padded(data)
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 0, 1, 0, 0, 0)?;
        // Pad the archive to a multiple of 512 bytes as cpio(1) does.
        let pad = (512 - (self.written % 512)) % 512;
        self.out.write_all(&vec![0u8; pad as usize])?;
        Ok(self.out)
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        size: u32,
        rmajor: u32,
        rminor: u32,
    ) -> io::Result<()> {
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rmajor,
            rminor,
            namesize as u32,
            0,
        ];
        let mut head = String::with_capacity(110 + namesize);
        head.push_str(MAGIC);
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        head.push_str(name);
        head.push('\0');
        self.write_padded(head.as_bytes())
    }

    fn write_padded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        let pad = (4 - bytes.len() % 4) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.written += (bytes.len() + pad) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(archive: &[u8], header_at: usize, index: usize) -> u32 {
        let start = header_at + 6 + index * 8;
        let text = std::str::from_utf8(&archive[start..start + 8]).unwrap();
        u32::from_str_radix(text, 16).unwrap()
    }

    #[test]
    fn test_cpio_file_entry_header_and_padding() {
        let mut w = CpioWriter::new(Vec::new());

        w.entry("init", Kind::File, 0o755, b"abcde").unwrap();
        let out = w.finish().unwrap();

        assert_eq!(&out[0..6], b"070701");
        assert_eq!(field(&out, 0, 1), 0o100755);
        assert_eq!(field(&out, 0, 6), 5);
        assert_eq!(field(&out, 0, 11), 5);
        // 110 header + "init\0" = 115 -> padded to 116; data 5 -> padded to 8.
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..121], b"abcde");
        assert_eq!(&out[124..130], b"070701");
        assert_eq!(&out[124 + 110..124 + 110 + 10], b"TRAILER!!!");
        assert_eq!(out.len() % 512, 0);
    }

    #[test]
    fn test_cpio_char_device_sets_rdev() {
        let mut w = CpioWriter::new(Vec::new());

        w.entry(
            "dev/console",
            Kind::CharDev { major: 5, minor: 1 },
            0o600,
            b"",
        )
        .unwrap();
        let out = w.finish().unwrap();

        assert_eq!(field(&out, 0, 1), 0o020600);
        assert_eq!(field(&out, 0, 9), 5);
        assert_eq!(field(&out, 0, 10), 1);
    }

    #[test]
    fn test_cpio_symlink_data_is_target() {
        let mut w = CpioWriter::new(Vec::new());

        w.entry("bin", Kind::Symlink, 0o777, b"usr/bin").unwrap();
        let out = w.finish().unwrap();

        assert_eq!(field(&out, 0, 1), 0o120777);
        // 110 + "bin\0" = 114, padded to 116.
        assert_eq!(&out[116..123], b"usr/bin");
    }

    #[test]
    fn test_cpio_absolute_name_is_rejected() {
        let mut w = CpioWriter::new(Vec::new());

        let err = w.entry("/init", Kind::File, 0o755, b"").unwrap_err();

        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn test_cpio_inodes_are_distinct() {
        let mut w = CpioWriter::new(Vec::new());

        w.entry("a", Kind::Dir, 0o755, b"").unwrap();
        w.entry("b", Kind::Dir, 0o755, b"").unwrap();
        let out = w.finish().unwrap();

        // "a\0" -> 112 bytes of header, no data.
        assert_eq!(field(&out, 0, 0), 1);
        assert_eq!(field(&out, 112, 0), 2);
    }
}
