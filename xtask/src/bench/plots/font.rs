//! The charts' font: DejaVu Sans, regular and bold (Debian's `fonts-dejavu-core`),
//! registered with plotters once per process, and text measured in it.

use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::style::{register_font, FontStyle, IntoFont};

/// The family name the charts draw with.
pub const FAMILY: &str = "sans-serif";

/// The font files, by style.
const FILES: [(FontStyle, &str); 2] = [
    (
        FontStyle::Normal,
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ),
    (
        FontStyle::Bold,
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
];

fn register() -> Result<(), String> {
    for (style, path) in FILES {
        let bytes = std::fs::read(path)
            .with_context(|| {
                format!("reading the plot font {path} (apt-get install fonts-dejavu-core)")
            })
            .map_err(|e| format!("{e:#}"))?;
        // plotters keeps fonts for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        register_font(FAMILY, style, bytes).map_err(|_| format!("{path} is not a usable font"))?;
    }
    Ok(())
}

/// Registers the fonts, the first time.
pub fn load() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(register).clone().map_err(|e| anyhow!(e))
}

/// The width of `text` at `size` px in the regular font (after [`load`]).
pub fn width(text: &str, size: u32) -> u32 {
    (FAMILY, f64::from(size))
        .into_font()
        .box_size(text)
        .map_or(0, |(w, _)| w)
}
