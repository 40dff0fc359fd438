//! # x0tta-analysis
//!
//! The AI layer (DESIGN §11), judged by measured quality on data nobody here wrote.
//!
//! Built so far:
//! - [`nab`]: the Numenta Anomaly Benchmark's scoring, as NAB computes it (anomaly windows,
//!   scaled-sigmoid rewards, the standard / reward-low-FP / reward-low-FN profiles, one
//!   threshold optimised over the corpus, normalisation against the null and perfect
//!   detectors), on any directory in NAB's layout;
//! - [`detectors`]: streaming detectors behind [`detectors::StreamingDetector`]. They are
//!   NAB's `windowedGaussian` baseline (it reproduces NAB's published scores and so proves the
//!   scorer right), `context` (a contextual sequence memory: NAB standard 70.62, above
//!   Numenta HTM's 70.1), `ensemble` (a few nanoseconds per point) and `cusum` (x0tta-core's
//!   default statistical detector, so that NAB can score what a node runs today);
//! - [`PerMetricDetector`]: any of them inside the MAPE-K loop, as one of core's
//!   [`Detector`](x0tta_core::Detector)s. It runs one detector per resource metric and raises
//!   an anomaly of that metric's kind; node-ref runs [`PerMetricDetector::context`].
//!
//! - [`graph`] (feature `graph`, candle): a 2-layer GraphSAGE (mean aggregator, sampled
//!   neighbours) that classifies each node of the neighbour graph, with training (AdamW) and
//!   signed, content-addressed, versioned `patterns.bin` weights;
//! - [`scenario`] (feature `eval`): labelled fault scenarios from x0tta-mesh's simulated mesh
//!   (the injector's record is the label), and healing trials;
//! - [`rootcause`]: ranking the culprit node or link from class probabilities, alarm onsets,
//!   witnesses and priors, against the "earliest alarm" baseline;
//! - [`live`] (feature `graph`): the patterns in a running node: signed feature reports on
//!   `x0tta/features/1`, the live 2-hop neighbourhood, and `GraphDetector`, a core detector
//!   that classifies it every cycle and keeps the node's labelled examples;
//! - [`federated`] (feature `graph`): signed, clipped, size-bounded model updates on
//!   `x0tta/fl/1` combined with a Byzantine-robust rule (median, trimmed mean, Multi-Krum) or
//!   plain FedAvg;
//! - [`calibration`]: Brier score, reliability table and expected calibration error of
//!   probability forecasts such as the planner's success probability.
//!
//! The examples `graph_eval`, `fl_eval` and `calibration_eval` (feature `eval`) measure them;
//! docs/PERFORMANCE.md has the figures.
//!
//! In the running node, [`rootcause::MeshRootCause`] names the root cause of every incident.
//! Still to come (issue 9): detectors at HTM's level on NAB, the graph model scoring live
//! neighbourhoods, and federated rounds between running nodes.
//!
//! ```no_run
//! use std::path::Path;
//! use x0tta_analysis::{detectors, nab};
//!
//! # fn main() -> Result<(), nab::NabError> {
//! let corpus = nab::Corpus::load(Path::new("NAB"))?;
//! let make = detectors::by_name("windowedGaussian").expect("a shipped detector");
//! let scores: Vec<Vec<f64>> = corpus
//!     .series
//!     .iter()
//!     .map(|s| detectors::run(make, detectors::range_of(&s.values), &s.timestamps, &s.values))
//!     .collect();
//! for profile in nab::Profile::all() {
//!     let r = nab::evaluate(&corpus, &scores, &profile);
//!     println!("{}: {:.2}", profile.name, r.normalized);
//! }
//! # Ok(())
//! # }
//! ```

pub mod calibration;
pub mod detectors;
#[cfg(feature = "graph")]
pub mod federated;
#[cfg(feature = "graph")]
pub mod graph;
#[cfg(feature = "graph")]
pub mod live;
pub mod nab;
pub mod per_metric;
pub mod rootcause;
#[cfg(feature = "eval")]
pub mod scenario;
#[cfg(feature = "graph")]
mod sealed;

pub use per_metric::{CONTEXT_THRESHOLD, DEFAULT_THRESHOLD, DEFAULT_WARMUP, PerMetricDetector};
