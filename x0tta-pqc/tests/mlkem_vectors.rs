//! ML-KEM-768 against real test vectors, on every enabled backend: NIST ACVP (keyGen,
//! encapDecap), Wycheproof (`mlkem_768_*.json`) and C2SP CCTV (modulus, strcmp, unlucky
//! sampling, intermediate values, and the accumulated pq-crystals run).
//!
//! The data lives in `../shared/data/` (see its README); a missing file prints
//! `SKIPPED: <path> missing` and the test returns.
//!
//! PQClean has no seeded key generation or encapsulation with given randomness. For it,
//! these tests import the given (or RustCrypto-derived) decapsulation keys and check
//! decapsulation, key parsing and the FIPS 203 input checks; the byte-for-byte keygen and
//! encaps checks run on RustCrypto.

#![cfg(any(feature = "pqclean", feature = "rustcrypto"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Read as _;

use serde_json::Value;
use x0tta_pqc::{
    Backend, MlKem768Ciphertext, MlKem768DecapsulationKey, MlKem768EncapsulationKey, MlKemError,
};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/");

fn read(rel: &str) -> Option<Vec<u8>> {
    let path = format!("{DATA}{rel}");
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            println!("SKIPPED: {path} missing");
            None
        }
    }
}

fn json(rel: &str) -> Option<Value> {
    read(rel).map(|b| serde_json::from_slice(&b).unwrap())
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn field(v: &Value, name: &str) -> Vec<u8> {
    unhex(
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {v}")),
    )
}

#[cfg(feature = "rustcrypto")]
fn arr32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().unwrap()
}

/// Wycheproof / ACVP test lists joined with expected results by `tcId`.
fn by_tc_id(results: &Value) -> HashMap<u64, Value> {
    let mut map = HashMap::new();
    for g in results["testGroups"].as_array().unwrap() {
        for t in g["tests"].as_array().unwrap() {
            map.insert(t["tcId"].as_u64().unwrap(), t.clone());
        }
    }
    map
}

/// `key = hex` lines of a CCTV text file, in order.
fn cctv_fields(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .filter(|(_, v)| v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(k, v)| (k.trim().to_owned(), unhex(v.trim())))
        .collect()
}

fn first<'a>(fields: &'a [(String, Vec<u8>)], key: &str) -> &'a [u8] {
    &fields
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

/// Imports `dk` on `backend`, checks it carries `ek` (when given) and decapsulates `ct` to
/// `k`.
fn check_decaps(backend: Backend, dk: &[u8], ek: Option<&[u8]>, ct: &[u8], k: &[u8], id: &str) {
    let key = MlKem768DecapsulationKey::from_bytes_with(backend, dk)
        .unwrap_or_else(|e| panic!("{id} on {}: dk refused: {e}", backend.name()));
    assert_eq!(&key.to_bytes()[..], dk, "{id}: dk round trip");
    if let Some(ek) = ek {
        assert_eq!(
            &key.encapsulation_key().as_bytes()[..],
            ek,
            "{id} on {}: ek",
            backend.name()
        );
    }
    let ct = MlKem768Ciphertext::from_bytes(ct).unwrap();
    assert_eq!(
        &key.decapsulate(&ct).as_bytes()[..],
        k,
        "{id} on {}: K",
        backend.name()
    );
}

#[cfg(feature = "rustcrypto")]
fn check_keygen(d: &[u8], z: &[u8], ek: &[u8], dk: &[u8], id: &str) -> MlKem768DecapsulationKey {
    let key = MlKem768DecapsulationKey::generate_from_seed(&arr32(d), &arr32(z));
    assert_eq!(&key.encapsulation_key().as_bytes()[..], ek, "{id}: ek");
    assert_eq!(&key.to_bytes()[..], dk, "{id}: dk");
    key
}

#[cfg(feature = "rustcrypto")]
fn check_encaps(ek: &[u8], m: &[u8], ct: &[u8], k: &[u8], id: &str) {
    let key = MlKem768EncapsulationKey::from_bytes_with(Backend::RustCrypto, ek).unwrap();
    let (got_ct, got_k) = key.encapsulate_deterministic(&arr32(m));
    assert_eq!(&got_ct.as_bytes()[..], ct, "{id}: c");
    assert_eq!(&got_k.as_bytes()[..], k, "{id}: K");
}

// ---------------------------------------------------------------------------------------------
// NIST ACVP

#[test]
fn acvp_keygen() {
    let dir = "acvp/ML-KEM-keyGen-FIPS203/";
    let (Some(prompt), Some(results)) = (
        json(&format!("{dir}prompt.ML-KEM-768.json")),
        json(&format!("{dir}expectedResults.ML-KEM-768.json")),
    ) else {
        return;
    };
    let expected = by_tc_id(&results);
    let mut n = 0;
    for g in prompt["testGroups"].as_array().unwrap() {
        assert_eq!(g["parameterSet"], "ML-KEM-768");
        for t in g["tests"].as_array().unwrap() {
            let id = format!("ACVP keyGen tcId {}", t["tcId"]);
            let want = &expected[&t["tcId"].as_u64().unwrap()];
            let (ek, dk) = (field(want, "ek"), field(want, "dk"));
            #[cfg(feature = "rustcrypto")]
            check_keygen(&field(t, "d"), &field(t, "z"), &ek, &dk, &id);
            for &backend in Backend::ALL {
                let key = MlKem768DecapsulationKey::from_bytes_with(backend, &dk).unwrap();
                assert_eq!(&key.encapsulation_key().as_bytes()[..], &ek[..], "{id}");
                assert_eq!(&key.to_bytes()[..], &dk[..], "{id}");
                MlKem768EncapsulationKey::from_bytes_with(backend, &ek).unwrap();
            }
            n += 1;
        }
    }
    assert_eq!(n, 25);
    println!(
        "ACVP ML-KEM-768 keyGen: {n} cases; {}",
        coverage("seeded keygen")
    );
}

#[test]
fn acvp_encap_decap() {
    let dir = "acvp/ML-KEM-encapDecap-FIPS203/";
    let (Some(prompt), Some(results)) = (
        json(&format!("{dir}prompt.ML-KEM-768.json")),
        json(&format!("{dir}expectedResults.ML-KEM-768.json")),
    ) else {
        return;
    };
    let expected = by_tc_id(&results);
    let (mut encaps, mut decaps) = (0, 0);
    for g in prompt["testGroups"].as_array().unwrap() {
        assert_eq!(g["parameterSet"], "ML-KEM-768");
        for t in g["tests"].as_array().unwrap() {
            let id = format!("ACVP encapDecap tcId {}", t["tcId"]);
            let want = &expected[&t["tcId"].as_u64().unwrap()];
            match g["function"].as_str().unwrap() {
                "encapsulation" => {
                    let ek = field(t, "ek");
                    #[cfg(feature = "rustcrypto")]
                    check_encaps(
                        &ek,
                        &field(t, "m"),
                        &field(want, "c"),
                        &field(want, "k"),
                        &id,
                    );
                    for &backend in Backend::ALL {
                        MlKem768EncapsulationKey::from_bytes_with(backend, &ek).unwrap();
                    }
                    encaps += 1;
                }
                "decapsulation" => {
                    for &backend in Backend::ALL {
                        let (dk, c, k) = (field(g, "dk"), field(t, "c"), field(want, "k"));
                        check_decaps(backend, &dk, None, &c, &k, &id);
                    }
                    decaps += 1;
                }
                other => panic!("unknown ACVP function {other}"),
            }
        }
    }
    assert_eq!((encaps, decaps), (25, 10));
    println!(
        "ACVP ML-KEM-768 encapDecap: {encaps} encapsulation cases ({}), {decaps} decapsulation \
         cases on {:?}",
        coverage("deterministic encaps"),
        names()
    );
}

// ---------------------------------------------------------------------------------------------
// Wycheproof

fn wycheproof_tests(file: &str) -> Option<Vec<Value>> {
    let v = json(&format!("wycheproof/{file}"))?;
    let mut tests = Vec::new();
    for g in v["testGroups"].as_array().unwrap() {
        assert_eq!(g["parameterSet"], "ML-KEM-768");
        tests.extend(g["tests"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(tests.len() as u64, v["numberOfTests"].as_u64().unwrap());
    Some(tests)
}

fn wid(file: &str, t: &Value) -> String {
    format!(
        "{file} tcId {} ({})",
        t["tcId"],
        t["comment"].as_str().unwrap_or("")
    )
}

#[test]
fn wycheproof_keygen_seed() {
    let file = "mlkem_768_keygen_seed_test.json";
    let Some(tests) = wycheproof_tests(file) else {
        return;
    };
    for t in &tests {
        assert_eq!(t["result"], "valid");
        let id = wid(file, t);
        let (ek, dk) = (field(t, "ek"), field(t, "dk"));
        #[cfg(feature = "rustcrypto")]
        {
            let seed = field(t, "seed");
            let key = MlKem768DecapsulationKey::from_seed(&seed).unwrap();
            assert_eq!(&key.encapsulation_key().as_bytes()[..], &ek[..], "{id}");
            assert_eq!(&key.to_bytes()[..], &dk[..], "{id}");
            check_keygen(&seed[..32], &seed[32..], &ek, &dk, &id);
        }
        for &backend in Backend::ALL {
            let key = MlKem768DecapsulationKey::from_bytes_with(backend, &dk).unwrap();
            assert_eq!(&key.encapsulation_key().as_bytes()[..], &ek[..], "{id}");
        }
    }
    assert_eq!(tests.len(), 100);
    println!(
        "Wycheproof {file}: {} valid; {}",
        tests.len(),
        coverage("seeded keygen")
    );
}

#[test]
fn wycheproof_encaps() {
    let file = "mlkem_768_encaps_test.json";
    let Some(tests) = wycheproof_tests(file) else {
        return;
    };
    let (mut valid, mut invalid) = (0, 0);
    for t in &tests {
        let id = wid(file, t);
        let ek = field(t, "ek");
        match t["result"].as_str().unwrap() {
            "valid" => {
                #[cfg(feature = "rustcrypto")]
                check_encaps(&ek, &field(t, "m"), &field(t, "c"), &field(t, "K"), &id);
                for &backend in Backend::ALL {
                    MlKem768EncapsulationKey::from_bytes_with(backend, &ek)
                        .unwrap_or_else(|e| panic!("{id}: {e}"));
                }
                valid += 1;
            }
            "invalid" => {
                for &backend in Backend::ALL {
                    let err = MlKem768EncapsulationKey::from_bytes_with(backend, &ek)
                        .err()
                        .unwrap_or_else(|| panic!("{id} accepted on {}", backend.name()));
                    match err {
                        MlKemError::WrongLength { .. } => assert_ne!(ek.len(), 1184, "{id}"),
                        MlKemError::UnreducedCoefficient { .. } => {}
                        e => panic!("{id}: unexpected {e}"),
                    }
                }
                invalid += 1;
            }
            r => panic!("{id}: result {r}"),
        }
    }
    assert_eq!((valid, invalid), (133, 132));
    println!(
        "Wycheproof {file}: {valid} valid ({}), {invalid} invalid rejected on {:?}",
        coverage("deterministic encaps"),
        names()
    );
}

/// Keys are given as seeds here, so this needs RustCrypto to expand them; the expanded keys
/// are then imported and decapsulated on every backend.
#[test]
fn wycheproof_decaps_from_seed() {
    let file = "mlkem_768_test.json";
    let Some(tests) = wycheproof_tests(file) else {
        return;
    };
    #[cfg(not(feature = "rustcrypto"))]
    println!(
        "SKIPPED: {file} ({} cases) needs the rustcrypto feature to expand its seeds",
        tests.len()
    );
    #[cfg(feature = "rustcrypto")]
    {
        let (mut valid, mut invalid) = (0, 0);
        for t in &tests {
            let id = wid(file, t);
            let (seed, c) = (field(t, "seed"), field(t, "c"));
            match t["result"].as_str().unwrap() {
                "valid" => {
                    let key = MlKem768DecapsulationKey::from_seed(&seed).unwrap();
                    let dk = key.to_bytes();
                    let ek = t.get("ek").map(|_| field(t, "ek"));
                    for &backend in Backend::ALL {
                        check_decaps(backend, &dk, ek.as_deref(), &c, &field(t, "K"), &id);
                    }
                    valid += 1;
                }
                "invalid" => {
                    // Each invalid case has a seed or a ciphertext of the wrong length.
                    let key = MlKem768DecapsulationKey::from_seed(&seed);
                    let ct = MlKem768Ciphertext::from_bytes(&c);
                    assert!(key.is_err() || ct.is_err(), "{id} accepted");
                    invalid += 1;
                }
                r => panic!("{id}: result {r}"),
            }
        }
        assert_eq!((valid, invalid), (153, 40));
        println!(
            "Wycheproof {file}: {valid} valid decapsulated on {:?}, {invalid} invalid rejected",
            names()
        );
    }
}

#[test]
fn wycheproof_semi_expanded_decaps() {
    let file = "mlkem_768_semi_expanded_decaps_test.json";
    let Some(tests) = wycheproof_tests(file) else {
        return;
    };
    let (mut valid, mut invalid) = (0, 0);
    for t in &tests {
        let id = wid(file, t);
        let (dk, ek, c) = (field(t, "dk"), field(t, "ek"), field(t, "c"));
        match t["result"].as_str().unwrap() {
            "valid" => {
                for &backend in Backend::ALL {
                    check_decaps(backend, &dk, Some(&ek), &c, &field(t, "K"), &id);
                }
                valid += 1;
            }
            "invalid" => {
                for &backend in Backend::ALL {
                    let key = MlKem768DecapsulationKey::from_bytes_with(backend, &dk);
                    let ct = MlKem768Ciphertext::from_bytes(&c);
                    assert!(
                        key.is_err() || ct.is_err(),
                        "{id} accepted on {}",
                        backend.name()
                    );
                }
                invalid += 1;
            }
            r => panic!("{id}: result {r}"),
        }
    }
    assert_eq!((valid, invalid), (3, 6));
    println!(
        "Wycheproof {file}: {valid} valid decapsulated, {invalid} invalid rejected, on {:?}",
        names()
    );
}

// ---------------------------------------------------------------------------------------------
// C2SP CCTV

#[test]
fn cctv_modulus_keys_are_all_rejected() {
    let path = "cctv/ML-KEM/modulus/ML-KEM-768.txt.gz";
    let Some(gz) = read(path) else {
        return;
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let mut n = 0;
    for (line_no, line) in text.lines().enumerate() {
        let ek = unhex(line.trim());
        assert_eq!(ek.len(), 1184);
        for &backend in Backend::ALL {
            match MlKem768EncapsulationKey::from_bytes_with(backend, &ek) {
                Err(MlKemError::UnreducedCoefficient { value, .. }) => {
                    assert!((3329..4096).contains(&value));
                }
                other => panic!("{path} line {}: {other:?}", line_no + 1),
            }
        }
        // Embedded in a decapsulation key (with a correct hash) it is refused as well.
        let mut dk = vec![0u8; 2400];
        dk[1152..2336].copy_from_slice(&ek);
        dk[2336..2368].copy_from_slice(&sha3_256(&ek));
        for &backend in Backend::ALL {
            assert!(matches!(
                MlKem768DecapsulationKey::from_bytes_with(backend, &dk),
                Err(MlKemError::UnreducedCoefficient { .. })
            ));
        }
        n += 1;
    }
    assert_eq!(n, 780);
    println!(
        "CCTV modulus: {n} invalid encapsulation keys rejected on {:?}",
        names()
    );
}

fn sha3_256(data: &[u8]) -> [u8; 32] {
    use sha3::Digest as _;
    sha3::Sha3_256::digest(data).into()
}

/// One CCTV case with `d`, `z`, `ek`, `dk`, `m`, `K`, `c` (unluckysample, intermediate).
///
/// These two files predate final FIPS 203: their key generation is the draft's (ρ‖σ = G(d),
/// without the final standard's domain separator k, so G(d‖3) here), which is why `ek` and
/// `dk` cannot be rebuilt from `d`, `z`; this is checked, so the test notices if the files
/// are ever regenerated. Encapsulation and decapsulation did not change between the draft
/// (with the Â fix these files include) and the standard, and the unlucky ρ sits in `ek`,
/// so encaps and decaps still exercise the rare SampleNTT path.
fn cctv_full_case(rel: &str) -> Option<usize> {
    let text = String::from_utf8(read(rel)?).unwrap();
    let f = cctv_fields(&text);
    let (ek, dk, m, k, c) = (
        first(&f, "ek"),
        first(&f, "dk"),
        first(&f, "m"),
        first(&f, "K"),
        first(&f, "c"),
    );
    #[cfg(feature = "rustcrypto")]
    {
        let (d, z) = (arr32(first(&f, "d")), arr32(first(&f, "z")));
        let ours = MlKem768DecapsulationKey::generate_from_seed(&d, &z);
        let rho = &ek[1152..];
        assert_ne!(
            &ours.encapsulation_key().as_bytes()[1152..],
            rho,
            "{rel}: now final FIPS 203?"
        );
        use sha3::Digest as _;
        assert_eq!(
            &sha3::Sha3_512::digest(d)[..32],
            rho,
            "{rel}: draft ρ = G(d)"
        );
        assert_eq!(&dk[2368..], &z[..], "{rel}: z");
        check_encaps(ek, m, c, k, rel);
    }
    let _ = m;
    for &backend in Backend::ALL {
        check_decaps(backend, dk, Some(ek), c, k, rel);
    }
    Some(1)
}

#[test]
fn cctv_unlucky_sampling() {
    let rel = "cctv/ML-KEM/unluckysample/ML-KEM-768.txt";
    if let Some(n) = cctv_full_case(rel) {
        println!(
            "CCTV unluckysample: {n} case (draft-FIPS 203 keygen, ρ = G(d) checked); {}",
            coverage("encaps")
        );
    }
}

#[test]
fn cctv_intermediate_values() {
    let rel = "cctv/ML-KEM/intermediate/ML-KEM-768.txt";
    if let Some(n) = cctv_full_case(rel) {
        println!(
            "CCTV intermediate: {n} case (draft-FIPS 203 keygen, ρ = G(d) checked); {}",
            coverage("encaps")
        );
    }
}

#[test]
fn cctv_strcmp() {
    let rel = "cctv/ML-KEM/strcmp/ML-KEM-768.txt";
    let Some(text) = read(rel) else {
        return;
    };
    let f = cctv_fields(&String::from_utf8(text).unwrap());
    let (dk, c, k) = (first(&f, "dk"), first(&f, "c"), first(&f, "K"));
    for &backend in Backend::ALL {
        check_decaps(backend, dk, None, c, k, rel);
    }
    println!("CCTV strcmp: 1 case decapsulated on {:?}", names());
}

/// The accumulated pq-crystals run (CCTV ML-KEM README): 10,000 key pairs, encapsulations
/// and decapsulations drawn from a SHAKE-128 stream, all outputs hashed into another one.
///
/// The hash the CCTV README publishes for ML-KEM-768 (`f7db260e…`) predates final FIPS 203:
/// like the CCTV intermediate and unlucky vectors (see `cctv_full_case`), it uses the draft's
/// key generation ρ‖σ = G(d) instead of the standard's G(d ‖ k). With the same procedure and
/// final FIPS 203, BoringSSL and LibreSSL (`regress/lib/libcrypto/mlkem/
/// mlkem_iteration_tests.c`, `kExpectedAdam768`) expect `f959d18d…`, which is what both
/// backends here produce. Running the draft variant would need a KeyGen neither backend has.
#[test]
#[ignore = "10,000 ML-KEM-768 runs; CI runs it with --ignored"]
fn cctv_accumulated_10k() {
    #[cfg(not(feature = "rustcrypto"))]
    println!("SKIPPED: the CCTV accumulated run needs the rustcrypto feature (seeded keygen)");
    #[cfg(feature = "rustcrypto")]
    {
        use sha3::digest::{ExtendableOutput as _, Update as _, XofReader as _};
        use shake::Shake128;

        const FINAL_FIPS_203: &str =
            "f959d18d3d1180121433bf0e05f11e7908cf9d03edc150b2b07cb90bef5bc1c1";
        const CCTV_DRAFT: &str = "f7db260e1137a742e05fe0db9525012812b004d29040a5b606aad3d134b548d3";
        let mut rng = Shake128::default().finalize_xof();
        let mut acc = Shake128::default();
        let (mut d, mut z, mut m, mut ct) = ([0u8; 32], [0u8; 32], [0u8; 32], [0u8; 1088]);
        for i in 0..10_000 {
            rng.read(&mut d);
            rng.read(&mut z);
            rng.read(&mut m);
            rng.read(&mut ct);
            let dk = MlKem768DecapsulationKey::generate_from_seed(&d, &z);
            let ek = dk.encapsulation_key();
            let dk_bytes = dk.to_bytes();
            let (c, k) = ek.encapsulate_deterministic(&m);
            let random_ct = MlKem768Ciphertext::from_bytes(&ct).unwrap();
            let k_rejected = dk.decapsulate(&random_ct);
            assert_eq!(dk.decapsulate(&c), k, "test {i}");
            // Every other backend must agree, decapsulating with the same dk.
            for &backend in Backend::ALL {
                if backend != Backend::RustCrypto {
                    let other =
                        MlKem768DecapsulationKey::from_bytes_with(backend, &dk_bytes).unwrap();
                    assert_eq!(other.decapsulate(&c), k, "test {i} on {}", backend.name());
                    assert_eq!(
                        other.decapsulate(&random_ct),
                        k_rejected,
                        "test {i} on {}",
                        backend.name()
                    );
                }
            }
            acc.update(ek.as_bytes());
            acc.update(&dk_bytes);
            acc.update(c.as_bytes());
            acc.update(k.as_bytes());
            acc.update(k_rejected.as_bytes());
        }
        let mut out = [0u8; 32];
        acc.finalize_xof().read(&mut out);
        let got: String = out.iter().map(|b| format!("{b:02x}")).collect();
        println!("CCTV accumulated: hash {got} (CCTV's draft-keygen value: {CCTV_DRAFT})");
        assert_eq!(got, FINAL_FIPS_203);
        println!(
            "CCTV accumulated: 10000 tests, hash {got}; decaps also on {:?}",
            names()
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn names() -> Vec<&'static str> {
    Backend::ALL.iter().map(|b| b.name()).collect()
}

/// What ran where, for the summary lines.
fn coverage(deterministic: &str) -> String {
    let mut parts = vec![];
    #[cfg(feature = "rustcrypto")]
    parts.push(format!("{deterministic} byte for byte on rustcrypto"));
    parts.push(format!("keys imported and checked on {:?}", names()));
    #[cfg(not(feature = "rustcrypto"))]
    parts.push(format!("{deterministic} not checked (needs rustcrypto)"));
    parts.join("; ")
}
