//! Wires the default node from a configuration: the one place `run` and `demo` share.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use x0tta_core::config::{NetworkConfig, NodeConfig, load_plans_dir, load_policy};
use x0tta_core::host::{
    AdjustMemoryLimits, HostSensor, RestartService, RunCommand, ServiceSensor, Supervisor,
};
use x0tta_core::{
    DisconnectPeer, Node, NodeId, NotifyNeighbors, PolicyHandle, PolicySource, ReloadPolicy,
    Signature, Signer, Verdict, Verifier,
};
use x0tta_dao::{Dao, DaoPolicy};
use x0tta_ebpf::{ModeRequest, RateLimit, XdpGuard, XdpSensor};
use x0tta_knowledge::{KnowledgeConfig, LexicalEmbedder, RedbKnowledge, Replicator};
use x0tta_mesh::p2p::{P2pConfig, P2pTransport, load_bootstrap};
use x0tta_pqc::upgrade::{HandshakeObserver, PeerRecords};
use x0tta_pqc::{IdentityRing, NodeIdentity, SpiffeId};

/// A node, the supervisor of its services, and its mesh transport.
pub(crate) struct Assembled {
    pub(crate) node: Node,
    pub(crate) supervisor: Supervisor,
    pub(crate) mesh: P2pTransport,
    /// Replicates the knowledge store with peers (gossip, sync and block serving run in the
    /// background; [`Replicator::sync`] is the anti-entropy `run` drives).
    pub(crate) replicator: Replicator,
    /// The knowledge store (also held by the node).
    pub(crate) knowledge: RedbKnowledge,
    /// Governance (also the node's `Governance`).
    pub(crate) dao: Dao,
    /// XDP guards attached by `network.ebpf_hooks` (also the node's `xdp` sensor and its
    /// `isolate_peer`, `unisolate_peer` and `set_rate_limit` actions).
    pub(crate) xdp: Vec<Arc<XdpGuard>>,
}

/// Attaches the XDP guard to every interface of `network.interfaces` when `network.ebpf_hooks`
/// names `xdp`. A guard that cannot attach (no privilege, no such interface, a build without
/// clang) is logged with the reason and left out: the node runs without it (DESIGN §9).
fn attach_xdp(net: &NetworkConfig) -> Result<Vec<Arc<XdpGuard>>> {
    if !net.ebpf_hooks.iter().any(|h| h == "xdp") {
        return Ok(Vec::new());
    }
    let mode = match net.xdp.mode.as_str() {
        "driver" => ModeRequest::Driver,
        "generic" => ModeRequest::Generic,
        _ => ModeRequest::Auto,
    };
    let limit = match net.xdp.rate_pps {
        0 => None,
        pps => {
            let burst = if net.xdp.burst == 0 {
                (pps / 10).max(1)
            } else {
                net.xdp.burst
            };
            Some(RateLimit::new(pps, burst).context("node_config.network.xdp")?)
        }
    };
    let mut guards = Vec::new();
    for interface in &net.interfaces {
        let mut b = XdpGuard::builder(interface).mode(mode);
        if let Some(l) = limit {
            b = b.rate_limit(l);
        }
        match b.attach() {
            Ok(g) => {
                tracing::info!(%interface, mode = %g.mode(), ?limit, "XDP guard attached");
                guards.push(Arc::new(g));
            }
            Err(e) => {
                tracing::warn!(%interface, error = %e, "XDP guard not attached; running without it on this interface")
            }
        }
    }
    Ok(guards)
}

/// Checks governance signatures: this node's own under its identity, every other voter's under
/// the identity record it proved on a `/x0tta/pq/1.0.0` link.
struct VoterKeys {
    me: NodeId,
    own: IdentityRing,
    peers: PeerRecords,
}

impl Verifier for VoterKeys {
    fn verify(&self, context: &[u8], message: &[u8], sig: &Signature) -> Verdict {
        if sig.signer == self.me {
            self.own.verify(context, message, sig)
        } else {
            self.peers.verify(context, message, sig)
        }
    }
}

/// The governance settings and voters of `cfg`: this node with `dao.stake`, the others from
/// `dao.voters`.
fn dao_setup(
    cfg: &NodeConfig,
    me: &NodeId,
) -> Result<(DaoPolicy, std::collections::BTreeMap<NodeId, u64>)> {
    let d = &cfg.node_config.dao;
    let mut stakes = std::collections::BTreeMap::from([(me.clone(), d.stake)]);
    for (id, stake) in &d.voters {
        let id = NodeId::new(id).with_context(|| format!("node_config.dao.voters: {id:?}"))?;
        stakes.insert(id, *stake);
    }
    let policy = DaoPolicy {
        discussion: d.discussion,
        voting: d.voting,
        emergency_voting: d.emergency_voting,
        quorum: d.quorum,
        emergency_quorum: d.emergency_quorum,
        clock_skew: d.clock_skew,
        ..DaoPolicy::default()
    };
    Ok((policy, stakes))
}

/// The node identity in `identity.key_dir` (Ed25519 + ML-DSA-65 + ML-KEM-768), created on first
/// use.
pub(crate) fn load_identity(cfg: &NodeConfig) -> Result<NodeIdentity> {
    let id = &cfg.node_config.identity;
    let spiffe: SpiffeId = id
        .spiffe_id()
        .parse()
        .context("node_config.identity (name and trust_domain form the SPIFFE id)")?;
    NodeIdentity::load_or_generate(&id.key_dir, &spiffe)
        .with_context(|| format!("node identity in {}", id.key_dir.display()))
}

/// Builds the reference node described by `cfg` (loaded from `config_path`).
///
/// The identity is `identity.key_dir` (Ed25519 + ML-DSA-65 + ML-KEM-768, created on first
/// start); the node id is its libp2p PeerId. Memory is the durable redb store in
/// `storage.path/knowledge.redb`; the transport is x0tta-mesh's libp2p one (TCP with the
/// `/x0tta/pq/1.0.0` upgrade) configured by `network`. The store is replicated over the mesh:
/// own incidents are signed (ML-DSA-65) into the replicated document, and incidents of other
/// nodes are stored once their envelopes verify under the identity records learned on
/// PQ-authenticated links.
///
/// `handshakes`, if given, is told of every PQ upgrade (the node's metrics).
pub(crate) async fn assemble(
    cfg: &NodeConfig,
    config_path: Option<&Path>,
    handshakes: Option<HandshakeObserver>,
    graph: Option<Arc<x0tta_analysis::live::GraphDetector>>,
) -> Result<Assembled> {
    let n = &cfg.node_config;
    let identity = load_identity(cfg)?;
    let signer: Arc<dyn Signer> = Arc::new(identity.clone());
    let mesh = start_mesh(&identity, cfg, handshakes).await?;

    std::fs::create_dir_all(&n.storage.path)
        .with_context(|| format!("creating {}", n.storage.path.display()))?;
    let knowledge = RedbKnowledge::open(
        n.storage.path.join("knowledge.redb"),
        KnowledgeConfig::with_retention(n.storage.retention),
    )?
    // Lexical until a MiniLM model is configured (issue 5): vectors of hashed words/trigrams.
    .with_embedder(Arc::new(LexicalEmbedder))
    .await?;
    knowledge.set_signer(signer.clone()).await?;
    let replicator = Replicator::start(
        knowledge.clone(),
        Arc::new(mesh.clone()),
        Arc::new(mesh.records().clone()),
    )
    .await
    .context("starting knowledge replication")?;
    let supervisor = Supervisor::new(cfg.services.clone())?;
    let live = PolicyHandle::new(n.mapk.clone())?;
    let me = identity.node_id().clone();
    let (dao_policy, stakes) = dao_setup(cfg, &me)?;
    let voters = VoterKeys {
        me: me.clone(),
        own: IdentityRing::new().with(identity.record().clone()),
        peers: mesh.records().clone(),
    };
    let dao = Dao::start(
        dao_policy,
        stakes,
        signer.clone(),
        Arc::new(voters),
        Arc::new(mesh.clone()),
        live.clone(),
    )
    .await
    .context("starting governance")?;
    // The standard detectors plus a streaming one per resource metric, and GraphSAGE over the
    // live neighbourhood when the node has patterns; the culprit ranked from this node's and
    // its peers' reports in every incident.
    let mut healer = x0tta_core::healing::DefaultHealer::builder()
        .detector(Arc::new(x0tta_core::healing::ThresholdDetector::new()))
        .detector(Arc::new(x0tta_core::healing::StatisticalDetector::new()))
        .detector(Arc::new(x0tta_analysis::PerMetricDetector::context()));
    if let Some(g) = graph {
        healer = healer.detector(g);
    }
    let healer = healer
        .root_cause(Arc::new(x0tta_analysis::rootcause::MeshRootCause::new()))
        .build();
    let mut b = Node::builder()
        .transport(Arc::new(mesh.clone()))
        .knowledge(Arc::new(knowledge.clone()))
        .signer(signer.clone())
        .embedder(Arc::new(LexicalEmbedder))
        .policy_handle(live)
        .governance(Arc::new(dao.clone()))
        .healer(Arc::new(healer))
        .sensor(Arc::new(HostSensor::new()?))
        .sensor(Arc::new(ServiceSensor::new(supervisor.clone())?))
        .action(Arc::new(RestartService::new(supervisor.clone())))
        .action(Arc::new(RunCommand::new()))
        .action(Arc::new(AdjustMemoryLimits::new(supervisor.clone())))
        .action(Arc::new(NotifyNeighbors::new(signer)))
        .action(Arc::new(DisconnectPeer::new()));
    let xdp = attach_xdp(&n.network)?;
    if !xdp.is_empty() {
        b = b.sensor(Arc::new(XdpSensor::new(xdp.clone())));
        for action in x0tta_ebpf::actions(xdp.clone()) {
            b = b.action(action);
        }
    }
    if let Some(path) = config_path {
        let path = path.to_path_buf();
        let source: PolicySource = Arc::new(move || load_policy(&path).map_err(|e| e.to_string()));
        b = b.action(Arc::new(ReloadPolicy::new(source)));
    }
    if let Some(dir) = &n.storage.plans_dir {
        for t in load_plans_dir(dir)? {
            // Without a guard the XDP actions are not registered: a template that needs them
            // is left out (with a warning), so the node still starts, as DESIGN §9 asks.
            let needs_xdp = t.steps.iter().any(|s| {
                std::iter::once(&s.action)
                    .chain(s.rollback.as_ref().map(|r| &r.action))
                    .any(|a| x0tta_ebpf::ACTION_NAMES.contains(&a.as_str()))
            });
            if needs_xdp && xdp.is_empty() {
                tracing::warn!(template = %t.name, "plan template left out: it needs the XDP guard's actions and no guard is attached");
                continue;
            }
            b = b.plan_template(t);
        }
    }
    Ok(Assembled {
        node: b.build()?,
        supervisor,
        mesh,
        replicator,
        knowledge,
        dao,
        xdp,
    })
}

/// Starts the libp2p transport described by `network` (listen, bootstrap list, mDNS,
/// connection limit) with the failure-detection timings of the policy.
async fn start_mesh(
    identity: &NodeIdentity,
    cfg: &NodeConfig,
    handshakes: Option<HandshakeObserver>,
) -> Result<P2pTransport> {
    let net = &cfg.node_config.network;
    let mut listen = Vec::new();
    for a in &net.listen {
        listen
            .push(a.parse().with_context(|| {
                format!("node_config.network.listen: {a:?} is not a multiaddr")
            })?);
    }
    let bootstrap = match &net.bootstrap {
        Some(path) => load_bootstrap(path).context("node_config.network.bootstrap")?,
        None => Vec::new(),
    };
    let policy = &cfg.node_config.mapk;
    let config = P2pConfig {
        listen,
        bootstrap,
        mdns: net.mdns,
        mesh: policy.mesh.clone(),
        min_neighbours: policy.thresholds.min_neighbours.max(3) as usize,
        max_connections: net.max_connections,
        handshakes,
        ..P2pConfig::default()
    };
    Ok(P2pTransport::start(identity, config).await?)
}
