//! The XDP guard on a real veth pair inside network namespaces this test creates: counters,
//! rate limiting, isolation through the actions, the sensor, and typed errors. Needs root,
//! clang and iproute2; says SKIPPED loudly without them (CI sets X0TTA_EBPF_REQUIRE=1 so that
//! it fails instead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lab;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use lab::{Lab, PORT, RX_IF, RX_V4, RX_V6, tx_v4, tx_v6};
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::{
    Action, ActionContext, Anomaly, AnomalyKind, Neighbour, NodeId, Observation, ParamValue,
    Params, PeerState, Policy, PolicyHandle, Sensor, Severity, Subject, Timestamp,
};
use x0tta_ebpf::{
    AttachMode, Error, IsolatePeer, RateLimit, SetRateLimit, UnisolatePeer, XdpGuard, XdpSensor,
};

const PAYLOAD: usize = 64;

fn to_v4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(RX_V4), PORT)
}

fn attach(
    lab: &Lab,
    build: impl FnOnce(x0tta_ebpf::XdpGuardBuilder) -> x0tta_ebpf::XdpGuardBuilder + Send,
) -> Arc<XdpGuard> {
    Arc::new(
        lab.in_a(|| build(XdpGuard::builder(RX_IF)).attach())
            .expect("attach"),
    )
}

#[test]
fn counters_match_what_was_sent() {
    require_lab!();
    let lab = Lab::new("c");
    let guard = attach(&lab, |b| b);
    assert_eq!(guard.mode(), AttachMode::Driver, "veth has native XDP");
    let rx4 = lab.receiver(IpAddr::V4(RX_V4));
    let rx6 = lab.receiver(IpAddr::V6(RX_V6));

    let plan = [(tx_v4(2), 500u64), (tx_v4(3), 300), (tx_v6(2), 200)];
    for (from, n) in plan {
        let to = SocketAddr::new(
            if from.is_ipv4() {
                RX_V4.into()
            } else {
                RX_V6.into()
            },
            PORT,
        );
        lab::send(&lab.sender(from), to, n, PAYLOAD, 20_000);
    }
    assert_eq!(rx4.settle() + rx6.settle(), 1_000, "everything passed");

    for (from, n) in plan {
        let s = guard.source(from).unwrap().expect("source tracked");
        assert_eq!(s.packets, n, "{from}");
        assert_eq!(s.bytes, n * lab::frame_len(from, PAYLOAD), "{from}");
        assert_eq!((s.rate_dropped, s.blocked_dropped), (0, 0));
    }
    let listed: Vec<IpAddr> = guard.sources().unwrap().iter().map(|s| s.addr).collect();
    for (from, _) in plan {
        assert!(listed.contains(&from));
    }
    let t = guard.totals().unwrap();
    assert!(t.passed >= 1_000, "{t:?}");
    assert_eq!(t.dropped(), 0);

    // Detached on drop: traffic is no longer counted.
    drop(guard);
    let out = lab.in_a(|| {
        std::process::Command::new("ip")
            .args(["link", "show", RX_IF])
            .output()
            .unwrap()
    });
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("xdp"),
        "still attached"
    );
}

#[test]
fn a_source_above_its_rate_is_held_to_it() {
    require_lab!();
    let lab = Lab::new("r");
    let (pps, burst) = (2_000u64, 100u64);
    let guard = attach(&lab, move |b| {
        b.rate_limit(RateLimit::new(pps, burst).unwrap())
    });
    let rx = lab.receiver(IpAddr::V4(RX_V4));

    // 10,000 packets/s for 1.5 s against a 2,000 packets/s limit.
    let flooder = tx_v4(4);
    let took = lab::send(&lab.sender(flooder), to_v4(), 15_000, PAYLOAD, 10_000);
    let s = guard.source(flooder).unwrap().unwrap();
    let passed = s.packets - s.rate_dropped;
    let expected = burst as f64 + pps as f64 * took.as_secs_f64();
    let error = (passed as f64 - expected).abs() / expected;
    eprintln!(
        "rate limit: sent 15000 in {:.3} s, passed {passed}, expected {expected:.0}, error {:.1}%",
        took.as_secs_f64(),
        error * 100.0
    );
    assert_eq!(s.packets, 15_000);
    assert!(error < 0.10, "passed {passed}, expected {expected:.0}");
    assert_eq!(rx.settle(), passed, "what XDP passed is what arrived");

    // A source under the limit loses nothing.
    let calm = tx_v4(5);
    lab::send(&lab.sender(calm), to_v4(), 300, PAYLOAD, 1_000);
    assert_eq!(guard.source(calm).unwrap().unwrap().rate_dropped, 0);

    // Its own limit overrides the default, and the default changes live.
    assert_eq!(
        guard
            .set_source_limit(flooder, Some(RateLimit::new(1_000_000, 100_000).unwrap()))
            .unwrap(),
        None
    );
    let before = guard.source(flooder).unwrap().unwrap().rate_dropped;
    lab::send(&lab.sender(flooder), to_v4(), 2_000, PAYLOAD, 20_000);
    assert_eq!(guard.source(flooder).unwrap().unwrap().rate_dropped, before);
    guard.set_source_limit(flooder, None).unwrap();
    assert_eq!(
        guard.set_rate_limit(None).unwrap(),
        Some(RateLimit { pps, burst })
    );
    lab::send(&lab.sender(tx_v4(6)), to_v4(), 2_000, PAYLOAD, 20_000);
    assert_eq!(guard.source(tx_v4(6)).unwrap().unwrap().rate_dropped, 0);
}

fn ctx(peer: &str, addresses: Vec<String>) -> ActionContext {
    let node = NodeId::new("rx").unwrap();
    let peer = NodeId::new(peer).unwrap();
    let mut obs = Observation::new(node.clone());
    obs.neighbours.push(Neighbour {
        id: peer.clone(),
        addresses,
        rtt_ms: None,
        loss: 0.0,
        last_seen: Timestamp::now(),
        state: PeerState::Up,
        clock_offset_ms: None,
    });
    let net = MemoryNetwork::new();
    ActionContext {
        node: node.clone(),
        anomaly: Anomaly::new(
            AnomalyKind::ByzantinePeer,
            Severity::High,
            1.0,
            Subject::Peer(peer),
            "flooding",
        ),
        observation: Arc::new(obs),
        policy: PolicyHandle::new(Policy::default()).unwrap(),
        transport: Arc::new(net.join(node)),
        knowledge: Arc::new(MemoryKnowledge::new(1)),
    }
}

#[tokio::test]
async fn an_isolated_peer_gets_nothing_through_until_unisolated() {
    require_lab!();
    let lab = Lab::new("i");
    let guard = attach(&lab, |b| b);
    let rx = lab.receiver(IpAddr::V4(RX_V4));
    let rx6 = lab.receiver(IpAddr::V6(RX_V6));
    let (bad, bad6, good) = (tx_v4(7), tx_v6(3), tx_v4(8));
    let c = ctx(
        "mallory",
        vec![
            format!("/ip4/{bad}/udp/7001/quic-v1"),
            format!("/ip6/{bad6}/tcp/7001"),
        ],
    );
    let isolate = IsolatePeer::new(vec![guard.clone()]);
    let unisolate = UnisolatePeer::new(vec![guard.clone()]);
    let none = Params::new();

    let said = isolate.run(&none, &c).await.unwrap();
    assert!(
        said.contains(&bad.to_string()) && said.contains(&bad6.to_string()),
        "{said}"
    );
    assert!(guard.is_blocked(bad).unwrap() && guard.is_blocked(bad6).unwrap());
    let mut blocked = guard.blocked().unwrap();
    blocked.sort();
    assert_eq!(blocked, vec![bad, bad6]);

    lab::send(&lab.sender(bad), to_v4(), 400, PAYLOAD, 20_000);
    lab::send(
        &lab.sender(bad6),
        SocketAddr::new(RX_V6.into(), PORT),
        100,
        PAYLOAD,
        20_000,
    );
    lab::send(&lab.sender(good), to_v4(), 250, PAYLOAD, 20_000);
    assert_eq!(rx.settle(), 250, "only the good source arrives");
    assert_eq!(rx6.settle(), 0);
    assert_eq!(guard.source(bad).unwrap().unwrap().blocked_dropped, 400);
    assert_eq!(guard.source(bad6).unwrap().unwrap().blocked_dropped, 100);
    assert_eq!(guard.totals().unwrap().blocked_dropped, 500);

    unisolate.run(&none, &c).await.unwrap();
    lab::send(&lab.sender(bad), to_v4(), 300, PAYLOAD, 20_000);
    assert_eq!(rx.settle(), 550, "traffic flows again");

    // Rollbacks undo their own step: unisolate's blocks again, isolate's lets back in.
    unisolate.rollback(&none, &c).await.unwrap();
    assert!(guard.is_blocked(bad).unwrap() && guard.is_blocked(bad6).unwrap());
    isolate.rollback(&none, &c).await.unwrap();
    assert!(guard.blocked().unwrap().is_empty());

    let fresh = IsolatePeer::new(vec![guard.clone()]);
    guard.block(good).unwrap();
    let mut p = Params::new();
    p.insert(
        "address".into(),
        ParamValue::List(vec![
            ParamValue::Str(good.to_string()),
            ParamValue::Str(bad.to_string()),
        ]),
    );
    fresh.run(&p, &c).await.unwrap();
    fresh.rollback(&p, &c).await.unwrap();
    assert!(
        guard.is_blocked(good).unwrap(),
        "blocked before the step: left blocked"
    );
    assert!(
        !guard.is_blocked(bad).unwrap(),
        "blocked by the step: let back in"
    );

    // An anomaly about the host has no peer to isolate.
    let mut host = c.clone();
    host.anomaly.subject = Subject::Host;
    assert!(isolate.run(&none, &host).await.is_err());
    let mut bad_param = Params::new();
    bad_param.insert("address".into(), ParamValue::Str("not-an-ip".into()));
    assert!(isolate.run(&bad_param, &c).await.is_err());
}

#[tokio::test]
async fn set_rate_limit_applies_and_rolls_back() {
    require_lab!();
    let lab = Lab::new("l");
    let guard = attach(&lab, |b| {
        b.rate_limit(RateLimit::new(50_000, 5_000).unwrap())
    });
    let action = SetRateLimit::new(vec![guard.clone()]);
    let c = ctx("p", vec![]);
    let mut p = Params::new();
    p.insert("pps".into(), ParamValue::Int(1_000));
    p.insert("burst".into(), ParamValue::Int(50));
    action.run(&p, &c).await.unwrap();
    assert_eq!(
        guard.rate_limit().unwrap(),
        Some(RateLimit {
            pps: 1_000,
            burst: 50
        })
    );
    action.rollback(&p, &c).await.unwrap();
    assert_eq!(
        guard.rate_limit().unwrap(),
        Some(RateLimit {
            pps: 50_000,
            burst: 5_000
        })
    );

    p.insert("address".into(), ParamValue::Str(tx_v4(9).to_string()));
    action.run(&p, &c).await.unwrap();
    assert_eq!(
        guard
            .set_source_limit(
                tx_v4(9),
                Some(RateLimit {
                    pps: 1_000,
                    burst: 50
                })
            )
            .unwrap(),
        Some(RateLimit {
            pps: 1_000,
            burst: 50
        })
    );
    action.rollback(&p, &c).await.unwrap();
    assert_eq!(guard.set_source_limit(tx_v4(9), None).unwrap(), None);

    for (pps, burst) in [(200_000_000, 1), (10, 0)] {
        let mut bad = Params::new();
        bad.insert("pps".into(), ParamValue::Int(pps));
        bad.insert("burst".into(), ParamValue::Int(burst));
        assert!(action.run(&bad, &c).await.is_err());
    }
    assert!(
        action.run(&Params::new(), &c).await.is_err(),
        "pps is required"
    );
}

#[tokio::test]
async fn the_sensor_reports_rates_and_busiest_sources() {
    require_lab!();
    let lab = Lab::new("s");
    let guard = attach(&lab, |b| b.rate_limit(RateLimit::new(1_000, 10).unwrap()));
    let _rx = lab.receiver(IpAddr::V4(RX_V4));
    let sensor = XdpSensor::new(vec![guard.clone()]);
    let first = sensor.read(&Policy::default()).await.unwrap();
    assert!(
        first.metrics.iter().all(|(n, _)| !n.ends_with("_per_s")),
        "no rate on the first read"
    );

    lab::send(&lab.sender(tx_v4(2)), to_v4(), 4_000, PAYLOAD, 20_000);
    let r = sensor.read(&Policy::default()).await.unwrap();
    let get = |name: String| {
        r.metrics
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} missing from {:?}", r.metrics))
    };
    assert!(get(format!("xdp.{RX_IF}.packets_per_s")) > 0.0);
    assert!(get(format!("xdp.{RX_IF}.rate_dropped_per_s")) > 0.0);
    assert!(get(format!("xdp.source.{}.packets_per_s", tx_v4(2))) > 0.0);
    assert!(get(format!("xdp.source.{}.dropped_per_s", tx_v4(2))) > 0.0);
    // The sender's own IPv6 control traffic (router solicitation, MLD reports from its
    // link-local address as the link comes up) may be tracked as a second source.
    let sources = get(format!("xdp.{RX_IF}.sources"));
    assert!((1.0..=3.0).contains(&sources), "{sources} sources");
    assert!(get(format!("xdp.{RX_IF}.dropped_total")) >= 3_000.0);
}

#[test]
fn failures_are_typed() {
    require_lab!();
    let lab = Lab::new("e");

    let missing = lab.in_a(|| XdpGuard::attach("nope0"));
    assert!(
        matches!(missing, Err(Error::NoSuchInterface(ref n)) if n == "nope0"),
        "{missing:?}"
    );

    // A full block map.
    let guard = attach(&lab, |b| b.max_blocked(2));
    guard.block(tx_v4(2)).unwrap();
    guard.block(tx_v4(3)).unwrap();
    assert!(!guard.block(tx_v4(3)).unwrap(), "already blocked");
    let full = guard.block(tx_v4(4));
    assert!(
        matches!(
            full,
            Err(Error::MapFull {
                map: "blocked",
                capacity: 2
            })
        ),
        "{full:?}"
    );
    drop(guard);

    // A program the verifier refuses: it reads the packet without a bounds check.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bad.c");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
         SEC(\"xdp\") int x0tta_guard(struct xdp_md *ctx) {\n\
           unsigned char *p = (void *)(long)ctx->data; return p[100] ? XDP_DROP : XDP_PASS; }\n\
         char LICENSE[] SEC(\"license\") = \"GPL\";\n",
    )
    .unwrap();
    let obj = dir.path().join("bad.o");
    let status = std::process::Command::new("clang")
        .args([
            "-target",
            "bpf",
            "-O2",
            "-g",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap();
    assert!(status.success());
    let elf = std::fs::read(&obj).unwrap();
    let refused = lab.in_a(|| XdpGuard::builder(RX_IF).object(&elf).attach());
    match refused {
        Err(Error::Verifier { log, .. }) => {
            assert!(log.contains("invalid access to packet"), "{log}")
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
    let garbage = lab.in_a(|| XdpGuard::builder(RX_IF).object(b"not an ELF file").attach());
    assert!(matches!(garbage, Err(Error::Object(_))), "{garbage:?}");

    // Without privileges: this thread drops every effective capability first.
    let denied = lab.in_a(|| {
        let mut caps = rustix::thread::capabilities(None).unwrap();
        caps.effective = rustix::thread::CapabilitySet::empty();
        rustix::thread::set_capabilities(None, caps).unwrap();
        XdpGuard::attach(RX_IF)
    });
    assert!(
        matches!(denied, Err(Error::PermissionDenied { .. })),
        "{denied:?}"
    );
    let text = denied.unwrap_err().to_string();
    assert!(text.contains("CAP_BPF"), "{text}");
}

#[test]
fn auto_mode_falls_back_to_generic_where_the_driver_has_no_xdp() {
    require_lab!();
    let lab = Lab::new("g");
    // Loopback has no driver-mode XDP.
    let g = lab.in_a(|| XdpGuard::attach("lo")).unwrap();
    assert_eq!(g.mode(), AttachMode::Generic);
    drop(g);
    let driver_only = lab.in_a(|| {
        XdpGuard::builder("lo")
            .mode(x0tta_ebpf::ModeRequest::Driver)
            .attach()
    });
    assert!(
        matches!(driver_only, Err(Error::Attach { .. })),
        "{driver_only:?}"
    );
    let generic = lab.in_a(|| {
        XdpGuard::builder(RX_IF)
            .mode(x0tta_ebpf::ModeRequest::Generic)
            .attach()
    });
    assert_eq!(generic.unwrap().mode(), AttachMode::Generic);
}
