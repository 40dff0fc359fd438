//! Federated learning of the GraphSAGE model (feature `graph`): each node trains on its own
//! labelled incidents, publishes a signed, norm-clipped, size-bounded update on
//! [`FL_TOPIC`], and folds in everyone's updates with a Byzantine-robust rule.
//!
//! A round: every node starts from the same global weights, trains a copy on its local data
//! ([`Federation::local_update`]), clips the change to [`FlConfig::clip_norm`] and seals it
//! ([`Federation::seal`]: DAG-CBOR in an [`Envelope`](x0tta_core::Envelope) signed under
//! [`FL_CONTEXT`]). What a node receives it opens ([`Federation::open`]): size bound first,
//! then the canonical encoding, the signature, the round, the model's shape and finite values,
//! and the norm bound [`FlConfig::max_norm`] if set. It then combines the accepted updates with its [`Rule`]
//! ([`Federation::apply`]) and moves to the next round.
//!
//! The rules, for `n` updates of which up to `f` may be forged:
//! - [`Rule::FedAvg`]: the plain mean (McMahan et al. 2017), kept for comparison: one update
//!   scaled ×100 is enough to wreck it;
//! - [`Rule::Median`]: the coordinate-wise median (Yin et al. 2018);
//! - [`Rule::TrimmedMean`]: per coordinate, drop the `trim` share of the highest and of the
//!   lowest values and average the rest (Yin et al. 2018); robust while `trim·n ≥ f`;
//! - [`Rule::Krum`]: Multi-Krum (Blanchard et al., NeurIPS 2017): score each update by the
//!   sum of squared distances to its `n − f − 2` nearest others and average the `n − f`
//!   best-scored; needs `n > 2f + 2`.
//!
//! ```
//! use x0tta_analysis::federated::{Rule, aggregate};
//! let updates = vec![vec![1.0, 1.0], vec![1.2, 0.8], vec![0.9, 1.1], vec![-100.0, 100.0]];
//! let robust = aggregate(Rule::Median, &updates)?;
//! assert!((robust[0] - 0.95).abs() < 1e-6 && (robust[1] - 1.05).abs() < 1e-6);
//! let plain = aggregate(Rule::FedAvg, &updates)?;
//! assert!(plain[0] < -20.0);
//! # Ok::<(), x0tta_analysis::federated::FlError>(())
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use x0tta_core::{NodeId, Signer, Verifier};

use crate::graph::{GraphError, GraphSage, Labelled, MODEL, SageConfig};
use crate::sealed::{self, SealError};

mod participant;
pub use participant::{Participant, RoundReport};

/// The gossip topic updates travel on.
pub const FL_TOPIC: &str = "x0tta/fl/1";
/// Signing context of an update.
pub const FL_CONTEXT: &[u8] = b"x0tta/fl/v1";
/// Largest sealed update accepted, in bytes (a 10-feature, 32-hidden, 8-class model's update
/// is about 8 KiB with its ML-DSA-65 signature).
pub const MAX_UPDATE_BYTES: usize = 256 * 1024;

/// What went wrong in a round.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlError {
    /// The update is bigger than [`MAX_UPDATE_BYTES`].
    #[error("update of {0} bytes, more than the {MAX_UPDATE_BYTES} accepted")]
    TooLarge(usize),
    /// It does not decode, or is not the canonical encoding of what it says.
    #[error("malformed update: {0}")]
    Malformed(String),
    /// Its signature does not verify.
    #[error("update rejected: {0}")]
    Rejected(String),
    /// It is for another round, model or shape.
    #[error("update does not fit: {0}")]
    Mismatch(String),
    /// It holds a value that is not finite, or its norm is above the bound.
    #[error("update out of bounds: {0}")]
    OutOfBounds(String),
    /// This sender already has an update in this round.
    #[error("a second update from {0} in this round")]
    Duplicate(NodeId),
    /// Too few updates for the rule (Krum needs `n > 2f + 2`), or none at all.
    #[error("cannot aggregate: {0}")]
    TooFew(String),
    /// An unknown rule name.
    #[error("unknown aggregation rule {0:?} (fedavg, median, trimmed_mean, krum)")]
    UnknownRule(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] GraphError),
}

impl From<SealError> for FlError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::TooLarge { len, .. } => Self::TooLarge(len),
            SealError::Malformed(m) => Self::Malformed(m),
            SealError::Rejected(m) => Self::Rejected(m),
        }
    }
}

/// How a node combines the updates it accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// The plain mean (not robust: for comparison).
    FedAvg,
    /// The coordinate-wise median.
    Median,
    /// The coordinate-wise mean after dropping the `trim` share (0..0.5) at each end.
    TrimmedMean {
        /// Share dropped at each end.
        trim: f32,
    },
    /// Multi-Krum: the mean of the `n − byzantine` updates nearest to their
    /// `n − byzantine − 2` closest others.
    Krum {
        /// Forged updates it must withstand.
        byzantine: usize,
    },
}

impl FromStr for Rule {
    type Err = FlError;

    /// `fedavg`, `median`, `trimmed_mean` (trims a third) or `krum` (withstands a third).
    fn from_str(s: &str) -> Result<Self, FlError> {
        Ok(match s {
            "fedavg" => Self::FedAvg,
            "median" => Self::Median,
            "trimmed_mean" => Self::TrimmedMean { trim: 1.0 / 3.0 },
            "krum" => Self::Krum { byzantine: 0 },
            other => return Err(FlError::UnknownRule(other.into())),
        })
    }
}

impl Rule {
    /// Its name, as [`FromStr`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::FedAvg => "fedavg",
            Self::Median => "median",
            Self::TrimmedMean { .. } => "trimmed_mean",
            Self::Krum { .. } => "krum",
        }
    }
}

fn same_length(updates: &[Vec<f32>]) -> Result<usize, FlError> {
    let d = updates
        .first()
        .ok_or_else(|| FlError::TooFew("no update".into()))?
        .len();
    if updates.iter().any(|u| u.len() != d) {
        return Err(FlError::Mismatch("updates of different lengths".into()));
    }
    Ok(d)
}

/// Combines `updates` (all the same length) with `rule`. For [`Rule::Krum`] with
/// `byzantine: 0`, a third of the updates (rounded down) is assumed forged.
pub fn aggregate(rule: Rule, updates: &[Vec<f32>]) -> Result<Vec<f32>, FlError> {
    let d = same_length(updates)?;
    let n = updates.len();
    match rule {
        Rule::FedAvg => Ok(mean(updates.iter(), d)),
        Rule::Median | Rule::TrimmedMean { .. } => {
            let drop = match rule {
                Rule::TrimmedMean { trim } => {
                    let t = if trim.is_finite() {
                        trim.clamp(0.0, 0.49)
                    } else {
                        0.0
                    };
                    (t * n as f32).floor() as usize
                }
                _ => 0,
            };
            let mut column = vec![0.0f32; n];
            let mut out = Vec::with_capacity(d);
            for i in 0..d {
                for (c, u) in column.iter_mut().zip(updates) {
                    *c = u[i];
                }
                column.sort_unstable_by(f32::total_cmp);
                out.push(if matches!(rule, Rule::Median) {
                    if n % 2 == 1 {
                        column[n / 2]
                    } else {
                        (column[n / 2 - 1] + column[n / 2]) / 2.0
                    }
                } else {
                    let kept = &column[drop..n - drop];
                    kept.iter().map(|x| f64::from(*x)).sum::<f64>() as f32 / kept.len() as f32
                });
            }
            Ok(out)
        }
        Rule::Krum { byzantine } => {
            let f = if byzantine == 0 { n / 3 } else { byzantine };
            if n < 2 * f + 3 {
                return Err(FlError::TooFew(format!(
                    "Krum withstanding {f} needs at least {} updates, got {n}",
                    2 * f + 3
                )));
            }
            let closest = n - f - 2;
            let mut dist = vec![vec![0.0f64; n]; n];
            for i in 0..n {
                for j in i + 1..n {
                    let s: f64 = updates[i]
                        .iter()
                        .zip(&updates[j])
                        .map(|(a, b)| f64::from(a - b).powi(2))
                        .sum();
                    dist[i][j] = s;
                    dist[j][i] = s;
                }
            }
            let score = |i: usize| {
                let mut row: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| dist[i][j]).collect();
                row.sort_unstable_by(f64::total_cmp);
                row[..closest].iter().sum::<f64>()
            };
            // Multi-Krum: the mean of the n − f best-scored updates.
            let mut scored: Vec<(usize, f64)> = (0..n).map(|i| (i, score(i))).collect();
            scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            Ok(mean(scored[..n - f].iter().map(|(i, _)| &updates[*i]), d))
        }
    }
}

/// The coordinate-wise mean of `rows` (each `d` long; at least one).
fn mean<'a>(rows: impl Iterator<Item = &'a Vec<f32>>, d: usize) -> Vec<f32> {
    let mut sum = vec![0.0f64; d];
    let mut n = 0usize;
    for r in rows {
        for (o, x) in sum.iter_mut().zip(r) {
            *o += f64::from(*x);
        }
        n += 1;
    }
    sum.into_iter()
        .map(|x| (x / n.max(1) as f64) as f32)
        .collect()
}

/// The L2 norm of `v`.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt() as f32
}

/// Scales `v` down to norm `max` if it is longer.
pub fn clip(v: &mut [f32], max: f32) {
    let n = norm(v);
    if n > max && n > 0.0 {
        let k = max / n;
        for x in v.iter_mut() {
            *x *= k;
        }
    }
}

/// How a node takes part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlConfig {
    /// How it combines updates.
    pub rule: Rule,
    /// The L2 norm it clips its own update to.
    pub clip_norm: f32,
    /// Updates longer than this are refused (`None`: the rule alone deals with them).
    pub max_norm: Option<f32>,
    /// Local training per round: epochs over the node's own incidents.
    pub epochs: usize,
    /// Local learning rate.
    pub lr: f64,
}

impl Default for FlConfig {
    fn default() -> Self {
        Self {
            rule: Rule::Median,
            clip_norm: 10.0,
            max_norm: None,
            epochs: 20,
            lr: 0.03,
        }
    }
}

/// The signed record of one update.
#[derive(Debug, Serialize, Deserialize)]
struct UpdateRecord {
    model: String,
    config: SageConfig,
    round: u64,
    samples: u64,
    #[serde(with = "serde_bytes")]
    delta: Vec<u8>,
}

/// An update a node accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Who sent it.
    pub from: NodeId,
    /// Labelled graphs it was trained on, as the sender says.
    pub samples: u64,
    /// The change to the global weights.
    pub delta: Vec<f32>,
}

/// One node's side of federated learning: the global model and the round it is in.
#[derive(Debug)]
pub struct Federation {
    model: GraphSage,
    cfg: FlConfig,
    round: u64,
    /// Updates accepted in this round, one per sender (at most one per trusted key).
    pending: BTreeMap<NodeId, Update>,
}

impl Federation {
    /// Starts at round 0 from `model`'s weights.
    pub fn new(model: GraphSage, cfg: FlConfig) -> Self {
        Self {
            model,
            cfg,
            round: 0,
            pending: BTreeMap::new(),
        }
    }

    /// The global model.
    pub fn model(&self) -> &GraphSage {
        &self.model
    }

    /// The current round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The configuration.
    pub fn config(&self) -> FlConfig {
        self.cfg
    }

    /// Trains a copy of the global model on `data` (all of it in every step, for
    /// [`FlConfig::epochs`] steps) and returns the change, clipped to [`FlConfig::clip_norm`].
    pub fn local_update(&self, data: &[Labelled]) -> Result<Vec<f32>, FlError> {
        let before = self.model.parameters()?;
        let mut local = self.model.try_clone()?;
        // One step per epoch over all of the node's incidents at once.
        let batch = [Labelled::union(data)?];
        local.train(&batch, self.cfg.epochs, self.cfg.lr)?;
        let mut delta: Vec<f32> = local
            .parameters()?
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        clip(&mut delta, self.cfg.clip_norm);
        Ok(delta)
    }

    /// Seals `delta` for this round, signed by `signer`.
    pub fn seal(
        &self,
        delta: &[f32],
        samples: u64,
        signer: &dyn Signer,
    ) -> Result<Vec<u8>, FlError> {
        let record = UpdateRecord {
            model: MODEL.into(),
            config: self.model.config(),
            round: self.round,
            samples,
            delta: delta.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        Ok(sealed::seal(&record, signer, FL_CONTEXT, MAX_UPDATE_BYTES)?)
    }

    /// Opens an update received for this round: bounded, canonical, signed by a key
    /// `verifier` trusts, for this model and shape, finite, and within
    /// [`FlConfig::max_norm`].
    pub fn open(&self, bytes: &[u8], verifier: &dyn Verifier) -> Result<Update, FlError> {
        let (r, from): (UpdateRecord, NodeId) =
            sealed::open(bytes, verifier, FL_CONTEXT, MAX_UPDATE_BYTES)?;
        if r.model != MODEL || r.config != self.model.config() {
            return Err(FlError::Mismatch(format!(
                "model {} {:?}, expected {MODEL} {:?}",
                r.model,
                r.config,
                self.model.config()
            )));
        }
        if r.round != self.round {
            return Err(FlError::Mismatch(format!(
                "round {}, this node is in round {}",
                r.round, self.round
            )));
        }
        let want = self.model.parameter_count();
        if r.delta.len() != want * 4 {
            return Err(FlError::Mismatch(format!(
                "{} bytes of weights, the model has {want} weights",
                r.delta.len()
            )));
        }
        let delta: Vec<f32> = r
            .delta
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if delta.iter().any(|x| !x.is_finite()) {
            return Err(FlError::OutOfBounds("a weight is not finite".into()));
        }
        if let Some(max) = self.cfg.max_norm {
            let n = norm(&delta);
            if n > max {
                return Err(FlError::OutOfBounds(format!("norm {n:.3} above {max}")));
            }
        }
        Ok(Update {
            from,
            samples: r.samples,
            delta,
        })
    }

    /// Opens an update ([`open`](Self::open)) and keeps it for this round; a second one
    /// from the same sender is refused ([`FlError::Duplicate`]).
    pub fn offer(&mut self, bytes: &[u8], verifier: &dyn Verifier) -> Result<&Update, FlError> {
        let update = self.open(bytes, verifier)?;
        match self.pending.entry(update.from.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => {
                Err(FlError::Duplicate(e.key().clone()))
            }
            std::collections::btree_map::Entry::Vacant(e) => Ok(e.insert(update)),
        }
    }

    /// Moves to `round` under `cfg` (the policy's rule and norms for it); updates accepted
    /// for another round are dropped.
    pub fn enter(&mut self, round: u64, cfg: FlConfig) {
        if round != self.round {
            self.pending.clear();
            self.round = round;
        }
        self.cfg = cfg;
    }

    /// Updates accepted in this round.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Ends the round: combines this node's own update (if any) with those it accepted
    /// ([`apply`](Self::apply)); returns how many were combined.
    pub fn finish(&mut self, own: Option<Vec<f32>>) -> Result<usize, FlError> {
        let pending = std::mem::take(&mut self.pending);
        let deltas: Vec<Vec<f32>> = own
            .into_iter()
            .chain(pending.into_values().map(|u| u.delta))
            .collect();
        self.apply(&deltas)?;
        Ok(deltas.len())
    }

    /// Combines `deltas` with the rule, adds the result to the global weights and moves to
    /// the next round (dropping updates accepted for this one).
    pub fn apply(&mut self, deltas: &[Vec<f32>]) -> Result<(), FlError> {
        let step = aggregate(self.cfg.rule, deltas)?;
        let mut w = self.model.parameters()?;
        if step.len() != w.len() {
            return Err(FlError::Mismatch(format!(
                "{} weights in the updates, {} in the model",
                step.len(),
                w.len()
            )));
        }
        for (a, b) in w.iter_mut().zip(step) {
            *a += b;
        }
        self.model.set_parameters(&w)?;
        self.round += 1;
        self.pending.clear();
        Ok(())
    }
}

/// Federated learning across a simulated mesh (feature `eval`), with some nodes lying.
#[cfg(feature = "eval")]
pub mod sim {
    use std::sync::Arc;
    use std::time::Duration;

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use x0tta_core::{Signer, Transport, Verifier};
    use x0tta_mesh::sim::{SimConfig, SimNetwork};

    use super::{FL_TOPIC, Federation, FlConfig, FlError};
    use crate::graph::{GraphSage, Labelled, SageConfig};

    /// What a poisoned node sends instead of its honest update (Byzantine insiders: their
    /// updates are properly signed).
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Attack {
        /// The honest update, negated.
        SignFlip,
        /// The honest update times this factor.
        Scale(f32),
        /// Uniform noise in ±1 per weight.
        Random,
    }

    impl Attack {
        /// The mix the issue's test uses: node `i` of the liars sign-flips, scales ×100 or
        /// sends noise, in turn.
        pub fn mixed(i: usize) -> Self {
            match i % 3 {
                0 => Self::SignFlip,
                1 => Self::Scale(100.0),
                _ => Self::Random,
            }
        }

        fn apply(self, honest: &[f32], rng: &mut SmallRng) -> Vec<f32> {
            match self {
                Self::SignFlip => honest.iter().map(|x| -x).collect(),
                Self::Scale(k) => honest.iter().map(|x| x * k).collect(),
                Self::Random => honest.iter().map(|_| rng.random_range(-1.0..1.0)).collect(),
            }
        }
    }

    /// The run's shape.
    #[derive(Debug, Clone)]
    pub struct SimRun {
        /// Rounds.
        pub rounds: usize,
        /// How every node takes part.
        pub fl: FlConfig,
        /// The model.
        pub sage: SageConfig,
        /// Seed of the mesh, the initial weights and the noise.
        pub seed: u64,
        /// Simulated time a round waits for updates to spread.
        pub wait: Duration,
    }

    /// The result: an honest node's model and what the round cost.
    #[derive(Debug)]
    pub struct SimOutcome {
        /// The model every honest node ended with.
        pub model: GraphSage,
        /// Bytes of one sealed update.
        pub update_bytes: usize,
        /// Updates refused by honest nodes, in all rounds.
        pub refused: usize,
    }

    /// Runs `run.rounds` rounds among `signers.len()` nodes on a fresh simulated mesh; node
    /// `i` trains on `data[i]` and, if `attacks[i]` is set, sends that instead of its update.
    /// Every update crosses the mesh on [`FL_TOPIC`]; each node offers what it hears to its
    /// [`Federation`] and finishes the round with its own update. Fails if honest nodes end
    /// with different models. Must run inside a tokio runtime (paused clock: fastest).
    pub async fn run(
        run: &SimRun,
        data: &[Vec<Labelled>],
        attacks: &[Option<Attack>],
        signers: &[Arc<dyn Signer>],
        verifier: &dyn Verifier,
    ) -> Result<SimOutcome, FlError> {
        let n = signers.len();
        if data.len() != n || attacks.len() != n || n == 0 {
            return Err(FlError::TooFew(
                "one data set and one attack slot per signer".into(),
            ));
        }
        let sim_err = |e: x0tta_mesh::sim::SimError| FlError::Malformed(e.to_string());
        let net = SimNetwork::new(run.seed, SimConfig::default());
        let mut transports = Vec::with_capacity(n);
        let mut subs = Vec::with_capacity(n);
        for s in signers {
            let t = net.join(s.node_id().clone()).map_err(sim_err)?;
            subs.push(
                t.subscribe(FL_TOPIC)
                    .await
                    .map_err(|e| FlError::Malformed(e.to_string()))?,
            );
            transports.push(t);
        }
        tokio::time::sleep(run.wait).await;
        let mut feds = Vec::with_capacity(n);
        for _ in 0..n {
            feds.push(Federation::new(GraphSage::new(run.sage, run.seed)?, run.fl));
        }
        let mut rng = SmallRng::seed_from_u64(run.seed);
        let (mut update_bytes, mut refused) = (0, 0);
        for _ in 0..run.rounds {
            let mut own = Vec::with_capacity(n);
            for i in 0..n {
                let honest = feds[i].local_update(&data[i])?;
                let delta = match attacks[i] {
                    Some(a) => a.apply(&honest, &mut rng),
                    None => honest,
                };
                let bytes = feds[i].seal(&delta, data[i].len() as u64, signers[i].as_ref())?;
                update_bytes = bytes.len();
                transports[i]
                    .publish(FL_TOPIC, bytes)
                    .await
                    .map_err(|e| FlError::Malformed(e.to_string()))?;
                own.push(delta);
            }
            tokio::time::sleep(run.wait).await;
            for (i, delta) in own.into_iter().enumerate() {
                while let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_millis(1), subs[i].next()).await
                {
                    // Liars follow the protocol for receiving too: they hold the honest
                    // global model (the strongest attacker knows it) and their round stays
                    // current, so their poison is counted rather than refused as stale.
                    if feds[i].offer(&m.payload, verifier).is_err() && attacks[i].is_none() {
                        refused += 1;
                    }
                }
                feds[i].finish(Some(delta))?;
            }
        }
        net.shutdown();
        let honest: Vec<usize> = (0..n).filter(|&i| attacks[i].is_none()).collect();
        let Some(&first) = honest.first() else {
            return Err(FlError::TooFew("no honest node".into()));
        };
        let w = feds[first].model().parameters()?;
        for &i in &honest[1..] {
            if feds[i].model().parameters()? != w {
                return Err(FlError::Mismatch(
                    "honest nodes ended with different models".into(),
                ));
            }
        }
        Ok(SimOutcome {
            model: feds.swap_remove(first).model.try_clone()?,
            update_bytes,
            refused,
        })
    }
}
