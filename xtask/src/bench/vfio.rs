//! The `vfio` figure group (issue 19): a host NVMe controller assigned to the guest
//! through VFIO, iovm against QEMU q35, with the test host's own `nvme` driver on the
//! same controller as the limit.
//!
//! It runs in the nested test host only: the test host's QEMU gives it an emulated NVMe
//! controller under an emulated VT-d ([`testkit::Batch::with_assignable_nvme`]) at
//! [`BDF`], backed by a raw image on this machine ([`IMAGE`]). The test host binds it to
//! `vfio-pci`; iovm gets `--device vfio-pci,host=<BDF>` and QEMU `-device
//! vfio-pci,host=<BDF>`, and the guest's own `nvme` driver runs fio 4 KiB random reads at
//! queue depth 1 (latency) and 32 (IOPS) on it, between marks at which KVM's exit
//! counters are read as for the block group. Before each repetition the test host gives
//! the controller back to its `nvme` driver and runs the same jobs on it
//! ([`super::vfio_host`]): what the device does with no VM in between.

use testkit::host_devices::{ASSIGNABLE_NVME_BDF, ASSIGNABLE_NVME_SERIAL};

use super::block::{Disk, Job, Metric};
use super::vmm::Vmm;
use super::vmm_cpu::CpuFigure;

/// The fio jobs of the group.
pub const JOBS: [Job; 2] = [Job::RandReadQd1, Job::RandReadQd32];

/// Where the assigned controller is in the test host.
pub const BDF: &str = ASSIGNABLE_NVME_BDF;

/// The controller's serial number, by which the guest and the test host find it.
pub const SERIAL: &str = ASSIGNABLE_NVME_SERIAL;

/// The raw image behind the controller, under `target/bench/` on this machine.
pub const IMAGE: &str = "vfio-nvme.img";

/// What the guest prints about the controller it got, before the fio jobs.
const FACTS: &str = "IOVM-BENCH: vfio ";

/// The VMM arguments of a run: the assigned function, nothing else.
pub fn vmm_args(vmm: Vmm) -> Vec<String> {
    match vmm {
        Vmm::Iovm => vec!["--device".into(), format!("vfio-pci,host={BDF}")],
        _ => vec!["-device".into(), format!("vfio-pci,host={BDF}")],
    }
}

/// The guest script: waits up to 30 s for the namespace (the driver probes the
/// controller after the init marker), prints its serial and its interrupt kinds, then
/// runs [`JOBS`] as the block group does.
pub fn guest_script(seconds: u32) -> String {
    format!(
        "i=0;until [ -b /dev/nvme0n1 ]||[ $i -ge 300 ];do sleep 0.1;i=$((i+1));done\n\
         c=/sys/class/nvme/nvme0\n\
         echo \"{FACTS}serial=$(cat $c/serial) irq=$(cat $c/device/msi_irqs/* \
         2>/dev/null|sort -u|tr '\\n' ,)\"\n{}",
        Disk::Nvme.guest_script(seconds, &JOBS)
    )
}

/// Checks that a run's guest (its console) drove the assigned controller with MSI-X:
/// a run that measured another disk, or interrupts relayed another way, does not count.
pub fn check_console(console: &str) -> Result<(), String> {
    let line = console
        .lines()
        .find_map(|l| l.split_once(FACTS).map(|(_, r)| r))
        .ok_or("the guest did not say which NVMe it has (no `IOVM-BENCH: vfio` line)")?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or("")
    };
    if field("serial") != SERIAL {
        return Err(format!(
            "the guest's nvme0 is not the assigned controller (serial `{}`, not `{SERIAL}`)",
            field("serial")
        ));
    }
    if field("irq") != "msix," {
        return Err(format!(
            "the assigned controller's interrupts are `{}`, not MSI-X alone",
            field("irq")
        ));
    }
    Ok(())
}

/// The fio figures a job is judged by.
fn job_metrics(job: Job) -> &'static [Metric] {
    match job {
        Job::RandReadQd1 => &[Metric::P50Us, Metric::P99Us, Metric::Iops],
        _ => &[Metric::Iops],
    }
}

/// The exit figures of each job: all exits, MMIO exits to user space (a doorbell that
/// reached iovm or QEMU would be one), instructions KVM emulated (one that KVM handled
/// itself would be one).
const EXITS: [Metric; 3] = [
    Metric::ExitsPerIo,
    Metric::MmioExitsPerIo,
    Metric::EmulatedPerIo,
];

/// The CPU figures of each job: the VMM's process outside the guest (an I/O that
/// needed the VMM would show here) and the guest's own time, each per I/O.
const CPU: [Metric; 2] = [
    Metric::Cpu(CpuFigure::Outside),
    Metric::Cpu(CpuFigure::Guest),
];

/// The figures kept in results.json and shown in the report, in order: the fio figures
/// of each job, then the exits of each, then the CPU time of each.
pub fn rows() -> Vec<(Job, Metric)> {
    let mut out = Vec::new();
    for job in JOBS {
        out.extend(job_metrics(job).iter().map(|&m| (job, m)));
    }
    for job in JOBS {
        out.extend(EXITS.map(|m| (job, m)));
    }
    for job in JOBS {
        out.extend(CPU.map(|m| (job, m)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_vmm_args_name_the_function_for_each_vmm() {
        assert_eq!(
            vmm_args(Vmm::Iovm),
            ["--device", "vfio-pci,host=0000:01:00.0"]
        );
        assert_eq!(
            vmm_args(Vmm::QemuQ35),
            ["-device", "vfio-pci,host=0000:01:00.0"]
        );
    }

    #[test]
    fn test_guest_script_waits_for_the_namespace_then_runs_two_jobs() {
        let s = guest_script(3);

        assert!(s.starts_with("i=0;until [ -b /dev/nvme0n1 ]"), "{s}");
        assert!(s.find("IOVM-BENCH: vfio ").unwrap() < s.find("j randread-qd1 ").unwrap());
        assert!(s.ends_with("j randread-qd1 randread 1 4k\nj randread-qd32 randread 32 4k\n"));
        assert!(s.contains("--runtime=3"));
        assert!(s.len() < 900, "{} bytes on the command line", s.len());
    }

    #[test]
    fn test_check_console_wants_the_assigned_controller_on_msix() {
        let good = "[ 9.1] nvme nvme0: 1/0/0 default/read/poll queues\n\
                    IOVM-BENCH: vfio serial=IOVMASSIGNED irq=msix,\n";

        assert_eq!(check_console(good), Ok(()));
        assert!(check_console(&good.replace("IOVMASSIGNED", "iovm-bench"))
            .unwrap_err()
            .contains("not the assigned controller"));
        assert!(check_console(&good.replace("msix,", ""))
            .unwrap_err()
            .contains("not MSI-X alone"));
        assert!(check_console("nothing\n")
            .unwrap_err()
            .contains("no `IOVM-BENCH: vfio` line"));
    }

    #[test]
    fn test_rows_are_fio_figures_then_exits_of_both_jobs() {
        let r = rows();

        assert_eq!(r.len(), 4 + 6 + 4);
        assert_eq!(r[0], (Job::RandReadQd1, Metric::P50Us));
        assert_eq!(r[3], (Job::RandReadQd32, Metric::Iops));
        assert!(r.contains(&(Job::RandReadQd32, Metric::MmioExitsPerIo)));
        assert_eq!(r[13], (Job::RandReadQd32, Metric::Cpu(CpuFigure::Guest)));
    }
}
