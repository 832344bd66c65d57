//! The `block` figure group: fio inside the guest on an NVMe or a virtio-blk disk, iovm
//! against QEMU q35, and KVM exits and the VMM's CPU time per I/O read where the VMMs
//! run.
//!
//! The disk's image is one of three [`Storage`]s where the VMMs run: a file in `/dev/shm`,
//! a raw disk taken with `O_DIRECT`, or a RAM block device. It is filled with zeros once
//! so that every block is backed. Each run boots the guest with the disk and runs four
//! time-based fio jobs on it ([`Job`], `--ioengine=libaio --direct=1`, terse output), each
//! between two console marks at which the probe reads KVM's exit counters and the VMM's
//! CPU time ([`super::marks`], [`super::vmm_cpu`]); fio writes them (`--exec_prerun`, `--exec_postrun`), so its own
//! start-up and exit fall outside. The test host's own fio on the same image (staged from this
//! machine) is the physical limit.

use std::path::Path;

use super::marks::{self, Snapshot};
use super::results::{HostFioFigure, HostFioSection};
use super::stats::Summary;
use super::vmm::Vmm;
use super::vmm_cpu::{self, CpuFigure};

/// The size of every disk image, in MiB.
pub const IMAGE_MIB: u32 = 256;
/// What a fio result line on the console starts with (then the job and the terse line).
const FIO_LINE: &str = "IOVM-BENCH: fio ";

/// Where a disk's image lives, where the VMMs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Storage {
    /// A file in `/dev/shm` (memory, through the page cache: the test host's 6.1 tmpfs
    /// refuses `O_DIRECT`, so QEMU gets `cache=writeback` there and iovm falls back to
    /// buffered I/O as it logs; the host's fio runs with `--direct=0`).
    Shm,
    /// A disk with `O_DIRECT` (QEMU `cache=none`): the batch's disk (`$DISK`), a raw image
    /// on this machine's disk; in the test host the virtio disk its QEMU backs with that
    /// image with `cache=none`.
    Disk,
    /// A RAM block device, `brd`'s `/dev/ram0` (memory, with `O_DIRECT`).
    Ram,
}

impl Storage {
    /// All, in report order.
    pub const ALL: [Storage; 3] = [Storage::Shm, Storage::Disk, Storage::Ram];
    /// The storages the block group measures unless told otherwise.
    pub const DEFAULT: [Storage; 2] = [Storage::Shm, Storage::Disk];

    /// Name in run names, figure keys and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Storage::Shm => "shm",
            Storage::Disk => "disk",
            Storage::Ram => "ram",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Storage::Shm => "/dev/shm",
            Storage::Disk => "disk, O_DIRECT",
            Storage::Ram => "RAM disk",
        }
    }

    /// The image as the bench script and the VMMs name it (a link to the file or device).
    pub fn image(self) -> &'static str {
        match self {
            Storage::Shm => "/run/iovm-bench-shm",
            Storage::Disk => "/run/iovm-bench-disk",
            Storage::Ram => "/run/iovm-bench-ram",
        }
    }

    /// Whether QEMU and the host's fio bypass the page cache on it.
    pub fn direct(self) -> bool {
        !matches!(self, Storage::Shm)
    }

    /// The bench script's lines that make the image, fill it with zeros and write where
    /// it is (the link's target) into `$B/block-image-<id>.txt`. Where it cannot be made
    /// there is no image, so that this storage's runs fail rather than measure another.
    pub fn setup(self) -> String {
        let img = self.image();
        let make = match self {
            Storage::Shm => format!("ln -sf /dev/shm/iovm-bench.img {img}"),
            Storage::Disk => format!(
                "{{ [ -n \"$DISK\" ] && [ -e \"$DISK\" ] && ln -sf \"$DISK\" {img}; }} || \
                 {{ echo \"bench: no disk for the disk storage (DISK='$DISK')\"; false; }}"
            ),
            // brd's RAM disk; where there is none (no root, no module), a tmpfs file.
            Storage::Ram => format!(
                "if modprobe brd rd_nr=1 rd_size={kib} max_part=0 && [ -b /dev/ram0 ]; then \
                 ln -sf /dev/ram0 {img}; else \
                 echo 'bench: no brd RAM disk: the RAM image is a file in /dev/shm'; \
                 ln -sf /dev/shm/iovm-bench-ram.img {img}; fi",
                kib = IMAGE_MIB * 1024
            ),
        };
        format!(
            "rm -f {img}\n\
             if {make}; then \
             dd if=/dev/zero of={img} bs=1M count={IMAGE_MIB} conv=notrunc 2>/dev/null || \
             echo 'bench: writing the {id} image failed'; \
             readlink {img} >\"$B/block-image-{id}.txt\"; fi\n",
            id = self.id()
        )
    }

    /// What the image turned out to be (`found`: the link's target), for the report.
    pub fn describe(self, found: &str) -> String {
        match (self, found) {
            (_, "") => "not made (the bench script did not say where it is)".into(),
            (Storage::Shm, f) => format!(
                "`{f}`: memory through the page cache; QEMU gets `cache=writeback` (the test \
                 host's 6.1 tmpfs refuses `O_DIRECT`, which `cache=none` needs), iovm tries \
                 `O_DIRECT` and falls back to buffered I/O where it is refused, the host's \
                 fio runs with `--direct=0`"
            ),
            (Storage::Disk, "/dev/vda") => "`/dev/vda` in the test host: a virtio disk that \
                the test host's QEMU backs with a raw image on this machine's disk \
                (`target/bench/disk.img`) with `cache=none,aio=io_uring`, so \
                `O_DIRECT` in the test host reaches this machine's disk"
                .into(),
            (Storage::Disk, f) => format!("`{f}`, a raw image on this machine's disk"),
            (Storage::Ram, "/dev/ram0") => "`/dev/ram0`, a 256 MiB `brd` RAM disk (memory like \
                /dev/shm, but a block device that takes `O_DIRECT`)"
                .into(),
            (Storage::Ram, f) => format!("`{f}` (no `brd` RAM disk was available)"),
        }
    }
}

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

    /// The arguments that give `vmm` this disk with its image on `storage`.
    pub fn vmm_args(self, vmm: Vmm, storage: Storage) -> Vec<String> {
        let image = storage.image();
        let drive = format!(
            "if=none,id=d,file={image},format=raw,cache={},aio=io_uring",
            if storage.direct() {
                "none"
            } else {
                "writeback"
            }
        );
        let args: Vec<String> = match (vmm, self) {
            (Vmm::Iovm, Disk::Nvme) => vec![
                "--device".into(),
                "nvme,id=n0,serial=iovm-bench".into(),
                "--device".into(),
                format!("nvme-ns,bus=n0,path={image}"),
            ],
            (Vmm::Iovm, Disk::VirtioBlk) => {
                vec!["--device".into(), format!("virtio-blk,path={image}")]
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

    /// The guest script: each of `jobs` between its marks, then its terse line. fio runs
    /// `exec_prerun`/`exec_postrun` as `CMD > job.prerun.txt 2>&1`, so each command ends
    /// in one that takes that redirection instead of the mark's `echo`.
    pub fn guest_script(self, seconds: u32, jobs: &[Job]) -> String {
        let mut s = format!(
            "d={}\n[ -b $d ] || {{ echo \"IOVM-BENCH: no $d\"; exit 1; }}\n\
             j(){{ r=$(fio --name=$1 --filename=$d {common} --direct=1 --rw=$2 --iodepth=$3 \
             --bs=$4 --runtime={seconds} \
             --exec_prerun=\"echo {m}$1.begin >/dev/console; sleep 0.1\" \
             --exec_postrun=\"echo {m}$1.end >/dev/console; true\" 2>&1 | grep -v 'Saving output of')\n\
             echo \"{FIO_LINE}$1 $r\"; }}\n",
            self.node(),
            m = marks::MARK,
            common = FIO_COMMON,
        );
        for job in jobs {
            let (rw, depth, bs) = job.params();
            s.push_str(&format!("j {} {rw} {depth} {bs}\n", job.id()));
        }
        s
    }
}

/// fio options every job has (and `--direct`: always in the guest, per storage where
/// the VMMs run).
const FIO_COMMON: &str = "--ioengine=libaio --time_based --output-format=terse --terse-version=3";

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

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Job::RandReadQd1 => "4k randread QD1",
            Job::RandReadQd32 => "4k randread QD32",
            Job::RandWriteQd32 => "4k randwrite QD32",
            Job::SeqReadQd8 => "128k read QD8",
        }
    }

    /// Requests in flight (`--iodepth`).
    pub fn depth(self) -> u32 {
        self.params().1
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

    /// The host fio command (where the VMMs run) on `storage`'s image for one repetition,
    /// its terse line into `out`.
    pub fn host_command(self, fio: &str, storage: Storage, seconds: u32, out: &str) -> String {
        self.host_command_on(fio, storage.image(), storage.direct(), seconds, out)
    }

    /// The host fio command of this job on `file` (a shell word), `--direct` as
    /// `direct` says, its terse line into `out`; killed 60 s after its run time.
    pub fn host_command_on(
        self,
        fio: &str,
        file: &str,
        direct: bool,
        seconds: u32,
        out: &str,
    ) -> String {
        let (rw, depth, bs) = self.params();
        format!(
            "timeout {} {fio} --name={} --filename={file} {FIO_COMMON} --direct={} --rw={rw} \
             --iodepth={depth} --bs={bs} --runtime={seconds} >{out} 2>&1",
            seconds + 60,
            self.id(),
            u8::from(direct)
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
    /// Exits for a host interrupt per I/O (KVM's kick of a running vCPU to deliver a
    /// new interrupt among them).
    IrqExitsPerIo,
    /// Instructions KVM emulated per I/O (an MMIO write it hands to an ioeventfd is
    /// one).
    EmulatedPerIo,
    /// Interrupts injected into the guest per I/O (the device's, and timer ticks).
    InjectedPerIo,
    /// The VMM's CPU time (or the guest's) per I/O, µs ([`vmm_cpu`]).
    Cpu(CpuFigure),
}

impl Metric {
    /// Exit figures, and the counter each divides.
    const EXITS: [(Metric, &'static str); 7] = [
        (Metric::ExitsPerIo, "exits"),
        (Metric::MmioExitsPerIo, "mmio_exits"),
        (Metric::IoExitsPerIo, "io_exits"),
        (Metric::HaltExitsPerIo, "halt_exits"),
        (Metric::IrqExitsPerIo, "irq_exits"),
        (Metric::EmulatedPerIo, "insn_emulation"),
        (Metric::InjectedPerIo, "irq_injections"),
    ];

    /// Key part in results.json.
    pub fn id(self) -> String {
        let s = match self {
            Metric::Cpu(c) => return format!("{}_us_per_io", c.id()),
            Metric::P50Us => "clat_p50_us",
            Metric::P99Us => "clat_p99_us",
            Metric::Iops => "iops",
            Metric::MBps => "mb_per_s",
            Metric::ExitsPerIo => "exits_per_io",
            Metric::MmioExitsPerIo => "mmio_exits_per_io",
            Metric::IoExitsPerIo => "io_exits_per_io",
            Metric::HaltExitsPerIo => "halt_exits_per_io",
            Metric::IrqExitsPerIo => "irq_exits_per_io",
            Metric::EmulatedPerIo => "emulated_insns_per_io",
            Metric::InjectedPerIo => "injected_interrupts_per_io",
        };
        s.to_owned()
    }

    fn label(self) -> String {
        let s = match self {
            Metric::Cpu(c) => return format!("{} per I/O (µs)", c.label()),
            Metric::P50Us => "p50 completion latency (µs)",
            Metric::P99Us => "p99 completion latency (µs)",
            Metric::Iops => "IOPS",
            Metric::MBps => "MB/s",
            Metric::ExitsPerIo => "KVM exits per I/O",
            Metric::MmioExitsPerIo => "of which MMIO exits to user space",
            Metric::IoExitsPerIo => "of which port I/O exits",
            Metric::HaltExitsPerIo => "of which `hlt` exits",
            Metric::IrqExitsPerIo => "of which exits for a host interrupt",
            Metric::EmulatedPerIo => "instructions KVM emulated (MMIO writes) per I/O",
            Metric::InjectedPerIo => "interrupts injected per I/O",
        };
        s.to_owned()
    }

    /// Whether the figure comes from KVM's counters (none for the host's own fio).
    pub fn is_kvm_counter(self) -> bool {
        Metric::EXITS.iter().any(|&(m, _)| m == self)
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

/// The CPU figures of one disk, job by job.
pub fn cpu_rows() -> Vec<(Job, Metric)> {
    Job::ALL
        .iter()
        .flat_map(|&j| CpuFigure::ALL.map(|c| (j, Metric::Cpu(c))))
        .collect()
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

/// The figures of `jobs` in one guest run of `vmm` from its console and the counters and
/// CPU times at its marks; an error if a job has no fio result.
pub fn figures(
    vmm: Vmm,
    console: &str,
    snaps: &[Snapshot],
    jobs: &[Job],
) -> Result<Vec<(Job, Metric, f64)>, String> {
    let mut out = Vec::new();
    for &job in jobs {
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
        let cpu = vmm_cpu::figures(vmm, snaps, job.id(), r.ios, 1e6);
        out.extend(cpu.into_iter().map(|(c, v)| (job, Metric::Cpu(c), v)));
    }
    Ok(out)
}

/// The test host's own fio runs: `(storage, job, rep)` → its figures, or why none.
#[derive(Debug, Clone, Default)]
pub struct HostFio {
    /// `fio --version` where it ran, if it ran.
    pub version: Option<String>,
    /// Every run.
    pub runs: Vec<(Storage, Job, u32, Result<FioResult, String>)>,
}

impl HostFio {
    /// Reads what the bench script left in `dir` (`host-fio/<storage>.<job>.<rep>.txt`)
    /// for `storages`.
    pub fn read(dir: &Path, reps: u32, storages: &[Storage]) -> HostFio {
        let version = std::fs::read_to_string(dir.join("host-fio/version.txt"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| t.starts_with("fio-"));
        let mut runs = Vec::new();
        if version.is_some() {
            for &storage in storages {
                for rep in 1..=reps {
                    for job in Job::ALL {
                        let path = dir.join(host_fio_file(storage, job, rep));
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        let r = text
                            .lines()
                            .find_map(|l| parse_terse(l, job))
                            .ok_or_else(|| {
                                let first = text.lines().next().unwrap_or("no output");
                                format!("host fio {} failed: `{first}`", job.id())
                            });
                        runs.push((storage, job, rep, r));
                    }
                }
            }
        }
        HostFio { version, runs }
    }

    /// The samples of one figure.
    pub fn samples(&self, storage: Storage, job: Job, m: Metric) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|(s, j, _, _)| *s == storage && *j == job)
            .filter_map(|(_, _, _, r)| r.as_ref().ok())
            .filter_map(|r| r.values.iter().find(|(k, _)| *k == m).map(|(_, v)| *v))
            .collect()
    }

    /// The summary of one figure.
    pub fn summary(&self, storage: Storage, job: Job, m: Metric) -> Option<Summary> {
        Summary::of(&self.samples(storage, job, m))
    }

    /// The storages it ran on, in order.
    fn storages(&self) -> Vec<Storage> {
        let mut out: Vec<Storage> = self.runs.iter().map(|r| r.0).collect();
        out.dedup();
        out
    }

    /// The `host_fio` member of results.json.
    pub fn section(&self) -> HostFioSection {
        let mut figures = Vec::new();
        for storage in self.storages() {
            for job in Job::ALL {
                for &m in job.shown() {
                    let samples = self.samples(storage, job, m);
                    figures.push(HostFioFigure {
                        storage: storage.id().into(),
                        job: job.id().into(),
                        figure: m.id(),
                        summary: Summary::of(&samples),
                        samples,
                    });
                }
            }
        }
        let problems = self
            .runs
            .iter()
            .filter_map(|(s, j, rep, r)| {
                Some(format!(
                    "{}.{}.{rep}: {}",
                    s.id(),
                    j.id(),
                    r.as_ref().err()?
                ))
            })
            .collect();
        HostFioSection {
            fio: self.version.clone(),
            figures,
            problems,
        }
    }
}

/// Where the bench script puts the host fio's terse output of one job, relative to
/// `$B`.
pub fn host_fio_file(storage: Storage, job: Job, rep: u32) -> String {
    format!("host-fio/{}.{}.{rep}.txt", storage.id(), job.id())
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
            "mark=randread-qd1.begin exits=1000 mmio_exits=10 clk_tck=100 proc=5:10:20:0 \
             task=5:10:20:0:iovm\n\
             mark=randread-qd1.end exits=31000 mmio_exits=20010 clk_tck=100 proc=5:30:40:10 \
             task=5:10:20:0:iovm task=6:20:20:10:iovm-vcpu0\n",
        );

        let f = figures(Vmm::Iovm, &console, &snaps, &Job::ALL).unwrap();

        assert!(f.contains(&(Job::RandReadQd1, Metric::ExitsPerIo, 3.0)));
        assert!(f.contains(&(Job::RandReadQd1, Metric::MmioExitsPerIo, 2.0)));
        // 30 ticks outside the guest and 10 in it, 1/100 s each, over 10000 I/Os.
        assert!(f.contains(&(Job::RandReadQd1, Metric::Cpu(CpuFigure::Outside), 30.0)));
        assert!(f.contains(&(Job::RandReadQd1, Metric::Cpu(CpuFigure::Guest), 10.0)));
        assert!(!f
            .iter()
            .any(|(j, m, _)| *j == Job::RandReadQd32 && matches!(m, Metric::Cpu(_))));
        assert!(f.contains(&(Job::RandReadQd32, Metric::Iops, 2000.0)));
        assert!(f.contains(&(Job::RandWriteQd32, Metric::Iops, 2000.0)));
        assert!(!f
            .iter()
            .any(|(j, m, _)| *j == Job::RandReadQd32 && *m == Metric::ExitsPerIo));
        assert!(figures(
            Vmm::Iovm,
            "IOVM-BENCH: fio randread-qd1 fio: error\n",
            &snaps,
            &Job::ALL
        )
        .unwrap_err()
        .contains("fio randread-qd1 failed"));
    }

    #[test]
    fn test_vmm_args_name_the_image_and_its_cache_mode() {
        let q = Disk::Nvme.vmm_args(Vmm::QemuQ35, Storage::Disk).join(" ");
        let q_shm = Disk::VirtioBlk
            .vmm_args(Vmm::QemuQ35, Storage::Shm)
            .join(" ");
        let i = Disk::VirtioBlk.vmm_args(Vmm::Iovm, Storage::Ram).join(" ");

        assert_eq!(
            q,
            "-device nvme,serial=iovm-bench,drive=d -drive \
             if=none,id=d,file=/run/iovm-bench-disk,format=raw,cache=none,aio=io_uring"
        );
        assert!(q_shm.ends_with("file=/run/iovm-bench-shm,format=raw,cache=writeback,aio=io_uring"));
        assert_eq!(i, "--device virtio-blk,path=/run/iovm-bench-ram");
    }

    #[test]
    fn test_host_fio_is_direct_except_on_shm() {
        let shm = Job::RandReadQd1.host_command("fio", Storage::Shm, 3, "o");
        let disk = Job::RandReadQd1.host_command("fio", Storage::Disk, 3, "o");

        assert!(shm.contains("--filename=/run/iovm-bench-shm "));
        assert!(shm.contains(" --direct=0 "));
        assert!(disk.contains("--filename=/run/iovm-bench-disk "));
        assert!(disk.contains(" --direct=1 "));
    }

    #[test]
    fn test_disk_setup_links_the_batch_disk_or_says_there_is_none() {
        let s = Storage::Disk.setup();

        assert!(s.contains("ln -sf \"$DISK\" /run/iovm-bench-disk"));
        assert!(s.contains("bench: no disk"));
        assert!(s.find("rm -f /run/iovm-bench-disk").unwrap() < s.find("ln -sf").unwrap());
        assert!(
            s.find("false; }; then dd").is_some(),
            "no dd without a disk: {s}"
        );
        assert!(s.contains("readlink /run/iovm-bench-disk >\"$B/block-image-disk.txt\""));
    }

    #[test]
    fn test_guest_script_fits_the_command_line() {
        let s = Disk::Nvme.guest_script(3, &Job::ALL);

        assert!(s.contains("j randread-qd1 randread 1 4k\n"));
        assert!(s.contains("--runtime=3"));
        assert!(s.len() < 1000, "{} bytes", s.len());
    }
}
