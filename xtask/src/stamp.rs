//! What an image was built from: each image directory holds a stamp file `INPUTS` with a
//! fingerprint of the inputs kept in this crate (the `/init` script, the module, package and
//! program lists) and the kernel release it used. The commands that need an image (`demo`,
//! `test`, `ci`) rebuild it when it is missing or its fingerprint differs, with the same
//! kernel release.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The stamp file's name inside an image directory.
pub const FILE: &str = "INPUTS";

/// A stable fingerprint (FNV-1a, 64 bits, in hex) of `parts`, each length-prefixed.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in (part.len() as u64)
            .to_le_bytes()
            .iter()
            .chain(part.as_bytes())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The content of a stamp file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// [`fingerprint`] of the inputs.
    pub inputs: String,
    /// The kernel release the image was built with, e.g. `6.1.0-56-amd64`.
    pub kernel: String,
}

impl Stamp {
    fn parse(text: &str) -> Option<Stamp> {
        let mut inputs = None;
        let mut kernel = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("inputs", v)) => inputs = Some(v.trim().to_owned()),
                Some(("kernel", v)) => kernel = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        Some(Stamp {
            inputs: inputs?,
            kernel: kernel?,
        })
    }

    /// Writes `dir/INPUTS`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        fs::write(
            &path,
            format!(
                "# written by cargo xtask: what this image was built from\ninputs={}\nkernel={}\n",
                self.inputs, self.kernel
            ),
        )
        .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads `dir/INPUTS`, if there is a valid one.
    pub fn read(dir: &Path) -> Option<Stamp> {
        Stamp::parse(&fs::read_to_string(dir.join(FILE)).ok()?)
    }
}

/// Whether an image can be used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Built from the current inputs.
    Current,
    /// A file of the image is missing.
    Missing(PathBuf),
    /// Built from other inputs (or before stamps existed); rebuild with this kernel release
    /// if known.
    Stale(Option<String>),
}

/// The state of the image in `dir` made of `files`, for inputs with fingerprint `inputs`.
pub fn state(dir: &Path, files: &[&str], inputs: &str) -> State {
    if let Some(missing) = files.iter().map(|f| dir.join(f)).find(|p| !p.exists()) {
        return State::Missing(missing);
    }
    match Stamp::read(dir) {
        Some(s) if s.inputs == inputs => State::Current,
        Some(s) => State::Stale(Some(s.kernel)),
        None => State::Stale(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fingerprint_is_stable_and_separates_parts() {
        assert_eq!(fingerprint(&[]), "cbf29ce484222325");
        assert_eq!(fingerprint(&["ab"]), fingerprint(&["ab"]));
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }

    #[test]
    fn test_stamp_parse_round_trip() {
        let text = "# comment\ninputs=0123\nkernel=6.1.0-56-amd64\n";

        let s = Stamp::parse(text).unwrap();

        assert_eq!(s.inputs, "0123");
        assert_eq!(s.kernel, "6.1.0-56-amd64");
        assert_eq!(Stamp::parse("inputs=1\n"), None);
    }
}
