//! `target/bench/results.json`, every sample the benchmark took and where it ran, as
//! serde records: written pretty-printed; they read back a file of this or an earlier
//! run (`serde_json::from_str::<ResultsFile>`), one from before serde included.
//!
//! Ids (figures, VMMs, storages, jobs, sides) are the strings the report's types give
//! them. A missing value (a run without a record or problem, a figure without samples,
//! a ratio without a host median) is `null`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::stats::Summary;

/// The whole file: the facts every run has, the groups that boot guests if they ran,
/// the device-path group if it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    /// When (UTC).
    pub date: String,
    /// The command that reproduces the benchmark.
    pub command: String,
    /// This machine: CPU, kernel, what its /dev/kvm is.
    pub machine: String,
    /// iovm's version (when guests booted) and git commit.
    pub iovm: String,
    /// The groups that boot guests, if they ran: their members sit beside the
    /// ones above. Reading gives `None` when they are missing, and also (serde's
    /// flatten) when one of them has the wrong kind of value.
    #[serde(flatten)]
    pub vms: Option<VmSection>,
    /// The device-path group, if it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_path: Option<DevicePathSection>,
}

impl ResultsFile {
    /// The file's text: pretty-printed JSON (two-space indent) with a final newline.
    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self).context("writing results.json")?;
        text.push('\n');
        Ok(text)
    }
}

/// What the groups that boot guests (boot, memory, exit paths, block, net) measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSection {
    /// `direct` or `testhost`.
    pub mode: String,
    /// Where the VMMs ran, in words.
    #[serde(rename = "where")]
    pub where_ran: String,
    /// Kernel release where the VMMs ran.
    pub run_kernel: String,
    /// CPU model and count where the VMMs ran.
    pub run_cpu: String,
    /// The guest kernel and image.
    pub guest: String,
    /// QEMU's version line.
    pub qemu: String,
    /// Repetitions per VMM and figure.
    pub repetitions: u32,
    /// Guest RAM.
    pub memory: String,
    /// Milliseconds after the marker when memory is sampled.
    pub sample_after_ms: u64,
    /// The kernel command line.
    pub cmdline: String,
    /// Each VMM's command line for a boot run, by VMM id.
    pub commands: BTreeMap<String, String>,
    /// Every figure of every VMM that has samples of it.
    pub figures: Vec<VmFigure>,
    /// iovm's median over each peer's, where both exist.
    pub ratios: Vec<VmRatio>,
    /// The goals of the groups that ran (none for the boot, memory and exit-path
    /// groups; missing in files of runs before goals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<VmGoal>,
    /// The IOMMU group's goals, if it ran (missing in files of runs before it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iommu_goals: Vec<VmIommuGoal>,
    /// The VFIO group's goals, if it ran (missing in files of runs before it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vfio_goals: Vec<VmVfioGoal>,
    /// Every run.
    pub runs: Vec<VmRun>,
    /// The test host's own fio on the block image, if the block group ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_fio: Option<HostFioSection>,
    /// The in-process translate bench on this machine, if the IOMMU group ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_translate: Option<TranslateSection>,
    /// The test host's own fio on the assignable NVMe (storage `assigned-nvme`), if the
    /// VFIO group ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vfio_host_fio: Option<HostFioSection>,
}

/// A goal of the VFIO group: a value that must be at least or at most its bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmVfioGoal {
    /// `vfio.iops_over_qemu`, `vfio.iops_over_host_limit` (iovm's QD32 IOPS ÷ QEMU q35's,
    /// ÷ the test host's own fio's) or `vfio.<job>.mmio_exits_per_io` (iovm's).
    pub goal: String,
    /// The least the value may be, for ratios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The most the value may be, for exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The value, if every median it needs exists.
    pub value: Option<f64>,
    /// Whether the value is within its bound; `null` while a median is missing.
    pub met: Option<bool>,
}

/// A goal of the IOMMU group: a ratio that must be at least its bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmIommuGoal {
    /// `iommu.<disk>.cost_of_strict_translation` (iovm's QD32 IOPS with ÷ without its
    /// IOMMU, over QEMU q35's) or `iommu.<disk>.iops_with_iommu` (iovm's QD32 IOPS with
    /// its IOMMU ÷ QEMU q35's with its own).
    pub goal: String,
    /// The least the ratio may be.
    pub min_ratio: f64,
    /// The ratio, if every median it needs exists.
    pub ratio: Option<f64>,
    /// Whether the ratio is at least `min_ratio`; `null` while a median is missing.
    pub met: Option<bool>,
}

/// `cargo bench -p iommu --bench translate` on this machine, pinned to one CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranslateSection {
    /// Accesses per timed run.
    pub iters: u32,
    /// The CPU it ran on.
    pub cpu: usize,
    /// Per case, ns per translated 4 KiB read: `(case, median, fastest run)`.
    pub cases: Vec<(String, f64, f64)>,
    /// Why there are no cases, if there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The samples of one figure of one VMM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmFigure {
    /// The figure's id (`boot.start_to_init_marker_ms`, `block.nvme.shm.…`).
    pub figure: String,
    /// The VMM's id.
    pub vmm: String,
    /// One per run that counted, in run order.
    pub samples: Vec<f64>,
    /// Their summary.
    pub summary: Option<Summary>,
}

/// iovm's median of one figure over a peer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRatio {
    /// The figure's id.
    pub figure: String,
    /// The VMM on top (iovm).
    pub of: String,
    /// The VMM below.
    pub to: String,
    /// `of`'s median ÷ `to`'s.
    pub ratio_of_medians: f64,
}

/// A goal on iovm's median of one figure as a share of a peer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmGoal {
    /// The figure's id.
    pub figure: String,
    /// The VMM the goal is on (iovm).
    pub of: String,
    /// The VMM it is measured against.
    pub to: String,
    /// The most `of`'s median may be as a share of `to`'s.
    pub max_ratio: f64,
    /// `of`'s median ÷ `to`'s, if both exist.
    pub ratio_of_medians: Option<f64>,
    /// Whether the ratio is at most `max_ratio`; `null` while a median is missing.
    pub met: Option<bool>,
}

/// One run of a VMM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRun {
    /// `<kind>.<vmm>.<rep>`.
    pub name: String,
    /// The probe's record line, if it wrote one.
    pub record: Option<String>,
    /// Why the run does not count, if it does not.
    pub problem: Option<String>,
}

/// The test host's own fio runs on the block image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFioSection {
    /// `fio --version` where it ran, if it ran.
    pub fio: Option<String>,
    /// The samples of each figure the tables show.
    pub figures: Vec<HostFioFigure>,
    /// `<storage>.<job>.<rep>: why`, for each run that failed.
    pub problems: Vec<String>,
}

/// The samples of one figure of the host's fio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFioFigure {
    /// The storage's id.
    pub storage: String,
    /// The fio job's name.
    pub job: String,
    /// The figure's id.
    pub figure: String,
    /// One per run, in order.
    pub samples: Vec<f64>,
    /// Their summary.
    pub summary: Option<Summary>,
}

/// The device-path group: iovm's device paths without a VM against the host's fio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePathSection {
    /// Requests in flight.
    pub depth: u32,
    /// Bytes per request.
    pub block_size: u32,
    /// Measured seconds per run.
    pub seconds: u32,
    /// Repetitions.
    pub repetitions: u32,
    /// `fio --version`.
    pub fio: String,
    /// The CPU every run was confined to.
    pub cpu: usize,
    /// Each file's label (where, filesystem, `O_DIRECT`), by place id.
    pub files: BTreeMap<String, String>,
    /// Every figure of every side, per file and pattern.
    pub figures: Vec<DeviceFigure>,
    /// Each iovm side's median over the host's.
    pub ratios: Vec<DeviceRatio>,
    /// Every run.
    pub runs: Vec<DeviceRun>,
}

/// The samples of one figure of one side on one file and pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceFigure {
    /// The place's id (`tmpfs`, `disk`).
    pub file: String,
    /// `randread` or `randwrite`.
    pub pattern: String,
    /// The figure's id.
    pub figure: String,
    /// The side's id.
    pub side: String,
    /// One per run that measured it.
    pub samples: Vec<f64>,
    /// Their summary.
    pub summary: Option<Summary>,
}

/// An iovm side's median of one figure over the host's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRatio {
    /// The place's id.
    pub file: String,
    /// `randread` or `randwrite`.
    pub pattern: String,
    /// The figure's id.
    pub figure: String,
    /// The iovm side's id.
    pub side: String,
    /// The ratio, if both medians exist and the host's is positive.
    pub iovm_over_host: Option<f64>,
}

/// One device-path run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRun {
    /// `<place>.<pattern>.<side>.<rep>`.
    pub name: String,
    /// Why the run does not count, if it does not.
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by the hand-written writer results.json had before serde, for a test
    /// host run with every section (see `report`'s tests for its inputs).
    const HAND_WRITTEN: &str = include_str!("../../testdata/results-hand-written.json");
    /// The same writer's file for a run of the device-path group alone.
    const HAND_WRITTEN_DEVICE_ONLY: &str =
        include_str!("../../testdata/results-device-only-hand-written.json");

    fn parse(text: &str) -> serde_json::Result<ResultsFile> {
        serde_json::from_str(text)
    }

    fn summary(n: usize, min: f64, median: f64, max: f64) -> Option<Summary> {
        Some(Summary {
            n,
            min,
            median,
            max,
        })
    }

    #[test]
    fn test_hand_written_file_reads_with_its_values() {
        let r = parse(HAND_WRITTEN).unwrap();
        let vms = r.vms.as_ref().unwrap();
        let host = vms.host_fio.as_ref().unwrap();
        let dev = r.device_path.as_ref().unwrap();

        assert_eq!(r.command, "cargo xtask bench --reps 2 --mode testhost");
        assert_eq!(r.iovm, "iovm 0.1.0, a2f377f");
        assert_eq!((vms.mode.as_str(), vms.repetitions), ("testhost", 2));
        assert!(vms.where_ran.starts_with("inside the nested test host"));
        assert_eq!(vms.run_cpu, r#"QEMU Virtual CPU "max", 2 CPUs"#);
        assert!(vms.cmdline.contains("`sleep 2`\tfor memory runs, \\ back"));
        assert_eq!(vms.sample_after_ms, 1500);
        assert_eq!(
            vms.commands["qemu-microvm"],
            r#"$STAGE/qemu -M microvm -append "q""#
        );
        assert_eq!(
            vms.figures[0],
            VmFigure {
                figure: "boot.start_to_init_marker_ms".into(),
                vmm: "iovm".into(),
                samples: vec![500.5, 700.0],
                summary: summary(2, 500.5, 600.25, 700.0),
            }
        );
        assert_eq!(vms.ratios[0].ratio_of_medians, 0.60025);
        assert_eq!(vms.ratios[0].to, "qemu-microvm");
        assert_eq!(vms.runs.len(), 6);
        assert_eq!(
            vms.runs[5],
            VmRun {
                name: "boot.qemu-q35.2".into(),
                record: None,
                problem: Some("no record: the probe did not finish".into()),
            }
        );
        assert!(vms.runs[0]
            .record
            .as_deref()
            .unwrap()
            .contains("rss_kb=20480"));
        assert_eq!(host.fio.as_deref(), Some("fio-3.33"));
        assert_eq!(host.figures[2].samples, vec![2000.0, 2100.5]);
        assert_eq!(
            host.problems,
            vec![r#"shm.read128k-qd8.2: host fio read128k-qd8 failed: `fio: "x" bad`"#]
        );
        assert_eq!((dev.depth, dev.block_size, dev.seconds), (32, 4096, 5));
        assert_eq!((dev.repetitions, dev.cpu), (2, 1));
        assert_eq!(dev.files["disk"], "target/bench/ (ext4, O_DIRECT)");
        assert_eq!(dev.figures.len(), 48);
        assert_eq!(dev.ratios[0].iovm_over_host, Some(1.0));
        assert_eq!(dev.runs.iter().filter(|r| r.problem.is_some()).count(), 1);
    }

    #[test]
    fn test_hand_written_device_only_file_has_no_vm_section() {
        let r = parse(HAND_WRITTEN_DEVICE_ONLY).unwrap();

        assert_eq!(r.vms, None);
        assert_eq!(r.command, "cargo xtask bench --reps 2 --only device-path");
        assert_eq!(r.device_path.unwrap().figures[0].side, "iovm-nvme");
    }

    #[test]
    fn test_file_reads_back_equal() {
        let mut r = parse(HAND_WRITTEN).unwrap();
        if let Some(vms) = &mut r.vms {
            vms.figures[0].summary = None;
            vms.figures[0].samples.clear();
            vms.host_fio = None;
        }
        if let Some(dev) = &mut r.device_path {
            dev.ratios[0].iovm_over_host = None;
        }

        let text = r.to_json().unwrap();

        assert!(text.starts_with("{\n  \"date\": "));
        assert!(text.ends_with("}\n"));
        assert!(text.contains(r#""summary": null"#));
        assert!(!text.contains("host_fio"));
        assert_eq!(parse(&text).unwrap(), r);
    }

    #[test]
    fn test_goals_read_back_and_are_left_out_when_none() {
        let mut r = parse(HAND_WRITTEN).unwrap();
        let before = r.to_json().unwrap();
        if let Some(vms) = &mut r.vms {
            vms.goals.push(VmGoal {
                figure: "net.vmm_cpu_ms_per_mib".into(),
                of: "iovm".into(),
                to: "qemu-q35".into(),
                max_ratio: 0.5,
                ratio_of_medians: None,
                met: None,
            });
        }

        let text = r.to_json().unwrap();

        assert!(!before.contains(r#""goals""#));
        assert!(text.contains(r#""max_ratio": 0.5"#));
        assert!(text.contains(r#""met": null"#));
        assert_eq!(parse(&text).unwrap(), r);
    }

    #[test]
    fn test_device_only_file_reads_back_equal() {
        let r = parse(HAND_WRITTEN_DEVICE_ONLY).unwrap();

        let text = r.to_json().unwrap();

        assert!(!text.contains(r#""mode""#));
        assert_eq!(parse(&text).unwrap(), r);
    }

    #[test]
    fn test_wrong_kind_of_value_is_an_error() {
        let text = HAND_WRITTEN.replacen(r#""depth": 32"#, r#""depth": "32""#, 1);

        assert!(parse(&text).is_err());
        assert!(parse("{}").is_err());
    }
}
