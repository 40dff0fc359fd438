//! Attaches the XDP guard to an interface and prints what it sees once a second.
//!
//! ```text
//! sudo cargo run -p x0tta-ebpf --example xdp_watch -- IFACE [--secs N] [--rate PPS] [--block ADDR]...
//! ```
//! Exits 2 on bad arguments and 1 when the guard cannot attach (the error says why: no
//! privilege, no such interface, a build without clang, a verifier refusal).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use x0tta_ebpf::{RateLimit, XdpGuard};

struct Args {
    interface: String,
    secs: u64,
    rate: Option<u64>,
    block: Vec<IpAddr>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let interface = it
        .next()
        .ok_or("usage: xdp_watch IFACE [--secs N] [--rate PPS] [--block ADDR]...")?;
    let mut a = Args {
        interface,
        secs: 10,
        rate: None,
        block: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secs" => a.secs = value.parse().map_err(|e| format!("--secs {value}: {e}"))?,
            "--rate" => a.rate = Some(value.parse().map_err(|e| format!("--rate {value}: {e}"))?),
            "--block" => a
                .block
                .push(value.parse().map_err(|e| format!("--block {value}: {e}"))?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = XdpGuard::builder(&args.interface);
    if let Some(pps) = args.rate {
        match RateLimit::new(pps, (pps / 10).max(1)) {
            Ok(l) => builder = builder.rate_limit(l),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    let guard = match builder.attach() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    println!("attached to {} in {} mode", guard.interface(), guard.mode());
    for ip in &args.block {
        if let Err(e) = guard.block(*ip) {
            eprintln!("error: blocking {ip}: {e}");
            return ExitCode::from(1);
        }
    }
    for _ in 0..args.secs {
        std::thread::sleep(Duration::from_secs(1));
        let (Ok(t), Ok(mut sources)) = (guard.totals(), guard.sources()) else {
            eprintln!("error: reading the maps failed");
            return ExitCode::from(1);
        };
        sources.sort_by_key(|s| std::cmp::Reverse(s.packets));
        println!(
            "passed {} ({} B), rate-dropped {}, blocked-dropped {}, sources {}",
            t.passed,
            t.passed_bytes,
            t.rate_dropped,
            t.blocked_dropped,
            sources.len()
        );
        for s in sources.iter().take(5) {
            println!(
                "  {:<40} {:>10} pkts {:>12} B {:>10} dropped",
                s.addr,
                s.packets,
                s.bytes,
                s.rate_dropped + s.blocked_dropped
            );
        }
    }
    ExitCode::SUCCESS
}
