//! X-Wing (X25519 + ML-KEM-768, draft-connolly-cfrg-xwing-kem-06) through the public API:
//! round trips, malformed input, byte-for-byte agreement with RustCrypto's `x-wing` 0.1.1,
//! and the draft's test vectors as shipped in that crate's package (read from the cargo
//! registry when present; the test prints `SKIPPED: …` otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(not(feature = "rustcrypto"))]
#[test]
fn xwing() {
    println!("SKIPPED: X-Wing needs the rustcrypto feature (seeded ML-KEM key generation)");
}

#[cfg(feature = "rustcrypto")]
mod xwing {

    use std::error::Error as _;
    use std::path::PathBuf;

    use serde_json::Value;
    use shake::{ExtendableOutput as _, Shake128, Update as _, XofReader as _};
    use x_wing::{Decapsulate as _, Decapsulator as _, KeyExport as _, TryKeyInit as _};
    use x0tta_pqc::{
        MlKemError, SharedSecret, XWingCiphertext, XWingDecapsulationKey, XWingEncapsulationKey,
        XWingError,
    };

    /// Seeded cases for the cross-check against the `x-wing` crate.
    const INTEROP_CASES: u32 = 128;

    /// Deterministic test randomness: SHAKE128(label ‖ i).
    fn bytes<const N: usize>(label: &str, i: u32) -> [u8; N] {
        let mut xof = Shake128::default();
        xof.update(label.as_bytes());
        xof.update(&i.to_le_bytes());
        let mut out = [0u8; N];
        xof.finalize_xof().read(&mut out);
        out
    }

    fn theirs(seed: [u8; 32]) -> x_wing::DecapsulationKey {
        x_wing::DecapsulationKey::from(seed)
    }

    fn their_ct(ct: &XWingCiphertext) -> x_wing::Ciphertext {
        x_wing::Ciphertext::try_from(&ct.as_bytes()[..]).unwrap()
    }

    fn ours_ct(ct: &x_wing::Ciphertext) -> XWingCiphertext {
        XWingCiphertext::from_bytes(ct.as_slice()).unwrap()
    }

    #[test]
    fn sizes_are_the_drafts() {
        assert_eq!(XWingEncapsulationKey::LEN, 1216);
        assert_eq!(XWingCiphertext::LEN, 1120);
        assert_eq!(XWingDecapsulationKey::SEED_LEN, 32);
        assert_eq!(XWingEncapsulationKey::ESEED_LEN, 64);
        assert_eq!(SharedSecret::LEN, 32);
        assert_eq!(x_wing::ENCAPSULATION_KEY_SIZE, XWingEncapsulationKey::LEN);
        assert_eq!(x_wing::CIPHERTEXT_SIZE, XWingCiphertext::LEN);
        assert_eq!(
            x_wing::DECAPSULATION_KEY_SIZE,
            XWingDecapsulationKey::SEED_LEN
        );
        assert_eq!(
            x_wing::ENCAPSULATION_RANDOMNESS_SIZE,
            XWingEncapsulationKey::ESEED_LEN
        );
    }

    #[test]
    fn round_trip() {
        for _ in 0..8 {
            let dk = XWingDecapsulationKey::generate();
            let ek = XWingEncapsulationKey::from_bytes(dk.encapsulation_key().as_bytes()).unwrap();
            assert_eq!(&ek, dk.encapsulation_key());
            let (ct, sent) = ek.encapsulate();
            let wire = XWingCiphertext::from_bytes(ct.as_bytes()).unwrap();
            assert_eq!(dk.decapsulate(&wire), sent);
            // Fresh randomness each time, and fresh keys.
            let (ct2, sent2) = ek.encapsulate();
            assert_ne!(ct, ct2);
            assert_ne!(sent, sent2);
            assert_eq!(dk.decapsulate(&ct2), sent2);
            assert_ne!(
                XWingDecapsulationKey::generate().encapsulation_key(),
                dk.encapsulation_key()
            );
            // The seed round-trips.
            let again = XWingDecapsulationKey::from_seed(&dk.to_seed());
            assert_eq!(again.encapsulation_key(), dk.encapsulation_key());
            assert_eq!(again.decapsulate(&ct), sent);
        }
    }

    /// A ciphertext changed in either half, or made for another key, decapsulates to a different
    /// secret (ML-KEM's implicit rejection; the X25519 share goes into the combiner).
    #[test]
    fn wrong_ciphertext_gives_a_different_secret() {
        let dk = XWingDecapsulationKey::from_seed(&[1; 32]);
        let ek = dk.encapsulation_key();
        let (ct, sent) = ek.encapsulate_deterministic(&[2; 64]);
        assert_eq!(dk.decapsulate(&ct), sent);

        for i in [0, 17, 1087, 1088, 1100, 1119] {
            let mut garbled = *ct.as_bytes();
            garbled[i] ^= 0x01;
            let got = dk.decapsulate(&XWingCiphertext::from_bytes(&garbled).unwrap());
            assert_ne!(got, sent, "flipped byte {i}");
        }

        let other = XWingDecapsulationKey::from_seed(&[3; 32]);
        assert_ne!(other.decapsulate(&ct), sent);
        // Swapping either half for the one of another encapsulation breaks it too.
        let (ct2, sent2) = ek.encapsulate_deterministic(&[4; 64]);
        let mut mixed = *ct.as_bytes();
        mixed[1088..].copy_from_slice(&ct2.as_bytes()[1088..]);
        let mixed = dk.decapsulate(&XWingCiphertext::from_bytes(&mixed).unwrap());
        assert_ne!(mixed, sent);
        assert_ne!(mixed, sent2);
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let dk = XWingDecapsulationKey::from_seed(&[7; 32]);
        let ek = dk.encapsulation_key().as_bytes().to_vec();

        for len in [0, 32, 1184, 1215, 1217, 2400] {
            let bytes = vec![0u8; len];
            assert_eq!(
                XWingEncapsulationKey::from_bytes(&bytes),
                Err(XWingError::WrongLength {
                    what: "X-Wing encapsulation key",
                    actual: len,
                    expected: 1216
                })
            );
        }
        for len in [0, 1088, 1119, 1121] {
            assert_eq!(
                XWingCiphertext::from_bytes(&vec![0u8; len]),
                Err(XWingError::WrongLength {
                    what: "X-Wing ciphertext",
                    actual: len,
                    expected: 1120
                })
            );
        }
        for len in [0, 31, 33, 64] {
            assert!(matches!(
                XWingDecapsulationKey::from_bytes(&vec![0u8; len]),
                Err(XWingError::WrongLength { actual, expected: 32, .. }) if actual == len
            ));
        }

        // Coefficient 1 of the ML-KEM half set to q = 3329: the FIPS 203 modulus check.
        let mut bad = ek.clone();
        bad[1] = (bad[1] & 0x0f) | ((3329 & 0x0f) << 4) as u8;
        bad[2] = (3329 >> 4) as u8;
        let err = XWingEncapsulationKey::from_bytes(&bad).unwrap_err();
        let XWingError::InvalidMlKemKey(inner) = &err else {
            panic!("expected InvalidMlKemKey, got {err:?}");
        };
        assert!(matches!(
            inner,
            MlKemError::UnreducedCoefficient {
                index: 1,
                value: 3329,
                ..
            }
        ));
        assert!(err.source().is_some());
        assert!(err.to_string().contains("bytes 0..1184"), "{err}");
        // The `x-wing` crate refuses the same key.
        let bad_arr: [u8; 1216] = bad.as_slice().try_into().unwrap();
        assert!(x_wing::EncapsulationKey::new(&bad_arr.into()).is_err());

        // Random bytes: an error or a key, never a panic; the X25519 half is never refused.
        for i in 0..200 {
            let random: [u8; 1216] = bytes("x0tta xwing random ek", i);
            let ours = XWingEncapsulationKey::from_bytes(&random);
            let reference = x_wing::EncapsulationKey::new(&random.into());
            assert_eq!(ours.is_ok(), reference.is_ok(), "case {i}");
        }
        let mut any_x = ek.clone();
        any_x[1184..].fill(0xff);
        assert!(XWingEncapsulationKey::from_bytes(&any_x).is_ok());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let seed = [0xabu8; 32];
        let dk = XWingDecapsulationKey::from_seed(&seed);
        let shown = format!("{dk:?}");
        assert!(shown.starts_with("XWingDecapsulationKey { ek: XWingEncapsulationKey("));
        assert!(!shown.contains("abab"), "{shown}");
        let (ct, ss) = dk.encapsulation_key().encapsulate();
        assert_eq!(format!("{ss:?}"), "SharedSecret(<redacted>)");
        assert!(format!("{ct:?}").starts_with("XWingCiphertext("));
    }

    /// Same seed → same encapsulation key; same `eseed` → same ciphertext and secret; each side
    /// decapsulates the other's ciphertexts (also garbled ones) to the same secret.
    #[test]
    fn agrees_with_the_x_wing_crate() {
        for i in 0..INTEROP_CASES {
            let seed: [u8; 32] = bytes("x0tta xwing interop seed", i);
            let eseed: [u8; 64] = bytes("x0tta xwing interop eseed", i);

            let ours = XWingDecapsulationKey::from_seed(&seed);
            let reference = theirs(seed);
            let their_ek = reference.encapsulation_key();
            assert_eq!(
                &ours.encapsulation_key().as_bytes()[..],
                their_ek.to_bytes().as_slice(),
                "case {i}: encapsulation key"
            );
            assert_eq!(reference.as_bytes(), &*ours.to_seed());

            // Deterministic encapsulation, both ways round.
            let parsed = XWingEncapsulationKey::from_bytes(their_ek.to_bytes().as_slice()).unwrap();
            let (ct, ss) = parsed.encapsulate_deterministic(&eseed);
            let (rct, rss) = their_ek.encapsulate_deterministic(&eseed.into());
            assert_eq!(&ct.as_bytes()[..], rct.as_slice(), "case {i}: ciphertext");
            assert_eq!(ss.as_bytes(), rss.as_slice(), "case {i}: shared secret");
            assert_eq!(ours.decapsulate(&ours_ct(&rct)), ss, "case {i}: our decaps");
            assert_eq!(reference.decapsulate(&their_ct(&ct)), rss);

            // Our random encapsulation decapsulates on theirs.
            let (ct, ss) = ours.encapsulation_key().encapsulate();
            assert_eq!(
                reference.decapsulate(&their_ct(&ct)).as_slice(),
                ss.as_bytes(),
                "case {i}: random encaps"
            );

            // Garbled ciphertexts: implicit rejection (ML-KEM half) and a different X25519
            // share give the same unrelated secret on both sides.
            let pos = (i as usize * 37) % XWingCiphertext::LEN;
            let mut garbled = *ct.as_bytes();
            garbled[pos] ^= 1 << (i % 8);
            let garbled = XWingCiphertext::from_bytes(&garbled).unwrap();
            let got = ours.decapsulate(&garbled);
            assert_ne!(got, ss);
            assert_eq!(
                got.as_bytes(),
                reference.decapsulate(&their_ct(&garbled)).as_slice(),
                "case {i}: garbled byte {pos}"
            );
        }
    }

    /// Edge cases of the X25519 half, where implementations could differ: a non-canonical
    /// public key (top bit set, or ≥ p) is hashed as given, and a low-order ciphertext share
    /// (all-zero Diffie-Hellman output) is accepted like `x-wing`'s default key does.
    #[test]
    fn x25519_edge_cases_agree_with_the_x_wing_crate() {
        let seed = [0x5au8; 32];
        let eseed = [0xa5u8; 64];
        let ours = XWingDecapsulationKey::from_seed(&seed);
        let reference = theirs(seed);
        let ek = *ours.encapsulation_key().as_bytes();

        let mut odd_pks = Vec::new();
        for pk_x in [[0u8; 32], [0xff; 32], {
            let mut p = [0xffu8; 32];
            p[0] = 0xed;
            p[31] = 0x7f; // p = 2^255 - 19 itself
            p
        }] {
            let mut k = ek;
            k[1184..].copy_from_slice(&pk_x);
            odd_pks.push(k);
        }
        let mut top_bit = ek;
        top_bit[1215] |= 0x80;
        odd_pks.push(top_bit);

        for k in odd_pks {
            let parsed = XWingEncapsulationKey::from_bytes(&k).unwrap();
            assert_eq!(parsed.as_bytes(), &k);
            let (ct, ss) = parsed.encapsulate_deterministic(&eseed);
            let (rct, rss) = x_wing::EncapsulationKey::new(&k.into())
                .unwrap()
                .encapsulate_deterministic(&eseed.into());
            assert_eq!(&ct.as_bytes()[..], rct.as_slice());
            assert_eq!(ss.as_bytes(), rss.as_slice());
        }

        // Low-order X25519 shares in a ciphertext.
        let (ct, _) = ours.encapsulation_key().encapsulate_deterministic(&eseed);
        for share in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            let mut c = *ct.as_bytes();
            c[1088..].copy_from_slice(&share);
            let c = XWingCiphertext::from_bytes(&c).unwrap();
            assert_eq!(
                ours.decapsulate(&c).as_bytes(),
                reference.decapsulate(&their_ct(&c)).as_slice()
            );
        }
    }

    /// `$CARGO_HOME/registry/src/*/x-wing-0.1.1/tests/test-vectors.json`, if cargo unpacked it.
    fn draft_vectors_path() -> Option<PathBuf> {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        std::fs::read_dir(home.join("registry/src"))
            .ok()?
            .filter_map(Result::ok)
            .map(|index| index.path().join("x-wing-0.1.1/tests/test-vectors.json"))
            .find(|p| p.is_file())
    }

    fn unhex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd-length hex");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The test vectors published with draft-connolly-cfrg-xwing-kem-06 (its appendix), as
    /// packaged by `x-wing` 0.1.1: seed → sk and pk; eseed → ct and ss; decapsulation → ss.
    #[test]
    fn draft_test_vectors() {
        let Some(path) = draft_vectors_path() else {
            println!(
                "SKIPPED: x-wing-0.1.1/tests/test-vectors.json not found under \
             $CARGO_HOME/registry/src (run `cargo fetch` first)"
            );
            return;
        };
        let vectors: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let vectors = vectors.as_array().expect("a JSON array of vectors");
        assert!(!vectors.is_empty(), "{} has no vectors", path.display());
        for (n, v) in vectors.iter().enumerate() {
            let field = |name: &str| unhex(v[name].as_str().unwrap_or_else(|| panic!("{name}")));
            let seed: [u8; 32] = field("seed")[..32].try_into().unwrap();
            let eseed: [u8; 64] = field("eseed").try_into().unwrap();

            let dk = XWingDecapsulationKey::from_seed(&seed);
            assert_eq!(&dk.to_seed()[..], field("sk"), "vector {n}: sk");
            assert_eq!(
                &dk.encapsulation_key().as_bytes()[..],
                field("pk"),
                "vector {n}: pk"
            );

            let ek = XWingEncapsulationKey::from_bytes(&field("pk")).unwrap();
            let (ct, ss) = ek.encapsulate_deterministic(&eseed);
            assert_eq!(&ct.as_bytes()[..], field("ct"), "vector {n}: ct");
            assert_eq!(&ss.as_bytes()[..], field("ss"), "vector {n}: ss");

            let ct = XWingCiphertext::from_bytes(&field("ct")).unwrap();
            assert_eq!(
                &dk.decapsulate(&ct).as_bytes()[..],
                field("ss"),
                "vector {n}: decaps"
            );
        }
        println!("{} draft vectors from {}", vectors.len(), path.display());
    }
}
