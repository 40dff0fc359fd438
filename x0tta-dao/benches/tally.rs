//! Counting signed quadratic votes (ML-DSA-65 verification included), beside the cost of one
//! bare ML-DSA-65 verification measured in the same run.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use x0tta_core::{NodeId, Policy, Signer, Verifier, contexts};
use x0tta_dao::{DaoPolicy, Ledger, ProposalSpec, Track, VoteBody, sign_vote};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

/// The figure: a tally of 10,000 signed votes.
const VOTERS: usize = 10_000;

fn bench(c: &mut Criterion) {
    let signers: Vec<MlDsa65Signer> = (0..VOTERS)
        .map(|i| {
            MlDsa65Signer::new(
                NodeId::new(format!("v{i}")).unwrap(),
                MlDsa65Keypair::generate(),
            )
        })
        .collect();
    let ring: KeyRing = signers
        .iter()
        .map(|s| (s.node_id().clone(), s.public_key().clone()))
        .collect();
    let stakes: BTreeMap<NodeId, u64> =
        signers.iter().map(|s| (s.node_id().clone(), 100)).collect();
    let mut spec = ProposalSpec::from_yaml(
        "proposal_id: p\ntitle: t\nchanges: [{parameter: cpu_threshold, current: 90, proposed: 70}]\ncreator: v0\ntimestamp: 0\n",
        "p.yaml",
    )
    .unwrap();
    spec.track = Track::Emergency;
    let fresh = || {
        let mut l = Ledger::new(DaoPolicy::default(), stakes.clone(), ring.clone());
        let id = l.submit(spec.clone(), &Policy::default(), 0).unwrap();
        (l, id)
    };
    let (_, id) = fresh();
    let votes: Vec<_> = signers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let body = VoteBody {
                proposal: id,
                voter: s.node_id().clone(),
                votes: (i % 10) as u32,
                support: i % 3 != 0,
                revision: 0,
                signed_at: 1,
            };
            sign_vote(s, &body).unwrap()
        })
        .collect();

    let mut g = c.benchmark_group("tally");
    g.sample_size(10);
    let one = &votes[0];
    g.bench_function("baseline: one ML-DSA-65 verify", |b| {
        b.iter(|| ring.verify(contexts::VOTE, black_box(&one.payload), &one.signature))
    });
    g.bench_function("count 10,000 signed votes and tally", |b| {
        b.iter_batched(
            fresh,
            |(mut l, id)| {
                for v in &votes {
                    l.vote(v, 10);
                }
                l.tally(&id).unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // Anti-entropy at the same size: what one `/x0tta/gov/1` exchange costs the two sides.
    let (mut full, _) = fresh();
    for v in &votes {
        full.vote(v, 10);
    }
    let (empty, _) = fresh();
    let mut g = c.benchmark_group("gov sync, 10,000 votes held");
    g.sample_size(10);
    g.bench_function("digest (requester)", |b| {
        b.iter(|| full.digest(black_box(7)))
    });
    let same = full.digest(7);
    g.bench_function("delta to an up-to-date peer (responder)", |b| {
        b.iter(|| full.delta(black_box(&same), x0tta_dao::REPLY_BUDGET))
    });
    let lacking = empty.digest(7);
    g.bench_function("delta to a peer lacking every vote: one page", |b| {
        b.iter(|| full.delta(black_box(&lacking), x0tta_dao::REPLY_BUDGET))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
