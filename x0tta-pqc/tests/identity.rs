//! Identity records, SPIFFE ids, hybrid signatures and identity key files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use proptest::prelude::*;
use x0tta_core::{Rejection, Signer, Verdict, Verifier, contexts};
use x0tta_pqc::{
    IdentityError, IdentityRecord, IdentityRing, KeyRing, MAX_RECORD_LEN, NodeIdentity, SpiffeId,
};

fn spiffe(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

#[test]
fn spiffe_ids_follow_the_spec() {
    for ok in [
        "spiffe://mesh/node",
        "spiffe://mesh.example/node/alpha",
        "spiffe://a-b_c.d/x/Y_z-1.2",
    ] {
        assert!(ok.parse::<SpiffeId>().is_ok(), "{ok}");
    }
    for bad in [
        "",
        "spiffe://",
        "spiffe://mesh",
        "spiffe://mesh/",
        "spiffe:///node",
        "SPIFFE://mesh/node",
        "https://mesh/node",
        "spiffe://Mesh/node",
        "spiffe://mesh/a//b",
        "spiffe://mesh/a/./b",
        "spiffe://mesh/a/..",
        "spiffe://mesh/a b",
        "spiffe://mesh:8080/a",
        "spiffe://user@mesh/a",
        "spiffe://mesh/a?q",
    ] {
        assert!(
            matches!(
                bad.parse::<SpiffeId>(),
                Err(IdentityError::BadSpiffeId { .. })
            ),
            "{bad:?} was accepted"
        );
    }
    let long = format!("spiffe://mesh/{}", "a".repeat(2040));
    assert!(long.parse::<SpiffeId>().is_err());
}

#[test]
fn record_round_trips_and_binds_every_key() {
    let me = NodeIdentity::generate(spiffe("spiffe://mesh.example/node/a"));
    let record = me.record();
    assert_eq!(record.node_id().as_str(), me.peer_id().to_base58());
    assert_eq!(record.peer_id(), me.libp2p_keypair().public().to_peer_id());
    assert_eq!(record.ml_dsa(), me.ml_dsa().public_key());
    assert_eq!(record.ml_kem(), me.ml_kem().encapsulation_key());
    assert!(record.to_bytes().len() <= MAX_RECORD_LEN);
    let again = IdentityRecord::from_bytes(record.to_bytes()).unwrap();
    assert_eq!(&again, record);
    assert_eq!(again.spiffe_id().as_str(), "spiffe://mesh.example/node/a");
    assert_eq!(again.issued_at(), record.issued_at());
}

#[test]
fn bad_records_get_typed_errors() {
    let me = NodeIdentity::generate(spiffe("spiffe://mesh/a"));
    let wire = me.record().to_bytes();
    assert!(matches!(
        IdentityRecord::from_bytes(&vec![0u8; MAX_RECORD_LEN + 1]),
        Err(IdentityError::TooLarge { .. })
    ));
    assert!(matches!(
        IdentityRecord::from_bytes(&wire[..wire.len() / 2]),
        Err(IdentityError::Malformed(_))
    ));
    assert!(matches!(
        IdentityRecord::from_bytes(b""),
        Err(IdentityError::Malformed(_))
    ));
    // Another node's signatures over this node's body.
    let other = NodeIdentity::generate(spiffe("spiffe://mesh/b"));
    let sig_at = |w: &[u8]| w.len() - 3309;
    let mut spliced = wire.to_vec();
    let o = other.record().to_bytes();
    spliced[sig_at(wire)..].copy_from_slice(&o[sig_at(o)..]);
    assert!(matches!(
        IdentityRecord::from_bytes(&spliced),
        Err(IdentityError::BadSignature { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any single bit flip anywhere in a record is refused.
    #[test]
    fn any_bit_flip_in_a_record_is_refused(pos in 0usize..6900, bit in 0u8..8) {
        static ME: std::sync::OnceLock<NodeIdentity> = std::sync::OnceLock::new();
        let me = ME.get_or_init(|| NodeIdentity::generate(spiffe("spiffe://mesh/a")));
        let mut wire = me.record().to_bytes().to_vec();
        let pos = pos % wire.len();
        wire[pos] ^= 1 << bit;
        prop_assert!(IdentityRecord::from_bytes(&wire).is_err());
    }

    /// Arbitrary bytes never panic the record decoder.
    #[test]
    fn record_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let _ = IdentityRecord::from_bytes(&bytes);
    }
}

#[test]
fn hybrid_signatures_need_both_halves() {
    let me = NodeIdentity::generate(spiffe("spiffe://mesh/a"));
    let ring = IdentityRing::new().with(me.record().clone());
    let msg = b"raise cpu threshold to 90";
    let sig = me.hybrid().sign(contexts::POLICY, msg).unwrap();
    assert_eq!(sig.alg, "ML-DSA-65+Ed25519");
    assert_eq!(sig.bytes.len(), 3309 + 64);
    assert!(ring.verify(contexts::POLICY, msg, &sig).is_valid());
    assert!(!ring.verify(contexts::VOTE, msg, &sig).is_valid());
    assert!(
        !ring
            .verify(contexts::POLICY, b"raise cpu threshold to 99", &sig)
            .is_valid()
    );

    // Flip a bit in the Ed25519 half: the ML-DSA half still verifies, the whole must not.
    let mut classical = sig.clone();
    let last = classical.bytes.len() - 1;
    classical.bytes[last] ^= 1;
    assert_eq!(
        ring.verify(contexts::POLICY, msg, &classical),
        Verdict::Reject(Rejection::BadSignature)
    );
    let mut pq = sig.clone();
    pq.bytes[10] ^= 1;
    assert!(!ring.verify(contexts::POLICY, msg, &pq).is_valid());
    // Stripping the classical half while keeping the hybrid label fails too.
    let mut stripped = sig.clone();
    stripped.bytes.truncate(3309);
    assert!(!ring.verify(contexts::POLICY, msg, &stripped).is_valid());
    let mut short = sig.clone();
    short.bytes.truncate(10);
    assert!(!ring.verify(contexts::POLICY, msg, &short).is_valid());

    // ML-DSA-only signatures: accepted by default, refused by a hybrid-only ring.
    let plain = me.sign(contexts::POLICY, msg).unwrap();
    assert!(ring.verify(contexts::POLICY, msg, &plain).is_valid());
    assert!(
        me.record()
            .ml_dsa()
            .verify(contexts::POLICY, msg, &plain.bytes)
            .is_valid()
    );
    assert!(
        ring.to_key_ring()
            .verify(contexts::POLICY, msg, &plain)
            .is_valid()
    );
    let strict = ring.clone().require_hybrid();
    assert!(matches!(
        strict.verify(contexts::POLICY, msg, &plain),
        Verdict::Reject(Rejection::UnsupportedAlgorithm(_))
    ));
    assert!(strict.verify(contexts::POLICY, msg, &sig).is_valid());
    // The KeyRing (ML-DSA only) refuses the hybrid label instead of half-checking it.
    assert!(
        !KeyRing::new()
            .with(me.node_id().clone(), me.record().ml_dsa().clone())
            .verify(contexts::POLICY, msg, &sig)
            .is_valid()
    );

    // Unknown signer.
    let stranger = NodeIdentity::generate(spiffe("spiffe://mesh/b"));
    let sig = stranger.hybrid().sign(contexts::POLICY, msg).unwrap();
    assert!(matches!(
        ring.verify(contexts::POLICY, msg, &sig),
        Verdict::Reject(Rejection::UnknownSigner(_))
    ));
}

#[test]
fn debug_output_shows_no_key_material() {
    let me = NodeIdentity::generate(spiffe("spiffe://mesh/a"));
    let shown = format!("{me:?} {:?} {:#?}", me.record(), me.hybrid());
    assert!(shown.contains("spiffe://mesh/a"));
    let seed_hex: String = me
        .libp2p_keypair()
        .try_into_ed25519()
        .unwrap()
        .secret()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!shown.contains(&seed_hex));
    assert!(shown.len() < 2000, "{shown}");
}

#[test]
fn identity_files_are_private_stable_and_reissued_on_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let a = spiffe("spiffe://mesh/a");
    let first = NodeIdentity::load_or_generate(&path, &a).unwrap();
    for name in [
        "mldsa65.sk",
        "mldsa65.pk",
        "ed25519.sk",
        "mlkem768.sk",
        "identity.rec",
    ] {
        let mode = std::fs::metadata(path.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    assert_eq!(
        std::fs::metadata(path.join("ed25519.sk")).unwrap().len(),
        32
    );
    assert_eq!(
        std::fs::metadata(path.join("mlkem768.sk")).unwrap().len(),
        2400
    );
    let again = NodeIdentity::load_or_generate(&path, &a).unwrap();
    assert_eq!(again.record(), first.record());
    assert_eq!(again.node_id(), first.node_id());

    // A new name: same keys, new record.
    let renamed = NodeIdentity::load_or_generate(&path, &spiffe("spiffe://mesh/b")).unwrap();
    assert_eq!(renamed.node_id(), first.node_id());
    assert_ne!(renamed.record(), first.record());
    assert_eq!(renamed.spiffe_id().as_str(), "spiffe://mesh/b");

    // A secret key readable by others is refused.
    std::fs::set_permissions(
        path.join("ed25519.sk"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = NodeIdentity::load_or_generate(&path, &a).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(
        path.join("ed25519.sk"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // A corrupt record is an error, not silently replaced.
    std::fs::write(path.join("identity.rec"), b"garbage").unwrap();
    let err = NodeIdentity::load_or_generate(&path, &a).unwrap_err();
    assert!(err.to_string().contains("identity.rec"), "{err}");
}

/// Every single-bit flip of an identity record, exhaustively (about 55,000 decodes: ignored by
/// default, CI runs it).
#[test]
#[ignore = "exhaustive: about a minute; CI runs it with --ignored"]
fn every_bit_flip_in_a_record_is_refused() {
    let me = NodeIdentity::generate(spiffe("spiffe://mesh/a"));
    let wire = me.record().to_bytes().to_vec();
    for pos in 0..wire.len() {
        for bit in 0..8 {
            let mut w = wire.clone();
            w[pos] ^= 1 << bit;
            assert!(
                IdentityRecord::from_bytes(&w).is_err(),
                "flip at byte {pos} bit {bit} accepted"
            );
        }
    }
}
