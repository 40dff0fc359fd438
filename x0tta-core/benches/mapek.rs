//! Hot paths of the MAPE-K loop, each beside a baseline measured in the same run
//! (see docs/PERFORMANCE.md for the figures and the ratios).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use x0tta_core::healing::{DefaultHealer, RobustCusum, ThresholdDetector};
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;

fn observation() -> Observation {
    let mut obs = Observation::new(NodeId::new("bench").unwrap());
    for (i, name) in [
        names::CPU_PERCENT,
        names::MEMORY_PERCENT,
        names::DISK_PERCENT,
        names::NET_RX_BPS,
        names::NET_TX_BPS,
    ]
    .iter()
    .enumerate()
    {
        obs.set(*name, 40.0 + i as f64);
    }
    for s in 0..8 {
        obs.set(
            service_metric(&format!("svc{s}"), names::SERVICE_MEMORY_MB),
            50.0 + s as f64,
        );
        obs.set(
            service_metric(&format!("svc{s}"), names::SERVICE_CPU_PERCENT),
            5.0,
        );
        obs.probes.push(ProbeResult {
            service: format!("svc{s}"),
            probe: "tcp".into(),
            healthy: true,
            detail: None,
            latency_ms: 1,
        });
    }
    for n in 0..16 {
        obs.neighbours.push(Neighbour {
            id: NodeId::new(format!("peer-{n}")).unwrap(),
            addresses: vec![],
            rtt_ms: Some(12.0),
            loss: 0.0,
            last_seen: Timestamp::now(),
            state: PeerState::Up,
            clock_offset_ms: Some(3),
        });
    }
    obs
}

fn incident(i: u64) -> Incident {
    let anomaly = Anomaly::new(
        AnomalyKind::MemoryPressure,
        Severity::High,
        0.9,
        Subject::Service(format!("svc{}", i % 8)),
        "threshold",
    )
    .with_evidence(Evidence {
        signal: "service.svc.memory_mb".into(),
        value: Some(300.0),
        reference: Some(256.0),
        note: "memory above limit".into(),
    });
    Incident {
        node: NodeId::new("bench").unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        root_cause: Some("memory above limit".into()),
        anomaly,
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

fn analyze(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let obs = observation();
    let policy = Policy::default();
    let standard = DefaultHealer::standard();
    let threshold_only = DefaultHealer::builder()
        .detector(Arc::new(ThresholdDetector::new()))
        .build();
    let mut g = c.benchmark_group("analyze");
    g.bench_function("baseline: clone observation", |b| {
        b.iter(|| black_box(obs.clone()))
    });
    g.bench_function("threshold detector", |b| {
        b.iter(|| rt.block_on(threshold_only.analyze(black_box(&obs), &policy)))
    });
    g.bench_function("threshold + statistical", |b| {
        b.iter(|| rt.block_on(standard.analyze(black_box(&obs), &policy)))
    });
    g.finish();

    let cfg = StatisticalPolicy::default();
    let mut cusum = RobustCusum::default();
    let mut x = 0.0f64;
    let mut g = c.benchmark_group("cusum");
    g.bench_function("baseline: f64 add", |b| {
        b.iter(|| {
            x += black_box(0.5);
            black_box(x)
        })
    });
    g.bench_function("push one point", |b| {
        b.iter(|| cusum.push(black_box(50.0), &cfg))
    });
    g.finish();
}

fn content_id(c: &mut Criterion) {
    let inc = incident(1);
    let bytes = to_dag_cbor(&inc).unwrap();
    let mut g = c.benchmark_group("content_id");
    g.bench_function("baseline: sha2-256 of the encoding", |b| {
        b.iter(|| Sha256::digest(black_box(&bytes)))
    });
    g.bench_function("incident: DAG-CBOR encode + CIDv1", |b| {
        b.iter(|| black_box(&inc).content_id().unwrap())
    });
    g.finish();
}

fn plan_and_cycle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let knowledge = MemoryKnowledge::new(1000);
    rt.block_on(async {
        for i in 0..1000 {
            knowledge.record(&incident(i)).await.unwrap();
        }
    });
    let query = SearchQuery {
        text: "MEMORY_PRESSURE service:svc3 HIGH memory above limit".into(),
        vector: None,
        kind: Some(AnomalyKind::MemoryPressure),
        limit: 20,
        filter: Default::default(),
    };
    let mut g = c.benchmark_group("knowledge");
    g.bench_function("baseline: recent(20)", |b| {
        b.iter(|| rt.block_on(knowledge.recent(20)).unwrap())
    });
    g.bench_function("search over 1000 incidents", |b| {
        b.iter(|| rt.block_on(knowledge.search(black_box(&query))).unwrap())
    });
    g.finish();

    struct Sig(NodeId);
    impl Signer for Sig {
        fn node_id(&self) -> &NodeId {
            &self.0
        }
        fn sign(&self, _: &[u8], m: &[u8]) -> Result<Signature, SignError> {
            Ok(Signature {
                signer: self.0.clone(),
                alg: "bench".into(),
                bytes: Sha256::digest(m).to_vec(),
            })
        }
    }
    let id = NodeId::new("bench").unwrap();
    let node = Node::builder()
        .transport(Arc::new(MemoryNetwork::new().join(id.clone())))
        .knowledge(Arc::new(MemoryKnowledge::new(1000)))
        .signer(Arc::new(Sig(id)))
        .build()
        .unwrap();
    let mut g = c.benchmark_group("cycle");
    g.bench_function("baseline: observe only", |b| {
        b.iter(|| rt.block_on(node.observe()))
    });
    g.bench_function("healthy MAPE-K cycle", |b| {
        b.iter(|| rt.block_on(node.run_cycle(WakeReason::Tick)))
    });
    g.finish();
}

criterion_group!(benches, analyze, content_id, plan_and_cycle);
criterion_main!(benches);
