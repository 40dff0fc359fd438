//! The Yggdrasil adapter against real routers from the Debian `yggdrasil` package: two
//! routers peered over loopback (no TUN needed), read through their admin sockets; and, as
//! root, two routers with TUN interfaces in separate network namespaces carrying libp2p.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::Ipv6Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use x0tta_core::{Neighbour, PeerState, Policy, Sensor, Transport, topics};
use x0tta_mesh::p2p::{P2pConfig, P2pTransport, SYNC_PROTOCOL};
use x0tta_mesh::yggdrasil::{
    AdminEndpoint, METRIC_PEERS, METRIC_TREE_DEPTH, YggdrasilAdmin, YggdrasilError,
    YggdrasilSensor, listen_addr,
};
use x0tta_pqc::NodeIdentity;

fn yggdrasil_binary() -> Option<PathBuf> {
    ["/usr/sbin/yggdrasil", "/usr/bin/yggdrasil"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A router process, killed on drop; its output goes to a log file.
struct Router {
    child: Child,
    log: PathBuf,
}

impl Router {
    /// What the router has printed so far, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("<{}: {e}>", self.log.display()))
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a router named `name` with its files in `dir`. With `netns` it runs inside that
/// network namespace (`ip netns exec`, which execs, so the child is the router itself);
/// `if_name` is its TUN interface (`none` for none).
fn start_router(
    bin: &Path,
    dir: &Path,
    name: &str,
    netns: Option<&str>,
    if_name: &str,
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
    conf["IfName"] = if_name.into();
    conf["Listen"] = serde_json::json!(listen);
    conf["Peers"] = serde_json::json!(peers);
    conf["MulticastInterfaces"] = serde_json::json!([]);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, conf.to_string()).unwrap();
    let log = dir.join(format!("{name}.log"));
    let out = File::create(&log).unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = cmd
        .arg("-useconffile")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    (
        Router { child, log },
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
        None,
        "none",
        &[format!("tcp://127.0.0.1:{port}")],
        &[],
    );
    let (_b, b_admin) = start_router(
        &bin,
        dir.path(),
        "b",
        None,
        "none",
        &[],
        &[format!("tcp://127.0.0.1:{port}")],
    );
    let (a, b) = (YggdrasilAdmin::new(a_admin), YggdrasilAdmin::new(b_admin));

    // Wait for both admin sockets and the peering (up to 30 s: CI runs the suite on 2 cores).
    let mut peers = Vec::new();
    for _ in 0..300 {
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

/// Runs `cmd`; its stdout, or what went wrong.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace, deleted on drop (taking its veth end and TUN interface with it; a
/// process still inside keeps it alive until it exits).
struct Netns(String);

impl Netns {
    fn add(name: String) -> Result<Self, String> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Self(name))
    }

    /// `ip -n <self> <args>`.
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new("ip").args(["-n", &self.0]).args(args))
    }

    /// The bind mount `setns(2)` opens.
    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.0)
    }

    /// The global IPv6 addresses of `dev` in this namespace.
    fn ipv6_addrs(&self, dev: &str) -> Vec<Ipv6Addr> {
        let out = self
            .ip(&["-6", "-o", "addr", "show", "dev", dev])
            .unwrap_or_default();
        out.split_whitespace()
            .filter_map(|w| w.split('/').next()?.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "delete", &self.0]));
    }
}

/// Two namespaces joined by a veth pair carrying `10.213.0.1/24` (in `a`) and
/// `10.213.0.2/24` (in `b`); both deleted on drop.
struct VethLab {
    a: Netns,
    b: Netns,
}

impl VethLab {
    const A_IP: &str = "10.213.0.1";
    const B_IP: &str = "10.213.0.2";

    /// `Err` when the host cannot make namespaces or veth pairs: the caller skips.
    fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let a = Netns::add(format!("x0tta-ygg-{pid}-a"))?;
        let b = Netns::add(format!("x0tta-ygg-{pid}-b"))?;
        run(Command::new("ip").args([
            "link", "add", "veth-a", "netns", &a.0, "type", "veth", "peer", "name", "veth-b",
            "netns", &b.0,
        ]))?;
        let lab = Self { a, b };
        for (ns, dev, ip) in [
            (&lab.a, "veth-a", Self::A_IP),
            (&lab.b, "veth-b", Self::B_IP),
        ] {
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok(lab)
    }
}

/// A libp2p node whose sockets live in a network namespace. Namespaces are per thread for
/// `setns(2)`, so the node gets its own thread, moved into the namespace before its
/// current-thread runtime exists: the Swarm task and every socket it opens stay there. The
/// [`P2pTransport`] handle is usable from any runtime (it only talks to that task through
/// channels). The node stops and its thread is joined on drop.
struct NsNode {
    transport: P2pTransport,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsNode {
    async fn start(netns: &Netns, name: &str, config: P2pConfig) -> Self {
        let path = netns.path();
        let spiffe = format!("spiffe://test/{name}").parse().unwrap();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<P2pTransport, String>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("node-{name}"))
            .spawn(move || {
                let runtime = File::open(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))
                    .and_then(|ns| {
                        rustix::thread::move_into_link_name_space(
                            ns.as_fd(),
                            Some(rustix::thread::LinkNameSpaceType::Network),
                        )
                        .map_err(|e| format!("setns {}: {e}", path.display()))
                    })
                    .and_then(|()| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| format!("runtime: {e}"))
                    });
                let runtime = match runtime {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let id = NodeIdentity::generate(spiffe);
                    match P2pTransport::start(&id, config).await {
                        Ok(t) => {
                            let _ = ready_tx.send(Ok(t.clone()));
                            // Also ends when the sender is dropped (a panicking test).
                            let _ = stopped.await;
                            t.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .expect("spawn a node thread");
        let transport = tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .unwrap_or_else(|_| panic!("node {name} did not start within 20 s"))
            .unwrap_or_else(|_| panic!("node {name}'s thread died"))
            .unwrap_or_else(|e| panic!("node {name} failed to start: {e}"));
        Self {
            transport,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `limit`.
async fn poll_until<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The neighbour `id` in `node`'s table once failure detection counts it as up.
async fn live_neighbour(node: &P2pTransport, id: &x0tta_core::NodeId) -> Option<Neighbour> {
    node.neighbours()
        .await
        .into_iter()
        .find(|n| &n.id == id && n.state == PeerState::Up)
}

/// The mesh over Yggdrasil for real: two network namespaces joined only by a veth pair with
/// IPv4 addresses, a Yggdrasil router with a TUN interface in each (peered over the veth),
/// and a libp2p node in each listening only on its router's 200::/7 address. Node B finds
/// node A from one bootstrap entry naming A's Yggdrasil address, so every libp2p byte between
/// them crosses the Yggdrasil overlay: the nodes become live neighbours at those addresses,
/// gossip and a request-response round trip go from B to A, and A's router reports B's as
/// its one peer through the admin socket and the `YggdrasilSensor`.
///
/// Needs root, `ip`, `/dev/net/tun` and the `yggdrasil` package; without them it prints
/// `SKIPPED: ...` and passes.
#[tokio::test]
async fn libp2p_nodes_in_two_namespaces_talk_over_yggdrasil() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to create network namespaces and TUN interfaces");
        return;
    }
    let Some(bin) = yggdrasil_binary() else {
        eprintln!("SKIPPED: the yggdrasil package is not installed (apt-get install yggdrasil)");
        return;
    };
    if let Err(e) = Command::new("ip").arg("-V").output() {
        eprintln!("SKIPPED: the ip command (iproute2) cannot be run: {e}");
        return;
    }
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("SKIPPED: /dev/net/tun is missing, so Yggdrasil cannot create its TUN interface");
        return;
    }
    let lab = match VethLab::create() {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("SKIPPED: cannot create two network namespaces joined by a veth pair: {e}");
            return;
        }
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();

    // Routers: A listens on its veth address, B peers to it. Every namespace is fresh, so
    // the port is free.
    const TUN: &str = "ygg0";
    let router_link = format!("tcp://{}:12345", VethLab::A_IP);
    let (router_a, a_admin) = start_router(
        &bin,
        dir.path(),
        "a",
        Some(&lab.a.0),
        TUN,
        std::slice::from_ref(&router_link),
        &[],
    );
    let (router_b, b_admin) = start_router(
        &bin,
        dir.path(),
        "b",
        Some(&lab.b.0),
        TUN,
        &[],
        std::slice::from_ref(&router_link),
    );
    let (a_admin, b_admin) = (YggdrasilAdmin::new(a_admin), YggdrasilAdmin::new(b_admin));

    // Each router knows itself, has the other as its peer, and has put its address on its
    // TUN interface.
    let peered = poll_until(Duration::from_secs(20), async || {
        let a = a_admin.self_info().await.ok()?;
        let b = b_admin.self_info().await.ok()?;
        let a_peers = a_admin.peers().await.ok()?;
        let b_peers = b_admin.peers().await.ok()?;
        let ready = a_peers.iter().any(|p| p.key == b.key)
            && b_peers.iter().any(|p| p.key == a.key)
            && lab.a.ipv6_addrs(TUN).contains(&a.address)
            && lab.b.ipv6_addrs(TUN).contains(&b.address);
        ready.then_some((a.address, b.address))
    })
    .await;
    let Some((a_ygg, b_ygg)) = peered else {
        panic!(
            "the routers did not peer with their TUN addresses up within 20 s\n\
             router a:\n{}\nrouter b:\n{}",
            router_a.log(),
            router_b.log()
        );
    };
    for addr in [a_ygg, b_ygg] {
        assert_eq!(
            addr.segments()[0] & 0xfe00,
            0x0200,
            "{addr} is not in 200::/7"
        );
    }

    // libp2p nodes, each in its namespace, listening only on the Yggdrasil address.
    let config = |listen, bootstrap| P2pConfig {
        listen: vec![listen],
        bootstrap,
        mdns: false,
        min_neighbours: 1,
        ..P2pConfig::default()
    };
    let a_listen = listen_addr(&a_admin, 0)
        .await
        .expect("router a's listen address");
    let node_a = NsNode::start(&lab.a, "a", config(a_listen, vec![])).await;
    let a_entry = node_a
        .transport
        .listen_addrs()
        .into_iter()
        .next()
        .expect("node a reports no listen address");
    assert!(
        a_entry
            .to_string()
            .starts_with(&format!("/ip6/{a_ygg}/tcp/")),
        "node a listens on {a_entry}, not on router a's address {a_ygg}"
    );
    let b_listen = listen_addr(&b_admin, 0)
        .await
        .expect("router b's listen address");
    let node_b = NsNode::start(&lab.b, "b", config(b_listen, vec![a_entry.clone()])).await;
    let (a, b) = (&node_a.transport, &node_b.transport);

    // Neighbours: B reaches A at A's Yggdrasil address, and A sees B.
    let a_seen_by_b = poll_until(Duration::from_secs(20), async || {
        live_neighbour(b, a.local_id()).await
    })
    .await
    .unwrap_or_else(|| panic!("node b never had node a as a live neighbour via {a_entry}"));
    let a_prefix = format!("/ip6/{a_ygg}/tcp/");
    assert!(
        a_seen_by_b
            .addresses
            .iter()
            .any(|x| x.starts_with(&a_prefix)),
        "node b knows node a only at {:?}, not at its Yggdrasil address {a_ygg}",
        a_seen_by_b.addresses
    );
    poll_until(Duration::from_secs(20), async || {
        live_neighbour(a, b.local_id()).await
    })
    .await
    .expect("node a never had node b as a live neighbour");

    // Gossip from B reaches A, once B knows A subscribes.
    let mut incidents = a.subscribe(topics::INCIDENTS).await.unwrap();
    poll_until(Duration::from_secs(20), async || {
        let out = b.publish(topics::INCIDENTS, b"warm-up".to_vec()).await;
        (out.expect("publish").delivered > 0).then_some(())
    })
    .await
    .expect("node b never saw node a subscribe to the incidents topic");
    let payload = format!("from {b_ygg} over yggdrasil").into_bytes();
    b.publish(topics::INCIDENTS, payload.clone())
        .await
        .expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = incidents.next().await.expect("subscription closed");
            if m.payload == payload {
                return m;
            }
        }
    })
    .await
    .expect("node a never received node b's gossip within 10 s");
    assert_eq!(&got.from, b.local_id());

    // A request-response round trip from B to A.
    let mut inbox = a.serve(SYNC_PROTOCOL).await.unwrap();
    let server = tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let mut body = b"echo:".to_vec();
            body.extend_from_slice(&req.payload);
            req.respond(body);
        }
    });
    let reply = b
        .request(
            a.local_id(),
            SYNC_PROTOCOL,
            b"sv".to_vec(),
            Duration::from_secs(10),
        )
        .await
        .expect("node b's sync request to node a");
    assert_eq!(reply, b"echo:sv");
    server.abort();

    // Router A, as the healing loop sees it: one peer, router B.
    let b_key = b_admin.self_info().await.unwrap().key;
    let peers = a_admin.peers().await.unwrap();
    assert_eq!(peers.len(), 1, "router a's peers: {peers:?}");
    assert_eq!(peers[0].key, b_key);
    let reading = YggdrasilSensor::new(a_admin.clone())
        .read(&Policy::default())
        .await
        .expect("read router a");
    let peers_metric = reading
        .metrics
        .iter()
        .find(|(n, _)| n == METRIC_PEERS)
        .map(|(_, v)| *v);
    assert_eq!(peers_metric, Some(1.0), "router a's reading: {reading:?}");
    eprintln!(
        "libp2p over yggdrasil: {a_ygg} <-> {b_ygg} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
