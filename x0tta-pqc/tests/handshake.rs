//! The PQ authentication exchange, sans I/O: first contact, KEM-resumed steady state, and
//! every refusal the issue names (wrong identity, tampered transcript, truncated / oversized
//! messages, replay), each a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use x0tta_pqc::handshake::{
    AuthMode, Authenticated, Handshake, HandshakeError, MAX_MESSAGE_LEN, Role, Trust, decode_any,
};
use x0tta_pqc::{IdentityRecord, KeyRing, NodeIdentity};

fn node(name: &str) -> NodeIdentity {
    NodeIdentity::generate(format!("spiffe://mesh/{name}").parse().unwrap())
}

struct Run {
    a_saw: Result<Authenticated, HandshakeError>,
    b_saw: Result<Authenticated, HandshakeError>,
}

/// One full exchange between `a` (initiator) and `b`, with their caches and exporters.
fn run(
    a: &NodeIdentity,
    b: &NodeIdentity,
    a_cache: Option<&IdentityRecord>,
    b_cache: Option<&IdentityRecord>,
    exporters: ([u8; 32], [u8; 32]),
) -> Run {
    let (mut ha, hello_a) =
        Handshake::start(Role::Initiator, a.clone(), b.peer_id(), a_cache.cloned());
    let (mut hb, hello_b) =
        Handshake::start(Role::Responder, b.clone(), a.peer_id(), b_cache.cloned());
    let proof_a = ha.respond(&hello_b, &exporters.0).unwrap();
    let proof_b = hb.respond(&hello_a, &exporters.1).unwrap();
    Run {
        a_saw: ha.finish(&proof_b, &Trust::FirstUse, a_cache),
        b_saw: hb.finish(&proof_a, &Trust::FirstUse, b_cache),
    }
}

#[test]
fn first_contact_then_kem_resumption() {
    let (a, b) = (node("a"), node("b"));
    let e = [1u8; 32];
    let first = run(&a, &b, None, None, (e, e));
    let a_saw = first.a_saw.unwrap();
    let b_saw = first.b_saw.unwrap();
    assert_eq!(a_saw.mode, AuthMode::FirstContact);
    assert_eq!(&a_saw.record, b.record());
    assert_eq!(&b_saw.record, a.record());

    let second = run(&a, &b, Some(&a_saw.record), Some(&b_saw.record), (e, e));
    assert_eq!(second.a_saw.unwrap().mode, AuthMode::KemResumed);
    assert_eq!(second.b_saw.unwrap().mode, AuthMode::KemResumed);

    // Mixed: only one side has a cache.
    let mixed = run(&a, &b, Some(&a_saw.record), None, (e, e));
    assert_eq!(mixed.a_saw.unwrap().mode, AuthMode::KemResumed);
    assert_eq!(mixed.b_saw.unwrap().mode, AuthMode::FirstContact);
}

#[test]
fn tampered_transcript_is_refused_in_both_modes() {
    // The two ends see different exporters: a man in the middle holding two TLS sessions.
    let (a, b) = (node("a"), node("b"));
    let first = run(&a, &b, None, None, ([1; 32], [2; 32]));
    assert!(matches!(first.a_saw, Err(HandshakeError::BadSignature)));
    assert!(matches!(first.b_saw, Err(HandshakeError::BadSignature)));

    let e = [1; 32];
    let known = run(&a, &b, None, None, (e, e));
    let (ra, rb) = (known.a_saw.unwrap().record, known.b_saw.unwrap().record);
    let resumed = run(&a, &b, Some(&ra), Some(&rb), ([1; 32], [2; 32]));
    assert!(matches!(resumed.a_saw, Err(HandshakeError::BadKemProof)));
    assert!(matches!(resumed.b_saw, Err(HandshakeError::BadKemProof)));

    // A Hello changed in flight changes T: the proofs no longer verify.
    let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (mut hb, _) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
    // The substituted Hello carries a challenge the real one did not.
    let (_, other_hello_b) = Handshake::start(
        Role::Responder,
        b.clone(),
        a.peer_id(),
        Some(a.record().clone()),
    );
    assert_eq!(ra.peer_id(), b.peer_id());
    let proof_a = ha.respond(&other_hello_b, &e).unwrap();
    let proof_b = hb.respond(&hello_a, &e).unwrap();
    assert!(matches!(
        ha.finish(&proof_b, &Trust::FirstUse, None),
        Err(HandshakeError::BadSignature)
    ));
    assert!(hb.finish(&proof_a, &Trust::FirstUse, None).is_err());
}

#[test]
fn wrong_identity_is_refused() {
    // C answers on a channel TLS authenticated as B.
    let (a, b, c) = (node("a"), node("b"), node("c"));
    let e = [3u8; 32];
    let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (mut hc, hello_c) = Handshake::start(Role::Responder, c.clone(), a.peer_id(), None);
    ha.respond(&hello_c, &e).unwrap();
    let proof_c = hc.respond(&hello_a, &e).unwrap();
    assert!(matches!(
        ha.finish(&proof_c, &Trust::FirstUse, None),
        Err(HandshakeError::PeerIdMismatch { .. })
    ));
}

#[test]
fn a_changed_pq_key_for_a_known_peer_is_refused() {
    // Same Ed25519 key (same PeerId), new ML-DSA key: what a quantum forger of Ed25519 would
    // present. Refused against the cached record.
    let a = node("a");
    let b = node("b");
    let ed = b.libp2p_keypair().try_into_ed25519().unwrap();
    let forged = NodeIdentity::from_keys(
        b.spiffe_id().clone(),
        ed,
        x0tta_pqc::MlDsa65Keypair::generate(),
        x0tta_pqc::MlKem768DecapsulationKey::generate(),
    )
    .unwrap();
    assert_eq!(forged.peer_id(), b.peer_id());
    let e = [4u8; 32];
    let out = run(&a, &forged, Some(b.record()), None, (e, e));
    assert!(matches!(out.a_saw, Err(HandshakeError::IdentityChanged(_))));
}

#[test]
fn stale_cache_falls_back_to_first_contact() {
    let a = node("a");
    let dir = tempfile::tempdir().unwrap();
    let b1 =
        NodeIdentity::load_or_generate(dir.path(), &"spiffe://mesh/b".parse().unwrap()).unwrap();
    // b re-issues its record (renamed): same keys, new digest. a's cached record is stale.
    let b2 = NodeIdentity::load_or_generate(dir.path(), &"spiffe://mesh/b-new".parse().unwrap())
        .unwrap();
    assert_ne!(b1.record().digest(), b2.record().digest());
    let e = [5u8; 32];
    let out = run(&a, &b2, Some(b1.record()), None, (e, e));
    let saw = out.a_saw.unwrap();
    assert_eq!(saw.mode, AuthMode::FirstContact);
    assert_eq!(saw.record.spiffe_id().as_str(), "spiffe://mesh/b-new");
}

#[test]
fn pinned_trust_refuses_unpinned_peers() {
    let (a, b) = (node("a"), node("b"));
    let e = [6u8; 32];
    let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (mut hb, hello_b) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
    ha.respond(&hello_b, &e).unwrap();
    let proof_b = hb.respond(&hello_a, &e).unwrap();
    let other = node("c");
    let ring = KeyRing::new().with(b.node_id().clone(), other.ml_dsa().public_key().clone());
    assert!(matches!(
        ha.finish(&proof_b, &Trust::Pinned(ring), None),
        Err(HandshakeError::Untrusted(_))
    ));
}

#[test]
fn replayed_messages_are_refused() {
    // Record a whole exchange on channel 1, replay b's messages on channel 2.
    let (a, b) = (node("a"), node("b"));
    let (e1, e2) = ([7u8; 32], [8u8; 32]);
    let (_, hello_a1) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (mut hb1, hello_b1) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
    let proof_b1 = hb1.respond(&hello_a1, &e1).unwrap();

    let (mut ha2, _) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    ha2.respond(&hello_b1, &e2).unwrap();
    assert!(matches!(
        ha2.finish(&proof_b1, &Trust::FirstUse, None),
        Err(HandshakeError::BadSignature)
    ));

    // Reflection: a's own proof sent back to it is for the other role.
    let (mut ha3, hello_a3) = Handshake::start(Role::Initiator, a.clone(), a.peer_id(), None);
    let proof_a3 = ha3.respond(&hello_a3, &e1).unwrap();
    assert!(matches!(
        ha3.finish(&proof_a3, &Trust::FirstUse, None),
        Err(HandshakeError::BadSignature)
    ));
}

#[test]
fn kem_proof_without_challenge_is_refused() {
    let (a, b) = (node("a"), node("b"));
    let e = [9u8; 32];
    // b has a cached record of a, so b's *peer* (a) answers with a KEM proof; replay that
    // KEM proof to a b that made no challenge.
    let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (_, hello_b_challenging) = Handshake::start(
        Role::Responder,
        b.clone(),
        a.peer_id(),
        Some(a.record().clone()),
    );
    let kem_proof = ha.respond(&hello_b_challenging, &e).unwrap();
    let (mut hb, _) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
    hb.respond(&hello_a, &e).unwrap();
    assert!(matches!(
        hb.finish(&kem_proof, &Trust::FirstUse, None),
        Err(HandshakeError::UnexpectedKemProof)
    ));
}

#[test]
fn truncated_oversized_and_garbage_messages_are_typed_errors() {
    let (a, b) = (node("a"), node("b"));
    let e = [10u8; 32];
    let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (mut hb, hello_b) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
    assert!(matches!(
        ha.respond(&vec![0u8; MAX_MESSAGE_LEN + 1], &e),
        Err(HandshakeError::TooLarge { .. })
    ));
    assert!(matches!(
        ha.respond(&hello_b[..hello_b.len() - 1], &e),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(matches!(
        ha.respond(b"\xff\x00", &e),
        Err(HandshakeError::Malformed(_))
    ));
    ha.respond(&hello_b, &e).unwrap();
    let proof_b = hb.respond(&hello_a, &e).unwrap();
    for cut in [0, 1, proof_b.len() / 2, proof_b.len() - 1] {
        let (mut h, _) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
        h.respond(&hello_b, &e).unwrap();
        assert!(
            matches!(
                h.finish(&proof_b[..cut], &Trust::FirstUse, None),
                Err(HandshakeError::Malformed(_))
            ),
            "cut at {cut}"
        );
    }
    // A proof before any Hello.
    let (h, _) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    assert!(matches!(
        h.finish(&proof_b, &Trust::FirstUse, None),
        Err(HandshakeError::Malformed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The handshake decoders (the cargo-fuzz target's input) never panic.
    #[test]
    fn handshake_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_any(&bytes);
    }

    /// Any bit flip in a first-contact proof is refused.
    #[test]
    fn any_bit_flip_in_a_proof_is_refused(pos in 0usize..11000, bit in 0u8..8) {
        static NODES: std::sync::OnceLock<(NodeIdentity, NodeIdentity)> = std::sync::OnceLock::new();
        let (a, b) = NODES.get_or_init(|| (node("a"), node("b")));
        let e = [11u8; 32];
        let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
        let (mut hb, hello_b) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
        ha.respond(&hello_b, &e).unwrap();
        let mut proof = hb.respond(&hello_a, &e).unwrap();
        let pos = pos % proof.len();
        proof[pos] ^= 1 << bit;
        prop_assert!(ha.finish(&proof, &Trust::FirstUse, None).is_err());
    }
}

/// Every single-bit flip of a first-contact proof, exhaustively (about 80,000 exchanges:
/// ignored by default, CI runs it). Found CBOR-header flips (a text key sent as bytes) that a
/// lenient decoder accepted; decoding now insists on the canonical encoding.
#[test]
#[ignore = "exhaustive: about a minute; CI runs it with --ignored"]
fn every_bit_flip_in_a_proof_is_refused() {
    let (a, b) = (node("a"), node("b"));
    let e = [12u8; 32];
    let (_, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (mut hb, hello_b) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
    let proof = hb.respond(&hello_a, &e).unwrap();
    for pos in 0..proof.len() {
        for bit in 0..8 {
            let (mut ha, _) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
            ha.respond(&hello_b, &e).unwrap();
            let mut p = proof.clone();
            p[pos] ^= 1 << bit;
            assert!(
                ha.finish(&p, &Trust::FirstUse, None).is_err(),
                "flip at byte {pos} bit {bit} accepted"
            );
        }
    }
}

#[test]
fn non_canonical_encodings_of_a_valid_proof_are_refused() {
    // The map key "Record" as a byte string instead of a text string (0x66 -> 0x46) decodes to
    // the same value under serde; it must still be refused.
    let (a, b) = (node("a"), node("b"));
    let e = [13u8; 32];
    let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
    let (mut hb, hello_b) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
    ha.respond(&hello_b, &e).unwrap();
    let mut proof = hb.respond(&hello_a, &e).unwrap();
    assert_eq!(&proof[..8], b"\xa1\x66Record");
    proof[1] = 0x46;
    assert!(matches!(
        ha.finish(&proof, &Trust::FirstUse, None),
        Err(HandshakeError::Malformed(_))
    ));
    // The same inside an identity record: its "body" key as bytes.
    let wire = b.record().to_bytes().to_vec();
    let at = wire.windows(5).position(|w| w == b"\x64body").unwrap();
    let mut bad = wire.clone();
    bad[at] = 0x44;
    assert!(matches!(
        x0tta_pqc::IdentityRecord::from_bytes(&bad),
        Err(x0tta_pqc::IdentityError::Malformed(_))
    ));
}
