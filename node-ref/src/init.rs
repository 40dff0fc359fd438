//! `init`: a fresh node directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use x0tta_core::config::NodeConfig;

/// The plan templates every new node starts with (the files in `examples/plans/`).
pub(crate) const DEFAULT_PLANS: [(&str, &str); 4] = [
    (
        "restart-crashed-service.yaml",
        include_str!("../../examples/plans/restart-crashed-service.yaml"),
    ),
    (
        "relieve-service-memory.yaml",
        include_str!("../../examples/plans/relieve-service-memory.yaml"),
    ),
    (
        "clear-host-cache.yaml",
        include_str!("../../examples/plans/clear-host-cache.yaml"),
    ),
    (
        "isolate-byzantine-peer.yaml",
        include_str!("../../examples/plans/isolate-byzantine-peer.yaml"),
    ),
];

fn config_text(name: &str, bootstrap: Option<&Path>) -> String {
    let bootstrap = bootstrap.map_or(String::new(), |b| {
        format!("    bootstrap: {}\n", b.display())
    });
    format!(
        r#"# x0tta6bl4 node configuration (node_config layout). Paths are relative to this file.
node_config:
  identity:
    name: {name}
    trust_domain: x0tta.local
    key_dir: keys
  network:
    listen: ["/ip4/127.0.0.1/tcp/7001"]
{bootstrap}    max_connections: 128
    mdns: false
    # The XDP guard (per-source counters, rate limits, isolation; needs root or CAP_BPF +
    # CAP_NET_ADMIN + CAP_PERFMON; without them the node runs without it):
    # ebpf_hooks: [xdp]
    # interfaces: [eth0]
    # xdp: {{ mode: auto, rate_pps: 20000, burst: 2000 }}
  security:
    signature: ML-DSA-65
    kem: ML-KEM-768
    hybrid: true
    rekey_interval: 1h
  mapk:
    thresholds:
      cpu_percent: 90
      memory_percent: 90
      disk_percent: 95
      service_memory_mb: 512
    intervals:
      cycle: 60s
      verify_timeout: 30s
  storage:
    path: data
    retention: 1000
    plans_dir: plans
  dao:
    stake: 100
    # The other voters (node id = libp2p PeerId: stake); every node must list the same ones.
    voters: {{}}
  api:
    listen: 127.0.0.1:3000
# Services this node supervises, probes and heals. Example:
# services:
#   - name: web
#     command: python3
#     args: ["-m", "http.server", "8089", "--bind", "127.0.0.1"]
#     probes:
#       - process
#       - tcp: 127.0.0.1:8089
#       - http: {{ url: "http://127.0.0.1:8089/", status: 200 }}
services: []
"#
    )
}

/// What `init` wrote (printed as lines, or as JSON with `--json`).
#[derive(serde::Serialize)]
pub(crate) struct Written {
    pub(crate) config: PathBuf,
    pub(crate) spiffe_id: String,
    pub(crate) node_id: String,
    pub(crate) keys: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) api: String,
    pub(crate) token: PathBuf,
    pub(crate) plans: Option<PathBuf>,
    pub(crate) systemd: Option<PathBuf>,
}

pub(crate) fn init(
    config: &Path,
    name: &str,
    bootstrap: Option<PathBuf>,
    force: bool,
) -> Result<Written> {
    if config.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", config.display());
    }
    if let Some(b) = &bootstrap
        && !b.exists()
    {
        bail!("bootstrap list {} does not exist", b.display());
    }
    let text = config_text(name, bootstrap.as_deref());
    // Validate before writing anything: a bad --name must not leave half a directory behind.
    NodeConfig::from_yaml(&text, config).context("the generated configuration is invalid")?;
    let base = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(base)?;
    std::fs::write(config, &text).with_context(|| format!("writing {}", config.display()))?;
    let cfg = NodeConfig::load(config)?;
    let n = &cfg.node_config;
    std::fs::create_dir_all(&n.storage.path)?;
    if let Some(dir) = &n.storage.plans_dir {
        std::fs::create_dir_all(dir)?;
        for (file, body) in DEFAULT_PLANS {
            let path = dir.join(file);
            if !path.exists() {
                std::fs::write(&path, body)?;
            }
        }
    }
    let identity = crate::assemble::load_identity(&cfg)?;
    let token = crate::api::token_path(&cfg);
    crate::api::ensure_token(&token)?;
    Ok(Written {
        config: config.to_path_buf(),
        spiffe_id: n.identity.spiffe_id(),
        node_id: identity.node_id().to_string(),
        keys: n.identity.key_dir.clone(),
        data: n.storage.path.clone(),
        api: format!("http://{}/api/v1/", n.api.listen),
        token,
        plans: n.storage.plans_dir.clone(),
        systemd: None,
    })
}

impl Written {
    /// The lines an operator reads.
    pub(crate) fn print(&self) {
        println!("wrote {}", self.config.display());
        println!("identity  {}", self.spiffe_id);
        println!(
            "node id   {} (libp2p PeerId: voters lists and proposals name it)",
            self.node_id
        );
        println!(
            "keys      {} (ML-DSA-65, Ed25519, ML-KEM-768; 0600)",
            self.keys.display()
        );
        println!("data      {}", self.data.display());
        println!(
            "api       {} (token {}, 0600)",
            self.api,
            self.token.display()
        );
        if let Some(dir) = &self.plans {
            println!(
                "plans     {} ({} templates)",
                dir.display(),
                DEFAULT_PLANS.len()
            );
        }
        if let Some(unit) = &self.systemd {
            println!(
                "systemd   {} (install: see its first lines)",
                unit.display()
            );
        }
        println!("next: x0tta6bl4 run --config {}", self.config.display());
    }
}
