//! A record of the test hosts lost (died, stalled, went silent) by every
//! batch of a run, across test binaries: each loss appends a line to
//! [`LOSSES_FILE`] beside the batches' scratch directories, and `cargo
//! xtask ci` ends its log with the count (docs/test-host.md).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file, in the directory holding the batches' scratch directories.
pub const LOSSES_FILE: &str = "test-hosts-lost.log";

/// Where the losses of batches under `scratch`'s parent are recorded.
pub fn file_for(scratch: &Path) -> Option<PathBuf> {
    scratch.parent().map(|d| d.join(LOSSES_FILE))
}

/// Records that the test host of the batch in `scratch` was lost:
/// `why`, and the console that shows it. Best effort: a loss that cannot
/// be recorded is still reported by the harness on stderr.
pub fn record(scratch: &Path, why: &str, console: &Path) {
    let Some(path) = file_for(scratch) else {
        return;
    };
    let line = format!("{why} (console: {})\n", console.display());
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
}

/// The losses recorded in `dir` (one line each), oldest first.
pub fn read(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(LOSSES_FILE))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_losses_of_two_batches_are_read_back_in_order() {
        let dir = std::env::temp_dir().join(format!("testkit-losses-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("batch-a")).unwrap();
        assert!(read(&dir).is_empty());
        record(&dir.join("batch-a"), "stalled", Path::new("/a.log"));
        record(&dir.join("batch-b"), "died", Path::new("/b.log"));
        assert_eq!(
            read(&dir),
            vec!["stalled (console: /a.log)", "died (console: /b.log)"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
