//! The Numenta Anomaly Benchmark's scoring, as NAB itself computes it.
//!
//! A corpus is a directory in NAB's layout: `data/<category>/<file>.csv` (`timestamp,value`)
//! and `labels/combined_windows.json` (the anomaly windows of each file, by timestamp);
//! `config/profiles.json`, when present, gives the cost matrices. A detector scores every
//! point of every file in [0, 1]. [`evaluate`] then does what NAB's `optimize`, `score` and
//! `normalize` steps do:
//!
//! 1. every point after the probationary period (the first 15 % of a file, at most 750
//!    points) gets a sweep score. Inside a window it is a scaled sigmoid of the position in
//!    the window, so early detections earn the most. Outside a window it is a penalty that
//!    shrinks as the point gets farther from the window before it.
//! 2. one threshold for the whole corpus is chosen to maximise the total score. A window
//!    counts once, by its best (earliest) detection. A window without a detection costs
//!    `fnWeight`, and each false positive costs its sweep score × `fpWeight`;
//! 3. each file is scored at that threshold, and the total is normalised so that the null
//!    detector (no detections) scores 0 and the perfect one (every window caught at its
//!    first point) scores 100.
//!
//! ```
//! use x0tta_analysis::nab::{Profile, Scorer, Series};
//!
//! // 20 points, one window over points 10..=14; a detector that fires at point 11.
//! let series = Series::from_points("demo.csv", (0..20).map(|i| (i, 0.0)).collect(), &[(10, 14)])?;
//! let scores: Vec<f64> = (0..20).map(|i| if i == 11 { 1.0 } else { 0.0 }).collect();
//! let file = Scorer::new(Profile::standard()).score_file(&series, &scores, 0.5);
//! assert_eq!((file.tp, file.fp), (1, 0));
//! assert!(file.score > 0.9); // caught early in its window
//! # Ok::<(), x0tta_analysis::nab::NabError>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a corpus or a profile file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NabError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A data file is not `timestamp,value` CSV.
    #[error("{path}: line {line}: {problem}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A JSON file (windows, profiles) is malformed.
    #[error("{path}: {problem}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A window names a timestamp its file does not have, or ends before it starts.
    #[error("{file}: window {start} .. {end}: {problem}")]
    Window {
        /// The data file (relative name).
        file: String,
        /// Window start as written.
        start: String,
        /// Window end as written.
        end: String,
        /// What is wrong.
        problem: String,
    },
    /// The directory holds no data file.
    #[error("{0}: no data/<category>/<file>.csv files")]
    Empty(PathBuf),
}

/// A cost matrix: what a detection, a miss and a false alarm are worth.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `standard`, `reward_low_FP_rate`, `reward_low_FN_rate`, or a name of one's own.
    pub name: String,
    /// Weight of a detected window.
    pub tp: f64,
    /// Weight of a false positive.
    pub fp: f64,
    /// Cost of a missed window.
    pub fn_: f64,
    /// Weight of a true negative (NAB gives it no role in the score).
    pub tn: f64,
}

impl Profile {
    /// NAB's standard profile (A_TP 1, A_FP 0.11, A_FN 1).
    pub fn standard() -> Self {
        Self::new("standard", 1.0, 0.11, 1.0)
    }
    /// NAB's reward-low-FP profile (A_FP 0.22).
    pub fn low_fp() -> Self {
        Self::new("reward_low_FP_rate", 1.0, 0.22, 1.0)
    }
    /// NAB's reward-low-FN profile (A_FN 2).
    pub fn low_fn() -> Self {
        Self::new("reward_low_FN_rate", 1.0, 0.11, 2.0)
    }
    /// The three profiles, in NAB's order of report.
    pub fn all() -> Vec<Self> {
        vec![Self::standard(), Self::low_fp(), Self::low_fn()]
    }

    fn new(name: &str, tp: f64, fp: f64, fn_: f64) -> Self {
        Self {
            name: name.into(),
            tp,
            fp,
            fn_,
            tn: 1.0,
        }
    }

    /// The profiles in NAB's `config/profiles.json`.
    pub fn load(path: &Path) -> Result<Vec<Self>, NabError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Costs {
            tp_weight: f64,
            fp_weight: f64,
            fn_weight: f64,
            tn_weight: f64,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "CostMatrix")]
            cost_matrix: Costs,
        }
        let text = read(path)?;
        let map: BTreeMap<String, Entry> =
            serde_json::from_str(&text).map_err(|e| NabError::Json {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        let mut out: Vec<Self> = map
            .into_iter()
            .map(|(name, e)| Self {
                name,
                tp: e.cost_matrix.tp_weight,
                fp: e.cost_matrix.fp_weight,
                fn_: e.cost_matrix.fn_weight,
                tn: e.cost_matrix.tn_weight,
            })
            .collect();
        // NAB's order: standard, low FP, low FN, then any others.
        let rank = |n: &str| match n {
            "standard" => 0,
            "reward_low_FP_rate" => 1,
            "reward_low_FN_rate" => 2,
            _ => 3,
        };
        out.sort_by(|a, b| rank(&a.name).cmp(&rank(&b.name)).then(a.name.cmp(&b.name)));
        Ok(out)
    }
}

/// One labelled time series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name relative to `data/` (`realKnownCause/nyc_taxi.csv`).
    pub name: String,
    /// Timestamps, seconds since the epoch (as civil time; NAB's files carry no zone).
    pub timestamps: Vec<i64>,
    /// Values.
    pub values: Vec<f64>,
    /// Anomaly windows as inclusive point indices, in order, not overlapping.
    pub windows: Vec<(usize, usize)>,
}

impl Series {
    /// A series from `(timestamp, value)` points and windows given by timestamp.
    pub fn from_points(
        name: &str,
        points: Vec<(i64, f64)>,
        windows: &[(i64, i64)],
    ) -> Result<Self, NabError> {
        let (timestamps, values): (Vec<i64>, Vec<f64>) = points.into_iter().unzip();
        let mut idx = Vec::with_capacity(windows.len());
        for &(a, b) in windows {
            let bad = |problem: &str| NabError::Window {
                file: name.into(),
                start: a.to_string(),
                end: b.to_string(),
                problem: problem.into(),
            };
            let i = timestamps
                .iter()
                .position(|t| *t == a)
                .ok_or_else(|| bad("the start is not a timestamp of the file"))?;
            let j = timestamps
                .iter()
                .position(|t| *t == b)
                .ok_or_else(|| bad("the end is not a timestamp of the file"))?;
            if j < i {
                return Err(bad("it ends before it starts"));
            }
            if idx.last().is_some_and(|&(_, e)| i <= e) {
                return Err(bad("it overlaps the window before it"));
            }
            idx.push((i, j));
        }
        Ok(Self {
            name: name.into(),
            timestamps,
            values,
            windows: idx,
        })
    }

    /// Points.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it has no point.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Every labelled series of a directory in NAB's layout, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// The series.
    pub series: Vec<Series>,
}

impl Corpus {
    /// Loads `dir/data/*/*.csv` with the windows of `dir/labels/combined_windows.json`. A
    /// file the labels do not mention has no windows.
    pub fn load(dir: &Path) -> Result<Self, NabError> {
        let labels = dir.join("labels/combined_windows.json");
        let windows: BTreeMap<String, Vec<(String, String)>> =
            serde_json::from_str(&read(&labels)?).map_err(|e| NabError::Json {
                path: labels.clone(),
                problem: e.to_string(),
            })?;
        let data = dir.join("data");
        let mut files = Vec::new();
        for cat in read_dir(&data)? {
            if cat.is_dir() {
                for f in read_dir(&cat)? {
                    if f.extension().is_some_and(|e| e == "csv") {
                        files.push(f);
                    }
                }
            }
        }
        if files.is_empty() {
            return Err(NabError::Empty(dir.to_path_buf()));
        }
        let mut series = Vec::with_capacity(files.len());
        for f in files {
            let name = f
                .strip_prefix(&data)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            let points = read_csv(&f)?;
            let mut wins = Vec::new();
            for (a, b) in windows.get(&name).map(Vec::as_slice).unwrap_or_default() {
                let parse = |s: &str| {
                    parse_timestamp(s).ok_or_else(|| NabError::Window {
                        file: name.clone(),
                        start: a.clone(),
                        end: b.clone(),
                        problem: format!("{s:?} is not a timestamp"),
                    })
                };
                wins.push((parse(a)?, parse(b)?));
            }
            series.push(Series::from_points(&name, points, &wins)?);
        }
        series.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { series })
    }

    /// Windows over all series.
    pub fn windows(&self) -> usize {
        self.series.iter().map(|s| s.windows.len()).sum()
    }

    /// Points over all series.
    pub fn points(&self) -> usize {
        self.series.iter().map(Series::len).sum()
    }
}

fn read(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, NabError> {
    let io = |source| NabError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        out.push(e.map_err(io)?.path());
    }
    out.sort();
    Ok(out)
}

fn read_csv(path: &Path) -> Result<Vec<(i64, f64)>, NabError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| NabError::Csv {
        path: path.to_path_buf(),
        line: 1,
        problem: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let bad = |problem: String| NabError::Csv {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let (Some(t), Some(v)) = (rec.get(0), rec.get(1)) else {
            return Err(bad("expected `timestamp,value`".into()));
        };
        let t = parse_timestamp(t).ok_or_else(|| bad(format!("{t:?} is not a timestamp")))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| bad(format!("{v:?} is not a number")))?;
        if !v.is_finite() {
            return Err(bad(format!("{v} is not a finite number")));
        }
        out.push((t, v));
    }
    Ok(out)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (civil time) as seconds since the epoch.
fn parse_timestamp(s: &str) -> Option<i64> {
    let dt: jiff::civil::DateTime = s.trim().parse().ok()?;
    let d = dt.date();
    let days = days_from_civil(
        i64::from(d.year()),
        i64::from(d.month()),
        i64::from(d.day()),
    );
    Some(
        days * 86_400
            + i64::from(dt.hour()) * 3_600
            + i64::from(dt.minute()) * 60
            + i64::from(dt.second()),
    )
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// NAB's scaled sigmoid of a relative position in (or past) a window: 0.987 at the left
/// edge (-1), 0 at the right edge (0), -0.987 one window-width past it, -1 beyond 3.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Where a point falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// In the probationary period: not scored.
    Probationary,
    /// Outside every window.
    Outside,
    /// In the window with this index (in its series).
    Window(usize),
}

/// One point, ready for the threshold sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The detector's score.
    pub score: f64,
    /// What detecting it is worth (weighted).
    pub sweep: f64,
    /// Where it falls.
    pub label: Label,
}

/// Counts and score at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdScore {
    /// Points with a score at or above it are detections.
    pub threshold: f64,
    /// The score.
    pub score: f64,
    /// Detections inside windows (points).
    pub tp: u64,
    /// Points outside windows not detected.
    pub tn: u64,
    /// Detections outside windows.
    pub fp: u64,
    /// Points inside windows not detected.
    pub fn_: u64,
    /// Windows with at least one detection.
    pub windows_detected: u64,
}

/// A file's result at a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct FileScore {
    /// The series.
    pub name: String,
    /// Its raw score.
    pub score: f64,
    /// Counts, as in [`ThresholdScore`].
    pub tp: u64,
    /// True negatives.
    pub tn: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    pub fn_: u64,
    /// Windows with at least one detection.
    pub windows_detected: u64,
    /// Points in the file (probationary ones included, as NAB's `Total_Count`).
    pub total: u64,
}

/// NAB's sweeper for one profile.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// The cost matrix.
    pub profile: Profile,
    /// Share of each file that is probationary (NAB: 0.15).
    pub probation_percent: f64,
}

impl Scorer {
    /// A scorer with NAB's 15 % probationary period.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            probation_percent: 0.15,
        }
    }

    /// Points in the probationary period of a file of `n` points:
    /// `min(floor(0.15 n), 0.15 × 5000)`.
    pub fn probation(&self, n: usize) -> usize {
        let by_share = (self.probation_percent * n as f64).floor();
        by_share.min(self.probation_percent * 5000.0) as usize
    }

    /// Each point's sweep score and label (NAB's `calcSweepScore`).
    pub fn sweep(&self, series: &Series, scores: &[f64]) -> Vec<Point> {
        let p = &self.profile;
        let max_tp = scaled_sigmoid(-1.0);
        let probation = self.probation(series.len());
        let mut out = Vec::with_capacity(series.len());
        let mut next = 0; // the next window to enter
        let mut cur: Option<(usize, usize, f64)> = None; // (window, right index, width)
        let mut prev: Option<(usize, f64)> = None; // (right index, width) of the last window
        for (i, &score) in scores.iter().enumerate().take(series.len()) {
            if cur.is_none()
                && let Some(&(start, end)) = series.windows.get(next)
                && i == start
            {
                cur = Some((next, end, (end - start + 1) as f64));
                next += 1;
            }
            let (sweep, label) = match cur {
                Some((w, right, width)) => {
                    let position = -((right - i + 1) as f64) / width;
                    (scaled_sigmoid(position) * p.tp / max_tp, Label::Window(w))
                }
                None => {
                    let unweighted = match prev {
                        None => -1.0,
                        Some((right, width)) => {
                            scaled_sigmoid(i.abs_diff(right) as f64 / (width - 1.0))
                        }
                    };
                    (unweighted * p.fp, Label::Outside)
                }
            };
            let label = if i >= probation {
                label
            } else {
                Label::Probationary
            };
            out.push(Point {
                score,
                sweep,
                label,
            });
            if let Some((_, right, width)) = cur
                && i == right
            {
                prev = Some((right, width));
                cur = None;
            }
        }
        out
    }

    /// The score at every threshold, from above the highest score down to the lowest (NAB's
    /// `calcScoreByThreshold`). `points` are `(window key, point)`: a window key unique
    /// across the files swept together.
    pub fn score_by_threshold<K: Ord + Copy>(
        &self,
        points: &[(Option<K>, Point)],
    ) -> Vec<ThresholdScore> {
        let mut scorable: Vec<&(Option<K>, Point)> = points
            .iter()
            .filter(|(_, p)| p.label != Label::Probationary)
            .collect();
        // Stable, as Python's sorted(): equal scores keep their order.
        scorable.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
        let mut windows: BTreeMap<K, f64> = BTreeMap::new();
        let mut detected: std::collections::BTreeSet<K> = std::collections::BTreeSet::new();
        for (k, _) in &scorable {
            if let Some(k) = k {
                windows.insert(*k, -self.profile.fn_);
            }
        }
        let mut fp_part = 0.0;
        // The state after every point at or above `threshold` counts as a detection.
        let row = |threshold: f64,
                   fp_part: f64,
                   w: &BTreeMap<K, f64>,
                   [tp, tn, fp, fn_]: [u64; 4],
                   detected: &std::collections::BTreeSet<K>| ThresholdScore {
            threshold,
            score: fp_part + w.values().sum::<f64>(),
            tp,
            tn,
            fp,
            fn_,
            windows_detected: detected.len() as u64,
        };
        let mut tn = scorable.iter().filter(|(k, _)| k.is_none()).count() as u64;
        let mut fn_ = scorable.len() as u64 - tn;
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut threshold = 1.1;
        let mut out = Vec::new();
        for (k, p) in scorable {
            if p.score != threshold {
                out.push(row(
                    threshold,
                    fp_part,
                    &windows,
                    [tp, tn, fp, fn_],
                    &detected,
                ));
                threshold = p.score;
            }
            match k {
                Some(k) => {
                    tp += 1;
                    fn_ -= 1;
                    detected.insert(*k);
                    if let Some(best) = windows.get_mut(k) {
                        *best = best.max(p.sweep);
                    }
                }
                None => {
                    fp += 1;
                    tn -= 1;
                    fp_part += p.sweep;
                }
            }
        }
        out.push(row(
            threshold,
            fp_part,
            &windows,
            [tp, tn, fp, fn_],
            &detected,
        ));
        out
    }

    /// One file's score at `threshold` (NAB's `scoreDataSet`): the row of its own threshold
    /// sweep at `threshold`, or at the lowest sweep threshold above it.
    pub fn score_file(&self, series: &Series, scores: &[f64], threshold: f64) -> FileScore {
        let points = keyed(&self.sweep(series, scores), 0);
        let rows = self.score_by_threshold(&points);
        let mut matching = None;
        let mut prev = None;
        for r in &rows {
            if r.threshold == threshold {
                matching = Some(*r);
                break;
            } else if r.threshold < threshold {
                matching = prev;
                break;
            }
            prev = Some(*r);
        }
        // Every sweep threshold is above `threshold`: the last (lowest) applies.
        let r = matching.or(prev).unwrap_or(ThresholdScore {
            threshold,
            score: 0.0,
            tp: 0,
            tn: 0,
            fp: 0,
            fn_: 0,
            windows_detected: 0,
        });
        FileScore {
            name: series.name.clone(),
            score: r.score,
            tp: r.tp,
            tn: r.tn,
            fp: r.fp,
            fn_: r.fn_,
            windows_detected: r.windows_detected,
            total: series.len() as u64,
        }
    }

    /// Each row's share of the file's score at `threshold` (NAB's `S(t)` columns): a false
    /// positive's own sweep score on its row; a window's best detection, or the cost of
    /// missing it, on the window's first scored row; zero elsewhere. The shares sum to the
    /// file's score.
    pub fn row_scores(&self, series: &Series, scores: &[f64], threshold: f64) -> Vec<f64> {
        let points = self.sweep(series, scores);
        let mut out = vec![0.0; points.len()];
        let mut first: BTreeMap<usize, usize> = BTreeMap::new();
        let mut best: BTreeMap<usize, f64> = BTreeMap::new();
        for (i, p) in points.iter().enumerate() {
            match p.label {
                Label::Probationary => {}
                Label::Outside => {
                    if p.score >= threshold {
                        out[i] = p.sweep;
                    }
                }
                Label::Window(w) => {
                    first.entry(w).or_insert(i);
                    let b = best.entry(w).or_insert(-self.profile.fn_);
                    if p.score >= threshold {
                        *b = b.max(p.sweep);
                    }
                }
            }
        }
        for (w, i) in first {
            out[i] = best.get(&w).copied().unwrap_or(-self.profile.fn_);
        }
        out
    }
}

/// Points of one file keyed by `(file, window)`.
fn keyed(points: &[Point], file: usize) -> Vec<(Option<(usize, usize)>, Point)> {
    points
        .iter()
        .map(|p| {
            let k = match p.label {
                Label::Window(w) => Some((file, w)),
                _ => None,
            };
            (k, *p)
        })
        .collect()
}

/// A detector's result under one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileResult {
    /// The profile.
    pub profile: Profile,
    /// The threshold that maximises the corpus' score.
    pub threshold: f64,
    /// Per file, at that threshold.
    pub files: Vec<FileScore>,
    /// Sum of the files' scores.
    pub raw: f64,
    /// What the null detector (no detections) scores raw.
    pub null_raw: f64,
    /// What the perfect detector (each window at its first point) scores raw.
    pub perfect_raw: f64,
    /// `100 × (raw − null) / (perfect − null)`.
    pub normalized: f64,
}

/// The threshold maximising the corpus score (NAB's `optimizeThreshold`: the sweep over every
/// point of every file; among equal scores, the highest threshold) and that score.
pub fn optimize(scorer: &Scorer, corpus: &Corpus, scores: &[Vec<f64>]) -> (f64, f64) {
    let mut all = Vec::with_capacity(corpus.points());
    for (f, (s, sc)) in corpus.series.iter().zip(scores).enumerate() {
        all.extend(keyed(&scorer.sweep(s, sc), f));
    }
    let rows = scorer.score_by_threshold(&all);
    let mut best = (1.1, f64::NEG_INFINITY);
    for r in rows {
        if r.score > best.1 {
            best = (r.threshold, r.score);
        }
    }
    best
}

/// A score as NAB's pipeline holds it: its detectors write scores to CSV files with 12
/// significant digits (Python's `str(float)` of its time) and the scorer reads those files
/// back. So `0.99999999999977` is `1.0` to NAB, which decides ties at the top of the
/// threshold sweep. [`evaluate`] applies this to every score.
///
/// ```
/// use x0tta_analysis::nab::as_stored;
/// assert_eq!(as_stored(0.999_999_999_999_774), 1.0);
/// assert_eq!(as_stored(0.992_048_087_924_123), 0.992_048_087_924);
/// ```
pub fn as_stored(score: f64) -> f64 {
    format!("{score:.11e}").parse().unwrap_or(score)
}

/// Scores a detector's output for `corpus` (one score vector per series, in order) under
/// `profile`, NAB's way: round scores as NAB stores them ([`as_stored`]), optimise the
/// threshold, score each file at it, normalise.
pub fn evaluate(corpus: &Corpus, scores: &[Vec<f64>], profile: &Profile) -> ProfileResult {
    let scores: Vec<Vec<f64>> = scores
        .iter()
        .map(|v| v.iter().copied().map(as_stored).collect())
        .collect();
    let scores = scores.as_slice();
    let scorer = Scorer::new(profile.clone());
    let (threshold, _) = optimize(&scorer, corpus, scores);
    let files: Vec<FileScore> = corpus
        .series
        .iter()
        .zip(scores)
        .map(|(s, sc)| scorer.score_file(s, sc, threshold))
        .collect();
    let raw = files.iter().map(|f| f.score).sum();
    let raw_of = |scores: Vec<Vec<f64>>| {
        let (t, _) = optimize(&scorer, corpus, &scores);
        corpus
            .series
            .iter()
            .zip(&scores)
            .map(|(s, sc)| scorer.score_file(s, sc, t).score)
            .sum::<f64>()
    };
    let null_raw = raw_of(corpus.series.iter().map(|s| vec![0.5; s.len()]).collect());
    let perfect_raw = raw_of(
        corpus
            .series
            .iter()
            .map(|s| {
                let mut v = vec![0.0; s.len()];
                for &(start, _) in &s.windows {
                    v[start] = 1.0;
                }
                v
            })
            .collect(),
    );
    let span = perfect_raw - null_raw;
    let normalized = if span > 0.0 {
        100.0 * (raw - null_raw) / span
    } else {
        0.0
    };
    ProfileResult {
        profile: profile.clone(),
        threshold,
        files,
        raw,
        null_raw,
        perfect_raw,
        normalized,
    }
}
