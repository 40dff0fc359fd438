//! Scores a streaming detector on a corpus in NAB's layout with NAB's own method, beside NAB's
//! windowedGaussian baseline run in the same process.
//!
//! ```text
//! cargo run --release -p x0tta-analysis --example nab_eval -- DIR [--detector NAME] [--quiet]
//! ```
//! `DIR` holds `data/<category>/<file>.csv` and `labels/combined_windows.json` (and
//! optionally `config/profiles.json`). Prints each file's score under each profile, then
//! each profile's threshold, raw and normalised score, and ends with one line:
//! `summary: detector=… nab_standard=… nab_low_fp=… nab_low_fn=… baseline_standard=… us_per_point=…`.
//! Exit status 2 on bad arguments, 1 when the corpus cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use x0tta_analysis::detectors::{self, DetectorFactory};
use x0tta_analysis::nab::{self, Corpus, Profile};

fn scores(corpus: &Corpus, make: DetectorFactory) -> (Vec<Vec<f64>>, f64) {
    let started = Instant::now();
    let out: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| detectors::run(make, &s.timestamps, &s.values))
        .collect();
    let us = started.elapsed().as_secs_f64() * 1e6 / corpus.points().max(1) as f64;
    (out, us)
}

fn main() -> ExitCode {
    let mut dir = None;
    let mut detector = "windowedGaussian".to_string();
    let mut quiet = false;
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
            _ if dir.is_none() && !a.starts_with('-') => dir = Some(PathBuf::from(a)),
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: nab_eval DIR [--detector NAME] [--quiet]");
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
    let (ours, us_per_point) = match std::env::var("X0TTA_ENSEMBLE") {
        // Tuning runs: `X0TTA_ENSEMBLE=fast=0.3,refractory=200` with `--detector ensemble`
        // (the fields of EnsembleConfig).
        Ok(spec) if detector == "ensemble" => {
            let mut cfg = detectors::EnsembleConfig::default();
            for kv in spec.split(',').filter(|s| !s.is_empty()) {
                let Some((k, v)) = kv.split_once('=') else {
                    eprintln!("X0TTA_ENSEMBLE: {kv:?} is not key=value");
                    return ExitCode::from(2);
                };
                let v: f64 = match v.parse() {
                    Ok(v) => v,
                    Err(_) => {
                        eprintln!("X0TTA_ENSEMBLE: {v:?} is not a number");
                        return ExitCode::from(2);
                    }
                };
                if let Err(e) = cfg.set(k, v) {
                    eprintln!("X0TTA_ENSEMBLE: {e}");
                    return ExitCode::from(2);
                }
            }
            let started = Instant::now();
            let out: Vec<Vec<f64>> = corpus
                .series
                .iter()
                .map(|s| {
                    let mut d = detectors::Ensemble::new(cfg);
                    s.timestamps
                        .iter()
                        .zip(&s.values)
                        .map(|(t, v)| detectors::StreamingDetector::score(&mut d, *t, *v))
                        .collect()
                })
                .collect();
            let us = started.elapsed().as_secs_f64() * 1e6 / corpus.points().max(1) as f64;
            (out, us)
        }
        _ => scores(&corpus, make),
    };
    let (baseline, _) = scores(&corpus, || Box::new(detectors::WindowedGaussian::new()));
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
        "summary: detector={detector} {} baseline_standard={baseline_standard:.2} us_per_point={us_per_point:.3}",
        summary.join(" ")
    );
    ExitCode::SUCCESS
}
