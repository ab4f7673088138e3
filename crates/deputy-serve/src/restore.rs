//! The embedded store across a restart. Each session's journal is on disk already; beside it,
//! `serve.json` keeps what the API needs and the journal does not say (the token that made it,
//! its request and labels, how many runs were asked for). At start-up every session is served
//! again: a finished one from its journal, one whose run was cut off by the stop resumed under
//! the takeover rule (a call that had started is reported interrupted, one that had not is run,
//! an answer on record ends it), and one still queued run.
//!
//! The record is written (atomically, synced) before the `202` that asks for a run, so a run
//! the client was told about is never forgotten; runs are counted, not flagged, so a stop
//! between a run's end and any later write cannot make it run twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deputy_runtime::{Event, EventKind, Outcome};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::list::Metadata;
use crate::problem::Problem;
use crate::store::{Entry, Phase};
use crate::types::CreateSession;

const FILE: &str = "serve.json";

/// What the API keeps about a session beside its journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The owner key (a hash) of the token that made it; none without tokens.
    pub owner: Option<String>,
    pub agent: String,
    pub created_us: i64,
    pub metadata: Metadata,
    /// The request it was made with, its prompt emptied.
    pub request: CreateSession,
    pub repo_dir: Option<PathBuf>,
    /// Runs asked for (the first, and each message); the journal's `session.finished` events
    /// say how many ended.
    pub runs: u32,
    /// The prompt of the last run asked for.
    pub prompt: String,
    /// A `repo` session's change after its last run.
    pub patch: Option<String>,
    /// The `Idempotency-Key`s that made or continued it.
    #[serde(default)]
    pub keys: Vec<crate::idempotency::KeptKey>,
}

fn path(state: &Path, id: &str) -> PathBuf {
    deputy_runtime::journal::session_dir(state, id).join(FILE)
}

/// Write `r` for session `id`, whole or not at all, and on disk before returning.
pub(crate) fn save(state: &Path, id: &str, r: &Record) -> std::io::Result<()> {
    use std::io::Write;
    let dest = path(state, id);
    let tmp = dest.with_extension("json.tmp");
    let text = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &dest)
}

pub(crate) fn load(state: &Path, id: &str) -> Option<Record> {
    let text = std::fs::read(path(state, id)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Change the record of `id` with `f` (a failure is logged: the session goes on).
pub(crate) fn update(app: &App, id: &str, f: impl FnOnce(&mut Record)) {
    let Some(state) = &app.opts.factory.state_dir else {
        return;
    };
    if let Some(mut r) = load(state, id) {
        f(&mut r);
        if let Err(e) = save(state, id, &r) {
            tracing::warn!(session = %id, "cannot keep the session's record: {e}");
        }
    }
}

/// The outcome a `session.finished` event records.
fn outcome_of(id: &str, e: &Event) -> Option<Outcome> {
    let EventKind::SessionFinished {
        status,
        result,
        structured_output,
        usage,
        cost_usd,
        duration_ms,
        num_turns,
        files_changed,
        errors,
        metrics,
        worktree,
    } = &e.kind
    else {
        return None;
    };
    Some(Outcome {
        session_id: id.to_string(),
        status: *status,
        result: result.clone(),
        structured_output: structured_output.clone(),
        usage: *usage,
        cost_usd: *cost_usd,
        duration_ms: *duration_ms,
        num_turns: *num_turns,
        files_changed: files_changed.clone(),
        errors: errors.clone(),
        // Not in `session.finished`: the journal's `warning` events hold them.
        warnings: Vec::new(),
        metrics: metrics.clone(),
        worktree: worktree.clone(),
    })
}

/// What a restored session needs next.
enum Next {
    Nothing,
    /// The run asked for never began: run its prompt.
    Run(String),
    /// The run was cut off by the stop: go on from the journal.
    Resume,
}

/// Serve again every session of the state directory that this server made and still may
/// show; start what was queued or cut off. Called once, at start-up.
pub(crate) fn restore(app: &Arc<App>) {
    let Some(state) = app.opts.factory.state_dir.clone() else {
        return;
    };
    let Ok(dirs) = std::fs::read_dir(state.join("sessions")) else {
        return;
    };
    let mut restored = 0;
    for d in dirs.flatten() {
        let id = d.file_name().to_string_lossy().into_owned();
        let Some(rec) = load(&state, &id) else {
            continue;
        };
        // The token that made it, by its hash: tokens may be listed in another order now, and
        // a session of a token no longer configured is not served.
        let owner = match (&rec.owner, app.opts.tokens.is_empty()) {
            (None, true) => None,
            (Some(k), false) => match app
                .opts
                .tokens
                .iter()
                .position(|t| crate::cluster::owner_key(t) == *k)
            {
                Some(i) => Some(i),
                None => continue,
            },
            _ => continue,
        };
        let journal = deputy_runtime::journal::session_dir(&state, &id).join("events.jsonl");
        let events = deputy_runtime::journal::read_events(&journal)
            .map(|(e, _)| e)
            .unwrap_or_default();
        let own = |e: &&Event| e.session_id == id;
        let ended: Vec<&Event> = events
            .iter()
            .filter(own)
            .filter(|e| matches!(e.kind, EventKind::SessionFinished { .. }))
            .collect();
        let cut_off = events
            .iter()
            .rfind(own)
            .is_some_and(|e| !matches!(e.kind, EventKind::SessionFinished { .. }));
        let next = if u32::try_from(ended.len()).unwrap_or(u32::MAX) >= rec.runs {
            Next::Nothing
        } else if cut_off {
            Next::Resume
        } else {
            Next::Run(rec.prompt.clone())
        };
        let last = ended.last().copied();
        if matches!(next, Next::Nothing) {
            // Finished: kept for the retention, counted from its end.
            let now_ms = u64::try_from(crate::clock::now_us() / 1000).unwrap_or(0);
            let age = last.map_or(0, |e| now_ms.saturating_sub(e.ts_ms));
            if std::time::Duration::from_millis(age) > app.opts.retention {
                continue;
            }
        }
        let e = Entry::restored(&id, &rec, owner);
        if let Ok(mut st) = e.state.lock() {
            for ev in &events {
                st.progress.add(&id, ev);
            }
            st.events = events.iter().cloned().map(Arc::new).collect();
            st.outcome = last.and_then(|l| outcome_of(&id, l));
            st.patch = rec.patch.clone();
            st.phase = Phase::Finished;
            st.finished_at = Some(std::time::Instant::now());
            e.count.send_replace(st.events.len());
        }
        for k in rec.keys.iter().cloned() {
            app.keys.restore(owner, &id, k);
        }
        app.registry.insert(e.clone());
        restored += 1;
        let prompt = match next {
            Next::Nothing => continue,
            Next::Run(p) => Some(p),
            Next::Resume => None,
        };
        let Some(seat) = app.quotas.take(owner) else {
            tracing::warn!(session = %id, "over its token's cap after the restart; not resumed");
            continue;
        };
        if !e.begin_next() {
            continue;
        }
        tracing::info!(session = %id, "resuming after the restart");
        crate::api::start(app.clone(), e, prompt, seat);
    }
    if restored > 0 {
        tracing::info!("{restored} sessions restored from the state directory");
    }
}

/// The session of an entry restored after a restart, made from its journal and record.
pub(crate) async fn reopen(app: &App, e: &Arc<Entry>) -> Result<deputy_runtime::Session, Problem> {
    let gone = |why: &str| {
        Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            why.to_string(),
        )
    };
    let state = app
        .opts
        .factory
        .state_dir
        .as_ref()
        .ok_or_else(|| gone("no state directory"))?;
    let rec = load(state, &e.id)
        .ok_or_else(|| gone("the session's record is gone from the state directory"))?;
    let rec_again = rec.clone();
    let mut req = rec.request;
    req.prompt = "continue".into();
    let p = crate::prepare::prepare(app, &req).await?;
    let ws = match (&p.place, &e.repo_dir) {
        (crate::prepare::Place::Dir(d), _) => d.clone(),
        (crate::prepare::Place::Repo(_), Some(dir)) if dir.is_dir() => dir.clone(),
        (crate::prepare::Place::Repo(_), _) => {
            return Err(gone("the session's scratch clone is gone"));
        }
    };
    let approver = Arc::new(crate::store::HttpApprover {
        entry: Arc::downgrade(e),
    });
    // A session whose first run never began has an empty journal: it starts afresh under its
    // id (the directory made again, its record put back).
    let dir = deputy_runtime::journal::session_dir(state, &e.id);
    let began = std::fs::read_to_string(dir.join("events.jsonl"))
        .is_ok_and(|t| t.contains("\"session.started\""));
    let start = if began {
        crate::prepare::Start::Resume(&e.id)
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        crate::prepare::Start::Named(&e.id)
    };
    let mut session = crate::prepare::make_session(app, &p, ws, approver, start).await?;
    if !began {
        let mut rec = rec_again;
        rec.request.prompt = String::new();
        save(state, &e.id, &rec).map_err(|err| gone(&err.to_string()))?;
    }
    crate::api::attach(e, &mut session);
    Ok(session)
}

impl Entry {
    /// The entry of a session restored from its record (no session object yet: it is made
    /// from the journal when a run needs it).
    fn restored(id: &str, rec: &Record, owner: Option<usize>) -> Arc<Entry> {
        Entry::with(
            id.to_string(),
            rec.agent.clone(),
            owner,
            rec.repo_dir.clone(),
            rec.metadata.clone(),
            rec.created_us,
        )
    }
}
