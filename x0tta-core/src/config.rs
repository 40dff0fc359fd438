//! YAML files (feature `yaml`): the node configuration in the seed's `node_config` layout and
//! plan templates in its `recovery_plan` layout.
//!
//! Unknown fields and bad values are rejected with the file, line, column and field path:
//!
//! ```
//! use x0tta_core::config::NodeConfig;
//! let yaml = "node_config:\n  identity:\n    name: n1\n  mapk:\n    thresholds:\n      cpu_percent: 150\n";
//! let err = NodeConfig::from_yaml(yaml, "node.yaml").unwrap_err();
//! assert_eq!(err.line(), Some(6));
//! assert_eq!(err.field(), Some("node_config.mapk.thresholds.cpu_percent"));
//! assert!(err.to_string().starts_with("node.yaml:6:"));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host::ServiceSpec;
use crate::{NodeId, PlanTemplate, Policy};

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: {error}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid for its layout.
    #[error("{}", Invalid::display(.0))]
    Invalid(Box<Invalid>),
}

/// Where and why a file is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// Dotted path of the offending field, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Invalid {
    fn display(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some(l) = self.line {
            s.push_str(&format!(":{l}"));
            if let Some(c) = self.column {
                s.push_str(&format!(":{c}"));
            }
        }
        if let Some(f) = &self.field {
            s.push_str(&format!(": field `{f}`"));
        }
        s.push_str(": ");
        s.push_str(&self.message);
        s
    }
}

impl ConfigError {
    fn invalid(
        file: &Path,
        line: Option<u64>,
        column: Option<u64>,
        field: Option<String>,
        message: String,
    ) -> Self {
        Self::Invalid(Box::new(Invalid {
            file: file.to_path_buf(),
            line,
            column,
            field,
            message,
        }))
    }
    /// The line of the problem, when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Invalid(i) => i.line,
            Self::Io { .. } => None,
        }
    }
    /// The field path of the problem, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(i) => i.field.as_deref(),
            Self::Io { .. } => None,
        }
    }
}

/// The dotted path of the key on `line` (1-based), found by walking up to less-indented keys.
fn field_path(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start().trim_start_matches("- ");
        let (k, _) = t.split_once(':')?;
        let k = k.trim();
        if k.is_empty() || k.starts_with('#') || k.contains(' ') {
            return None;
        }
        Some((indent, k.trim_matches('"').to_string()))
    };
    let (mut indent, first) = key_of(lines.get(idx)?)?;
    let mut path = vec![first];
    for l in lines[..idx].iter().rev() {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let this = l.len() - l.trim_start().len();
        if l.trim_start().starts_with("- ") && this + 2 <= indent {
            // The start of the list item we are in: its key is a sibling, not a parent.
            indent = this;
            continue;
        }
        if this < indent {
            if let Some((i, k)) = key_of(l) {
                path.push(k);
                indent = i;
            } else {
                indent = this;
            }
            if indent == 0 {
                break;
            }
        }
    }
    path.reverse();
    Some(path.join("."))
}

/// The 1-based line of the dotted `path` in `text`, best effort (for checks done after parsing).
fn locate(text: &str, path: &str) -> Option<u64> {
    let mut from = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    for key in path.split('.') {
        let pos = lines[from..].iter().position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })?;
        from += pos;
        found = Some(from as u64 + 1);
        from += 1;
    }
    found
}

/// The 1-based line of `field` in the `index`-th item of the top-level list `list`.
fn locate_item(text: &str, list: &str, index: usize, field: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == format!("{list}:"))?;
    let mut item_indent = None;
    let mut seen = 0usize;
    let mut in_item = false;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if indent == 0 {
            break; // the next top-level key
        }
        if t.starts_with("- ") && item_indent.is_none_or(|ii| ii == indent) {
            item_indent = Some(indent);
            in_item = seen == index;
            seen += 1;
            if seen > index + 1 {
                break;
            }
        }
        let key = t.trim_start_matches("- ");
        if in_item
            && key
                .strip_prefix(field)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        {
            return Some(i as u64 + 1);
        }
    }
    None
}

/// Parses `text` as `T`, mapping errors to [`ConfigError`] with file, line and field.
pub fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    file: impl AsRef<Path>,
) -> Result<T, ConfigError> {
    let file = file.as_ref();
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let loc = e.location();
        let line = loc.as_ref().map(|l| l.line());
        let column = loc.as_ref().map(|l| l.column());
        let message = e.without_snippet().to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        let field = line.and_then(|l| field_path(text, l));
        ConfigError::invalid(file, line, column, field, message)
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        file: path.to_path_buf(),
        error,
    })
}

/// `identity`: who the node is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Node name (the last part of its SPIFFE id; its NodeId until x0tta-pqc derives one).
    pub name: String,
    /// SPIFFE trust domain.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Directory of the node's key files (0600).
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
}

fn default_trust_domain() -> String {
    "x0tta.local".into()
}
fn default_key_dir() -> PathBuf {
    PathBuf::from("keys")
}

impl IdentityConfig {
    /// `spiffe://<trust_domain>/<name>`.
    pub fn spiffe_id(&self) -> String {
        format!("spiffe://{}/{}", self.trust_domain, self.name)
    }
}

/// `network`: how the node joins the mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Listen addresses (multiaddrs).
    pub listen: Vec<String>,
    /// A `nodes.json` bootstrap list.
    pub bootstrap: Option<PathBuf>,
    /// Most simultaneous connections.
    pub max_connections: u32,
    /// Local discovery by mDNS.
    pub mdns: bool,
    /// Kernel hooks to load (x0tta-ebpf): `["xdp"]` attaches the XDP guard (per-source
    /// counters, rate limits, peer isolation) to every interface in `interfaces`. Needs root
    /// or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON; without them the node logs why and runs
    /// without the hooks.
    pub ebpf_hooks: Vec<String>,
    /// Interfaces the eBPF hooks attach to (`eth0`, …).
    pub interfaces: Vec<String>,
    /// The XDP guard's settings.
    pub xdp: XdpConfig,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap: None,
            max_connections: 128,
            mdns: false,
            ebpf_hooks: Vec::new(),
            interfaces: Vec::new(),
            xdp: XdpConfig::default(),
        }
    }
}

/// `network.xdp`: the XDP guard's attach mode and default per-source limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpConfig {
    /// `auto` (driver mode, generic where the driver has no XDP), `driver` or `generic`.
    pub mode: String,
    /// Packets per second each source may send (0: no limit until a plan sets one).
    pub rate_pps: u64,
    /// Burst each source may send at once, packets (0: a tenth of `rate_pps`).
    pub burst: u64,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            mode: "auto".into(),
            rate_pps: 0,
            burst: 0,
        }
    }
}

/// The eBPF hooks `network.ebpf_hooks` may name.
pub const EBPF_HOOKS: [&str; 1] = ["xdp"];

/// `security`: algorithms and key rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Signature algorithm.
    pub signature: String,
    /// Key encapsulation mechanism.
    pub kem: String,
    /// Hybrid mode: PQC + classical.
    pub hybrid: bool,
    /// Link rekey interval.
    #[serde(with = "crate::serde_duration")]
    pub rekey_interval: Duration,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            signature: "ML-DSA-65".into(),
            kem: "ML-KEM-768".into(),
            hybrid: true,
            rekey_interval: Duration::from_secs(3600),
        }
    }
}

/// `storage`: where the node keeps its memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Data directory.
    pub path: PathBuf,
    /// Incidents kept locally.
    pub retention: usize,
    /// Directory of plan-template YAML files (`recovery_plan` layout).
    pub plans_dir: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data"),
            retention: 1000,
            plans_dir: None,
        }
    }
}

/// `dao`: this node's part in governance. Every node of a mesh must hold the same voters and
/// stakes (its own `stake` plus `voters`) and timings, or their tallies differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaoConfig {
    /// This node's stake (voice credits come from it).
    pub stake: u64,
    /// The other voters: node id (libp2p PeerId) → stake.
    pub voters: std::collections::BTreeMap<String, u64>,
    /// Quorum of the normal track.
    pub quorum: f64,
    /// Quorum of the emergency track.
    pub emergency_quorum: f64,
    /// Discussion before voting opens (standard track).
    #[serde(with = "crate::serde_duration")]
    pub discussion: Duration,
    /// Voting period, standard track.
    #[serde(with = "crate::serde_duration")]
    pub voting: Duration,
    /// Voting period, emergency track (no discussion).
    #[serde(with = "crate::serde_duration")]
    pub emergency_voting: Duration,
    /// Clock skew tolerated on vote timestamps.
    #[serde(with = "crate::serde_duration")]
    pub clock_skew: Duration,
}

impl Default for DaoConfig {
    fn default() -> Self {
        Self {
            stake: 100,
            voters: Default::default(),
            quorum: 0.51,
            emergency_quorum: 0.67,
            discussion: Duration::from_secs(24 * 3600),
            voting: Duration::from_secs(48 * 3600),
            emergency_voting: Duration::from_secs(15 * 60),
            clock_skew: Duration::from_secs(5),
        }
    }
}

/// `api`: the node's HTTP API (`/api/v1/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to bind (`host:port`; port 0 picks a free one, written to
    /// `<storage>/api.json` for the CLI).
    pub listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3000".into(),
        }
    }
}

/// The `node_config` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Who.
    pub identity: IdentityConfig,
    /// Mesh.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Algorithms.
    #[serde(default)]
    pub security: SecurityConfig,
    /// The MAPE-K policy the node starts with.
    #[serde(default)]
    pub mapk: Policy,
    /// Memory.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Governance.
    #[serde(default)]
    pub dao: DaoConfig,
    /// HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
}

/// A node configuration file: `node_config` plus the `services` the node supervises.
///
/// Relative paths in it are relative to the file's directory once loaded with [`NodeConfig::load`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node.
    pub node_config: NodeSection,
    /// Supervised services.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

impl NodeConfig {
    /// Parses and validates a configuration; `file` names it in errors.
    pub fn from_yaml(text: &str, file: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let file = file.as_ref();
        let cfg: Self = parse(text, file)?;
        cfg.validate(text, file)?;
        Ok(cfg)
    }

    /// Reads, parses and validates `path`, resolving relative paths against its directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let mut cfg = Self::from_yaml(&read(path)?, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let n = &mut cfg.node_config;
        abs(&mut n.identity.key_dir);
        abs(&mut n.storage.path);
        if let Some(p) = n.storage.plans_dir.as_mut() {
            abs(p);
        }
        if let Some(p) = n.network.bootstrap.as_mut() {
            abs(p);
        }
        for s in &mut cfg.services {
            if let Some(p) = s.cwd.as_mut() {
                abs(p);
            }
            if let Some(p) = s.log.as_mut() {
                abs(p);
            }
        }
        Ok(cfg)
    }

    fn validate(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let bad = |field: String, message: String| {
            let line = locate(text, &field);
            ConfigError::invalid(file, line, None, Some(field), message)
        };
        let n = &self.node_config;
        if let Err(e) = NodeId::new(&n.identity.name) {
            return Err(bad("node_config.identity.name".into(), e.to_string()));
        }
        if let Err(crate::PolicyError::BadValue { field, problem }) = n.mapk.validate() {
            return Err(bad(format!("node_config.mapk.{field}"), problem));
        }
        for (field, q) in [
            ("quorum", n.dao.quorum),
            ("emergency_quorum", n.dao.emergency_quorum),
        ] {
            if !(0.0..=1.0).contains(&q) {
                return Err(bad(
                    format!("node_config.dao.{field}"),
                    format!("{q} is not a ratio between 0 and 1"),
                ));
            }
        }
        if n.dao.voting.is_zero() || n.dao.emergency_voting.is_zero() {
            return Err(bad(
                "node_config.dao.voting".into(),
                "voting periods must be longer than zero".into(),
            ));
        }
        if n.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "node_config.api.listen".into(),
                format!("{:?} is not an address like 127.0.0.1:3000", n.api.listen),
            ));
        }
        for hook in &n.network.ebpf_hooks {
            if !EBPF_HOOKS.contains(&hook.as_str()) {
                return Err(bad(
                    "node_config.network.ebpf_hooks".into(),
                    format!("unknown hook `{hook}` (known: {})", EBPF_HOOKS.join(", ")),
                ));
            }
        }
        if !n.network.ebpf_hooks.is_empty() && n.network.interfaces.is_empty() {
            return Err(bad(
                "node_config.network.ebpf_hooks".into(),
                "eBPF hooks need `network.interfaces` to attach to".into(),
            ));
        }
        if !["auto", "driver", "generic"].contains(&n.network.xdp.mode.as_str()) {
            return Err(bad(
                "node_config.network.xdp.mode".into(),
                format!(
                    "`{}` is not an attach mode (auto, driver, generic)",
                    n.network.xdp.mode
                ),
            ));
        }
        if n.storage.retention == 0 {
            return Err(bad(
                "node_config.storage.retention".into(),
                "must be at least 1".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let bad_item = |message: String| {
                let line = locate_item(text, "services", i, "name");
                ConfigError::invalid(
                    file,
                    line,
                    None,
                    Some(format!("services[{i}].name")),
                    message,
                )
            };
            if s.name.trim().is_empty() || s.name.contains(['.', ' ']) {
                return Err(bad_item(format!(
                    "`{}` is not a service name (no dots or spaces)",
                    s.name
                )));
            }
            if !seen.insert(&s.name) {
                return Err(bad_item(format!("two services are named `{}`", s.name)));
            }
        }
        Ok(())
    }

    /// The node id named by the identity section.
    pub fn node_id(&self) -> Result<NodeId, crate::InvalidId> {
        NodeId::new(&self.node_config.identity.name)
    }
}

/// A plan-template file: `recovery_plan: { name, trigger, steps }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The template.
    pub recovery_plan: PlanTemplate,
}

/// Parses a plan template; `file` names it in errors.
pub fn plan_from_yaml(text: &str, file: impl AsRef<Path>) -> Result<PlanTemplate, ConfigError> {
    let file = file.as_ref();
    let pf: PlanFile = parse(text, file)?;
    let t = pf.recovery_plan;
    if t.name.trim().is_empty() {
        return Err(ConfigError::invalid(
            file,
            locate(text, "recovery_plan.name"),
            None,
            Some("recovery_plan.name".into()),
            "must not be empty".into(),
        ));
    }
    if t.steps.is_empty() {
        return Err(ConfigError::invalid(
            file,
            locate(text, "recovery_plan.steps"),
            None,
            Some("recovery_plan.steps".into()),
            "a plan needs at least one step".into(),
        ));
    }
    if t.trigger.kinds.is_empty() {
        return Err(ConfigError::invalid(
            file,
            locate(text, "recovery_plan.trigger.kinds"),
            None,
            Some("recovery_plan.trigger.kinds".into()),
            "a trigger needs at least one anomaly kind".into(),
        ));
    }
    Ok(t)
}

/// Reads a plan template file.
pub fn load_plan(path: impl AsRef<Path>) -> Result<PlanTemplate, ConfigError> {
    let path = path.as_ref();
    plan_from_yaml(&read(path)?, path)
}

/// Reads every `*.yaml` / `*.yml` plan template in `dir`, sorted by file name.
pub fn load_plans_dir(dir: impl AsRef<Path>) -> Result<Vec<PlanTemplate>, ConfigError> {
    let dir = dir.as_ref();
    let io = |error| ConfigError::Io {
        file: dir.to_path_buf(),
        error,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files.iter().map(load_plan).collect()
}

/// Reads the `mapk` policy of a node configuration file (what `reload_policy` reloads).
pub fn load_policy(path: impl AsRef<Path>) -> Result<Policy, ConfigError> {
    Ok(NodeConfig::load(path)?.node_config.mapk)
}

impl fmt::Display for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} ({} services)",
            self.node_config.identity.spiffe_id(),
            self.services.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_follow_indentation() {
        let t = "a:\n  b:\n    c: 1\n  d:\n    e: 2\n";
        assert_eq!(field_path(t, 3).as_deref(), Some("a.b.c"));
        assert_eq!(field_path(t, 5).as_deref(), Some("a.d.e"));
        assert_eq!(locate(t, "a.d.e"), Some(5));
    }
}
