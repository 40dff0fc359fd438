//! Full connection handshakes, both sides in one thread over an in-memory pipe, so a figure
//! is the CPU time of both ends together: `/x0tta/pq/1.0.0` on first contact and with the
//! peer's record cached (KEM-resumed), against libp2p's Noise XX and plain libp2p-tls in the
//! same run. Also the throughput of an established PQ stream against a Noise stream.
//!
//! `cargo bench -p x0tta-pqc --all-features --bench handshake`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::UpgradeInfo;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::{noise, tls};
use tokio_util::compat::TokioAsyncReadCompatExt;
use x0tta_pqc::handshake::{Handshake, Role, Step, Trust};
use x0tta_pqc::{NodeIdentity, upgrade};

/// Runs one handshake of `a` (dialer) with `b` (listener) and returns both outputs.
async fn connect<U>(
    a: U,
    b: U,
) -> (
    <U as OutboundConnectionUpgrade<Pipe>>::Output,
    <U as InboundConnectionUpgrade<Pipe>>::Output,
)
where
    U: UpgradeInfo + Clone + OutboundConnectionUpgrade<Pipe> + InboundConnectionUpgrade<Pipe>,
    <U as OutboundConnectionUpgrade<Pipe>>::Error: std::fmt::Debug,
    <U as InboundConnectionUpgrade<Pipe>>::Error: std::fmt::Debug,
{
    let (x, y) = tokio::io::duplex(64 * 1024);
    let info = a.protocol_info().into_iter().next().unwrap();
    let info2 = b.protocol_info().into_iter().next().unwrap();
    let (o, i) = futures::join!(
        a.upgrade_outbound(x.compat(), info),
        b.upgrade_inbound(y.compat(), info2)
    );
    (o.unwrap(), i.unwrap())
}

type Pipe = tokio_util::compat::Compat<tokio::io::DuplexStream>;

fn handshakes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let id_a = NodeIdentity::generate("spiffe://bench/a".parse().unwrap());
    let id_b = NodeIdentity::generate("spiffe://bench/b".parse().unwrap());

    let mut g = c.benchmark_group("handshake");
    g.sample_size(50);
    let (na, nb) = (
        noise::Config::new(&ka).unwrap(),
        noise::Config::new(&kb).unwrap(),
    );
    g.bench_function("noise-xx (baseline)", |b| {
        b.to_async(&rt).iter(|| connect(na.clone(), nb.clone()))
    });
    let (ta, tb) = (
        tls::Config::new(&ka).unwrap(),
        tls::Config::new(&kb).unwrap(),
    );
    // libp2p-tls resumes no session here: every handshake below is a full one.
    g.bench_function("libp2p-tls (X25519MLKEM768, Ed25519 auth)", |b| {
        b.to_async(&rt).iter(|| connect(ta.clone(), tb.clone()))
    });
    let fresh = || {
        (
            upgrade::Config::new(&id_a).unwrap(),
            upgrade::Config::new(&id_b).unwrap(),
        )
    };
    // Fresh configs per iteration (built outside the timing): no PQ record, no TLS session.
    g.bench_function(
        "x0tta-pq first contact (records verified + ML-KEM-768 proofs, full TLS)",
        |b| {
            b.to_async(&rt).iter_batched(
                fresh,
                |(pa, pb)| async move { connect(pa, pb).await },
                BatchSize::SmallInput,
            )
        },
    );
    let (pa, pb) = fresh();
    rt.block_on(connect(pa.clone(), pb.clone()));
    // Records cached, but fresh TLS state: a full TLS handshake plus the KEM proofs.
    g.bench_function("x0tta-pq steady state (ML-KEM-768 proof, full TLS)", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let (a, b) = fresh();
                (
                    a.with_records(pa.records().clone()),
                    b.with_records(pb.records().clone()),
                )
            },
            |(a, b)| async move { connect(a, b).await },
            BatchSize::SmallInput,
        )
    });
    // Records cached and the TLS session resumed (psk_dhe_ke: still a fresh hybrid exchange).
    g.bench_function(
        "x0tta-pq steady state (ML-KEM-768 proof, TLS resumed)",
        |b| b.to_async(&rt).iter(|| connect(pa.clone(), pb.clone())),
    );
    g.finish();

    // The PQ exchange alone (no TLS), both sides.
    let mut g = c.benchmark_group("pq-auth-exchange");
    let exporter = [7u8; 32];
    let run = |cache_a, cache_b| {
        let (mut ha, mut to_b) = Handshake::start(
            Role::Initiator,
            id_a.clone(),
            id_b.peer_id(),
            cache_a,
            exporter,
        );
        let (mut hb, mut to_a) = Handshake::start(
            Role::Responder,
            id_b.clone(),
            id_a.peer_id(),
            cache_b,
            exporter,
        );
        loop {
            match (
                ha.step(&to_a, &Trust::FirstUse).unwrap(),
                hb.step(&to_b, &Trust::FirstUse).unwrap(),
            ) {
                (Step::Send(x), Step::Send(y)) => (to_b, to_a) = (x, y),
                (Step::Done(_), Step::Done(_)) => break,
                _ => unreachable!("both sides agree on the rounds"),
            }
        }
    };
    g.bench_function("first contact", |b| b.iter(|| run(None, None)));
    let (ra, rb) = (id_a.record().clone(), id_b.record().clone());
    g.bench_function("kem resumed", |b| {
        b.iter(|| run(Some(rb.clone()), Some(ra.clone())))
    });
    g.finish();

    // Throughput of an established stream: 1 MiB in 16 KiB writes.
    let mut g = c.benchmark_group("stream");
    g.sample_size(20);
    const TOTAL: usize = 1 << 20;
    g.throughput(Throughput::Bytes(TOTAL as u64));
    let chunk = vec![0xa5u8; 16 * 1024];
    let (mut pq_a, mut pq_b) = rt.block_on(async {
        let ((_, a), (_, b)) = connect(pa.clone(), pb.clone()).await;
        (a, b)
    });
    g.bench_with_input(BenchmarkId::new("x0tta-pq", "1MiB"), &chunk, |b, chunk| {
        b.iter(|| rt.block_on(transfer(&mut pq_a, &mut pq_b, chunk, TOTAL)))
    });
    let (mut n_a, mut n_b) = rt.block_on(async {
        let ((_, a), (_, b)) = connect(na.clone(), nb.clone()).await;
        (a, b)
    });
    g.bench_with_input(
        BenchmarkId::new("noise (baseline)", "1MiB"),
        &chunk,
        |b, chunk| b.iter(|| rt.block_on(transfer(&mut n_a, &mut n_b, chunk, TOTAL))),
    );
    g.finish();
}

/// Writes `total` bytes on `w` while reading them on `r`.
async fn transfer<W, R>(w: &mut W, r: &mut R, chunk: &[u8], total: usize)
where
    W: futures::AsyncWrite + Unpin,
    R: futures::AsyncRead + Unpin,
{
    let write = async {
        for _ in 0..total / chunk.len() {
            w.write_all(chunk).await.unwrap();
        }
        w.flush().await.unwrap();
    };
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < total {
            got += r.read(&mut buf).await.unwrap();
        }
        black_box(got);
    };
    futures::join!(write, read);
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
