//! The root-cause ranker: what raises and lowers a candidate, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use x0tta_analysis::rootcause::{Candidate, NodeEvidence, RootCause, RootCauseError};
use x0tta_core::AnomalyKind;

fn ev(kinds: &[(AnomalyKind, f32)], onset: Option<f64>) -> NodeEvidence {
    NodeEvidence {
        kinds: kinds.to_vec(),
        onset,
    }
}

/// A ring of `n` nodes.
fn ring(n: usize) -> Vec<Vec<usize>> {
    (0..n).map(|v| vec![(v + n - 1) % n, (v + 1) % n]).collect()
}

#[test]
fn a_degraded_link_is_named_when_both_ends_say_so() {
    let nb = ring(6);
    let mut e = vec![NodeEvidence::default(); 6];
    e[2] = ev(&[(AnomalyKind::LinkDegraded, 0.8)], Some(1.0));
    e[3] = ev(&[(AnomalyKind::LinkDegraded, 0.7)], Some(1.0));
    let r = RootCause::new().rank(&nb, &e, 3).expect("ranks");
    assert_eq!(r[0].candidate, Candidate::link(3, 2));
    assert_eq!(r[0].kind, AnomalyKind::LinkDegraded);
    assert!(r[0].evidence.iter().any(|w| w.contains("both ends agree")));
    // The half-blamed links next to it come after.
    assert!(r[1..].iter().all(|x| x.score < r[0].score));
}

#[test]
fn early_onsets_and_witnesses_raise_a_node() {
    let nb = ring(8);
    let mut e = vec![NodeEvidence::default(); 8];
    // Two equally likely crashes; node 5's neighbours alarmed, node 1's did not.
    e[1] = ev(&[(AnomalyKind::NodeFailure, 0.6)], None);
    e[5] = ev(&[(AnomalyKind::NodeFailure, 0.6)], None);
    e[4] = ev(&[], Some(2.0));
    e[6] = ev(&[], Some(2.5));
    let r = RootCause::new().rank(&nb, &e, 2).expect("ranks");
    assert_eq!(r[0].candidate, Candidate::Node(5));
    assert!(
        r[0].evidence
            .iter()
            .any(|w| w == "2 of 2 neighbours alarmed")
    );

    // Two equally likely hogs: the earlier onset wins.
    let mut e = vec![NodeEvidence::default(); 8];
    e[1] = ev(&[(AnomalyKind::CpuOverload, 0.6)], Some(3.0));
    e[5] = ev(&[(AnomalyKind::CpuOverload, 0.6)], Some(1.0));
    let r = RootCause::new().rank(&nb, &e, 2).expect("ranks");
    assert_eq!(r[0].candidate, Candidate::Node(5));
    assert_eq!(r[1].candidate, Candidate::Node(1));
}

#[test]
fn priors_from_past_incidents_raise_and_lower_candidates() {
    let nb = ring(4);
    let mut e = vec![NodeEvidence::default(); 4];
    e[0] = ev(&[(AnomalyKind::MemoryPressure, 0.5)], None);
    e[2] = ev(&[(AnomalyKind::MemoryPressure, 0.45)], None);
    let plain = RootCause::new().rank(&nb, &e, 1).expect("ranks");
    assert_eq!(plain[0].candidate, Candidate::Node(0));
    let informed = RootCause::new()
        .prior(Candidate::Node(2), 1.5)
        .prior(Candidate::Node(0), 0.5)
        .rank(&nb, &e, 2)
        .expect("ranks");
    assert_eq!(informed[0].candidate, Candidate::Node(2));
    assert!(
        informed[0]
            .evidence
            .iter()
            .any(|w| w.contains("past incidents"))
    );
    // A prior of 0 rules a candidate out; a non-finite one is ignored.
    let out = RootCause::new()
        .prior(Candidate::Node(0), 0.0)
        .prior(Candidate::Node(2), f64::NAN)
        .rank(&nb, &e, 5)
        .expect("ranks");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].candidate, Candidate::Node(2));
}

#[test]
fn nothing_anomalous_ranks_nothing() {
    let nb = ring(5);
    let e = vec![NodeEvidence::default(); 5];
    assert!(RootCause::new().rank(&nb, &e, 3).expect("ranks").is_empty());
}

#[test]
fn bad_input_is_a_typed_error() {
    let r = RootCause::new();
    assert_eq!(
        r.rank(&ring(3), &[NodeEvidence::default()], 1),
        Err(RootCauseError::Mismatch {
            neighbours: 3,
            evidence: 1
        })
    );
    assert_eq!(
        r.rank(&[vec![7]], &[NodeEvidence::default()], 1),
        Err(RootCauseError::BadNeighbour {
            node: 0,
            neighbour: 7,
            nodes: 1
        })
    );
    for bad in [
        ev(&[(AnomalyKind::ClockSkew, 1.5)], None),
        ev(&[(AnomalyKind::ClockSkew, f32::NAN)], None),
        ev(&[], Some(f64::INFINITY)),
    ] {
        assert_eq!(
            r.rank(&[vec![]], &[bad], 1),
            Err(RootCauseError::BadEvidence(0))
        );
    }
}

mod mesh {
    use x0tta_analysis::rootcause::MeshRootCause;
    use x0tta_core::memory::MemoryKnowledge;
    use x0tta_core::{
        Anomaly, AnomalyKind, ContentId, Incident, KnowledgeStore, Neighbour, NodeId, Observation,
        PeerState, Resolution, RootCauseRanker, Severity, Subject, Timestamp,
    };

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn neighbour(p: &str, state: PeerState, loss: f64, offset: Option<i64>) -> Neighbour {
        Neighbour {
            id: id(p),
            addresses: vec![],
            rtt_ms: Some(2.0),
            loss,
            last_seen: Timestamp::from_millis(0),
            state,
            clock_offset_ms: offset,
        }
    }

    fn incident(node: &str, at: u64, anomaly: Anomaly, resolution: Resolution) -> Incident {
        Incident {
            node: id(node),
            detected_at: Timestamp::from_millis(at),
            observation: ContentId::of(&at).unwrap(),
            root_cause: None,
            anomaly,
            plan: None,
            report: None,
            resolution,
        }
    }

    fn anomaly(kind: AnomalyKind, subject: Subject) -> Anomaly {
        Anomaly::new(kind, Severity::High, 0.9, subject, "test")
    }

    fn observation(at: u64, neighbours: Vec<Neighbour>) -> Observation {
        let mut o = Observation::new(id("a"));
        o.at = Timestamp::from_millis(at);
        o.neighbours = neighbours;
        o
    }

    #[tokio::test]
    async fn the_peer_everyone_lost_is_named_from_replicated_incidents() {
        let k = MemoryKnowledge::new(100);
        let now = 1_700_000_060_000;
        let down = || anomaly(AnomalyKind::NodeFailure, Subject::Peer(id("x")));
        k.record(&incident("b", now - 2_000, down(), Resolution::NoPlan))
            .await
            .unwrap();
        k.record(&incident("c", now - 1_000, down(), Resolution::NoPlan))
            .await
            .unwrap();
        // Over: a healed incident, and one older than the window, say nothing.
        let old = anomaly(AnomalyKind::NodeFailure, Subject::Peer(id("b")));
        k.record(&incident("c", now - 600_000, old, Resolution::NoPlan))
            .await
            .unwrap();
        let healed = anomaly(AnomalyKind::CpuOverload, Subject::Host);
        k.record(&incident("b", now - 500, healed, Resolution::Healed))
            .await
            .unwrap();

        let obs = observation(
            now,
            vec![
                neighbour("x", PeerState::Down, 1.0, None),
                neighbour("b", PeerState::Up, 0.0, Some(3)),
                neighbour("c", PeerState::Up, 0.0, Some(-2)),
            ],
        );
        let rc = MeshRootCause::new()
            .root_cause(&down(), &obs, &k)
            .await
            .expect("a root cause");
        assert!(rc.starts_with("node x (NODE_FAILURE)"), "{rc}");
        assert!(rc.contains("3 of 3 neighbours alarmed"), "{rc}");
        assert!(!rc.contains("CPU_OVERLOAD"), "{rc}");
    }

    #[tokio::test]
    async fn similar_past_incidents_tip_a_tie_toward_the_node_they_blamed() {
        let k = MemoryKnowledge::new(100);
        let now = 1_700_000_600_000;
        // Two peers are down, seen by this node alone: the evidence cannot tell them apart.
        let obs = observation(
            now,
            vec![
                neighbour("b", PeerState::Down, 0.0, None),
                neighbour("c", PeerState::Down, 0.0, None),
            ],
        );
        let down = anomaly(AnomalyKind::NodeFailure, Subject::Peer(id("b")));
        let r = MeshRootCause::new();
        let without = r.root_cause(&down, &obs, &k).await.expect("a root cause");
        assert!(without.starts_with("node b (NODE_FAILURE)"), "{without}");
        assert!(!without.contains("past incidents"), "{without}");

        // Earlier, healed incidents of the same kind blamed c and cleared b.
        for i in 0..3u64 {
            let mut past = incident(
                "a",
                now - 3_600_000 + i,
                anomaly(AnomalyKind::NodeFailure, Subject::Peer(id("c"))),
                Resolution::Healed,
            );
            past.root_cause = Some(
                "node c (NODE_FAILURE): 1 of 1 neighbours alarmed; next: node b (NODE_FAILURE, score 0.10 vs 0.40)".into(),
            );
            k.record(&past).await.unwrap();
        }
        // An unhealed one, and one of another kind, say nothing about blame.
        let mut open = incident(
            "a",
            now - 3_000_000,
            anomaly(AnomalyKind::NodeFailure, Subject::Peer(id("b"))),
            Resolution::Failed,
        );
        open.root_cause = Some("node b (NODE_FAILURE): guessed".into());
        k.record(&open).await.unwrap();
        let with = r.root_cause(&down, &obs, &k).await.expect("a root cause");
        assert!(with.starts_with("node c (NODE_FAILURE)"), "{with}");
        assert!(with.contains("past incidents: ×2.00"), "{with}");

        // Turned off, the tie stands as before.
        let off = MeshRootCause::new().similar(0);
        let rc = off.root_cause(&down, &obs, &k).await.expect("a root cause");
        assert!(rc.starts_with("node b (NODE_FAILURE)"), "{rc}");
    }

    #[tokio::test]
    async fn a_lossy_link_a_skewed_clock_and_a_service_are_named_as_such() {
        let k = MemoryKnowledge::new(100);
        let now = 1_700_000_060_000;
        let r = MeshRootCause::new();

        let lossy = observation(now, vec![neighbour("y", PeerState::Up, 0.6, Some(1))]);
        let a = anomaly(AnomalyKind::LinkDegraded, Subject::Link(id("y")));
        let rc = r.root_cause(&a, &lossy, &k).await.expect("a root cause");
        assert!(
            rc.starts_with("link a–y (LINK_DEGRADED)")
                || rc.starts_with("link y–a (LINK_DEGRADED)"),
            "{rc}"
        );

        let skewed = observation(now, vec![neighbour("z", PeerState::Up, 0.0, Some(5_000))]);
        let a = anomaly(AnomalyKind::ClockSkew, Subject::Peer(id("z")));
        let rc = r.root_cause(&a, &skewed, &k).await.expect("a root cause");
        assert!(rc.starts_with("node z (CLOCK_SKEW)"), "{rc}");

        let calm = observation(now, vec![neighbour("z", PeerState::Up, 0.0, Some(1))]);
        let a = anomaly(AnomalyKind::ServiceDown, Subject::Service("web".into()));
        let rc = r.root_cause(&a, &calm, &k).await.expect("a root cause");
        assert!(rc.starts_with("service web on a (SERVICE_DOWN)"), "{rc}");
    }
}
