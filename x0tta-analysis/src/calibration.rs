//! Calibration of probability forecasts — the planner's `success_probability` against what
//! then happened: the Brier score, a reliability table and the expected calibration error.
//!
//! ```
//! use x0tta_analysis::calibration::{Forecast, brier, reliability};
//! let f = [
//!     Forecast { p: 0.9, outcome: true },
//!     Forecast { p: 0.8, outcome: true },
//!     Forecast { p: 0.2, outcome: false },
//!     Forecast { p: 0.3, outcome: true },
//! ];
//! let b = brier(&f).expect("forecasts");
//! assert!((b - (0.01 + 0.04 + 0.04 + 0.49) / 4.0).abs() < 1e-12);
//! let table = reliability(&f, 5);
//! assert_eq!(table.iter().map(|r| r.count).sum::<usize>(), 4);
//! ```

/// One forecast and its outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// The forecast probability of success, 0..=1.
    pub p: f64,
    /// Whether it succeeded.
    pub outcome: bool,
}

fn valid(f: &Forecast) -> bool {
    f.p.is_finite() && (0.0..=1.0).contains(&f.p)
}

/// Mean squared error of the forecasts (0 perfect; a constant 0.5 scores 0.25). Forecasts
/// outside 0..=1 are left out; `None` if none is left.
pub fn brier(forecasts: &[Forecast]) -> Option<f64> {
    let (sum, n) = forecasts
        .iter()
        .filter(|f| valid(f))
        .fold((0.0, 0usize), |(s, n), f| {
            let o = if f.outcome { 1.0 } else { 0.0 };
            (s + (f.p - o).powi(2), n + 1)
        });
    (n > 0).then(|| sum / n as f64)
}

/// One row of a reliability table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// Lower edge (inclusive).
    pub lo: f64,
    /// Upper edge (exclusive, but 1.0 is in the last bin).
    pub hi: f64,
    /// Forecasts in it.
    pub count: usize,
    /// Their mean forecast.
    pub mean_forecast: f64,
    /// The share that succeeded.
    pub observed: f64,
}

/// Forecasts grouped into `bins` equal-width bins of 0..=1 (empty bins are kept, with count 0).
pub fn reliability(forecasts: &[Forecast], bins: usize) -> Vec<Bin> {
    let k = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); k];
    for f in forecasts.iter().filter(|f| valid(f)) {
        let i = ((f.p * k as f64) as usize).min(k - 1);
        sums[i].0 += 1;
        sums[i].1 += f.p;
        sums[i].2 += usize::from(f.outcome);
    }
    sums.iter()
        .enumerate()
        .map(|(i, &(n, p, s))| Bin {
            lo: i as f64 / k as f64,
            hi: (i + 1) as f64 / k as f64,
            count: n,
            mean_forecast: if n > 0 { p / n as f64 } else { 0.0 },
            observed: if n > 0 { s as f64 / n as f64 } else { 0.0 },
        })
        .collect()
}

/// Expected calibration error of a reliability table: the count-weighted mean of
/// |observed − mean forecast|.
pub fn expected_calibration_error(table: &[Bin]) -> f64 {
    let total: usize = table.iter().map(|b| b.count).sum();
    if total == 0 {
        return 0.0;
    }
    table
        .iter()
        .map(|b| b.count as f64 * (b.observed - b.mean_forecast).abs())
        .sum::<f64>()
        / total as f64
}
