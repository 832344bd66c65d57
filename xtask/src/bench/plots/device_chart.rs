//! The device-path chart, from results.json's ratios: each iovm device path's median
//! ÷ the host fio's on the same file, pattern and CPU, a bar per device.

use super::chart::{invert, inverted, push_row, Bar, Chart, Row, Section, Series};
use super::Group;
use crate::bench::device::{Metric, Side};
use crate::bench::results::DevicePathSection;

/// The device paths, in legend order, and their bars' colours.
const SIDES: [(Side, (u8, u8, u8)); 2] = [
    (Side::Nvme, (0x2c, 0xa0, 0x2c)),
    (Side::VirtioBlk, (0x94, 0x67, 0xbd)),
];

/// The chart, if results.json has a ratio.
pub fn chart(dev: &DevicePathSection, date: &str) -> Option<Chart> {
    let mut sections: Vec<Section> = Vec::new();
    let mut done: Vec<(&str, &str, &str)> = Vec::new();
    for r in &dev.ratios {
        let key = (r.file.as_str(), r.pattern.as_str(), r.figure.as_str());
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        let Some(metric) = Metric::ALL.into_iter().find(|m| m.id() == r.figure) else {
            continue;
        };
        let more_is_better = metric == Metric::Iops;
        let bars: Vec<Bar> = SIDES
            .iter()
            .enumerate()
            .filter_map(|(series, (side, _))| {
                let ratio = dev
                    .ratios
                    .iter()
                    .find(|x| {
                        (x.file.as_str(), x.pattern.as_str(), x.figure.as_str()) == key
                            && x.side == side.id()
                    })?
                    .iovm_over_host?;
                let ratio = if more_is_better { invert(ratio) } else { ratio };
                Some(Bar { series, ratio })
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let label = if more_is_better {
            inverted(metric.label())
        } else {
            metric.label().to_owned()
        };
        let file = dev
            .files
            .get(&r.file)
            .map_or(r.file.as_str(), String::as_str);
        let heading = format!("{file}, 4 KiB {}", r.pattern);
        push_row(
            &mut sections,
            Some(heading),
            Row {
                label,
                bars,
                goal: None,
            },
        );
    }
    (!sections.is_empty()).then(|| Chart {
        group: Group::DevicePath,
        title: format!(
            "{}: iovm ÷ host fio on one CPU, below 1 is iovm better",
            Group::DevicePath.name()
        ),
        notes: vec![format!(
            "Each bar: an iovm device path's median ÷ the host's own fio (io_uring, depth \
             {}) on the same file, from 1.0 (log scale). IOPS (inverted) is shown as host ÷ \
             iovm, so left of 1.0 is iovm better on every row. {date}.",
            dev.depth
        )],
        series: SIDES
            .iter()
            .map(|(s, color)| Series {
                name: format!("iovm {} ÷ host fio", s.label()),
                color: *color,
            })
            .collect(),
        sides: ("iovm".into(), "host fio".into()),
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::ResultsFile;

    const DEVICE_ONLY: &str =
        include_str!("../../../testdata/results-device-only-hand-written.json");

    #[test]
    fn test_rows_by_file_and_pattern_with_iops_inverted() {
        let file: ResultsFile = serde_json::from_str(DEVICE_ONLY).unwrap();
        let dev = file.device_path.unwrap();

        let c = chart(&dev, "today").unwrap();

        assert_eq!(c.sections.len(), 4, "two files × two patterns");
        assert_eq!(c.sections[0].rows.len(), Metric::ALL.len());
        let iops = &c.sections[0].rows[0];
        assert_eq!(iops.label, "IOPS (inverted)");
        let want = dev
            .ratios
            .iter()
            .find(|r| r.figure == "iops" && r.side == "iovm-nvme")
            .and_then(|r| r.iovm_over_host)
            .unwrap();
        assert_eq!(
            iops.bars[0],
            Bar {
                series: 0,
                ratio: 1.0 / want
            }
        );
    }
}
