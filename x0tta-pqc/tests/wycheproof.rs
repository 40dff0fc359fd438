//! ML-DSA-65 verification against Wycheproof's vectors (C2SP/wycheproof, `testvectors_v1`).
//!
//! Every `valid` case must verify and every `invalid` case must be rejected, going through
//! the same path a node uses: the raw public key is parsed into a [`KeyRing`] and the
//! signature is checked by x0tta-core's `Verifier` (FIPS 204 external interface, with the
//! case's context string; an absent `ctx` is the empty context).
//!
//! Every test runs once per compiled-in [`Backend`].
//!
//! The signing vectors: with every backend, each vector's secret key is imported, must sign
//! (hedged), and the result must verify; invalid keys and contexts must be refused. PQClean
//! has no seed, `rnd` or μ input, so only the RustCrypto backend reproduces the vectors'
//! signatures byte for byte: deterministic signing for cases without `rnd`, `Sign_internal`
//! with `M' = 0 ‖ |ctx| ‖ ctx ‖ M` and the given `rnd` for the `Randomized` case, and
//! precomputed-μ signing for the `Internal` (μ-only) cases (see `mldsa.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use x0tta_core::{NodeId, Signature, Verdict, Verifier};
use x0tta_pqc::{Backend, KeyRing, ML_DSA_65, MlDsa65Keypair, MlDsa65PublicKey};

fn data_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/wycheproof")
        .join(name)
}

/// The parsed vector file, or `None` (after printing why) if the data is not there.
fn load(name: &str) -> Option<Value> {
    let path = data_file(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIPPED: {} missing", path.display());
        return None;
    };
    Some(serde_json::from_str(&text).unwrap())
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing string field {key}"))
}

#[test]
fn wycheproof_mldsa_65_verify() {
    let Some(doc) = load("mldsa_65_verify_test.json") else {
        return;
    };
    assert_eq!(field(&doc, "algorithm"), "ML-DSA-65");
    for &backend in Backend::ALL {
        verify_file(&doc, backend);
    }
}

fn verify_file(doc: &Value, backend: Backend) {
    let signer = NodeId::new("wycheproof").unwrap();
    let (mut valid, mut invalid, mut bad_key) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        assert_eq!(field(group, "type"), "MlDsaVerify");
        let key = MlDsa65PublicKey::from_bytes(&hex(field(group, "publicKey")));
        for case in group["tests"].as_array().unwrap() {
            let id = case["tcId"].as_u64().unwrap();
            let expect_valid = match field(case, "result") {
                "valid" => true,
                "invalid" => false,
                other => panic!("tcId {id}: unexpected result {other:?}"),
            };
            let msg = hex(field(case, "msg"));
            let ctx = case["ctx"].as_str().map(hex).unwrap_or_default();
            let sig = Signature {
                signer: signer.clone(),
                alg: ML_DSA_65.to_owned(),
                bytes: hex(field(case, "sig")),
            };
            // A key that does not parse cannot get into a key ring: that is a rejection.
            let verdict = match &key {
                Ok(k) => KeyRing::new()
                    .with_backend(backend)
                    .with(signer.clone(), k.clone())
                    .verify(&ctx, &msg, &sig),
                Err(_) => {
                    bad_key += 1;
                    Verdict::Reject(x0tta_core::Rejection::BadSignature)
                }
            };
            if verdict.is_valid() != expect_valid {
                failures.push(format!(
                    "tcId {id} ({}; flags {}): expected {}, got {verdict:?}",
                    field(case, "comment"),
                    case["flags"],
                    field(case, "result"),
                ));
            }
            if expect_valid {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
    }
    let total = doc["numberOfTests"].as_u64().unwrap() as usize;
    println!(
        "wycheproof ML-DSA-65 verify [{backend}]: {valid} valid, {invalid} invalid \
         ({bad_key} with a malformed public key), {} failures",
        failures.len()
    );
    assert_eq!(valid + invalid, total, "not every case was run");
    assert!(valid > 0 && invalid > 0);
    assert!(failures.is_empty(), "[{backend}]\n{}", failures.join("\n"));
}

#[test]
fn wycheproof_mldsa_65_sign_noseed() {
    let Some(doc) = load("mldsa_65_sign_noseed_test.json") else {
        return;
    };
    assert_eq!(field(&doc, "algorithm"), "ML-DSA-65");
    for &backend in Backend::ALL {
        sign_noseed_file(&doc, backend);
    }
}

/// Hedged signing with the vector's imported key: ours must verify, and so must theirs.
fn sign_noseed_file(doc: &Value, backend: Backend) {
    let signer = NodeId::new("wycheproof").unwrap();
    let (mut run, mut internal_only) = (0usize, 0usize);
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let sk = hex(field(group, "privateKey"));
        // Groups with a malformed private key carry no public key; any well-formed one
        // shows that the secret key's own length is checked.
        let pk = group["publicKey"]
            .as_str()
            .map(hex)
            .unwrap_or_else(|| vec![0; MlDsa65PublicKey::LEN]);
        let pair = MlDsa65Keypair::from_bytes(&pk, &sk).map(|p| p.with_backend(backend));
        for case in group["tests"].as_array().unwrap() {
            let id = case["tcId"].as_u64().unwrap();
            let Some(msg) = case["msg"].as_str().map(hex) else {
                // `Internal` vectors give only mu, which this interface cannot take.
                internal_only += 1;
                continue;
            };
            run += 1;
            let ctx = case["ctx"].as_str().map(hex).unwrap_or_default();
            let outcome = match &pair {
                Err(e) => Err(format!("key refused: {e}")),
                Ok(pair) => match pair.sign(&ctx, &msg) {
                    Err(e) => Err(format!("signing refused: {e}")),
                    Ok(bytes) => {
                        let ring = KeyRing::new()
                            .with_backend(backend)
                            .with(signer.clone(), pair.public_key().clone());
                        let ours = Signature {
                            signer: signer.clone(),
                            alg: ML_DSA_65.to_owned(),
                            bytes,
                        };
                        let theirs = Signature {
                            bytes: hex(field(case, "sig")),
                            ..ours.clone()
                        };
                        match (
                            ring.verify(&ctx, &msg, &ours),
                            ring.verify(&ctx, &msg, &theirs),
                        ) {
                            (Verdict::Valid, Verdict::Valid) => Ok(()),
                            (a, b) => Err(format!("ours {a:?}, the vector's {b:?}")),
                        }
                    }
                },
            };
            let expect_valid = field(case, "result") == "valid";
            // An invalid case must be refused up front, not merely fail to verify.
            let refused = outcome
                .as_ref()
                .is_err_and(|e| e.starts_with("key refused") || e.starts_with("signing refused"));
            if outcome.is_ok() != expect_valid || (!expect_valid && !refused) {
                failures.push(format!(
                    "tcId {id} ({}; flags {}): expected {}, got {outcome:?}",
                    field(case, "comment"),
                    case["flags"],
                    field(case, "result"),
                ));
            }
        }
    }
    println!(
        "wycheproof ML-DSA-65 sign (no seed) [{backend}]: {run} run, {internal_only} mu-only \
         skipped, {} failures",
        failures.len()
    );
    assert!(run > 0);
    assert!(failures.is_empty(), "[{backend}]\n{}", failures.join("\n"));
}

/// Byte-for-byte known answers (RustCrypto only; see the module docs).
#[cfg(feature = "rustcrypto")]
mod known_answers {
    use x0tta_pqc::rustcrypto;

    use super::*;

    /// What one signing case reproduced, or why not.
    enum Outcome {
        Reproduced,
        Refused(String),
        Mismatch(String),
    }

    /// Reproduces one valid case's signature with `keys`, or checks an invalid one is refused.
    fn check_case(keys: &MlDsa65Keypair, case: &Value) -> Outcome {
        let expected = hex(field(case, "sig"));
        let rnd = case["rnd"].as_str().map(|r| {
            <[u8; 32]>::try_from(hex(r)).unwrap_or_else(|_| panic!("rnd is not 32 bytes"))
        });
        let ctx = case["ctx"].as_str().map(hex).unwrap_or_default();
        let mu = case["mu"]
            .as_str()
            .map(|m| <[u8; 64]>::try_from(hex(m)).unwrap_or_else(|_| panic!("mu is not 64 bytes")));
        let pk = keys.public_key();
        let produced = match (case["msg"].as_str().map(hex), rnd) {
            (Some(msg), None) => {
                // mu as FIPS 204 defines it; absent exactly when the context is too long.
                if rustcrypto::compute_mu(pk, &ctx, &msg) != mu {
                    return Outcome::Mismatch("computed mu differs".into());
                }
                match rustcrypto::sign_deterministic(keys, &ctx, &msg) {
                    Ok(sig) => sig,
                    Err(e) => return Outcome::Refused(e.to_string()),
                }
            }
            (Some(msg), Some(rnd)) => {
                let Ok(len) = u8::try_from(ctx.len()) else {
                    return Outcome::Refused("context too long".into());
                };
                let m_prime = [&[0, len][..], &ctx, &msg].concat();
                rustcrypto::sign_internal(keys, &m_prime, &rnd).unwrap()
            }
            (None, None) => {
                let mu = mu.expect("a case without msg has mu");
                let sig = rustcrypto::sign_mu_deterministic(keys, &mu).unwrap();
                if !rustcrypto::verify_mu(pk, &mu, &expected).is_valid() {
                    return Outcome::Mismatch("expected signature fails verify_mu".into());
                }
                sig
            }
            (None, Some(_)) => panic!("randomized mu-only cases are not in the file"),
        };
        if produced != expected {
            return Outcome::Mismatch("signature differs".into());
        }
        if let Some(msg) = case["msg"].as_str().map(hex) {
            for &backend in Backend::ALL {
                if !pk.verify_with(backend, &ctx, &msg, &produced).is_valid() {
                    return Outcome::Mismatch(format!(
                        "reproduced signature fails under {backend}"
                    ));
                }
            }
        }
        Outcome::Reproduced
    }

    /// Runs every case of a sign file; `keys` makes a group's key pair (or refuses it).
    fn run_file(
        doc: &Value,
        what: &str,
        mut keys: impl FnMut(&Value) -> Result<MlDsa65Keypair, String>,
    ) -> (usize, usize) {
        let (mut reproduced, mut refused) = (0usize, 0usize);
        let mut failures = Vec::new();
        for group in doc["testGroups"].as_array().unwrap() {
            let pair = keys(group);
            for case in group["tests"].as_array().unwrap() {
                let id = case["tcId"].as_u64().unwrap();
                let expect_valid = field(case, "result") == "valid";
                let outcome = match &pair {
                    Err(e) => Outcome::Refused(format!("key refused: {e}")),
                    Ok(pair) => check_case(pair, case),
                };
                match (outcome, expect_valid) {
                    (Outcome::Reproduced, true) => reproduced += 1,
                    (Outcome::Refused(_), false) => refused += 1,
                    (Outcome::Reproduced, false) => {
                        failures.push(format!("tcId {id}: invalid case was signed"));
                    }
                    (Outcome::Refused(why) | Outcome::Mismatch(why), _) => failures.push(format!(
                        "tcId {id} ({}; flags {}): {why}",
                        field(case, "comment"),
                        case["flags"]
                    )),
                }
            }
        }
        let total = doc["numberOfTests"].as_u64().unwrap() as usize;
        println!(
            "wycheproof ML-DSA-65 {what} [rustcrypto, byte for byte]: {reproduced} reproduced, \
             {refused} invalid refused, {} failures",
            failures.len()
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(reproduced + refused, total, "not every case was run");
        (reproduced, refused)
    }

    #[test]
    fn wycheproof_mldsa_65_sign_noseed_byte_for_byte() {
        let Some(doc) = load("mldsa_65_sign_noseed_test.json") else {
            return;
        };
        run_file(&doc, "sign (no seed)", |group| {
            let sk = hex(field(group, "privateKey"));
            let pk = group["publicKey"]
                .as_str()
                .map(hex)
                .unwrap_or_else(|| vec![0; MlDsa65PublicKey::LEN]);
            MlDsa65Keypair::from_bytes(&pk, &sk)
                .map(|p| p.with_backend(Backend::RustCrypto))
                .map_err(|e| e.to_string())
        });
    }

    #[test]
    fn wycheproof_mldsa_65_sign_seed() {
        let Some(doc) = load("mldsa_65_sign_seed_test.json") else {
            return;
        };
        assert_eq!(field(&doc, "algorithm"), "ML-DSA-65");
        let signer = NodeId::new("wycheproof").unwrap();
        let (mut keygens, mut hedged) = (0usize, 0usize);
        run_file(&doc, "sign (seed)", |group| {
            // A seed of the wrong length cannot be passed to `from_seed` at all.
            let seed = <[u8; 32]>::try_from(hex(field(group, "privateSeed")))
                .map_err(|s| format!("seed is {} bytes", s.len()))?;
            let keys = MlDsa65Keypair::from_seed(&seed);
            // KeyGen_internal(seed) gives exactly the vector's public key.
            assert_eq!(
                keys.public_key().as_bytes(),
                hex(field(group, "publicKey")),
                "public key from seed"
            );
            keygens += 1;
            // Every backend signs (hedged) with the derived key, and every backend accepts.
            for &backend in Backend::ALL {
                let keys = MlDsa65Keypair::from_seed(&seed).with_backend(backend);
                let bytes = keys.sign(b"ctx", b"hedged").unwrap();
                let sig = Signature {
                    signer: signer.clone(),
                    alg: ML_DSA_65.to_owned(),
                    bytes,
                };
                for &verifier in Backend::ALL {
                    let ring = KeyRing::new()
                        .with_backend(verifier)
                        .with(signer.clone(), keys.public_key().clone());
                    assert!(ring.verify(b"ctx", b"hedged", &sig).is_valid());
                }
                hedged += 1;
            }
            Ok(keys.with_backend(Backend::RustCrypto))
        });
        println!(
            "wycheproof ML-DSA-65 sign (seed): {keygens} keys derived from seeds, {hedged} \
             hedged sign/verify checks across backends"
        );
        assert!(keygens > 0);
    }
}
