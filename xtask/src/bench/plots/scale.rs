//! The ratio axis: logarithmic, so that 0.5 and 2 lie as far from 1.0 on either side,
//! always showing at least 0.5 to 2 and at most 0.01 to 100 (a bar beyond is drawn to
//! the edge, with its value written out).

/// The smallest range shown, either side of 1.0.
const MIN_SPAN: (f64, f64) = (0.5, 2.0);
/// The largest range shown.
const MAX_SPAN: (f64, f64) = (0.01, 100.0);
/// Room beyond the furthest value, as a factor.
const PAD: f64 = 1.25;

/// Ratios to pixels, on `x0..=x1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogScale {
    /// The smallest ratio shown (at `x0`).
    pub lo: f64,
    /// The largest ratio shown (at `x1`).
    pub hi: f64,
    /// The left end in pixels.
    pub x0: i32,
    /// The right end in pixels.
    pub x1: i32,
}

impl LogScale {
    /// A scale that shows `values` (those that are finite and positive), 1.0 and the
    /// least range, between `x0` and `x1`.
    pub fn fit(values: impl IntoIterator<Item = f64>, x0: i32, x1: i32) -> LogScale {
        let (mut lo, mut hi) = (1.0f64, 1.0f64);
        for v in values.into_iter().filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let lo = (lo / PAD).clamp(MAX_SPAN.0, MIN_SPAN.0);
        let hi = (hi * PAD).clamp(MIN_SPAN.1, MAX_SPAN.1);
        LogScale {
            lo: steps().rev().find(|&t| t <= lo).unwrap_or(MAX_SPAN.0),
            hi: steps().find(|&t| t >= hi).unwrap_or(MAX_SPAN.1),
            x0,
            x1,
        }
    }

    /// Where `v` is; values off the scale (zero, negative, infinite included) are at
    /// its nearer end.
    pub fn x(&self, v: f64) -> i32 {
        let v = if v.is_nan() || v <= self.lo {
            self.lo
        } else {
            v.min(self.hi)
        };
        let t = (v / self.lo).ln() / (self.hi / self.lo).ln();
        self.x0 + (t * f64::from(self.x1 - self.x0)).round() as i32
    }

    /// Whether `v` is on the scale.
    pub fn shows(&self, v: f64) -> bool {
        v >= self.lo && v <= self.hi
    }

    /// The ticks: 1, 2 and 5 times powers of ten on the scale.
    pub fn ticks(&self) -> Vec<f64> {
        steps().filter(|&t| self.shows(t)).collect()
    }
}

/// A tick's text: `0.05`, `0.5`, `1`, `20`.
pub fn tick_label(t: f64) -> String {
    let s = format!("{t:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// 1, 2 and 5 times the powers of ten from 0.01 to 100, rising; the scale's ends are
/// among them, so that both ends have a tick.
fn steps() -> impl DoubleEndedIterator<Item = f64> {
    (-2..=2)
        .flat_map(|e| [1.0, 2.0, 5.0].map(move |m| m * 10f64.powi(e)))
        .filter(|&t| t <= MAX_SPAN.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_scale_is_symmetric_in_log_and_keeps_the_least_range() {
        let s = LogScale::fit([0.9, 1.1], 0, 1000);

        assert_eq!((s.lo, s.hi), (0.5, 2.0));
        assert_eq!(s.x(1.0), 500);
        assert_eq!(s.x(0.5), 0);
        assert_eq!(s.x(2.0), 1000);
        assert_eq!(s.ticks(), vec![0.5, 1.0, 2.0]);
    }

    #[test]
    fn test_scale_widens_for_values_and_clamps_the_rest() {
        let s = LogScale::fit([0.25, 4.0, 0.0, -1.0, f64::INFINITY, 1e6], 100, 900);

        assert_eq!((s.lo, s.hi), (0.2, 100.0), "1e6 is past the largest range");
        assert_eq!(LogScale::fit([0.3, 3.0], 0, 1).lo, 0.2, "down to a tick");
        assert_eq!(LogScale::fit([0.3, 3.0], 0, 1).hi, 5.0, "up to a tick");
        assert!(s.shows(0.25) && !s.shows(1e6));
        assert_eq!(s.x(-1.0), 100);
        assert_eq!(s.x(0.0), 100);
        assert_eq!(s.x(f64::INFINITY), 900);
        assert_eq!(s.x(f64::NAN), 100);
        assert!(s.ticks().contains(&0.2) && s.ticks().contains(&50.0));
        let labels: Vec<String> = LogScale::fit([0.01, 100.0], 0, 1)
            .ticks()
            .into_iter()
            .map(tick_label)
            .collect();
        assert_eq!(
            labels,
            ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50", "100"]
        );
    }
}
