//! An initramfs under construction: a map from path to node, written out as a gzip'ed
//! newc cpio. Paths have no leading `/`. The layout is merged-`/usr` (`bin`, `sbin`, `lib`,
//! `lib64` are symlinks into `usr/`), and [`canonical`] maps package paths onto it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cpio::{CpioWriter, Kind};

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on the build host (read when the archive is written).
    Host(PathBuf),
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file and its permission bits.
    File { source: Source, perm: u32 },
    /// A symbolic link to `target`.
    Symlink(String),
    /// A character device.
    CharDev { major: u32, minor: u32, perm: u32 },
}

/// Maps a path from a package onto the merged-`/usr` layout:
/// `/lib/x` → `usr/lib/x`, `bin/x` → `usr/bin/x`; also removes `.` and resolves `..`.
pub fn canonical(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if let Some(first) = parts.first() {
        if matches!(*first, "bin" | "sbin" | "lib" | "lib64") {
            parts.insert(0, "usr");
        }
    }
    parts.join("/")
}

/// The tree. Parents are created as directories on insert.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// A tree with the merged-`/usr` skeleton, `/dev/console` and the usual mount points.
    pub fn skeleton() -> Self {
        let mut t = Tree::default();
        for d in [
            "dev",
            "proc",
            "sys",
            "run",
            "tmp",
            "root",
            "etc",
            "mnt",
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "usr/lib64",
        ] {
            t.dir(d);
        }
        for l in ["bin", "sbin", "lib", "lib64"] {
            t.symlink(l, &format!("usr/{l}"));
        }
        // The kernel opens /dev/console for init's stdio before anything is mounted.
        t.insert(
            "dev/console",
            Node::CharDev {
                major: 5,
                minor: 1,
                perm: 0o600,
            },
        );
        t.insert(
            "dev/null",
            Node::CharDev {
                major: 1,
                minor: 3,
                perm: 0o666,
            },
        );
        t.file_bytes("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
        t.file_bytes("etc/group", b"root:x:0:\n", 0o644);
        t
    }

    fn insert(&mut self, path: &str, node: Node) {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent {
            let s = p.to_string_lossy();
            if s.is_empty() {
                break;
            }
            self.nodes.entry(s.into_owned()).or_insert(Node::Dir);
            parent = p.parent();
        }
        self.nodes.insert(path.to_owned(), node);
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str) {
        self.insert(path, Node::Dir);
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Node::Symlink(target.to_owned()));
    }

    /// Adds a file copied from the build host (its content is read when writing).
    pub fn file_host(&mut self, path: &str, host: &Path, perm: u32) {
        self.insert(
            path,
            Node::File {
                source: Source::Host(host.to_path_buf()),
                perm,
            },
        );
    }

    /// Adds a file with the given content.
    pub fn file_bytes(&mut self, path: &str, bytes: &[u8], perm: u32) {
        self.insert(
            path,
            Node::File {
                source: Source::Bytes(bytes.to_vec()),
                perm,
            },
        );
    }

    /// True if `path` exists in the tree.
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// Writes the tree as a gzip'ed newc cpio to `out` (via a temporary file and rename).
    /// Returns the uncompressed size of the file data.
    pub fn write_cpio_gz(&self, out: &Path) -> Result<u64> {
        let tmp = out.with_extension("partial");
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        // gzip(1) is an essential Debian package and much faster than a debug-built
        // compressor in this process.
        let mut gzip = Command::new("gzip")
            .arg("-6")
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .context("could not start gzip")?;
        let stdin = gzip.stdin.take().context("gzip has no stdin")?;
        let mut cpio = CpioWriter::new(BufWriter::with_capacity(1 << 20, stdin));
        let mut total = 0u64;
        for (path, node) in &self.nodes {
            let res = match node {
                Node::Dir => cpio.entry(path, Kind::Dir, 0o755, b""),
                Node::Symlink(target) => cpio.entry(path, Kind::Symlink, 0o777, target.as_bytes()),
                Node::CharDev { major, minor, perm } => cpio.entry(
                    path,
                    Kind::CharDev {
                        major: *major,
                        minor: *minor,
                    },
                    *perm,
                    b"",
                ),
                Node::File { source, perm } => {
                    let owned;
                    let data: &[u8] = match source {
                        Source::Bytes(b) => b,
                        Source::Host(p) => {
                            owned = fs::read(p)
                                .with_context(|| format!("reading {} for /{path}", p.display()))?;
                            &owned
                        }
                    };
                    total += data.len() as u64;
                    cpio.entry(path, Kind::File, *perm, data)
                }
            };
            res.with_context(|| format!("writing /{path} to {}", tmp.display()))?;
        }
        let mut buf = cpio.finish()?;
        buf.flush()?;
        drop(buf);
        let status = gzip.wait()?;
        if !status.success() {
            bail!("gzip failed writing {}: {status}", tmp.display());
        }
        fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
        Ok(total)
    }

    /// Checks that every symlink inside the tree points to something in the tree.
    pub fn check_links(&self) -> Result<()> {
        for (path, node) in &self.nodes {
            if let Node::Symlink(target) = node {
                let resolved = if target.starts_with('/') {
                    canonical(target)
                } else {
                    let dir = Path::new(path)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    canonical(&format!("{dir}/{target}"))
                };
                if !self.nodes.contains_key(&resolved) {
                    bail!("dangling symlink in image: /{path} -> {target}");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_canonical_maps_onto_merged_usr() {
        assert_eq!(
            canonical("/lib/x86_64-linux-gnu/libc.so.6"),
            "usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(canonical("bin/busybox"), "usr/bin/busybox");
        assert_eq!(canonical("/usr/lib/a/../b/./c"), "usr/lib/b/c");
        assert_eq!(canonical("etc/passwd"), "etc/passwd");
        assert_eq!(
            canonical("/lib64/ld-linux-x86-64.so.2"),
            "usr/lib64/ld-linux-x86-64.so.2"
        );
    }

    #[test]
    fn test_tree_insert_creates_parents() {
        let mut t = Tree::default();

        t.file_bytes("a/b/c", b"x", 0o644);

        assert!(t.contains("a"));
        assert!(t.contains("a/b"));
        assert!(t.contains("a/b/c"));
    }

    #[test]
    fn test_check_links_reports_dangling() {
        let mut t = Tree::skeleton();
        t.symlink("usr/bin/ls", "/usr/bin/busybox");

        let result = t.check_links();

        assert!(result.is_err());
    }

    #[test]
    fn test_check_links_accepts_skeleton_with_target() {
        let mut t = Tree::skeleton();
        t.file_bytes("usr/bin/busybox", b"", 0o755);
        t.symlink("usr/bin/ls", "/bin/busybox");

        let result = t.check_links();

        assert!(result.is_ok());
    }
}
