//! Memory limits through cgroups: v2 `memory.max`, or v1 `memory.limit_in_bytes` on hosts
//! whose memory controller is still on the v1 hierarchy.

use std::path::{Path, PathBuf};

/// A cgroup memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// No limit.
    Unlimited,
    /// At most this many bytes.
    Bytes(u64),
}

impl MemoryLimit {
    fn encode(self, v1: bool) -> String {
        match (self, v1) {
            (Self::Unlimited, false) => "max".into(),
            (Self::Unlimited, true) => "-1".into(),
            (Self::Bytes(b), _) => b.to_string(),
        }
    }
}

/// A cgroup that cannot be used for memory limits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// Neither `memory.max` nor `memory.limit_in_bytes` is in the directory.
    #[error(
        "{0} is not a cgroup with a memory controller (no memory.max or memory.limit_in_bytes)"
    )]
    NoMemoryController(PathBuf),
    /// Reading or writing the control file failed.
    #[error("{path}: {error}")]
    Io {
        /// The control file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The control file held something unexpected.
    #[error("{path}: unexpected content `{content}`")]
    Parse {
        /// The control file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
}

/// v1 reports "no limit" as a huge page-aligned number.
const V1_UNLIMITED_FLOOR: u64 = 1 << 62;

fn control_file(cgroup: &Path) -> Result<(PathBuf, bool), CgroupError> {
    let v2 = cgroup.join("memory.max");
    if v2.exists() {
        return Ok((v2, false));
    }
    let v1 = cgroup.join("memory.limit_in_bytes");
    if v1.exists() {
        return Ok((v1, true));
    }
    Err(CgroupError::NoMemoryController(cgroup.to_path_buf()))
}

/// The memory limit of `cgroup`.
pub fn read_memory_limit(cgroup: &Path) -> Result<MemoryLimit, CgroupError> {
    let (path, _) = control_file(cgroup)?;
    let content = std::fs::read_to_string(&path).map_err(|error| CgroupError::Io {
        path: path.clone(),
        error,
    })?;
    let t = content.trim();
    if t == "max" {
        return Ok(MemoryLimit::Unlimited);
    }
    match t.parse::<u64>() {
        Ok(b) if b >= V1_UNLIMITED_FLOOR => Ok(MemoryLimit::Unlimited),
        Ok(b) => Ok(MemoryLimit::Bytes(b)),
        Err(_) => Err(CgroupError::Parse {
            path,
            content: t.to_string(),
        }),
    }
}

/// Sets the memory limit of `cgroup`.
pub fn write_memory_limit(cgroup: &Path, limit: MemoryLimit) -> Result<(), CgroupError> {
    let (path, v1) = control_file(cgroup)?;
    std::fs::write(&path, limit.encode(v1)).map_err(|error| CgroupError::Io { path, error })
}
