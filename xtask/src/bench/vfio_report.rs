//! The report's section of the `vfio` group ([`super::vfio`]): iovm and QEMU q35 with the
//! test host's NVMe assigned, the test host's own fio on it as the limit, the ratios and
//! the goals.

use super::block::{self, Job, Metric};
use super::boot::{summary, Figure, Outcome};
use super::goals;
use super::stats::{ratio, Summary};
use super::vfio::{self, BDF};
use super::vfio_host::HostLimit;
use super::vmm::Vmm;

/// A ratio for a table, or `–`.
fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}"))
}

/// The section (from its `##` heading): what ran, the table, the goals, the runs of the
/// limit that failed. `seconds`: per fio job.
pub fn section(
    outcomes: &[Outcome],
    host: Option<&HostLimit>,
    seconds: u32,
    cell: impl Fn(Option<Summary>) -> String,
) -> String {
    let limit = match host.and_then(|h| h.version.as_deref()) {
        Some(v) => format!(
            "Before each repetition the test host gives the controller back to its own \
             `nvme` driver (`driver_override`, unbind, `drivers_probe`), finds its namespace \
             by the controller's serial number, and runs the same jobs on it with its own fio \
             ({v}, staged from this machine); then the controller goes back to `vfio-pci`. \
             That is the limit: the device with no VM in between."
        ),
        None => "There is no limit column: no fio to stage on this machine.".into(),
    };
    let mut out = format!(
        "\n## Device assignment (VFIO, issue 19)\n\nThe test host's QEMU gives it an NVMe \
         controller (`-device nvme` behind a PCIe root port, under `-device \
         intel-iommu,intremap=on,caching-mode=on`, backed by a raw image on this machine \
         with `cache=none`) at `{BDF}`, which the test host binds to `vfio-pci`. iovm gets \
         `--device vfio-pci,host={BDF}`, QEMU q35 `-device vfio-pci,host={BDF}`; both map \
         the controller's BARs into the guest (QEMU by default), and the guest's own `nvme` \
         driver drives it with MSI-X (a run whose guest saw another controller or other \
         interrupts does not count). fio in the guest: 4 KiB random reads, `--direct=1`, \
         libaio, at queue depth 1 and 32, {seconds} s each. {limit}\n\n\
         **Exits per I/O** are read as for the block group, the same way for both VMMs: \
         KVM's global counters in the test host's debugfs (`/sys/kernel/debug/kvm/`; one VM \
         runs at a time) at marks fio writes, divided by the I/Os fio completed. \
         `mmio_exits` counts the MMIO accesses KVM handed to user space: a doorbell write \
         that trapped would be one, so with the BARs mapped it should stay near 0; \
         `insn_emulation` counts instructions KVM emulated itself. **CPU per I/O**: the VMM \
         process's time outside the guest and the guest's own time (`/proc/PID/stat`, \
         10 ms ticks) between the same marks, as for the block group. The device is itself \
         emulated by the test host's QEMU (TCG), so absolute figures are an emulator's: \
         compare the ratios. Ratios: iovm's median ÷ QEMU q35's and ÷ the limit's (for \
         IOPS above 1 favours iovm, for latency and exits below 1 does).\n\n\
         | | iovm | QEMU q35 | test host's fio (limit) | iovm ÷ QEMU q35 | iovm ÷ limit |\n\
         |---|---:|---:|---:|---:|---:|\n"
    );
    for (job, m) in vfio::rows() {
        let f = Figure::Vfio(job, m);
        let iovm = summary(outcomes, f, Vmm::Iovm);
        let qemu = summary(outcomes, f, Vmm::QemuQ35);
        let lim = host
            .filter(|_| !m.is_kvm_counter())
            .and_then(|h| h.summary(job, m));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            block::label(job, m),
            cell(iovm),
            cell(qemu),
            cell(lim),
            ratio_cell(ratio(iovm, qemu)),
            ratio_cell(ratio(iovm, lim))
        ));
    }
    for v in [Vmm::Iovm, Vmm::QemuQ35] {
        if let Some(why) = unread_exits(outcomes, v) {
            out.push_str(&format!("\n{}: {why}\n", v.label()));
        }
    }
    let checks = goals::vfio_checks(outcomes, host);
    out.push_str("\nGoals (issue 19):\n\n| goal | value | |\n|---|---:|---|\n");
    for c in &checks {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            c.goal.label(),
            ratio_cell(c.value),
            c.cell()
        ));
    }
    let met = checks.iter().filter(|c| c.met() == Some(true)).count();
    let open = checks.iter().filter(|c| c.met().is_none()).count();
    out.push_str(&format!("\nGoals met: {met} of {}", checks.len()));
    if open > 0 {
        out.push_str(&format!(" ({open} open: a median is missing)"));
    }
    out.push_str(".\n");
    let failed = host.map(HostLimit::problems).unwrap_or_default();
    if !failed.is_empty() {
        out.push_str("\nRuns of the limit that did not count:\n\n");
        for p in failed {
            out.push_str(&format!("- `{p}`\n"));
        }
    }
    out
}

/// Why `vmm`'s exit figures are missing though its runs measured fio, if they are.
fn unread_exits(outcomes: &[Outcome], vmm: Vmm) -> Option<&'static str> {
    let has = |m| summary(outcomes, Figure::Vfio(Job::RandReadQd32, m), vmm).is_some();
    (has(Metric::Iops) && !has(Metric::ExitsPerIo)).then_some(
        "KVM's exit counters could not be read in its runs (no `mmio_exits` in \
         `/sys/kernel/debug/kvm/` at the marks), so it has no exits per I/O",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::block::FioResult;
    use crate::bench::plan::{Kind, RunSpec};
    use crate::bench::report::cell;
    use crate::bench::vmm_cpu::CpuFigure;

    fn outcome(vmm: Vmm, samples: Vec<(Figure, f64)>) -> Outcome {
        Outcome {
            spec: RunSpec {
                kind: Kind::Vfio,
                vmm,
                rep: 1,
            },
            record: None,
            samples,
            problem: None,
            warnings: Vec::new(),
        }
    }

    fn limit(iops: f64) -> HostLimit {
        let r = FioResult {
            ios: 1000.0,
            values: [
                (Metric::P50Us, 100.0),
                (Metric::P99Us, 200.0),
                (Metric::Iops, iops),
                (Metric::MBps, 1.0),
            ],
        };
        HostLimit {
            version: Some("fio-3.33".into()),
            runs: vec![
                (Job::RandReadQd32, 1, Ok(r)),
                (
                    Job::RandReadQd1,
                    1,
                    Err("host fio randread-qd1 failed".into()),
                ),
            ],
        }
    }

    #[test]
    fn test_section_sets_both_vmms_beside_the_limit_with_ratios_and_goals() {
        let iops = Figure::Vfio(Job::RandReadQd32, Metric::Iops);
        let mmio = Figure::Vfio(Job::RandReadQd32, Metric::MmioExitsPerIo);
        let exits = Figure::Vfio(Job::RandReadQd32, Metric::ExitsPerIo);
        let vmm_cpu = Figure::Vfio(Job::RandReadQd32, Metric::Cpu(CpuFigure::Outside));
        let o = vec![
            outcome(
                Vmm::Iovm,
                vec![(iops, 950.0), (mmio, 0.0), (exits, 2.0), (vmm_cpu, 4.0)],
            ),
            outcome(
                Vmm::QemuQ35,
                vec![(iops, 900.0), (mmio, 0.01), (exits, 2.5)],
            ),
        ];
        let h = limit(1000.0);

        let md = section(&o, Some(&h), 3, cell);

        assert!(md.contains("## Device assignment (VFIO, issue 19)"), "{md}");
        assert!(
            md.contains("| 4k randread QD32: IOPS | 950 | 900 | 1000 | 1.06 | 0.95 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 4k randread QD32: of which MMIO exits to user space | 0.00 | 0.01 | – | 0.00 | – |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 4k randread QD32: VMM CPU outside the guest per I/O (µs) | 4.00 | – | – | – | – |"
            ),
            "{md}"
        );
        assert!(md.contains("| iovm ÷ QEMU q35, QD32 IOPS | 1.06 | met (≥ 1.00) |"));
        assert!(md.contains("| iovm ÷ the test host's own fio, QD32 IOPS | 0.95 | met (≥ 0.90) |"));
        assert!(md.contains("Goals met: 3 of 4 (1 open: a median is missing)."));
        assert!(md.contains("- `randread-qd1.1: host fio randread-qd1 failed`"));
        assert!(md.contains("fio-3.33, staged from this machine"));
        assert!(!md.contains("could not be read"));
    }

    #[test]
    fn test_section_says_when_a_vmms_exits_could_not_be_read() {
        let iops = Figure::Vfio(Job::RandReadQd32, Metric::Iops);
        let o = vec![outcome(Vmm::QemuQ35, vec![(iops, 900.0)])];

        let md = section(&o, None, 3, cell);

        assert!(
            md.contains("QEMU q35: KVM's exit counters could not be read"),
            "{md}"
        );
        assert!(!md.contains("iovm: KVM's"));
        assert!(md.contains("There is no limit column"));
    }
}
