//! Peers proven Byzantine by signed governance evidence, handed to the node's healer as
//! BYZANTINE_PEER anomalies ([`ByzantineDetector`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use x0tta_core::{
    Anomaly, AnomalyKind, ContentId, Detector, Evidence, NodeId, Observation, PeerState, Policy,
    Severity, Subject,
};

/// Why a peer is proven Byzantine. Each is a pair of messages the peer signed that cannot both
/// be honest, checked with its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offence {
    /// Two different votes at one revision for one proposal.
    VoteEquivocation {
        /// The proposal.
        proposal: ContentId,
    },
    /// Two different tally attestations for one proposal.
    AttestationEquivocation {
        /// The proposal.
        proposal: ContentId,
    },
}

impl fmt::Display for Offence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VoteEquivocation { proposal } => {
                write!(f, "signed two conflicting votes on proposal {proposal}")
            }
            Self::AttestationEquivocation { proposal } => {
                write!(
                    f,
                    "signed two different tally attestations for proposal {proposal}"
                )
            }
        }
    }
}

/// A [`Detector`] raising a BYZANTINE_PEER anomaly (critical, confidence 1: the proof is
/// cryptographic) for every peer proven Byzantine and not yet isolated. [`Dao`](crate::Dao)
/// reports offenders to the detector it hands out ([`Dao::detector`](crate::Dao::detector));
/// add that to the node's healer so the plan for BYZANTINE_PEER (e.g. `disconnect_peer`)
/// runs. Once the neighbour table shows the peer isolated, the anomaly is gone.
///
/// ```
/// use x0tta_core::{Detector, NodeId, Observation, Policy, AnomalyKind, ContentId};
/// use x0tta_dao::{ByzantineDetector, Offence};
/// let d = ByzantineDetector::new();
/// let mallory = NodeId::new("mallory")?;
/// d.report(mallory.clone(), Offence::VoteEquivocation { proposal: ContentId::of_dag_cbor(b"p") });
/// let found = d.detect(&Observation::new(NodeId::new("me")?), &Policy::default());
/// assert_eq!(found[0].kind, AnomalyKind::ByzantinePeer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ByzantineDetector {
    /// First proven offence per peer. Bounded by the stake holders: only they have keys the
    /// ledger verifies.
    offenders: Arc<Mutex<BTreeMap<NodeId, Offence>>>,
}

impl ByzantineDetector {
    /// A detector that knows of no offender.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a proven offence (the first one per peer is kept).
    pub fn report(&self, peer: NodeId, offence: Offence) {
        self.offenders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(peer)
            .or_insert(offence);
    }

    /// Every peer proven Byzantine, with its first offence.
    pub fn offenders(&self) -> Vec<(NodeId, Offence)> {
        self.offenders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect()
    }
}

impl Detector for ByzantineDetector {
    fn name(&self) -> &str {
        "governance-evidence"
    }

    fn detect(&self, obs: &Observation, _policy: &Policy) -> Vec<Anomaly> {
        let isolated = |peer: &NodeId| {
            obs.neighbours
                .iter()
                .any(|n| &n.id == peer && n.state == PeerState::Isolated)
        };
        self.offenders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(peer, _)| **peer != obs.node && !isolated(peer))
            .map(|(peer, offence)| {
                Anomaly::new(
                    AnomalyKind::ByzantinePeer,
                    Severity::Critical,
                    1.0,
                    Subject::Peer(peer.clone()),
                    self.name(),
                )
                .with_evidence(Evidence {
                    signal: "dao.evidence".into(),
                    value: None,
                    reference: None,
                    note: format!("{peer} {offence}"),
                })
            })
            .collect()
    }
}
