//! The libp2p [`Transport`] (feature `libp2p`): TCP with the `/x0tta/pq/1.0.0` security
//! upgrade and yamux; identify, Kademlia, mDNS (switchable), gossipsub on the `x0tta/*`
//! topics, request-response `/x0tta/sync/1`, `/x0tta/block/1` and `/x0tta/gov/1`, SWIM
//! failure detection over `/x0tta/swim/1`, connection limits and isolation (block list).
//!
//! One task owns the Swarm; [`P2pTransport`] handles talk to it through a bounded command
//! queue. Every queue is bounded: a full subscriber loses new messages (counted), a full
//! request handler makes the requester see [`TransportError::Unreachable`].

use std::collections::HashMap;
use std::io;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, allow_block_list, connection_limits,
    gossipsub, identify, kad, mdns, request_response, tcp, yamux,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use x0tta_core::{
    CommandOutcome, GossipMessage, InboundRequest, MAX_MESSAGE_BYTES, MeshCommand, MeshEvent,
    MeshEvents, MeshPolicy, Neighbour, NodeId, PublishOutcome, Subscription, Transport,
    TransportError,
};
use x0tta_pqc::upgrade::{self, PeerRecords};
use x0tta_pqc::{KeyRing, NodeIdentity, node_id_of};

use crate::swim::{Swim, SwimConfig, SwimMessage, SwimOutput};

/// Request-response protocol for CRDT state-vector sync.
pub const SYNC_PROTOCOL: &str = x0tta_core::protocols::SYNC;
/// Request-response protocol fetching a record by CID.
pub const BLOCK_PROTOCOL: &str = x0tta_core::protocols::BLOCK;
/// Request-response protocol of governance anti-entropy.
pub const GOV_PROTOCOL: &str = x0tta_core::protocols::GOV;
/// SWIM probes.
pub const SWIM_PROTOCOL: &str = "/x0tta/swim/1";
/// Gossip topic of node heartbeats: presence and gossip latency telemetry (not used for
/// failure detection, which SWIM does point to point).
pub const HEARTBEAT_TOPIC: &str = "x0tta/heartbeat/1";
/// Kademlia protocol of x0tta meshes (kept apart from the public IPFS DHT).
pub const KAD_PROTOCOL: &str = "/x0tta/kad/1.0.0";
/// Identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/x0tta/id/1.0.0";

/// Fewer bootstrap entries than this draw a warning (eclipse-attack resistance).
pub const RECOMMENDED_BOOTSTRAP: usize = 5;

const SWIM_MAX_BYTES: usize = 1024;

/// Starting or configuring the transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The bootstrap file cannot be read or parsed.
    #[error("bootstrap list {path}: {why}")]
    Bootstrap {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A multiaddress is invalid for its purpose.
    #[error("address {addr}: {why}")]
    Address {
        /// The address.
        addr: String,
        /// What is wrong.
        why: String,
    },
    /// Building the Swarm failed.
    #[error("cannot build the libp2p swarm: {0}")]
    Swarm(String),
    /// Listening failed.
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        why: String,
    },
    /// `quic: true` in a build without the `quic` feature.
    #[error("QUIC was asked for, but x0tta-mesh was built without its `quic` feature")]
    QuicUnavailable,
}

/// Settings of a [`P2pTransport`].
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Addresses to listen on (default `/ip4/0.0.0.0/tcp/0`).
    pub listen: Vec<Multiaddr>,
    /// Entry points, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Local discovery by mDNS.
    pub mdns: bool,
    /// Failure-detection timings.
    pub mesh: MeshPolicy,
    /// Below this many live neighbours the transport looks for more (Kademlia, bootstrap).
    pub min_neighbours: usize,
    /// Most established connections.
    pub max_connections: u32,
    /// Capacity of each internal queue (commands, each subscription, each request handler).
    pub queue: usize,
    /// Only peers with these ML-DSA-65 keys are accepted (`None`: trust on first use).
    pub pinned: Option<KeyRing>,
    /// Also run libp2p's QUIC transport (feature `quic`; default off), for `/udp/…/quic-v1`
    /// addresses in `listen` and `bootstrap`. QUIC links are **PQ-confidential but
    /// classically authenticated**: rustls negotiates X25519MLKEM768 there too, but the peer
    /// is authenticated by its Ed25519 certificate only, since libp2p's QUIC offers no place
    /// for the `/x0tta/pq/1.0.0` proof (docs/SECURITY_MODEL.md). Peers reached over QUIC get
    /// no entry in [`P2pTransport::records`]; [`P2pTransport::pq_authenticated`] tells them
    /// apart. Without the feature, [`P2pTransport::start`] refuses `quic: true`.
    pub quic: bool,
    /// Told of every `/x0tta/pq/1.0.0` upgrade (duration, outcome), e.g. for metrics.
    pub handshakes: Option<upgrade::HandshakeObserver>,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: vec![multiaddr("/ip4/0.0.0.0/tcp/0")],
            bootstrap: Vec::new(),
            mdns: true,
            mesh: MeshPolicy::default(),
            min_neighbours: 3,
            max_connections: 256,
            queue: 1024,
            pinned: None,
            quic: false,
            handshakes: None,
        }
    }
}

fn multiaddr(s: &str) -> Multiaddr {
    s.parse().unwrap_or_else(|_| Multiaddr::empty())
}

/// Reads a bootstrap list: a JSON array of multiaddresses (strings, or objects with an
/// `addr` field), each ending in `/p2p/<peer id>`. Warns when it has fewer than
/// [`RECOMMENDED_BOOTSTRAP`] entries.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("x0tta-boot-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("nodes.json");
/// std::fs::write(&path, r#"["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]"#)?;
/// let peers = x0tta_mesh::p2p::load_bootstrap(&path)?;
/// assert_eq!(peers.len(), 1);
/// std::fs::write(&path, r#"["/ip4/10.0.0.1/tcp/4001"]"#)?; // no /p2p/ part
/// assert!(x0tta_mesh::p2p::load_bootstrap(&path).is_err());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_bootstrap(path: impl AsRef<Path>) -> Result<Vec<Multiaddr>, MeshError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Addr(String),
        Object { addr: String },
    }
    let path = path.as_ref();
    let err = |why: String| MeshError::Bootstrap {
        path: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let s = match entry {
            Entry::Addr(s) | Entry::Object { addr: s } => s,
        };
        let addr: Multiaddr = s
            .parse()
            .map_err(|e| err(format!("entry {i} ({s:?}): {e}")))?;
        peer_of(&addr).ok_or_else(|| err(format!("entry {i} ({s:?}) has no /p2p/<peer id>")))?;
        out.push(addr);
    }
    if out.len() < RECOMMENDED_BOOTSTRAP {
        warn!(
            entries = out.len(),
            recommended = RECOMMENDED_BOOTSTRAP,
            "few bootstrap entry points: the node is easier to eclipse"
        );
    }
    Ok(out)
}

/// libp2p's TCP transport listens with `SO_REUSEPORT`, so a second process asking for a port
/// already taken would silently share it (the kernel splitting connections between the two).
/// A plain bind first turns that into a clear error.
fn check_port_free(addr: &Multiaddr) -> Result<(), MeshError> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) if port != 0 => std::net::TcpListener::bind((ip, port))
            .map(drop)
            .map_err(|e| MeshError::Listen {
                addr: addr.to_string(),
                why: if e.kind() == io::ErrorKind::AddrInUse {
                    "the port is already in use (another node on this host?)".into()
                } else {
                    e.to_string()
                },
            }),
        _ => Ok(()),
    }
}

/// The peer id a multiaddress ends with.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Counters of one transport.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct P2pStats {
    /// Gossip messages received.
    pub gossip_received: u64,
    /// Gossip messages dropped because a subscriber's queue was full.
    pub gossip_dropped: u64,
    /// Requests refused because the handler's queue was full or absent.
    pub requests_refused: u64,
    /// Time from the last PeerDown to a restored neighbour set, milliseconds.
    pub last_recovery_ms: Option<u64>,
    /// Established connections.
    pub connections: usize,
    /// Connections replaced by a fresh one (fresh X25519MLKEM768 exchange) because they had
    /// lived `mesh.rekey_interval`.
    pub rotations: u64,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    gossipsub: gossipsub::Behaviour,
    swim: request_response::Behaviour<BytesCodec>,
    sync: request_response::Behaviour<BytesCodec>,
    block: request_response::Behaviour<BytesCodec>,
    gov: request_response::Behaviour<BytesCodec>,
}

/// Length-prefixed byte messages with a size bound.
#[derive(Debug, Clone)]
struct BytesCodec {
    max: usize,
}

async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_bounded<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    msg: &[u8],
    max: usize,
) -> io::Result<()> {
    if msg.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {} bytes exceeds the limit of {max}", msg.len()),
        ));
    }
    let len = u32::try_from(msg.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(msg).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_bounded(io, self.max).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_bounded(io, self.max).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_bounded(io, &req, self.max).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_bounded(io, &res, self.max).await
    }
}

enum Command {
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<PublishOutcome, TransportError>>,
    },
    Subscribe {
        topic: String,
        tx: mpsc::Sender<GossipMessage>,
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
    Request {
        peer: PeerId,
        protocol: Rpc,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, TransportError>>,
    },
    /// Answered once the handler is registered, so a request sent after `serve` returns
    /// always finds it.
    Serve {
        protocol: Rpc,
        tx: mpsc::Sender<InboundRequest>,
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
    Mesh {
        cmd: MeshCommand,
        reply: oneshot::Sender<Result<CommandOutcome, TransportError>>,
    },
    Dial(Multiaddr),
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rpc {
    Sync,
    Block,
    Gov,
}

impl Rpc {
    fn parse(protocol: &str) -> Option<Self> {
        match protocol {
            SYNC_PROTOCOL => Some(Rpc::Sync),
            BLOCK_PROTOCOL => Some(Rpc::Block),
            GOV_PROTOCOL => Some(Rpc::Gov),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rpc::Sync => SYNC_PROTOCOL,
            Rpc::Block => BLOCK_PROTOCOL,
            Rpc::Gov => GOV_PROTOCOL,
        }
    }

    fn of(self, beh: &mut Behaviour) -> &mut request_response::Behaviour<BytesCodec> {
        match self {
            Rpc::Sync => &mut beh.sync,
            Rpc::Block => &mut beh.block,
            Rpc::Gov => &mut beh.gov,
        }
    }
}

struct Shared {
    local: NodeId,
    peer_id: PeerId,
    cmd: mpsc::Sender<Command>,
    events: broadcast::Sender<MeshEvent>,
    neighbours: Mutex<Vec<Neighbour>>,
    listen_addrs: Mutex<Vec<Multiaddr>>,
    stats: Mutex<P2pStats>,
    records: PeerRecords,
    queue: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A node's libp2p transport. Cheap to clone; the Swarm task stops when
/// [`P2pTransport::shutdown`] is called or every clone is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use x0tta_core::Transport;
/// use x0tta_mesh::p2p::{P2pConfig, P2pTransport};
/// use x0tta_pqc::NodeIdentity;
///
/// let me = NodeIdentity::generate("spiffe://mesh.example/node/a".parse()?);
/// let config = P2pConfig {
///     listen: vec!["/ip4/127.0.0.1/tcp/4001".parse()?],
///     bootstrap: x0tta_mesh::p2p::load_bootstrap("nodes.json")?,
///     ..P2pConfig::default()
/// };
/// let mesh = P2pTransport::start(&me, config).await?;
/// let mut incidents = mesh.subscribe("x0tta/incidents/1").await?;
/// mesh.publish("x0tta/incidents/1", b"signed envelope".to_vec()).await?;
/// # let _ = incidents.next().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct P2pTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for P2pTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pTransport")
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl P2pTransport {
    /// Builds the Swarm for `identity`, starts listening and dialing the bootstrap entries,
    /// and spawns its task on the current tokio runtime.
    pub async fn start(identity: &NodeIdentity, config: P2pConfig) -> Result<Self, MeshError> {
        let swarm_err = |e: &dyn std::fmt::Display| MeshError::Swarm(e.to_string());
        let mut pq = upgrade::Config::new(identity)
            .map_err(|e| swarm_err(&e))?
            .with_rekey_interval(config.mesh.rekey_interval);
        if let Some(ring) = config.pinned.clone() {
            pq = pq.with_pinned_keys(ring);
        }
        if let Some(observer) = config.handshakes.clone() {
            pq = pq.with_observer(observer);
        }
        let records = pq.records().clone();
        let peer_id = identity.peer_id();
        let queue = config.queue.max(1);
        let tcp = SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                pq.into_builder_fn(),
                yamux::Config::default,
            )
            .map_err(|e| swarm_err(&e))?;
        // The rest of the builder chain, for TCP alone or TCP + QUIC (different types).
        macro_rules! finish {
            ($builder:expr) => {
                $builder
                    .with_behaviour(|key| build_behaviour(key, &config))
                    .map_err(|e| swarm_err(&e))?
                    .with_swarm_config(|c| {
                        c.with_idle_connection_timeout(Duration::from_secs(60))
                            .with_notify_handler_buffer_size(
                                NonZeroUsize::new(32).unwrap_or(NonZeroUsize::MIN),
                            )
                    })
                    .build()
            };
        }
        #[cfg(feature = "quic")]
        let mut swarm = if config.quic {
            finish!(tcp.with_quic())
        } else {
            finish!(tcp)
        };
        #[cfg(not(feature = "quic"))]
        let mut swarm = if config.quic {
            return Err(MeshError::QuicUnavailable);
        } else {
            finish!(tcp)
        };
        for addr in &config.listen {
            check_port_free(addr)?;
            swarm
                .listen_on(addr.clone())
                .map_err(|e| MeshError::Listen {
                    addr: addr.to_string(),
                    why: e.to_string(),
                })?;
        }
        for addr in &config.bootstrap {
            if let Some(peer) = peer_of(addr) {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, error = %e, "cannot dial bootstrap entry");
            }
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(queue);
        let (events, _) = broadcast::channel(queue);
        let shared = Arc::new(Shared {
            local: node_id_of(&peer_id),
            peer_id,
            cmd: cmd_tx,
            events,
            neighbours: Mutex::new(Vec::new()),
            listen_addrs: Mutex::new(Vec::new()),
            stats: Mutex::new(P2pStats::default()),
            records,
            queue,
        });
        let swim = Swim::new(
            shared.local.clone(),
            SwimConfig::from(&config.mesh),
            u64::from_le_bytes(peer_id.to_bytes()[..8].try_into().unwrap_or([7; 8])),
        );
        let task = Driver {
            swarm,
            swim,
            shared: Arc::downgrade(&shared),
            events: shared.events.clone(),
            config,
            subscribers: HashMap::new(),
            servers: HashMap::new(),
            pending: HashMap::new(),
            swim_in_flight: HashMap::new(),
            responses: FuturesUnordered::new(),
            connected: HashMap::new(),
            addresses: HashMap::new(),
            redial: HashMap::new(),
            down_since: None,
            stats: P2pStats::default(),
            wait_listen: true,
            conns: HashMap::new(),
            rotating: HashMap::new(),
            retiring: Vec::new(),
        };
        tokio::spawn(task.run(cmd_rx));
        // Wait until the listeners report their addresses (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&shared.listen_addrs).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Self { shared })
    }

    /// The libp2p PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The addresses the node listens on, each with `/p2p/<peer id>` appended.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        lock(&self.shared.listen_addrs)
            .iter()
            .map(|a| {
                a.clone()
                    .with(libp2p::multiaddr::Protocol::P2p(self.shared.peer_id))
            })
            .collect()
    }

    /// Verified identity records of peers (from the PQ handshake).
    pub fn records(&self) -> &PeerRecords {
        &self.shared.records
    }

    /// Whether `peer` has proven its ML-DSA-65 / ML-KEM-768 identity on a `/x0tta/pq/1.0.0`
    /// link (its verified record is held). `false` for unknown peers and for peers met only
    /// over QUIC, which is classically authenticated.
    pub fn pq_authenticated(&self, peer: &NodeId) -> bool {
        peer.as_str()
            .parse::<PeerId>()
            .is_ok_and(|p| self.shared.records.get(&p).is_some())
    }

    /// Current counters.
    pub fn stats(&self) -> P2pStats {
        lock(&self.shared.stats).clone()
    }

    /// Dials `addr` (e.g. a peer learned out of band).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), TransportError> {
        self.send(Command::Dial(addr)).await
    }

    /// Stops the Swarm task; later calls fail with [`TransportError::Closed`].
    pub async fn shutdown(&self) {
        let _ = self.send(Command::Shutdown).await;
    }

    async fn send(&self, cmd: Command) -> Result<(), TransportError> {
        self.shared
            .cmd
            .send(cmd)
            .await
            .map_err(|_| TransportError::Closed)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, TransportError>>) -> Command,
    ) -> Result<T, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| TransportError::Closed)?
    }
}

fn parse_peer(node: &NodeId) -> Result<PeerId, TransportError> {
    node.as_str()
        .parse()
        .map_err(|_| TransportError::Unreachable(node.clone()))
}

#[async_trait]
impl Transport for P2pTransport {
    fn local_id(&self) -> &NodeId {
        &self.shared.local
    }

    async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<PublishOutcome, TransportError> {
        TransportError::check_size(payload.len())?;
        let topic = topic.to_owned();
        self.call(|reply| Command::Publish {
            topic,
            data: payload,
            reply,
        })
        .await
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, TransportError> {
        let (tx, rx) = mpsc::channel(self.shared.queue);
        let topic = topic.to_owned();
        self.call(|reply| Command::Subscribe { topic, tx, reply })
            .await?;
        Ok(Subscription::new(rx))
    }

    async fn neighbours(&self) -> Vec<Neighbour> {
        lock(&self.shared.neighbours).clone()
    }

    fn events(&self) -> MeshEvents {
        MeshEvents::new(self.shared.events.subscribe())
    }

    async fn request(
        &self,
        peer: &NodeId,
        protocol: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let rpc = Rpc::parse(protocol).ok_or_else(|| TransportError::NoHandler {
            peer: peer.clone(),
            protocol: protocol.to_owned(),
        })?;
        TransportError::check_size(payload.len())?;
        let pid = parse_peer(peer)?;
        let call = self.call(|reply| Command::Request {
            peer: pid,
            protocol: rpc,
            payload,
            reply,
        });
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(peer.clone())),
        }
    }

    async fn serve(
        &self,
        protocol: &str,
    ) -> Result<mpsc::Receiver<InboundRequest>, TransportError> {
        let rpc = Rpc::parse(protocol).ok_or(TransportError::Unsupported(
            "protocols other than /x0tta/sync/1, /x0tta/block/1 and /x0tta/gov/1",
        ))?;
        let (tx, rx) = mpsc::channel(self.shared.queue);
        self.call(|reply| Command::Serve {
            protocol: rpc,
            tx,
            reply,
        })
        .await?;
        Ok(rx)
    }

    async fn command(&self, cmd: MeshCommand) -> Result<CommandOutcome, TransportError> {
        self.call(|reply| Command::Mesh { cmd, reply }).await
    }
}

fn build_behaviour(
    key: &libp2p::identity::Keypair,
    config: &P2pConfig,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        // Two directions, plus one while a connection is being rotated.
        .with_max_established_per_peer(Some(3))
        .with_max_pending_incoming(Some(64))
        .with_max_pending_outgoing(Some(64));
    let mut kad = kad::Behaviour::with_config(
        peer_id,
        kad::store::MemoryStore::new(peer_id),
        kad::Config::new(StreamProtocol::new(KAD_PROTOCOL)),
    );
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(MAX_MESSAGE_BYTES + 4096)
        .build()?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;
    let rr = |protocol: &'static str, max: usize, timeout: Duration| {
        request_response::Behaviour::with_codec(
            BytesCodec { max },
            [(
                StreamProtocol::new(protocol),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(timeout)
                .with_max_concurrent_streams(256),
        )
    };
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_VERSION.to_owned(),
            key.public(),
        )),
        kad,
        mdns: Toggle::from(mdns),
        gossipsub,
        swim: rr(SWIM_PROTOCOL, SWIM_MAX_BYTES, Duration::from_secs(5)),
        sync: rr(SYNC_PROTOCOL, MAX_MESSAGE_BYTES, Duration::from_secs(30)),
        block: rr(BLOCK_PROTOCOL, MAX_MESSAGE_BYTES, Duration::from_secs(30)),
        gov: rr(GOV_PROTOCOL, MAX_MESSAGE_BYTES, Duration::from_secs(30)),
    })
}

type PendingResponse = (
    Rpc,
    request_response::ResponseChannel<Vec<u8>>,
    Result<Vec<u8>, oneshot::error::RecvError>,
);

/// A request sent and not yet answered.
struct PendingRequest {
    reply: oneshot::Sender<Result<Vec<u8>, TransportError>>,
    /// Kept to resend once if its connection closes under it.
    payload: Vec<u8>,
    retried: bool,
}

/// One established connection.
struct Conn {
    peer: PeerId,
    /// The address this node dialed, if it dialed (the dialer rotates).
    dialed: Option<Multiaddr>,
    /// When it was established (or its rotation last attempted).
    since: Instant,
}

struct Driver {
    swarm: Swarm<Behaviour>,
    swim: Swim,
    shared: std::sync::Weak<Shared>,
    events: broadcast::Sender<MeshEvent>,
    config: P2pConfig,
    subscribers: HashMap<gossipsub::TopicHash, (String, Vec<mpsc::Sender<GossipMessage>>)>,
    servers: HashMap<Rpc, mpsc::Sender<InboundRequest>>,
    pending: HashMap<request_response::OutboundRequestId, PendingRequest>,
    /// SWIM messages sent and not yet acknowledged by the stream.
    swim_in_flight: HashMap<request_response::OutboundRequestId, Vec<u8>>,
    responses: FuturesUnordered<futures::future::BoxFuture<'static, PendingResponse>>,
    /// Established connections per peer.
    connected: HashMap<PeerId, usize>,
    /// Last known dialable addresses per peer.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    /// Peers to redial: next attempt and current backoff.
    redial: HashMap<PeerId, (Instant, Duration)>,
    /// When the last PeerDown happened and how many live neighbours there were before it.
    down_since: Option<(Instant, usize)>,
    stats: P2pStats,
    wait_listen: bool,
    /// Established connections, for rotation.
    conns: HashMap<ConnectionId, Conn>,
    /// Peers whose connection is being replaced: the old connection.
    rotating: HashMap<PeerId, ConnectionId>,
    /// Replaced connections, closed once their grace period is over.
    retiring: Vec<(ConnectionId, Instant)>,
}

const MAX_PENDING: usize = 4096;
const REDIAL_MIN: Duration = Duration::from_millis(250);
const REDIAL_MAX: Duration = Duration::from_secs(30);
/// Most connection rotations started per maintenance tick.
const ROTATIONS_PER_TICK: usize = 4;
/// How long a replaced connection stays open for what is in flight on it.
const ROTATION_GRACE: Duration = Duration::from_secs(2);

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut maintenance = tokio::time::interval(Duration::from_millis(250));
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self
                .swim
                .next_deadline()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                Some((rpc, channel, body)) = self.responses.next(), if !self.responses.is_empty() => {
                    // A dropped responder answers with an empty body: the requester learns
                    // there is no data rather than waiting for its timeout.
                    let body = body.unwrap_or_default();
                    let _ = rpc.of(self.swarm.behaviour_mut()).send_response(channel, body);
                }
                _ = tokio::time::sleep_until(deadline) => {}
                _ = maintenance.tick() => self.maintain(),
            }
            self.swim.tick(Instant::now(), wall_ms());
            self.drain_swim();
            if self.shared.upgrade().is_none() {
                break;
            }
        }
        debug!("mesh task stopped");
    }

    fn publish_state(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut neighbours = self.swim.neighbours();
        // Isolated peers stay listed (as the other transports do), so the loop can see that
        // an isolation took effect.
        for pid in self.swarm.behaviour().blocked.blocked_peers() {
            neighbours.push(Neighbour {
                id: node_id_of(pid),
                addresses: Vec::new(),
                rtt_ms: None,
                loss: 0.0,
                last_seen: x0tta_core::Timestamp::now(),
                state: x0tta_core::PeerState::Isolated,
                clock_offset_ms: None,
            });
        }
        for n in &mut neighbours {
            if let Ok(pid) = n.id.as_str().parse::<PeerId>()
                && let Some(addrs) = self.addresses.get(&pid)
            {
                n.addresses = addrs.iter().map(ToString::to_string).collect();
            }
        }
        *lock(&shared.neighbours) = neighbours;
        self.stats.connections = self.connected.len();
        *lock(&shared.stats) = self.stats.clone();
    }

    fn live_neighbours(&self) -> usize {
        self.swim
            .neighbours()
            .iter()
            .filter(|n| n.state == x0tta_core::PeerState::Up)
            .count()
    }

    fn drain_swim(&mut self) {
        let mut changed = false;
        while let Some(out) = self.swim.poll_output() {
            match out {
                SwimOutput::Send { to, msg } => {
                    if let Ok(pid) = to.as_str().parse::<PeerId>() {
                        let addrs = self.addresses.get(&pid).cloned().unwrap_or_default();
                        let bytes = msg.encode();
                        let id = self.swarm.behaviour_mut().swim.send_request_with_addresses(
                            &pid,
                            bytes.clone(),
                            addrs,
                        );
                        if self.swim_in_flight.len() < MAX_PENDING {
                            self.swim_in_flight.insert(id, bytes);
                        }
                    }
                }
                SwimOutput::Event(ev) => {
                    changed = true;
                    self.on_mesh_event(&ev);
                    let _ = self.events.send(ev);
                }
            }
        }
        if changed {
            self.publish_state();
        }
    }

    fn on_mesh_event(&mut self, ev: &MeshEvent) {
        match ev {
            MeshEvent::PeerDown(node) => {
                info!(peer = %node, "peer down");
                if let Ok(pid) = node.as_str().parse::<PeerId>() {
                    self.redial
                        .entry(pid)
                        .or_insert((Instant::now() + REDIAL_MIN, REDIAL_MIN));
                }
                if self.down_since.is_none() {
                    // Live count before this peer died.
                    self.down_since = Some((Instant::now(), self.live_neighbours() + 1));
                }
            }
            MeshEvent::PeerUp(node) => {
                debug!(peer = %node, "peer up");
                if let Ok(pid) = node.as_str().parse::<PeerId>() {
                    self.redial.remove(&pid);
                }
            }
            _ => {}
        }
    }

    /// Redials lost peers with backoff, looks for replacements below `min_neighbours`, and
    /// measures mesh recovery.
    /// Replaces connections older than `mesh.rekey_interval` with fresh ones — a new hybrid
    /// key exchange and PQ authentication — and closes the replaced ones after a grace
    /// period. Per peer, the youngest connection is kept; the side that dialed it redials when
    /// it gets too old, and each side closes the older connections it dialed itself (this
    /// also drops duplicates from simultaneous dials), so the two ends never race.
    fn rotate(&mut self, now: Instant) {
        let every = self.config.mesh.rekey_interval;
        let grace = ROTATION_GRACE.min(every / 2);
        let mut closing = Vec::new();
        self.retiring.retain(|(id, at)| {
            let due = *at <= now;
            if due {
                closing.push(*id);
            }
            !due
        });
        for id in closing {
            self.swarm.close_connection(id);
        }
        // The youngest live connection of each peer.
        let mut youngest: HashMap<PeerId, (ConnectionId, Instant)> = HashMap::new();
        for (id, conn) in &self.conns {
            if self.retiring.iter().any(|(r, _)| r == id) {
                continue;
            }
            let entry = youngest.entry(conn.peer).or_insert((*id, conn.since));
            if conn.since > entry.1 {
                *entry = (*id, conn.since);
            }
        }
        let mut retire = Vec::new();
        for (id, conn) in &self.conns {
            if conn.dialed.is_some()
                && youngest.get(&conn.peer).is_some_and(|(y, _)| y != id)
                && !self.retiring.iter().any(|(r, _)| r == id)
            {
                retire.push(*id);
            }
        }
        for id in retire {
            self.retiring.push((id, now + grace));
        }
        let mut started = 0;
        for (peer, (id, since)) in youngest {
            if started == ROTATIONS_PER_TICK {
                break;
            }
            let Some(addr) = self.conns.get(&id).and_then(|c| c.dialed.clone()) else {
                continue;
            };
            if now.duration_since(since) < every || self.rotating.contains_key(&peer) {
                continue;
            }
            // Restart its clock: a failed dial is retried an interval later, not every tick.
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.since = now;
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build();
            if self.swarm.dial(opts).is_ok() {
                debug!(%peer, "rotating connection");
                self.rotating.insert(peer, id);
                started += 1;
            }
        }
    }

    fn maintain(&mut self) {
        let now = Instant::now();
        self.rotate(now);
        let due: Vec<PeerId> = self
            .redial
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.connected.contains_key(&peer) {
                continue;
            }
            if let Some((at, backoff)) = self.redial.get_mut(&peer) {
                *backoff = (*backoff * 2).min(REDIAL_MAX);
                *at = now + *backoff;
            }
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addrs)
                .build();
            let _ = self.swarm.dial(opts);
        }
        let live = self.live_neighbours();
        if let Some((since, before)) = self.down_since {
            let target = before
                .saturating_sub(1)
                .max(self.config.min_neighbours.min(before));
            if live >= target.max(1) {
                let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                info!(recovery_ms = ms, live, "mesh neighbour set restored");
                self.stats.last_recovery_ms = Some(ms);
                self.down_since = None;
                self.publish_state();
            }
        }
        if live < self.config.min_neighbours {
            // A random key walks the DHT towards peers this node does not know yet.
            self.swarm
                .behaviour_mut()
                .kad
                .get_closest_peers(PeerId::random());
            for addr in &self.config.bootstrap {
                if let Some(peer) = peer_of(addr)
                    && !self.connected.contains_key(&peer)
                    && peer != *self.swarm.local_peer_id()
                    && !self.redial.contains_key(&peer)
                {
                    let _ = self.swarm.dial(addr.clone());
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { topic, data, reply } => {
                let topic = gossipsub::IdentTopic::new(topic);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&topic.hash()))
                    .count();
                let out = match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                    Ok(_) => Ok(PublishOutcome {
                        delivered: peers,
                        dropped: 0,
                    }),
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(PublishOutcome {
                        delivered: 0,
                        dropped: 0,
                    }),
                    Err(gossipsub::PublishError::AllQueuesFull(n)) => Ok(PublishOutcome {
                        delivered: 0,
                        dropped: n,
                    }),
                    Err(gossipsub::PublishError::MessageTooLarge) => {
                        Err(TransportError::TooLarge {
                            size: MAX_MESSAGE_BYTES + 1,
                            limit: MAX_MESSAGE_BYTES,
                        })
                    }
                    Err(e) => Err(TransportError::Other(e.to_string())),
                };
                let _ = reply.send(out);
            }
            Command::Subscribe { topic, tx, reply } => {
                let t = gossipsub::IdentTopic::new(topic.clone());
                let out = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&t)
                    .map(|_| ())
                    .map_err(|e| TransportError::Other(e.to_string()));
                if out.is_ok() {
                    let entry = self
                        .subscribers
                        .entry(t.hash())
                        .or_insert_with(|| (topic, Vec::new()));
                    entry.1.retain(|s| !s.is_closed());
                    entry.1.push(tx);
                }
                let _ = reply.send(out);
            }
            Command::Request {
                peer,
                protocol,
                payload,
                reply,
            } => {
                if self.pending.len() >= MAX_PENDING {
                    let _ = reply.send(Err(TransportError::Other(
                        "too many requests in flight".into(),
                    )));
                    return;
                }
                let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
                let id = protocol
                    .of(self.swarm.behaviour_mut())
                    .send_request_with_addresses(&peer, payload.clone(), addrs);
                self.pending.insert(
                    id,
                    PendingRequest {
                        reply,
                        payload,
                        retried: false,
                    },
                );
            }
            Command::Serve {
                protocol,
                tx,
                reply,
            } => {
                self.servers.insert(protocol, tx);
                let _ = reply.send(Ok(()));
            }
            Command::Mesh { cmd, reply } => {
                let _ = reply.send(self.on_mesh_command(cmd));
            }
            Command::Dial(addr) => {
                if let Some(peer) = peer_of(&addr) {
                    self.addresses.entry(peer).or_default().push(addr.clone());
                }
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!(%addr, error = %e, "dial failed");
                }
            }
            Command::Shutdown => {}
        }
    }

    fn on_mesh_command(&mut self, cmd: MeshCommand) -> Result<CommandOutcome, TransportError> {
        match cmd {
            MeshCommand::Reconnect(node) => {
                let peer = parse_peer(&node)?;
                if self.connected.contains_key(&peer) {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                self.publish_state();
                let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                self.swarm
                    .dial(opts)
                    .map_err(|e| TransportError::Other(e.to_string()))?;
                Ok(CommandOutcome::Done)
            }
            MeshCommand::DiscoverPeers => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .get_closest_peers(PeerId::random());
                Ok(CommandOutcome::Done)
            }
            MeshCommand::Isolate(node) => {
                let peer = parse_peer(&node)?;
                if !self.swarm.behaviour_mut().blocked.block_peer(peer) {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                self.swim.remove_peer(&node);
                self.redial.remove(&peer);
                self.swarm.behaviour_mut().kad.remove_peer(&peer);
                info!(%peer, "peer isolated");
                self.publish_state();
                Ok(CommandOutcome::Done)
            }
            MeshCommand::Unisolate(node) => {
                let peer = parse_peer(&node)?;
                if !self.swarm.behaviour_mut().blocked.unblock_peer(peer) {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                self.publish_state();
                let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                let _ = self.swarm.dial(opts);
                Ok(CommandOutcome::Done)
            }
            _ => Ok(CommandOutcome::Unsupported),
        }
    }

    fn learn_address(&mut self, peer: PeerId, addr: Multiaddr) {
        let addrs = self.addresses.entry(peer).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
            if addrs.len() > 8 {
                addrs.remove(0);
            }
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if let Some(shared) = self.shared.upgrade() {
                    lock(&shared.listen_addrs).push(address);
                }
                self.wait_listen = false;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                *self.connected.entry(peer_id).or_default() = num_established.get() as usize;
                if self.rotating.remove(&peer_id).is_some() {
                    // The old connection is retired by the next `rotate`.
                    self.stats.rotations += 1;
                }
                self.conns.insert(
                    connection_id,
                    Conn {
                        peer: peer_id,
                        dialed: match &endpoint {
                            ConnectedPoint::Dialer { address, .. } => Some(address.clone()),
                            ConnectedPoint::Listener { .. } => None,
                        },
                        since: Instant::now(),
                    },
                );
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    self.learn_address(peer_id, address.clone());
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address.clone());
                }
                if num_established.get() == 1 {
                    self.swim.add_peer(node_id_of(&peer_id), Instant::now());
                    self.redial.remove(&peer_id);
                }
                self.drain_swim();
                self.publish_state();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.conns.remove(&connection_id);
                self.retiring.retain(|(id, _)| *id != connection_id);
                if self.rotating.get(&peer_id) == Some(&connection_id) {
                    self.rotating.remove(&peer_id);
                }
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    if self
                        .swarm
                        .behaviour()
                        .blocked
                        .blocked_peers()
                        .contains(&peer_id)
                    {
                        self.swim.remove_peer(&node_id_of(&peer_id));
                    } else {
                        self.swim
                            .connection_lost(&node_id_of(&peer_id), Instant::now());
                    }
                } else {
                    self.connected.insert(peer_id, num_established as usize);
                }
                self.drain_swim();
                self.publish_state();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "dial failed");
                // A failed rotation keeps the old connection; the next try is an interval later.
                if let Some(peer) = peer_id {
                    self.rotating.remove(&peer);
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                debug!(%error, "inbound connection refused");
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour(ev),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    if is_dialable(&addr) {
                        self.learn_address(peer_id, addr.clone());
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.learn_address(peer, addr.clone());
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                    if !self.connected.contains_key(&peer) {
                        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                            .addresses(self.addresses.get(&peer).cloned().unwrap_or_default())
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            }) => {
                let live = self.connected.len();
                let want = self.config.min_neighbours.saturating_sub(live);
                for info in ok.peers.into_iter().take(want.max(1)) {
                    if info.peer_id == *self.swarm.local_peer_id()
                        || self.connected.contains_key(&info.peer_id)
                    {
                        continue;
                    }
                    for a in &info.addrs {
                        self.learn_address(info.peer_id, a.clone());
                    }
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(info.peer_id)
                        .addresses(info.addrs)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                self.stats.gossip_received += 1;
                let from = node_id_of(&message.source.unwrap_or(propagation_source));
                if let Some((topic, subs)) = self.subscribers.get_mut(&message.topic) {
                    subs.retain(|s| !s.is_closed());
                    for s in subs.iter() {
                        let msg = GossipMessage {
                            topic: topic.clone(),
                            from: from.clone(),
                            payload: message.data.clone(),
                        };
                        if s.try_send(msg).is_err() {
                            self.stats.gossip_dropped += 1;
                        }
                    }
                }
            }
            BehaviourEvent::Swim(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .swim
                    .send_response(channel, Vec::new());
                match SwimMessage::decode(&request) {
                    Ok(msg) => {
                        self.swim
                            .on_message(node_id_of(&peer), msg, Instant::now(), wall_ms());
                        self.drain_swim();
                    }
                    Err(e) => debug!(%peer, error = %e, "bad swim message"),
                }
            }
            BehaviourEvent::Swim(request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }) => {
                self.swim_in_flight.remove(&request_id);
            }
            BehaviourEvent::Swim(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                // A probe or ack lost because its connection closed (a rotation, a duplicate
                // dropped) while another connection is up goes out again, so the peer is not
                // suspected for it. Other failures are what SWIM's timeouts are for.
                if let Some(bytes) = self.swim_in_flight.remove(&request_id)
                    && matches!(
                        error,
                        request_response::OutboundFailure::ConnectionClosed
                            | request_response::OutboundFailure::Io(_)
                    )
                    && self.connected.contains_key(&peer)
                {
                    self.swarm.behaviour_mut().swim.send_request(&peer, bytes);
                }
            }
            BehaviourEvent::Sync(ev) => self.on_rpc(Rpc::Sync, ev),
            BehaviourEvent::Block(ev) => self.on_rpc(Rpc::Block, ev),
            BehaviourEvent::Gov(ev) => self.on_rpc(Rpc::Gov, ev),
            _ => {}
        }
    }

    fn on_rpc(&mut self, rpc: Rpc, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let (tx, rx) = oneshot::channel();
                    let req = InboundRequest::new(node_id_of(&peer), request, tx);
                    let accepted = self.responses.len() < MAX_PENDING
                        && self
                            .servers
                            .get(&rpc)
                            .is_some_and(|s| s.try_send(req).is_ok());
                    if accepted {
                        self.responses
                            .push(Box::pin(async move { (rpc, channel, rx.await) }));
                    } else {
                        // Dropping the channel makes the requester fail fast.
                        self.stats.requests_refused += 1;
                        drop(channel);
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(p) = self.pending.remove(&request_id) {
                        let _ = p.reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(p) = self.pending.remove(&request_id) {
                    // The connection it travelled on closed (a rotation, a duplicate dropped)
                    // while another one to the peer is up: send it once more. The request
                    // protocols are all reads, so a repeat is harmless.
                    let connection_gone = matches!(
                        error,
                        request_response::OutboundFailure::ConnectionClosed
                            | request_response::OutboundFailure::Io(_)
                    );
                    if connection_gone && !p.retried && self.connected.contains_key(&peer) {
                        let id = rpc
                            .of(self.swarm.behaviour_mut())
                            .send_request(&peer, p.payload.clone());
                        self.pending
                            .insert(id, PendingRequest { retried: true, ..p });
                        return;
                    }
                    let node = node_id_of(&peer);
                    let _ = p.reply.send(Err(match error {
                        request_response::OutboundFailure::Timeout => TransportError::Timeout(node),
                        request_response::OutboundFailure::UnsupportedProtocols => {
                            TransportError::NoHandler {
                                peer: node,
                                protocol: rpc.name().to_owned(),
                            }
                        }
                        _ => TransportError::Unreachable(node),
                    }));
                }
            }
            _ => {}
        }
    }
}

fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| {
        matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified())
            || matches!(p, libp2p::multiaddr::Protocol::Ip6(ip) if ip.is_unspecified())
    })
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::io::Cursor;
    use proptest::prelude::*;

    use super::{read_bounded, write_bounded};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    proptest! {
        /// Whatever bytes a peer sends as a request or response, the reader returns a message
        /// within the limit or an error — never a panic, never a buffer beyond the limit.
        #[test]
        fn framed_reads_of_arbitrary_bytes_are_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            max in 0usize..1024,
        ) {
            let mut io = Cursor::new(bytes);
            if let Ok(msg) = block_on(read_bounded(&mut io, max)) {
                prop_assert!(msg.len() <= max);
            }
        }

        /// A frame written is read back whole; an oversized one is refused on both sides.
        #[test]
        fn frames_round_trip(msg in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut io = Cursor::new(Vec::new());
            let wrote = block_on(write_bounded(&mut io, &msg, 512));
            prop_assert_eq!(wrote.is_ok(), msg.len() <= 512);
            if wrote.is_ok() {
                let mut back = Cursor::new(io.into_inner());
                prop_assert_eq!(block_on(read_bounded(&mut back, 512)).unwrap(), msg);
            }
        }
    }

    #[test]
    fn an_announced_length_beyond_the_limit_is_refused_before_reading() {
        let mut frame = u32::MAX.to_be_bytes().to_vec();
        frame.extend_from_slice(b"short");
        let err = block_on(read_bounded(&mut Cursor::new(frame), 1 << 20)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
