//! The libp2p security upgrade `/x0tta/pq/1.0.0` (feature `libp2p`).
//!
//! TLS 1.3 from libp2p-tls (rustls on aws-lc-rs, X25519MLKEM768 key exchange required,
//! peers authenticated by their Ed25519 libp2p keys), then the PQ authentication exchange of
//! [`crate::handshake`] over the encrypted channel, bound to it by the TLS exporter. The
//! output is the remote PeerId and a [`PqStream`]; the peer's verified identity record goes
//! into the shared [`PeerRecords`] the node reads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use libp2p::{SwarmBuilder, noise, tcp, yamux, ping};
//! use x0tta_pqc::{NodeIdentity, upgrade};
//!
//! let me = NodeIdentity::generate("spiffe://mesh.example/node/a".parse()?);
//! let pq = upgrade::Config::new(&me)?;
//! let records = pq.records().clone(); // verified peer identity records land here
//! let swarm = SwarmBuilder::with_existing_identity(me.libp2p_keypair())
//!     .with_tokio()
//!     .with_tcp(tcp::Config::default(), pq.into_builder_fn(), yamux::Config::default)?
//!     .with_behaviour(|_| ping::Behaviour::default())?
//!     .build();
//! # let _ = (swarm, records);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use futures_rustls::{client, server};
use libp2p_core::UpgradeInfo;
use libp2p_core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p_identity::PeerId;
use rustls::pki_types::ServerName;
use rustls::{CommonState, NamedGroup};

use crate::handshake::{
    AuthMode, Authenticated, EXPORTER_LABEL, Handshake, HandshakeError, MAX_MESSAGE_LEN,
    PROTOCOL_NAME, Role, Step, Trust,
};
use crate::{IdentityRecord, KeyRing, NodeIdentity};

/// Default number of peer records [`PeerRecords`] keeps.
pub const DEFAULT_RECORD_CAPACITY: usize = 4096;

/// Default interval between TLS key updates on a [`PqStream`] (the policy default: hourly).
pub const DEFAULT_REKEY_INTERVAL: Duration = Duration::from_secs(3600);

/// The upgrade failed; the connection is dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Building the TLS configuration failed.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    /// The libp2p key pair given by the Swarm is not this identity's Ed25519 key.
    #[error("the Swarm's key pair is not the identity's Ed25519 key")]
    KeypairMismatch,
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    /// The peer's certificate is not a valid libp2p certificate.
    #[error("peer certificate refused: {0}")]
    Certificate(String),
    /// Reading or writing the PQ exchange failed.
    #[error("I/O during the PQ exchange: {0}")]
    Io(io::Error),
    /// The PQ exchange refused the peer.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

/// Verified identity records of peers, by PeerId: bounded (oldest learned evicted first),
/// shared by every connection of a [`Config`] and readable by the node.
#[derive(Clone, Debug)]
pub struct PeerRecords(Arc<Mutex<RecordsInner>>);

#[derive(Debug)]
struct RecordsInner {
    map: HashMap<PeerId, IdentityRecord>,
    order: VecDeque<PeerId>,
    capacity: usize,
}

impl PeerRecords {
    /// An empty cache holding at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(RecordsInner {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordsInner> {
        // A panic while holding the lock cannot leave the map half-updated in a harmful way.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record held for `peer`.
    pub fn get(&self, peer: &PeerId) -> Option<IdentityRecord> {
        self.lock().map.get(peer).cloned()
    }

    /// Stores a verified record (replacing the one held for the same peer).
    pub fn insert(&self, record: IdentityRecord) {
        let mut inner = self.lock();
        let peer = record.peer_id();
        if inner.map.insert(peer, record).is_none() {
            inner.order.push_back(peer);
            while inner.map.len() > inner.capacity {
                match inner.order.pop_front() {
                    Some(old) => {
                        inner.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    /// Forgets `peer`'s record (its next connection is a first contact again).
    pub fn remove(&self, peer: &PeerId) -> Option<IdentityRecord> {
        let mut inner = self.lock();
        inner.order.retain(|p| p != peer);
        inner.map.remove(peer)
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verifies signatures of the peers whose records this cache holds (those that proved their
/// identity on a `/x0tta/pq/1.0.0` link), so what a node learned from its links can check
/// what those nodes sign. A signer whose record is not held is refused as unknown; the
/// signer's [`NodeId`](x0tta_core::NodeId) must be its PeerId, as on a libp2p mesh.
///
/// ```
/// use x0tta_core::{Rejection, Signer, Verdict, Verifier, contexts};
/// use x0tta_pqc::NodeIdentity;
/// use x0tta_pqc::upgrade::PeerRecords;
///
/// let a = NodeIdentity::generate("spiffe://mesh/a".parse()?);
/// let records = PeerRecords::new(16);
/// let sig = a.sign(contexts::INCIDENT, b"incident")?;
/// assert!(matches!(
///     records.verify(contexts::INCIDENT, b"incident", &sig),
///     Verdict::Reject(Rejection::UnknownSigner(_))
/// ));
/// records.insert(a.record().clone()); // done by the upgrade on a verified link
/// assert!(records.verify(contexts::INCIDENT, b"incident", &sig).is_valid());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl x0tta_core::Verifier for PeerRecords {
    fn verify(
        &self,
        context: &[u8],
        message: &[u8],
        sig: &x0tta_core::Signature,
    ) -> x0tta_core::Verdict {
        let record = sig
            .signer
            .as_str()
            .parse::<PeerId>()
            .ok()
            .and_then(|p| self.get(&p))
            .filter(|r| r.node_id() == &sig.signer);
        match record {
            Some(r) => r.verify(context, message, sig),
            None => x0tta_core::Verdict::Reject(x0tta_core::Rejection::UnknownSigner(
                sig.signer.clone(),
            )),
        }
    }
}

impl Default for PeerRecords {
    fn default() -> Self {
        Self::new(DEFAULT_RECORD_CAPACITY)
    }
}

/// One finished upgrade (TLS and the PQ exchange), as a [`HandshakeObserver`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeRecord {
    /// Whether this side dialed (initiator) or accepted.
    pub role: Role,
    /// From the first TLS byte to the authenticated peer (or to the failure).
    pub duration: Duration,
    /// How the peer proved its identity; `None` if the upgrade failed.
    pub mode: Option<AuthMode>,
}

/// Told of every upgrade a [`Config`] runs, e.g. to count handshakes and time them
/// (`Config::with_observer`). It runs on the connection's task: keep it short.
#[derive(Clone)]
pub struct HandshakeObserver(Arc<dyn Fn(&HandshakeRecord) + Send + Sync>);

impl HandshakeObserver {
    /// An observer that calls `f`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let done = Arc::new(AtomicU64::new(0));
    /// let seen = done.clone();
    /// let observer = x0tta_pqc::upgrade::HandshakeObserver::new(move |r| {
    ///     if r.mode.is_some() {
    ///         seen.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// # let _ = observer;
    /// ```
    pub fn new(f: impl Fn(&HandshakeRecord) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    fn tell(&self, record: &HandshakeRecord) {
        (self.0)(record);
    }
}

impl std::fmt::Debug for HandshakeObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandshakeObserver")
    }
}

/// The `/x0tta/pq/1.0.0` security upgrade. Cheap to clone.
#[derive(Clone)]
pub struct Config {
    identity: NodeIdentity,
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    records: PeerRecords,
    trust: Trust,
    allow_classical: bool,
    rekey_interval: Duration,
    observer: Option<HandshakeObserver>,
}

impl Config {
    /// The upgrade for `identity`: TOFU trust, hybrid key exchange required, hourly key
    /// updates, a [`PeerRecords`] of [`DEFAULT_RECORD_CAPACITY`].
    pub fn new(identity: &NodeIdentity) -> Result<Self, UpgradeError> {
        let keypair = identity.libp2p_keypair();
        let err = |e: libp2p_tls::certificate::GenError| UpgradeError::Config(e.to_string());
        let mut client = libp2p_tls::make_client_config(&keypair, None).map_err(err)?;
        let mut server = libp2p_tls::make_server_config(&keypair).map_err(err)?;
        // Traffic secrets never leave the process, whatever SSLKEYLOGFILE says.
        client.key_log = Arc::new(rustls::NoKeyLog);
        server.key_log = Arc::new(rustls::NoKeyLog);
        Ok(Self {
            identity: identity.clone(),
            client: Arc::new(client),
            server: Arc::new(server),
            records: PeerRecords::default(),
            trust: Trust::FirstUse,
            allow_classical: false,
            rekey_interval: DEFAULT_REKEY_INTERVAL,
            observer: None,
        })
    }

    /// Tells `observer` of every upgrade, successful or not.
    pub fn with_observer(mut self, observer: HandshakeObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe<T>(
        &self,
        role: Role,
        started: Instant,
        result: &Result<(PeerId, PqStream<T>), UpgradeError>,
    ) {
        if let Some(o) = &self.observer {
            o.tell(&HandshakeRecord {
                role,
                duration: started.elapsed(),
                mode: result.as_ref().ok().and_then(|(_, s)| s.auth_mode()),
            });
        }
    }

    /// Shares `records` (e.g. one cache across several transports, or one pre-filled).
    pub fn with_records(mut self, records: PeerRecords) -> Self {
        self.records = records;
        self
    }

    /// Accepts only peers whose ML-DSA-65 key is in `ring`.
    pub fn with_pinned_keys(mut self, ring: KeyRing) -> Self {
        self.trust = Trust::Pinned(ring);
        self
    }

    /// Whether a classical TLS key exchange (no ML-KEM) is tolerated. Off by default: such a
    /// connection fails with [`HandshakeError::ClassicalKeyExchange`].
    pub fn allow_classical_key_exchange(mut self, allow: bool) -> Self {
        self.allow_classical = allow;
        self
    }

    /// How often a [`PqStream`] updates its TLS traffic keys.
    pub fn with_rekey_interval(mut self, interval: Duration) -> Self {
        self.rekey_interval = interval;
        self
    }

    /// The verified peer records.
    pub fn records(&self) -> &PeerRecords {
        &self.records
    }

    /// This config as the security-upgrade constructor `SwarmBuilder::with_tcp` takes; it
    /// checks that the Swarm's key pair is the identity's.
    pub fn into_builder_fn(
        self,
    ) -> impl FnOnce(&libp2p_identity::Keypair) -> Result<Self, UpgradeError> {
        move |keypair| {
            if keypair.public() == self.identity.libp2p_keypair().public() {
                Ok(self)
            } else {
                Err(UpgradeError::KeypairMismatch)
            }
        }
    }

    async fn authenticate<C>(
        &self,
        mut stream: PqStream<C>,
        role: Role,
    ) -> Result<(PeerId, PqStream<C>), UpgradeError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let state = stream.common_state();
        let remote = tls_peer_id(state)?;
        if !self.allow_classical {
            let group = state.negotiated_key_exchange_group().map(|g| g.name());
            if group != Some(NamedGroup::X25519MLKEM768) {
                return Err(HandshakeError::ClassicalKeyExchange {
                    group: group.map_or_else(|| "none".into(), |g| format!("{g:?}")),
                }
                .into());
            }
        }
        let exporter = stream.exporter()?;
        let known = self.records.get(&remote);
        let (mut hs, first) =
            Handshake::start(role, self.identity.clone(), remote, known, exporter);
        write_frame(&mut stream, &first).await?;
        // At most three rounds: `step` refuses a fourth.
        let Authenticated { record, mode } = loop {
            let msg = read_frame(&mut stream).await?;
            match hs.step(&msg, &self.trust)? {
                Step::Send(next) => write_frame(&mut stream, &next).await?,
                Step::Done(peer) => break peer,
            }
        };
        stream.peer = Some((record.clone(), mode));
        self.records.insert(record);
        stream.last_rekey = Instant::now();
        stream.rekey_interval = self.rekey_interval;
        Ok((remote, stream))
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("identity", &self.identity)
            .field("trust", &self.trust)
            .field("allow_classical", &self.allow_classical)
            .field("rekey_interval", &self.rekey_interval)
            .finish_non_exhaustive()
    }
}

fn tls_peer_id(state: &CommonState) -> Result<PeerId, UpgradeError> {
    let Some([cert]) = state.peer_certificates() else {
        return Err(UpgradeError::Certificate(
            "expected exactly one certificate".into(),
        ));
    };
    libp2p_tls::certificate::parse(cert)
        .map(|c| c.peer_id())
        .map_err(|e| UpgradeError::Certificate(e.to_string()))
}

async fn write_frame<C: AsyncWrite + Unpin>(io: &mut C, msg: &[u8]) -> Result<(), UpgradeError> {
    let len = u32::try_from(msg.len()).map_err(|_| HandshakeError::TooLarge {
        len: msg.len(),
        max: MAX_MESSAGE_LEN,
    })?;
    io.write_all(&len.to_be_bytes())
        .await
        .map_err(UpgradeError::Io)?;
    io.write_all(msg).await.map_err(UpgradeError::Io)?;
    io.flush().await.map_err(UpgradeError::Io)
}

async fn read_frame<C: AsyncRead + Unpin>(io: &mut C) -> Result<Vec<u8>, UpgradeError> {
    let eof = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            UpgradeError::Handshake(HandshakeError::Truncated)
        } else {
            UpgradeError::Io(e)
        }
    };
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await.map_err(eof)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(HandshakeError::TooLarge {
            len,
            max: MAX_MESSAGE_LEN,
        }
        .into());
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await.map_err(eof)?;
    Ok(buf)
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL_NAME)
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, PqStream<C>);
    type Error = UpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let started = Instant::now();
            let result = async {
                let tls = futures_rustls::TlsAcceptor::from(self.server.clone())
                    .accept(socket)
                    .await
                    .map_err(UpgradeError::Tls)?;
                self.authenticate(PqStream::new(Tls::Server(tls)), Role::Responder)
                    .await
            }
            .await;
            self.observe(Role::Responder, started, &result);
            result
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, PqStream<C>);
    type Error = UpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let started = Instant::now();
            let result = async {
                // libp2p TLS: no SNI (an unspecified IP address disables it).
                let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
                let tls = futures_rustls::TlsConnector::from(self.client.clone())
                    .connect(name, socket)
                    .await
                    .map_err(UpgradeError::Tls)?;
                self.authenticate(PqStream::new(Tls::Client(tls)), Role::Initiator)
                    .await
            }
            .await;
            self.observe(Role::Initiator, started, &result);
            result
        }
        .boxed()
    }
}

enum Tls<C> {
    Client(client::TlsStream<C>),
    Server(server::TlsStream<C>),
}

/// An authenticated `/x0tta/pq/1.0.0` connection: TLS 1.3 records, with the traffic keys
/// updated (TLS KeyUpdate) once per rekey interval.
pub struct PqStream<C> {
    tls: Tls<C>,
    last_rekey: Instant,
    rekey_interval: Duration,
    peer: Option<(IdentityRecord, AuthMode)>,
}

impl<C> PqStream<C> {
    fn new(tls: Tls<C>) -> Self {
        Self {
            tls,
            last_rekey: Instant::now(),
            rekey_interval: DEFAULT_REKEY_INTERVAL,
            peer: None,
        }
    }

    /// The peer's verified identity record.
    pub fn peer_record(&self) -> Option<&IdentityRecord> {
        self.peer.as_ref().map(|(r, _)| r)
    }

    /// How the peer proved its PQ identity on this connection.
    pub fn auth_mode(&self) -> Option<AuthMode> {
        self.peer.as_ref().map(|(_, m)| *m)
    }

    fn common_state(&self) -> &CommonState {
        match &self.tls {
            Tls::Client(s) => s.get_ref().1,
            Tls::Server(s) => s.get_ref().1,
        }
    }

    fn exporter(&self) -> Result<[u8; 32], UpgradeError> {
        let out = match &self.tls {
            Tls::Client(s) => s
                .get_ref()
                .1
                .export_keying_material([0u8; 32], EXPORTER_LABEL, None),
            Tls::Server(s) => s
                .get_ref()
                .1
                .export_keying_material([0u8; 32], EXPORTER_LABEL, None),
        };
        out.map_err(|e| UpgradeError::Io(io::Error::other(e)))
    }

    /// The TLS key-exchange group the connection negotiated (`X25519MLKEM768` unless classical
    /// key exchange was allowed).
    pub fn key_exchange_group(&self) -> Option<NamedGroup> {
        self.common_state()
            .negotiated_key_exchange_group()
            .map(|g| g.name())
    }

    /// Whether TLS ran a full handshake or resumed an earlier session (a resumed one still
    /// runs a fresh X25519MLKEM768 exchange: rustls resumes only in `psk_dhe_ke` mode).
    pub fn tls_handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.common_state().handshake_kind()
    }

    /// Updates the traffic keys now if the rekey interval has passed.
    fn maybe_rekey(&mut self) -> io::Result<()> {
        if self.last_rekey.elapsed() < self.rekey_interval {
            return Ok(());
        }
        self.last_rekey = Instant::now();
        match &mut self.tls {
            Tls::Client(s) => s.get_mut().1.refresh_traffic_keys(),
            Tls::Server(s) => s.get_mut().1.refresh_traffic_keys(),
        }
        .map_err(io::Error::other)
    }
}

impl<C> std::fmt::Debug for PqStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PqStream")
            .field("key_exchange_group", &self.key_exchange_group())
            .finish_non_exhaustive()
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for PqStream<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.tls {
            Tls::Client(s) => Pin::new(s).poll_read(cx, buf),
            Tls::Server(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PqStream<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.maybe_rekey()?;
        match &mut self.tls {
            Tls::Client(s) => Pin::new(s).poll_write(cx, buf),
            Tls::Server(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.tls {
            Tls::Client(s) => Pin::new(s).poll_flush(cx),
            Tls::Server(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.tls {
            Tls::Client(s) => Pin::new(s).poll_close(cx),
            Tls::Server(s) => Pin::new(s).poll_close(cx),
        }
    }
}
