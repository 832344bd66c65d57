//! `cargo xtask bench`: boot time, memory, exit paths, block and network I/O of iovm
//! against QEMU 7.2 (`-M microvm` and `-M q35`), and of the emulated IOMMU and device
//! assignment through VFIO against QEMU q35's, booting the same guest in the same
//! place: inside the nested test host where `/dev/kvm` is not hardware KVM, directly
//! where it is.
//!
//! Everything runs in one [`testkit::Batch::run_script`]: the VMMs, their libraries and
//! firmware and the probe (this very binary, `xtask bench-probe`) are staged into the
//! batch, and a generated shell script ([`plan::script`]) runs every measured run under
//! the probe, which times it ([`probe`]) and appends a [`record::Record`]. Back here the
//! records and consoles become figures ([`boot`]), summaries ([`stats`]), the report
//! ([`report`]), results.json ([`results`]) and a chart per group ([`plots`]).

mod block;
mod boot;
mod cpu_report;
mod device;
mod device_json;
mod facts;
mod goals;
mod io_report;
mod iommu;
mod marks;
mod net;
mod plan;
mod plots;
pub mod probe;
mod proc_stat;
mod record;
mod report;
mod results;
#[cfg(test)]
mod results_compat;
mod stats;
mod vfio;
mod vfio_host;
mod vfio_report;
mod vmm;
mod vmm_cpu;

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use testkit::{Batch, Mode, Stream};

use crate::hostmode::{self, ModeChoice};
use crate::run::{cargo, run_status};
use crate::{guest, paths, testhost};

pub use self::block::Storage;
use self::plan::{Kind, Settings};
use self::record::Record;
use self::vmm::{Files, Vmm};

/// Times the bench script may be started in all: a test host that dies or stops
/// (docs/test-host.md) is replaced by a new one that resumes the script.
const BOOTS: u32 = 3;

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A smoke run: one repetition, without QEMU q35, the report in
    /// target/bench/RESULTS-quick.md (docs/bench/RESULTS.md is kept), and only iovm's
    /// runs must all count (what `cargo xtask ci` runs). Of the block and net groups
    /// it runs only NVMe with 1 s fio jobs (unless --only names them: then NVMe and
    /// virtio-blk, 1 s jobs, and 16 MiB sent), to stay well under five minutes. The
    /// iommu group runs only when --only names it: then with QEMU q35, 1 s fio jobs and
    /// a shorter translate bench. So does the vfio group: then with QEMU q35, one
    /// repetition of 1 s fio jobs.
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

    /// Where the block group's disk images live, where the VMMs run (comma-separated):
    /// shm (a file in /dev/shm), disk (a raw image on this machine's disk with O_DIRECT,
    /// target/bench/disk.img; in the test host a virtio disk its QEMU backs with it), ram
    /// (brd's RAM disk /dev/ram0, root only).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STORAGE",
          default_values_t = block::Storage::DEFAULT)]
    pub storage: Vec<block::Storage>,
}

/// A group of figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Boot, memory and exit paths: the VMMs booting a guest (in the test host where
    /// /dev/kvm is not hardware KVM).
    Vm,
    /// fio in the guest on NVMe and virtio-blk disks, with KVM exits per I/O.
    Block,
    /// TCP throughput from the guest over a TAP: virtio-net, and the emulated
    /// Intel 82574L (e1000e) against QEMU's.
    Net,
    /// iovm's NVMe and virtio-blk device paths without a VM against the host's fio,
    /// directly on this machine.
    DevicePath,
    /// fio in the guest on NVMe and virtio-blk without and with the emulated VT-d
    /// (`intel_iommu=on iommu.strict=1`), iovm against QEMU q35 with its intel-iommu;
    /// then one translated 4 KiB DMA in process, on this machine.
    Iommu,
    /// fio in the guest on the test host's NVMe assigned through VFIO, iovm
    /// (`--device vfio-pci`) against QEMU q35 (`-device vfio-pci`), and the test host's
    /// own fio on it with its nvme driver as the limit; in the test host only.
    Vfio,
}

impl BenchArgs {
    fn runs(&self, g: Group) -> bool {
        self.only.is_empty() || self.only.contains(&g)
    }

    /// Whether every group runs.
    fn all_groups(&self) -> bool {
        Group::ALL.iter().all(|&g| self.runs(g))
    }

    /// The kinds of guest runs of the groups that run, in order.
    fn kinds(&self) -> Vec<Kind> {
        let mut out = Vec::new();
        if self.runs(Group::Vm) {
            out.extend(plan::VM_KINDS);
        }
        // A smoke run of everything keeps one block run as the block and net
        // groups' check (the guest tests cover virtio-net already).
        let smoke_all = self.quick && self.only.is_empty();
        if self.runs(Group::Block) {
            if smoke_all {
                // The storage that needs the most set-up (a disk attached to the test host).
                out.push(Kind::Block(block::Disk::Nvme, block::Storage::Disk));
            } else {
                out.extend(plan::block_kinds(&self.storage));
            }
        }
        if self.runs(Group::Net) && !smoke_all {
            out.push(Kind::Net);
            out.push(Kind::NetE1000e);
        }
        if self.runs(Group::Iommu) && !smoke_all {
            out.extend(plan::iommu_kinds());
        }
        if self.runs(Group::Vfio) && !smoke_all {
            out.push(Kind::Vfio);
        }
        out
    }
}

impl Group {
    /// All, in run order.
    const ALL: [Group; 6] = [
        Group::Vm,
        Group::Block,
        Group::Net,
        Group::DevicePath,
        Group::Iommu,
        Group::Vfio,
    ];

    /// Name on the command line.
    fn id(self) -> &'static str {
        match self {
            Group::Vm => "vm",
            Group::Block => "block",
            Group::Net => "net",
            Group::DevicePath => "device-path",
            Group::Iommu => "iommu",
            Group::Vfio => "vfio",
        }
    }
}

/// Measured seconds per device-path run: full and `--quick`.
const DEVICE_SECONDS: (u32, u32) = (5, 2);
/// Seconds per fio job in the guest: full and `--quick`.
const BLOCK_SECONDS: (u32, u32) = (3, 1);
/// Accesses per timed run of the in-process translate bench: full and `--quick`.
const TRANSLATE_ITERS: (u32, u32) = (200_000, 20_000);
/// MiB the guest sends in a net run: full and `--quick`.
const NET_MIB: (u32, u32) = (200, 16);

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
    let kinds = args.kinds();
    let mut vms = if kinds.is_empty() {
        None
    } else {
        Some(run_vms(args, reps, &kinds)?)
    };
    // The in-process translate bench, on this machine after the guests (a smoke run of
    // everything leaves the IOMMU group out, like the net group).
    if let Some(v) = vms
        .as_mut()
        .filter(|_| kinds.iter().any(|k| matches!(k, Kind::Iommu(..))))
    {
        let iters = if args.quick {
            TRANSLATE_ITERS.1
        } else {
            TRANSLATE_ITERS.0
        };
        v.translate = Some(iommu::run_translate(iters)?);
    }
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

/// What the groups that boot guests leave for the report.
struct VmResults {
    env: report::Env,
    outcomes: Vec<boot::Outcome>,
    /// The test host's own fio on the block image, if the block group ran.
    host_fio: Option<block::HostFio>,
    /// The in-process translate bench, if the IOMMU group ran.
    translate: Option<iommu::Translate>,
    /// The test host's own fio on the assignable NVMe, if the VFIO group ran.
    vfio_host: Option<vfio_host::HostLimit>,
    /// Why the bench script did not finish, if it did not.
    script_failure: Option<String>,
}

/// The groups that boot guests (boot, memory and exit paths; block; net), in one batch.
fn run_vms(args: &BenchArgs, reps: u32, kinds: &[Kind]) -> Result<VmResults> {
    let (mode, why) = hostmode::decide(args.mode)?;
    println!(
        "xtask: bench: {} ({why})",
        match mode {
            Mode::Direct => "running the VMMs directly on this machine's /dev/kvm",
            Mode::TestHost => "running the VMMs inside the nested test host (one boot of it)",
        }
    );
    let kinds = direct_kinds(mode, kinds)?;
    let kinds = kinds.as_slice();
    guest::ensure()?;
    // QEMU 7.2 comes unpacked with the test host, needed in both modes.
    testhost::ensure()?;
    let status = run_status(cargo().args(["build", "--release", "-p", "iovm"]))?;
    if !status.success() {
        bail!("building iovm failed: {status}");
    }
    let iovm = paths::target().join("release/iovm");
    let host = testkit::images::require_testhost()?;

    // The longest a working script is silent: one run up to its timeout, or the host's
    // four fio jobs, each under its own timeout.
    let fio_secs = if args.quick {
        BLOCK_SECONDS.1
    } else {
        BLOCK_SECONDS.0
    };
    let quiet = args.timeout.max(4 * (u64::from(fio_secs) + 60)) + 30;
    let mut batch = Batch::with_mode(mode)?
        .stream_to(Stream::Stdout)
        .silence_limit(Duration::from_secs(quiet));
    if kinds
        .iter()
        .any(|k| matches!(k, Kind::Block(_, block::Storage::Disk)))
    {
        batch = batch.with_disk(disk_image()?);
    }
    if kinds.contains(&Kind::Vfio) {
        batch = batch.with_assignable_nvme(vfio_image()?);
    }
    let probe_bin = std::env::current_exe().context("finding the xtask binary")?;
    let probe = batch.stage_binary(&probe_bin)?;
    let files = Files {
        iovm: batch.stage_binary(&iovm)?,
        qemu: batch.stage_binary(&host.qemu)?,
        firmware: stage_firmware(&batch, &host.firmware)?,
        kernel: "$STAGE/guest/vmlinuz".into(),
        vmlinux: "$STAGE/guest/vmlinux".into(),
        initramfs: "$STAGE/guest/initramfs.cpio.gz".into(),
    };
    let pick = |(full, quick): (u32, u32)| if args.quick { quick } else { full };
    let host_fio = if args.runs(Group::Block) || kinds.contains(&Kind::Vfio) {
        stage_host_fio(&batch)?
    } else {
        None
    };
    let settings = Settings {
        reps,
        timeout_s: args.timeout,
        memory: MEMORY.into(),
        sample_after_ms: SAMPLE_AFTER_MS,
        block_seconds: pick(BLOCK_SECONDS),
        net_mib: pick(NET_MIB),
        host_fio,
    };
    let mut runs = plan::runs(reps, kinds);
    if args.quick {
        // The smoke run keeps the harness working for every kind of run; it
        // leaves out QEMU q35, which now and then hangs the TCG test host
        // (docs/test-host.md) and would make CI fail for QEMU's sake. The IOMMU
        // and VFIO groups keep it: their figures are ratios to QEMU (and CI does not
        // run them).
        runs.retain(|r| r.vmm != Vmm::QemuQ35 || matches!(r.kind, Kind::Iommu(..) | Kind::Vfio));
    }
    let script = plan::script(&runs, &settings, &files, &probe);
    let limit = Duration::from_secs((args.timeout + 20) * runs.len() as u64 + 120);
    println!(
        "xtask: bench: {} runs ({} × {reps} repetition(s)); progress below",
        runs.len(),
        kinds.iter().map(|k| k.id()).collect::<Vec<_>>().join(", ")
    );
    let bench_dir = batch.scratch_dir().join("bench");
    let read_records = || -> Vec<Record> {
        fs::read_to_string(bench_dir.join("records.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(Record::parse)
            .collect()
    };
    let mut out = batch.run_script(&script, limit)?;
    for boot in 2..=BOOTS {
        let Some(f) = out.failure.as_deref().filter(|_| out.exit_code.is_none()) else {
            break;
        };
        let left = runs.len().saturating_sub(read_records().len());
        if left == 0 {
            break;
        }
        // The test host died or stopped (docs/test-host.md): a new one resumes the
        // script, skipping what has a record.
        println!(
            "xtask: bench: the script did not finish: {f}\n\
             xtask: bench: starting it again ({boot} of {BOOTS}) for the {left} run(s) \
             without a record"
        );
        let resume = batch.scratch_dir().join(plan::RESUME);
        fs::write(&resume, "").with_context(|| format!("writing {}", resume.display()))?;
        out = batch.run_script(&script, limit)?;
    }
    if let Some(f) = &out.failure {
        println!("xtask: bench: the script did not finish: {f}");
    }
    let records = read_records();
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
            let marks_text =
                fs::read_to_string(bench_dir.join("marks").join(format!("{name}.txt")))
                    .unwrap_or_default();
            if !marks_text.is_empty() {
                let _ = fs::write(logs_dir.join(format!("{name}.marks")), &marks_text);
            }
            let snaps = marks::parse_all(&marks_text);
            boot::evaluate(*spec, record, console.as_deref(), &snaps)
        })
        .collect();
    let storages: Vec<block::Storage> = block::Storage::ALL
        .into_iter()
        .filter(|&st| {
            kinds
                .iter()
                .any(|k| matches!(k, Kind::Block(_, s) if *s == st))
        })
        .collect();
    let host_fio = args
        .runs(Group::Block)
        .then(|| block::HostFio::read(&bench_dir, reps, &storages));
    let vfio_host = kinds
        .contains(&Kind::Vfio)
        .then(|| vfio_host::HostLimit::read(&bench_dir, reps));

    let env = environment(mode, &settings, &bench_dir, &files);
    Ok(VmResults {
        env,
        outcomes,
        host_fio,
        translate: None,
        vfio_host,
        script_failure: out.failure.map(|f| f.to_string()),
    })
}

/// The kinds of `kinds` that can run in `mode`: directly on this machine there is no
/// assignable NVMe, so the VFIO group is left out (an error if nothing is left).
fn direct_kinds(mode: Mode, kinds: &[Kind]) -> Result<Vec<Kind>> {
    if mode == Mode::TestHost || !kinds.contains(&Kind::Vfio) {
        return Ok(kinds.to_vec());
    }
    println!(
        "xtask: bench: vfio: left out: its assignable NVMe is the nested test host's \
         (--mode testhost)"
    );
    let left: Vec<Kind> = kinds.iter().copied().filter(|&k| k != Kind::Vfio).collect();
    if left.is_empty() {
        bail!("the vfio group runs in the nested test host only: use --mode testhost");
    }
    Ok(left)
}

/// The raw image behind the test host's assignable NVMe of the VFIO group, on this
/// machine's disk (`target/bench/vfio-nvme.img`), written with zeros once so that every
/// block is allocated (reads of holes would not reach the disk).
fn vfio_image() -> Result<std::path::PathBuf> {
    let dir = paths::target().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(vfio::IMAGE);
    let size = u64::from(block::IMAGE_MIB) << 20;
    if fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return Ok(path);
    }
    let zeros = vec![0u8; 1 << 20];
    let mut file =
        fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    for _ in 0..block::IMAGE_MIB {
        std::io::Write::write_all(&mut file, &zeros)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The raw image behind the `disk` storage, on this machine's disk
/// (`target/bench/disk.img`, made at its size if it is not there).
fn disk_image() -> Result<std::path::PathBuf> {
    let dir = paths::target().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("disk.img");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_len(u64::from(block::IMAGE_MIB) << 20)
        .with_context(|| format!("sizing {}", path.display()))?;
    Ok(path)
}

/// Stages this machine's fio for the test host's own runs on the block image; `None`
/// (and the report says so) where there is none.
fn stage_host_fio(batch: &Batch) -> Result<Option<String>> {
    let Some(fio) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("fio"))
        .find(|p| p.is_file())
    else {
        println!("xtask: bench: no fio on this machine: the block tables go without host fio");
        return Ok(None);
    };
    Ok(Some(batch.stage_binary(&fio)?))
}

/// Writes results.json, a chart per group and the Markdown report; returns the exit
/// status.
fn write_reports(
    args: &BenchArgs,
    reps: u32,
    vms: Option<&VmResults>,
    dev: Option<&device::Results>,
) -> Result<i32> {
    let out_dir = paths::target().join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let command = command_line(args, reps, vms.map(|v| v.env.mode));
    let guests = vms.map(|v| report::Guests {
        env: &v.env,
        outcomes: &v.outcomes,
        host_fio: v.host_fio.as_ref(),
        translate: v.translate.as_ref(),
        vfio_host: v.vfio_host.as_ref(),
    });
    let results = report::results(&command, guests, dev);
    let json_path = out_dir.join("results.json");
    fs::write(&json_path, results.to_json()?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    // A smoke run (--quick) or one that left a group out keeps the committed
    // results: its report and charts stay in target/.
    let (md_path, suffix) = if args.quick {
        (out_dir.join("RESULTS-quick.md"), "-quick")
    } else if !args.all_groups() {
        (out_dir.join("RESULTS-partial.md"), "-partial")
    } else {
        (paths::workspace().join("docs/bench/RESULTS.md"), "")
    };
    let md_dir = md_path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(md_dir).with_context(|| format!("creating {}", md_dir.display()))?;
    let figures = plots::write_all(md_dir, suffix, &results)?;
    let md = report::markdown(&command, guests, dev, &figures);
    fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let mut written = vec![md_path.display().to_string()];
    written.extend(
        figures
            .0
            .iter()
            .map(|(_, name)| md_dir.join(name).display().to_string()),
    );
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
        if let Some(Err(e)) = v.translate.as_ref().map(|t| &t.cases) {
            println!("xtask: bench: iommu: the translate bench failed: {e}");
            status = 1;
        }
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
        let groups: Vec<&str> = Group::ALL
            .iter()
            .filter(|g| args.runs(**g))
            .map(|g| g.id())
            .collect();
        command.push_str(&format!(" --only {}", groups.join(",")));
    }
    command
}

fn environment(mode: Mode, settings: &Settings, bench_dir: &Path, files: &Files) -> report::Env {
    let (run_kernel, run_cpu) = facts::run_place(bench_dir);
    let cmdline = format!(
        "{} iovm.run=<base64 of the guest script: `{}` for boot runs, `{}` for memory runs, \
         `{}` for exit-path runs (with `iomem=relaxed`), fio jobs for block runs, a timed \
         `nc` for net runs>",
        plan::CMDLINE,
        Kind::Boot.guest_script(settings),
        Kind::Memory.guest_script(settings),
        Kind::Exits.guest_script(settings)
    );
    // The guest script shows in the report as text, not as base64.
    let shown_cmdline = format!("{} iovm.run=<base64 of the guest script>", plan::CMDLINE);
    let mut io_kinds = plan::block_kinds(&block::Storage::ALL);
    io_kinds.push(Kind::Net);
    io_kinds.push(Kind::NetE1000e);
    io_kinds.extend(plan::iommu_kinds());
    io_kinds.push(Kind::Vfio);
    let io_commands = io_kinds
        .iter()
        .flat_map(|&k| k.vmms().iter().map(move |&v| (k, v)))
        .map(|(k, v)| {
            let shown = match k {
                Kind::Iommu(_, t) => format!(
                    "{}{} iovm.run=<base64 of the guest script>",
                    plan::CMDLINE,
                    t.cmdline_extra()
                ),
                _ => shown_cmdline.clone(),
            };
            let c = k.vmm_command(v, files, &shown, MEMORY);
            (k, v, facts::display_command(&c))
        })
        .collect();
    let io_scripts = io_kinds
        .iter()
        .map(|&k| (k, k.guest_script(settings)))
        .collect();
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
        reps: settings.reps,
        memory: MEMORY.into(),
        sample_after_ms: SAMPLE_AFTER_MS,
        cmdline,
        commands: Vmm::ALL
            .iter()
            .map(|&v| {
                let c = v.command(files, &Kind::Boot.cmdline(settings), MEMORY);
                (v, facts::display_command(&c))
            })
            .collect(),
        io_commands,
        io_scripts,
        block_seconds: settings.block_seconds,
        net_mib: settings.net_mib,
        block_images: block::Storage::ALL
            .iter()
            .map(|&st| {
                let path = bench_dir.join(format!("block-image-{}.txt", st.id()));
                let found = std::fs::read_to_string(path).unwrap_or_default();
                (st, found.trim().to_owned())
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(quick: bool, only: Vec<Group>) -> BenchArgs {
        BenchArgs {
            quick,
            reps: 1,
            mode: ModeChoice::Auto,
            timeout: 180,
            only,
            storage: block::Storage::DEFAULT.to_vec(),
        }
    }

    #[test]
    fn test_iommu_group_runs_its_kinds_unless_a_smoke_run_of_everything() {
        let iommu = |a: &BenchArgs| {
            a.kinds()
                .into_iter()
                .filter(|k| matches!(k, Kind::Iommu(..)))
                .count()
        };

        assert_eq!(iommu(&args(true, vec![Group::Iommu])), 4);
        assert_eq!(args(false, vec![Group::Iommu]).kinds(), plan::iommu_kinds());
        assert_eq!(iommu(&args(false, Vec::new())), 4);
        assert_eq!(iommu(&args(true, Vec::new())), 0, "not in ci's smoke run");
        assert!(command_line(&args(false, vec![Group::Iommu]), 1, None).ends_with(" --only iommu"));
    }

    #[test]
    fn test_vfio_group_runs_when_named_or_in_a_full_run_and_only_in_the_test_host() {
        let vfio = |a: &BenchArgs| a.kinds().contains(&Kind::Vfio);

        assert_eq!(args(true, vec![Group::Vfio]).kinds(), [Kind::Vfio]);
        assert!(vfio(&args(false, Vec::new())));
        assert!(!vfio(&args(true, Vec::new())), "not in ci's smoke run");
        assert!(!vfio(&args(false, vec![Group::Block])));
        assert!(command_line(&args(false, vec![Group::Vfio]), 3, None).ends_with(" --only vfio"));
        assert_eq!(
            direct_kinds(Mode::Direct, &[Kind::Boot, Kind::Vfio]).unwrap(),
            [Kind::Boot]
        );
        assert!(direct_kinds(Mode::Direct, &[Kind::Vfio]).is_err());
        assert_eq!(
            direct_kinds(Mode::TestHost, &[Kind::Vfio]).unwrap(),
            [Kind::Vfio]
        );
    }
}
