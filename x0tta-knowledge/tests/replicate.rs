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
    cluster_with(names, |_| KnowledgeConfig::default()).await
}

async fn cluster_with(names: &[&str], config: impl Fn(usize) -> KnowledgeConfig) -> Cluster {
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
    for (i, s) in signers.iter().enumerate() {
        let st = RedbKnowledge::open(dir.path().join(format!("{}.redb", s.node_id())), config(i))
            .unwrap();
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
    // Both refusals are for good: remembered, not fetched and verified again.
    assert_eq!(b.refused_entries(), 2);
    assert!(
        b.wanted(100).await.unwrap().is_empty(),
        "refused entries still wanted"
    );
    let again = c.reps[1].sync(&nm, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (again.refused, again.block_bytes_received),
        (0, 0),
        "{again:?}"
    );
    // mallory's genuine incident is replicated like anyone's.
    assert!(b.get(&own_id).await.unwrap().is_some());
    // a is cut off from b, yet its genuine incident reaches b through mallory: a relay can
    // carry what a signed but cannot alter it.
    assert!(a.get(&real).await.unwrap().is_some());
    assert!(b.get(&real).await.unwrap().is_some());
}

/// The envelope CID `store`'s document names for `incident`.
fn envelope_of(store: &RedbKnowledge, incident: &ContentId) -> ContentId {
    use yrs::{Map, Transact};
    let map = store
        .crdt()
        .yrs()
        .get_or_insert_map(x0tta_knowledge::INCIDENTS_MAP);
    let txn = store.crdt().yrs().transact();
    match map.get(&txn, &incident.to_string()) {
        Some(yrs::Out::Any(yrs::Any::String(s))) => s.parse().unwrap(),
        other => panic!("no envelope named for {incident}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_bodies_come_back_from_peers_and_their_envelopes_go() {
    // a keeps 3 bodies, b keeps everything.
    let c = cluster_with(&["a", "b"], |i| {
        KnowledgeConfig::with_retention(if i == 0 { 3 } else { 1000 })
    })
    .await;
    let (a, b) = (&c.stores[0], &c.stores[1]);
    let na = c.signers[0].node_id().clone();
    let mut ids = Vec::new();
    let mut originals = Vec::new();
    for i in 0..10 {
        let inc = incident(&na, i, "memory of svc above 90%");
        let id = a.record(&inc).await.unwrap();
        // b takes it (document gossip, then the envelope) before a's retention drops it.
        eventually("b never stored a's incident", async || {
            b.get(&id).await.unwrap().is_some()
        })
        .await;
        ids.push(id);
        originals.push(inc);
    }
    assert_eq!(a.recent(100).await.unwrap().len(), 3, "a keeps 3 bodies");
    assert_eq!(a.known_incidents().unwrap(), 10);

    // Retention took the evicted incidents' envelopes too; b still holds all of them.
    let env0 = envelope_of(a, &ids[0]);
    assert!(a.blocks(vec![env0], usize::MAX).await.unwrap().is_empty());
    assert_eq!(b.blocks(vec![env0], usize::MAX).await.unwrap().len(), 1);
    let env9 = envelope_of(a, &ids[9]);
    assert_eq!(a.blocks(vec![env9], usize::MAX).await.unwrap().len(), 1);

    // Cold tier: a's evicted body comes back from b, checked against its CID.
    let before = a.tier_stats();
    assert_eq!(a.get(&ids[0]).await.unwrap().as_ref(), Some(&originals[0]));
    let after = a.tier_stats();
    assert_eq!(after.cold_fetched, before.cold_fetched + 1);
    // Hot tier: the second read does not go to redb or the peer.
    assert_eq!(a.get(&ids[0]).await.unwrap().as_ref(), Some(&originals[0]));
    assert_eq!(a.tier_stats().hot_hits, after.hot_hits + 1);
    assert_eq!(a.tier_stats().cold_fetched, after.cold_fetched);
    // Not re-pinned: retention still decides what a keeps.
    assert_eq!(a.recent(100).await.unwrap().len(), 3);

    // An incident a never knew is not asked for.
    let unknown = incident(&na, 99, "never recorded").content_id().unwrap();
    assert_eq!(a.get(&unknown).await.unwrap(), None);
    assert_eq!(a.tier_stats().cold_missed, 0);

    // With b out of reach an evicted body is simply not there.
    c.net.partition(
        std::slice::from_ref(&na),
        std::slice::from_ref(c.signers[1].node_id()),
    );
    assert_eq!(a.get(&ids[1]).await.unwrap(), None);
    assert_eq!(a.tier_stats().cold_missed, 1);
    // A miss is remembered for a while: no new round of requests for the same CID.
    c.net.heal();
    assert_eq!(a.get(&ids[1]).await.unwrap(), None);
    assert_eq!(a.tier_stats().cold_missed, 2);
    assert_eq!(a.get(&ids[2]).await.unwrap().as_ref(), Some(&originals[2]));
}

/// A cold-tier source that answers every CID with other bytes.
struct Liar(Vec<u8>);

#[async_trait::async_trait]
impl x0tta_knowledge::BlockSource for Liar {
    async fn fetch_blocks(&self, cids: Vec<ContentId>) -> Vec<(ContentId, Vec<u8>)> {
        cids.into_iter().map(|c| (c, self.0.clone())).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_block_that_does_not_match_its_cid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = RedbKnowledge::open(
        dir.path().join("a.redb"),
        KnowledgeConfig::with_retention(1),
    )
    .unwrap();
    let node = NodeId::new("a").unwrap();
    let first = a.record(&incident(&node, 0, "first")).await.unwrap();
    let second = incident(&node, 1, "second");
    a.record(&second).await.unwrap();
    // The liar serves the second incident's valid DAG-CBOR for the first one's CID.
    a.set_block_source(Arc::new(Liar(to_dag_cbor(&second).unwrap())));
    assert_eq!(a.get(&first).await.unwrap(), None);
    let stats = a.tier_stats();
    assert_eq!((stats.cold_refused, stats.cold_missed), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_policy_is_named_in_every_replica_register() {
    let c = cluster(&["a", "b"]).await;
    let (a, b) = (&c.stores[0], &c.stores[1]);
    let na = c.signers[0].node_id().clone();
    let v5 = Policy {
        version: 5,
        ..Policy::default()
    };
    let id = a.record_policy(&v5).await.unwrap();
    eventually("b's register never named a's policy", async || {
        b.policy_register()
            .get()
            .unwrap()
            .is_some_and(|s| s.value == id.to_string())
    })
    .await;
    let stamped = b.policy_register().get().unwrap().unwrap();
    assert_eq!((stamped.version, &stamped.writer), (5, &na));
    // The body is one block request away for any peer that lacks it.
    assert_eq!(a.blocks(vec![id], usize::MAX).await.unwrap().len(), 1);

    // An older version recorded later on b does not replace it, here or there.
    let v3 = Policy {
        version: 3,
        ..Policy::default()
    };
    b.record_policy(&v3).await.unwrap();
    c.reps[0]
        .sync(c.signers[1].node_id(), Duration::from_secs(5))
        .await
        .unwrap();
    for s in [a, b] {
        let top = s.policy_register().get().unwrap().unwrap();
        assert_eq!((top.value, top.version), (id.to_string(), 5));
    }
    assert_eq!(
        b.policy_history().await.unwrap().len(),
        1,
        "b's own history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_envelopes_this_store_verified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let signer = Arc::new(MlDsa65Signer::new(
        NodeId::new("a").unwrap(),
        MlDsa65Keypair::generate(),
    ));
    let na = signer.node_id().clone();
    let a = RedbKnowledge::open(&path, KnowledgeConfig::with_retention(2)).unwrap();
    a.set_signer(signer.clone()).await.unwrap();
    let i0 = a.record(&incident(&na, 0, "zero")).await.unwrap();
    let i1 = a.record(&incident(&na, 1, "one")).await.unwrap();
    let policy = a.record_policy(&Policy::default()).await.unwrap();
    // A peer rewrites the document: i0's envelope is "i1's body", i1's is "the policy".
    {
        use yrs::{Map, Transact};
        let map = a
            .crdt()
            .yrs()
            .get_or_insert_map(x0tta_knowledge::INCIDENTS_MAP);
        let mut txn = a.crdt().yrs().transact_mut();
        map.insert(&mut txn, i0.to_string(), i1.to_string());
        map.insert(&mut txn, i1.to_string(), policy.to_string());
    }
    // Retention evicts i0 and then i1: only the envelopes a signed go with them.
    a.record(&incident(&na, 2, "two")).await.unwrap();
    assert!(a.get(&i1).await.unwrap().is_some(), "i1's body survived");
    a.record(&incident(&na, 3, "three")).await.unwrap();
    assert_eq!(
        a.policy_history().await.unwrap().len(),
        1,
        "policy body survived"
    );
    drop(a);
    let a = RedbKnowledge::open(&path, KnowledgeConfig::with_retention(2)).unwrap();
    assert_eq!(
        a.recent(10).await.unwrap().len(),
        2,
        "reopens, newest two kept"
    );
}
