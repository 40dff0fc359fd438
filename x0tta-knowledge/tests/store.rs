//! The redb store: durability across reopen, idempotence, retention, search, templates,
//! policies, and convergence of two stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use x0tta_core::*;
use x0tta_knowledge::{KnowledgeConfig, OpenError, RedbKnowledge};

fn incident(i: u64, kind: AnomalyKind, service: &str, note: &str) -> Incident {
    Incident {
        node: NodeId::new("n1").unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            kind,
            Severity::High,
            0.9,
            Subject::Service(service.into()),
            "threshold",
        )
        .with_evidence(Evidence {
            signal: "probe".into(),
            value: None,
            reference: None,
            note: note.into(),
        }),
        root_cause: Some(note.into()),
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

fn open(dir: &std::path::Path, retention: usize) -> RedbKnowledge {
    RedbKnowledge::open(
        dir.join("k.redb"),
        KnowledgeConfig::with_retention(retention),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_reopen_and_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = incident(
        1,
        AnomalyKind::ServiceDown,
        "web",
        "connection refused on port 8080",
    );
    let id = {
        let store = open(dir.path(), 100);
        let id = store.record(&a).await.unwrap();
        assert_eq!(
            store.record(&a).await.unwrap(),
            id,
            "same incident, same id"
        );
        assert_eq!(store.known_incidents().unwrap(), 1, "stored once");
        id
    };
    let store = open(dir.path(), 100);
    assert_eq!(store.get(&id).await.unwrap().unwrap(), a);
    assert_eq!(id, a.content_id().unwrap());
    let hits = store
        .search(&SearchQuery::text("connection refused"))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "the index is rebuilt on open");
    assert_eq!(hits[0].id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), 10);
    let second = RedbKnowledge::open(dir.path().join("k.redb"), KnowledgeConfig::default());
    assert!(matches!(second, Err(OpenError::Database { .. })));
    assert!(matches!(
        RedbKnowledge::open(
            dir.path().join("other.redb"),
            KnowledgeConfig::with_retention(0)
        ),
        Err(OpenError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_bodies_and_every_cid() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 5);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            store
                .record(&incident(
                    i,
                    AnomalyKind::DiskPressure,
                    "db",
                    &format!("disk {i} full"),
                ))
                .await
                .unwrap(),
        );
    }
    let recent = store.recent(100).await.unwrap();
    assert_eq!(
        recent.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids[3..].iter().rev().copied().collect::<Vec<_>>()
    );
    for old in &ids[..3] {
        assert!(store.get(old).await.unwrap().is_none(), "body evicted");
        assert!(store.knows(old).unwrap(), "CID kept");
    }
    assert_eq!(store.known_incidents().unwrap(), 8);
    let hits = store.search(&SearchQuery::text("disk full")).await.unwrap();
    assert_eq!(hits.len(), 5, "evicted incidents leave the index");
    drop(store);
    let reopened = open(dir.path(), 5);
    assert_eq!(reopened.recent(100).await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ranks_by_text_and_filters_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100);
    store
        .record(&incident(
            1,
            AnomalyKind::MemoryPressure,
            "cache",
            "heap grew past the limit",
        ))
        .await
        .unwrap();
    store
        .record(&incident(
            2,
            AnomalyKind::ServiceDown,
            "web",
            "process exited with signal 9",
        ))
        .await
        .unwrap();
    store
        .record(&incident(
            3,
            AnomalyKind::ServiceDown,
            "api",
            "connection refused",
        ))
        .await
        .unwrap();
    let hits = store
        .search(&SearchQuery::text("process exited signal"))
        .await
        .unwrap();
    assert_eq!(
        hits[0].incident.anomaly.subject,
        Subject::Service("web".into())
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let mut q = SearchQuery::text("service");
    q.kind = Some(AnomalyKind::MemoryPressure);
    let hits = store.search(&q).await.unwrap();
    assert!(
        hits.iter()
            .all(|h| h.incident.anomaly.kind == AnomalyKind::MemoryPressure)
    );
    assert!(
        store
            .search(&SearchQuery::text("zebra"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_and_policies_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 10);
        store
            .put_template(PlanTemplate {
                name: "restart".into(),
                description: String::new(),
                trigger: Trigger {
                    kinds: vec![AnomalyKind::ServiceDown],
                    min_severity: Severity::Medium,
                    subject: None,
                    services: vec![],
                },
                steps: vec![StepSpec::new("restart_service").timeout(Duration::from_secs(5))],
            })
            .await
            .unwrap();
        let mut p = Policy::default();
        store.record_policy(&p).await.unwrap();
        store.record_policy(&p).await.unwrap();
        p.version = 2;
        p.thresholds.cpu_percent = 70.0;
        store.record_policy(&p).await.unwrap();
    }
    let store = open(dir.path(), 10);
    assert_eq!(store.templates().await.unwrap()[0].name, "restart");
    let history = store.policy_history().await.unwrap();
    assert_eq!(
        history.iter().map(|p| p.version).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_converge_by_exchanging_state() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(da.path(), 100), open(db.path(), 100));
    for i in 0..3 {
        a.record(&incident(i, AnomalyKind::CpuOverload, "a", "hot"))
            .await
            .unwrap();
        b.record(&incident(100 + i, AnomalyKind::CpuOverload, "b", "hot"))
            .await
            .unwrap();
    }
    assert_eq!(
        b.merge_state(&a.export_state().await.unwrap())
            .await
            .unwrap(),
        MergeOutcome::Merged { added: 3 }
    );
    assert_eq!(
        a.merge_state(&b.export_state().await.unwrap())
            .await
            .unwrap(),
        MergeOutcome::Merged { added: 3 }
    );
    assert_eq!(
        a.merge_state(&b.export_state().await.unwrap())
            .await
            .unwrap(),
        MergeOutcome::NoChange
    );
    let ids = |s: &RedbKnowledge| s.known_incidents().unwrap();
    assert_eq!((ids(&a), ids(&b)), (6, 6));
    assert!(a.merge_state(b"not cbor").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_search_fuses_text_and_vectors_and_vectors_persist() {
    use std::sync::Arc;
    use x0tta_knowledge::LexicalEmbedder;
    let dir = tempfile::tempdir().unwrap();
    {
        // Incidents recorded before an embedder is set are embedded (and persisted) when it is.
        let plain = open(dir.path(), 100);
        plain
            .record(&incident(
                1,
                AnomalyKind::ServiceDown,
                "web",
                "restarted after segfault",
            ))
            .await
            .unwrap();
    }
    let store = open(dir.path(), 100)
        .with_embedder(Arc::new(LexicalEmbedder))
        .await
        .unwrap();
    store
        .record(&incident(
            2,
            AnomalyKind::MemoryPressure,
            "cache",
            "heap grew past the limit",
        ))
        .await
        .unwrap();
    store
        .record(&incident(
            3,
            AnomalyKind::DiskPressure,
            "db",
            "volume nearly full",
        ))
        .await
        .unwrap();
    // "restarting" shares no BM25 token with "restarted", but shares trigrams: the vector side
    // finds it.
    let hits = store
        .search(&SearchQuery::text("restarting"))
        .await
        .unwrap();
    assert_eq!(
        hits[0].incident.anomaly.subject,
        Subject::Service("web".into()),
        "{hits:?}"
    );
    // A query vector of the wrong width is refused.
    let mut q = SearchQuery::text("x");
    q.vector = Some(vec![0.0; 3]);
    assert!(store.search(&q).await.is_err());
    drop(store);
    // Reopened with the embedder: nothing left to embed, vector search still works.
    let again = open(dir.path(), 100)
        .with_embedder(Arc::new(LexicalEmbedder))
        .await
        .unwrap();
    let hits = again
        .search(&SearchQuery::text("restarting"))
        .await
        .unwrap();
    assert_eq!(
        hits[0].incident.anomaly.subject,
        Subject::Service("web".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_by_time_node_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100);
    for i in 0..6 {
        let mut inc = incident(i, AnomalyKind::ServiceDown, "web", "connection refused");
        if i % 2 == 0 {
            inc.node = NodeId::new("n2").unwrap();
        }
        if i >= 4 {
            inc.resolution = Resolution::Healed;
        }
        store.record(&inc).await.unwrap();
    }
    let mut q = SearchQuery::text("connection refused");
    q.filter.since = Some(Timestamp::from_millis(1_700_000_000_002));
    q.filter.until = Some(Timestamp::from_millis(1_700_000_000_005));
    let hits = store.search(&q).await.unwrap();
    assert_eq!(hits.len(), 3, "times 2, 3, 4");
    q.filter.node = Some(NodeId::new("n2").unwrap());
    assert_eq!(
        store.search(&q).await.unwrap().len(),
        2,
        "times 2 and 4 by n2"
    );
    q.filter.resolution = Some(Resolution::Healed);
    let hits = store.search(&q).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].incident.detected_at,
        Timestamp::from_millis(1_700_000_000_004)
    );
}

/// The CRDT log of the store at `dir`: deletes entry `seq`, as a log that lost a change would.
fn drop_log_entry(dir: &std::path::Path, seq: u64) {
    const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("crdt_log");
    let db = redb::Database::open(dir.join("k.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn.open_table(LOG).unwrap().remove(seq).unwrap().is_some());
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_missing_our_own_change_makes_the_store_write_under_a_new_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = open(dir.path(), 100);
        let counter = store.crdt().counter("restarts");
        counter.add(1).unwrap(); // log entry 0
        counter.add(1).unwrap(); // log entry 1 builds on entry 0
        store.crdt().client_id()
    };
    {
        let store = open(dir.path(), 100);
        assert_eq!(
            store.crdt().client_id(),
            first,
            "an intact log keeps its id"
        );
    }
    drop_log_entry(dir.path(), 0);
    let store = open(dir.path(), 100);
    let second = store.crdt().client_id();
    assert_ne!(
        second, first,
        "our change that cannot integrate forces a new id"
    );
    store.crdt().counter("restarts").add(5).unwrap();
    assert_eq!(store.crdt().counter("restarts").value(), 5);
    drop(store);
    let store = open(dir.path(), 100);
    assert_eq!(store.crdt().client_id(), second, "the new id is kept");
    assert_eq!(store.crdt().counter("restarts").value(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_database_writes_under_a_new_id_once_it_sees_its_twin() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    {
        let a = open(da.path(), 100);
        a.crdt().counter("c").add(1).unwrap();
    }
    std::fs::copy(da.path().join("k.redb"), db.path().join("k.redb")).unwrap();
    let (a, b) = (open(da.path(), 100), open(db.path(), 100));
    let twin = a.crdt().client_id();
    assert_eq!(b.crdt().client_id(), twin, "a copy starts with the same id");
    a.crdt().counter("c").add(1).unwrap();
    // B receives A's change, written under the id B believes its own.
    let diff = a.crdt().diff(&b.crdt().state_vector()).unwrap();
    b.apply_update(diff).await.unwrap();
    drop(b);
    let b = open(db.path(), 100);
    assert_ne!(b.crdt().client_id(), twin, "B reopens under a new id");
    b.crdt().counter("c").add(3).unwrap();
    let diff = b.crdt().diff(&a.crdt().state_vector()).unwrap();
    a.apply_update(diff).await.unwrap();
    assert_eq!(
        a.crdt().counter("c").value(),
        5,
        "both replicas' changes count"
    );
    assert_eq!(
        a.crdt().client_id(),
        twin,
        "A saw nothing under its id it had not written"
    );
}
