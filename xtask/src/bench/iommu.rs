//! The `iommu` figure group (issue 18): what strict DMA translation through an emulated
//! Intel VT-d costs, iovm against QEMU q35 with its own `intel-iommu`.
//!
//! In the same batch as the other guest groups, the guest runs fio 4 KiB random reads at
//! queue depth 1 (latency) and 32 (IOPS) on an NVMe and on a virtio-blk disk whose image
//! is [`STORAGE`], each VMM once without an IOMMU and once with one and the guest's
//! `intel_iommu=on iommu.strict=1` (every unmap invalidates the IOTLB before it returns).
//! iovm gets `--device intel-iommu`; QEMU gets `-M q35,kernel-irqchip=split -device
//! intel-iommu,intremap=on` and, on its virtio-blk, `iommu_platform=on,disable-legacy=on`
//! so that its virtio path is translated as iovm's is (iovm offers
//! `VIRTIO_F_ACCESS_PLATFORM` whenever the machine has the unit). Then, on this machine
//! and pinned to one CPU, `cargo bench -p iommu --bench translate` times one translated
//! 4 KiB DMA in process ([`Translate`]).

use std::process::Command;

use anyhow::{Context, Result};

use super::block::{Disk, Job, Metric, Storage};
use super::boot::{summary, Figure, Outcome};
use super::goals;
use super::results::TranslateSection;
use super::stats::{ratio, Summary};
use super::vmm::Vmm;
use crate::run::{cargo, run_output};

/// The fio jobs of the group.
pub const JOBS: [Job; 2] = [Job::RandReadQd1, Job::RandReadQd32];

/// Where the disks' image lives: a block device in memory that takes `O_DIRECT`, so that
/// the device path, not the storage, is what the runs compare.
pub const STORAGE: Storage = Storage::Ram;

/// What the guest adds to its kernel command line with the IOMMU.
pub const GUEST_CMDLINE: &str = "intel_iommu=on iommu.strict=1";

/// QEMU's machine with its IOMMU: interrupt remapping needs the split irqchip.
pub const QEMU_MACHINE: &str = "q35,kernel-irqchip=split";

/// Whether the machine has an IOMMU that translates the disk's DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Translation {
    /// No IOMMU: no DMAR table, DMA at guest-physical addresses.
    Off,
    /// The emulated VT-d with `intel_iommu=on iommu.strict=1` in the guest.
    Strict,
}

impl Translation {
    /// Both, the baseline first.
    pub const ALL: [Translation; 2] = [Translation::Off, Translation::Strict];

    /// Name in run names and figure keys.
    pub fn id(self) -> &'static str {
        match self {
            Translation::Off => "off",
            Translation::Strict => "strict",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Translation::Off => "no IOMMU",
            Translation::Strict => "VT-d, strict",
        }
    }

    /// What the guest kernel command line gets, with a leading space (or nothing).
    pub fn cmdline_extra(self) -> String {
        match self {
            Translation::Off => String::new(),
            Translation::Strict => format!(" {GUEST_CMDLINE}"),
        }
    }
}

/// The VMM arguments of one run: the IOMMU first (QEMU wants it before the devices
/// behind it), then the disk as the block group gives it, QEMU's virtio-blk with
/// `iommu_platform=on,disable-legacy=on` under the IOMMU.
pub fn vmm_args(disk: Disk, vmm: Vmm, t: Translation) -> Vec<String> {
    let mut args: Vec<String> = match (t, vmm) {
        (Translation::Off, _) => Vec::new(),
        (Translation::Strict, Vmm::Iovm) => vec!["--device".into(), "intel-iommu".into()],
        (Translation::Strict, _) => vec!["-device".into(), "intel-iommu,intremap=on".into()],
    };
    let mut disk_args = disk.vmm_args(vmm, STORAGE);
    if t == Translation::Strict && vmm != Vmm::Iovm {
        for a in &mut disk_args {
            if a.starts_with("virtio-blk-pci,") {
                a.push_str(",iommu_platform=on,disable-legacy=on");
            }
        }
    }
    args.extend(disk_args);
    args
}

/// The machine option QEMU gets instead of `q35` in a run with `t`, if another.
pub fn qemu_machine(t: Translation) -> Option<&'static str> {
    (t == Translation::Strict).then_some(QEMU_MACHINE)
}

/// What the guest kernel prints when its `intel_iommu` driver has taken the unit.
const DMAR_ENABLED: &str = "DMAR: Intel(R) Virtualization Technology for Directed I/O";
/// What it prints when unmaps invalidate the IOTLB before they return.
const STRICT_POLICY: &str = "DMA domain TLB invalidation policy: strict mode";

/// Checks that a run's guest (its console) translated as `t` says: with the IOMMU, the
/// guest's driver took the unit in strict mode; without, no DMA remapping at all. A run
/// that measured something else does not count.
pub fn check_console(t: Translation, console: &str) -> Result<(), String> {
    let enabled = console.contains(DMAR_ENABLED);
    match t {
        Translation::Strict if !enabled => Err(
            "the guest's intel_iommu did not take the IOMMU (no `DMAR: Intel(R) \
                 Virtualization Technology for Directed I/O` line)"
                .into(),
        ),
        Translation::Strict if !console.contains(STRICT_POLICY) => {
            Err("the guest's IOMMU is not in strict mode".into())
        }
        Translation::Off if enabled => Err("the guest remaps DMA in a run without an IOMMU".into()),
        _ => Ok(()),
    }
}

/// The figures of one disk and translation kept in results.json and the report: the fio
/// figures of each job, the KVM exits and the VMM's CPU outside the guest per I/O.
pub fn rows() -> Vec<(Job, Metric)> {
    let mut out = Vec::new();
    for job in JOBS {
        out.extend(job_metrics(job).into_iter().map(|m| (job, m)));
    }
    for job in JOBS {
        out.push((job, Metric::ExitsPerIo));
        out.push((job, Metric::MmioExitsPerIo));
    }
    out
}

/// The fio figures a job is judged by.
fn job_metrics(job: Job) -> Vec<Metric> {
    match job {
        Job::RandReadQd1 => vec![Metric::P50Us, Metric::P99Us, Metric::Iops],
        _ => vec![Metric::Iops],
    }
}

/// The cost of strict translation of `vmm` on `disk` in `job`'s `m`: its median with
/// the IOMMU ÷ its median without.
pub fn cost(outcomes: &[Outcome], vmm: Vmm, disk: Disk, job: Job, m: Metric) -> Option<f64> {
    ratio(
        summary(
            outcomes,
            Figure::Iommu(disk, Translation::Strict, job, m),
            vmm,
        ),
        summary(outcomes, Figure::Iommu(disk, Translation::Off, job, m), vmm),
    )
}

/// One case of the in-process translation bench.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateCase {
    /// `direct`, `off`, `passthrough`, `cold` or `cached`.
    pub case: String,
    /// The median over the bench's runs, ns per 4 KiB read.
    pub median_ns: f64,
    /// The fastest run, ns per 4 KiB read.
    pub min_ns: f64,
}

/// What the bench says each case is, for the report.
fn case_label(case: &str) -> &'static str {
    match case {
        "direct" => "guest RAM as is (no IOMMU)",
        "off" => "through the unit, translation off",
        "passthrough" => "pass-through context entry (`iommu=pt`)",
        "cold" => "translated, cache dropped before each access (4-level walk)",
        "cached" => "translated, translation cached",
        _ => "",
    }
}

/// Parses the bench's `translate_4k_ns case=<case> median=<ns> min=<ns>` lines.
pub fn parse_translate(stdout: &str) -> Vec<TranslateCase> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("translate_4k_ns ")?;
            let field = |k: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            };
            Some(TranslateCase {
                case: field("case")?.to_owned(),
                median_ns: field("median")?.parse().ok()?,
                min_ns: field("min")?.parse().ok()?,
            })
        })
        .collect()
}

/// The in-process translation bench's results on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Translate {
    /// Accesses per timed run (`--iters`).
    pub iters: u32,
    /// The CPU it was pinned to.
    pub cpu: usize,
    /// Its cases, or why there are none.
    pub cases: Result<Vec<TranslateCase>, String>,
}

impl Translate {
    /// The `iommu_translate` member of results.json.
    pub fn section(&self) -> TranslateSection {
        let (cases, problem) = match &self.cases {
            Ok(c) => (
                c.iter()
                    .map(|c| (c.case.clone(), c.median_ns, c.min_ns))
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.clone())),
        };
        TranslateSection {
            iters: self.iters,
            cpu: self.cpu,
            cases,
            problem,
        }
    }
}

/// Builds and runs `cargo bench -p iommu --bench translate -- --iters <iters>` pinned to
/// one CPU, as the device-path group runs its benches.
pub fn run_translate(iters: u32) -> Result<Translate> {
    let cpu = super::device::bench_cpu()?;
    println!("xtask: bench: iommu: building the translate bench");
    let mut build = cargo();
    build.args([
        "bench",
        "-p",
        "iommu",
        "--bench",
        "translate",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    let exe = super::device_json::executables(&run_output(&mut build)?)
        .into_iter()
        .find(|(n, _)| n == "translate")
        .map(|(_, p)| p)
        .context("cargo did not name the translate bench executable")?;
    println!("xtask: bench: iommu: one translated 4 KiB DMA, in process, on CPU {cpu}");
    let mut cmd = Command::new(&exe);
    cmd.args(["--iters", &iters.to_string()]);
    super::device::confine(&mut cmd, cpu);
    let cases = match run_output(&mut cmd) {
        Ok(stdout) => {
            print!("{stdout}");
            let cases = parse_translate(&stdout);
            if cases.is_empty() {
                Err(format!(
                    "no `translate_4k_ns` line in its output: `{}`",
                    stdout.lines().next().unwrap_or("")
                ))
            } else {
                Ok(cases)
            }
        }
        Err(e) => Err(format!("{e:#}")),
    };
    Ok(Translate { iters, cpu, cases })
}

/// A ratio for a table, or `–`.
fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}"))
}

/// The report's section: per disk a table of both VMMs with and without the IOMMU, the
/// cost of strict translation, iovm ÷ QEMU with the IOMMU, then the goals and the
/// in-process cost of one translated DMA.
pub fn section(
    outcomes: &[Outcome],
    translate: Option<&Translate>,
    cell: impl Fn(Option<Summary>) -> String,
) -> String {
    let mut out = format!(
        "\n## IOMMU (emulated VT-d, issue 18)\n\nfio in the guest (4 KiB random reads, \
         `--direct=1`, libaio) on a disk whose image is a {} where the VMMs run (`{}`), each VMM \
         without an IOMMU and with one, the guest's kernel command line then with \
         `{GUEST_CMDLINE}` (every unmap waits for its IOTLB invalidation). iovm: \
         `--device intel-iommu` (its virtio-blk driver accepts `VIRTIO_F_ACCESS_PLATFORM`, \
         so its rings and buffers are translated too); QEMU: `-M {QEMU_MACHINE} -device \
         intel-iommu,intremap=on`, its virtio-blk with `iommu_platform=on,disable-legacy=on`. \
         Cost of strict translation: a VMM's median with its IOMMU ÷ its median without \
         (for IOPS, 1.00 is free; for latency, above 1 is slower).\n",
        STORAGE.label(),
        STORAGE.image()
    );
    let vmms = [Vmm::Iovm, Vmm::QemuQ35];
    for disk in Disk::ALL {
        let ran = outcomes
            .iter()
            .any(|o| matches!(o.spec.kind, super::plan::Kind::Iommu(d, _) if d == disk));
        if !ran {
            continue;
        }
        out.push_str(&format!("\n### {}\n\n| |", disk.label()));
        for v in vmms {
            for t in Translation::ALL {
                out.push_str(&format!(" {}, {} |", v.label(), t.label()));
            }
        }
        for v in vmms {
            out.push_str(&format!(" {} cost |", v.label()));
        }
        out.push_str(" iovm ÷ QEMU q35, VT-d |\n|---|");
        out.push_str(&"---:|".repeat(2 * Translation::ALL.len() + vmms.len() + 1));
        out.push('\n');
        for (job, m) in rows() {
            let figure = |t| Figure::Iommu(disk, t, job, m);
            out.push_str(&format!("| {} |", super::block::label(job, m)));
            for v in vmms {
                for t in Translation::ALL {
                    out.push_str(&format!(" {} |", cell(summary(outcomes, figure(t), v))));
                }
            }
            for v in vmms {
                out.push_str(&format!(
                    " {} |",
                    ratio_cell(cost(outcomes, v, disk, job, m))
                ));
            }
            let strict = figure(Translation::Strict);
            let r = ratio(
                summary(outcomes, strict, Vmm::Iovm),
                summary(outcomes, strict, Vmm::QemuQ35),
            );
            out.push_str(&format!(" {} |\n", ratio_cell(r)));
        }
    }
    let checks = goals::iommu_checks(outcomes);
    if !checks.is_empty() {
        out.push_str(
            "\nGoals (issue 18):\n\n| disk | ratio | value | goal |\n|---|---|---:|---|\n",
        );
        for c in &checks {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.disk.label(),
                c.goal.label(),
                ratio_cell(c.ratio),
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
    }
    if let Some(t) = translate {
        out.push_str(&format!(
            "\n### One translated 4 KiB DMA, in process\n\n`cargo bench -p iommu --bench \
             translate -- --iters {}` on this machine (not in the test host), pinned to CPU \
             {}: a device's `Dma::read` of one 4 KiB page at an IOVA through the unit; each \
             figure the median (and the fastest) of the bench's runs of {} accesses.\n\n",
            t.iters, t.cpu, t.iters
        ));
        match &t.cases {
            Ok(cases) => {
                out.push_str(
                    "| case | ns per 4 KiB read, median | fastest run |\n|---|---:|---:|\n",
                );
                for c in cases {
                    out.push_str(&format!(
                        "| `{}`: {} | {:.1} | {:.1} |\n",
                        c.case,
                        case_label(&c.case),
                        c.median_ns,
                        c.min_ns
                    ));
                }
            }
            Err(e) => out.push_str(&format!("The bench did not run: {e}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::{Kind, RunSpec};

    fn outcome(kind: Kind, vmm: Vmm, samples: Vec<(Figure, f64)>) -> Outcome {
        Outcome {
            spec: RunSpec { kind, vmm, rep: 1 },
            record: None,
            samples,
            problem: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn test_vmm_args_put_the_iommu_first_and_translate_qemus_virtio() {
        let iovm = vmm_args(Disk::VirtioBlk, Vmm::Iovm, Translation::Strict).join(" ");
        let qemu = vmm_args(Disk::VirtioBlk, Vmm::QemuQ35, Translation::Strict).join(" ");
        let qemu_nvme = vmm_args(Disk::Nvme, Vmm::QemuQ35, Translation::Strict).join(" ");
        let off = vmm_args(Disk::VirtioBlk, Vmm::QemuQ35, Translation::Off);

        assert_eq!(
            iovm,
            "--device intel-iommu --device virtio-blk,path=/run/iovm-bench-ram"
        );
        assert!(qemu.starts_with("-device intel-iommu,intremap=on -device virtio-blk-pci,drive=d,iommu_platform=on,disable-legacy=on -drive "));
        assert!(qemu_nvme.starts_with("-device intel-iommu,intremap=on -device nvme,"));
        assert!(!qemu_nvme.contains("iommu_platform"));
        assert_eq!(off, Disk::VirtioBlk.vmm_args(Vmm::QemuQ35, STORAGE));
        assert_eq!(
            qemu_machine(Translation::Strict),
            Some("q35,kernel-irqchip=split")
        );
        assert_eq!(qemu_machine(Translation::Off), None);
        assert_eq!(Translation::Off.cmdline_extra(), "");
        assert_eq!(
            Translation::Strict.cmdline_extra(),
            " intel_iommu=on iommu.strict=1"
        );
    }

    #[test]
    fn test_parse_translate_reads_every_case_line() {
        let out = "translate_4k_ns case=direct median=110.5 min=100.0\n\
                   some other line\n\
                   translate_4k_ns case=cold median=900.0 min=850.25\n\
                   translate_4k_ns case=cached median=bad min=1\n";

        let c = parse_translate(out);

        assert_eq!(
            c,
            vec![
                TranslateCase {
                    case: "direct".into(),
                    median_ns: 110.5,
                    min_ns: 100.0
                },
                TranslateCase {
                    case: "cold".into(),
                    median_ns: 900.0,
                    min_ns: 850.25
                },
            ]
        );
        assert!(parse_translate("").is_empty());
    }

    #[test]
    fn test_section_shows_costs_ratios_goals_and_the_translate_bench() {
        let f = |t, job, m| Figure::Iommu(Disk::Nvme, t, job, m);
        let qd32 = |t| f(t, Job::RandReadQd32, Metric::Iops);
        let p50 = |t| f(t, Job::RandReadQd1, Metric::P50Us);
        let o = vec![
            outcome(
                Kind::Iommu(Disk::Nvme, Translation::Off),
                Vmm::Iovm,
                vec![
                    (qd32(Translation::Off), 1000.0),
                    (p50(Translation::Off), 50.0),
                ],
            ),
            outcome(
                Kind::Iommu(Disk::Nvme, Translation::Strict),
                Vmm::Iovm,
                vec![
                    (qd32(Translation::Strict), 800.0),
                    (p50(Translation::Strict), 60.0),
                ],
            ),
            outcome(
                Kind::Iommu(Disk::Nvme, Translation::Off),
                Vmm::QemuQ35,
                vec![(qd32(Translation::Off), 1000.0)],
            ),
            outcome(
                Kind::Iommu(Disk::Nvme, Translation::Strict),
                Vmm::QemuQ35,
                vec![(qd32(Translation::Strict), 500.0)],
            ),
        ];
        let t = Translate {
            iters: 1000,
            cpu: 1,
            cases: Ok(parse_translate(
                "translate_4k_ns case=cached median=42.0 min=40.0\n",
            )),
        };

        let md = section(&o, Some(&t), crate::bench::report::cell);

        assert!(
            md.contains(
                "| 4k randread QD32: IOPS | 1000 | 800 | 1000 | 500 | 0.80 | 0.50 | 1.60 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 4k randread QD1: p50 completion latency (µs) | 50.0 | 60.0 | – | – | 1.20 | – | – |"
            ),
            "{md}"
        );
        assert!(
            !md.contains("### virtio-blk"),
            "virtio-blk did not run: {md}"
        );
        assert!(md.contains("| 1.60 | met (≥ 1.00) |"), "{md}");
        assert!(md.contains("| 1.60 | met (≥ 1.20) |"), "{md}");
        assert!(md.contains("Goals met: 2 of 2."));
        assert!(md.contains("| `cached`: translated, translation cached | 42.0 | 40.0 |"));

        let failed = Translate {
            cases: Err("no line".into()),
            ..t
        };
        assert!(section(&o, Some(&failed), crate::bench::report::cell)
            .contains("The bench did not run: no line"));
    }

    #[test]
    fn test_check_console_wants_strict_translation_exactly_with_the_iommu() {
        let strict = "[ 2.4] DMAR: IOMMU enabled\n\
                      [ 8.8] iommu: DMA domain TLB invalidation policy: strict mode (set via kernel command line)\n\
                      [ 8.9] DMAR: Intel(R) Virtualization Technology for Directed I/O\n";
        let lazy = strict.replace("strict mode", "lazy mode");
        let off = "[ 8.8] iommu: DMA domain TLB invalidation policy: lazy mode\n";

        assert_eq!(check_console(Translation::Strict, strict), Ok(()));
        assert_eq!(check_console(Translation::Off, off), Ok(()));
        assert!(check_console(Translation::Strict, &lazy)
            .unwrap_err()
            .contains("not in strict mode"));
        assert!(check_console(Translation::Strict, off)
            .unwrap_err()
            .contains("did not take the IOMMU"));
        assert!(check_console(Translation::Off, strict)
            .unwrap_err()
            .contains("without an IOMMU"));
    }
}
