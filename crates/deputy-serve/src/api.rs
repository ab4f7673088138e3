//! The endpoints.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deputy_llm::Usage;
use deputy_runtime::{Approval, Approver};

use crate::prepare::{Place, Start, make_session, prepare, scratch};
use crate::problem::{ApiJson, Problem};
use crate::store::{Entry, HttpApprover, PendingApproval, Phase, Seat};
pub use crate::types::*;
use crate::{App, TokenId};

/// The session `id`, if the caller's token made it (another token's sessions do not exist
/// for it).
pub(crate) fn entry(app: &App, owner: Option<usize>, id: &str) -> Result<Arc<Entry>, Problem> {
    app.registry
        .get(id)
        .filter(|e| e.owner == owner)
        .ok_or_else(|| Problem::not_found(format!("no session {id} on this server")))
}

pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<CreateSession>,
) -> Result<Accepted, Problem> {
    let key = crate::idempotency::key(&headers)?;
    if let Some(c) = &app.cluster {
        return crate::cluster::api::create(&app, c, owner, req, key).await;
    }
    let reservation = match key {
        None => None,
        Some(k) => match app.keys.reserve(owner, "session", k, &req)? {
            crate::idempotency::Seen::Done(first) => {
                let phase = entry(&app, owner, &first).map_or(Phase::Finished, |e| e.phase());
                return Ok(Accepted(created(&first, phase)));
            }
            crate::idempotency::Seen::New(r) => Some(r),
        },
    };
    let made = create_here(&app, owner, req).await?;
    if let Some(kept) = reservation.and_then(|r| r.done(&made.0.id)) {
        // On disk before the 202, like the session itself.
        crate::restore::update(&app, &made.0.id, |r| r.keys.push(kept));
    }
    Ok(made)
}

/// Make and start a session on the embedded store.
async fn create_here(
    app: &Arc<App>,
    owner: Option<usize>,
    req: CreateSession,
) -> Result<Accepted, Problem> {
    refuse_if_stopping(app)?;
    let p = prepare(app, &req).await?;
    if let Place::Dir(d) = &p.place {
        app.claim(d, owner).await?;
    }
    let seat = app.quotas.take(owner).ok_or_else(|| too_many(app))?;
    let (ws, repo_dir) = match &p.place {
        Place::Repo(r) => {
            let dir = crate::repo::clone(r, &app.opts.roots, &scratch(app)).await?;
            (dir.clone(), Some(Scratch(Some(dir))))
        }
        Place::Dir(d) => (d.clone(), None),
    };
    let slot: Arc<OnceLock<Weak<Entry>>> = Arc::new(OnceLock::new());
    let approver = Arc::new(LateApprover(slot.clone()));
    let mut session = make_session(app, &p, ws, approver, Start::New).await?;
    let e = Entry::new(
        session.id().to_string(),
        p.agent.name.clone(),
        owner,
        repo_dir.and_then(Scratch::keep),
        req.metadata.clone(),
    );
    let _ = slot.set(Arc::downgrade(&e));
    attach(&e, &mut session);
    if let Ok(mut s) = e.session.try_lock() {
        *s = Some(session);
    }
    // On disk before the 202: a restart serves it again (see `restore`).
    if let Some(state) = &app.opts.factory.state_dir {
        let mut request = req.clone();
        request.prompt = String::new();
        let record = crate::restore::Record {
            owner: app.owner_key(owner),
            agent: e.agent.clone(),
            created_us: e.created_us,
            metadata: e.metadata.clone(),
            request,
            repo_dir: e.repo_dir.clone(),
            runs: 1,
            prompt: req.prompt.clone(),
            patch: None,
            keys: Vec::new(),
        };
        if let Err(err) = crate::restore::save(state, &e.id, &record) {
            tracing::warn!(session = %e.id, "cannot keep the session's record (a restart will not show it): {err}");
        }
    }
    app.registry.prune(app.opts.retention);
    app.registry.insert(e.clone());
    start(app.clone(), e.clone(), Some(req.prompt), seat);
    Ok(Accepted(created(&e.id, e.phase())))
}

/// Send the session's events to its entry.
pub(crate) fn attach(e: &Arc<Entry>, session: &mut deputy_runtime::Session) {
    let sink = Arc::downgrade(e);
    session.set_sink(Arc::new(move |ev: &deputy_runtime::Event| {
        if let Some(e) = sink.upgrade() {
            e.push(ev);
        }
    }));
}

/// A prompt either store can take: not empty, and without NUL (U+0000), which PostgreSQL's
/// text cannot hold (refused on both stores, so they answer alike).
pub(crate) fn check_prompt(prompt: &str) -> Result<(), Problem> {
    let why = if prompt.is_empty() {
        "prompt is empty"
    } else if prompt.contains('\0') {
        "prompt contains a NUL character (U+0000); remove it"
    } else {
        return Ok(());
    };
    Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, why))
}

/// No run starts on a server that is stopping (the embedded store: nobody else would run it).
fn refuse_if_stopping(app: &App) -> Result<(), Problem> {
    if app.drain.stopping.is_cancelled() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down; start the session on another one",
        )
        .retry_after(10));
    }
    Ok(())
}

pub(crate) use crate::types::Accepted;

/// The answer to a session accepted.
pub(crate) fn created(id: &str, status: Phase) -> Created {
    Created {
        events: format!("/v1/sessions/{id}/events"),
        id: id.to_string(),
        status,
    }
}

/// The token has as many sessions going as it may.
pub(crate) fn too_many(app: &App) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "{} sessions are already queued or running for this token; wait for one to finish",
            app.opts.sessions_per_token
        ),
    )
    .retry_after(5)
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

/// Run `prompt` in the entry's session on a task of its own, once a place is free (no prompt:
/// go on from the journal); the run holds its token's `seat` until it ends.
pub(crate) fn start(app: Arc<App>, e: Arc<Entry>, prompt: Option<String>, seat: Seat) {
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
        if guard.is_none() {
            match crate::restore::reopen(&app, &e).await {
                Ok(s) => *guard = Some(s),
                Err(p) => {
                    tracing::error!(session = %e.id, "cannot go on with the session: {}", p.detail)
                }
            }
        }
        let Some(session) = guard.as_mut() else {
            e.set_phase(Phase::Finished);
            return;
        };
        e.set_phase(Phase::Running);
        session.set_cancel_token(cancel.clone());
        if permit.is_none() {
            cancel.cancel();
        }
        let outcome = session.run(prompt).await;
        crate::metrics::run_ended(outcome.status.as_str());
        drop(permit);
        let patch = crate::repo::patch_of(e.repo_dir.as_deref()).await;
        if patch.is_some() {
            crate::restore::update(&app, &e.id, |r| r.patch.clone_from(&patch));
        }
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
        drop(seat);
    });
}

pub(crate) async fn status(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, Problem> {
    if let Some(c) = &app.cluster {
        return crate::cluster::api::status(&app, c, owner, &id).await;
    }
    let e = entry(&app, owner, &id)?;
    let st = e
        .state
        .lock()
        .map_err(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    let mut v = view(
        &e.id,
        &e.agent,
        st.phase,
        st.outcome.as_ref(),
        st.approvals.len(),
        st.patch.clone(),
    );
    v.created_at = crate::clock::format(e.created_us);
    v.metadata = e.metadata.clone();
    if st.phase == Phase::Running {
        st.progress.show(&mut v);
    }
    Ok(Json(v))
}

/// A session as the API shows it.
pub(crate) fn view(
    id: &str,
    agent: &str,
    phase: Phase,
    o: Option<&deputy_runtime::Outcome>,
    pending_approvals: usize,
    patch: Option<String>,
) -> SessionView {
    SessionView {
        id: id.to_string(),
        agent: agent.to_string(),
        phase,
        status: o.map(|o| o.status.as_str().to_string()),
        result: o.map(|o| o.result.clone()),
        structured_output: o.and_then(|o| o.structured_output.clone()),
        usage: o.map(|o| usage(&o.usage)),
        cost_usd: o.and_then(|o| o.cost_usd),
        num_turns: o.map(|o| o.num_turns),
        files_changed: o.map(|o| o.files_changed.clone()).unwrap_or_default(),
        errors: o.map(|o| o.errors.clone()).unwrap_or_default(),
        pending_approvals,
        patch,
        worktree: o.and_then(|o| o.worktree.clone()),
        created_at: String::new(),
        metadata: Default::default(),
    }
}

fn usage(u: &Usage) -> UsageView {
    UsageView {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
    }
}

pub(crate) async fn message(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    ApiJson(m): ApiJson<MessageIn>,
) -> Result<Accepted, Problem> {
    let key = crate::idempotency::key(&headers)?;
    if let Some(c) = &app.cluster {
        return crate::cluster::api::message(&app, c, owner, &id, m, key).await;
    }
    let e = entry(&app, owner, &id)?;
    check_prompt(&m.prompt)?;
    let reservation = match key {
        None => None,
        Some(k) => match app.keys.reserve(owner, &format!("message:{id}"), k, &m)? {
            crate::idempotency::Seen::Done(_) => {
                return Ok(Accepted(created(&e.id, e.phase())));
            }
            crate::idempotency::Seen::New(r) => Some(r),
        },
    };
    let running = || {
        Problem::new(
            StatusCode::CONFLICT,
            "the session is still running; send the next message once it has finished",
        )
    };
    if e.phase() != Phase::Finished {
        return Err(running());
    }
    refuse_if_stopping(&app)?;
    // A continued session runs again: it takes a seat like a new one. Two messages at once:
    // one begins, the other is told the session is running.
    let seat = app.quotas.take(owner).ok_or_else(|| too_many(&app))?;
    if !e.begin_next() {
        return Err(running());
    }
    let kept = reservation.and_then(|r| r.done(&e.id));
    // On disk before the 202 (see `restore`).
    crate::restore::update(&app, &e.id, |r| {
        r.runs += 1;
        r.prompt.clone_from(&m.prompt);
        r.keys.extend(kept);
    });
    start(app.clone(), e.clone(), Some(m.prompt), seat);
    Ok(Accepted(created(&e.id, Phase::Queued)))
}

pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Health>), Problem> {
    if let Some(c) = &app.cluster {
        return crate::cluster::api::cancel(&app, c, owner, &id).await;
    }
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
    if let Some(c) = &app.cluster {
        return crate::cluster::api::approvals(&app, c, owner, &id).await;
    }
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
    if let Some(c) = &app.cluster {
        return crate::cluster::api::answer(&app, c, owner, &id, &call_id, a).await;
    }
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
    let approve = a.approve;
    let _ = tx.send(approval(a, &p.always_pattern));
    Ok(Json(Health {
        status: if approve { "approved" } else { "denied" }.into(),
    }))
}

/// What an answer means for the call.
pub(crate) fn approval(a: AnswerIn, always_pattern: &str) -> Approval {
    match (a.approve, a.always) {
        (true, false) => Approval::Once,
        (true, true) => Approval::Always {
            pattern: always_pattern.to_string(),
        },
        (false, _) => Approval::Deny {
            reason: a.reason.or(Some("refused over the API".into())),
        },
    }
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
    if app.drain.stopping.is_cancelled() {
        return Err(unready(
            "shutting down: the runs in flight are finishing or being handed over".into(),
        ));
    }
    if let Some(c) = &app.cluster {
        c.ping()
            .await
            .map_err(|e| unready(format!("the store does not answer: {e}")))?;
        if c.liveness.current().is_cancelled() {
            return Err(unready(
                "the store connection that shows this worker alive is being re-established".into(),
            ));
        }
    }
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
