//! The Yggdrasil adapter against real routers from the Debian `yggdrasil` package: two
//! routers peered over loopback (no TUN needed), read through their admin sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use x0tta_core::{Policy, Sensor};
use x0tta_mesh::yggdrasil::{
    AdminEndpoint, METRIC_PEERS, METRIC_TREE_DEPTH, YggdrasilAdmin, YggdrasilError,
    YggdrasilSensor, listen_addr,
};

fn yggdrasil_binary() -> Option<PathBuf> {
    ["/usr/sbin/yggdrasil", "/usr/bin/yggdrasil"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A router process, killed on drop.
struct Router(Child);

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_router(
    bin: &Path,
    dir: &Path,
    name: &str,
    listen: &[String],
    peers: &[String],
) -> (Router, AdminEndpoint) {
    let out = Command::new(bin)
        .args(["-genconf", "-json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "yggdrasil -genconf failed");
    let mut conf: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sock = dir.join(format!("{name}.sock"));
    conf["AdminListen"] = format!("unix://{}", sock.display()).into();
    conf["IfName"] = "none".into();
    conf["Listen"] = serde_json::json!(listen);
    conf["Peers"] = serde_json::json!(peers);
    conf["MulticastInterfaces"] = serde_json::json!([]);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, conf.to_string()).unwrap();
    let child = Command::new(bin)
        .arg("-useconffile")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (
        Router(child),
        format!("unix://{}", sock.display()).parse().unwrap(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn reads_two_peered_routers() {
    let Some(bin) = yggdrasil_binary() else {
        eprintln!("SKIPPED: the yggdrasil package is not installed (apt-get install yggdrasil)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_a, a_admin) = start_router(
        &bin,
        dir.path(),
        "a",
        &[format!("tcp://127.0.0.1:{port}")],
        &[],
    );
    let (_b, b_admin) = start_router(
        &bin,
        dir.path(),
        "b",
        &[],
        &[format!("tcp://127.0.0.1:{port}")],
    );
    let (a, b) = (YggdrasilAdmin::new(a_admin), YggdrasilAdmin::new(b_admin));

    // Wait for both admin sockets and the peering.
    let mut peers = Vec::new();
    for _ in 0..100 {
        if let Ok(p) = b.peers().await
            && !p.is_empty()
        {
            peers = p;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a_self = a.self_info().await.unwrap();
    let b_self = b.self_info().await.unwrap();
    assert_eq!(peers.len(), 1, "b never peered with a");
    assert_eq!(peers[0].key, a_self.key);
    assert_eq!(peers[0].address, a_self.address);
    assert_eq!(peers[0].remote, format!("tcp://127.0.0.1:{port}"));
    // Yggdrasil addresses live in 200::/7.
    for addr in [a_self.address, b_self.address] {
        assert_eq!(addr.segments()[0] & 0xfe00, 0x0200, "{addr}");
    }
    assert_ne!(a_self.key, b_self.key);

    let reading = YggdrasilSensor::new(b.clone())
        .read(&Policy::default())
        .await
        .unwrap();
    let metric = |name: &str| {
        reading
            .metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    };
    assert_eq!(metric(METRIC_PEERS), Some(1.0));
    assert!(metric(METRIC_TREE_DEPTH).is_some());

    let addr = listen_addr(&b, 4001).await.unwrap();
    assert_eq!(
        addr.to_string(),
        format!("/ip6/{}/tcp/4001", b_self.address)
    );
}

#[tokio::test]
async fn a_missing_router_is_a_typed_error() {
    let admin = YggdrasilAdmin::new("unix:///nonexistent/yggdrasil.sock".parse().unwrap());
    assert!(matches!(
        admin.self_info().await,
        Err(YggdrasilError::Io { .. })
    ));
    let err = YggdrasilSensor::new(admin)
        .read(&Policy::default())
        .await
        .unwrap_err();
    assert!(
        err.reason.contains("/nonexistent/yggdrasil.sock"),
        "{err:?}"
    );
    assert!("ftp://x".parse::<AdminEndpoint>().is_err());
    assert!("unix://relative".parse::<AdminEndpoint>().is_err());
}

/// A fake router that answers garbage, an error status, or never stops talking.
#[tokio::test]
async fn bad_answers_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (answer, check) in [
        (b"not json at all".to_vec(), "malformed"),
        (
            br#"{"status":"error","error":"unknown request"}"#.to_vec(),
            "refused",
        ),
        (
            br#"{"status":"success","response":{"peers":7}}"#.to_vec(),
            "malformed",
        ),
        (vec![b'['; (1 << 20) + 10], "too large"),
    ] {
        let sock = dir.path().join(format!("{check}-{}.sock", answer.len()));
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&answer).await;
        });
        let admin = YggdrasilAdmin::new(format!("unix://{}", sock.display()).parse().unwrap());
        let err = admin.peers().await.unwrap_err();
        let ok = match check {
            "malformed" => matches!(err, YggdrasilError::Malformed(_)),
            "refused" => matches!(err, YggdrasilError::Refused { .. }),
            _ => matches!(err, YggdrasilError::TooLarge),
        };
        assert!(ok, "{check}: {err:?}");
        server.abort();
    }
}
