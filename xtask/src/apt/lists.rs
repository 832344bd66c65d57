//! apt's package lists going stale: recognising apt-get's errors that say so, refreshing
//! the lists once per process, and reading `apt-cache policy` to choose a version apt can
//! still download.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::run::is_root;

/// Where `apt-cache policy` says an installed version comes from when no archive has it.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// The first of apt-get's error lines (`LC_ALL=C`) that says its package lists do not match
/// the archive: a version they name that no archive has, or a package or version they do
/// not know. Other errors (network, disk) give `None`.
pub fn stale_error(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("E: "))
        .find(|l| is_stale_error(l))
}

/// Whether one `E:` line of apt-get is one of the errors of [`stale_error`]; a file the
/// archive no longer has is `E: Failed to fetch URI  404  REASON` (the reason is the
/// server's own words).
fn is_stale_error(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    line.contains("Can't find a source to download version")
        || line.contains("Unable to locate package")
        || line.contains("has no installation candidate")
        || (line.starts_with("E: Version '") && line.ends_with("was not found"))
        || matches!(words[..], ["E:", "Failed", "to", "fetch", _, "404", ..])
}

/// What `apt-cache policy PACKAGE` (`LC_ALL=C`) says about one package.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The version apt would install, if any.
    pub candidate: Option<String>,
    /// The version table, newest first: each version with where it comes from (an
    /// archive's URI and suite, or [`DPKG_STATUS`] for the installed one).
    pub versions: Vec<(String, Vec<String>)>,
}

impl Policy {
    /// The version to download: the candidate if an archive has it, otherwise the newest
    /// version an archive has. `None` if apt knows the package only as installed (or not
    /// at all).
    pub fn downloadable(&self) -> Option<&str> {
        let in_archive = |version: &str| {
            self.versions
                .iter()
                .any(|(v, from)| v == version && from.iter().any(|f| f != DPKG_STATUS))
        };
        match &self.candidate {
            Some(c) if in_archive(c) => Some(c),
            _ => self
                .versions
                .iter()
                .map(|(v, _)| v.as_str())
                .find(|v| in_archive(v)),
        }
    }
}

/// Parses `apt-cache policy` for one package: its `Candidate:` line and its version table,
/// where a version line is `[***] VERSION PRIORITY` and each of its sources below it is
/// `PRIORITY LOCATION [SUITE ARCH Packages]`.
pub fn parse_policy(text: &str) -> Policy {
    let mut policy = Policy::default();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("Candidate:") {
            let c = c.trim();
            policy.candidate = (c != "(none)" && !c.is_empty()).then(|| c.to_owned());
            continue;
        }
        if line == "Version table:" {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let line = line.strip_prefix("***").unwrap_or(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_priority = |w: &str| w.parse::<i32>().is_ok();
        match words[..] {
            [version, priority] if is_priority(priority) => {
                policy.versions.push((version.to_owned(), Vec::new()));
            }
            [priority, location, ..] if is_priority(priority) => {
                if let Some((_, from)) = policy.versions.last_mut() {
                    from.push(location.to_owned());
                }
            }
            _ => {}
        }
    }
    policy
}

/// Set by the first [`refresh`] of the process.
static REFRESHED: AtomicBool = AtomicBool::new(false);

/// Refreshes apt's package lists, which `why` (apt's error) says are stale; only the first
/// call of the process does anything. As root it runs `apt-get update` quietly and returns
/// true (the caller retries); otherwise it prints one line saying to run
/// `sudo apt-get update` and returns false. A failing update is reported and still returns
/// true: the lists it did refresh may be enough.
pub fn refresh(why: &str) -> bool {
    if REFRESHED.swap(true, Ordering::SeqCst) {
        return false;
    }
    if !is_root() {
        println!(
            "xtask: apt's package lists are stale ({why}); not root, so not updating them: \
             run `sudo apt-get update`"
        );
        return false;
    }
    println!("xtask: apt's package lists are stale ({why}): running apt-get update");
    let output = Command::new("apt-get")
        .env("LC_ALL", "C")
        .args(["update", "-qq"])
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            println!(
                "xtask: apt-get update failed ({}): {}; retrying anyway",
                out.status,
                last.trim()
            );
        }
        Err(e) => println!("xtask: could not run apt-get update ({e}); retrying anyway"),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stale_error_finds_each_kind() {
        let cases = [
            "E: Can't find a source to download version '2.36-9+deb12u4' of 'libc6:amd64'",
            "E: Unable to locate package busybox-static",
            "E: Version '2.36-9+deb12u99' for 'libc6' was not found",
            "E: Package 'fio' has no installation candidate",
            "E: Failed to fetch http://deb.debian.org/debian/pool/main/f/fio/fio_3.33-3_amd64.deb  \
             404  Not Found [IP: 151.101.2.132 80]",
            "E: Failed to fetch http://127.0.0.1:8765/./zlib1g_1.2.13.dfsg-1%2bdeb12u0_amd64.deb  \
             404  File not found [IP: 127.0.0.1 8765]",
        ];
        for line in cases {
            let stderr = format!("W: something else\n{line}\n");

            assert_eq!(stale_error(&stderr), Some(line), "{line}");
        }
    }

    #[test]
    fn test_stale_error_ignores_other_failures() {
        let stderr = "W: Some index files failed to download\n\
                      E: Failed to fetch http://deb.debian.org/debian/pool/main/f/fio/fio_404_amd64.deb  \
                      Temporary failure resolving 'deb.debian.org'\n\
                      E: Failed to fetch http://deb.debian.org/debian/pool/main/f/fio/fio_3.33-3_amd64.deb  \
                      500  Internal Server Error 404 Not Found\n\
                      E: Write error - write (28: No space left on device)\n";

        assert_eq!(stale_error(stderr), None);
    }

    const POLICY_INSTALLED_ONLY: &str = "\
libc6:
  Installed: 2.36-9+deb12u14
  Candidate: 2.36-9+deb12u14
  Version table:
 *** 2.36-9+deb12u14 100
        100 /var/lib/dpkg/status
     2.36-9+deb12u7 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     2.36-9+deb12u4 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
";

    #[test]
    fn test_parse_policy_reads_candidate_and_table() {
        let policy = parse_policy(POLICY_INSTALLED_ONLY);

        assert_eq!(policy.candidate.as_deref(), Some("2.36-9+deb12u14"));
        assert_eq!(
            policy.versions,
            vec![
                ("2.36-9+deb12u14".to_owned(), vec![DPKG_STATUS.to_owned()]),
                (
                    "2.36-9+deb12u7".to_owned(),
                    vec!["http://deb.debian.org/debian-security".to_owned()]
                ),
                (
                    "2.36-9+deb12u4".to_owned(),
                    vec!["http://deb.debian.org/debian".to_owned()]
                ),
            ]
        );
    }

    #[test]
    fn test_downloadable_skips_a_candidate_only_installed() {
        let policy = parse_policy(POLICY_INSTALLED_ONLY);

        assert_eq!(policy.downloadable(), Some("2.36-9+deb12u7"));
    }

    #[test]
    fn test_downloadable_keeps_a_candidate_an_archive_has() {
        let text = "\
fio:
  Installed: (none)
  Candidate: 3.33-3
  Version table:
     3.35-1 -10
        -10 http://deb.debian.org/debian trixie/main amd64 Packages
     3.33-3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
";

        let policy = parse_policy(text);

        assert_eq!(policy.versions.len(), 2);
        assert_eq!(policy.downloadable(), Some("3.33-3"));
    }

    #[test]
    fn test_downloadable_none_without_an_archive() {
        let installed_only = "\
busybox-static:
  Installed: 1:1.35.0-4+b3
  Candidate: 1:1.35.0-4+b3
  Version table:
 *** 1:1.35.0-4+b3 100
        100 /var/lib/dpkg/status
";
        let unknown_or_none = "linux-image-6.1.0-9-amd64-unsigned:\n  Installed: (none)\n  \
                               Candidate: (none)\n  Version table:\n";

        assert_eq!(parse_policy(installed_only).downloadable(), None);
        assert_eq!(parse_policy(unknown_or_none).candidate, None);
        assert_eq!(parse_policy(unknown_or_none).downloadable(), None);
        assert_eq!(parse_policy("").downloadable(), None);
    }
}
