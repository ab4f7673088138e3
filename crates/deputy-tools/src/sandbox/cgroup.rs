//! A cgroup per command, where deputy may make one (as root, or with a delegated subtree): it
//! holds the command's processes to `pids.max` (the kernel does not enforce RLIMIT_NPROC for
//! root, so a fork bomb needs this) and its memory to a limit (`memory.max`, or cgroup v1
//! `memory.limit_in_bytes`), and it finds every process the command left behind, escaped
//! sessions and daemons included, to kill them when the command is over.
//!
//! The child joins the cgroups before exec. Cgroups left behind by a deputy that was killed are
//! removed by the next deputy's probe.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// deputy's own cgroup directory in each hierarchy it can use: (pids, memory). On cgroup v2
/// both are the same directory.
fn base_dirs() -> (Option<PathBuf>, Option<PathBuf>) {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return (None, None);
    };
    let (mut pids, mut memory) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        for (name, slot) in [("pids", &mut pids), ("memory", &mut memory)] {
            if controllers.split(',').any(|c| c == name) {
                let dir = Path::new("/sys/fs/cgroup").join(name).join(rel);
                if dir.join("cgroup.procs").exists() {
                    *slot = Some(dir);
                }
            }
        }
        if controllers.is_empty() {
            // cgroup v2: a controller must be enabled for children of our cgroup.
            for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let dir = Path::new(mount).join(rel);
                let enabled =
                    std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                let has = |c: &str| enabled.split_whitespace().any(|x| x == c);
                if has("pids") && pids.is_none() {
                    pids = Some(dir.clone());
                }
                if has("memory") && memory.is_none() {
                    memory = Some(dir.clone());
                }
            }
        }
    }
    (pids, memory)
}

pub fn probe() -> Result<String, String> {
    let base = base_dirs()
        .0
        .ok_or("no pids cgroup controller is available to deputy")?;
    remove_stale(&base);
    if let Some(mem) = base_dirs().1 {
        remove_stale(&mem);
    }
    let test = base.join(format!("deputy-probe-{}", std::process::id()));
    std::fs::create_dir(&test)
        .map_err(|e| format!("cannot create a cgroup under {}: {e}", base.display()))?;
    let ok = test.join("pids.max").exists();
    let _ = std::fs::remove_dir(&test);
    if ok {
        Ok(base.display().to_string())
    } else {
        Err(format!("{} has no pids.max", base.display()))
    }
}

/// Remove the cgroups of deputy processes that are gone (killed before they could clean up).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("deputy-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = e.path();
        kill_in(&dir);
        if std::fs::remove_dir(&dir).is_ok() {
            tracing::debug!("removed the stale cgroup {}", dir.display());
        }
    }
}

/// Kill every process in the cgroup at `dir`.
fn kill_in(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _ in 0..3 {
        let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            return;
        };
        let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill with a pid read from the cgroup; at worst the process is gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// One command's cgroups.
#[derive(Debug)]
pub struct CommandCgroup {
    /// The pids cgroup (always), and the memory one when it is another directory.
    dirs: Vec<PathBuf>,
    procs: Vec<OwnedFd>,
}

/// Kept for callers that name the old type.
pub type PidsCgroup = CommandCgroup;

impl CommandCgroup {
    /// Make a cgroup limited to `max` processes (and `memory` bytes, when a memory controller
    /// is available and `memory` is not 0), or `None` when deputy cannot make one here.
    pub fn create(max: u64, memory: u64) -> Option<CommandCgroup> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let (pids_base, mem_base) = base_dirs();
        let name = format!(
            "deputy-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = pids_base?.join(&name);
        std::fs::create_dir(&dir).ok()?;
        let mut cg = CommandCgroup {
            dirs: vec![dir.clone()],
            procs: Vec::new(),
        };
        let limit = if max == 0 {
            "max".to_string()
        } else {
            max.to_string()
        };
        std::fs::write(dir.join("pids.max"), limit).ok()?;
        if memory > 0
            && let Some(mem_base) = mem_base
        {
            let mem_dir = mem_base.join(&name);
            if mem_dir != dir && std::fs::create_dir(&mem_dir).is_ok() {
                cg.dirs.push(mem_dir.clone());
            }
            let (file, value) = if mem_dir.join("memory.max").exists() {
                ("memory.max", memory.to_string())
            } else {
                ("memory.limit_in_bytes", memory.to_string())
            };
            if let Err(e) = std::fs::write(mem_dir.join(file), value) {
                tracing::debug!("cannot set the memory limit in {}: {e}", mem_dir.display());
            }
        }
        for d in &cg.dirs {
            if let Ok(f) = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("cgroup.procs"))
            {
                cg.procs.push(OwnedFd::from(f));
            }
        }
        Some(cg)
    }

    /// The descriptors the child writes its pid into (close-on-exec, so they do not leak).
    pub fn procs_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Copies of the `cgroup.procs` descriptors, for a move made on another thread.
    pub(crate) fn procs_owned(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.procs.iter().map(OwnedFd::try_clone).collect()
    }

    /// Kill every process still in the cgroup (background jobs, escaped sessions, daemons).
    pub fn kill_all(&self) {
        if let Some(d) = self.dirs.first() {
            kill_in(d);
        }
    }
}

impl Drop for CommandCgroup {
    fn drop(&mut self) {
        self.kill_all();
        self.procs.clear();
        // Removal fails while the killed processes are being reaped; retry briefly.
        for d in self.dirs.iter().rev() {
            let mut removed = false;
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() {
                    removed = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if !removed {
                tracing::debug!("could not remove cgroup {}", d.display());
            }
        }
    }
}

/// In the child before exec: move this process into the cgroups.
pub fn join(fds: &[RawFd]) -> std::io::Result<()> {
    let msg = b"0\n";
    for fd in fds {
        // SAFETY: write to a descriptor opened by the parent; the buffer is a static slice.
        let rc = unsafe { libc::write(*fd, msg.as_ptr().cast(), msg.len()) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
