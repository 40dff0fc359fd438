//! Time from the end of the voting period to finality (every honest node holding the tally
//! that more than 2/3 of the stake attested) on 100 simulated nodes, 33 of them Byzantine,
//! beside the time one gossip message takes to reach every node of the same network (the
//! baseline: finality should be bounded by gossip, not minutes).
//!
//! `cargo bench -p x0tta-dao --bench finality` runs 100 nodes, three seeds; without `--bench`
//! (as cargo test would) it runs 31 nodes once. Closing waits for the policy's clock-skew
//! tolerance (100 ms here) after the deadline, so that much of the figure is by design.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/scenario.rs"]
mod scenario;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (nodes, seeds): (usize, &[u64]) = if quick { (31, &[1]) } else { (100, &[1, 2]) };
    let byzantine = (nodes - 1) / 3;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "finality bench: {nodes} simulated nodes ({byzantine} Byzantine), latency 5 ms + jitter 0-2 ms, degree 8"
    );
    // The default node queue (1,024 frames) drops part of a 100-node vote burst; a large one
    // shows what the protocol itself takes when gossip loses nothing.
    let queues: &[usize] = if quick { &[8192] } else { &[1024, 8192] };
    for queue in queues {
        for seed in seeds {
            let mut s = scenario::Scenario::new(nodes, byzantine, *seed);
            s.queue = *queue;
            // 100 nodes verify 10,000 votes on 2 cores: a voting period long enough that every
            // vote is processed inside it (processing later than the deadline + skew refuses
            // it, as a late vote).
            s.dao.voting = std::time::Duration::from_millis(if quick { 1500 } else { 6000 });
            let skew = s.dao.clock_skew;
            let r = rt.block_on(s.run());
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            let fin = match r.finality {
                Some(f) => format!(
                    "{:>7.1} ms (after the {:.0} ms skew tolerance: {:>6.1} ms; {:.1}x the flood)",
                    ms(f),
                    ms(skew),
                    ms(f.saturating_sub(skew)),
                    ms(f.saturating_sub(skew)) / ms(r.flood).max(1e-9)
                ),
                None => "not within 30 s".into(),
            };
            println!(
                "queue {queue} seed {seed}: deadline -> final everywhere {fin}; baseline flood to all {:>5.1} ms; \
                 dropped frames {}; agree={} forged_accepted={} short_of_votes={} slashed={}/{} liars caught={}/{} applied={}/{}",
                ms(r.flood),
                r.dropped,
                r.agree,
                r.forged_accepted,
                r.short_of_votes,
                r.slashed,
                r.equivocators,
                r.false_attesters_caught,
                r.false_attesters,
                r.applied,
                r.honest,
            );
        }
    }
}
