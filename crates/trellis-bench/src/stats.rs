//! Percentiles from latency histograms, and medians across runs.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The highest latency a histogram records (60 s, in microseconds); larger values are clamped.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds, valid by construction (1 ≤ low, high ≥ 2 × low, sigfig ≤ 5).
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds; `None` when it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(Percentiles {
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
        })
    }

    /// The four values in order p50, p90, p99, p99.9.
    pub fn values(&self) -> [f64; 4] {
        [self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms]
    }

    /// The median of each percentile over several runs; `None` for no runs.
    pub fn median_of(runs: &[Percentiles]) -> Option<Self> {
        Some(Percentiles {
            p50_ms: median(runs.iter().map(|p| p.p50_ms))?,
            p90_ms: median(runs.iter().map(|p| p.p90_ms))?,
            p99_ms: median(runs.iter().map(|p| p.p99_ms))?,
            p999_ms: median(runs.iter().map(|p| p.p999_ms))?,
        })
    }
}

/// Labels of [`Percentiles::values`].
pub const PERCENTILE_LABELS: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

/// The median of some values (the mean of the middle two for an even count); `None` when empty.
/// NaNs are ignored.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Rounds to `digits` decimal places (for readable JSON).
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() -> anyhow::Result<()> {
        let mut h = new_histogram();
        // 1..=1000 ms, one sample each.
        for ms in 1..=1000u64 {
            h.record(ms * 1000)?;
        }
        let p = Percentiles::from_histogram(&h).ok_or_else(|| anyhow::anyhow!("empty"))?;
        // Three significant digits: within 0.1%.
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(p.p50_ms, 500.0), "{p:?}");
        assert!(close(p.p90_ms, 900.0), "{p:?}");
        assert!(close(p.p99_ms, 990.0), "{p:?}");
        assert!(close(p.p999_ms, 999.0), "{p:?}");
        assert!(Percentiles::from_histogram(&new_histogram()).is_none());
        Ok(())
    }

    #[test]
    fn tail_is_not_hidden() -> anyhow::Result<()> {
        // 999 fast requests and one that waited 2 s: p99.9 must show it.
        let mut h = new_histogram();
        for _ in 0..998 {
            h.record(300)?;
        }
        h.record(2_000_000)?;
        h.record(2_000_000)?;
        let p = Percentiles::from_histogram(&h).ok_or_else(|| anyhow::anyhow!("empty"))?;
        assert!(p.p50_ms < 0.31);
        assert!(p.p999_ms > 1990.0, "{p:?}");
        Ok(())
    }

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::<f64>::new()), None);
        assert_eq!(median([f64::NAN, 5.0]), Some(5.0));
        let runs = [
            Percentiles {
                p50_ms: 1.0,
                p90_ms: 2.0,
                p99_ms: 3.0,
                p999_ms: 9.0,
            },
            Percentiles {
                p50_ms: 3.0,
                p90_ms: 4.0,
                p99_ms: 5.0,
                p999_ms: 4.0,
            },
            Percentiles {
                p50_ms: 2.0,
                p90_ms: 3.0,
                p99_ms: 4.0,
                p999_ms: 5.0,
            },
        ];
        let m = Percentiles::median_of(&runs);
        assert_eq!(m.map(|m| m.values()), Some([2.0, 3.0, 4.0, 5.0]));
        assert_eq!(round(1.23456, 2), 1.23);
    }
}
