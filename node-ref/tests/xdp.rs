//! `network.ebpf_hooks: [xdp]`: a node run inside a network namespace attaches the XDP guard
//! to its veth, and its API, metrics and dashboard report and drive it. Needs root, clang and
//! iproute2; says SKIPPED loudly without them (CI sets X0TTA_EBPF_REQUIRE=1 to fail instead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../x0tta-ebpf/tests/lab/mod.rs"]
mod lab;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lab::{Lab, PORT, RX_IF, RX_V4, tx_v4};
use serde_json::Value;

/// A plan template that needs the guard's actions: accepted by a node with a guard, left out
/// (with a warning) by one without.
const DROP_TEMPLATE: &str = "recovery_plan:\n  name: drop-peer-traffic\n  trigger: { kinds: [BYZANTINE_PEER], min_severity: HIGH, subject: peer }\n  steps:\n    - { name: drop, action: isolate_peer, timeout: 2s }\n    - { name: cap, action: set_rate_limit, timeout: 2s, params: { pps: 5000, burst: 500 } }\n";

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn call(lab: &Lab, addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (code, text) = lab.in_a(|| http(addr, &req));
    let json = if path == "/metrics" {
        Value::String(text)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (code, json)
}

fn source(xdp: &Value, ip: IpAddr) -> Option<&Value> {
    xdp["interfaces"][0]["top_sources"]
        .as_array()?
        .iter()
        .find(|s| s["address"] == ip.to_string())
}

#[test]
fn a_node_configured_with_xdp_attaches_reports_and_blocks() {
    require_lab!();
    let _one = one_demo_at_a_time();
    let lab = Lab::new("n");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = dir.join("node.yaml");
    assert!(
        x0tta(&["init", "--config", cfg.to_str().unwrap()])
            .status
            .success()
    );
    let yaml = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("cycle: 60s", "cycle: 200ms")
        .replace(
            "    mdns: false",
            &format!("    mdns: false\n    ebpf_hooks: [xdp]\n    interfaces: [{RX_IF}]\n    xdp: {{ mode: auto }}"),
        );
    std::fs::write(&cfg, yaml).unwrap();
    std::fs::write(dir.join("plans/drop-peer-traffic.yaml"), DROP_TEMPLATE).unwrap();
    let _node = Kill(
        Command::new("ip")
            .args(["netns", "exec", &lab.a, BIN, "run", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = api_json(dir)["addr"].as_str().unwrap().to_string();
    let token = std::fs::read_to_string(dir.join("data/api.token")).unwrap();
    let token = token.trim();

    let (code, xdp) = call(&lab, &addr, "GET", "/api/v1/xdp", "", "");
    assert_eq!(code, 200, "{xdp}");
    assert_eq!(xdp["interfaces"][0]["interface"], RX_IF, "{xdp}");
    assert_eq!(xdp["interfaces"][0]["mode"], "driver");

    let to = SocketAddr::new(IpAddr::V4(RX_V4), PORT);
    let from = tx_v4(2);
    let _rx = lab.receiver(IpAddr::V4(RX_V4));
    lab::send(&lab.sender(from), to, 200, 32, 10_000);
    let (_, xdp) = call(&lab, &addr, "GET", "/api/v1/xdp", "", "");
    assert_eq!(source(&xdp, from).unwrap()["packets"], 200, "{xdp}");

    // Blocking needs the token, refuses what is not an address, and drops in XDP.
    let body = format!("{{\"address\": \"{from}\"}}");
    let (code, _) = call(&lab, &addr, "POST", "/api/v1/xdp/blocked", "wrong", &body);
    assert_eq!(code, 401);
    let (code, _) = call(
        &lab,
        &addr,
        "POST",
        "/api/v1/xdp/blocked",
        token,
        "{\"address\": \"10.1\"}",
    );
    assert_eq!(code, 422);
    let (code, out) = call(&lab, &addr, "POST", "/api/v1/xdp/blocked", token, &body);
    assert_eq!((code, out["changed"].as_u64()), (200, Some(1)), "{out}");
    lab::send(&lab.sender(from), to, 300, 32, 10_000);
    let (_, xdp) = call(&lab, &addr, "GET", "/api/v1/xdp", "", "");
    assert_eq!(source(&xdp, from).unwrap()["blocked_dropped"], 300, "{xdp}");
    assert_eq!(xdp["interfaces"][0]["blocked"][0], from.to_string());

    // The metrics and the dashboard see the drops once the sampler has run.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, m) = call(&lab, &addr, "GET", "/metrics", "", "");
        let m = m.as_str().unwrap().to_string();
        let line = format!(
            "x0tta_xdp_packets_total{{interface=\"{RX_IF}\",verdict=\"blocked_dropped\"}} 300"
        );
        let (_, d) = call(&lab, &addr, "GET", "/api/v1/dashboard", "", "");
        if m.contains(&line)
            && d["security"]["xdp_interfaces"] == 1
            && d["security"]["xdp_blocked"] == 1
        {
            assert!(
                m.contains(&format!(
                    "x0tta_xdp_attached{{interface=\"{RX_IF}\",mode=\"driver\"}} 1"
                )),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed the drops: {m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let (code, out) = call(
        &lab,
        &addr,
        "DELETE",
        &format!("/api/v1/xdp/blocked/{from}"),
        token,
        "",
    );
    assert_eq!((code, out["changed"].as_u64()), (200, Some(1)), "{out}");
    lab::send(&lab.sender(from), to, 100, 32, 10_000);
    let (_, xdp) = call(&lab, &addr, "GET", "/api/v1/xdp", "", "");
    let s = source(&xdp, from).unwrap();
    assert_eq!(
        (s["packets"].as_u64(), s["blocked_dropped"].as_u64()),
        (Some(600), Some(300))
    );
}

#[test]
fn without_privileges_the_node_runs_without_the_guard() {
    require_lab!();
    let _one = one_demo_at_a_time();
    let lab = Lab::new("p");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = dir.join("node.yaml");
    assert!(
        x0tta(&["init", "--config", cfg.to_str().unwrap()])
            .status
            .success()
    );
    let yaml = std::fs::read_to_string(&cfg).unwrap().replace(
        "    mdns: false",
        &format!("    mdns: false\n    ebpf_hooks: [xdp]\n    interfaces: [{RX_IF}, nope0]"),
    );
    std::fs::write(&cfg, yaml).unwrap();
    // A template that needs the guard's actions is left out, not fatal.
    std::fs::write(dir.join("plans/drop-peer-traffic.yaml"), DROP_TEMPLATE).unwrap();
    let log = dir.join("stderr.log");
    // setpriv drops every capability: the kernel refuses the XDP program.
    let _node = Kill(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.a,
                "setpriv",
                "--inh-caps=-all",
                "--bounding-set=-all",
                BIN,
                "run",
                "--config",
            ])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr = api_json(dir)["addr"].as_str().unwrap().to_string();
    let (code, xdp) = call(&lab, &addr, "GET", "/api/v1/xdp", "", "");
    assert_eq!(
        (code, xdp["interfaces"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{xdp}"
    );
    let token = std::fs::read_to_string(dir.join("data/api.token")).unwrap();
    let (code, out) = call(
        &lab,
        &addr,
        "POST",
        "/api/v1/xdp/blocked",
        token.trim(),
        "{\"address\": \"10.0.0.1\"}",
    );
    assert_eq!(code, 503, "{out}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("XDP guard not attached") && said.contains("CAP_BPF"),
        "{said}"
    );
    assert!(said.contains("nope0"), "{said}");
    assert!(
        said.contains("plan template left out") && said.contains("drop-peer-traffic"),
        "{said}"
    );
}
