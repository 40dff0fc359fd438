//! SWIM-style failure detection, sans I/O (Das, Gupta, Motivala: "SWIM: Scalable
//! Weakly-consistent Infection-style Process Group Membership Protocol", 2002).
//!
//! Every `probe_interval` the node pings one peer, in a shuffled round robin. No ack within
//! `probe_timeout` makes it ask `indirect_probes` other live peers to ping the target for it
//! (`PingReq`); no ack, direct or relayed, by the end of the protocol period makes the target
//! *suspect*. A suspect that stays silent for `suspect_timeout` is *down*; any message from it
//! before that brings it back up (a refutation). A transport that sees a connection close
//! calls [`Swim::connection_lost`], which suspects the peer at once and probes it through
//! others, so a crashed process is detected in about one `suspect_timeout`. Suspects are
//! probed again, ahead of the round, for as long as they are suspected (as in Lifeguard's
//! refinements of SWIM), so loss makes suspects but hardly ever down verdicts.
//!
//! Membership belongs to the transport: [`Swim::add_peer`] when a connection is up,
//! [`Swim::remove_peer`] when a peer is isolated or leaves. Down peers are not probed; the
//! transport's redial brings them back. Messages from strangers are answered, never adopted.
//!
//! The driver feeds time and messages in and takes messages and events out: [`Swim::tick`],
//! [`Swim::on_message`], [`Swim::poll_output`], [`Swim::next_deadline`]. The same state
//! machine runs over libp2p ([`crate::p2p`]) and in the simulator.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use x0tta_core::{MeshEvent, MeshPolicy, Neighbour, NodeId, PeerState, Timestamp};

/// Largest encoded [`SwimMessage`], in bytes.
pub const MAX_SWIM_MESSAGE: usize = 512;

/// Most outputs held for the driver; beyond it the oldest are dropped (and counted).
const MAX_OUTPUT: usize = 4096;
/// Most relayed probes in flight for other nodes.
const MAX_RELAYS: usize = 1024;
/// Probe results kept per peer for the loss ratio.
const LOSS_WINDOW: usize = 32;
/// Clock-offset samples kept per peer (the median is reported).
const OFFSET_WINDOW: usize = 8;
/// Highest local-health multiplier step (timeouts grow up to 1 + 8 times).
const MAX_HEALTH: u32 = 8;
/// Weight of a new round trip in the RTT average.
const RTT_ALPHA: f64 = 0.2;

/// Failure-detector timings.
#[derive(Debug, Clone, PartialEq)]
pub struct SwimConfig {
    /// Time between two probes of this node.
    pub probe_interval: Duration,
    /// How long a direct probe waits for its ack before going indirect.
    pub probe_timeout: Duration,
    /// Peers asked to probe a silent target (SWIM's k).
    pub indirect_probes: usize,
    /// How long a suspect has to answer before it is down.
    pub suspect_timeout: Duration,
}

impl From<&MeshPolicy> for SwimConfig {
    fn from(p: &MeshPolicy) -> Self {
        Self {
            probe_interval: p.probe_interval,
            probe_timeout: p.probe_timeout,
            indirect_probes: p.indirect_probes as usize,
            suspect_timeout: p.suspect_timeout,
        }
    }
}

impl Default for SwimConfig {
    fn default() -> Self {
        Self::from(&MeshPolicy::default())
    }
}

/// A failure-detection message between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum SwimMessage {
    /// Are you there? `sent_at_ms` is the sender's wall clock.
    Ping {
        /// Probe number, echoed in the ack.
        seq: u64,
        /// Sender's wall clock, ms since the epoch.
        sent_at_ms: i64,
    },
    /// Yes. `peer_time_ms` is the responder's wall clock when it answered.
    Ack {
        /// The ping's number.
        seq: u64,
        /// Responder's wall clock, ms since the epoch.
        peer_time_ms: i64,
    },
    /// Please ping `target` for me.
    PingReq {
        /// The requester's probe number.
        seq: u64,
        /// Whom to ping.
        target: NodeId,
    },
    /// `target` answered the ping I relayed for you.
    IndirectAck {
        /// The requester's probe number.
        seq: u64,
        /// Who answered.
        target: NodeId,
    },
}

/// A SWIM message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SwimError {
    /// Larger than [`MAX_SWIM_MESSAGE`].
    #[error("swim message of {0} bytes exceeds {MAX_SWIM_MESSAGE}")]
    TooLarge(usize),
    /// Not a SWIM message.
    #[error("malformed swim message: {0}")]
    Malformed(String),
}

impl SwimMessage {
    /// DAG-CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Enums of integers and short strings always encode.
        serde_ipld_dagcbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes a message from a peer.
    ///
    /// ```
    /// use x0tta_mesh::swim::SwimMessage;
    /// let m = SwimMessage::Ping { seq: 7, sent_at_ms: 1_700_000_000_000 };
    /// assert_eq!(SwimMessage::decode(&m.encode())?, m);
    /// assert!(SwimMessage::decode(b"\xff").is_err());
    /// # Ok::<(), x0tta_mesh::swim::SwimError>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, SwimError> {
        if bytes.len() > MAX_SWIM_MESSAGE {
            return Err(SwimError::TooLarge(bytes.len()));
        }
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| SwimError::Malformed(e.to_string()))
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwimOutput {
    /// Send `msg` to `to`.
    Send {
        /// Recipient.
        to: NodeId,
        /// The message.
        msg: SwimMessage,
    },
    /// Report a mesh event.
    Event(MeshEvent),
}

#[derive(Debug)]
struct Peer {
    state: PeerState,
    /// When the state last changed.
    since: Instant,
    last_seen: Option<Timestamp>,
    rtt_ms: Option<f64>,
    results: VecDeque<bool>,
    offsets: VecDeque<i64>,
    /// When this node last started a probe of it (suspects are re-probed least recent first).
    last_probe: Option<Instant>,
}

impl Peer {
    fn new(now: Instant) -> Self {
        Self {
            state: PeerState::Up,
            since: now,
            last_seen: None,
            rtt_ms: None,
            results: VecDeque::with_capacity(LOSS_WINDOW),
            offsets: VecDeque::with_capacity(OFFSET_WINDOW),
            last_probe: None,
        }
    }

    fn record(&mut self, answered: bool) {
        if self.results.len() == LOSS_WINDOW {
            self.results.pop_front();
        }
        self.results.push_back(answered);
    }
}

#[derive(Debug)]
struct Probe {
    seq: u64,
    target: NodeId,
    sent: Instant,
    sent_wall: i64,
    direct_deadline: Instant,
    period_end: Instant,
    indirect_sent: bool,
}

#[derive(Debug)]
struct Relay {
    requester: NodeId,
    requester_seq: u64,
    target: NodeId,
    expires: Instant,
}

/// The failure detector of one node.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use x0tta_core::{MeshEvent, NodeId};
/// use x0tta_mesh::swim::{Swim, SwimConfig, SwimOutput};
///
/// let a = NodeId::new("a")?;
/// let b = NodeId::new("b")?;
/// let mut swim = Swim::new(a, SwimConfig::default(), 1);
/// let t0 = Instant::now();
/// swim.add_peer(b.clone(), t0);
/// assert_eq!(swim.poll_output(), Some(SwimOutput::Event(MeshEvent::PeerUp(b.clone()))));
/// // b never answers: suspect, then down.
/// let mut events = Vec::new();
/// for step in 1..40 {
///     swim.tick(t0 + Duration::from_millis(100 * step), 0);
///     while let Some(out) = swim.poll_output() {
///         if let SwimOutput::Event(e) = out { events.push(e); }
///     }
/// }
/// // Its only peer silent: the node also reports itself cut off.
/// assert_eq!(events, vec![
///     MeshEvent::PeerSuspect(b.clone()),
///     MeshEvent::Partitioned { reachable: 0 },
///     MeshEvent::PeerDown(b),
/// ]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Swim {
    local: NodeId,
    config: SwimConfig,
    rng: SmallRng,
    peers: BTreeMap<NodeId, Peer>,
    order: Vec<NodeId>,
    next_index: usize,
    next_probe_at: Option<Instant>,
    probe: Option<Probe>,
    /// Indirect probes of peers whose connection closed: seq → (target, expiry).
    urgent: HashMap<u64, (NodeId, Instant)>,
    relays: HashMap<u64, Relay>,
    next_seq: u64,
    /// Whether the last probe was a suspect's re-probe (they alternate with the round).
    reprobed: bool,
    out: VecDeque<SwimOutput>,
    dropped: u64,
    partitioned: bool,
    /// Local health (Lifeguard's "local health multiplier", 0..=MAX_HEALTH): raised when this
    /// node's own timers run late (it was starved of CPU), lowered by each answered probe.
    /// Probe and suspicion timeouts are multiplied by `1 + health`.
    health: u32,
    /// When `tick` last ran and the latest it was due to run again.
    last_tick: Option<(Instant, Instant)>,
}

impl Swim {
    /// A detector for `local`; `seed` makes its random choices reproducible.
    pub fn new(local: NodeId, config: SwimConfig, seed: u64) -> Self {
        Self {
            local,
            config,
            rng: SmallRng::seed_from_u64(seed),
            peers: BTreeMap::new(),
            order: Vec::new(),
            next_index: 0,
            next_probe_at: None,
            probe: None,
            urgent: HashMap::new(),
            relays: HashMap::new(),
            next_seq: 1,
            reprobed: false,
            out: VecDeque::new(),
            dropped: 0,
            partitioned: false,
            health: 0,
            last_tick: None,
        }
    }

    /// Replaces the timings (e.g. after a policy change).
    pub fn set_config(&mut self, config: SwimConfig) {
        self.config = config;
    }

    /// Current local-health multiplier step (0 = healthy).
    pub fn local_health(&self) -> u32 {
        self.health
    }

    fn probe_timeout(&self) -> std::time::Duration {
        self.config.probe_timeout * (1 + self.health)
    }

    fn suspect_timeout(&self) -> std::time::Duration {
        self.config.suspect_timeout * (1 + self.health)
    }

    /// Outputs dropped because the driver did not take them in time.
    pub fn dropped_outputs(&self) -> u64 {
        self.dropped
    }

    fn emit(&mut self, out: SwimOutput) {
        if self.out.len() >= MAX_OUTPUT {
            self.out.pop_front();
            self.dropped += 1;
        }
        self.out.push_back(out);
    }

    fn send(&mut self, to: NodeId, msg: SwimMessage) {
        self.emit(SwimOutput::Send { to, msg });
    }

    fn set_state(&mut self, peer: &NodeId, state: PeerState, now: Instant) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        if p.state == state {
            return;
        }
        p.state = state;
        p.since = now;
        let event = match state {
            PeerState::Up => MeshEvent::PeerUp(peer.clone()),
            PeerState::Suspect => MeshEvent::PeerSuspect(peer.clone()),
            _ => MeshEvent::PeerDown(peer.clone()),
        };
        self.emit(SwimOutput::Event(event));
        self.check_partition();
    }

    fn check_partition(&mut self) {
        let known = self.peers.len();
        let up = self
            .peers
            .values()
            .filter(|p| p.state == PeerState::Up)
            .count();
        if known == 0 {
            return;
        }
        if !self.partitioned && up * 2 < known {
            self.partitioned = true;
            self.emit(SwimOutput::Event(MeshEvent::Partitioned { reachable: up }));
        } else if self.partitioned && up * 2 >= known {
            self.partitioned = false;
            self.emit(SwimOutput::Event(MeshEvent::Healed));
        }
    }

    /// The transport connected to `peer`: it is up (reported once).
    pub fn add_peer(&mut self, peer: NodeId, now: Instant) {
        if peer == self.local {
            return;
        }
        if self.peers.contains_key(&peer) {
            self.set_state(&peer, PeerState::Up, now);
            return;
        }
        self.peers.insert(peer.clone(), Peer::new(now));
        // Insert at a random place in the round so new peers are probed soon but fairly.
        let at = self.rng.random_range(0..=self.order.len());
        self.order.insert(at, peer.clone());
        self.emit(SwimOutput::Event(MeshEvent::PeerUp(peer)));
        self.check_partition();
        if self.next_probe_at.is_none() {
            self.next_probe_at = Some(now + self.config.probe_interval);
        }
    }

    /// Forgets `peer` without an event (it left, or was isolated).
    pub fn remove_peer(&mut self, peer: &NodeId) {
        if self.peers.remove(peer).is_some() {
            self.order.retain(|p| p != peer);
            self.next_index = self.next_index.min(self.order.len());
            if self.probe.as_ref().is_some_and(|p| &p.target == peer) {
                self.probe = None;
            }
            self.urgent.retain(|_, (t, _)| t != peer);
            self.check_partition();
        }
    }

    /// The transport lost its last connection to `peer`: suspect it now and ask others to
    /// probe it, instead of waiting for its turn in the round.
    pub fn connection_lost(&mut self, peer: &NodeId, now: Instant) {
        if !self.peers.contains_key(peer) {
            return;
        }
        if self
            .peers
            .get(peer)
            .is_some_and(|p| p.state == PeerState::Down)
        {
            return;
        }
        self.set_state(peer, PeerState::Suspect, now);
        let seq = self.take_seq();
        // A direct ping too: the transport redials for it, which also refutes quickly.
        self.send(peer.clone(), SwimMessage::Ping { seq, sent_at_ms: 0 });
        self.urgent
            .insert(seq, (peer.clone(), now + self.suspect_timeout()));
        self.ask_others(peer, seq);
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// Sends `PingReq(seq, target)` to up to k random live peers other than `target`.
    fn ask_others(&mut self, target: &NodeId, seq: u64) {
        let mut helpers: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, p)| *id != target && p.state == PeerState::Up)
            .map(|(id, _)| id.clone())
            .collect();
        helpers.shuffle(&mut self.rng);
        for h in helpers.into_iter().take(self.config.indirect_probes) {
            self.send(
                h,
                SwimMessage::PingReq {
                    seq,
                    target: target.clone(),
                },
            );
        }
    }

    /// Any message from `peer` proves it alive. Membership is the transport's business
    /// ([`Swim::add_peer`]): a stranger (say, a node pinging us on behalf of one of our peers)
    /// is answered but not adopted, or the membership would grow to every peer of every peer.
    fn heard_from(&mut self, peer: &NodeId, now: Instant, wall_ms: i64) {
        if !self.peers.contains_key(peer) {
            return;
        }
        if let Some(p) = self.peers.get_mut(peer) {
            p.last_seen = u64::try_from(wall_ms).ok().map(Timestamp::from_millis);
        }
        self.set_state(peer, PeerState::Up, now);
    }

    /// Handles a message from `from`.
    pub fn on_message(&mut self, from: NodeId, msg: SwimMessage, now: Instant, wall_ms: i64) {
        if from == self.local {
            return;
        }
        self.heard_from(&from, now, wall_ms);
        match msg {
            SwimMessage::Ping { seq, .. } => self.send(
                from,
                SwimMessage::Ack {
                    seq,
                    peer_time_ms: wall_ms,
                },
            ),
            SwimMessage::Ack { seq, peer_time_ms } => {
                if let Some(relay) = self.relays.remove(&seq) {
                    if relay.target == from {
                        self.send(
                            relay.requester,
                            SwimMessage::IndirectAck {
                                seq: relay.requester_seq,
                                target: from,
                            },
                        );
                    }
                    return;
                }
                if self.urgent.remove(&seq).is_some() {
                    return;
                }
                let matches = self
                    .probe
                    .as_ref()
                    .is_some_and(|p| p.seq == seq && p.target == from);
                if matches && let Some(probe) = self.probe.take() {
                    let rtt = now.duration_since(probe.sent).as_secs_f64() * 1000.0;
                    let offset = peer_time_ms - (probe.sent_wall + wall_ms) / 2;
                    if let Some(p) = self.peers.get_mut(&from) {
                        p.rtt_ms = Some(match p.rtt_ms {
                            Some(avg) => avg + RTT_ALPHA * (rtt - avg),
                            None => rtt,
                        });
                        p.record(true);
                        self.health = self.health.saturating_sub(1);
                        if p.offsets.len() == OFFSET_WINDOW {
                            p.offsets.pop_front();
                        }
                        p.offsets.push_back(offset);
                    }
                }
            }
            SwimMessage::PingReq { seq, target } => {
                if target == self.local || target == from {
                    return;
                }
                if self.relays.len() >= MAX_RELAYS {
                    return;
                }
                let own = self.take_seq();
                self.relays.insert(
                    own,
                    Relay {
                        requester: from,
                        requester_seq: seq,
                        target: target.clone(),
                        expires: now + self.config.probe_interval * 2,
                    },
                );
                self.send(
                    target,
                    SwimMessage::Ping {
                        seq: own,
                        sent_at_ms: wall_ms,
                    },
                );
            }
            SwimMessage::IndirectAck { seq, target } => {
                let probe_hit = self
                    .probe
                    .as_ref()
                    .is_some_and(|p| p.seq == seq && p.target == target);
                let urgent_hit = self.urgent.get(&seq).is_some_and(|(t, _)| *t == target);
                if probe_hit {
                    self.probe = None;
                    // Alive, but the direct probe went unanswered: that counts as link loss.
                    if let Some(p) = self.peers.get_mut(&target) {
                        p.record(false);
                    }
                }
                if urgent_hit {
                    self.urgent.remove(&seq);
                }
                if probe_hit || urgent_hit {
                    // Reachable through others; its direct link may be lossy.
                    self.set_state(&target, PeerState::Up, now);
                }
            }
        }
    }

    /// Advances timers: probe schedule, indirect probes, suspicion and down verdicts.
    pub fn tick(&mut self, now: Instant, wall_ms: i64) {
        self.note_lag(now);
        // The running probe.
        if let Some(probe) = &mut self.probe
            && !probe.indirect_sent
            && now >= probe.direct_deadline
        {
            probe.indirect_sent = true;
            let (target, seq) = (probe.target.clone(), probe.seq);
            self.ask_others(&target, seq);
        }
        if self.probe.as_ref().is_some_and(|p| now >= p.period_end)
            && let Some(probe) = self.probe.take()
        {
            if let Some(p) = self.peers.get_mut(&probe.target) {
                p.record(false);
            }
            if self
                .peers
                .get(&probe.target)
                .is_some_and(|p| p.state == PeerState::Up)
            {
                self.set_state(&probe.target, PeerState::Suspect, now);
            }
        }
        // Suspects that stayed silent.
        let suspect_timeout = self.suspect_timeout();
        let expired: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.state == PeerState::Suspect && now.duration_since(p.since) >= suspect_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.set_state(&id, PeerState::Down, now);
        }
        self.urgent.retain(|_, (_, exp)| *exp > now);
        self.relays.retain(|_, r| r.expires > now);

        // The next probe.
        if self.probe.is_none() && self.next_probe_at.is_some_and(|t| now >= t) {
            self.next_probe_at = Some(now + self.config.probe_interval);
            if let Some(target) = self.next_target() {
                if let Some(p) = self.peers.get_mut(&target) {
                    p.last_probe = Some(now);
                }
                let seq = self.take_seq();
                let period = self.config.probe_interval.max(self.probe_timeout() * 2);
                self.probe = Some(Probe {
                    seq,
                    target: target.clone(),
                    sent: now,
                    sent_wall: wall_ms,
                    direct_deadline: now + self.probe_timeout(),
                    period_end: now + period,
                    indirect_sent: false,
                });
                self.send(
                    target,
                    SwimMessage::Ping {
                        seq,
                        sent_at_ms: wall_ms,
                    },
                );
            }
        }
        let next = self
            .next_deadline()
            .unwrap_or(now + self.config.probe_interval);
        self.last_tick = Some((now, next.max(now)));
    }

    /// Lifeguard's local health, from this node's own lateness: when `tick` runs more than a
    /// probe interval after it was due, this node was starved (an overloaded host, a paused
    /// process), so its silence verdicts are not to be trusted as they are. Suspects start a
    /// new suspicion window, the running probe gets the lost time back, and timeouts grow
    /// until probes are answered again.
    fn note_lag(&mut self, now: Instant) {
        if let Some((_, was_due)) = self.last_tick
            && now > was_due + self.config.probe_interval
            && !self.peers.is_empty()
        {
            let lag = now - was_due;
            self.health = (self.health + 1).min(MAX_HEALTH);
            // Evidence gathered before the stall is stale: every suspect gets a whole new
            // suspicion window, measured from now.
            for p in self.peers.values_mut() {
                if p.state == PeerState::Suspect {
                    p.since = now;
                }
            }
            if let Some(probe) = &mut self.probe {
                probe.direct_deadline += lag;
                probe.period_end += lag;
            }
            for (_, exp) in self.urgent.values_mut() {
                *exp += lag;
            }
        }
    }

    /// The next peer to probe: every other period the least recently probed suspect, if
    /// any; otherwise the next peer in the round that is not down (the round is reshuffled
    /// at its end).
    ///
    /// Re-probing suspects (directly and through `indirect_probes` others) during their
    /// `suspect_timeout` is what keeps false verdicts rare under loss: one unlucky period
    /// (ping and all relays lost) makes a suspect, but a down verdict needs the re-probes in
    /// the suspicion window to fail too. Without them a suspect would wait a whole round,
    /// longer than the suspicion, for its next probe. Alternating with the round keeps many
    /// suspects at once (a partition) from stalling the detection of everyone else.
    fn next_target(&mut self) -> Option<NodeId> {
        if !self.reprobed {
            let suspect = self
                .peers
                .iter()
                .filter(|(_, p)| p.state == PeerState::Suspect)
                .min_by_key(|(_, p)| p.last_probe)
                .map(|(id, _)| id.clone());
            if suspect.is_some() {
                self.reprobed = true;
                return suspect;
            }
        }
        self.reprobed = false;
        for _ in 0..=self.order.len() {
            if self.next_index >= self.order.len() {
                self.next_index = 0;
                self.order.shuffle(&mut self.rng);
            }
            let id = self.order.get(self.next_index)?.clone();
            self.next_index += 1;
            if self
                .peers
                .get(&id)
                .is_some_and(|p| matches!(p.state, PeerState::Up | PeerState::Suspect))
            {
                return Some(id);
            }
        }
        None
    }

    /// The next output for the driver.
    pub fn poll_output(&mut self) -> Option<SwimOutput> {
        self.out.pop_front()
    }

    /// When [`Swim::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut t = self.next_probe_at;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if let Some(p) = &self.probe {
            if !p.indirect_sent {
                consider(p.direct_deadline);
            }
            consider(p.period_end);
        }
        for p in self.peers.values() {
            if p.state == PeerState::Suspect {
                consider(p.since + self.suspect_timeout());
            }
        }
        t
    }

    /// State of `peer`, if known.
    pub fn state(&self, peer: &NodeId) -> Option<PeerState> {
        self.peers.get(peer).map(|p| p.state)
    }

    /// The neighbour table: state, smoothed RTT, loss over the last 32 probes, median clock
    /// offset (the peer's clock minus ours) over the last 8 round trips.
    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.peers
            .iter()
            .map(|(id, p)| {
                let lost = p.results.iter().filter(|ok| !**ok).count();
                #[allow(clippy::cast_precision_loss)]
                let loss = if p.results.is_empty() {
                    0.0
                } else {
                    lost as f64 / p.results.len() as f64
                };
                let mut offsets: Vec<i64> = p.offsets.iter().copied().collect();
                offsets.sort_unstable();
                Neighbour {
                    id: id.clone(),
                    addresses: Vec::new(),
                    rtt_ms: p.rtt_ms,
                    loss,
                    last_seen: p.last_seen.unwrap_or(Timestamp::from_millis(0)),
                    state: p.state,
                    clock_offset_ms: offsets.get(offsets.len() / 2).copied(),
                }
            })
            .collect()
    }
}
