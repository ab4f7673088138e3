//! The embedded store: the sessions of this process, each with its event stream (also in its
//! journal on disk, as for every deputy session), its outcome, and the approvals it waits for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deputy_runtime::{Approval, ApprovalRequest, Approver, DecidedBy, Event, Outcome, Session};
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for a free place (the server runs at most `max_sessions` at once).
    Queued,
    Running,
    /// The last run ended; `POST …/messages` continues it.
    Finished,
}

/// A call waiting for an answer (an `ask` rule).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PendingApproval {
    pub call_id: String,
    pub agent: String,
    pub tool: String,
    pub input: serde_json::Value,
    /// What the rules were matched against (the command, the path, the URL).
    pub subject: Option<String>,
    /// Which rule asked.
    pub reason: String,
    /// The pattern `always: true` would allow for the rest of the session.
    pub always_pattern: String,
}

impl From<&ApprovalRequest> for PendingApproval {
    fn from(r: &ApprovalRequest) -> PendingApproval {
        PendingApproval {
            call_id: r.call_id.clone(),
            agent: r.agent.clone(),
            tool: r.tool.clone(),
            input: r.input.clone(),
            subject: r.subject.clone(),
            reason: r.reason.clone(),
            always_pattern: r.always_pattern(),
        }
    }
}

/// A session's model turns so far, counted from its own `turn.completed` events (its
/// subagents' are in the outcome once the run ends): what `GET` shows while a run goes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    pub turns: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
}

impl Progress {
    pub(crate) fn add(&mut self, session: &str, e: &Event) {
        if let deputy_runtime::EventKind::TurnCompleted {
            usage, cost_usd, ..
        } = &e.kind
            && e.session_id == session
        {
            self.turns += 1;
            self.input_tokens += usage.input_tokens;
            self.output_tokens += usage.output_tokens;
            if let Some(c) = cost_usd {
                self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + c);
            }
        }
    }

    /// Show these figures in `v` (a run is going: they are newer than the last outcome's).
    pub(crate) fn show(&self, v: &mut crate::types::SessionView) {
        v.num_turns = Some(self.turns);
        v.usage = Some(crate::types::UsageView {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        });
        v.cost_usd = self.cost_usd.or(v.cost_usd);
    }
}

pub(crate) struct State {
    pub phase: Phase,
    /// Every event of the session and its subagents, in order; an event's SSE id is its index.
    pub events: Vec<Arc<Event>>,
    pub outcome: Option<Outcome>,
    pub approvals: Vec<(PendingApproval, oneshot::Sender<Approval>)>,
    /// When the last run ended.
    pub finished_at: Option<std::time::Instant>,
    /// For a cloned repository: its change after the last run, as a unified diff.
    pub patch: Option<String>,
    /// Deleted: no further run may begin.
    pub deleted: bool,
    pub progress: Progress,
}

/// One session of the server.
pub struct Entry {
    pub id: String,
    pub agent: String,
    /// The token that made it (its index), when tokens are in use.
    pub owner: Option<usize>,
    /// The scratch clone the session works in (`repo`), removed with the entry.
    pub repo_dir: Option<std::path::PathBuf>,
    /// When it was made (microseconds since the epoch).
    pub created_us: i64,
    /// The client's labels.
    pub metadata: crate::list::Metadata,
    pub(crate) state: Mutex<State>,
    /// The number of events so far (SSE readers wait on it).
    pub(crate) count: watch::Sender<usize>,
    pub(crate) cancel: Mutex<CancellationToken>,
    /// The session itself, held by its run while it runs.
    pub(crate) session: tokio::sync::Mutex<Option<Session>>,
}

impl Entry {
    pub(crate) fn new(
        id: String,
        agent: String,
        owner: Option<usize>,
        repo_dir: Option<std::path::PathBuf>,
        metadata: crate::list::Metadata,
    ) -> Arc<Entry> {
        Entry::with(id, agent, owner, repo_dir, metadata, crate::clock::now_us())
    }

    /// An entry made at `created_us`.
    pub(crate) fn with(
        id: String,
        agent: String,
        owner: Option<usize>,
        repo_dir: Option<std::path::PathBuf>,
        metadata: crate::list::Metadata,
        created_us: i64,
    ) -> Arc<Entry> {
        Arc::new(Entry {
            id,
            agent,
            owner,
            repo_dir,
            created_us,
            metadata,
            state: Mutex::new(State {
                phase: Phase::Queued,
                events: Vec::new(),
                outcome: None,
                approvals: Vec::new(),
                finished_at: None,
                patch: None,
                deleted: false,
                progress: Progress::default(),
            }),
            count: watch::channel(0).0,
            cancel: Mutex::new(CancellationToken::new()),
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// Record an event (the session's sink).
    pub(crate) fn push(&self, e: &Event) {
        crate::metrics::event(e);
        if let Ok(mut st) = self.state.lock() {
            st.progress.add(&self.id, e);
            st.events.push(Arc::new(e.clone()));
            let n = st.events.len();
            self.count.send_replace(n);
        }
    }

    /// Queue the next run if the last one has finished; `false` if a run is queued or going,
    /// or the session was deleted.
    pub(crate) fn begin_next(&self) -> bool {
        self.state.lock().is_ok_and(|mut st| {
            let finished = st.phase == Phase::Finished && !st.deleted;
            if finished {
                st.phase = Phase::Queued;
            }
            finished
        })
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        if let Ok(mut st) = self.state.lock() {
            st.phase = phase;
        }
    }

    pub fn phase(&self) -> Phase {
        self.state
            .lock()
            .map(|s| s.phase)
            .unwrap_or(Phase::Finished)
    }

    /// Events from index `from` on.
    pub(crate) fn events_from(&self, from: usize) -> Vec<(usize, Arc<Event>)> {
        self.state
            .lock()
            .map(|st| {
                st.events
                    .iter()
                    .enumerate()
                    .skip(from)
                    .map(|(i, e)| (i, e.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The sessions of this server.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries.lock().ok()?.get(id).cloned()
    }

    pub fn insert(&self, e: Arc<Entry>) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(e.id.clone(), e);
        }
    }

    /// How many sessions are in each phase.
    pub(crate) fn phase_counts(&self) -> Vec<(Phase, u64)> {
        let mut n = [0u64; 3];
        if let Ok(m) = self.entries.lock() {
            for e in m.values() {
                n[match e.phase() {
                    Phase::Queued => 0,
                    Phase::Running => 1,
                    Phase::Finished => 2,
                }] += 1;
            }
        }
        vec![
            (Phase::Queued, n[0]),
            (Phase::Running, n[1]),
            (Phase::Finished, n[2]),
        ]
    }

    /// The sessions `owner` made.
    pub(crate) fn owned_by(&self, owner: Option<usize>) -> Vec<Arc<Entry>> {
        self.entries
            .lock()
            .map(|m| m.values().filter(|e| e.owner == owner).cloned().collect())
            .unwrap_or_default()
    }

    /// Remove session `id` of `owner` if it is finished (its scratch clone goes with it); a
    /// run cannot begin on it afterwards (see [`Entry::begin_next`]).
    pub(crate) fn remove_finished(&self, id: &str, owner: Option<usize>) -> crate::list::Deleted {
        use crate::list::Deleted;
        let Ok(mut m) = self.entries.lock() else {
            return Deleted::Missing;
        };
        let Some(e) = m.get(id).filter(|e| e.owner == owner).cloned() else {
            return Deleted::Missing;
        };
        let Ok(mut st) = e.state.lock() else {
            return Deleted::Missing;
        };
        if st.phase != Phase::Finished {
            return Deleted::Busy;
        }
        st.deleted = true;
        drop(st);
        m.remove(id);
        if let Some(dir) = &e.repo_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        Deleted::Yes
    }

    /// Sessions queued or running.
    pub(crate) fn unfinished(&self) -> Vec<Arc<Entry>> {
        self.entries
            .lock()
            .map(|m| {
                m.values()
                    .filter(|e| e.phase() != Phase::Finished)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forget sessions finished more than `retention` ago (their journals stay on disk).
    pub fn prune(&self, retention: std::time::Duration) {
        if let Ok(mut m) = self.entries.lock() {
            m.retain(|_, e| {
                let keep = e.state.lock().map_or(true, |st| {
                    st.phase != Phase::Finished
                        || st.finished_at.is_none_or(|t| t.elapsed() < retention)
                });
                if !keep && let Some(dir) = &e.repo_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                keep
            });
        }
    }
}

/// Each token's seats: a session holds one from the request that queues a run until the run
/// ends, so a token never has more than its cap of sessions queued or running, however many
/// requests arrive together.
pub(crate) struct Quotas {
    cap: usize,
    per: Mutex<HashMap<Option<usize>, Arc<tokio::sync::Semaphore>>>,
}

/// A token's seat, held by one run.
pub(crate) type Seat = tokio::sync::OwnedSemaphorePermit;

impl Quotas {
    pub(crate) fn new(cap: usize) -> Quotas {
        Quotas {
            cap: cap.max(1),
            per: Mutex::new(HashMap::new()),
        }
    }

    /// A seat for one more run of `owner`, if it has one left.
    pub(crate) fn take(&self, owner: Option<usize>) -> Option<Seat> {
        let sem = self
            .per
            .lock()
            .ok()?
            .entry(owner)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.cap)))
            .clone();
        sem.try_acquire_owned().ok()
    }
}

/// `ask` rules answered over HTTP: the call waits in `GET …/approvals` until
/// `POST …/approvals/{call_id}` answers it (or the session is cancelled).
pub(crate) struct HttpApprover {
    pub entry: std::sync::Weak<Entry>,
}

impl Approver for HttpApprover {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            let Some(entry) = self.entry.upgrade() else {
                return Approval::Deny {
                    reason: Some("the session is gone".into()),
                };
            };
            let (tx, rx) = oneshot::channel();
            if let Ok(mut st) = entry.state.lock() {
                st.approvals.push((PendingApproval::from(r), tx));
            }
            drop(entry);
            rx.await.unwrap_or(Approval::Deny {
                reason: Some("no answer was given".into()),
            })
        })
    }

    fn decided_by(&self) -> DecidedBy {
        DecidedBy::User
    }
}
