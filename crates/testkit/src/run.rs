//! What to run ([`GuestRun`]) and what happened ([`RunResult`]).

use std::fmt;
use std::time::Duration;

use crate::base64;
use crate::error::Error;
use crate::markers;

/// Kernel command line words the harness always starts with. `cryptomgr.notests` skips
/// the guest kernel's self-tests of its crypto algorithms, which cost seconds of every boot
/// under the nested test host's emulated CPU and test the kernel, not iovm.
pub const BASE_CMDLINE: &str = "console=ttyS0 loglevel=5 panic=-1 cryptomgr.notests";

/// The guest kernel a run boots unless it names one: the ELF `vmlinux`, through its PVH
/// entry (`cargo xtask guest` extracts it from `vmlinuz`), which spares each boot the
/// bzImage's decompression. Runs that test the bzImage boot protocol ask for
/// [`BZIMAGE_KERNEL`] with [`GuestRun::bzimage`].
pub const DEFAULT_KERNEL: &str = "vmlinux";

/// The initramfs a run gets unless it names one: the test guest's archive uncompressed,
/// which spares each boot inflating 95 MiB on an emulated CPU.
pub const DEFAULT_INITRAMFS: &str = "initramfs.cpio";

/// Debian's compressed kernel (bzImage), booted through the x86 boot protocol.
pub const BZIMAGE_KERNEL: &str = "vmlinuz";

/// The gzip-compressed initramfs, as `cargo xtask guest` builds it.
pub const GZIP_INITRAMFS: &str = "initramfs.cpio.gz";

/// Longest kernel command line on x86 (`COMMAND_LINE_SIZE` 2048, with the NUL).
pub const MAX_CMDLINE: usize = 2047;

/// Default per-run timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long after the guest's boot marker ([`markers::GUEST_BOOT_DONE`]) the harness
/// waits before typing a run's [`GuestRun::stdin`], so that the shell `/init` starts after
/// the marker is reading its input.
pub const STDIN_DELAY: Duration = Duration::from_secs(1);

/// One invocation of `iovm run` booting the test guest.
///
/// The harness builds the command line as
/// `iovm run [--kernel K] [--initramfs I] [--serial stdio] [--cmdline C] <args>`,
/// adding each of the bracketed options only if `args` does not already contain it.
/// `K` is [`DEFAULT_KERNEL`] and `I` [`DEFAULT_INITRAMFS`] in the guest directory, or
/// [`BZIMAGE_KERNEL`] and [`GZIP_INITRAMFS`] after [`GuestRun::bzimage`].
/// `C` is [`BASE_CMDLINE`], then [`GuestRun::cmdline`] words, then `iovm.run=<base64>` if a
/// script is set.
///
/// In `args`, `{scratch}` is replaced by the batch's scratch directory as iovm sees it
/// (see [`crate::Batch::scratch_dir`]) and `{guest}` by the directory holding the guest's
/// kernel and initramfs files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRun {
    /// Unique name within a batch: letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// Arguments after `iovm run`.
    pub args: Vec<String>,
    /// Shell script the guest's `/init` runs (then it powers off).
    pub script: Option<String>,
    /// Extra kernel command line words.
    pub cmdline: Vec<String>,
    /// Bytes typed into iovm's standard input (the guest's console input with
    /// `--serial stdio`) once the guest has printed its boot marker; see
    /// [`GuestRun::stdin`].
    pub stdin: Option<String>,
    /// Time allowed for this run, after which iovm is killed.
    pub timeout: Duration,
    /// Shell commands run (with `sh -c`) where iovm runs, just before it starts; see
    /// [`GuestRun::host_before`].
    pub host_before: Option<String>,
    /// Shell commands run where iovm runs, just after it ended.
    pub host_after: Option<String>,
    /// A network namespace (a bound namespace file) iovm runs in; see
    /// [`GuestRun::netns`].
    pub netns: Option<String>,
    /// Environment variables iovm gets (`NAME`, `VALUE`); see [`GuestRun::env`].
    pub env: Vec<(String, String)>,
    /// iovm starts with no machine (no `--kernel`, `--initramfs`,
    /// `--cmdline`): a client of its API creates and boots it; see
    /// [`GuestRun::empty_vmm`].
    pub empty_vmm: bool,
    /// Boots [`BZIMAGE_KERNEL`] with [`GZIP_INITRAMFS`] instead of the defaults; see
    /// [`GuestRun::bzimage`].
    pub bzimage: bool,
}

/// The script as the guest's /init takes it: gzipped when that is shorter
/// (the kernel command line holds 2 KiB; /init gunzips what is gzipped).
fn script_payload(script: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let packed = gz
        .write_all(script.as_bytes())
        .and_then(|()| gz.finish())
        .unwrap_or_default();
    if !packed.is_empty() && packed.len() < script.len() {
        packed
    } else {
        script.as_bytes().to_vec()
    }
}

impl GuestRun {
    /// A run with no extra arguments, no script (interactive shell: give it `stdin`) and
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(name: impl Into<String>) -> Self {
        GuestRun {
            name: name.into(),
            args: Vec::new(),
            script: None,
            cmdline: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            host_before: None,
            host_after: None,
            netns: None,
            env: Vec::new(),
            empty_vmm: false,
            bzimage: false,
        }
    }

    /// Boots Debian's bzImage ([`BZIMAGE_KERNEL`]) through the x86 boot protocol, with
    /// the gzip-compressed initramfs ([`GZIP_INITRAMFS`]), instead of [`DEFAULT_KERNEL`]
    /// through PVH and [`DEFAULT_INITRAMFS`]: for the runs that test those paths.
    pub fn bzimage(mut self) -> Self {
        self.bzimage = true;
        self
    }

    /// Sets an environment variable for iovm (started through `env NAME=VALUE`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs iovm inside the network namespace bound at `file` (with
    /// `nsenter --net=FILE`), so the TAP interfaces it opens or creates live
    /// there and the test's traffic never leaves it. The run's
    /// [`GuestRun::host_before`] hook makes the namespace (e.g.
    /// `touch F; unshare --net=F true`) and its `host_after` removes it
    /// (`umount F; rm F`).
    pub fn netns(mut self, file: impl Into<String>) -> Self {
        self.netns = Some(file.into());
        self
    }

    /// The program and leading arguments that start `iovm`: iovm itself, or
    /// `nsenter --net=FILE iovm` for a run in a network namespace, behind
    /// `env NAME=VALUE...` when the run sets variables.
    pub(crate) fn launcher(&self, iovm: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.env.is_empty() {
            out.push("env".into());
            out.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        if let Some(ns) = &self.netns {
            out.push("nsenter".into());
            out.push(format!("--net={ns}"));
        }
        out.push(iovm.into());
        out
    }

    /// Shell commands run with `sh -c` where iovm runs (inside the test host, or on
    /// this machine in direct mode) just before iovm starts, e.g. to put disk images
    /// on a fast file system; `{scratch}` and `{guest}` are replaced as in the
    /// arguments, `{iovm}` by the iovm binary's path there. A failure is
    /// printed but does not stop the run: the run's own checks will see what is missing.
    pub fn host_before(mut self, commands: impl Into<String>) -> Self {
        self.host_before = Some(commands.into());
        self
    }

    /// Shell commands run where iovm runs just after it ended (see
    /// [`GuestRun::host_before`]), e.g. to copy disk images back to the scratch
    /// directory, where the test can read them.
    pub fn host_after(mut self, commands: impl Into<String>) -> Self {
        self.host_after = Some(commands.into());
        self
    }

    /// A hook's commands with `{scratch}` replaced.
    pub(crate) fn hook(
        &self,
        commands: Option<&String>,
        scratch_dir: &str,
        guest_dir: &str,
        iovm: &str,
    ) -> Option<String> {
        commands.map(|c| {
            c.replace("{scratch}", scratch_dir)
                .replace("{guest}", guest_dir)
                .replace("{iovm}", iovm)
        })
    }

    /// Starts iovm with no machine: the harness leaves out `--kernel`,
    /// `--initramfs` and `--cmdline`, and a [`GuestRun::host_before`]
    /// driver creates and boots the guest through the API (`--api-socket`
    /// in `args`), with [`GuestRun::kernel_cmdline`] as its command line.
    pub fn empty_vmm(mut self) -> Self {
        self.empty_vmm = true;
        self
    }

    /// Appends one iovm argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends iovm arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the guest script.
    pub fn script(mut self, script: impl Into<String>) -> Self {
        self.script = Some(script.into());
        self
    }

    /// Appends a kernel command line word (or several, space-separated).
    pub fn cmdline(mut self, words: impl Into<String>) -> Self {
        self.cmdline.push(words.into());
        self
    }

    /// Sets what is typed into iovm's standard input, the guest's console with
    /// `--serial stdio`.
    ///
    /// Like a person at the console, the harness types it only after the guest prints its
    /// boot marker (`IOVM-GUEST: boot done`, [`markers::GUEST_BOOT_DONE`]) and
    /// [`STDIN_DELAY`] more have passed: input sent earlier reaches the guest's UART while
    /// `/init` is still busy and is partly lost. It is written all at once and standard
    /// input stays open (no end of file) until iovm exits. A guest that never prints the
    /// marker gets no input. Runs without `stdin` get `/dev/null`.
    pub fn stdin(mut self, input: impl Into<String>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn has_arg(&self, flag: &str) -> bool {
        self.args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    }

    /// The guest kernel command line this run gets.
    pub fn kernel_cmdline(&self) -> String {
        let mut c = BASE_CMDLINE.to_owned();
        for w in &self.cmdline {
            c.push(' ');
            c.push_str(w);
        }
        if let Some(s) = &self.script {
            c.push_str(" iovm.run=");
            c.push_str(&base64::encode(&script_payload(s)));
        }
        c
    }

    /// Checks the name and the command line length.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Error::InvalidRun {
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(invalid(
                "name must be non-empty letters, digits, '_', '-', '.'".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout is zero".into()));
        }
        let len = self.kernel_cmdline().len();
        if !self.has_arg("--cmdline") && len > MAX_CMDLINE {
            return Err(invalid(format!(
                "kernel command line is {len} bytes, more than {MAX_CMDLINE} \
                 (the script is gzipped and base64'ed into it: make it shorter)"
            )));
        }
        Ok(())
    }

    /// The full `iovm` argument list (starting with `run`), with placeholders replaced.
    pub(crate) fn iovm_args(&self, guest_dir: &str, scratch_dir: &str) -> Vec<String> {
        let mut out = vec!["run".to_owned()];
        let (kernel, initramfs) = if self.bzimage {
            (BZIMAGE_KERNEL, GZIP_INITRAMFS)
        } else {
            (DEFAULT_KERNEL, DEFAULT_INITRAMFS)
        };
        if !self.empty_vmm && !self.has_arg("--kernel") {
            out.push("--kernel".into());
            out.push(format!("{guest_dir}/{kernel}"));
        }
        if !self.empty_vmm && !self.has_arg("--initramfs") {
            out.push("--initramfs".into());
            out.push(format!("{guest_dir}/{initramfs}"));
        }
        if !self.has_arg("--serial") {
            out.push("--serial".into());
            out.push("stdio".into());
        }
        if !self.empty_vmm && !self.has_arg("--cmdline") {
            out.push("--cmdline".into());
            out.push(self.kernel_cmdline());
        }
        out.extend(self.args.iter().map(|a| {
            a.replace("{scratch}", scratch_dir)
                .replace("{guest}", guest_dir)
        }));
        out
    }
}

/// What one [`GuestRun`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The run's name.
    pub name: String,
    /// iovm's exit code; `None` if it was killed by a signal or never finished.
    pub exit_code: Option<i32>,
    /// True if the harness killed iovm because the run's timeout expired.
    pub timed_out: bool,
    /// Everything iovm wrote to stdout and stderr (the guest's serial console), with `\r`
    /// removed.
    pub console: String,
    /// Wall time of the run, where known.
    pub duration: Option<Duration>,
    /// Set if the harness could not complete this run (e.g. the test host died or timed
    /// out before it ended); includes the test host's console.
    pub harness_error: Option<String>,
}

impl RunResult {
    /// The status the guest script exited with, from the last
    /// `IOVM-GUEST: exit status=<N>` line.
    pub fn guest_exit_status(&self) -> Option<i32> {
        markers::guest_exit_status(&self.console)
    }

    /// True if the guest's `/init` printed `IOVM-GUEST: boot done`.
    pub fn boot_done(&self) -> bool {
        self.boot_uptime().is_some()
    }

    /// The guest's uptime in seconds when its `/init` printed `boot done`.
    pub fn boot_uptime(&self) -> Option<f64> {
        markers::boot_uptime(&self.console)
    }

    /// The value a guest script printed as a `key=value` word on the console; panics with
    /// the run's dump when there is none (for tests).
    #[track_caller]
    pub fn fact(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.console
            .lines()
            .flat_map(|l| l.split_whitespace())
            .find_map(|w| w.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {key}= in run {}\n{}", self.name, self.dump()))
    }

    /// The console lines between `boot done` and `exit status` (what the script printed).
    pub fn script_output(&self) -> String {
        markers::script_output(&self.console)
    }

    /// Kernel log lines that signal a problem (`WARNING:`, `BUG:`, `Oops`, `Call Trace:`,
    /// `Kernel panic`, `general protection fault`, …).
    pub fn kernel_problems(&self) -> Vec<String> {
        markers::kernel_problems(&self.console)
    }

    /// True if the run completed, iovm exited 0 and the guest script exited 0.
    pub fn succeeded(&self) -> bool {
        self.harness_error.is_none()
            && !self.timed_out
            && self.exit_code == Some(0)
            && self.guest_exit_status() == Some(0)
    }

    /// Panics with the whole console unless [`RunResult::succeeded`].
    #[track_caller]
    pub fn assert_success(&self) {
        if !self.succeeded() {
            panic!("run {:?} did not succeed\n{}", self.name, self.dump());
        }
    }

    /// Panics with the whole console if [`RunResult::kernel_problems`] is not empty.
    #[track_caller]
    pub fn assert_clean_dmesg(&self) {
        let problems = self.kernel_problems();
        if !problems.is_empty() {
            panic!(
                "run {:?}: kernel reported problems:\n  {}\n{}",
                self.name,
                problems.join("\n  "),
                self.dump()
            );
        }
    }

    /// A summary line followed by the whole console, for test failure messages.
    pub fn dump(&self) -> String {
        let mut s = format!(
            "===== run {}: exit_code={:?} timed_out={} guest_exit_status={:?} duration={:?}",
            self.name,
            self.exit_code,
            self.timed_out,
            self.guest_exit_status(),
            self.duration
        );
        if let Some(e) = &self.harness_error {
            s.push_str(&format!("\n===== harness error: {e}"));
        }
        s.push_str("\n===== console:\n");
        s.push_str(&self.console);
        if !self.console.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&format!("===== end of run {}\n", self.name));
        s
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dump())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_iovm_args_adds_defaults_and_script() {
        let run = GuestRun::new("a").args(["--memory", "512M"]).script("true");

        let args = run.iovm_args("/guest", "/scratch");

        assert_eq!(
            args,
            [
                "run",
                "--kernel",
                "/guest/vmlinux",
                "--initramfs",
                "/guest/initramfs.cpio",
                "--serial",
                "stdio",
                "--cmdline",
                "console=ttyS0 loglevel=5 panic=-1 cryptomgr.notests iovm.run=dHJ1ZQ==",
                "--memory",
                "512M",
            ]
        );
    }

    #[test]
    fn test_iovm_args_bzimage_boots_the_compressed_kernel_and_initramfs() {
        let run = GuestRun::new("a").bzimage();

        let args = run.iovm_args("/guest", "/scratch");

        assert_eq!(
            args[..5],
            [
                "run",
                "--kernel",
                "/guest/vmlinuz",
                "--initramfs",
                "/guest/initramfs.cpio.gz",
            ]
        );
    }

    #[test]
    fn test_iovm_args_respects_overrides_and_placeholders() {
        let run = GuestRun::new("a")
            .args(["--kernel", "{scratch}/k", "--serial=off", "--cmdline", "x"])
            .arg("--disk=path={scratch}/d.img");

        let args = run.iovm_args("/g", "/s");

        assert_eq!(
            args,
            [
                "run",
                "--initramfs",
                "/g/initramfs.cpio",
                "--kernel",
                "/s/k",
                "--serial=off",
                "--cmdline",
                "x",
                "--disk=path=/s/d.img",
            ]
        );
    }

    #[test]
    fn test_launcher_enters_the_run_netns() {
        let plain = GuestRun::new("a");
        let namespaced = GuestRun::new("b").netns("/tmp/ns");

        assert_eq!(plain.launcher("/x/iovm"), vec!["/x/iovm"]);
        assert_eq!(
            namespaced.launcher("/x/iovm"),
            vec!["nsenter", "--net=/tmp/ns", "/x/iovm"]
        );
    }

    #[test]
    fn test_launcher_sets_the_run_environment() {
        let run = GuestRun::new("a").env("A", "1").netns("/tmp/ns");
        assert_eq!(
            run.launcher("/x/iovm"),
            vec!["env", "A=1", "nsenter", "--net=/tmp/ns", "/x/iovm"]
        );
    }

    #[test]
    fn test_kernel_cmdline_extra_words_before_script() {
        let run = GuestRun::new("a").cmdline("iommu=on").script("x");

        let c = run.kernel_cmdline();

        assert_eq!(
            c,
            "console=ttyS0 loglevel=5 panic=-1 cryptomgr.notests iommu=on iovm.run=eA=="
        );
    }

    #[test]
    fn test_validate_rejects_bad_name() {
        let r = GuestRun::new("a b").validate();

        assert!(matches!(r, Err(Error::InvalidRun { .. })));
    }

    #[test]
    fn test_validate_rejects_long_script() {
        // Incompressible: printable bytes from a xorshift generator.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: String = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect();
        let r = GuestRun::new("a").script(noise).validate();

        assert!(matches!(r, Err(Error::InvalidRun { .. })));
    }

    #[test]
    fn test_long_repetitive_script_is_gzipped_and_fits() {
        let run = GuestRun::new("a").script("echo hello\n".repeat(300));

        let line = run.kernel_cmdline();
        let payload = line.split_once("iovm.run=").unwrap().1;

        assert!(run.validate().is_ok(), "{} bytes", line.len());
        assert!(payload.starts_with("H4sI"), "gzip magic 1f 8b 08 in base64");
    }

    #[test]
    fn test_result_success_needs_guest_status_zero() {
        let mut r = RunResult {
            name: "a".into(),
            exit_code: Some(0),
            timed_out: false,
            console: "IOVM-GUEST: boot done uptime=1.5\nhi\nIOVM-GUEST: exit status=0\n".into(),
            duration: None,
            harness_error: None,
        };
        assert!(r.succeeded());

        r.console = r.console.replace("status=0", "status=1");

        assert!(!r.succeeded());
        assert_eq!(r.guest_exit_status(), Some(1));
    }
}
