//! The test host's side of the `vfio` group ([`super::vfio`]): the bench script's lines
//! that move the assignable NVMe controller between `vfio-pci` and the test host's own
//! `nvme` driver, the test host's fio on it while `nvme` has it (the limit), and reading
//! that fio's results back.
//!
//! The controller is named by its address ([`BDF`]); its namespace, once `nvme` has it, is
//! found by the controller's serial number among `/sys/block/nvme*` (the sysfs file pads
//! it with spaces to the field's 20 bytes), so that another NVMe of the test host is never
//! the one measured.

use std::path::Path;

use super::block::{parse_terse, FioResult, Job, Metric};
use super::results::{HostFioFigure, HostFioSection};
use super::stats::Summary;
use super::vfio::{BDF, JOBS, SERIAL};

/// Where the script keeps this group's files, under `$B`.
const DIR: &str = "vfio-host";

/// The script's lines that load the drivers and define its two shell functions:
/// `bench_vfio_bind DRIVER`, which gives the controller to `DRIVER` (`vfio-pci` or
/// `nvme`) unless it has it and fails if it did not take it, and `bench_vfio_ns`, which
/// waits up to 30 s for the controller's namespace and prints its device node. With
/// `fio`, its version goes to `$B/vfio-host/version.txt`.
pub fn setup(fio: Option<&str>) -> String {
    let mut out = format!(
        "modprobe vfio_iommu_type1; modprobe vfio-pci; modprobe nvme\n\
         mkdir -p \"$B/{DIR}\"\n\
         bench_vfio_bind() {{\n\
         \td=/sys/bus/pci/devices/{BDF}\n\
         \t[ -e $d ] || {{ echo 'bench: vfio: no {BDF} in the test host'; return 1; }}\n\
         \tcur=$(basename \"$(readlink $d/driver)\" 2>/dev/null)\n\
         \t[ \"$cur\" = \"$1\" ] && return 0\n\
         \techo \"$1\" >$d/driver_override\n\
         \t[ -e $d/driver ] && echo {BDF} >$d/driver/unbind\n\
         \techo {BDF} >/sys/bus/pci/drivers_probe\n\
         \tcur=$(basename \"$(readlink $d/driver)\" 2>/dev/null)\n\
         \techo \"bench: vfio: {BDF} bound to ${{cur:-no driver}}\"\n\
         \t[ \"$cur\" = \"$1\" ]\n\
         }}\n\
         bench_vfio_ns() {{\n\
         \ti=0\n\
         \twhile [ $i -lt 300 ]; do\n\
         \t\tfor n in /sys/block/nvme*; do\n\
         \t\t\tgrep -q '^{SERIAL} *$' $n/device/serial 2>/dev/null && \
         [ -b /dev/${{n##*/}} ] && {{ echo /dev/${{n##*/}}; return 0; }}\n\
         \t\tdone\n\
         \t\tsleep 0.1; i=$((i+1))\n\
         \tdone\n\
         \treturn 1\n\
         }}\n"
    );
    if let Some(fio) = fio {
        out.push_str(&format!("{fio} --version >\"$B/{DIR}/version.txt\" 2>&1\n"));
    }
    out
}

/// The script's line before a VMM's run: the controller to `vfio-pci`.
pub fn bind_vfio() -> String {
    "bench_vfio_bind vfio-pci || echo 'bench: vfio: the controller is not on vfio-pci'\n".into()
}

/// Where the script puts the host fio's terse output of one job, relative to `$B`.
pub fn fio_file(job: Job, rep: u32) -> String {
    format!("{DIR}/{}.{rep}.txt", job.id())
}

/// The script's lines for repetition `rep` of the limit: unless its last job has its
/// output (a resumed script), the controller to `nvme`, [`JOBS`] with `fio` (a shell
/// word) on its namespace for `seconds` each, then back to `vfio-pci`.
pub fn host_fio(fio: &str, seconds: u32, rep: u32) -> String {
    let last = JOBS[JOBS.len() - 1];
    let mut out = format!(
        "if [ ! -s \"$B\"/{} ]; then\n\
         echo 'bench: vfio: host fio on the controller with its nvme driver, repetition {rep}'\n\
         if bench_vfio_bind nvme && ns=$(bench_vfio_ns); then\n\
         echo \"bench: vfio: host fio on $ns\"\n",
        fio_file(last, rep)
    );
    for job in JOBS {
        let file = format!("\"$B\"/{}", fio_file(job, rep));
        out.push_str(&job.host_command_on(fio, "\"$ns\"", true, seconds, &file));
        out.push('\n');
    }
    out.push_str(&format!(
        "else echo 'bench: vfio: no namespace of {SERIAL} with the nvme driver'; fi\nfi\n"
    ));
    out
}

/// The test host's own fio runs on the controller: `(job, rep)` → its figures, or why
/// none.
#[derive(Debug, Clone, Default)]
pub struct HostLimit {
    /// `fio --version` where it ran, if it ran.
    pub version: Option<String>,
    /// Every run.
    pub runs: Vec<(Job, u32, Result<FioResult, String>)>,
}

impl HostLimit {
    /// Reads what the bench script left in `dir` (`$B`) for `reps` repetitions.
    pub fn read(dir: &Path, reps: u32) -> HostLimit {
        let version = std::fs::read_to_string(dir.join(DIR).join("version.txt"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| t.starts_with("fio-"));
        let mut runs = Vec::new();
        if version.is_some() {
            for rep in 1..=reps {
                for job in JOBS {
                    let text =
                        std::fs::read_to_string(dir.join(fio_file(job, rep))).unwrap_or_default();
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
        HostLimit { version, runs }
    }

    /// The samples of one figure, in repetition order.
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

    /// `<job>.<rep>: why` for each run that failed.
    pub fn problems(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter_map(|(j, rep, r)| Some(format!("{}.{rep}: {}", j.id(), r.as_ref().err()?)))
            .collect()
    }

    /// The `vfio_host_fio` member of results.json (its storage: `assigned-nvme`).
    pub fn section(&self) -> HostFioSection {
        let mut figures = Vec::new();
        for job in JOBS {
            for m in [Metric::P50Us, Metric::P99Us, Metric::Iops] {
                let samples = self.samples(job, m);
                figures.push(HostFioFigure {
                    storage: "assigned-nvme".into(),
                    job: job.id().into(),
                    figure: m.id(),
                    summary: Summary::of(&samples),
                    samples,
                });
            }
        }
        HostFioSection {
            fio: self.version.clone(),
            figures,
            problems: self.problems(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_setup_binds_by_address_and_finds_the_namespace_by_serial() {
        let s = setup(Some("\"$STAGE\"/'bin/fio'"));

        assert!(s.starts_with("modprobe vfio_iommu_type1; modprobe vfio-pci; modprobe nvme\n"));
        assert!(s.contains("d=/sys/bus/pci/devices/0000:01:00.0\n"));
        assert!(s.contains("echo \"$1\" >$d/driver_override\n"));
        assert!(s.contains("echo 0000:01:00.0 >$d/driver/unbind\n"));
        assert!(s.contains("grep -q '^IOVMASSIGNED *$' $n/device/serial"));
        assert!(s.contains("\"$STAGE\"/'bin/fio' --version >\"$B/vfio-host/version.txt\""));
        assert!(!setup(None).contains("--version"));
    }

    #[test]
    fn test_host_fio_runs_both_jobs_on_the_namespace_with_nvme_bound() {
        let s = host_fio("fio", 3, 2);

        assert!(s.starts_with("if [ ! -s \"$B\"/vfio-host/randread-qd32.2.txt ]; then\n"));
        assert!(s.contains("if bench_vfio_bind nvme && ns=$(bench_vfio_ns); then\n"));
        assert!(
            s.contains("timeout 63 fio --name=randread-qd1 --filename=\"$ns\" --ioengine=libaio ")
        );
        assert!(s.contains(
            " --direct=1 --rw=randread --iodepth=32 --bs=4k --runtime=3 \
                            >\"$B\"/vfio-host/randread-qd32.2.txt 2>&1\n"
        ));
        assert_eq!(s.matches("--name=").count(), 2);
        assert_eq!(bind_vfio().matches("bench_vfio_bind vfio-pci").count(), 1);
    }

    #[test]
    fn test_read_keeps_failures_and_summarises_the_rest() {
        let dir = std::env::temp_dir().join(format!("iovm-vfio-host-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(DIR)).unwrap();
        std::fs::write(dir.join(DIR).join("version.txt"), "fio-3.33\n").unwrap();
        let line = "3;fio-3.33;j;0;0;40000;8000;2000;5000;0;1;0.5;0.1;10;900;480.5;20;\
                    1.000000%=100;50.000000%=470;99.000000%=820;"
            .to_owned()
            + &"0%=0;".repeat(17)
            + &"0;".repeat(9)
            + &"0;".repeat(41)
            + &"0;".repeat(20);
        std::fs::write(dir.join(fio_file(Job::RandReadQd1, 1)), &line).unwrap();
        std::fs::write(dir.join(fio_file(Job::RandReadQd32, 1)), "fio: bad\n").unwrap();

        let h = HostLimit::read(&dir, 1);
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(h.version.as_deref(), Some("fio-3.33"));
        assert_eq!(h.samples(Job::RandReadQd1, Metric::P50Us), [470.0]);
        assert_eq!(h.summary(Job::RandReadQd32, Metric::Iops), None);
        assert_eq!(
            h.problems(),
            ["randread-qd32.1: host fio randread-qd32 failed: `fio: bad`"]
        );
        let sec = h.section();
        assert_eq!(sec.figures.len(), 6);
        assert_eq!(sec.figures[0].storage, "assigned-nvme");
    }
}
