//! The `block` figure group: fio inside the guest on an NVMe or a virtio-blk disk, iovm
//! against QEMU q35, and KVM exits per I/O read where the VMMs run.
//!
//! The disk is one 256 MiB RAM block device where the VMMs run (`brd`'s `/dev/ram0`:
//! memory, like tmpfs, but it takes `O_DIRECT`, which the test host's 6.1 tmpfs refuses
//! and QEMU's `cache=none` needs), filled with zeros once so that every block is backed.
//! Each run boots the guest with the disk and runs four time-based fio jobs on it
//! ([`Job`], `--ioengine=libaio --direct=1`, terse output), each between two console marks
//! at which the probe reads KVM's exit counters ([`super::marks`]). The test host's own
//! fio on the same device (staged from this machine) is the physical limit.

use std::path::Path;

use super::json::{obj, Json};
use super::marks::{self, Snapshot};
use super::stats::Summary;
use super::vmm::Vmm;

/// The disk image as the bench script and the VMMs name it (a link to the device).
pub const IMAGE: &str = "/run/iovm-bench-disk";
/// Its size in MiB.
pub const IMAGE_MIB: u32 = 256;
/// What a fio result line on the console starts with (then the job and the terse line).
const FIO_LINE: &str = "IOVM-BENCH: fio ";

/// A kind of block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Disk {
    /// NVMe: iovm `nvme` + `nvme-ns`, QEMU `-device nvme`.
    Nvme,
    /// virtio-blk over PCI: iovm `virtio-blk`, QEMU `-device virtio-blk-pci`.
    VirtioBlk,
}

impl Disk {
    /// Both, NVMe first.
    pub const ALL: [Disk; 2] = [Disk::Nvme, Disk::VirtioBlk];

    /// Name in run names and results.json.
    pub fn id(self) -> &'static str {
        match self {
            Disk::Nvme => "nvme",
            Disk::VirtioBlk => "virtio-blk",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Disk::Nvme => "NVMe",
            Disk::VirtioBlk => "virtio-blk",
        }
    }

    /// The guest's device node.
    fn node(self) -> &'static str {
        match self {
            Disk::Nvme => "/dev/nvme0n1",
            Disk::VirtioBlk => "/dev/vda",
        }
    }

    /// The arguments that give `vmm` this disk on [`IMAGE`].
    pub fn vmm_args(self, vmm: Vmm) -> Vec<String> {
        let drive = format!("if=none,id=d,file={IMAGE},format=raw,cache=none,aio=io_uring");
        let args: Vec<String> = match (vmm, self) {
            (Vmm::Iovm, Disk::Nvme) => vec![
                "--device".into(),
                "nvme,id=n0,serial=iovm-bench".into(),
                "--device".into(),
                format!("nvme-ns,bus=n0,path={IMAGE}"),
            ],
            (Vmm::Iovm, Disk::VirtioBlk) => {
                vec!["--device".into(), format!("virtio-blk,path={IMAGE}")]
            }
            (_, Disk::Nvme) => vec![
                "-device".into(),
                "nvme,serial=iovm-bench,drive=d".into(),
                "-drive".into(),
                drive,
            ],
            (_, Disk::VirtioBlk) => vec![
                "-device".into(),
                "virtio-blk-pci,drive=d".into(),
                "-drive".into(),
                drive,
            ],
        };
        args
    }

    /// The guest script: each [`Job`] between its marks, then its terse line.
    pub fn guest_script(self, seconds: u32) -> String {
        let mut s = format!(
            "d={}\n[ -b $d ] || {{ echo \"IOVM-BENCH: no $d\"; exit 1; }}\n\
             j(){{ echo \"{m}$1.begin\"; sleep 0.1\n\
             r=$(fio --name=$1 --filename=$d {common} --rw=$2 --iodepth=$3 --bs=$4 \
             --runtime={seconds} 2>&1)\n\
             echo \"{m}$1.end\"; echo \"{FIO_LINE}$1 $r\"; }}\n",
            self.node(),
            m = marks::MARK,
            common = FIO_COMMON,
        );
        for job in Job::ALL {
            let (rw, depth, bs) = job.params();
            s.push_str(&format!("j {} {rw} {depth} {bs}\n", job.id()));
        }
        s
    }
}

/// fio options every job has.
const FIO_COMMON: &str = "--ioengine=libaio --direct=1 --time_based \
                          --output-format=terse --terse-version=3";

/// A fio job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    /// 4 KiB random reads, one in flight: latency.
    RandReadQd1,
    /// 4 KiB random reads, 32 in flight: IOPS.
    RandReadQd32,
    /// 4 KiB random writes, 32 in flight: IOPS.
    RandWriteQd32,
    /// 128 KiB sequential reads, 8 in flight: bandwidth.
    SeqReadQd8,
}

impl Job {
    /// In run order.
    pub const ALL: [Job; 4] = [
        Job::RandReadQd1,
        Job::RandReadQd32,
        Job::RandWriteQd32,
        Job::SeqReadQd8,
    ];

    /// fio's job name, also the marks' names.
    pub fn id(self) -> &'static str {
        match self {
            Job::RandReadQd1 => "randread-qd1",
            Job::RandReadQd32 => "randread-qd32",
            Job::RandWriteQd32 => "randwrite-qd32",
            Job::SeqReadQd8 => "read128k-qd8",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Job::RandReadQd1 => "4k randread QD1",
            Job::RandReadQd32 => "4k randread QD32",
            Job::RandWriteQd32 => "4k randwrite QD32",
            Job::SeqReadQd8 => "128k read QD8",
        }
    }

    /// `--rw`, `--iodepth`, `--bs`.
    fn params(self) -> (&'static str, u32, &'static str) {
        match self {
            Job::RandReadQd1 => ("randread", 1, "4k"),
            Job::RandReadQd32 => ("randread", 32, "4k"),
            Job::RandWriteQd32 => ("randwrite", 32, "4k"),
            Job::SeqReadQd8 => ("read", 8, "128k"),
        }
    }

    fn block_bytes(self) -> f64 {
        match self {
            Job::SeqReadQd8 => 131072.0,
            _ => 4096.0,
        }
    }

    /// The figures of this job's fio result shown in tables.
    fn shown(self) -> &'static [Metric] {
        match self {
            Job::RandReadQd1 => &[Metric::P50Us, Metric::P99Us],
            Job::RandReadQd32 | Job::RandWriteQd32 => &[Metric::Iops],
            Job::SeqReadQd8 => &[Metric::MBps],
        }
    }

    /// The host fio command (where the VMMs run) for one repetition, its terse line
    /// into `out`.
    pub fn host_command(self, fio: &str, seconds: u32, out: &str) -> String {
        let (rw, depth, bs) = self.params();
        format!(
            "timeout {} {fio} --name={} --filename={IMAGE} {FIO_COMMON} --rw={rw} \
             --iodepth={depth} --bs={bs} --runtime={seconds} >{out} 2>&1",
            seconds + 60,
            self.id()
        )
    }
}

/// A figure of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Median completion latency, µs.
    P50Us,
    /// 99th percentile completion latency, µs.
    P99Us,
    /// I/Os per second.
    Iops,
    /// MB/s (10^6 bytes).
    MBps,
    /// KVM exits per completed I/O.
    ExitsPerIo,
    /// MMIO exits to user space per I/O.
    MmioExitsPerIo,
    /// Port I/O exits per I/O.
    IoExitsPerIo,
    /// `hlt` exits per I/O.
    HaltExitsPerIo,
}

impl Metric {
    /// Exit figures, and the counter each divides.
    const EXITS: [(Metric, &'static str); 4] = [
        (Metric::ExitsPerIo, "exits"),
        (Metric::MmioExitsPerIo, "mmio_exits"),
        (Metric::IoExitsPerIo, "io_exits"),
        (Metric::HaltExitsPerIo, "halt_exits"),
    ];

    /// Key part in results.json.
    pub fn id(self) -> &'static str {
        match self {
            Metric::P50Us => "clat_p50_us",
            Metric::P99Us => "clat_p99_us",
            Metric::Iops => "iops",
            Metric::MBps => "mb_per_s",
            Metric::ExitsPerIo => "exits_per_io",
            Metric::MmioExitsPerIo => "mmio_exits_per_io",
            Metric::IoExitsPerIo => "io_exits_per_io",
            Metric::HaltExitsPerIo => "halt_exits_per_io",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Metric::P50Us => "p50 completion latency (µs)",
            Metric::P99Us => "p99 completion latency (µs)",
            Metric::Iops => "IOPS",
            Metric::MBps => "MB/s",
            Metric::ExitsPerIo => "KVM exits per I/O",
            Metric::MmioExitsPerIo => "of which MMIO exits to user space",
            Metric::IoExitsPerIo => "of which port I/O exits",
            Metric::HaltExitsPerIo => "of which `hlt` exits",
        }
    }

    /// Whether more is better (for ratios drawn as "lower is better").
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Iops | Metric::MBps)
    }
}

/// A block figure's table label: `<job>: <metric>`.
pub fn label(job: Job, m: Metric) -> String {
    format!("{}: {}", job.label(), m.label())
}

/// The table rows of one disk, in order: the fio figures, then the exits.
pub fn rows() -> Vec<(Job, Metric)> {
    let mut out: Vec<(Job, Metric)> = Job::ALL
        .iter()
        .flat_map(|&j| j.shown().iter().map(move |&m| (j, m)))
        .collect();
    for job in Job::ALL {
        for (m, _) in Metric::EXITS {
            out.push((job, m));
        }
    }
    out
}

/// What fio's terse (version 3) line says about one job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FioResult {
    /// Completed I/Os.
    pub ios: f64,
    /// `(metric, value)` of the fio figures.
    pub values: [(Metric, f64); 4],
}

/// Parses fio's terse version 3 line of `job`.
pub fn parse_terse(line: &str, job: Job) -> Option<FioResult> {
    let f: Vec<&str> = line.trim().split(';').collect();
    if f.len() < 90 || f[0] != "3" || f[4] != "0" {
        return None;
    }
    // The read status starts at field 5, the write status 41 fields later.
    let base = if job.params().0.contains("write") {
        46
    } else {
        5
    };
    let num = |i: usize| f.get(i)?.parse::<f64>().ok();
    let (kib, bw_kib, iops) = (num(base)?, num(base + 1)?, num(base + 2)?);
    // Completion latency percentiles (µs): 20 fields `P%=V`.
    let pct = |p: f64| {
        f[base + 12..base + 32].iter().find_map(|w| {
            let (k, v) = w.split_once("%=")?;
            (k.parse::<f64>().ok()? == p).then(|| v.parse::<f64>().ok())?
        })
    };
    let ios = kib * 1024.0 / job.block_bytes();
    if ios <= 0.0 {
        return None;
    }
    Some(FioResult {
        ios,
        values: [
            (Metric::P50Us, pct(50.0)?),
            (Metric::P99Us, pct(99.0)?),
            (Metric::Iops, iops),
            (Metric::MBps, bw_kib * 1024.0 / 1e6),
        ],
    })
}

/// The figures of one guest run from its console and the counters at its marks; an
/// error if a job has no fio result.
pub fn figures(console: &str, snaps: &[Snapshot]) -> Result<Vec<(Job, Metric, f64)>, String> {
    let mut out = Vec::new();
    for job in Job::ALL {
        let prefix = format!("{FIO_LINE}{} ", job.id());
        let line = console
            .lines()
            .find_map(|l| l.split_once(&prefix).map(|(_, r)| r))
            .ok_or_else(|| format!("no fio result for {}", job.id()))?;
        let r = parse_terse(line, job).ok_or_else(|| {
            let text: String = line.chars().take(120).collect();
            format!("fio {} failed: `{text}`", job.id())
        })?;
        out.extend(r.values.iter().map(|&(m, v)| (job, m, v)));
        for (m, counter) in Metric::EXITS {
            if let Some(d) = marks::delta(snaps, job.id(), counter) {
                out.push((job, m, d as f64 / r.ios));
            }
        }
    }
    Ok(out)
}

/// The test host's own fio runs: `(job, rep)` → its figures, or why none.
#[derive(Debug, Clone, Default)]
pub struct HostFio {
    /// `fio --version` where it ran, if it ran.
    pub version: Option<String>,
    /// Every run.
    pub runs: Vec<(Job, u32, Result<FioResult, String>)>,
}

impl HostFio {
    /// Reads what the bench script left in `dir` (`host-fio/<job>.<rep>.txt`).
    pub fn read(dir: &Path, reps: u32) -> HostFio {
        let version = std::fs::read_to_string(dir.join("host-fio/version.txt"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| t.starts_with("fio-"));
        let mut runs = Vec::new();
        if version.is_some() {
            for rep in 1..=reps {
                for job in Job::ALL {
                    let path = dir.join(format!("host-fio/{}.{rep}.txt", job.id()));
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let r = text
                        .lines()
                        .find_map(|l| parse_terse(l, job))
                        .ok_or_else(|| {
                            let first = text.lines().next().unwrap_or("no output");
                            format!("host fio {} failed: `{first}`", job.id())
                        });
                    runs.push((job, rep, r));
                }
            }
        }
        HostFio { version, runs }
    }

    /// The samples of one figure.
    pub fn samples(&self, job: Job, m: Metric) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|(j, _, _)| *j == job)
            .filter_map(|(_, _, r)| r.as_ref().ok())
            .filter_map(|r| r.values.iter().find(|(k, _)| *k == m).map(|(_, v)| *v))
            .collect()
    }

    /// The summary of one figure.
    pub fn summary(&self, job: Job, m: Metric) -> Option<Summary> {
        Summary::of(&self.samples(job, m))
    }

    /// The `host_fio` member of results.json.
    pub fn json(&self, summary: impl Fn(Option<Summary>) -> Json) -> Json {
        let mut figures = Vec::new();
        for job in Job::ALL {
            for &m in job.shown() {
                let s = self.samples(job, m);
                figures.push(obj([
                    ("job", job.id().into()),
                    ("figure", m.id().into()),
                    (
                        "samples",
                        Json::Arr(s.iter().map(|v| Json::Num(*v)).collect()),
                    ),
                    ("summary", summary(Summary::of(&s))),
                ]));
            }
        }
        let problems = self
            .runs
            .iter()
            .filter_map(|(j, rep, r)| Some(format!("{}.{rep}: {}", j.id(), r.as_ref().err()?)))
            .map(Json::from)
            .collect();
        obj([
            ("fio", self.version.clone().into()),
            ("figures", Json::Arr(figures)),
            ("problems", Json::Arr(problems)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terse v3 line of a 4k job that moved `kib` KiB, its status in the read or the
    /// write block (fields after the CPU ones cut).
    fn terse(write: bool, kib: u32) -> String {
        let status = |on: bool| -> Vec<String> {
            let mut f: Vec<String> = if on {
                vec![kib.to_string(), "8000".into(), "2000".into(), "5000".into()]
            } else {
                vec!["0".into(); 4]
            };
            f.extend(["0", "1", "0.5", "0.1", "10", "900", "480.5", "20"].map(String::from));
            for (p, v) in [(1.0, 100), (50.0, 470), (99.0, 820)] {
                f.push(format!("{p:.6}%={v}"));
            }
            f.extend((0..17).map(|_| "0%=0".to_owned()));
            f.extend((0..9).map(|_| "0".to_owned()));
            f
        };
        let mut f: Vec<String> = "3;fio-3.33;j;0;0".split(';').map(String::from).collect();
        f.extend(status(!write));
        f.extend(status(write));
        f.extend((0..20).map(|_| "0".to_owned()));
        f.join(";")
    }

    fn terse_read() -> String {
        terse(false, 40000)
    }

    #[test]
    fn test_parse_terse_read_job() {
        let r = parse_terse(&terse_read(), Job::RandReadQd1).unwrap();

        assert_eq!(r.ios, 10000.0);
        assert_eq!(
            r.values,
            [
                (Metric::P50Us, 470.0),
                (Metric::P99Us, 820.0),
                (Metric::Iops, 2000.0),
                (Metric::MBps, 8000.0 * 1024.0 / 1e6)
            ]
        );
        assert!(parse_terse(
            &terse_read().replace(";0;0;40000", ";0;5;40000"),
            Job::RandReadQd1
        )
        .is_none());
        assert!(parse_terse("fio: engine libaio not loadable", Job::RandReadQd1).is_none());
    }

    #[test]
    fn test_figures_divide_exits_by_ios() {
        let console = format!(
            "IOVM-BENCH: fio randread-qd1 {}\nIOVM-BENCH: fio randread-qd32 {t}\n\
             IOVM-BENCH: fio randwrite-qd32 {}\nIOVM-BENCH: fio read128k-qd8 {t}\n",
            terse_read(),
            terse(true, 320000),
            t = terse(false, 320000)
        );
        let snaps = marks::parse_all(
            "mark=randread-qd1.begin exits=1000 mmio_exits=10\n\
             mark=randread-qd1.end exits=31000 mmio_exits=20010\n",
        );

        let f = figures(&console, &snaps).unwrap();

        assert!(f.contains(&(Job::RandReadQd1, Metric::ExitsPerIo, 3.0)));
        assert!(f.contains(&(Job::RandReadQd1, Metric::MmioExitsPerIo, 2.0)));
        assert!(f.contains(&(Job::RandReadQd32, Metric::Iops, 2000.0)));
        assert!(f.contains(&(Job::RandWriteQd32, Metric::Iops, 2000.0)));
        assert!(!f
            .iter()
            .any(|(j, m, _)| *j == Job::RandReadQd32 && *m == Metric::ExitsPerIo));
        assert!(figures("IOVM-BENCH: fio randread-qd1 fio: error\n", &snaps)
            .unwrap_err()
            .contains("fio randread-qd1 failed"));
    }

    #[test]
    fn test_vmm_args_name_the_image() {
        let q = Disk::Nvme.vmm_args(Vmm::QemuQ35).join(" ");
        let i = Disk::VirtioBlk.vmm_args(Vmm::Iovm).join(" ");

        assert_eq!(
            q,
            "-device nvme,serial=iovm-bench,drive=d -drive \
             if=none,id=d,file=/run/iovm-bench-disk,format=raw,cache=none,aio=io_uring"
        );
        assert_eq!(i, "--device virtio-blk,path=/run/iovm-bench-disk");
    }

    #[test]
    fn test_guest_script_fits_the_command_line() {
        let s = Disk::Nvme.guest_script(3);

        assert!(s.contains("j randread-qd1 randread 1 4k\n"));
        assert!(s.contains("--runtime=3"));
        assert!(s.len() < 1000, "{} bytes", s.len());
    }
}
