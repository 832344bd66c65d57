//! `docs/bench/ratios.png`: every figure of the report as a ratio to QEMU
//! q35's median (1.0 = the same; below 1: less time, memory, exits or CPU than q35, or
//! for throughput, inverted, more), one bar per VMM, so one picture shows where iovm
//! stands; a red mark on the rows with a goal ([`super::goals`]) shows its bound.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::boot::{summary, Figure, Outcome};
use super::goals;
use super::vmm::Vmm;

/// Where the labels' font comes from (Debian's `fonts-dejavu-core`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const COLORS: [RGBColor; 2] = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xaa, 0xaa, 0xaa)];

/// A row of the chart.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    /// The figure's label.
    label: String,
    /// Each VMM's median as a ratio to q35's.
    bars: Vec<(Vmm, f64)>,
    /// The goal's bound on iovm's ratio, if the figure has a goal.
    goal: Option<f64>,
}

/// A row for every figure q35 has. A figure where more is better (IOPS, MB/s) is drawn
/// inverted, q35's median ÷ the VMM's, so that below 1 means "better than q35" on every
/// row.
fn rows(outcomes: &[Outcome]) -> Vec<Row> {
    Figure::all()
        .into_iter()
        .filter(|f| f.on_chart())
        .filter_map(|f| {
            let base = summary(outcomes, f, Vmm::QemuQ35)?.median;
            if base <= 0.0 {
                return None;
            }
            let bars: Vec<(Vmm, f64)> = [Vmm::Iovm, Vmm::QemuMicrovm]
                .iter()
                .filter_map(|&v| {
                    let m = summary(outcomes, f, v)?.median;
                    let r = if f.higher_is_better() {
                        base / m
                    } else {
                        m / base
                    };
                    (m > 0.0).then_some((v, r))
                })
                .collect();
            let label = if f.higher_is_better() {
                format!("{} (inverted)", f.label())
            } else {
                f.label()
            };
            (!bars.is_empty()).then(|| Row {
                label,
                bars,
                goal: goals::bound(f),
            })
        })
        .collect()
}

fn load_font() -> Result<()> {
    let bytes = std::fs::read(FONT).with_context(|| {
        format!("reading the plot font {FONT} (apt-get install fonts-dejavu-core)")
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT} is not a usable font"))
}

/// Draws the ratio chart into `path`.
pub fn ratios_png(path: &Path, outcomes: &[Outcome], title: &str) -> Result<()> {
    let rows = rows(outcomes);
    if rows.is_empty() {
        return Ok(());
    }
    load_font()?;
    let bar = 18u32;
    let height = 90 + rows.len() as u32 * (2 * bar + 14);
    let root = BitMapBackend::new(path, (1000, height)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let max = rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|(_, r)| *r))
        .fold(1.0f64, f64::max)
        * 1.35;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(330)
        .build_cartesian_2d(0.0..max, 0.0..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = (n as f64 - y - 0.5).round();
            if (y.fract() - 0.5).abs() < 0.01 && i >= 0.0 {
                rows.get(i as usize)
                    .map_or(String::new(), |r| r.label.clone())
            } else {
                String::new()
            }
        })
        .x_desc("ratio to QEMU q35's median (lower is better; throughput inverted; red: a goal)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, row) in rows.iter().enumerate() {
        let top = n as f64 - i as f64 - 0.1;
        let step = 0.8 / row.bars.len() as f64;
        if let Some(goal) = row.goal {
            chart
                .draw_series(LineSeries::new(
                    [(goal, top - 0.8), (goal, top)],
                    RED.stroke_width(3),
                ))
                .map_err(err)?;
        }
        for (j, (vmm, ratio)) in row.bars.iter().enumerate() {
            let color = COLORS[usize::from(*vmm != Vmm::Iovm)];
            let y0 = top - step * (j as f64 + 1.0);
            let y1 = top - step * j as f64 - 0.04;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y0), (*ratio, y1)],
                    color.filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{ratio:.2} {}", vmm.label()),
                    (*ratio + max * 0.01, y1 - step * 0.15),
                    ("sans-serif", 13),
                )))
                .map_err(err)?;
        }
    }
    chart
        .draw_series(LineSeries::new(
            [(1.0, 0.0), (1.0, n as f64)],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::net;
    use crate::bench::plan::{Kind, RunSpec};
    use crate::bench::vmm_cpu::{CpuFigure, ThreadKind};

    fn outcome(vmm: Vmm, samples: Vec<(Figure, f64)>) -> Outcome {
        Outcome {
            spec: RunSpec {
                kind: Kind::Boot,
                vmm,
                rep: 1,
            },
            record: None,
            samples,
            problem: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn test_rows_are_ratios_to_q35_for_figures_q35_has() {
        let o = vec![
            outcome(
                Vmm::Iovm,
                vec![(Figure::ToMarker, 80.0), (Figure::FirstInstruction, 5.0)],
            ),
            outcome(Vmm::QemuQ35, vec![(Figure::ToMarker, 100.0)]),
            outcome(Vmm::QemuMicrovm, vec![(Figure::ToMarker, 90.0)]),
        ];

        let r = rows(&o);

        assert_eq!(r.len(), 1, "only figures q35 has: {r:?}");
        assert_eq!(r[0].bars, vec![(Vmm::Iovm, 0.8), (Vmm::QemuMicrovm, 0.9)]);
        assert_eq!(r[0].goal, None);
    }

    #[test]
    fn test_vmm_cpu_row_carries_its_goal_and_the_split_stays_off() {
        let cpu = |c| Figure::Net(net::Metric::Cpu(c));
        let samples = |k: f64| {
            vec![
                (cpu(CpuFigure::Outside), 4.0 * k),
                (cpu(CpuFigure::Kind(ThreadKind::Vcpu)), k),
                (cpu(CpuFigure::Guest), 2.0 * k),
            ]
        };
        let o = vec![
            outcome(Vmm::Iovm, samples(1.0)),
            outcome(Vmm::QemuQ35, samples(2.0)),
        ];

        let r = rows(&o);

        assert_eq!(r.len(), 1, "the total only: {r:?}");
        assert_eq!(r[0].label, cpu(CpuFigure::Outside).label());
        assert_eq!(
            (r[0].bars.clone(), r[0].goal),
            (vec![(Vmm::Iovm, 0.5)], Some(0.5))
        );
    }

    #[test]
    fn test_chart_is_a_png() {
        let net_cpu = Figure::Net(net::Metric::Cpu(CpuFigure::Outside));
        let o = vec![
            outcome(
                Vmm::Iovm,
                vec![
                    (Figure::ToMarker, 80.0),
                    (Figure::Rss, 200.0),
                    (net_cpu, 3.0),
                ],
            ),
            outcome(
                Vmm::QemuQ35,
                vec![
                    (Figure::ToMarker, 100.0),
                    (Figure::Rss, 300.0),
                    (net_cpu, 10.0),
                ],
            ),
        ];
        let path = std::env::temp_dir().join(format!("iovm-plot-{}.png", std::process::id()));

        ratios_png(&path, &o, "test").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);

        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 2000, "{} bytes", bytes.len());
    }
}
