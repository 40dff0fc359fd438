//! GraphSAGE over the neighbour graph (feature `graph`): a 2-layer model with a mean
//! aggregator over sampled neighbours (Hamilton, Ying, Leskovec, NeurIPS 2017), on candle, and
//! its weights as a signed, content-addressed, versioned `patterns.bin`.
//!
//! Layer k computes `h_v = W_k · [h_v ‖ mean(h_u for u in sample_k(N(v)))] + b_k`, with a
//! ReLU after the first layer; the second layer's outputs are the class logits of each node.
//! Without the graph (`SageConfig::use_graph = false`) the neighbour half of each input is
//! zero: the same model, blind to neighbours, which is the baseline the graph must beat.
//!
//! ```
//! use x0tta_analysis::graph::{Graph, GraphSage, SageConfig};
//! let g = Graph::new(vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]], &[(0, 1), (1, 2)])?;
//! let model = GraphSage::new(SageConfig { features: 2, hidden: 8, classes: 3, ..SageConfig::default() }, 7)?;
//! let classes = model.predict(&g, 1)?;
//! assert_eq!(classes.len(), 3);
//! # Ok::<(), x0tta_analysis::graph::GraphError>(())
//! ```

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Linear, Module, Optimizer, VarBuilder, VarMap};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use x0tta_core::{ContentId, Signer, Verifier};

use crate::sealed::{self, SealError};

/// Signing context of `patterns.bin`.
pub const PATTERNS_CONTEXT: &[u8] = b"x0tta/patterns/v1";
/// The `format` a `patterns.bin` must carry.
pub const PATTERNS_FORMAT: &str = "x0tta/patterns/1";
/// The model a `patterns.bin` holds.
pub const MODEL: &str = "graphsage-mean-2";
/// Largest `patterns.bin` accepted.
pub const MAX_PATTERNS_BYTES: usize = 16 << 20;
/// The weights of a model of shape `c`, names and shapes, in [`GraphSage::parameters`] order.
fn layout(c: SageConfig) -> [(&'static str, Vec<usize>); 4] {
    [
        ("l1.weight", vec![c.hidden, 2 * c.features]),
        ("l1.bias", vec![c.hidden]),
        ("l2.weight", vec![c.classes, 2 * c.hidden]),
        ("l2.bias", vec![c.classes]),
    ]
}

impl From<SealError> for GraphError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::TooLarge { len, max } => {
                Self::Malformed(format!("{len} bytes, more than the {max} accepted"))
            }
            SealError::Malformed(m) => Self::Malformed(m),
            SealError::Rejected(m) => Self::Rejected(m),
        }
    }
}

/// What can go wrong building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The tensor library failed (shapes, allocation).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A graph or configuration that cannot work.
    #[error("invalid: {0}")]
    Invalid(String),
    /// `patterns.bin` is not a signed patterns record (malformed, truncated, oversized).
    #[error("patterns.bin is malformed: {0}")]
    Malformed(String),
    /// Its signature does not verify.
    #[error("patterns.bin rejected: {0}")]
    Rejected(String),
    /// It holds another model, format or shape than asked for.
    #[error("patterns.bin does not fit: {0}")]
    Mismatch(String),
    /// Reading or writing the file failed.
    #[error("patterns.bin: {0}")]
    Io(#[from] std::io::Error),
}

/// A graph: one feature vector per node, undirected edges.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    features: Vec<Vec<f32>>,
    neighbours: Vec<Vec<usize>>,
}

impl Graph {
    /// A graph of `features.len()` nodes (all vectors the same length) and `edges`.
    pub fn new(features: Vec<Vec<f32>>, edges: &[(usize, usize)]) -> Result<Self, GraphError> {
        let n = features.len();
        if n == 0 {
            return Err(GraphError::Invalid("a graph needs a node".into()));
        }
        let d = features[0].len();
        if d == 0 || features.iter().any(|f| f.len() != d) {
            return Err(GraphError::Invalid(
                "every node needs the same, non-zero number of features".into(),
            ));
        }
        if features.iter().flatten().any(|x| !x.is_finite()) {
            return Err(GraphError::Invalid("features must be finite".into()));
        }
        let mut neighbours = vec![Vec::new(); n];
        for &(a, b) in edges {
            if a >= n || b >= n {
                return Err(GraphError::Invalid(format!(
                    "edge ({a}, {b}) names a node beyond {n}"
                )));
            }
            if a != b && !neighbours[a].contains(&b) {
                neighbours[a].push(b);
                neighbours[b].push(a);
            }
        }
        Ok(Self {
            features,
            neighbours,
        })
    }

    /// Nodes.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Whether it has no node (never: [`Graph::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Features per node.
    pub fn features(&self) -> usize {
        self.features[0].len()
    }

    /// The neighbours of `v` (none for a node the graph does not have).
    pub fn neighbours(&self, v: usize) -> &[usize] {
        self.neighbours.get(v).map_or(&[], Vec::as_slice)
    }

    /// The features of `v`, if the graph has it.
    pub fn feature(&self, v: usize) -> Option<&[f32]> {
        self.features.get(v).map(Vec::as_slice)
    }

    fn feature_tensor(&self, dev: &Device) -> Result<Tensor, GraphError> {
        let flat: Vec<f32> = self.features.iter().flatten().copied().collect();
        Ok(Tensor::from_vec(flat, (self.len(), self.features()), dev)?)
    }

    /// Up to `sample` neighbours of every node (all of them when it has no more, a sample
    /// drawn with `rng` otherwise), as gather indices (nodes × sample) and mean weights
    /// (nodes × sample × 1; padding weighs 0). Memory is O(nodes × sample), never O(nodes²).
    fn sample(
        &self,
        sample: usize,
        rng: &mut SmallRng,
        dev: &Device,
    ) -> Result<Sampled, GraphError> {
        let n = self.len();
        let s = sample.max(1);
        let mut idx = Vec::with_capacity(n * s);
        let mut w = Vec::with_capacity(n * s);
        for v in 0..n {
            let all = &self.neighbours[v];
            let chosen: Vec<usize> = if all.len() <= s {
                all.clone()
            } else {
                all.choose_multiple(rng, s).copied().collect()
            };
            let weight = if chosen.is_empty() {
                0.0
            } else {
                1.0 / chosen.len() as f32
            };
            for k in 0..s {
                match chosen.get(k) {
                    Some(&u) => {
                        idx.push(u as u32);
                        w.push(weight);
                    }
                    None => {
                        idx.push(v as u32);
                        w.push(0.0);
                    }
                }
            }
        }
        Ok(Sampled {
            idx: Tensor::from_vec(idx, n * s, dev)?,
            weights: Tensor::from_vec(w, (n, s, 1), dev)?,
            nodes: n,
            per_node: s,
        })
    }
}

/// Sampled neighbours of every node, ready to gather.
struct Sampled {
    idx: Tensor,
    weights: Tensor,
    nodes: usize,
    per_node: usize,
}

impl Sampled {
    /// The mean of the sampled neighbours' rows of `h` (nodes × d).
    fn mean(&self, h: &Tensor) -> Result<Tensor, GraphError> {
        let d = h.dim(1)?;
        Ok(h.index_select(&self.idx, 0)?
            .reshape((self.nodes, self.per_node, d))?
            .broadcast_mul(&self.weights)?
            .sum(1)?)
    }
}

/// Shape and sampling of a [`GraphSage`] model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SageConfig {
    /// Input features per node.
    pub features: usize,
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Classes (normal plus one per anomaly kind, in the caller's order).
    pub classes: usize,
    /// Neighbours sampled per node in layer 1 and layer 2.
    pub samples: [usize; 2],
    /// Whether neighbours are aggregated (false: the no-graph baseline).
    pub use_graph: bool,
}

impl Default for SageConfig {
    fn default() -> Self {
        Self {
            features: 8,
            hidden: 32,
            classes: 2,
            samples: [10, 5],
            use_graph: true,
        }
    }
}

/// A 2-layer GraphSAGE classifier of nodes.
pub struct GraphSage {
    cfg: SageConfig,
    varmap: VarMap,
    l1: Linear,
    l2: Linear,
    device: Device,
    seed: u64,
}

impl std::fmt::Debug for GraphSage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSage")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// One labelled graph for training: a class per node.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The graph.
    pub graph: Graph,
    /// Each node's class, `< classes`.
    pub labels: Vec<u32>,
}

impl Labelled {
    /// The disjoint union of `parts` as one graph (node indices shifted), for training on
    /// many graphs in one step.
    pub fn union(parts: &[Labelled]) -> Result<Self, GraphError> {
        let mut features = Vec::new();
        let mut edges = Vec::new();
        let mut labels = Vec::new();
        for p in parts {
            let base = features.len();
            for v in 0..p.graph.len() {
                for &u in p.graph.neighbours(v).iter().filter(|&&u| u > v) {
                    edges.push((base + v, base + u));
                }
            }
            features.extend(p.graph.features.iter().cloned());
            labels.extend_from_slice(&p.labels);
        }
        Ok(Self {
            graph: Graph::new(features, &edges)?,
            labels,
        })
    }
}

impl GraphSage {
    /// A model with weights initialised from `seed` (CPU).
    pub fn new(cfg: SageConfig, seed: u64) -> Result<Self, GraphError> {
        if cfg.features == 0 || cfg.hidden == 0 || cfg.classes < 2 {
            return Err(GraphError::Invalid(
                "features and hidden must be positive, classes at least 2".into(),
            ));
        }
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let l1 = candle_nn::linear(2 * cfg.features, cfg.hidden, vb.pp("l1"))?;
        let l2 = candle_nn::linear(2 * cfg.hidden, cfg.classes, vb.pp("l2"))?;
        let mut model = Self {
            cfg,
            varmap,
            l1,
            l2,
            device,
            seed,
        };
        // candle cannot seed its CPU generator: draw the initial weights here, uniform in
        // ±1/√fan_in as candle's own linear layers do, from `seed`.
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut uniform = |n: usize, fan_in: usize| -> Vec<f32> {
            let k = 1.0 / (fan_in as f32).sqrt();
            (0..n).map(|_| rng.random_range(-k..k)).collect()
        };
        let (f, h, c) = (cfg.features, cfg.hidden, cfg.classes);
        let init = HashMap::from([
            ("l1.weight", uniform(h * 2 * f, 2 * f)),
            ("l1.bias", uniform(h, 2 * f)),
            ("l2.weight", uniform(c * 2 * h, 2 * h)),
            ("l2.bias", uniform(c, 2 * h)),
        ]);
        model.set_weights(&init)?;
        Ok(model)
    }

    /// The configuration.
    pub fn config(&self) -> SageConfig {
        self.cfg
    }

    /// Sets the weights: `l1.weight` (hidden × 2·features), `l1.bias` (hidden),
    /// `l2.weight` (classes × 2·hidden), `l2.bias` (classes), as row-major values.
    pub fn set_weights(&mut self, weights: &HashMap<&str, Vec<f32>>) -> Result<(), GraphError> {
        for (name, shape) in layout(self.cfg) {
            let v = weights
                .get(name)
                .ok_or_else(|| GraphError::Invalid(format!("{name} missing")))?;
            let t = Tensor::from_vec(v.clone(), shape, &self.device)
                .map_err(|e| GraphError::Invalid(format!("{name}: {e}")))?;
            self.varmap.set_one(name, t)?;
        }
        Ok(())
    }

    /// Number of weights: what [`parameters`](Self::parameters) returns.
    pub fn parameter_count(&self) -> usize {
        layout(self.cfg)
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }

    /// Every weight, flattened in a fixed order (`l1.weight`, `l1.bias`, `l2.weight`,
    /// `l2.bias`, each row-major): the vector federated learning exchanges.
    pub fn parameters(&self) -> Result<Vec<f32>, GraphError> {
        let vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| GraphError::Invalid("the weight table is poisoned".into()))?;
        let mut out = Vec::with_capacity(self.parameter_count());
        for (name, _) in layout(self.cfg) {
            let v = vars
                .get(name)
                .ok_or_else(|| GraphError::Invalid(format!("{name} missing")))?;
            out.extend(v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Sets every weight from a vector laid out as [`parameters`](Self::parameters) returns.
    pub fn set_parameters(&mut self, flat: &[f32]) -> Result<(), GraphError> {
        if flat.len() != self.parameter_count() {
            return Err(GraphError::Invalid(format!(
                "{} parameters for a model of {}",
                flat.len(),
                self.parameter_count()
            )));
        }
        let mut at = 0;
        let mut weights = HashMap::new();
        for (name, shape) in layout(self.cfg) {
            let n: usize = shape.iter().product();
            weights.insert(name, flat[at..at + n].to_vec());
            at += n;
        }
        self.set_weights(&weights)
    }

    /// An independent copy (its own weights).
    pub fn try_clone(&self) -> Result<Self, GraphError> {
        let mut copy = Self::new(self.cfg, self.seed)?;
        copy.set_parameters(&self.parameters()?)?;
        Ok(copy)
    }

    /// Class logits of every node (nodes × classes), neighbours sampled with `seed`.
    pub fn logits(&self, g: &Graph, seed: u64) -> Result<Tensor, GraphError> {
        if g.features() != self.cfg.features {
            return Err(GraphError::Invalid(format!(
                "the graph has {} features per node, the model {}",
                g.features(),
                self.cfg.features
            )));
        }
        let x = g.feature_tensor(&self.device)?;
        if !self.cfg.use_graph {
            let h = self
                .l1
                .forward(&Tensor::cat(&[&x, &x.zeros_like()?], 1)?)?
                .relu()?;
            return Ok(self.l2.forward(&Tensor::cat(&[&h, &h.zeros_like()?], 1)?)?);
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let s1 = g.sample(self.cfg.samples[0], &mut rng, &self.device)?;
        let s2 = g.sample(self.cfg.samples[1], &mut rng, &self.device)?;
        let h = self
            .l1
            .forward(&Tensor::cat(&[&x, &s1.mean(&x)?], 1)?)?
            .relu()?;
        Ok(self.l2.forward(&Tensor::cat(&[&h, &s2.mean(&h)?], 1)?)?)
    }

    /// The most likely class of every node.
    pub fn predict(&self, g: &Graph, seed: u64) -> Result<Vec<u32>, GraphError> {
        Ok(self.logits(g, seed)?.argmax(D::Minus1)?.to_vec1::<u32>()?)
    }

    /// Class probabilities of every node (softmax of the logits).
    pub fn probabilities(&self, g: &Graph, seed: u64) -> Result<Vec<Vec<f32>>, GraphError> {
        let p = candle_nn::ops::softmax(&self.logits(g, seed)?, D::Minus1)?;
        Ok(p.to_vec2::<f32>()?)
    }

    /// Trains on `data` for `epochs` passes with AdamW at `lr`; returns the mean loss of each
    /// epoch. Neighbour samples are drawn afresh for every graph and epoch.
    pub fn train(
        &mut self,
        data: &[Labelled],
        epochs: usize,
        lr: f64,
    ) -> Result<Vec<f32>, GraphError> {
        for d in data {
            if d.labels.len() != d.graph.len() {
                return Err(GraphError::Invalid("one label per node".into()));
            }
            if d.labels.iter().any(|&l| l as usize >= self.cfg.classes) {
                return Err(GraphError::Invalid("a label beyond the classes".into()));
            }
        }
        let mut opt = candle_nn::AdamW::new(
            self.varmap.all_vars(),
            candle_nn::ParamsAdamW {
                lr,
                ..Default::default()
            },
        )?;
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0x5a5a_5a5a);
        let mut losses = Vec::with_capacity(epochs);
        for _ in 0..epochs {
            let mut sum = 0.0f32;
            for d in data {
                let logits = self.logits(&d.graph, rng.random())?;
                let target = Tensor::from_vec(d.labels.clone(), d.labels.len(), &self.device)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &target)?;
                opt.backward_step(&loss)?;
                sum += loss.to_scalar::<f32>()?;
            }
            losses.push(sum / data.len().max(1) as f32);
        }
        Ok(losses)
    }

    /// The weights alone as safetensors bytes (unsigned: for other tools; what
    /// `patterns.bin` wraps).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, GraphError> {
        let vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| GraphError::Invalid("the weight table is poisoned".into()))?;
        let tensors: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        drop(vars);
        safetensors::serialize(tensors, None)
            .map_err(|e| GraphError::Invalid(format!("serialising the weights: {e}")))
    }

    /// The signed `patterns.bin` bytes of this model, and their content id.
    pub fn to_patterns(
        &self,
        version: u64,
        signer: &dyn Signer,
    ) -> Result<(Vec<u8>, ContentId), GraphError> {
        let record = Patterns {
            format: PATTERNS_FORMAT.into(),
            model: MODEL.into(),
            version,
            config: self.cfg,
            weights: serde_bytes::ByteBuf::from(self.to_safetensors()?),
        };
        let bytes = sealed::seal(&record, signer, PATTERNS_CONTEXT, MAX_PATTERNS_BYTES)?;
        let id = ContentId::of_dag_cbor(&bytes);
        Ok((bytes, id))
    }

    /// A model from `patterns.bin` bytes: decoded, its signature verified with `verifier`,
    /// its format and model checked, its weights loaded. Returns the model, the version and the
    /// content id.
    pub fn from_patterns(
        bytes: &[u8],
        verifier: &dyn Verifier,
    ) -> Result<(Self, u64, ContentId), GraphError> {
        let (p, _): (Patterns, _) =
            sealed::open(bytes, verifier, PATTERNS_CONTEXT, MAX_PATTERNS_BYTES)?;
        if p.format != PATTERNS_FORMAT || p.model != MODEL {
            return Err(GraphError::Mismatch(format!(
                "format {} model {}, expected {PATTERNS_FORMAT} {MODEL}",
                p.format, p.model
            )));
        }
        let mut model = Self::new(p.config, 0)?;
        let tensors = candle_core::safetensors::load_buffer(&p.weights, &model.device)
            .map_err(|e| GraphError::Malformed(format!("weights: {e}")))?;
        for (name, _) in layout(p.config) {
            let t = tensors
                .get(name)
                .ok_or_else(|| GraphError::Mismatch(format!("weights lack {name}")))?;
            model
                .varmap
                .set_one(name, t)
                .map_err(|e| GraphError::Mismatch(format!("{name}: {e}")))?;
        }
        Ok((model, p.version, ContentId::of_dag_cbor(bytes)))
    }
}

/// The signed record of `patterns.bin`.
#[derive(Debug, Serialize, Deserialize)]
struct Patterns {
    format: String,
    model: String,
    version: u64,
    config: SageConfig,
    weights: serde_bytes::ByteBuf,
}
