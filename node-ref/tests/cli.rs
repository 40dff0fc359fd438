//! The `x0tta6bl4` binary as an operator uses it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn demo_heals_both_faults_and_prints_a_summary() {
    let _serial = one_demo_at_a_time();
    let started = Instant::now();
    let out = x0tta(&["demo", "heal"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for phase in [
        "[monitor]",
        "[analyze]",
        "[plan]",
        "[execute]",
        "[verify]",
        "[knowledge]",
        "[root cause] service web on",
    ] {
        assert!(all.contains(phase), "missing {phase} in\n{all}");
    }
    let summary = all
        .lines()
        .find(|l| l.starts_with("summary: "))
        .expect("summary line");
    assert!(
        summary.starts_with("summary: scenario=heal healed=true mttd_ms="),
        "{summary}"
    );
    let field = |k: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        field("mttd_ms") > 0 && field("mttd_ms") <= field("mttr_ms"),
        "{summary}"
    );
    assert!(field("incidents") >= 2, "{summary}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn init_writes_a_usable_node_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.yaml");
    let cfg_s = cfg.to_str().unwrap();
    let out = x0tta(&["init", "--config", cfg_s, "--name", "edge-7"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("spiffe://x0tta.local/edge-7"));
    let sk = dir.path().join("keys/mldsa65.sk");
    assert_eq!(
        std::fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("plans")).unwrap().count(),
        4
    );

    let again = x0tta(&["init", "--config", cfg_s]);
    assert!(!again.status.success());
    assert!(text(&again).contains("pass --force"), "{}", text(&again));

    let bad = x0tta(&[
        "init",
        "--config",
        dir.path().join("other.yaml").to_str().unwrap(),
        "--name",
        "has space",
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("node_config.identity.name"),
        "{}",
        text(&bad)
    );
    assert!(
        !dir.path().join("other.yaml").exists(),
        "nothing written for a bad name"
    );

    let no_status = x0tta(&["status", "--config", cfg_s]);
    assert!(!no_status.status.success());
    assert!(
        text(&no_status).contains("has the node run?"),
        "{}",
        text(&no_status)
    );
}

#[test]
fn run_reports_status_and_stops_on_sigterm() {
    let (dir, cfg, mut child) = start_node();
    let cfg_s = cfg.to_str().unwrap();
    let status_file = dir.path().join("data/status.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status_file.exists() {
        assert!(Instant::now() < deadline, "no status file written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = x0tta(&["status", "--config", cfg_s]);
    assert!(st.status.success(), "{}", text(&st));
    assert!(text(&st).contains("running"), "{}", text(&st));
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful stop exits 0, got {exit}");
}

#[test]
fn a_malformed_config_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.yaml");
    std::fs::write(&cfg, "node_config:\n  identity:\n    name: n1\n  mapk:\n    thresholds:\n      memory_percent: 140\n").unwrap();
    let out = x0tta(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("node.yaml:6:"), "{msg}");
    assert!(
        msg.contains("node_config.mapk.thresholds.memory_percent"),
        "{msg}"
    );
}

/// `keys export` writes PKCS#8 / SPKI PEM copies; `sign` and `verify` take them, and a
/// signature made with the PEM key verifies with the raw public key and the other way round.
#[test]
fn keys_export_pkcs8_and_spki_that_sign_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    assert!(x0tta(&["keys", "gen", "--out", &d("k")]).status.success());
    let e = x0tta(&["keys", "export", "--key", &d("k")]);
    assert!(e.status.success(), "{}", text(&e));
    let secret = std::fs::read_to_string(d("k/mldsa65.sk.pem")).unwrap();
    assert!(secret.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(
        std::fs::metadata(d("k/mldsa65.sk.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(d("k/mldsa65.pk.pem"))
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let again = x0tta(&["keys", "export", "--key", &d("k")]);
    assert!(!again.status.success(), "PEM files are never overwritten");

    std::fs::write(d("proposal.yaml"), "title: raise cpu threshold\n").unwrap();
    let sign = |key: &str, out: &str| {
        let s = x0tta(&[
            "keys",
            "sign",
            "--key",
            key,
            "--in",
            &d("proposal.yaml"),
            "--out",
            out,
        ]);
        assert!(s.status.success(), "{}", text(&s));
    };
    let verify = |public: &str, sig: &str| {
        x0tta(&[
            "keys",
            "verify",
            "--pub",
            public,
            "--in",
            &d("proposal.yaml"),
            "--sig",
            sig,
        ])
        .status
        .success()
    };
    sign(&d("k/mldsa65.sk.pem"), &d("pem.sig"));
    sign(&d("k"), &d("raw.sig"));
    assert!(verify(&d("k/mldsa65.pk"), &d("pem.sig")));
    assert!(verify(&d("k/mldsa65.pk.pem"), &d("raw.sig")));
    assert!(verify(&d("k/mldsa65.pk.pem"), &d("pem.sig")));

    // A PEM secret key others can read is refused, like the raw one.
    std::fs::set_permissions(
        d("k/mldsa65.sk.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let open = x0tta(&[
        "keys",
        "sign",
        "--key",
        &d("k/mldsa65.sk.pem"),
        "--in",
        &d("proposal.yaml"),
        "--out",
        &d("x.sig"),
    ]);
    assert!(!open.status.success());
    assert!(text(&open).contains("chmod 600"), "{}", text(&open));
    // Another tool's key of another algorithm: a clear error.
    std::fs::write(
        d("ed.pem"),
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(d("ed.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let ed = x0tta(&[
        "keys",
        "sign",
        "--key",
        &d("ed.pem"),
        "--in",
        &d("proposal.yaml"),
        "--out",
        &d("y.sig"),
    ]);
    assert!(!ed.status.success());
    assert!(text(&ed).contains("not ML-DSA-65"), "{}", text(&ed));
}

#[test]
fn keys_sign_and_verify_detached_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    assert!(x0tta(&["keys", "gen", "--out", &d("k")]).status.success());
    assert_eq!(
        std::fs::metadata(d("k/mldsa65.sk"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(std::fs::metadata(d("k/mldsa65.pk")).unwrap().len(), 1952);
    let again = x0tta(&["keys", "gen", "--out", &d("k")]);
    assert!(!again.status.success(), "keys are never overwritten");

    std::fs::write(d("policy.yaml"), "thresholds:\n  cpu_percent: 80\n").unwrap();
    let s = x0tta(&[
        "keys",
        "sign",
        "--key",
        &d("k"),
        "--in",
        &d("policy.yaml"),
        "--out",
        &d("policy.sig"),
    ]);
    assert!(s.status.success(), "{}", text(&s));
    assert_eq!(std::fs::metadata(d("policy.sig")).unwrap().len(), 3309);
    let v = x0tta(&[
        "keys",
        "verify",
        "--pub",
        &d("k/mldsa65.pk"),
        "--in",
        &d("policy.yaml"),
        "--sig",
        &d("policy.sig"),
    ]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).starts_with("valid"));

    let wrong_ctx = x0tta(&[
        "keys",
        "verify",
        "--pub",
        &d("k/mldsa65.pk"),
        "--in",
        &d("policy.yaml"),
        "--sig",
        &d("policy.sig"),
        "--context",
        "x0tta/policy/v1",
    ]);
    assert!(!wrong_ctx.status.success());
    assert!(text(&wrong_ctx).contains("INVALID"), "{}", text(&wrong_ctx));

    std::fs::write(d("policy.yaml"), "thresholds:\n  cpu_percent: 99\n").unwrap();
    let tampered = x0tta(&[
        "keys",
        "verify",
        "--pub",
        &d("k/mldsa65.pk"),
        "--in",
        &d("policy.yaml"),
        "--sig",
        &d("policy.sig"),
    ]);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(text(&tampered).contains("INVALID"));

    let not_a_key = x0tta(&[
        "keys",
        "verify",
        "--pub",
        &d("policy.yaml"),
        "--in",
        &d("policy.yaml"),
        "--sig",
        &d("policy.sig"),
    ]);
    assert!(!not_a_key.status.success());
    assert!(
        text(&not_a_key).contains("is not an ML-DSA-65 public key"),
        "{}",
        text(&not_a_key)
    );
}

#[test]
fn sighup_reloads_the_policy() {
    let (dir, cfg, mut child) = start_node();
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    let status_file = dir.path().join("data/status.json");
    let policy_version = || -> Option<u64> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&status_file).ok()?).ok()?;
        v["status"]["policy_version"].as_u64()
    };
    let wait_for = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while policy_version() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "policy version never reached {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(1);
    std::fs::write(&cfg, yaml.replace("cpu_percent: 90", "cpu_percent: 75")).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_for(2);
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn incidents_are_kept_listed_searched_and_moved_as_car() {
    let (dir, cfg, mut child) = start_node();
    let cfg_s = cfg.to_str().unwrap().to_string();
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    // Any host's disk is fuller than 0.01%: a real DISK_PRESSURE the node records.
    // CPU and memory thresholds at 100% so a loaded CI host records nothing else first.
    let yaml = yaml
        .replace("disk_percent: 95", "disk_percent: 0.01")
        .replace("cpu_percent: 90", "cpu_percent: 100")
        .replace("memory_percent: 90", "memory_percent: 100");
    std::fs::write(&cfg, yaml).unwrap();
    // SIGHUP only once the node runs (before that it would end the process).
    let status_file = dir.path().join("data/status.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status_file.exists() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("data/status.json")).unwrap_or_default(),
        )
        .unwrap_or_default();
        if st["status"]["incidents"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no incident recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    // While the node runs, `incidents` asks it through the API...
    let live = x0tta(&["incidents", "--config", &cfg_s, "list", "--json"]);
    assert!(live.status.success(), "{}", text(&live));
    let listed: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    let first = listed[0]["id"].as_str().unwrap().to_string();
    let shown = x0tta(&["incidents", "--config", &cfg_s, "show", &first]);
    assert!(shown.status.success(), "{}", text(&shown));
    // ...and what needs the store itself says the node holds it.
    let busy = x0tta(&[
        "export-car",
        "--config",
        &cfg_s,
        "--out",
        dir.path().join("busy.car").to_str().unwrap(),
    ]);
    assert!(!busy.status.success());
    assert!(
        text(&busy).contains("is the node running?"),
        "{}",
        text(&busy)
    );
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());

    let list = x0tta(&["incidents", "--config", &cfg_s, "list"]);
    assert!(list.status.success(), "{}", text(&list));
    // Other real anomalies may be recorded too (a loaded CI host trips CPU_OVERLOAD).
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    let first = listed
        .lines()
        .find(|l| l.contains("DISK_PRESSURE"))
        .unwrap_or_else(|| panic!("no DISK_PRESSURE incident in\n{listed}"))
        .to_string();
    let id = first.split_whitespace().next().unwrap().to_string();
    let show = x0tta(&["incidents", "--config", &cfg_s, "show", &id]);
    assert!(
        show.status.success() && text(&show).contains("\"kind\": \"DISK_PRESSURE\""),
        "{}",
        text(&show)
    );
    let found = x0tta(&[
        "incidents",
        "--config",
        &cfg_s,
        "search",
        "disk pressure host",
    ]);
    assert!(
        String::from_utf8_lossy(&found.stdout).contains(&id),
        "{}",
        text(&found)
    );
    assert!(
        !x0tta(&["incidents", "--config", &cfg_s, "show", "not-a-cid"])
            .status
            .success()
    );

    let car = dir.path().join("kb.car");
    let car_s = car.to_str().unwrap();
    let out = x0tta(&["export-car", "--config", &cfg_s, "--out", car_s]);
    assert!(out.status.success(), "{}", text(&out));

    let other = tempfile::tempdir().unwrap();
    let other_cfg = other.path().join("node.yaml");
    let other_s = other_cfg.to_str().unwrap();
    assert!(
        x0tta(&["init", "--config", other_s, "--name", "node-2"])
            .status
            .success()
    );
    let imported = x0tta(&["import-car", "--config", other_s, "--in", car_s]);
    assert!(imported.status.success(), "{}", text(&imported));
    let shown = x0tta(&["incidents", "--config", other_s, "show", &id]);
    assert!(
        shown.status.success(),
        "the same CID resolves on the other node: {}",
        text(&shown)
    );

    let mut bytes = std::fs::read(&car).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&car, bytes).unwrap();
    let third = tempfile::tempdir().unwrap();
    let third_cfg = third.path().join("node.yaml");
    assert!(
        x0tta(&[
            "init",
            "--config",
            third_cfg.to_str().unwrap(),
            "--name",
            "node-3"
        ])
        .status
        .success()
    );
    let refused = x0tta(&[
        "import-car",
        "--config",
        third_cfg.to_str().unwrap(),
        "--in",
        car_s,
    ]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("refused"), "{}", text(&refused));
}

#[test]
fn demo_governance_changes_every_honest_nodes_policy() {
    let _serial = one_demo_at_a_time();
    // 31 nodes, 10 Byzantine: forgers, equivocators and late voters in turn.
    let out = x0tta(&["demo", "governance", "--nodes", "31"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let summary = all
        .lines()
        .find(|l| l.starts_with("summary: "))
        .expect("summary line");
    assert!(summary.starts_with("summary: scenario=governance passed=true applied=21/21 forged_accepted=0 slashed=3/3 finality_ms="), "{summary}");
    assert!(
        all.contains("votes 10 against after the deadline"),
        "a late voter takes part: {all}"
    );
    assert!(
        !x0tta(&["demo", "governance", "--nodes", "3"])
            .status
            .success()
    );
}

#[test]
fn keys_gen_with_spiffe_writes_a_full_identity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("id");
    let out_s = out.to_str().unwrap();
    let o = x0tta(&[
        "keys",
        "gen",
        "--out",
        out_s,
        "--spiffe",
        "spiffe://mesh.example/node/a",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("node id (libp2p PeerId): 12D3KooW"),
        "{}",
        text(&o)
    );
    for f in [
        "mldsa65.sk",
        "mldsa65.pk",
        "ed25519.sk",
        "mlkem768.sk",
        "identity.rec",
    ] {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let record = std::fs::read(out.join("identity.rec")).unwrap();
    let record = x0tta_pqc::IdentityRecord::from_bytes(&record).unwrap();
    assert_eq!(record.spiffe_id().as_str(), "spiffe://mesh.example/node/a");
    // A bad SPIFFE id is a clear error.
    let bad = x0tta(&["keys", "gen", "--out", out_s, "--spiffe", "https://x/y"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("spiffe://"), "{}", text(&bad));
}

/// Five node processes on 127.0.0.1 find each other from one bootstrap entry, gossip reaches
/// all, one is SIGKILLed and every other marks it down with no false PeerDown, and it
/// restarts and rejoins (the demo checks each of these and fails otherwise).
#[test]
fn demo_mesh_detects_a_killed_node_and_it_rejoins() {
    let _serial = one_demo_at_a_time();
    let out = x0tta(&["demo", "mesh", "--nodes", "5"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let summary = all
        .lines()
        .find(|l| l.starts_with("summary: scenario=mesh"))
        .expect("summary line");
    let field = |k: &str| -> f64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {summary}"))
    };
    assert_eq!(field("nodes"), 5.0);
    assert_eq!(field("false_downs"), 0.0, "{all}");
    // Generous bounds for a loaded CI machine; the figures themselves go to PERFORMANCE.md.
    assert!(field("mttd_ms") < 5000.0, "{summary}");
    assert!(field("gossip_p99_ms").is_finite(), "{summary}");
    assert!(all.contains("all 4 survivors marked node-4 down"), "{all}");
    assert!(
        all.contains("root cause: node-4 (NODE_FAILURE")
            && all.contains("4 of 4 neighbours alarmed"),
        "{all}"
    );
    assert!(summary.contains("root_cause_correct=true"), "{summary}");
    assert!(all.contains("restarted and rejoined"), "{all}");
    // Bad input: a clear error, not a panic.
    let bad = x0tta(&["demo", "mesh", "--nodes", "1"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("3 to 32 nodes"), "{}", text(&bad));
}

#[test]
fn governance_commands_drive_a_running_node() {
    let _one = one_demo_at_a_time();
    let (dir, cfg, mut child) = start_node();
    let cfg_s = cfg.to_str().unwrap();
    let addr = api_json(dir.path())["addr"].as_str().unwrap().to_string();
    let token_mode = std::fs::metadata(dir.path().join("data/api.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(token_mode & 0o777, 0o600, "the API token is private");
    let (code, body) = http(
        &addr,
        "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200, "{body}");
    let me = serde_json::from_str::<serde_json::Value>(&body).unwrap()["node"]
        .as_str()
        .unwrap()
        .to_string();

    // State changes need the token.
    let (code, body) = http(
        &addr,
        "POST /api/v1/proposals HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(code, 401, "{body}");

    // The seed's file names another creator: a clear refusal.
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/proposals/proposal-001.yaml"
    );
    let out = x0tta(&["propose", "--config", cfg_s, seed]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("set `creator: {me}`")),
        "{}",
        text(&out)
    );

    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "proposal_id: lower-cpu\ntitle: Lower the CPU threshold\nchanges:\n  - {{parameter: cpu_threshold, current: 90, proposed: 70}}\n  - {{parameter: check_interval, current: 0.1, proposed: 45}}\nrationale: MTTR of CPU_OVERLOAD incidents should fall.\ncreator: {me}\ntimestamp: 0\ntrack: emergency\n"
        ),
    )
    .unwrap();
    let out = x0tta(&[
        "propose",
        "--config",
        cfg_s,
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let over = x0tta(&["vote", "--config", cfg_s, &id, "11", "--for"]);
    assert!(!over.status.success(), "121 credits > 99");
    assert!(
        text(&over).contains("InsufficientCredits"),
        "{}",
        text(&over)
    );
    let out = x0tta(&["vote", "--config", cfg_s, &id, "5", "--for"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cost 25 credits"), "{}", text(&out));
    let out = x0tta(&["proposals", "--config", cfg_s, "list"]);
    assert!(
        text(&out).contains(&id) && text(&out).contains("voting"),
        "{}",
        text(&out)
    );

    // The emergency vote closes after 2 s; the node's loop applies the policy.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = x0tta(&["proposals", "--config", cfg_s, "show", &id, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if !v["proposal"]["applied_at"].is_null() {
            assert_eq!(v["proposal"]["phase"], "executed");
            assert_eq!(v["proposal"]["final_tally"]["passed"], true);
            assert_eq!(v["effectiveness"]["metric"], "MTTR");
            break;
        }
        assert!(Instant::now() < deadline, "not applied: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, policy) = http(
        &addr,
        "GET /api/v1/policy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(policy["thresholds"]["cpu_percent"], 70.0, "{policy}");
    assert_eq!(policy["intervals"]["cycle"], "45s", "{policy}");

    let bad = x0tta(&["proposals", "--config", cfg_s, "show", "not-a-cid"]);
    assert!(
        text(&bad).contains("is not a proposal id"),
        "{}",
        text(&bad)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = x0tta(&["proposals", "--config", cfg_s, "list"]);
    assert!(text(&gone).contains("no node answers"), "{}", text(&gone));
}

#[test]
fn three_nodes_vote_over_the_mesh_and_all_apply_the_policy() {
    // Several node processes with timed phases: not beside the demos, whose figures it would
    // skew (and which would skew its own).
    let _one = one_demo_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = ["a", "b", "c"];
    let ids: Vec<String> = names.iter().map(|n| lan_node(dir, n)).collect();
    for (i, n) in names.iter().enumerate() {
        lan_config(dir, n, &ids, i, None);
    }
    let mut children = vec![run_node(dir, "a")];
    // b and c bootstrap from a's first listen address.
    let deadline = Instant::now() + Duration::from_secs(20);
    let a_addr = loop {
        if let Some(st) = status_of(dir, "a")
            && let Some(addr) = st["listen"][0].as_str()
        {
            break addr.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "a never wrote its listen address"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let boot = dir.join("nodes.json");
    std::fs::write(&boot, format!("[\"{a_addr}\"]")).unwrap();
    for (i, n) in names.iter().enumerate().skip(1) {
        lan_config(dir, n, &ids, i, Some(&boot));
        children.push(run_node(dir, n));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while names.iter().any(|n| {
        status_of(dir, n).is_none_or(|st| {
            st["neighbours"]
                .as_array()
                .is_none_or(|a| a.iter().filter(|p| p["state"] == "up").count() < 2)
        })
    }) {
        assert!(
            Instant::now() < deadline,
            "the three nodes never all saw each other"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let cfg = |n: &str| dir.join(n).join("node.yaml").to_str().unwrap().to_string();
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "proposal_id: lower-cpu\ntitle: Lower the CPU threshold\nchanges: [{{parameter: cpu_threshold, current: 90, proposed: 70}}]\nrationale: heal rate should rise\ncreator: {}\ntimestamp: 0\ntrack: emergency\n",
            ids[0]
        ),
    )
    .unwrap();
    let out = x0tta(&[
        "propose",
        "--config",
        &cfg("a"),
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for n in names {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let out = x0tta(&["vote", "--config", &cfg(n), &id, "4", "--for"]);
            if out.status.success() {
                break;
            }
            // The proposal may still be on its way to this node.
            assert!(Instant::now() < deadline, "{n}: {}", text(&out));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in names {
        loop {
            let out = x0tta(&["proposals", "--config", &cfg(n), "show", &id, "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if !v["proposal"]["applied_at"].is_null() {
                assert_eq!(
                    v["proposal"]["votes_for"], 12,
                    "{n} counted every node's vote: {v}"
                );
                assert_eq!(v["proposal"]["final_tally"]["attesting_stake"], 300, "{v}");
                break;
            }
            assert!(Instant::now() < deadline, "{n} never applied it: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for mut c in children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn init_writes_a_hardened_systemd_unit_that_systemd_accepts() {
    // The unit in docs/deploy is what the binary generates for the default layout.
    let out = x0tta(&["systemd-unit", "--bin", "/usr/local/bin/x0tta6bl4"]);
    assert!(out.status.success(), "{}", text(&out));
    let held = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/deploy/x0tta6bl4.service"
    ))
    .unwrap();
    assert!(
        held == String::from_utf8_lossy(&out.stdout),
        "docs/deploy/x0tta6bl4.service is stale: run `cargo run -p node-ref -- systemd-unit --bin /usr/local/bin/x0tta6bl4 > docs/deploy/x0tta6bl4.service`"
    );
    assert!(held.contains("StateDirectory=x0tta6bl4"));
    assert!(held.contains("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"));
    assert!(held.contains("ProtectSystem=strict"));

    // init --systemd writes the unit for its own node: absolute config path, its directory
    // writable, this binary.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("n/node.yaml");
    let unit = dir.path().join("x0tta6bl4.service");
    let out = x0tta(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--systemd",
        unit.to_str().unwrap(),
        "--user",
        "meshnode",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&unit).unwrap();
    assert!(written.contains(&format!("ExecStart={BIN} run --config {}", cfg.display())));
    assert!(written.contains(&format!(
        "ReadWritePaths={}",
        dir.path().join("n").display()
    )));
    assert!(written.contains("User=meshnode"));

    let have = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing in CI: .ci/run must install systemd"
        );
        eprintln!("SKIPPED: systemd-analyze verify/security: systemd-analyze is not installed");
        return;
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no", unit.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    // systemd's own exposure score for the sandbox (0 = locked down, 10 = fully exposed).
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", unit.to_str().unwrap()])
        .output()
        .unwrap();
    let report = text(&security);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd exposure level of the unit: {score}");
    assert!(
        score < 3.0,
        "the unit is hardened (exposure {score}):\n{report}"
    );
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let out = x0tta(&["completions", shell]);
        assert!(out.status.success(), "{}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("x0tta6bl4") && script.contains("proposals"),
            "{shell}"
        );
    }
    let man = x0tta(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH x0tta6bl4 1"), "{page}");
    assert!(
        page.contains("Exit codes"),
        "the man page documents exit codes"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = x0tta(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("x0tta6bl4-status.1").exists());
    // A usage error exits 2, as documented.
    assert_eq!(x0tta(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        x0tta(&["status", "--config", "/nonexistent/node.yaml"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn init_and_keys_print_json_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.yaml");
    let out = x0tta(&["init", "--config", cfg.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["node_id"].as_str().unwrap().starts_with("12D3KooW"),
        "{v}"
    );
    assert_eq!(v["api"], "http://127.0.0.1:3000/api/v1/");
    let keys = dir.path().join("k");
    let out = x0tta(&["keys", "gen", "--out", keys.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["public_bytes"], 1952);
    let id = dir.path().join("id");
    let out = x0tta(&[
        "keys",
        "gen",
        "--out",
        id.to_str().unwrap(),
        "--spiffe",
        "spiffe://x0tta.local/n1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["spiffe_id"], "spiffe://x0tta.local/n1");
    assert_eq!(v["new"], true);
}

/// Runs the node of `config` until it writes its first status file (within 20 s), stops it
/// with SIGTERM (it must exit 0) and returns that status.
fn first_status(config: &str, status_file: &std::path::Path) -> serde_json::Value {
    let _ = std::fs::remove_file(status_file);
    let mut child = Command::new(BIN)
        .args(["run", "--config", config])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = std::fs::read(status_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no status file written");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    status
}

#[test]
fn model_train_show_export_and_the_node_loads_only_a_verified_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.yaml");
    let cfg_s = cfg.to_str().unwrap();
    assert!(
        x0tta(&["init", "--config", cfg_s, "--name", "m1"])
            .status
            .success()
    );
    let none = x0tta(&["model", "show", "--config", cfg_s]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none).contains("model train"), "{}", text(&none));

    // Seeds that overlap are refused; so is an empty range.
    let overlap = x0tta(&[
        "model",
        "train",
        "--config",
        cfg_s,
        "--train-seeds",
        "0..6",
        "--test-seeds",
        "5..7",
    ]);
    assert_eq!(overlap.status.code(), Some(1), "{}", text(&overlap));
    let empty = x0tta(&["model", "train", "--config", cfg_s, "--train-seeds", "4..4"]);
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty));

    let train = |v: u64| {
        let out = x0tta(&[
            "model",
            "train",
            "--config",
            cfg_s,
            "--train-seeds",
            "0..6",
            "--test-seeds",
            "500..502",
            "--epochs",
            "20",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["model"]["version"], v);
        assert_eq!(j["scenarios"]["train"], 48);
        assert!(j["f1_macro"].as_f64().unwrap() > 0.5, "{j}");
        j
    };
    train(1);
    let second = train(2);
    let show = x0tta(&["model", "show", "--config", cfg_s, "--json"]);
    assert!(show.status.success(), "{}", text(&show));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["model"]["cid"], second["model"]["cid"]);
    assert_eq!(shown["model"]["classes"][1], "node_crash");

    // Export: plain safetensors with the four weight tensors.
    let out = dir.path().join("w.safetensors");
    let ex = x0tta(&[
        "model",
        "export",
        "--config",
        cfg_s,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ex.status.success(), "{}", text(&ex));
    let bytes = std::fs::read(&out).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    for t in ["l1.weight", "l1.bias", "l2.weight", "l2.bias"] {
        assert_eq!(header[t]["dtype"], "F32", "{header}");
    }

    // The node loads it at start and says so in its status.
    let status_file = dir.path().join("data/status.json");
    let status = first_status(cfg_s, &status_file);
    assert_eq!(status["model"]["version"], 2, "{status}");
    assert_eq!(status["model"]["cid"], second["model"]["cid"]);

    // One flipped byte: refused by `show`, and not loaded by the node.
    let path = dir.path().join("data/patterns.bin");
    let mut p = std::fs::read(&path).unwrap();
    let at = p.len() / 2;
    p[at] ^= 0x40;
    std::fs::write(&path, &p).unwrap();
    let bad = x0tta(&["model", "show", "--config", cfg_s]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("refused"), "{}", text(&bad));
    let status = first_status(cfg_s, &status_file);
    assert!(status["model"].is_null(), "{status}");
}

#[test]
fn two_nodes_run_federated_rounds_and_advance_their_patterns() {
    // Node processes on rounds of the clock: not beside the demos.
    let _one = one_demo_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = ["fa", "fb"];
    let ids: Vec<String> = names.iter().map(|n| lan_node(dir, n)).collect();
    let cfg = |n: &str| dir.join(n).join("node.yaml").to_str().unwrap().to_string();
    // Every CPU reading is an overload (a labelled incident each node learns from), and a
    // federated round every 2 s.
    let tune = |n: &str| {
        let yaml = std::fs::read_to_string(cfg(n)).unwrap();
        let yaml = yaml.replace("cpu_percent: 90", "cpu_percent: 0").replace(
            "      verify_timeout: 30s\n",
            "      verify_timeout: 30s\n    federated:\n      interval: 2s\n",
        );
        assert!(yaml.contains("interval: 2s"), "{yaml}");
        std::fs::write(cfg(n), yaml).unwrap();
    };
    for (i, n) in names.iter().enumerate() {
        lan_config(dir, n, &ids, i, None);
        let out = x0tta(&[
            "model",
            "train",
            "--config",
            &cfg(n),
            "--train-seeds",
            "0..2",
            "--test-seeds",
            "500..501",
            "--epochs",
            "5",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    tune("fa");
    let mut children = vec![run_node(dir, "fa")];
    let deadline = Instant::now() + Duration::from_secs(20);
    let a_addr = loop {
        if let Some(st) = status_of(dir, "fa")
            && let Some(addr) = st["listen"][0].as_str()
        {
            break addr.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "fa never wrote its listen address"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let boot = dir.join("nodes.json");
    std::fs::write(&boot, format!("[\"{a_addr}\"]")).unwrap();
    lan_config(dir, "fb", &ids, 1, Some(&boot));
    tune("fb");
    children.push(run_node(dir, "fb"));

    // A round in which each node published, accepted the other's update and combined both;
    // each combined round writes the next version of the node's patterns.bin.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rounds: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                status_of(dir, n).map_or(serde_json::Value::Null, |st| st["federated"].clone())
            })
            .collect();
        if rounds.iter().all(|r| {
            r["published"].as_u64().unwrap_or(0) > 0
                && r["accepted"] == 1
                && r["combined"] == 2
                && r["rule"] == "median"
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never combined each other's updates: {rounds:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for mut c in children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    for n in names {
        let show = x0tta(&["model", "show", "--config", &cfg(n), "--json"]);
        assert!(show.status.success(), "{}", text(&show));
        let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        assert!(v["model"]["version"].as_u64().unwrap() >= 2, "{v}");
    }
}
