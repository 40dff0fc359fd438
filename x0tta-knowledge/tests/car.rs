//! CARv1 export/import: round trip with identical CIDs, corrupt blocks refused, bad streams
//! rejected with an error (never a panic).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use x0tta_core::*;
use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};

fn incident(i: u64) -> Incident {
    Incident {
        node: NodeId::new("n1").unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::LinkDegraded,
            Severity::Medium,
            0.8,
            Subject::Mesh,
            "t",
        ),
        root_cause: Some(format!("loss spike {i}")),
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

async fn store_with(n: u64) -> (tempfile::TempDir, RedbKnowledge, Vec<ContentId>) {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbKnowledge::open(dir.path().join("k.redb"), KnowledgeConfig::default()).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(s.record(&incident(i)).await.unwrap());
    }
    (dir, s, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_keeps_every_cid() {
    let (_da, a, ids) = store_with(12).await;
    let mut car = Vec::new();
    let exported = a.export_car(&mut car).await.unwrap();
    assert_eq!(exported.incidents, 12);
    assert!(exported.root.to_string().starts_with("bafyrei"));

    let (_db, b, _) = store_with(0).await;
    let report = b.import_car(car.as_slice()).await.unwrap();
    assert_eq!(
        (report.added, report.already_known, report.other_blocks),
        (12, 0, 1)
    );
    assert!(report.refused.is_empty());
    for id in &ids {
        assert_eq!(b.get(id).await.unwrap().unwrap().content_id().unwrap(), *id);
    }
    let again = b.import_car(car.as_slice()).await.unwrap();
    assert_eq!((again.added, again.already_known), (0, 12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_block_is_refused_and_the_rest_imported() {
    let (_da, a, ids) = store_with(5).await;
    let mut car = Vec::new();
    a.export_car(&mut car).await.unwrap();
    let last = car.len() - 1;
    car[last] ^= 0x01; // the last byte belongs to the newest incident's block
    let (_db, b, _) = store_with(0).await;
    let report = b.import_car(car.as_slice()).await.unwrap();
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].cid, ids[4].to_string());
    assert_eq!(report.added, 4);
    assert!(
        b.get(&ids[4]).await.unwrap().is_none(),
        "nothing unverified is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_are_errors() {
    let (_da, a, _) = store_with(3).await;
    let mut car = Vec::new();
    a.export_car(&mut car).await.unwrap();
    let (_db, b, _) = store_with(0).await;
    assert!(
        b.import_car(&car[..car.len() - 7]).await.is_err(),
        "truncated"
    );
    assert!(
        b.import_car(&b"\x05garbage and more"[..]).await.is_err(),
        "not a CAR"
    );
    assert!(b.import_car(&[][..]).await.is_err(), "empty");
    let huge_length = [0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(
        b.import_car(&huge_length[..]).await.is_err(),
        "length prefix beyond the bound"
    );
}
