//! The endpoints.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use deputy_llm::Usage;
use deputy_runtime::{Approval, Approver, EventKind, Session};
use futures::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::{ApiJson, Problem};
use crate::store::{Entry, HttpApprover, PendingApproval, Phase};
use crate::{App, TokenId};

/// The agent used when a request names none.
const DEFAULT_AGENT: &str = "general";

/// Limits for one session (each bounded as on the command line).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsIn {
    pub max_steps: Option<u32>,
    /// Wall-clock limit in seconds (above 0, at most 30 days).
    #[schemars(range(max = 2_592_000.0), extend("exclusiveMinimum" = 0))]
    pub timeout_s: Option<f64>,
    pub max_tokens: Option<u64>,
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
}

/// A new session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The agent (default: general).
    pub agent: Option<String>,
    /// The task.
    #[schemars(length(min = 1))]
    pub prompt: String,
    /// A directory inside one of the server's roots (default: the first root).
    pub workspace: Option<String>,
    /// Instead of `workspace`: a repository to clone into a scratch directory of the server;
    /// the session's change comes back as `patch`.
    pub repo: Option<crate::repo::RepoIn>,
    /// `provider/model` or an alias (default: the agent's, else the server's).
    pub model: Option<String>,
    pub limits: Option<LimitsIn>,
    /// A JSON Schema the final answer must match.
    pub output_schema: Option<Value>,
}

/// A session was accepted.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Created {
    pub id: String,
    pub status: Phase,
    /// Where to follow it (`GET`, server-sent events).
    pub events: String,
}

/// A session as it is now.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionView {
    pub id: String,
    pub agent: String,
    pub phase: Phase,
    /// How the last run ended (`completed`, `max_steps`, `timeout`, `budget`, `denied`,
    /// `cancelled`, `error`), once it has.
    pub status: Option<String>,
    pub result: Option<String>,
    pub structured_output: Option<Value>,
    pub usage: Option<UsageView>,
    pub cost_usd: Option<f64>,
    pub num_turns: Option<u32>,
    pub files_changed: Vec<String>,
    pub errors: Vec<String>,
    /// Calls waiting for an answer.
    pub pending_approvals: usize,
    /// For a `repo` session: its change as a unified diff, after each run.
    pub patch: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A further prompt for a finished session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    #[schemars(length(min = 1))]
    pub prompt: String,
}

/// The answer to a pending call.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerIn {
    pub approve: bool,
    /// With `approve`: allow calls matching the call's `always_pattern` for the rest of the
    /// session.
    #[serde(default)]
    pub always: bool,
    /// With a refusal: told to the model.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentView {
    pub name: String,
    pub description: Option<String>,
    pub mode: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    pub status: String,
}

/// The session `id`, if the caller's token made it (another token's sessions do not exist
/// for it).
fn entry(app: &App, owner: Option<usize>, id: &str) -> Result<Arc<Entry>, Problem> {
    app.registry
        .get(id)
        .filter(|e| e.owner == owner)
        .ok_or_else(|| Problem::not_found(format!("no session {id} on this server")))
}

/// The workspace a request names, inside the server's roots.
fn workspace(app: &App, wanted: Option<&str>) -> Result<PathBuf, Problem> {
    let roots: Vec<PathBuf> = app
        .opts
        .roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .collect();
    let Some(first) = roots.first().cloned() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has no usable root directory",
        ));
    };
    let Some(w) = wanted.filter(|w| !w.trim().is_empty()) else {
        return Ok(first);
    };
    let p = PathBuf::from(w);
    let p = if p.is_absolute() { p } else { first.join(p) };
    let p = p.canonicalize().map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("workspace {}: {e}", p.display()),
        )
    })?;
    if !p.is_dir() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("workspace {} is not a directory", p.display()),
        ));
    }
    if !roots.iter().any(|r| p.starts_with(r)) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "workspace {} is outside this server's roots; start deputy serve with --root DIR to allow it",
                p.display()
            ),
        ));
    }
    Ok(p)
}

pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    ApiJson(req): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<Created>), Problem> {
    let name = req.agent.as_deref().unwrap_or(DEFAULT_AGENT);
    let Some(agent) = app
        .opts
        .agents
        .iter()
        .find(|a| a.name == name && !a.disable)
        .cloned()
    else {
        return Err(Problem::not_found(format!(
            "no agent `{name}`; GET /v1/agents lists them"
        )));
    };
    if req.prompt.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "prompt is empty",
        ));
    }
    let (ws, repo_dir) = match (&req.repo, &req.workspace) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give `workspace` or `repo`, not both",
            ));
        }
        (Some(r), None) => {
            let scratch = app
                .opts
                .factory
                .state_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join("scratch");
            let dir = crate::repo::clone(r, &app.opts.roots, &scratch).await?;
            (dir.clone(), Some(Scratch(Some(dir))))
        }
        (None, w) => (workspace(&app, w.as_deref())?, None),
    };
    if app.registry.active_of(owner) >= app.opts.sessions_per_token {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} sessions are already queued or running for this token; wait for one to finish",
                app.opts.sessions_per_token
            ),
        )
        .retry_after(5));
    }
    let mut settings = app.opts.settings.clone();
    if req.model.is_some() {
        settings.model = req.model.clone();
    }
    if let Some(l) = &req.limits {
        if let Some(n) = l.max_steps {
            settings.max_steps = Some(n.max(1));
        }
        if let Some(t) = l.timeout_s {
            settings.timeout = Some(deputy_agent::duration_from_secs(t).ok_or_else(|| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("limits.timeout_s = {t}: must be above 0 and at most 30 days"),
                )
            })?);
        }
        if let Some(c) = l.max_cost_usd
            && c < 0.0
        {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("limits.max_cost_usd = {c}: must be 0 or more"),
            ));
        }
        settings.max_tokens = l.max_tokens.or(settings.max_tokens);
        settings.max_cost_usd = l.max_cost_usd.or(settings.max_cost_usd);
    }
    settings.output_schema = req.output_schema.clone();
    let slot: Arc<OnceLock<Weak<Entry>>> = Arc::new(OnceLock::new());
    let mut factory = app.opts.factory.clone();
    factory.workspace = ws;
    if !app.opts.auto_approve {
        factory.approver = Arc::new(LateApprover(slot.clone()));
    }
    let bad = |e: String| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e);
    let (client, label, warnings) = factory
        .client(&agent, &settings)
        .await
        .map_err(|e| bad(e.to_string()))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let opts = factory
        .options(&agent, &settings, label)
        .map_err(|e| bad(e.to_string()))?;
    // Making a session opens its journal (an fsync) and looks over the workspace: file system
    // work, kept off the threads that answer requests.
    let made = agent.clone();
    let mut session = tokio::task::spawn_blocking(move || Session::new(made, client, opts))
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| bad(e.to_string()))?;
    factory
        .task_runner(app.opts.agents.clone(), &settings, app.opts.task)
        .attach(&mut session, 0);
    let e = Entry::new(
        session.id().to_string(),
        agent.name.clone(),
        owner,
        repo_dir.and_then(Scratch::keep),
    );
    let _ = slot.set(Arc::downgrade(&e));
    let sink = Arc::downgrade(&e);
    session.set_sink(Arc::new(move |ev: &deputy_runtime::Event| {
        if let Some(e) = sink.upgrade() {
            e.push(ev);
        }
    }));
    if let Ok(mut s) = e.session.try_lock() {
        *s = Some(session);
    }
    app.registry.prune(app.opts.retention);
    app.registry.insert(e.clone());
    start(app.clone(), e.clone(), req.prompt);
    Ok((
        StatusCode::ACCEPTED,
        Json(Created {
            events: format!("/v1/sessions/{}/events", e.id),
            id: e.id.clone(),
            status: e.phase(),
        }),
    ))
}

/// A scratch clone, removed if the session it was made for is not created after all.
struct Scratch(Option<PathBuf>);

impl Scratch {
    /// The session owns it now.
    fn keep(mut self) -> Option<PathBuf> {
        self.0.take()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The approver of a session made before its entry: it answers through the entry once there.
struct LateApprover(Arc<OnceLock<Weak<Entry>>>);

impl Approver for LateApprover {
    fn approve<'a>(
        &'a self,
        r: &'a deputy_runtime::ApprovalRequest,
    ) -> futures::future::BoxFuture<'a, Approval> {
        let entry = self.0.get().cloned().unwrap_or_default();
        Box::pin(async move { HttpApprover { entry }.approve(r).await })
    }

    fn decided_by(&self) -> deputy_runtime::DecidedBy {
        deputy_runtime::DecidedBy::User
    }
}

/// Run `prompt` in the entry's session on a task of its own, once a place is free.
fn start(app: Arc<App>, e: Arc<Entry>, prompt: String) {
    e.set_phase(Phase::Queued);
    let cancel = tokio_util::sync::CancellationToken::new();
    if let Ok(mut c) = e.cancel.lock() {
        *c = cancel.clone();
    }
    tokio::spawn(async move {
        let permit = tokio::select! {
            p = app.running.clone().acquire_owned() => p.ok(),
            _ = cancel.cancelled() => None,
        };
        let mut guard = e.session.lock().await;
        let Some(session) = guard.as_mut() else {
            e.set_phase(Phase::Finished);
            return;
        };
        e.set_phase(Phase::Running);
        session.set_cancel_token(cancel.clone());
        if permit.is_none() {
            cancel.cancel();
        }
        let outcome = session.run(Some(prompt)).await;
        drop(permit);
        let patch = match e.repo_dir.clone() {
            Some(dir) => tokio::task::spawn_blocking(move || crate::repo::patch(&dir))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        if let Ok(mut st) = e.state.lock() {
            // Calls left waiting are answered no by the end of the run; forget them.
            st.approvals.clear();
            st.outcome = Some(outcome);
            st.phase = Phase::Finished;
            st.finished_at = Some(std::time::Instant::now());
            if patch.is_some() {
                st.patch = patch;
            }
        }
    });
}

pub(crate) async fn status(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, Problem> {
    let e = entry(&app, owner, &id)?;
    let st = e
        .state
        .lock()
        .map_err(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    let o = st.outcome.as_ref();
    Ok(Json(SessionView {
        id: e.id.clone(),
        agent: e.agent.clone(),
        phase: st.phase,
        status: o.map(|o| o.status.as_str().to_string()),
        result: o.map(|o| o.result.clone()),
        structured_output: o.and_then(|o| o.structured_output.clone()),
        usage: o.map(|o| usage(&o.usage)),
        cost_usd: o.and_then(|o| o.cost_usd),
        num_turns: o.map(|o| o.num_turns),
        files_changed: o.map(|o| o.files_changed.clone()).unwrap_or_default(),
        errors: o.map(|o| o.errors.clone()).unwrap_or_default(),
        pending_approvals: st.approvals.len(),
        patch: st.patch.clone(),
    }))
}

fn usage(u: &Usage) -> UsageView {
    UsageView {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
    }
}

/// The event stream: every event so far after `Last-Event-ID` (an event's id is its index in
/// the stream), then live ones, until the run ends (`session.finished` of this session).
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let e = entry(&app, owner, &id)?;
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    let cursor = Cursor {
        rx: e.count.subscribe(),
        e,
        next: from,
        queue: std::collections::VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        let ev = c.next_event().await?;
        Some((Ok(ev), c))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A reader's place in a session's event stream.
struct Cursor {
    e: Arc<Entry>,
    rx: tokio::sync::watch::Receiver<usize>,
    /// The index of the next event to send.
    next: usize,
    queue: std::collections::VecDeque<(usize, Arc<deputy_runtime::Event>)>,
    /// This session's `session.finished` was sent: the stream ends.
    done: bool,
}

impl Cursor {
    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some((i, ev)) = self.queue.pop_front() {
                self.next = i + 1;
                if matches!(ev.kind, EventKind::SessionFinished { .. })
                    && ev.session_id == self.e.id
                {
                    self.done = true;
                }
                let data = serde_json::to_string(&*ev).unwrap_or_default();
                return Some(
                    SseEvent::default()
                        .id(i.to_string())
                        .event(ev.kind.type_name())
                        .data(data),
                );
            }
            if self.done {
                return None;
            }
            self.queue = self.e.events_from(self.next).into();
            if self.queue.is_empty() {
                if self.e.phase() == Phase::Finished && self.next >= *self.rx.borrow() {
                    return None;
                }
                // Wait for more (or, at worst, look again in a second).
                let _ = tokio::time::timeout(Duration::from_secs(1), self.rx.changed()).await;
            }
        }
    }
}

pub(crate) async fn message(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
    ApiJson(m): ApiJson<MessageIn>,
) -> Result<(StatusCode, Json<Created>), Problem> {
    let e = entry(&app, owner, &id)?;
    if e.phase() != Phase::Finished {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "the session is still running; send the next message once it has finished",
        ));
    }
    if m.prompt.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "prompt is empty",
        ));
    }
    start(app.clone(), e.clone(), m.prompt);
    Ok((
        StatusCode::ACCEPTED,
        Json(Created {
            events: format!("/v1/sessions/{}/events", e.id),
            id: e.id.clone(),
            status: Phase::Queued,
        }),
    ))
}

pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Health>), Problem> {
    let e = entry(&app, owner, &id)?;
    if let Ok(c) = e.cancel.lock() {
        c.cancel();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Health {
            status: "cancelling".into(),
        }),
    ))
}

pub(crate) async fn approvals(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
) -> Result<Json<Vec<PendingApproval>>, Problem> {
    let e = entry(&app, owner, &id)?;
    let list = e
        .state
        .lock()
        .map(|st| st.approvals.iter().map(|(p, _)| p.clone()).collect())
        .unwrap_or_default();
    Ok(Json(list))
}

pub(crate) async fn answer(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path((id, call_id)): Path<(String, String)>,
    ApiJson(a): ApiJson<AnswerIn>,
) -> Result<Json<Health>, Problem> {
    let e = entry(&app, owner, &id)?;
    let pending = e.state.lock().ok().and_then(|mut st| {
        let i = st
            .approvals
            .iter()
            .position(|(p, _)| p.call_id == call_id)?;
        Some(st.approvals.remove(i))
    });
    let Some((p, tx)) = pending else {
        return Err(Problem::not_found(format!(
            "no call {call_id} is waiting for an answer in session {id}"
        )));
    };
    let answer = match (a.approve, a.always) {
        (true, false) => Approval::Once,
        (true, true) => Approval::Always {
            pattern: p.always_pattern.clone(),
        },
        (false, _) => Approval::Deny {
            reason: a.reason.or(Some("refused over the API".into())),
        },
    };
    let _ = tx.send(answer);
    Ok(Json(Health {
        status: if a.approve { "approved" } else { "denied" }.into(),
    }))
}

pub(crate) async fn agents(State(app): State<Arc<App>>) -> Json<Vec<AgentView>> {
    Json(
        app.opts
            .agents
            .iter()
            .filter(|a| !a.hidden && !a.disable)
            .map(|a| AgentView {
                name: a.name.clone(),
                description: a.description.clone(),
                mode: format!("{:?}", a.mode).to_lowercase(),
            })
            .collect(),
    )
}

pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready when the store (the state directory) can be written and commands can be sandboxed
/// (unless the server runs with the sandbox off).
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Health>, Problem> {
    let unready = |why: String| Problem::new(StatusCode::SERVICE_UNAVAILABLE, why).retry_after(10);
    if let Some(dir) = &app.opts.factory.state_dir {
        let probe = dir.join(".readyz");
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&probe, b"ok"))
            .map_err(|e| unready(format!("the store {} is not writable: {e}", dir.display())))?;
        let _ = std::fs::remove_file(probe);
    }
    let off = app.opts.settings.sandbox == Some(deputy_tools::SandboxMode::Off);
    if !off && deputy_tools::sandbox::probe().best().is_none() {
        return Err(unready(
            "no sandbox works here (deputy sandbox check says why)".into(),
        ));
    }
    Ok(Json(Health {
        status: "ready".into(),
    }))
}
