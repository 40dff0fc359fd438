//! Property tests of signed envelopes on ML-DSA-65: any single bit flip in the payload, the
//! signature or the signer is rejected; decoding arbitrary bytes as an envelope never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use x0tta_core::{Envelope, NodeId, Signer, contexts, from_dag_cbor, to_dag_cbor};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

fn keys() -> &'static (MlDsa65Signer, KeyRing) {
    static KEYS: OnceLock<(MlDsa65Signer, KeyRing)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let s = MlDsa65Signer::new(NodeId::new("node-a").unwrap(), MlDsa65Keypair::generate());
        let other = MlDsa65Signer::new(NodeId::new("node-b").unwrap(), MlDsa65Keypair::generate());
        let ring = KeyRing::new()
            .with(s.node_id().clone(), s.public_key().clone())
            .with(other.node_id().clone(), other.public_key().clone());
        (s, ring)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_bit_flip_is_rejected(payload in prop::collection::vec(any::<u8>(), 0..512), which in 0u8..3, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (signer, ring) = keys();
        let env = Envelope::seal(signer, contexts::INCIDENT, payload.clone()).unwrap();
        prop_assert_eq!(env.open(ring, contexts::INCIDENT).unwrap(), payload.as_slice());
        let mut bad = env.clone();
        match which {
            0 if !bad.payload.is_empty() => {
                let i = pos.index(bad.payload.len());
                bad.payload[i] ^= 1 << bit;
            }
            1 | 0 => {
                let i = pos.index(bad.signature.bytes.len());
                bad.signature.bytes[i] ^= 1 << bit;
            }
            _ => bad.signature.signer = NodeId::new("node-b").unwrap(),
        }
        prop_assert!(bad.open(ring, contexts::INCIDENT).is_err());
        // The untouched envelope never verifies under another message type's context.
        prop_assert!(env.open(ring, contexts::VOTE).is_err());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = from_dag_cbor::<Envelope>(&bytes);
    }

    #[test]
    fn truncated_envelopes_are_errors(cut in any::<prop::sample::Index>()) {
        let (signer, _) = keys();
        let env = Envelope::seal(signer, contexts::POLICY, b"policy v2".to_vec()).unwrap();
        let wire = to_dag_cbor(&env).unwrap();
        let n = cut.index(wire.len());
        prop_assert!(from_dag_cbor::<Envelope>(&wire[..n]).is_err());
    }
}
