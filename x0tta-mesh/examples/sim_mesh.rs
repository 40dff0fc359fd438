//! A simulated mesh of `--nodes N` nodes (default 10,000) on tokio's paused clock: crash one
//! node, cut 30% of the mesh away and heal it, gossip from one node to all; prints one
//! `summary:` line with the measured figures.
//!
//! ```text
//! cargo run --release -p x0tta-mesh --features sim --example sim_mesh -- --nodes 10000
//! ```
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use tokio::time::{Instant, sleep, timeout_at};
use x0tta_core::{MeshEvent, NodeId, Transport, topics};
use x0tta_mesh::sim::{SimConfig, SimEvent, SimEvents, SimNetwork};

struct Args {
    nodes: usize,
    seed: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        nodes: 10_000,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--nodes" => args.nodes = value.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--seed" => args.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            _ => return Err(format!("unknown argument {a}; use --nodes N [--seed S]")),
        }
    }
    if args.nodes < 10 {
        return Err("--nodes must be at least 10".into());
    }
    Ok(args)
}

/// Reads events until `on` returns true or `limit` passes.
async fn watch(
    events: &mut SimEvents,
    limit: Duration,
    mut on: impl FnMut(&SimEvent) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while let Ok(Some(e)) = timeout_at(deadline, events.next()).await {
        if on(&e) {
            return true;
        }
    }
    false
}

fn id(i: usize) -> NodeId {
    NodeId::new(format!("n{i:05}")).unwrap_or_else(|_| unreachable!("valid id"))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let net = SimNetwork::new(args.seed, SimConfig::default());
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        nodes.push(net.join(id(i))?);
    }
    sleep(Duration::from_secs(3)).await;
    let mut events = net.events();
    let mut false_downs = 0usize;

    // 1. Crash one node: time until every overlay neighbour holds it down.
    let victim = id(args.nodes / 2);
    let mut pending: BTreeSet<NodeId> = net.overlay_neighbours(&victim).into_iter().collect();
    let t0 = net.elapsed();
    let mut mttd = Duration::ZERO;
    net.crash(&victim)?;
    let detected = watch(&mut events, Duration::from_secs(60), |e| {
        if let MeshEvent::PeerDown(p) = &e.event {
            if *p == victim && pending.remove(&e.node) {
                mttd = e.at - t0;
            } else if *p != victim {
                false_downs += 1;
            }
        }
        pending.is_empty()
    })
    .await;
    if !detected {
        return Err(format!("crash not detected by {} neighbours", pending.len()).into());
    }

    // 2. Cut 30% away, wait for detection, heal: time until every cross link is up again.
    let mut all: Vec<NodeId> = net.nodes();
    all.retain(|n| *n != victim);
    all.shuffle(&mut SmallRng::seed_from_u64(args.seed ^ 0x5eed));
    let cut = all.len() * 3 / 10;
    let minority: BTreeSet<NodeId> = all[..cut].iter().cloned().collect();
    let mut cross: BTreeSet<(NodeId, NodeId)> = BTreeSet::new();
    for a in &minority {
        for b in net.overlay_neighbours(a) {
            if !minority.contains(&b) && b != victim {
                cross.insert((a.clone(), b.clone()));
                cross.insert((b, a.clone()));
            }
        }
    }
    let t1 = net.elapsed();
    net.partition(&[minority.iter().cloned().collect(), all[cut..].to_vec()]);
    let mut pending = cross.clone();
    let mut partition_ms = Duration::ZERO;
    let detected = watch(&mut events, Duration::from_secs(120), |e| {
        if let MeshEvent::PeerDown(p) = &e.event
            && !pending.remove(&(e.node.clone(), p.clone()))
            && !cross.contains(&(e.node.clone(), p.clone()))
            && *p != victim
        {
            false_downs += 1;
        }
        if pending.is_empty() {
            partition_ms = e.at - t1;
        }
        pending.is_empty()
    })
    .await;
    if !detected {
        return Err(format!("{} cross links never went down", pending.len()).into());
    }
    sleep(Duration::from_millis(2345)).await;
    while events.try_next().is_some() {}
    let t2 = net.elapsed();
    net.heal();
    let mut pending = cross.clone();
    let mut recovery = Duration::ZERO;
    let healed = watch(&mut events, Duration::from_secs(120), |e| {
        match &e.event {
            MeshEvent::PeerUp(p) if pending.remove(&(e.node.clone(), p.clone())) => {
                recovery = e.at - t2;
            }
            MeshEvent::PeerDown(p) if *p != victim => false_downs += 1,
            _ => {}
        }
        pending.is_empty()
    })
    .await;
    if !healed {
        return Err(format!("{} cross links never came back", pending.len()).into());
    }

    // 3. Gossip from one node to all live ones.
    let arrivals = Arc::new(Mutex::new(Vec::with_capacity(args.nodes)));
    for n in nodes.iter().skip(1).filter(|n| *n.local_id() != victim) {
        let mut sub = n.subscribe(topics::INCIDENTS).await?;
        let arrivals = Arc::clone(&arrivals);
        tokio::spawn(async move {
            if sub.next().await.is_some()
                && let Ok(mut a) = arrivals.lock()
            {
                a.push(Instant::now());
            }
        });
    }
    sleep(Duration::from_millis(1)).await;
    let t3 = Instant::now();
    nodes[0]
        .publish(topics::INCIDENTS, b"incident".to_vec())
        .await?;
    sleep(Duration::from_secs(10)).await;
    let mut times: Vec<Duration> = arrivals
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .map(|t| *t - t3)
        .collect();
    times.sort();
    let pct = |p: f64| {
        let i = ((times.len().saturating_sub(1)) as f64 * p).round() as usize;
        times.get(i).copied().unwrap_or_default()
    };
    let stats = net.stats();
    println!(
        "crash: watchers={} mttd_ms={}",
        net.overlay_neighbours(&victim).len(),
        mttd.as_millis()
    );
    println!(
        "partition: minority={} cross_links={} detection_ms={} recovery_ms={}",
        minority.len(),
        cross.len() / 2,
        partition_ms.as_millis(),
        recovery.as_millis()
    );
    println!(
        "gossip: reached={}/{} p50_ms={} p99_ms={}",
        times.len(),
        args.nodes - 2,
        pct(0.5).as_millis(),
        pct(0.99).as_millis()
    );
    println!(
        "wire: frames={} lost={} dropped={} simulated_s={:.1} real_s={:.1} lagged_events={}",
        stats.sent,
        stats.lost,
        stats.dropped,
        net.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        events.lagged()
    );
    println!(
        "summary: nodes={} mttd_ms={} recovery_ms={} gossip_p50_ms={} gossip_p99_ms={} false_downs={}",
        args.nodes,
        mttd.as_millis(),
        recovery.as_millis(),
        pct(0.5).as_millis(),
        pct(0.99).as_millis(),
        false_downs
    );
    net.shutdown();
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?
        .block_on(run(args))
}
