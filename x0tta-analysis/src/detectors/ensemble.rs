//! A streaming detector with O(1) time and memory per point.

use super::StreamingDetector;

/// Tuning of [`Ensemble`]; one configuration for every metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnsembleConfig {
    /// Rate of the fast mean (the short-term predictor).
    pub fast: f64,
    /// Rate of the slow mean (the level predictor) and of the value scale.
    pub slow: f64,
    /// Rate at which each predictor's error scale adapts.
    pub error_rate: f64,
    /// Points after an alarm during which scores are damped.
    pub refractory: u32,
    /// Factor applied to scores during the refractory period.
    pub damp: f64,
    /// Score at or above which an alarm starts the refractory period.
    pub alarm: f64,
    /// Rate of the seasonal profile's bins (each learns from its own visits).
    pub seasonal_rate: f64,
    /// Weight of the seasonal surprise against the predictors' (0: no seasonal signal).
    pub seasonal_weight: f64,
    /// Length of the season, hours (24: a day, 168: a week).
    pub period_hours: u32,
}

impl Default for EnsembleConfig {
    /// The configuration measured in docs/PERFORMANCE.md (chosen once for all 58 NAB series).
    fn default() -> Self {
        Self {
            fast: 0.05,
            slow: 0.001,
            error_rate: 0.001,
            refractory: 100,
            damp: 0.5,
            alarm: 0.6,
            seasonal_rate: 0.2,
            seasonal_weight: 0.7,
            period_hours: 168,
        }
    }
}

impl EnsembleConfig {
    /// Sets one field by name (`fast=0.2`), for tuning runs.
    ///
    /// ```
    /// let mut c = x0tta_analysis::detectors::EnsembleConfig::default();
    /// c.set("refractory", 200.0)?;
    /// assert_eq!(c.refractory, 200);
    /// assert!(c.set("speed", 1.0).is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{key}: {value} is not a non-negative number"));
        }
        match key {
            "fast" => self.fast = value.min(1.0),
            "slow" => self.slow = value.min(1.0),
            "error_rate" => self.error_rate = value.min(1.0),
            "refractory" => self.refractory = value as u32,
            "damp" => self.damp = value.min(1.0),
            "alarm" => self.alarm = value.min(1.0),
            "seasonal_rate" => self.seasonal_rate = value.min(1.0),
            "seasonal_weight" => self.seasonal_weight = value,
            "period_hours" => self.period_hours = (value as u32).clamp(1, BINS as u32),
            other => return Err(format!("unknown ensemble parameter {other}")),
        }
        Ok(())
    }
}

/// Three predictors of the next value: the last value, a fast exponential mean and a slow
/// one. Each has an error scale that adapts slowly. A point is as surprising as the
/// best-placed predictor finds it: its error in that predictor's standard deviations.
///
/// A fourth signal is seasonal: an hour-of-the-week profile (168 bins, by the point's
/// timestamp) with its own error scale. It can raise a point the predictors expected but
/// that is wrong for its hour, such as a flat line where a daily peak belongs.
///
/// The score is the two-sided Gaussian tail of the surprise, on a log scale (a tail of 1e-10
/// or less scores 1.0). After an alarm, scores are damped for a while: one alarm per anomaly
/// is what an operator, and NAB, reward. Memory is fixed: 168 bins and a few numbers.
///
/// It beats NAB's windowedGaussian baseline but not yet Numenta's HTM (docs/PERFORMANCE.md
/// has the figures).
///
/// ```
/// use x0tta_analysis::detectors::{Ensemble, StreamingDetector};
/// let mut d = Ensemble::default();
/// let mut calm = 0.0f64; // the highest score once the detector has learnt the wave
/// for i in 0..5_000 {
///     let s = d.score(i, (i as f64 / 10.0).sin());
///     if i >= 2_000 {
///         calm = calm.max(s);
///     }
/// }
/// assert!(calm < 0.5);
/// assert_eq!(d.score(5_000, 40.0), 1.0);
/// ```
#[derive(Debug, Clone)]
pub struct Ensemble {
    cfg: EnsembleConfig,
    n: u64,
    last: f64,
    fast: f64,
    slow: f64,
    /// Mean squared error of each predictor: last value, fast mean, slow mean.
    err: [f64; 3],
    /// Mean magnitude of the values (a floor for the error scales).
    scale: f64,
    /// Points left in the refractory period.
    quiet: u32,
    /// Hour-of-week profile: mean and visits per bin.
    season: Box<[(f64, u32); BINS]>,
    /// Mean squared error of the seasonal predictor.
    season_err: f64,
}

/// Hours in a week.
const BINS: usize = 168;

fn bin_of(timestamp: i64, period_hours: u32) -> usize {
    // 1970-01-01 was a Thursday; any fixed origin will do.
    (timestamp
        .div_euclid(3600)
        .rem_euclid(i64::from(period_hours.max(1)))) as usize
}

impl Default for Ensemble {
    fn default() -> Self {
        Self::new(EnsembleConfig::default())
    }
}

impl Ensemble {
    /// A detector with `cfg`.
    pub fn new(cfg: EnsembleConfig) -> Self {
        Self {
            cfg,
            n: 0,
            last: 0.0,
            fast: 0.0,
            slow: 0.0,
            err: [0.0; 3],
            scale: 0.0,
            quiet: 0,
            season: Box::new([(0.0, 0); BINS]),
            season_err: 0.0,
        }
    }
}

impl StreamingDetector for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }

    fn score(&mut self, timestamp: i64, x: f64) -> f64 {
        let c = self.cfg;
        if self.n == 0 {
            self.n = 1;
            (self.last, self.fast, self.slow) = (x, x, x);
            self.scale = x.abs();
            return 0.0;
        }
        self.n += 1;
        let floor = 1e-3 * (self.scale + 1e-9);
        let mut z = f64::INFINITY;
        for (k, p) in [self.last, self.fast, self.slow].into_iter().enumerate() {
            let e = x - p;
            z = z.min(e.abs() / self.err[k].sqrt().max(floor));
            self.err[k] += c.error_rate * (e * e - self.err[k]);
        }
        let b = bin_of(timestamp, c.period_hours).min(BINS - 1);
        let (mean, visits) = self.season[b];
        // Out of season: a value the predictors expected can still be wrong for this hour
        // of the week (a flat line where a daily peak belongs).
        if c.seasonal_weight > 0.0 && visits >= 2 {
            let e = x - mean;
            let zs = e.abs() / self.season_err.sqrt().max(floor);
            self.season_err += c.error_rate * (e * e - self.season_err);
            z = z.max(c.seasonal_weight * zs);
        }
        let rate = (1.0 / f64::from(visits + 1)).max(c.seasonal_rate);
        self.season[b] = (mean + rate * (x - mean), visits.saturating_add(1));
        self.last = x;
        self.fast += c.fast * (x - self.fast);
        self.slow += c.slow * (x - self.slow);
        self.scale += c.slow * (x.abs() - self.scale);
        // Too few points for an error scale: nothing is surprising yet.
        if self.n < 4 {
            return 0.0;
        }
        let tail = libm::erfc(z / std::f64::consts::SQRT_2).max(1e-10);
        let mut score = (tail.ln() / 1e-10f64.ln()).clamp(0.0, 1.0);
        if self.quiet > 0 {
            self.quiet -= 1;
            score *= c.damp;
        } else if score >= c.alarm {
            self.quiet = c.refractory;
        }
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_line_then_a_step_alarms_once_then_damps() {
        let mut d = Ensemble::default();
        for i in 0..1_000 {
            assert!(d.score(i, 5.0) < 0.01, "a flat line is not surprising");
        }
        assert_eq!(d.score(1_000, 50.0), 1.0);
        assert!(d.score(1_001, 50.0) <= 0.5, "damped after the alarm");
    }

    #[test]
    fn bad_values_do_not_poison_the_state() {
        let mut d = Ensemble::default();
        for i in 0..100 {
            let s = d.score(i, (i % 7) as f64);
            assert!((0.0..=1.0).contains(&s));
        }
    }
}
