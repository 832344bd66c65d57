//! Facts for the report: this machine, the place the VMMs ran, versions, the date.

use std::path::Path;
use std::process::Command;

use crate::hostmode;
use crate::paths;
use crate::run::run_output;

/// `<model name>, N CPUs` from the text of `/proc/cpuinfo`.
pub fn cpu_summary(cpuinfo: &str) -> String {
    let model = cpuinfo
        .lines()
        .filter(|l| l.starts_with("model name"))
        .find_map(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let n = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    format!("{model}, {n} CPU{}", if n == 1 { "" } else { "s" })
}

/// A display form of a command line: arguments with spaces or quotes single-quoted.
pub fn display_command(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '\'', '"']) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// The current UTC date and time.
pub fn date() -> String {
    run_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown date".into())
}

/// This machine: CPU, kernel, what its /dev/kvm is.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let kernel = read_trimmed(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default();
    format!(
        "{}; Linux {kernel}; {}",
        cpu_summary(&cpuinfo),
        hostmode::describe_kvm()
    )
}

/// The kernel and CPU where the VMMs ran, from the files the bench script wrote in `dir`.
pub fn run_place(dir: &Path) -> (String, String) {
    let kernel = read_trimmed(&dir.join("kernel.txt")).unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string(dir.join("cpuinfo.txt"))
        .map(|t| cpu_summary(&t))
        .unwrap_or_else(|_| "unknown".into());
    (kernel, cpu)
}

/// A version line the bench script saved in `dir/<file>`.
pub fn version(dir: &Path, file: &str) -> String {
    read_trimmed(&dir.join(file)).unwrap_or_else(|| "unknown version".into())
}

/// `git <short commit>`, with `+ uncommitted changes` if the tree is dirty.
pub fn git_commit() -> String {
    let root = paths::workspace();
    let commit =
        run_output(
            Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let dirty = run_output(Command::new("git").arg("-C").arg(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]));
    match (commit, dirty) {
        (Ok(c), Ok(d)) if d.trim().is_empty() => format!("git {}", c.trim()),
        (Ok(c), _) => format!("git {} + uncommitted changes", c.trim()),
        _ => "git commit unknown".into(),
    }
}

/// The guest image, from `target/guest/BUILD-INFO` and the initramfs size.
pub fn guest() -> String {
    let dir = paths::guest();
    let info = std::fs::read_to_string(dir.join("BUILD-INFO")).unwrap_or_default();
    let kernel = info
        .lines()
        .find_map(|l| l.strip_prefix("kernel "))
        .unwrap_or("unknown");
    let package = info
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("linux-image-"))
        .unwrap_or("");
    let size = std::fs::metadata(dir.join("initramfs.cpio.gz"))
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    format!(
        "Debian kernel {kernel} ({package}), busybox initramfs of `cargo xtask guest` \
         ({size:.1} MB compressed)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cpu_summary() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";

        assert_eq!(cpu_summary(text), "AMD EPYC 7B13, 2 CPUs");
        assert_eq!(cpu_summary(""), "unknown CPU, 0 CPUs");
    }

    #[test]
    fn test_display_command_quotes_spaces() {
        let args = ["iovm", "--cmdline", "console=ttyS0 panic=-1"].map(String::from);

        assert_eq!(
            display_command(&args),
            "iovm --cmdline 'console=ttyS0 panic=-1'"
        );
    }
}
