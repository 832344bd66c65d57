//! Draws a laid-out chart into a PNG: the bars run from the line at 1.0 towards the
//! ratio, iovm's side tinted green and labelled on the left, the reference's tinted
//! red on the right, goals as red marks across their rows.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::chart::{Chart, Row};
use super::font::{self, FAMILY};
use super::layout::{
    Layout, RowBox, BAR, BAR_GAP, HEADING_PX, KEY_LINE, LABEL_PX, LINE, MARGIN, NOTE_LINE, NOTE_PX,
    ROW_GAP, TITLE_LINE, TITLE_PX, VALUE_PX, WIDTH,
};
use super::scale::{tick_label, LogScale};

/// "iovm better", and its side's tint.
const BETTER: RGBColor = RGBColor(0x1a, 0x7f, 0x37);
const BETTER_TINT: RGBColor = RGBColor(0xed, 0xf7, 0xee);
/// "<reference> better", and its side's tint.
const WORSE: RGBColor = RGBColor(0xb3, 0x26, 0x1e);
const WORSE_TINT: RGBColor = RGBColor(0xfb, 0xef, 0xee);
/// Tick lines and the rules above section headings.
const GRID: RGBColor = RGBColor(0xd0, 0xd0, 0xd0);
/// The notes under the title and the axis's caption.
const NOTE: RGBColor = RGBColor(0x44, 0x44, 0x44);
/// The goals' marks.
const GOAL: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// What the drawing steps give: nothing, or the backend's error.
type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A text style of the charts' font, anchored at `h`, `v`.
fn text(size: u32, bold: bool, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    let style = if bold {
        FontStyle::Bold
    } else {
        FontStyle::Normal
    };
    (FAMILY, f64::from(size), style)
        .into_font()
        .color(&color)
        .pos(Pos::new(h, v))
}

/// A bar's value as written beside it: two decimals below 10, one below 100, none
/// from there.
fn value(ratio: f64) -> String {
    let text = if ratio.is_infinite() {
        "∞".to_owned()
    } else if ratio.abs() >= 100.0 {
        format!("{ratio:.0}")
    } else if ratio.abs() >= 10.0 {
        format!("{ratio:.1}")
    } else {
        format!("{ratio:.2}")
    };
    text.replace('-', "−")
}

/// Draws `chart` laid out as `layout` into `path`.
pub fn png(path: &Path, chart: &Chart, layout: &Layout) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, layout.height)).into_drawing_area();
    draw(&root, chart, layout).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// The tinted sides, the "better" marks, the ticks, the headings, the rows and the
/// line at 1.0.
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart, l: &Layout) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let scale = LogScale::fit(
        chart
            .rows()
            .flat_map(|r| r.bars.iter().map(|b| b.ratio).chain(r.goal)),
        l.axis.0,
        l.axis.1,
    );
    header(root, chart, l)?;
    let one = scale.x(1.0);
    let (top, bottom) = l.plot;
    root.draw(&Rectangle::new(
        [(scale.x0, top), (one, bottom)],
        BETTER_TINT.filled(),
    ))?;
    root.draw(&Rectangle::new(
        [(one, top), (scale.x1, bottom)],
        WORSE_TINT.filled(),
    ))?;
    root.draw(&Text::new(
        format!("← {} better", chart.sides.0),
        (one - 10, l.sides + KEY_LINE / 2),
        text(LABEL_PX, true, BETTER, HPos::Right, VPos::Center),
    ))?;
    root.draw(&Text::new(
        format!("{} better →", chart.sides.1),
        (one + 10, l.sides + KEY_LINE / 2),
        text(LABEL_PX, true, WORSE, HPos::Left, VPos::Center),
    ))?;
    for t in scale.ticks() {
        let x = scale.x(t);
        root.draw(&PathElement::new(vec![(x, top), (x, bottom)], GRID))?;
        root.draw(&Text::new(
            tick_label(t),
            (x, bottom + 6),
            text(VALUE_PX, false, BLACK, HPos::Center, VPos::Top),
        ))?;
    }
    root.draw(&Text::new(
        "ratio of medians, log scale; the black line is 1.0 (the same)",
        ((scale.x0 + scale.x1) / 2, bottom + 28),
        text(VALUE_PX, false, NOTE, HPos::Center, VPos::Top),
    ))?;
    for h in &l.headings {
        root.draw(&PathElement::new(
            vec![(MARGIN, h.top + 2), (WIDTH as i32 - MARGIN, h.top + 2)],
            GRID,
        ))?;
        root.draw(&Text::new(
            h.text.clone(),
            (MARGIN, h.top + 8),
            text(HEADING_PX, true, BLACK, HPos::Left, VPos::Top),
        ))?;
    }
    for (row, b) in chart.rows().zip(&l.rows) {
        draw_row(root, chart, row, b, l.label_right, &scale)?;
    }
    root.draw(&PathElement::new(
        vec![(one, top), (one, bottom)],
        BLACK.stroke_width(2),
    ))?;
    Ok(())
}

/// One row: its label's lines, its bars from 1.0 with their values, its goal.
fn draw_row<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    row: &Row,
    b: &RowBox,
    label_right: i32,
    scale: &LogScale,
) -> Drawn<DB> {
    let one = scale.x(1.0);
    let mid = b.top + (b.height - ROW_GAP) / 2;
    let n = b.lines.len() as i32;
    for (i, line) in b.lines.iter().enumerate() {
        root.draw(&Text::new(
            line.clone(),
            (label_right, mid - (n - 1) * LINE / 2 + i as i32 * LINE),
            text(LABEL_PX, false, BLACK, HPos::Right, VPos::Center),
        ))?;
    }
    let k = row.bars.len() as i32;
    let bars_height = k * BAR + (k - 1) * BAR_GAP;
    let bars_top = mid - bars_height / 2;
    let mut ends = Vec::new();
    for (i, bar) in row.bars.iter().enumerate() {
        let y0 = bars_top + i as i32 * (BAR + BAR_GAP);
        // A ratio of about 1 still shows a sliver of its colour.
        let x = match scale.x(bar.ratio) {
            x if (x - one).abs() >= 3 => x,
            _ if bar.ratio < 1.0 => one - 3,
            _ => one + 3,
        };
        let (r, g, bl) = chart.series[bar.series].color;
        root.draw(&Rectangle::new(
            [(one.min(x), y0), (one.max(x), y0 + BAR)],
            RGBColor(r, g, bl).filled(),
        ))?;
        ends.push((x, y0 + BAR / 2, value(bar.ratio)));
    }
    if let Some(goal) = row.goal {
        let x = scale.x(goal);
        root.draw(&Rectangle::new(
            [(x - 2, bars_top - 4), (x + 2, bars_top + bars_height + 4)],
            GOAL.filled(),
        ))?;
    }
    for (x, y, v) in ends {
        let w = font::width(&v, VALUE_PX) as i32;
        let (left, h) = if x < one {
            (x - 5 - w, HPos::Right)
        } else {
            (x + 5, HPos::Left)
        };
        if row.goal.is_some() {
            // Over the goal's mark, the value stays readable.
            root.draw(&Rectangle::new(
                [(left - 2, y - BAR / 2 + 1), (left + w + 2, y + BAR / 2 - 1)],
                WHITE.filled(),
            ))?;
        }
        let at = if x < one { x - 5 } else { x + 5 };
        root.draw(&Text::new(
            v,
            (at, y),
            text(VALUE_PX, false, BLACK, h, VPos::Center),
        ))?;
    }
    Ok(())
}

/// The title, the notes and the legend.
fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    l: &Layout,
) -> Drawn<DB> {
    for (i, line) in l.title.0.iter().enumerate() {
        root.draw(&Text::new(
            line.clone(),
            (MARGIN, l.title.1 + i as i32 * TITLE_LINE),
            text(TITLE_PX, true, BLACK, HPos::Left, VPos::Top),
        ))?;
    }
    for (i, line) in l.notes.0.iter().enumerate() {
        root.draw(&Text::new(
            line.clone(),
            (MARGIN, l.notes.1 + i as i32 * NOTE_LINE),
            text(NOTE_PX, false, NOTE, HPos::Left, VPos::Top),
        ))?;
    }
    let mid = l.legend + KEY_LINE / 2;
    let mut x = MARGIN;
    let used = |i: usize| chart.rows().any(|r| r.bars.iter().any(|b| b.series == i));
    let mut keys: Vec<(RGBColor, i32, String)> = chart
        .series
        .iter()
        .enumerate()
        .filter(|(i, _)| used(*i))
        .map(|(_, s)| {
            (
                RGBColor(s.color.0, s.color.1, s.color.2),
                16,
                s.name.clone(),
            )
        })
        .collect();
    if chart.has_goals() {
        keys.push((GOAL, 4, "goal: iovm ÷ QEMU q35 at most this".into()));
    }
    for (color, w, name) in keys {
        root.draw(&Rectangle::new(
            [(x, mid - 8), (x + w, mid + 8)],
            color.filled(),
        ))?;
        x += w + 8;
        root.draw(&Text::new(
            name.clone(),
            (x, mid),
            text(NOTE_PX, false, BLACK, HPos::Left, VPos::Center),
        ))?;
        x += font::width(&name, NOTE_PX) as i32 + 28;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_values_are_short_and_signed() {
        assert_eq!(value(0.456), "0.46");
        assert_eq!(value(12.34), "12.3");
        assert_eq!(value(250.0), "250");
        assert_eq!(value(-0.4), "−0.40");
        assert_eq!(value(f64::INFINITY), "∞");
    }
}
