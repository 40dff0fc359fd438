//! `x0tta6bl4 model train|show|export`: the node's GraphSAGE patterns,
//! `<storage>/patterns.bin` (signed by the node's ML-DSA-65 key, content-addressed,
//! versioned), trained on labelled fault scenarios from the simulated mesh.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use x0tta_analysis::graph::{GraphSage, Labelled, MAX_PATTERNS_BYTES};
use x0tta_analysis::scenario::{self, Fault, Scenario, ScenarioConfig};
use x0tta_core::ContentId;
use x0tta_core::config::NodeConfig;
use x0tta_pqc::{IdentityRing, NodeIdentity};

/// The file, in the storage directory.
pub(crate) const PATTERNS_FILE: &str = "patterns.bin";

/// What a loaded `patterns.bin` is, for status and `model show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModelInfo {
    pub(crate) model: String,
    pub(crate) version: u64,
    pub(crate) cid: String,
    pub(crate) signer: String,
    pub(crate) bytes: usize,
    pub(crate) features: usize,
    pub(crate) hidden: usize,
    pub(crate) classes: Vec<String>,
}

pub(crate) fn patterns_path(cfg: &NodeConfig) -> PathBuf {
    cfg.node_config.storage.path.join(PATTERNS_FILE)
}

/// The patterns at `path`, verified against `identity`'s own key; `None` if there is no file.
fn read(path: &Path, identity: &NodeIdentity) -> Result<Option<(GraphSage, ModelInfo)>> {
    let bytes = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        Ok(m) if m.len() > MAX_PATTERNS_BYTES as u64 => {
            bail!(
                "{} is {} bytes, more than the {MAX_PATTERNS_BYTES} accepted",
                path.display(),
                m.len()
            )
        }
        Ok(_) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    };
    let ring = IdentityRing::new().with(identity.record().clone());
    let (model, version, cid) = GraphSage::from_patterns(&bytes, &ring)
        .with_context(|| format!("{} refused", path.display()))?;
    let info = info(&model, version, cid, identity, bytes.len());
    Ok(Some((model, info)))
}

fn info(
    model: &GraphSage,
    version: u64,
    cid: ContentId,
    identity: &NodeIdentity,
    bytes: usize,
) -> ModelInfo {
    let c = model.config();
    ModelInfo {
        model: x0tta_analysis::graph::MODEL.into(),
        version,
        cid: cid.to_string(),
        signer: identity.node_id().to_string(),
        bytes,
        features: c.features,
        hidden: c.hidden,
        classes: (0..c.classes as u32)
            .map(|k| Fault::from_class(k).map_or_else(|| format!("class{k}"), |f| f.name().into()))
            .collect(),
    }
}

/// At start: loads `<storage>/patterns.bin` if present. A file that does not verify is
/// refused loudly and the node runs without it.
pub(crate) fn load_at_start(
    cfg: &NodeConfig,
    identity: &NodeIdentity,
) -> Option<(GraphSage, ModelInfo)> {
    let path = patterns_path(cfg);
    match read(&path, identity) {
        Ok(Some((model, info))) => {
            info!(version = info.version, cid = %info.cid, path = %path.display(), "GraphSAGE patterns loaded");
            Some((model, info))
        }
        Ok(None) => None,
        Err(e) => {
            warn!("GraphSAGE patterns NOT loaded: {e:#}");
            None
        }
    }
}

fn scenarios(seeds: Range<u64>) -> Result<Vec<Labelled>> {
    let all = scenario::generate(seeds, &ScenarioConfig::default())?;
    Ok(all
        .iter()
        .map(Scenario::labelled)
        .collect::<Result<Vec<_>, _>>()?)
}

/// `model train`: trains on the simulator's scenarios of `train`, scores on `test`, and
/// writes the next version of `patterns.bin`.
pub(crate) fn train(
    config: &Path,
    train: Range<u64>,
    test: Range<u64>,
    epochs: usize,
    json: bool,
) -> Result<()> {
    if train.start < test.end && test.start < train.end {
        bail!("training seeds {train:?} and test seeds {test:?} overlap");
    }
    if epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let cfg = NodeConfig::load(config)?;
    std::fs::create_dir_all(&cfg.node_config.storage.path)?;
    let identity = crate::assemble::load_identity(&cfg)?;
    let path = patterns_path(&cfg);
    let t = Instant::now();
    let train_data = scenarios(train.clone())?;
    let test_data = scenarios(test.clone())?;
    let simulated = t.elapsed();
    let mut model = GraphSage::new(scenario::sage_config(true), 1)?;
    let t = Instant::now();
    model.train(&train_data, epochs, 0.01)?;
    let trained = t.elapsed();
    let (f1, per_class) = scenario::evaluate(&model, &test_data)?;
    let info = write_next(&cfg, &identity, &model)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "file": path,
                "model": info,
                "train_seeds": format!("{}..{}", train.start, train.end),
                "test_seeds": format!("{}..{}", test.start, test.end),
                "scenarios": { "train": train_data.len(), "test": test_data.len() },
                "epochs": epochs,
                "f1_macro": f1,
                "f1_per_class": info.classes.iter().zip(&per_class).map(|(c, f)| (c.clone(), *f)).collect::<std::collections::BTreeMap<_, _>>(),
                "simulate_s": simulated.as_secs_f64(),
                "train_s": trained.as_secs_f64(),
            })
        );
    } else {
        println!(
            "trained {} on {} scenarios (seeds {}..{}) in {:.1} s ({:.1} s simulating)",
            info.model,
            train_data.len(),
            train.start,
            train.end,
            trained.as_secs_f64(),
            simulated.as_secs_f64()
        );
        println!(
            "macro-F1 {f1:.4} on {} unseen scenarios (seeds {}..{})",
            test_data.len(),
            test.start,
            test.end
        );
        for (c, f) in info.classes.iter().zip(&per_class) {
            println!("  {c:<14} F1 {f:.4}");
        }
        println!(
            "wrote {} (version {}, {} bytes, {})",
            path.display(),
            info.version,
            info.bytes,
            info.cid
        );
    }
    Ok(())
}

/// Writes `model` as the next version of `<storage>/patterns.bin`, signed by `identity`: the
/// version after a file this node signed (a foreign or damaged one is replaced).
pub(crate) fn write_next(
    cfg: &NodeConfig,
    identity: &NodeIdentity,
    model: &GraphSage,
) -> Result<ModelInfo> {
    let path = patterns_path(cfg);
    let version = match read(&path, identity) {
        Ok(Some((_, i))) => i.version + 1,
        Ok(None) => 1,
        Err(e) => {
            warn!("replacing {}: {e:#}", path.display());
            1
        }
    };
    let (bytes, cid) = model.to_patterns(version, identity)?;
    let tmp = path.with_extension("bin.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(info(model, version, cid, identity, bytes.len()))
}

fn load(config: &Path) -> Result<(PathBuf, GraphSage, ModelInfo)> {
    let cfg = NodeConfig::load(config)?;
    let identity = crate::assemble::load_identity(&cfg)?;
    let path = patterns_path(&cfg);
    match read(&path, &identity)? {
        Some((m, i)) => Ok((path, m, i)),
        None => bail!(
            "no {} yet: `x0tta6bl4 model train --config {}` makes one",
            path.display(),
            config.display()
        ),
    }
}

/// `model show`: what `patterns.bin` holds, once verified.
pub(crate) fn show(config: &Path, json: bool) -> Result<()> {
    let (path, _, info) = load(config)?;
    if json {
        println!("{}", serde_json::json!({ "file": path, "model": info }));
    } else {
        println!("file:     {}", path.display());
        println!("model:    {} version {}", info.model, info.version);
        println!("cid:      {}", info.cid);
        println!("signer:   {} (verified)", info.signer);
        println!("size:     {} bytes", info.bytes);
        println!(
            "shape:    {} features, {} hidden",
            info.features, info.hidden
        );
        println!("classes:  {}", info.classes.join(", "));
    }
    Ok(())
}

/// `model export`: the verified weights as plain safetensors (for other tools).
pub(crate) fn export(config: &Path, out: &Path, json: bool) -> Result<()> {
    let (_, model, info) = load(config)?;
    let bytes = model.to_safetensors()?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "file": out, "bytes": bytes.len(), "version": info.version, "cid": info.cid })
        );
    } else {
        println!(
            "wrote {} ({} bytes of safetensors, version {} {})",
            out.display(),
            bytes.len(),
            info.version,
            info.cid
        );
    }
    Ok(())
}
