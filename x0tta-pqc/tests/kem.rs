//! ML-KEM-768 behaviour through the public API, on every enabled backend, and the
//! cross-check between backends when both are built.

#![cfg(any(feature = "pqclean", feature = "rustcrypto"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use x0tta_pqc::{
    Backend, MlKem768Ciphertext, MlKem768DecapsulationKey, MlKem768EncapsulationKey, MlKemError,
};

#[test]
fn round_trip_on_every_backend() {
    for &backend in Backend::ALL {
        let dk = MlKem768DecapsulationKey::generate_with(backend);
        assert_eq!(dk.backend(), backend);
        assert_eq!(dk.encapsulation_key().backend(), backend);
        let (ct, sent) = dk.encapsulation_key().encapsulate();
        assert_eq!(dk.decapsulate(&ct), sent, "{}", backend.name());
        // Fresh randomness each time.
        let (ct2, sent2) = dk.encapsulation_key().encapsulate();
        assert_ne!(ct, ct2);
        assert_ne!(sent, sent2);
        assert_ne!(
            MlKem768DecapsulationKey::generate_with(backend).encapsulation_key(),
            dk.encapsulation_key()
        );
    }
}

#[test]
fn lengths_are_the_fips_203_ones() {
    assert_eq!(MlKem768EncapsulationKey::LEN, 1184);
    assert_eq!(MlKem768DecapsulationKey::LEN, 2400);
    assert_eq!(MlKem768Ciphertext::LEN, 1088);
    assert_eq!(x0tta_pqc::SharedSecret::LEN, 32);
    let dk = MlKem768DecapsulationKey::generate();
    assert_eq!(dk.to_bytes().len(), 2400);
    assert_eq!(dk.encapsulation_key().as_bytes().len(), 1184);
    // FIPS 203: dk = dk_PKE ‖ ek ‖ H(ek) ‖ z.
    assert_eq!(
        &dk.to_bytes()[1152..2336],
        &dk.encapsulation_key().as_bytes()[..]
    );
}

/// Keys made by one backend work with the other, in both directions: encapsulate with one,
/// decapsulate with the other, and import each other's raw keys.
#[cfg(all(feature = "pqclean", feature = "rustcrypto"))]
#[test]
fn backends_interoperate_both_ways() {
    let pairs = [
        (Backend::PqClean, Backend::RustCrypto),
        (Backend::RustCrypto, Backend::PqClean),
    ];
    for (keygen, sender) in pairs {
        for _ in 0..8 {
            let dk = MlKem768DecapsulationKey::generate_with(keygen);
            let ek = MlKem768EncapsulationKey::from_bytes_with(
                sender,
                dk.encapsulation_key().as_bytes(),
            )
            .unwrap();
            assert_eq!(ek.backend(), sender);
            let (ct, sent) = ek.encapsulate();
            assert_eq!(
                dk.decapsulate(&ct),
                sent,
                "{keygen:?} keys, {sender:?} sender"
            );

            // The secret key moves across too and gives the same answer, also for a
            // ciphertext that implicit rejection turns into a pseudorandom secret.
            let moved = MlKem768DecapsulationKey::from_bytes_with(sender, &dk.to_bytes()).unwrap();
            assert_eq!(moved.backend(), sender);
            assert_eq!(*moved.to_bytes(), *dk.to_bytes());
            assert_eq!(moved.decapsulate(&ct), sent);
            let mut garbled = *ct.as_bytes();
            garbled[17] ^= 0x40;
            let garbled = MlKem768Ciphertext::from_bytes(&garbled).unwrap();
            let rejected = dk.decapsulate(&garbled);
            assert_ne!(rejected, sent);
            assert_eq!(moved.decapsulate(&garbled), rejected);
        }
    }
}

#[cfg(all(feature = "pqclean", feature = "rustcrypto"))]
#[test]
fn deterministic_encapsulation_works_on_a_pqclean_key() {
    let dk = MlKem768DecapsulationKey::generate_with(Backend::PqClean);
    let (ct, k) = dk.encapsulation_key().encapsulate_deterministic(&[42; 32]);
    assert_eq!(dk.decapsulate(&ct), k);
}

#[test]
fn a_wrong_ciphertext_gives_an_unrelated_secret() {
    for &backend in Backend::ALL {
        let dk = MlKem768DecapsulationKey::generate_with(backend);
        let other = MlKem768DecapsulationKey::generate_with(backend);
        let (ct, sent) = other.encapsulation_key().encapsulate();
        let got = dk.decapsulate(&ct);
        assert_ne!(got, sent);
        // Implicit rejection is deterministic: same key, same ciphertext, same output.
        assert_eq!(dk.decapsulate(&ct), got);
    }
}

#[test]
fn imports_check_lengths() {
    for &backend in Backend::ALL {
        for len in [0, 1183, 1185, 2400] {
            assert_eq!(
                MlKem768EncapsulationKey::from_bytes_with(backend, &vec![0; len]).unwrap_err(),
                MlKemError::WrongLength {
                    what: "ML-KEM-768 encapsulation key",
                    actual: len,
                    expected: 1184
                }
            );
        }
        for len in [0, 64, 2399, 2401] {
            assert!(matches!(
                MlKem768DecapsulationKey::from_bytes_with(backend, &vec![0; len]),
                Err(MlKemError::WrongLength { actual, expected: 2400, .. }) if actual == len
            ));
        }
    }
    for len in [0, 1087, 1089] {
        assert!(matches!(
            MlKem768Ciphertext::from_bytes(&vec![0; len]),
            Err(MlKemError::WrongLength { expected: 1088, .. })
        ));
    }
}

#[test]
fn decapsulation_key_import_runs_the_hash_check() {
    for &backend in Backend::ALL {
        let dk = MlKem768DecapsulationKey::generate_with(backend);
        let good = dk.to_bytes();
        // H(ek) is bytes 2336..2368.
        let mut bad = good.to_vec();
        bad[2340] ^= 1;
        assert_eq!(
            MlKem768DecapsulationKey::from_bytes_with(backend, &bad).unwrap_err(),
            MlKemError::HashMismatch
        );
        // A changed ek byte (inside ρ, so the modulus check still passes) breaks it too.
        let mut bad = good.to_vec();
        bad[2300] ^= 1;
        assert_eq!(
            MlKem768DecapsulationKey::from_bytes_with(backend, &bad).unwrap_err(),
            MlKemError::HashMismatch
        );
        // An unreduced coefficient in the embedded ek is named as such.
        let mut bad = good.to_vec();
        bad[1152] = 0xff;
        bad[1153] |= 0x0f;
        assert!(matches!(
            MlKem768DecapsulationKey::from_bytes_with(backend, &bad),
            Err(MlKemError::UnreducedCoefficient {
                index: 0,
                value: 4095,
                ..
            })
        ));
        // z (the last 32 bytes) and dk_PKE are not covered by any FIPS 203 check.
        let mut z_changed = good.to_vec();
        z_changed[2399] ^= 1;
        assert!(MlKem768DecapsulationKey::from_bytes_with(backend, &z_changed).is_ok());
    }
}

#[test]
fn debug_output_hides_secrets() {
    for &backend in Backend::ALL {
        let dk = MlKem768DecapsulationKey::generate_with(backend);
        let (ct, ss) = dk.encapsulation_key().encapsulate();
        let secret_hex: String = dk.to_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let z_hex: String = dk.to_bytes()[2392..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ss_hex: String = ss.as_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let shown = format!("{dk:?} {ss:?} {ct:?}");
        assert!(!shown.contains(&secret_hex), "{shown}");
        assert!(!shown.contains(&z_hex), "{shown}");
        assert!(!shown.contains(&ss_hex), "{shown}");
        assert!(shown.contains("SharedSecret(<redacted>)"));
        assert!(shown.starts_with("MlKem768DecapsulationKey { ek: MlKem768EncapsulationKey("));
    }
}

#[test]
fn error_messages_say_what_was_wrong() {
    let err = MlKem768Ciphertext::from_bytes(&[0; 5]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ML-KEM-768 ciphertext is 5 bytes long, expected 1088"
    );
    let mut ek = [0u8; 1184];
    ek[3] = 0x01;
    ek[4] = 0x0d; // coefficient 2 = 0xd01 = 3329 = q
    assert_eq!(
        MlKem768EncapsulationKey::from_bytes(&ek)
            .unwrap_err()
            .to_string(),
        "ML-KEM-768 encapsulation key: coefficient 2 is 3329, not reduced modulo 3329"
    );
}

#[cfg(feature = "rustcrypto")]
#[test]
fn seeded_generation_is_deterministic_and_seed_sensitive() {
    let a = MlKem768DecapsulationKey::generate_from_seed(&[1; 32], &[2; 32]);
    let b = MlKem768DecapsulationKey::generate_from_seed(&[1; 32], &[2; 32]);
    assert_eq!(*a.to_bytes(), *b.to_bytes());
    assert_eq!(a.backend(), Backend::RustCrypto);
    // z only changes the implicit-rejection key, not ek.
    let c = MlKem768DecapsulationKey::generate_from_seed(&[1; 32], &[3; 32]);
    assert_eq!(a.encapsulation_key(), c.encapsulation_key());
    assert_ne!(*a.to_bytes(), *c.to_bytes());
    let d = MlKem768DecapsulationKey::generate_from_seed(&[4; 32], &[2; 32]);
    assert_ne!(a.encapsulation_key(), d.encapsulation_key());
    for len in [0, 32, 63, 65] {
        assert!(matches!(
            MlKem768DecapsulationKey::from_seed(&vec![0; len]),
            Err(MlKemError::WrongLength { expected: 64, .. })
        ));
    }
}
