//! What a figure shows, before any layout: rows of ratios grouped in sections, one
//! bar per series (the VMM or side compared), each ratio a cost of iovm's ÷ the
//! reference's, so that below 1 is iovm's side on every row.

use super::Group;

/// A series of bars: one comparison, in one colour, named in the legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's text, e.g. `iovm ÷ QEMU q35`.
    pub name: String,
    /// Its colour (red, green, blue).
    pub color: (u8, u8, u8),
}

/// One bar of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Index into the chart's series.
    pub series: usize,
    /// The ratio, already inverted for figures where more is better; it may be zero,
    /// negative or infinite, which the figure shows at the axis's edge.
    pub ratio: f64,
}

/// A row: one figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The figure's label (within its section).
    pub label: String,
    /// Its bars, in series order; a series without a ratio for it has none.
    pub bars: Vec<Bar>,
    /// The goal's bound on the ratio, if the figure has one.
    pub goal: Option<f64>,
}

/// Rows under a heading (none when the chart has a single, unnamed section).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The heading, e.g. `NVMe on /dev/shm`.
    pub heading: Option<String>,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// One figure: a group's rows, and what they mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The group it shows.
    pub group: Group,
    /// The title: the group and what a ratio is.
    pub title: String,
    /// The lines under the title (what the bars mean, the date).
    pub notes: Vec<String>,
    /// The series, in legend order.
    pub series: Vec<Series>,
    /// Who is better left of 1.0 and who right of it, e.g. `iovm`, `QEMU`.
    pub sides: (String, String),
    /// Its sections, in order.
    pub sections: Vec<Section>,
}

impl Chart {
    /// Every row, section by section.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.sections.iter().flat_map(|s| s.rows.iter())
    }

    /// Whether any row is of a figure drawn inverted.
    pub fn has_inverted(&self) -> bool {
        self.rows().any(|r| r.label.ends_with(INVERTED))
    }

    /// Whether any row has a goal.
    pub fn has_goals(&self) -> bool {
        self.rows().any(|r| r.goal.is_some())
    }
}

/// Appends `row` to the section headed `heading`, starting a new section when the
/// last one has another heading (rows arrive in report order, section by section).
pub fn push_row(sections: &mut Vec<Section>, heading: Option<String>, row: Row) {
    match sections.last_mut() {
        Some(s) if s.heading == heading => s.rows.push(row),
        _ => sections.push(Section {
            heading,
            rows: vec![row],
        }),
    }
}

/// What marks the label of a figure drawn inverted.
const INVERTED: &str = " (inverted)";

/// The label of a figure drawn inverted (where more is better).
pub fn inverted(label: &str) -> String {
    format!("{label}{INVERTED}")
}

/// `1 ÷ ratio` for a figure where more is better, so that below 1 stays iovm's side.
pub fn invert(ratio: f64) -> f64 {
    if ratio == 0.0 {
        f64::INFINITY
    } else {
        1.0 / ratio
    }
}
