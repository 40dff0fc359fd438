use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    CommandOutcome, GossipMessage, InboundRequest, MeshCommand, MeshEvent, MeshEvents, Neighbour,
    NodeId, PeerState, PublishOutcome, Subscription, Timestamp, Transport, TransportError,
};

/// Bounds of a [`MemoryNetwork`].
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Capacity of each topic subscription queue; a full queue drops new messages.
    pub subscription_capacity: usize,
    /// Capacity of each served protocol's request queue; a full queue refuses requests.
    pub request_capacity: usize,
    /// Capacity of each node's mesh-event channel; slow receivers lose the oldest events.
    pub event_capacity: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            subscription_capacity: 1024,
            request_capacity: 64,
            event_capacity: 256,
        }
    }
}

struct Slot {
    up: bool,
    subs: HashMap<String, Vec<mpsc::Sender<GossipMessage>>>,
    servers: HashMap<String, mpsc::Sender<InboundRequest>>,
    events: broadcast::Sender<MeshEvent>,
    isolated: HashSet<NodeId>,
    last_seen: HashMap<NodeId, Timestamp>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<NodeId, Slot>,
    /// Cut links, stored both ways.
    cut: HashSet<(NodeId, NodeId)>,
    /// Per-link one-way latency, stored both ways.
    latency: HashMap<(NodeId, NodeId), Duration>,
}

impl State {
    fn linked(&self, a: &NodeId, b: &NodeId) -> bool {
        a != b
            && self
                .nodes
                .get(a)
                .is_some_and(|s| s.up && !s.isolated.contains(b))
            && self
                .nodes
                .get(b)
                .is_some_and(|s| s.up && !s.isolated.contains(a))
            && !self.cut.contains(&(a.clone(), b.clone()))
    }

    fn emit(&self, to: &NodeId, e: MeshEvent) {
        if let Some(s) = self.nodes.get(to) {
            let _ = s.events.send(e);
        }
    }
}

/// A mesh inside one process. Nodes [`join`](Self::join) it and get a [`MemoryTransport`];
/// the network can crash and restart nodes, cut and heal links, and set link latency.
///
/// ```
/// use x0tta_core::{memory::MemoryNetwork, NodeId, Transport};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let net = MemoryNetwork::new();
/// let a = net.join(NodeId::new("a")?);
/// let _b = net.join(NodeId::new("b")?);
/// assert_eq!(a.neighbours().await.len(), 1);
/// net.crash(&NodeId::new("b")?);
/// assert!(a.neighbours().await.is_empty() || a.neighbours().await[0].state != x0tta_core::PeerState::Up);
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
    config: NetworkConfig,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork").finish_non_exhaustive()
    }
}

impl MemoryNetwork {
    /// An empty network with default bounds.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty network with the given bounds.
    pub fn with_config(config: NetworkConfig) -> Self {
        Self {
            state: Arc::default(),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of plain maps;
        // the maps themselves stay consistent enough to keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or restarts) `id` and announces it to the nodes it can reach.
    pub fn join(&self, id: NodeId) -> MemoryTransport {
        let mut st = self.lock();
        let events = match st.nodes.get(&id) {
            Some(s) => s.events.clone(),
            None => broadcast::channel(self.config.event_capacity.max(1)).0,
        };
        st.nodes.insert(
            id.clone(),
            Slot {
                up: true,
                subs: HashMap::new(),
                servers: HashMap::new(),
                events,
                isolated: HashSet::new(),
                last_seen: HashMap::new(),
            },
        );
        let peers: Vec<NodeId> = st
            .nodes
            .keys()
            .filter(|p| st.linked(&id, p))
            .cloned()
            .collect();
        for p in &peers {
            st.emit(p, MeshEvent::PeerUp(id.clone()));
            st.emit(&id, MeshEvent::PeerUp(p.clone()));
        }
        drop(st);
        MemoryTransport {
            id,
            net: self.clone(),
        }
    }

    /// Crashes `id`: its queues close and its peers see it go down.
    pub fn crash(&self, id: &NodeId) {
        let mut st = self.lock();
        let peers: Vec<NodeId> = st
            .nodes
            .keys()
            .filter(|p| st.linked(id, p))
            .cloned()
            .collect();
        if let Some(s) = st.nodes.get_mut(id) {
            s.up = false;
            s.subs.clear();
            s.servers.clear();
        }
        for p in peers {
            st.emit(&p, MeshEvent::PeerDown(id.clone()));
        }
    }

    /// Cuts the links between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        let mut st = self.lock();
        for x in a {
            for y in b {
                let was = st.linked(x, y);
                st.cut.insert((x.clone(), y.clone()));
                st.cut.insert((y.clone(), x.clone()));
                if was {
                    st.emit(x, MeshEvent::PeerDown(y.clone()));
                    st.emit(y, MeshEvent::PeerDown(x.clone()));
                }
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        let mut st = self.lock();
        let cut: Vec<_> = st.cut.drain().collect();
        for (x, y) in cut {
            if st.linked(&x, &y) {
                st.emit(&x, MeshEvent::PeerUp(y.clone()));
            }
        }
    }

    /// Sets the one-way latency of the link between `a` and `b`.
    pub fn set_latency(&self, a: &NodeId, b: &NodeId, d: Duration) {
        let mut st = self.lock();
        st.latency.insert((a.clone(), b.clone()), d);
        st.latency.insert((b.clone(), a.clone()), d);
    }
}

/// One node's [`Transport`] on a [`MemoryNetwork`].
#[derive(Clone)]
pub struct MemoryTransport {
    id: NodeId,
    net: MemoryNetwork,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryTransport({})", self.id)
    }
}

impl MemoryTransport {
    fn check_size(payload: &[u8]) -> Result<(), TransportError> {
        TransportError::check_size(payload.len())
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn local_id(&self) -> &NodeId {
        &self.id
    }

    async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<PublishOutcome, TransportError> {
        Self::check_size(&payload)?;
        let targets: Vec<(NodeId, mpsc::Sender<GossipMessage>)> = {
            let mut st = self.net.lock();
            if !st.nodes.get(&self.id).is_some_and(|s| s.up) {
                return Err(TransportError::Closed);
            }
            let now = Timestamp::now();
            let peers: Vec<NodeId> = st
                .nodes
                .keys()
                .filter(|p| st.linked(&self.id, p))
                .cloned()
                .collect();
            let mut targets = Vec::new();
            for p in peers {
                if let Some(slot) = st.nodes.get_mut(&p) {
                    slot.last_seen.insert(self.id.clone(), now);
                    if let Some(subs) = slot.subs.get_mut(topic) {
                        subs.retain(|s| !s.is_closed());
                        targets.extend(subs.iter().map(|s| (p.clone(), s.clone())));
                    }
                }
            }
            targets
        };
        let mut out = PublishOutcome {
            delivered: 0,
            dropped: 0,
        };
        for (_, tx) in targets {
            let msg = GossipMessage {
                topic: topic.to_string(),
                from: self.id.clone(),
                payload: payload.clone(),
            };
            match tx.try_send(msg) {
                Ok(()) => out.delivered += 1,
                Err(_) => out.dropped += 1,
            }
        }
        Ok(out)
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, TransportError> {
        let (tx, rx) = mpsc::channel(self.net.config.subscription_capacity.max(1));
        let mut st = self.net.lock();
        let slot = st
            .nodes
            .get_mut(&self.id)
            .filter(|s| s.up)
            .ok_or(TransportError::Closed)?;
        slot.subs.entry(topic.to_string()).or_default().push(tx);
        Ok(Subscription::new(rx))
    }

    async fn neighbours(&self) -> Vec<Neighbour> {
        let st = self.net.lock();
        let Some(me) = st.nodes.get(&self.id) else {
            return Vec::new();
        };
        let mut out: Vec<Neighbour> = st
            .nodes
            .iter()
            .filter(|(p, _)| **p != self.id)
            .filter_map(|(p, slot)| {
                let state = if me.isolated.contains(p) {
                    PeerState::Isolated
                } else if st.linked(&self.id, p) {
                    PeerState::Up
                } else if slot.up && !st.cut.contains(&(self.id.clone(), p.clone())) {
                    return None; // isolated us: we simply do not see it
                } else {
                    PeerState::Down
                };
                let rtt = st
                    .latency
                    .get(&(self.id.clone(), p.clone()))
                    .map(|d| d.as_secs_f64() * 2000.0)
                    .unwrap_or(0.0);
                Some(Neighbour {
                    id: p.clone(),
                    addresses: vec![format!("memory/{p}")],
                    rtt_ms: Some(rtt),
                    loss: 0.0,
                    last_seen: me.last_seen.get(p).copied().unwrap_or_else(Timestamp::now),
                    state,
                    clock_offset_ms: Some(0),
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn events(&self) -> MeshEvents {
        let mut st = self.net.lock();
        let cap = self.net.config.event_capacity.max(1);
        let slot = st.nodes.entry(self.id.clone()).or_insert_with(|| Slot {
            up: false,
            subs: HashMap::new(),
            servers: HashMap::new(),
            events: broadcast::channel(cap).0,
            isolated: HashSet::new(),
            last_seen: HashMap::new(),
        });
        MeshEvents::new(slot.events.subscribe())
    }

    async fn request(
        &self,
        peer: &NodeId,
        protocol: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        Self::check_size(&payload)?;
        let (server, latency) = {
            let st = self.net.lock();
            if !st.linked(&self.id, peer) {
                return Err(TransportError::Unreachable(peer.clone()));
            }
            let server = st
                .nodes
                .get(peer)
                .and_then(|s| s.servers.get(protocol))
                .cloned()
                .ok_or_else(|| TransportError::NoHandler {
                    peer: peer.clone(),
                    protocol: protocol.to_string(),
                })?;
            let latency = st
                .latency
                .get(&(self.id.clone(), peer.clone()))
                .copied()
                .unwrap_or_default();
            (server, latency)
        };
        let (tx, rx) = oneshot::channel();
        let call = async {
            tokio::time::sleep(latency).await;
            server
                .try_send(InboundRequest::new(self.id.clone(), payload, tx))
                .map_err(|_| {
                    TransportError::Other(format!("{peer} is busy: request queue full"))
                })?;
            let body = rx
                .await
                .map_err(|_| TransportError::Unreachable(peer.clone()))?;
            tokio::time::sleep(latency).await;
            Ok(body)
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| TransportError::Timeout(peer.clone()))?
    }

    async fn serve(
        &self,
        protocol: &str,
    ) -> Result<mpsc::Receiver<InboundRequest>, TransportError> {
        let (tx, rx) = mpsc::channel(self.net.config.request_capacity.max(1));
        let mut st = self.net.lock();
        let slot = st
            .nodes
            .get_mut(&self.id)
            .filter(|s| s.up)
            .ok_or(TransportError::Closed)?;
        slot.servers.insert(protocol.to_string(), tx);
        Ok(rx)
    }

    async fn command(&self, cmd: MeshCommand) -> Result<CommandOutcome, TransportError> {
        let mut st = self.net.lock();
        match cmd {
            MeshCommand::Isolate(p) => {
                let was = st.linked(&self.id, &p);
                let slot = st.nodes.get_mut(&self.id).ok_or(TransportError::Closed)?;
                if !slot.isolated.insert(p.clone()) {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                if was {
                    st.emit(&self.id, MeshEvent::PeerDown(p.clone()));
                    st.emit(&p, MeshEvent::PeerDown(self.id.clone()));
                }
                Ok(CommandOutcome::Done)
            }
            MeshCommand::Unisolate(p) => {
                let slot = st.nodes.get_mut(&self.id).ok_or(TransportError::Closed)?;
                if !slot.isolated.remove(&p) {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                if st.linked(&self.id, &p) {
                    st.emit(&self.id, MeshEvent::PeerUp(p.clone()));
                    st.emit(&p, MeshEvent::PeerUp(self.id.clone()));
                }
                Ok(CommandOutcome::Done)
            }
            MeshCommand::Reconnect(p) => {
                if st.linked(&self.id, &p) {
                    Ok(CommandOutcome::AlreadyDone)
                } else {
                    Err(TransportError::Unreachable(p))
                }
            }
            // Every reachable node is already a neighbour in this network.
            MeshCommand::DiscoverPeers => Ok(CommandOutcome::AlreadyDone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[tokio::test]
    async fn gossip_is_bounded_and_not_echoed() {
        let net = MemoryNetwork::with_config(NetworkConfig {
            subscription_capacity: 2,
            ..Default::default()
        });
        let a = net.join(id("a"));
        let b = net.join(id("b"));
        let mut own = a.subscribe("t").await.unwrap();
        let mut sub = b.subscribe("t").await.unwrap();
        for _ in 0..3 {
            a.publish("t", vec![1]).await.unwrap();
        }
        let last = a.publish("t", vec![2]).await.unwrap();
        assert_eq!(
            last,
            PublishOutcome {
                delivered: 0,
                dropped: 1
            }
        );
        assert_eq!(sub.next().await.unwrap().payload, vec![1]);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), own.next())
                .await
                .is_err()
        );
        let big = vec![0u8; crate::MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            a.publish("t", big).await,
            Err(TransportError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn requests_are_answered_and_partitions_seen() {
        let net = MemoryNetwork::new();
        let a = net.join(id("a"));
        let b = net.join(id("b"));
        let mut ev = a.events();
        let mut inbox = b.serve("/x0tta/sync/1").await.unwrap();
        tokio::spawn(async move {
            while let Some(r) = inbox.next_request().await {
                let mut body = r.payload.clone();
                body.reverse();
                r.respond(body);
            }
        });
        let reply = a
            .request(
                &id("b"),
                "/x0tta/sync/1",
                vec![1, 2, 3],
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(reply, vec![3, 2, 1]);
        net.partition(&[id("a")], &[id("b")]);
        assert_eq!(ev.next().await, Some(MeshEvent::PeerDown(id("b"))));
        assert!(matches!(
            a.request(&id("b"), "/x0tta/sync/1", vec![], Duration::from_secs(1))
                .await,
            Err(TransportError::Unreachable(_))
        ));
        assert_eq!(a.neighbours().await[0].state, PeerState::Down);
        net.heal();
        assert_eq!(ev.next().await, Some(MeshEvent::PeerUp(id("b"))));
    }

    trait NextRequest {
        async fn next_request(&mut self) -> Option<InboundRequest>;
    }
    impl NextRequest for mpsc::Receiver<InboundRequest> {
        async fn next_request(&mut self) -> Option<InboundRequest> {
            self.recv().await
        }
    }

    #[tokio::test]
    async fn isolation_is_reversible() {
        let net = MemoryNetwork::new();
        let a = net.join(id("a"));
        let _b = net.join(id("b"));
        assert_eq!(
            a.command(MeshCommand::Isolate(id("b"))).await.unwrap(),
            CommandOutcome::Done
        );
        assert_eq!(a.neighbours().await[0].state, PeerState::Isolated);
        assert_eq!(
            a.command(MeshCommand::Isolate(id("b"))).await.unwrap(),
            CommandOutcome::AlreadyDone
        );
        assert_eq!(
            a.command(MeshCommand::Unisolate(id("b"))).await.unwrap(),
            CommandOutcome::Done
        );
        assert_eq!(a.neighbours().await[0].state, PeerState::Up);
    }
}
