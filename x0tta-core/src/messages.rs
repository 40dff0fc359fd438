//! Messages the node publishes to its peers on `x0tta/incidents/1`, inside signed envelopes.

use serde::{Deserialize, Serialize};

use crate::{Anomaly, Incident, NodeId};

/// What a node tells its neighbours about its incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum IncidentMessage {
    /// A recorded incident (replication of the node's memory).
    Incident {
        /// The incident.
        incident: Box<Incident>,
    },
    /// A heads-up about an anomaly (from the `notify_neighbors` action or an escalation).
    Notice {
        /// The sender.
        node: NodeId,
        /// The anomaly.
        anomaly: Anomaly,
        /// Why the sender is telling.
        note: String,
    },
}
