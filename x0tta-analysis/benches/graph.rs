//! GraphSAGE costs (feature `graph`): inference for one node's 2-hop neighbourhood and for a
//! 1,000-node graph, and one training epoch, against a baseline in the same run: the first
//! layer alone without aggregation (a plain linear layer over the same nodes).
//!
//! `cargo bench -p x0tta-analysis --features graph --bench graph`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use x0tta_analysis::graph::{Graph, GraphSage, Labelled, SageConfig};

/// A random graph: `n` nodes, ~`degree` neighbours each, 8 features (deterministic).
fn graph(n: usize, degree: usize, seed: u64) -> Graph {
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let features = (0..n)
        .map(|_| (0..8).map(|_| (next() % 1000) as f32 / 1000.0).collect())
        .collect();
    let mut edges = Vec::new();
    for v in 0..n {
        for _ in 0..degree / 2 {
            edges.push((v, next() % n));
        }
    }
    Graph::new(features, &edges).unwrap()
}

/// Node 0's 2-hop neighbourhood of `g`, as its own graph (what one node sees).
fn two_hop(g: &Graph) -> Graph {
    let mut nodes = vec![0usize];
    for &u in g.neighbours(0) {
        nodes.push(u);
    }
    for i in 1..nodes.len() {
        for &w in g.neighbours(nodes[i]) {
            if !nodes.contains(&w) {
                nodes.push(w);
            }
        }
    }
    let index = |v: usize| nodes.iter().position(|&x| x == v);
    let mut edges = Vec::new();
    for (i, &v) in nodes.iter().enumerate() {
        for &w in g.neighbours(v) {
            if let Some(j) = index(w) {
                edges.push((i, j));
            }
        }
    }
    let features = nodes
        .iter()
        .map(|&v| g.feature(v).unwrap().to_vec())
        .collect();
    Graph::new(features, &edges).unwrap()
}

fn bench(c: &mut Criterion) {
    let cfg = SageConfig {
        features: 8,
        hidden: 32,
        classes: 7,
        samples: [10, 5],
        use_graph: true,
    };
    let model = GraphSage::new(cfg, 1).unwrap();
    let blind = GraphSage::new(
        SageConfig {
            use_graph: false,
            ..cfg
        },
        1,
    )
    .unwrap();
    let big = graph(1_000, 6, 7);
    let local = two_hop(&big);
    eprintln!("2-hop neighbourhood of node 0: {} nodes", local.len());
    let mut g = c.benchmark_group("graphsage");
    g.sample_size(20);
    g.bench_function("baseline_no_aggregation_1000", |b| {
        b.iter(|| blind.logits(&big, 1).unwrap())
    });
    g.bench_function("inference_2hop_one_node", |b| {
        b.iter(|| model.logits(&local, 1).unwrap())
    });
    g.bench_function("inference_1000_nodes", |b| {
        b.iter(|| model.logits(&big, 1).unwrap())
    });
    let data: Vec<Labelled> = (0..10)
        .map(|k| {
            let gr = graph(100, 6, k);
            let labels = (0..100).map(|v| (v % 7) as u32).collect();
            Labelled { graph: gr, labels }
        })
        .collect();
    let mut trainee = GraphSage::new(cfg, 2).unwrap();
    g.sample_size(10);
    g.bench_function("train_epoch_10_graphs_of_100", |b| {
        b.iter(|| trainee.train(&data, 1, 0.01).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
