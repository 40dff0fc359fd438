//! X-Wing (X25519 + ML-KEM-768) key generation, encapsulation and decapsulation.
//!
//! Each group runs plain ML-KEM-768 on the RustCrypto backend (the one X-Wing's ML-KEM half
//! uses) in the same process, so the hybrid's overhead can be quoted as a ratio that holds
//! across machines. RustCrypto's `x-wing` crate runs beside ours as a reference point (its
//! encapsulation is the deterministic one, fed a fixed `eseed`, as it is built here without
//! an RNG).
//!
//! `cargo bench -p x0tta-pqc --features rustcrypto --bench xwing`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use x_wing::{Decapsulate as _, Decapsulator as _};
use x0tta_pqc::{Backend, MlKem768DecapsulationKey, XWingDecapsulationKey};

const ML_KEM: &str = "ml-kem-768 (rustcrypto)";
const X_WING: &str = "x-wing";
const REFERENCE: &str = "x-wing crate 0.1.1";

fn xwing(c: &mut Criterion) {
    let seed = [0x42u8; 32];
    let eseed = [0x17u8; 64];

    let mut group = c.benchmark_group("keygen");
    group.bench_function(ML_KEM, |b| {
        b.iter(|| MlKem768DecapsulationKey::generate_with(black_box(Backend::RustCrypto)))
    });
    group.bench_function(X_WING, |b| {
        b.iter(|| XWingDecapsulationKey::from_seed(black_box(&seed)))
    });
    group.bench_function(REFERENCE, |b| {
        b.iter(|| x_wing::DecapsulationKey::from(black_box(seed)))
    });
    group.finish();

    let ml_dk = MlKem768DecapsulationKey::generate_with(Backend::RustCrypto);
    let xw_dk = XWingDecapsulationKey::from_seed(&seed);
    let ref_dk = x_wing::DecapsulationKey::from(seed);

    let mut group = c.benchmark_group("encaps");
    let ml_ek = ml_dk.encapsulation_key();
    group.bench_function(ML_KEM, |b| b.iter(|| black_box(ml_ek).encapsulate()));
    let xw_ek = xw_dk.encapsulation_key();
    group.bench_function(X_WING, |b| b.iter(|| black_box(xw_ek).encapsulate()));
    let ref_ek = ref_dk.encapsulation_key();
    let ref_eseed = eseed.into();
    group.bench_function(REFERENCE, |b| {
        b.iter(|| black_box(ref_ek).encapsulate_deterministic(black_box(&ref_eseed)))
    });
    group.finish();

    let mut group = c.benchmark_group("decaps");
    let (ml_ct, _) = ml_ek.encapsulate();
    group.bench_function(ML_KEM, |b| {
        b.iter(|| black_box(&ml_dk).decapsulate(black_box(&ml_ct)))
    });
    let (xw_ct, _) = xw_ek.encapsulate();
    group.bench_function(X_WING, |b| {
        b.iter(|| black_box(&xw_dk).decapsulate(black_box(&xw_ct)))
    });
    let (ref_ct, _) = ref_ek.encapsulate_deterministic(&ref_eseed);
    group.bench_function(REFERENCE, |b| {
        b.iter(|| black_box(&ref_dk).decapsulate(black_box(&ref_ct)))
    });
    group.finish();
}

criterion_group!(benches, xwing);
criterion_main!(benches);
