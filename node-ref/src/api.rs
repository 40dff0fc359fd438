//! The node's HTTP server (DESIGN §10): JSON under `/api/v1/` (status, neighbours, incidents
//! with hybrid search, policy and its history, proposals, recent MAPE-K cycles, live events),
//! its OpenAPI 3.1 document at `/api/v1/openapi.json`, Prometheus metrics at `/metrics` and
//! the dashboard at `/dashboard`. It binds `node_config.api.listen` (127.0.0.1:3000 unless
//! configured). Reads are open on the bound address. Calls that change state need the
//! node's API token as a bearer token: a 0600 file, `<storage>/api.token`, written by `init`
//! (or by the first `run`). Bodies are limited to [`BODY_LIMIT`] bytes and every request to
//! [`REQUEST_TIMEOUT`]; no CORS headers are sent, so other origins' pages cannot read it.
//!
//! The CLI's `status`, `propose`, `vote` and `proposals` commands are clients of this API
//! ([`Client`]).

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use x0tta_core::config::NodeConfig;
use x0tta_core::{
    ContentId, Governance, GovernanceError, Incident, KnowledgeStore, Neighbour, NodeStatus,
    Policy, SearchQuery, Timestamp, Vote, VoteOutcome,
};
use x0tta_dao::{Change, EffectError, ProposalSpec};

use crate::run::StatusFile;
use crate::telemetry::{CycleView, Dashboard, Sources, Telemetry};

/// Largest request body, bytes.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default window of effectiveness reports, each side of the policy change.
const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most items one list or search returns.
pub(crate) const MAX_LIMIT: usize = 1000;
/// Most live event streams (`/api/v1/events`) served at once.
pub(crate) const MAX_EVENT_STREAMS: usize = 64;
/// Least time between two dashboard updates on one event stream.
const EVENT_COALESCE: Duration = Duration::from_millis(250);
/// An event stream sends the figures at least this often.
const EVENT_EVERY: Duration = Duration::from_secs(5);

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
    pub(crate) sources: Sources,
    pub(crate) telemetry: Telemetry,
    pub(crate) token: Arc<str>,
    /// The newest status `run` wrote (services, listen addresses, mesh counters).
    pub(crate) status: Arc<std::sync::Mutex<Option<StatusFile>>>,
    pub(crate) started: std::time::Instant,
    pub(crate) streams: Arc<Semaphore>,
}

impl ApiState {
    /// The state for a node's parts; `status` is shared with `run`.
    pub(crate) fn new(
        sources: Sources,
        telemetry: Telemetry,
        token: String,
        status: Arc<std::sync::Mutex<Option<StatusFile>>>,
    ) -> Self {
        Self {
            sources,
            telemetry,
            token: token.into(),
            status,
            started: std::time::Instant::now(),
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        }
    }
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
        .route("/api/v1/neighbours", get(neighbours))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/search", get(search))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/policy", get(policy))
        .route("/api/v1/policy/history", get(policy_history))
        .route("/api/v1/cycles", get(cycles).post(wake))
        .route("/api/v1/dashboard", get(dashboard))
        .route("/api/v1/events", get(events))
        .route("/api/v1/proposals", get(list).post(propose))
        .route("/api/v1/proposals/{id}", get(show))
        .route("/api/v1/proposals/{id}/votes", post(vote))
        .route("/api/v1/proposals/{id}/effectiveness", get(effectiveness))
        .route("/api/v1/xdp", get(xdp_status))
        .route("/api/v1/xdp/blocked", post(xdp_block))
        .route(
            "/api/v1/xdp/blocked/{address}",
            axum::routing::delete(xdp_unblock),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(dashboard_page))
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dashboard") }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "x0tta6bl4 node API",
        description = "JSON API of an x0tta6bl4 node. Reads are open on the bound address; calls that change state need the node's API token (`<storage>/api.token`) as a bearer token. Bodies are limited to 64 KiB, requests to 10 s.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        status, neighbours, incidents, search, incident, policy, policy_history, cycles, wake,
        dashboard, events, list, show, propose, vote, effectiveness, xdp_status, xdp_block,
        xdp_unblock, openapi, metrics, dashboard_page
    ),
    modifiers(&BearerToken),
    tags(
        (name = "node", description = "Status, neighbours and the MAPE-K loop"),
        (name = "knowledge", description = "Incidents and hybrid search"),
        (name = "governance", description = "Policy and proposals"),
        (name = "security", description = "The XDP guard: per-source counters, limits, blocked addresses"),
        (name = "operator", description = "Metrics, dashboard and this document")
    )
)]
pub(crate) struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The node's API token, `<storage>/api.token`."))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document as pretty JSON.
pub(crate) fn openapi_json() -> Result<String> {
    Ok(ApiDoc::openapi().to_pretty_json()?)
}

/// docs/API_REFERENCE.md: the OpenAPI document rendered for people, operation by operation
/// (grouped by tag), then the schemas.
pub(crate) fn reference_markdown() -> Result<String> {
    use std::fmt::Write as _;
    let doc = serde_json::to_value(ApiDoc::openapi())?;
    let mut out = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    writeln!(out, "# {title}\n")?;
    writeln!(
        out,
        "<!-- Generated by `x0tta6bl4 openapi --markdown` from the OpenAPI {} document the node serves at `/api/v1/openapi.json`. Do not edit by hand: `cargo test -p node-ref --test http` fails when this file is stale. -->\n",
        doc["openapi"].as_str().unwrap_or("3.1")
    )?;
    writeln!(
        out,
        "{}\n",
        doc["info"]["description"].as_str().unwrap_or("")
    )?;
    writeln!(
        out,
        "The node binds `127.0.0.1:3000` unless `node_config.api.listen` says otherwise. Calls marked **token** need `Authorization: Bearer <token>` with the content of `<storage>/api.token`; without it they answer 401.\n"
    )?;
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    for tag in doc["tags"].as_array().into_iter().flatten() {
        let name = tag["name"].as_str().unwrap_or("");
        writeln!(out, "## {name}\n")?;
        if let Some(d) = tag["description"].as_str() {
            writeln!(out, "{d}.\n")?;
        }
        for (path, item) in paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == name));
                if !tagged {
                    continue;
                }
                let token = if op.get("security").is_some() {
                    " — **token**"
                } else {
                    ""
                };
                writeln!(out, "### `{} {path}`{token}\n", method.to_uppercase())?;
                if let Some(d) = op["description"].as_str().or(op["summary"].as_str()) {
                    writeln!(out, "{d}\n")?;
                }
                if let Some(params) = op["parameters"].as_array() {
                    writeln!(out, "| Parameter | In | Required | Type | Description |")?;
                    writeln!(out, "|---|---|---|---|---|")?;
                    for p in params {
                        writeln!(
                            out,
                            "| `{}` | {} | {} | {} | {} |",
                            p["name"].as_str().unwrap_or(""),
                            p["in"].as_str().unwrap_or(""),
                            if p["required"].as_bool().unwrap_or(false) {
                                "yes"
                            } else {
                                "no"
                            },
                            type_of(&p["schema"]),
                            cell(p["description"].as_str().unwrap_or(""))
                        )?;
                    }
                    writeln!(out)?;
                }
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    for (kind, c) in content {
                        writeln!(out, "Request body: `{kind}`, {}\n", type_of(&c["schema"]))?;
                    }
                }
                writeln!(out, "| Status | Meaning | Body |")?;
                writeln!(out, "|---|---|---|")?;
                for (code, r) in op["responses"].as_object().into_iter().flatten() {
                    let body = r["content"]
                        .as_object()
                        .and_then(|c| c.iter().next())
                        .map(|(kind, c)| format!("`{kind}` {}", type_of(&c["schema"])))
                        .unwrap_or_default();
                    writeln!(
                        out,
                        "| {code} | {} | {body} |",
                        cell(r["description"].as_str().unwrap_or(""))
                    )?;
                }
                writeln!(out)?;
            }
        }
    }
    writeln!(out, "## Schemas\n")?;
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        writeln!(out, "### {name}\n")?;
        if let Some(d) = schema["description"].as_str() {
            writeln!(out, "{}\n", d.trim())?;
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if let Some(props) = schema["properties"].as_object() {
            writeln!(out, "| Field | Type | Required | Description |")?;
            writeln!(out, "|---|---|---|---|")?;
            for (field, f) in props {
                writeln!(
                    out,
                    "| `{field}` | {} | {} | {} |",
                    type_of(f),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    cell(f["description"].as_str().unwrap_or(""))
                )?;
            }
            writeln!(out)?;
        }
    }
    Ok(out)
}

/// A table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// A JSON schema in a few words: `string`, `integer \| null`, array of [StatusView](#statusview).
fn type_of(schema: &serde_json::Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = schema[key].as_array() {
            return alts.iter().map(type_of).collect::<Vec<_>>().join(" \\| ");
        }
    }
    let one = |t: &str| {
        if t == "array" {
            format!("array of {}", type_of(&schema["items"]))
        } else {
            t.to_string()
        }
    };
    match &schema["type"] {
        serde_json::Value::String(t) => one(t),
        serde_json::Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .map(one)
            .collect::<Vec<_>>()
            .join(" \\| "),
        _ => "any".to_string(),
    }
}

/// A JSON error: `{"error": "..."}` with its status.
pub(crate) struct ApiError(StatusCode, String);

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong and what to do about it.
    error: String,
}

impl ApiError {
    fn new(code: StatusCode, msg: impl Into<String>) -> Self {
        Self(code, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
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

/// Axum's extractors, with their refusals as JSON [`ErrorBody`]s like every other error.
mod extract {
    use axum::extract::{FromRequest, FromRequestParts, Request};
    use axum::http::request::Parts;
    use axum::response::IntoResponse;
    use serde::de::DeserializeOwned;

    use super::ApiError;

    fn refused(r: impl IntoResponse + std::fmt::Display) -> ApiError {
        let text = r.to_string();
        ApiError(r.into_response().status(), text)
    }

    /// The query string.
    pub(crate) struct Query<T>(pub(crate) T);

    impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
        type Rejection = ApiError;
        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
            axum::extract::Query::from_request_parts(parts, state)
                .await
                .map(|q| Self(q.0))
                .map_err(refused)
        }
    }

    /// Path parameters.
    pub(crate) struct Path<T>(pub(crate) T);

    impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
        type Rejection = ApiError;
        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
            axum::extract::Path::from_request_parts(parts, state)
                .await
                .map(|p| Self(p.0))
                .map_err(refused)
        }
    }

    /// A JSON body.
    pub(crate) struct Json<T>(pub(crate) T);

    impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
        type Rejection = ApiError;
        async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
            axum::Json::from_request(req, state)
                .await
                .map(|j| Self(j.0))
                .map_err(refused)
        }
    }

    /// A UTF-8 text body.
    pub(crate) struct Text(pub(crate) String);

    impl<S: Send + Sync> FromRequest<S> for Text {
        type Rejection = ApiError;
        async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
            String::from_request(req, state)
                .await
                .map(Self)
                .map_err(refused)
        }
    }
}

/// The node as `status` shows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct StatusView {
    /// Node id (libp2p PeerId).
    pub(crate) node: String,
    /// Process id of the node.
    pub(crate) pid: u32,
    /// Seconds since the API started.
    pub(crate) uptime_s: u64,
    /// Version of the policy in force.
    pub(crate) policy_version: u64,
    /// The MAPE-K loop's counters.
    #[schema(value_type = Object)]
    pub(crate) status: NodeStatus,
    /// Listen addresses, with `/p2p/<peer id>`.
    pub(crate) listen: Vec<String>,
    /// Established mesh connections.
    pub(crate) connections: usize,
    /// Gossip messages received.
    pub(crate) gossip_received: u64,
    /// Incidents the knowledge store holds (own and replicated).
    pub(crate) known_incidents: u64,
    /// Supervised services and their process ids (null: down).
    #[schema(value_type = Vec<Object>)]
    pub(crate) services: Vec<(String, Option<u32>)>,
    /// The neighbour table.
    #[schema(value_type = Vec<Object>)]
    pub(crate) neighbours: Vec<Neighbour>,
}

#[utoipa::path(get, path = "/api/v1/status", tag = "node",
    responses((status = 200, description = "The node's status", body = StatusView)))]
async fn status(State(s): State<ApiState>) -> Response {
    let node = &s.sources.node;
    let neighbours = x0tta_core::Transport::neighbours(&s.sources.mesh).await;
    let stats = s.sources.mesh.stats();
    let last = s
        .status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|f| f.services.clone())
        .unwrap_or_default();
    Json(StatusView {
        node: node.id().to_string(),
        pid: std::process::id(),
        uptime_s: s.started.elapsed().as_secs(),
        policy_version: node.policy().current().version,
        status: node.status(),
        listen: s
            .sources
            .mesh
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
        connections: stats.connections,
        gossip_received: stats.gossip_received,
        known_incidents: s.sources.knowledge.known_incidents().unwrap_or_default(),
        services: last,
        neighbours,
    })
    .into_response()
}

#[utoipa::path(get, path = "/api/v1/neighbours", tag = "node",
    responses((status = 200, description = "Neighbours with RTT, loss and failure-detector state", body = Vec<Object>)))]
async fn neighbours(State(s): State<ApiState>) -> Response {
    Json(x0tta_core::Transport::neighbours(&s.sources.mesh).await).into_response()
}

/// `?limit=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LimitQuery {
    /// How many (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

impl LimitQuery {
    fn get(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(20),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit {n}: give 1 to {MAX_LIMIT}"),
            )),
        }
    }
}

/// An incident and its content id.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct IncidentView {
    /// Content id (CIDv1, DAG-CBOR).
    pub(crate) id: String,
    /// The incident as stored.
    #[schema(value_type = Object)]
    pub(crate) incident: Incident,
}

/// A search hit.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct HitView {
    /// Content id.
    pub(crate) id: String,
    /// Fused BM25 + vector score.
    pub(crate) score: f64,
    /// The incident.
    #[schema(value_type = Object)]
    pub(crate) incident: Incident,
}

fn knowledge_error(e: x0tta_core::KnowledgeError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[utoipa::path(get, path = "/api/v1/incidents", tag = "knowledge", params(LimitQuery),
    responses(
        (status = 200, description = "The newest incidents, newest first", body = Vec<IncidentView>),
        (status = 400, description = "Bad limit", body = ErrorBody)))]
async fn incidents(
    State(s): State<ApiState>,
    extract::Query(q): extract::Query<LimitQuery>,
) -> Response {
    let limit = match q.get() {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    match s.sources.knowledge.recent(limit).await {
        Ok(list) => Json(
            list.into_iter()
                .map(|(id, incident)| IncidentView {
                    id: id.to_string(),
                    incident,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => knowledge_error(e).into_response(),
    }
}

/// `?q=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// The text (words of anomaly kinds, subjects, root causes, templates).
    #[param(min_length = 1, max_length = 1024, pattern = r"\S")]
    q: String,
    /// How many hits (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/incidents/search", tag = "knowledge", params(SearchParams),
    responses(
        (status = 200, description = "Hybrid search (BM25 + HNSW vectors, fused), best first", body = Vec<HitView>),
        (status = 400, description = "Bad query", body = ErrorBody)))]
async fn search(
    State(s): State<ApiState>,
    extract::Query(q): extract::Query<SearchParams>,
) -> Response {
    let limit = match (LimitQuery { limit: q.limit }).get() {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    if q.q.trim().is_empty() || q.q.len() > 1024 {
        return ApiError::new(StatusCode::BAD_REQUEST, "q: give 1 to 1024 bytes of text")
            .into_response();
    }
    let mut query = SearchQuery::text(q.q);
    query.limit = limit;
    let t = std::time::Instant::now();
    let hits = s.sources.knowledge.search(&query).await;
    s.telemetry.searched(t.elapsed());
    match hits {
        Ok(hits) => Json(
            hits.into_iter()
                .map(|h| HitView {
                    id: h.id.to_string(),
                    score: h.score,
                    incident: h.incident,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => knowledge_error(e).into_response(),
    }
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "knowledge",
    params(("id" = String, Path, description = "Incident content id (bafy…)")),
    responses(
        (status = 200, description = "The incident", body = IncidentView),
        (status = 400, description = "Not a content id", body = ErrorBody),
        (status = 404, description = "Unknown here", body = ErrorBody),
        (status = 410, description = "Known, but its body was evicted by retention", body = ErrorBody)))]
async fn incident(State(s): State<ApiState>, extract::Path(id): extract::Path<String>) -> Response {
    let cid: ContentId = match id.parse() {
        Ok(c) => c,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{id:?} is not an incident id (a CID like bafy…): {e}"),
            )
            .into_response();
        }
    };
    match s.sources.knowledge.get(&cid).await {
        Ok(Some(incident)) => Json(IncidentView { id, incident }).into_response(),
        Ok(None) if s.sources.knowledge.knows(&cid).unwrap_or(false) => ApiError::new(
            StatusCode::GONE,
            "known, but its body was evicted by retention",
        )
        .into_response(),
        Ok(None) => ApiError::new(StatusCode::NOT_FOUND, "no such incident").into_response(),
        Err(e) => knowledge_error(e).into_response(),
    }
}

/// How many of the busiest sources `/api/v1/xdp` lists per interface.
const XDP_TOP_SOURCES: usize = 32;

/// One interface's XDP guard.
#[derive(Serialize, ToSchema)]
pub(crate) struct XdpInterface {
    /// The interface.
    interface: String,
    /// `driver` or `generic`.
    mode: String,
    /// The default per-source limit, if any.
    rate_limit: Option<XdpLimit>,
    /// IP packets passed to the stack since attach.
    passed: u64,
    /// Dropped by a rate limit.
    rate_dropped: u64,
    /// Dropped because the source is blocked.
    blocked_dropped: u64,
    /// Sources tracked now.
    tracked_sources: usize,
    /// Blocked addresses.
    blocked: Vec<String>,
    /// The busiest sources by packets, at most 32.
    top_sources: Vec<XdpSource>,
}

/// A token bucket.
#[derive(Serialize, ToSchema)]
pub(crate) struct XdpLimit {
    /// Packets per second.
    pps: u64,
    /// Burst, packets.
    burst: u64,
}

/// What one source sent.
#[derive(Serialize, ToSchema)]
pub(crate) struct XdpSource {
    /// Source address.
    address: String,
    /// Packets seen (dropped ones included).
    packets: u64,
    /// Bytes seen.
    bytes: u64,
    /// Dropped by a rate limit.
    rate_dropped: u64,
    /// Dropped because blocked.
    blocked_dropped: u64,
}

/// The XDP guards of this node.
#[derive(Serialize, ToSchema)]
pub(crate) struct XdpStatus {
    /// One entry per interface with a guard attached; empty when `network.ebpf_hooks` does
    /// not name `xdp` or no guard could attach (the node's log says why).
    interfaces: Vec<XdpInterface>,
}

fn xdp_view(g: &x0tta_ebpf::XdpGuard) -> Result<XdpInterface, x0tta_ebpf::Error> {
    let t = g.totals()?;
    let mut sources = g.sources()?;
    let tracked_sources = sources.len();
    sources.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.addr.cmp(&b.addr)));
    Ok(XdpInterface {
        interface: g.interface().to_string(),
        mode: g.mode().to_string(),
        rate_limit: g.rate_limit()?.map(|l| XdpLimit {
            pps: l.pps,
            burst: l.burst,
        }),
        passed: t.passed,
        rate_dropped: t.rate_dropped,
        blocked_dropped: t.blocked_dropped,
        tracked_sources,
        blocked: g.blocked()?.iter().map(ToString::to_string).collect(),
        top_sources: sources
            .into_iter()
            .take(XDP_TOP_SOURCES)
            .map(|s| XdpSource {
                address: s.addr.to_string(),
                packets: s.packets,
                bytes: s.bytes,
                rate_dropped: s.rate_dropped,
                blocked_dropped: s.blocked_dropped,
            })
            .collect(),
    })
}

fn xdp_error(e: x0tta_ebpf::Error) -> Response {
    let status = match e {
        x0tta_ebpf::Error::MapFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string()).into_response()
}

#[utoipa::path(get, path = "/api/v1/xdp", tag = "security",
    responses((status = 200, description = "Every attached XDP guard", body = XdpStatus)))]
async fn xdp_status(State(s): State<ApiState>) -> Response {
    let guards = s.sources.xdp.clone();
    let read = tokio::task::spawn_blocking(move || {
        guards
            .iter()
            .map(|g| xdp_view(g))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match read {
        Ok(Ok(interfaces)) => Json(XdpStatus { interfaces }).into_response(),
        Ok(Err(e)) => xdp_error(e),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Body of a block request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BlockRequest {
    /// An IPv4 or IPv6 address.
    pub(crate) address: String,
}

/// What a block or unblock changed.
#[derive(Serialize, ToSchema)]
pub(crate) struct BlockOutcome {
    /// The address, as the guard keys it.
    address: String,
    /// Interfaces whose block list changed (0: it was already so everywhere).
    changed: usize,
}

fn parse_address(a: &str) -> Result<std::net::IpAddr, ApiError> {
    a.trim()
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{a:?} is not an IPv4 or IPv6 address"),
            )
        })
}

fn no_guard(s: &ApiState) -> Option<Response> {
    s.sources.xdp.is_empty().then(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no XDP guard is attached on this node (set network.ebpf_hooks: [xdp] and network.interfaces; it needs root or CAP_BPF + CAP_NET_ADMIN)",
        )
        .into_response()
    })
}

#[utoipa::path(post, path = "/api/v1/xdp/blocked", tag = "security", security(("token" = [])),
    request_body = BlockRequest,
    responses(
        (status = 200, description = "Blocked on every attached interface", body = BlockOutcome),
        (status = 400, description = "Body not JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not an IP address", body = ErrorBody),
        (status = 503, description = "No XDP guard attached", body = ErrorBody),
        (status = 507, description = "The block map is full", body = ErrorBody)))]
async fn xdp_block(
    State(s): State<ApiState>,
    extract::Json(req): extract::Json<BlockRequest>,
) -> Response {
    set_blocked(&s, &req.address, true)
}

#[utoipa::path(delete, path = "/api/v1/xdp/blocked/{address}", tag = "security", security(("token" = [])),
    params(("address" = String, Path, description = "The blocked IPv4 or IPv6 address")),
    responses(
        (status = 200, description = "Let through again on every attached interface", body = BlockOutcome),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 422, description = "Not an IP address", body = ErrorBody),
        (status = 503, description = "No XDP guard attached", body = ErrorBody)))]
async fn xdp_unblock(
    State(s): State<ApiState>,
    extract::Path(address): extract::Path<String>,
) -> Response {
    set_blocked(&s, &address, false)
}

/// Blocks (or unblocks) `address` on every attached guard; the answer counts the guards
/// whose block list changed.
fn set_blocked(s: &ApiState, address: &str, block: bool) -> Response {
    let ip = match parse_address(address) {
        Ok(ip) => ip,
        Err(e) => return e.into_response(),
    };
    if let Some(r) = no_guard(s) {
        return r;
    }
    let mut changed = 0;
    for g in &s.sources.xdp {
        let done = if block { g.block(ip) } else { g.unblock(ip) };
        match done {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => return xdp_error(e),
        }
    }
    tracing::info!(%ip, changed, block, "block list changed through the API");
    Json(BlockOutcome {
        address: ip.to_string(),
        changed,
    })
    .into_response()
}

#[utoipa::path(get, path = "/api/v1/policy", tag = "governance",
    responses((status = 200, description = "The policy in force", body = Object)))]
async fn policy(State(s): State<ApiState>) -> Response {
    Json(s.sources.node.policy().current()).into_response()
}

#[utoipa::path(get, path = "/api/v1/policy/history", tag = "governance",
    responses((status = 200, description = "Every policy version this node put in force, oldest first", body = Vec<Object>)))]
async fn policy_history(State(s): State<ApiState>) -> Response {
    match s.sources.knowledge.policy_history().await {
        Ok(h) => Json::<Vec<Policy>>(h).into_response(),
        Err(e) => knowledge_error(e).into_response(),
    }
}

#[utoipa::path(get, path = "/api/v1/cycles", tag = "node", params(LimitQuery),
    responses(
        (status = 200, description = "The MAPE-K loop's recent cycles, newest first", body = Vec<CycleView>),
        (status = 400, description = "Bad limit", body = ErrorBody)))]
async fn cycles(
    State(s): State<ApiState>,
    extract::Query(q): extract::Query<LimitQuery>,
) -> Response {
    match q.get() {
        Ok(limit) => Json(s.telemetry.cycles(limit)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(post, path = "/api/v1/cycles", tag = "node", security(("token" = [])),
    responses(
        (status = 202, description = "A cycle will run now"),
        (status = 401, description = "No or wrong token", body = ErrorBody)))]
async fn wake(State(s): State<ApiState>) -> Response {
    s.sources.node.wake();
    StatusCode::ACCEPTED.into_response()
}

#[utoipa::path(get, path = "/api/v1/dashboard", tag = "operator",
    responses((status = 200, description = "The dashboard's figures", body = Dashboard)))]
async fn dashboard(State(s): State<ApiState>) -> Response {
    Json(s.telemetry.dashboard(&s.sources.node.status())).into_response()
}

#[utoipa::path(get, path = "/api/v1/events", tag = "operator",
    responses(
        (status = 200, description = "Server-sent events: `dashboard` events carrying the dashboard's figures, sent when they change (at most 4 a second) and at least every 5 s", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many event streams open", body = ErrorBody)))]
async fn events(State(s): State<ApiState>) -> Response {
    let Ok(permit) = s.streams.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_EVENT_STREAMS} event streams are open; try again later"),
        )
        .into_response();
    };
    let rx = s.telemetry.changes();
    let stream = futures::stream::unfold(
        (s, rx, permit, true),
        |(s, mut rx, permit, first)| async move {
            if !first {
                let _ = tokio::time::timeout(EVENT_EVERY, rx.changed()).await;
                tokio::time::sleep(EVENT_COALESCE).await;
                rx.borrow_and_update();
            }
            let d = s.telemetry.dashboard(&s.sources.node.status());
            let event = Event::default().event("dashboard").json_data(&d).ok()?;
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (s, rx, permit, false),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operator",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operator",
    responses((status = 200, description = "Prometheus metrics: OpenMetrics text when the Accept header asks for `application/openmetrics-text`, else the Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    // Prometheus asks for OpenMetrics; curl, promtool and older scrapers get text 0.0.4.
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (encoded, kind) = if openmetrics {
        (
            s.telemetry.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            s.telemetry.encode_text(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    match encoded {
        Ok(text) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
            text,
        )
            .into_response(),
        Err(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics not encodable")
            .into_response(),
    }
}

/// The dashboard page: HTML, CSS and script in one file, compiled into the binary.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

#[utoipa::path(get, path = "/dashboard", tag = "operator",
    responses((status = 200, description = "The live dashboard (one HTML page)", content_type = "text/html", body = String)))]
async fn dashboard_page() -> Response {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        )],
        Html(DASHBOARD_HTML),
    )
        .into_response()
}

/// A proposal as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ProposalView {
    /// Content id (what `vote` and `show` take).
    pub(crate) id: String,
    /// The creator's id for it.
    pub(crate) proposal_id: String,
    /// Title.
    pub(crate) title: String,
    /// Description.
    pub(crate) description: String,
    /// Why; names the metric the effectiveness report measures.
    pub(crate) rationale: String,
    /// Node that signed it.
    pub(crate) creator: String,
    /// `standard` or `emergency`.
    pub(crate) track: String,
    /// Policy changes.
    #[schema(value_type = Vec<Object>)]
    pub(crate) changes: Vec<Change>,
    /// When it opened (ms since the epoch).
    #[schema(value_type = Option<u64>)]
    pub(crate) opened_at: Option<Timestamp>,
    /// discussion, voting, tallied, executed, rejected.
    pub(crate) phase: String,
    /// Votes for.
    pub(crate) votes_for: u64,
    /// Votes against.
    pub(crate) votes_against: u64,
    /// Stake that voted / all stake.
    pub(crate) participation: f64,
    /// Set once more than 2/3 of the stake attested one tally.
    pub(crate) final_tally: Option<FinalView>,
    /// When this node put the proposal's policy in force.
    #[schema(value_type = Option<u64>)]
    pub(crate) applied_at: Option<Timestamp>,
}

/// A final tally.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct FinalView {
    /// Whether it passed.
    pub(crate) passed: bool,
    /// Stake that attested this tally.
    pub(crate) attesting_stake: u64,
    /// All stake.
    pub(crate) total_stake: u64,
}

async fn view(dao: &x0tta_dao::Dao, id: &ContentId) -> Option<ProposalView> {
    let spec = dao.spec(id)?;
    let state = Governance::state(dao, id).await.ok().flatten()?;
    let phase = crate::telemetry::wire_name(&state.phase);
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

#[utoipa::path(get, path = "/api/v1/proposals", tag = "governance",
    responses((status = 200, description = "Every proposal held, newest first", body = Vec<ProposalView>)))]
async fn list(State(s): State<ApiState>) -> Response {
    let mut out = Vec::new();
    for id in s.sources.dao.proposals() {
        if let Some(v) = view(&s.sources.dao, &id).await {
            out.push(v);
        }
    }
    Json(out).into_response()
}

#[utoipa::path(get, path = "/api/v1/proposals/{id}", tag = "governance",
    params(("id" = String, Path, description = "Proposal content id (bafy…)")),
    responses(
        (status = 200, description = "The proposal", body = ProposalView),
        (status = 400, description = "Not a content id", body = ErrorBody),
        (status = 404, description = "Unknown here", body = ErrorBody)))]
async fn show(State(s): State<ApiState>, extract::Path(id): extract::Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match view(&s.sources.dao, &id).await {
        Some(v) => Json(v).into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "unknown proposal").into_response(),
    }
}

/// Answer to a created proposal.
#[derive(Serialize, ToSchema)]
pub(crate) struct Created {
    /// Its content id.
    id: String,
}

/// Body: the proposal in the seed's YAML layout (JSON is YAML too).
#[utoipa::path(post, path = "/api/v1/proposals", tag = "governance", security(("token" = [])),
    request_body(content = String, content_type = "application/yaml",
        description = "The proposal in the seed's YAML layout (proposal_id, title, description, rationale, creator, track, changes)"),
    responses(
        (status = 201, description = "Signed and gossiped", body = Created),
        (status = 400, description = "Body not UTF-8", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Refused: malformed, wrong creator, or invalid change", body = ErrorBody)))]
async fn propose(State(s): State<ApiState>, extract::Text(body): extract::Text) -> Response {
    let spec = match ProposalSpec::from_yaml(&body, "request body") {
        Ok(spec) => spec,
        Err(e) => {
            return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response();
        }
    };
    let me = s.sources.node.id();
    if spec.creator != *me {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "creator is {}, but this node signs as {me}: set `creator: {me}`",
                spec.creator
            ),
        )
        .into_response();
    }
    match s.sources.dao.propose(spec).await {
        Ok(id) => (StatusCode::CREATED, Json(Created { id: id.to_string() })).into_response(),
        Err(e) => governance_error(e),
    }
}

/// Body of a vote.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct VoteRequest {
    /// Number of votes (costs votes² credits).
    pub(crate) votes: u32,
    /// For (true) or against.
    pub(crate) support: bool,
}

/// Answer to a counted vote.
#[derive(Serialize, ToSchema)]
pub(crate) struct Counted {
    /// Always true.
    counted: bool,
    /// Credits it cost (votes²).
    cost: u64,
}

#[utoipa::path(post, path = "/api/v1/proposals/{id}/votes", tag = "governance", security(("token" = [])),
    params(("id" = String, Path, description = "Proposal content id (bafy…)")),
    request_body = VoteRequest,
    responses(
        (status = 200, description = "Counted, signed and gossiped", body = Counted),
        (status = 400, description = "Not a content id, or the body is not JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "Unknown proposal", body = ErrorBody),
        (status = 409, description = "Refused: not voting, over budget, no stake…", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Not a vote (fields missing or of the wrong type)", body = ErrorBody)))]
async fn vote(
    State(s): State<ApiState>,
    extract::Path(id): extract::Path<String>,
    extract::Json(v): extract::Json<VoteRequest>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let vote = Vote {
        proposal: id,
        voter: s.sources.node.id().clone(),
        votes: v.votes,
        support: v.support,
    };
    match Governance::vote(&s.sources.dao, vote).await {
        Ok(VoteOutcome::Counted { cost }) => Json(Counted {
            counted: true,
            cost,
        })
        .into_response(),
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

/// `?window=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// Each side of the policy change, e.g. `7d` (default), `12h`, `90m`, or seconds.
    window: Option<String>,
}

/// How a policy change did on the metric its rationale names.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct EffectivenessView {
    /// `MTTR`, `incident rate` or `heal rate`.
    pub(crate) metric: String,
    /// The anomaly kind it is restricted to, if any.
    pub(crate) kind: Option<String>,
    /// When the policy came into force here.
    #[schema(value_type = u64)]
    pub(crate) applied_at: Timestamp,
    /// Window each side, seconds.
    pub(crate) window_s: u64,
    /// The window before.
    pub(crate) before: SampleView,
    /// The window after (so far).
    pub(crate) after: SampleView,
    /// after − before.
    pub(crate) change: Option<f64>,
    /// Whether the metric moved the way the rationale wants.
    pub(crate) improved: Option<bool>,
    /// One line for people.
    pub(crate) summary: String,
}

/// One side of an effectiveness report.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct SampleView {
    /// Incidents in the window.
    pub(crate) incidents: usize,
    /// The metric's value (null: nothing to measure).
    pub(crate) value: Option<f64>,
    /// Seconds of the window observed.
    pub(crate) observed_s: u64,
}

#[utoipa::path(get, path = "/api/v1/proposals/{id}/effectiveness", tag = "governance",
    params(("id" = String, Path, description = "Proposal content id (bafy…)"), WindowQuery),
    responses(
        (status = 200, description = "The metric before and after", body = EffectivenessView),
        (status = 400, description = "Bad id or window", body = ErrorBody),
        (status = 404, description = "Unknown proposal", body = ErrorBody),
        (status = 409, description = "Not in force here", body = ErrorBody),
        (status = 422, description = "The rationale names no metric", body = ErrorBody)))]
async fn effectiveness(
    State(s): State<ApiState>,
    extract::Path(id): extract::Path<String>,
    extract::Query(q): extract::Query<WindowQuery>,
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
    match s
        .sources
        .dao
        .effectiveness(&id, &s.sources.knowledge, window)
        .await
    {
        Ok(r) => Json(EffectivenessView {
            metric: r.target.metric.to_string(),
            kind: r.target.kind.map(|k| k.to_string()),
            applied_at: r.applied_at,
            window_s: r.window.as_secs(),
            before: SampleView {
                incidents: r.before.incidents,
                value: r.before.value,
                observed_s: r.before.span.as_secs(),
            },
            after: SampleView {
                incidents: r.after.incidents,
                value: r.after.value,
                observed_s: r.after.span.as_secs(),
            },
            change: r.change,
            improved: r.improved,
            summary: r.to_string(),
        })
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

/// `7d`, `90m`, `1h 30m`, or plain seconds; more than zero and at most ten years.
fn humantime_parse(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("window {s:?}: {e}; write e.g. 7d, 12h or 90m"))?,
    };
    if d.is_zero() || d > Duration::from_secs(10 * 365 * 86_400) {
        return Err(format!(
            "window {s:?}: give more than 0 and at most 10 years"
        ));
    }
    Ok(d)
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

    /// The address it talks to.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
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
