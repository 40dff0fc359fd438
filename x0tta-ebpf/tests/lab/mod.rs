//! A two-namespace lab for XDP tests and benchmarks: namespace `a` holds `veth-rx`
//! (10.77.0.1, fd77::1), where the guard attaches; namespace `b` holds its peer `veth-tx`
//! with the senders' addresses (10.77.0.2-9, fd77::2-5). Neighbour entries are permanent, so
//! no ARP or neighbour discovery crosses the link, and only the packets a test sends are
//! counted. Both namespaces are removed on drop.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const RX_IF: &str = "veth-rx";
pub const RX_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const RX_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
pub const PORT: u16 = 7700;
const MAC_A: &str = "02:77:00:00:00:01";
const MAC_B: &str = "02:77:00:00:00:02";

/// Sender address `i` (2..=9) in namespace b.
pub fn tx_v4(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, i))
}
/// Sender address `i` (2..=5) in namespace b.
pub fn tx_v6(i: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, i))
}

/// Why these tests cannot run here, if they cannot. With `X0TTA_EBPF_REQUIRE=1` (CI) a
/// missing prerequisite fails the test instead.
pub fn missing() -> Option<String> {
    let mut why = Vec::new();
    if !x0tta_ebpf::program_built() {
        why.push(format!("the XDP program ({})", x0tta_ebpf::build_note()));
    }
    if !rustix::process::geteuid().is_root() {
        why.push("root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces)".into());
    }
    if !Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        why.push("iproute2's `ip`".into());
    }
    if why.is_empty() {
        return None;
    }
    let why = why.join(", ");
    if std::env::var("X0TTA_EBPF_REQUIRE").is_ok_and(|v| v == "1") {
        panic!("X0TTA_EBPF_REQUIRE=1 but missing: {why}");
    }
    Some(why)
}

/// Skips the calling test loudly when [`missing`] says so.
#[macro_export]
macro_rules! require_lab {
    () => {
        if let Some(why) = lab::missing() {
            eprintln!("\n*** SKIPPED {}: needs {why} ***\n", module_path!());
            return;
        }
    };
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Lab {
    pub a: String,
    pub b: String,
}

impl Lab {
    /// Builds the namespaces; `tag` keeps concurrent tests apart.
    pub fn new(tag: &str) -> Self {
        let base = format!("x0e{}{tag}", std::process::id());
        let lab = Self {
            a: format!("{base}a"),
            b: format!("{base}b"),
        };
        let (a, b) = (lab.a.as_str(), lab.b.as_str());
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        ip(&[
            "-n", a, "link", "add", RX_IF, "type", "veth", "peer", "name", "veth-tx", "netns", b,
        ]);
        ip(&["-n", a, "link", "set", RX_IF, "address", MAC_A]);
        ip(&["-n", b, "link", "set", "veth-tx", "address", MAC_B]);
        ip(&["-n", a, "addr", "add", "10.77.0.1/24", "dev", RX_IF]);
        ip(&["-n", a, "addr", "add", "fd77::1/64", "dev", RX_IF, "nodad"]);
        for i in 2..=9 {
            ip(&[
                "-n",
                b,
                "addr",
                "add",
                &format!("10.77.0.{i}/24"),
                "dev",
                "veth-tx",
            ]);
            ip(&[
                "-n",
                a,
                "neigh",
                "replace",
                &format!("10.77.0.{i}"),
                "lladdr",
                MAC_B,
                "dev",
                RX_IF,
                "nud",
                "permanent",
            ]);
        }
        for i in 2..=5 {
            ip(&[
                "-n",
                b,
                "addr",
                "add",
                &format!("fd77::{i}/64"),
                "dev",
                "veth-tx",
                "nodad",
            ]);
            ip(&[
                "-n",
                a,
                "-6",
                "neigh",
                "replace",
                &format!("fd77::{i}"),
                "lladdr",
                MAC_B,
                "dev",
                RX_IF,
                "nud",
                "permanent",
            ]);
        }
        ip(&[
            "-n",
            b,
            "neigh",
            "replace",
            "10.77.0.1",
            "lladdr",
            MAC_A,
            "dev",
            "veth-tx",
            "nud",
            "permanent",
        ]);
        ip(&[
            "-n",
            b,
            "-6",
            "neigh",
            "replace",
            "fd77::1",
            "lladdr",
            MAC_A,
            "dev",
            "veth-tx",
            "nud",
            "permanent",
        ]);
        for (ns, dev) in [(a, RX_IF), (b, "veth-tx")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    /// Runs `f` on a thread inside namespace a (sockets it opens and interfaces it names
    /// belong to a).
    pub fn in_a<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_ns(&self.a, f)
    }

    /// Runs `f` on a thread inside namespace b.
    pub fn in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_ns(&self.b, f)
    }

    /// A receiver in a on `PORT` of `addr`, counting datagrams on its own thread.
    pub fn receiver(&self, addr: IpAddr) -> Receiver {
        let socket = self.in_a(|| UdpSocket::bind(SocketAddr::new(addr, PORT)).expect("bind"));
        Receiver::start(socket)
    }

    /// A sender in b bound to `from`.
    pub fn sender(&self, from: IpAddr) -> UdpSocket {
        self.in_b(|| UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind sender"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// Counts datagrams arriving on a socket.
pub struct Receiver {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(socket: UdpSocket) -> Self {
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            count,
            stop,
            thread: Some(thread),
        }
    }

    /// Datagrams so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until no datagram has arrived for 200 ms, then returns the count.
    pub fn settle(&self) -> u64 {
        let mut last = self.count();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.count();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
        last
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `n` datagrams of `payload` bytes to `to`, paced at `pps` (0: as fast as possible).
/// Returns the time from the first send to the last.
pub fn send(socket: &UdpSocket, to: SocketAddr, n: u64, payload: usize, pps: u64) -> Duration {
    let buf = vec![0x5a_u8; payload];
    let start = Instant::now();
    let gap = Duration::from_nanos(1_000_000_000_u64.checked_div(pps).unwrap_or(0));
    let mut next = start;
    for _ in 0..n {
        if pps > 0 {
            while Instant::now() < next {
                std::hint::spin_loop();
            }
            next += gap;
        }
        // A full socket buffer (ENOBUFS) is retried: the test must send exactly n.
        while socket.send_to(&buf, to).is_err() {
            std::thread::yield_now();
        }
    }
    start.elapsed()
}

/// Bytes of one frame carrying a UDP datagram of `payload` bytes from `addr`'s family.
pub fn frame_len(addr: IpAddr, payload: usize) -> u64 {
    let ip = if addr.is_ipv4() { 20 } else { 40 };
    (14 + ip + 8 + payload) as u64
}

/// `Ip: InReceives` of namespace a: IPv4 packets that reached its stack (past XDP).
pub fn ip_in_receives(lab: &Lab) -> u64 {
    lab.in_a(|| {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp");
        let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (lines.next().expect("header"), lines.next().expect("values"));
        let at = names
            .split_whitespace()
            .position(|n| n == "InReceives")
            .expect("InReceives");
        values
            .split_whitespace()
            .nth(at)
            .and_then(|v| v.parse().ok())
            .expect("a count")
    })
}

/// Sends 64-byte UDP datagrams from each of `sources` (one thread each) to a's `PORT` as fast
/// as they go for `secs`; returns how many were sent.
pub fn flood(lab: &Lab, sources: &[IpAddr], secs: f64) -> u64 {
    let sockets: Vec<UdpSocket> = sources.iter().map(|s| lab.sender(*s)).collect();
    let to = SocketAddr::new(IpAddr::V4(RX_V4), PORT);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        let handles: Vec<_> = sockets
            .iter()
            .map(|sock| {
                s.spawn(move || {
                    let buf = [0x5a_u8; 64];
                    let mut sent = 0u64;
                    while Instant::now() < until {
                        for _ in 0..64 {
                            if sock.send_to(&buf, to).is_ok() {
                                sent += 1;
                            }
                        }
                    }
                    sent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("sender")).sum()
    })
}

/// Sends one small UDP packet from each of `sources` (any IPv4 addresses: a raw socket
/// writes the header) to a's `PORT`, from namespace b. Returns how many were sent.
pub fn spoof(lab: &Lab, sources: impl Iterator<Item = Ipv4Addr> + Send) -> u64 {
    use rustix::net::{AddressFamily, SendFlags, SocketAddrV4, SocketType, ipproto};
    lab.in_b(|| {
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::RAW, Some(ipproto::RAW))
            .expect("raw socket");
        let to = SocketAddrV4::new(RX_V4, 0);
        let mut sent = 0;
        for src in sources {
            let mut p = [0u8; 36];
            // IPv4 header; the kernel fills in the total length, id and checksum.
            p[0] = 0x45;
            p[8] = 64;
            p[9] = 17;
            p[12..16].copy_from_slice(&src.octets());
            p[16..20].copy_from_slice(&RX_V4.octets());
            // UDP header (no checksum) and 8 bytes of payload.
            p[20..22].copy_from_slice(&40000u16.to_be_bytes());
            p[22..24].copy_from_slice(&PORT.to_be_bytes());
            p[24..26].copy_from_slice(&16u16.to_be_bytes());
            while rustix::net::sendto(&fd, &p, SendFlags::empty(), &to).is_err() {
                std::thread::yield_now();
            }
            sent += 1;
        }
        sent
    })
}
