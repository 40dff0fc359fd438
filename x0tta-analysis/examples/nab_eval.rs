//! Scores a streaming detector on a corpus in NAB's layout with NAB's own method, beside NAB's
//! windowedGaussian baseline run in the same process.
//!
//! ```text
//! cargo run --release -p x0tta-analysis --example nab_eval -- DIR [--detector NAME] [--range file|learn] [--quiet]
//! ```
//! `DIR` holds `data/<category>/<file>.csv` and `labels/combined_windows.json` (and
//! optionally `config/profiles.json`). Prints each file's score under each profile, then
//! each profile's threshold, raw and normalised score, and ends with one line:
//! `summary: detector=… nab_standard=… nab_low_fp=… nab_low_fn=… baseline_standard=… us_per_point=…`.
//! Exit status 2 on bad arguments, 1 when the corpus cannot be read.
//!
//! `--range file` (the default) tells each detector its file's minimum and maximum before the
//! first point, as NAB's harness does (`inputMin`, `inputMax`); `--range learn` tells it
//! nothing, so a detector that wants a range learns it from the stream.
//!
//! Tuning runs: `X0TTA_TUNE=key=value,…` sets fields of the detector's configuration
//! (`EnsembleConfig` for `ensemble`, `ContextConfig` for `context` and `contextLean`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use x0tta_analysis::detectors::{self, StreamingDetector};
use x0tta_analysis::nab::{self, Corpus, Profile};

/// Scores every series with a fresh detector from `make` (told the file's range when
/// `file_range`), and the mean time per point in µs.
fn scores(
    corpus: &Corpus,
    file_range: bool,
    make: impl Fn() -> Box<dyn StreamingDetector>,
) -> (Vec<Vec<f64>>, f64) {
    let started = Instant::now();
    let out: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| {
            let mut d = make();
            if let Some((min, max)) = detectors::range_of(&s.values).filter(|_| file_range) {
                d.expect_range(min, max);
            }
            s.timestamps
                .iter()
                .zip(&s.values)
                .map(|(t, v)| d.score(*t, *v))
                .collect()
        })
        .collect();
    let us = started.elapsed().as_secs_f64() * 1e6 / corpus.points().max(1) as f64;
    (out, us)
}

/// `key=value,…` applied through `set`.
fn tune<C>(
    spec: &str,
    cfg: &mut C,
    set: fn(&mut C, &str, f64) -> Result<(), String>,
) -> Result<(), String> {
    for kv in spec.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{kv:?} is not key=value"))?;
        let v: f64 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
        set(cfg, k, v)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut dir = None;
    let mut detector = "windowedGaussian".to_string();
    let mut quiet = false;
    let mut file_range = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--detector" => match args.next() {
                Some(d) => detector = d,
                None => {
                    eprintln!("--detector needs a name ({})", detectors::NAMES.join(", "));
                    return ExitCode::from(2);
                }
            },
            "--quiet" => quiet = true,
            "--range" => match args.next().as_deref() {
                Some("file") => file_range = true,
                Some("learn") => file_range = false,
                _ => {
                    eprintln!("--range takes file or learn");
                    return ExitCode::from(2);
                }
            },
            _ if dir.is_none() && !a.starts_with('-') => dir = Some(PathBuf::from(a)),
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: nab_eval DIR [--detector NAME] [--range file|learn] [--quiet]");
        return ExitCode::from(2);
    };
    let Some(make) = detectors::by_name(&detector) else {
        eprintln!(
            "unknown detector {detector} (known: {})",
            detectors::NAMES.join(", ")
        );
        return ExitCode::from(2);
    };
    let corpus = match Corpus::load(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let profiles_file = dir.join("config/profiles.json");
    let profiles = if profiles_file.exists() {
        match Profile::load(&profiles_file) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        Profile::all()
    };
    println!(
        "corpus {}: {} files, {} points, {} windows",
        dir.display(),
        corpus.series.len(),
        corpus.points(),
        corpus.windows()
    );
    let spec = std::env::var("X0TTA_TUNE").unwrap_or_default();
    let mut ensemble = detectors::EnsembleConfig::default();
    let mut context = match detector.as_str() {
        "contextLean" => detectors::ContextConfig::lean(),
        _ => detectors::ContextConfig::default(),
    };
    let tuned = match detector.as_str() {
        "ensemble" => tune(&spec, &mut ensemble, detectors::EnsembleConfig::set),
        "context" | "contextLean" => tune(&spec, &mut context, detectors::ContextConfig::set),
        _ if spec.is_empty() => Ok(()),
        other => Err(format!("{other} has no tuning parameters")),
    };
    if let Err(e) = tuned {
        eprintln!("X0TTA_TUNE: {e}");
        return ExitCode::from(2);
    }
    let (ours, us_per_point) = scores(&corpus, file_range, || -> Box<dyn StreamingDetector> {
        match detector.as_str() {
            "ensemble" => Box::new(detectors::Ensemble::new(ensemble)),
            "context" | "contextLean" => Box::new(detectors::ContextMemory::new(context)),
            _ => make(),
        }
    });
    let (baseline, _) = scores(&corpus, file_range, || {
        Box::new(detectors::WindowedGaussian::new())
    });
    let mut summary = Vec::new();
    let mut baseline_standard = f64::NAN;
    for p in &profiles {
        let r = nab::evaluate(&corpus, &ours, p);
        let b = nab::evaluate(&corpus, &baseline, p);
        if !quiet {
            for f in &r.files {
                println!(
                    "  {:<10} {:<70} score {:>9.3}  tp {:>5} fp {:>5} fn {:>6} tn {:>7}",
                    p.name, f.name, f.score, f.tp, f.fp, f.fn_, f.tn
                );
            }
        }
        let detected: u64 = r.files.iter().map(|f| f.windows_detected).sum();
        let fps: u64 = r.files.iter().map(|f| f.fp).sum();
        println!(
            "profile {:<20} threshold {:.6}  raw {:>9.3}  normalized {:>7.2}  windows {detected}/{}  false positives {fps}  (null {:.1}, perfect {:.1}; windowedGaussian {:.2})",
            p.name,
            r.threshold,
            r.raw,
            r.normalized,
            corpus.windows(),
            r.null_raw,
            r.perfect_raw,
            b.normalized
        );
        let key = match p.name.as_str() {
            "standard" => {
                baseline_standard = b.normalized;
                "nab_standard"
            }
            "reward_low_FP_rate" => "nab_low_fp",
            "reward_low_FN_rate" => "nab_low_fn",
            _ => continue,
        };
        summary.push(format!("{key}={:.2}", r.normalized));
    }
    println!(
        "summary: detector={detector} range={} {} baseline_standard={baseline_standard:.2} us_per_point={us_per_point:.3}",
        if file_range { "file" } else { "learn" },
        summary.join(" ")
    );
    ExitCode::SUCCESS
}
