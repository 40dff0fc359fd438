//! A simulated mesh (feature `sim`): thousands of nodes in one process, each a
//! [`SimTransport`] implementing x0tta-core's [`Transport`], over a network with latency,
//! jitter, loss, partitions, crashes and clock skew.
//!
//! Every node runs the real [`Swim`] detector in its own tokio task. Messages cross the
//! simulated wire as bytes ([`SwimMessage::encode`]) and are delivered by tokio timers, so
//! under a paused clock (`#[tokio::test(start_paused = true)]`) a run is deterministic from
//! the seed: all randomness comes from seeded PRNGs and all time from tokio's clock.
//!
//! The overlay: each node [`joins`](SimNetwork::join) with links to about `degree / 2`
//! existing nodes picked at random (preferring nodes below `degree`), so degrees average
//! `degree`. Failure detection watches overlay neighbours; gossip floods the overlay with
//! message-id dedupe; requests go straight to any node. A node redials its down overlay
//! neighbours every `redial_interval`, the way a libp2p transport redials closed
//! connections; an answered dial brings a peer back up.
//!
//! What it must not do: touch real sockets, read the wall clock or use an unseeded RNG.
//!
//! Bounds: per node, an inbox of `queue` frames in transit plus `queue` frames awaiting
//! their delivery time (both drop new frames when full, counted in [`SimStats::dropped`]);
//! subscriptions and served protocols hold `queue` items (full: the item is dropped, or the
//! request refused); [`SEEN_CAPACITY`] gossip ids (oldest forgotten first);
//! [`MAX_PENDING_REQUESTS`] outgoing and as many answering requests per node.
//!
//! ```
//! use std::time::Duration;
//! use x0tta_core::{NodeId, PeerState, Transport};
//! use x0tta_mesh::sim::{SimConfig, SimNetwork};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?.block_on(async {
//! let net = SimNetwork::new(7, SimConfig::default());
//! let mut nodes = Vec::new();
//! for i in 0..20 {
//!     nodes.push(net.join(NodeId::new(format!("n{i}"))?)?);
//! }
//! let victim = NodeId::new("n5")?;
//! net.crash(&victim)?;
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! for peer in net.overlay_neighbours(&victim) {
//!     assert_eq!(net.peer_state(&peer, &victim), Some(PeerState::Down));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(()) })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::time::Instant;
use x0tta_core::{
    CommandOutcome, GossipMessage, InboundRequest, MAX_MESSAGE_BYTES, MeshCommand, MeshEvent,
    MeshEvents, MeshPolicy, Neighbour, NodeId, PeerState, PublishOutcome, Subscription, Timestamp,
    Transport, TransportError,
};

use crate::swim::{Swim, SwimConfig, SwimMessage, SwimOutput};

/// Gossip message ids a node remembers for dedupe; the oldest are forgotten first.
pub const SEEN_CAPACITY: usize = 8192;
/// Outgoing requests a node may have waiting for replies (more are refused), and requests it
/// may be answering at once (more are refused to the requester).
pub const MAX_PENDING_REQUESTS: usize = 256;
/// Capacity of each node's mesh-event channel; slow receivers lose the oldest events.
const NODE_EVENT_CAPACITY: usize = 256;
/// Capacity of the network-wide event tap ([`SimNetwork::events`]).
const TAP_CAPACITY: usize = 1 << 16;
/// What every simulated wall clock reads at the start (2023-11-14), before skew.
const WALL_EPOCH_MS: i64 = 1_700_000_000_000;

/// How the simulated network behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// One-way latency of every link (unless [`SimNetwork::set_link`] says otherwise).
    pub latency: Duration,
    /// Extra one-way delay, uniform in `0..jitter`, drawn per message.
    pub jitter: Duration,
    /// Probability that a message on a link is lost (unless set per link), 0..1.
    pub loss: f64,
    /// Overlay neighbours per node, on average.
    pub degree: usize,
    /// Failure-detection timings of every node.
    pub mesh: MeshPolicy,
    /// Capacity of each node's queues (inbox, delivery heap, subscriptions, served protocols).
    pub queue: usize,
    /// How often a node redials overlay neighbours it holds down (each wait is drawn
    /// uniformly from 0.5x to 1.5x of this).
    pub redial_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            loss: 0.0,
            degree: 8,
            mesh: MeshPolicy::default(),
            queue: 1024,
            redial_interval: Duration::from_secs(1),
        }
    }
}

/// One link's behaviour, both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// One-way latency (the network's jitter is added).
    pub latency: Duration,
    /// Loss probability per message, 0..1.
    pub loss: f64,
}

/// A simulation control was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The node is not part of this network.
    #[error("node {0} is not part of the simulated network")]
    UnknownNode(NodeId),
    /// A node with this id already joined.
    #[error("node {0} already joined the simulated network")]
    AlreadyJoined(NodeId),
    /// `join` was called outside a tokio runtime (nodes run as tasks).
    #[error("the simulated network must be used inside a tokio runtime")]
    NoRuntime,
    /// The network was shut down.
    #[error("the simulated network is shut down")]
    Closed,
    /// The node's inbox is full.
    #[error("inbox of node {0} is full")]
    InboxFull(NodeId),
}

/// A mesh event seen by one node, with the simulated time it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// Time since the network was created.
    pub at: Duration,
    /// The node that saw it.
    pub node: NodeId,
    /// What it saw.
    pub event: MeshEvent,
}

/// Mesh events of every node ([`SimNetwork::events`]). Bounded: a slow receiver loses the
/// oldest events and counts them in [`SimEvents::lagged`].
#[derive(Debug)]
pub struct SimEvents {
    rx: broadcast::Receiver<SimEvent>,
    lagged: u64,
}

impl SimEvents {
    /// The next event, or `None` once the network is gone. Cancel safe.
    pub async fn next(&mut self) -> Option<SimEvent> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => self.lagged += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<SimEvent> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.lagged += n,
                Err(_) => return None,
            }
        }
    }

    /// Events this receiver missed because it fell behind.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

/// Counters of the simulated wire, since the network was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Frames handed to the wire.
    pub sent: u64,
    /// Frames delivered to a live node.
    pub delivered: u64,
    /// Frames lost: link loss, partitions, crashed or isolated ends.
    pub lost: u64,
    /// Frames dropped because a queue was full (inbox, delivery heap, subscription).
    pub dropped: u64,
    /// SWIM frames that did not decode.
    pub malformed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    lost: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A gossip message in flight; shared between the hops that carry it.
#[derive(Debug)]
struct Gossip {
    origin: NodeId,
    seq: u64,
    topic: String,
    payload: Vec<u8>,
}

/// Why a responder did not answer.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NoHandler,
    Busy,
}

#[derive(Debug)]
enum Frame {
    Swim(Vec<u8>),
    Gossip(Arc<Gossip>),
    Dial,
    DialAck,
    Request {
        id: u64,
        protocol: String,
        payload: Vec<u8>,
        timeout: Duration,
    },
    Response {
        id: u64,
        result: Result<Vec<u8>, Refusal>,
    },
}

#[derive(Debug)]
struct Envelope {
    at: Instant,
    /// Arrival order at the receiver, to break ties in `at` deterministically.
    order: u64,
    from: NodeId,
    frame: Frame,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Envelope {}
impl PartialOrd for Envelope {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Envelope {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// What happened to a frame handed to the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Queued,
    Lost,
    Full,
    Unknown,
}

type Reply = oneshot::Sender<Result<Vec<u8>, TransportError>>;

/// A node's mutable state, behind its own lock. Lock order: a node's `inner`, then the
/// network's `state`; never the other way round.
struct NodeInner {
    swim: Swim,
    rng: SmallRng,
    isolated: BTreeSet<NodeId>,
    seen: HashSet<(NodeId, u64)>,
    seen_order: VecDeque<(NodeId, u64)>,
    gossip_seq: u64,
    subs: HashMap<String, Vec<mpsc::Sender<GossipMessage>>>,
    servers: HashMap<String, mpsc::Sender<InboundRequest>>,
    pending: HashMap<u64, Reply>,
    next_request: u64,
    next_redial: Instant,
    generation: u64,
}

struct NodeShared {
    id: NodeId,
    index: u64,
    alive: AtomicBool,
    skew_ms: AtomicI64,
    inbox: mpsc::Sender<Envelope>,
    wake: Notify,
    events: broadcast::Sender<MeshEvent>,
    answering: AtomicUsize,
    inner: Mutex<NodeInner>,
}

impl NodeShared {
    fn lock(&self) -> MutexGuard<'_, NodeInner> {
        // A poisoned lock means a panic mid-update elsewhere; the plain maps stay usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

struct NetState {
    nodes: HashMap<NodeId, Arc<NodeShared>>,
    /// Join order, for seeded random picks.
    order: Vec<NodeId>,
    /// The overlay, both directions.
    adj: HashMap<NodeId, BTreeSet<NodeId>>,
    /// Partition groups; empty when the network is whole.
    groups: HashMap<NodeId, usize>,
    links: HashMap<(NodeId, NodeId), LinkSpec>,
    rng: SmallRng,
}

impl NetState {
    fn cut(&self, a: &NodeId, b: &NodeId) -> bool {
        if self.groups.is_empty() {
            return false;
        }
        let ga = self.groups.get(a).copied().unwrap_or(usize::MAX);
        let gb = self.groups.get(b).copied().unwrap_or(usize::MAX);
        ga != gb
    }

    fn link(&mut self, a: &NodeId, b: &NodeId) {
        self.adj.entry(a.clone()).or_default().insert(b.clone());
        self.adj.entry(b.clone()).or_default().insert(a.clone());
    }
}

struct Net {
    config: SimConfig,
    seed: u64,
    start: Instant,
    closed: AtomicBool,
    state: Mutex<NetState>,
    tap: broadcast::Sender<SimEvent>,
    counters: Counters,
}

/// SplitMix64 finaliser: independent seeds for every node and generation from one seed.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Net {
    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wall_ms(&self, node: &NodeShared) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        WALL_EPOCH_MS
            .saturating_add(elapsed)
            .saturating_add(node.skew_ms.load(Ordering::Relaxed))
    }

    fn swim_config(&self) -> SwimConfig {
        SwimConfig::from(&self.config.mesh)
    }

    fn neighbours_of(&self, id: &NodeId) -> Vec<NodeId> {
        self.lock()
            .adj
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Puts `frame` on the wire from `from` to `to`, applying partitions, loss and delay.
    fn send(&self, from: &NodeShared, rng: &mut SmallRng, to: &NodeId, frame: Frame) -> Sent {
        if !from.alive() || self.closed.load(Ordering::Relaxed) {
            return Sent::Lost;
        }
        bump(&self.counters.sent);
        let st = self.lock();
        let Some(dest) = st.nodes.get(to) else {
            return Sent::Unknown;
        };
        let spec = if st.links.is_empty() {
            None
        } else {
            st.links.get(&(from.id.clone(), to.clone())).copied()
        };
        let (latency, loss) = spec.map_or((self.config.latency, self.config.loss), |s| {
            (s.latency, s.loss)
        });
        if !dest.alive() || st.cut(&from.id, to) || (loss > 0.0 && rng.random::<f64>() < loss) {
            bump(&self.counters.lost);
            return Sent::Lost;
        }
        let jitter = if self.config.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.config.jitter.mul_f64(rng.random::<f64>())
        };
        let env = Envelope {
            at: Instant::now() + latency + jitter,
            order: 0,
            from: from.id.clone(),
            frame,
        };
        match dest.inbox.try_send(env) {
            Ok(()) => Sent::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&self.counters.dropped);
                Sent::Full
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                bump(&self.counters.lost);
                Sent::Lost
            }
        }
    }

    fn emit(&self, node: &NodeShared, event: MeshEvent) {
        let _ = self.tap.send(SimEvent {
            at: self.start.elapsed(),
            node: node.id.clone(),
            event: event.clone(),
        });
        let _ = node.events.send(event);
    }

    /// Carries out what the detector asked for.
    fn pump(&self, node: &NodeShared, inner: &mut NodeInner) {
        while let Some(out) = inner.swim.poll_output() {
            match out {
                SwimOutput::Send { to, msg } => {
                    if !inner.isolated.contains(&to) {
                        self.send(node, &mut inner.rng, &to, Frame::Swim(msg.encode()));
                    }
                }
                SwimOutput::Event(e) => self.emit(node, e),
            }
        }
    }

    /// Handles one delivered frame at `node`.
    fn deliver(self: &Arc<Self>, node: &Arc<NodeShared>, env: Envelope, now: Instant) {
        if !node.alive() {
            bump(&self.counters.lost);
            return;
        }
        let mut guard = node.lock();
        let inner = &mut *guard;
        if inner.isolated.contains(&env.from) {
            bump(&self.counters.lost);
            return;
        }
        bump(&self.counters.delivered);
        let from = env.from;
        match env.frame {
            Frame::Swim(bytes) => match SwimMessage::decode(&bytes) {
                Ok(msg) => {
                    let wall = self.wall_ms(node);
                    inner.swim.on_message(from, msg, now, wall);
                }
                Err(e) => {
                    bump(&self.counters.malformed);
                    tracing::debug!(node = %node.id, peer = %from, error = %e, "bad swim frame");
                }
            },
            Frame::Gossip(g) => self.on_gossip(node, inner, &from, g),
            Frame::Dial => {
                self.lock().link(&node.id, &from);
                inner.swim.add_peer(from.clone(), now);
                self.send(node, &mut inner.rng, &from, Frame::DialAck);
            }
            Frame::DialAck => {
                self.lock().link(&node.id, &from);
                inner.swim.add_peer(from, now);
            }
            Frame::Request {
                id,
                protocol,
                payload,
                timeout,
            } => self.on_request(node, inner, from, id, &protocol, payload, timeout),
            Frame::Response { id, result } => {
                if let Some(reply) = inner.pending.remove(&id) {
                    let _ = reply.send(result.map_err(|r| match r {
                        Refusal::NoHandler => TransportError::NoHandler {
                            peer: from.clone(),
                            protocol: "(unknown)".into(),
                        },
                        Refusal::Busy => {
                            TransportError::Other(format!("{from} refused the request: busy"))
                        }
                    }));
                }
            }
        }
        self.pump(node, inner);
    }

    fn on_gossip(&self, node: &NodeShared, inner: &mut NodeInner, from: &NodeId, g: Arc<Gossip>) {
        let key = (g.origin.clone(), g.seq);
        if !remember(inner, key) {
            return;
        }
        if let Some(subs) = inner.subs.get_mut(&g.topic) {
            subs.retain(|tx| {
                match tx.try_send(GossipMessage {
                    topic: g.topic.clone(),
                    from: g.origin.clone(),
                    payload: g.payload.clone(),
                }) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        bump(&self.counters.dropped);
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        for peer in self.neighbours_of(&node.id) {
            if &peer != from && peer != g.origin && !inner.isolated.contains(&peer) {
                self.send(node, &mut inner.rng, &peer, Frame::Gossip(Arc::clone(&g)));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        self: &Arc<Self>,
        node: &Arc<NodeShared>,
        inner: &mut NodeInner,
        from: NodeId,
        id: u64,
        protocol: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) {
        let refuse = |net: &Net, inner: &mut NodeInner, why: Refusal| {
            net.send(
                node,
                &mut inner.rng,
                &from,
                Frame::Response {
                    id,
                    result: Err(why),
                },
            );
        };
        let Some(server) = inner.servers.get(protocol).cloned() else {
            refuse(self, inner, Refusal::NoHandler);
            return;
        };
        if node.answering.load(Ordering::Relaxed) >= MAX_PENDING_REQUESTS {
            refuse(self, inner, Refusal::Busy);
            return;
        }
        let (tx, rx) = oneshot::channel();
        match server.try_send(InboundRequest::new(from.clone(), payload, tx)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                refuse(self, inner, Refusal::Busy);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                inner.servers.remove(protocol);
                refuse(self, inner, Refusal::NoHandler);
                return;
            }
        }
        // The handler answers later; a bounded waiter carries the answer back. It gives up
        // when the requester would have, so a handler that never answers costs nothing.
        node.answering.fetch_add(1, Ordering::Relaxed);
        let (net, node) = (Arc::clone(self), Arc::clone(node));
        tokio::spawn(async move {
            let answer = tokio::time::timeout(timeout, rx).await;
            node.answering.fetch_sub(1, Ordering::Relaxed);
            if let Ok(Ok(body)) = answer {
                if body.len() > MAX_MESSAGE_BYTES {
                    tracing::debug!(node = %node.id, "response over the size limit dropped");
                    return;
                }
                let mut inner = node.lock();
                net.send(
                    &node,
                    &mut inner.rng,
                    &from,
                    Frame::Response {
                        id,
                        result: Ok(body),
                    },
                );
            }
        });
    }

    /// Timers of one node: the detector, then redials of down overlay neighbours.
    /// Returns the node's next deadline.
    fn tick(&self, node: &NodeShared, now: Instant) -> Option<Instant> {
        if !node.alive() {
            return None;
        }
        let mut guard = node.lock();
        let inner = &mut *guard;
        let wall = self.wall_ms(node);
        inner.swim.tick(now, wall);
        if now >= inner.next_redial {
            // Jittered (0.5x to 1.5x) so that nodes do not redial in lockstep.
            let factor = 0.5 + inner.rng.random::<f64>();
            inner.next_redial = now + self.config.redial_interval.mul_f64(factor);
            for peer in self.neighbours_of(&node.id) {
                let down = matches!(inner.swim.state(&peer), None | Some(PeerState::Down));
                if down && !inner.isolated.contains(&peer) {
                    self.send(node, &mut inner.rng, &peer, Frame::Dial);
                }
            }
        }
        self.pump(node, inner);
        let redial = inner.next_redial;
        Some(inner.swim.next_deadline().map_or(redial, |d| d.min(redial)))
    }
}

/// Records a gossip id; `false` if it was already seen.
fn remember(inner: &mut NodeInner, key: (NodeId, u64)) -> bool {
    if inner.seen.contains(&key) {
        return false;
    }
    if inner.seen_order.len() >= SEEN_CAPACITY
        && let Some(old) = inner.seen_order.pop_front()
    {
        inner.seen.remove(&old);
    }
    inner.seen.insert(key.clone());
    inner.seen_order.push_back(key);
    true
}

/// The task of one node: takes frames off its inbox, delivers them at their time, runs its
/// timers. Ends when the network shuts down.
async fn run_node(net: Arc<Net>, node: Arc<NodeShared>, mut inbox: mpsc::Receiver<Envelope>) {
    let capacity = net.config.queue.max(1);
    let mut heap: BinaryHeap<Reverse<Envelope>> = BinaryHeap::new();
    let mut arrivals: u64 = 0;
    let idle = Duration::from_secs(3600);
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    loop {
        if net.closed.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(env)) = heap.pop() {
                net.deliver(&node, env, now);
            }
        }
        let timer = net.tick(&node, now);
        let next = match (timer, heap.peek()) {
            (Some(t), Some(Reverse(e))) => Some(t.min(e.at)),
            (t, e) => t.or(e.map(|Reverse(e)| e.at)),
        };
        sleep.as_mut().reset(next.unwrap_or(now + idle));
        let mut take = |env: Envelope| {
            if heap.len() >= capacity {
                bump(&net.counters.dropped);
                return;
            }
            arrivals += 1;
            heap.push(Reverse(Envelope {
                order: arrivals,
                ..env
            }));
        };
        tokio::select! {
            biased;
            m = inbox.recv() => match m {
                Some(env) => {
                    take(env);
                    while let Ok(env) = inbox.try_recv() {
                        take(env);
                    }
                }
                None => break,
            },
            () = node.wake.notified() => {}
            () = &mut sleep => {}
        }
    }
}

/// A simulated network of [`SimTransport`]s. Cheap to clone (a handle).
///
/// Controls: [`set_link`](Self::set_link), [`partition`](Self::partition) /
/// [`heal`](Self::heal), [`crash`](Self::crash) / [`restart`](Self::restart),
/// [`set_clock_skew`](Self::set_clock_skew). Observation: [`events`](Self::events) (every
/// node's mesh events, timestamped), [`peer_state`](Self::peer_state),
/// [`overlay_neighbours`](Self::overlay_neighbours), [`stats`](Self::stats).
#[derive(Clone)]
pub struct SimNetwork {
    net: Arc<Net>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNetwork")
            .field("seed", &self.net.seed)
            .field("nodes", &self.net.lock().order.len())
            .finish_non_exhaustive()
    }
}

impl SimNetwork {
    /// An empty network; `seed` fixes every random choice (topology, loss, jitter, probes).
    /// Time starts now, on tokio's clock.
    pub fn new(seed: u64, config: SimConfig) -> Self {
        let (tap, _) = broadcast::channel(TAP_CAPACITY);
        Self {
            net: Arc::new(Net {
                config,
                seed,
                start: Instant::now(),
                closed: AtomicBool::new(false),
                state: Mutex::new(NetState {
                    nodes: HashMap::new(),
                    order: Vec::new(),
                    adj: HashMap::new(),
                    groups: HashMap::new(),
                    links: HashMap::new(),
                    rng: SmallRng::seed_from_u64(mix(seed, u64::MAX, 0)),
                }),
                tap,
                counters: Counters::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.net.config
    }

    /// Adds node `id`, linked to about `degree / 2` random live nodes, and starts its task.
    /// Must be called inside a tokio runtime.
    pub fn join(&self, id: NodeId) -> Result<SimTransport, SimError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| SimError::NoRuntime)?;
        if self.net.closed.load(Ordering::Relaxed) {
            return Err(SimError::Closed);
        }
        let now = Instant::now();
        let config = &self.net.config;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let (node, peers) = {
            let mut st = self.net.lock();
            if st.nodes.contains_key(&id) {
                return Err(SimError::AlreadyJoined(id));
            }
            let index = st.order.len() as u64;
            let want = config.degree.div_ceil(2).min(st.order.len());
            let mut chosen: BTreeSet<NodeId> = BTreeSet::new();
            let mut attempts = 0;
            while chosen.len() < want && attempts < want * 16 + 16 {
                attempts += 1;
                let len = st.order.len();
                let i = st.rng.random_range(0..len);
                let Some(c) = st.order.get(i).cloned() else {
                    break;
                };
                let full = st.adj.get(&c).map_or(0, BTreeSet::len) >= config.degree;
                let live = st.nodes.get(&c).is_some_and(|n| n.alive());
                // Prefer nodes below the target degree; past half the attempts, take any.
                if live && (!full || attempts > want * 8) {
                    chosen.insert(c);
                }
            }
            let seed = mix(self.net.seed, index, 0);
            let node = Arc::new(NodeShared {
                id: id.clone(),
                index,
                alive: AtomicBool::new(true),
                skew_ms: AtomicI64::new(0),
                inbox: tx,
                wake: Notify::new(),
                events: broadcast::channel(NODE_EVENT_CAPACITY).0,
                answering: AtomicUsize::new(0),
                inner: Mutex::new(NodeInner {
                    swim: Swim::new(id.clone(), self.net.swim_config(), seed),
                    rng: SmallRng::seed_from_u64(mix(seed, 1, 0)),
                    isolated: BTreeSet::new(),
                    seen: HashSet::new(),
                    seen_order: VecDeque::new(),
                    gossip_seq: 0,
                    subs: HashMap::new(),
                    servers: HashMap::new(),
                    pending: HashMap::new(),
                    next_request: 0,
                    next_redial: now + config.redial_interval,
                    generation: 0,
                }),
            });
            st.nodes.insert(id.clone(), Arc::clone(&node));
            st.order.push(id.clone());
            st.adj.entry(id.clone()).or_default();
            let mut peers = Vec::new();
            for c in chosen {
                st.link(&id, &c);
                if let Some(n) = st.nodes.get(&c) {
                    peers.push(Arc::clone(n));
                }
            }
            (node, peers)
        };
        // Both ends of each new link are connected from the start.
        {
            let mut inner = node.lock();
            for p in &peers {
                inner.swim.add_peer(p.id.clone(), now);
            }
            self.net.pump(&node, &mut inner);
        }
        for p in &peers {
            let mut inner = p.lock();
            inner.swim.add_peer(id.clone(), now);
            self.net.pump(p, &mut inner);
            drop(inner);
            p.wake.notify_one();
        }
        handle.spawn(run_node(Arc::clone(&self.net), Arc::clone(&node), rx));
        Ok(SimTransport {
            node,
            net: Arc::clone(&self.net),
        })
    }

    fn node(&self, id: &NodeId) -> Result<Arc<NodeShared>, SimError> {
        self.net
            .lock()
            .nodes
            .get(id)
            .cloned()
            .ok_or_else(|| SimError::UnknownNode(id.clone()))
    }

    /// Sets the link between `a` and `b` (both directions).
    pub fn set_link(&self, a: &NodeId, b: &NodeId, spec: LinkSpec) -> Result<(), SimError> {
        self.node(a)?;
        self.node(b)?;
        let mut st = self.net.lock();
        st.links.insert((a.clone(), b.clone()), spec);
        st.links.insert((b.clone(), a.clone()), spec);
        Ok(())
    }

    /// Splits the network: links between different groups drop everything. Nodes in no
    /// group form one more group together. Replaces any earlier partition.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let mut st = self.net.lock();
        st.groups.clear();
        for (g, members) in groups.iter().enumerate() {
            for m in members {
                st.groups.insert(m.clone(), g);
            }
        }
    }

    /// Ends the partition (link settings stay).
    pub fn heal(&self) {
        self.net.lock().groups.clear();
    }

    /// Crashes `id`: it stops answering and sending, loses its subscriptions, served
    /// protocols and pending requests, and its transport returns
    /// [`TransportError::Closed`]. Nobody is told: peers find out by probing.
    pub fn crash(&self, id: &NodeId) -> Result<(), SimError> {
        let node = self.node(id)?;
        node.alive.store(false, Ordering::Release);
        let mut inner = node.lock();
        inner.subs.clear();
        inner.servers.clear();
        inner.pending.clear();
        drop(inner);
        node.wake.notify_one();
        Ok(())
    }

    /// Restarts a crashed `id` with fresh state (as a rebooted process): it redials its
    /// overlay neighbours at once. Its [`SimTransport`] works again.
    pub fn restart(&self, id: &NodeId) -> Result<(), SimError> {
        let node = self.node(id)?;
        let now = Instant::now();
        {
            let mut inner = node.lock();
            inner.generation += 1;
            let seed = mix(self.net.seed, node.index, inner.generation);
            inner.swim = Swim::new(id.clone(), self.net.swim_config(), seed);
            inner.rng = SmallRng::seed_from_u64(mix(seed, 1, 0));
            inner.isolated.clear();
            inner.seen.clear();
            inner.seen_order.clear();
            inner.next_redial = now;
        }
        node.alive.store(true, Ordering::Release);
        node.wake.notify_one();
        Ok(())
    }

    /// Makes `id`'s wall clock read `ms` milliseconds off the network's time.
    pub fn set_clock_skew(&self, id: &NodeId, ms: i64) -> Result<(), SimError> {
        self.node(id)?.skew_ms.store(ms, Ordering::Relaxed);
        Ok(())
    }

    /// Hands raw bytes to `to` as a failure-detection frame from `from`, now, bypassing loss
    /// and partitions: for feeding malformed input. Bad frames are counted in
    /// [`SimStats::malformed`].
    pub fn inject(&self, from: &NodeId, to: &NodeId, bytes: Vec<u8>) -> Result<(), SimError> {
        let dest = self.node(to)?;
        dest.inbox
            .try_send(Envelope {
                at: Instant::now(),
                order: 0,
                from: from.clone(),
                frame: Frame::Swim(bytes),
            })
            .map_err(|_| SimError::InboxFull(to.clone()))
    }

    /// Every node's mesh events from now on, timestamped.
    pub fn events(&self) -> SimEvents {
        SimEvents {
            rx: self.net.tap.subscribe(),
            lagged: 0,
        }
    }

    /// What `observer`'s detector thinks of `peer` ([`PeerState::Isolated`] if isolated;
    /// `None` if it does not know it, or `observer` is crashed or unknown).
    pub fn peer_state(&self, observer: &NodeId, peer: &NodeId) -> Option<PeerState> {
        let node = self.node(observer).ok()?;
        if !node.alive() {
            return None;
        }
        let inner = node.lock();
        if inner.isolated.contains(peer) {
            return Some(PeerState::Isolated);
        }
        inner.swim.state(peer)
    }

    /// `id`'s overlay neighbours.
    pub fn overlay_neighbours(&self, id: &NodeId) -> Vec<NodeId> {
        self.net.neighbours_of(id)
    }

    /// Every node, in join order.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.net.lock().order.clone()
    }

    /// Whether `id` is running (joined and not crashed).
    pub fn is_alive(&self, id: &NodeId) -> bool {
        self.node(id).is_ok_and(|n| n.alive())
    }

    /// Simulated time since the network was created.
    pub fn elapsed(&self) -> Duration {
        self.net.start.elapsed()
    }

    /// Wire counters.
    pub fn stats(&self) -> SimStats {
        let c = &self.net.counters;
        SimStats {
            sent: c.sent.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }

    /// Stops every node task; all transports return [`TransportError::Closed`] afterwards.
    pub fn shutdown(&self) {
        self.net.closed.store(true, Ordering::Relaxed);
        let nodes: Vec<Arc<NodeShared>> = self.net.lock().nodes.values().cloned().collect();
        for n in nodes {
            n.wake.notify_one();
        }
    }
}

/// One node's [`Transport`] on a [`SimNetwork`]. Cheap to clone (a handle).
///
/// - `publish` floods the overlay; each node forwards a message id once. `delivered` counts
///   overlay neighbours it was handed to, `dropped` those whose inbox was full.
/// - `subscribe` queues hold [`SimConfig::queue`] messages; when full, new ones are dropped.
/// - `neighbours` is the node's [`Swim`] table (overlay neighbours), plus isolated peers.
/// - `request` reaches any node of the network; `serve` queues hold [`SimConfig::queue`]
///   requests, more are refused.
/// - `command` supports every [`MeshCommand`].
#[derive(Clone)]
pub struct SimTransport {
    node: Arc<NodeShared>,
    net: Arc<Net>,
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimTransport({})", self.node.id)
    }
}

impl SimTransport {
    fn check(&self) -> Result<(), TransportError> {
        if self.net.closed.load(Ordering::Relaxed) || !self.node.alive() {
            return Err(TransportError::Closed);
        }
        Ok(())
    }

    fn dial(&self, inner: &mut NodeInner, peer: &NodeId) -> Sent {
        self.net.send(&self.node, &mut inner.rng, peer, Frame::Dial)
    }
}

#[async_trait]
impl Transport for SimTransport {
    fn local_id(&self) -> &NodeId {
        &self.node.id
    }

    async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<PublishOutcome, TransportError> {
        self.check()?;
        TransportError::check_size(payload.len())?;
        let mut inner = self.node.lock();
        inner.gossip_seq += 1;
        let seq = inner.gossip_seq;
        remember(&mut inner, (self.node.id.clone(), seq));
        let g = Arc::new(Gossip {
            origin: self.node.id.clone(),
            seq,
            topic: topic.to_string(),
            payload,
        });
        let mut outcome = PublishOutcome {
            delivered: 0,
            dropped: 0,
        };
        for peer in self.net.neighbours_of(&self.node.id) {
            if inner.isolated.contains(&peer) {
                continue;
            }
            match self.net.send(
                &self.node,
                &mut inner.rng,
                &peer,
                Frame::Gossip(Arc::clone(&g)),
            ) {
                Sent::Queued | Sent::Lost => outcome.delivered += 1,
                Sent::Full => outcome.dropped += 1,
                Sent::Unknown => {}
            }
        }
        Ok(outcome)
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, TransportError> {
        self.check()?;
        let (tx, rx) = mpsc::channel(self.net.config.queue.max(1));
        self.node
            .lock()
            .subs
            .entry(topic.to_string())
            .or_default()
            .push(tx);
        Ok(Subscription::new(rx))
    }

    async fn neighbours(&self) -> Vec<Neighbour> {
        if self.check().is_err() {
            return Vec::new();
        }
        let inner = self.node.lock();
        let mut out = inner.swim.neighbours();
        for n in &mut out {
            n.addresses = vec![format!("sim://{}", n.id)];
        }
        for id in &inner.isolated {
            out.push(Neighbour {
                id: id.clone(),
                addresses: vec![format!("sim://{id}")],
                rtt_ms: None,
                loss: 0.0,
                last_seen: Timestamp::from_millis(0),
                state: PeerState::Isolated,
                clock_offset_ms: None,
            });
        }
        out
    }

    fn events(&self) -> MeshEvents {
        MeshEvents::new(self.node.events.subscribe())
    }

    async fn request(
        &self,
        peer: &NodeId,
        protocol: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        self.check()?;
        TransportError::check_size(payload.len())?;
        if peer == &self.node.id {
            return Err(TransportError::Unreachable(peer.clone()));
        }
        let (id, rx) = {
            let mut inner = self.node.lock();
            if inner.isolated.contains(peer) {
                return Err(TransportError::Unreachable(peer.clone()));
            }
            if inner.pending.len() >= MAX_PENDING_REQUESTS {
                return Err(TransportError::Other(format!(
                    "{} requests already pending",
                    MAX_PENDING_REQUESTS
                )));
            }
            inner.next_request += 1;
            let id = inner.next_request;
            let (tx, rx) = oneshot::channel();
            inner.pending.insert(id, tx);
            let frame = Frame::Request {
                id,
                protocol: protocol.to_string(),
                payload,
                timeout,
            };
            if self.net.send(&self.node, &mut inner.rng, peer, frame) == Sent::Unknown {
                inner.pending.remove(&id);
                return Err(TransportError::Unreachable(peer.clone()));
            }
            (id, rx)
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Err(TransportError::NoHandler { peer, .. }))) => Err(TransportError::NoHandler {
                peer,
                protocol: protocol.to_string(),
            }),
            Ok(Ok(result)) => result,
            // The node crashed or restarted while waiting.
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => {
                self.node.lock().pending.remove(&id);
                Err(TransportError::Timeout(peer.clone()))
            }
        }
    }

    async fn serve(
        &self,
        protocol: &str,
    ) -> Result<mpsc::Receiver<InboundRequest>, TransportError> {
        self.check()?;
        let (tx, rx) = mpsc::channel(self.net.config.queue.max(1));
        self.node.lock().servers.insert(protocol.to_string(), tx);
        Ok(rx)
    }

    async fn command(&self, cmd: MeshCommand) -> Result<CommandOutcome, TransportError> {
        self.check()?;
        let me = &self.node.id;
        let mut inner = self.node.lock();
        let outcome = match cmd {
            MeshCommand::Isolate(peer) => {
                if inner.isolated.insert(peer.clone()) {
                    inner.swim.remove_peer(&peer);
                    CommandOutcome::Done
                } else {
                    CommandOutcome::AlreadyDone
                }
            }
            MeshCommand::Unisolate(peer) => {
                if inner.isolated.remove(&peer) {
                    self.dial(&mut inner, &peer);
                    CommandOutcome::Done
                } else {
                    CommandOutcome::AlreadyDone
                }
            }
            MeshCommand::Reconnect(peer) => {
                if &peer == me || inner.isolated.contains(&peer) {
                    return Err(TransportError::Unreachable(peer));
                }
                if inner.swim.state(&peer) == Some(PeerState::Up) {
                    CommandOutcome::AlreadyDone
                } else if self.dial(&mut inner, &peer) == Sent::Unknown {
                    return Err(TransportError::Unreachable(peer));
                } else {
                    CommandOutcome::Done
                }
            }
            MeshCommand::DiscoverPeers => {
                let candidate = {
                    let st = self.net.lock();
                    let known = st.adj.get(me);
                    let fresh: Vec<&NodeId> = st
                        .order
                        .iter()
                        .filter(|c| {
                            *c != me
                                && !known.is_some_and(|k| k.contains(*c))
                                && !inner.isolated.contains(*c)
                                && st.nodes.get(*c).is_some_and(|n| n.alive())
                        })
                        .collect();
                    if fresh.is_empty() {
                        None
                    } else {
                        let i = inner.rng.random_range(0..fresh.len());
                        fresh.get(i).map(|c| (*c).clone())
                    }
                };
                match candidate {
                    Some(c) => {
                        self.dial(&mut inner, &c);
                        CommandOutcome::Done
                    }
                    None => CommandOutcome::AlreadyDone,
                }
            }
            _ => CommandOutcome::Unsupported,
        };
        self.net.pump(&self.node, &mut inner);
        drop(inner);
        self.node.wake.notify_one();
        Ok(outcome)
    }
}
