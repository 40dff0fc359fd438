//! Recovery actions over [`XdpGuard`]s: `isolate_peer`, `unisolate_peer`, `set_rate_limit`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use x0tta_core::{Action, ActionContext, ActionError, NodeId, Params, ParamsExt, Subject};

use crate::{Error, RateLimit, XdpGuard};

/// The names of the actions [`actions`] returns: what plan templates call them.
pub const ACTION_NAMES: [&str; 3] = ["isolate_peer", "unisolate_peer", "set_rate_limit"];

/// The three actions over `guards`, ready to register (named as [`ACTION_NAMES`]).
///
/// ```no_run
/// use std::sync::Arc;
/// # fn main() -> Result<(), x0tta_ebpf::Error> {
/// let guard = Arc::new(x0tta_ebpf::XdpGuard::attach("eth0")?);
/// let names: Vec<String> = x0tta_ebpf::actions(vec![guard])
///     .iter()
///     .map(|a| a.name().to_string())
///     .collect();
/// assert_eq!(names, x0tta_ebpf::ACTION_NAMES);
/// # Ok(())
/// # }
/// ```
pub fn actions(guards: Vec<Arc<XdpGuard>>) -> Vec<Arc<dyn Action>> {
    vec![
        Arc::new(IsolatePeer::new(guards.clone())),
        Arc::new(UnisolatePeer::new(guards.clone())),
        Arc::new(SetRateLimit::new(guards)),
    ]
}

/// The IP addresses in a list of addresses in the transport's notation: multiaddrs
/// (`/ip4/10.0.0.2/tcp/7001`, `/ip6/fd00::2/udp/7001/quic-v1`), socket addresses
/// (`10.0.0.2:7001`) or bare addresses. DNS names and anything else are skipped.
///
/// ```
/// let ips = x0tta_ebpf::addresses_of(["/ip4/10.0.0.2/tcp/7001", "[fd00::2]:7001", "/dns4/a.example/tcp/1"]);
/// assert_eq!(ips.len(), 2);
/// ```
pub fn addresses_of<S: AsRef<str>>(addresses: impl IntoIterator<Item = S>) -> Vec<IpAddr> {
    let mut out = BTreeSet::new();
    for a in addresses {
        let a = a.as_ref().trim();
        let ip = if a.starts_with('/') {
            let mut parts = a.split('/').skip(1);
            let mut found = None;
            while let Some(p) = parts.next() {
                if p == "ip4" || p == "ip6" {
                    found = parts.next().and_then(|v| v.parse::<IpAddr>().ok());
                    break;
                }
            }
            found
        } else {
            a.parse::<SocketAddr>()
                .map(|s| s.ip())
                .or_else(|_| a.parse::<IpAddr>())
                .ok()
        };
        out.extend(ip.map(|i| i.to_canonical()));
    }
    out.into_iter().collect()
}

/// The addresses a step acts on: its `address` parameter (one or a list) if given, else the
/// addresses the mesh knows for the anomaly's peer (the observation's neighbour table, then
/// the transport's).
async fn target_addresses(
    action: &str,
    params: &Params,
    ctx: &ActionContext,
) -> Result<Vec<IpAddr>, ActionError> {
    if let Some(list) = params.text_list("address")? {
        let ips = addresses_of(&list);
        if ips.len() != list.len() {
            return Err(ActionError::Failed(format!(
                "{action}: `address` must hold IP addresses, got {list:?}"
            )));
        }
        return Ok(ips);
    }
    let peer = peer_of(action, ctx)?;
    let mut known: Vec<String> = ctx
        .observation
        .neighbours
        .iter()
        .filter(|n| n.id == peer)
        .flat_map(|n| n.addresses.clone())
        .collect();
    if known.is_empty() {
        known = ctx
            .transport
            .neighbours()
            .await
            .into_iter()
            .filter(|n| n.id == peer)
            .flat_map(|n| n.addresses)
            .collect();
    }
    let ips = addresses_of(&known);
    if ips.is_empty() {
        return Err(ActionError::Failed(format!(
            "{action}: no IP address known for {peer}"
        )));
    }
    Ok(ips)
}

fn peer_of(action: &str, ctx: &ActionContext) -> Result<NodeId, ActionError> {
    match &ctx.anomaly.subject {
        Subject::Peer(p) | Subject::Link(p) if *p != ctx.node => Ok(p.clone()),
        Subject::Peer(_) | Subject::Link(_) => Err(ActionError::Failed(format!(
            "{action}: a node cannot act on its own addresses"
        ))),
        other => Err(ActionError::Failed(format!(
            "{action} needs a peer or an `address` parameter, the anomaly is about {other}"
        ))),
    }
}

fn failed(action: &str, e: Error) -> ActionError {
    match e {
        Error::NotBuilt { .. } | Error::PermissionDenied { .. } => {
            ActionError::Unavailable(format!("{action}: {e}"))
        }
        other => ActionError::Failed(format!("{action}: {other}")),
    }
}

fn no_guards(action: &str, guards: &[Arc<XdpGuard>]) -> Result<(), ActionError> {
    if guards.is_empty() {
        return Err(ActionError::Unavailable(format!(
            "{action}: no XDP guard is attached on this node"
        )));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `isolate_peer`: drops, in XDP, every packet from the anomaly's peer (or from the step's
/// `address` parameter: one IP or a list) on every attached interface. Rollback lets back in
/// the addresses this action blocked (not those blocked before it ran).
///
/// ```no_run
/// # fn main() -> Result<(), x0tta_ebpf::Error> {
/// use std::sync::Arc;
/// use x0tta_core::Action;
/// let guard = Arc::new(x0tta_ebpf::XdpGuard::attach("eth0")?);
/// let action = x0tta_ebpf::IsolatePeer::new(vec![guard]);
/// assert_eq!(action.name(), "isolate_peer");
/// # Ok(())
/// # }
/// ```
pub struct IsolatePeer(Toggle);

impl IsolatePeer {
    /// Over `guards`.
    pub fn new(guards: Vec<Arc<XdpGuard>>) -> Self {
        Self(Toggle::new(guards, true))
    }
}

#[async_trait]
impl Action for IsolatePeer {
    fn name(&self) -> &str {
        "isolate_peer"
    }

    async fn run(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let (ips, newly) = self.0.run(self.name(), params, ctx).await?;
        Ok(format!(
            "blocked {} in XDP on {} interface(s) ({newly} new entries)",
            list(&ips),
            self.0.guards.len()
        ))
    }

    async fn rollback(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let freed = self.0.rollback(self.name(), params, ctx).await?;
        Ok(format!(
            "isolate_peer: {freed} block entries of ours removed"
        ))
    }
}

/// `unisolate_peer`: lets the anomaly's peer (or the `address` parameter) back through XDP on
/// every attached interface. Rollback blocks again what this action let in.
pub struct UnisolatePeer(Toggle);

impl UnisolatePeer {
    /// Over `guards`.
    pub fn new(guards: Vec<Arc<XdpGuard>>) -> Self {
        Self(Toggle::new(guards, false))
    }
}

#[async_trait]
impl Action for UnisolatePeer {
    fn name(&self) -> &str {
        "unisolate_peer"
    }

    async fn run(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let (ips, n) = self.0.run(self.name(), params, ctx).await?;
        Ok(format!(
            "let {} back in ({n} block entries removed)",
            list(&ips)
        ))
    }

    async fn rollback(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let again = self.0.rollback(self.name(), params, ctx).await?;
        Ok(format!("unisolate_peer: {again} addresses blocked again"))
    }
}

/// One direction of the block list over every guard, remembering what it changed so that
/// a rollback undoes only that.
struct Toggle {
    guards: Vec<Arc<XdpGuard>>,
    /// True: adds to the block list; false: removes from it.
    block: bool,
    /// (guard index, address) pairs this action changed.
    ours: Mutex<BTreeSet<(usize, IpAddr)>>,
}

impl Toggle {
    fn new(guards: Vec<Arc<XdpGuard>>, block: bool) -> Self {
        Self {
            guards,
            block,
            ours: Mutex::default(),
        }
    }

    fn set(g: &XdpGuard, ip: IpAddr, block: bool) -> Result<bool, Error> {
        if block { g.block(ip) } else { g.unblock(ip) }
    }

    /// Applies the direction to the step's addresses; returns them and how many entries
    /// changed. A failure undoes what this run did.
    async fn run(
        &self,
        name: &str,
        params: &Params,
        ctx: &ActionContext,
    ) -> Result<(Vec<IpAddr>, usize), ActionError> {
        no_guards(name, &self.guards)?;
        let ips = target_addresses(name, params, ctx).await?;
        let mut done = Vec::new();
        for (i, g) in self.guards.iter().enumerate() {
            for ip in &ips {
                match Self::set(g, *ip, self.block) {
                    Ok(true) => done.push((i, *ip)),
                    Ok(false) => {}
                    Err(e) => {
                        // Leave nothing to undo: a failed run is not rolled back.
                        for (j, ip) in done {
                            let _ = Self::set(&self.guards[j], ip, !self.block);
                        }
                        return Err(failed(name, e));
                    }
                }
            }
        }
        let n = done.len();
        lock(&self.ours).extend(done);
        Ok((ips, n))
    }

    /// Reverses what earlier runs changed for the step's addresses; returns how many.
    async fn rollback(
        &self,
        name: &str,
        params: &Params,
        ctx: &ActionContext,
    ) -> Result<usize, ActionError> {
        let ips = target_addresses(name, params, ctx).await?;
        let mut ours = lock(&self.ours);
        let mut undone = 0;
        for (i, g) in self.guards.iter().enumerate() {
            for ip in &ips {
                if ours.remove(&(i, *ip)) {
                    Self::set(g, *ip, !self.block).map_err(|e| failed(name, e))?;
                    undone += 1;
                }
            }
        }
        Ok(undone)
    }
}

/// Where a limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Default,
    Source(IpAddr),
}

/// `set_rate_limit`: sets a token-bucket limit on every attached interface. Parameters:
/// `pps` (packets per second; 0 removes the limit), `burst` (packets; default `pps / 10`, at
/// least 1), and `address` (one IP or a list: their own limit; without it the default limit
/// for every source changes). Rollback restores the limits in force before the run.
pub struct SetRateLimit {
    guards: Vec<Arc<XdpGuard>>,
    /// The limits a run replaced, by (guard index, scope).
    before: Mutex<BTreeMap<(usize, Scope), Option<RateLimit>>>,
}

impl SetRateLimit {
    /// Over `guards`.
    pub fn new(guards: Vec<Arc<XdpGuard>>) -> Self {
        Self {
            guards,
            before: Mutex::default(),
        }
    }

    fn scopes(&self, params: &Params) -> Result<Vec<Scope>, ActionError> {
        match params.text_list("address")? {
            None => Ok(vec![Scope::Default]),
            Some(list) => {
                let ips = addresses_of(&list);
                if ips.len() != list.len() || ips.is_empty() {
                    return Err(ActionError::Failed(format!(
                        "set_rate_limit: `address` must hold IP addresses, got {list:?}"
                    )));
                }
                Ok(ips.into_iter().map(Scope::Source).collect())
            }
        }
    }

    fn apply(g: &XdpGuard, scope: Scope, l: Option<RateLimit>) -> Result<Option<RateLimit>, Error> {
        match scope {
            Scope::Default => g.set_rate_limit(l),
            Scope::Source(ip) => g.set_source_limit(ip, l),
        }
    }
}

#[async_trait]
impl Action for SetRateLimit {
    fn name(&self) -> &str {
        "set_rate_limit"
    }

    async fn run(&self, params: &Params, _ctx: &ActionContext) -> Result<String, ActionError> {
        no_guards(self.name(), &self.guards)?;
        let pps = params.uint("pps")?.ok_or_else(|| {
            ActionError::Param(x0tta_core::ParamError {
                name: "pps".into(),
                problem: "required".into(),
            })
        })?;
        let limit = if pps == 0 {
            None
        } else {
            let burst = params.uint("burst")?.unwrap_or((pps / 10).max(1));
            Some(RateLimit::new(pps, burst).map_err(|e| failed(self.name(), e))?)
        };
        let scopes = self.scopes(params)?;
        let mut replaced = Vec::new();
        for (i, g) in self.guards.iter().enumerate() {
            for scope in &scopes {
                match Self::apply(g, *scope, limit) {
                    Ok(prev) => replaced.push(((i, *scope), prev)),
                    Err(e) => {
                        for ((j, s), prev) in replaced {
                            let _ = Self::apply(&self.guards[j], s, prev);
                        }
                        return Err(failed(self.name(), e));
                    }
                }
            }
        }
        let mut before = lock(&self.before);
        for (key, prev) in replaced {
            // A second run before a rollback keeps the oldest limit to return to.
            before.entry(key).or_insert(prev);
        }
        let what = match limit {
            Some(l) => format!("{} pps, burst {}", l.pps, l.burst),
            None => "no limit".into(),
        };
        let scope = if scopes == [Scope::Default] {
            "every source".to_string()
        } else {
            let ips: Vec<IpAddr> = scopes
                .iter()
                .filter_map(|s| match s {
                    Scope::Source(ip) => Some(*ip),
                    Scope::Default => None,
                })
                .collect();
            list(&ips)
        };
        Ok(format!("rate limit for {scope}: {what}"))
    }

    async fn rollback(&self, params: &Params, _ctx: &ActionContext) -> Result<String, ActionError> {
        let scopes = self.scopes(params)?;
        let mut before = lock(&self.before);
        let mut restored = 0;
        for (i, g) in self.guards.iter().enumerate() {
            for scope in &scopes {
                if let Some(prev) = before.remove(&(i, *scope)) {
                    Self::apply(g, *scope, prev).map_err(|e| failed(self.name(), e))?;
                    restored += 1;
                }
            }
        }
        Ok(format!("set_rate_limit: {restored} limits restored"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_the_transport_notation() {
        let ips = addresses_of([
            "/ip4/10.0.0.2/tcp/7001",
            "/ip6/fd00::2/udp/7001/quic-v1",
            "/ip4/10.0.0.2/udp/7001/quic-v1",
            "10.0.0.3:80",
            "[fd00::3]:80",
            "10.0.0.4",
            "/dns4/node.example/tcp/1",
            "/ip4/not-an-ip/tcp/1",
            "/ip6/::ffff:10.0.0.5/tcp/1",
            "",
        ]);
        let want: Vec<IpAddr> = [
            "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "fd00::2", "fd00::3",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(ips, want);
    }
}
