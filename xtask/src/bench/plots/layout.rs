//! Where everything of a chart goes, in pixels: labels wrapped at word boundaries to
//! at most [`MAX_LABEL`] wide, the label column as wide as its widest line, each row
//! as tall as its bars or its label's lines, and the image as tall as its rows.
//! Text is measured by the caller's function (the real font, or a stand-in in tests).

use super::chart::Chart;

/// Image width.
pub const WIDTH: u32 = 1200;
/// Outer margin.
pub const MARGIN: i32 = 20;
/// The widest a label line may be.
pub const MAX_LABEL: u32 = 540;
/// Font sizes (px): title, notes, section headings, labels, bar values and ticks.
pub const TITLE_PX: u32 = 22;
/// Notes under the title and the legend.
pub const NOTE_PX: u32 = 15;
/// Section headings.
pub const HEADING_PX: u32 = 17;
/// Row labels.
pub const LABEL_PX: u32 = 16;
/// Bar values and axis ticks.
pub const VALUE_PX: u32 = 14;
/// Height of a bar.
pub const BAR: i32 = 20;
/// Space between the bars of a row.
pub const BAR_GAP: i32 = 3;
/// Height of a label line.
pub const LINE: i32 = 20;
/// Space between rows.
pub const ROW_GAP: i32 = 12;
/// Height of a section heading.
const HEADING: i32 = 32;
/// Height of a line of the title.
pub const TITLE_LINE: i32 = 30;
/// Height of a line of notes.
pub const NOTE_LINE: i32 = 20;
/// Height of the legend and of the "better" line above the bars.
pub const KEY_LINE: i32 = 28;
/// Space between the labels and the bars.
const GUTTER: i32 = 16;
/// Room for a bar's value beyond either end of the axis.
pub const VALUE_ROOM: i32 = 64;
/// The axis's ticks and caption under the bars.
const FOOTER: i32 = 56;

/// Measures text: its width in pixels at a size.
pub trait Measure: Fn(&str, u32) -> u32 {}
impl<F: Fn(&str, u32) -> u32> Measure for F {}

/// A placed row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBox {
    /// The label's lines.
    pub lines: Vec<String>,
    /// Its top.
    pub top: i32,
    /// Its height, the gap below it included.
    pub height: i32,
}

/// A placed section heading.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadingBox {
    /// Its text.
    pub text: String,
    /// Its top.
    pub top: i32,
}

/// The whole chart's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Image height.
    pub height: u32,
    /// The title's lines and their top.
    pub title: (Vec<String>, i32),
    /// The notes' lines and their top.
    pub notes: (Vec<String>, i32),
    /// The legend's top.
    pub legend: i32,
    /// The "better" line's top.
    pub sides: i32,
    /// Where label lines end (they are right-aligned to it).
    pub label_right: i32,
    /// Width of the label column.
    pub label_width: u32,
    /// The axis's left and right ends.
    pub axis: (i32, i32),
    /// Top and bottom of the bars' area.
    pub plot: (i32, i32),
    /// Every section heading.
    pub headings: Vec<HeadingBox>,
    /// Every row, in [`Chart::rows`] order.
    pub rows: Vec<RowBox>,
}

/// `text` broken at spaces into lines at most `max` wide (a word wider than that is
/// broken between characters).
pub fn wrap(text: &str, size: u32, max: u32, measure: &impl Measure) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let joined = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if measure(&joined, size) <= max {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            let longer = format!("{line}{c}");
            if !line.is_empty() && measure(&longer, size) > max {
                lines.push(std::mem::replace(&mut line, c.to_string()));
            } else {
                line = longer;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

impl Layout {
    /// Lays `chart` out, measuring text with `measure`.
    pub fn new(chart: &Chart, measure: &impl Measure) -> Layout {
        let inner = WIDTH - 2 * MARGIN as u32;
        let mut y = MARGIN;
        let title = wrap(&chart.title, TITLE_PX, inner, measure);
        let title_top = y;
        y += TITLE_LINE * title.len() as i32;
        let notes: Vec<String> = chart
            .notes
            .iter()
            .flat_map(|n| wrap(n, NOTE_PX, inner, measure))
            .collect();
        let notes_top = y;
        y += NOTE_LINE * notes.len() as i32 + 6;
        let legend = y;
        y += KEY_LINE;
        let sides = y;
        y += KEY_LINE;
        let plot_top = y;

        let labels: Vec<Vec<String>> = chart
            .rows()
            .map(|r| wrap(&r.label, LABEL_PX, MAX_LABEL, measure))
            .collect();
        let label_width = labels
            .iter()
            .flatten()
            .map(|l| measure(l, LABEL_PX))
            .max()
            .unwrap_or(0);
        let label_right = MARGIN + label_width as i32;
        let axis = (
            label_right + GUTTER + VALUE_ROOM,
            WIDTH as i32 - MARGIN - VALUE_ROOM,
        );

        let mut headings = Vec::new();
        let mut rows = Vec::new();
        let mut lines = labels.into_iter();
        for section in &chart.sections {
            if let Some(h) = &section.heading {
                headings.push(HeadingBox {
                    text: h.clone(),
                    top: y,
                });
                y += HEADING;
            }
            for row in &section.rows {
                let lines = lines.next().unwrap_or_default();
                let n = row.bars.len().max(1) as i32;
                let bars = n * BAR + (n - 1) * BAR_GAP;
                let height = bars.max(LINE * lines.len() as i32) + ROW_GAP;
                rows.push(RowBox {
                    lines,
                    top: y,
                    height,
                });
                y += height;
            }
        }
        let plot = (plot_top, y);
        Layout {
            height: (y + FOOTER + MARGIN) as u32,
            title: (title, title_top),
            notes: (notes, notes_top),
            legend,
            sides,
            label_right,
            label_width,
            axis,
            plot,
            headings,
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plots::chart::{Bar, Row, Section};
    use crate::bench::plots::Group;

    /// A stand-in font: every character half the size wide.
    fn measure(text: &str, size: u32) -> u32 {
        text.chars().count() as u32 * size / 2
    }

    fn row(label: &str, bars: usize) -> Row {
        Row {
            label: label.into(),
            bars: (0..bars).map(|series| Bar { series, ratio: 0.5 }).collect(),
            goal: None,
        }
    }

    fn chart(sections: Vec<Section>) -> Chart {
        Chart {
            group: Group::Block,
            title: "t".into(),
            notes: vec!["n".into()],
            series: Vec::new(),
            sides: ("iovm".into(), "QEMU".into()),
            sections,
        }
    }

    #[test]
    fn test_wrap_breaks_at_spaces_and_inside_long_words() {
        assert_eq!(wrap("aa bb cc", 2, 5, &measure), vec!["aa bb", "cc"]);
        assert_eq!(wrap("abcdefg", 2, 3, &measure), vec!["abc", "def", "g"]);
        assert_eq!(wrap("", 2, 3, &measure), vec![""]);
    }

    #[test]
    fn test_label_column_fits_the_widest_line_and_long_labels_wrap() {
        let long = "word ".repeat(40);
        let c = chart(vec![Section {
            heading: None,
            rows: vec![row("short", 1), row(long.trim(), 2)],
        }]);

        let l = Layout::new(&c, &measure);

        assert!(l.rows[1].lines.len() > 1, "{:?}", l.rows[1].lines);
        assert_eq!(l.rows[1].lines.join(" "), long.trim(), "nothing is lost");
        for line in l.rows.iter().flat_map(|r| &r.lines) {
            assert!(measure(line, LABEL_PX) <= l.label_width, "{line}");
        }
        assert!(l.label_width <= MAX_LABEL);
        assert!(l.axis.0 > l.label_right && l.axis.1 < WIDTH as i32);
    }

    #[test]
    fn test_height_grows_with_rows_and_headings() {
        let one = |heading: Option<&str>, n: usize| Section {
            heading: heading.map(str::to_owned),
            rows: (0..n).map(|i| row(&format!("r{i}"), 1)).collect(),
        };
        let small = Layout::new(&chart(vec![one(None, 2)]), &measure);
        let big = Layout::new(&chart(vec![one(Some("a"), 2), one(Some("b"), 3)]), &measure);

        assert_eq!(big.rows.len(), 5);
        assert_eq!(big.headings.len(), 2);
        let per_row = small.rows[0].height;
        assert_eq!(
            big.height - small.height,
            (3 * per_row + 2 * HEADING) as u32
        );
        assert_eq!(big.plot.1, big.rows[4].top + big.rows[4].height);
    }
}
