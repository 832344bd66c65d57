//! `cargo xtask ci`'s fuzz step: every cargo-fuzz target of `fuzz/` for [`SECONDS`] on the
//! nightly toolchain, one target per CPU at a time, after making sure the nightly toolchain
//! and cargo-fuzz are installed.
//! A failure is called a crash only when cargo-fuzz saved a new input under
//! `fuzz/artifacts/<target>/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::run::run_status;

/// How long CI fuzzes each target.
pub const SECONDS: u32 = 20;

/// A tool the fuzz step needs and how it is installed (the way `.ci/run` does).
struct Tool {
    /// What to call it in messages.
    name: &'static str,
    /// Whether it is installed.
    present: fn() -> bool,
    /// The command that installs it.
    install: &'static [&'static str],
}

/// The fuzz step's tools, in the order they are needed (cargo-fuzz is checked with nightly).
const TOOLS: [Tool; 2] = [
    Tool {
        name: "the nightly toolchain",
        present: has_nightly,
        install: &[
            "rustup",
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ],
    },
    Tool {
        name: "cargo-fuzz",
        present: has_cargo_fuzz,
        install: &["cargo", "install", "cargo-fuzz", "--locked"],
    },
];

/// Installs the missing tools, then runs every target of `fuzz/` for [`SECONDS`], as many
/// at once as this machine has CPUs ([`smoke_jobs`]: each libFuzzer process uses one, so
/// each target gets its [`SECONDS`] of a whole CPU while the step takes a fraction of the
/// time); returns the first failing exit status, or 0. After a failure no new target
/// starts. Fails if a tool cannot be installed.
pub fn smoke() -> Result<i32> {
    for tool in &TOOLS {
        ensure(tool)?;
    }
    let dir = paths::workspace().join("fuzz");
    let queue = Mutex::new(targets(&dir)?.into_iter());
    let failed: Mutex<Option<i32>> = Mutex::new(None);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..smoke_jobs())
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        if failed.lock().expect("fuzz step lock").is_some() {
                            return Ok(());
                        }
                        let Some(target) = queue.lock().expect("fuzz step lock").next() else {
                            return Ok(());
                        };
                        let code = run_target(&dir, &target, SECONDS)?;
                        if code != 0 {
                            failed.lock().expect("fuzz step lock").get_or_insert(code);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("a fuzz step worker panicked"))
    })?;
    let code = failed.lock().expect("fuzz step lock").unwrap_or(0);
    Ok(code)
}

/// How many fuzz targets the smoke step runs at once: one per CPU of this machine.
pub fn smoke_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `cargo xtask fuzz`: a campaign.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 3600)]
    pub seconds: u32,
    /// The targets to run (default: every target of fuzz/fuzz_targets, in name order).
    pub targets: Vec<String>,
}

/// Runs each target in turn for `args.seconds`, going on past a failure; prints one line
/// per target and returns 1 if any failed.
pub fn campaign(args: &FuzzArgs) -> Result<i32> {
    for tool in &TOOLS {
        ensure(tool)?;
    }
    let dir = paths::workspace().join("fuzz");
    let all = targets(&dir)?;
    let chosen: Vec<String> = if args.targets.is_empty() {
        all
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t} (targets: {})", all.join(", "));
            }
        }
        args.targets.clone()
    };
    let mut failed = Vec::new();
    for target in &chosen {
        println!("xtask: fuzz: {target} for {} s", args.seconds);
        if run_target(&dir, target, args.seconds)? != 0 {
            failed.push(target.clone());
        }
    }
    if failed.is_empty() {
        println!("xtask: fuzz: {} targets, no failure", chosen.len());
        Ok(0)
    } else {
        println!("xtask: fuzz: failed: {}", failed.join(", "));
        Ok(1)
    }
}

/// `program` from `PATH` (rustup's proxy) without the toolchain that runs xtask, so that
/// `+nightly` and rustup's default toolchain apply.
fn rustup_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
    cmd
}

/// Whether `rustup toolchain list` names a nightly toolchain.
fn has_nightly() -> bool {
    rustup_command("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|o| o.status.success() && lists_nightly(&String::from_utf8_lossy(&o.stdout)))
}

/// Whether the output of `rustup toolchain list` has a nightly toolchain
/// (`nightly-x86_64-unknown-linux-gnu`, or a dated `nightly-2024-05-01-...`).
fn lists_nightly(text: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with("nightly"))
}

/// Whether `cargo +nightly fuzz --version` works.
fn has_cargo_fuzz() -> bool {
    rustup_command("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs `tool` if it is missing, printing one line; fails with one line naming the tool
/// and its install command if installing does not make it present.
fn ensure(tool: &Tool) -> Result<()> {
    if (tool.present)() {
        return Ok(());
    }
    let command = tool.install.join(" ");
    println!(
        "xtask: ci: {} is missing: installing it ({command})",
        tool.name
    );
    let output = rustup_command(tool.install[0])
        .args(&tool.install[1..])
        .output();
    let why = match output {
        Ok(out) if out.status.success() && (tool.present)() => return Ok(()),
        Ok(out) if out.status.success() => "it succeeded, yet the tool is still missing".to_owned(),
        Ok(out) => format!("{}: {}", out.status, error_line(&out.stderr)),
        Err(e) => format!("could not start: {e}"),
    };
    bail!(
        "{} is missing and installing it failed ({why}); install it with `{command}`",
        tool.name
    )
}

/// The line of an installer's stderr that says what went wrong: the first `error:` line
/// (rustup and cargo follow it with causes and a backtrace), else the last non-empty line.
fn error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first_error = lines.clone().find(|l| l.starts_with("error"));
    first_error
        .or_else(|| lines.next_back())
        .unwrap_or("no output")
        .to_owned()
}

/// The fuzz targets: the `*.rs` files of `fuzz/fuzz_targets/`, sorted.
fn targets(dir: &Path) -> Result<Vec<String>> {
    let mut targets: Vec<String> = fs::read_dir(dir.join("fuzz_targets"))
        .context("listing fuzz/fuzz_targets")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_owned)
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// Runs `target` for [`SECONDS`] and returns its exit status (0 if it passed), printing one
/// line on failure: the input it saved, or that it saved none.
fn run_target(dir: &Path, target: &str, seconds: u32) -> Result<i32> {
    let artifacts = dir.join("artifacts").join(target);
    let before = file_names(&artifacts);
    let max_time = format!("-max_total_time={seconds}");
    // The working corpus (not in git) grows from the seeds in git.
    let corpus = format!("corpus/{target}");
    fs::create_dir_all(dir.join(&corpus)).with_context(|| format!("creating fuzz/{corpus}"))?;
    let seeds = format!("seeds/{target}");
    let mut cmd = rustup_command("cargo");
    cmd.current_dir(dir)
        .args(["+nightly", "fuzz", "run", target, &corpus]);
    if dir.join(&seeds).is_dir() {
        cmd.arg(&seeds);
    }
    let status = run_status(cmd.args(["--", &max_time]))?;
    if status.success() {
        return Ok(0);
    }
    let saved = failing_inputs(&before, &file_names(&artifacts));
    println!("xtask: ci: {}", describe_failure(target, status, &saved));
    Ok(status.code().unwrap_or(1))
}

/// The names of the files in `dir` (none if it does not exist).
fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The inputs libFuzzer saved during a run (`crash-*`, `leak-*`, `timeout-*`, `oom-*`): the
/// files in `after` but not in `before`, except `slow-unit-*`, which it saves without failing.
fn failing_inputs(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    after
        .difference(before)
        .filter(|name| !name.starts_with("slow-unit-"))
        .cloned()
        .collect()
}

/// The line that says why fuzz target `target` failed with `status`: what it found if it
/// saved `saved` inputs (their file name says the kind), otherwise that it failed before
/// finding anything (a build or cargo-fuzz failure).
fn describe_failure(target: &str, status: ExitStatus, saved: &[String]) -> String {
    let Some(first) = saved.first() else {
        return format!(
            "fuzz target {target} failed without saving an input under fuzz/artifacts/{target}/ \
             (cargo +nightly fuzz run: {status}): its build or cargo-fuzz failed, see above"
        );
    };
    let kind = [
        ("crash-", "a crash"),
        ("leak-", "a leak"),
        ("timeout-", "a timeout"),
        ("oom-", "an out-of-memory input"),
    ]
    .into_iter()
    .find(|(prefix, _)| first.starts_with(prefix))
    .map_or("a failing input", |(_, kind)| kind);
    format!(
        "fuzz target {target} found {kind} (cargo +nightly fuzz run: {status}), saved as \
         fuzz/artifacts/{target}/{first}; reproduce with: cd fuzz && cargo +nightly fuzz run \
         {target} artifacts/{target}/{first}"
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_lists_nightly() {
        let with = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n1.95.0-x86_64-unknown-linux-gnu\n";
        let dated = "stable-x86_64-unknown-linux-gnu (default)\nnightly-2024-05-01-x86_64-unknown-linux-gnu\n";
        let without = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                       1.95.0-x86_64-unknown-linux-gnu\n";

        assert!(lists_nightly(with));
        assert!(lists_nightly(dated));
        assert!(!lists_nightly(without));
        assert!(!lists_nightly("no installed toolchains\n"));
    }

    #[test]
    fn test_error_line_prefers_the_first_error() {
        let rustup = b"info: syncing channel updates for nightly-x86_64-unknown-linux-gnu\n\
            error: could not download file from 'http://127.0.0.1:9/dist/x'\n\n\
            Caused by:\n    0: error downloading file\nStack backtrace:\n  22: <unknown>\n";
        let other = b"  Updating crates.io index\nkilled\n\n";

        assert_eq!(
            error_line(rustup),
            "error: could not download file from 'http://127.0.0.1:9/dist/x'"
        );
        assert_eq!(error_line(other), "killed");
        assert_eq!(error_line(b""), "no output");
    }

    #[test]
    fn test_failing_inputs_are_new_files_but_slow_units() {
        let before = names(&["crash-old"]);
        let after = names(&["crash-old", "crash-1a2b", "slow-unit-3c4d", "leak-5e6f"]);

        assert_eq!(failing_inputs(&before, &after), ["crash-1a2b", "leak-5e6f"]);
        assert!(failing_inputs(&before, &before).is_empty());
    }

    #[test]
    fn test_describe_failure_without_input_is_no_crash() {
        let status = ExitStatus::from_raw(101 << 8);

        let line = describe_failure("nvme_command", status, &[]);

        assert!(!line.contains("crash"), "{line}");
        assert!(line.contains("exit status: 101"), "{line}");
        assert!(line.contains("failed without saving an input"), "{line}");
    }

    #[test]
    fn test_describe_failure_names_the_saved_input() {
        let status = ExitStatus::from_raw(1 << 8);

        let line = describe_failure("nvme_command", status, &["timeout-9f".to_owned()]);

        let other = describe_failure("nvme_command", status, &["input-1".to_owned()]);

        assert!(line.contains("found a timeout"), "{line}");
        assert!(other.contains("found a failing input"), "{other}");
        assert!(
            line.contains("fuzz/artifacts/nvme_command/timeout-9f"),
            "{line}"
        );
    }
}
