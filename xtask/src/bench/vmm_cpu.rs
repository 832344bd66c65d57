//! Where a VMM's CPU goes while its guest does I/O: the host CPU time the VMM process
//! spent outside the guest between a job's two marks ([`super::marks`]), split by kind
//! of thread ([`ThreadKind`]), and the time its vCPUs spent in the guest, per unit of
//! work (an I/O, a MiB sent).

use super::marks::{self, Snapshot};
use super::proc_stat::{ProcessCpu, Stat};
use super::vmm::Vmm;

/// iovm's device worker threads, by name.
const IOVM_WORKERS: [&str; 5] = [
    "nvme-worker",
    "virtio-blk",
    "virtio-net",
    "virtio-rng",
    "virtio-console",
];

/// A kind of VMM thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadKind {
    /// vCPU threads (iovm's `iovm-vcpu*`, QEMU's `CPU */KVM`): outside the guest, KVM's
    /// exit handling (halt polling included) and the VMM's own for the exits that reach
    /// it.
    Vcpu,
    /// Threads that move the devices' I/O: iovm's device workers (`nvme-worker`,
    /// `virtio-blk`, `virtio-net`, `virtio-rng`, `virtio-console`), QEMU's thread-pool
    /// `worker`s and `IO *` iothreads; in both, the kernel's io_uring workers
    /// (`iou-wrk-*`, and `iou-sqp-*` had either one polling).
    Io,
    /// QEMU's main loop, its main thread (without an iothread it also serves the
    /// devices' queues and the TAP). iovm's main thread counts as [`ThreadKind::Other`].
    MainLoop,
    /// Every other thread alive at the end of the window.
    Other,
    /// Threads that ended within the window (io_uring workers that idled out, as a
    /// rule): the process's time less that of the threads alive at its end, so also
    /// the rounding between the process's figures and its threads'.
    Ended,
}

impl ThreadKind {
    /// All, in table order.
    pub const ALL: [ThreadKind; 5] = [
        ThreadKind::Vcpu,
        ThreadKind::Io,
        ThreadKind::MainLoop,
        ThreadKind::Other,
        ThreadKind::Ended,
    ];

    /// The kind of thread `t` of `vmm`'s process `pid` (by its name; QEMU's main loop
    /// by its id). QEMU names its threads only with `-name debug-threads=on`
    /// ([`thread_name_args`]); without, they all count as other.
    pub fn of(vmm: Vmm, pid: u32, t: &Stat) -> ThreadKind {
        let name = t.comm.as_str();
        let io_uring = name.starts_with("iou-wrk-") || name.starts_with("iou-sqp-");
        match vmm {
            Vmm::Iovm if name.starts_with("iovm-vcpu") => ThreadKind::Vcpu,
            Vmm::Iovm if io_uring || IOVM_WORKERS.contains(&name) => ThreadKind::Io,
            Vmm::Iovm => ThreadKind::Other,
            _ if name.starts_with("CPU ") && name.ends_with("/KVM") => ThreadKind::Vcpu,
            _ if io_uring || name == "worker" || name.starts_with("IO ") => ThreadKind::Io,
            _ if t.id == pid => ThreadKind::MainLoop,
            _ => ThreadKind::Other,
        }
    }

    /// Whether `vmm` has threads of this kind (iovm has no main loop of its own kind).
    pub fn applies(self, vmm: Vmm) -> bool {
        !(self == ThreadKind::MainLoop && vmm == Vmm::Iovm)
    }

    /// Key part in results.json.
    pub fn id(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Io => "io_threads",
            ThreadKind::MainLoop => "main_loop",
            ThreadKind::Other => "other",
            ThreadKind::Ended => "ended_threads",
        }
    }

    /// Column title in tables.
    pub fn label(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vCPU threads",
            ThreadKind::Io => "device / I/O threads",
            ThreadKind::MainLoop => "main loop",
            ThreadKind::Other => "other threads",
            ThreadKind::Ended => "threads that ended",
        }
    }
}

/// The extra arguments that make `vmm` name its threads: QEMU's `-name
/// debug-threads=on` (iovm always does).
pub fn thread_name_args(vmm: Vmm) -> Vec<String> {
    match vmm {
        Vmm::Iovm => Vec::new(),
        _ => vec!["-name".into(), "guest=bench,debug-threads=on".into()],
    }
}

/// A VMM process's CPU time between two snapshots, in clock ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Clock ticks per second.
    pub ticks_per_second: u64,
    /// Outside the guest, the whole process (threads that ended included).
    pub outside: i64,
    /// In the guest, the whole process.
    pub guest: i64,
    /// Outside the guest per kind of thread, every kind that applies to the VMM, in
    /// [`ThreadKind::ALL`]'s order; they add up to [`Window::outside`].
    pub by_kind: Vec<(ThreadKind, i64)>,
}

impl Window {
    /// From `begin` to `end` of `vmm`'s process; `None` unless both are of the same
    /// process with the same clock.
    pub fn between(vmm: Vmm, begin: &ProcessCpu, end: &ProcessCpu) -> Option<Window> {
        if begin.pid != end.pid || begin.ticks_per_second != end.ticks_per_second {
            return None;
        }
        let outside = end.process.outside() - begin.process.outside();
        let guest = end.process.guest as i64 - begin.process.guest as i64;
        let mut by_kind: Vec<(ThreadKind, i64)> = ThreadKind::ALL
            .into_iter()
            .filter(|k| k.applies(vmm))
            .map(|k| (k, 0))
            .collect();
        let mut add = |kind: ThreadKind, ticks: i64| {
            if let Some((_, sum)) = by_kind.iter_mut().find(|(k, _)| *k == kind) {
                *sum += ticks;
            }
        };
        let mut alive = 0;
        for t in &end.threads {
            // A thread born within the window started from zero.
            let before = begin
                .threads
                .iter()
                .find(|b| b.id == t.id)
                .map_or(0, |b| b.times.outside());
            let ticks = t.times.outside() - before;
            alive += ticks;
            add(ThreadKind::of(vmm, end.pid, t), ticks);
        }
        add(ThreadKind::Ended, outside - alive);
        Some(Window {
            ticks_per_second: end.ticks_per_second,
            outside,
            guest,
            by_kind,
        })
    }

    /// The window of job `job` among `snaps` (marks `<job>.begin` and `<job>.end`).
    pub fn of_job(vmm: Vmm, snaps: &[Snapshot], job: &str) -> Option<Window> {
        let (a, b) = marks::window(snaps, job)?;
        Window::between(vmm, a.cpu.as_ref()?, b.cpu.as_ref()?)
    }

    /// Ticks of `figure` in this window (`None` for a kind the VMM does not have).
    pub fn ticks(&self, figure: CpuFigure) -> Option<i64> {
        match figure {
            CpuFigure::Outside => Some(self.outside),
            CpuFigure::Guest => Some(self.guest),
            CpuFigure::Kind(kind) => self
                .by_kind
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, t)| *t),
        }
    }
}

/// A figure of a VMM's CPU time in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuFigure {
    /// The VMM process outside the guest: `utime + stime − guest_time` of all its
    /// threads.
    Outside,
    /// Of that, threads of one kind.
    Kind(ThreadKind),
    /// In the guest: `guest_time`.
    Guest,
}

impl CpuFigure {
    /// All, in report order.
    pub const ALL: [CpuFigure; 7] = [
        CpuFigure::Outside,
        CpuFigure::Kind(ThreadKind::Vcpu),
        CpuFigure::Kind(ThreadKind::Io),
        CpuFigure::Kind(ThreadKind::MainLoop),
        CpuFigure::Kind(ThreadKind::Other),
        CpuFigure::Kind(ThreadKind::Ended),
        CpuFigure::Guest,
    ];

    /// Key part in results.json (before the unit).
    pub fn id(self) -> String {
        match self {
            CpuFigure::Outside => "vmm_cpu".into(),
            CpuFigure::Kind(k) => format!("vmm_cpu_{}", k.id()),
            CpuFigure::Guest => "guest_cpu".into(),
        }
    }

    /// Row title (before the unit).
    pub fn label(self) -> String {
        match self {
            CpuFigure::Outside => "VMM CPU outside the guest".into(),
            CpuFigure::Kind(k) => format!("VMM CPU outside the guest, {}", k.label()),
            CpuFigure::Guest => "guest CPU (vCPU in the guest)".into(),
        }
    }

    /// Whether the ratio charts show it: the VMM's total, which has a goal, not its
    /// split by thread nor the guest's time.
    pub fn on_chart(self) -> bool {
        self == CpuFigure::Outside
    }
}

/// The CPU figures of `vmm` in the window of job `job` among `snaps`, per `units` of
/// work, in `1/scale` s (`scale` 1e6: µs); none without both marks' CPU times or work.
pub fn figures(
    vmm: Vmm,
    snaps: &[Snapshot],
    job: &str,
    units: f64,
    scale: f64,
) -> Vec<(CpuFigure, f64)> {
    let Some(w) = Window::of_job(vmm, snaps, job).filter(|_| units > 0.0) else {
        return Vec::new();
    };
    let ticks_per_unit = w.ticks_per_second as f64 * units;
    CpuFigure::ALL
        .into_iter()
        .filter_map(|f| Some((f, w.ticks(f)? as f64 * scale / ticks_per_unit)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::proc_stat::Times;

    fn stat(id: u32, comm: &str, user: u64, system: u64, guest: u64) -> Stat {
        Stat {
            id,
            comm: comm.into(),
            times: Times {
                user,
                system,
                guest,
            },
        }
    }

    fn cpu(process: (u64, u64, u64), threads: Vec<Stat>) -> ProcessCpu {
        ProcessCpu {
            pid: 10,
            ticks_per_second: 100,
            process: Times {
                user: process.0,
                system: process.1,
                guest: process.2,
            },
            threads,
        }
    }

    #[test]
    fn test_iovm_threads_by_name() {
        let kind = |name: &str, id: u32| ThreadKind::of(Vmm::Iovm, 10, &stat(id, name, 0, 0, 0));

        assert_eq!(kind("iovm-vcpu0", 11), ThreadKind::Vcpu);
        assert_eq!(kind("iovm-vcpu12", 12), ThreadKind::Vcpu);
        for w in IOVM_WORKERS {
            assert_eq!(kind(w, 13), ThreadKind::Io, "{w}");
        }
        assert_eq!(kind("iou-wrk-13", 14), ThreadKind::Io);
        assert_eq!(kind("iovm", 10), ThreadKind::Other, "iovm's main thread");
        assert_eq!(kind("iovm-signals", 15), ThreadKind::Other);
        assert_eq!(kind("virtio-blk2", 16), ThreadKind::Other);
        assert_eq!(kind("CPU 0/KVM", 17), ThreadKind::Other);
    }

    #[test]
    fn test_qemu_threads_by_name_and_main_thread() {
        let kind = |name: &str, id: u32| ThreadKind::of(Vmm::QemuQ35, 10, &stat(id, name, 0, 0, 0));

        assert_eq!(kind("CPU 0/KVM", 11), ThreadKind::Vcpu);
        assert_eq!(kind("CPU 15/KVM", 12), ThreadKind::Vcpu);
        assert_eq!(kind("worker", 13), ThreadKind::Io);
        assert_eq!(kind("IO iothread0", 14), ThreadKind::Io);
        assert_eq!(kind("iou-wrk-10", 15), ThreadKind::Io);
        assert_eq!(kind("qemu-system-x86", 10), ThreadKind::MainLoop);
        assert_eq!(kind("qemu-system-x86", 16), ThreadKind::Other);
        assert_eq!(kind("call_rcu", 17), ThreadKind::Other);
        assert_eq!(kind("iovm-vcpu0", 18), ThreadKind::Other);
        assert!(!ThreadKind::MainLoop.applies(Vmm::Iovm));
        assert!(ThreadKind::MainLoop.applies(Vmm::QemuQ35));
    }

    #[test]
    fn test_window_splits_by_kind_and_keeps_ended_threads() {
        // Main 10, vCPU 11, worker 12 (born in the window), io_uring worker 13 (ended
        // in the window after 6 more ticks), signals 14.
        // The process's figures hold 9 ticks of threads that ended before.
        let begin = cpu(
            (1020, 380, 900),
            vec![
                stat(10, "iovm", 20, 30, 0),
                stat(11, "iovm-vcpu0", 1000, 300, 900),
                stat(13, "iou-wrk-13", 0, 40, 0),
                stat(14, "iovm-signals", 0, 1, 0),
            ],
        );
        let end = cpu(
            (2432, 787, 2100),
            vec![
                stat(10, "iovm", 22, 31, 0),
                stat(11, "iovm-vcpu0", 2400, 550, 2100),
                stat(12, "virtio-blk", 10, 150, 0),
                stat(14, "iovm-signals", 0, 1, 0),
            ],
        );

        let w = Window::between(Vmm::Iovm, &begin, &end).unwrap();

        // Outside: (2432 + 787 − 2100) − (1020 + 380 − 900) = 619.
        assert_eq!(w.outside, 619);
        assert_eq!(w.guest, 1200);
        assert_eq!(
            w.by_kind,
            vec![
                (ThreadKind::Vcpu, 450),
                (ThreadKind::Io, 160),
                (ThreadKind::Other, 3),
                (ThreadKind::Ended, 6),
            ]
        );
        assert_eq!(w.by_kind.iter().map(|(_, t)| t).sum::<i64>(), w.outside);
        assert_eq!(w.ticks(CpuFigure::Kind(ThreadKind::MainLoop)), None);
    }

    #[test]
    fn test_window_needs_the_same_process_and_clock() {
        let a = cpu((1, 1, 0), vec![]);
        let other_pid = ProcessCpu {
            pid: 11,
            ..a.clone()
        };
        let other_clock = ProcessCpu {
            ticks_per_second: 250,
            ..a.clone()
        };

        assert!(Window::between(Vmm::Iovm, &a, &other_pid).is_none());
        assert!(Window::between(Vmm::Iovm, &a, &other_clock).is_none());
        assert!(Window::between(Vmm::Iovm, &a, &a).is_some());
    }

    fn snap(name: &str, cpu: Option<ProcessCpu>) -> Snapshot {
        Snapshot {
            name: name.into(),
            counters: vec![],
            cpu,
        }
    }

    #[test]
    fn test_figures_per_io_in_microseconds() {
        let snaps = [
            snap(
                "q.begin",
                Some(cpu(
                    (100, 100, 50),
                    vec![
                        stat(10, "qemu-system-x86", 40, 60, 0),
                        stat(11, "CPU 0/KVM", 60, 40, 50),
                    ],
                )),
            ),
            snap(
                "q.end",
                Some(cpu(
                    (500, 300, 250),
                    vec![
                        stat(10, "qemu-system-x86", 190, 160, 0),
                        stat(11, "CPU 0/KVM", 310, 140, 250),
                    ],
                )),
            ),
        ];

        // 400 ticks outside (250 main loop, 150 vCPU), 200 in the guest, 1/100 s each,
        // over 2000 I/Os.
        let f = figures(Vmm::QemuQ35, &snaps, "q", 2000.0, 1e6);

        assert_eq!(
            f,
            vec![
                (CpuFigure::Outside, 2000.0),
                (CpuFigure::Kind(ThreadKind::Vcpu), 750.0),
                (CpuFigure::Kind(ThreadKind::Io), 0.0),
                (CpuFigure::Kind(ThreadKind::MainLoop), 1250.0),
                (CpuFigure::Kind(ThreadKind::Other), 0.0),
                (CpuFigure::Kind(ThreadKind::Ended), 0.0),
                (CpuFigure::Guest, 1000.0),
            ]
        );
        assert!(figures(Vmm::QemuQ35, &snaps, "q", 0.0, 1e6).is_empty());
        assert!(figures(Vmm::QemuQ35, &snaps, "r", 10.0, 1e6).is_empty());
        assert!(figures(
            Vmm::QemuQ35,
            &[snaps[0].clone(), snap("q.end", None)],
            "q",
            1.0,
            1e6
        )
        .is_empty());
    }

    #[test]
    fn test_qemu_is_asked_to_name_its_threads() {
        assert_eq!(
            thread_name_args(Vmm::QemuQ35),
            ["-name", "guest=bench,debug-threads=on"]
        );
        assert!(thread_name_args(Vmm::Iovm).is_empty());
    }
}
