//! A worker: claims sessions from the store while it has room, runs each under a lease it
//! renews, and records how each run ended. A session claimed after its last worker died is
//! resumed from its events (its journal): calls that had started are closed as interrupted,
//! never run again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deputy_runtime::{Approval, ApprovalRequest, Approver, DecidedBy};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::notify::wait;
use super::writer::Record;
use super::{Cluster, Job, MAX_ATTEMPTS};
use crate::App;
use crate::api::{AnswerIn, CreateSession};
use crate::prepare::{Place, Start};
use crate::problem::Problem;
use crate::store::{PendingApproval, Phase};

/// Start this worker's claim loop (for the life of the process).
pub(crate) fn spawn_workers(app: Arc<App>) {
    if let Some(c) = app.cluster.clone() {
        tokio::spawn(claim_loop(app, c));
    }
}

async fn claim_loop(app: Arc<App>, c: Arc<Cluster>) {
    let mut rx = c.notices.subscribe();
    let mut pruned = Instant::now();
    let stopping = app.drain.stopping.clone();
    loop {
        let permit = tokio::select! {
            p = app.running.clone().acquire_owned() => p,
            () = stopping.cancelled() => return,
        };
        let Ok(permit) = permit else {
            return;
        };
        // A worker that cannot show it is alive claims nothing (the others could take it back
        // at once).
        let claimed = if c.liveness.current().is_cancelled() {
            Ok(None)
        } else {
            c.claim().await
        };
        match claimed {
            Ok(Some(job)) => {
                tracing::info!(session = %job.id, epoch = job.epoch, "claimed");
                let (app, c) = (app.clone(), c.clone());
                tokio::spawn(async move {
                    run_job(&app, &c, job).await;
                    drop(permit);
                });
                continue;
            }
            Ok(None) => drop(permit),
            Err(e) => {
                drop(permit);
                tracing::warn!("cannot claim work: {e}");
            }
        }
        if pruned.elapsed() > Duration::from_secs(60) {
            pruned = Instant::now();
            if let Err(e) = c.prune(app.opts.retention).await {
                tracing::warn!("cannot forget old sessions: {e}");
            }
        }
        // New work is announced; a lease that ran out is not, so look every second anyway.
        tokio::select! {
            () = wait(&mut rx, "deputy_jobs", None, Duration::from_secs(1)) => {}
            () = stopping.cancelled() => return,
        }
    }
}

/// What a worker does with a session once its run here has returned.
#[derive(Debug, PartialEq, Eq)]
enum AfterRun {
    /// Record the outcome (fenced by the epoch: a no-op if another worker holds it).
    Finish,
    /// Give it back to the queue now (this worker is stopping).
    Release,
    /// Nothing: the lease was lost or the store failed; another worker goes on from the
    /// record.
    Leave,
}

/// Whether the run's end made it on record decides, not when the signal came: a run whose
/// end is recorded is finished here, or the next worker would take that end for the previous
/// run's and start the prompt again.
fn after_run(handing_over: bool, closed: bool, ended: bool) -> AfterRun {
    match (ended, handing_over, closed) {
        (true, _, _) => AfterRun::Finish,
        (false, true, _) => AfterRun::Release,
        (false, false, true) => AfterRun::Leave,
        (false, false, false) => AfterRun::Finish,
    }
}

/// Give a session this worker stopped running back to the queue, with its change so far.
async fn release(c: &Cluster, job: &Job, repo: Option<&Path>) {
    let patch = crate::repo::patch_of(repo).await;
    match c.release(&job.id, job.epoch, patch.as_deref()).await {
        Ok(true) => tracing::info!(session = %job.id, "handed over"),
        Ok(false) => tracing::warn!(session = %job.id, "taken over before it was handed over"),
        Err(e) => tracing::error!(
            session = %job.id,
            "cannot hand the session over (another worker takes it when its lease runs out): {e}"
        ),
    }
}

/// Run a claimed session and record how it ended (unless another worker holds it by then).
async fn run_job(app: &App, c: &Arc<Cluster>, job: Job) {
    let cancel = CancellationToken::new();
    if job.cancel {
        cancel.cancel();
    }
    let rec = Arc::new(Record::default());
    // Stopping, out of time: nothing more is recorded, the run stops, and the session is
    // released to another worker.
    let handover = app.drain.handover.clone();
    // Lost: this worker can no longer show it is alive, so another may have the session.
    let lost = c.liveness.current();
    let watch = {
        let (rec, cancel) = (rec.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = handover.cancelled() => {}
                () = lost.cancelled() => {}
            }
            rec.closed.store(true, Ordering::Release);
            cancel.cancel();
        })
    };
    let mut scratch = None;
    let ran = run_claimed(app, c, &job, &cancel, &rec, &mut scratch).await;
    watch.abort();
    let next = after_run(
        app.drain.handover.is_cancelled(),
        rec.closed.load(Ordering::Acquire),
        rec.ended.load(Ordering::Acquire),
    );
    if next == AfterRun::Release {
        release(c, &job, scratch.as_deref()).await;
        if let Some(dir) = scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
        return;
    }
    let (view, patch) = match ran {
        Ok(done) => done,
        Err(p) => {
            let agent = job
                .request
                .get("agent")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut v = crate::api::view(&job.id, agent, Phase::Finished, None, 0, None);
            v.status = Some("error".into());
            v.errors = vec![p.detail];
            (v, None)
        }
    };
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    if next == AfterRun::Leave {
        tracing::warn!(session = %job.id, "the lease was lost; the session is another worker's now");
        return;
    }
    let view = serde_json::to_value(&view).unwrap_or_default();
    match c.finish(&job.id, job.epoch, &view, patch.as_deref()).await {
        Ok(true) => {
            crate::metrics::run_ended(view["status"].as_str().unwrap_or("error"));
            tracing::info!(session = %job.id, "finished");
        }
        Ok(false) => tracing::warn!(session = %job.id, "taken over before it finished here"),
        Err(e) => tracing::error!(session = %job.id, "cannot record the end of the run: {e}"),
    }
}

async fn run_claimed(
    app: &App,
    c: &Arc<Cluster>,
    job: &Job,
    cancel: &CancellationToken,
    rec: &Arc<Record>,
    scratch: &mut Option<PathBuf>,
) -> Result<(crate::api::SessionView, Option<String>), Problem> {
    let fail = |why: String| Problem::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, why);
    if job.attempts > MAX_ATTEMPTS {
        return Err(fail(format!(
            "given up: the worker running this session stopped {} times in a row",
            job.attempts - 1
        )));
    }
    let Some(state) = app.opts.factory.state_dir.clone() else {
        return Err(fail(
            "this worker has no state directory for journals".into(),
        ));
    };
    let mut req: CreateSession = serde_json::from_value(job.request.clone())
        .map_err(|e| fail(format!("the stored request: {e}")))?;
    let prompt = job.prompt.clone().unwrap_or_default();
    req.prompt = if prompt.is_empty() {
        "continue".into()
    } else {
        prompt.clone()
    };
    let p = crate::prepare::prepare(app, &req).await?;
    let ws = match &p.place {
        Place::Dir(d) => d.clone(),
        Place::Repo(r) => {
            let dir = crate::repo::clone(r, &app.opts.roots, &crate::prepare::scratch(app)).await?;
            *scratch = Some(dir.clone());
            if let Some(patch) = job.patch.as_deref().filter(|p| !p.is_empty()) {
                crate::repo::apply(&dir, patch).await.map_err(fail)?;
            }
            dir
        }
    };
    let events = c.all_events(&job.id).await?;
    let own: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| session_of(e).as_deref() == Some(job.id.as_str()))
        .collect();
    let local = deputy_runtime::journal::session_dir(&state, &job.id);
    let (start, prompt) = if own.is_empty() {
        // Nothing on record: whatever a worker on this machine left locally is not the session.
        let _ = std::fs::remove_dir_all(&local);
        (Start::Named(&job.id), Some(prompt))
    } else {
        write_journal(&local, &own).map_err(|e| fail(format!("{}: {e}", local.display())))?;
        let next = if run_in_progress(&own) {
            None
        } else {
            Some(prompt)
        };
        (Start::Resume(&job.id), next)
    };
    let approver = Arc::new(StoreApprover {
        c: c.clone(),
        id: job.id.clone(),
    });
    let mut session = crate::prepare::make_session(app, &p, ws.clone(), approver, start).await?;
    session.set_cancel_token(cancel.clone());
    session.set_mirror(
        c.writer
            .mirror(job.id.clone(), job.epoch, cancel.clone(), rec.clone()),
    );
    let repo_dir = scratch.clone();
    let beat = tokio::spawn(heartbeat(
        c.clone(),
        job.id.clone(),
        job.epoch,
        cancel.clone(),
        rec.clone(),
        repo_dir.clone(),
    ));
    let outcome = session.run(prompt).await;
    beat.abort();
    let patch = crate::repo::patch_of(repo_dir.as_deref()).await;
    let view = crate::api::view(
        &job.id,
        &p.agent.name,
        Phase::Finished,
        Some(&outcome),
        0,
        None,
    );
    Ok((view, patch))
}

/// Renew the lease until aborted; a cancel asked for elsewhere, or a lease found lost, stops
/// the session. A repo session's change is checkpointed with each renewal, so the worker that
/// takes it over starts from it.
async fn heartbeat(
    c: Arc<Cluster>,
    id: String,
    epoch: i64,
    cancel: CancellationToken,
    rec: Arc<Record>,
    repo: Option<PathBuf>,
) {
    let mut rx = c.notices.subscribe();
    let mut next = Instant::now() + c.lease.heartbeat();
    loop {
        let left = next.saturating_duration_since(Instant::now());
        // Woken early by a cancel announced for this session: the renewal reads it.
        wait(&mut rx, "deputy_cancel", Some(&id), left).await;
        let patch = crate::repo::patch_of(repo.as_deref()).await;
        match c.renew(&id, epoch, patch.as_deref()).await {
            Ok(Some(cancelled)) => {
                if cancelled {
                    cancel.cancel();
                }
            }
            Ok(None) => {
                tracing::warn!(session = %id, "lease lost: another worker has taken the session");
                rec.closed.store(true, Ordering::Release);
                cancel.cancel();
                return;
            }
            Err(e) => tracing::warn!(session = %id, "cannot renew the lease: {e}"),
        }
        next = Instant::now() + c.lease.heartbeat();
    }
}

/// The `session_id` of a stored event.
fn session_of(event: &str) -> Option<String> {
    let v: Value = serde_json::from_str(event).ok()?;
    v.get("session_id")?.as_str().map(str::to_string)
}

fn kind_of(event: &str) -> Option<String> {
    let v: Value = serde_json::from_str(event).ok()?;
    v.get("type")?.as_str().map(str::to_string)
}

/// Whether the session's events end inside a run (a prompt taken, no `session.finished` yet):
/// the claim resumes that run rather than starting the next.
fn run_in_progress(own: &[&str]) -> bool {
    let mut open = false;
    for e in own {
        match kind_of(e).as_deref() {
            Some("user.message") => open = true,
            Some("session.finished") => open = false,
            _ => {}
        }
    }
    open
}

/// Put the session's own events where `Session::resume` reads them (replacing what this
/// machine had: the store is the record), all at once.
fn write_journal(dir: &Path, own: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("events.jsonl.tmp");
    let mut text = own.join("\n");
    text.push('\n');
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join("events.jsonl"))
}

/// `ask` rules answered through the store: the call waits as a row of `deputy_approvals`
/// until a client answers it on any worker.
struct StoreApprover {
    c: Arc<Cluster>,
    id: String,
}

impl Approver for StoreApprover {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            let pending = PendingApproval::from(r);
            let request = serde_json::to_value(&pending).unwrap_or_default();
            let mut rx = self.c.notices.subscribe();
            let mut asked = false;
            loop {
                if !asked {
                    asked = self.c.ask(&self.id, &r.call_id, &request).await.is_ok();
                }
                if asked {
                    match self.c.answer_of(&self.id, &r.call_id).await {
                        Ok(Some(a)) => {
                            let a: AnswerIn = serde_json::from_value(a).unwrap_or(AnswerIn {
                                approve: false,
                                always: false,
                                reason: Some("the answer could not be read".into()),
                            });
                            return crate::api::approval(a, &pending.always_pattern);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!("waiting for an answer: {e}"),
                    }
                }
                wait(
                    &mut rx,
                    "deputy_answers",
                    Some(&self.id),
                    Duration::from_secs(1),
                )
                .await;
            }
        })
    }

    fn decided_by(&self) -> DecidedBy {
        DecidedBy::User
    }
}

#[cfg(test)]
mod tests {
    use super::{AfterRun, after_run, run_in_progress};

    #[test]
    fn a_run_whose_end_is_on_record_is_finished_even_when_handing_over() {
        // (handing over, closed, ended)
        assert_eq!(after_run(true, true, true), AfterRun::Finish);
        assert_eq!(after_run(false, true, true), AfterRun::Finish);
        assert_eq!(after_run(true, true, false), AfterRun::Release);
        assert_eq!(after_run(true, false, false), AfterRun::Release);
        assert_eq!(after_run(false, true, false), AfterRun::Leave);
        // Ended without its end on record (e.g. set up failed before the run): the outcome
        // is what there is to record.
        assert_eq!(after_run(false, false, false), AfterRun::Finish);
    }

    #[test]
    fn a_run_is_in_progress_between_its_prompt_and_its_end() {
        let user = r#"{"type":"user.message","session_id":"s"}"#;
        let fin = r#"{"type":"session.finished","session_id":"s"}"#;
        let start = r#"{"type":"session.started","session_id":"s"}"#;
        assert!(!run_in_progress(&[start]));
        assert!(run_in_progress(&[start, user]));
        assert!(!run_in_progress(&[start, user, fin]));
        assert!(run_in_progress(&[start, user, fin, start, user]));
    }
}
