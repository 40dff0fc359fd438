//! Yggdrasil adapter: reads a running Yggdrasil router's admin socket (its own address and
//! tree coordinates, its peers) as a [`Sensor`], and gives the address libp2p can listen on
//! so the mesh runs over Yggdrasil's end-to-end encrypted IPv6 overlay.
//!
//! Speaks the admin API of Yggdrasil 0.4 and 0.5 (`getself`, `getpeers`): one JSON request
//! per connection (`keepalive: false`), a bounded JSON answer.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x0tta_core::{Policy, Reading, Sensor, SensorError};

/// Largest admin answer read, in bytes.
pub const MAX_ADMIN_RESPONSE: usize = 1 << 20;

/// Metric: peers the router has.
pub const METRIC_PEERS: &str = "yggdrasil.peers";
/// Metric: the router's depth in the spanning tree (length of its coordinates).
pub const METRIC_TREE_DEPTH: &str = "yggdrasil.tree_depth";
/// Metric: bytes received from all peers since they connected.
pub const METRIC_BYTES_RECEIVED: &str = "yggdrasil.bytes_received";
/// Metric: bytes sent to all peers since they connected.
pub const METRIC_BYTES_SENT: &str = "yggdrasil.bytes_sent";

/// Talking to the admin socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YggdrasilError {
    /// The endpoint is not `unix:///path` or `tcp://host:port`.
    #[error("admin endpoint {0:?} is not unix:///path or tcp://host:port")]
    Endpoint(String),
    /// Connecting, sending or receiving failed.
    #[error("admin socket {endpoint}: {error}")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// No complete answer in time.
    #[error("admin socket {0} did not answer in time")]
    Timeout(String),
    /// The answer is too large.
    #[error("admin answer exceeds {MAX_ADMIN_RESPONSE} bytes")]
    TooLarge,
    /// The answer is not what the API documents.
    #[error("unexpected admin answer: {0}")]
    Malformed(String),
    /// The router refused the request.
    #[error("router refused {request}: {error}")]
    Refused {
        /// The request.
        request: String,
        /// Its error text.
        error: String,
    },
}

/// Where the admin socket listens: `unix:///var/run/yggdrasil/yggdrasil.sock` or
/// `tcp://127.0.0.1:9001`.
///
/// ```
/// use x0tta_mesh::yggdrasil::AdminEndpoint;
/// let e: AdminEndpoint = "unix:///var/run/yggdrasil/yggdrasil.sock".parse()?;
/// assert_eq!(e.to_string(), "unix:///var/run/yggdrasil/yggdrasil.sock");
/// assert!("http://x".parse::<AdminEndpoint>().is_err());
/// # Ok::<(), x0tta_mesh::yggdrasil::YggdrasilError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    /// A UNIX socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(String),
}

impl FromStr for AdminEndpoint {
    type Err = YggdrasilError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("unix://").filter(|p| p.starts_with('/')) {
            Ok(Self::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp://").filter(|a| a.contains(':')) {
            Ok(Self::Tcp(a.to_owned()))
        } else {
            Err(YggdrasilError::Endpoint(s.to_owned()))
        }
    }
}

impl std::fmt::Display for AdminEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The router itself (`getself`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SelfInfo {
    /// Its Yggdrasil IPv6 address (in 200::/7).
    pub address: Ipv6Addr,
    /// Its routed /64 subnet.
    #[serde(default)]
    pub subnet: String,
    /// Its ed25519 public key, hex.
    pub key: String,
    /// Its tree coordinates (Yggdrasil 0.4; empty on 0.5, which has no coordinates).
    #[serde(default)]
    pub coords: Vec<u64>,
}

/// One peering link (`getpeers`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeerInfo {
    /// The peer's Yggdrasil address.
    pub address: Ipv6Addr,
    /// Its public key, hex.
    pub key: String,
    /// Local switch port of the link.
    #[serde(default)]
    pub port: u64,
    /// Its tree coordinates (0.4).
    #[serde(default)]
    pub coords: Vec<u64>,
    /// The underlying link, e.g. `tcp://192.0.2.1:9001`.
    #[serde(default)]
    pub remote: String,
    /// Bytes received over the link.
    #[serde(default)]
    pub bytes_recvd: u64,
    /// Bytes sent over the link.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Seconds the link has been up.
    #[serde(default)]
    pub uptime: f64,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    response: Option<serde_json::Value>,
}

/// A client of one router's admin socket.
#[derive(Debug, Clone)]
pub struct YggdrasilAdmin {
    endpoint: AdminEndpoint,
    timeout: Duration,
}

impl YggdrasilAdmin {
    /// A client of `endpoint`; each call times out after 2 s.
    pub fn new(endpoint: AdminEndpoint) -> Self {
        Self {
            endpoint,
            timeout: Duration::from_secs(2),
        }
    }

    /// Changes the per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The router's own address, key and coordinates.
    pub async fn self_info(&self) -> Result<SelfInfo, YggdrasilError> {
        let v = self.call("getself").await?;
        serde_json::from_value(v).map_err(|e| YggdrasilError::Malformed(format!("getself: {e}")))
    }

    /// The router's peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, YggdrasilError> {
        let v = self.call("getpeers").await?;
        let peers = v
            .get("peers")
            .cloned()
            .ok_or_else(|| YggdrasilError::Malformed("getpeers: no peers field".into()))?;
        match peers {
            // 0.4 and 0.5: a list of peer objects.
            serde_json::Value::Array(_) => serde_json::from_value(peers)
                .map_err(|e| YggdrasilError::Malformed(format!("getpeers: {e}"))),
            // Older 0.4 builds: an object keyed by address.
            serde_json::Value::Object(map) => map
                .into_iter()
                .map(|(addr, mut p)| {
                    if let Some(o) = p.as_object_mut() {
                        o.entry("address")
                            .or_insert(serde_json::Value::String(addr));
                    }
                    serde_json::from_value(p)
                        .map_err(|e| YggdrasilError::Malformed(format!("getpeers: {e}")))
                })
                .collect(),
            other => Err(YggdrasilError::Malformed(format!(
                "getpeers: peers is {other}"
            ))),
        }
    }

    async fn call(&self, request: &str) -> Result<serde_json::Value, YggdrasilError> {
        let endpoint = self.endpoint.to_string();
        let body = serde_json::json!({ "request": request, "keepalive": false }).to_string();
        let io = |error| YggdrasilError::Io {
            endpoint: endpoint.clone(),
            error,
        };
        let exchange = async {
            let raw = match &self.endpoint {
                AdminEndpoint::Unix(path) => {
                    let mut s = tokio::net::UnixStream::connect(path).await.map_err(io)?;
                    s.write_all(body.as_bytes()).await.map_err(io)?;
                    read_answer(&mut s)
                        .await
                        .map_err(|e| e.unwrap_or_else(&io))?
                }
                AdminEndpoint::Tcp(addr) => {
                    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
                    s.write_all(body.as_bytes()).await.map_err(io)?;
                    read_answer(&mut s)
                        .await
                        .map_err(|e| e.unwrap_or_else(&io))?
                }
            };
            Ok::<_, YggdrasilError>(raw)
        };
        let raw = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| YggdrasilError::Timeout(endpoint.clone()))??;
        let env: Envelope =
            serde_json::from_slice(&raw).map_err(|e| YggdrasilError::Malformed(e.to_string()))?;
        if env.status != "success" {
            return Err(YggdrasilError::Refused {
                request: request.to_owned(),
                error: env.error.unwrap_or(env.status),
            });
        }
        env.response
            .ok_or_else(|| YggdrasilError::Malformed(format!("{request}: no response field")))
    }
}

/// Reads one JSON document: until EOF or until the bytes parse, at most
/// [`MAX_ADMIN_RESPONSE`].
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Vec<u8>, Result<YggdrasilError, std::io::Error>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await.map_err(Err)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_ADMIN_RESPONSE {
            return Err(Ok(YggdrasilError::TooLarge));
        }
        // A router that keeps the socket open: stop once a whole object has arrived (only
        // tried when the data ends like one, so a long answer is not re-parsed per chunk).
        let ends_object = buf.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
        if ends_object && serde_json::from_slice::<serde::de::IgnoredAny>(&buf).is_ok() {
            return Ok(buf);
        }
    }
}

/// The router as a [`Sensor`]: [`METRIC_PEERS`], [`METRIC_TREE_DEPTH`],
/// [`METRIC_BYTES_RECEIVED`], [`METRIC_BYTES_SENT`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use x0tta_core::{Policy, Sensor};
/// use x0tta_mesh::yggdrasil::{YggdrasilAdmin, YggdrasilSensor};
///
/// let admin = YggdrasilAdmin::new("unix:///var/run/yggdrasil/yggdrasil.sock".parse()?);
/// let reading = YggdrasilSensor::new(admin).read(&Policy::default()).await?;
/// # let _ = reading;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct YggdrasilSensor {
    admin: YggdrasilAdmin,
}

impl YggdrasilSensor {
    /// A sensor reading `admin`.
    pub fn new(admin: YggdrasilAdmin) -> Self {
        Self { admin }
    }
}

#[async_trait]
impl Sensor for YggdrasilSensor {
    fn name(&self) -> &str {
        "yggdrasil"
    }

    async fn read(&self, _policy: &Policy) -> Result<Reading, SensorError> {
        let err = |e: YggdrasilError| SensorError {
            sensor: "yggdrasil".into(),
            reason: e.to_string(),
        };
        let me = self.admin.self_info().await.map_err(err)?;
        let peers = self.admin.peers().await.map_err(err)?;
        // Precision loss only beyond 2^53 bytes.
        #[allow(clippy::cast_precision_loss)]
        let (rx, tx) = peers.iter().fold((0f64, 0f64), |(r, t), p| {
            (r + p.bytes_recvd as f64, t + p.bytes_sent as f64)
        });
        #[allow(clippy::cast_precision_loss)]
        Ok(Reading::default()
            .metric(METRIC_PEERS, peers.len() as f64)
            .metric(METRIC_TREE_DEPTH, me.coords.len() as f64)
            .metric(METRIC_BYTES_RECEIVED, rx)
            .metric(METRIC_BYTES_SENT, tx))
    }
}

#[cfg(feature = "libp2p")]
/// The multiaddress libp2p listens on to run over Yggdrasil: `/ip6/<router address>/tcp/<port>`.
pub async fn listen_addr(
    admin: &YggdrasilAdmin,
    port: u16,
) -> Result<libp2p::Multiaddr, YggdrasilError> {
    let me = admin.self_info().await?;
    Ok(libp2p::Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip6(me.address))
        .with(libp2p::multiaddr::Protocol::Tcp(port)))
}
