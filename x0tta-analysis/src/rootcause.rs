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

/// x0tta-core's [`RootCauseRanker`](x0tta_core::RootCauseRanker) over what this node and its
/// peers reported: the node's own neighbour table (peers not up, clocks off, lossy links),
/// the anomaly at hand and the unhealed incidents of the last `window` in the knowledge store
/// (its own and, replicated, its peers'). Reports about a peer or a link become
/// [`Accusation`]s; reports
/// about a node's own host or services count as that node's own evidence with the anomaly's
/// confidence. [`RootCause::rank`] then names the culprit.
///
/// Similar past incidents set the priors: the knowledge store's search for the anomaly's text
/// (same kind, older than the window, at most 20 hits) returns earlier incidents; in each
/// healed one, the culprit named first was blamed and the runner-up cleared. A candidate
/// blamed `b` times and cleared `c` times has its score multiplied by `(1 + b) / (1 + c)`,
/// within 0.5..=2, and the incident's evidence says so.
///
/// ```
/// use std::sync::Arc;
/// use x0tta_analysis::rootcause::MeshRootCause;
/// use x0tta_core::healing::DefaultHealer;
/// let healer = DefaultHealer::builder().root_cause(Arc::new(MeshRootCause::new())).build();
/// ```
#[derive(Debug, Clone)]
pub struct MeshRootCause {
    window: std::time::Duration,
    recent: usize,
    similar: usize,
}

impl Default for MeshRootCause {
    fn default() -> Self {
        Self::new()
    }
}

/// Clock offsets beyond this make a peer's clock suspect.
const OFFSET_LIMIT_MS: i64 = 1000;
/// Loss beyond this makes a link suspect.
const LOSS_LIMIT: f64 = 0.2;

impl MeshRootCause {
    /// Looks at the last 60 s and at most 256 recent incidents.
    pub fn new() -> Self {
        Self {
            window: std::time::Duration::from_secs(60),
            recent: 256,
            similar: 20,
        }
    }

    /// Sets how far back incidents count.
    pub fn window(mut self, window: std::time::Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets how many similar past incidents set the priors (0: none).
    pub fn similar(mut self, incidents: usize) -> Self {
        self.similar = incidents;
        self
    }

    /// Priors from similar past incidents, for the candidates among `g`'s nodes.
    async fn priors(
        &self,
        anomaly: &x0tta_core::Anomaly,
        before_ms: u64,
        g: &Gathered,
        knowledge: &dyn x0tta_core::KnowledgeStore,
    ) -> RootCause {
        let mut ranker = RootCause::new();
        if self.similar == 0 {
            return ranker;
        }
        let mut q = x0tta_core::SearchQuery::text(anomaly.to_text());
        q.kind = Some(anomaly.kind);
        q.limit = self.similar;
        q.filter.until = Some(x0tta_core::Timestamp::from_millis(before_ms));
        let hits = knowledge.search(&q).await.unwrap_or_default();
        let mut tally: HashMap<Candidate, (u32, u32)> = HashMap::new();
        let candidate = |named: &Named| match named {
            Named::Node(id) => g.find(id).map(Candidate::Node),
            Named::Link(a, b) => Some(Candidate::Link(g.find(a)?, g.find(b)?)),
        };
        for h in hits.iter().filter(|h| h.incident.healed()) {
            let Some(line) = &h.incident.root_cause else {
                continue;
            };
            let (top, next) = named_in(line);
            if let Some(c) = top.as_ref().and_then(candidate) {
                tally.entry(c).or_default().0 += 1;
            }
            if let Some(c) = next.as_ref().and_then(candidate) {
                tally.entry(c).or_default().1 += 1;
            }
        }
        let mut tally: Vec<_> = tally.into_iter().collect();
        tally.sort_by_key(|(c, _)| *c);
        for (c, (blamed, cleared)) in tally {
            let factor = f64::from(1 + blamed) / f64::from(1 + cleared);
            ranker = ranker.prior(c, factor.clamp(0.5, 2.0));
        }
        ranker
    }
}

/// A culprit as an incident's root-cause line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    Node(String),
    Link(String, String),
}

/// The culprit and the runner-up named in a root-cause line that [`MeshRootCause`] wrote
/// (`node X (KIND): …; next: link A–B (KIND, …)`, `service S on X (KIND): …`).
fn named_in(line: &str) -> (Option<Named>, Option<Named>) {
    fn one(part: &str) -> Option<Named> {
        let head = part.split(" (").next()?.trim();
        if let Some(rest) = head.strip_prefix("link ") {
            let (a, b) = rest.split_once('–')?;
            return Some(Named::Link(a.to_string(), b.to_string()));
        }
        if let Some(rest) = head.strip_prefix("service ") {
            let (_, node) = rest.rsplit_once(" on ")?;
            return Some(Named::Node(node.to_string()));
        }
        head.strip_prefix("node ")
            .map(|n| Named::Node(n.to_string()))
    }
    let next = line.rsplit_once("; next: ").and_then(|(_, n)| one(n));
    (one(line), next)
}

/// Nodes met while gathering evidence, with what they said.
#[derive(Default)]
struct Gathered {
    ids: Vec<x0tta_core::NodeId>,
    index: HashMap<x0tta_core::NodeId, usize>,
    edges: std::collections::BTreeSet<(usize, usize)>,
    said: Vec<Accusation>,
    /// (node, kind, confidence, time, service name).
    own: Vec<(usize, AnomalyKind, f32, f64, Option<String>)>,
}

impl Gathered {
    fn node(&mut self, id: &x0tta_core::NodeId) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        self.ids.push(id.clone());
        self.index.insert(id.clone(), self.ids.len() - 1);
        self.ids.len() - 1
    }

    fn find(&self, id: &str) -> Option<usize> {
        let id = x0tta_core::NodeId::new(id).ok()?;
        self.index.get(&id).copied()
    }

    fn accuse(&mut self, by: usize, about: usize, kind: AnomalyKind, at: f64) {
        if by != about {
            self.edges.insert((by.min(about), by.max(about)));
            self.said.push(Accusation {
                by,
                about,
                kind,
                at,
            });
        }
    }

    fn report(&mut self, reporter: &x0tta_core::NodeId, a: &x0tta_core::Anomaly, at: f64) {
        use x0tta_core::Subject;
        let by = self.node(reporter);
        match &a.subject {
            Subject::Peer(p) => {
                let about = self.node(p);
                self.accuse(by, about, a.kind, at);
            }
            Subject::Link(p) => {
                let about = self.node(p);
                self.accuse(by, about, AnomalyKind::LinkDegraded, at);
                self.accuse(about, by, AnomalyKind::LinkDegraded, at);
            }
            Subject::Service(name) => {
                self.own
                    .push((by, a.kind, a.confidence as f32, at, Some(name.clone())));
            }
            _ => {
                self.own.push((by, a.kind, a.confidence as f32, at, None));
            }
        }
    }
}

#[async_trait::async_trait]
impl x0tta_core::RootCauseRanker for MeshRootCause {
    fn name(&self) -> &str {
        "mesh-root-cause"
    }

    async fn root_cause(
        &self,
        anomaly: &x0tta_core::Anomaly,
        obs: &x0tta_core::Observation,
        knowledge: &dyn x0tta_core::KnowledgeStore,
    ) -> Option<String> {
        use x0tta_core::PeerState;
        let mut g = Gathered::default();
        let me = g.node(&obs.node);
        for n in &obs.neighbours {
            let j = g.node(&n.id);
            g.edges.insert((me.min(j), me.max(j)));
            if matches!(n.state, PeerState::Down | PeerState::Suspect) {
                g.accuse(me, j, AnomalyKind::NodeFailure, 0.0);
            }
            if n.clock_offset_ms.is_some_and(|o| o.abs() > OFFSET_LIMIT_MS) {
                g.accuse(me, j, AnomalyKind::ClockSkew, 0.0);
            }
            if n.state == PeerState::Up && n.loss > LOSS_LIMIT {
                g.accuse(me, j, AnomalyKind::LinkDegraded, 0.0);
                g.accuse(j, me, AnomalyKind::LinkDegraded, 0.0);
            }
        }
        let now = obs.at.as_millis() as f64;
        let window = self.window.as_millis() as f64;
        for (_, inc) in knowledge.recent(self.recent).await.unwrap_or_default() {
            let t = (inc.detected_at.as_millis() as f64 - now) / 1000.0;
            // A healed incident is over: it explains nothing that is happening now.
            if t.abs() * 1000.0 <= window && !inc.healed() {
                g.report(&inc.node, &inc.anomaly, t);
            }
        }
        g.report(&obs.node, anomaly, 0.0);

        let n = g.ids.len();
        let mut neighbours = vec![Vec::new(); n];
        for &(a, b) in &g.edges {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
        let mut evidence = evidence_from_accusations(&neighbours, &g.said);
        let mut services: HashMap<usize, String> = HashMap::new();
        for (v, kind, p, at, service) in &g.own {
            let e = &mut evidence[*v];
            match e.kinds.iter_mut().find(|(k, _)| k == kind) {
                Some((_, q)) => *q = q.max(p.clamp(0.0, 1.0)),
                None => e.kinds.push((*kind, p.clamp(0.0, 1.0))),
            }
            e.onset = Some(e.onset.map_or(*at, |t: f64| t.min(*at)));
            if let Some(s) = service {
                services.insert(*v, s.clone());
            }
        }
        for e in &mut evidence {
            let total: f32 = e.kinds.iter().map(|(_, p)| p).sum();
            if total > 1.0 {
                for (_, p) in &mut e.kinds {
                    *p /= total;
                }
            }
        }
        let before = (now - window).max(0.0) as u64;
        let ranker = self.priors(anomaly, before, &g, knowledge).await;
        let ranked = ranker.rank(&neighbours, &evidence, 2).ok()?;
        let top = ranked.first()?;
        let name = |c: &Candidate, kind: AnomalyKind| match *c {
            Candidate::Node(v) => match services.get(&v) {
                Some(s)
                    if kind == AnomalyKind::ServiceDown || kind == AnomalyKind::MemoryPressure =>
                {
                    format!("service {s} on {}", g.ids[v])
                }
                _ => format!("node {}", g.ids[v]),
            },
            Candidate::Link(a, b) => format!("link {}–{}", g.ids[a], g.ids[b]),
        };
        let mut line = format!(
            "{} ({}): {}",
            name(&top.candidate, top.kind),
            top.kind.as_str(),
            top.evidence.join("; ")
        );
        if let Some(next) = ranked.get(1) {
            line.push_str(&format!(
                "; next: {} ({}, score {:.2} vs {:.2})",
                name(&next.candidate, next.kind),
                next.kind.as_str(),
                next.score,
                top.score
            ));
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_it_writes_name_their_culprits_back() {
        let node = |s: &str| Some(Named::Node(s.into()));
        assert_eq!(
            named_in(
                "node x (NODE_FAILURE): 3 of 3 neighbours alarmed; next: node b (NODE_FAILURE, score 0.20 vs 0.90)"
            ),
            (node("x"), node("b"))
        );
        assert_eq!(
            named_in("service web on a (SERVICE_DOWN): reported by a"),
            (node("a"), None)
        );
        assert_eq!(
            named_in(
                "link a–y (LINK_DEGRADED): both ends; next: service db on my node (MEMORY_PRESSURE, score 1 vs 2)"
            ),
            (Some(Named::Link("a".into(), "y".into())), node("my node"))
        );
        assert_eq!(named_in("the disk filled up"), (None, None));
        assert_eq!(named_in(""), (None, None));
    }
}
