//! Finality on real ML-DSA-65 signatures: an outcome is final once attestations agreeing on
//! one tally come from more than 2/3 of the stake; forged, duplicated and equivocating
//! attestations, and attesters of a false tally, are told apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use x0tta_core::{ContentId, Envelope, Policy, Signer, contexts, to_dag_cbor};
use x0tta_dao::*;
use x0tta_pqc::{KeyRing, MlDsa65Signer};

const H: u64 = 3_600_000;

struct World {
    signers: Vec<MlDsa65Signer>,
    ledger: Ledger<KeyRing>,
    id: ContentId,
    outcome: Outcome,
}

/// Four voters of stake 100; node-0..2 vote for; the proposal is closed.
fn world() -> World {
    let common::Voters {
        signers,
        ring,
        stakes,
    } = common::voters(4);
    let mut ledger = Ledger::new(DaoPolicy::default(), stakes, ring);
    let spec = ProposalSpec::from_yaml(
        "proposal_id: p\ntitle: t\nchanges: [{parameter: cpu_threshold, current: 90, proposed: 70}]\ncreator: node-0\ntimestamp: 0\n",
        "p.yaml",
    )
    .unwrap();
    let id = ledger.submit(spec, &Policy::default(), 0).unwrap();
    for s in &signers[..3] {
        let body = VoteBody {
            proposal: id,
            voter: s.node_id().clone(),
            votes: 5,
            support: true,
            revision: 0,
            signed_at: 25 * H,
        };
        let r = ledger.vote(&sign_vote(s, &body).unwrap(), 25 * H);
        assert_eq!(r, VoteResult::Counted { cost: 25 });
    }
    let outcome = ledger.close(&id, 80 * H).unwrap();
    assert!(outcome.tally.passed);
    World {
        signers,
        ledger,
        id,
        outcome,
    }
}

fn attest(s: &MlDsa65Signer, body: &TallyAttestation) -> SignedAttestation {
    sign_attestation(s, body).unwrap()
}

#[test]
fn final_once_more_than_two_thirds_of_the_stake_agree() {
    let mut w = world();
    let honest = |i: usize, w: &World| {
        attest(
            &w.signers[i],
            &TallyAttestation::of(&w.outcome, w.signers[i].node_id().clone()),
        )
    };
    let a0 = honest(0, &w);
    assert_eq!(w.ledger.attest(&a0), AttestationResult::Counted(None));
    assert_eq!(w.ledger.attest(&a0), AttestationResult::Duplicate);
    let a1 = honest(1, &w);
    // 200 of 400: not more than 2/3.
    assert_eq!(w.ledger.attest(&a1), AttestationResult::Counted(None));
    assert!(w.ledger.finality(&w.id).is_none());

    // node-3 attests a false tally (against): counted, but it disagrees with ours.
    let mut lie = TallyAttestation::of(&w.outcome, w.signers[3].node_id().clone());
    lie.passed = false;
    lie.votes_against = 15;
    assert_eq!(
        w.ledger.attest(&attest(&w.signers[3], &lie)),
        AttestationResult::Counted(None)
    );
    assert_eq!(w.ledger.disagreeing(&w.id), vec![lie.clone()]);

    // node-2 agrees with the honest tally: 300 of 400 > 2/3.
    let AttestationResult::Counted(Some(f)) = w.ledger.attest(&honest(2, &w)) else {
        panic!("not final at 3/4 of the stake");
    };
    assert_eq!(
        (f.votes_for, f.votes_against, f.passed),
        (15, 0, true),
        "the honest tally is final"
    );
    assert_eq!((f.attesting_stake, f.total_stake), (300, 400));
    assert_eq!(w.ledger.finality(&w.id), Some(&f));
    assert_eq!(
        w.ledger.policy_of(&w.id).unwrap().thresholds.cpu_percent,
        70.0
    );
}

#[test]
fn forged_and_equivocating_attestations_do_not_count() {
    let mut w = world();
    let body = TallyAttestation::of(&w.outcome, w.signers[1].node_id().clone());
    // node-0 signs an attestation in node-1's name.
    assert_eq!(
        w.ledger.attest(&attest(&w.signers[0], &body)),
        AttestationResult::Refused(AttestationRefusal::Forged)
    );
    // A vote-context signature over an attestation does not verify as one.
    let wrong_context =
        Envelope::seal(&w.signers[1], contexts::VOTE, to_dag_cbor(&body).unwrap()).unwrap();
    assert_eq!(
        w.ledger.attest(&wrong_context),
        AttestationResult::Refused(AttestationRefusal::Forged)
    );
    // Not an attestation at all.
    let junk = Envelope::seal(&w.signers[1], contexts::TALLY, b"junk".to_vec()).unwrap();
    assert_eq!(
        w.ledger.attest(&junk),
        AttestationResult::Refused(AttestationRefusal::Malformed)
    );
    // An unknown proposal.
    let mut other = body.clone();
    other.proposal = ContentId::of_dag_cbor(b"\x40");
    assert_eq!(
        w.ledger.attest(&attest(&w.signers[1], &other)),
        AttestationResult::Refused(AttestationRefusal::UnknownProposal)
    );

    // node-3 signs two different attestations: proof, and neither counts any more.
    let t3 = TallyAttestation::of(&w.outcome, w.signers[3].node_id().clone());
    let mut t3b = t3.clone();
    t3b.passed = false;
    assert_eq!(
        w.ledger.attest(&attest(&w.signers[3], &t3)),
        AttestationResult::Counted(None)
    );
    let AttestationResult::Equivocation(proof) = w.ledger.attest(&attest(&w.signers[3], &t3b))
    else {
        panic!("equivocation not detected");
    };
    assert_eq!(proof[0].signature.signer, *w.signers[3].node_id());
    assert_eq!(
        w.ledger.attestation_equivocators(&w.id),
        vec![w.signers[3].node_id().clone()]
    );
    assert_eq!(
        w.ledger.attest(&attest(&w.signers[3], &t3)),
        AttestationResult::Refused(AttestationRefusal::Equivocator)
    );
    // node-0 and node-1 alone (200 of 400) are not enough without node-3.
    for i in 0..2 {
        let b = TallyAttestation::of(&w.outcome, w.signers[i].node_id().clone());
        assert_eq!(
            w.ledger.attest(&attest(&w.signers[i], &b)),
            AttestationResult::Counted(None)
        );
    }
    assert!(w.ledger.finality(&w.id).is_none());
    let b = TallyAttestation::of(&w.outcome, w.signers[2].node_id().clone());
    assert!(matches!(
        w.ledger.attest(&attest(&w.signers[2], &b)),
        AttestationResult::Counted(Some(_))
    ));
}
