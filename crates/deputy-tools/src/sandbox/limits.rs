//! Resource limits for sandboxed commands (`[sandbox.limits]` in config).

use serde::{Deserialize, Serialize};

/// rlimits applied to every command. `Some(0)` means unlimited; `None` means the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// CPU seconds per process (default 600).
    pub cpu_seconds: Option<u64>,
    /// Processes: RLIMIT_NPROC above what the user already runs, and the pids cgroup limit
    /// when deputy runs as root (default 512).
    pub processes: Option<u64>,
    /// Largest file a command may write, in bytes (default 4 GiB).
    pub file_size: Option<u64>,
    /// Address space per process, in bytes (default: the machine's memory, at least 4 GiB and
    /// at most 32 GiB: language runtimes reserve far more virtual memory than they use).
    pub address_space: Option<u64>,
    /// Memory of the whole command, in bytes, where a memory cgroup can be made (default:
    /// three quarters of the machine's memory).
    pub memory: Option<u64>,
}

const GIB: u64 = 1024 * 1024 * 1024;

impl ResourceLimits {
    pub fn cpu(&self) -> u64 {
        self.cpu_seconds.unwrap_or(600)
    }

    pub fn processes_or_default(&self) -> u64 {
        self.processes.unwrap_or(512)
    }

    pub fn fsize(&self) -> u64 {
        self.file_size.unwrap_or(4 * GIB)
    }

    pub fn address_space(&self) -> u64 {
        self.address_space
            .unwrap_or_else(|| physical_memory().clamp(4 * GIB, 32 * GIB))
    }

    pub fn memory(&self) -> u64 {
        self.memory.unwrap_or_else(|| physical_memory() / 4 * 3)
    }
}

/// The machine's memory in bytes (0 when unknown).
fn physical_memory() -> u64 {
    // SAFETY: sysinfo is a plain C struct; all zeroes is a valid value, filled by the call.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: sysinfo fills a struct we own.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 0;
    }
    (info.totalram as u64).saturating_mul(u64::from(info.mem_unit))
}

/// The RLIMIT_NPROC to set: it counts every process of the user, not only the command's, so
/// the limit is what the user already runs plus the allowance. Computed in the parent.
fn nproc_limit(allowance: u64) -> u64 {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut count = 0u64;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(status) = std::fs::read_to_string(e.path().join("status"))
                && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
                && line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|u| u.parse::<u32>().ok())
                    == Some(uid)
            {
                // Threads count too.
                let threads = status
                    .lines()
                    .find(|l| l.starts_with("Threads:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(1);
                count += threads;
            }
        }
    }
    count + allowance
}

/// The limits as (resource, value) pairs, computed before the fork.
#[derive(Debug, Clone)]
pub struct Prepared(Vec<(libc::__rlimit_resource_t, u64)>);

pub fn prepare(l: &ResourceLimits) -> Prepared {
    let mut v = Vec::new();
    let mut push = |res, value: u64| {
        if value > 0 {
            v.push((res, value));
        }
    };
    push(libc::RLIMIT_CPU, l.cpu());
    push(libc::RLIMIT_FSIZE, l.fsize());
    push(libc::RLIMIT_AS, l.address_space());
    // The kernel does not hold root (of the first user namespace) to RLIMIT_NPROC, so counting
    // root's processes (a read of every /proc/N/status, on the path to the first request)
    // would buy nothing; the pids cgroup limits root's commands.
    if l.processes_or_default() > 0 && !super::is_root() {
        push(libc::RLIMIT_NPROC, nproc_limit(l.processes_or_default()));
    }
    // No core dumps of sandboxed processes (they may hold secrets of the workspace).
    v.push((libc::RLIMIT_CORE, 0));
    Prepared(v)
}

/// Apply prepared limits (in the child, before exec: only setrlimit calls).
pub fn apply(p: &Prepared) -> std::io::Result<()> {
    for (res, value) in &p.0 {
        let lim = libc::rlimit {
            rlim_cur: *value,
            rlim_max: *value,
        };
        // Lowering a limit never fails for lack of privilege; a limit above the current hard
        // limit does, and is then left as it is.
        // SAFETY: setrlimit with a valid resource and a pointer to a live struct.
        let rc = unsafe { libc::setrlimit(*res, &lim) };
        if rc != 0 {
            let soft = libc::rlimit {
                rlim_cur: *value,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: as above.
            unsafe { libc::setrlimit(*res, &soft) };
        }
    }
    Ok(())
}
