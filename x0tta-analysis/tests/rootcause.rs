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
