//! Messages per second one node sustains over the real libp2p transport on 127.0.0.1:
//! gossip (publish → delivered to a subscriber) and request-response round trips, each
//! beside a baseline in the same run (x0tta-core's in-process `MemoryNetwork`).
//!
//! `cargo run --release -p x0tta-mesh --example gossip_rate [-- MESSAGES]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use x0tta_core::memory::MemoryNetwork;
use x0tta_core::{NodeId, Transport, topics};
use x0tta_mesh::p2p::{P2pConfig, P2pTransport, SYNC_PROTOCOL};
use x0tta_pqc::NodeIdentity;

async fn gossip_rate(a: &dyn Transport, b: &dyn Transport, n: usize, size: usize) -> (f64, usize) {
    let mut sub = b.subscribe(topics::INCIDENTS).await.unwrap();
    // Let the subscription propagate (gossipsub needs a heartbeat to graft).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        let start = Instant::now();
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        (got, start.elapsed())
    });
    for i in 0..n {
        let mut payload = vec![0u8; size];
        payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
        // Back off when the sender's queue is full instead of losing messages.
        loop {
            let out = a.publish(topics::INCIDENTS, payload.clone()).await.unwrap();
            if out.dropped == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (got, took) = reader.await.unwrap();
    (got as f64 / took.as_secs_f64(), got)
}

async fn rpc_rate(a: &dyn Transport, b: &dyn Transport, n: usize) -> f64 {
    let mut inbox = b.serve(SYNC_PROTOCOL).await.unwrap();
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let body = req.payload.clone();
            req.respond(body);
        }
    });
    let peer = b.local_id().clone();
    let start = Instant::now();
    // 16 requests in flight.
    let mut done = 0;
    while done < n {
        let batch: Vec<_> = (0..16.min(n - done))
            .map(|_| a.request(&peer, SYNC_PROTOCOL, vec![7u8; 64], Duration::from_secs(5)))
            .collect();
        for r in futures::future::join_all(batch).await {
            r.unwrap();
            done += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let config = || P2pConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ..P2pConfig::default()
    };
    let ia = NodeIdentity::generate("spiffe://bench/a".parse().unwrap());
    let ib = NodeIdentity::generate("spiffe://bench/b".parse().unwrap());
    let b = P2pTransport::start(&ib, config()).await.unwrap();
    let a = P2pTransport::start(
        &ia,
        P2pConfig {
            bootstrap: b.listen_addrs(),
            ..config()
        },
    )
    .await
    .unwrap();
    while a.stats().connections == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let net = MemoryNetwork::new();
    let (ma, mb) = (
        net.join(NodeId::new("a").unwrap()),
        net.join(NodeId::new("b").unwrap()),
    );

    let base_gossip = gossip_rate(&ma, &mb, n, 256).await;
    let p2p_gossip = gossip_rate(&a, &b, n, 256).await;
    let base_rpc = rpc_rate(&ma, &mb, n / 4).await;
    let p2p_rpc = rpc_rate(&a, &b, n / 4).await;
    let ((base_gossip, base_got), (p2p_gossip, p2p_got)) = (base_gossip, p2p_gossip);
    println!("gossip, 256 B messages, one publisher → one subscriber:");
    println!("  in-process baseline  {base_gossip:>10.0} msg/s ({base_got} of {n} delivered)");
    println!(
        "  libp2p + pq upgrade  {p2p_gossip:>10.0} msg/s ({p2p_got} of {n} delivered, {:.3}× baseline)",
        p2p_gossip / base_gossip
    );
    println!("request-response /x0tta/sync/1, 64 B, 16 in flight:");
    println!("  in-process baseline  {base_rpc:>10.0} req/s");
    println!(
        "  libp2p + pq upgrade  {p2p_rpc:>10.0} req/s ({:.3}× baseline)",
        p2p_rpc / base_rpc
    );
    a.shutdown().await;
    b.shutdown().await;
}
