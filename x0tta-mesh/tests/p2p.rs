//! Real libp2p transports on 127.0.0.1 in one process: discovery from one bootstrap entry,
//! gossip to all, request-response, isolation, size limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use x0tta_core::{CommandOutcome, MeshCommand, MeshEvent, Transport, TransportError, topics};
use x0tta_mesh::p2p::{P2pConfig, P2pTransport, SYNC_PROTOCOL};
use x0tta_pqc::NodeIdentity;

fn config(bootstrap: Vec<libp2p::Multiaddr>) -> P2pConfig {
    P2pConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        mdns: false,
        min_neighbours: 4,
        ..P2pConfig::default()
    }
}

async fn node(name: &str, bootstrap: Vec<libp2p::Multiaddr>) -> (NodeIdentity, P2pTransport) {
    let id = NodeIdentity::generate(format!("spiffe://test/{name}").parse().unwrap());
    let t = P2pTransport::start(&id, config(bootstrap)).await.unwrap();
    (id, t)
}

async fn wait_for(mut f: impl AsyncFnMut() -> bool, what: &str) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_a_mesh_from_one_bootstrap_entry_and_gossip_reaches_all() {
    let (_, seed) = node("seed", vec![]).await;
    let entry = seed.listen_addrs()[0].clone();
    let mut nodes = vec![seed];
    for i in 0..4 {
        nodes.push(node(&format!("n{i}"), vec![entry.clone()]).await.1);
    }
    // Everyone subscribes, then waits until the gossip mesh has formed.
    let mut subs = Vec::new();
    for n in &nodes {
        subs.push(n.subscribe(topics::INCIDENTS).await.unwrap());
    }
    // Discovery: every node learns about the others (Kademlia/identify through the seed).
    for n in &nodes {
        wait_for(
            async || n.stats().connections >= 2,
            "connections beyond the seed",
        )
        .await;
    }
    // Gossip from the last node reaches all four others.
    let from = nodes.last().unwrap().clone();
    wait_for(
        async || {
            from.publish(topics::INCIDENTS, b"warm-up".to_vec())
                .await
                .unwrap()
                .delivered
                > 0
        },
        "a gossip peer",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = from
        .publish(topics::INCIDENTS, b"disk full on n3".to_vec())
        .await
        .unwrap();
    assert!(sent.delivered >= 1, "{sent:?}");
    for (i, sub) in subs.iter_mut().enumerate().take(4) {
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let m = sub.next().await.unwrap();
                if m.payload == b"disk full on n3" {
                    return m;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {i} never got the gossip"));
        assert_eq!(&got.from, from.local_id());
    }

    // Request-response on every x0tta protocol (/x0tta/sync/1, /x0tta/block/1, /x0tta/gov/1).
    for protocol in x0tta_core::protocols::ALL {
        let mut inbox = nodes[0].serve(protocol).await.unwrap();
        tokio::spawn(async move {
            while let Some(req) = inbox.recv().await {
                let mut body = b"echo:".to_vec();
                body.extend_from_slice(&req.payload);
                req.respond(body);
            }
        });
        let reply = nodes[1]
            .request(
                nodes[0].local_id(),
                protocol,
                b"sv".to_vec(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(reply, b"echo:sv", "{protocol}");
    }
    // TCP links are PQ-authenticated: the peer's verified record is held.
    assert!(nodes[1].pq_authenticated(nodes[0].local_id()));
    assert!(nodes[0].pq_authenticated(nodes[1].local_id()));
    // No handler on node 2: a typed error, fast.
    let err = nodes[1]
        .request(
            nodes[2].local_id(),
            SYNC_PROTOCOL,
            b"sv".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Unreachable(_) | TransportError::NoHandler { .. }
        ),
        "{err:?}"
    );
    // Unknown protocol and oversize payloads are refused before anything is sent.
    assert!(matches!(
        nodes[1]
            .request(
                nodes[0].local_id(),
                "/other/1",
                vec![],
                Duration::from_secs(1)
            )
            .await,
        Err(TransportError::NoHandler { .. })
    ));
    assert!(matches!(
        nodes[1]
            .publish(
                topics::INCIDENTS,
                vec![0; x0tta_core::MAX_MESSAGE_BYTES + 1]
            )
            .await,
        Err(TransportError::TooLarge { .. })
    ));

    // Isolation: node 1 blocks node 0, reversibly.
    let victim = nodes[0].local_id().clone();
    assert_eq!(
        nodes[1]
            .command(MeshCommand::Isolate(victim.clone()))
            .await
            .unwrap(),
        CommandOutcome::Done
    );
    assert_eq!(
        nodes[1]
            .command(MeshCommand::Isolate(victim.clone()))
            .await
            .unwrap(),
        CommandOutcome::AlreadyDone
    );
    let err = nodes[1]
        .request(
            &victim,
            SYNC_PROTOCOL,
            b"sv".to_vec(),
            Duration::from_secs(3),
        )
        .await
        .unwrap_err();
    // The block list refuses the dial: the request fails at once instead of timing out.
    assert!(matches!(err, TransportError::Unreachable(_)), "{err:?}");
    assert_eq!(
        nodes[1]
            .command(MeshCommand::Unisolate(victim.clone()))
            .await
            .unwrap(),
        CommandOutcome::Done
    );
    wait_for(
        async || {
            nodes[1]
                .request(
                    &victim,
                    SYNC_PROTOCOL,
                    b"again".to_vec(),
                    Duration::from_secs(2),
                )
                .await
                .is_ok()
        },
        "the isolated peer to be reachable again",
    )
    .await;
    // Every peer's PQ identity record was verified and cached during the handshakes.
    assert!(nodes[1].records().get(&nodes[0].peer_id()).is_some());
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_port_taken_by_another_node_is_a_clear_error() {
    let (_, first) = node("first", vec![]).await;
    let taken = first.listen_addrs()[0]
        .iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect::<libp2p::Multiaddr>();
    let id = NodeIdentity::generate("spiffe://test/second".parse().unwrap());
    let err = P2pTransport::start(
        &id,
        P2pConfig {
            listen: vec![taken],
            ..config(vec![])
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");
    first.shutdown().await;
}

/// Connections are replaced by fresh ones (a new hybrid key exchange and PQ authentication)
/// every `mesh.rekey_interval`, without the peer ever looking suspect and without a failed
/// request in the switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_rotate_on_the_rekey_interval_without_disruption() {
    let rotating = |bootstrap| {
        let mut c = config(bootstrap);
        c.mesh.rekey_interval = Duration::from_millis(600);
        c
    };
    let id_a = NodeIdentity::generate("spiffe://test/ra".parse().unwrap());
    let id_b = NodeIdentity::generate("spiffe://test/rb".parse().unwrap());
    let a = P2pTransport::start(&id_a, rotating(vec![])).await.unwrap();
    let entry = a.listen_addrs()[0].clone();
    let b = P2pTransport::start(&id_b, rotating(vec![entry]))
        .await
        .unwrap();
    let mut events = b.events();
    let mut sub = a.subscribe(topics::INCIDENTS).await.unwrap();
    b.subscribe(topics::INCIDENTS).await.unwrap();
    let mut inbox = a.serve(SYNC_PROTOCOL).await.unwrap();
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let body = req.payload.clone();
            req.respond(body);
        }
    });
    wait_for(
        async || {
            b.publish(topics::INCIDENTS, b"warm-up".to_vec())
                .await
                .is_ok_and(|r| r.delivered > 0)
        },
        "a gossip peer",
    )
    .await;

    // Five seconds of traffic across several rotations (b dialed, so b rotates).
    let mut sent = 0u32;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let body = format!("r{sent}").into_bytes();
        let reply = b
            .request(
                a.local_id(),
                SYNC_PROTOCOL,
                body.clone(),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|e| panic!("request {sent} failed during rotation: {e:?}"));
        assert_eq!(reply, body);
        b.publish(topics::INCIDENTS, body).await.unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rotations = b.stats().rotations;
    assert!(
        rotations >= 3,
        "only {rotations} rotations in 5 s at 600 ms: {:?} / {:?}",
        b.stats(),
        a.stats()
    );
    assert!(b.stats().connections == 1, "{:?}", b.stats());
    // Gossip is best effort per link: a message queued on a connection at the instant it is
    // closed is lost on that link (in a mesh, other peers' copies and the knowledge layer's
    // anti-entropy cover it). With a single link and a rotation every 600 ms, at most 1 %.
    let mut got = std::collections::HashSet::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
        if m.payload.starts_with(b"r") {
            got.insert(m.payload);
        }
        if got.len() == sent as usize {
            break;
        }
    }
    assert!(
        got.len() * 100 >= sent as usize * 99,
        "gossip lost: {} of {sent} arrived",
        got.len()
    );
    // And the peer never looked suspect or down.
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(10), events.next()).await {
        assert!(
            !matches!(ev, MeshEvent::PeerSuspect(_) | MeshEvent::PeerDown(_)),
            "{ev:?} during rotation"
        );
    }
    assert!(b.pq_authenticated(a.local_id()));
}

fn quic_config(bootstrap: Vec<libp2p::Multiaddr>) -> P2pConfig {
    P2pConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        bootstrap,
        mdns: false,
        quic: true,
        ..P2pConfig::default()
    }
}

/// QUIC (feature `quic`): gossip and requests flow, and the link is reported as classically
/// authenticated — no PQ record is held for a peer met only over QUIC.
#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_links_carry_gossip_and_requests_but_are_not_pq_authenticated() {
    let id_a = NodeIdentity::generate("spiffe://test/qa".parse().unwrap());
    let id_b = NodeIdentity::generate("spiffe://test/qb".parse().unwrap());
    let a = P2pTransport::start(&id_a, quic_config(vec![]))
        .await
        .unwrap();
    let entry = a.listen_addrs()[0].clone();
    assert!(entry.to_string().contains("/udp/") && entry.to_string().contains("/quic-v1"));
    let b = P2pTransport::start(&id_b, quic_config(vec![entry]))
        .await
        .unwrap();
    wait_for(
        async || b.neighbours().await.iter().any(|n| &n.id == a.local_id()),
        "a QUIC neighbour",
    )
    .await;

    let mut sub = a.subscribe(topics::INCIDENTS).await.unwrap();
    b.subscribe(topics::INCIDENTS).await.unwrap();
    wait_for(
        async || {
            b.publish(topics::INCIDENTS, b"warm-up".to_vec())
                .await
                .is_ok_and(|r| r.delivered > 0)
        },
        "a gossip peer over QUIC",
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("gossip over QUIC")
        .unwrap();
    assert_eq!(&got.from, b.local_id());

    let mut inbox = a.serve(SYNC_PROTOCOL).await.unwrap();
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let body = req.payload.clone();
            req.respond(body);
        }
    });
    let reply = b
        .request(
            a.local_id(),
            SYNC_PROTOCOL,
            b"q".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(reply, b"q");
    assert!(!b.pq_authenticated(a.local_id()));
    assert!(!a.pq_authenticated(b.local_id()));
}

/// Without the `quic` feature, asking for QUIC is a typed error, not a silent TCP-only node.
#[cfg(not(feature = "quic"))]
#[tokio::test]
async fn quic_without_the_feature_is_refused() {
    let id = NodeIdentity::generate("spiffe://test/q".parse().unwrap());
    let err = P2pTransport::start(&id, quic_config(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, x0tta_mesh::p2p::MeshError::QuicUnavailable),
        "{err:?}"
    );
}
