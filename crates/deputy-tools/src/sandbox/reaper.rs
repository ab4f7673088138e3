//! Catching what a command leaves behind when there is no cgroup to do it (Landlock, without
//! root or a delegated cgroup). A process that leaves the command's session (`setsid -f`, a
//! daemon's double fork) escapes the process-group kill; with deputy a *child subreaper*, such
//! orphans become deputy's own children instead of init's, and after each command every child
//! of deputy that it did not start itself is killed, then its children in turn as they are
//! reparented.
//!
//! A child counts as an orphan of a command only when it carries more seccomp filters than
//! deputy itself: every Landlock command gets one it can never remove, so that is a mark no
//! process of deputy's own (MCP servers, `git`) has, and no command can shed. Children deputy
//! starts on purpose also register here ([`Known`]); on a kernel that does not report
//! `Seccomp_filters` (before 5.9) that registry alone decides.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard};

/// Held (shared) from a deliberate spawn until its child is registered as [`Known`], and
/// (exclusively) while orphans are collected: a child of a command running beside this one is
/// never taken for an orphan in between.
fn gate() -> &'static RwLock<()> {
    static GATE: RwLock<()> = RwLock::new(());
    &GATE
}

/// Hold this across `spawn` and [`Known::new`] of a child deputy starts on purpose.
pub fn spawning() -> RwLockReadGuard<'static, ()> {
    gate().read().unwrap_or_else(|p| p.into_inner())
}

fn known() -> &'static Mutex<HashSet<u32>> {
    static KNOWN: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A child deputy started on purpose, registered for as long as this lives.
pub struct Known(u32);

impl Known {
    pub fn new(pid: u32) -> Known {
        known()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid);
        Known(pid)
    }
}

impl Drop for Known {
    fn drop(&mut self) {
        known()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// Make deputy the reaper of its descendants' orphans (once per process).
pub fn become_subreaper() {
    static DONE: OnceLock<bool> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: prctl with constant arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::warn!(
                "cannot become a child subreaper: processes a command detaches may outlive it"
            );
        }
        rc == 0
    });
}

/// deputy's direct children, from every thread's `children` list.
fn children() -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// How many seccomp filters process `pid` (`self` for deputy) carries, when the kernel says.
fn seccomp_filters(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Whether a child came out of a sandbox (see the module doc).
fn from_sandbox(pid: u32, own: Option<u32>) -> bool {
    match (own, seccomp_filters(&pid.to_string())) {
        (Some(own), Some(its)) => its > own,
        // The kernel does not say (or the child is gone): the registry decides.
        _ => true,
    }
}

/// Kill every child of deputy it did not start on purpose (orphans adopted from commands), and
/// theirs as they are reparented, until none is left: no pass limit (a detached chain goes one
/// level a pass; the process limit bounds how many there can be). Returns how many were killed.
pub fn kill_orphans() -> usize {
    let _collecting = gate().write().unwrap_or_else(|p| p.into_inner());
    let own = seccomp_filters("self");
    let mut killed = 0;
    loop {
        let live: HashSet<u32> = known().lock().unwrap_or_else(|p| p.into_inner()).clone();
        let orphans: Vec<u32> = children()
            .into_iter()
            .filter(|p| !live.contains(p) && from_sandbox(*p, own))
            .collect();
        if orphans.is_empty() {
            break;
        }
        for pid in orphans {
            let pid = pid as i32;
            // SAFETY: signalling and reaping a child of ours, found just above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
            killed += 1;
        }
    }
    killed
}
