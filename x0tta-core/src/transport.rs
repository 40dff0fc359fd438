//! The [`Transport`] extension trait: the node's view of the mesh.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{Neighbour, NodeId};

/// Gossip topics of DESIGN §6.
pub mod topics {
    /// Incidents and incident notices.
    pub const INCIDENTS: &str = "x0tta/incidents/1";
    /// Governance votes.
    pub const VOTES: &str = "x0tta/votes/1";
    /// Governance proposals.
    pub const PROPOSALS: &str = "x0tta/proposals/1";
    /// Signed policy versions.
    pub const POLICY: &str = "x0tta/policy/1";
    /// CRDT updates.
    pub const CRDT: &str = "x0tta/crdt/1";
    /// Misbehaviour evidence.
    pub const EVIDENCE: &str = "x0tta/evidence/1";
    /// Federated-learning updates.
    pub const FL: &str = "x0tta/fl/1";
    /// Every topic above.
    pub const ALL: [&str; 7] = [INCIDENTS, VOTES, PROPOSALS, POLICY, CRDT, EVIDENCE, FL];
}

/// Request-response protocols of DESIGN §6: every transport that serves requests knows these
/// names ([`Transport::serve`], [`Transport::request`]).
pub mod protocols {
    /// Knowledge anti-entropy: CRDT state-vector sync.
    pub const SYNC: &str = "/x0tta/sync/1";
    /// Knowledge blocks: records fetched by CID.
    pub const BLOCK: &str = "/x0tta/block/1";
    /// Governance anti-entropy: signed proposals, votes, tally attestations and evidence a
    /// peer lacks.
    pub const GOV: &str = "/x0tta/gov/1";
    /// Every protocol above.
    pub const ALL: [&str; 3] = [SYNC, BLOCK, GOV];
}

/// Largest payload a transport must accept on a topic or in a request, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A message received on a topic.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipMessage {
    /// The topic.
    pub topic: String,
    /// The peer that published it.
    pub from: NodeId,
    /// The payload (usually a signed envelope).
    pub payload: Vec<u8>,
}

impl fmt::Debug for GossipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GossipMessage({} from {}, {} bytes)",
            self.topic,
            self.from,
            self.payload.len()
        )
    }
}

/// A change in the mesh, pushed to the MAPE-K loop as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeshEvent {
    /// A peer became reachable.
    PeerUp(NodeId),
    /// A peer missed probes.
    PeerSuspect(NodeId),
    /// A peer is confirmed down.
    PeerDown(NodeId),
    /// The node lost contact with part of the mesh.
    Partitioned {
        /// Peers still reachable.
        reachable: usize,
    },
    /// A partition healed.
    Healed,
    /// The receiver was too slow and missed this many events (oldest dropped).
    Lagged(u64),
}

/// What the healer may ask of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeshCommand {
    /// Redial a peer.
    Reconnect(NodeId),
    /// Look for more peers.
    DiscoverPeers,
    /// Disconnect and refuse a peer until un-isolated.
    Isolate(NodeId),
    /// Lift an isolation.
    Unisolate(NodeId),
}

/// What a [`MeshCommand`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandOutcome {
    /// The command took effect.
    Done,
    /// The mesh was already in the requested state.
    AlreadyDone,
    /// This transport does not support the command.
    Unsupported,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Peers the message was handed to.
    pub delivered: usize,
    /// Peers that had no room for it (their queue was full) and did not get it.
    pub dropped: usize,
}

/// A transport failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The payload exceeds [`MAX_MESSAGE_BYTES`] or the transport's own limit.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The peer is unknown or unreachable.
    #[error("peer {0} is unreachable")]
    Unreachable(NodeId),
    /// The peer did not answer in time.
    #[error("request to {0} timed out")]
    Timeout(NodeId),
    /// The peer has no handler for the protocol.
    #[error("peer {peer} does not serve {protocol}")]
    NoHandler {
        /// The peer.
        peer: NodeId,
        /// The protocol.
        protocol: String,
    },
    /// The operation is not supported by this transport.
    #[error("this transport does not support {0}")]
    Unsupported(&'static str),
    /// The transport is shut down.
    #[error("transport is closed")]
    Closed,
    /// Anything else, with a description.
    #[error("transport error: {0}")]
    Other(String),
}

impl TransportError {
    /// [`TransportError::TooLarge`] if a payload of `len` bytes exceeds [`MAX_MESSAGE_BYTES`]:
    /// the one size check every transport applies to `publish` and `request`.
    ///
    /// ```
    /// use x0tta_core::{MAX_MESSAGE_BYTES, TransportError};
    /// assert!(TransportError::check_size(MAX_MESSAGE_BYTES).is_ok());
    /// assert!(TransportError::check_size(MAX_MESSAGE_BYTES + 1).is_err());
    /// ```
    pub fn check_size(len: usize) -> Result<(), TransportError> {
        if len > MAX_MESSAGE_BYTES {
            return Err(TransportError::TooLarge {
                size: len,
                limit: MAX_MESSAGE_BYTES,
            });
        }
        Ok(())
    }
}

/// Messages on one topic. Bounded: when the subscriber falls behind, the transport drops
/// new messages for it and counts them in [`PublishOutcome::dropped`] on the sender's side.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<GossipMessage>,
}

impl Subscription {
    /// Wraps a bounded receiver.
    pub fn new(rx: mpsc::Receiver<GossipMessage>) -> Self {
        Self { rx }
    }
    /// The next message, or `None` once the transport is closed. Cancel safe.
    pub async fn next(&mut self) -> Option<GossipMessage> {
        self.rx.recv().await
    }
}

/// Mesh events for one receiver. Bounded: a slow receiver loses the oldest events and sees
/// [`MeshEvent::Lagged`] in their place.
#[derive(Debug)]
pub struct MeshEvents {
    rx: broadcast::Receiver<MeshEvent>,
}

impl MeshEvents {
    /// Wraps a broadcast receiver.
    pub fn new(rx: broadcast::Receiver<MeshEvent>) -> Self {
        Self { rx }
    }
    /// The next event, or `None` once the transport is closed. Cancel safe.
    pub async fn next(&mut self) -> Option<MeshEvent> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(MeshEvent::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// A request from a peer, answered through [`InboundRequest::respond`].
#[derive(Debug)]
pub struct InboundRequest {
    /// The requesting peer.
    pub from: NodeId,
    /// The request body.
    pub payload: Vec<u8>,
    reply: oneshot::Sender<Vec<u8>>,
}

impl InboundRequest {
    /// A request with its reply slot.
    pub fn new(from: NodeId, payload: Vec<u8>, reply: oneshot::Sender<Vec<u8>>) -> Self {
        Self {
            from,
            payload,
            reply,
        }
    }
    /// Sends the response. Returns `false` if the requester gave up waiting.
    pub fn respond(self, body: Vec<u8>) -> bool {
        self.reply.send(body).is_ok()
    }
}

/// The node's view of the mesh: gossip, requests, the neighbour table and mesh events.
///
/// # Contract
/// - Every queue is bounded; the behaviour at the bound is documented per method.
/// - `publish` does not deliver a message back to its own publisher.
/// - Payloads larger than [`MAX_MESSAGE_BYTES`] are refused with [`TransportError::TooLarge`].
/// - Implementations verify nothing about payloads: signed envelopes are checked by the
///   receiver before anything reaches a store or a tally.
///
/// # Notes to implementers
/// Only the first five methods are required. `request`, `serve` and `command` have provided
/// defaults that report [`TransportError::Unsupported`] / [`CommandOutcome::Unsupported`];
/// a transport that supports them overrides them.
///
/// # Example
/// ```
/// use x0tta_core::{memory::MemoryNetwork, Transport, NodeId};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let net = MemoryNetwork::new();
/// let a = net.join(NodeId::new("a")?);
/// let b = net.join(NodeId::new("b")?);
/// let mut sub = b.subscribe("x0tta/incidents/1").await?;
/// a.publish("x0tta/incidents/1", b"hello".to_vec()).await?;
/// assert_eq!(sub.next().await.unwrap().payload, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[async_trait]
pub trait Transport: Send + Sync {
    /// This node's id.
    fn local_id(&self) -> &NodeId;

    /// Publishes `payload` on `topic` to every subscribed peer.
    async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<PublishOutcome, TransportError>;

    /// Subscribes to `topic`.
    async fn subscribe(&self, topic: &str) -> Result<Subscription, TransportError>;

    /// The current neighbour table.
    async fn neighbours(&self) -> Vec<Neighbour>;

    /// A new receiver of mesh events.
    fn events(&self) -> MeshEvents;

    /// Sends a request to `peer` on `protocol` and awaits the reply.
    async fn request(
        &self,
        peer: &NodeId,
        protocol: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let _ = (peer, protocol, payload, timeout);
        Err(TransportError::Unsupported("request"))
    }

    /// Starts serving `protocol`: requests arrive on the returned bounded receiver. When it is
    /// full, further requests are refused to the requester.
    async fn serve(
        &self,
        protocol: &str,
    ) -> Result<mpsc::Receiver<InboundRequest>, TransportError> {
        let _ = protocol;
        Err(TransportError::Unsupported("serve"))
    }

    /// Asks the mesh to do something (redial, discover, isolate).
    async fn command(&self, cmd: MeshCommand) -> Result<CommandOutcome, TransportError> {
        let _ = cmd;
        Ok(CommandOutcome::Unsupported)
    }
}
