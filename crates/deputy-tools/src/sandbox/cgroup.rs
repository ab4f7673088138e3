//! A pids cgroup per command, when deputy runs as root.
//!
//! The kernel does not enforce RLIMIT_NPROC for root, so as root a fork bomb is held by a cgroup
//! `pids.max` instead. The child joins the cgroup before exec; when the command is over, every
//! process left in the cgroup is killed and the cgroup removed. Used when a writable pids
//! controller exists (cgroup v1 `pids` hierarchy, or v2 with `pids` delegated); otherwise
//! `sandbox check` says the process limit is not enforced.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Where a new pids cgroup can be made: the directory of deputy's own cgroup in a hierarchy
/// with the pids controller.
fn base_dir() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "pids") {
            let dir = Path::new("/sys/fs/cgroup/pids").join(rel);
            if dir.join("pids.max").exists() || dir.join("cgroup.procs").exists() {
                return Some(dir);
            }
        }
        if controllers.is_empty() {
            // cgroup v2: pids must be enabled for children of our cgroup.
            for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let dir = Path::new(mount).join(rel);
                let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                    .is_ok_and(|s| s.split_whitespace().any(|c| c == "pids"));
                if enabled {
                    return Some(dir);
                }
            }
        }
    }
    None
}

pub fn probe() -> Result<String, String> {
    let base = base_dir().ok_or("no pids cgroup controller is available to deputy")?;
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

/// One command's cgroup.
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
    procs: Option<OwnedFd>,
}

impl PidsCgroup {
    /// Make a cgroup limited to `max` processes, or `None` when that is not possible here.
    pub fn create(max: u64) -> Option<PidsCgroup> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let base = base_dir()?;
        let dir = base.join(format!(
            "deputy-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).ok()?;
        let limit = if max == 0 {
            "max".to_string()
        } else {
            max.to_string()
        };
        if std::fs::write(dir.join("pids.max"), limit).is_err() {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .ok()
            .map(OwnedFd::from);
        Some(PidsCgroup { dir, procs })
    }

    /// The descriptor the child writes its pid into (close-on-exec, so it does not leak).
    pub fn procs_fd(&self) -> Option<RawFd> {
        self.procs.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Kill every process still in the cgroup (background jobs, escaped sessions).
    pub fn kill_all(&self) {
        if std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for _ in 0..3 {
            let Ok(text) = std::fs::read_to_string(self.dir.join("cgroup.procs")) else {
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
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        self.kill_all();
        self.procs.take();
        // Removal fails while the killed processes are being reaped; retry briefly.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        tracing::debug!("could not remove cgroup {}", self.dir.display());
    }
}

/// In the child before exec: move this process into the cgroup.
pub fn join(fd: RawFd) -> std::io::Result<()> {
    let msg = b"0\n";
    // SAFETY: write to a descriptor opened by the parent; the buffer is a static slice.
    let rc = unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
