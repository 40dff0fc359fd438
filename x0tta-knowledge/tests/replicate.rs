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
    // Each node signs its own incidents into the replicated document.
    a.set_signer(signers[0].clone()).await.unwrap();
    b.set_signer(signers[1].clone()).await.unwrap();
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

    // c joins after the fact and syncs with a: the document names a's incident, the
    // envelope comes over /x0tta/block/1 and verifies.
    let c = store(&dir, "c");
    let tc: Arc<dyn Transport> = Arc::new(net.join(signers[2].node_id().clone()));
    let rc = Replicator::start(c.clone(), tc, ring).await.unwrap();
    let first = rc
        .sync(signers[0].node_id(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        (first.incidents_added, first.refused, first.missing),
        (1, 0, 0)
    );
    assert!(first.update_bytes_received > 0 && first.block_bytes_received > 3309);
    assert!(c.get(&id).await.unwrap().is_some());
    let again = rc
        .sync(signers[0].node_id(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(again.incidents_added, 0, "nothing new the second time");
    assert!(again.update_bytes_received <= 2, "an empty diff: {again:?}");
    // b has the incident through gossip and serves the envelope too (it stored it from a's
    // CRDT gossip or gets it now).
    let from_b = rc
        .sync(signers[1].node_id(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(from_b.incidents_added, 0);
}

fn incident(node: &NodeId, i: u64, note: &str) -> Incident {
    Incident {
        node: node.clone(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::MemoryPressure,
            Severity::High,
            0.9,
            Subject::Host,
            "threshold",
        ),
        root_cause: Some(note.into()),
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    net: MemoryNetwork,
    signers: Vec<Arc<MlDsa65Signer>>,
    stores: Vec<RedbKnowledge>,
    reps: Vec<Replicator>,
}

async fn cluster(names: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let net = MemoryNetwork::new();
    let signers: Vec<Arc<MlDsa65Signer>> = names
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
    let mut stores = Vec::new();
    let mut reps = Vec::new();
    for s in &signers {
        let st = store(&dir, s.node_id().as_str());
        st.set_signer(s.clone()).await.unwrap();
        let t: Arc<dyn Transport> = Arc::new(net.join(s.node_id().clone()));
        reps.push(
            Replicator::start(st.clone(), t, ring.clone())
                .await
                .unwrap(),
        );
        stores.push(st);
    }
    Cluster {
        dir,
        net,
        signers,
        stores,
        reps,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_converge_after_concurrent_writes_and_a_partition() {
    let c = cluster(&["a", "b"]).await;
    let (a, b) = (&c.stores[0], &c.stores[1]);
    let (na, nb) = (
        c.signers[0].node_id().clone(),
        c.signers[1].node_id().clone(),
    );
    c.net
        .partition(std::slice::from_ref(&na), std::slice::from_ref(&nb));
    // Both sides write while cut off from each other.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(a.record(&incident(&na, i, "a side")).await.unwrap());
        ids.push(b.record(&incident(&nb, i, "b side")).await.unwrap());
    }
    a.crdt().counter("heals").add(5).unwrap();
    b.crdt().counter("heals").add(-2).unwrap();
    a.crdt().or_set("isolated").add("peer-7").unwrap();
    b.crdt().or_set("isolated").add("peer-8").unwrap();
    a.policy_register().set(&"p2".into(), 2, &na).unwrap();
    b.policy_register().set(&"p3".into(), 3, &nb).unwrap();
    assert!(
        c.reps[0]
            .sync(&nb, Duration::from_millis(300))
            .await
            .is_err(),
        "the partition holds"
    );
    assert_eq!(b.known_incidents().unwrap(), 20);

    c.net.heal();
    let report = c.reps[0].sync(&nb, Duration::from_secs(5)).await.unwrap();
    assert_eq!(report.incidents_added, 20, "{report:?}");
    // b fetches a's envelopes itself after the push; wait for it.
    eventually("b never got a's incidents", async || {
        b.known_incidents().unwrap() == 40
    })
    .await;
    for s in [a, b] {
        assert_eq!(s.known_incidents().unwrap(), 40);
        for id in &ids {
            assert!(s.get(id).await.unwrap().is_some());
        }
        assert_eq!(s.crdt().counter("heals").value(), 3);
        assert_eq!(
            s.crdt().or_set("isolated").members(),
            vec!["peer-7".to_string(), "peer-8".to_string()]
        );
        let p = s.policy_register().get().unwrap().unwrap();
        assert_eq!((p.value.as_str(), p.version), ("p3", 3));
    }
    assert_eq!(
        a.crdt().encode_state(),
        b.crdt().encode_state(),
        "same state"
    );

    // Everything acknowledged was logged: a copy of b's file taken now (no write in flight)
    // opens with the same state.
    let state = b.crdt().encode_state();
    let copy = c.dir.path().join("copy.redb");
    std::fs::copy(b.path(), &copy).unwrap();
    let reopened = RedbKnowledge::open(&copy, KnowledgeConfig::default()).unwrap();
    assert_eq!(reopened.crdt().encode_state(), state);
    assert_eq!(reopened.crdt().counter("heals").value(), 3);
    assert_eq!(reopened.known_incidents().unwrap(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byzantine_document_entries_are_refused() {
    let c = cluster(&["a", "b", "mallory"]).await;
    let (a, b, m) = (&c.stores[0], &c.stores[1], &c.stores[2]);
    let (na, nm) = (
        c.signers[0].node_id().clone(),
        c.signers[2].node_id().clone(),
    );
    c.net
        .partition(&[c.signers[1].node_id().clone()], std::slice::from_ref(&na));
    let real = a.record(&incident(&na, 1, "real")).await.unwrap();

    // Mallory names a forged incident "of a" in the document, with an envelope it signed
    // itself, and an incident of its own with an envelope whose bytes do not match.
    let forged = incident(&na, 2, "forged");
    let env = Envelope::seal(
        c.signers[2].as_ref(),
        contexts::INCIDENT,
        to_dag_cbor(&IncidentMessage::Incident {
            incident: Box::new(forged.clone()),
        })
        .unwrap(),
    )
    .unwrap();
    let env_bytes = to_dag_cbor(&env).unwrap();
    let forged_id = forged.content_id().unwrap();
    let env_id = ContentId::of_dag_cbor(&env_bytes);
    // And an incident nobody recorded, named with mallory's genuine envelope of another one.
    let own = incident(&nm, 3, "mallory's own");
    let own_id = m.record(&own).await.unwrap();
    let phantom_id = incident(&nm, 9, "never recorded").content_id().unwrap();
    let update = {
        use yrs::{Map, Transact};
        let d = x0tta_knowledge::CrdtDoc::with_client_id(4242);
        d.apply(&m.crdt().encode_state()).unwrap();
        let map = d.yrs().get_or_insert_map(x0tta_knowledge::INCIDENTS_MAP);
        let own_env = match map.get(&d.yrs().transact(), &own_id.to_string()) {
            Some(yrs::Out::Any(yrs::Any::String(s))) => s.to_string(),
            other => panic!("own incident not in the document: {other:?}"),
        };
        let mut txn = d.yrs().transact_mut();
        map.insert(&mut txn, forged_id.to_string(), env_id.to_string());
        map.insert(&mut txn, phantom_id.to_string(), own_env);
        txn.encode_update_v1()
    };
    m.apply_update(update).await.unwrap();
    // Its own store refuses the envelope too; mallory pins the block to serve it.
    let wanted = x0tta_knowledge::Wanted {
        incident: forged_id,
        envelope: env_id,
    };
    let verifier = c
        .signers
        .iter()
        .map(|s| (s.node_id().clone(), s.public_key().clone()))
        .collect::<KeyRing>();
    assert_eq!(
        m.accept_envelope(&wanted, env_bytes.clone(), &verifier)
            .await
            .unwrap()
            .unwrap_err()
            .to_string(),
        format!("signed by mallory, not by the incident's node a")
    );
    assert_eq!(m.put_block(env_bytes).await.unwrap(), env_id);

    let report = c.reps[1].sync(&nm, Duration::from_secs(5)).await.unwrap();
    assert_eq!(report.refused, 2, "{report:?}");
    assert!(
        b.get(&forged_id).await.unwrap().is_none(),
        "forged incident stored"
    );
    assert!(b.get(&phantom_id).await.unwrap().is_none());
    // mallory's genuine incident is replicated like anyone's.
    assert!(b.get(&own_id).await.unwrap().is_some());
    // a is cut off from b, yet its genuine incident reaches b through mallory: a relay can
    // carry what a signed but cannot alter it.
    assert!(a.get(&real).await.unwrap().is_some());
    assert!(b.get(&real).await.unwrap().is_some());
}
