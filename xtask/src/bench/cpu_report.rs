//! The report's tables of the VMM's CPU per unit of work ([`super::vmm_cpu`]): iovm
//! against QEMU q35 with their ratio and the goals ([`super::goals`]), then where each
//! VMM's time goes by kind of thread.

use super::block::{self, Disk, Job, Storage};
use super::boot::{summary, Figure, Outcome};
use super::goals;
use super::net;
use super::plan::Kind;
use super::report::{cell, num};
use super::stats::ratio;
use super::vmm::Vmm;
use super::vmm_cpu::{CpuFigure, ThreadKind};

/// The VMMs compared.
const VMMS: [Vmm; 2] = [Vmm::Iovm, Vmm::QemuQ35];

/// What the figures of a table row are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// One fio job on one disk on one storage (per I/O).
    Block(Disk, Storage, Job),
    /// The net run's transfer (per MiB).
    Net,
}

impl Work {
    fn figure(self, c: CpuFigure) -> Figure {
        match self {
            Work::Block(d, st, j) => Figure::Block(d, st, j, block::Metric::Cpu(c)),
            Work::Net => Figure::Net(net::Metric::Cpu(c)),
        }
    }

    fn kind(self) -> Kind {
        match self {
            Work::Block(d, st, _) => Kind::Block(d, st),
            Work::Net => Kind::Net,
        }
    }

    fn label(self) -> String {
        match self {
            Work::Block(d, _, j) => format!("{} {}", d.label(), j.label()),
            Work::Net => "virtio-net, TCP guest → peer".into(),
        }
    }
}

/// What the thread kinds are, for the text above the split tables.
const KINDS_TEXT: &str = "vCPU threads (iovm's `iovm-vcpu*`, QEMU's `CPU */KVM`: outside \
    the guest, KVM's exit handling, halt polling included, and the VMM's own for the exits \
    that reach it); device / \
    I/O threads (iovm's device workers `nvme-worker`, `virtio-blk`, `virtio-net`, \
    `virtio-rng`, `virtio-console`; QEMU's thread-pool `worker`s and `IO *` iothreads; in \
    both, io_uring's kernel workers `iou-wrk-*`); QEMU's main loop (its main thread, which \
    without an iothread also serves the disk's queues and the TAP; QEMU runs these groups \
    with `-name debug-threads=on` so that its threads have names); other threads (iovm's \
    main thread among them); threads that ended (the process's time less that of the \
    threads alive at the end mark: io_uring workers that idled out, and the rounding \
    between the process's and its threads' figures, a tick or so either way)";

/// How the figures are taken, for the text above the tables.
fn method(per: &str, unit: &str, window: &str) -> String {
    format!(
        "**VMM CPU {per}**: the host CPU time the VMM process spent outside the guest \
         {window}, `utime + stime − guest_time` of all its threads (fields 14, 15 and 43 of \
         `/proc/PID/stat`, which keeps the time of threads that have ended), read by \
         `bench-probe` at the same marks as KVM's counters, in {unit}: the VMM's own code \
         and the kernel's work on its behalf (KVM's exit handling and halt polling, the \
         system calls of its device emulation and I/O, the host's block or network stack \
         under them). Beside it the guest's CPU {per} (`guest_time`, the vCPU running the \
         guest), for scale. The kernel counts in clock ticks (`USER_HZ`, 1/100 s on x86), \
         so a figure moves in steps of a tick ÷ the work done, and short runs are coarse. \
         Guest time is sampled at the timer tick (a tick that finds the vCPU in the guest \
         counts whole) while user and system time are scaled to the scheduler's exact run \
         time: a vCPU thread that halts often and wakes with the tick can show more guest \
         time than it ran, so its time outside the guest, and the total, can come out low, \
         even below zero. Compare medians over several repetitions."
    )
}

fn ratio_cell(f: Figure, outcomes: &[Outcome]) -> String {
    ratio(
        summary(outcomes, f, Vmm::Iovm),
        summary(outcomes, f, Vmm::QemuQ35),
    )
    .map_or_else(|| "–".into(), |r| format!("{r:.2}"))
}

/// The table of the totals: each VMM's CPU outside the guest, the ratio, the goal,
/// and the guest's CPU.
fn totals(out: &mut String, outcomes: &[Outcome], rows: &[Work]) {
    out.push_str(
        "| | iovm | QEMU q35 | iovm ÷ QEMU q35 | goal | guest: iovm | guest: QEMU q35 |\n\
         |---|---:|---:|---:|---|---:|---:|\n",
    );
    for &w in rows {
        let f = w.figure(CpuFigure::Outside);
        let g = w.figure(CpuFigure::Guest);
        let goal = goals::check(outcomes, f).map_or_else(String::new, |c| c.cell());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {goal} | {} | {} |\n",
            w.label(),
            cell(summary(outcomes, f, Vmm::Iovm)),
            cell(summary(outcomes, f, Vmm::QemuQ35)),
            ratio_cell(f, outcomes),
            cell(summary(outcomes, g, Vmm::Iovm)),
            cell(summary(outcomes, g, Vmm::QemuQ35)),
        ));
    }
}

/// The table of the split by kind of thread: medians, a row per VMM.
fn split(out: &mut String, outcomes: &[Outcome], rows: &[Work]) {
    out.push_str("| | VMM | all threads |");
    for k in ThreadKind::ALL {
        out.push_str(&format!(" {} |", k.label()));
    }
    out.push_str("\n|---|---|---:|");
    out.push_str(&"---:|".repeat(ThreadKind::ALL.len()));
    out.push('\n');
    let median =
        |f: Figure, v: Vmm| summary(outcomes, f, v).map_or_else(|| "–".into(), |s| num(s.median));
    for &w in rows {
        for (i, v) in VMMS.into_iter().enumerate() {
            let first = if i == 0 { w.label() } else { String::new() };
            out.push_str(&format!(
                "| {first} | {} | {} |",
                v.label(),
                median(w.figure(CpuFigure::Outside), v)
            ));
            for k in ThreadKind::ALL {
                out.push_str(&format!(" {} |", median(w.figure(CpuFigure::Kind(k)), v)));
            }
            out.push('\n');
        }
    }
}

fn ran(outcomes: &[Outcome], w: Work) -> bool {
    outcomes.iter().any(|o| o.spec.kind == w.kind())
}

/// The block section's CPU part (from its `###` headings), for the disks that ran on
/// `storages`.
pub fn block_tables(outcomes: &[Outcome], storages: &[Storage]) -> String {
    let mut out = format!(
        "\n### VMM CPU per I/O\n\n{} Divided by the job's completed I/Os. **Goal**: iovm at \
         most {:.1}× QEMU q35's VMM CPU per I/O on NVMe and virtio-blk at depth 1 and 32, \
         met when iovm's median ÷ QEMU q35's is at most that. The split tables give the \
         medians per kind of thread: {KINDS_TEXT}.\n",
        method("per I/O", "µs", "during each fio job"),
        goals::CPU_RATIO
    );
    let mut checks = Vec::new();
    for &storage in storages {
        let rows: Vec<Work> = Disk::ALL
            .into_iter()
            .flat_map(|d| Job::ALL.map(|j| Work::Block(d, storage, j)))
            .filter(|&w| ran(outcomes, w))
            .collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n#### VMM CPU per I/O on {} (µs)\n\n",
            storage.label()
        ));
        totals(&mut out, outcomes, &rows);
        out.push_str(&format!(
            "\nBy kind of thread, on {} (medians, µs per I/O):\n\n",
            storage.label()
        ));
        split(&mut out, outcomes, &rows);
        checks.extend(
            rows.iter()
                .filter_map(|w| goals::check(outcomes, w.figure(CpuFigure::Outside))),
        );
    }
    out.push_str(&format!("\n{}\n", goals::tally(&checks)));
    out
}

/// The network section's CPU part (from its `###` heading).
pub fn net_tables(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "\n### VMM CPU per MiB\n\n{} Divided by the MiB sent. **Goal**: iovm at most \
         {:.1}× QEMU q35's (`vhost=off`) VMM CPU per MiB, met when iovm's median ÷ QEMU \
         q35's is at most that. The split table gives the medians per kind of thread: \
         {KINDS_TEXT}.\n\n",
        method("per MiB", "ms", "during the transfer"),
        goals::CPU_RATIO
    );
    totals(&mut out, outcomes, &[Work::Net]);
    out.push_str("\nBy kind of thread (medians, ms per MiB):\n\n");
    split(&mut out, outcomes, &[Work::Net]);
    let checks: Vec<_> = goals::check(outcomes, Work::Net.figure(CpuFigure::Outside))
        .into_iter()
        .collect();
    out.push_str(&format!("\n{}\n", goals::tally(&checks)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::RunSpec;

    fn outcome(kind: Kind, vmm: Vmm, rep: u32, samples: Vec<(Figure, f64)>) -> Outcome {
        Outcome {
            spec: RunSpec { kind, vmm, rep },
            record: None,
            samples,
            problem: None,
            warnings: Vec::new(),
        }
    }

    fn net(samples: &[(CpuFigure, f64)]) -> Vec<(Figure, f64)> {
        samples
            .iter()
            .map(|&(c, v)| (Work::Net.figure(c), v))
            .collect()
    }

    #[test]
    fn test_net_tables_give_ratio_goal_and_split() {
        let o = vec![
            outcome(
                Kind::Net,
                Vmm::Iovm,
                1,
                net(&[
                    (CpuFigure::Outside, 4.0),
                    (CpuFigure::Kind(ThreadKind::Vcpu), 1.5),
                    (CpuFigure::Kind(ThreadKind::Io), 2.5),
                    (CpuFigure::Kind(ThreadKind::Other), 0.0),
                    (CpuFigure::Kind(ThreadKind::Ended), 0.0),
                    (CpuFigure::Guest, 3.0),
                ]),
            ),
            outcome(
                Kind::Net,
                Vmm::QemuQ35,
                1,
                net(&[
                    (CpuFigure::Outside, 10.0),
                    (CpuFigure::Kind(ThreadKind::Vcpu), 2.0),
                    (CpuFigure::Kind(ThreadKind::MainLoop), 8.0),
                    (CpuFigure::Guest, 2.5),
                ]),
            ),
        ];

        let t = net_tables(&o);

        assert!(t.contains(
            "| virtio-net, TCP guest → peer | 4.00 | 10.0 | 0.40 | met (≤ 0.50) | 3.00 | 2.50 |\n"
        ));
        assert!(t.contains(
            "| virtio-net, TCP guest → peer | iovm | 4.00 | 1.50 | 2.50 | – | 0.00 | 0.00 |\n\
             |  | QEMU q35 | 10.0 | 2.00 | – | 8.00 | – | – |\n"
        ));
        assert!(t.contains("\nGoals met: 1 of 1.\n"));
    }

    #[test]
    fn test_block_tables_only_for_runs_and_goals_by_depth() {
        let kind = Kind::Block(Disk::VirtioBlk, Storage::Disk);
        let f = |j: Job| Work::Block(Disk::VirtioBlk, Storage::Disk, j).figure(CpuFigure::Outside);
        let o = vec![
            outcome(
                kind,
                Vmm::Iovm,
                1,
                vec![(f(Job::RandReadQd1), 60.0), (f(Job::SeqReadQd8), 9.0)],
            ),
            outcome(
                kind,
                Vmm::Iovm,
                2,
                vec![(f(Job::RandReadQd1), 80.0), (f(Job::SeqReadQd8), 11.0)],
            ),
            outcome(
                kind,
                Vmm::QemuQ35,
                1,
                vec![(f(Job::RandReadQd1), 100.0), (f(Job::SeqReadQd8), 20.0)],
            ),
        ];

        let t = block_tables(&o, &[Storage::Shm, Storage::Disk]);

        assert!(!t.contains("on /dev/shm"), "no runs there: {t}");
        assert!(t.contains("#### VMM CPU per I/O on disk, O_DIRECT (µs)"));
        assert!(t.contains(
            "| virtio-blk 4k randread QD1 | 70.0 (60.0–80.0) | 100 | 0.70 | **not met** (≤ 0.50) | – | – |\n"
        ));
        assert!(t.contains(
            "| virtio-blk 128k read QD8 | 10.0 (9.00–11.0) | 20.0 | 0.50 |  | – | – |\n"
        ));
        assert!(t.contains("| virtio-blk 4k randwrite QD32 | – | – | – | open (≤ 0.50) |"));
        assert!(t.contains("\nGoals met: 0 of 3 (2 open: a VMM's median is missing).\n"));
    }
}
