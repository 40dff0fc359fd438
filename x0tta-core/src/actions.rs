//! Actions any node can register, whatever its host: telling neighbours, reloading policy,
//! disconnecting a peer.
//! Host-level actions (restart a service, run a command, adjust memory limits) are in
//! [`host`](crate::host) behind the `host` feature.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Action, ActionContext, ActionError, CommandOutcome, Envelope, IncidentMessage, MeshCommand,
    NodeId, Params, ParamsExt, Policy, PolicyUpdate, Signer, Subject, contexts, to_dag_cbor,
    topics,
};

/// `notify_neighbors`: publishes a signed notice of the anomaly on `x0tta/incidents/1`.
///
/// Parameters: `note` (text, optional). Fails if the transport refuses the message; succeeds
/// with zero receivers (a lone node has nobody to tell, which is not a failure).
pub struct NotifyNeighbors {
    signer: Arc<dyn Signer>,
}

impl NotifyNeighbors {
    /// Signs notices with `signer`.
    pub fn new(signer: Arc<dyn Signer>) -> Self {
        Self { signer }
    }
}

#[async_trait]
impl Action for NotifyNeighbors {
    fn name(&self) -> &str {
        "notify_neighbors"
    }

    async fn run(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let note = params
            .text("note")?
            .unwrap_or("anomaly under repair")
            .to_string();
        let msg = IncidentMessage::Notice {
            node: ctx.node.clone(),
            anomaly: ctx.anomaly.clone(),
            note,
        };
        let bytes = to_dag_cbor(&msg).map_err(|e| ActionError::Failed(e.to_string()))?;
        let env = Envelope::seal(self.signer.as_ref(), contexts::INCIDENT, bytes)
            .map_err(|e| ActionError::Failed(e.to_string()))?;
        let wire = to_dag_cbor(&env).map_err(|e| ActionError::Failed(e.to_string()))?;
        let out = ctx
            .transport
            .publish(topics::INCIDENTS, wire)
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))?;
        Ok(format!(
            "notified {} neighbours ({} dropped)",
            out.delivered, out.dropped
        ))
    }
}

/// Where `reload_policy` reads the policy from.
pub type PolicySource = Arc<dyn Fn() -> Result<Policy, String> + Send + Sync>;

/// `reload_policy`: reads the policy from its source and puts it in force (next version).
///
/// Rollback restores the rules that were in force before (as a further version, since
/// policies never go backwards).
pub struct ReloadPolicy {
    source: PolicySource,
    /// The rules replaced by the last applied reload, and the version that reload created.
    applied: std::sync::Mutex<Option<(Policy, u64)>>,
}

impl ReloadPolicy {
    /// Reloads from `source`.
    pub fn new(source: PolicySource) -> Self {
        Self {
            source,
            applied: std::sync::Mutex::new(None),
        }
    }

    fn remember(&self, what: Option<(Policy, u64)>) {
        if let Ok(mut a) = self.applied.lock() {
            *a = what;
        }
    }
}

#[async_trait]
impl Action for ReloadPolicy {
    fn name(&self) -> &str {
        "reload_policy"
    }

    async fn run(&self, _params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        // Whatever an earlier run applied is no longer this run's to undo.
        self.remember(None);
        let next =
            (self.source)().map_err(|e| ActionError::Failed(format!("reading policy: {e}")))?;
        let before = ctx.policy.current();
        match ctx.policy.replace_rules(next) {
            Ok(PolicyUpdate::Applied { from, to }) => {
                self.remember(Some(((*before).clone(), to)));
                Ok(format!("policy v{from} -> v{to}"))
            }
            Ok(PolicyUpdate::Unchanged) => Ok("policy unchanged".into()),
            Ok(other) => Err(ActionError::Failed(format!(
                "policy not applied: {other:?}"
            ))),
            Err(e) => Err(ActionError::Failed(e.to_string())),
        }
    }

    /// Restores the replaced rules, unless the policy changed again since (a governance
    /// decision or another reload): newer rules are never overwritten by an undo.
    async fn rollback(&self, _params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let applied = self.applied.lock().ok().and_then(|mut a| a.take());
        let Some((previous, version)) = applied else {
            return Ok("reload_policy: nothing to undo".into());
        };
        let current = ctx.policy.current().version;
        if current != version {
            return Err(ActionError::Failed(format!(
                "policy moved on to v{current} since this reload applied v{version}; not restoring older rules"
            )));
        }
        match ctx.policy.replace_rules(previous) {
            Ok(PolicyUpdate::Applied { to, .. }) => Ok(format!("previous rules restored as v{to}")),
            Ok(_) => Ok("previous rules already in force".into()),
            Err(e) => Err(ActionError::Failed(e.to_string())),
        }
    }
}

/// `disconnect_peer`: isolates the anomaly's peer in the mesh ([`MeshCommand::Isolate`]: its
/// connections closed, new ones refused, its gossip no longer relayed). Rollback lets it back
/// in, unless it was already isolated before this step (then there is nothing of ours to
/// undo).
///
/// The anomaly's subject must be a peer or a link; anything else is refused. A transport that
/// cannot isolate fails the step.
///
/// ```
/// use std::sync::Arc;
/// use x0tta_core::{Action, DisconnectPeer};
/// let action: Arc<dyn Action> = Arc::new(DisconnectPeer::new());
/// assert_eq!(action.name(), "disconnect_peer");
/// ```
#[derive(Debug, Default)]
pub struct DisconnectPeer {
    /// Peers this action isolated (and so may let back in).
    isolated: std::sync::Mutex<std::collections::BTreeSet<NodeId>>,
}

impl DisconnectPeer {
    /// A fresh action.
    pub fn new() -> Self {
        Self::default()
    }
}

fn peer_of(ctx: &ActionContext) -> Result<NodeId, ActionError> {
    match &ctx.anomaly.subject {
        Subject::Peer(p) | Subject::Link(p) => Ok(p.clone()),
        other => Err(ActionError::Failed(format!(
            "disconnect_peer needs a peer, the anomaly is about {other}"
        ))),
    }
}

#[async_trait]
impl Action for DisconnectPeer {
    fn name(&self) -> &str {
        "disconnect_peer"
    }

    async fn run(&self, _params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let peer = peer_of(ctx)?;
        if peer == ctx.node {
            return Err(ActionError::Failed("a node cannot isolate itself".into()));
        }
        match ctx
            .transport
            .command(MeshCommand::Isolate(peer.clone()))
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))?
        {
            CommandOutcome::Done => {
                if let Ok(mut set) = self.isolated.lock() {
                    set.insert(peer.clone());
                }
                Ok(format!("{peer} isolated"))
            }
            CommandOutcome::AlreadyDone => Ok(format!("{peer} was already isolated")),
            CommandOutcome::Unsupported => Err(ActionError::Failed(
                "this transport cannot isolate peers".into(),
            )),
        }
    }

    async fn rollback(&self, _params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let peer = peer_of(ctx)?;
        let ours = self
            .isolated
            .lock()
            .map(|mut set| set.remove(&peer))
            .unwrap_or(false);
        if !ours {
            return Ok(format!("disconnect_peer: {peer} not isolated by this step"));
        }
        ctx.transport
            .command(MeshCommand::Unisolate(peer.clone()))
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))?;
        Ok(format!("{peer} let back in"))
    }
}
