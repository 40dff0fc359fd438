//! Voters shared by the governance tests: real ML-DSA-65 keys, stake 100 each.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use x0tta_core::{NodeId, Signer};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

/// `node-0` … `node-{n-1}`, the ring of their public keys, and their stakes.
pub(crate) struct Voters {
    pub(crate) signers: Vec<MlDsa65Signer>,
    pub(crate) ring: KeyRing,
    pub(crate) stakes: BTreeMap<NodeId, u64>,
}

pub(crate) fn voters(n: usize) -> Voters {
    let signers: Vec<MlDsa65Signer> = (0..n)
        .map(|i| {
            MlDsa65Signer::new(
                NodeId::new(format!("node-{i}")).unwrap(),
                MlDsa65Keypair::generate(),
            )
        })
        .collect();
    let ring: KeyRing = signers
        .iter()
        .map(|s| (s.node_id().clone(), s.public_key().clone()))
        .collect();
    let stakes = signers.iter().map(|s| (s.node_id().clone(), 100)).collect();
    Voters {
        signers,
        ring,
        stakes,
    }
}
