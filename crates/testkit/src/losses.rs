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
/// `why`, and the console that shows it, copied beside the record so it
/// outlives the batch's scratch directory (removed after a run unless
/// `IOVM_TEST_KEEP` is set). Best effort: a loss that cannot be recorded
/// is still reported by the harness on stderr.
pub fn record(scratch: &Path, why: &str, console: &Path) {
    let Some(path) = file_for(scratch) else {
        return;
    };
    let kept = kept_console(scratch, console);
    let console = if std::fs::copy(console, &kept).is_ok() {
        kept.as_path()
    } else {
        console
    };
    let line = format!("{why} (console: {})\n", console.display());
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
}

/// Where the console of a lost test host is kept: beside the record,
/// named after the batch and the console file.
fn kept_console(scratch: &Path, console: &Path) -> PathBuf {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let dir = scratch.parent().unwrap_or(scratch);
    dir.join(format!("lost-{}-{}", name(scratch), name(console)))
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
        let console = dir.join("batch-a/testhost-console.log");
        std::fs::write(&console, "the host's last words").unwrap();
        record(&dir.join("batch-a"), "stalled", &console);
        record(
            &dir.join("batch-b"),
            "died",
            Path::new("/nonexistent/b.log"),
        );
        let kept = dir.join("lost-batch-a-testhost-console.log");
        assert_eq!(
            read(&dir),
            vec![
                format!("stalled (console: {})", kept.display()),
                "died (console: /nonexistent/b.log)".to_owned()
            ]
        );
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            "the host's last words",
            "the console outlives the batch"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
