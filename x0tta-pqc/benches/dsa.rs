//! ML-DSA-65 key generation, signing and verification, per compiled-in backend.
//!
//! `baseline/sha3-256_3309B` (SHA3-256 of a signature-sized buffer) runs in the same process,
//! so results can be read as ratios that survive a change of machine:
//! `cargo bench -p x0tta-pqc --all-features --bench dsa`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sha3::{Digest, Sha3_256};
use x0tta_core::contexts;
use x0tta_pqc::{Backend, MlDsa65Keypair};

fn bench(c: &mut Criterion) {
    let buf = vec![0xa5u8; MlDsa65Keypair::SIGNATURE_LEN];
    c.bench_function("baseline/sha3-256_3309B", |b| {
        b.iter(|| Sha3_256::digest(black_box(&buf)))
    });

    // A typical small signed record.
    let msg = vec![0x42u8; 256];
    for &backend in Backend::ALL {
        let mut group = c.benchmark_group(format!("mldsa65/{backend}"));
        group.bench_function("keygen", |b| {
            b.iter(|| MlDsa65Keypair::generate_with(backend))
        });
        let keys = MlDsa65Keypair::generate_with(backend);
        group.bench_function("sign", |b| {
            b.iter(|| keys.sign(contexts::GOSSIP, black_box(&msg)).unwrap())
        });
        let sig = keys.sign(contexts::GOSSIP, &msg).unwrap();
        let public = keys.public_key().clone();
        group.bench_function("verify", |b| {
            b.iter(|| {
                assert!(
                    public
                        .verify_with(backend, contexts::GOSSIP, black_box(&msg), &sig)
                        .is_valid()
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
