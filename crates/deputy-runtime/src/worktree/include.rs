//! `.worktreeinclude` (Claude Code's): ignored files a new worktree needs (`.env`, local
//! config), in `.gitignore` syntax. Only files that are both listed and ignored by git are
//! copied, each a regular file read and written through the workspace jail (a symlink is
//! skipped, never followed: deputy copies outside the sandbox).

use std::path::Path;

use deputy_tools::Workspace;

use super::{Git, WORKTREES_DIR, WorktreeError};

/// The file listing what to copy.
pub const INCLUDE_FILE: &str = ".worktreeinclude";
/// The largest file copied; larger ones are skipped with a warning.
const MAX_FILE: u64 = 64 << 20;

/// Copy into the worktree at `to` the files of `top` that `.worktreeinclude` lists and git
/// ignores. Returns nothing when there is no such file.
pub(super) fn copy_included(top: &Path, to: &Path, git: &Git) -> Result<(), WorktreeError> {
    let from = Workspace::open(top).map_err(|e| WorktreeError::Io(e.to_string()))?;
    let Ok(list) = from.resolve(INCLUDE_FILE) else {
        return Ok(());
    };
    let Ok(text) = from.read(&list, 64 << 10) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&text);
    let mut args = vec!["ls-files", "-z", "--others", "--ignored"];
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if patterns.is_empty() {
        return Ok(());
    }
    for p in &patterns {
        args.push("-x");
        args.push(p);
    }
    let listed = git.output(&args)?;
    let ignored = git.output(&[
        "ls-files",
        "-z",
        "--others",
        "--ignored",
        "--exclude-standard",
    ])?;
    let ignored: std::collections::HashSet<&str> = ignored.split('\0').collect();
    let mut into = Workspace::open(to).map_err(|e| WorktreeError::Io(e.to_string()))?;
    // What the user listed may be an `.env` file: copied, and protected in the worktree too.
    into.set_allow_protected(Some(std::sync::Arc::new(|rel: &str| {
        rel.rsplit('/')
            .next()
            .is_some_and(deputy_tools::protect::is_env_file)
    })));
    for rel in listed.split('\0').filter(|r| !r.is_empty()) {
        if !ignored.contains(rel)
            || rel.starts_with(".deputy/")
            || rel.split('/').any(|c| c == ".git")
            || rel.starts_with(&format!("{WORKTREES_DIR}/"))
        {
            continue;
        }
        let copied = from
            .resolve(rel)
            .and_then(|p| from.read(&p, MAX_FILE))
            .and_then(|bytes| {
                into.resolve(rel)
                    .and_then(|p| into.write_atomic(&p, &bytes))
            });
        if let Err(e) = copied {
            tracing::warn!("{INCLUDE_FILE}: {rel} not copied into the worktree: {e}");
        }
    }
    Ok(())
}
