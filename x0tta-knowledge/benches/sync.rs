//! Sync of 1,000 incidents between two nodes over real libp2p links on loopback (TCP, the
//! PQ-authenticated `/x0tta/pq/1.0.0` upgrade, yamux): node A recorded them (each signed
//! into its document); a fresh node B syncs.
//!
//! - `document`: state vectors and the diff B lacks (the incidents map entries), applied and
//!   logged durably — the CRDT sync itself;
//! - `envelopes`: B fetches the 1,000 signed envelopes over `/x0tta/block/1`, checks each
//!   CID and ML-DSA-65 signature, and stores the incidents durably (one commit per batch);
//!   the same verification and store without the network is measured beside it;
//! - baseline, same run: the same diff computed and applied between two in-memory documents.
//!
//! `cargo bench -p x0tta-knowledge --bench sync`; bytes moved are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use x0tta_core::*;
use x0tta_knowledge::{CrdtDoc, KnowledgeConfig, RedbKnowledge, Replicator};
use x0tta_mesh::p2p::{P2pConfig, P2pTransport};
use x0tta_pqc::{IdentityRing, NodeIdentity};

const N: u64 = 1_000;

fn incident(node: &NodeId, i: u64) -> Incident {
    Incident {
        node: node.clone(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::ALL[(i % 9) as usize],
            Severity::High,
            0.9,
            Subject::Service(format!("svc-{}", i % 17)),
            "threshold",
        ),
        root_cause: Some(format!("incident {i}: memory of svc-{} above 90%", i % 17)),
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

fn config(bootstrap: Vec<libp2p::Multiaddr>) -> P2pConfig {
    P2pConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        mdns: false,
        ..P2pConfig::default()
    }
}

struct Peer {
    _dir: tempfile::TempDir,
    store: RedbKnowledge,
    rep: Replicator,
    transport: P2pTransport,
}

async fn peer(id: &NodeIdentity, ring: &IdentityRing, bootstrap: Vec<libp2p::Multiaddr>) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbKnowledge::open(dir.path().join("k.redb"), KnowledgeConfig::default()).unwrap();
    store.set_signer(Arc::new(id.clone())).await.unwrap();
    let transport = P2pTransport::start(id, config(bootstrap)).await.unwrap();
    let rep = Replicator::start(
        store.clone(),
        Arc::new(transport.clone()),
        Arc::new(ring.clone()),
    )
    .await
    .unwrap();
    Peer {
        _dir: dir,
        store,
        rep,
        transport,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ids: Vec<NodeIdentity> = vec![NodeIdentity::generate("spiffe://bench/a".parse().unwrap())];
    let ring = ids
        .iter()
        .fold(IdentityRing::new(), |r, id| r.with(id.record().clone()));
    let a = rt.block_on(async {
        let a = peer(&ids[0], &ring, vec![]).await;
        for i in 0..N {
            a.store
                .record(&incident(ids[0].node_id(), i))
                .await
                .unwrap();
        }
        a
    });
    let entry = a.transport.listen_addrs()[0].clone();
    let a_id = ids[0].node_id().clone();

    // Baseline: the same diff between two in-memory documents.
    let state = a.store.crdt().encode_state();
    let mut g = c.benchmark_group("sync 1000 incidents");
    g.sample_size(10);
    g.bench_function("baseline: in-memory diff + apply", |b| {
        b.iter(|| {
            let fresh = CrdtDoc::with_client_id(7);
            let diff = a.store.crdt().diff(&fresh.state_vector()).unwrap();
            fresh.apply(&diff).unwrap();
        })
    });
    let mut printed = false;
    g.bench_function("document over libp2p (diff, apply, durable log)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (d, report) = rt.block_on(async {
                    let bp = fresh_b(&ring, &entry).await;
                    let t = Instant::now();
                    let report = bp
                        .rep
                        .sync_document(&a_id, Duration::from_secs(30))
                        .await
                        .unwrap();
                    let d = t.elapsed();
                    bp.transport.shutdown().await;
                    (d, report)
                });
                if !printed {
                    println!(
                        "document: {} bytes received, {} sent (full state {} bytes)",
                        report.update_bytes_received,
                        report.update_bytes_sent,
                        state.len()
                    );
                    printed = true;
                }
                total += d;
            }
            total
        })
    });
    // Breakdown, no network: verify the 1,000 envelopes and store them in one commit.
    let fetched = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let b = RedbKnowledge::open(dir.path().join("k.redb"), KnowledgeConfig::default()).unwrap();
        b.apply_update(state.clone()).await.unwrap();
        let wanted = b.wanted(N as usize).await.unwrap();
        let cids = wanted.iter().map(|w| w.envelope).collect();
        let blocks = a.store.blocks(cids, usize::MAX).await.unwrap();
        assert_eq!(blocks.len(), wanted.len());
        wanted
            .into_iter()
            .zip(blocks)
            .map(|(w, (_, bytes))| (w, bytes))
            .collect::<Vec<_>>()
    });
    g.bench_function(
        "envelopes, no network (verify ML-DSA-65 on 2 threads, store)",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(async {
                        let dir = tempfile::tempdir().unwrap();
                        let b = RedbKnowledge::open(
                            dir.path().join("k.redb"),
                            KnowledgeConfig::default(),
                        )
                        .unwrap();
                        b.apply_update(state.clone()).await.unwrap();
                        let t = Instant::now();
                        let out = b
                            .accept_envelopes(fetched.clone(), Arc::new(ring.clone()))
                            .await
                            .unwrap();
                        let d = t.elapsed();
                        assert!(out.iter().all(Result::is_ok));
                        d
                    });
                }
                total
            })
        },
    );
    let mut printed = false;
    g.bench_function(
        "envelopes over libp2p (fetch, verify ML-DSA-65, store)",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (d, report) = rt.block_on(async {
                        let bp = fresh_b(&ring, &entry).await;
                        bp.rep
                            .sync_document(&a_id, Duration::from_secs(30))
                            .await
                            .unwrap();
                        let t = Instant::now();
                        let report = bp.rep.fetch(&a_id, Duration::from_secs(30)).await.unwrap();
                        let d = t.elapsed();
                        assert_eq!(report.incidents_added as u64, N);
                        bp.transport.shutdown().await;
                        (d, report)
                    });
                    if !printed {
                        println!(
                            "envelopes: {} bytes received, {} stored, {} refused",
                            report.block_bytes_received, report.incidents_added, report.refused
                        );
                        printed = true;
                    }
                    total += d;
                }
                total
            })
        },
    );
    g.finish();
}

/// Node B with a fresh identity (A sees a new peer, as on first contact), connected to A.
async fn fresh_b(ring: &IdentityRing, entry: &libp2p::Multiaddr) -> Peer {
    let id = NodeIdentity::generate("spiffe://bench/b".parse().unwrap());
    let b = peer(&id, ring, vec![entry.clone()]).await;
    wait_connected(&b.transport).await;
    b
}

async fn wait_connected(t: &P2pTransport) {
    for _ in 0..400 {
        if t.stats().connections >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no connection to A");
}

criterion_group!(benches, bench);
criterion_main!(benches);
