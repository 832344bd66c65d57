//! The goals the report checks iovm against: its VMM CPU outside the guest per I/O at
//! most half QEMU q35's on NVMe and virtio-blk at queue depths 1 and 32, and per MiB
//! sent at most half QEMU q35's (`vhost=off`) on virtio-net. A goal is met when the
//! ratio of the medians is at most its bound; it is open when a median is missing.
//!
//! The IOMMU group's goals ([`IommuCheck`], issue 18) are ratios that must be at least
//! their bound: on each disk at QD32, iovm's cost of strict translation (its IOPS with
//! the IOMMU ÷ without) ÷ QEMU q35's at least 1, and iovm with its IOMMU at least 1.2×
//! QEMU q35 with its own.
//!
//! The VFIO group's goals ([`VfioCheck`], issue 19) are on iovm's runs with the test
//! host's NVMe assigned: its QD32 IOPS at least QEMU q35's with the same device and at
//! least 0.9× the test host's own fio on it, and, at each queue depth, at most 0.1 MMIO
//! exits to user space per I/O (with the BARs mapped, no doorbell write reaches iovm).

use super::block::{self, Disk, Job, Storage};
use super::boot::{summary, Figure, Outcome};
use super::iommu::{self, Translation};
use super::net;
use super::plan::Kind;
use super::stats::ratio;
use super::vfio;
use super::vfio_host::HostLimit;
use super::vmm::Vmm;
use super::vmm_cpu::CpuFigure;

/// The most iovm's VMM CPU may be, as a share of QEMU q35's.
pub const CPU_RATIO: f64 = 0.5;

/// The block jobs the CPU goal applies to: those at depth 1 and 32.
fn goal_jobs() -> impl Iterator<Item = Job> {
    Job::ALL.into_iter().filter(|j| matches!(j.depth(), 1 | 32))
}

/// The most iovm's median of `figure` may be as a share of QEMU q35's, if the figure
/// has a goal.
pub fn bound(figure: Figure) -> Option<f64> {
    let outside = match figure {
        Figure::Block(_, _, job, block::Metric::Cpu(c)) => {
            goal_jobs().any(|j| j == job).then_some(c)
        }
        Figure::Net(net::Metric::Cpu(c)) => Some(c),
        _ => None,
    };
    (outside? == CpuFigure::Outside).then_some(CPU_RATIO)
}

/// Every figure with a goal.
fn figures() -> Vec<Figure> {
    let mut out = Vec::new();
    for storage in Storage::ALL {
        for disk in Disk::ALL {
            for job in goal_jobs() {
                out.push(Figure::Block(
                    disk,
                    storage,
                    job,
                    block::Metric::Cpu(CpuFigure::Outside),
                ));
            }
        }
    }
    out.push(Figure::Net(net::Metric::Cpu(CpuFigure::Outside)));
    out
}

/// The kind of run a figure comes from, for the figures with goals.
fn kind(figure: Figure) -> Option<Kind> {
    match figure {
        Figure::Block(disk, storage, ..) => Some(Kind::Block(disk, storage)),
        Figure::Net(_) => Some(Kind::Net),
        _ => None,
    }
}

/// A goal as the runs left it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// The figure.
    pub figure: Figure,
    /// The most iovm's median may be as a share of QEMU q35's.
    pub bound: f64,
    /// iovm's median ÷ QEMU q35's, if both exist.
    pub ratio: Option<f64>,
}

impl Check {
    /// Whether the goal is met; `None` while a median is missing.
    pub fn met(&self) -> Option<bool> {
        self.ratio.map(|r| r <= self.bound)
    }

    /// A table cell: `met (≤ 0.50)`, `not met (≤ 0.50)` or `open (≤ 0.50)`.
    pub fn cell(&self) -> String {
        let what = match self.met() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "open",
        };
        format!("{what} (≤ {:.2})", self.bound)
    }
}

/// The goal of `figure` checked against `outcomes`, if it has one.
pub fn check(outcomes: &[Outcome], figure: Figure) -> Option<Check> {
    Some(Check {
        figure,
        bound: bound(figure)?,
        ratio: ratio(
            summary(outcomes, figure, Vmm::Iovm),
            summary(outcomes, figure, Vmm::QemuQ35),
        ),
    })
}

/// The goals of the kinds of run among `outcomes`.
pub fn checks(outcomes: &[Outcome]) -> Vec<Check> {
    figures()
        .into_iter()
        .filter(|&f| kind(f).is_some_and(|k| outcomes.iter().any(|o| o.spec.kind == k)))
        .filter_map(|f| check(outcomes, f))
        .collect()
}

/// One line saying how many of `checks` are met, for the report.
pub fn tally(checks: &[Check]) -> String {
    let met = checks.iter().filter(|c| c.met() == Some(true)).count();
    let open = checks.iter().filter(|c| c.met().is_none()).count();
    let mut s = format!("Goals met: {met} of {}", checks.len());
    if open > 0 {
        s.push_str(&format!(" ({open} open: a VMM's median is missing)"));
    }
    s.push('.');
    s
}

/// The figure the IOMMU goals are on: QD32 IOPS.
fn iommu_goal_figure(disk: Disk, t: Translation) -> Figure {
    Figure::Iommu(disk, t, Job::RandReadQd32, block::Metric::Iops)
}

/// A goal of the IOMMU group ([`iommu`]): a ratio that must be at least its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuGoal {
    /// iovm's cost of strict translation (QD32 IOPS with ÷ without) at least QEMU's.
    Cost,
    /// iovm's QD32 IOPS with the IOMMU at least 1.2× QEMU's with its IOMMU.
    Speed,
}

impl IommuGoal {
    /// The least the goal's ratio may be.
    pub fn min(self) -> f64 {
        match self {
            IommuGoal::Cost => 1.0,
            IommuGoal::Speed => 1.2,
        }
    }

    /// Key part in results.json.
    pub fn id(self) -> &'static str {
        match self {
            IommuGoal::Cost => "cost_of_strict_translation",
            IommuGoal::Speed => "iops_with_iommu",
        }
    }

    /// What the ratio is, for the report.
    pub fn label(self) -> &'static str {
        match self {
            IommuGoal::Cost => {
                "iovm's cost of strict translation ÷ QEMU's (QD32 IOPS with ÷ without, each)"
            }
            IommuGoal::Speed => "iovm with its IOMMU ÷ QEMU with its IOMMU, QD32 IOPS",
        }
    }
}

/// An IOMMU goal as the runs left it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IommuCheck {
    /// The disk.
    pub disk: Disk,
    /// The goal.
    pub goal: IommuGoal,
    /// The ratio the goal is on, if every median it needs exists.
    pub ratio: Option<f64>,
}

impl IommuCheck {
    /// Whether the goal is met; `None` while a median is missing.
    pub fn met(&self) -> Option<bool> {
        self.ratio.map(|r| r >= self.goal.min())
    }

    /// A table cell: `met (≥ 1.20)`, `**not met** (≥ 1.20)` or `open (≥ 1.20)`.
    pub fn cell(&self) -> String {
        let what = match self.met() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "open",
        };
        format!("{what} (≥ {:.2})", self.goal.min())
    }

    /// Key in results.json: `iommu.<disk>.<goal>`.
    pub fn id(&self) -> String {
        format!("iommu.{}.{}", self.disk.id(), self.goal.id())
    }
}

/// The IOMMU goals of the disks the IOMMU group ran on: per disk, the cost of strict
/// translation (iovm's ÷ QEMU q35's) and iovm ÷ QEMU q35 with their IOMMUs, at QD32.
pub fn iommu_checks(outcomes: &[Outcome]) -> Vec<IommuCheck> {
    let mut out = Vec::new();
    for disk in Disk::ALL {
        let ran = outcomes
            .iter()
            .any(|o| matches!(o.spec.kind, Kind::Iommu(d, _) if d == disk));
        if !ran {
            continue;
        }
        let (job, m) = (Job::RandReadQd32, block::Metric::Iops);
        let cost_ratio = ratio_of(
            iommu::cost(outcomes, Vmm::Iovm, disk, job, m),
            iommu::cost(outcomes, Vmm::QemuQ35, disk, job, m),
        );
        let strict = iommu_goal_figure(disk, Translation::Strict);
        let speed = ratio(
            summary(outcomes, strict, Vmm::Iovm),
            summary(outcomes, strict, Vmm::QemuQ35),
        );
        out.push(IommuCheck {
            disk,
            goal: IommuGoal::Cost,
            ratio: cost_ratio,
        });
        out.push(IommuCheck {
            disk,
            goal: IommuGoal::Speed,
            ratio: speed,
        });
    }
    out
}

/// A goal of the VFIO group ([`vfio`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfioGoal {
    /// iovm's QD32 IOPS at least QEMU q35's, each with the device assigned.
    OverQemu,
    /// iovm's QD32 IOPS at least 0.9× the test host's own fio on the device.
    OverLimit,
    /// iovm's MMIO exits to user space per I/O of a job at most 0.1: with the BARs
    /// mapped into the guest, doorbell writes go to the device without an exit (one
    /// that exited would make it about 1 or more).
    DoorbellExits(Job),
}

impl VfioGoal {
    /// Every goal, in report order.
    pub fn all() -> Vec<VfioGoal> {
        let mut out = vec![VfioGoal::OverQemu, VfioGoal::OverLimit];
        out.extend(vfio::JOBS.map(VfioGoal::DoorbellExits));
        out
    }

    /// The goal's bound: the least the ratio may be, or the most the exits may be.
    pub fn bound(self) -> f64 {
        match self {
            VfioGoal::OverQemu => 1.0,
            VfioGoal::OverLimit => 0.9,
            VfioGoal::DoorbellExits(_) => 0.1,
        }
    }

    /// Whether the value must be at least the bound (else at most).
    pub fn at_least(self) -> bool {
        !matches!(self, VfioGoal::DoorbellExits(_))
    }

    /// Key in results.json: `vfio.<goal>`.
    pub fn id(self) -> String {
        match self {
            VfioGoal::OverQemu => "vfio.iops_over_qemu".into(),
            VfioGoal::OverLimit => "vfio.iops_over_host_limit".into(),
            VfioGoal::DoorbellExits(j) => format!("vfio.{}.mmio_exits_per_io", j.id()),
        }
    }

    /// What the value is, for the report.
    pub fn label(self) -> String {
        match self {
            VfioGoal::OverQemu => "iovm ÷ QEMU q35, QD32 IOPS".into(),
            VfioGoal::OverLimit => "iovm ÷ the test host's own fio, QD32 IOPS".into(),
            VfioGoal::DoorbellExits(j) => {
                format!("iovm's MMIO exits to user space per I/O, {}", j.label())
            }
        }
    }
}

/// A VFIO goal as the runs left it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VfioCheck {
    /// The goal.
    pub goal: VfioGoal,
    /// Its ratio or exits, if every median it needs exists.
    pub value: Option<f64>,
}

impl VfioCheck {
    /// Whether the goal is met; `None` while a median is missing.
    pub fn met(&self) -> Option<bool> {
        let b = self.goal.bound();
        self.value
            .map(|v| if self.goal.at_least() { v >= b } else { v <= b })
    }

    /// A table cell: `met (≥ 0.90)`, `**not met** (≤ 0.10)`, `open (≥ 1.00)`.
    pub fn cell(&self) -> String {
        let what = match self.met() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "open",
        };
        let op = if self.goal.at_least() { '≥' } else { '≤' };
        format!("{what} ({op} {:.2})", self.goal.bound())
    }
}

/// The VFIO goals, if the group ran: iovm's QD32 IOPS over QEMU q35's and over the test
/// host's own fio (`host`), and iovm's MMIO exits per I/O of each job.
pub fn vfio_checks(outcomes: &[Outcome], host: Option<&HostLimit>) -> Vec<VfioCheck> {
    if !outcomes.iter().any(|o| o.spec.kind == Kind::Vfio) {
        return Vec::new();
    }
    let qd32 = Figure::Vfio(Job::RandReadQd32, block::Metric::Iops);
    let iovm = summary(outcomes, qd32, Vmm::Iovm);
    VfioGoal::all()
        .into_iter()
        .map(|goal| {
            let value = match goal {
                VfioGoal::OverQemu => ratio(iovm, summary(outcomes, qd32, Vmm::QemuQ35)),
                VfioGoal::OverLimit => ratio(
                    iovm,
                    host.and_then(|h| h.summary(Job::RandReadQd32, block::Metric::Iops)),
                ),
                VfioGoal::DoorbellExits(job) => summary(
                    outcomes,
                    Figure::Vfio(job, block::Metric::MmioExitsPerIo),
                    Vmm::Iovm,
                )
                .map(|s| s.median),
            };
            VfioCheck { goal, value }
        })
        .collect()
}

/// `a ÷ b`, if both exist and `b` is positive.
fn ratio_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::RunSpec;
    use crate::bench::vmm_cpu::ThreadKind;

    fn outcome(kind: Kind, vmm: Vmm, samples: Vec<(Figure, f64)>) -> Outcome {
        Outcome {
            spec: RunSpec { kind, vmm, rep: 1 },
            record: None,
            samples,
            problem: None,
            warnings: Vec::new(),
        }
    }

    fn cpu(disk: Disk, job: Job, c: CpuFigure) -> Figure {
        Figure::Block(disk, Storage::Shm, job, block::Metric::Cpu(c))
    }

    #[test]
    fn test_goals_are_vmm_cpu_at_depth_1_and_32_and_per_mib() {
        let outside = CpuFigure::Outside;

        assert_eq!(bound(cpu(Disk::Nvme, Job::RandReadQd1, outside)), Some(0.5));
        assert_eq!(
            bound(cpu(Disk::VirtioBlk, Job::RandWriteQd32, outside)),
            Some(0.5)
        );
        assert_eq!(bound(cpu(Disk::Nvme, Job::SeqReadQd8, outside)), None);
        assert_eq!(
            bound(cpu(Disk::Nvme, Job::RandReadQd1, CpuFigure::Guest)),
            None
        );
        assert_eq!(
            bound(cpu(
                Disk::Nvme,
                Job::RandReadQd1,
                CpuFigure::Kind(ThreadKind::Vcpu)
            )),
            None
        );
        assert_eq!(bound(Figure::Net(net::Metric::Cpu(outside))), Some(0.5));
        assert_eq!(bound(Figure::Net(net::Metric::MBps)), None);
        assert_eq!(figures().len(), 3 * 2 * 3 + 1);
    }

    #[test]
    fn test_checks_of_the_kinds_that_ran() {
        let kind = Kind::Block(Disk::Nvme, Storage::Shm);
        let qd1 = cpu(Disk::Nvme, Job::RandReadQd1, CpuFigure::Outside);
        let qd32 = cpu(Disk::Nvme, Job::RandReadQd32, CpuFigure::Outside);
        let o = vec![
            outcome(kind, Vmm::Iovm, vec![(qd1, 40.0), (qd32, 30.0)]),
            outcome(kind, Vmm::QemuQ35, vec![(qd1, 100.0), (qd32, 50.0)]),
        ];

        let c = checks(&o);

        assert_eq!(c.len(), 3, "three jobs of one disk on one storage: {c:?}");
        assert_eq!(
            (c[0].figure, c[0].ratio, c[0].met()),
            (qd1, Some(0.4), Some(true))
        );
        assert_eq!(
            (c[1].figure, c[1].ratio, c[1].met()),
            (qd32, Some(0.6), Some(false))
        );
        assert_eq!(c[2].met(), None, "randwrite has no samples");
        assert_eq!(c[0].cell(), "met (≤ 0.50)");
        assert_eq!(c[1].cell(), "**not met** (≤ 0.50)");
        assert_eq!(c[2].cell(), "open (≤ 0.50)");
        assert_eq!(
            tally(&c),
            "Goals met: 1 of 3 (1 open: a VMM's median is missing)."
        );
    }

    #[test]
    fn test_goal_at_the_bound_is_met() {
        let f = Figure::Net(net::Metric::Cpu(CpuFigure::Outside));
        let o = vec![
            outcome(Kind::Net, Vmm::Iovm, vec![(f, 5.0)]),
            outcome(Kind::Net, Vmm::QemuQ35, vec![(f, 10.0)]),
        ];

        let c = checks(&o);

        assert_eq!(c.len(), 1);
        assert_eq!(c[0].met(), Some(true));
        assert_eq!(tally(&c), "Goals met: 1 of 1.");
        assert!(checks(&[]).is_empty());
    }

    fn iommu_iops(vmm: Vmm, disk: Disk, t: Translation, v: f64) -> Outcome {
        let f = Figure::Iommu(disk, t, Job::RandReadQd32, block::Metric::Iops);
        outcome(Kind::Iommu(disk, t), vmm, vec![(f, v)])
    }

    #[test]
    fn test_iommu_goals_compare_costs_and_iops_with_the_iommu() {
        let (off, strict) = (Translation::Off, Translation::Strict);
        let o = vec![
            iommu_iops(Vmm::Iovm, Disk::Nvme, off, 1000.0),
            iommu_iops(Vmm::Iovm, Disk::Nvme, strict, 600.0),
            iommu_iops(Vmm::QemuQ35, Disk::Nvme, off, 800.0),
            iommu_iops(Vmm::QemuQ35, Disk::Nvme, strict, 500.0),
            iommu_iops(Vmm::Iovm, Disk::VirtioBlk, strict, 900.0),
            iommu_iops(Vmm::QemuQ35, Disk::VirtioBlk, strict, 750.0),
        ];

        let c = iommu_checks(&o);

        assert_eq!(c.len(), 4, "two goals per disk: {c:?}");
        // iovm keeps 0.6 of its IOPS, QEMU 0.625: iovm's cost is worse.
        assert_eq!((c[0].disk, c[0].goal), (Disk::Nvme, IommuGoal::Cost));
        assert!((c[0].ratio.unwrap() - 0.96).abs() < 1e-9, "{c:?}");
        assert_eq!(c[0].met(), Some(false));
        assert_eq!(c[0].cell(), "**not met** (≥ 1.00)");
        assert_eq!(c[0].id(), "iommu.nvme.cost_of_strict_translation");
        assert_eq!(
            (c[1].goal, c[1].ratio, c[1].met()),
            (IommuGoal::Speed, Some(1.2), Some(true))
        );
        assert_eq!(c[1].cell(), "met (≥ 1.20)");
        assert_eq!(c[2].ratio, None, "virtio-blk has no runs without the IOMMU");
        assert_eq!(c[2].cell(), "open (≥ 1.00)");
        assert_eq!(
            (c[3].disk, c[3].ratio, c[3].met()),
            (Disk::VirtioBlk, Some(1.2), Some(true))
        );
        assert!(iommu_checks(&o[..4]).iter().all(|c| c.disk == Disk::Nvme));
        assert!(iommu_checks(&[]).is_empty());
    }

    #[test]
    fn test_vfio_goals_compare_with_qemu_and_the_limit_and_count_doorbell_exits() {
        let iops = Figure::Vfio(Job::RandReadQd32, block::Metric::Iops);
        let mmio = |j| Figure::Vfio(j, block::Metric::MmioExitsPerIo);
        let o = vec![
            outcome(
                Kind::Vfio,
                Vmm::Iovm,
                vec![
                    (iops, 900.0),
                    (mmio(Job::RandReadQd1), 0.02),
                    (mmio(Job::RandReadQd32), 1.1),
                ],
            ),
            outcome(Kind::Vfio, Vmm::QemuQ35, vec![(iops, 1000.0)]),
        ];

        let c = vfio_checks(&o, None);

        assert_eq!(c.len(), 4);
        assert_eq!((c[0].goal, c[0].value), (VfioGoal::OverQemu, Some(0.9)));
        assert_eq!(c[0].cell(), "**not met** (≥ 1.00)");
        assert_eq!((c[1].goal, c[1].met()), (VfioGoal::OverLimit, None));
        assert_eq!(c[1].cell(), "open (≥ 0.90)");
        assert_eq!(c[2].goal.id(), "vfio.randread-qd1.mmio_exits_per_io");
        assert_eq!(
            (c[2].met(), c[2].cell()),
            (Some(true), "met (≤ 0.10)".into())
        );
        assert_eq!(c[3].met(), Some(false), "a doorbell exit per I/O");
        assert!(vfio_checks(&[], None).is_empty());
    }
}
