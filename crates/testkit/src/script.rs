//! Running a caller's own shell script where guests run ([`Batch::run_script`]): the hook
//! for drivers that need more than a list of iovm runs, such as the benchmark (which runs
//! other VMMs too and times them itself).

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::base64;
use crate::batch::Batch;
use crate::capture::{Capture, Stream};
use crate::error::{Error, IoContext};
use crate::images;
use crate::mode::Mode;
use crate::stage::{loaders, STAGE_DIR};
use crate::testhost::{self, shell_quote, BOOT_ALLOWANCE, GUEST_MOUNT, SCRATCH_MOUNT};

/// Printed after the script as `@@IOVM-SCRIPT end rc=<N>@@`.
pub const SCRIPT_END: &str = "@@IOVM-SCRIPT end rc=";

/// The caller's script, in the scratch directory.
const SCRIPT_FILE: &str = "script.sh";
/// The wrapper; the test host's `/init` runs this name.
const WRAPPER_FILE: &str = "batch.sh";
/// The test host's name for the disk of [`Batch::with_disk`] (its only virtio disk).
const TESTHOST_DISK: &str = "/dev/vda";
/// Where the test host copies the stage directory (its `/run` is a tmpfs).
const STAGE_IN_TESTHOST: &str = "/run/iovm-stage";

/// The kernel command line word that makes the test guest's `/init` run `script` after its
/// boot marker (then print its exit status and power off): `iovm.run=<base64>`.
pub fn guest_script_word(script: &str) -> String {
    format!("iovm.run={}", base64::encode(script.as_bytes()))
}

/// What [`Batch::run_script`] saw.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    /// The console: the test host's whole serial console, or the script's stdout and
    /// stderr in direct mode; `\r` removed.
    pub console: String,
    /// The script's exit status, from [`SCRIPT_END`]; `None` if it did not finish.
    pub exit_code: Option<i32>,
    /// Why the script did not finish (timeout, test host died), if it did not.
    pub failure: Option<String>,
    /// Wall time, the test host's boot and power-off included.
    pub duration: Duration,
}

impl ScriptOutput {
    /// True if the script finished with exit status 0.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none() && self.exit_code == Some(0)
    }
}

/// The exit status in the last [`SCRIPT_END`] line of `console`.
pub(crate) fn script_rc(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| {
        let at = l.find(SCRIPT_END)?;
        l[at + SCRIPT_END.len()..].split("@@").next()?.parse().ok()
    })
}

/// The wrapper script that sets the environment and runs `$S/script.sh`.
pub(crate) fn wrapper(
    mode: Mode,
    scratch: &str,
    guest: &str,
    disk: Option<&str>,
    loaders: &[String],
) -> String {
    let mut s = format!(
        "#!/bin/sh\n\
         # Written by testkit (Batch::run_script): runs $S/{SCRIPT_FILE} with S, G, STAGE.\n\
         S={}\n\
         G={}\n\
         DISK={}\n\
         IOVM_MODE={mode}\n",
        shell_quote(scratch),
        shell_quote(guest),
        shell_quote(disk.unwrap_or("")),
    );
    match mode {
        Mode::Direct => s.push_str(&format!("STAGE=$S/{STAGE_DIR}\n")),
        Mode::TestHost => {
            s.push_str(&format!(
                "STAGE={STAGE_IN_TESTHOST}\n\
                 rm -rf \"$STAGE\"\n\
                 if [ -d \"$S/{STAGE_DIR}\" ]; then cp -r \"$S/{STAGE_DIR}\" \"$STAGE\"; \
                 else mkdir -p \"$STAGE\"; fi\n"
            ));
            for interp in loaders {
                let p = Path::new(interp);
                let (Some(dir), Some(file)) = (p.parent(), p.file_name()) else {
                    continue;
                };
                s.push_str(&format!(
                    "mkdir -p {} && ln -sf \"$STAGE/lib\"/{} {}\n",
                    shell_quote(&dir.to_string_lossy()),
                    shell_quote(&file.to_string_lossy()),
                    shell_quote(interp)
                ));
            }
        }
    }
    s.push_str(&format!(
        "export S G STAGE DISK IOVM_MODE\n\
         export LD_LIBRARY_PATH=\"$STAGE/lib\"\n\
         sh \"$S/{SCRIPT_FILE}\"\n\
         printf '\\n{SCRIPT_END}%d@@\\n' \"$?\"\n"
    ));
    s
}

/// Waits for `child` until it exits, or `limit` has passed since `start`, or `capture` has
/// grown by nothing for `silence` (then calls `kill`); returns why it failed, if it did.
fn supervise(
    child: &mut Child,
    start: Instant,
    limit: Duration,
    (capture, silence): (&Capture, Option<Duration>),
    what: &str,
    kill: impl FnOnce(&mut Child),
) -> Option<String> {
    let (mut seen, mut since) = (capture.len(), Instant::now());
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return None,
            Ok(Some(status)) => return Some(format!("{what} exited with {status}")),
            Ok(None) => {}
            Err(e) => return Some(format!("waiting for {what}: {e}")),
        }
        if start.elapsed() >= limit {
            kill(child);
            let _ = child.wait();
            return Some(format!(
                "{what} did not finish within {} s (its timeout)",
                limit.as_secs()
            ));
        }
        let now = capture.len();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if let Some(quiet) = silence.filter(|q| since.elapsed() >= *q) {
            kill(child);
            let _ = child.wait();
            return Some(format!(
                "{what} printed nothing for {} s (its silence limit): taken as stuck",
                quiet.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Batch {
    /// Runs `script`, a POSIX shell script, once where guests run and returns its console.
    ///
    /// It runs with `sh`: in test host mode as the test host's batch script (one boot of the
    /// test host, whose console is captured), in direct mode on this machine (streamed with
    /// the prefix `[script] `). A wrapper prints [`SCRIPT_END`] with its exit status after
    /// it. Its environment:
    /// - `S`: the scratch directory ([`Batch::scratch_dir`]; `/scratch` in the test host);
    /// - `G`: the directory of the guest's `vmlinuz` and `initramfs.cpio.gz`;
    /// - `STAGE`: the files staged with [`Batch::stage_binary`] and [`Batch::stage_dir`]
    ///   (in the test host, a copy in its memory);
    /// - `LD_LIBRARY_PATH=$STAGE/lib` (and, in the test host, the staged executables'
    ///   dynamic loaders linked where they expect them);
    /// - `IOVM_MODE`: `direct` or `testhost`;
    /// - `DISK`: the disk of [`Batch::with_disk`] (empty without one).
    ///
    /// `timeout` bounds the script; the test host gets [`BOOT_ALLOWANCE`] more to boot and
    /// power off. Errors only if nothing could be started; a script that fails or times
    /// out is in the output.
    pub fn run_script(&self, script: &str, timeout: Duration) -> Result<ScriptOutput, Error> {
        let guest_dir = images::require_guest()?;
        let scratch = self.scratch_dir();
        let script_path = scratch.join(SCRIPT_FILE);
        fs::write(&script_path, script).ctx(|| format!("writing {}", script_path.display()))?;
        let (text, mut cmd, limit, what, prefix) = match self.mode() {
            Mode::Direct => {
                let disk = self.disk().map(|d| d.to_string_lossy().into_owned());
                let text = wrapper(
                    Mode::Direct,
                    &scratch.to_string_lossy(),
                    &guest_dir.to_string_lossy(),
                    disk.as_deref(),
                    &[],
                );
                let mut cmd = Command::new("sh");
                cmd.arg(scratch.join(WRAPPER_FILE))
                    .current_dir(scratch)
                    .process_group(0);
                (text, cmd, timeout, "the script", "[script] ")
            }
            Mode::TestHost => {
                let host = images::require_testhost()?;
                let text = wrapper(
                    Mode::TestHost,
                    SCRATCH_MOUNT,
                    GUEST_MOUNT,
                    self.disk().map(|_| TESTHOST_DISK),
                    &loaders(scratch),
                );
                let knobs = crate::knobs::Knobs::from_env().map_err(Error::BadKnob)?;
                let mut cmd = testhost::command(&host, scratch, &guest_dir, &knobs, self.devices());
                if let Some(image) = self.disk() {
                    cmd.arg("-drive").arg(format!(
                        "file={},format=raw,if=virtio,cache=none,aio=io_uring",
                        image.display()
                    ));
                }
                (
                    text,
                    cmd,
                    timeout + BOOT_ALLOWANCE,
                    "the test host",
                    "[testhost] ",
                )
            }
        };
        let wrapper_path = scratch.join(WRAPPER_FILE);
        fs::write(&wrapper_path, text).ctx(|| format!("writing {}", wrapper_path.display()))?;

        let log_path = scratch.join(match self.mode() {
            Mode::Direct => "script-console.log",
            Mode::TestHost => "testhost-console.log",
        });
        let log = File::create(&log_path).ctx(|| format!("creating {}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .ctx(|| format!("opening {}", log_path.display()))?;
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ctx(|| format!("starting {what}"))?;
        let capture = Capture::default();
        let stream: Stream = self.streaming();
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(capture.pump(out, Some(log), stream, prefix.to_owned()));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(capture.pump(err, Some(log2), stream, prefix.to_owned()));
        }
        let mode = self.mode();
        let watch = (&capture, self.silence());
        let mut failure = supervise(&mut child, start, limit, watch, what, |c| match mode {
            // The script's children (VMMs) are in its process group.
            Mode::Direct => {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", c.id())])
                    .status();
            }
            Mode::TestHost => {
                let _ = c.kill();
            }
        });
        for p in pumps {
            let _ = p.join();
        }
        let console = capture.text();
        let exit_code = script_rc(&console);
        if failure.is_none() && exit_code.is_none() {
            failure = Some(format!("{what} stopped before the script ended"));
        }
        if let (Some(why), Mode::TestHost) = (&failure, mode) {
            crate::losses::record(self.scratch_dir(), why, &log_path);
        }
        Ok(ScriptOutput {
            console,
            exit_code,
            failure: failure.map(|f| format!("{f} (console: {})", log_path.display())),
            duration: start.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_script_rc_takes_last_end_marker() {
        let console = "x\n@@IOVM-SCRIPT end rc=3@@\nnoise @@IOVM-SCRIPT end rc=0@@\n";

        assert_eq!(script_rc(console), Some(0));
        assert_eq!(script_rc("no marker\n"), None);
    }

    #[test]
    fn test_wrapper_testhost_copies_stage_and_links_loader() {
        let loaders = ["/lib64/ld-linux-x86-64.so.2".to_owned()];

        let s = wrapper(
            Mode::TestHost,
            "/scratch",
            "/guest",
            Some(TESTHOST_DISK),
            &loaders,
        );

        assert!(s.contains("S='/scratch'\nG='/guest'\nDISK='/dev/vda'\nIOVM_MODE=testhost\n"));
        assert!(s.contains("cp -r \"$S/stage\" \"$STAGE\""));
        assert!(s.contains(
            "mkdir -p '/lib64' && ln -sf \"$STAGE/lib\"/'ld-linux-x86-64.so.2' \
             '/lib64/ld-linux-x86-64.so.2'\n"
        ));
        assert!(
            s.ends_with("sh \"$S/script.sh\"\nprintf '\\n@@IOVM-SCRIPT end rc=%d@@\\n' \"$?\"\n")
        );
    }

    #[test]
    fn test_wrapper_direct_uses_scratch_stage() {
        let s = wrapper(
            Mode::Direct,
            "/w/target/testkit/b",
            "/w/target/guest",
            None,
            &[],
        );

        assert!(s.contains("DISK=''\n"));
        assert!(s.contains("STAGE=$S/stage\n"));
        assert!(!s.contains("ln -sf"));
    }

    #[test]
    fn test_guest_script_word_is_base64() {
        assert_eq!(guest_script_word("sleep 2"), "iovm.run=c2xlZXAgMg==");
    }

    #[test]
    fn test_run_script_direct_runs_with_environment() {
        let batch = Batch::with_mode(Mode::Direct)
            .unwrap()
            .with_disk("/no/such/disk.img");

        let out = batch
            .run_script(
                "echo \"mode=$IOVM_MODE disk=$DISK stage=$STAGE\"; exit 3\n",
                Duration::from_secs(30),
            )
            .unwrap();

        assert_eq!(out.exit_code, Some(3));
        assert!(out.failure.is_none());
        assert!(out
            .console
            .contains("mode=direct disk=/no/such/disk.img stage="));
    }

    #[test]
    fn test_run_script_gives_up_on_a_silent_script() {
        let batch = Batch::with_mode(Mode::Direct)
            .unwrap()
            .silence_limit(Duration::from_secs(2));

        let out = batch
            .run_script(
                "echo started; sleep 30; echo never\n",
                Duration::from_secs(60),
            )
            .unwrap();

        assert_eq!(out.exit_code, None);
        let failure = out.failure.unwrap_or_default();
        assert!(failure.contains("printed nothing for 2 s"), "{failure}");
        assert!(out.duration < Duration::from_secs(20), "{:?}", out.duration);
        assert!(!out.console.contains("never"));
    }
}
