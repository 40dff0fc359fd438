//! The governance ledger on real ML-DSA-65 signatures: the seed's worked example, forged,
//! late, over-budget and equivocating votes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use x0tta_core::{Envelope, NodeId, Policy, Signer};
use x0tta_dao::*;
use x0tta_pqc::{KeyRing, MlDsa65Signer};

const H: u64 = 3_600_000;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// The seed's proposal-001: cpu 80 → 70, check interval 60 → 45 s.
const SEED_PROPOSAL: &str = "\
proposal_id: threshold-adjust-2026-01
title: Lower the CPU threshold and check more often
description: Incidents show CPU saturation is caught late.
changes:
  - parameter: cpu_threshold
    current: 80
    proposed: 70
  - parameter: check_interval
    current: 60
    proposed: 45
rationale: MTTR of CPU_OVERLOAD incidents
creator: node-0
timestamp: 1767225600000
track: standard
";

fn live_policy() -> Policy {
    let mut p = Policy::default();
    p.thresholds.cpu_percent = 80.0;
    p.intervals.cycle = Duration::from_secs(60);
    p
}

struct World {
    signers: Vec<MlDsa65Signer>,
    ledger: Ledger<KeyRing>,
}

fn world(n: usize) -> World {
    let v = common::voters(n);
    World {
        ledger: Ledger::new(DaoPolicy::default(), v.stakes, v.ring),
        signers: v.signers,
    }
}

fn vote(
    s: &MlDsa65Signer,
    proposal: x0tta_core::ContentId,
    votes: u32,
    support: bool,
    revision: u32,
    at: u64,
) -> Envelope {
    let body = VoteBody {
        proposal,
        voter: s.node_id().clone(),
        votes,
        support,
        revision,
        signed_at: at,
    };
    sign_vote(s, &body).unwrap()
}

#[test]
fn the_seed_proposal_passes_and_yields_the_new_policy() {
    let mut w = world(5);
    let spec = ProposalSpec::from_yaml(SEED_PROPOSAL, "proposal-001.yaml").unwrap();
    let p = w.ledger.submit(spec, &live_policy(), 0).unwrap();
    assert_eq!(
        w.ledger.credits(&id("node-0")),
        99,
        "the fee is paid from the creator's credits"
    );
    assert_eq!(w.ledger.phase(&p, H), Some(Phase::Discussion));
    assert_eq!(
        w.ledger.vote(&vote(&w.signers[1], p, 5, true, 0, H), H),
        VoteResult::Refused(Refusal::NotVoting)
    );

    let t = 25 * H; // voting opens after 24 h of discussion
    assert_eq!(w.ledger.phase(&p, t), Some(Phase::Voting));
    for (i, (n, support)) in [(9, true), (10, true), (4, false)].into_iter().enumerate() {
        let r = w.ledger.vote(&vote(&w.signers[i], p, n, support, 0, t), t);
        assert_eq!(
            r,
            VoteResult::Counted {
                cost: u64::from(n * n)
            }
        );
    }
    assert!(w.ledger.close(&p, t).is_none(), "still voting");
    let outcome = w.ledger.close(&p, 73 * H).unwrap();
    assert_eq!(
        (outcome.tally.votes_for, outcome.tally.votes_against),
        (19, 4)
    );
    assert_eq!(outcome.tally.participating_stake, 300);
    assert!(outcome.tally.quorum_reached && outcome.tally.passed);
    let next = outcome.policy.unwrap();
    assert_eq!(next.thresholds.cpu_percent, 70.0);
    assert_eq!(next.intervals.cycle, Duration::from_secs(45));
    assert_eq!(next.version, live_policy().version + 1);
}

#[test]
fn bad_proposals_are_refused_with_clear_errors() {
    let mut w = world(2);
    let stale = SEED_PROPOSAL.replace("current: 80", "current: 85");
    let e = w
        .ledger
        .submit(
            ProposalSpec::from_yaml(&stale, "p.yaml").unwrap(),
            &live_policy(),
            0,
        )
        .unwrap_err();
    assert!(matches!(e, ProposalError::StaleCurrent { .. }), "{e}");
    let unknown = SEED_PROPOSAL.replace("cpu_threshold", "cpu_tresh");
    let e = w
        .ledger
        .submit(
            ProposalSpec::from_yaml(&unknown, "p.yaml").unwrap(),
            &live_policy(),
            0,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown parameter `cpu_tresh`"),
        "{e}"
    );
    let wild = SEED_PROPOSAL.replace("proposed: 70", "proposed: 170");
    let e = w
        .ledger
        .submit(
            ProposalSpec::from_yaml(&wild, "p.yaml").unwrap(),
            &live_policy(),
            0,
        )
        .unwrap_err();
    assert!(matches!(e, ProposalError::OutOfRange { .. }), "{e}");
    let e =
        ProposalSpec::from_yaml(&SEED_PROPOSAL.replace("title:", "titel:"), "p.yaml").unwrap_err();
    assert!(e.to_string().starts_with("p.yaml:2:"), "{e}");
}

#[test]
fn forged_late_over_budget_and_equivocating_votes() {
    let mut w = world(4);
    let mut spec = ProposalSpec::from_yaml(SEED_PROPOSAL, "p.yaml").unwrap();
    spec.track = Track::Emergency; // voting opens at once, for 15 min
    let p = w.ledger.submit(spec, &live_policy(), 0).unwrap();
    let t = 1_000;

    // node-3 signs a vote claiming to be node-1.
    let forged_body = VoteBody {
        proposal: p,
        voter: id("node-1"),
        votes: 10,
        support: false,
        revision: 0,
        signed_at: t,
    };
    let forged = sign_vote(&w.signers[3], &forged_body).unwrap();
    assert_eq!(
        w.ledger.vote(&forged, t),
        VoteResult::Refused(Refusal::Forged)
    );
    let mut tampered = vote(&w.signers[1], p, 3, true, 0, t);
    tampered.payload[5] ^= 1;
    assert_eq!(
        w.ledger.vote(&tampered, t),
        VoteResult::Refused(Refusal::Forged)
    );

    assert_eq!(
        w.ledger.vote(&vote(&w.signers[0], p, 11, true, 0, t), t),
        VoteResult::Refused(Refusal::OverBudget {
            cost: 121,
            credits: 99
        })
    );

    // Revisions replace; duplicates are recognised.
    let v1 = vote(&w.signers[1], p, 3, true, 0, t);
    assert_eq!(w.ledger.vote(&v1, t), VoteResult::Counted { cost: 9 });
    assert_eq!(w.ledger.vote(&v1, t + 1), VoteResult::Duplicate);
    assert_eq!(
        w.ledger.vote(&vote(&w.signers[1], p, 7, true, 1, t), t),
        VoteResult::Counted { cost: 49 }
    );
    // The older revision arriving late changes nothing (the highest revision counts).
    assert_eq!(w.ledger.vote(&v1, t + 2), VoteResult::Duplicate);

    // node-2 signs two different votes at one revision: equivocation, proven and slashed.
    assert!(matches!(
        w.ledger.vote(&vote(&w.signers[2], p, 5, true, 0, t), t),
        VoteResult::Counted { .. }
    ));
    let VoteResult::Equivocation(ev) = w.ledger.vote(&vote(&w.signers[2], p, 5, false, 0, t), t)
    else {
        panic!("expected equivocation")
    };
    let ring: KeyRing = w
        .signers
        .iter()
        .map(|s| (s.node_id().clone(), s.public_key().clone()))
        .collect();
    assert!(verify_evidence(&ring, &ev));
    assert_eq!(w.ledger.stake(&id("node-2")), 50, "half the stake slashed");
    assert_eq!(
        w.ledger.vote(&vote(&w.signers[2], p, 1, true, 1, t), t),
        VoteResult::Refused(Refusal::Equivocator)
    );
    assert_eq!(w.ledger.evidence(&p).len(), 1);

    // Late: signed after the deadline (+5 s skew), or received after it.
    let end = 15 * 60 * 1000;
    assert_eq!(
        w.ledger.vote(
            &vote(&w.signers[3], p, 1, true, 0, end + 6_000),
            end + 6_000
        ),
        VoteResult::Refused(Refusal::NotVoting)
    );
    assert_eq!(
        w.ledger
            .vote(&vote(&w.signers[3], p, 1, true, 0, end), end + 6_000),
        VoteResult::Refused(Refusal::NotVoting)
    );

    let tally = w.ledger.tally(&p).unwrap();
    assert_eq!(
        (
            tally.votes_for,
            tally.votes_against,
            tally.participating_stake
        ),
        (7, 0, 100)
    );
    assert!(
        !tally.quorum_reached,
        "100 of 350 stake is under the emergency quorum"
    );
}

#[test]
fn every_node_times_a_proposal_from_its_signed_opening() {
    let mut w = world(3);
    let mut spec = ProposalSpec::from_yaml(SEED_PROPOSAL, "p.yaml").unwrap();
    let opened = 100 * H;
    spec.opened_at = Some(opened);
    // Received 3 s after it opened (within the propagation bound): timed from the opening.
    let id = w
        .ledger
        .submit(spec.clone(), &live_policy(), opened + 3_000)
        .unwrap();
    assert_eq!(
        w.ledger.phase(&id, opened + 24 * H - 1),
        Some(Phase::Discussion)
    );
    assert_eq!(w.ledger.phase(&id, opened + 24 * H), Some(Phase::Voting));
    // A creator cannot backdate its proposal past the discussion, nor open it in the future.
    let mut other = world(3);
    for (claimed, now) in [(opened - 24 * H, opened), (opened + 60_000, opened)] {
        spec.opened_at = Some(claimed);
        assert_eq!(
            other.ledger.submit(spec.clone(), &live_policy(), now),
            Err(ProposalError::OpenedAt {
                opened_at: claimed,
                now
            })
        );
    }
}
