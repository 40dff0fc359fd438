//! ML-DSA-65 keys as PKCS#8 / SPKI: round trips in DER and PEM, the seed-form keys of
//! Wycheproof's `mldsa_65_sign_seed` file (read with the `rustcrypto` feature, refused with a
//! typed error without it), and bad documents, each a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use proptest::prelude::*;
use x0tta_core::{NodeId, Signature, Verdict, Verifier};
use x0tta_pqc::{KeyRing, ML_DSA_65, MlDsa65Keypair, MlDsa65PublicKey, Pkcs8Error};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn signs_for(keys: &MlDsa65Keypair, public: &MlDsa65PublicKey) -> bool {
    let sig = keys.sign(b"pkcs8", b"message").unwrap();
    let id = NodeId::new("n").unwrap();
    let ring = KeyRing::new().with(id.clone(), public.clone());
    let signature = Signature {
        alg: ML_DSA_65.into(),
        signer: id,
        bytes: sig,
    };
    ring.verify(b"pkcs8", b"message", &signature) == Verdict::Valid
}

#[test]
fn private_keys_round_trip_in_der_and_pem() {
    let keys = MlDsa65Keypair::generate();
    let der = keys.to_pkcs8_der().unwrap();
    // OneAsymmetricKey v2 (version 1), id-ml-dsa-65 without parameters.
    assert_eq!(der[0], 0x30);
    let oid = hex("0609608648016503040312");
    assert!(der.windows(oid.len()).any(|w| w == oid.as_slice()));
    assert!(
        der.windows(3).any(|w| w == [0x02, 0x01, 0x01]),
        "version v2"
    );
    let back = MlDsa65Keypair::from_pkcs8_der(&der).unwrap();
    assert_eq!(back.public_key(), keys.public_key());
    assert!(signs_for(&back, keys.public_key()));

    let pem = keys.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(
        MlDsa65Keypair::from_pkcs8_pem(&pem).unwrap().public_key(),
        keys.public_key()
    );
    // The Debug output of the key pair never shows the secret, PKCS#8 or not.
    assert!(!format!("{back:?}").contains(&pem[30..60]));
}

#[test]
fn public_keys_round_trip_as_spki() {
    let keys = MlDsa65Keypair::generate();
    let der = keys.public_key().to_spki_der().unwrap();
    assert_eq!(
        &MlDsa65PublicKey::from_spki_der(&der).unwrap(),
        keys.public_key()
    );
    let pem = keys.public_key().to_spki_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(
        &MlDsa65PublicKey::from_spki_pem(&pem).unwrap(),
        keys.public_key()
    );
}

/// Seed-form PKCS#8 keys from Wycheproof (`privateKeyPkcs8`, RFC 9881 `seed`).
fn wycheproof_seed_keys() -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/wycheproof/mldsa_65_sign_seed_test.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIPPED: {} missing", path.display());
        return None;
    };
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<_> = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| {
            let pkcs8 = g["privateKeyPkcs8"].as_str()?;
            Some((hex(pkcs8), hex(g["publicKey"].as_str()?)))
        })
        .collect();
    assert_eq!(
        keys.len(),
        27,
        "the file holds 27 valid seed-form PKCS#8 keys"
    );
    Some(keys)
}

#[cfg(feature = "rustcrypto")]
#[test]
fn wycheproof_seed_form_keys_give_their_public_keys() {
    let Some(keys) = wycheproof_seed_keys() else {
        return;
    };
    for (pkcs8, public) in &keys {
        let pair = MlDsa65Keypair::from_pkcs8_der(pkcs8).unwrap();
        assert_eq!(pair.public_key().as_bytes(), public.as_slice());
        // Written back in expandedKey form, the key reads the same under any build.
        let again = MlDsa65Keypair::from_pkcs8_der(&pair.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(again.public_key(), pair.public_key());
        assert!(signs_for(
            &again,
            &MlDsa65PublicKey::from_bytes(public).unwrap()
        ));
    }
}

#[cfg(not(feature = "rustcrypto"))]
#[test]
fn seed_form_keys_need_the_rustcrypto_feature() {
    let Some(keys) = wycheproof_seed_keys() else {
        return;
    };
    for (pkcs8, _) in &keys {
        assert!(matches!(
            MlDsa65Keypair::from_pkcs8_der(pkcs8),
            Err(Pkcs8Error::SeedNeedsRustCrypto)
        ));
    }
}

#[test]
fn bad_documents_are_typed_errors() {
    // An Ed25519 key (RFC 8410 §10.3): another algorithm.
    let ed25519 = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
    assert!(matches!(
        MlDsa65Keypair::from_pkcs8_pem(ed25519),
        Err(Pkcs8Error::Algorithm(_))
    ));
    let keys = MlDsa65Keypair::generate();
    let other = MlDsa65Keypair::generate();
    // A public key in a private-key PEM slot and the other way round.
    let spki = keys.public_key().to_spki_pem().unwrap();
    assert!(matches!(
        MlDsa65Keypair::from_pkcs8_pem(&spki),
        Err(Pkcs8Error::Label { .. })
    ));
    let pem = keys.to_pkcs8_pem().unwrap();
    assert!(matches!(
        MlDsa65PublicKey::from_spki_pem(&pem),
        Err(Pkcs8Error::Label { .. })
    ));
    // Truncated DER.
    let der = keys.to_pkcs8_der().unwrap();
    for cut in [0, 1, 20, der.len() / 2, der.len() - 1] {
        assert!(
            matches!(
                MlDsa65Keypair::from_pkcs8_der(&der[..cut]),
                Err(Pkcs8Error::Malformed(_))
            ),
            "cut at {cut}"
        );
    }
    // The public key swapped for another one: the pair does not match.
    let theirs = other.public_key().as_bytes();
    let mine = keys.public_key().as_bytes();
    let at = der.windows(mine.len()).position(|w| w == mine).unwrap();
    let mut swapped = der.to_vec();
    swapped[at..at + mine.len()].copy_from_slice(theirs);
    assert!(matches!(
        MlDsa65Keypair::from_pkcs8_der(&swapped),
        Err(Pkcs8Error::Key(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The PKCS#8 and SPKI decoders never panic on arbitrary bytes.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6100)) {
        let _ = x0tta_pqc::pkix::decode_any(&bytes);
    }

    /// Any bit flip in a PKCS#8 document is refused or yields the very same key pair: DER has
    /// one encoding, and the key bytes are checked by a sign-and-verify probe.
    #[test]
    fn bit_flips_never_yield_another_key(pos in 0usize..6000, bit in 0u8..8) {
        static KEYS: std::sync::OnceLock<(MlDsa65Keypair, Vec<u8>)> = std::sync::OnceLock::new();
        let (keys, der) = KEYS.get_or_init(|| {
            let k = MlDsa65Keypair::generate();
            let der = k.to_pkcs8_der().unwrap().to_vec();
            (k, der)
        });
        let mut flipped = der.clone();
        let pos = pos % flipped.len();
        flipped[pos] ^= 1 << bit;
        if let Ok(pair) = MlDsa65Keypair::from_pkcs8_der(&flipped) {
            prop_assert_eq!(pair.public_key(), keys.public_key());
        }
    }
}
