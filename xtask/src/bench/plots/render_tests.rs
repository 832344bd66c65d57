//! Rendering checks: the charts of whole results files drawn into PNGs in a temporary
//! directory, each group with ratios giving a figure whose image is as tall as its
//! layout, with every label line inside the label column, in the real font.
//!
//! To look at the figures of a real run: `IOVM_PLOTS_FROM=target/bench/results.json
//! IOVM_PLOTS_TO=/tmp/plots cargo test -p xtask -- --ignored test_render_a_results_file`.

use std::path::{Path, PathBuf};

use super::layout::{Layout, LABEL_PX, MARGIN};
use super::{charts, font, write_all, Group};
use crate::bench::boot::Figure;
use crate::bench::report::{self, Guests};
use crate::bench::results::{ResultsFile, VmRatio};
use crate::bench::results_compat;
use crate::bench::vmm::Vmm;

const HAND_WRITTEN: &str = include_str!("../../../testdata/results-hand-written.json");
const DEVICE_ONLY: &str = include_str!("../../../testdata/results-device-only-hand-written.json");

/// A results file with a ratio to QEMU q35 for every figure of every storage, to
/// QEMU microvm for the boot and memory figures, values spread over the scale and off
/// it (zero, negative, huge), and the device path of the hand-written file.
fn everything() -> ResultsFile {
    let env = results_compat::env();
    let g = Guests {
        env: &env,
        outcomes: &[],
        host_fio: None,
        translate: None,
        vfio_host: None,
    };
    let mut file = report::results("c", Some(g), None);
    let vms = file.vms.as_mut().unwrap();
    let spread = [0.3, 0.55, 0.9, 1.0, 1.3, 2.4, 7.5, 0.0, -0.4, 250.0];
    vms.ratios = Figure::all()
        .into_iter()
        .enumerate()
        .flat_map(|(i, f)| {
            let peers: &[Vmm] = if Figure::VM.contains(&f) {
                &[Vmm::QemuQ35, Vmm::QemuMicrovm]
            } else {
                &[Vmm::QemuQ35]
            };
            peers.iter().enumerate().map(move |(j, p)| VmRatio {
                figure: f.id(),
                of: "iovm".into(),
                to: p.id().into(),
                ratio_of_medians: spread[(i + j) % spread.len()],
            })
        })
        .collect();
    let dev: ResultsFile = serde_json::from_str(DEVICE_ONLY).unwrap();
    file.device_path = dev.device_path;
    file
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iovm-plots-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PNG's width and height, from its header.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Draws every chart of `file` into `dir` and checks each image against its layout.
fn render_and_check(file: &ResultsFile, dir: &Path, suffix: &str) -> Vec<Group> {
    let figures = write_all(dir, suffix, file).unwrap();
    let charts = charts(file);
    assert_eq!(figures.0.len(), charts.len());
    for (chart, (group, name)) in charts.iter().zip(&figures.0) {
        assert_eq!(chart.group, *group);
        assert!(
            chart.title.contains("below 1 is iovm better"),
            "the title says which side is better: {}",
            chart.title
        );
        assert_eq!(name, &group.file_name(suffix));
        let layout = Layout::new(chart, &font::width);
        assert_eq!(layout.rows.len(), chart.rows().count(), "{name}");
        assert_eq!(
            png_size(&dir.join(name)),
            (super::layout::WIDTH, layout.height),
            "{name}"
        );
        assert!(layout.label_right - layout.label_width as i32 >= MARGIN);
        for line in layout.rows.iter().flat_map(|r| &r.lines) {
            assert!(
                font::width(line, LABEL_PX) <= layout.label_width,
                "{name}: `{line}` is wider than the label column"
            );
        }
        for (row, b) in chart.rows().zip(&layout.rows) {
            assert_eq!(b.lines.join(" "), row.label, "{name}: a label lost words");
        }
    }
    figures.0.iter().map(|(g, _)| *g).collect()
}

#[test]
fn test_every_group_with_ratios_gets_a_figure_that_fits_its_labels() {
    font::load().unwrap();
    let dir = temp_dir("all");

    let groups = render_and_check(&everything(), &dir, "-test");
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(groups, Group::ALL.to_vec());
}

#[test]
fn test_hand_written_files_give_the_groups_they_have() {
    font::load().unwrap();
    let dir = temp_dir("hand");
    let full: ResultsFile = serde_json::from_str(HAND_WRITTEN).unwrap();
    let device: ResultsFile = serde_json::from_str(DEVICE_ONLY).unwrap();

    let from_full = render_and_check(&full, &dir, "");
    let from_device = render_and_check(&device, &dir, "-quick");
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(from_full, vec![Group::BootMemory, Group::DevicePath]);
    assert_eq!(from_device, vec![Group::DevicePath]);
}

#[test]
fn test_no_ratios_no_figures() {
    let mut file: ResultsFile = serde_json::from_str(HAND_WRITTEN).unwrap();
    file.device_path = None;
    file.vms.as_mut().unwrap().ratios.clear();

    assert!(charts(&file).is_empty());
}

/// Draws the figures of a real results file for a reader to look at (see the top).
#[test]
#[ignore]
fn test_render_a_results_file() {
    let from = std::env::var("IOVM_PLOTS_FROM").map_or_else(
        |_| crate::paths::target().join("bench/results.json"),
        PathBuf::from,
    );
    let to = std::env::var("IOVM_PLOTS_TO").map_or_else(|_| temp_dir("look"), PathBuf::from);
    std::fs::create_dir_all(&to).unwrap();
    let text = std::fs::read_to_string(&from).unwrap();
    let file: ResultsFile = serde_json::from_str(&text).unwrap();

    let groups = render_and_check(&file, &to, "");
    render_and_check(&everything(), &to, "-everything");

    println!("{groups:?} in {}", to.display());
}
