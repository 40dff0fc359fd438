//! [`XdpGuard`]: the XDP program loaded, attached to one interface, and its maps.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};

use crate::error::{Error, is_permission};

/// The program's map key: family (4 or 6, native order), then the address.
type RawKey = [u8; 20];
/// `struct src_stats`: packets, bytes, rate_dropped, blocked_dropped, tokens, last_ns.
type RawStats = [u64; 6];
/// `struct limit`: pps, burst.
type RawLimit = [u64; 2];
/// `struct totals`: passed, passed_bytes, rate_dropped, blocked_dropped, not_ip, table_full.
type RawTotals = [u64; 6];

const PROGRAM: &str = "x0tta_guard";
const SOURCES: &str = "sources";
const LIMITS: &str = "limits";
const CONFIG: &str = "config";
const BLOCKED: &str = "blocked";
const TOTALS: &str = "totals";

/// The most packets per second a limit may allow (the program's arithmetic stays exact below).
pub const MAX_RATE_PPS: u64 = 100_000_000;
/// The largest burst a limit may allow, in packets.
pub const MAX_BURST: u64 = 10_000_000;

/// The object `build.rs` compiled, 8-byte aligned as the ELF parser needs.
#[cfg(x0tta_xdp_object)]
static BUILT: &[u8] = aya::include_bytes_aligned!(env!("X0TTA_XDP_OBJECT"));

/// Whether this build carries the XDP program (clang was present when it was compiled).
///
/// ```
/// if !x0tta_ebpf::program_built() {
///     eprintln!("{}", x0tta_ebpf::build_note());
/// }
/// ```
pub fn program_built() -> bool {
    cfg!(x0tta_xdp_object)
}

/// Why the program is missing from this build, or `"built"`.
pub fn build_note() -> &'static str {
    #[cfg(x0tta_xdp_object)]
    {
        "built"
    }
    #[cfg(not(x0tta_xdp_object))]
    {
        env!("X0TTA_XDP_MISSING")
    }
}

/// A token bucket: `pps` packets per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Packets per second (1..=[`MAX_RATE_PPS`]).
    pub pps: u64,
    /// Bucket size, packets (1..=[`MAX_BURST`]).
    pub burst: u64,
}

impl RateLimit {
    /// A limit, checked.
    ///
    /// ```
    /// use x0tta_ebpf::RateLimit;
    /// assert!(RateLimit::new(10_000, 500).is_ok());
    /// assert!(RateLimit::new(0, 500).is_err());
    /// ```
    pub fn new(pps: u64, burst: u64) -> Result<Self, Error> {
        if pps == 0 || pps > MAX_RATE_PPS {
            return Err(Error::InvalidLimit(format!(
                "pps {pps} is outside 1..={MAX_RATE_PPS}"
            )));
        }
        if burst == 0 || burst > MAX_BURST {
            return Err(Error::InvalidLimit(format!(
                "burst {burst} is outside 1..={MAX_BURST}"
            )));
        }
        Ok(Self { pps, burst })
    }

    fn raw(limit: Option<Self>) -> RawLimit {
        limit.map_or([0, 0], |l| [l.pps, l.burst])
    }

    fn from_raw(raw: RawLimit) -> Option<Self> {
        (raw[0] > 0).then_some(Self {
            pps: raw[0],
            burst: raw[1],
        })
    }
}

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeRequest {
    /// Driver (native) mode, falling back to generic mode where the driver has no XDP.
    #[default]
    Auto,
    /// Driver mode only.
    Driver,
    /// Generic (skb) mode only.
    Generic,
}

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver, before an skb is allocated.
    Driver,
    /// In the generic network stack (works on any interface, slower).
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Driver => "driver",
            Self::Generic => "generic",
        })
    }
}

/// What one source address sent, since the program was attached (or the source was last
/// evicted from the LRU table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStats {
    /// The source.
    pub addr: IpAddr,
    /// Packets seen, dropped ones included.
    pub packets: u64,
    /// Bytes seen (whole frames), dropped ones included.
    pub bytes: u64,
    /// Packets dropped by the rate limit.
    pub rate_dropped: u64,
    /// Packets dropped because the source is blocked.
    pub blocked_dropped: u64,
}

/// Interface-wide totals, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// IP packets passed to the stack.
    pub passed: u64,
    /// Their bytes.
    pub passed_bytes: u64,
    /// IP packets dropped by a rate limit.
    pub rate_dropped: u64,
    /// IP packets dropped because their source is blocked.
    pub blocked_dropped: u64,
    /// Frames that were not IPv4 or IPv6 (ARP, LLDP, …), passed uncounted per source.
    pub not_ip: u64,
    /// IP packets whose source could not get a counter entry (passed, not limited).
    pub table_full: u64,
}

impl Totals {
    /// Every drop.
    pub fn dropped(&self) -> u64 {
        self.rate_dropped + self.blocked_dropped
    }
}

/// Map sizes and the first limit; see [`XdpGuard::builder`].
#[derive(Debug)]
pub struct XdpGuardBuilder {
    interface: String,
    mode: ModeRequest,
    limit: Option<RateLimit>,
    max_sources: u32,
    max_blocked: u32,
    max_source_limits: u32,
    /// A caller's object, 8-byte aligned, and its length in bytes.
    object: Option<(Vec<u64>, usize)>,
}

impl XdpGuardBuilder {
    /// Attach mode (default [`ModeRequest::Auto`]).
    pub fn mode(mut self, mode: ModeRequest) -> Self {
        self.mode = mode;
        self
    }
    /// The default per-source limit from the first packet on (default: none).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Sources tracked at once; the least recently seen is evicted (default 65,536).
    pub fn max_sources(mut self, n: u32) -> Self {
        self.max_sources = n.max(1);
        self
    }
    /// Addresses that can be blocked at once (default 4,096).
    pub fn max_blocked(mut self, n: u32) -> Self {
        self.max_blocked = n.max(1);
        self
    }
    /// Addresses that can have their own limit at once (default 4,096).
    pub fn max_source_limits(mut self, n: u32) -> Self {
        self.max_source_limits = n.max(1);
        self
    }
    /// Loads this ELF object instead of the one built into the crate. It must define the same
    /// program and maps (`bpf/xdp_guard.c`); for builds that compile the program elsewhere.
    pub fn object(mut self, elf: &[u8]) -> Self {
        // The ELF parser needs 8-byte alignment, which a byte slice does not promise.
        let mut words = vec![0u64; elf.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..elf.len()].copy_from_slice(elf);
        self.object = Some((words, elf.len()));
        self
    }

    /// Loads the program, attaches it, and sets the first limit.
    ///
    /// # Errors
    /// [`Error::NotBuilt`], [`Error::NoSuchInterface`], [`Error::PermissionDenied`],
    /// [`Error::Verifier`], [`Error::Attach`], [`Error::Object`].
    pub fn attach(self) -> Result<XdpGuard, Error> {
        XdpGuard::attach_with(self)
    }
}

/// The maps, typed.
struct Maps {
    sources: HashMap<MapData, RawKey, RawStats>,
    limits: HashMap<MapData, RawKey, RawLimit>,
    config: Array<MapData, RawLimit>,
    blocked: HashMap<MapData, RawKey, u64>,
    totals: PerCpuArray<MapData, RawTotals>,
}

/// The XDP program attached to one interface: per-source counters, a token-bucket rate limit
/// per source, and a block list, all changed live while the program runs.
///
/// Dropping the guard detaches the program and frees its maps.
///
/// ```no_run
/// use std::net::IpAddr;
/// use x0tta_ebpf::{RateLimit, XdpGuard};
///
/// # fn main() -> Result<(), x0tta_ebpf::Error> {
/// let guard = XdpGuard::builder("eth0")
///     .rate_limit(RateLimit::new(20_000, 2_000)?)
///     .attach()?;
/// println!("attached in {} mode", guard.mode());
/// let flooder: IpAddr = "203.0.113.9".parse().expect("an address");
/// guard.block(flooder)?;
/// for s in guard.sources()? {
///     println!("{} sent {} packets, {} dropped", s.addr, s.packets, s.rate_dropped + s.blocked_dropped);
/// }
/// # Ok(())
/// # }
/// ```
pub struct XdpGuard {
    interface: String,
    mode: AttachMode,
    capacity_blocked: u32,
    capacity_limits: u32,
    maps: Mutex<Maps>,
    /// Holds the program and its link: dropped last, which detaches it.
    _ebpf: Mutex<Ebpf>,
}

impl std::fmt::Debug for XdpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpGuard")
            .field("interface", &self.interface)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl XdpGuard {
    /// Attaches with defaults to `interface` (in the caller's network namespace).
    pub fn attach(interface: &str) -> Result<Self, Error> {
        Self::builder(interface).attach()
    }

    /// A builder for `interface`.
    pub fn builder(interface: &str) -> XdpGuardBuilder {
        XdpGuardBuilder {
            interface: interface.to_string(),
            mode: ModeRequest::Auto,
            limit: None,
            max_sources: 65_536,
            max_blocked: 4_096,
            max_source_limits: 4_096,
            object: None,
        }
    }

    fn attach_with(b: XdpGuardBuilder) -> Result<Self, Error> {
        // Linux interface names are 1..=15 bytes with no NUL or slash; aya panics on a NUL.
        if b.interface.is_empty()
            || b.interface.len() > 15
            || b.interface.contains(['\0', '/'])
            || b.interface.chars().any(char::is_whitespace)
        {
            return Err(Error::NoSuchInterface(b.interface));
        }
        let bytes: &[u8] = match &b.object {
            Some((words, len)) => &bytemuck::cast_slice::<u64, u8>(words)[..*len],
            None => built_object()?,
        };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(SOURCES, b.max_sources)
            .map_max_entries(BLOCKED, b.max_blocked)
            .map_max_entries(LIMITS, b.max_source_limits)
            .load(bytes)
            .map_err(load_error)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| Error::Object(format!("no program `{PROGRAM}`")))?
            .try_into()
            .map_err(|e: ProgramError| Error::Object(e.to_string()))?;
        program.load().map_err(program_error)?;
        let mode = attach_program(program, &b.interface, b.mode)?;

        let maps = Maps {
            sources: typed(&mut ebpf, SOURCES)?,
            limits: typed(&mut ebpf, LIMITS)?,
            config: typed(&mut ebpf, CONFIG)?,
            blocked: typed(&mut ebpf, BLOCKED)?,
            totals: typed(&mut ebpf, TOTALS)?,
        };
        let guard = Self {
            interface: b.interface,
            mode,
            capacity_blocked: b.max_blocked,
            capacity_limits: b.max_source_limits,
            maps: Mutex::new(maps),
            _ebpf: Mutex::new(ebpf),
        };
        if b.limit.is_some() {
            guard.set_rate_limit(b.limit)?;
        }
        tracing::debug!(interface = %guard.interface, mode = %mode, "XDP guard attached");
        Ok(guard)
    }

    /// The interface it is attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// How it is attached.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock leaves the maps themselves intact (they live in the
        // kernel), so a poisoned lock is still safe to use.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Interface-wide totals.
    pub fn totals(&self) -> Result<Totals, Error> {
        let maps = self.maps();
        let per_cpu = maps
            .totals
            .get(&0, 0)
            .map_err(|e| map_error(TOTALS, 1, e))?;
        let mut sum = [0u64; 6];
        for cpu in per_cpu.iter() {
            for (s, v) in sum.iter_mut().zip(cpu) {
                *s = s.wrapping_add(*v);
            }
        }
        Ok(Totals {
            passed: sum[0],
            passed_bytes: sum[1],
            rate_dropped: sum[2],
            blocked_dropped: sum[3],
            not_ip: sum[4],
            table_full: sum[5],
        })
    }

    /// Every tracked source (at most the table's size).
    pub fn sources(&self) -> Result<Vec<SourceStats>, Error> {
        let maps = self.maps();
        let mut out = Vec::new();
        for entry in maps.sources.iter() {
            match entry {
                Ok((key, stats)) => {
                    if let Some(addr) = ip_of(&key) {
                        out.push(source_stats(addr, &stats));
                    }
                }
                // An entry evicted between listing its key and reading it.
                Err(e) if absent(&e) => continue,
                Err(e) => return Err(map_error(SOURCES, 0, e)),
            }
        }
        Ok(out)
    }

    /// One source's counters, if it is tracked.
    pub fn source(&self, addr: IpAddr) -> Result<Option<SourceStats>, Error> {
        let addr = addr.to_canonical();
        match self.maps().sources.get(&key_of(addr), 0) {
            Ok(stats) => Ok(Some(source_stats(addr, &stats))),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(map_error(SOURCES, 0, e)),
        }
    }

    /// The default per-source limit (`None`: unlimited).
    pub fn rate_limit(&self) -> Result<Option<RateLimit>, Error> {
        let raw = self
            .maps()
            .config
            .get(&0, 0)
            .map_err(|e| map_error(CONFIG, 1, e))?;
        Ok(RateLimit::from_raw(raw))
    }

    /// Sets the default per-source limit (`None`: unlimited) and returns the previous one.
    /// Takes effect on the next packet.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) -> Result<Option<RateLimit>, Error> {
        let mut maps = self.maps();
        let before = maps
            .config
            .get(&0, 0)
            .map_err(|e| map_error(CONFIG, 1, e))?;
        maps.config
            .set(0, RateLimit::raw(limit), 0)
            .map_err(|e| map_error(CONFIG, 1, e))?;
        Ok(RateLimit::from_raw(before))
    }

    /// Gives `addr` its own limit (`None`: back to the default) and returns its previous own
    /// limit.
    pub fn set_source_limit(
        &self,
        addr: IpAddr,
        limit: Option<RateLimit>,
    ) -> Result<Option<RateLimit>, Error> {
        let key = key_of(addr.to_canonical());
        let mut maps = self.maps();
        let before = match maps.limits.get(&key, 0) {
            Ok(raw) => RateLimit::from_raw(raw),
            Err(e) if absent(&e) => None,
            Err(e) => return Err(map_error(LIMITS, self.capacity_limits, e)),
        };
        match limit {
            Some(l) => maps
                .limits
                .insert(key, RateLimit::raw(Some(l)), 0)
                .map_err(|e| map_error(LIMITS, self.capacity_limits, e))?,
            None => match maps.limits.remove(&key) {
                Ok(()) => {}
                Err(e) if absent(&e) => {}
                Err(e) => return Err(map_error(LIMITS, self.capacity_limits, e)),
            },
        }
        Ok(before)
    }

    /// Drops everything from `addr` from the next packet on. Returns `false` if it was
    /// already blocked.
    pub fn block(&self, addr: IpAddr) -> Result<bool, Error> {
        let key = key_of(addr.to_canonical());
        let mut maps = self.maps();
        match maps.blocked.get(&key, 0) {
            Ok(_) => return Ok(false),
            Err(e) if absent(&e) => {}
            Err(e) => return Err(map_error(BLOCKED, self.capacity_blocked, e)),
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        maps.blocked
            .insert(key, since, 0)
            .map_err(|e| map_error(BLOCKED, self.capacity_blocked, e))?;
        Ok(true)
    }

    /// Lets `addr` through again. Returns `false` if it was not blocked.
    pub fn unblock(&self, addr: IpAddr) -> Result<bool, Error> {
        let key = key_of(addr.to_canonical());
        match self.maps().blocked.remove(&key) {
            Ok(()) => Ok(true),
            Err(e) if absent(&e) => Ok(false),
            Err(e) => Err(map_error(BLOCKED, self.capacity_blocked, e)),
        }
    }

    /// Whether `addr` is blocked.
    pub fn is_blocked(&self, addr: IpAddr) -> Result<bool, Error> {
        match self.maps().blocked.get(&key_of(addr.to_canonical()), 0) {
            Ok(_) => Ok(true),
            Err(e) if absent(&e) => Ok(false),
            Err(e) => Err(map_error(BLOCKED, self.capacity_blocked, e)),
        }
    }

    /// Every blocked address.
    pub fn blocked(&self) -> Result<Vec<IpAddr>, Error> {
        let maps = self.maps();
        let mut out = Vec::new();
        for key in maps.blocked.keys() {
            let key = key.map_err(|e| map_error(BLOCKED, self.capacity_blocked, e))?;
            out.extend(ip_of(&key));
        }
        Ok(out)
    }
}

fn built_object() -> Result<&'static [u8], Error> {
    #[cfg(x0tta_xdp_object)]
    {
        Ok(BUILT)
    }
    #[cfg(not(x0tta_xdp_object))]
    {
        Err(Error::NotBuilt {
            reason: build_note().to_string(),
        })
    }
}

fn attach_program(
    program: &mut Xdp,
    interface: &str,
    mode: ModeRequest,
) -> Result<AttachMode, Error> {
    let tries: &[(XdpMode, AttachMode)] = match mode {
        ModeRequest::Auto => &[
            (XdpMode::Driver, AttachMode::Driver),
            (XdpMode::Skb, AttachMode::Generic),
        ],
        ModeRequest::Driver => &[(XdpMode::Driver, AttachMode::Driver)],
        ModeRequest::Generic => &[(XdpMode::Skb, AttachMode::Generic)],
    };
    let mut last = None;
    for (flags, mode) in tries {
        match program.attach(interface, *flags) {
            Ok(_) => return Ok(*mode),
            Err(ProgramError::UnknownInterface { name }) => {
                return Err(Error::NoSuchInterface(name));
            }
            Err(e) => {
                if let Some(io) = io_of_program(&e)
                    && is_permission(io)
                {
                    return Err(Error::PermissionDenied {
                        doing: "attaching the XDP program",
                        source: io::Error::new(io.kind(), io.to_string()),
                    });
                }
                tracing::debug!(interface, mode = %mode, error = %e, "XDP attach failed");
                last = Some(e);
            }
        }
    }
    Err(Error::Attach {
        interface: interface.to_string(),
        reason: last.map_or_else(|| "no mode to try".into(), |e| error_chain(&e)),
    })
}

fn typed<V>(ebpf: &mut Ebpf, name: &'static str) -> Result<V, Error>
where
    V: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| Error::Object(format!("no map `{name}`")))?;
    V::try_from(map).map_err(|e| Error::Object(format!("map `{name}`: {e}")))
}

fn load_error(e: EbpfError) -> Error {
    match e {
        EbpfError::MapError(MapError::CreateError { name, io_error })
            if is_permission(&io_error) =>
        {
            let _ = name;
            Error::PermissionDenied {
                doing: "creating the XDP program's maps",
                source: io_error,
            }
        }
        EbpfError::ProgramError(p) => program_error(p),
        other => Error::Object(error_chain(&other)),
    }
}

fn program_error(e: ProgramError) -> Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            if is_permission(&io_error) && verifier_log.to_string().trim().is_empty() {
                Error::PermissionDenied {
                    doing: "loading the XDP program",
                    source: io_error,
                }
            } else {
                Error::Verifier {
                    source: io_error,
                    log: verifier_log.to_string(),
                }
            }
        }
        other => match io_of_program(&other) {
            Some(io) if is_permission(io) => Error::PermissionDenied {
                doing: "loading the XDP program",
                source: io::Error::new(io.kind(), io.to_string()),
            },
            _ => Error::Object(error_chain(&other)),
        },
    }
}

fn io_of_program(e: &ProgramError) -> Option<&io::Error> {
    match e {
        ProgramError::SyscallError(s) => Some(&s.io_error),
        ProgramError::IOError(io) => Some(io),
        ProgramError::LoadError { io_error, .. } => Some(io_error),
        _ => None,
    }
}

/// Whether `e` says the key is not in the map (lookups and deletes say it differently).
fn absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        // ENOENT
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(2),
        _ => false,
    }
}

fn map_error(map: &'static str, capacity: u32, e: MapError) -> Error {
    match &e {
        // E2BIG: no room in a hash map.
        MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(7) => {
            Error::MapFull { map, capacity }
        }
        MapError::SyscallError(s) if is_permission(&s.io_error) => Error::PermissionDenied {
            doing: "updating an XDP map",
            source: io::Error::new(s.io_error.kind(), s.io_error.to_string()),
        },
        _ => Error::Map {
            map,
            reason: error_chain(&e),
        },
    }
}

/// `e` and its sources, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn key_of(addr: IpAddr) -> RawKey {
    let mut key = [0u8; 20];
    match addr {
        IpAddr::V4(a) => {
            key[..4].copy_from_slice(&4u32.to_ne_bytes());
            key[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            key[..4].copy_from_slice(&6u32.to_ne_bytes());
            key[4..].copy_from_slice(&a.octets());
        }
    }
    key
}

fn ip_of(key: &RawKey) -> Option<IpAddr> {
    let mut family = [0u8; 4];
    family.copy_from_slice(&key[..4]);
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&key[4..]);
    match u32::from_ne_bytes(family) {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            addr[0], addr[1], addr[2], addr[3],
        ))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(addr))),
        _ => None,
    }
}

fn source_stats(addr: IpAddr, raw: &RawStats) -> SourceStats {
    SourceStats {
        addr,
        packets: raw[0],
        bytes: raw[1],
        rate_dropped: raw[2],
        blocked_dropped: raw[3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_canonicalise() {
        for a in ["10.0.0.7", "fd00::1", "::1", "0.0.0.0", "255.255.255.255"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(ip_of(&key_of(ip)), Some(ip));
        }
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(
            key_of(mapped.to_canonical()),
            key_of("10.0.0.7".parse().unwrap())
        );
        assert_eq!(ip_of(&[9; 20]), None);
    }

    #[test]
    fn limits_are_checked() {
        assert!(RateLimit::new(MAX_RATE_PPS, MAX_BURST).is_ok());
        assert!(matches!(
            RateLimit::new(MAX_RATE_PPS + 1, 1),
            Err(Error::InvalidLimit(_))
        ));
        assert!(matches!(RateLimit::new(1, 0), Err(Error::InvalidLimit(_))));
        assert_eq!(RateLimit::from_raw(RateLimit::raw(None)), None);
        let l = RateLimit::new(5, 7).unwrap();
        assert_eq!(RateLimit::from_raw(RateLimit::raw(Some(l))), Some(l));
    }

    #[test]
    fn bad_interface_names_are_refused_before_the_kernel() {
        for name in ["", "a\0b", "averyveryverylongname", "a/b", "a b"] {
            assert!(matches!(
                XdpGuard::attach(name),
                Err(Error::NoSuchInterface(_))
            ));
        }
    }
}
