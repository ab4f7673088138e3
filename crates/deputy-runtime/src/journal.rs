//! The session journal: every event (but streamed deltas) appended to
//! `STATE/sessions/ID/events.jsonl`, one JSON line per event, flushed per event and fsynced at
//! turn ends. It holds the session's own events only (a subagent has a journal of its own), so
//! the conversation can be rebuilt from it alone (the `rebuild` module), which is what `deputy
//! resume` does, including after a crash.
//!
//! STATE is `$DEPUTY_HOME`, else `$XDG_STATE_HOME/deputy`, else `~/.local/state/deputy`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::{Event, EventKind, Status};

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no session matches `{0}`; `deputy sessions list` shows them")]
    NotFound(String),
    #[error("`{prefix}` matches {count} sessions ({}); give more of the id", examples.join(", "))]
    Ambiguous {
        prefix: String,
        count: usize,
        examples: Vec<String>,
    },
    #[error("{}: the journal has no session.started event; it cannot be resumed", .0.display())]
    Empty(PathBuf),
    #[error("no session has run in {} yet; `deputy sessions list --all` shows every workspace's", .0.display())]
    NoneHere(PathBuf),
}

/// Delete the journals of sessions whose last event is older than `age`; returns their ids.
/// A session still being written to is never old enough.
pub fn prune(state: &Path, age: std::time::Duration, dry_run: bool) -> Vec<String> {
    let Some(cutoff) = std::time::SystemTime::now().checked_sub(age) else {
        return Vec::new();
    };
    let mut gone = Vec::new();
    let Ok(entries) = std::fs::read_dir(state.join("sessions")) else {
        return gone;
    };
    for e in entries.flatten() {
        let journal = e.path().join("events.jsonl");
        let modified = journal
            .metadata()
            .or_else(|_| e.metadata())
            .and_then(|m| m.modified());
        if modified.is_ok_and(|m| m < cutoff) {
            let id = e.file_name().to_string_lossy().into_owned();
            if dry_run || std::fs::remove_dir_all(e.path()).is_ok() {
                gone.push(id);
            }
        }
    }
    gone.sort();
    gone
}

/// Where sessions are kept.
pub fn state_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("DEPUTY_HOME")
        .or_else(|| env("XDG_STATE_HOME").map(|p| p.join("deputy")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/deputy")))
}

/// The directory of one session.
pub fn session_dir(state: &Path, id: &str) -> PathBuf {
    state.join("sessions").join(id)
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Start the journal of a new session, with a fresh id (never one already on disk).
    pub fn create(state: &Path) -> Result<(String, Journal), JournalError> {
        let sessions = state.join("sessions");
        std::fs::create_dir_all(&sessions).map_err(|source| JournalError::Io {
            path: sessions.clone(),
            source,
        })?;
        loop {
            let id = new_session_id();
            match std::fs::create_dir(sessions.join(&id)) {
                Ok(()) => return Ok((id.clone(), Journal::open(state, &id)?)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(JournalError::Io {
                        path: sessions.join(&id),
                        source,
                    });
                }
            }
        }
    }

    /// Start the journal of a new session whose id was chosen beforehand; an id already on
    /// disk (or one that is not a plain name) is refused.
    pub fn create_named(state: &Path, id: &str) -> Result<Journal, JournalError> {
        let sessions = state.join("sessions");
        let io = |path: PathBuf| move |source| JournalError::Io { path, source };
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(io(sessions.join(id))(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a session id is letters, digits, `-` and `_`",
            )));
        }
        std::fs::create_dir_all(&sessions).map_err(io(sessions.clone()))?;
        std::fs::create_dir(sessions.join(id)).map_err(io(sessions.join(id)))?;
        Journal::open(state, id)
    }

    /// Open (creating as needed) the journal of session `id` for appending.
    pub fn open(state: &Path, id: &str) -> Result<Journal, JournalError> {
        let dir = session_dir(state, id);
        let io = |source| JournalError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Journals hold prompts and tool output: keep them private.
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join("events.jsonl");
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Journal { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event as one line, written with a single call.
    pub fn append(&mut self, event: &Event) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(event).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Make what was written durable (at turn ends and at the end of the session).
    pub fn sync(&mut self) {
        if let Err(e) = self.file.sync_data() {
            tracing::warn!("cannot sync the journal {}: {e}", self.path.display());
        }
    }
}

/// Read a journal. A last line cut short by a crash is skipped (and reported).
pub fn read_events(path: &Path) -> Result<(Vec<Event>, Vec<String>), JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut events = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => events.push(e),
            Err(e) => warnings.push(format!(
                "{}:{}: unreadable journal line skipped ({e})",
                path.display(),
                i + 1
            )),
        }
    }
    Ok((events, warnings))
}

/// One line of `deputy sessions list`.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub agent: String,
    pub model: String,
    pub workspace: String,
    pub started_ms: u64,
    /// `None` when the session never finished (running, or crashed).
    pub status: Option<Status>,
    pub prompt: String,
    pub result: String,
    pub parent_session_id: Option<String>,
    pub cost_usd: Option<f64>,
}

/// Every session in `state`, newest first.
pub fn list_sessions(state: &Path) -> Vec<SessionSummary> {
    let dir = state.join("sessions");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<SessionSummary> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            summarize(
                &e.path().join("events.jsonl"),
                &e.file_name().to_string_lossy(),
            )
        })
        .collect();
    out.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.id.cmp(&a.id)));
    out
}

fn summarize(path: &Path, id: &str) -> Option<SessionSummary> {
    let (events, _) = read_events(path).ok()?;
    let mut s = SessionSummary {
        id: id.to_string(),
        agent: String::new(),
        model: String::new(),
        workspace: String::new(),
        started_ms: 0,
        status: None,
        prompt: String::new(),
        result: String::new(),
        parent_session_id: None,
        cost_usd: None,
    };
    let mut seen_start = false;
    for e in &events {
        match &e.kind {
            EventKind::SessionStarted {
                agent,
                model,
                workspace,
                parent_session_id,
                ..
            } if !seen_start => {
                seen_start = true;
                s.agent = agent.clone();
                s.model = model.clone();
                s.workspace = workspace.clone();
                s.started_ms = e.ts_ms;
                s.parent_session_id = parent_session_id.clone();
            }
            EventKind::SessionStarted { .. } => s.status = None,
            EventKind::UserMessage { text } if s.prompt.is_empty() => s.prompt = text.clone(),
            EventKind::SessionFinished {
                status,
                result,
                cost_usd,
                ..
            } => {
                s.status = Some(*status);
                s.result = result.clone();
                s.cost_usd = *cost_usd;
            }
            _ => {}
        }
    }
    seen_start.then_some(s)
}

/// Whether a session ran in `workspace` (compared canonically).
/// A session in a worktree of the workspace (`.deputy/worktrees/NAME`, gone or not) is the
/// workspace's too.
pub fn in_workspace(s: &SessionSummary, workspace: &Path) -> bool {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (theirs, ours) = (canon(Path::new(&s.workspace)), canon(workspace));
    theirs == ours
        || theirs
            .strip_prefix(ours.join(crate::worktree::WORKTREES_DIR))
            .is_ok_and(|rest| rest.components().count() >= 1)
}

/// Find a session by id, unique id prefix, or `last`: the newest top-level session of
/// `workspace` (of any workspace when `None`).
pub fn find_session(
    state: &Path,
    wanted: &str,
    workspace: Option<&Path>,
) -> Result<String, JournalError> {
    let sessions = list_sessions(state);
    if wanted == "last" || wanted == "latest" {
        return sessions
            .iter()
            .filter(|s| workspace.is_none_or(|w| in_workspace(s, w)))
            .find(|s| s.parent_session_id.is_none())
            .map(|s| s.id.clone())
            .ok_or_else(|| match workspace {
                Some(w) => JournalError::NoneHere(w.to_path_buf()),
                None => JournalError::NotFound(wanted.to_string()),
            });
    }
    if sessions.iter().any(|s| s.id == wanted) {
        return Ok(wanted.to_string());
    }
    let matches: Vec<&SessionSummary> = sessions
        .iter()
        .filter(|s| s.id.starts_with(wanted))
        .collect();
    match matches.len() {
        0 => Err(JournalError::NotFound(wanted.to_string())),
        1 => Ok(matches[0].id.clone()),
        n => Err(JournalError::Ambiguous {
            prefix: wanted.to_string(),
            count: n,
            examples: matches.iter().take(3).map(|s| s.id.clone()).collect(),
        }),
    }
}

/// A new session id: sortable by time, short enough to type (`20261127-221930-8f3a1c`).
pub fn new_session_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let rand = random_u24(now.subsec_nanos());
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{rand:06x}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn random_u24(seed: u32) -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut x = u64::from(seed)
        ^ (u64::from(std::process::id()) << 20)
        ^ COUNTER.fetch_add(0x9E37_79B9, Ordering::Relaxed);
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) & 0xff_ffff) as u32
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_journal_is_new_and_its_id_a_plain_name() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create_named(dir.path(), "20261128-120000-abcdef").unwrap();
        assert!(
            j.path()
                .ends_with("sessions/20261128-120000-abcdef/events.jsonl")
        );
        assert!(Journal::create_named(dir.path(), "20261128-120000-abcdef").is_err());
        for bad in ["", "../x", "a/b", ".", "a b"] {
            assert!(Journal::create_named(dir.path(), bad).is_err(), "{bad:?}");
        }
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_419), (2025, 11, 27));
        let id = new_session_id();
        assert_eq!(id.len(), 22, "{id}");
        assert_ne!(new_session_id(), new_session_id());
    }
}
