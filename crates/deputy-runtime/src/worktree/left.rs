//! Worktrees a session left behind: each has a record `NAME.json` beside it, locked (`flock`)
//! by the process whose session works there. A kill releases the lock with the process, so a
//! record nobody locks is a worktree nobody works in.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Git, Record, Settled, WorktreeError, git, io};

fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Write `record` beside its worktree and hold its lock; the file is the lock.
pub(super) fn write_record(dir: &Path, record: &Record) -> Result<File, WorktreeError> {
    let path = record_path(dir, &record.name);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io(&path))?;
    f.lock().map_err(io(&path))?;
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| WorktreeError::Io(format!("{}: {e}", path.display())))?;
    f.write_all(&json).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(f)
}

/// The record `NAME.json` of session `session_id` and its lock, when it is there and nobody
/// holds it; `None` when there is none (or its worktree is gone: the record goes too).
pub(super) fn reopen(
    dir: &Path,
    name: &str,
    session_id: &str,
) -> Result<Option<(Record, File)>, WorktreeError> {
    let path = record_path(dir, name);
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(WorktreeError::Io(format!(
                "the worktree {name} is in use by another process"
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io(&path))?;
    let record: Record = serde_json::from_str(&text)
        .map_err(|e| WorktreeError::Io(format!("{}: {e}", path.display())))?;
    if record.session_id != session_id || record.path != dir.join(name) {
        return Err(WorktreeError::Io(format!(
            "the worktree {name} belongs to session {}",
            record.session_id
        )));
    }
    if !record.path.join(".git").is_file() {
        remove_record(&record)?;
        return Ok(None);
    }
    Ok(Some((record, file)))
}

pub(super) fn remove_record(record: &Record) -> Result<(), WorktreeError> {
    let Some(dir) = record.path.parent() else {
        return Ok(());
    };
    let path = record_path(dir, &record.name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
        _ => Ok(()),
    }
}

/// A record and whether its session still lives (its lock is held).
struct Found {
    record: Record,
    live: bool,
    /// The open record, locked by us when `!live`.
    _file: File,
}

fn found_in(dir: &Path) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        let live = match file.try_lock() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(_)) => continue,
        };
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            continue;
        }
        match serde_json::from_str::<Record>(&text) {
            // A record names the worktree beside it, nothing else.
            Ok(record) if record.path == dir.join(&record.name) => out.push(Found {
                record,
                live,
                _file: file,
            }),
            Ok(_) => tracing::warn!("{}: names a worktree elsewhere; ignored", path.display()),
            // Made but not written yet (its maker holds the lock), or damaged.
            Err(e) if !live => tracing::warn!("{}: {e}", path.display()),
            Err(_) => {}
        }
    }
    out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    out
}

/// The worktrees of `workspace`'s repository that no live session works in.
pub fn left_behind(workspace: &Path) -> Vec<Record> {
    let Ok((top, _)) = git::find_repo(workspace) else {
        return Vec::new();
    };
    let Ok(dir) = super::worktrees_dir(&top, false) else {
        return Vec::new();
    };
    found_in(&dir)
        .into_iter()
        .filter(|f| !f.live)
        .map(|f| f.record)
        .collect()
}

/// What `prune` did with one worktree.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub name: String,
    pub session_id: String,
    /// Its session still runs: left alone.
    pub live: bool,
    pub settled: Option<Settled>,
}

/// Settle and remove every worktree of `workspace`'s repository that no live session works
/// in: what was left uncommitted is committed on its branch (nothing is lost), then the
/// worktree goes; a branch with no change goes too. With `dry_run`, only say which.
pub fn prune(workspace: &Path, dry_run: bool) -> Result<Vec<PruneReport>, WorktreeError> {
    prune_where(workspace, dry_run, |_| true)
}

/// [`prune`] for the worktree of session `session_id` only (a deleted session's).
pub fn prune_session(
    workspace: &Path,
    session_id: &str,
) -> Result<Vec<PruneReport>, WorktreeError> {
    prune_where(workspace, false, |r| r.session_id == session_id)
}

fn prune_where(
    workspace: &Path,
    dry_run: bool,
    wanted: impl Fn(&Record) -> bool,
) -> Result<Vec<PruneReport>, WorktreeError> {
    let (top, git_dir) = git::find_repo(workspace)?;
    let Ok(dir) = super::worktrees_dir(&top, false) else {
        return Ok(Vec::new());
    };
    let main = Git::open(&git_dir, &top)?;
    let common = super::common_dir_of(&main)?;
    let mut reports = Vec::new();
    for f in found_in(&dir).into_iter().filter(|f| wanted(&f.record)) {
        let mut report = PruneReport {
            name: f.record.name.clone(),
            session_id: f.record.session_id.clone(),
            live: f.live,
            settled: None,
        };
        if !f.live && !dry_run {
            let r = &f.record;
            // Without a worktree of this repository there, nothing is added from it.
            let wt = super::linked(&main, &common, &r.path);
            let answer = format!(
                "deputy: session {} did not finish\n\nWhat it left in its worktree, committed by `deputy sessions prune`.",
                r.session_id
            );
            let settled = super::settle(&main, wt.as_ref(), r, &answer)?;
            if matches!(settled, Settled::Committed { .. }) {
                super::remove(&main, r, false)?;
            }
            report.settled = Some(settled);
        }
        reports.push(report);
    }
    if !dry_run && git_dir.is_dir() {
        super::serial::git_worktree(&main, &dir, &["prune"])?;
    }
    Ok(reports)
}
