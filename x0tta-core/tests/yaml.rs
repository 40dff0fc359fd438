//! YAML files: the shipped examples load; malformed files fail with file, line and field.
#![cfg(feature = "yaml")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use x0tta_core::config::{NodeConfig, load_plans_dir, plan_from_yaml};
use x0tta_core::host::ProbeSpec;
use x0tta_core::{AnomalyKind, Severity};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

#[test]
fn the_shipped_examples_load() {
    let cfg = NodeConfig::load(format!("{EXAMPLES}/node.yaml")).unwrap();
    assert_eq!(
        cfg.node_config.identity.spiffe_id(),
        "spiffe://x0tta.local/node-1"
    );
    assert_eq!(
        cfg.node_config.mapk.intervals.cycle,
        Duration::from_secs(60)
    );
    assert_eq!(
        cfg.node_config.mapk.thresholds.service_memory_mb,
        Some(256.0)
    );
    assert_eq!(
        cfg.node_config.dao.emergency_voting,
        Duration::from_secs(15 * 60)
    );
    assert_eq!(cfg.node_config.api.listen, "127.0.0.1:3000");
    assert_eq!(
        cfg.services[0].probes[1],
        ProbeSpec::Tcp("127.0.0.1:8089".into())
    );
    assert!(
        cfg.node_config
            .storage
            .plans_dir
            .as_ref()
            .unwrap()
            .is_absolute()
    );
    let plans = load_plans_dir(format!("{EXAMPLES}/plans")).unwrap();
    assert_eq!(plans.len(), 4);
    let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "clear-host-cache",
            "isolate-byzantine-peer",
            "relieve-service-memory",
            "restart-crashed-service"
        ]
    );
    assert_eq!(
        plans[0].steps[1].condition.as_ref().unwrap().to_string(),
        "host.memory.percent > 95"
    );
    assert_eq!(plans[1].trigger.kinds, [AnomalyKind::ByzantinePeer]);
    assert_eq!(plans[1].steps[1].action, "disconnect_peer");
    assert_eq!(plans[3].trigger.kinds, [AnomalyKind::ServiceDown]);
    assert_eq!(plans[3].trigger.min_severity, Severity::Medium);
}

fn err(yaml: &str) -> String {
    NodeConfig::from_yaml(yaml, "bad.yaml")
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_fields_name_file_line_and_field() {
    let e = err(
        "node_config:\n  identity:\n    name: n1\n  mapk:\n    thresholds:\n      cpu_pct: 50\n",
    );
    assert!(
        e.starts_with(
            "bad.yaml:6:7: field `node_config.mapk.thresholds.cpu_pct`: unknown field `cpu_pct`"
        ),
        "{e}"
    );
}

#[test]
fn bad_values_name_file_line_and_field() {
    let e = err(
        "node_config:\n  identity:\n    name: n1\n  mapk:\n    intervals:\n      cycle: soon\n",
    );
    assert!(e.starts_with("bad.yaml:6:"), "{e}");
    assert!(
        e.contains("field `node_config.mapk.intervals.cycle`"),
        "{e}"
    );
    assert!(e.contains("`soon` is not a duration"), "{e}");

    let e = err(
        "node_config:\n  identity:\n    name: n1\n  mapk:\n    thresholds:\n      loss_ratio: 3\n",
    );
    assert!(
        e.contains(":6:") && e.contains("loss_ratio") && e.contains("not a ratio"),
        "{e}"
    );

    let e = err("node_config:\n  identity:\n    name: n1\n  storage:\n    retention: lots\n");
    assert!(
        e.contains("bad.yaml:5:") && e.contains("field `node_config.storage.retention`"),
        "{e}"
    );
}

#[test]
fn semantic_errors_are_located_too() {
    let e = err("node_config:\n  identity:\n    name: \"has space\"\n");
    assert!(
        e.starts_with("bad.yaml:3: field `node_config.identity.name`"),
        "{e}"
    );
    let e = err(
        "node_config:\n  identity:\n    name: n1\n  mapk:\n    breaker:\n      max_failures: 0\n",
    );
    assert!(
        e.starts_with("bad.yaml:6: field `node_config.mapk.breaker.max_failures`"),
        "{e}"
    );
    let e = err(
        "node_config:\n  identity:\n    name: n1\nservices:\n  - name: a\n    command: x\n  - name: a\n    command: y\n",
    );
    assert!(
        e.starts_with("bad.yaml:7: field `services[1].name`: two services are named `a`"),
        "{e}"
    );
    let e = err(
        "node_config:\n  identity:\n    name: n1\n  dao:\n    quorum: 0.5\n    emergency_quorum: 1.5\n",
    );
    assert!(
        e.starts_with("bad.yaml:6: field `node_config.dao.emergency_quorum`"),
        "{e}"
    );
    let e = err("node_config:\n  identity:\n    name: n1\n  api:\n    listen: localhost\n");
    assert!(
        e.starts_with("bad.yaml:5: field `node_config.api.listen`"),
        "{e}"
    );
    let e = err("node_config:\n  identity:\n    name: n1\n  dao:\n    voting: soon\n");
    assert!(e.contains("`soon` is not a duration"), "{e}");
}

#[test]
fn ebpf_hooks_are_checked() {
    let net = |body: &str| format!("node_config:\n  identity:\n    name: n1\n  network:\n{body}");
    let e = err(&net("    ebpf_hooks: [tc]\n    interfaces: [eth0]\n"));
    assert!(
        e.starts_with("bad.yaml:5: field `node_config.network.ebpf_hooks`")
            && e.contains("unknown hook `tc`"),
        "{e}"
    );
    let e = err(&net("    ebpf_hooks: [xdp]\n"));
    assert!(e.contains("need `network.interfaces`"), "{e}");
    let e = err(&net(
        "    ebpf_hooks: [xdp]\n    interfaces: [eth0]\n    xdp:\n      mode: fast\n",
    ));
    assert!(
        e.contains("field `node_config.network.xdp.mode`") && e.contains("`fast`"),
        "{e}"
    );
    let e = err(&net("    xdp:\n      rate: 5\n"));
    assert!(e.contains("unknown field `rate`"), "{e}");
    let ok = NodeConfig::from_yaml(
        &net("    ebpf_hooks: [xdp]\n    interfaces: [eth0, eth1]\n    xdp:\n      mode: generic\n      rate_pps: 20000\n"),
        "ok.yaml",
    )
    .unwrap();
    let n = &ok.node_config.network;
    assert_eq!(
        (
            n.interfaces.len(),
            n.xdp.mode.as_str(),
            n.xdp.rate_pps,
            n.xdp.burst
        ),
        (2, "generic", 20_000, 0)
    );
}

#[test]
fn plan_templates_are_checked() {
    let bad_kind = "recovery_plan:\n  name: p\n  trigger:\n    kinds: [DISK_ON_FIRE]\n  steps:\n    - action: x\n";
    let e = plan_from_yaml(bad_kind, "p.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("p.yaml:4:") && e.contains("DISK_ON_FIRE"),
        "{e}"
    );
    let bad_cond = "recovery_plan:\n  name: p\n  trigger:\n    kinds: [CPU_OVERLOAD]\n  steps:\n    - action: x\n      condition: cpu is high\n";
    let e = plan_from_yaml(bad_cond, "p.yaml").unwrap_err().to_string();
    assert!(
        e.contains("p.yaml:7:")
            && e.contains("recovery_plan.steps.condition")
            && e.contains("bad condition"),
        "{e}"
    );
    let no_steps =
        "recovery_plan:\n  name: p\n  trigger:\n    kinds: [CPU_OVERLOAD]\n  steps: []\n";
    let e = plan_from_yaml(no_steps, "p.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("p.yaml:5: field `recovery_plan.steps`"),
        "{e}"
    );
    let missing = NodeConfig::load("/nonexistent/node.yaml")
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("/nonexistent/node.yaml:"), "{missing}");
}

#[test]
fn absurd_durations_are_refused_not_overflowed() {
    let e = err(
        "node_config:\n  identity:\n    name: n1\n  mapk:\n    intervals:\n      cycle: 500000000000y\n",
    );
    assert!(
        e.starts_with(
            "bad.yaml:6: field `node_config.mapk.intervals.cycle`: must be at most 1 day"
        ),
        "{e}"
    );
    let e = err(
        "node_config:\n  identity:\n    name: n1\n  mapk:\n    breaker:\n      cooldown: 400d\n",
    );
    assert!(
        e.contains("node_config.mapk.breaker.cooldown") && e.contains("30 days"),
        "{e}"
    );
}
