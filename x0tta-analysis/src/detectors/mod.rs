//! Streaming anomaly detectors: one value at a time, a score in [0, 1] for it before the next
//! is seen.

mod context;
mod cusum;
mod ensemble;
mod windowed_gaussian;

pub use context::{ContextConfig, ContextMemory};
pub use cusum::CoreCusum;
pub use ensemble::{Ensemble, EnsembleConfig};
pub use windowed_gaussian::WindowedGaussian;

/// An online detector of one metric. `score` is called once per point, in time order, and
/// returns that point's anomaly score in [0, 1] (1: certainly anomalous); it never sees a
/// later point before scoring an earlier one.
pub trait StreamingDetector: Send {
    /// The detector's name, as results name it.
    fn name(&self) -> &'static str;
    /// Scores `value`, observed at `timestamp` (seconds), and learns from it.
    fn score(&mut self, timestamp: i64, value: f64) -> f64;
    /// The range the metric's values take, when it is known before the first point: a
    /// percentage lies in 0..=100, and NAB hands every detector its file's minimum and
    /// maximum (`inputMin`, `inputMax` in NAB's `base.py`). Called at most once, before the
    /// first [`score`](Self::score); detectors that have no use for it ignore it.
    fn expect_range(&mut self, _min: f64, _max: f64) {}
}

/// Makes a fresh detector (one per series).
pub type DetectorFactory = fn() -> Box<dyn StreamingDetector>;

/// The detectors this crate ships, by name.
///
/// ```
/// let make = x0tta_analysis::detectors::by_name("windowedGaussian").expect("known");
/// let mut d = make();
/// assert_eq!(d.score(0, 1.0), 0.0); // nothing learnt yet
/// ```
pub fn by_name(name: &str) -> Option<DetectorFactory> {
    match name {
        "windowedGaussian" => Some(|| Box::new(WindowedGaussian::new())),
        "ensemble" => Some(|| Box::new(Ensemble::default())),
        "cusum" => Some(|| Box::new(CoreCusum::default())),
        "context" => Some(|| Box::new(ContextMemory::default())),
        "contextLean" => Some(|| Box::new(ContextMemory::lean())),
        _ => None,
    }
}

/// Names [`by_name`] knows.
pub const NAMES: [&str; 5] = [
    "windowedGaussian",
    "ensemble",
    "cusum",
    "context",
    "contextLean",
];

/// Scores every point of `values` with a fresh detector from `make`, told `range` first when
/// it is given.
///
/// ```
/// use x0tta_analysis::detectors::{self, range_of};
/// let values = [1.0, 2.0, 1.0, 2.0, 9.0];
/// let ts = [0, 1, 2, 3, 4];
/// let make = detectors::by_name("context").expect("shipped");
/// let scores = detectors::run(make, range_of(&values), &ts, &values);
/// assert_eq!(scores.len(), values.len());
/// ```
pub fn run(
    make: DetectorFactory,
    range: Option<(f64, f64)>,
    timestamps: &[i64],
    values: &[f64],
) -> Vec<f64> {
    let mut d = make();
    if let Some((min, max)) = range {
        d.expect_range(min, max);
    }
    timestamps
        .iter()
        .zip(values)
        .map(|(t, v)| d.score(*t, *v))
        .collect()
}

/// The smallest and largest finite value of `values` (NAB's `inputMin`, `inputMax`); `None`
/// when there is none.
pub fn range_of(values: &[f64]) -> Option<(f64, f64)> {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold(None, |r, &v| match r {
            None => Some((v, v)),
            Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
        })
}
