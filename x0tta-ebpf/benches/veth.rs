//! What the XDP guard costs and what it withstands, on a veth pair between two network
//! namespaces (needs root, clang and iproute2; prints SKIPPED otherwise):
//! - packets per second reaching the far side's IP stack with no program, with the guard
//!   attached (counting, no limit), and with the guard enforcing a limit that never bites;
//!   interleaved rounds, medians, and the ratio to "no program" from the same run;
//! - the drop rate it sustains when flooded: blocked sources, and a rate-limited flood.
//!
//! `cargo bench -p x0tta-ebpf --bench veth` (X0TTA_BENCH_SECS sets each flood's length, 2 s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::net::IpAddr;

use lab::{Lab, RX_IF, tx_v4};
use x0tta_ebpf::{RateLimit, XdpGuard};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (offered pps, far-side pps) of one flood.
fn run(lab: &Lab, sources: &[IpAddr], secs: f64) -> (f64, f64) {
    let before = lab::ip_in_receives(lab);
    let sent = lab::flood(lab, sources, secs);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after = lab::ip_in_receives(lab);
    (sent as f64 / secs, (after - before) as f64 / secs)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(why) = lab::missing() {
        eprintln!("\n*** SKIPPED veth benchmark: needs {why} ***\n");
        return;
    }
    let secs: f64 = std::env::var("X0TTA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let lab = Lab::new("b");
    let _sink = lab.receiver(IpAddr::V4(lab::RX_V4));
    let senders = [tx_v4(2), tx_v4(3)];
    let attach = |limit: Option<RateLimit>| {
        lab.in_a(|| {
            let mut b = XdpGuard::builder(RX_IF);
            if let Some(l) = limit {
                b = b.rate_limit(l);
            }
            b.attach().expect("attach")
        })
    };

    // The cheapest XDP program there is, attached the same way: it separates what driver-mode
    // XDP on a veth costs by itself (the NAPI path it switches to) from what the guard adds.
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("pass.o");
    std::fs::write(
        dir.path().join("pass.c"),
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
         SEC(\"xdp\") int pass(struct xdp_md *ctx) { return XDP_PASS; }\n\
         char LICENSE[] SEC(\"license\") = \"GPL\";\n",
    )
    .expect("write pass.c");
    let built = std::process::Command::new("clang")
        .args([
            "-target",
            "bpf",
            "-O2",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(dir.path().join("pass.c"))
        .arg("-o")
        .arg(&pass)
        .status()
        .expect("clang");
    assert!(built.success());
    let pass = pass.to_str().expect("utf-8 path").to_string();
    let ip_a = |args: &[&str]| {
        let ok = std::process::Command::new("ip")
            .args(["-n", &lab.a])
            .args(args)
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip {args:?}");
    };

    let (mut none, mut counting, mut limiting) = (Vec::new(), Vec::new(), Vec::new());
    let mut passing = Vec::new();
    let mut offered = Vec::new();
    let mut mode = None;
    for _ in 0..3 {
        let (o, far) = run(&lab, &senders, secs);
        none.push(far);
        offered.push(o);
        ip_a(&[
            "link", "set", "dev", RX_IF, "xdpdrv", "obj", &pass, "sec", "xdp",
        ]);
        passing.push(run(&lab, &senders, secs).1);
        ip_a(&["link", "set", "dev", RX_IF, "xdpdrv", "off"]);
        let g = attach(None);
        mode = Some(g.mode());
        counting.push(run(&lab, &senders, secs).1);
        drop(g);
        let g = attach(Some(
            RateLimit::new(x0tta_ebpf::MAX_RATE_PPS, x0tta_ebpf::MAX_BURST).unwrap(),
        ));
        limiting.push(run(&lab, &senders, secs).1);
        drop(g);
    }
    let (none, counting, limiting) = (median(none), median(counting), median(limiting));
    let passing = median(passing);
    println!(
        "veth throughput, 64-byte UDP, 2 senders, {secs} s floods, median of 3 interleaved rounds"
    );
    println!(
        "  offered by the senders        {:>12.0} pps",
        median(offered)
    );
    println!("  far side, no program          {none:>12.0} pps  1.000");
    println!(
        "  far side, XDP_PASS only       {passing:>12.0} pps  {:.3}",
        passing / none
    );
    println!(
        "  far side, guard counting      {counting:>12.0} pps  {:.3}",
        counting / none
    );
    println!(
        "  far side, guard with a limit  {limiting:>12.0} pps  {:.3}",
        limiting / none
    );

    // Flooded: every sender blocked.
    let g = attach(None);
    for s in senders {
        g.block(s).unwrap();
    }
    let t0 = g.totals().unwrap();
    let (o, far) = run(&lab, &senders, secs);
    let t1 = g.totals().unwrap();
    let blocked_drop = (t1.blocked_dropped - t0.blocked_dropped) as f64 / secs;
    println!(
        "blocked flood: offered {o:.0} pps, dropped in XDP {blocked_drop:.0} pps ({:.3} of offered), far side {far:.0} pps",
        blocked_drop / o
    );
    drop(g);

    // Flooded: a 10,000 pps limit per source.
    let g = attach(Some(RateLimit::new(10_000, 1_000).unwrap()));
    let t0 = g.totals().unwrap();
    let (o, far) = run(&lab, &senders, secs);
    let t1 = g.totals().unwrap();
    let dropped = (t1.rate_dropped - t0.rate_dropped) as f64 / secs;
    println!(
        "rate-limited flood (10,000 pps per source, 2 sources): offered {o:.0} pps, dropped {dropped:.0} pps, far side {far:.0} pps"
    );
    println!(
        "summary: bench=xdp_veth mode={} none_pps={none:.0} pass_ratio={:.3} counting_ratio={:.3} limiting_ratio={:.3} counting_vs_pass={:.3} blocked_drop_pps={blocked_drop:.0} limited_drop_pps={dropped:.0}",
        mode.map(|m| m.to_string()).unwrap_or_default(),
        passing / none,
        counting / none,
        limiting / none,
        counting / passing,
    );
}
