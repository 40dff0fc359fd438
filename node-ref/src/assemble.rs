//! Wires the default node from a configuration: the one place `run` and `demo` share.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use x0tta_core::config::{NodeConfig, load_plans_dir, load_policy};
use x0tta_core::host::{
    AdjustMemoryLimits, HostSensor, RestartService, RunCommand, ServiceSensor, Supervisor,
};
use x0tta_core::memory::MemoryNetwork;
use x0tta_core::{Node, NotifyNeighbors, PolicySource, ReloadPolicy, Signer};
use x0tta_knowledge::{KnowledgeConfig, LexicalEmbedder, RedbKnowledge};
use x0tta_pqc::{MlDsa65Keypair, MlDsa65Signer};

/// A node and the supervisor of its services.
pub(crate) struct Assembled {
    pub(crate) node: Node,
    pub(crate) supervisor: Supervisor,
}

/// Builds the reference node described by `cfg` (loaded from `config_path`).
///
/// Memory is the durable redb store in `storage.path/knowledge.redb`; the transport is
/// x0tta-core's in-process one until x0tta-mesh lands (the caller says so to the operator).
pub(crate) async fn assemble(cfg: &NodeConfig, config_path: Option<&Path>) -> Result<Assembled> {
    let n = &cfg.node_config;
    let id = cfg.node_id().context("node_config.identity.name")?;
    let keys = MlDsa65Keypair::load_or_generate(&n.identity.key_dir)
        .with_context(|| format!("node keys in {}", n.identity.key_dir.display()))?;
    let signer: Arc<dyn Signer> = Arc::new(MlDsa65Signer::new(id.clone(), keys));

    std::fs::create_dir_all(&n.storage.path)
        .with_context(|| format!("creating {}", n.storage.path.display()))?;
    let knowledge = RedbKnowledge::open(
        n.storage.path.join("knowledge.redb"),
        KnowledgeConfig::with_retention(n.storage.retention),
    )?
    // Lexical until a MiniLM model is configured (issue 5): vectors of hashed words/trigrams.
    .with_embedder(Arc::new(LexicalEmbedder))
    .await?;
    let supervisor = Supervisor::new(cfg.services.clone())?;
    let network = MemoryNetwork::new();
    let mut b = Node::builder()
        .transport(Arc::new(network.join(id)))
        .knowledge(Arc::new(knowledge))
        .signer(signer.clone())
        .embedder(Arc::new(LexicalEmbedder))
        .policy(n.mapk.clone())
        .sensor(Arc::new(HostSensor::new()?))
        .sensor(Arc::new(ServiceSensor::new(supervisor.clone())?))
        .action(Arc::new(RestartService::new(supervisor.clone())))
        .action(Arc::new(RunCommand::new()))
        .action(Arc::new(AdjustMemoryLimits::new(supervisor.clone())))
        .action(Arc::new(NotifyNeighbors::new(signer)));
    if let Some(path) = config_path {
        let path = path.to_path_buf();
        let source: PolicySource = Arc::new(move || load_policy(&path).map_err(|e| e.to_string()));
        b = b.action(Arc::new(ReloadPolicy::new(source)));
    }
    if let Some(dir) = &n.storage.plans_dir {
        for t in load_plans_dir(dir)? {
            b = b.plan_template(t);
        }
    }
    Ok(Assembled {
        node: b.build()?,
        supervisor,
    })
}
