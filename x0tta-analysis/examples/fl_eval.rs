//! Federated learning across the simulated mesh with a third of the nodes lying: the
//! honest-only model, then FedAvg, coordinate-wise median, trimmed mean and Krum with the
//! liars, all scored (macro-F1) on scenario seeds no node trained on.
//!
//! ```text
//! cargo run --release -p x0tta-analysis --features eval --example fl_eval -- \
//!     [--nodes 30] [--poisoned 10] [--rounds 40] [--epochs 20] [--lr 0.03] [--clip 10]
//! ```
//!
//! Node `i` trains on the 8 scenarios (one per fault) of seed `100 + i`; the test seeds are
//! 900..920. Liar `i` sign-flips, scales ×100 or sends noise, in turn. The last line is
//! `summary: f1_honest=… f1_fedavg=… f1_median=… f1_trimmed_mean=… f1_krum=… update_bytes=…`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use x0tta_analysis::federated::sim::{Attack, SimRun};
use x0tta_analysis::federated::{FlConfig, Rule, sim};
use x0tta_analysis::graph::{GraphError, GraphSage, Labelled};
use x0tta_analysis::scenario::{self, Scenario, ScenarioConfig};
use x0tta_core::{NodeId, Signer};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

fn labelled(s: &[Scenario]) -> Result<Vec<Labelled>, GraphError> {
    s.iter().map(Scenario::labelled).collect()
}

fn f1(model: &GraphSage, test: &[Labelled]) -> Result<f64, GraphError> {
    Ok(scenario::evaluate(model, test)?.0)
}

struct Args {
    nodes: usize,
    poisoned: usize,
    rounds: usize,
    epochs: usize,
    lr: f64,
    clip: f32,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nodes: 30,
        poisoned: 10,
        rounds: 40,
        epochs: 20,
        lr: 0.03,
        clip: 10.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--nodes" => a.nodes = v.parse().map_err(|e| bad(&e))?,
            "--poisoned" => a.poisoned = v.parse().map_err(|e| bad(&e))?,
            "--rounds" => a.rounds = v.parse().map_err(|e| bad(&e))?,
            "--epochs" => a.epochs = v.parse().map_err(|e| bad(&e))?,
            "--lr" => a.lr = v.parse().map_err(|e| bad(&e))?,
            "--clip" => a.clip = v.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.poisoned >= a.nodes || a.nodes == 0 {
        return Err("need more nodes than liars".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fl_eval: {e}");
            return ExitCode::from(2);
        }
    };
    match eval(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fl_eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn eval(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = ScenarioConfig::default();
    let t0 = Instant::now();
    let mut data = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes as u64 {
        data.push(labelled(&scenario::generate(100 + i..101 + i, &cfg)?)?);
    }
    let test = labelled(&scenario::generate(900..920, &cfg)?)?;
    println!(
        "data: {} nodes × {} scenarios, {} test scenarios, simulated in {:.1} s",
        args.nodes,
        data[0].len(),
        test.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut ring = KeyRing::new();
    let mut signers: Vec<Arc<dyn Signer>> = Vec::new();
    for i in 0..args.nodes {
        let id = NodeId::new(format!("n{i}"))?;
        let s = MlDsa65Signer::new(id.clone(), MlDsa65Keypair::generate());
        ring.insert(id, s.public_key().clone());
        signers.push(Arc::new(s));
    }
    let run = |rule: Rule| SimRun {
        rounds: args.rounds,
        fl: FlConfig {
            rule,
            clip_norm: args.clip,
            max_norm: None,
            epochs: args.epochs,
            lr: args.lr,
        },
        sage: scenario::sage_config(true),
        seed: 1,
        wait: Duration::from_secs(2),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let honest_n = args.nodes - args.poisoned;
    let t = Instant::now();
    let honest = rt.block_on(sim::run(
        &run(Rule::FedAvg),
        &data[args.poisoned..],
        &vec![None; honest_n],
        &signers[args.poisoned..],
        &ring,
    ))?;
    let f1_honest = f1(&honest.model, &test)?;
    println!(
        "honest only ({honest_n} nodes, fedavg): macro-F1 {f1_honest:.4}; {} rounds in {:.1} s; update {} bytes",
        args.rounds,
        t.elapsed().as_secs_f64(),
        honest.update_bytes
    );
    let attacks: Vec<Option<Attack>> = (0..args.nodes)
        .map(|i| (i < args.poisoned).then(|| Attack::mixed(i)))
        .collect();
    let mut line = format!("summary: f1_honest={f1_honest:.4}");
    for rule in [
        Rule::FedAvg,
        Rule::Median,
        Rule::TrimmedMean { trim: 1.0 / 3.0 },
        Rule::Krum {
            byzantine: args.poisoned,
        },
    ] {
        let t = Instant::now();
        let out = rt.block_on(sim::run(&run(rule), &data, &attacks, &signers, &ring))?;
        let score = f1(&out.model, &test)?;
        println!(
            "{:<13} with {} of {} lying: macro-F1 {score:.4} ({:+.4} vs honest only) in {:.1} s",
            rule.name(),
            args.poisoned,
            args.nodes,
            score - f1_honest,
            t.elapsed().as_secs_f64()
        );
        line.push_str(&format!(" f1_{}={score:.4}", rule.name()));
    }
    println!("{line} update_bytes={}", honest.update_bytes);
    Ok(())
}
