//! The charts of the groups that boot guests, from results.json's ratios: iovm's
//! median ÷ each QEMU machine's, a bar per machine, the figures sorted into groups
//! and sections as the report has them.

use super::chart::{invert, inverted, push_row, Bar, Chart, Row, Section, Series};
use super::Group;
use crate::bench::block;
use crate::bench::boot::Figure;
use crate::bench::goals;
use crate::bench::net;
use crate::bench::results::VmSection;
use crate::bench::vmm::Vmm;

/// The machines iovm is compared with, in legend order, and their bars' colours.
const PEERS: [(Vmm, (u8, u8, u8)); 2] = [
    (Vmm::QemuQ35, (0x1f, 0x77, 0xb4)),
    (Vmm::QemuMicrovm, (0xff, 0x7f, 0x0e)),
];

/// Where a figure goes: its group, its section's heading and its row's label; `None`
/// for figures no chart shows (the breakdowns of exits by kind and of CPU by thread).
fn place(f: Figure) -> Option<(Group, Option<String>, String)> {
    if !f.on_chart() {
        return None;
    }
    let label = f.label();
    let placed = match f {
        Figure::ToMarker
        | Figure::ToExit
        | Figure::PvhToMarker
        | Figure::PvhIovmMarker
        | Figure::FirstInstruction
        | Figure::IovmMarker
        | Figure::Console => (Group::BootMemory, Some("Boot".into()), label),
        Figure::Rss | Figure::Pss | Figure::AnonHuge => {
            (Group::BootMemory, Some("Memory".into()), label)
        }
        Figure::PioWrite
        | Figure::Cf8Read
        | Figure::EcamRead
        | Figure::EcamWrite
        | Figure::KernelCf8Read
        | Figure::KernelEcamRead
        | Figure::VirtioNotify => (Group::Exits, None, label),
        Figure::Block(d, st, j, block::Metric::Cpu(_)) => (
            Group::VmmCpu,
            Some(format!("{} on {}, µs per I/O", d.label(), st.label())),
            j.label().to_owned(),
        ),
        Figure::Block(d, st, j, m) => (
            Group::Block,
            Some(format!("{} on {}", d.label(), st.label())),
            block::label(j, m),
        ),
        Figure::Net(net::Metric::Cpu(_)) => (
            Group::VmmCpu,
            Some("virtio-net, ms per MiB sent".into()),
            "TCP guest → peer".into(),
        ),
        Figure::Net(_) => (Group::Network, None, label),
        Figure::Iommu(..) | Figure::Vfio(..) | Figure::E1000e(_) => return None,
    };
    Some(placed)
}

/// The row of `f`, if results.json has a ratio of it to a peer.
fn row(vms: &VmSection, f: Figure, label: String) -> Option<Row> {
    let id = f.id();
    let bars: Vec<Bar> = PEERS
        .iter()
        .enumerate()
        .filter_map(|(series, (peer, _))| {
            let r = vms
                .ratios
                .iter()
                .find(|r| r.figure == id && r.of == Vmm::Iovm.id() && r.to == peer.id())?;
            let ratio = if f.higher_is_better() {
                invert(r.ratio_of_medians)
            } else {
                r.ratio_of_medians
            };
            Some(Bar { series, ratio })
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    let label = if f.higher_is_better() {
        inverted(&label)
    } else {
        label
    };
    // The goals are on the ratio to QEMU q35, the first series.
    let goal = goals::bound(f).filter(|_| bars.iter().any(|b| b.series == 0));
    Some(Row { label, bars, goal })
}

/// The charts of the groups with rows, in report order.
pub fn charts(vms: &VmSection, date: &str) -> Vec<Chart> {
    let mut by_group: Vec<(Group, Vec<Section>)> = Vec::new();
    for f in Figure::all() {
        let Some((group, heading, label)) = place(f) else {
            continue;
        };
        let Some(row) = row(vms, f, label) else {
            continue;
        };
        let at = match by_group.iter().position(|(g, _)| *g == group) {
            Some(i) => i,
            None => {
                by_group.push((group, Vec::new()));
                by_group.len() - 1
            }
        };
        push_row(&mut by_group[at].1, heading, row);
    }
    by_group.sort_by_key(|(g, _)| Group::ALL.iter().position(|x| x == g));
    let series: Vec<Series> = PEERS
        .iter()
        .map(|(v, color)| Series {
            name: format!("iovm ÷ {}", v.label()),
            color: *color,
        })
        .collect();
    by_group
        .into_iter()
        .map(|(group, sections)| {
            let mut chart = Chart {
                group,
                title: format!("{}: iovm ÷ QEMU, below 1 is iovm better", group.name()),
                notes: Vec::new(),
                series: series.clone(),
                sides: ("iovm".into(), "QEMU".into()),
                sections,
            };
            let mut note =
                "Each bar: iovm's median ÷ the QEMU machine's, from 1.0 (log scale).".to_owned();
            if chart.has_inverted() {
                note.push_str(
                    " Rows marked (inverted) are throughput, shown as QEMU ÷ iovm, so that \
                     left of 1.0 is iovm better on every row.",
                );
            }
            note.push_str(&format!(" {date}."));
            chart.notes = vec![note];
            chart
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::block::{Disk, Job, Storage};
    use crate::bench::report::{self, Guests};
    use crate::bench::results::VmRatio;
    use crate::bench::results_compat;
    use crate::bench::vmm_cpu::CpuFigure;

    fn section(ratios: Vec<(Figure, Vmm, f64)>) -> VmSection {
        let env = results_compat::env();
        let g = Guests {
            env: &env,
            outcomes: &[],
            host_fio: None,
            translate: None,
            vfio_host: None,
        };
        let mut vms = report::results("c", Some(g), None).vms.unwrap();
        vms.ratios = ratios
            .into_iter()
            .map(|(f, v, r)| VmRatio {
                figure: f.id(),
                of: "iovm".into(),
                to: v.id().into(),
                ratio_of_medians: r,
            })
            .collect();
        vms
    }

    #[test]
    fn test_figures_go_to_their_groups_and_sections() {
        let cpu = Figure::Block(
            Disk::Nvme,
            Storage::Shm,
            Job::RandReadQd1,
            block::Metric::Cpu(CpuFigure::Outside),
        );
        let split = Figure::Block(
            Disk::Nvme,
            Storage::Shm,
            Job::RandReadQd1,
            block::Metric::Cpu(CpuFigure::Guest),
        );
        let vms = section(vec![
            (Figure::Rss, Vmm::QemuQ35, 0.5),
            (Figure::ToMarker, Vmm::QemuMicrovm, 0.8),
            (Figure::PioWrite, Vmm::QemuQ35, 1.5),
            (cpu, Vmm::QemuQ35, 0.4),
            (split, Vmm::QemuQ35, 0.4),
            (Figure::Net(net::Metric::MBps), Vmm::QemuQ35, 0.5),
        ]);

        let c = charts(&vms, "today");

        let groups: Vec<Group> = c.iter().map(|c| c.group).collect();
        assert_eq!(
            groups,
            vec![
                Group::BootMemory,
                Group::Exits,
                Group::Network,
                Group::VmmCpu
            ]
        );
        let headings: Vec<_> = c[0].sections.iter().map(|s| s.heading.clone()).collect();
        assert_eq!(headings, vec![Some("Boot".into()), Some("Memory".into())]);
        assert_eq!(
            c[0].sections[0].rows[0].bars,
            vec![Bar {
                series: 1,
                ratio: 0.8
            }]
        );
        let net = &c[2].sections[0].rows[0];
        assert_eq!(net.label, "TCP guest → peer (MB/s) (inverted)");
        assert_eq!(
            net.bars,
            vec![Bar {
                series: 0,
                ratio: 2.0
            }]
        );
        let cpu_row = &c[3].sections[0].rows;
        assert_eq!(
            cpu_row.len(),
            1,
            "the split by thread stays off: {cpu_row:?}"
        );
        assert_eq!(cpu_row[0].goal, Some(0.5));
    }

    #[test]
    fn test_goal_only_with_a_ratio_to_q35() {
        let f = Figure::Net(net::Metric::Cpu(CpuFigure::Outside));
        let vms = section(vec![(f, Vmm::QemuMicrovm, 0.4)]);

        let c = charts(&vms, "today");

        assert_eq!(c[0].sections[0].rows[0].goal, None);
    }
}
