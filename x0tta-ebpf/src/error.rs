//! What can go wrong loading, attaching and driving the XDP program.

use std::io;

/// An XDP guard operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This build carries no XDP program: clang or the libbpf headers were missing when the
    /// crate was compiled.
    #[error(
        "this build of x0tta-ebpf has no XDP program ({reason}); install clang and the libbpf \
         headers (Debian/Ubuntu: `apt-get install clang libbpf-dev`) and rebuild"
    )]
    NotBuilt {
        /// Why the build script did not compile it.
        reason: String,
    },
    /// The kernel refused for lack of privilege.
    #[error(
        "permission denied while {doing}: XDP needs root, or CAP_BPF + CAP_NET_ADMIN + \
         CAP_PERFMON (and on kernels before 5.11 a large enough RLIMIT_MEMLOCK): {source}"
    )]
    PermissionDenied {
        /// What was being done.
        doing: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// No interface has this name (in the caller's network namespace).
    #[error("no such network interface `{0}`")]
    NoSuchInterface(String),
    /// The kernel's verifier refused the program.
    #[error("the kernel's verifier rejected the XDP program ({source}); verifier log:\n{log}")]
    Verifier {
        /// The load syscall's error.
        #[source]
        source: io::Error,
        /// What the verifier printed.
        log: String,
    },
    /// A map has no room for another entry.
    #[error("map `{map}` is full ({capacity} entries)")]
    MapFull {
        /// The map.
        map: &'static str,
        /// Its size.
        capacity: u32,
    },
    /// A rate limit outside what the program can represent.
    #[error("invalid rate limit: {0}")]
    InvalidLimit(String),
    /// The object file is not the program this crate drives (a map or the program missing,
    /// or a map of another shape).
    #[error("the XDP object does not match this crate: {0}")]
    Object(String),
    /// Attaching to the interface failed (for a reason other than the above).
    #[error("attaching to `{interface}` failed: {reason}")]
    Attach {
        /// The interface.
        interface: String,
        /// The kernel's or aya's answer.
        reason: String,
    },
    /// A map operation failed (for a reason other than the above).
    #[error("map `{map}`: {reason}")]
    Map {
        /// The map.
        map: &'static str,
        /// The kernel's or aya's answer.
        reason: String,
    },
}

/// Whether `e` is the kernel saying "not allowed".
pub(crate) fn is_permission(e: &io::Error) -> bool {
    // EPERM, EACCES
    matches!(e.raw_os_error(), Some(1 | 13)) || e.kind() == io::ErrorKind::PermissionDenied
}
