//! The hardened systemd unit `init --systemd` writes (and docs/deploy/x0tta6bl4.service shows):
//! a dedicated user, the node's directory as the only writable path, and only the
//! capabilities XDP needs.

use std::path::Path;

use anyhow::{Context, Result};

/// The unit for the node configured at `config` (absolute), run by `user` from `bin`.
///
/// When the configuration lives in `/var/lib/NAME/`, systemd creates and owns that directory
/// (`StateDirectory=NAME`, mode 0700); elsewhere the directory must exist and belong to `user`.
pub(crate) fn unit(config: &Path, user: &str, bin: &Path) -> Result<String> {
    let config =
        std::path::absolute(config).with_context(|| format!("resolving {}", config.display()))?;
    let dir = config.parent().unwrap_or(Path::new("/"));
    let state = dir
        .strip_prefix("/var/lib")
        .ok()
        .filter(|rest| rest.components().count() == 1)
        .map(|rest| rest.display().to_string());
    let writable = match &state {
        Some(name) => format!("StateDirectory={name}\nStateDirectoryMode=0700"),
        None => format!("ReadWritePaths={}", dir.display()),
    };
    Ok(format!(
        "# x0tta6bl4 node, written by `x0tta6bl4 init --systemd`. Install:
#   useradd --system --home-dir {home} --shell /usr/sbin/nologin {user}
#   cp x0tta6bl4.service /etc/systemd/system/ && systemctl daemon-reload
#   systemctl enable --now x0tta6bl4
# Reload the policy (SIGHUP): systemctl reload x0tta6bl4. Logs: journalctl -u x0tta6bl4.
[Unit]
Description=x0tta6bl4 autonomic mesh node
Documentation=man:x0tta6bl4(1)
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User={user}
Group={user}
{writable}
WorkingDirectory={home}
ExecStart={bin} run --config {config}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
TimeoutStopSec=45s
UMask=0077

# XDP rate limiting and peer isolation (x0tta-ebpf) need these capabilities, and only these.
CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON
AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON
# Older kernels account BPF maps against locked memory.
LimitMEMLOCK=infinity

NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service bpf
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
",
        home = dir.display(),
        config = config.display(),
        bin = bin.display(),
    ))
}
