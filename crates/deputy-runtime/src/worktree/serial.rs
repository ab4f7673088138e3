//! `git worktree add|remove|prune` one at a time per repository. Each reads every other
//! worktree's entry under `.git/worktrees/`, and an entry another `add` is still writing fails
//! it ("failed to read …/commondir"): parallel subagents of one repository would fail at random.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use super::{Git, WorktreeError, io};

/// The lock file beside the worktrees (`.deputy/worktrees/.lock`); held with `flock`, so a
/// killed holder releases it.
const LOCK: &str = ".lock";

/// Run `git worktree ARGS` in the main repository `main` while holding the lock of `dir`
/// (the repository's worktrees directory); what git printed.
pub(super) fn git_worktree(main: &Git, dir: &Path, args: &[&str]) -> Result<String, WorktreeError> {
    let path = dir.join(LOCK);
    // O_NOFOLLOW: a link planted there is refused, never followed to where it leads.
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io(&path))?;
    lock.lock().map_err(io(&path))?;
    let mut full = vec!["worktree"];
    full.extend_from_slice(args);
    Ok(main.output(&full)?)
}

#[cfg(test)]
mod tests {
    use super::super::{Plan, Settled, Worktree};
    use std::process::Command;

    fn git(dir: &std::path::Path, args: &[&str]) {
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// Many sessions of one repository make, commit and remove worktrees at once: none fails.
    /// (Unserialised, `git worktree add` read another's half-written entry and failed.)
    #[test]
    fn worktrees_made_and_removed_at_once_all_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path();
        std::fs::write(ws.join("a.txt"), "a\n").unwrap();
        git(ws, &["init", "-q", "-b", "main"]);
        git(ws, &["add", "-A"]);
        git(ws, &["commit", "-q", "-m", "init"]);
        for round in 0..10 {
            let handles: Vec<_> = (0..12)
                .map(|i| {
                    let ws = ws.to_path_buf();
                    std::thread::spawn(move || {
                        let sid = format!("20261206-000000-r{round}s{i}");
                        let plan = Plan {
                            workspace: &ws,
                            agent: "par",
                            session_id: &sid,
                            parent_session_id: None,
                            name: None,
                            confined: false,
                        };
                        let wt = Worktree::create(&plan).map_err(|e| e.to_string())?;
                        if i % 2 == 0 {
                            std::fs::write(wt.workspace().join("a.txt"), format!("{i}\n")).unwrap();
                        }
                        wt.settle("done").map_err(|e| e.to_string())
                    })
                })
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                let settled = h
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("session {i}: {e}"));
                assert_eq!(
                    matches!(settled, Settled::Committed { .. }),
                    i % 2 == 0,
                    "session {i}: {settled:?}"
                );
            }
        }
    }
}
