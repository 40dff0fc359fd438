//! ML-KEM-768 key generation, encapsulation and decapsulation on every enabled backend.
//!
//! The `baseline/sha3-256 of 1184 bytes` case (hashing one encapsulation key, which every
//! ML-KEM operation does at least once) runs in the same process, so figures can be quoted as
//! ratios that hold across machines.
//!
//! `cargo bench -p x0tta-pqc --all-features --bench kem`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sha3::{Digest as _, Sha3_256};
use x0tta_pqc::{Backend, MlKem768DecapsulationKey};

fn kem(c: &mut Criterion) {
    let ek_sized = [0x5au8; 1184];
    c.bench_function("baseline/sha3-256 of 1184 bytes", |b| {
        b.iter(|| Sha3_256::digest(black_box(&ek_sized[..])))
    });

    for &backend in Backend::ALL {
        let name = backend.name();
        let mut group = c.benchmark_group(format!("ml-kem-768/{name}"));
        group.bench_function("keygen", |b| {
            b.iter(|| MlKem768DecapsulationKey::generate_with(black_box(backend)))
        });
        let dk = MlKem768DecapsulationKey::generate_with(backend);
        let ek = dk.encapsulation_key();
        group.bench_function("encaps", |b| b.iter(|| black_box(ek).encapsulate()));
        let (ct, _) = ek.encapsulate();
        group.bench_function("decaps", |b| {
            b.iter(|| black_box(&dk).decapsulate(black_box(&ct)))
        });
        group.finish();
    }
}

criterion_group!(benches, kem);
criterion_main!(benches);
