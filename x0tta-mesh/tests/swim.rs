//! The SWIM detector on a tiny deterministic network: detection, indirect probes through
//! lossy links, refutation, connection loss, clock offsets, RTT, partitions, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use x0tta_core::{MeshEvent, NodeId, PeerState};
use x0tta_mesh::swim::{Swim, SwimConfig, SwimMessage, SwimOutput};

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// Nodes exchanging messages with a fixed one-way latency; links can drop everything.
struct Net {
    t0: Instant,
    now: Duration,
    latency: Duration,
    nodes: BTreeMap<NodeId, Swim>,
    dead: HashSet<NodeId>,
    cut: HashSet<(NodeId, NodeId)>,
    skew_ms: HashMap<NodeId, i64>,
    queue: Vec<(Duration, NodeId, NodeId, SwimMessage)>,
    events: Vec<(Duration, NodeId, MeshEvent)>,
}

impl Net {
    fn new(names: &[&str], config: &SwimConfig) -> Self {
        let t0 = Instant::now();
        let mut nodes = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            nodes.insert(id(n), Swim::new(id(n), config.clone(), i as u64 + 1));
        }
        let mut net = Self {
            t0,
            now: Duration::ZERO,
            latency: Duration::from_millis(5),
            nodes,
            dead: HashSet::new(),
            cut: HashSet::new(),
            skew_ms: HashMap::new(),
            queue: Vec::new(),
            events: Vec::new(),
        };
        let ids: Vec<NodeId> = net.nodes.keys().cloned().collect();
        for a in &ids {
            for b in &ids {
                if a != b {
                    net.nodes.get_mut(a).unwrap().add_peer(b.clone(), t0);
                }
            }
        }
        net.drain();
        net.events.clear();
        net
    }

    fn wall(&self, node: &NodeId) -> i64 {
        1_700_000_000_000
            + self.now.as_millis() as i64
            + self.skew_ms.get(node).copied().unwrap_or(0)
    }

    fn cut_link(&mut self, a: &str, b: &str) {
        self.cut.insert((id(a), id(b)));
        self.cut.insert((id(b), id(a)));
    }

    fn drain(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().cloned().collect();
        for n in ids {
            while let Some(out) = self.nodes.get_mut(&n).unwrap().poll_output() {
                match out {
                    SwimOutput::Send { to, msg } => {
                        if !self.dead.contains(&n) && !self.cut.contains(&(n.clone(), to.clone())) {
                            self.queue
                                .push((self.now + self.latency, n.clone(), to, msg));
                        }
                    }
                    SwimOutput::Event(e) => self.events.push((self.now, n.clone(), e)),
                }
            }
        }
    }

    /// Runs for `d` in 1 ms steps.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(1);
            let now = self.t0 + self.now;
            let (due, rest): (Vec<_>, Vec<_>) =
                self.queue.drain(..).partition(|(at, ..)| *at <= self.now);
            self.queue = rest;
            for (_, from, to, msg) in due {
                if self.dead.contains(&to) {
                    continue;
                }
                let wall = self.wall(&to);
                // Messages cross the wire encoded.
                let msg = SwimMessage::decode(&msg.encode()).unwrap();
                self.nodes
                    .get_mut(&to)
                    .unwrap()
                    .on_message(from, msg, now, wall);
            }
            let ids: Vec<NodeId> = self.nodes.keys().cloned().collect();
            for n in ids {
                if !self.dead.contains(&n) {
                    let wall = self.wall(&n);
                    self.nodes.get_mut(&n).unwrap().tick(now, wall);
                }
            }
            self.drain();
        }
    }

    fn downs_of(&self, peer: &str) -> Vec<(Duration, NodeId)> {
        self.events
            .iter()
            .filter(|(_, _, e)| *e == MeshEvent::PeerDown(id(peer)))
            .map(|(t, by, _)| (*t, by.clone()))
            .collect()
    }
}

fn config() -> SwimConfig {
    SwimConfig {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(100),
        indirect_probes: 3,
        suspect_timeout: Duration::from_millis(800),
    }
}

#[test]
fn a_crashed_peer_is_detected_by_everyone_and_nobody_else_is_down() {
    let names = ["a", "b", "c", "d", "e"];
    let mut net = Net::new(&names, &config());
    net.run(Duration::from_secs(2));
    assert!(net.events.is_empty(), "{:?}", net.events);
    net.dead.insert(id("e"));
    let crashed = net.now;
    net.run(Duration::from_secs(5));
    let downs = net.downs_of("e");
    let detectors: HashSet<NodeId> = downs.iter().map(|(_, by)| by.clone()).collect();
    assert_eq!(detectors.len(), 4, "{downs:?}");
    let worst = downs.iter().map(|(t, _)| *t - crashed).max().unwrap();
    // Round robin over 4 peers at 200 ms, a 200 ms period, then 800 ms of suspicion.
    assert!(
        worst <= Duration::from_millis(4 * 200 + 200 + 800 + 50),
        "{worst:?}"
    );
    println!(
        "swim: 5 nodes, crash detected by all in {} ms",
        worst.as_millis()
    );
    for n in ["a", "b", "c", "d"] {
        assert!(net.downs_of(n).is_empty(), "false PeerDown for {n}");
    }
}

#[test]
fn indirect_probes_keep_a_peer_behind_a_broken_link_up() {
    let mut net = Net::new(&["a", "b", "c", "d"], &config());
    net.cut_link("a", "b");
    net.run(Duration::from_secs(10));
    assert!(net.downs_of("b").is_empty(), "{:?}", net.events);
    assert!(net.downs_of("a").is_empty(), "{:?}", net.events);
    assert_eq!(net.nodes[&id("a")].state(&id("b")), Some(PeerState::Up));
}

#[test]
fn a_suspect_that_answers_comes_back_without_a_down() {
    let mut net = Net::new(&["a", "b", "c"], &config());
    // b is silent for 300 ms: long enough to be suspected, not to be declared down.
    net.dead.insert(id("b"));
    net.run(Duration::from_millis(700));
    net.dead.remove(&id("b"));
    net.run(Duration::from_secs(3));
    let suspected = net
        .events
        .iter()
        .any(|(_, _, e)| *e == MeshEvent::PeerSuspect(id("b")));
    assert!(suspected, "{:?}", net.events);
    assert!(net.downs_of("b").is_empty(), "{:?}", net.events);
    assert_eq!(net.nodes[&id("a")].state(&id("b")), Some(PeerState::Up));
}

#[test]
fn connection_loss_is_refuted_through_others_or_confirmed() {
    let mut net = Net::new(&["a", "b", "c", "d"], &config());
    // A closed connection to a live peer: others vouch for it.
    let now = net.t0 + net.now;
    net.nodes
        .get_mut(&id("a"))
        .unwrap()
        .connection_lost(&id("b"), now);
    net.drain();
    net.run(Duration::from_secs(2));
    assert!(net.downs_of("b").is_empty());
    assert_eq!(net.nodes[&id("a")].state(&id("b")), Some(PeerState::Up));
    // A closed connection to a dead peer: down after one suspect timeout.
    net.dead.insert(id("d"));
    let lost = net.now;
    let now = net.t0 + net.now;
    net.nodes
        .get_mut(&id("a"))
        .unwrap()
        .connection_lost(&id("d"), now);
    net.drain();
    net.run(Duration::from_secs(2));
    let (at, _) = net
        .downs_of("d")
        .into_iter()
        .find(|(_, by)| *by == id("a"))
        .unwrap();
    assert!(at - lost <= Duration::from_millis(820), "{:?}", at - lost);
}

#[test]
fn rtt_and_clock_offset_are_measured() {
    let mut net = Net::new(&["a", "b"], &config());
    net.skew_ms.insert(id("b"), 1500);
    net.run(Duration::from_secs(3));
    let n = net.nodes[&id("a")].neighbours();
    let b = n.iter().find(|x| x.id == id("b")).unwrap();
    let rtt = b.rtt_ms.unwrap();
    assert!((9.0..=12.0).contains(&rtt), "rtt {rtt}");
    let off = b.clock_offset_ms.unwrap();
    assert!((1495..=1505).contains(&off), "offset {off}");
    assert_eq!(b.loss, 0.0);
    assert_eq!(b.state, PeerState::Up);
}

#[test]
fn losing_most_peers_reports_a_partition_and_its_healing() {
    let mut net = Net::new(&["a", "b", "c", "d", "e"], &config());
    for x in ["c", "d", "e"] {
        net.cut_link("a", x);
        net.cut_link("b", x);
    }
    net.run(Duration::from_secs(5));
    let a_events: Vec<&MeshEvent> = net
        .events
        .iter()
        .filter(|(_, by, _)| *by == id("a"))
        .map(|(_, _, e)| e)
        .collect();
    assert!(
        a_events.contains(&&MeshEvent::Partitioned { reachable: 1 }),
        "{a_events:?}"
    );
    net.cut.clear();
    // Down peers are not probed; the transport's redial brings them back (add_peer).
    let now = net.t0 + net.now;
    for x in ["c", "d", "e"] {
        net.nodes.get_mut(&id("a")).unwrap().add_peer(id(x), now);
    }
    net.drain();
    net.run(Duration::from_secs(1));
    let healed = net
        .events
        .iter()
        .any(|(_, by, e)| *by == id("a") && *e == MeshEvent::Healed);
    assert!(healed);
}

#[test]
fn five_percent_loss_for_a_simulated_ten_minutes_downs_no_one() {
    // Deterministic 5% loss: drop every 20th message on the wire.
    let names = ["a", "b", "c", "d", "e", "f"];
    let mut net = Net::new(&names, &config());
    let mut counter = 0u64;
    let end = net.now + Duration::from_secs(600);
    while net.now < end {
        net.run(Duration::from_millis(10));
        net.queue.retain(|_| {
            counter += 1;
            !counter.is_multiple_of(20)
        });
    }
    let downs: Vec<_> = net
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, MeshEvent::PeerDown(_)))
        .collect();
    assert!(downs.is_empty(), "{downs:?}");
}

proptest! {
    #[test]
    fn swim_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = SwimMessage::decode(&bytes);
    }
}

#[test]
fn a_starved_node_does_not_turn_its_own_lateness_into_down_verdicts() {
    let mut net = Net::new(&["a", "b", "c"], &config());
    net.run(Duration::from_secs(1));
    // b goes silent for 300 ms (a is suspecting it), then a itself is frozen for 3 s — far
    // beyond the suspicion timeout — while b has come back. Without local health, a's first
    // tick after the freeze would declare b down on stale evidence.
    net.dead.insert(id("b"));
    net.run(Duration::from_millis(700));
    net.dead.remove(&id("b"));
    net.dead.insert(id("a"));
    net.run(Duration::from_secs(3));
    net.dead.remove(&id("a"));
    net.run(Duration::from_secs(3));
    let a_downs: Vec<_> = net
        .events
        .iter()
        .filter(|(_, by, e)| *by == id("a") && matches!(e, MeshEvent::PeerDown(_)))
        .collect();
    let a_all: Vec<_> = net
        .events
        .iter()
        .filter(|(_, by, _)| *by == id("a"))
        .collect();
    assert!(a_downs.is_empty(), "{a_all:?}");
    assert_eq!(net.nodes[&id("a")].state(&id("b")), Some(PeerState::Up));
    assert!(net.nodes[&id("a")].local_health() <= 1);
}
