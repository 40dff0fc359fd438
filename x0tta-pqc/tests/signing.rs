//! Signing and verification through x0tta-core's `Signer` and `Verifier` traits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use x0tta_core::{Envelope, NodeId, Rejection, Signature, Signer, Verdict, Verifier, contexts};
use x0tta_pqc::{
    Backend, KeyRing, MAX_CONTEXT_LEN, ML_DSA_65, MlDsa65Keypair, MlDsa65PublicKey, MlDsa65Signer,
};

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn signer(name: &str) -> MlDsa65Signer {
    MlDsa65Signer::new(id(name), MlDsa65Keypair::generate())
}

#[test]
fn sign_verify_round_trip() {
    let a = signer("node-a");
    let sig = a.sign(contexts::INCIDENT, b"disk full").unwrap();
    assert_eq!(sig.signer, id("node-a"));
    assert_eq!(sig.alg, ML_DSA_65);
    assert_eq!(sig.bytes.len(), MlDsa65Keypair::SIGNATURE_LEN);
    assert_eq!(
        a.verifier().verify(contexts::INCIDENT, b"disk full", &sig),
        Verdict::Valid
    );
}

#[test]
fn works_as_trait_objects() {
    let a = signer("node-a");
    let v: Arc<dyn Verifier> = Arc::new(a.verifier());
    let s: Arc<dyn Signer> = Arc::new(a);
    assert_eq!(s.node_id(), &id("node-a"));
    for msg in [&b""[..], b"x", &[0xa5; 100_000]] {
        let sig = s.sign(contexts::GOSSIP, msg).unwrap();
        assert!(v.verify(contexts::GOSSIP, msg, &sig).is_valid());
    }
}

#[test]
fn signing_is_randomised_and_both_verify() {
    let a = signer("node-a");
    let s1 = a.sign(contexts::POLICY, b"m").unwrap();
    let s2 = a.sign(contexts::POLICY, b"m").unwrap();
    assert_ne!(s1.bytes, s2.bytes);
    let ring = a.verifier();
    assert!(ring.verify(contexts::POLICY, b"m", &s1).is_valid());
    assert!(ring.verify(contexts::POLICY, b"m", &s2).is_valid());
}

#[test]
fn wrong_context_is_rejected() {
    let a = signer("node-a");
    let ring = a.verifier();
    let sig = a.sign(contexts::INCIDENT, b"payload").unwrap();
    for ctx in [
        contexts::EXECUTION_REPORT,
        contexts::POLICY,
        contexts::GOSSIP,
        b"",
        b"x0tta/incident/v2",
    ] {
        assert_eq!(
            ring.verify(ctx, b"payload", &sig),
            Verdict::Reject(Rejection::BadSignature),
            "context {:?}",
            String::from_utf8_lossy(ctx)
        );
    }
    // And a signature under the empty context is not one under a real context.
    let plain = a.sign(b"", b"payload").unwrap();
    assert!(ring.verify(b"", b"payload", &plain).is_valid());
    assert!(
        !ring
            .verify(contexts::INCIDENT, b"payload", &plain)
            .is_valid()
    );
}

#[test]
fn tampered_message_or_signature_is_rejected() {
    let a = signer("node-a");
    let ring = a.verifier();
    let msg = b"restart service nginx on node-a".to_vec();
    let sig = a.sign(contexts::EXECUTION_REPORT, &msg).unwrap();

    let mut m = msg.clone();
    m[0] ^= 1;
    assert_eq!(
        ring.verify(contexts::EXECUTION_REPORT, &m, &sig),
        Verdict::Reject(Rejection::BadSignature)
    );
    assert!(
        !ring
            .verify(contexts::EXECUTION_REPORT, &msg[..msg.len() - 1], &sig)
            .is_valid()
    );

    for i in [0, 1000, MlDsa65Keypair::SIGNATURE_LEN - 1] {
        let mut bad = sig.clone();
        bad.bytes[i] ^= 0x40;
        assert_eq!(
            ring.verify(contexts::EXECUTION_REPORT, &msg, &bad),
            Verdict::Reject(Rejection::BadSignature),
            "flipped byte {i}"
        );
    }
    let mut short = sig.clone();
    short.bytes.pop();
    assert!(
        !ring
            .verify(contexts::EXECUTION_REPORT, &msg, &short)
            .is_valid()
    );
    let mut long = sig.clone();
    long.bytes.push(0);
    assert!(
        !ring
            .verify(contexts::EXECUTION_REPORT, &msg, &long)
            .is_valid()
    );
    let empty = Signature {
        bytes: Vec::new(),
        ..sig.clone()
    };
    assert!(
        !ring
            .verify(contexts::EXECUTION_REPORT, &msg, &empty)
            .is_valid()
    );
}

#[test]
fn unknown_signer_is_rejected() {
    let a = signer("node-a");
    let b = signer("node-b");
    let ring = a.verifier();
    let sig = b.sign(contexts::GOSSIP, b"hi").unwrap();
    assert_eq!(
        ring.verify(contexts::GOSSIP, b"hi", &sig),
        Verdict::Reject(Rejection::UnknownSigner(id("node-b")))
    );
    assert_eq!(
        KeyRing::new().verify(contexts::GOSSIP, b"hi", &sig),
        Verdict::Reject(Rejection::UnknownSigner(id("node-b")))
    );
}

#[test]
fn signature_claiming_another_signer_is_rejected() {
    // b signs, but the signature claims to be from a, whom the ring trusts.
    let a = signer("node-a");
    let b = signer("node-b");
    let ring = KeyRing::new()
        .with(id("node-a"), a.public_key().clone())
        .with(id("node-b"), b.public_key().clone());
    let mut sig = b.sign(contexts::GOSSIP, b"hi").unwrap();
    assert!(ring.verify(contexts::GOSSIP, b"hi", &sig).is_valid());
    sig.signer = id("node-a");
    assert_eq!(
        ring.verify(contexts::GOSSIP, b"hi", &sig),
        Verdict::Reject(Rejection::BadSignature)
    );
}

#[test]
fn unsupported_algorithm_is_rejected() {
    let a = signer("node-a");
    let mut sig = a.sign(contexts::GOSSIP, b"hi").unwrap();
    for alg in ["ML-DSA-44", "ML-DSA-65+Ed25519", "ml-dsa-65", ""] {
        sig.alg = alg.to_owned();
        assert_eq!(
            a.verifier().verify(contexts::GOSSIP, b"hi", &sig),
            Verdict::Reject(Rejection::UnsupportedAlgorithm(alg.to_owned()))
        );
    }
}

#[test]
fn context_longer_than_255_bytes_is_refused() {
    let a = signer("node-a");
    let max = vec![b'c'; MAX_CONTEXT_LEN];
    let sig = a.sign(&max, b"m").unwrap();
    assert!(a.verifier().verify(&max, b"m", &sig).is_valid());

    let too_long = vec![b'c'; MAX_CONTEXT_LEN + 1];
    let err = a.sign(&too_long, b"m").unwrap_err();
    assert!(err.to_string().contains("256 bytes"), "{err}");
    // Verification under an over-long context is a rejection, never a panic.
    assert!(!a.verifier().verify(&too_long, b"m", &sig).is_valid());
}

#[test]
fn envelope_round_trip() {
    let a = signer("node-a");
    let ring = a.verifier();
    let env = Envelope::seal(&a, contexts::POLICY, b"policy bytes".to_vec()).unwrap();
    assert_eq!(env.open(&ring, contexts::POLICY).unwrap(), b"policy bytes");
    let err = env.open(&ring, contexts::GOSSIP).unwrap_err();
    assert_eq!(err.reason, Rejection::BadSignature);
}

#[test]
fn key_ring_bookkeeping() {
    let a = signer("node-a");
    let b = signer("node-b");
    let mut ring: KeyRing = [(id("node-a"), a.public_key().clone())]
        .into_iter()
        .collect();
    assert_eq!(ring.len(), 1);
    assert_eq!(ring.get(&id("node-a")), Some(a.public_key()));
    assert_eq!(
        ring.insert(id("node-a"), b.public_key().clone()).as_ref(),
        Some(a.public_key())
    );
    // node-a's key is now b's: a's own signatures no longer verify.
    let sig = a.sign(b"c", b"m").unwrap();
    assert_eq!(
        ring.verify(b"c", b"m", &sig),
        Verdict::Reject(Rejection::BadSignature)
    );
    assert!(ring.remove(&id("node-a")).is_some());
    assert!(ring.is_empty());
    assert_eq!(ring.nodes().count(), 0);
}

#[test]
fn public_key_bytes_round_trip_and_length_check() {
    let a = MlDsa65Keypair::generate();
    let raw = a.public_key().as_bytes();
    assert_eq!(raw.len(), MlDsa65PublicKey::LEN);
    assert_eq!(&MlDsa65PublicKey::from_bytes(raw).unwrap(), a.public_key());
    assert!(MlDsa65PublicKey::from_bytes(&raw[1..]).is_err());
    assert!(MlDsa65PublicKey::from_bytes(&[raw, &[0]].concat()).is_err());
}

#[test]
fn debug_output_is_redacted() {
    let a = signer("node-a");
    let shown = format!("{a:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(shown.len() < 300, "{shown}");
}

#[test]
fn every_backend_signs_through_the_traits() {
    for &backend in Backend::ALL {
        let a = MlDsa65Signer::new(id("node-a"), MlDsa65Keypair::generate_with(backend));
        let ring = a.verifier();
        assert_eq!(ring.backend(), backend);
        let sig = a.sign(contexts::INCIDENT, b"disk full").unwrap();
        assert_eq!(sig.bytes.len(), MlDsa65Keypair::SIGNATURE_LEN);
        assert!(
            ring.verify(contexts::INCIDENT, b"disk full", &sig)
                .is_valid()
        );
        assert_eq!(
            ring.verify(contexts::GOSSIP, b"disk full", &sig),
            Verdict::Reject(Rejection::BadSignature),
            "{backend}"
        );
        // Over-long contexts are refused by every backend, signing and verifying.
        let too_long = vec![b'c'; MAX_CONTEXT_LEN + 1];
        assert!(a.sign(&too_long, b"m").is_err());
        assert!(!ring.verify(&too_long, b"disk full", &sig).is_valid());
        // Hedged under every backend.
        assert_ne!(
            a.sign(b"c", b"m").unwrap().bytes,
            a.sign(b"c", b"m").unwrap().bytes
        );
    }
}

#[test]
fn backend_names_and_default() {
    assert_eq!(Backend::ALL[0], Backend::default());
    for &b in Backend::ALL {
        assert_eq!(b.to_string(), b.name());
    }
    let keys = MlDsa65Keypair::generate();
    assert_eq!(keys.backend(), Backend::default());
    let last = *Backend::ALL.last().unwrap();
    assert_eq!(keys.with_backend(last).backend(), last);
    assert_eq!(KeyRing::new().backend(), Backend::default());
}

#[cfg(feature = "rustcrypto")]
#[test]
fn seeded_keys_are_deterministic_and_recoverable_from_the_secret_key() {
    let a = MlDsa65Keypair::from_seed(&[7; 32]);
    let b = MlDsa65Keypair::from_seed(&[7; 32]);
    assert_eq!(a.public_key(), b.public_key());
    assert_ne!(
        a.public_key(),
        MlDsa65Keypair::from_seed(&[8; 32]).public_key()
    );
    let det = x0tta_pqc::rustcrypto::sign_deterministic(&a, b"c", b"m").unwrap();
    assert_eq!(
        det,
        x0tta_pqc::rustcrypto::sign_deterministic(&b, b"c", b"m").unwrap()
    );
    assert!(a.public_key().verify(b"c", b"m", &det).is_valid());
    assert!(
        x0tta_pqc::rustcrypto::sign_deterministic(&a, &[0; MAX_CONTEXT_LEN + 1], b"m").is_err()
    );
}
