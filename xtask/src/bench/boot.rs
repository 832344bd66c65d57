//! From the probe's records and the consoles to figures: which runs count (booted to the
//! init marker, guest script status 0, VMM exit status 0) and what each contributes.

use testkit::markers;

use super::block::{self, Disk, Job, Storage};
use super::iommu::{self, Translation};
use super::marks::Snapshot;
use super::net;
use super::plan::{Kind, RunSpec};
use super::probe::STDERR_HEADING;
use super::record::{Exit, Record};
use super::stats::Summary;
use super::vfio;
use super::vmm::Vmm;

/// A measured figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Figure {
    /// Process start to the guest's init marker on the console.
    ToMarker,
    /// Process start to the process's exit after the guest powered off.
    ToExit,
    /// [`Figure::ToMarker`] of a PVH boot of the ELF `vmlinux`.
    PvhToMarker,
    /// [`Figure::IovmMarker`] of a PVH boot of the ELF `vmlinux`.
    PvhIovmMarker,
    /// iovm's own report (`--timing`): its `main` to the first guest instruction.
    FirstInstruction,
    /// iovm's own report (`--timing`): its `main` to the init marker.
    IovmMarker,
    /// Resident set size after boot.
    Rss,
    /// Proportional set size after boot.
    Pss,
    /// Of the anonymous memory, how much is in transparent huge pages.
    AnonHuge,
    /// Bytes the guest (and firmware) wrote to the serial console in a boot run: each
    /// costs VM exits, so a chattier boot is a slower one.
    Console,
    /// In the guest: ns per port I/O write to an unclaimed port.
    PioWrite,
    /// In the guest: ns per configuration read through 0xCF8/0xCFC (two exits).
    Cf8Read,
    /// In the guest: ns per configuration read through ECAM (one MMIO exit).
    EcamRead,
    /// In the guest: ns per MMIO write to a read-only ECAM register.
    EcamWrite,
    /// In the guest: ns per kernel configuration read below 256 (0xCF8/0xCFC), with the system call.
    KernelCf8Read,
    /// In the guest: ns per kernel configuration read of extended space (ECAM), with the system call.
    KernelEcamRead,
    /// In the guest: ns per virtio queue notification (the doorbell of a virtio-rng
    /// device's queue, an ioeventfd in the VMMs that register one).
    VirtioNotify,
    /// A fio figure, exits or the VMM's CPU per I/O of one job on one kind of disk with
    /// its image on one storage ([`block`]).
    Block(Disk, Storage, Job, block::Metric),
    /// A network figure of virtio-net ([`net`]).
    Net(net::Metric),
    /// A network figure of the emulated Intel 82574L ([`net::e1000e_vmm_args`]).
    E1000e(net::Metric),
    /// A fio figure, exits or the VMM's CPU per I/O of one job on one kind of disk
    /// without or with the emulated IOMMU ([`iommu`]).
    Iommu(Disk, Translation, Job, block::Metric),
    /// A fio figure or exits per I/O of one job on the assigned NVMe ([`vfio`]).
    Vfio(Job, block::Metric),
}

impl Figure {
    /// The boot, memory and exit-path figures, in report order.
    pub const VM: [Figure; 17] = [
        Figure::ToMarker,
        Figure::ToExit,
        Figure::PvhToMarker,
        Figure::PvhIovmMarker,
        Figure::FirstInstruction,
        Figure::IovmMarker,
        Figure::Console,
        Figure::Rss,
        Figure::Pss,
        Figure::AnonHuge,
        Figure::PioWrite,
        Figure::Cf8Read,
        Figure::EcamRead,
        Figure::EcamWrite,
        Figure::KernelCf8Read,
        Figure::KernelEcamRead,
        Figure::VirtioNotify,
    ];

    /// Every figure, in report order.
    pub fn all() -> Vec<Figure> {
        let mut out = Figure::VM.to_vec();
        for storage in Storage::ALL {
            for disk in Disk::ALL {
                out.extend(
                    block::rows()
                        .into_iter()
                        .chain(block::cpu_rows())
                        .map(|(j, m)| Figure::Block(disk, storage, j, m)),
                );
            }
        }
        out.extend(net::Metric::ALL.map(Figure::Net));
        out.extend(net::Metric::cpu().map(Figure::Net));
        out.extend(net::Metric::ALL.map(Figure::E1000e));
        out.extend(net::Metric::cpu().map(Figure::E1000e));
        for disk in Disk::ALL {
            for t in Translation::ALL {
                out.extend(
                    iommu::rows()
                        .into_iter()
                        .map(|(j, m)| Figure::Iommu(disk, t, j, m)),
                );
            }
        }
        out.extend(vfio::rows().into_iter().map(|(j, m)| Figure::Vfio(j, m)));
        out
    }

    /// Whether the ratio charts ([`super::plots`]) show it: all but the breakdowns of
    /// exits by kind and of the VMM's CPU by thread, and the IOMMU group's figures (its
    /// report compares each VMM with itself, which the charts' bars do not show) and the
    /// VFIO group's (its report sets them beside the test host's own fio).
    pub fn on_chart(self) -> bool {
        match self {
            Figure::Iommu(..) | Figure::Vfio(..) | Figure::E1000e(_) => false,
            Figure::Block(.., block::Metric::Cpu(c)) | Figure::Net(net::Metric::Cpu(c)) => {
                c.on_chart()
            }
            Figure::Block(.., m) => !m.id().contains("_exits"),
            Figure::Net(m) => !m.id().contains("_exits"),
            _ => true,
        }
    }

    /// Whether more is better (throughput); for the rest, less is.
    pub fn higher_is_better(self) -> bool {
        match self {
            Figure::Block(.., m) | Figure::Iommu(.., m) | Figure::Vfio(_, m) => {
                m.higher_is_better()
            }
            Figure::Net(m) | Figure::E1000e(m) => m.higher_is_better(),
            _ => false,
        }
    }

    /// Key in results.json.
    pub fn id(self) -> String {
        let s = match self {
            Figure::Block(d, st, j, m) => {
                return format!("block.{}.{}.{}.{}", d.id(), st.id(), j.id(), m.id())
            }
            Figure::Net(m) => return format!("net.{}", m.id()),
            Figure::E1000e(m) => return format!("net.e1000e.{}", m.id()),
            Figure::Iommu(d, t, j, m) => {
                return format!("iommu.{}.{}.{}.{}", d.id(), t.id(), j.id(), m.id())
            }
            Figure::Vfio(j, m) => return format!("vfio.nvme.{}.{}", j.id(), m.id()),
            Figure::ToMarker => "boot.start_to_init_marker_ms",
            Figure::ToExit => "boot.start_to_exit_ms",
            Figure::PvhToMarker => "boot.pvh_start_to_init_marker_ms",
            Figure::PvhIovmMarker => "boot.pvh_iovm_init_marker_ms",
            Figure::FirstInstruction => "boot.iovm_first_guest_instruction_ms",
            Figure::IovmMarker => "boot.iovm_init_marker_ms",
            Figure::Rss => "memory.rss_mib",
            Figure::Pss => "memory.pss_mib",
            Figure::AnonHuge => "memory.anon_huge_pages_mib",
            Figure::Console => "boot.console_kib",
            Figure::PioWrite => "exits.pio_write_ns",
            Figure::Cf8Read => "exits.cf8_read_ns",
            Figure::EcamRead => "exits.ecam_read_ns",
            Figure::EcamWrite => "exits.ecam_write_ns",
            Figure::KernelCf8Read => "exits.kernel_cf8_read_ns",
            Figure::KernelEcamRead => "exits.kernel_ecam_read_ns",
            Figure::VirtioNotify => "exits.virtio_notify_ns",
        };
        s.to_owned()
    }

    /// Row title in tables.
    pub fn label(self) -> String {
        let s = match self {
            Figure::Block(d, st, j, m) => {
                return format!("{} on {} {}", d.label(), st.label(), block::label(j, m))
            }
            Figure::Net(m) => return m.label(),
            Figure::E1000e(m) => return format!("e1000e: {}", m.label()),
            Figure::Iommu(d, t, j, m) => {
                return format!("{}, {}: {}", d.label(), t.label(), block::label(j, m))
            }
            Figure::Vfio(j, m) => return format!("assigned NVMe: {}", block::label(j, m)),
            Figure::ToMarker => "process start → init marker (ms)",
            Figure::ToExit => "process start → exit after poweroff (ms)",
            Figure::PvhToMarker => "PVH boot of the ELF vmlinux: process start → init marker (ms)",
            Figure::PvhIovmMarker => "PVH boot: init marker, iovm `--timing` (ms)",
            Figure::FirstInstruction => "first guest instruction, iovm `--timing` (ms)",
            Figure::IovmMarker => "init marker, iovm `--timing` (ms)",
            Figure::Rss => "RSS after boot (MiB)",
            Figure::Pss => "PSS after boot (MiB)",
            Figure::AnonHuge => "of which transparent huge pages (MiB)",
            Figure::Console => "serial console output (KiB)",
            Figure::PioWrite => "port I/O write, `outb` to 0x80 (ns)",
            Figure::Cf8Read => "config read through 0xCF8/0xCFC (ns)",
            Figure::EcamRead => "config read through ECAM (ns)",
            Figure::EcamWrite => "MMIO write to a read-only ECAM register (ns)",
            Figure::KernelCf8Read => "config read by the kernel via 0xCF8/0xCFC, sysfs (ns)",
            Figure::KernelEcamRead => "config read by the kernel via ECAM, sysfs (ns)",
            Figure::VirtioNotify => "virtio queue notify, ioeventfd doorbell (ns)",
        };
        s.to_owned()
    }

    /// The key exit-probe prints this figure under, for exit-path figures.
    fn probe_key(self) -> Option<&'static str> {
        match self {
            Figure::PioWrite => Some("pio_write_ns"),
            Figure::Cf8Read => Some("cf8_read_ns"),
            Figure::EcamRead => Some("ecam_read_ns"),
            Figure::EcamWrite => Some("ecam_write_ns"),
            Figure::KernelCf8Read => Some("kernel_cf8_read_ns"),
            Figure::KernelEcamRead => Some("kernel_ecam_read_ns"),
            Figure::VirtioNotify => Some("virtio_notify_ns"),
            _ => None,
        }
    }
}

/// What became of one planned run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run.
    pub spec: RunSpec,
    /// The probe's record, if it wrote one.
    pub record: Option<Record>,
    /// Its figures, if the run counts.
    pub samples: Vec<(Figure, f64)>,
    /// Why it does not count, if it does not.
    pub problem: Option<String>,
    /// Kernel warning lines on its console (`WARNING:`, `Call Trace:`, …).
    pub warnings: Vec<String>,
}

/// The milliseconds in iovm's `iovm: timing: <what> N ms after start` line.
pub fn iovm_timing(console: &str, what: &str) -> Option<f64> {
    let prefix = format!("iovm: timing: {what} ");
    console.lines().find_map(|l| {
        let at = l.find(&prefix)?;
        let rest = l[at + prefix.len()..].trim_end();
        let n = rest.strip_suffix(" ms after start")?;
        n.trim().parse().ok()
    })
}

/// Checks one run and extracts its figures; `snaps` are the KVM counters the probe read
/// at the guest's marks.
pub fn evaluate(
    spec: RunSpec,
    record: Option<Record>,
    console: Option<&str>,
    snaps: &[Snapshot],
) -> Outcome {
    let console = console.unwrap_or("");
    let checked = check(spec, record.as_ref(), console, snaps);
    let (samples, problem) = match checked {
        Ok(s) => (s, None),
        Err(p) => (Vec::new(), Some(p)),
    };
    Outcome {
        spec,
        record,
        samples,
        problem,
        warnings: markers::kernel_problems(guest_console(console)),
    }
}

/// The stdout part of a probe log (the guest console), without the VMM's stderr.
fn guest_console(log: &str) -> &str {
    log.split_once(STDERR_HEADING).map_or(log, |(out, _)| out)
}

fn check(
    spec: RunSpec,
    record: Option<&Record>,
    console: &str,
    snaps: &[Snapshot],
) -> Result<Vec<(Figure, f64)>, String> {
    let r = record.ok_or("no record: the probe did not finish")?;
    if r.marker_ms.is_none() || r.exit != Exit::Code(0) {
        return Err(failure(r, console));
    }
    let marker = r.marker_ms.unwrap_or_default();
    match markers::guest_exit_status(console) {
        Some(0) => {}
        // exit-probe fails when one access kind could not be measured; the
        // others still count.
        Some(_) if spec.kind == Kind::Exits => {}
        Some(n) => return Err(format!("the guest script exited with {n}")),
        None => return Err("no guest exit status on the console".into()),
    }
    let mut out = Vec::new();
    match spec.kind {
        Kind::Boot => {
            out.push((Figure::ToMarker, marker));
            out.push((Figure::ToExit, r.exit_ms.ok_or("no exit time")?));
            out.push((
                Figure::Console,
                guest_console(console).len() as f64 / 1024.0,
            ));
            if spec.vmm == Vmm::Iovm {
                let first = iovm_timing(console, "first guest instruction")
                    .ok_or("no `first guest instruction` timing line")?;
                let seen = iovm_timing(console, "init marker seen")
                    .ok_or("no `init marker seen` timing line")?;
                out.push((Figure::FirstInstruction, first));
                out.push((Figure::IovmMarker, seen));
            }
        }
        Kind::BootPvh => {
            out.push((Figure::PvhToMarker, marker));
            if spec.vmm == Vmm::Iovm {
                let seen = iovm_timing(console, "init marker seen")
                    .ok_or("no `init marker seen` timing line")?;
                out.push((Figure::PvhIovmMarker, seen));
            }
        }
        Kind::Memory => {
            let m = r
                .memory
                .ok_or("no memory sample (the VMM exited before it was taken?)")?;
            out.push((Figure::Rss, m.rss_kb as f64 / 1024.0));
            out.push((Figure::Pss, m.pss_kb as f64 / 1024.0));
            out.push((Figure::AnonHuge, m.anon_huge_kb as f64 / 1024.0));
        }
        Kind::Exits => {
            let line = guest_console(console)
                .lines()
                .filter_map(|l| l.split_once("exit-probe: ").map(|(_, rest)| rest))
                .find(|l| l.contains("_ns="))
                .ok_or("no `exit-probe:` figures line on the console")?;
            for f in Figure::VM {
                let Some(key) = f.probe_key() else { continue };
                let value = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<f64>().ok());
                if let Some(v) = value {
                    out.push((f, v));
                }
            }
            if out.is_empty() {
                return Err("exit-probe measured nothing".into());
            }
        }
        Kind::Block(disk, storage) => {
            let f = block::figures(spec.vmm, guest_console(console), snaps, &Job::ALL)?;
            out.extend(
                f.into_iter()
                    .map(|(j, m, v)| (Figure::Block(disk, storage, j, m), v)),
            );
        }
        Kind::Net => {
            let f = net::figures(spec.vmm, guest_console(console), snaps)?;
            out.extend(f.into_iter().map(|(m, v)| (Figure::Net(m), v)));
        }
        Kind::NetE1000e => {
            let f = net::figures(spec.vmm, guest_console(console), snaps)?;
            out.extend(f.into_iter().map(|(m, v)| (Figure::E1000e(m), v)));
        }
        Kind::Iommu(disk, t) => {
            iommu::check_console(t, guest_console(console))?;
            let f = block::figures(spec.vmm, guest_console(console), snaps, &iommu::JOBS)?;
            out.extend(
                f.into_iter()
                    .map(|(j, m, v)| (Figure::Iommu(disk, t, j, m), v)),
            );
        }
        Kind::Vfio => {
            vfio::check_console(guest_console(console))?;
            let f = block::figures(spec.vmm, guest_console(console), snaps, &vfio::JOBS)?;
            out.extend(f.into_iter().filter_map(|(j, m, v)| {
                vfio::rows()
                    .contains(&(j, m))
                    .then_some((Figure::Vfio(j, m), v))
            }));
        }
    }
    Ok(out)
}

/// Why a run without the marker or with a failed VMM does not count, with the last line
/// the VMM (its stderr) or else the guest printed.
fn failure(r: &Record, console: &str) -> String {
    let what = match (r.marker_ms.is_some(), r.exit) {
        (true, exit) => format!("the VMM ended with {exit} after the init marker"),
        (false, Exit::TimedOut) => "no init marker before the timeout (VMM killed)".to_owned(),
        (false, exit) => format!("no init marker; the VMM ended with {exit}"),
    };
    let (out, err) = console.split_once(STDERR_HEADING).unwrap_or((console, ""));
    let last = |t: &str| {
        t.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(|l| l.chars().take(160).collect::<String>())
    };
    match last(err).or_else(|| last(out)) {
        Some(line) => format!("{what}; last output: `{line}`"),
        None => what,
    }
}

/// The samples of `figure` for `vmm`, in run order.
pub fn samples(outcomes: &[Outcome], figure: Figure, vmm: Vmm) -> Vec<f64> {
    outcomes
        .iter()
        .filter(|o| o.spec.vmm == vmm)
        .flat_map(|o| o.samples.iter())
        .filter(|(f, _)| *f == figure)
        .map(|(_, v)| *v)
        .collect()
}

/// The summary of `figure` for `vmm`.
pub fn summary(outcomes: &[Outcome], figure: Figure, vmm: Vmm) -> Option<Summary> {
    Summary::of(&samples(outcomes, figure, vmm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::record::Memory;

    const IOVM_CONSOLE: &str = "[    0.000000] Linux version 6.1\n\
        IOVM-GUEST: boot done uptime=0.80\n\
        IOVM-GUEST: exit status=0\n\
        [    0.9] reboot: Power down\n\
        ==== stderr ====\n\
        iovm: timing: first guest instruction 12.5 ms after start\n\
        \n\
        iovm: timing: init marker seen 901.3 ms after start\n";

    fn record(name: &str, exit: Exit, memory: Option<Memory>) -> Record {
        Record {
            name: name.into(),
            exit,
            marker_ms: Some(910.0),
            exit_ms: Some(1000.0),
            memory,
        }
    }

    fn spec(kind: Kind, vmm: Vmm) -> RunSpec {
        RunSpec { kind, vmm, rep: 1 }
    }

    #[test]
    fn test_exits_run_gives_the_probe_figures() {
        let console = "IOVM-GUEST: boot done uptime=1\n\
            exit-probe: pio_write_ns=900 cf8_read_ns=2100 ecam_read_ns=1100 ecam_write_ns=1000 \
            virtio_notify_ns=700\n\
            IOVM-GUEST: exit status=0\n";
        let r = record("exits.iovm.1", Exit::Code(0), None);

        let o = evaluate(spec(Kind::Exits, Vmm::Iovm), Some(r), Some(console), &[]);

        assert_eq!(o.problem, None);
        assert_eq!(
            o.samples,
            vec![
                (Figure::PioWrite, 900.0),
                (Figure::Cf8Read, 2100.0),
                (Figure::EcamRead, 1100.0),
                (Figure::EcamWrite, 1000.0),
                (Figure::VirtioNotify, 700.0)
            ]
        );
    }

    #[test]
    fn test_exits_run_keeps_the_figures_it_has() {
        let console = "IOVM-GUEST: boot done uptime=1\n\
            exit-probe: timing pio_write\n\
            exit-probe: pio_write_ns=- cf8_read_ns=- ecam_read_ns=1100 ecam_write_ns=1000\n\
            exit-probe: problem: pio_write: the access faulted (signal 11)\n\
            IOVM-GUEST: exit status=1\n";
        let r = record("exits.qemu-q35.1", Exit::Code(0), None);

        let o = evaluate(spec(Kind::Exits, Vmm::QemuQ35), Some(r), Some(console), &[]);

        assert_eq!(o.problem, None);
        assert_eq!(
            o.samples,
            vec![(Figure::EcamRead, 1100.0), (Figure::EcamWrite, 1000.0)]
        );
    }

    #[test]
    fn test_exits_run_with_no_figure_does_not_count() {
        let console = "IOVM-GUEST: boot done uptime=1\n\
            exit-probe: pio_write_ns=- cf8_read_ns=- ecam_read_ns=- ecam_write_ns=-\n\
            IOVM-GUEST: exit status=1\n";
        let r = record("exits.iovm.1", Exit::Code(0), None);

        let o = evaluate(spec(Kind::Exits, Vmm::Iovm), Some(r), Some(console), &[]);

        assert_eq!(o.problem.as_deref(), Some("exit-probe measured nothing"));
    }

    #[test]
    fn test_iovm_timing_lines() {
        assert_eq!(
            iovm_timing(IOVM_CONSOLE, "first guest instruction"),
            Some(12.5)
        );
        assert_eq!(iovm_timing(IOVM_CONSOLE, "init marker seen"), Some(901.3));
        assert_eq!(
            iovm_timing("iovm: timing: x ms\n", "first guest instruction"),
            None
        );
    }

    #[test]
    fn test_iovm_boot_run_gives_four_figures() {
        let r = record("boot.iovm.1", Exit::Code(0), None);

        let o = evaluate(
            spec(Kind::Boot, Vmm::Iovm),
            Some(r),
            Some(IOVM_CONSOLE),
            &[],
        );

        assert_eq!(o.problem, None);
        assert_eq!(
            o.samples,
            [
                (Figure::ToMarker, 910.0),
                (Figure::ToExit, 1000.0),
                (Figure::Console, 122.0 / 1024.0),
                (Figure::FirstInstruction, 12.5),
                (Figure::IovmMarker, 901.3),
            ]
        );
    }

    #[test]
    fn test_pvh_boot_runs_give_their_own_figures() {
        let iovm = evaluate(
            spec(Kind::BootPvh, Vmm::Iovm),
            Some(record("boot-pvh.iovm.1", Exit::Code(0), None)),
            Some(IOVM_CONSOLE),
            &[],
        );
        let qemu = evaluate(
            spec(Kind::BootPvh, Vmm::QemuQ35),
            Some(record("boot-pvh.qemu-q35.1", Exit::Code(0), None)),
            Some(IOVM_CONSOLE),
            &[],
        );

        assert_eq!(
            iovm.samples,
            [(Figure::PvhToMarker, 910.0), (Figure::PvhIovmMarker, 901.3)]
        );
        assert_eq!(qemu.samples, [(Figure::PvhToMarker, 910.0)]);
    }

    #[test]
    fn test_memory_run_gives_mib() {
        let m = Memory {
            rss_kb: 2048,
            pss_kb: 1024,
            anon_kb: 0,
            anon_huge_kb: 0,
        };
        let r = record("memory.qemu-q35.1", Exit::Code(0), Some(m));

        let o = evaluate(
            spec(Kind::Memory, Vmm::QemuQ35),
            Some(r),
            Some(IOVM_CONSOLE),
            &[],
        );

        assert_eq!(
            o.samples,
            [
                (Figure::Rss, 2.0),
                (Figure::Pss, 1.0),
                (Figure::AnonHuge, 0.0)
            ]
        );
    }

    #[test]
    fn test_failed_runs_do_not_count() {
        let s = spec(Kind::Boot, Vmm::QemuMicrovm);
        let bad_exit = Record {
            marker_ms: None,
            ..record("b", Exit::TimedOut, None)
        };
        let failed_script = IOVM_CONSOLE.replace("status=0", "status=2");

        let timed_out = evaluate(s, Some(bad_exit), Some(IOVM_CONSOLE), &[]);
        let script = evaluate(
            s,
            Some(record("b", Exit::Code(0), None)),
            Some(&failed_script),
            &[],
        );
        let missing = evaluate(s, None, None, &[]);

        assert_eq!(
            timed_out.problem.unwrap(),
            "no init marker before the timeout (VMM killed); last output: \
             `iovm: timing: init marker seen 901.3 ms after start`"
        );
        assert!(script.problem.unwrap().contains("exited with 2"));
        assert!(missing.problem.unwrap().contains("no record"));
        assert!(missing.samples.is_empty());
    }

    #[test]
    fn test_samples_pick_figure_and_vmm() {
        let r = record("boot.iovm.1", Exit::Code(0), None);
        let o = [
            evaluate(
                spec(Kind::Boot, Vmm::Iovm),
                Some(r.clone()),
                Some(IOVM_CONSOLE),
                &[],
            ),
            evaluate(
                spec(Kind::Boot, Vmm::Iovm),
                Some(r),
                Some(IOVM_CONSOLE),
                &[],
            ),
        ];

        assert_eq!(samples(&o, Figure::ToExit, Vmm::Iovm), [1000.0, 1000.0]);
        assert!(samples(&o, Figure::ToExit, Vmm::QemuQ35).is_empty());
        assert_eq!(
            summary(&o, Figure::ToMarker, Vmm::Iovm).unwrap().median,
            910.0
        );
    }

    #[test]
    fn test_iommu_run_without_the_guests_remapping_does_not_count() {
        let console = "IOVM-GUEST: boot done uptime=1\nIOVM-GUEST: exit status=0\n";
        let kind = Kind::Iommu(Disk::Nvme, Translation::Strict);
        let r = record("iommu-nvme-strict.iovm.1", Exit::Code(0), None);

        let o = evaluate(spec(kind, Vmm::Iovm), Some(r), Some(console), &[]);

        assert!(o.samples.is_empty());
        assert!(
            o.problem
                .as_deref()
                .unwrap()
                .contains("did not take the IOMMU"),
            "{:?}",
            o.problem
        );
    }
}
