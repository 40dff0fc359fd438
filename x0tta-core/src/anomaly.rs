//! What the Analyze phase produces.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The kind of trouble an anomaly reports (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AnomalyKind {
    /// A node stopped answering.
    NodeFailure,
    /// Memory use is too high (host or service).
    MemoryPressure,
    /// CPU use is too high.
    CpuOverload,
    /// A disk is nearly full.
    DiskPressure,
    /// The node lost contact with (part of) the mesh.
    NetworkPartition,
    /// A link has high latency or loss.
    LinkDegraded,
    /// A supervised service is not healthy.
    ServiceDown,
    /// A peer's clock is too far from ours.
    ClockSkew,
    /// A peer signed conflicting or forged statements.
    ByzantinePeer,
}

impl AnomalyKind {
    /// Every kind, in declaration order.
    pub const ALL: [AnomalyKind; 9] = [
        Self::NodeFailure,
        Self::MemoryPressure,
        Self::CpuOverload,
        Self::DiskPressure,
        Self::NetworkPartition,
        Self::LinkDegraded,
        Self::ServiceDown,
        Self::ClockSkew,
        Self::ByzantinePeer,
    ];

    /// The wire name (`MEMORY_PRESSURE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeFailure => "NODE_FAILURE",
            Self::MemoryPressure => "MEMORY_PRESSURE",
            Self::CpuOverload => "CPU_OVERLOAD",
            Self::DiskPressure => "DISK_PRESSURE",
            Self::NetworkPartition => "NETWORK_PARTITION",
            Self::LinkDegraded => "LINK_DEGRADED",
            Self::ServiceDown => "SERVICE_DOWN",
            Self::ClockSkew => "CLOCK_SKEW",
            Self::ByzantinePeer => "BYZANTINE_PEER",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad an anomaly is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// Worth recording.
    Low,
    /// Worth acting on.
    Medium,
    /// Act now.
    High,
    /// Act now; may need an emergency vote.
    Critical,
}

impl Severity {
    /// One level up, saturating at `Critical`.
    pub fn escalate(self) -> Self {
        match self {
            Self::Low => Self::Medium,
            Self::Medium => Self::High,
            Self::High | Self::Critical => Self::Critical,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        })
    }
}

/// What an anomaly is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Subject {
    /// The observing node itself.
    Host,
    /// A supervised service, by name.
    Service(String),
    /// A peer node.
    Peer(NodeId),
    /// The link from the observing node to a peer.
    Link(NodeId),
    /// The mesh as a whole.
    Mesh,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Service(s) => write!(f, "service:{s}"),
            Self::Peer(p) => write!(f, "peer:{p}"),
            Self::Link(p) => write!(f, "link:{p}"),
            Self::Mesh => f.write_str("mesh"),
        }
    }
}

/// One fact that supports an anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The metric or probe the fact is about.
    pub signal: String,
    /// Observed value, if numeric.
    pub value: Option<f64>,
    /// The threshold or baseline it was compared with, if any.
    pub reference: Option<f64>,
    /// A human-readable sentence.
    pub note: String,
}

/// A detected problem: the output of the Analyze phase.
///
/// ```
/// use x0tta_core::{Anomaly, AnomalyKind, Severity, Subject};
/// let a = Anomaly::new(AnomalyKind::ServiceDown, Severity::High, 0.9, Subject::Service("web".into()), "threshold");
/// assert_eq!(a.key(), (AnomalyKind::ServiceDown, Subject::Service("web".into())));
/// assert!(a.to_text().contains("SERVICE_DOWN"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// What kind of trouble.
    pub kind: AnomalyKind,
    /// How bad.
    pub severity: Severity,
    /// How sure the detector is, 0.0–1.0.
    pub confidence: f64,
    /// What it is about.
    pub subject: Subject,
    /// Supporting facts.
    pub evidence: Vec<Evidence>,
    /// The detector that raised it.
    pub detector: String,
}

impl Anomaly {
    /// A new anomaly without evidence; confidence is clamped to 0..=1.
    pub fn new(
        kind: AnomalyKind,
        severity: Severity,
        confidence: f64,
        subject: Subject,
        detector: impl Into<String>,
    ) -> Self {
        let confidence = if confidence.is_finite() {
            confidence.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            kind,
            severity,
            confidence,
            subject,
            evidence: Vec::new(),
            detector: detector.into(),
        }
    }

    /// Adds a piece of evidence (builder style).
    pub fn with_evidence(mut self, e: Evidence) -> Self {
        self.evidence.push(e);
        self
    }

    /// The identity of the problem: two anomalies with the same key are the same trouble
    /// seen twice (by two detectors, or on two cycles).
    pub fn key(&self) -> (AnomalyKind, Subject) {
        (self.kind, self.subject.clone())
    }

    /// A text form for retrieval: kind, subject, severity and evidence notes.
    pub fn to_text(&self) -> String {
        let mut s = format!("{} {} {}", self.kind, self.subject, self.severity);
        for e in &self.evidence {
            s.push(' ');
            s.push_str(&e.signal);
            s.push(' ');
            s.push_str(&e.note);
        }
        s
    }
}
