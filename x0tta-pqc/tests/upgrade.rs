//! The `/x0tta/pq/1.0.0` libp2p security upgrade: over an in-memory pipe, and in two real
//! Swarms on 127.0.0.1 that ping each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::UpgradeInfo;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, SwarmBuilder, noise, ping, tcp, yamux};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use x0tta_pqc::handshake::{AuthMode, HandshakeError};
use x0tta_pqc::upgrade::{Config, PqStream, UpgradeError};
use x0tta_pqc::{KeyRing, NodeIdentity};

fn node(name: &str) -> NodeIdentity {
    NodeIdentity::generate(format!("spiffe://mesh/{name}").parse().unwrap())
}

type Pipe = Compat<tokio::io::DuplexStream>;
type Upgraded = Result<(libp2p::PeerId, PqStream<Pipe>), UpgradeError>;

/// Runs one connection: `a` dials, `b` accepts, over an in-memory pipe.
async fn connect(a: &Config, b: &Config) -> (Upgraded, Upgraded) {
    let (x, y) = tokio::io::duplex(64 * 1024);
    let info = a.protocol_info().next().unwrap();
    futures::join!(
        a.clone().upgrade_outbound(x.compat(), info),
        b.clone().upgrade_inbound(y.compat(), info)
    )
}

#[tokio::test]
async fn upgrade_authenticates_both_ways_and_resumes_with_kem() {
    let (a, b) = (node("a"), node("b"));
    let (ca, cb) = (Config::new(&a).unwrap(), Config::new(&b).unwrap());
    assert_eq!(ca.protocol_info().next(), Some("/x0tta/pq/1.0.0"));

    let (out, inb) = connect(&ca, &cb).await;
    let (b_id, mut sa) = out.unwrap();
    let (a_id, mut sb) = inb.unwrap();
    assert_eq!((a_id, b_id), (a.peer_id(), b.peer_id()));
    assert_eq!(
        sa.key_exchange_group(),
        Some(rustls::NamedGroup::X25519MLKEM768)
    );
    assert_eq!(sa.auth_mode(), Some(AuthMode::FirstContact));
    assert_eq!(sa.peer_record(), Some(b.record()));
    assert_eq!(ca.records().get(&b.peer_id()).as_ref(), Some(b.record()));
    assert_eq!(cb.records().get(&a.peer_id()).as_ref(), Some(a.record()));
    // The records learned on the link verify what the peer signs, and nobody else's.
    use x0tta_core::{Rejection, Signer, Verdict, Verifier, contexts};
    let sig = a.sign(contexts::INCIDENT, b"incident").unwrap();
    assert!(
        cb.records()
            .verify(contexts::INCIDENT, b"incident", &sig)
            .is_valid()
    );
    assert!(
        !cb.records()
            .verify(contexts::POLICY, b"incident", &sig)
            .is_valid()
    );
    let stranger = node("c").sign(contexts::INCIDENT, b"incident").unwrap();
    assert!(matches!(
        cb.records()
            .verify(contexts::INCIDENT, b"incident", &stranger),
        Verdict::Reject(Rejection::UnknownSigner(_))
    ));

    // Application data flows both ways through the channel.
    sa.write_all(b"ping over pq").await.unwrap();
    sa.flush().await.unwrap();
    let mut buf = [0u8; 12];
    sb.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping over pq");
    sb.write_all(b"pong").await.unwrap();
    sb.flush().await.unwrap();
    let mut buf = [0u8; 4];
    sa.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");

    // Second connection: records are cached, both sides prove possession of their ML-KEM key.
    let (out, inb) = connect(&ca, &cb).await;
    // TLS resumed the earlier session (still with a fresh X25519MLKEM768 exchange).
    assert_eq!(
        out.as_ref().unwrap().1.tls_handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(out.unwrap().1.auth_mode(), Some(AuthMode::KemResumed));
    assert_eq!(inb.unwrap().1.auth_mode(), Some(AuthMode::KemResumed));
}

#[tokio::test]
async fn key_updates_keep_the_stream_working() {
    let (a, b) = (node("a"), node("b"));
    let ca = Config::new(&a).unwrap().with_rekey_interval(Duration::ZERO);
    let cb = Config::new(&b).unwrap().with_rekey_interval(Duration::ZERO);
    let (out, inb) = connect(&ca, &cb).await;
    let (mut sa, mut sb) = (out.unwrap().1, inb.unwrap().1);
    // Every write triggers a TLS KeyUpdate; data still arrives intact, in both directions.
    for i in 0..20u8 {
        sa.write_all(&[i; 100]).await.unwrap();
        sa.flush().await.unwrap();
        let mut buf = [0u8; 100];
        sb.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [i; 100]);
        sb.write_all(&[i]).await.unwrap();
        sb.flush().await.unwrap();
        let mut one = [0u8; 1];
        sa.read_exact(&mut one).await.unwrap();
        assert_eq!(one, [i]);
    }
}

#[tokio::test]
async fn unpinned_peers_are_refused() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    // b trusts only a key that is not a's.
    let pinned = KeyRing::new().with(a.node_id().clone(), c.ml_dsa().public_key().clone());
    let ca = Config::new(&a).unwrap();
    let cb = Config::new(&b).unwrap().with_pinned_keys(pinned);
    let (out, inb) = connect(&ca, &cb).await;
    assert!(
        matches!(
            inb,
            Err(UpgradeError::Handshake(HandshakeError::Untrusted(_)))
        ),
        "{inb:?}"
    );
    // a authenticated b, but b hung up on it.
    drop(inb);
    let _ = out;
    assert!(cb.records().get(&a.peer_id()).is_none());

    // With a's real key pinned, it passes.
    let pinned = KeyRing::new().with(a.node_id().clone(), a.ml_dsa().public_key().clone());
    let cb = Config::new(&b).unwrap().with_pinned_keys(pinned);
    let (out, inb) = connect(&ca, &cb).await;
    assert!(out.is_ok() && inb.is_ok());
}

#[tokio::test]
async fn a_non_tls_peer_is_refused_with_an_error() {
    let (a, b) = (node("a"), node("b"));
    let cb = Config::new(&b).unwrap();
    let (mut x, y) = tokio::io::duplex(64 * 1024);
    let info = cb.protocol_info().next().unwrap();
    let server = cb.clone().upgrade_inbound(y.compat(), info);
    let junk = async move {
        use tokio::io::AsyncWriteExt as _;
        x.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0])
            .await
            .unwrap();
        x.shutdown().await.unwrap();
        x
    };
    let (res, _x) = futures::join!(server, junk);
    assert!(matches!(res, Err(UpgradeError::Tls(_))), "{res:?}");
    let _ = a;
}

fn swarm(identity: &NodeIdentity, config: Config) -> Swarm<ping::Behaviour> {
    SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            config.into_builder_fn(),
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(50)))
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(5)))
        .build()
}

async fn listen(s: &mut Swarm<ping::Behaviour>) -> Multiaddr {
    s.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
            return address;
        }
    }
}

#[tokio::test]
async fn two_swarms_ping_over_the_pq_upgrade() {
    let (a, b) = (node("a"), node("b"));
    let (ca, cb) = (Config::new(&a).unwrap(), Config::new(&b).unwrap());
    let (ra, rb) = (ca.records().clone(), cb.records().clone());
    let mut sa = swarm(&a, ca);
    let mut sb = swarm(&b, cb);
    let addr = listen(&mut sb).await;
    sa.dial(addr).unwrap();

    let (mut a_pinged, mut b_pinged) = (false, false);
    tokio::time::timeout(Duration::from_secs(20), async {
        while !(a_pinged && b_pinged) {
            tokio::select! {
                ev = sa.select_next_some() => if let SwarmEvent::Behaviour(ping::Event { peer, result: Ok(rtt), .. }) = ev {
                    assert_eq!(peer, b.peer_id());
                    assert!(rtt < Duration::from_secs(5));
                    a_pinged = true;
                },
                ev = sb.select_next_some() => if let SwarmEvent::Behaviour(ping::Event { peer, result: Ok(_), .. }) = ev {
                    assert_eq!(peer, a.peer_id());
                    b_pinged = true;
                },
            }
        }
    })
    .await
    .expect("both swarms ping within 20 s");
    // Each node handed the other's verified record to the application.
    assert_eq!(ra.get(&b.peer_id()).as_ref(), Some(b.record()));
    assert_eq!(rb.get(&a.peer_id()).as_ref(), Some(a.record()));
}

#[tokio::test]
async fn a_swarm_without_the_pq_binding_cannot_connect() {
    let (a, b) = (node("a"), node("b"));
    // a speaks Noise only: no ML-DSA-65 binding to offer.
    let mut sa = SwarmBuilder::with_existing_identity(a.libp2p_keypair())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| ping::Behaviour::default())
        .unwrap()
        .build();
    let cb = Config::new(&b).unwrap();
    let rb = cb.records().clone();
    let mut sb = swarm(&b, cb);
    let addr = listen(&mut sb).await;
    sa.dial(addr).unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            tokio::select! {
                ev = sa.select_next_some() => match ev {
                    SwarmEvent::OutgoingConnectionError { .. } => return true,
                    SwarmEvent::ConnectionEstablished { .. } => return false,
                    _ => {}
                },
                _ = sb.select_next_some() => {}
            }
        }
    })
    .await
    .expect("the dial ends within 20 s");
    assert!(refused, "a Noise-only peer got a connection");
    assert!(rb.is_empty());
}

/// A TLS client that offers only classical X25519: the PQ upgrade must refuse it.
#[tokio::test]
async fn a_classical_key_exchange_is_refused_unless_allowed() {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AcceptAny;
    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![
                SignatureScheme::ECDSA_NISTP256_SHA256,
                SignatureScheme::ED25519,
            ]
        }
    }

    /// Presents the libp2p certificate (rustls' own check rejects its critical extension).
    #[derive(Debug)]
    struct OneCert(Arc<rustls::sign::CertifiedKey>);
    impl rustls::client::ResolvesClientCert for OneCert {
        fn resolve(
            &self,
            _: &[&[u8]],
            _: &[SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    let (a, b) = (node("a"), node("b"));
    let (cert, key) = libp2p::tls::certificate::generate(&a.libp2p_keypair()).unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .kx_groups
        .retain(|g| g.name() == rustls::NamedGroup::X25519);
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_client_cert_resolver(Arc::new(OneCert(Arc::new(
            rustls::sign::CertifiedKey::new(
                vec![cert],
                rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap(),
            ),
        ))));
    client.alpn_protocols = vec![b"libp2p".to_vec()];
    let client = Arc::new(client);

    for allow in [false, true] {
        let cb = Config::new(&b).unwrap().allow_classical_key_exchange(allow);
        let (x, y) = tokio::io::duplex(64 * 1024);
        let info = cb.protocol_info().next().unwrap();
        let server = cb.clone().upgrade_inbound(y.compat(), info);
        let name = ServerName::IpAddress(std::net::IpAddr::from([0, 0, 0, 0]).into());
        let dialer = async {
            let tls = futures_rustls::TlsConnector::from(client.clone())
                .connect(name, x.compat())
                .await;
            // Keep the client side open (it never sends the PQ messages) until the server
            // has decided; a short wait is enough for the check that comes first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            tls
        };
        let (res, tls) =
            futures::join!(tokio::time::timeout(Duration::from_secs(2), server), dialer);
        assert!(tls.is_ok(), "classical TLS itself completes");
        match (allow, res) {
            (
                false,
                Ok(Err(UpgradeError::Handshake(HandshakeError::ClassicalKeyExchange { group }))),
            ) => assert!(group.contains("X25519"), "{group}"),
            (false, other) => panic!("classical key exchange not refused: {other:?}"),
            // Allowed: TLS passes the check and the server waits for the PQ Hello instead.
            (true, Err(_elapsed)) => {}
            (true, Ok(r)) => assert!(
                !matches!(
                    r,
                    Err(UpgradeError::Handshake(
                        HandshakeError::ClassicalKeyExchange { .. }
                    ))
                ),
                "{r:?}"
            ),
        }
    }
}
