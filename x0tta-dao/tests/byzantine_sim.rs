//! Issue 6's scenario: 31 nodes on the simulated mesh, 10 of them Byzantine (forging votes,
//! equivocating, voting late, attesting a false tally; f < N/3). Every honest node must end
//! with the same final outcome, refuse every forgery, slash every equivocator, catch every
//! false attester, and put the seed's worked example in force.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/scenario.rs"]
mod scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_one_nodes_ten_byzantine_agree_on_the_seed_proposal() {
    let r = scenario::Scenario::new(31, 10, 2026).run().await;
    println!("{r:?}");
    assert_eq!(r.honest, 21);
    assert!(r.finality.is_some(), "no finality within 30 s");
    assert!(r.agree, "honest nodes disagree on the final tally");
    let t = r.tally.as_ref().expect("final");
    assert!(t.passed, "the seed's proposal failed: {t:?}");
    assert_eq!((t.votes_for, t.votes_against), (r.expected_for, 0));
    assert!(
        t.attesting_stake * 3 > t.total_stake * 2,
        "final with ≤ 2/3"
    );
    assert_eq!(r.forged_accepted, 0, "a Byzantine vote counted somewhere");
    assert_eq!(
        (r.slashed, r.equivocators),
        (3, 3),
        "equivocators not slashed everywhere"
    );
    assert_eq!(
        (r.false_attesters_caught, r.false_attesters),
        (2, 2),
        "false attesters not caught everywhere"
    );
    assert_eq!(
        r.applied, r.honest,
        "not every honest node runs cpu 70 %, 45 s"
    );
}
