//! Minimum, median and maximum of a figure's samples, and ratios of medians.

use serde::{Deserialize, Serialize};

/// Summary of one figure's samples (in results.json as `{n, min, median, max}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min: f64,
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// The summary of `samples`; `None` if there are none (or one is NaN).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            n,
            min: v[0],
            median,
            max: v[n - 1],
        })
    }
}

/// `a ÷ b` of two medians; `None` unless both exist and `b` is positive.
pub fn ratio(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b.median > 0.0).then(|| a.median / b.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_summary_odd_count() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();

        assert_eq!(
            s,
            Summary {
                n: 3,
                min: 1.0,
                median: 3.0,
                max: 5.0
            }
        );
    }

    #[test]
    fn test_summary_even_count_averages_middle() {
        let s = Summary::of(&[4.0, 1.0, 2.0, 10.0]).unwrap();

        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max), (1.0, 10.0));
    }

    #[test]
    fn test_summary_single_and_empty() {
        assert_eq!(Summary::of(&[7.0]).unwrap().median, 7.0);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn test_ratio_of_medians() {
        let a = Summary::of(&[1.0, 2.0, 3.0]);
        let b = Summary::of(&[4.0]);

        assert_eq!(ratio(a, b), Some(0.5));
        assert_eq!(ratio(a, None), None);
        assert_eq!(ratio(a, Summary::of(&[0.0])), None);
    }
}
