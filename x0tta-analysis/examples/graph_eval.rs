//! Trains GraphSAGE on labelled fault scenarios from the simulated mesh and scores it, the
//! same model without neighbour aggregation, and root-cause ranking against the "earliest
//! alarm" baseline, on scenario seeds never used in training.
//!
//! ```text
//! cargo run --release -p x0tta-analysis --features eval --example graph_eval -- \
//!     --train-seeds 0..40 --test-seeds 1000..1020 [--epochs N] [--patterns FILE] [--hard]
//! ```
//!
//! `--hard` runs `ScenarioConfig::hard` scenarios: mesh sizes and degrees vary, and benign
//! distractors start with the fault.
//!
//! Each seed yields one scenario per fault (8). The last line is
//! `summary: f1_macro=… f1_macro_no_graph=… accuracy=… rootcause_top1=… rootcause_top3=…
//! rootcause_top1_first_alarm=…`.

use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

use x0tta_analysis::graph::{GraphSage, Labelled};
use x0tta_analysis::rootcause::RootCause;
use x0tta_analysis::scenario::{self, CLASSES, Culprit, Fault, Scenario, ScenarioConfig};

struct Args {
    train: Range<u64>,
    test: Range<u64>,
    epochs: usize,
    patterns: Option<std::path::PathBuf>,
    hard: bool,
}

fn seeds(s: &str) -> Result<Range<u64>, String> {
    scenario::parse_seeds(s).map_err(|e| e.to_string())
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        train: 0..40,
        test: 1000..1020,
        epochs: 60,
        patterns: None,
        hard: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--hard" {
            args.hard = true;
            continue;
        }
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--train-seeds" => args.train = seeds(&value()?)?,
            "--test-seeds" => args.test = seeds(&value()?)?,
            "--epochs" => {
                args.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?;
            }
            "--patterns" => args.patterns = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.train.start < args.test.end && args.test.start < args.train.end {
        return Err("training and test seeds overlap".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("graph_eval: {e}");
            eprintln!(
                "usage: graph_eval [--train-seeds A..B] [--test-seeds C..D] [--epochs N] [--patterns FILE] [--hard]"
            );
            return ExitCode::from(2);
        }
    };
    match eval(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graph_eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn eval(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = ScenarioConfig {
        hard: args.hard,
        ..ScenarioConfig::default()
    };
    let t0 = Instant::now();
    let train = scenario::generate(args.train.clone(), &cfg)?;
    let test = scenario::generate(args.test.clone(), &cfg)?;
    println!(
        "scenarios: {} training (seeds {:?}), {} test (seeds {:?}), {}, simulated in {:.1} s",
        train.len(),
        args.train,
        test.len(),
        args.test,
        if args.hard {
            "hard: 15-60 nodes, degree 4-8, distractors".to_string()
        } else {
            format!("{} nodes each", cfg.nodes)
        },
        t0.elapsed().as_secs_f64()
    );
    let train_data: Vec<Labelled> = train
        .iter()
        .map(Scenario::labelled)
        .collect::<Result<_, _>>()?;
    let test_data: Vec<Labelled> = test
        .iter()
        .map(Scenario::labelled)
        .collect::<Result<_, _>>()?;

    let mut results = Vec::new();
    for use_graph in [true, false] {
        let mut model = GraphSage::new(scenario::sage_config(use_graph), 1)?;
        let t = Instant::now();
        let losses = model.train(&train_data, args.epochs, 0.01)?;
        let train_s = t.elapsed().as_secs_f64();
        let mut probabilities = Vec::new();
        let (mut correct, mut total) = (0usize, 0usize);
        for (i, d) in test_data.iter().enumerate() {
            let p = model.probabilities(&d.graph, i as u64)?;
            for (row, label) in p.iter().zip(&d.labels) {
                let best = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(c, _)| c);
                correct += usize::from(best as u32 == *label);
                total += 1;
            }
            probabilities.push(p);
        }
        let (f1, per_class) = scenario::evaluate(&model, &test_data)?;
        let accuracy = correct as f64 / total.max(1) as f64;
        println!(
            "{}: trained {} epochs in {:.1} s (loss {:.4} -> {:.4}); macro-F1 {f1:.4}, accuracy {accuracy:.4}",
            if use_graph { "graphsage" } else { "no-graph" },
            args.epochs,
            train_s,
            losses.first().copied().unwrap_or(0.0),
            losses.last().copied().unwrap_or(0.0),
        );
        for (c, f) in per_class.iter().enumerate() {
            let name = Fault::from_class(c as u32).map_or("?", Fault::name);
            println!("  {name:<14} F1 {f:.4}");
        }
        results.push((model, f1, accuracy, probabilities));
    }

    // Root cause, with the graph model's probabilities.
    let (model, f1, accuracy, probabilities) = results.remove(0);
    let f1_no_graph = results[0].1;
    let ranker = RootCause::new();
    let (mut top1, mut top3, mut first, mut cases) = (0usize, 0usize, 0usize, 0usize);
    let mut rank_us = 0.0;
    // Per fault: cases, ranker top-1, earliest alarm.
    let mut by_fault = [(0usize, 0usize, 0usize); CLASSES];
    for (s, p) in test.iter().zip(&probabilities) {
        if s.culprit == Culprit::None {
            continue;
        }
        cases += 1;
        let row = &mut by_fault[s.fault.class() as usize];
        row.0 += 1;
        let neighbours = s.neighbours();
        let ev = s.evidence(p);
        let t = Instant::now();
        let ranked = ranker.rank(&neighbours, &ev, 3)?;
        rank_us += t.elapsed().as_secs_f64() * 1e6;
        if ranked
            .first()
            .is_some_and(|r| s.culprit.named_by(&r.candidate))
        {
            top1 += 1;
            row.1 += 1;
        }
        if ranked.iter().any(|r| s.culprit.named_by(&r.candidate)) {
            top3 += 1;
        }
        // The baseline names a node; for a broken link either end counts.
        if s.earliest_alarm().is_some_and(|v| s.culprit.involves(v)) {
            first += 1;
            row.2 += 1;
        }
    }
    let cases_f = cases.max(1) as f64;
    println!(
        "root cause over {cases} faulty test scenarios: top-1 {top1}, top-3 {top3}, earliest alarm {first}; {:.1} µs per ranking",
        rank_us / cases_f
    );
    for (c, (n, ranked, early)) in by_fault.iter().enumerate().filter(|r| r.1.0 > 0) {
        let name = Fault::from_class(c as u32).map_or("?", Fault::name);
        println!("  {name:<14} top-1 {ranked}/{n}, earliest alarm {early}/{n}");
    }
    if let Some(path) = &args.patterns {
        let signer = x0tta_pqc::MlDsa65Signer::new(
            x0tta_core::NodeId::new("graph-eval")?,
            x0tta_pqc::MlDsa65Keypair::generate(),
        );
        let (bytes, id) = model.to_patterns(1, &signer)?;
        std::fs::write(path, &bytes)?;
        println!("patterns: {} ({} bytes, {id})", path.display(), bytes.len());
    }
    println!(
        "summary: f1_macro={f1:.4} f1_macro_no_graph={f1_no_graph:.4} accuracy={accuracy:.4} rootcause_top1={:.4} rootcause_top3={:.4} rootcause_top1_first_alarm={:.4}",
        top1 as f64 / cases_f,
        top3 as f64 / cases_f,
        first as f64 / cases_f
    );
    Ok(())
}
