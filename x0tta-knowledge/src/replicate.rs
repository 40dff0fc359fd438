//! Replication of incidents between nodes over a [`Transport`]: push through the signed
//! incident gossip every node's loop publishes, and pull (anti-entropy) over `/x0tta/sync/1`
//! for what a node missed while it was away. Incidents are immutable and content-addressed, so
//! the replicated set is a grow-only set: merges commute and repeat harmlessly.
//!
//! Trust: a gossiped incident is accepted only inside an envelope that verifies under
//! `contexts::INCIDENT` and was signed by the node the incident names; a pulled incident only
//! if the serving peer is the node that recorded it (a peer vouches for its own incidents).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use x0tta_core::{
    ContentId, Envelope, Incident, IncidentMessage, KnowledgeError, KnowledgeStore, NodeId,
    Transport, TransportError, Verifier, contexts, from_dag_cbor, to_dag_cbor, topics,
};

use crate::RedbKnowledge;

/// The request-response protocol of anti-entropy.
pub const SYNC_PROTOCOL: &str = "/x0tta/sync/1";
/// Most CIDs a pull request lists (the requester's newest).
pub const MAX_HAVE: usize = 10_000;
/// Most incidents one pull reply carries (the server's newest it holds).
pub const MAX_REPLY: usize = 1_000;

#[derive(Debug, Serialize, Deserialize)]
struct SyncRequest {
    /// Incidents of the server that the requester already has.
    have: Vec<ContentId>,
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
    /// The peer sent something that is not a sync reply.
    #[error("malformed sync reply from {0}")]
    Malformed(NodeId),
}

/// Replicates a [`RedbKnowledge`] with its peers. Dropping it stops nothing: the background
/// tasks end when the transport closes their queues.
#[derive(Clone)]
pub struct Replicator {
    store: RedbKnowledge,
    transport: Arc<dyn Transport>,
}

impl Replicator {
    /// Starts accepting gossiped incidents (verified with `verifier`) and serving pulls.
    pub async fn start(
        store: RedbKnowledge,
        transport: Arc<dyn Transport>,
        verifier: Arc<dyn Verifier>,
    ) -> Result<Self, ReplicationError> {
        let mut incidents = transport.subscribe(topics::INCIDENTS).await?;
        let mut requests = transport.serve(SYNC_PROTOCOL).await?;
        let me = transport.local_id().clone();
        let push_store = store.clone();
        tokio::spawn(async move {
            while let Some(msg) = incidents.next().await {
                let Ok(env) = from_dag_cbor::<Envelope>(&msg.payload) else {
                    continue;
                };
                let Ok(bytes) = env.open(verifier.as_ref(), contexts::INCIDENT) else {
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
                if let Err(e) = push_store.record(&incident).await {
                    tracing::warn!(%e, "replicated incident not stored");
                }
            }
        });
        let serve_store = store.clone();
        tokio::spawn(async move {
            while let Some(req) = requests.recv().await {
                let reply = match from_dag_cbor::<SyncRequest>(&req.payload) {
                    Ok(r) => serve_store
                        .own_incidents_except(&me, &r.have)
                        .await
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                let body = to_dag_cbor(&reply).unwrap_or_default();
                req.respond(body);
            }
        });
        Ok(Self { store, transport })
    }

    /// Pulls from `peer` the incidents it recorded that this store lacks; returns how many
    /// were new.
    pub async fn pull(&self, peer: &NodeId, timeout: Duration) -> Result<usize, ReplicationError> {
        let have: Vec<ContentId> = self
            .store
            .recent(MAX_HAVE)
            .await?
            .into_iter()
            .filter(|(_, i)| &i.node == peer)
            .map(|(id, _)| id)
            .collect();
        let body = to_dag_cbor(&SyncRequest { have }).map_err(KnowledgeError::from)?;
        let reply = self
            .transport
            .request(peer, SYNC_PROTOCOL, body, timeout)
            .await?;
        let incidents: Vec<Incident> =
            from_dag_cbor(&reply).map_err(|_| ReplicationError::Malformed(peer.clone()))?;
        // A peer vouches only for what it recorded itself.
        let own: Vec<Incident> = incidents
            .into_iter()
            .filter(|i| &i.node == peer)
            .take(MAX_REPLY)
            .collect();
        if own.is_empty() {
            return Ok(0);
        }
        let state = to_dag_cbor(&own).map_err(KnowledgeError::from)?;
        Ok(match self.store.merge_state(&state).await? {
            x0tta_core::MergeOutcome::Merged { added } => added,
            _ => 0,
        })
    }
}

impl RedbKnowledge {
    /// Up to [`MAX_REPLY`] of the newest incidents recorded by `node`, except those in `have`.
    async fn own_incidents_except(
        &self,
        node: &NodeId,
        have: &[ContentId],
    ) -> Result<Vec<Incident>, KnowledgeError> {
        let have: BTreeSet<&ContentId> = have.iter().take(MAX_HAVE).collect();
        Ok(self
            .recent(usize::MAX)
            .await?
            .into_iter()
            .filter(|(id, i)| &i.node == node && !have.contains(id))
            .take(MAX_REPLY)
            .map(|(_, i)| i)
            .collect())
    }
}
