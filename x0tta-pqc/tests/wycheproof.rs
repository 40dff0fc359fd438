//! ML-DSA-65 verification against Wycheproof's vectors (C2SP/wycheproof, `testvectors_v1`).
//!
//! Every `valid` case must verify and every `invalid` case must be rejected, going through
//! the same path a node uses: the raw public key is parsed into a [`KeyRing`] and the
//! signature is checked by x0tta-core's `Verifier` (FIPS 204 external interface, with the
//! case's context string; an absent `ctx` is the empty context).
//!
//! The signing vectors are used as far as a hedged signer allows: pqcrypto signs with fresh
//! randomness and has no seed or `rnd` input, so signatures cannot be reproduced byte for
//! byte. Instead each vector's secret key is imported, must sign, and the result must verify;
//! invalid keys and contexts must be refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use x0tta_core::{NodeId, Signature, Verdict, Verifier};
use x0tta_pqc::{KeyRing, ML_DSA_65, MlDsa65Keypair, MlDsa65PublicKey};

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
    assert!(s.len() % 2 == 0, "odd-length hex");
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
        "wycheproof ML-DSA-65 verify: {valid} valid, {invalid} invalid \
         ({bad_key} with a malformed public key), {} failures",
        failures.len()
    );
    assert_eq!(valid + invalid, total, "not every case was run");
    assert!(valid > 0 && invalid > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn wycheproof_mldsa_65_sign_noseed() {
    let Some(doc) = load("mldsa_65_sign_noseed_test.json") else {
        return;
    };
    assert_eq!(field(&doc, "algorithm"), "ML-DSA-65");
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
        let pair = MlDsa65Keypair::from_bytes(&pk, &sk);
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
                        let ring = KeyRing::new().with(signer.clone(), pair.public_key().clone());
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
        "wycheproof ML-DSA-65 sign (no seed): {run} run, {internal_only} mu-only skipped, {} failures",
        failures.len()
    );
    assert!(run > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
