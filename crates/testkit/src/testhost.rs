//! Test host mode: write a batch script into the scratch directory, boot the nested test
//! host once under QEMU TCG with the scratch directory (read-write, `/scratch`) and the
//! guest images (read-only, `/guest`) shared over virtio-9p, capture its serial console,
//! and split it per run by the batch markers. A test host that dies or gets stuck is
//! replaced by a new one for the runs it did not finish (see [`crate::watch`]).
//!
//! Contract with the test host's `/init` (`xtask/testhost/init`): it loads KVM, mounts the
//! two shares, runs `sh /scratch/batch.sh` and powers off.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::capture::{Capture, Stream};
use crate::error::{Error, IoContext};
use crate::host_devices::HostDevices;
use crate::images::TestHost;
use crate::knobs::Knobs;
use crate::markers::{self, BATCH, GUEST_BOOT_DONE};
use crate::run::{GuestRun, RunResult, STDIN_DELAY};
use crate::watch::Watch;

/// Where the scratch directory is mounted in the test host.
pub const SCRATCH_MOUNT: &str = "/scratch";
/// Where the guest image directory is mounted in the test host.
pub const GUEST_MOUNT: &str = "/guest";
/// The test host's kernel command line.
pub const TESTHOST_CMDLINE: &str = "console=ttyS0 quiet loglevel=1 panic=-1";
/// Time allowed for the test host to boot and power off, on top of the runs' timeouts.
pub const BOOT_ALLOWANCE: Duration = Duration::from_secs(120);
/// Host variable whose value becomes `IOVM_LOG` of every iovm in the test host
/// (e.g. `IOVM_TEST_IOVM_LOG=debug`): iovm's own log on the run's console.
pub const IOVM_LOG_ENV: &str = "IOVM_TEST_IOVM_LOG";

/// Time allowed per run on top of its timeout (killing, markers).
pub const PER_RUN_ALLOWANCE: Duration = Duration::from_secs(15);
/// Test host boots per batch at most: a test host that dies or gets stuck (a known failure
/// of the nested test host under TCG, `docs/test-host.md`) is replaced by a new one for the
/// runs that did not finish, at most this many times in all.
pub const TESTHOST_BOOTS: u32 = 3;
/// How often the harness looks at the test host's console for progress.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The QEMU command that boots the test host with `scratch` and `guest_dir` shared.
/// Its serial console is QEMU's stdout.
/// The knobs of [`crate::knobs`] change the CPU, threading, vCPUs and
/// kernel command line.
pub fn command(
    host: &TestHost,
    scratch: &Path,
    guest_dir: &Path,
    knobs: &Knobs,
    devices: &HostDevices,
) -> Command {
    let mut cmd = Command::new(&host.qemu);
    for fw in &host.firmware {
        cmd.arg("-L").arg(fw);
    }
    let thread = if knobs.multi_thread {
        "multi"
    } else {
        "single"
    };
    let mut append = TESTHOST_CMDLINE.to_owned();
    for extra in [knobs.append.as_str(), devices.append()] {
        if !extra.is_empty() {
            append.push(' ');
            append.push_str(extra);
        }
    }
    cmd.args([
        "-accel",
        &format!("tcg,thread={thread}"),
        "-cpu",
        &knobs.cpu,
    ])
    .args(["-M", "q35", "-m", "8G", "-smp", &knobs.smp.to_string()])
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(&host.vmlinuz)
    .arg("-initrd")
    .arg(&host.initramfs)
    .arg("-append")
    .arg(append)
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=scratch,security_model=none",
        scratch.display()
    ))
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=guest,security_model=none,readonly=on",
        guest_dir.display()
    ));
    cmd.args(devices.qemu_args());
    cmd
}

/// The shell functions of the batch script (`@MARKER@`: the quoted boot marker, `@DELAY@`:
/// seconds to wait after it), after `S` (the scratch mount) and `T` (a directory in the
/// test host's own memory, not 9p) are set.
///
/// `run_one NAME LIMIT INPUT IOVM ARGS...` prints the begin marker, runs iovm with its output
/// on the console under a watchdog (which prints the timeout marker and kills iovm after
/// LIMIT seconds), waits for it and prints the end marker with iovm's exit code. With
/// INPUT `/dev/null` iovm's stdin is `/dev/null`. Otherwise iovm's stdin is the fifo
/// `$T/in` and its output goes through the fifo `$T/out` to `tee`, which copies it to the
/// console and `$T/log`; the feeder (`feed`) polls that log for the guest's boot marker,
/// waits the delay, types INPUT into `$T/in` and holds it open until iovm exits. The end
/// marker follows only once the feeder, `tee` (all of iovm's output is on the console) and
/// the watchdog (and its `sleep`) have ended: nothing of a run outlives it.
const RUN_ONE: &str = r#"up() { read -r u _ </proc/uptime; echo "$u"; }
start_watchdog() {
  ( s=
    trap '[ -n "$s" ] && kill "$s" 2>/dev/null && wait "$s" 2>/dev/null; exit 0' TERM
    sleep "$2" & s=$!
    wait "$s"
    if kill -0 "$3" 2>/dev/null; then
      printf '\n@@IOVM-BATCH timeout %s@@\n' "$1"
      kill -TERM "$3"; sleep 3 & s=$!; wait "$s"
      kill -KILL "$3" 2>/dev/null
    fi ) &
  wd=$!
}
feed() {
  until grep -qF @MARKER@ "$T/log"; do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.5
  done
  sleep @DELAY@
  cat "$2"
  while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
}
run_one() {
  name=$1; limit=$2; input=$3; shift 3
  printf '\n@@IOVM-BATCH begin %s t=%s@@\n' "$name" "$(up)"
  if [ "$input" = /dev/null ]; then
    "$@" </dev/null 2>&1 &
    pid=$!
    start_watchdog "$name" "$limit" "$pid"
    wait "$pid"; rc=$?
  else
    rm -f "$T/in" "$T/out"; : >"$T/log"
    mkfifo "$T/in" "$T/out"
    tee "$T/log" <"$T/out" &
    tee_pid=$!
    "$@" <"$T/in" >"$T/out" 2>&1 &
    pid=$!
    start_watchdog "$name" "$limit" "$pid"
    feed "$pid" "$input" >"$T/in" &
    feeder=$!
    wait "$pid"; rc=$?
    wait "$feeder"; wait "$tee_pid"
    rm -f "$T/in" "$T/out"
  fi
  kill "$wd" 2>/dev/null; wait "$wd" 2>/dev/null
  printf '\n@@IOVM-BATCH end %s rc=%d t=%s@@\n' "$name" "$rc" "$(up)"
}
"#;

/// The batch script: runs each guest in sequence between markers, each under a watchdog;
/// a run's stdin is typed after its guest prints the boot marker (`run_one` in the script).
pub fn batch_script(runs: &[GuestRun], iovm_in_host: &str, loader: Option<&str>) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Written by testkit: runs each guest between @@IOVM-BATCH markers.\n\
         S=/scratch\n\
         T=/tmp/iovm-batch\n\
         export LD_LIBRARY_PATH=$S/lib\n\
         mkdir -p \"$T\"\n",
    );
    if let Some(interp) = loader {
        let dir = Path::new(interp)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        let base = Path::new(interp)
            .file_name()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        s.push_str(&format!(
            "mkdir -p {} && ln -sf $S/lib/{} {}\n",
            shell_quote(&dir),
            shell_quote(&base),
            shell_quote(interp)
        ));
    }
    if let Ok(filter) = std::env::var(IOVM_LOG_ENV) {
        s.push_str(&format!("export IOVM_LOG={}\n", shell_quote(&filter)));
    }
    s.push_str(
        &RUN_ONE
            .replace("@MARKER@", &shell_quote(GUEST_BOOT_DONE))
            .replace("@DELAY@", &STDIN_DELAY.as_secs_f64().to_string()),
    );
    for run in runs {
        let args: Vec<String> = run
            .iovm_args(GUEST_MOUNT, SCRATCH_MOUNT)
            .iter()
            .map(|a| shell_quote(a))
            .collect();
        let input = if run.stdin.is_some() {
            format!("$S/runs/{}.stdin", run.name)
        } else {
            "/dev/null".into()
        };
        if let Some(before) = run.hook(
            run.host_before.as_ref(),
            SCRATCH_MOUNT,
            GUEST_MOUNT,
            iovm_in_host,
        ) {
            s.push_str(&format!(
                "sh -c {} || echo 'testkit: host_before of {} failed'\n",
                shell_quote(&before),
                run.name
            ));
        }
        let launcher: Vec<String> = run
            .launcher(iovm_in_host)
            .iter()
            .map(|a| shell_quote(a))
            .collect();
        s.push_str(&format!(
            "run_one {} {} {} {} {}\n",
            shell_quote(&run.name),
            run.timeout.as_secs().max(1),
            input,
            launcher.join(" "),
            args.join(" ")
        ));
        if let Some(after) = run.hook(
            run.host_after.as_ref(),
            SCRATCH_MOUNT,
            GUEST_MOUNT,
            iovm_in_host,
        ) {
            s.push_str(&format!(
                "sh -c {} || echo 'testkit: host_after of {} failed'\n",
                shell_quote(&after),
                run.name
            ));
        }
    }
    s.push_str("printf '\\n@@IOVM-BATCH done@@\\n'\n");
    s
}

/// Shared libraries of `bin` per `ldd`: (path, is the loader).
fn ldd(bin: &Path) -> Result<Vec<(PathBuf, bool)>, Error> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .ctx(|| format!("running ldd {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable": a static binary needs nothing.
        return Ok(Vec::new());
    }
    parse_ldd(&text).map_err(|reason| Error::InvalidRun {
        name: bin.display().to_string(),
        reason,
    })
}

/// Parses `ldd` output into (library path, is the loader).
pub(crate) fn parse_ldd(text: &str) -> Result<Vec<(PathBuf, bool)>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("not found") {
            return Err(format!("ldd: {line}"));
        }
        if let Some((_, rhs)) = line.split_once("=>") {
            if let Some(path) = rhs.split_whitespace().next().filter(|p| p.starts_with('/')) {
                libs.push((PathBuf::from(path), false));
            }
        } else if line.starts_with('/') {
            if let Some(path) = line.split_whitespace().next() {
                libs.push((PathBuf::from(path), true));
            }
        }
    }
    Ok(libs)
}

/// Kills QEMU if the harness returns early.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prepares the scratch directory, boots the test host and returns one result per run.
pub(crate) fn run_batch(
    host: &TestHost,
    iovm: &Path,
    runs: &[GuestRun],
    guest_dir: &Path,
    scratch: &Path,
    stream: Stream,
    devices: &HostDevices,
) -> Result<Vec<RunResult>, Error> {
    // The iovm binary and its libraries (from this host, which is Debian 12 like the test
    // host's user space would be).
    let bin_dir = scratch.join("bin");
    let lib_dir = scratch.join("lib");
    let runs_dir = scratch.join("runs");
    for d in [&bin_dir, &lib_dir, &runs_dir] {
        fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
    }
    let iovm_name = iovm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "iovm".into());
    fs::copy(iovm, bin_dir.join(&iovm_name))
        .ctx(|| format!("copying {} into {}", iovm.display(), bin_dir.display()))?;
    let mut loader = None;
    for (lib, is_loader) in ldd(iovm)? {
        let Some(name) = lib.file_name() else {
            continue;
        };
        fs::copy(&lib, lib_dir.join(name))
            .ctx(|| format!("copying {} into {}", lib.display(), lib_dir.display()))?;
        if is_loader {
            loader = Some(lib.to_string_lossy().into_owned());
        }
    }
    for run in runs {
        if let Some(input) = &run.stdin {
            let p = runs_dir.join(format!("{}.stdin", run.name));
            fs::write(&p, input).ctx(|| format!("writing {}", p.display()))?;
        }
    }
    let iovm_in_host = format!("{SCRATCH_MOUNT}/bin/{iovm_name}");
    let mut done: Vec<RunResult> = Vec::new();
    let mut pending: Vec<GuestRun> = runs.to_vec();
    for boot in 1..=TESTHOST_BOOTS {
        let log_path = scratch.join(if boot == 1 {
            "testhost-console.log".to_owned()
        } else {
            format!("testhost-console-{boot}.log")
        });
        let script = batch_script(&pending, &iovm_in_host, loader.as_deref());
        let script_path = scratch.join("batch.sh");
        fs::write(&script_path, script).ctx(|| format!("writing {}", script_path.display()))?;
        let started = Instant::now();
        let (results, stuck) = boot_once(
            host, &pending, guest_dir, scratch, &log_path, stream, devices,
        )?;
        // Straight to fd 2, past the test harness's capture: CI logs show where the time went.
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            timing_line(&program_name(), boot, started.elapsed(), &results)
        );
        if let Some(why) = &stuck {
            crate::losses::record(scratch, why, &log_path);
        }
        let more = boot < TESTHOST_BOOTS;
        let retry = stuck.is_some() && more;
        // A guest killed by the nested host's known fault is run again too,
        // on a fresh test host, and the loss recorded (never in direct mode).
        for r in &results {
            if let Some(why) = markers::nested_fault(&r.console) {
                crate::losses::record(scratch, &format!("run {}: {why}", r.name), &log_path);
            }
        }
        let (unfinished, finished): (Vec<RunResult>, Vec<RunResult>) =
            results.into_iter().partition(|r| {
                (retry && r.harness_error.is_some())
                    || (more && markers::nested_fault(&r.console).is_some())
            });
        done.extend(finished);
        if unfinished.is_empty() {
            break;
        }
        let names: Vec<&str> = unfinished.iter().map(|r| r.name.as_str()).collect();
        // Straight to fd 2, past the test harness's capture: a retry must show in CI logs.
        let _ = writeln!(
            std::io::stderr(),
            "testkit: {}; its console is in {}. Booting test host {} of {} for the {} run(s) \
             that did not finish: {}",
            stuck
                .as_deref()
                .unwrap_or("a guest died of the nested test host's known fault"),
            log_path.display(),
            boot + 1,
            TESTHOST_BOOTS,
            names.len(),
            names.join(", ")
        );
        pending.retain(|r| names.contains(&r.name.as_str()));
    }
    Ok(runs
        .iter()
        .filter_map(|run| {
            let at = done.iter().position(|r| r.name == run.name)?;
            Some(done.swap_remove(at))
        })
        .collect())
}

/// One line on what a test-host boot cost: its wall time, the time its runs took (from
/// their markers, in the test host's uptime), the rest (booting the test host, the runs'
/// host hooks, powering off), and each run's time.
pub(crate) fn timing_line(
    program: &str,
    boot: u32,
    wall: Duration,
    results: &[RunResult],
) -> String {
    let runs: Duration = results.iter().filter_map(|r| r.duration).sum();
    let each: Vec<String> = results
        .iter()
        .map(|r| match r.duration {
            Some(d) => format!("{} {:.1}", r.name, d.as_secs_f64()),
            None => format!("{} -", r.name),
        })
        .collect();
    format!(
        "testkit: timing: {program}: test host boot {boot}: {:.1} s wall, {:.1} s in {} run(s), \
         {:.1} s outside them; runs (s): {}",
        wall.as_secs_f64(),
        runs.as_secs_f64(),
        results.len(),
        wall.saturating_sub(runs).as_secs_f64(),
        each.join(", ")
    )
}

/// This program's name without cargo's hash (`guest_boot` for `guest_boot-0f72…`).
fn program_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
        _ => stem,
    }
}

/// Boots the test host once with the batch script already in `scratch`, waits for it to
/// power off (or gives up on it: overall limit, or [`Watch`] finds it stuck) and returns
/// one result per run, plus why the test host was given up as stuck, if it was.
fn boot_once(
    host: &TestHost,
    runs: &[GuestRun],
    guest_dir: &Path,
    scratch: &Path,
    log_path: &Path,
    stream: Stream,
    devices: &HostDevices,
) -> Result<(Vec<RunResult>, Option<String>), Error> {
    let limit = BOOT_ALLOWANCE
        + runs
            .iter()
            .map(|r| r.timeout + PER_RUN_ALLOWANCE)
            .sum::<Duration>();
    let log = File::create(log_path).ctx(|| format!("creating {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .ctx(|| format!("opening {}", log_path.display()))?;
    let knobs = Knobs::from_env().map_err(Error::BadKnob)?;
    let start = Instant::now();
    let mut child = command(host, scratch, guest_dir, &knobs, devices)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| format!("starting {}", host.qemu.display()))?;
    let capture = Capture::default();
    let prefix = "[testhost] ".to_owned();
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(capture.pump(out, Some(log), stream, prefix.clone()));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(capture.pump(err, Some(log2), stream, prefix));
    }
    let mut child = KillOnDrop(child);
    let mut failure: Option<String> = None;
    let mut stuck: Option<String> = None;
    let mut watch = Watch::new(runs);
    let mut last_look = Instant::now();
    loop {
        match child.0.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    failure = Some(format!("test host QEMU exited with {status}"));
                }
                break;
            }
            Ok(None) => {}
            Err(e) => {
                failure = Some(format!("waiting for test host QEMU: {e}"));
                break;
            }
        }
        if last_look.elapsed() >= WATCH_PERIOD {
            let elapsed = last_look.elapsed();
            last_look = Instant::now();
            stuck = watch.observe(&capture.text(), elapsed);
        }
        if stuck.is_some() || start.elapsed() >= limit {
            failure = Some(stuck.clone().unwrap_or_else(|| {
                format!(
                    "test host did not finish within {}s (its overall timeout)",
                    limit.as_secs()
                )
            }));
            stuck = failure.clone();
            let _ = child.0.kill();
            let _ = child.0.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child);
    for p in pumps {
        let _ = p.join();
    }
    let console = capture.text();
    if failure.is_none() && !console.contains(&format!("{BATCH}done@@")) {
        failure = Some("test host stopped before its batch script finished".into());
        stuck = failure.clone();
    }
    let sections = markers::split(&console);
    let results = runs
        .iter()
        .map(|run| {
            let section = sections.get(&run.name).cloned().unwrap_or_default();
            let harness_error = (!section.ended).then(|| {
                format!(
                    "{}; this run {}. Test host console ({}):\n{}",
                    failure
                        .as_deref()
                        .unwrap_or("test host lost this run's end marker"),
                    if section.begun {
                        "started but did not end"
                    } else {
                        "never started"
                    },
                    log_path.display(),
                    console
                )
            });
            let duration = match (section.t_begin, section.t_end) {
                (Some(b), Some(e)) if e >= b => Some(Duration::from_secs_f64(e - b)),
                _ => None,
            };
            RunResult {
                name: run.name.clone(),
                exit_code: if section.timed_out { None } else { section.rc },
                timed_out: section.timed_out,
                console: section.text,
                duration,
                harness_error,
            }
        })
        .collect();
    Ok((results, stuck))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_timing_line_splits_wall_time_into_runs_and_the_rest() {
        let run = |name: &str, secs: Option<f64>| RunResult {
            name: name.into(),
            exit_code: Some(0),
            timed_out: false,
            console: String::new(),
            duration: secs.map(Duration::from_secs_f64),
            harness_error: None,
        };

        let line = timing_line(
            "guest_x",
            2,
            Duration::from_secs(60),
            &[run("a", Some(20.0)), run("b", Some(25.5)), run("c", None)],
        );

        assert_eq!(
            line,
            "testkit: timing: guest_x: test host boot 2: 60.0 s wall, 45.5 s in 3 run(s), \
             14.5 s outside them; runs (s): a 20.0, b 25.5, c -"
        );
    }

    #[test]
    fn test_shell_quote_single_quotes() {
        assert_eq!(shell_quote("a'b c"), "'a'\\''b c'");
    }

    #[test]
    fn test_parse_ldd_lists_libs_and_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x1)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x3)\n";

        let libs = parse_ldd(text).unwrap();

        assert_eq!(
            libs,
            [
                (PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"), false),
                (PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), false),
                (PathBuf::from("/lib64/ld-linux-x86-64.so.2"), true),
            ]
        );
    }

    #[test]
    fn test_parse_ldd_not_found_is_error() {
        let r = parse_ldd("\tlibfoo.so.1 => not found\n");

        assert!(r.is_err());
    }

    #[test]
    fn test_batch_script_runs_each_with_markers() {
        let runs = [
            GuestRun::new("a").script("true"),
            GuestRun::new("b")
                .stdin("x")
                .timeout(Duration::from_secs(5)),
        ];

        let s = batch_script(
            &runs,
            "/scratch/bin/iovm",
            Some("/lib64/ld-linux-x86-64.so.2"),
        );

        assert!(s.contains("ln -sf $S/lib/'ld-linux-x86-64.so.2' '/lib64/ld-linux-x86-64.so.2'"));
        assert!(s.contains(
            "run_one 'a' 180 /dev/null '/scratch/bin/iovm' 'run' '--kernel' '/guest/vmlinux'"
        ));
        assert!(s.contains("run_one 'b' 5 $S/runs/b.stdin '/scratch/bin/iovm' 'run'"));
        assert!(s.ends_with("printf '\\n@@IOVM-BATCH done@@\\n'\n"));
    }

    /// The lines of `run_one`'s branch for runs without stdin, and of its other branch.
    fn run_one_branches(script: &str) -> (String, String) {
        let body = &script[script.find("run_one() {").unwrap()..];
        let plain = &body[body.find("  if [ \"$input\" = /dev/null ]").unwrap()..];
        let (plain, rest) = plain.split_once("  else\n").unwrap();
        let (typed, _) = rest.split_once("  fi\n").unwrap();
        (plain.to_owned(), typed.to_owned())
    }

    #[test]
    fn test_batch_script_types_stdin_only_after_boot_marker() {
        let runs = [
            GuestRun::new("plain").script("true"),
            GuestRun::new("typed").stdin("echo hi\n"),
        ];

        let s = batch_script(&runs, "/scratch/bin/iovm", None);

        assert!(s.contains("run_one 'plain' 180 /dev/null '/scratch/bin/iovm'"));
        assert!(s.contains("run_one 'typed' 180 $S/runs/typed.stdin '/scratch/bin/iovm'"));
        let feed = &s[s.find("feed() {").unwrap()..];
        let feed = &feed[..feed.find("\n}\n").unwrap()];
        let grep = feed
            .find("grep -qF 'IOVM-GUEST: boot done uptime=' \"$T/log\"")
            .unwrap();
        let delay = feed.find("sleep 1\n").unwrap();
        let cat = feed.find("cat \"$2\"").unwrap();
        assert!(grep < delay && delay < cat, "{feed}");
        let (plain, typed) = run_one_branches(&s);
        assert!(plain.contains("\"$@\" </dev/null 2>&1 &"), "{plain}");
        assert!(!plain.contains("feed") && !plain.contains("tee"), "{plain}");
        assert!(
            typed.contains("\"$@\" <\"$T/in\" >\"$T/out\" 2>&1 &"),
            "{typed}"
        );
        assert!(
            typed.contains("feed \"$pid\" \"$input\" >\"$T/in\" &"),
            "{typed}"
        );
    }

    #[test]
    fn test_batch_script_waits_for_helpers_before_end_marker() {
        let s = batch_script(&[GuestRun::new("typed").stdin("x")], "/i", None);

        let (_, typed) = run_one_branches(&s);
        let body = &s[s.find("run_one() {").unwrap()..];
        let wait_iovm = typed.find("wait \"$pid\"; rc=$?").unwrap();
        let wait_helpers = typed.find("wait \"$feeder\"; wait \"$tee_pid\"").unwrap();
        assert!(wait_iovm < wait_helpers, "{typed}");
        let wait_watchdog = body.find("kill \"$wd\" 2>/dev/null; wait \"$wd\"").unwrap();
        let end = body.find("@@IOVM-BATCH end").unwrap();
        assert!(wait_watchdog < end, "{body}");
        assert!(s.contains("T=/tmp/iovm-batch\n"));
    }

    /// A stand-in for the test host's QEMU: it "runs" each run named in `batch.sh` by
    /// printing its markers, except that on its first boot it hangs in run `b`.
    const FAKE_QEMU: &str = r#"#!/bin/sh
for a; do
  case "$a" in local,path=*,mount_tag=scratch,*) s=${a#local,path=}; s=${s%%,mount_tag=*};; esac
done
n=$(cat "$s/boots" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" >"$s/boots"
echo "IOVM-TESTHOST: ready uptime=1 kvm=yes"
for r in $(sed -n "s/^run_one '\([^']*\)'.*/\1/p" "$s/batch.sh"); do
  echo "@@IOVM-BATCH begin $r t=1@@"
  if [ "$n" = 1 ] && [ "$r" = b ]; then exec sleep 600; fi
  echo "ran $r in boot $n"
  echo "@@IOVM-BATCH end $r rc=0 t=2@@"
done
echo "@@IOVM-BATCH done@@"
"#;

    #[test]
    fn test_stuck_test_host_is_replaced_for_the_runs_that_did_not_finish() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("testkit-stuck-{}", std::process::id()));
        let scratch = dir.join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        let qemu = dir.join("fake-qemu");
        fs::write(&qemu, FAKE_QEMU).unwrap();
        fs::set_permissions(&qemu, fs::Permissions::from_mode(0o755)).unwrap();
        let host = TestHost {
            vmlinuz: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs"),
            qemu,
            firmware: Vec::new(),
        };
        let runs: Vec<GuestRun> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let mut r = GuestRun::new(*n);
                r.timeout = Duration::from_secs(1);
                r
            })
            .collect();

        let results = run_batch(
            &host,
            Path::new("/bin/true"),
            &runs,
            &dir,
            &scratch,
            Stream::Off,
            &HostDevices::default(),
        )
        .unwrap();

        let boots = fs::read_to_string(scratch.join("boots")).unwrap();
        let second_log = scratch.join("testhost-console-2.log").is_file();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(boots.trim(), "2");
        assert!(second_log);
        let seen: Vec<(&str, Option<i32>, bool, &str)> = results
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.exit_code,
                    r.harness_error.is_none(),
                    r.console.trim(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a", Some(0), true, "ran a in boot 1"),
                ("b", Some(0), true, "ran b in boot 2"),
                ("c", Some(0), true, "ran c in boot 2"),
            ]
        );
    }
}
