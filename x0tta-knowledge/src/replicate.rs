//! Replication between nodes over a [`Transport`].
//!
//! - **CRDT gossip** (`x0tta/crdt/1`): each local change of the replicated document (yrs v1
//!   update) is published; receivers integrate it and log it durably.
//! - **Anti-entropy** over `/x0tta/sync/1`: [`Replicator::sync`] sends this node's state
//!   vector, receives exactly the updates it lacks (in chunks of at most [`SYNC_CHUNK`],
//!   checked by SHA-256), then pushes what the peer lacks; the peer logs it durably before it
//!   acknowledges.
//! - **Blocks** over `/x0tta/block/1`: the document names each incident by CID with the CID
//!   of its signed envelope; a node fetches envelopes it lacks (batched, bounded by
//!   [`MAX_MESSAGE_BYTES`]) and stores an incident only if its envelope hashes to the named
//!   CID, verifies under `contexts::INCIDENT` and was signed by the incident's own node. A
//!   Byzantine peer can write anything into the document, but cannot make a node store an
//!   incident another node did not sign.
//! - **Incident gossip** (`x0tta/incidents/1`, published by every node's loop): accepted
//!   only inside an envelope signed by the node the incident names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use x0tta_core::{
    ContentId, Envelope, InboundRequest, IncidentMessage, KnowledgeError, KnowledgeStore,
    MAX_MESSAGE_BYTES, NodeId, PeerState, Transport, TransportError, Verifier, contexts,
    from_dag_cbor, to_dag_cbor, topics,
};

use crate::{BlockSource, RedbKnowledge, Wanted};

/// The request-response protocol of anti-entropy.
pub const SYNC_PROTOCOL: &str = x0tta_core::protocols::SYNC;
/// The request-response protocol that serves blocks by CID.
pub const BLOCK_PROTOCOL: &str = x0tta_core::protocols::BLOCK;
/// Largest piece of a sync diff one reply carries.
pub const SYNC_CHUNK: usize = 512 * 1024;
/// Largest document diff one sync accepts (a peer announcing more is refused as malformed;
/// a document that large is compacted or synced from a peer closer in state).
pub const MAX_SYNC_TOTAL: u64 = 64 * 1024 * 1024;
/// Most incidents one [`Replicator::fetch`] asks for (the next sync asks for the rest).
pub const MAX_WANTED_PER_SYNC: usize = 10_000;
/// Most CIDs one block request lists.
pub const MAX_BLOCKS_PER_REQUEST: usize = 512;
/// Bytes of blocks one reply carries at most (the rest of the message limit is framing).
const BLOCK_BUDGET: usize = MAX_MESSAGE_BYTES - 64 * 1024;
/// Largest update pushed in one request.
const MAX_PUSH: usize = MAX_MESSAGE_BYTES - 1024;
/// Envelope fetches a node runs at once for pushes and gossip (more are left to the next sync).
const FETCHES: usize = 4;
/// A sync restarts when the peer's diff changed between chunks; it gives up after this many.
const SYNC_ATTEMPTS: usize = 3;
/// Live neighbours the cold tier asks for an evicted body, one after the other.
const COLD_PEERS: usize = 3;
/// How long the cold tier waits for each of them.
const COLD_TIMEOUT: Duration = Duration::from_secs(2);
/// The v1 encoding of an update carrying nothing.
const EMPTY_UPDATE: [u8; 2] = [0, 0];

#[derive(Debug, Serialize, Deserialize)]
enum SyncRequest {
    /// Send the part from `offset` of what a replica with state vector `sv` lacks.
    Pull {
        #[serde(with = "serde_bytes")]
        sv: Vec<u8>,
        offset: u64,
    },
    /// Here is what you lack.
    Push {
        #[serde(with = "serde_bytes")]
        update: Vec<u8>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct PullReply {
    /// The server's state vector (so the client can push what the server lacks).
    #[serde(with = "serde_bytes")]
    sv: Vec<u8>,
    /// Length of the whole diff.
    total: u64,
    /// SHA-256 of the whole diff.
    #[serde(with = "serde_bytes")]
    digest: Vec<u8>,
    #[serde(with = "serde_bytes")]
    chunk: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PushReply {
    /// Incidents the push named that the server lacks (it fetches them itself).
    wanted: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct BlockRequest {
    cids: Vec<ContentId>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Block {
    cid: ContentId,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BlockReply {
    blocks: Vec<Block>,
}

/// Replication failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The store failed.
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    /// The peer sent something that is not a valid reply.
    #[error("malformed {what} from {peer}")]
    Malformed {
        /// The peer.
        peer: NodeId,
        /// What was wrong.
        what: &'static str,
    },
    /// The peer's state kept changing while its diff was being transferred.
    #[error("the diff from {0} kept changing during the transfer")]
    Unstable(NodeId),
}

/// What one [`Replicator::sync`] or [`Replicator::fetch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Bytes of CRDT updates received.
    pub update_bytes_received: usize,
    /// Bytes of CRDT updates pushed to the peer.
    pub update_bytes_sent: usize,
    /// Bytes of envelope blocks received.
    pub block_bytes_received: usize,
    /// Incidents verified and stored.
    pub incidents_added: usize,
    /// Envelopes refused (bad CID, signature, signer or content).
    pub refused: usize,
    /// Incidents the document names that are still missing afterwards.
    pub missing: usize,
}

/// Replicates a [`RedbKnowledge`] with its peers. Dropping it stops nothing: the background
/// tasks end when the transport closes their queues.
#[derive(Clone)]
pub struct Replicator {
    store: RedbKnowledge,
    transport: Arc<dyn Transport>,
    verifier: Arc<dyn Verifier>,
    fetches: Arc<Semaphore>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("store", &self.store)
            .field("node", self.transport.local_id())
            .finish_non_exhaustive()
    }
}

fn malformed(peer: &NodeId, what: &'static str) -> ReplicationError {
    ReplicationError::Malformed {
        peer: peer.clone(),
        what,
    }
}

impl Replicator {
    /// Starts gossiping local CRDT changes, integrating peers' changes and incident gossip
    /// (verified with `verifier`), and serving sync and block requests.
    pub async fn start(
        store: RedbKnowledge,
        transport: Arc<dyn Transport>,
        verifier: Arc<dyn Verifier>,
    ) -> Result<Self, ReplicationError> {
        let me = Self {
            store,
            transport,
            verifier,
            fetches: Arc::new(Semaphore::new(FETCHES)),
        };
        let incidents = me.transport.subscribe(topics::INCIDENTS).await?;
        let crdt = me.transport.subscribe(topics::CRDT).await?;
        let sync = me.transport.serve(SYNC_PROTOCOL).await?;
        let blocks = me.transport.serve(BLOCK_PROTOCOL).await?;
        tokio::spawn(me.clone().incident_gossip(incidents));
        tokio::spawn(me.clone().crdt_gossip(crdt));
        tokio::spawn(me.clone().serve_sync(sync));
        tokio::spawn(me.clone().serve_blocks(blocks));
        tokio::spawn(me.clone().publish_local(me.store.local_updates()));
        me.store.set_block_source(Arc::new(PeerBlocks {
            transport: me.transport.clone(),
        }));
        Ok(me)
    }

    async fn incident_gossip(self, mut sub: x0tta_core::Subscription) {
        while let Some(msg) = sub.next().await {
            let Ok(env) = from_dag_cbor::<Envelope>(&msg.payload) else {
                continue;
            };
            let Ok(bytes) = env.open(self.verifier.as_ref(), contexts::INCIDENT) else {
                tracing::warn!(from = %msg.from, "incident gossip with a bad signature refused");
                continue;
            };
            let Ok(IncidentMessage::Incident { incident }) =
                from_dag_cbor::<IncidentMessage>(bytes)
            else {
                continue; // notices and future message kinds are not stored
            };
            if incident.node != env.signature.signer {
                tracing::warn!(signer = %env.signature.signer, node = %incident.node, "incident signed by another node refused");
                continue;
            }
            if let Err(e) = self.store.record(&incident).await {
                tracing::warn!(%e, "replicated incident not stored");
            }
        }
    }

    async fn crdt_gossip(self, mut sub: x0tta_core::Subscription) {
        while let Some(msg) = sub.next().await {
            match self.store.apply_update(msg.payload).await {
                Ok(wanted) if !wanted.is_empty() => self.fetch_in_background(msg.from, wanted),
                Ok(_) => {}
                Err(e) => tracing::warn!(from = %msg.from, %e, "CRDT update refused"),
            }
        }
    }

    async fn publish_local(self, mut updates: tokio::sync::mpsc::Receiver<Vec<u8>>) {
        while let Some(update) = updates.recv().await {
            if update.len() > MAX_MESSAGE_BYTES - 4096 {
                continue; // too big for gossip: anti-entropy carries it
            }
            if let Err(e) = self.transport.publish(topics::CRDT, update).await {
                tracing::debug!(%e, "CRDT update not gossiped; anti-entropy will carry it");
            }
        }
    }

    async fn serve_sync(self, mut requests: tokio::sync::mpsc::Receiver<InboundRequest>) {
        while let Some(req) = requests.recv().await {
            let from = req.from.clone();
            let reply = match from_dag_cbor::<SyncRequest>(&req.payload) {
                Ok(SyncRequest::Pull { sv, offset }) => self.pull_reply(&sv, offset),
                Ok(SyncRequest::Push { update }) => match self.store.apply_update(update).await {
                    Ok(wanted) => {
                        let n = wanted.len() as u64;
                        if n > 0 {
                            self.fetch_in_background(from.clone(), wanted);
                        }
                        to_dag_cbor(&PushReply { wanted: n }).ok()
                    }
                    Err(e) => {
                        tracing::warn!(%from, %e, "pushed CRDT update refused");
                        None
                    }
                },
                Err(_) => None,
            };
            // An empty reply tells the requester its request was refused.
            req.respond(reply.unwrap_or_default());
        }
    }

    fn pull_reply(&self, sv: &[u8], offset: u64) -> Option<Vec<u8>> {
        let diff = self.store.crdt().diff(sv).ok()?;
        let start = usize::try_from(offset).ok()?.min(diff.len());
        let end = (start + SYNC_CHUNK).min(diff.len());
        to_dag_cbor(&PullReply {
            sv: self.store.crdt().state_vector(),
            total: diff.len() as u64,
            digest: Sha256::digest(&diff).to_vec(),
            chunk: diff[start..end].to_vec(),
        })
        .ok()
    }

    async fn serve_blocks(self, mut requests: tokio::sync::mpsc::Receiver<InboundRequest>) {
        while let Some(req) = requests.recv().await {
            let reply = match from_dag_cbor::<BlockRequest>(&req.payload) {
                Ok(r) => {
                    let cids: Vec<ContentId> =
                        r.cids.into_iter().take(MAX_BLOCKS_PER_REQUEST).collect();
                    match self.store.blocks(cids, BLOCK_BUDGET).await {
                        Ok(found) => to_dag_cbor(&BlockReply {
                            blocks: found
                                .into_iter()
                                .map(|(cid, bytes)| Block { cid, bytes })
                                .collect(),
                        })
                        .ok(),
                        Err(e) => {
                            tracing::warn!(%e, "blocks not read");
                            None
                        }
                    }
                }
                Err(_) => None,
            };
            req.respond(reply.unwrap_or_default());
        }
    }

    fn fetch_in_background(&self, peer: NodeId, wanted: Vec<Wanted>) {
        let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
            return; // enough fetches running: the next sync picks these up
        };
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me
                .fetch_wanted(&peer, wanted, Duration::from_secs(10))
                .await
            {
                tracing::debug!(%peer, %e, "envelope fetch failed; the next sync retries");
            }
            drop(permit);
        });
    }

    /// Synchronises with `peer` both ways: pulls what this node lacks, pushes what the peer
    /// lacks, then fetches and verifies the envelopes of incidents this node lacks from it.
    pub async fn sync(
        &self,
        peer: &NodeId,
        timeout: Duration,
    ) -> Result<SyncReport, ReplicationError> {
        let mut report = self.sync_document(peer, timeout).await?;
        let fetched = self.fetch(peer, timeout).await?;
        report.block_bytes_received = fetched.block_bytes_received;
        report.incidents_added = fetched.incidents_added;
        report.refused = fetched.refused;
        report.missing = fetched.missing;
        Ok(report)
    }

    /// The document part of [`Replicator::sync`]: exchanges state vectors and the updates
    /// each side lacks (both logged durably), without fetching envelopes.
    pub async fn sync_document(
        &self,
        peer: &NodeId,
        timeout: Duration,
    ) -> Result<SyncReport, ReplicationError> {
        let mut report = SyncReport::default();
        let (diff, peer_sv) = self.pull(peer, timeout).await?;
        report.update_bytes_received = diff.len();
        if diff != EMPTY_UPDATE {
            self.store.apply_update(diff).await?;
        }
        let push = self
            .store
            .crdt()
            .diff(&peer_sv)
            .map_err(|_| malformed(peer, "state vector"))?;
        if push != EMPTY_UPDATE && push.len() <= MAX_PUSH {
            report.update_bytes_sent = push.len();
            let body =
                to_dag_cbor(&SyncRequest::Push { update: push }).map_err(KnowledgeError::from)?;
            let reply = self
                .transport
                .request(peer, SYNC_PROTOCOL, body, timeout)
                .await?;
            from_dag_cbor::<PushReply>(&reply).map_err(|_| malformed(peer, "push reply"))?;
        } else if push.len() > MAX_PUSH {
            tracing::info!(%peer, bytes = push.len(), "update too big to push; the peer pulls it");
        }
        Ok(report)
    }

    /// Pulls the whole diff from `peer` (chunk by chunk, checked against its digest).
    async fn pull(
        &self,
        peer: &NodeId,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Vec<u8>), ReplicationError> {
        let sv = self.store.crdt().state_vector();
        for _ in 0..SYNC_ATTEMPTS {
            let mut diff = Vec::new();
            let mut expected: Option<(u64, Vec<u8>)> = None;
            let mut peer_sv = Vec::new();
            let mut changed = false;
            loop {
                let body = to_dag_cbor(&SyncRequest::Pull {
                    sv: sv.clone(),
                    offset: diff.len() as u64,
                })
                .map_err(KnowledgeError::from)?;
                let reply = self
                    .transport
                    .request(peer, SYNC_PROTOCOL, body, timeout)
                    .await?;
                let r: PullReply =
                    from_dag_cbor(&reply).map_err(|_| malformed(peer, "sync reply"))?;
                if r.total > MAX_SYNC_TOTAL {
                    return Err(malformed(peer, "sync diff larger than MAX_SYNC_TOTAL"));
                }
                if r.chunk.len() > SYNC_CHUNK || diff.len() as u64 + r.chunk.len() as u64 > r.total
                {
                    return Err(malformed(peer, "sync chunk beyond the announced total"));
                }
                match &expected {
                    None => expected = Some((r.total, r.digest.clone())),
                    Some((t, d)) if *t != r.total || *d != r.digest => {
                        changed = true;
                        break;
                    }
                    Some(_) => {}
                }
                peer_sv = r.sv;
                if r.chunk.is_empty() && (diff.len() as u64) < r.total {
                    return Err(malformed(peer, "empty sync chunk"));
                }
                diff.extend_from_slice(&r.chunk);
                if diff.len() as u64 >= r.total {
                    break;
                }
            }
            if changed {
                continue;
            }
            let Some((total, digest)) = expected else {
                return Err(malformed(peer, "sync reply"));
            };
            if diff.len() as u64 != total || Sha256::digest(&diff).as_slice() != digest {
                return Err(malformed(peer, "sync digest"));
            }
            return Ok((diff, peer_sv));
        }
        Err(ReplicationError::Unstable(peer.clone()))
    }

    /// Fetches from `peer` the envelopes of every incident the document names that this
    /// store lacks, verifies and stores them.
    pub async fn fetch(
        &self,
        peer: &NodeId,
        timeout: Duration,
    ) -> Result<SyncReport, ReplicationError> {
        let wanted = self.store.wanted(MAX_WANTED_PER_SYNC).await?;
        self.fetch_wanted(peer, wanted, timeout).await
    }

    async fn fetch_wanted(
        &self,
        peer: &NodeId,
        wanted: Vec<Wanted>,
        timeout: Duration,
    ) -> Result<SyncReport, ReplicationError> {
        let mut report = SyncReport::default();
        // By envelope: one block may be named for several incidents (by a Byzantine writer).
        let mut queue: BTreeMap<ContentId, Vec<Wanted>> = BTreeMap::new();
        for w in wanted {
            queue.entry(w.envelope).or_default().push(w);
        }
        let next_cids = |queue: &BTreeMap<ContentId, Vec<Wanted>>| -> Vec<ContentId> {
            queue.keys().take(MAX_BLOCKS_PER_REQUEST).copied().collect()
        };
        let first = next_cids(&queue);
        if first.is_empty() {
            return Ok(report);
        }
        let mut in_flight = Some((
            first.clone(),
            self.request_blocks(peer, first, timeout).await?,
        ));
        // Two stages: while one batch is verified and stored (on the blocking pool), the
        // request for the next one is already on the wire.
        while let Some((cids, reply)) = in_flight.take() {
            let mut progressed = false;
            let mut batch = Vec::new();
            for block in reply.blocks {
                let Some(ws) = queue.remove(&block.cid) else {
                    continue; // not asked for
                };
                progressed = true;
                report.block_bytes_received += block.bytes.len();
                // Several entries may name one envelope (a Byzantine writer); it carries one
                // incident, so only that entry is checked — one verification per block.
                let carried = crate::replica::claimed_incident(&block.bytes);
                let (genuine, others): (Vec<Wanted>, Vec<Wanted>) =
                    ws.into_iter().partition(|w| Some(w.incident) == carried);
                report.refused += others.len();
                if !others.is_empty() {
                    tracing::warn!(%peer, envelope = %block.cid, entries = others.len(), "document entries naming an envelope of another incident refused");
                    self.store.remember_refused(&others);
                }
                if let Some(w) = genuine.into_iter().next() {
                    batch.push((w, block.bytes));
                }
            }
            if !progressed {
                // The peer holds none of these.
                for cid in cids {
                    report.missing += queue.remove(&cid).map_or(0, |ws| ws.len());
                }
            }
            // What a partial reply left out is asked for again.
            let next = next_cids(&queue);
            let request = async {
                if next.is_empty() {
                    return Ok(None);
                }
                let reply = self.request_blocks(peer, next.clone(), timeout).await?;
                Ok::<_, ReplicationError>(Some((next, reply)))
            };
            let wanted: Vec<Wanted> = batch.iter().map(|(w, _)| w.clone()).collect();
            let (stored, fetched) = tokio::join!(
                self.store.accept_envelopes(batch, self.verifier.clone()),
                request
            );
            for (w, r) in wanted.into_iter().zip(stored?) {
                match r {
                    Ok(_) => report.incidents_added += 1,
                    Err(why) => {
                        report.refused += 1;
                        tracing::warn!(%peer, incident = %w.incident, %why, "incident envelope refused");
                        if why.is_permanent() {
                            self.store.remember_refused(std::slice::from_ref(&w));
                        }
                    }
                }
            }
            in_flight = fetched?;
        }
        Ok(report)
    }

    /// One `/x0tta/block/1` request for `cids`.
    async fn request_blocks(
        &self,
        peer: &NodeId,
        cids: Vec<ContentId>,
        timeout: Duration,
    ) -> Result<BlockReply, ReplicationError> {
        let body = to_dag_cbor(&BlockRequest { cids }).map_err(KnowledgeError::from)?;
        let reply = self
            .transport
            .request(peer, BLOCK_PROTOCOL, body, timeout)
            .await?;
        from_dag_cbor(&reply).map_err(|_| malformed(peer, "block reply"))
    }
}

/// The cold tier of a replicated store: asks up to [`COLD_PEERS`] live neighbours, in turn,
/// for the blocks still missing, over [`BLOCK_PROTOCOL`]. Blocks that do not hash to their
/// CID are dropped here (and would be refused by the store).
struct PeerBlocks {
    transport: Arc<dyn Transport>,
}

#[async_trait::async_trait]
impl BlockSource for PeerBlocks {
    async fn fetch_blocks(&self, cids: Vec<ContentId>) -> Vec<(ContentId, Vec<u8>)> {
        let mut want: std::collections::BTreeSet<ContentId> =
            cids.into_iter().take(MAX_BLOCKS_PER_REQUEST).collect();
        let mut out = Vec::new();
        let peers: Vec<NodeId> = self
            .transport
            .neighbours()
            .await
            .into_iter()
            .filter(|n| n.state == PeerState::Up)
            .map(|n| n.id)
            .take(COLD_PEERS)
            .collect();
        for peer in peers {
            if want.is_empty() {
                break;
            }
            let Ok(body) = to_dag_cbor(&BlockRequest {
                cids: want.iter().copied().collect(),
            }) else {
                break;
            };
            let reply = match self
                .transport
                .request(&peer, BLOCK_PROTOCOL, body, COLD_TIMEOUT)
                .await
            {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(%peer, %e, "cold-tier block request failed");
                    continue;
                }
            };
            let Ok(reply) = from_dag_cbor::<BlockReply>(&reply) else {
                tracing::warn!(%peer, "malformed block reply");
                continue;
            };
            for b in reply.blocks {
                if !want.contains(&b.cid) {
                    continue;
                }
                if ContentId::of_dag_cbor(&b.bytes) != b.cid {
                    tracing::warn!(%peer, cid = %b.cid, "block does not match its CID: refused");
                    continue;
                }
                want.remove(&b.cid);
                out.push((b.cid, b.bytes));
            }
        }
        out
    }
}
