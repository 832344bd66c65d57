//! Staging files for a custom script ([`crate::Batch::run_script`]): executables with the
//! shared libraries they need, and directory trees, copied under `stage/` in the batch's
//! scratch directory. The script finds them under `$STAGE` (in the test host, a copy in
//! the test host's memory, so that running them does not read over 9p).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::batch::Batch;
use crate::error::{Error, IoContext};
use crate::testhost::parse_ldd;

/// Directory of staged files, under the scratch directory.
pub(crate) const STAGE_DIR: &str = "stage";

/// File in the stage directory listing the program interpreters (dynamic loaders) of the
/// staged executables, one absolute path per line: the test host links each to its copy
/// in `$STAGE/lib`.
pub(crate) const LOADERS_FILE: &str = ".loaders";

fn invalid(what: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidRun {
        name: what.display().to_string(),
        reason: reason.into(),
    }
}

/// Copies the tree at `src` to `dst`, following symbolic links.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), Error> {
    let meta = fs::metadata(src).ctx(|| format!("reading {}", src.display()))?;
    if !meta.is_dir() {
        fs::copy(src, dst).ctx(|| format!("copying {} to {}", src.display(), dst.display()))?;
        return Ok(());
    }
    fs::create_dir_all(dst).ctx(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).ctx(|| format!("listing {}", src.display()))? {
        let entry = entry.ctx(|| format!("listing {}", src.display()))?;
        copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
    }
    Ok(())
}

impl Batch {
    /// Copies the executable `bin` to `$STAGE/bin/` and the shared libraries it needs (per
    /// `ldd` on this machine) to `$STAGE/lib/`, and returns how a script names it:
    /// `$STAGE/bin/<file name>`. [`Batch::run_script`] sets `LD_LIBRARY_PATH` to
    /// `$STAGE/lib` and, in the test host, links the dynamic loader.
    pub fn stage_binary(&self, bin: &Path) -> Result<String, Error> {
        let stage = self.scratch_dir().join(STAGE_DIR);
        let (bin_dir, lib_dir) = (stage.join("bin"), stage.join("lib"));
        for d in [&bin_dir, &lib_dir] {
            fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
        }
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| invalid(bin, "not a file name"))?;
        fs::copy(bin, bin_dir.join(&name))
            .ctx(|| format!("copying {} into {}", bin.display(), bin_dir.display()))?;
        let out = Command::new("ldd")
            .arg(bin)
            .output()
            .ctx(|| format!("running ldd {}", bin.display()))?;
        // ldd fails on a static executable, which needs nothing.
        let libs = if out.status.success() {
            parse_ldd(&String::from_utf8_lossy(&out.stdout)).map_err(|r| invalid(bin, r))?
        } else {
            Vec::new()
        };
        for (lib, is_loader) in libs {
            let Some(file) = lib.file_name() else {
                continue;
            };
            fs::copy(&lib, lib_dir.join(file))
                .ctx(|| format!("copying {} into {}", lib.display(), lib_dir.display()))?;
            if is_loader {
                let list = stage.join(LOADERS_FILE);
                let mut text = fs::read_to_string(&list).unwrap_or_default();
                let line = lib.to_string_lossy();
                if !text.lines().any(|l| l == line) {
                    text.push_str(&line);
                    text.push('\n');
                    fs::write(&list, text).ctx(|| format!("writing {}", list.display()))?;
                }
            }
        }
        Ok(format!("$STAGE/bin/{name}"))
    }

    /// Copies the file or directory tree `src` (symbolic links followed) to
    /// `$STAGE/<name>` and returns that name as a script sees it. `name` is a relative
    /// path such as `share/qemu`.
    pub fn stage_dir(&self, src: &Path, name: &str) -> Result<String, Error> {
        let rel = Path::new(name);
        if name.is_empty() || rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            return Err(invalid(src, format!("bad stage name {name:?}")));
        }
        let dst = self.scratch_dir().join(STAGE_DIR).join(rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        copy_tree(src, &dst)?;
        Ok(format!("$STAGE/{name}"))
    }
}

/// The loaders listed in the stage directory under `scratch`.
pub(crate) fn loaders(scratch: &Path) -> Vec<String> {
    fs::read_to_string(scratch.join(STAGE_DIR).join(LOADERS_FILE))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    #[test]
    fn test_stage_dir_copies_tree_and_refuses_escapes() {
        let batch = Batch::with_mode(Mode::Direct).unwrap();
        let src = batch.scratch_dir().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "x").unwrap();

        let name = batch.stage_dir(&src, "share/data").unwrap();

        assert_eq!(name, "$STAGE/share/data");
        let copied = batch.scratch_dir().join("stage/share/data/sub/f");
        assert_eq!(fs::read_to_string(copied).unwrap(), "x");
        assert!(batch.stage_dir(&src, "../x").is_err());
        assert!(batch.stage_dir(&src, "/x").is_err());
    }

    #[test]
    fn test_stage_binary_copies_libs_and_records_loader() {
        let batch = Batch::with_mode(Mode::Direct).unwrap();
        let sh = Path::new("/bin/sh");

        let name = batch.stage_binary(sh).unwrap();

        assert_eq!(name, "$STAGE/bin/sh");
        assert!(batch.scratch_dir().join("stage/bin/sh").is_file());
        for loader in loaders(batch.scratch_dir()) {
            let file = Path::new(&loader).file_name().unwrap();
            assert!(batch.scratch_dir().join("stage/lib").join(file).is_file());
        }
    }
}
