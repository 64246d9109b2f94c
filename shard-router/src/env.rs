//! Start-up checks of the host: locked memory, io_uring, usable CPUs.
//! Each refusal is a [`StartError`] whose text tells the operator the fix.

use std::path::{Path, PathBuf};

use crate::error::StartError;
use crate::sys::{self, MemlockLimit};

/// glommio refuses to build an executor below this `RLIMIT_MEMLOCK`.
pub const GLOMMIO_MIN_MEMLOCK_BYTES: u64 = 512 * 1024;
/// glommio rounds a smaller `io_memory` up to this.
pub const GLOMMIO_MIN_IO_MEMORY_BYTES: usize = 64 * 1024;
/// glommio's own default `io_memory` per executor.
pub const DEFAULT_IO_MEMORY_BYTES: usize = 10 << 20;
/// glommio registers each executor's `io_memory` in this many rings, and each
/// registration counts against the locked-memory limit.
pub const IO_MEMORY_RINGS: u64 = 3;
const PAGE_BYTES: usize = 4096;

/// Locked memory `shards` executors need with `io_memory_bytes` each.
pub fn memlock_needed_bytes(shards: usize, io_memory_bytes: usize) -> u64 {
    shards as u64 * IO_MEMORY_RINGS * io_memory_bytes as u64
}

/// Chooses `io_memory` per executor so that shards x 3 x io_memory fits
/// `limit_bytes` (`None` = unlimited), or refuses.
///
/// `requested` is the operator's explicit choice: it is honoured exactly or
/// refused; without one, glommio's default is shrunk to fit.
pub fn plan_io_memory(
    limit_bytes: Option<u64>,
    shards: usize,
    requested: Option<usize>,
) -> Result<usize, StartError> {
    assert!(shards > 0);
    let wanted = requested.unwrap_or(DEFAULT_IO_MEMORY_BYTES);
    let Some(limit) = limit_bytes else {
        return Ok(wanted);
    };
    let needed_min =
        memlock_needed_bytes(shards, GLOMMIO_MIN_IO_MEMORY_BYTES).max(GLOMMIO_MIN_MEMLOCK_BYTES);
    if limit < needed_min {
        return Err(StartError::MemlockTooLow {
            limit_kib: limit / 1024,
            needed_kib: needed_min.div_ceil(1024),
            shards,
        });
    }
    let per_ring_total = shards as u64 * IO_MEMORY_RINGS;
    let max_fit = (limit / per_ring_total) as usize / PAGE_BYTES * PAGE_BYTES;
    match requested {
        Some(req) if req > max_fit => Err(StartError::IoMemoryTooLarge {
            requested: req,
            max_fit,
            limit_kib: limit / 1024,
            shards,
        }),
        Some(req) => Ok(req.max(GLOMMIO_MIN_IO_MEMORY_BYTES)),
        None => Ok(wanted.min(max_fit)),
    }
}

/// Raises `RLIMIT_MEMLOCK` as far as this process may: the soft limit to the
/// hard one, and as root the hard limit too, up to `wanted_bytes`.
/// Returns the soft limit now in force.
pub fn raise_memlock(wanted_bytes: u64) -> Result<Option<u64>, StartError> {
    let cur = sys::memlock_limit().map_err(StartError::Rlimit)?;
    let enough = |v: Option<u64>| v.is_none_or(|b| b >= wanted_bytes);
    if enough(cur.soft_bytes) {
        return Ok(cur.soft_bytes);
    }
    if sys::is_root() && !enough(cur.hard_bytes) {
        let target = MemlockLimit {
            soft_bytes: Some(wanted_bytes),
            hard_bytes: Some(wanted_bytes),
        };
        match sys::set_memlock_limit(target) {
            Ok(()) => return Ok(Some(wanted_bytes)),
            // Root without CAP_SYS_RESOURCE (a container): fall back below.
            Err(e) => tracing::debug!("raising the hard RLIMIT_MEMLOCK failed: {e}"),
        }
    }
    if cur.soft_bytes != cur.hard_bytes {
        let target = MemlockLimit {
            soft_bytes: cur.hard_bytes,
            hard_bytes: cur.hard_bytes,
        };
        sys::set_memlock_limit(target).map_err(StartError::Rlimit)?;
        return Ok(cur.hard_bytes);
    }
    Ok(cur.soft_bytes)
}

/// Fails with an operator-readable error when io_uring cannot be used.
pub fn check_io_uring() -> Result<(), StartError> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if text.trim() == "2" {
            return Err(StartError::IoUringDisabled);
        }
    }
    // ENOSYS (no io_uring in the kernel) and EPERM (seccomp, or
    // io_uring_disabled = 1 for this user) both land here.
    sys::probe_io_uring().map_err(StartError::IoUringUnavailable)
}

/// The CPUs this process may use, as the kernel and cgroups see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuBudget {
    /// CPUs in the affinity mask (what `taskset` restricts), ascending.
    pub allowed: Vec<usize>,
    /// CPUs' worth of time the cgroup quota grants, rounded up, if limited.
    pub quota_cpus: Option<usize>,
}

impl CpuBudget {
    /// Default shard count: one per CPU we may use and have time for.
    pub fn usable(&self) -> usize {
        let n = self.allowed.len();
        self.quota_cpus.map_or(n, |q| q.min(n)).max(1)
    }

    /// CPU for each of `shards` shards: the mask in order, wrapping around
    /// when there are more shards than CPUs.
    pub fn cpus_for(&self, shards: usize) -> Vec<usize> {
        assert!(!self.allowed.is_empty());
        (0..shards)
            .map(|i| self.allowed[i % self.allowed.len()])
            .collect()
    }
}

pub fn cpu_budget() -> Result<CpuBudget, StartError> {
    let allowed = sys::thread_affinity().map_err(StartError::Affinity)?;
    if allowed.is_empty() {
        return Err(StartError::Affinity(std::io::Error::other(
            "the affinity mask is empty",
        )));
    }
    Ok(CpuBudget {
        allowed,
        quota_cpus: cgroup_quota_cpus(),
    })
}

/// Parses cgroup v2 `cpu.max` ("max 100000" or "<quota> <period>") into CPUs.
pub fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: u64 = it.next()?.parse().ok()?;
    if quota == "max" || period == 0 {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    Some((quota.div_ceil(period) as usize).max(1))
}

/// Smallest CPU quota on the path from this process's cgroup to the root.
fn cgroup_quota_cpus() -> Option<usize> {
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut min: Option<usize> = None;
    let mut consider = |v: Option<usize>| {
        if let Some(v) = v {
            min = Some(min.map_or(v, |m| m.min(v)));
        }
    };
    // cgroup v2: "0::/path".
    if let Some(rel) = self_cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
        let root = Path::new("/sys/fs/cgroup");
        let mut dir: PathBuf = root.join(rel.trim_start_matches('/'));
        loop {
            if let Ok(text) = std::fs::read_to_string(dir.join("cpu.max")) {
                consider(parse_cpu_max(&text));
            }
            if dir == root || !dir.pop() {
                break;
            }
        }
    }
    // cgroup v1 fallback: cpu.cfs_quota_us / cpu.cfs_period_us (-1 = none).
    let read = |f: &str| -> Option<i64> {
        std::fs::read_to_string(Path::new("/sys/fs/cgroup/cpu").join(f))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let (Some(q), Some(p)) = (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
        if q > 0 && p > 0 {
            consider(Some(((q as u64).div_ceil(p as u64) as usize).max(1)));
        }
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn memlock_too_low_is_refused_with_the_fix() {
        let err = plan_io_memory(Some(256 * 1024), 2, None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "locked-memory limit is 256 KiB; sluice needs at least 512 KiB for 2 shards"
            ),
            "{text}"
        );
        assert!(text.contains("ulimit -l unlimited"), "{text}");
        assert!(text.contains("LimitMEMLOCK="), "{text}");
    }

    #[test]
    fn memlock_minimum_grows_with_shards() {
        // 8 shards x 3 rings x 64 KiB = 1536 KiB > 512 KiB.
        let err = plan_io_memory(Some(MIB), 8, None).unwrap_err();
        assert!(
            err.to_string().contains("at least 1536 KiB for 8 shards"),
            "{err}"
        );
        assert!(plan_io_memory(Some(1536 * 1024), 8, None).is_ok());
    }

    #[test]
    fn io_memory_shrinks_to_fit_the_limit() {
        // 8 MiB / (2 shards x 3 rings) = 1398101 -> page-aligned down.
        let io = plan_io_memory(Some(8 * MIB), 2, None).unwrap();
        assert_eq!(io, 1_396_736);
        assert!(memlock_needed_bytes(2, io) <= 8 * MIB);
        assert_eq!(io % 4096, 0);
    }

    #[test]
    fn unlimited_memlock_keeps_the_default() {
        assert_eq!(
            plan_io_memory(None, 64, None).unwrap(),
            DEFAULT_IO_MEMORY_BYTES
        );
        assert_eq!(
            plan_io_memory(Some(u64::MAX / 2), 2, None).unwrap(),
            DEFAULT_IO_MEMORY_BYTES
        );
    }

    #[test]
    fn explicit_io_memory_is_honoured_or_refused() {
        assert_eq!(
            plan_io_memory(Some(8 * MIB), 2, Some(MIB as usize)).unwrap(),
            MIB as usize
        );
        let err = plan_io_memory(Some(8 * MIB), 2, Some(2 * MIB as usize)).unwrap_err();
        assert!(
            matches!(
                err,
                StartError::IoMemoryTooLarge {
                    max_fit: 1_396_736,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn cpu_max_parsing() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn budget_uses_the_smaller_of_mask_and_quota() {
        let b = CpuBudget {
            allowed: vec![1, 3, 5, 7],
            quota_cpus: Some(2),
        };
        assert_eq!(b.usable(), 2);
        assert_eq!(b.cpus_for(2), vec![1, 3]);
        let b = CpuBudget {
            allowed: vec![1],
            quota_cpus: None,
        };
        assert_eq!(b.usable(), 1);
        assert_eq!(b.cpus_for(3), vec![1, 1, 1]);
    }
}
