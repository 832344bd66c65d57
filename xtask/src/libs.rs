//! Shared-library closure of ELF binaries, resolved against unpacked Debian packages only
//! (never the build host's libraries): walk `PT_INTERP` and `DT_NEEDED`, search
//! `DT_RUNPATH` then the standard multiarch directories, and report what is missing so the
//! caller can fetch more packages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::elf;
use crate::rootfs::canonical;

/// Directories the loader searches after `DT_RUNPATH` (merged-`/usr` form).
const SYSTEM_DIRS: &[&str] = &["usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64"];

/// An entry of the index.
#[derive(Debug, Clone)]
enum Entry {
    File(PathBuf),
    Link(String),
}

/// All files of a set of unpacked packages, by canonical path, with the index of the
/// package each came from.
#[derive(Debug, Default)]
pub struct FileIndex {
    entries: BTreeMap<String, (usize, Entry)>,
}

impl FileIndex {
    /// Indexes package roots; `roots[i]` is package `i`.
    pub fn build(roots: &[&Path]) -> Result<Self> {
        let mut index = FileIndex::default();
        for (pkg, root) in roots.iter().enumerate() {
            index.walk(pkg, root, root)?;
        }
        Ok(index)
    }

    fn walk(&mut self, pkg: usize, root: &Path, dir: &Path) -> Result<()> {
        let rd = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for ent in rd {
            let ent = ent?;
            let path = ent.path();
            let rel = path
                .strip_prefix(root)
                .context("path outside package root")?
                .to_string_lossy()
                .into_owned();
            let ty = ent.file_type()?;
            if ty.is_dir() {
                self.walk(pkg, root, &path)?;
            } else if ty.is_symlink() {
                let target = fs::read_link(&path)?.to_string_lossy().into_owned();
                self.entries
                    .insert(canonical(&rel), (pkg, Entry::Link(target)));
            } else if ty.is_file() {
                self.entries
                    .insert(canonical(&rel), (pkg, Entry::File(path)));
            }
        }
        Ok(())
    }

    /// Adds a file directly (for tests and for extra trees).
    #[cfg(test)]
    fn add_file(&mut self, pkg: usize, path: &str, host: &Path) {
        self.entries
            .insert(canonical(path), (pkg, Entry::File(host.to_path_buf())));
    }

    #[cfg(test)]
    fn add_link(&mut self, pkg: usize, path: &str, target: &str) {
        self.entries
            .insert(canonical(path), (pkg, Entry::Link(target.to_owned())));
    }

    /// Follows symlinks from `path` to a regular file: (package, host path).
    pub fn resolve(&self, path: &str) -> Option<(usize, PathBuf)> {
        let mut cur = canonical(path);
        for _ in 0..40 {
            match self.entries.get(&cur)? {
                (pkg, Entry::File(p)) => return Some((*pkg, p.clone())),
                (_, Entry::Link(target)) => {
                    cur = if target.starts_with('/') {
                        canonical(target)
                    } else {
                        let dir = Path::new(&cur)
                            .parent()
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        canonical(&format!("{dir}/{target}"))
                    };
                }
            }
        }
        None
    }
}

/// A soname nobody provides yet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    /// The missing soname.
    pub soname: String,
    /// Canonical path of the file that needs it.
    pub needed_by: String,
    /// Package index of that file.
    pub package: usize,
}

/// The result of [`closure`].
#[derive(Debug, Default)]
pub struct Closure {
    /// Image path → host file, for the roots' loader and libraries (not the roots).
    pub files: BTreeMap<String, PathBuf>,
    /// Sonames not found.
    pub unresolved: Vec<Unresolved>,
}

fn expand_origin(entry: &str, origin_dir: &str) -> String {
    canonical(
        &entry
            .replace("${ORIGIN}", &format!("/{origin_dir}"))
            .replace("$ORIGIN", &format!("/{origin_dir}")),
    )
}

/// Computes the loader and library closure of `roots` (canonical image paths in `index`).
pub fn closure(index: &FileIndex, roots: &[String]) -> Result<Closure> {
    let mut out = Closure::default();
    let mut queue: VecDeque<String> = roots.iter().cloned().collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    while let Some(path) = queue.pop_front() {
        if !done.insert(path.clone()) {
            continue;
        }
        let (pkg, host) = index
            .resolve(&path)
            .with_context(|| format!("/{path} is in none of the unpacked packages"))?;
        let data = fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
        if !elf::is_elf(&data) {
            continue;
        }
        let dynamic = elf::dynamic(&data).with_context(|| format!("parsing {}", host.display()))?;
        if let Some(interp) = &dynamic.interp {
            let dest = canonical(interp);
            match index.resolve(&dest) {
                Some((_, file)) => {
                    out.files.insert(dest.clone(), file);
                    queue.push_back(dest);
                }
                None => out.unresolved.push(Unresolved {
                    soname: interp.clone(),
                    needed_by: path.clone(),
                    package: pkg,
                }),
            }
        }
        let origin = Path::new(&path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dirs: Vec<String> = dynamic
            .runpath
            .iter()
            .map(|r| expand_origin(r, &origin))
            .chain(SYSTEM_DIRS.iter().map(|s| s.to_string()))
            .collect();
        for soname in &dynamic.needed {
            if soname.contains('/') {
                bail!("{path}: DT_NEEDED with a path ({soname}) is not supported");
            }
            let found = dirs.iter().find_map(|d| {
                let p = format!("{d}/{soname}");
                index.resolve(&p).map(|(_, f)| (p, f))
            });
            match found {
                Some((dest, file)) => {
                    out.files.insert(dest.clone(), file);
                    queue.push_back(dest);
                }
                None => out.unresolved.push(Unresolved {
                    soname: soname.clone(),
                    needed_by: path.clone(),
                    package: pkg,
                }),
            }
        }
    }
    out.unresolved.sort();
    out.unresolved.dedup_by(|a, b| a.soname == b.soname);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_resolve_follows_relative_and_absolute_links() {
        let mut idx = FileIndex::default();
        idx.add_file(1, "lib/x86_64-linux-gnu/libc.so.6", Path::new("/h/libc"));
        idx.add_link(1, "lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so.real");
        idx.add_file(1, "usr/lib/x86_64-linux-gnu/ld.so.real", Path::new("/h/ld"));
        idx.add_link(2, "usr/lib/x86_64-linux-gnu/libz.so.1", "libz.so.1.2.13");
        idx.add_file(
            2,
            "usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
            Path::new("/h/z"),
        );

        let ld = idx.resolve("/lib64/ld.so");
        let z = idx.resolve("/lib/x86_64-linux-gnu/libz.so.1");

        assert_eq!(ld, Some((1, PathBuf::from("/h/ld"))));
        assert_eq!(z, Some((2, PathBuf::from("/h/z"))));
    }

    #[test]
    fn test_resolve_link_loop_is_none() {
        let mut idx = FileIndex::default();
        idx.add_link(0, "usr/lib/a", "b");
        idx.add_link(0, "usr/lib/b", "a");

        let r = idx.resolve("usr/lib/a");

        assert_eq!(r, None);
    }

    #[test]
    fn test_expand_origin_relative_to_binary_dir() {
        let r = expand_origin("$ORIGIN/../lib/ceph", "usr/bin");

        assert_eq!(r, "usr/lib/ceph");
    }

    #[test]
    fn test_closure_of_non_elf_root_is_empty() {
        let dir = std::env::temp_dir().join(format!("xtask-libs-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("script");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        let mut idx = FileIndex::default();
        idx.add_file(0, "usr/bin/script", &script);

        let c = closure(&idx, &["usr/bin/script".to_owned()]).unwrap();

        assert!(c.files.is_empty());
        assert!(c.unresolved.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
