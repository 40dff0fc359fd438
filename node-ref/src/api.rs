//! The node's HTTP API (DESIGN §10), the part governance needs: JSON under `/api/v1/` for the
//! node's status and policy and for proposals (list, show, create, vote, effectiveness). It
//! binds `node_config.api.listen` (127.0.0.1:3000 unless configured). Reads are open on the
//! bound address. Calls that change state need the node's API token as a bearer token: a
//! 0600 file, `<storage>/api.token`, written by `init` (or by the first `run`). Bodies are
//! limited to [`BODY_LIMIT`] bytes and every request to [`REQUEST_TIMEOUT`].
//!
//! The CLI's `propose`, `vote` and `proposals` commands are clients of this API ([`Client`]).

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use x0tta_core::config::NodeConfig;
use x0tta_core::{
    ContentId, Governance, GovernanceError, KnowledgeStore, NodeHandle, Timestamp, Vote,
    VoteOutcome,
};
use x0tta_dao::{Change, Dao, EffectError, ProposalSpec};

/// Largest request body, bytes.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default window of effectiveness reports, each side of the policy change.
const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The token file of a node.
pub(crate) fn token_path(cfg: &NodeConfig) -> PathBuf {
    cfg.node_config.storage.path.join("api.token")
}

/// Where `run` writes the address it bound (port 0 in the configuration picks a free one).
fn addr_path(cfg: &NodeConfig) -> PathBuf {
    cfg.node_config.storage.path.join("api.json")
}

/// Reads the API token, creating it (32 random bytes, hex, mode 0600) if there is none.
pub(crate) fn ensure_token(path: &Path) -> Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if t.len() >= 32 {
            return Ok(t);
        }
        bail!(
            "{} holds no usable API token (delete it and run `x0tta6bl4 init` again)",
            path.display()
        );
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// What the API serves from.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) node: NodeHandle,
    pub(crate) dao: Dao,
    pub(crate) knowledge: Arc<dyn KnowledgeStore>,
    pub(crate) token: Arc<str>,
}

/// Binds the API, records the bound address for the CLI, and serves until the process ends.
pub(crate) async fn start(cfg: &NodeConfig, state: ApiState) -> Result<SocketAddr> {
    let want = &cfg.node_config.api.listen;
    let listener = tokio::net::TcpListener::bind(want).await.with_context(|| {
        format!("binding the HTTP API on {want} (node_config.api.listen; another node may hold the port)")
    })?;
    let addr = listener.local_addr()?;
    let file = serde_json::json!({ "addr": addr.to_string(), "pid": std::process::id() });
    std::fs::write(addr_path(cfg), serde_json::to_vec(&file)?)?;
    let app = router(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(%e, "HTTP API stopped");
        }
    });
    Ok(addr)
}

fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/policy", get(policy))
        .route("/api/v1/proposals", get(list).post(propose))
        .route("/api/v1/proposals/{id}", get(show))
        .route("/api/v1/proposals/{id}/votes", post(vote))
        .route("/api/v1/proposals/{id}/effectiveness", get(effectiveness))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// A JSON error: `{"error": "..."}` with its status.
struct ApiError(StatusCode, String);

impl ApiError {
    fn new(code: StatusCode, msg: impl Into<String>) -> Self {
        Self(code, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Bearer token on everything but reads; a deadline on everything.
async fn guard(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Constant time: the comparison does not tell how much of a guess was right.
        let ok = given.is_some_and(|g| bool::from(g.trim().as_bytes().ct_eq(s.token.as_bytes())));
        if !ok {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this call changes state: send the node's API token (<storage>/api.token) as `Authorization: Bearer <token>`",
            )
            .into_response();
        }
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the request timed out").into_response()
        }
    }
}

async fn status(State(s): State<ApiState>) -> Response {
    Json(serde_json::json!({
        "node": s.node.id().to_string(),
        "status": s.node.status(),
        "policy_version": s.node.policy().current().version,
    }))
    .into_response()
}

async fn policy(State(s): State<ApiState>) -> Response {
    Json(s.node.policy().current()).into_response()
}

/// A proposal as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProposalView {
    /// Content id (what `vote` and `show` take).
    pub(crate) id: String,
    pub(crate) proposal_id: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) rationale: String,
    pub(crate) creator: String,
    pub(crate) track: String,
    pub(crate) changes: Vec<Change>,
    pub(crate) opened_at: Option<Timestamp>,
    /// discussion, voting, tallied, executed, rejected.
    pub(crate) phase: String,
    pub(crate) votes_for: u64,
    pub(crate) votes_against: u64,
    /// Stake that voted / all stake.
    pub(crate) participation: f64,
    /// Set once more than 2/3 of the stake attested one tally.
    pub(crate) final_tally: Option<FinalView>,
    /// When this node put the proposal's policy in force.
    pub(crate) applied_at: Option<Timestamp>,
}

/// A final tally.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FinalView {
    pub(crate) passed: bool,
    pub(crate) attesting_stake: u64,
    pub(crate) total_stake: u64,
}

async fn view(dao: &Dao, id: &ContentId) -> Option<ProposalView> {
    let spec = dao.spec(id)?;
    let state = Governance::state(dao, id).await.ok().flatten()?;
    let phase = serde_json::to_value(state.phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Some(ProposalView {
        id: id.to_string(),
        proposal_id: spec.proposal_id,
        title: spec.title,
        description: spec.description,
        rationale: spec.rationale,
        creator: spec.creator.to_string(),
        track: format!("{:?}", spec.track).to_lowercase(),
        changes: spec.changes,
        opened_at: dao.opened_at(id),
        phase,
        votes_for: state.votes_for,
        votes_against: state.votes_against,
        participation: state.participation,
        final_tally: dao.finality(id).map(|f| FinalView {
            passed: f.passed,
            attesting_stake: f.attesting_stake,
            total_stake: f.total_stake,
        }),
        applied_at: dao.applied_at(id),
    })
}

fn parse_id(id: &str) -> Result<ContentId, ApiError> {
    id.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a proposal id (a CID like bafy…): {e}"),
        )
    })
}

async fn list(State(s): State<ApiState>) -> Response {
    let mut out = Vec::new();
    for id in s.dao.proposals() {
        if let Some(v) = view(&s.dao, &id).await {
            out.push(v);
        }
    }
    Json(out).into_response()
}

async fn show(State(s): State<ApiState>, UrlPath(id): UrlPath<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match view(&s.dao, &id).await {
        Some(v) => Json(v).into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "unknown proposal").into_response(),
    }
}

/// Body: the proposal in the seed's YAML layout (JSON is YAML too).
async fn propose(State(s): State<ApiState>, body: String) -> Response {
    let spec = match ProposalSpec::from_yaml(&body, "request body") {
        Ok(spec) => spec,
        Err(e) => {
            return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response();
        }
    };
    if spec.creator != *s.node.id() {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "creator is {}, but this node signs as {}: set `creator: {}`",
                spec.creator,
                s.node.id(),
                s.node.id()
            ),
        )
        .into_response();
    }
    match s.dao.propose(spec).await {
        Ok(id) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "id": id.to_string() })),
        )
            .into_response(),
        Err(e) => governance_error(e),
    }
}

/// Body of a vote.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct VoteRequest {
    /// Number of votes (costs votes² credits).
    pub(crate) votes: u32,
    /// For (true) or against.
    pub(crate) support: bool,
}

async fn vote(
    State(s): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Json(v): Json<VoteRequest>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let vote = Vote {
        proposal: id,
        voter: s.node.id().clone(),
        votes: v.votes,
        support: v.support,
    };
    match Governance::vote(&s.dao, vote).await {
        Ok(VoteOutcome::Counted { cost }) => {
            Json(serde_json::json!({ "counted": true, "cost": cost })).into_response()
        }
        Ok(VoteOutcome::Refused(why)) => {
            let code = if matches!(why, x0tta_core::VoteRefusal::UnknownProposal) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::CONFLICT
            };
            ApiError::new(code, format!("vote refused: {why:?}")).into_response()
        }
        Ok(other) => ApiError::new(StatusCode::CONFLICT, format!("vote not counted: {other:?}"))
            .into_response(),
        Err(e) => governance_error(e),
    }
}

/// Refused input is the caller's (422); anything else is the node's (500).
fn governance_error(e: GovernanceError) -> Response {
    let code = match e {
        GovernanceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(code, e.to_string()).into_response()
}

#[derive(Debug, Deserialize)]
struct WindowQuery {
    /// e.g. `7d`, `1h`.
    window: Option<String>,
}

async fn effectiveness(
    State(s): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let window = match q.window.as_deref().map(humantime_parse) {
        None => DEFAULT_WINDOW,
        Some(Ok(w)) => w,
        Some(Err(e)) => return ApiError::new(StatusCode::BAD_REQUEST, e).into_response(),
    };
    match s.dao.effectiveness(&id, s.knowledge.as_ref(), window).await {
        Ok(r) => Json(serde_json::json!({
            "metric": r.target.metric.to_string(),
            "kind": r.target.kind.map(|k| k.to_string()),
            "applied_at": r.applied_at,
            "window_s": r.window.as_secs(),
            "before": { "incidents": r.before.incidents, "value": r.before.value },
            "after": { "incidents": r.after.incidents, "value": r.after.value, "observed_s": r.after.span.as_secs() },
            "change": r.change,
            "improved": r.improved,
            "summary": r.to_string(),
        }))
        .into_response(),
        Err(e) => {
            let code = match e {
                EffectError::UnknownProposal => StatusCode::NOT_FOUND,
                EffectError::NotApplied => StatusCode::CONFLICT,
                EffectError::NoMetric(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError::new(code, e.to_string()).into_response()
        }
    }
}

/// `7d`, `90m`, `1h 30m`, or plain seconds.
fn humantime_parse(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("window {s:?}: {e}; write e.g. 7d, 12h or 90m"))
}

/// A client of a running node's API, found through its configuration.
pub(crate) struct Client {
    addr: String,
    token: Option<String>,
}

impl Client {
    /// The API of the node that `config` describes: the address `run` recorded (else the
    /// configured one) and its token, if readable.
    pub(crate) fn for_config(config: &Path) -> Result<Self> {
        let cfg = NodeConfig::load(config)?;
        let recorded = std::fs::read(addr_path(&cfg))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["addr"].as_str().map(str::to_string));
        Ok(Self {
            addr: recorded.unwrap_or_else(|| cfg.node_config.api.listen.clone()),
            token: std::fs::read_to_string(token_path(&cfg))
                .ok()
                .map(|t| t.trim().to_string()),
        })
    }

    /// GET `path`; the JSON body of a 2xx answer.
    pub(crate) async fn get(&self, path: &str) -> Result<serde_json::Value> {
        self.call(Method::GET, path, None).await
    }

    /// POST `body` to `path` with the token; the JSON body of a 2xx answer.
    pub(crate) async fn post(&self, path: &str, body: Vec<u8>) -> Result<serde_json::Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .with_context(|| {
                format!(
                    "no node answers at {} (start one with `x0tta6bl4 run --config …`)",
                    self.addr
                )
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.addr)
            .header(header::CONTENT_TYPE, "application/json");
        if body.is_some() {
            let Some(token) = &self.token else {
                bail!(
                    "this command needs the node's API token, and its file cannot be read (run as the node's user)"
                );
            };
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let res = tokio::time::timeout(REQUEST_TIMEOUT * 2, sender.send_request(req))
            .await
            .context("the node did not answer in time")??;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes) }));
        if !status.is_success() {
            bail!(
                "{} ({})",
                json["error"].as_str().unwrap_or("request failed"),
                status
            );
        }
        Ok(json)
    }
}
