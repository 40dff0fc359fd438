//! Root-cause ranking: from what many nodes report, the culprit — a node or a link — with its
//! evidence.
//!
//! Input per node ([`NodeEvidence`]): the probability of each anomaly kind (a classifier's, for
//! instance GraphSAGE's, output) and when the node first alarmed. The ranker scores
//!
//! - every **node** by the probability that it is itself anomalous in a node-level way (any
//!   kind but [`AnomalyKind::LinkDegraded`]), plus a bonus for an early onset among the alarmed
//!   nodes, plus, for kinds that only neighbours can witness (a crash, a flooding peer), the
//!   share of its neighbours that alarmed;
//! - every **link** by the mean of its two ends' [`AnomalyKind::LinkDegraded`] probabilities,
//!   plus a bonus when both ends say so;
//!
//! then multiplies in the priors (factors from similar past incidents: above 1 raises a
//! candidate, below 1 lowers it) and returns the best `k`, each with the evidence that put it
//! there. Cost is O(nodes + links).
//!
//! ```
//! use x0tta_analysis::rootcause::{Candidate, NodeEvidence, RootCause};
//! use x0tta_core::AnomalyKind;
//! // A line 0 — 1 — 2 where node 1 looks overloaded and alarmed first.
//! let neighbours = vec![vec![1], vec![0, 2], vec![1]];
//! let quiet = NodeEvidence::default();
//! let hot = NodeEvidence {
//!     kinds: vec![(AnomalyKind::CpuOverload, 0.9)],
//!     onset: Some(0.5),
//! };
//! let ranked = RootCause::new().rank(&neighbours, &[quiet.clone(), hot, quiet], 3)?;
//! assert_eq!(ranked[0].candidate, Candidate::Node(1));
//! assert_eq!(ranked[0].kind, AnomalyKind::CpuOverload);
//! # Ok::<(), x0tta_analysis::rootcause::RootCauseError>(())
//! ```

use std::collections::HashMap;

use x0tta_core::AnomalyKind;

/// Weight of the onset-order bonus.
const ONSET_WEIGHT: f64 = 0.15;
/// Weight of the witnesses' share for kinds only neighbours can see.
const WITNESS_WEIGHT: f64 = 0.25;
/// Bonus of a link both of whose ends call it degraded.
const AGREE_BONUS: f64 = 0.1;

/// A possible culprit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Candidate {
    /// A node, by index.
    Node(usize),
    /// A link, `(low, high)` node indices.
    Link(usize, usize),
}

impl Candidate {
    /// The link between `a` and `b`, in canonical order.
    pub fn link(a: usize, b: usize) -> Self {
        Self::Link(a.min(b), a.max(b))
    }
}

/// What is known of one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeEvidence {
    /// Probability of each anomaly kind (kinds not listed: 0). Together at most 1; the rest
    /// is "normal".
    pub kinds: Vec<(AnomalyKind, f32)>,
    /// When it first alarmed, in seconds from any common reference; `None`: it did not.
    pub onset: Option<f64>,
}

impl NodeEvidence {
    fn p(&self, kind: AnomalyKind) -> f64 {
        self.kinds
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, p)| f64::from(*p))
            .sum()
    }

    /// The most likely node-level kind (not a link) and the total node-level probability.
    fn node_level(&self) -> Option<(AnomalyKind, f64)> {
        let total: f64 = self
            .kinds
            .iter()
            .filter(|(k, _)| *k != AnomalyKind::LinkDegraded)
            .map(|(_, p)| f64::from(*p))
            .sum();
        self.kinds
            .iter()
            .filter(|(k, _)| *k != AnomalyKind::LinkDegraded)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| (*k, total))
    }
}

/// One ranked candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The culprit it names.
    pub candidate: Candidate,
    /// What is wrong with it.
    pub kind: AnomalyKind,
    /// Its score (higher is likelier); comparable within one ranking only.
    pub score: f64,
    /// Why, in words, for the incident record.
    pub evidence: Vec<String>,
}

/// The ranking was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RootCauseError {
    /// `neighbours` and `evidence` describe different numbers of nodes.
    #[error("{neighbours} neighbour lists for {evidence} nodes' evidence")]
    Mismatch {
        /// Neighbour lists given.
        neighbours: usize,
        /// Evidence entries given.
        evidence: usize,
    },
    /// A neighbour index beyond the nodes.
    #[error("node {node} names neighbour {neighbour}, beyond the {nodes} nodes")]
    BadNeighbour {
        /// The node.
        node: usize,
        /// The bad index.
        neighbour: usize,
        /// Nodes.
        nodes: usize,
    },
    /// A probability or onset that is not a finite number (probabilities must be in 0..=1).
    #[error("node {0} has a probability outside 0..=1 or a non-finite onset")]
    BadEvidence(usize),
}

/// The ranker; priors from similar past incidents adjust it.
#[derive(Debug, Clone, Default)]
pub struct RootCause {
    priors: HashMap<Candidate, f64>,
}

impl RootCause {
    /// A ranker without priors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Multiplies `candidate`'s score by `factor` (clamped to 0..=10): above 1 when similar
    /// past incidents blamed it, below 1 when they cleared it.
    pub fn prior(mut self, candidate: Candidate, factor: f64) -> Self {
        let f = if factor.is_finite() {
            factor.clamp(0.0, 10.0)
        } else {
            1.0
        };
        self.priors.insert(candidate, f);
        self
    }

    /// The best `k` candidates, best first. Candidates that score 0 are left out.
    pub fn rank(
        &self,
        neighbours: &[Vec<usize>],
        evidence: &[NodeEvidence],
        k: usize,
    ) -> Result<Vec<Ranked>, RootCauseError> {
        let n = evidence.len();
        if neighbours.len() != n {
            return Err(RootCauseError::Mismatch {
                neighbours: neighbours.len(),
                evidence: n,
            });
        }
        for (v, e) in evidence.iter().enumerate() {
            let ok_p = e.kinds.iter().all(|(_, p)| (0.0..=1.0).contains(p));
            if !ok_p || e.onset.is_some_and(|t| !t.is_finite()) {
                return Err(RootCauseError::BadEvidence(v));
            }
            if let Some(&u) = neighbours[v].iter().find(|&&u| u >= n) {
                return Err(RootCauseError::BadNeighbour {
                    node: v,
                    neighbour: u,
                    nodes: n,
                });
            }
        }
        // Onset order among the alarmed nodes: 1 for the first, falling to 0 for the last.
        let mut onsets: Vec<(f64, usize)> = evidence
            .iter()
            .enumerate()
            .filter_map(|(v, e)| e.onset.map(|t| (t, v)))
            .collect();
        onsets.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut order = vec![0.0; n];
        let mut position = vec![0usize; n];
        let m = onsets.len();
        for (rank, &(_, v)) in onsets.iter().enumerate() {
            position[v] = rank + 1;
            order[v] = if m > 1 {
                1.0 - rank as f64 / (m - 1) as f64
            } else {
                1.0
            };
        }

        let ctx = Context {
            neighbours,
            evidence,
            order: &order,
            position: &position,
            alarmed: m,
        };
        // Score everything without words, then explain only the best `k`.
        let mut out: Vec<(Candidate, AnomalyKind, f64)> = Vec::new();
        for v in 0..n {
            if let Some((kind, score)) = ctx.node(v, None) {
                out.push((Candidate::Node(v), kind, score));
            }
        }
        for (a, list) in neighbours.iter().enumerate() {
            for &b in list.iter().filter(|&&b| b > a) {
                if let Some(score) = ctx.link(a, b, None) {
                    out.push((Candidate::link(a, b), AnomalyKind::LinkDegraded, score));
                }
            }
        }
        for (c, _, score) in &mut out {
            *score *= self.factor(c);
        }
        out.retain(|r| r.2 > 0.0);
        let best = |x: &(Candidate, AnomalyKind, f64), y: &(Candidate, AnomalyKind, f64)| {
            y.2.total_cmp(&x.2).then(x.0.cmp(&y.0))
        };
        if out.len() > k && k > 0 {
            out.select_nth_unstable_by(k - 1, best);
        }
        out.truncate(k);
        out.sort_by(best);
        Ok(out
            .into_iter()
            .map(|(candidate, kind, score)| {
                let mut evidence = Vec::new();
                match candidate {
                    Candidate::Node(v) => {
                        ctx.node(v, Some(&mut evidence));
                    }
                    Candidate::Link(a, b) => {
                        ctx.link(a, b, Some(&mut evidence));
                    }
                }
                let factor = self.factor(&candidate);
                if (factor - 1.0).abs() > f64::EPSILON {
                    evidence.push(format!("past incidents: ×{factor:.2}"));
                }
                Ranked {
                    candidate,
                    kind,
                    score,
                    evidence,
                }
            })
            .collect())
    }

    fn factor(&self, c: &Candidate) -> f64 {
        self.priors.get(c).copied().unwrap_or(1.0)
    }
}

/// What every score is computed from.
struct Context<'a> {
    neighbours: &'a [Vec<usize>],
    evidence: &'a [NodeEvidence],
    /// Onset-order bonus of each node, 0..=1.
    order: &'a [f64],
    /// 1-based onset rank of each alarmed node.
    position: &'a [usize],
    alarmed: usize,
}

impl Context<'_> {
    /// Node `v`'s node-level kind and score; with `why`, the evidence in words.
    fn node(&self, v: usize, mut why: Option<&mut Vec<String>>) -> Option<(AnomalyKind, f64)> {
        let e = &self.evidence[v];
        let (kind, p) = e.node_level()?;
        let mut score = p;
        if let Some(w) = why.as_deref_mut() {
            w.push(format!("{} with probability {p:.2}", kind.as_str()));
        }
        if e.onset.is_some() {
            score += ONSET_WEIGHT * self.order[v] * p;
            if let Some(w) = why.as_deref_mut() {
                w.push(format!(
                    "alarm {} of {} by onset",
                    self.position[v], self.alarmed
                ));
            }
        }
        let around = &self.neighbours[v];
        if matches!(kind, AnomalyKind::NodeFailure | AnomalyKind::ByzantinePeer)
            && !around.is_empty()
        {
            let witnesses = around
                .iter()
                .filter(|&&u| self.evidence[u].onset.is_some())
                .count();
            score += WITNESS_WEIGHT * p * witnesses as f64 / around.len() as f64;
            if let Some(w) = why {
                w.push(format!(
                    "{witnesses} of {} neighbours alarmed",
                    around.len()
                ));
            }
        }
        Some((kind, score))
    }

    /// Link `a`–`b`'s score (`None`: neither end blames it); with `why`, the evidence.
    fn link(&self, a: usize, b: usize, why: Option<&mut Vec<String>>) -> Option<f64> {
        let pa = self.evidence[a].p(AnomalyKind::LinkDegraded);
        let pb = self.evidence[b].p(AnomalyKind::LinkDegraded);
        if pa + pb <= 0.0 {
            return None;
        }
        let agree = pa > 0.5 && pb > 0.5;
        if let Some(w) = why {
            w.push(format!(
                "LINK_DEGRADED: {pa:.2} at node {a}, {pb:.2} at node {b}"
            ));
            if agree {
                w.push("both ends agree".into());
            }
        }
        Some((pa + pb) / 2.0 + if agree { AGREE_BONUS } else { 0.0 })
    }
}

/// The "earliest alarm" baseline: the node that alarmed first (ties: the larger magnitude,
/// then the lower index). `onsets[v]` is `(time, magnitude)`.
///
/// ```
/// use x0tta_analysis::rootcause::earliest_alarm;
/// assert_eq!(earliest_alarm(&[None, Some((2.0, 1.0)), Some((1.0, 0.1))]), Some(2));
/// ```
pub fn earliest_alarm(onsets: &[Option<(f64, f64)>]) -> Option<usize> {
    onsets
        .iter()
        .enumerate()
        .filter_map(|(v, o)| o.map(|(t, m)| (v, t, m)))
        .min_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(b.2.total_cmp(&a.2))
                .then(a.0.cmp(&b.0))
        })
        .map(|(v, _, _)| v)
}

/// One node's report that another looks wrong: "`by` saw `about` as `kind` at `at`" (a peer
/// marked down, a peer's clock off, a peer flooding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accusation {
    /// The reporting node.
    pub by: usize,
    /// The node it blames.
    pub about: usize,
    /// What it saw.
    pub kind: AnomalyKind,
    /// When, in seconds from any common reference.
    pub at: f64,
}

/// Evidence for the ranker from what nodes said about each other, when no classifier has
/// scored the nodes: a node's probability of a kind is the share of its neighbours that
/// accused it of that kind (shares above 1 in total are scaled down to 1), and an accuser's
/// onset is its first accusation. Accusations naming nodes beyond `neighbours.len()`, or at
/// a non-finite time, are ignored.
///
/// ```
/// use x0tta_analysis::rootcause::{Accusation, Candidate, RootCause, evidence_from_accusations};
/// use x0tta_core::AnomalyKind;
/// // A star around node 0, which crashed: its three neighbours mark it down.
/// let neighbours = vec![vec![1, 2, 3], vec![0], vec![0], vec![0]];
/// let said: Vec<Accusation> = (1..4)
///     .map(|by| Accusation { by, about: 0, kind: AnomalyKind::NodeFailure, at: by as f64 })
///     .collect();
/// let ev = evidence_from_accusations(&neighbours, &said);
/// let top = RootCause::new().rank(&neighbours, &ev, 1)?;
/// assert_eq!(top[0].candidate, Candidate::Node(0));
/// assert!(top[0].evidence.iter().any(|e| e == "3 of 3 neighbours alarmed"));
/// # Ok::<(), x0tta_analysis::rootcause::RootCauseError>(())
/// ```
pub fn evidence_from_accusations(
    neighbours: &[Vec<usize>],
    accusations: &[Accusation],
) -> Vec<NodeEvidence> {
    let n = neighbours.len();
    let mut accusers: HashMap<(usize, AnomalyKind), std::collections::BTreeSet<usize>> =
        HashMap::new();
    let mut out = vec![NodeEvidence::default(); n];
    for a in accusations
        .iter()
        .filter(|a| a.by < n && a.about < n && a.by != a.about && a.at.is_finite())
    {
        accusers.entry((a.about, a.kind)).or_default().insert(a.by);
        let onset = &mut out[a.by].onset;
        *onset = Some(onset.map_or(a.at, |t: f64| t.min(a.at)));
    }
    let mut keys: Vec<_> = accusers.keys().copied().collect();
    keys.sort_by_key(|(v, k)| (*v, k.as_str()));
    for (v, kind) in keys {
        let degree = neighbours[v].len().max(1) as f32;
        let share = (accusers[&(v, kind)].len() as f32 / degree).min(1.0);
        out[v].kinds.push((kind, share));
    }
    for e in &mut out {
        let total: f32 = e.kinds.iter().map(|(_, p)| p).sum();
        if total > 1.0 {
            for (_, p) in &mut e.kinds {
                *p /= total;
            }
        }
    }
    out
}
