//! The patterns in a running node: features from observations, signed reports, the live
//! 2-hop neighbourhood, and the detector over it with a hand-set model whose answers are
//! known.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use x0tta_analysis::graph::{GraphSage, SageConfig};
use x0tta_analysis::live::{
    self, FEATURES, GraphDetector, LiveError, MAX_EXAMPLES, Neighbourhood, Report,
};
use x0tta_core::{
    Anomaly, AnomalyKind, Detector, Neighbour, NodeId, Observation, PeerState, Policy, Severity,
    Signer, Subject, Timestamp, names,
};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn peer(p: &str, state: PeerState, rtt: Option<f64>, loss: f64, offset: Option<i64>) -> Neighbour {
    Neighbour {
        id: id(p),
        addresses: vec![],
        rtt_ms: rtt,
        loss,
        last_seen: Timestamp::from_millis(0),
        state,
        clock_offset_ms: offset,
    }
}

fn report(node: &str, at: u64, down: f32, neighbours: &[&str]) -> Report {
    let mut features = vec![0.0; FEATURES];
    features[3] = down;
    Report {
        node: id(node),
        at,
        features,
        neighbours: neighbours.iter().map(|n| id(n)).collect(),
    }
}

#[test]
fn the_neighbour_table_gives_the_scenarios_features() {
    let table = [
        peer("a", PeerState::Up, Some(100.0), 0.0, Some(-1_000)),
        peer("b", PeerState::Up, Some(300.0), 0.25, Some(3_000)),
        peer("c", PeerState::Down, Some(9_000.0), 0.5, None),
        peer("d", PeerState::Suspect, None, 0.0, Some(20_000)),
    ];
    let m = live::mesh_features(&table);
    // Down or suspect: 2 of 4; RTT of those up: mean 200 ms, max 300 ms (in 100 ms);
    // loss max 0.5; offsets 1 s, 3 s, 20 s (capped at 10 s): median 3 s, max 10 s (in 2 s).
    assert_eq!(m, [0.5, 2.0, 3.0, 0.5, 1.5, 5.0]);
    assert_eq!(live::mesh_features(&[]), [0.0; 6]);

    let mut t = live::FeatureTracker::default();
    let mut obs = Observation::new(id("me"));
    obs.set(names::CPU_PERCENT, 40.0);
    obs.set(names::MEMORY_PERCENT, 50.0);
    obs.set(names::NET_RX_BPS, 1_000.0);
    obs.neighbours = table.to_vec();
    let f = t.observe(&obs);
    assert_eq!(&f[..3], &[0.4, 0.5, 0.25]);
    assert_eq!(&f[3..9], &m);
    assert_eq!(f[9], 0.0, "no trend yet");
    obs.set(names::MEMORY_PERCENT, 60.0);
    obs.set(names::NET_RX_BPS, 4_000.0);
    let f = t.observe(&obs);
    assert!(
        (f[9] - 0.4).abs() < 1e-6,
        "memory +0.1 → trend 0.4: {}",
        f[9]
    );
    assert!(f[2] > 0.9, "four times the usual inbound traffic: {}", f[2]);
}

fn keys(names: &[&str]) -> (Vec<Arc<dyn Signer>>, KeyRing) {
    let mut ring = KeyRing::new();
    let signers = names
        .iter()
        .map(|n| {
            let kp = MlDsa65Keypair::generate();
            ring.insert(id(n), kp.public_key().clone());
            Arc::new(MlDsa65Signer::new(id(n), kp)) as Arc<dyn Signer>
        })
        .collect();
    (signers, ring)
}

#[test]
fn reports_are_signed_by_their_node_and_checked() {
    let (s, ring) = keys(&["a", "b"]);
    let r = report("a", 5, 0.25, &["b"]);
    let bytes = r.seal(s[0].as_ref()).unwrap();
    assert_eq!(Report::open(&bytes, &ring).unwrap(), r);
    // b cannot speak for a.
    assert!(matches!(r.seal(s[1].as_ref()), Err(LiveError::Rejected(_))));
    // A flipped byte, an unknown signer, bad features, too many neighbours.
    let mut bad = bytes.clone();
    let k = bad.len() / 2;
    bad[k] ^= 1;
    assert!(Report::open(&bad, &ring).is_err());
    let (stranger, _) = keys(&["a"]);
    let forged = r.seal(stranger[0].as_ref()).unwrap();
    assert!(matches!(
        Report::open(&forged, &ring),
        Err(LiveError::Rejected(_))
    ));
    let mut nan = r.clone();
    nan.features[0] = f32::NAN;
    assert!(matches!(
        nan.seal(s[0].as_ref()),
        Err(LiveError::OutOfBounds(_))
    ));
    let mut short = r.clone();
    short.features.pop();
    assert!(matches!(
        short.seal(s[0].as_ref()),
        Err(LiveError::OutOfBounds(_))
    ));
    let mut crowded = r;
    crowded.neighbours = (0..=live::MAX_LISTED)
        .map(|i| id(&format!("p{i}")))
        .collect();
    assert!(matches!(
        crowded.seal(s[0].as_ref()),
        Err(LiveError::OutOfBounds(_))
    ));
    assert!(matches!(
        Report::open(&vec![0u8; live::MAX_REPORT_BYTES + 1], &ring),
        Err(LiveError::TooLarge(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_bytes_are_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let ring = KeyRing::new();
        prop_assert!(Report::open(&bytes, &ring).is_err());
    }
}

#[test]
fn the_neighbourhood_spans_two_hops_of_fresh_reports() {
    let mut h = Neighbourhood::new(id("me"), 1_000);
    assert!(h.graph(0).is_err(), "nothing about this node yet");
    assert!(h.insert(report("me", 100, 0.0, &["a", "b"])));
    assert!(h.insert(report("a", 100, 0.0, &["me", "c"])));
    assert!(
        !h.insert(report("a", 50, 0.0, &["me"])),
        "older than what is held"
    );
    h.insert(report("b", 100, 0.0, &["me"]));
    h.insert(report("c", 100, 0.0, &["a", "d"]));
    h.insert(report("d", 100, 0.0, &["c"])); // three hops away
    h.insert(report("e", 100, 0.0, &["me"])); // lists me; I do not list it
    let (g, ids) = h.graph(500).unwrap();
    assert_eq!(ids, vec![id("me"), id("a"), id("b"), id("c")]);
    assert_eq!(g.neighbours(0), &[1, 2]);
    assert_eq!(g.neighbours(1), &[0, 3]);
    // Reports older than 1 s drop out.
    h.insert(report("me", 1_050, 0.0, &["a", "b"]));
    let (_, ids) = h.graph(1_100).unwrap();
    assert_eq!(ids, vec![id("me"), id("a"), id("b"), id("c")]);
    let (g, ids) = h.graph(1_101).unwrap();
    assert_eq!(ids, vec![id("me")], "only my own report is fresh");
    assert!(g.neighbours(0).is_empty());
}

/// A 2-hidden-unit model that knows one thing: a node is NODE_FAILURE when its neighbours
/// see peers down and it does not (a crashed node's last report stands).
fn crash_model() -> GraphSage {
    let cfg = SageConfig {
        features: FEATURES,
        hidden: 2,
        classes: 8,
        samples: [10, 5],
        use_graph: true,
    };
    let mut m = GraphSage::new(cfg, 1).unwrap();
    let mut l1 = vec![0.0; 2 * 2 * FEATURES];
    l1[3] = 10.0; // hidden 0 = 10 × own "down"
    let mut l2 = vec![0.0; 8 * 2 * 2];
    l2[4] = -20.0; // class 1 from own hidden 0 …
    l2[4 + 2] = 10.0; // … and from the neighbours' mean hidden 0
    let mut b2 = vec![0.0; 8];
    b2[0] = 2.0;
    m.set_weights(&HashMap::from([
        ("l1.weight", l1),
        ("l1.bias", vec![0.0; 2]),
        ("l2.weight", l2),
        ("l2.bias", b2),
    ]))
    .unwrap();
    m
}

#[test]
fn the_detector_names_the_crashed_peer_and_labels_its_neighbourhood() {
    let now = 1_700_000_000_000u64;
    let d = GraphDetector::new(id("a"), crash_model(), 60_000);
    let mut obs = Observation::new(id("a"));
    obs.at = Timestamp::from_millis(now);
    obs.neighbours = vec![
        peer("x", PeerState::Up, Some(2.0), 0.0, None),
        peer("b", PeerState::Up, Some(2.0), 0.0, None),
        peer("c", PeerState::Up, Some(2.0), 0.0, None),
    ];
    // All well: nothing.
    d.heard(report("x", now - 1_000, 0.0, &["a", "b", "c"]));
    d.heard(report("b", now - 1_000, 0.0, &["a", "x"]));
    d.heard(report("c", now - 1_000, 0.0, &["a", "x"]));
    assert!(d.detect(&obs, &Policy::default()).is_empty());
    assert_eq!(d.own_report().unwrap().features[3], 0.0);

    // x goes silent; everyone who knew it sees it down.
    obs.at = Timestamp::from_millis(now + 5_000);
    obs.neighbours[0].state = PeerState::Down;
    d.heard(report("b", now + 4_000, 0.5, &["a", "x"]));
    d.heard(report("c", now + 4_000, 0.5, &["a", "x"]));
    let found = d.detect(&obs, &Policy::default());
    assert_eq!(found.len(), 1, "{found:?}");
    let a = &found[0];
    assert_eq!(
        (a.kind, a.severity, &a.subject),
        (
            AnomalyKind::NodeFailure,
            Severity::Low,
            &Subject::Peer(id("x"))
        )
    );
    assert!(a.confidence > 0.99);
    assert_eq!(d.name(), "graphsage");

    // The incident labels the neighbourhood: x crashed, the rest normal.
    let crash = Anomaly::new(
        AnomalyKind::NodeFailure,
        Severity::High,
        0.9,
        Subject::Peer(id("x")),
        "swim",
    );
    assert!(d.label(&crash));
    let overload = Anomaly::new(
        AnomalyKind::CpuOverload,
        Severity::High,
        0.9,
        Subject::Host,
        "threshold",
    );
    assert!(d.label(&overload));
    let unknown = Anomaly::new(
        AnomalyKind::DiskPressure,
        Severity::High,
        0.9,
        Subject::Host,
        "threshold",
    );
    assert!(!d.label(&unknown), "a kind the patterns do not know");
    let ex = d.examples();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].labels, vec![0, 1, 0, 0], "a, x, b, c");
    assert_eq!(ex[1].labels, vec![3, 0, 0, 0]);
    for _ in 0..MAX_EXAMPLES {
        d.label(&crash);
    }
    assert_eq!(d.examples().len(), MAX_EXAMPLES, "bounded");

    // A new model replaces the old one.
    let quiet = GraphSage::new(crash_model().config(), 3).unwrap();
    let w = quiet.parameters().unwrap();
    d.set_model(quiet);
    assert_eq!(d.model().unwrap().parameters().unwrap(), w);
}
