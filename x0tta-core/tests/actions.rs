//! Host-independent actions: reload_policy (with safe rollback) and notify_neighbors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;

fn ctx(net: &MemoryNetwork, policy: &PolicyHandle) -> ActionContext {
    ActionContext {
        node: id("n1"),
        anomaly: Anomaly::new(
            AnomalyKind::CpuOverload,
            Severity::High,
            1.0,
            Subject::Host,
            "t",
        ),
        observation: Arc::new(Observation::new(id("n1"))),
        policy: policy.clone(),
        transport: Arc::new(net.join(id("n1"))),
        knowledge: Arc::new(MemoryKnowledge::new(1)),
    }
}

#[tokio::test]
async fn reload_policy_applies_and_rolls_back_only_its_own_change() {
    let net = MemoryNetwork::new();
    let live = PolicyHandle::new(Policy::default()).unwrap();
    let file: Arc<Mutex<Policy>> = Arc::new(Mutex::new(Policy::default()));
    let src = file.clone();
    let action = ReloadPolicy::new(Arc::new(move || Ok(src.lock().unwrap().clone())));
    let c = ctx(&net, &live);

    assert_eq!(
        action.run(&Params::new(), &c).await.unwrap(),
        "policy unchanged"
    );
    file.lock().unwrap().thresholds.cpu_percent = 70.0;
    assert_eq!(
        action.run(&Params::new(), &c).await.unwrap(),
        "policy v1 -> v2"
    );
    assert_eq!(live.current().thresholds.cpu_percent, 70.0);
    action.rollback(&Params::new(), &c).await.unwrap();
    assert_eq!(live.current().thresholds.cpu_percent, 90.0);
    assert_eq!(
        live.current().version,
        3,
        "an undo is a new version; policies never go back"
    );

    // Applied, then the policy moves on (say, a governance decision): the undo refuses.
    file.lock().unwrap().thresholds.cpu_percent = 60.0;
    action.run(&Params::new(), &c).await.unwrap();
    let mut newer = (*live.current()).clone();
    newer.version += 1;
    newer.thresholds.disk_percent = 50.0;
    live.apply(newer).unwrap();
    assert!(action.rollback(&Params::new(), &c).await.is_err());
    assert_eq!(live.current().thresholds.disk_percent, 50.0);

    // A run that changes nothing leaves nothing for a later rollback to undo.
    *file.lock().unwrap() = (*live.current()).clone();
    assert_eq!(
        action.run(&Params::new(), &c).await.unwrap(),
        "policy unchanged"
    );
    assert_eq!(
        action.rollback(&Params::new(), &c).await.unwrap(),
        "reload_policy: nothing to undo"
    );

    let failing = ReloadPolicy::new(Arc::new(|| Err("node.yaml:3: bad".into())));
    let e = failing.run(&Params::new(), &c).await.unwrap_err();
    assert!(e.to_string().contains("node.yaml:3: bad"));
}

#[tokio::test]
async fn notify_neighbors_sends_a_signed_notice() {
    let net = MemoryNetwork::new();
    let live = PolicyHandle::new(Policy::default()).unwrap();
    let c = ctx(&net, &live);
    let peer = net.join(id("n2"));
    let mut sub = peer.subscribe(topics::INCIDENTS).await.unwrap();
    let action = NotifyNeighbors::new(Arc::new(TestSigner(id("n1"))));
    let mut p = Params::new();
    p.insert("note".into(), ParamValue::Str("restarting".into()));
    assert_eq!(
        action.run(&p, &c).await.unwrap(),
        "notified 1 neighbours (0 dropped)"
    );
    let env: Envelope = from_dag_cbor(&sub.next().await.unwrap().payload).unwrap();
    let msg: IncidentMessage = from_dag_cbor(&env.payload).unwrap();
    let IncidentMessage::Notice {
        node,
        anomaly,
        note,
    } = msg
    else {
        panic!("expected a notice")
    };
    assert_eq!(
        (node, anomaly.kind, note.as_str()),
        (id("n1"), AnomalyKind::CpuOverload, "restarting")
    );
}
