//! Property tests: the tally does not depend on message order or duplication; no counted vote
//! exceeds its voter's credits; forged votes are never counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use x0tta_core::{
    ContentId, NodeId, Policy, Rejection, SignError, Signature, Signer, Verdict, Verifier,
};
use x0tta_dao::*;

/// A keyed-hash signature scheme, fast enough for thousands of proptest cases (the ledger
/// test runs on ML-DSA-65). Each node's key is its secret; the verifier knows them all.
struct Keyed(NodeId, [u8; 8]);

impl Signer for Keyed {
    fn node_id(&self) -> &NodeId {
        &self.0
    }
    fn sign(&self, ctx: &[u8], msg: &[u8]) -> Result<Signature, SignError> {
        let bytes = Sha256::new()
            .chain_update(self.1)
            .chain_update(ctx)
            .chain_update(msg)
            .finalize()
            .to_vec();
        Ok(Signature {
            signer: self.0.clone(),
            alg: "keyed-sha256".into(),
            bytes,
        })
    }
}

struct Keys(BTreeMap<NodeId, [u8; 8]>);

impl Verifier for Keys {
    fn verify(&self, ctx: &[u8], msg: &[u8], sig: &Signature) -> Verdict {
        let Some(k) = self.0.get(&sig.signer) else {
            return Verdict::Reject(Rejection::UnknownSigner(sig.signer.clone()));
        };
        let expect = Sha256::new()
            .chain_update(k)
            .chain_update(ctx)
            .chain_update(msg)
            .finalize()
            .to_vec();
        if expect == sig.bytes {
            Verdict::Valid
        } else {
            Verdict::Reject(Rejection::BadSignature)
        }
    }
}

const N: usize = 6;

fn key(i: usize) -> [u8; 8] {
    [i as u8 + 1; 8]
}

fn node(i: usize) -> NodeId {
    NodeId::new(format!("v{i}")).unwrap()
}

fn ledger() -> (Ledger<Keys>, ContentId) {
    let keys = Keys((0..N).map(|i| (node(i), key(i))).collect());
    let stakes = (0..N).map(|i| (node(i), 50 + 10 * i as u64)).collect();
    let mut l = Ledger::new(DaoPolicy::default(), stakes, keys);
    let spec = ProposalSpec::from_yaml(
        "proposal_id: p\ntitle: t\nchanges: [{parameter: disk_threshold, current: 90, proposed: 85}]\ncreator: v0\ntimestamp: 0\ntrack: emergency\n",
        "p.yaml",
    )
    .unwrap();
    let id = l.submit(spec, &Policy::default(), 0).unwrap();
    (l, id)
}

/// (voter, votes, support, revision, forged-by) — forged-by ≠ voter means another key signed.
fn messages() -> impl Strategy<Value = Vec<(usize, u32, bool, u32, usize)>> {
    prop::collection::vec((0..N, 0u32..12, any::<bool>(), 0u32..3, 0..N), 1..25)
}

fn build(p: ContentId, msgs: &[(usize, u32, bool, u32, usize)]) -> Vec<(SignedVote, bool)> {
    msgs.iter()
        .map(|&(voter, votes, support, revision, by)| {
            let body = VoteBody {
                proposal: p,
                voter: node(voter),
                votes,
                support,
                revision,
                signed_at: 10,
            };
            let signer = Keyed(node(by), key(by));
            (sign_vote(&signer, &body).unwrap(), by != voter)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn tally_ignores_order_and_duplicates(msgs in messages(), seed in any::<u64>()) {
        let (mut a, p) = ledger();
        let (mut b, _) = ledger();
        let votes = build(p, &msgs);
        let mut results_a = Vec::new();
        for (v, _) in &votes {
            results_a.push(a.vote(v, 20));
        }
        // b: shuffled, every message delivered twice.
        let mut order: Vec<usize> = (0..votes.len()).chain(0..votes.len()).collect();
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        for i in order {
            b.vote(&votes[i].0, 20);
        }
        // Equivocation depends on which of two conflicting votes arrives first only in what
        // evidence names; the counted set and stakes must agree.
        prop_assert_eq!(a.tally(&p), b.tally(&p));
        for i in 0..N {
            prop_assert_eq!(a.stake(&node(i)), b.stake(&node(i)));
        }
        for ((_, forged), r) in votes.iter().zip(&results_a) {
            if *forged {
                prop_assert_eq!(r, &VoteResult::Refused(Refusal::Forged));
            }
            if let VoteResult::Counted { cost } = r {
                prop_assert!(*cost <= 50 + 10 * N as u64);
            }
        }
    }
}
