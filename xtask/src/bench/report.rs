//! The benchmark's outputs: `target/bench/results.json` (every sample) and
//! `docs/bench/RESULTS.md` (medians, ranges and ratios in tables, and where it ran).

use testkit::Mode;

use super::block::{HostFio, Storage};
use super::boot::{samples, summary, Figure, Outcome};
use super::device;
use super::goals;
use super::io_report;
use super::iommu;
use super::plan::Kind;
use super::plots::{Figures, Group};
use super::results::{
    ResultsFile, VmFigure, VmGoal, VmIommuGoal, VmRatio, VmRun, VmSection, VmVfioGoal,
};
use super::stats::{ratio, Summary};
use super::vfio_host::HostLimit;
use super::vfio_report;
use super::vmm::Vmm;

/// Where and with what the benchmark ran.
#[derive(Debug, Clone)]
pub struct Env {
    /// When (UTC).
    pub date: String,
    /// Direct or in the test host.
    pub mode: Mode,
    /// This machine: CPU model, CPU count, kernel, what its /dev/kvm is.
    pub machine: String,
    /// Kernel release where the VMMs ran.
    pub run_kernel: String,
    /// CPU model and count where the VMMs ran.
    pub run_cpu: String,
    /// The guest kernel and image.
    pub guest: String,
    /// iovm's version and git commit.
    pub iovm: String,
    /// QEMU's version line.
    pub qemu: String,
    /// Repetitions per VMM and figure.
    pub reps: u32,
    /// Guest RAM.
    pub memory: String,
    /// Milliseconds after the marker when memory is sampled.
    pub sample_after_ms: u64,
    /// The kernel command line (the guest script shown symbolically).
    pub cmdline: String,
    /// Each VMM's command line for a boot run.
    pub commands: Vec<(Vmm, String)>,
    /// The command lines of block and net runs.
    pub io_commands: Vec<(Kind, Vmm, String)>,
    /// The guest scripts of block and net runs.
    pub io_scripts: Vec<(Kind, String)>,
    /// Seconds per fio job in block runs.
    pub block_seconds: u32,
    /// MiB sent in net runs.
    pub net_mib: u32,
    /// Where each storage's block image turned out to be, where the VMMs ran (the link's
    /// target, e.g. `/dev/vda`; empty if unknown).
    pub block_images: Vec<(Storage, String)>,
}

const BOOT: [Figure; 7] = [
    Figure::ToMarker,
    Figure::ToExit,
    Figure::PvhToMarker,
    Figure::PvhIovmMarker,
    Figure::FirstInstruction,
    Figure::IovmMarker,
    Figure::Console,
];
const MEMORY: [Figure; 3] = [Figure::Rss, Figure::Pss, Figure::AnonHuge];
const EXITS: [Figure; 7] = [
    Figure::PioWrite,
    Figure::Cf8Read,
    Figure::EcamRead,
    Figure::EcamWrite,
    Figure::KernelCf8Read,
    Figure::KernelEcamRead,
    Figure::VirtioNotify,
];
const PEERS: [Vmm; 2] = [Vmm::QemuMicrovm, Vmm::QemuQ35];

/// A value for a table: whole numbers from 100 up, one decimal below, two below 10
/// (exits per I/O are often below 1).
pub fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A table cell: median (min–max), or the value alone for one sample, or `–`.
pub fn cell(s: Option<Summary>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
        Some(s) => num(s.median),
        None => "–".into(),
    }
}

fn where_ran(mode: Mode) -> &'static str {
    match mode {
        Mode::TestHost => {
            "inside the nested test host (QEMU 7.2 TCG, `-cpu max` with AMD SVM, KVM inside; \
             docs/test-host.md), all in one boot of it: absolute times are an emulator's, \
             compare the ratios"
        }
        Mode::Direct => "directly on this machine's /dev/kvm",
    }
}

fn table(out: &mut String, outcomes: &[Outcome], figures: &[Figure]) {
    out.push_str("| |");
    for vmm in Vmm::ALL {
        out.push_str(&format!(" {} |", vmm.label()));
    }
    for peer in PEERS {
        out.push_str(&format!(" iovm ÷ {} |", peer.label()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(Vmm::ALL.len() + PEERS.len()));
    out.push('\n');
    for &f in figures {
        out.push_str(&format!("| {} |", f.label()));
        for vmm in Vmm::ALL {
            out.push_str(&format!(" {} |", cell(summary(outcomes, f, vmm))));
        }
        for peer in PEERS {
            let r = ratio(summary(outcomes, f, Vmm::Iovm), summary(outcomes, f, peer));
            out.push_str(&format!(
                " {} |",
                r.map_or_else(|| "–".into(), |r| format!("{r:.2}"))
            ));
        }
        out.push('\n');
    }
}

/// Per VMM, the kernel warnings its guests printed (they cost console output, and time).
fn warnings(out: &mut String, outcomes: &[Outcome]) {
    let mut lines = Vec::new();
    for vmm in Vmm::ALL {
        let runs: Vec<&Outcome> = outcomes.iter().filter(|o| o.spec.vmm == vmm).collect();
        let warned: Vec<&&Outcome> = runs.iter().filter(|o| !o.warnings.is_empty()).collect();
        if let Some(first) = warned.first() {
            let line = &first.warnings[0];
            let text = line.split_once("] ").map_or(line.as_str(), |(_, t)| t);
            lines.push(format!(
                "- {}: {} of {} runs, e.g. `{}`\n",
                vmm.label(),
                warned.len(),
                runs.len(),
                text.trim()
            ));
        }
    }
    if !lines.is_empty() {
        out.push_str("\n## Guest kernel warnings\n\n");
        out.push_str(&lines.concat());
    }
}

/// What the groups that boot guests measured, for the report.
#[derive(Debug, Clone, Copy)]
pub struct Guests<'a> {
    /// Where and with what.
    pub env: &'a Env,
    /// Every run.
    pub outcomes: &'a [Outcome],
    /// The host's own fio on the block image, if the block group ran.
    pub host_fio: Option<&'a HostFio>,
    /// The in-process translate bench, if the IOMMU group ran.
    pub translate: Option<&'a iommu::Translate>,
    /// The test host's own fio on the assignable NVMe, if the VFIO group ran.
    pub vfio_host: Option<&'a HostLimit>,
}

/// `docs/bench/RESULTS.md`: the tables of the groups that ran, each group's figure
/// (of `figures`) in its section.
pub fn markdown(
    command: &str,
    vms: Option<Guests>,
    dev: Option<&device::Results>,
    figures: &Figures,
) -> String {
    let dev_section = dev
        .map(|d| d.markdown(cell, &figures.markdown(Group::DevicePath)))
        .unwrap_or_default();
    match vms {
        Some(g) => vm_markdown(command, g, &dev_section, figures),
        None => {
            let mut out = format!(
                "# Benchmark results\n\nWritten by `{command}`: the device-path group \
                 only. Cells: median (min–max).\n\n| | |\n|---|---|\n"
            );
            for (k, v) in [
                ("Date", super::facts::date()),
                ("Machine", super::facts::machine()),
                ("iovm", super::facts::git_commit()),
            ] {
                out.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
            }
            out.push_str(&dev_section);
            out
        }
    }
}

/// Whether any run is of a kind `pick` accepts.
fn ran(outcomes: &[Outcome], pick: impl Fn(Kind) -> bool) -> bool {
    outcomes.iter().any(|o| pick(o.spec.kind))
}

fn vm_markdown(command: &str, g: Guests, dev_section: &str, figures: &Figures) -> String {
    let (env, outcomes) = (g.env, g.outcomes);
    let mut out = String::from("# Benchmark results\n\n");
    out.push_str(&format!(
        "Written by `{}`. iovm against QEMU 7.2, each booting the same guest kernel and \
         initramfs with the same kernel command line, 1 vCPU and {} of RAM; the VMMs \
         interleaved run by run, {} repetition(s) each. Cells: median (min–max); ratios: \
         iovm's median ÷ QEMU's (below 1: iovm takes less). Each group's figure shows \
         its ratios as bars from 1.0, throughput inverted so that left of 1.0 is iovm \
         better on every row.\n\n| | |\n|---|---|\n",
        command, env.memory, env.reps
    ));
    for (k, v) in [
        ("Date", env.date.as_str()),
        ("Where the VMMs ran", where_ran(env.mode)),
        ("Machine", env.machine.as_str()),
        ("Kernel where the VMMs ran", env.run_kernel.as_str()),
        ("CPU where the VMMs ran", env.run_cpu.as_str()),
        ("Guest", env.guest.as_str()),
        ("Guest kernel command line", env.cmdline.as_str()),
        ("iovm", env.iovm.as_str()),
        ("QEMU", env.qemu.as_str()),
    ] {
        out.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
    }
    if ran(outcomes, |k| k == Kind::Boot) {
        boot_sections(&mut out, env, outcomes, figures);
    }
    if ran(outcomes, |k| matches!(k, Kind::Block(..))) {
        out.push_str(&io_report::block_section(
            env, outcomes, g.host_fio, figures,
        ));
    }
    if ran(outcomes, |k| k == Kind::Net || k == Kind::NetE1000e) {
        out.push_str(&io_report::net_section(env, outcomes, figures));
    }
    if ran(outcomes, |k| matches!(k, Kind::Iommu(..))) {
        out.push_str(&iommu::section(outcomes, g.translate, cell));
        io_report::commands(&mut out, env, &super::plan::iommu_kinds());
    }
    if ran(outcomes, |k| k == Kind::Vfio) {
        out.push_str(&vfio_report::section(
            outcomes,
            g.vfio_host,
            env.block_seconds,
            cell,
        ));
        io_report::commands(&mut out, env, &[Kind::Vfio]);
    }
    warnings(&mut out, outcomes);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.problem.is_some()).collect();
    if !failed.is_empty() {
        out.push_str("\n## Runs that did not count\n\n");
        for o in failed {
            out.push_str(&format!(
                "- `{}`: {}\n",
                o.spec.name(),
                o.problem.as_deref().unwrap_or("")
            ));
        }
    }
    out.push_str(dev_section);
    if ran(outcomes, |k| k == Kind::Boot) {
        out.push_str(
            "\n## Command lines\n\nAs run for a boot run (`$STAGE`: the staged binaries, \
             firmware and guest images; in the test host, in its memory):\n\n```\n",
        );
        for (_, c) in &env.commands {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str("```\n");
    }
    out.push_str(
        "\nRaw samples: `target/bench/results.json`; consoles: \
                  `target/bench/logs/`.\n",
    );
    out
}

/// The boot, memory and exit-path sections, with their figures.
fn boot_sections(out: &mut String, env: &Env, outcomes: &[Outcome], figures: &Figures) {
    out.push_str(
        "\n## Boot\n\nFrom just before the VMM process starts (`bench-probe` times it with \
         a monotonic clock where the VMM runs) to the guest `/init`'s marker \
         `IOVM-GUEST: boot done` read from the VMM's console, and to the VMM's exit after \
         the guest's `poweroff -f`. The `--timing` rows are iovm's own report, counted from \
         its `main`.\n\n",
    );
    table(out, outcomes, &BOOT);
    out.push_str(&format!(
        "\n## Memory\n\nThe VMM process's own resident memory from \
         `/proc/PID/smaps_rollup`, sampled {} ms after the init marker while the guest \
         sleeps (guest script `sleep 2`). Guest RAM the guest never touched is not resident \
         and does not count; RAM it touched does, in every VMM alike.\n\n",
        env.sample_after_ms
    ));
    table(out, outcomes, &MEMORY);
    out.push_str(&figures.markdown(Group::BootMemory));
    out.push_str(&format!(
        "\n## Exit paths\n\nTimed inside the guest by `{}` (guest-tools/exit-probe, \
         kernel command line plus `iomem=relaxed` so that it may map ECAM and a BAR): each \
         cell is the median over runs of the guest's own median of 7 batches of 2000 \
         accesses, in ns per access. Each access leaves the guest; all but the virtio \
         notification are handled by the VMM in user space. The notification is written to \
         the queue doorbell of a virtio-rng device (iovm `--device virtio-rng`, QEMU \
         `-device virtio-rng-pci`, the only device these runs add), which both VMMs serve \
         with an ioeventfd: KVM signals the VMM's eventfd and resumes the guest. QEMU microvm \
         has no PCI and is not run.\n\n",
        super::plan::EXIT_PROBE
    ));
    table(out, outcomes, &EXITS);
    out.push_str(&figures.markdown(Group::Exits));
}

/// `target/bench/results.json`: the VM group's figures if it ran, and the device-path
/// group's under `device_path` if it ran.
pub fn results(command: &str, vms: Option<Guests>, dev: Option<&device::Results>) -> ResultsFile {
    let (date, machine, iovm) = match vms {
        Some(g) => (
            g.env.date.clone(),
            g.env.machine.clone(),
            g.env.iovm.clone(),
        ),
        None => (
            super::facts::date(),
            super::facts::machine(),
            super::facts::git_commit(),
        ),
    };
    ResultsFile {
        date,
        command: command.into(),
        machine,
        iovm,
        vms: vms.map(vm_section),
        device_path: dev.map(device::Results::section),
    }
}

fn vm_section(g: Guests) -> VmSection {
    let (env, outcomes) = (g.env, g.outcomes);
    let mut figures = Vec::new();
    let mut ratios = Vec::new();
    for f in Figure::all() {
        for vmm in Vmm::ALL {
            let s = samples(outcomes, f, vmm);
            if s.is_empty() {
                continue;
            }
            figures.push(VmFigure {
                figure: f.id(),
                vmm: vmm.id().into(),
                summary: Summary::of(&s),
                samples: s,
            });
        }
        for peer in PEERS {
            let r = ratio(summary(outcomes, f, Vmm::Iovm), summary(outcomes, f, peer));
            if let Some(r) = r {
                ratios.push(VmRatio {
                    figure: f.id(),
                    of: Vmm::Iovm.id().into(),
                    to: peer.id().into(),
                    ratio_of_medians: r,
                });
            }
        }
    }
    let goals = goals::checks(outcomes)
        .into_iter()
        .map(|c| VmGoal {
            figure: c.figure.id(),
            of: Vmm::Iovm.id().into(),
            to: Vmm::QemuQ35.id().into(),
            max_ratio: c.bound,
            ratio_of_medians: c.ratio,
            met: c.met(),
        })
        .collect();
    let iommu_goals = goals::iommu_checks(outcomes)
        .into_iter()
        .map(|c| VmIommuGoal {
            goal: c.id(),
            min_ratio: c.goal.min(),
            ratio: c.ratio,
            met: c.met(),
        })
        .collect();
    let vfio_goals = goals::vfio_checks(outcomes, g.vfio_host)
        .into_iter()
        .map(|c| {
            let b = c.goal.bound();
            let (min, max) = if c.goal.at_least() {
                (Some(b), None)
            } else {
                (None, Some(b))
            };
            VmVfioGoal {
                goal: c.goal.id(),
                min,
                max,
                value: c.value,
                met: c.met(),
            }
        })
        .collect();
    let runs = outcomes
        .iter()
        .map(|o| VmRun {
            name: o.spec.name(),
            record: o.record.as_ref().map(|r| r.to_line()),
            problem: o.problem.clone(),
        })
        .collect();
    VmSection {
        mode: env.mode.to_string(),
        where_ran: where_ran(env.mode).into(),
        run_kernel: env.run_kernel.clone(),
        run_cpu: env.run_cpu.clone(),
        guest: env.guest.clone(),
        qemu: env.qemu.clone(),
        repetitions: env.reps,
        memory: env.memory.clone(),
        sample_after_ms: env.sample_after_ms,
        cmdline: env.cmdline.clone(),
        commands: env
            .commands
            .iter()
            .map(|(v, c)| (v.id().to_owned(), c.clone()))
            .collect(),
        figures,
        ratios,
        goals,
        iommu_goals,
        vfio_goals,
        runs,
        host_fio: g.host_fio.map(HostFio::section),
        iommu_translate: g.translate.map(iommu::Translate::section),
        vfio_host_fio: g.vfio_host.map(HostLimit::section),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::boot::evaluate;
    use crate::bench::net;
    use crate::bench::plan::{Kind, RunSpec};
    use crate::bench::record::{Exit, Record};
    use crate::bench::results_compat;
    use crate::bench::vmm_cpu::CpuFigure;

    fn outcome(vmm: Vmm, marker: f64) -> Outcome {
        let console = "iovm: timing: first guest instruction 2.0 ms after start\n\
                       iovm: timing: init marker seen 9.0 ms after start\n\
                       IOVM-GUEST: exit status=0\n";
        let r = Record {
            name: "x".into(),
            exit: Exit::Code(0),
            marker_ms: Some(marker),
            exit_ms: Some(marker + 100.0),
            memory: None,
        };
        let spec = RunSpec {
            kind: Kind::Boot,
            vmm,
            rep: 1,
        };
        evaluate(spec, Some(r), Some(console), &[])
    }

    #[test]
    fn test_results_carry_the_goals_of_the_runs() {
        let f = Figure::Net(net::Metric::Cpu(CpuFigure::Outside));
        let net = |vmm, v| Outcome {
            spec: RunSpec {
                kind: Kind::Net,
                vmm,
                rep: 1,
            },
            record: None,
            samples: vec![(f, v)],
            problem: None,
            warnings: Vec::new(),
        };
        let o = [net(Vmm::Iovm, 6.0), net(Vmm::QemuQ35, 10.0)];
        let env = results_compat::env();
        let g = Guests {
            env: &env,
            outcomes: &o,
            host_fio: None,
            translate: None,
            vfio_host: None,
        };

        let vms = results("c", Some(g), None).vms.unwrap();

        assert_eq!(
            vms.goals,
            vec![VmGoal {
                figure: "net.vmm_cpu_ms_per_mib".into(),
                of: "iovm".into(),
                to: "qemu-q35".into(),
                max_ratio: 0.5,
                ratio_of_medians: Some(0.6),
                met: Some(false),
            }]
        );
        assert!(vms
            .ratios
            .iter()
            .any(|r| r.figure == "net.vmm_cpu_ms_per_mib" && r.ratio_of_medians == 0.6));
    }

    #[test]
    fn test_table_has_medians_and_ratios() {
        let o = [
            outcome(Vmm::Iovm, 500.0),
            outcome(Vmm::Iovm, 700.0),
            outcome(Vmm::QemuMicrovm, 1000.0),
            outcome(Vmm::QemuQ35, 2400.0),
        ];
        let mut t = String::new();

        table(&mut t, &o, &[Figure::ToMarker, Figure::FirstInstruction]);

        assert_eq!(
            t.lines().nth(2).unwrap(),
            "| process start → init marker (ms) | 600 (500–700) | 1000 | 2400 | 0.60 | 0.25 |"
        );
        assert_eq!(
            t.lines().nth(3).unwrap(),
            "| first guest instruction, iovm `--timing` (ms) | 2.00 (2.00–2.00) | – | – | – | – |"
        );
    }

    #[test]
    fn test_each_figure_sits_in_its_groups_section() {
        let o = [outcome(Vmm::Iovm, 500.0), outcome(Vmm::QemuQ35, 1000.0)];
        let env = results_compat::env();
        let g = Guests {
            env: &env,
            outcomes: &o,
            host_fio: None,
            translate: None,
            vfio_host: None,
        };
        let figures = Figures(vec![
            (Group::BootMemory, "boot-memory-quick.png".into()),
            (Group::Exits, "exits-quick.png".into()),
        ]);

        let md = markdown("c", Some(g), None, &figures);

        let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("no `{s}` in {md}"));
        let boot = at("](boot-memory-quick.png)");
        let exits = at("](exits-quick.png)");
        assert!(at("## Memory") < boot && boot < at("## Exit paths"));
        assert!(at("## Exit paths") < exits);
        assert!(!md.contains("ratios.png"), "the old chart is gone: {md}");
        assert!(!markdown("c", Some(g), None, &Figures::default()).contains("!["));
    }

    #[test]
    fn test_iommu_runs_get_their_section_goals_and_translate_bench() {
        use crate::bench::block::{Disk, Job, Metric, Storage};
        use crate::bench::iommu::{parse_translate, Translate, Translation};
        let f = |t| Figure::Iommu(Disk::Nvme, t, Job::RandReadQd32, Metric::Iops);
        let run = |t, vmm, v| Outcome {
            spec: RunSpec {
                kind: Kind::Iommu(Disk::Nvme, t),
                vmm,
                rep: 1,
            },
            record: None,
            samples: vec![(f(t), v)],
            problem: None,
            warnings: Vec::new(),
        };
        let o = [
            run(Translation::Off, Vmm::Iovm, 1000.0),
            run(Translation::Strict, Vmm::Iovm, 900.0),
            run(Translation::Off, Vmm::QemuQ35, 1000.0),
            run(Translation::Strict, Vmm::QemuQ35, 600.0),
        ];
        let mut env = results_compat::env();
        env.io_commands = vec![
            (
                Kind::Iommu(Disk::Nvme, Translation::Strict),
                Vmm::QemuQ35,
                "qemu -M q35,kernel-irqchip=split".into(),
            ),
            (
                Kind::Block(Disk::Nvme, Storage::Shm),
                Vmm::Iovm,
                "iovm block".into(),
            ),
        ];
        let t = Translate {
            iters: 10,
            cpu: 0,
            cases: Ok(parse_translate(
                "translate_4k_ns case=cold median=150.0 min=149.0\n",
            )),
        };
        let g = Guests {
            env: &env,
            outcomes: &o,
            host_fio: None,
            translate: Some(&t),
            vfio_host: None,
        };

        let md = markdown("c", Some(g), None, &Figures::default());
        let vms = results("c", Some(g), None).vms.unwrap();

        assert!(md.contains("## IOMMU (emulated VT-d, issue 18)"), "{md}");
        assert!(md
            .contains("| 4k randread QD32: IOPS | 1000 | 900 | 1000 | 600 | 0.90 | 0.60 | 1.50 |"));
        assert!(md.contains("qemu -M q35,kernel-irqchip=split\n"));
        assert!(
            !md.contains("iovm block"),
            "the block group did not run: {md}"
        );
        assert!(!md.contains("## Block I/O"));
        assert_eq!(
            vms.iommu_goals
                .iter()
                .map(|g| (g.goal.as_str(), g.met))
                .collect::<Vec<_>>(),
            [
                ("iommu.nvme.cost_of_strict_translation", Some(true)),
                ("iommu.nvme.iops_with_iommu", Some(true)),
            ]
        );
        assert!((vms.iommu_goals[0].ratio.unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(
            vms.iommu_translate.unwrap().cases,
            vec![("cold".to_owned(), 150.0, 149.0)]
        );
        assert!(vms.goals.is_empty(), "no CPU goal for the IOMMU runs");
    }

    #[test]
    fn test_vfio_runs_get_their_section_goals_and_host_limit_in_results() {
        use crate::bench::block::{FioResult, Job, Metric};
        use crate::bench::vfio_host::HostLimit;
        let f = Figure::Vfio(Job::RandReadQd32, Metric::Iops);
        let run = |vmm, v| Outcome {
            spec: RunSpec {
                kind: Kind::Vfio,
                vmm,
                rep: 1,
            },
            record: None,
            samples: vec![(f, v)],
            problem: None,
            warnings: Vec::new(),
        };
        let o = [run(Vmm::Iovm, 1000.0), run(Vmm::QemuQ35, 800.0)];
        let r = FioResult {
            ios: 100.0,
            values: [
                (Metric::P50Us, 50.0),
                (Metric::P99Us, 90.0),
                (Metric::Iops, 1250.0),
                (Metric::MBps, 5.0),
            ],
        };
        let h = HostLimit {
            version: Some("fio-3.33".into()),
            runs: vec![(Job::RandReadQd32, 1, Ok(r))],
        };
        let mut env = results_compat::env();
        env.io_commands = vec![(
            Kind::Vfio,
            Vmm::QemuQ35,
            "qemu -device vfio-pci,host=0000:01:00.0".into(),
        )];
        let g = Guests {
            env: &env,
            outcomes: &o,
            host_fio: None,
            translate: None,
            vfio_host: Some(&h),
        };

        let md = markdown("c", Some(g), None, &Figures::default());
        let vms = results("c", Some(g), None).vms.unwrap();

        assert!(md.contains("## Device assignment (VFIO, issue 19)"), "{md}");
        assert!(md.contains("| 4k randread QD32: IOPS | 1000 | 800 | 1250 | 1.25 | 0.80 |"));
        assert!(md.contains("qemu -device vfio-pci,host=0000:01:00.0\n"));
        assert!(!md.contains("## IOMMU"));
        let goals: Vec<_> = vms
            .vfio_goals
            .iter()
            .map(|g| (g.goal.as_str(), g.min, g.max, g.met))
            .collect();
        assert_eq!(
            goals[..2],
            [
                ("vfio.iops_over_qemu", Some(1.0), None, Some(true)),
                ("vfio.iops_over_host_limit", Some(0.9), None, Some(false)),
            ]
        );
        assert_eq!(goals[3].2, Some(0.1));
        let host = vms.vfio_host_fio.unwrap();
        assert_eq!(host.fio.as_deref(), Some("fio-3.33"));
        assert!(host
            .figures
            .iter()
            .any(|f| f.job == "randread-qd32" && f.figure == "iops" && f.samples == [1250.0]));
        assert!(vms.iommu_goals.is_empty() && vms.goals.is_empty());
    }
}
