//! Replication between nodes on an in-process mesh: a node's incident reaches its peers'
//! stores through signed gossip; a late joiner pulls it; forged gossip is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use x0tta_core::memory::MemoryNetwork;
use x0tta_core::*;
use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge, Replicator};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

struct Hot;

#[async_trait::async_trait]
impl Sensor for Hot {
    fn name(&self) -> &str {
        "hot"
    }
    async fn read(&self, _: &Policy) -> Result<Reading, SensorError> {
        Ok(Reading::default().metric(names::DISK_PERCENT, 99.9))
    }
}

fn store(dir: &tempfile::TempDir, name: &str) -> RedbKnowledge {
    RedbKnowledge::open(
        dir.path().join(format!("{name}.redb")),
        KnowledgeConfig::default(),
    )
    .unwrap()
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_replicate_by_gossip_and_by_pull() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemoryNetwork::new();
    let signers: Vec<Arc<MlDsa65Signer>> = ["a", "b", "c", "mallory"]
        .iter()
        .map(|n| {
            Arc::new(MlDsa65Signer::new(
                NodeId::new(*n).unwrap(),
                MlDsa65Keypair::generate(),
            ))
        })
        .collect();
    let ring: Arc<KeyRing> = Arc::new(
        signers
            .iter()
            .map(|s| (s.node_id().clone(), s.public_key().clone()))
            .collect(),
    );
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    let ta: Arc<dyn Transport> = Arc::new(net.join(signers[0].node_id().clone()));
    let tb: Arc<dyn Transport> = Arc::new(net.join(signers[1].node_id().clone()));
    let tm = net.join(signers[3].node_id().clone());
    Replicator::start(a.clone(), ta.clone(), ring.clone())
        .await
        .unwrap();
    Replicator::start(b.clone(), tb, ring.clone())
        .await
        .unwrap();

    // Node a detects DISK_PRESSURE; its loop records and publishes the incident.
    let node = Node::builder()
        .transport(ta)
        .knowledge(Arc::new(a.clone()))
        .signer(signers[0].clone())
        .sensor(Arc::new(Hot))
        .build()
        .unwrap();
    let report = node.run_cycle(WakeReason::Requested).await;
    let (id, _) = report.incidents[0];
    eventually("b never stored a's incident", async || {
        b.get(&id).await.unwrap().is_some()
    })
    .await;

    // Mallory gossips a fake incident in a's name, signed with its own key: refused.
    let mut fake = a.get(&id).await.unwrap().unwrap();
    fake.root_cause = Some("forged".into());
    let msg = IncidentMessage::Incident {
        incident: Box::new(fake.clone()),
    };
    let env = Envelope::seal(
        signers[3].as_ref(),
        contexts::INCIDENT,
        to_dag_cbor(&msg).unwrap(),
    )
    .unwrap();
    tm.publish(topics::INCIDENTS, to_dag_cbor(&env).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        b.get(&fake.content_id().unwrap()).await.unwrap().is_none(),
        "forged incident stored"
    );

    // c joins after the fact and pulls what a recorded.
    let c = store(&dir, "c");
    let tc: Arc<dyn Transport> = Arc::new(net.join(signers[2].node_id().clone()));
    let rc = Replicator::start(c.clone(), tc, ring).await.unwrap();
    assert_eq!(
        rc.pull(signers[0].node_id(), Duration::from_secs(2))
            .await
            .unwrap(),
        1
    );
    assert!(c.get(&id).await.unwrap().is_some());
    assert_eq!(
        rc.pull(signers[0].node_id(), Duration::from_secs(2))
            .await
            .unwrap(),
        0,
        "nothing new the second time"
    );
    // b pulls from a too: it already has the incident.
    assert_eq!(
        rc.pull(signers[1].node_id(), Duration::from_secs(2))
            .await
            .unwrap(),
        0,
        "b serves only its own incidents"
    );
}
