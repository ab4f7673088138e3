//! Catching what a command leaves behind when there is no cgroup to do it (Landlock, without
//! root or a delegated cgroup). A process that leaves the command's session (`setsid -f`, a
//! daemon's double fork) escapes the process-group kill; with deputy a *child subreaper*, such
//! orphans become deputy's own children instead of init's, and after each command every child
//! of deputy that it did not start itself is killed, then its children in turn as they are
//! reparented.
//!
//! deputy starts few processes of its own besides commands (MCP servers it talks to): those
//! register here ([`Known`]) so they are never taken for orphans.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

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

/// Kill every child of deputy it did not start on purpose (orphans adopted from commands), and
/// theirs as they are reparented. Returns how many were killed.
pub fn kill_orphans() -> usize {
    let mut killed = 0;
    for _ in 0..20 {
        let live: HashSet<u32> = known().lock().unwrap_or_else(|p| p.into_inner()).clone();
        let orphans: Vec<u32> = children()
            .into_iter()
            .filter(|p| !live.contains(p))
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
