//! How well the planner's `success_probability` forecasts real outcomes: a run of healing
//! trials in the simulated mesh (a crash, a degraded link or a partition, under a random
//! 0–50% message loss; the remedy applied 3 s after the fault; verification against the real
//! failure detectors within 1 s: `HealConfig::default()`). Before each trial the forecast is what x0tta-core's planner
//! would give the remedy — the Beta(1, 1) posterior mean of its recorded outcomes on that
//! anomaly kind (`PlanStats::success_probability`) — and the outcome is then recorded, as the
//! node does.
//!
//! ```text
//! cargo run --release -p x0tta-analysis --features eval --example calibration_eval -- [--seeds 0..150]
//! ```
//!
//! The last line is `summary: trials=… brier=… brier_constant_half=… brier_hindsight_rate=…
//! ece=…`; the hindsight rate is each remedy's final success rate applied to all its trials
//! (a bound no forecaster without per-trial information can beat).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use x0tta_analysis::calibration::{Forecast, brier, expected_calibration_error, reliability};
use x0tta_analysis::scenario::{self, Fault, HealConfig};
use x0tta_core::PlanStats;

fn main() -> ExitCode {
    let mut seeds = 0..150;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let parsed = match (a.as_str(), args.next()) {
            ("--seeds", Some(v)) => scenario::parse_seeds(&v).map_err(|e| e.to_string()),
            (other, _) => Err(format!("unknown or incomplete argument {other}")),
        };
        match parsed {
            Ok(r) => seeds = r,
            Err(e) => {
                eprintln!("calibration_eval: {e}\nusage: calibration_eval [--seeds A..B]");
                return ExitCode::from(2);
            }
        }
    }
    match eval(seeds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calibration_eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn eval(seeds: std::ops::Range<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = HealConfig::default();
    let faults = [Fault::NodeCrash, Fault::LinkDegraded, Fault::Partition];
    let mut stats: BTreeMap<&str, PlanStats> = BTreeMap::new();
    let mut forecasts: Vec<(&str, Forecast)> = Vec::new();
    let t = Instant::now();
    for seed in seeds.clone() {
        for fault in faults {
            let trial = scenario::heal_trial(seed * 8 + u64::from(fault.class()), fault, &cfg)?;
            let s = stats.entry(trial.remedy).or_default();
            forecasts.push((
                trial.remedy,
                Forecast {
                    p: s.success_probability(),
                    outcome: trial.healed,
                },
            ));
            s.record(trial.healed);
        }
    }
    println!(
        "{} healing trials (seeds {seeds:?}) in {:.1} s",
        forecasts.len(),
        t.elapsed().as_secs_f64()
    );
    for (remedy, s) in &stats {
        println!(
            "  {remedy:<15} {} healed, {} not: final forecast {:.3}",
            s.successes,
            s.failures,
            s.success_probability()
        );
    }
    let all: Vec<Forecast> = forecasts.iter().map(|(_, f)| *f).collect();
    let b = brier(&all).ok_or("no forecasts")?;
    let half: Vec<Forecast> = all.iter().map(|f| Forecast { p: 0.5, ..*f }).collect();
    let hindsight: Vec<Forecast> = forecasts
        .iter()
        .map(|(r, f)| {
            let s = stats[r];
            let rate = f64::from(s.successes) / f64::from((s.successes + s.failures).max(1));
            Forecast { p: rate, ..*f }
        })
        .collect();
    let table = reliability(&all, 10);
    println!("reliability (forecast bin: trials, mean forecast, observed success rate):");
    for bin in table.iter().filter(|b| b.count > 0) {
        println!(
            "  {:.1}–{:.1}: {:>4}  {:.3}  {:.3}",
            bin.lo, bin.hi, bin.count, bin.mean_forecast, bin.observed
        );
    }
    println!(
        "summary: trials={} brier={b:.4} brier_constant_half={:.4} brier_hindsight_rate={:.4} ece={:.4}",
        all.len(),
        brier(&half).unwrap_or(f64::NAN),
        brier(&hindsight).unwrap_or(f64::NAN),
        expected_calibration_error(&table)
    );
    Ok(())
}
