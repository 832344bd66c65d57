//! What the benchmark runs, in which order, and the shell script that runs it where the
//! VMMs run (see [`testkit::Batch::run_script`] for the script's environment).

use testkit::guest_script_word;
use testkit::testhost::shell_quote;

use super::vmm::{Files, Vmm};

/// The kernel command line every VMM gets, before the guest script word.
pub const CMDLINE: &str = "console=ttyS0 panic=-1";

/// The exit-path guest script: accesses per batch and batches (see guest-tools/exit-probe).
pub const EXIT_PROBE: &str = "exit-probe 2000 7";

/// What the guest's `/init` prints once user space is up (see `xtask/guest/init`).
pub const MARKER: &str = "IOVM-GUEST: boot done";

/// The kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The guest powers off right after its init marker: times to the marker and to exit.
    Boot,
    /// The guest waits after its marker, while the VMM's memory is sampled.
    Memory,
    /// The guest times its own exits with `exit-probe` (iovm and QEMU q35: the
    /// probe needs PCI configuration space, which microvm has none of).
    Exits,
}

impl Kind {
    /// Name in run names.
    pub fn id(self) -> &'static str {
        match self {
            Kind::Boot => "boot",
            Kind::Memory => "memory",
            Kind::Exits => "exits",
        }
    }

    /// The script the guest runs after its marker (then it powers off).
    pub fn guest_script(self) -> &'static str {
        match self {
            Kind::Boot => ":",
            Kind::Memory => "sleep 2",
            Kind::Exits => EXIT_PROBE,
        }
    }

    /// The full kernel command line of this kind of run.
    pub fn cmdline(self) -> String {
        let extra = match self {
            // exit-probe maps the ECAM window from /dev/mem.
            Kind::Exits => " iomem=relaxed",
            Kind::Boot | Kind::Memory => "",
        };
        format!(
            "{CMDLINE}{extra} {}",
            guest_script_word(self.guest_script())
        )
    }

    /// The VMMs this kind of run compares.
    pub fn vmms(self) -> &'static [Vmm] {
        match self {
            Kind::Boot | Kind::Memory => &Vmm::ALL,
            Kind::Exits => &[Vmm::Iovm, Vmm::QemuQ35],
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSpec {
    /// What is measured.
    pub kind: Kind,
    /// Which VMM.
    pub vmm: Vmm,
    /// Repetition, from 1.
    pub rep: u32,
}

impl RunSpec {
    /// `<kind>.<vmm>.<rep>`, also the log's file name.
    pub fn name(&self) -> String {
        format!("{}.{}.{}", self.kind.id(), self.vmm.id(), self.rep)
    }
}

/// The runs in order: all boot runs, then all memory runs, then the exit-path runs;
/// within each, repetition by repetition with the VMMs interleaved, the first VMM
/// rotating from one repetition to the next so that none always runs first.
pub fn runs(reps: u32) -> Vec<RunSpec> {
    let mut out = Vec::new();
    for kind in [Kind::Boot, Kind::Memory, Kind::Exits] {
        let vmms = kind.vmms();
        let n = vmms.len();
        for rep in 1..=reps {
            let first = (rep as usize - 1) % n;
            for i in 0..n {
                let vmm = vmms[(first + i) % n];
                out.push(RunSpec { kind, vmm, rep });
            }
        }
    }
    out
}

/// Settings of a benchmark.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Repetitions per VMM and kind.
    pub reps: u32,
    /// Seconds before a run is killed.
    pub timeout_s: u64,
    /// Guest RAM, as `--memory`/`-m` take it.
    pub memory: String,
    /// Milliseconds after the marker at which memory runs sample the VMM's memory.
    pub sample_after_ms: u64,
}

/// A shell word for `s`: quoted, except that a leading `$STAGE/`, `$S/` or `$B/` stays a
/// variable.
fn word(s: &str) -> String {
    for var in ["STAGE", "S", "B"] {
        if let Some(rest) = s.strip_prefix(&format!("${var}/")) {
            return format!("\"${var}\"/{}", shell_quote(rest));
        }
    }
    shell_quote(s)
}

fn words<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| word(s.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bench script. `files` and `probe` (the `xtask` binary) are named as the script sees
/// them; the guest's kernel and initramfs are copied from `$G` to `$STAGE/guest/` first
/// (in the test host's memory), so `files.kernel` and `files.initramfs` should be there.
/// Writes into `$S/bench/`: `records.txt`, `logs/<run>.log`, and facts about where it ran
/// (`kernel.txt`, `cpuinfo.txt`, `qemu-version.txt`, `iovm-version.txt`).
pub fn script(runs: &[RunSpec], s: &Settings, files: &Files, probe: &str) -> String {
    let mut out = String::from(
        "# Written by cargo xtask bench: each run under bench-probe, which times it.\n\
         B=\"$S/bench\"\n\
         rm -rf \"$B\"\n\
         mkdir -p \"$B/logs\" \"$STAGE/guest\"\n\
         cp \"$G/vmlinuz\" \"$G/initramfs.cpio.gz\" \"$STAGE/guest/\" || exit 1\n\
         uname -r >\"$B/kernel.txt\"\n\
         cat /proc/cpuinfo >\"$B/cpuinfo.txt\"\n",
    );
    out.push_str(&format!(
        "{} --version >\"$B/qemu-version.txt\" 2>&1\n\
         {} --version >\"$B/iovm-version.txt\" 2>&1\n",
        word(&files.qemu),
        word(&files.iovm)
    ));
    out.push_str(&format!(
        "echo 'bench: {} runs: boot, then memory, then exit paths; VMMs interleaved, {} \
         repetitions each'\n",
        runs.len(),
        s.reps
    ));
    for run in runs {
        let name = run.name();
        let mut probe_cmd = vec![
            probe.to_owned(),
            "bench-probe".into(),
            "--name".into(),
            name.clone(),
            "--timeout".into(),
            s.timeout_s.to_string(),
            "--marker".into(),
            MARKER.into(),
        ];
        if run.kind == Kind::Memory {
            probe_cmd.push("--sample-after".into());
            probe_cmd.push(s.sample_after_ms.to_string());
        }
        probe_cmd.extend([
            "--log".into(),
            format!("$B/logs/{name}.log"),
            "--record".into(),
            "$B/records.txt".into(),
            "--".into(),
        ]);
        let vmm_cmd = run.vmm.command(files, &run.kind.cmdline(), &s.memory);
        out.push_str(&format!(
            "echo {}\n{} {}\n",
            shell_quote(&format!(
                "bench: {}, {}, repetition {} of {}",
                run.kind.id(),
                run.vmm.label(),
                run.rep,
                s.reps
            )),
            words(&probe_cmd),
            words(&vmm_cmd)
        ));
    }
    out.push_str("echo 'bench: all runs done'\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_runs_interleave_and_rotate() {
        let r = runs(2);

        let names: Vec<String> = r.iter().map(RunSpec::name).collect();
        assert_eq!(
            names,
            [
                "boot.iovm.1",
                "boot.qemu-microvm.1",
                "boot.qemu-q35.1",
                "boot.qemu-microvm.2",
                "boot.qemu-q35.2",
                "boot.iovm.2",
                "memory.iovm.1",
                "memory.qemu-microvm.1",
                "memory.qemu-q35.1",
                "memory.qemu-microvm.2",
                "memory.qemu-q35.2",
                "memory.iovm.2",
                "exits.iovm.1",
                "exits.qemu-q35.1",
                "exits.qemu-q35.2",
                "exits.iovm.2",
            ]
        );
    }

    #[test]
    fn test_word_keeps_variables() {
        assert_eq!(word("$STAGE/bin/iovm"), "\"$STAGE\"/'bin/iovm'");
        assert_eq!(word("$B/logs/a.log"), "\"$B\"/'logs/a.log'");
        assert_eq!(word("a b"), "'a b'");
        assert_eq!(word("$SX/a"), "'$SX/a'");
    }

    #[test]
    fn test_cmdline_carries_the_guest_script() {
        assert_eq!(
            Kind::Memory.cmdline(),
            "console=ttyS0 panic=-1 iovm.run=c2xlZXAgMg=="
        );
    }

    #[test]
    fn test_script_probes_each_run() {
        let files = Files {
            iovm: "$STAGE/bin/iovm".into(),
            qemu: "$STAGE/bin/qemu-system-x86_64".into(),
            firmware: vec![],
            kernel: "$STAGE/guest/vmlinuz".into(),
            initramfs: "$STAGE/guest/initramfs.cpio.gz".into(),
        };
        let settings = Settings {
            reps: 1,
            timeout_s: 60,
            memory: "512M".into(),
            sample_after_ms: 1000,
        };

        let s = script(&runs(1), &settings, &files, "$STAGE/bin/xtask");

        assert!(s.contains("echo 'bench: boot, iovm, repetition 1 of 1'\n"));
        assert!(s.contains(
            "\"$STAGE\"/'bin/xtask' 'bench-probe' '--name' 'boot.iovm.1' '--timeout' '60' \
             '--marker' 'IOVM-GUEST: boot done' '--log' \"$B\"/'logs/boot.iovm.1.log' \
             '--record' \"$B\"/'records.txt' '--' \"$STAGE\"/'bin/iovm' 'run'"
        ));
        assert!(s.contains(
            "'memory.qemu-q35.1' '--timeout' '60' '--marker' \
                            'IOVM-GUEST: boot done' '--sample-after' '1000'"
        ));
        assert_eq!(s.matches(" 'bench-probe' ").count(), 8);
        assert!(s.contains("'exits.qemu-q35.1'"));
    }
}
