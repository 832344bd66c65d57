//! The `device-path` figure group: iovm's NVMe and virtio-blk device paths without a
//! VM, against the host's own io_uring (fio) on the same file, run directly on this
//! machine.
//!
//! `crates/devices/benches/nvme_path.rs` keeps 32 4 KiB requests in flight through the
//! controller's registers, queues, PRP parsing, worker thread, io_uring backend,
//! completions and MSI sends; `crates/virtio/benches/blk_path.rs` does the same through
//! virtio-blk's split queue (avail ring, event-index kicks, descriptor chains, worker
//! thread, io_uring backend, used ring). `fio --ioengine=io_uring --direct=1` with the
//! same block size, depth and pattern on the same file is the physical limit both are
//! compared with. Each file × pattern runs all three, interleaved, the order rotating
//! between repetitions. A 1 GiB file on tmpfs (`/dev/shm`: storage is memory, so the device
//! path's own cost shows) and one on the disk under `target/bench/` (where `O_DIRECT`
//! reaches a block device).
//!
//! Every run is confined to one CPU, the same for all three (`sched_setaffinity` before
//! exec; threads and io_uring's io-wq workers inherit it), so the goal "the host's limit
//! on one core" is what the ratio shows: iovm's whole path, the synthetic driver
//! included, against fio's on one core. The driver sleeps until the device's interrupt
//! (`--reap irq`) as a guest does, instead of spinning on the CPU it shares.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::device_json::{self, BenchFigures, FioReport};
use super::results::{DeviceFigure, DevicePathSection, DeviceRatio, DeviceRun};
use super::stats::{ratio, Summary};
use crate::paths;
use crate::run::{cargo, run_output};

/// Requests in flight.
pub const DEPTH: u32 = 32;
/// Size of each test file.
const FILE_BYTES: u64 = 1 << 30;

/// Where the file lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `/dev/shm` (tmpfs).
    Tmpfs,
    /// `target/bench/` on the workspace's filesystem.
    Disk,
}

impl Place {
    /// Both, tmpfs first.
    pub const ALL: [Place; 2] = [Place::Tmpfs, Place::Disk];

    fn id(self) -> &'static str {
        match self {
            Place::Tmpfs => "tmpfs",
            Place::Disk => "disk",
        }
    }

    fn path(self) -> PathBuf {
        match self {
            Place::Tmpfs => PathBuf::from(format!(
                "/dev/shm/iovm-bench-device-path-{}.img",
                std::process::id()
            )),
            Place::Disk => paths::target().join("bench/device-path.img"),
        }
    }
}

/// The access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// 4 KiB random reads.
    RandRead,
    /// 4 KiB random writes.
    RandWrite,
}

impl Pattern {
    /// Both.
    pub const ALL: [Pattern; 2] = [Pattern::RandRead, Pattern::RandWrite];

    /// fio's name, also the bench's `--rw`.
    pub fn id(self) -> &'static str {
        match self {
            Pattern::RandRead => "randread",
            Pattern::RandWrite => "randwrite",
        }
    }
}

/// Who moves the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// iovm's NVMe device path (the nvme_path bench).
    Nvme,
    /// iovm's virtio-blk device path (the blk_path bench).
    VirtioBlk,
    /// fio on the host.
    Host,
}

impl Side {
    /// Every side, in table order.
    pub const ALL: [Side; 3] = [Side::Nvme, Side::VirtioBlk, Side::Host];
    /// iovm's device paths, each compared with the host.
    pub const DEVICES: [Side; 2] = [Side::Nvme, Side::VirtioBlk];

    /// Name in results.json.
    pub fn id(self) -> &'static str {
        match self {
            Side::Nvme => "iovm-nvme",
            Side::VirtioBlk => "iovm-virtio-blk",
            Side::Host => "host-fio",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Side::Nvme => "NVMe",
            Side::VirtioBlk => "virtio-blk",
            Side::Host => "host fio",
        }
    }

    /// The crate and bench target of an iovm side.
    fn bench(self) -> Option<(&'static str, &'static str)> {
        match self {
            Side::Nvme => Some(("devices", "nvme_path")),
            Side::VirtioBlk => Some(("virtio", "blk_path")),
            Side::Host => None,
        }
    }
}

/// A figure of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// I/Os per second.
    Iops,
    /// Mean completion latency, µs.
    LatencyUs,
    /// CPU per I/O of the thread that drives io_uring: iovm's device worker
    /// (`nvme-worker`, `virtio-blk`), fio's job.
    ThreadCpuNs,
    /// CPU per I/O of the whole process (iovm: also the guest driver and the doorbell
    /// handlers it runs; both: io_uring's io-wq workers).
    ProcessCpuNs,
}

impl Metric {
    /// In table order.
    pub const ALL: [Metric; 4] = [
        Metric::Iops,
        Metric::LatencyUs,
        Metric::ThreadCpuNs,
        Metric::ProcessCpuNs,
    ];

    /// Name in results.json.
    pub fn id(self) -> &'static str {
        match self {
            Metric::Iops => "iops",
            Metric::LatencyUs => "mean_latency_us",
            Metric::ThreadCpuNs => "io_thread_cpu_ns_per_io",
            Metric::ProcessCpuNs => "process_cpu_ns_per_io",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Iops => "IOPS",
            Metric::LatencyUs => "mean latency (µs)",
            Metric::ThreadCpuNs => "CPU per I/O, io_uring thread (ns)",
            Metric::ProcessCpuNs => "CPU per I/O, whole process (ns)",
        }
    }
}

/// One run's figures, or why there are none.
#[derive(Debug, Clone)]
pub struct Run {
    /// Where.
    pub place: Place,
    /// What.
    pub pattern: Pattern,
    /// Who.
    pub side: Side,
    /// Repetition, from 1.
    pub rep: u32,
    /// The figures.
    pub values: Vec<(Metric, f64)>,
    /// iovm only: whether its backend got `O_DIRECT`.
    pub direct: Option<bool>,
    /// Why the run does not count.
    pub problem: Option<String>,
}

impl Run {
    fn name(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.place.id(),
            self.pattern.id(),
            self.side.id(),
            self.rep
        )
    }

    fn value(&self, m: Metric) -> Option<f64> {
        self.values.iter().find(|(k, _)| *k == m).map(|(_, v)| *v)
    }
}

/// Everything the group measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Measured seconds per run.
    pub seconds: u32,
    /// Repetitions.
    pub reps: u32,
    /// Every run.
    pub runs: Vec<Run>,
    /// `fio --version`.
    pub fio: String,
    /// The filesystem type of each place (`findmnt`).
    pub filesystems: Vec<(Place, String)>,
    /// The CPU every run was confined to.
    pub cpu: usize,
}

/// The CPU the runs are confined to: the highest-numbered one this process may use
/// (CPU 0 tends to take more of the host's interrupts).
pub(super) fn bench_cpu() -> Result<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set, a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most the given size into the set, which is
    // live and writable.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if r != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    (0..libc::CPU_SETSIZE as usize)
        .rev()
        // SAFETY: CPU_ISSET reads one bit of a live set, the index inside its size.
        .find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .context("this process may run on no CPU")
}

/// Makes `cmd`'s process run on `cpu` only, from before it executes.
pub(super) fn confine(cmd: &mut Command, cpu: usize) {
    // SAFETY: the closure runs between fork and exec and only makes the
    // sched_setaffinity system call on a set on its own stack, which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn fio_version() -> Result<String> {
    match Command::new("fio").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        _ => bail!(
            "the device-path figures need fio, the host's own io_uring, as the limit they \
             are compared with, and fio is not installed here: apt-get install fio"
        ),
    }
}

/// Fails with a clear message if fio is missing (checked before anything runs).
pub fn check_fio() -> Result<()> {
    fio_version().map(|_| ())
}

/// The bench binaries of iovm's sides.
#[derive(Debug)]
struct Benches(Vec<(Side, PathBuf)>);

impl Benches {
    fn exe(&self, side: Side) -> Option<&Path> {
        self.0
            .iter()
            .find(|(s, _)| *s == side)
            .map(|(_, p)| p.as_path())
    }
}

/// Builds the bench binaries (one cargo run); returns their paths.
fn build_benches() -> Result<Benches> {
    let targets: Vec<(&str, &str)> = Side::DEVICES.iter().filter_map(|s| s.bench()).collect();
    let names: Vec<&str> = targets.iter().map(|(_, b)| *b).collect();
    println!(
        "xtask: bench: device-path: building the {} benches",
        names.join(" and ")
    );
    let mut cmd = cargo();
    cmd.arg("bench");
    for (krate, bench) in &targets {
        cmd.args(["-p", krate, "--bench", bench]);
    }
    cmd.args(["--no-run", "--message-format=json-render-diagnostics"]);
    let artifacts = device_json::executables(&run_output(&mut cmd)?);
    Side::DEVICES
        .iter()
        .map(|&side| {
            let (_, bench) = side.bench().context("a device side without a bench")?;
            let exe = artifacts
                .iter()
                .find(|(n, _)| n == bench)
                .map(|(_, p)| p.clone())
                .with_context(|| format!("cargo did not name the {bench} bench executable"))?;
            Ok((side, exe))
        })
        .collect::<Result<_>>()
        .map(Benches)
}

/// Fills `path` with `FILE_BYTES` of non-zero data, unless it already has that size.
fn prepare(path: &Path) -> Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() == FILE_BYTES) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    println!(
        "xtask: bench: device-path: writing {} MiB to {}",
        FILE_BYTES >> 20,
        path.display()
    );
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..FILE_BYTES / chunk.len() as u64 {
        for b in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

fn filesystem(path: &Path) -> String {
    run_output(
        Command::new("findmnt")
            .args(["-n", "-o", "FSTYPE", "--target"])
            .arg(path),
    )
    // Mounts stacked on one directory are listed one per line (/dev/shm here has
    // two tmpfs); the first names the type.
    .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
    .unwrap_or_else(|_| "unknown".into())
}

/// User + system CPU of the children this process has waited for, in ns.
fn children_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage through the pointer, which points at a
    // live, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// `value` of `key`, or an error that names the key.
fn number(value: Option<f64>, key: &str) -> Result<f64> {
    value.with_context(|| format!("no number `{key}`"))
}

/// The figures in a device-path bench's JSON report (nvme_path, blk_path).
fn iovm_values(f: &BenchFigures) -> Result<(Vec<(Metric, f64)>, bool)> {
    let values = vec![
        (Metric::Iops, number(f.iops, "iops")?),
        (
            Metric::LatencyUs,
            number(f.mean_latency_us, "mean_latency_us")?,
        ),
        (
            Metric::ThreadCpuNs,
            number(f.device_cpu_ns_per_io, "device_cpu_ns_per_io")?,
        ),
        (
            Metric::ProcessCpuNs,
            number(f.cpu_ns_per_io, "cpu_ns_per_io")?,
        ),
    ];
    Ok((values, f.direct))
}

/// The figures in fio's JSON report; `process_cpu_ns` is the CPU of the whole fio run
/// (its io-wq workers too), measured around it.
fn fio_values(
    report: &FioReport,
    pattern: Pattern,
    process_cpu_ns: u64,
) -> Result<Vec<(Metric, f64)>> {
    let job = report.jobs.first().context("no jobs[0]")?;
    let d = match pattern {
        Pattern::RandRead => &job.read,
        Pattern::RandWrite => &job.write,
    };
    if d.total_ios == 0 {
        bail!("fio completed no I/O");
    }
    let ios = d.total_ios as f64;
    let lat_ns = d.lat_ns.as_ref().context("no lat_ns")?.mean;
    let runtime_s = job.job_runtime / 1000.0;
    let cpu_percent = job.usr_cpu + job.sys_cpu;
    Ok(vec![
        (Metric::Iops, d.iops),
        (Metric::LatencyUs, lat_ns / 1000.0),
        (
            Metric::ThreadCpuNs,
            cpu_percent / 100.0 * runtime_s * 1e9 / ios,
        ),
        (Metric::ProcessCpuNs, process_cpu_ns as f64 / ios),
    ])
}

/// The command line of one side's run; `exe` is the side's bench (unused for the host).
pub fn command(side: Side, exe: &Path, file: &Path, pattern: Pattern, seconds: u32) -> Command {
    match side {
        Side::Nvme | Side::VirtioBlk => {
            let mut c = Command::new(exe);
            c.arg("--file")
                .arg(file)
                .args(["--seconds", &seconds.to_string(), "--warmup", "1"])
                .args(["--depth", &DEPTH.to_string(), "--rw", pattern.id()])
                .args(["--reap", "irq"]);
            c
        }
        Side::Host => {
            let mut c = Command::new("fio");
            c.arg("--name=device-path")
                .arg(format!("--filename={}", file.display()))
                .args([
                    "--ioengine=io_uring",
                    "--direct=1",
                    &format!("--rw={}", pattern.id()),
                    "--bs=4k",
                    &format!("--iodepth={DEPTH}"),
                    "--numjobs=1",
                    "--time_based",
                    &format!("--runtime={seconds}"),
                    "--output-format=json",
                ]);
            c
        }
    }
}

fn measure(
    benches: &Benches,
    out_dir: &Path,
    run: &mut Run,
    file: &Path,
    seconds: u32,
    cpu: usize,
) -> Result<()> {
    let exe = benches.exe(run.side).unwrap_or(Path::new("fio"));
    let mut cmd = command(run.side, exe, file, run.pattern, seconds);
    confine(&mut cmd, cpu);
    match run.side {
        Side::Nvme | Side::VirtioBlk => {
            let json_path = out_dir.join(format!("{}.json", run.name()));
            cmd.arg("--json").arg(&json_path);
            let stdout = run_output(&mut cmd)?;
            print!("{stdout}");
            let text = fs::read_to_string(&json_path)
                .with_context(|| format!("reading {}", json_path.display()))?;
            let figures = device_json::parse(&text)
                .with_context(|| format!("reading {}", json_path.display()))?;
            let (values, direct) = iovm_values(&figures)?;
            run.values = values;
            run.direct = Some(direct);
        }
        Side::Host => {
            let before = children_cpu_ns();
            let text = run_output(&mut cmd)?;
            let cpu = children_cpu_ns().saturating_sub(before);
            fs::write(out_dir.join(format!("{}.json", run.name())), &text)?;
            let report = device_json::parse(&text).context("reading fio's JSON report")?;
            run.values = fio_values(&report, run.pattern, cpu)?;
            let iops = run.value(Metric::Iops).unwrap_or(0.0);
            println!("host fio {}: {iops:.0} IOPS", run.pattern.id());
        }
    }
    Ok(())
}

/// Runs the group: every place × pattern × side, `reps` times, `seconds` each.
pub fn run(reps: u32, seconds: u32) -> Result<Results> {
    let fio = fio_version()?;
    let cpu = bench_cpu()?;
    let benches = build_benches()?;
    let out_dir = paths::target().join("bench/device-path");
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut runs = Vec::new();
    let mut filesystems = Vec::new();
    for place in Place::ALL {
        let path = place.path();
        prepare(&path)?;
        filesystems.push((place, filesystem(&path)));
        for rep in 1..=reps {
            for pattern in Pattern::ALL {
                // Each side goes first in one repetition of three.
                let mut sides = Side::ALL;
                sides.rotate_left((rep as usize - 1) % Side::ALL.len());
                for side in sides {
                    let mut r = Run {
                        place,
                        pattern,
                        side,
                        rep,
                        values: Vec::new(),
                        direct: None,
                        problem: None,
                    };
                    println!(
                        "xtask: bench: device-path: {} on {}, {}, repetition {rep} of {reps}",
                        pattern.id(),
                        place.id(),
                        side.id()
                    );
                    if let Err(e) = measure(&benches, &out_dir, &mut r, &path, seconds, cpu) {
                        println!("xtask: bench: device-path: {} failed: {e:#}", r.name());
                        r.problem = Some(format!("{e:#}"));
                    }
                    runs.push(r);
                }
            }
        }
        if place == Place::Tmpfs {
            // A GiB of RAM on a shared machine: not kept between benches.
            let _ = fs::remove_file(&path);
        }
    }
    Ok(Results {
        seconds,
        reps,
        runs,
        fio,
        filesystems,
        cpu,
    })
}

impl Results {
    fn samples(&self, place: Place, pattern: Pattern, side: Side, m: Metric) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.place == place && r.pattern == pattern && r.side == side)
            .filter_map(|r| r.value(m))
            .filter(|v| v.is_finite())
            .collect()
    }

    fn summary(&self, place: Place, pattern: Pattern, side: Side, m: Metric) -> Option<Summary> {
        Summary::of(&self.samples(place, pattern, side, m))
    }

    /// An iovm side's median ÷ the host's, for one row.
    pub fn ratio(&self, place: Place, pattern: Pattern, side: Side, m: Metric) -> Option<f64> {
        ratio(
            self.summary(place, pattern, side, m),
            self.summary(place, pattern, Side::Host, m),
        )
    }

    /// Runs that did not count.
    pub fn failures(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| r.problem.is_some())
    }

    fn place_label(&self, place: Place) -> String {
        let fs = self
            .filesystems
            .iter()
            .find(|(p, _)| *p == place)
            .map_or("?", |(_, f)| f.as_str());
        let direct: Vec<bool> = self
            .runs
            .iter()
            .filter(|r| r.place == place)
            .filter_map(|r| r.direct)
            .collect();
        let io = match (direct.iter().all(|d| *d), direct.iter().any(|d| *d)) {
            _ if direct.is_empty() => "",
            (true, _) => ", O_DIRECT",
            (false, false) => ", buffered (O_DIRECT refused)",
            (false, true) => ", O_DIRECT in some runs only",
        };
        match place {
            Place::Tmpfs => format!("/dev/shm ({fs}{io})"),
            Place::Disk => format!("target/bench/ ({fs}{io})"),
        }
    }

    /// The report section (Markdown, from its `##` heading), `figure` (Markdown) after
    /// its table.
    pub fn markdown(&self, cell: impl Fn(Option<Summary>) -> String, figure: &str) -> String {
        let mut out = format!(
            "\n## Device path (no VM)\n\nRun directly on this machine, no VM, every run \
             confined to one CPU (CPU {cpu}: the process, its threads and io_uring's io-wq \
             workers), so each ratio compares iovm's whole path with the host's own limit \
             on one core. A synthetic guest driver in the bench's main thread keeps {DEPTH} \
             4 KiB requests in flight at random 4 KiB-aligned offsets through one iovm \
             device, to the device's worker thread and io_uring backend; it sleeps until \
             the device's interrupt (an eventfd written per MSI, as KVM's irqfd is) and \
             then reaps the completion ring, as a guest driver does. NVMe (`cargo bench -p \
             devices --bench nvme_path`): BAR0 registers, one I/O queue pair, PRP1, shadow \
             doorbells as Linux's driver uses them on iovm (Doorbell Buffer Config): per \
             batch the shadow SQ tail, and an eventfd write (as KVM's ioeventfd on the \
             doorbell would do) only when the EventIdx asks; completions by phase bit, the \
             shadow CQ head, and a trapped CQ doorbell write only when the EventIdx asks. \
             virtio-blk (`cargo bench -p virtio --bench blk_path`): the device activated as \
             the transport does at DRIVER_OK with EVENT_IDX and FLUSH, one split queue of \
             header + data + status chains, a kick (an eventfd write, as KVM's ioeventfd \
             would do) only when `avail_event` asks for one, completions from the used \
             ring. The limit both are compared with is the host's own io_uring on the same \
             1 GiB file on the same CPU: `fio --ioengine=io_uring --direct=1 --bs=4k \
             --iodepth={DEPTH} --numjobs=1`. {} s per run after 1 s of warm-up (fio: none), \
             {} repetition(s), the three interleaved. The io_uring thread is iovm's device \
             worker (`nvme-worker`, `virtio-blk`: the device's own cost) and fio's job \
             (fio's `usr_cpu` + `sys_cpu`); the whole process adds, for iovm, the guest \
             driver's thread and the doorbell handlers it runs, and for both, io_uring's \
             io-wq workers (fio's from `getrusage(RUSAGE_CHILDREN)` around it, start-up \
             included). {}.\n\n",
            self.seconds,
            self.reps,
            self.fio,
            cpu = self.cpu
        );
        let sides: Vec<String> = Side::ALL.iter().map(|s| s.label().to_owned()).collect();
        let ratios: Vec<String> = Side::DEVICES
            .iter()
            .map(|s| format!("{} ÷ host", s.label()))
            .collect();
        out.push_str(&format!(
            "| file | pattern | | iovm {} | iovm {} | {} | {} | {} |\n",
            sides[0], sides[1], sides[2], ratios[0], ratios[1]
        ));
        out.push_str("|---|---|---|---:|---:|---:|---:|---:|\n");
        for place in Place::ALL {
            for pattern in Pattern::ALL {
                for m in Metric::ALL {
                    let mut row = format!(
                        "| {} | {} | {} |",
                        self.place_label(place),
                        pattern.id(),
                        m.label()
                    );
                    for side in Side::ALL {
                        row.push_str(&format!(
                            " {} |",
                            cell(self.summary(place, pattern, side, m))
                        ));
                    }
                    for side in Side::DEVICES {
                        let r = self
                            .ratio(place, pattern, side, m)
                            .map_or_else(|| "–".into(), |r| format!("{r:.2}"));
                        row.push_str(&format!(" {r} |"));
                    }
                    out.push_str(&row);
                    out.push('\n');
                }
            }
        }
        out.push_str(figure);
        let failed: Vec<&Run> = self.failures().collect();
        if !failed.is_empty() {
            out.push_str("\nRuns that did not count:\n\n");
            for r in failed {
                out.push_str(&format!(
                    "- `{}`: {}\n",
                    r.name(),
                    r.problem.as_deref().unwrap_or("")
                ));
            }
        }
        out
    }

    /// The `device_path` member of results.json.
    pub fn section(&self) -> DevicePathSection {
        let mut figures = Vec::new();
        let mut ratios = Vec::new();
        for place in Place::ALL {
            for pattern in Pattern::ALL {
                for m in Metric::ALL {
                    for side in Side::ALL {
                        let samples = self.samples(place, pattern, side, m);
                        figures.push(DeviceFigure {
                            file: place.id().into(),
                            pattern: pattern.id().into(),
                            figure: m.id().into(),
                            side: side.id().into(),
                            summary: Summary::of(&samples),
                            samples,
                        });
                    }
                    for side in Side::DEVICES {
                        ratios.push(DeviceRatio {
                            file: place.id().into(),
                            pattern: pattern.id().into(),
                            figure: m.id().into(),
                            side: side.id().into(),
                            iovm_over_host: self.ratio(place, pattern, side, m),
                        });
                    }
                }
            }
        }
        DevicePathSection {
            depth: DEPTH,
            block_size: 4096,
            seconds: self.seconds,
            repetitions: self.reps,
            fio: self.fio.clone(),
            cpu: self.cpu,
            files: Place::ALL
                .iter()
                .map(|&p| (p.id().to_owned(), self.place_label(p)))
                .collect(),
            figures,
            ratios,
            runs: self
                .runs
                .iter()
                .map(|r| DeviceRun {
                    name: r.name(),
                    problem: r.problem.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(side: Side, rep: u32, iops: f64) -> Run {
        Run {
            place: Place::Tmpfs,
            pattern: Pattern::RandRead,
            side,
            rep,
            values: vec![(Metric::Iops, iops)],
            direct: (side != Side::Host).then_some(true),
            problem: None,
        }
    }

    #[test]
    fn test_confined_command_runs_on_the_one_cpu_only() {
        let cpu = bench_cpu().unwrap();
        let mut cmd = Command::new("grep");
        cmd.args(["^Cpus_allowed_list:", "/proc/self/status"]);
        confine(&mut cmd, cpu);

        let out = run_output(&mut cmd).unwrap();

        assert_eq!(
            out.split_whitespace().nth(1),
            Some(cpu.to_string().as_str())
        );
    }

    #[test]
    fn test_fio_values_from_its_json() {
        let text = r#"{"fio version": "fio-3.33", "jobs": [{"jobname": "x",
            "read": {"iops": 1000.0, "total_ios": 3000, "lat_ns": {"mean": 32000.0}},
            "write": {"iops": 0, "total_ios": 0},
            "job_runtime": 3000, "usr_cpu": 10.0, "sys_cpu": 40.0}]}"#;

        let report = device_json::parse(text).unwrap();
        let v = fio_values(&report, Pattern::RandRead, 6_000_000).unwrap();

        assert_eq!(
            v,
            vec![
                (Metric::Iops, 1000.0),
                (Metric::LatencyUs, 32.0),
                (Metric::ThreadCpuNs, 500_000.0),
                (Metric::ProcessCpuNs, 2000.0),
            ]
        );
        assert!(fio_values(&report, Pattern::RandWrite, 0).is_err());
    }

    #[test]
    fn test_iovm_values_from_a_bench_report() {
        let text = include_str!("../../../crates/benchkit/testdata/figures-hand-written.json");
        let no_worker =
            include_str!("../../../crates/benchkit/testdata/figures-no-worker-hand-written.json");

        let (v, direct) = iovm_values(&device_json::parse(text).unwrap()).unwrap();
        let err = iovm_values(&device_json::parse(no_worker).unwrap()).unwrap_err();

        assert_eq!(
            v,
            vec![
                (Metric::Iops, 122466.0),
                (Metric::LatencyUs, 261.2),
                (Metric::ThreadCpuNs, 3830.6),
                (Metric::ProcessCpuNs, 8145.2),
            ]
        );
        assert!(!direct);
        assert_eq!(err.to_string(), "no number `device_cpu_ns_per_io`");
    }

    #[test]
    fn test_ratio_is_each_device_median_over_host_median() {
        let r = Results {
            seconds: 2,
            reps: 2,
            runs: vec![
                run(Side::Nvme, 1, 80.0),
                run(Side::Nvme, 2, 100.0),
                run(Side::VirtioBlk, 1, 60.0),
                run(Side::VirtioBlk, 2, 70.0),
                run(Side::Host, 1, 100.0),
                run(Side::Host, 2, 100.0),
            ],
            fio: "fio-3.33".into(),
            filesystems: vec![(Place::Tmpfs, "tmpfs".into())],
            cpu: 1,
        };

        let md = r.markdown(|s| s.map_or("–".into(), |s| format!("{:.0}", s.median)), "");

        assert_eq!(
            r.ratio(Place::Tmpfs, Pattern::RandRead, Side::Nvme, Metric::Iops),
            Some(0.9)
        );
        assert_eq!(
            r.ratio(
                Place::Tmpfs,
                Pattern::RandRead,
                Side::VirtioBlk,
                Metric::Iops
            ),
            Some(0.65)
        );
        assert!(md.contains(
            "| /dev/shm (tmpfs, O_DIRECT) | randread | IOPS | 90 | 65 | 100 | 0.90 | 0.65 |"
        ));
    }
}
