//! `cargo xtask bench`: boot time and memory of iovm against QEMU 7.2 (`-M microvm` and
//! `-M q35`), booting the same guest in the same place: inside the nested test host where
//! `/dev/kvm` is not hardware KVM, directly where it is.
//!
//! Everything runs in one [`testkit::Batch::run_script`]: the VMMs, their libraries and
//! firmware and the probe (this very binary, `xtask bench-probe`) are staged into the
//! batch, and a generated shell script ([`plan::script`]) runs every measured run under
//! the probe, which times it ([`probe`]) and appends a [`record::Record`]. Back here the
//! records and consoles become figures ([`boot`]), summaries ([`stats`]) and the report
//! ([`report`]).

mod boot;
mod device;
mod facts;
mod json;
mod plan;
mod plot;
pub mod probe;
mod record;
mod report;
mod stats;
mod vmm;

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use testkit::{Batch, Mode, Stream};

use crate::hostmode::{self, ModeChoice};
use crate::run::{cargo, run_status};
use crate::{guest, paths, testhost};

use self::plan::{Kind, Settings};
use self::record::Record;
use self::vmm::{Files, Vmm};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A smoke run: one repetition, without QEMU q35, the report in
    /// target/bench/RESULTS-quick.md (docs/bench/RESULTS.md is kept), and only
    /// iovm's runs must all count (what `cargo xtask ci` runs).
    #[arg(long, conflicts_with = "reps")]
    pub quick: bool,

    /// Repetitions per VMM and figure.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reps: u32,

    /// Where the VMMs run: directly on this machine's /dev/kvm, inside the nested test
    /// host, or auto (direct only where /dev/kvm is hardware KVM; IOVM_TEST_MODE may force
    /// it).
    #[arg(long, value_enum, default_value_t = ModeChoice::Auto)]
    pub mode: ModeChoice,

    /// Seconds allowed per run before its VMM is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub timeout: u64,

    /// Run only these figure groups (comma-separated; default: all). A run that leaves
    /// a group out writes its report to target/bench/RESULTS-partial.md.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "GROUP")]
    pub only: Vec<Group>,
}

/// A group of figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Boot, memory and exit paths: the VMMs booting a guest (in the test host where
    /// /dev/kvm is not hardware KVM).
    Vm,
    /// iovm's NVMe and virtio-blk device paths without a VM against the host's fio,
    /// directly on this machine.
    DevicePath,
}

impl BenchArgs {
    fn runs(&self, g: Group) -> bool {
        self.only.is_empty() || self.only.contains(&g)
    }

    /// Whether every group runs.
    fn all_groups(&self) -> bool {
        self.runs(Group::Vm) && self.runs(Group::DevicePath)
    }
}

/// Measured seconds per device-path run: full and `--quick`.
const DEVICE_SECONDS: (u32, u32) = (5, 2);

/// Guest RAM of every run.
const MEMORY: &str = "512M";
/// Memory runs sample the VMM this long after the init marker (the guest sleeps 2 s).
const SAMPLE_AFTER_MS: u64 = 1000;

/// Stages QEMU's firmware directories; returns them as the script names them.
fn stage_firmware(batch: &Batch, dirs: &[std::path::PathBuf]) -> Result<Vec<String>> {
    dirs.iter()
        .map(|d| {
            let name = d.file_name().context("firmware directory without a name")?;
            let staged = batch.stage_dir(d, &format!("share/{}", name.to_string_lossy()))?;
            Ok(staged)
        })
        .collect()
}

/// Builds what is missing, runs the benchmark, writes the report; returns xtask's exit
/// status (1 if any run did not count).
pub fn run(args: &BenchArgs) -> Result<i32> {
    let reps = if args.quick { 1 } else { args.reps };
    if args.runs(Group::DevicePath) {
        // Before a long VM group, so that a missing fio costs nothing.
        device::check_fio()?;
    }
    let vms = if args.runs(Group::Vm) {
        Some(run_vms(args, reps)?)
    } else {
        None
    };
    let dev = if args.runs(Group::DevicePath) {
        let secs = if args.quick {
            DEVICE_SECONDS.1
        } else {
            DEVICE_SECONDS.0
        };
        Some(device::run(reps, secs)?)
    } else {
        None
    };
    write_reports(args, reps, vms.as_ref(), dev.as_ref())
}

/// What the VM group leaves for the report.
struct VmResults {
    env: report::Env,
    outcomes: Vec<boot::Outcome>,
    /// Why the bench script did not finish, if it did not.
    script_failure: Option<String>,
}

/// The VM group: boots, memory and exit paths, in one batch.
fn run_vms(args: &BenchArgs, reps: u32) -> Result<VmResults> {
    let (mode, why) = hostmode::decide(args.mode)?;
    println!(
        "xtask: bench: {} ({why})",
        match mode {
            Mode::Direct => "running the VMMs directly on this machine's /dev/kvm",
            Mode::TestHost => "running the VMMs inside the nested test host (one boot of it)",
        }
    );
    guest::ensure()?;
    // QEMU 7.2 comes unpacked with the test host, needed in both modes.
    testhost::ensure()?;
    let status = run_status(cargo().args(["build", "--release", "-p", "iovm"]))?;
    if !status.success() {
        bail!("building iovm failed: {status}");
    }
    let iovm = paths::target().join("release/iovm");
    let host = testkit::images::require_testhost()?;

    let batch = Batch::with_mode(mode)?.stream_to(Stream::Stdout);
    let probe_bin = std::env::current_exe().context("finding the xtask binary")?;
    let probe = batch.stage_binary(&probe_bin)?;
    let files = Files {
        iovm: batch.stage_binary(&iovm)?,
        qemu: batch.stage_binary(&host.qemu)?,
        firmware: stage_firmware(&batch, &host.firmware)?,
        kernel: "$STAGE/guest/vmlinuz".into(),
        initramfs: "$STAGE/guest/initramfs.cpio.gz".into(),
    };
    let settings = Settings {
        reps,
        timeout_s: args.timeout,
        memory: MEMORY.into(),
        sample_after_ms: SAMPLE_AFTER_MS,
    };
    let mut runs = plan::runs(reps);
    if args.quick {
        // The smoke run keeps the harness working for every kind of run; it
        // leaves out QEMU q35, which now and then hangs the TCG test host
        // (docs/test-host.md) and would make CI fail for QEMU's sake.
        runs.retain(|r| r.vmm != Vmm::QemuQ35);
    }
    let script = plan::script(&runs, &settings, &files, &probe);
    let limit = Duration::from_secs((args.timeout + 20) * runs.len() as u64 + 120);
    println!(
        "xtask: bench: {} runs ({} VMMs × boot and memory, iovm and q35 × exit paths; \
         × {reps}); progress below",
        runs.len(),
        Vmm::ALL.len()
    );
    let out = batch.run_script(&script, limit)?;
    if let Some(f) = &out.failure {
        println!("xtask: bench: the script did not finish: {f}");
    }

    let bench_dir = batch.scratch_dir().join("bench");
    let records: Vec<Record> = fs::read_to_string(bench_dir.join("records.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(Record::parse)
        .collect();
    if records.is_empty() {
        bail!(
            "no run was measured (script exit status {:?}); console:\n{}",
            out.exit_code,
            out.console
        );
    }
    let out_dir = paths::target().join("bench");
    let logs_dir = out_dir.join("logs");
    let _ = fs::remove_dir_all(&logs_dir);
    fs::create_dir_all(&logs_dir).with_context(|| format!("creating {}", logs_dir.display()))?;
    let outcomes: Vec<boot::Outcome> = runs
        .iter()
        .map(|spec| {
            let name = spec.name();
            let log_path = bench_dir.join("logs").join(format!("{name}.log"));
            let console = fs::read(&log_path)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).replace('\r', ""));
            if let Some(text) = &console {
                let _ = fs::write(logs_dir.join(format!("{name}.log")), text);
            }
            let record = records.iter().find(|r| r.name == name).cloned();
            boot::evaluate(*spec, record, console.as_deref())
        })
        .collect();

    let plot_name = if args.quick {
        "ratios-quick.png"
    } else if !args.all_groups() {
        "ratios-partial.png"
    } else {
        "ratios.png"
    };
    let env = environment(mode, reps, &bench_dir, &files, plot_name);
    Ok(VmResults {
        env,
        outcomes,
        script_failure: out.failure.map(|f| f.to_string()),
    })
}

/// Writes results.json, the Markdown report and the chart; returns the exit status.
fn write_reports(
    args: &BenchArgs,
    reps: u32,
    vms: Option<&VmResults>,
    dev: Option<&device::Results>,
) -> Result<i32> {
    let out_dir = paths::target().join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let command = command_line(args, reps, vms.map(|v| v.env.mode));
    let json = report::json(&command, vms.map(|v| (&v.env, v.outcomes.as_slice())), dev);
    let json_path = out_dir.join("results.json");
    fs::write(&json_path, json.pretty())
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md = report::markdown(&command, vms.map(|v| (&v.env, v.outcomes.as_slice())), dev);
    // A smoke run (--quick) or one that left a group out keeps the committed
    // results: its report stays in target/.
    let md_path = if args.quick {
        out_dir.join("RESULTS-quick.md")
    } else if !args.all_groups() {
        out_dir.join("RESULTS-partial.md")
    } else {
        paths::workspace().join("docs/bench/RESULTS.md")
    };
    fs::create_dir_all(md_path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("creating {}", md_path.display()))?;
    fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let mut written = vec![md_path.display().to_string()];
    if let Some(v) = vms {
        let png_path = md_path.with_file_name(&v.env.plot);
        plot::ratios_png(
            &png_path,
            &v.outcomes,
            &format!("iovm and QEMU microvm against QEMU q35 ({})", v.env.date),
        )?;
        written.push(png_path.display().to_string());
    }
    written.push(json_path.display().to_string());
    println!("\n{md}");
    println!("xtask: bench: wrote {}", written.join(", "));

    let mut status = 0;
    if let Some(v) = vms {
        let failed = v.outcomes.iter().filter(|o| o.problem.is_some()).count();
        let iovm_failed = v
            .outcomes
            .iter()
            .filter(|o| o.problem.is_some() && o.spec.vmm == Vmm::Iovm)
            .count();
        if failed > 0 || v.script_failure.is_some() {
            println!(
                "xtask: bench: {failed} of {} runs did not count ({iovm_failed} of them iovm's)",
                v.outcomes.len()
            );
            // A smoke run checks that iovm's side of the harness works; a peer's
            // failure (QEMU q35 in the TCG test host fails now and then) is
            // reported above but does not fail it.
            if !args.quick || iovm_failed > 0 || v.script_failure.is_some() {
                status = 1;
            }
        }
    }
    if let Some(d) = dev {
        let failed = d.failures().count();
        if failed > 0 {
            println!(
                "xtask: bench: device-path: {failed} of {} runs did not count",
                d.runs.len()
            );
            status = 1;
        }
    }
    Ok(status)
}

/// The command that reproduces this benchmark.
fn command_line(args: &BenchArgs, reps: u32, mode: Option<Mode>) -> String {
    let mut command = format!("cargo xtask bench --reps {reps}");
    if let Some(mode) = mode {
        command.push_str(&format!(" --mode {mode}"));
    }
    if args.timeout != 180 {
        command.push_str(&format!(" --timeout {}", args.timeout));
    }
    if !args.all_groups() {
        let groups: Vec<&str> = [(Group::Vm, "vm"), (Group::DevicePath, "device-path")]
            .iter()
            .filter(|(g, _)| args.runs(*g))
            .map(|(_, n)| *n)
            .collect();
        command.push_str(&format!(" --only {}", groups.join(",")));
    }
    command
}

fn environment(mode: Mode, reps: u32, bench_dir: &Path, files: &Files, plot: &str) -> report::Env {
    let (run_kernel, run_cpu) = facts::run_place(bench_dir);
    let cmdline = format!(
        "{} iovm.run=<base64 of the guest script: `{}` for boot runs, `{}` for memory runs, \
         `{}` for exit-path runs (with `iomem=relaxed`)>",
        plan::CMDLINE,
        Kind::Boot.guest_script(),
        Kind::Memory.guest_script(),
        Kind::Exits.guest_script()
    );
    report::Env {
        date: facts::date(),
        mode,
        machine: facts::machine(),
        run_kernel,
        run_cpu,
        guest: facts::guest(),
        iovm: format!(
            "{}, {}",
            facts::version(bench_dir, "iovm-version.txt"),
            facts::git_commit()
        ),
        qemu: facts::version(bench_dir, "qemu-version.txt"),
        reps,
        memory: MEMORY.into(),
        sample_after_ms: SAMPLE_AFTER_MS,
        cmdline,
        commands: Vmm::ALL
            .iter()
            .map(|&v| {
                let c = v.command(files, &Kind::Boot.cmdline(), MEMORY);
                (v, facts::display_command(&c))
            })
            .collect(),
        plot: plot.into(),
    }
}
