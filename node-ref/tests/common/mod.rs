//! Helpers the node-ref integration tests share: the binary, node directories and processes,
//! and a minimal HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_x0tta6bl4");

pub(crate) fn x0tta(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// The demos, and the tests that start several node processes, time what they do: they run
/// one at a time, so their figures are not skewed by each other (other tests still run beside
/// them).
pub(crate) fn one_demo_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static DEMOS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DEMOS.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `init` in a fresh directory, a 100 ms cycle, and `run` in the background.
pub(crate) fn start_node() -> (tempfile::TempDir, std::path::PathBuf, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.yaml");
    let cfg_s = cfg.to_str().unwrap().to_string();
    assert!(x0tta(&["init", "--config", &cfg_s]).status.success());
    let yaml = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("cycle: 60s", "cycle: 100ms")
        // Tests run side by side: each node takes free ports instead of init's 7001 and 3000.
        .replace("/tcp/7001", "/tcp/0")
        .replace("listen: 127.0.0.1:3000", "listen: 127.0.0.1:0")
        .replace(
            "    voters: {}",
            "    voters: {}\n    emergency_voting: 2s\n    clock_skew: 100ms",
        );
    std::fs::write(&cfg, yaml).unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config", &cfg_s])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (dir, cfg, child)
}

/// The node's id, from its API.
pub(crate) fn api_json(dir: &std::path::Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(b) = std::fs::read(dir.join("data/api.json")) {
            return serde_json::from_slice(&b).unwrap();
        }
        assert!(Instant::now() < deadline, "the API never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 exchange (tests only): status code and body.
pub(crate) fn http(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

/// `init` + config for one node of a three-node LAN on 127.0.0.1; returns its node id.
pub(crate) fn lan_node(dir: &std::path::Path, name: &str) -> String {
    let cfg = dir.join(name).join("node.yaml");
    let out = x0tta(&["init", "--config", cfg.to_str().unwrap(), "--name", name]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("node id   "))
        .and_then(|l| l.split_whitespace().next())
        .expect("init prints the node id")
        .to_string()
}

/// Writes node `name`'s configuration: every id in `ids` but `me` votes with stake 100.
pub(crate) fn lan_config(
    dir: &std::path::Path,
    name: &str,
    ids: &[String],
    me: usize,
    bootstrap: Option<&std::path::Path>,
) {
    let cfg = dir.join(name).join("node.yaml");
    let voters: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != me)
        .map(|(_, id)| format!("\"{id}\": 100"))
        .collect();
    let mut yaml = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("cycle: 60s", "cycle: 200ms")
        .replace("/tcp/7001", "/tcp/0")
        .replace("listen: 127.0.0.1:3000", "listen: 127.0.0.1:0")
        .replace(
            "    voters: {}",
            &format!(
                "    voters: {{{}}}\n    emergency_voting: 4s\n    clock_skew: 200ms",
                voters.join(", ")
            ),
        );
    if let Some(b) = bootstrap {
        yaml = yaml.replace(
            "    max_connections",
            &format!("    bootstrap: {}\n    max_connections", b.display()),
        );
    }
    std::fs::write(&cfg, yaml).unwrap();
}

pub(crate) fn run_node(dir: &std::path::Path, name: &str) -> std::process::Child {
    Command::new(BIN)
        .args([
            "run",
            "--config",
            dir.join(name).join("node.yaml").to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) fn status_of(dir: &std::path::Path, name: &str) -> Option<serde_json::Value> {
    let b = std::fs::read(dir.join(name).join("data/status.json")).ok()?;
    serde_json::from_slice(&b).ok()
}
