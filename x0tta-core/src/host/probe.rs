//! Service health probes.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ProbeResult;

/// A health check of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ProbeSpec {
    /// The supervised process is running.
    Process,
    /// A TCP connection to `host:port` succeeds.
    Tcp(String),
    /// An HTTP GET of the URL answers with the expected status.
    Http {
        /// `http://host:port/path` (plain HTTP).
        url: String,
        /// Expected status code (default 200).
        #[serde(default = "default_status")]
        status: u16,
    },
}

fn default_status() -> u16 {
    200
}

impl ProbeSpec {
    /// A short label for reports.
    pub fn label(&self) -> String {
        match self {
            Self::Process => "process".into(),
            Self::Tcp(a) => format!("tcp {a}"),
            Self::Http { url, .. } => format!("http {url}"),
        }
    }
}

fn result(
    service: &str,
    spec: &ProbeSpec,
    started: Instant,
    outcome: Result<(), String>,
) -> ProbeResult {
    ProbeResult {
        service: service.to_string(),
        probe: spec.label(),
        healthy: outcome.is_ok(),
        detail: outcome.err(),
        latency_ms: started.elapsed().as_millis().min(u64::MAX as u128) as u64,
    }
}

async fn http_status(url: &str) -> Result<u16, String> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only plain http:// probes are supported"));
    }
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("http handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {url}: {e}"));
    driver.abort();
    Ok(resp?.status().as_u16())
}

/// Runs one network probe (`Tcp` or `Http`) within `timeout`. `Process` probes need the
/// supervisor and are answered by [`ServiceSensor`](super::ServiceSensor).
pub async fn run_probe(service: &str, spec: &ProbeSpec, timeout: Duration) -> ProbeResult {
    let started = Instant::now();
    let check = async {
        match spec {
            ProbeSpec::Process => Err("process probes are answered by the supervisor".to_string()),
            ProbeSpec::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map(drop)
                .map_err(|e| format!("connect {addr}: {e}")),
            ProbeSpec::Http { url, status } => match http_status(url).await {
                Ok(s) if s == *status => Ok(()),
                Ok(s) => Err(format!("GET {url} answered {s}, expected {status}")),
                Err(e) => Err(e),
            },
        }
    };
    let outcome = match tokio::time::timeout(timeout, check).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    result(service, spec, started, outcome)
}

pub(crate) fn process_result(
    service: &str,
    alive: Result<u32, String>,
    started: Instant,
) -> ProbeResult {
    result(service, &ProbeSpec::Process, started, alive.map(drop))
}
