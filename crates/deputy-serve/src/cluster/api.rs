//! The endpoints on the PostgreSQL store: whichever worker a request reaches answers it from
//! the store, and work is queued there for whichever worker is free.

use axum::Json;
use axum::http::StatusCode;

use super::{Cluster, Queued, StoreError};
use crate::App;
use crate::api::{Accepted, AnswerIn, CreateSession, Health, MessageIn, SessionView};
use crate::problem::Problem;
use crate::store::{PendingApproval, Phase};

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        tracing::error!("{e}");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(5)
    }
}

fn gone(id: &str) -> Problem {
    Problem::not_found(format!("no session {id} on this server"))
}

pub(crate) fn phase_of(s: &str) -> Phase {
    match s {
        "queued" => Phase::Queued,
        "running" => Phase::Running,
        _ => Phase::Finished,
    }
}

pub(crate) async fn create(
    app: &App,
    c: &Cluster,
    owner: Option<usize>,
    req: CreateSession,
    key: Option<crate::idempotency::Key>,
) -> Result<Accepted, Problem> {
    let fingerprint = crate::idempotency::fingerprint(&req);
    // Checked here so a bad request is told at once; the worker that runs it checks again.
    let p = crate::prepare::prepare(app, &req).await?;
    if let crate::prepare::Place::Dir(d) = &p.place {
        app.claim(d, owner).await?;
    }
    let owner = app.owner_key(owner);
    let mut stored = req;
    if let crate::prepare::Place::Dir(d) = &p.place {
        stored.workspace = Some(d.display().to_string());
    }
    stored.agent = Some(p.agent.name.clone());
    let prompt = std::mem::take(&mut stored.prompt);
    let body = serde_json::to_value(&stored).map_err(|e| StoreError::Other(e.to_string()))?;
    let keyed = key.as_ref().map(|k| super::Keyed {
        key: &k.0,
        fingerprint: &fingerprint,
    });
    loop {
        let id = deputy_runtime::journal::new_session_id();
        let cap = app.opts.sessions_per_token;
        match c
            .enqueue(
                &id,
                owner.as_deref(),
                cap,
                &super::NewJob {
                    agent: &p.agent.name,
                    request: &body,
                    prompt: &prompt,
                },
                keyed.as_ref(),
            )
            .await?
        {
            Queued::Yes => {
                return Ok(Accepted(crate::api::created(&id, Phase::Queued)));
            }
            Queued::Existing(first) => {
                let phase = c
                    .row(&first, owner.as_deref())
                    .await?
                    .map_or(Phase::Queued, |r| phase_of(&r.phase));
                return Ok(Accepted(crate::api::created(&first, phase)));
            }
            Queued::KeyReused => return Err(crate::idempotency::reused()),
            Queued::Full => return Err(crate::api::too_many(app)),
            Queued::Conflict => {}
        }
    }
}

pub(crate) async fn status(
    app: &App,
    c: &Cluster,
    owner: Option<usize>,
    id: &str,
) -> Result<Json<SessionView>, Problem> {
    let owner = app.owner_key(owner);
    let row = c.row(id, owner.as_deref()).await?.ok_or_else(|| gone(id))?;
    let mut v = row
        .outcome
        .and_then(|mut o| {
            // The row has these (an outcome recorded before they were in the view lacks them).
            let fields = o.as_object_mut()?;
            fields.insert("created_at".into(), "".into());
            fields.insert("metadata".into(), serde_json::json!({}));
            serde_json::from_value::<SessionView>(o).ok()
        })
        .unwrap_or_else(|| crate::api::view(id, &row.agent, Phase::Queued, None, 0, None));
    v.phase = phase_of(&row.phase);
    if v.phase == Phase::Running {
        c.progress(id).await?.show(&mut v);
    }
    v.pending_approvals = usize::try_from(row.pending).unwrap_or(0);
    v.patch = row.patch;
    v.created_at = crate::clock::format(row.created_us);
    v.metadata = row.metadata;
    Ok(Json(v))
}

pub(crate) async fn message(
    app: &App,
    c: &Cluster,
    owner: Option<usize>,
    id: &str,
    m: MessageIn,
    idem: Option<crate::idempotency::Key>,
) -> Result<Accepted, Problem> {
    crate::api::check_prompt(&m.prompt)?;
    let key = app.owner_key(owner);
    let cap = app.opts.sessions_per_token;
    let fingerprint = crate::idempotency::fingerprint(&m);
    let keyed = idem.as_ref().map(|k| super::Keyed {
        key: &k.0,
        fingerprint: &fingerprint,
    });
    let queued = c
        .continue_with(id, key.as_deref(), cap, &m.prompt, keyed.as_ref())
        .await?;
    match queued {
        Queued::Yes => return Ok(Accepted(crate::api::created(id, Phase::Queued))),
        Queued::Existing(_) => {
            let row = c.row(id, key.as_deref()).await?.ok_or_else(|| gone(id))?;
            return Ok(Accepted(crate::api::created(id, phase_of(&row.phase))));
        }
        Queued::KeyReused => return Err(crate::idempotency::reused()),
        _ => {}
    }
    // Not there, or still running, whatever the count; else over the count.
    let row = c.row(id, key.as_deref()).await?.ok_or_else(|| gone(id))?;
    if queued == Queued::Full && row.phase == "finished" {
        return Err(crate::api::too_many(app));
    }
    Err(Problem::new(
        StatusCode::CONFLICT,
        "the session is still running; send the next message once it has finished",
    ))
}

pub(crate) async fn cancel(
    app: &App,
    c: &Cluster,
    owner: Option<usize>,
    id: &str,
) -> Result<(StatusCode, Json<Health>), Problem> {
    let key = app.owner_key(owner);
    if !c.cancel(id, key.as_deref()).await? {
        // Finished already (nothing to cancel), or not there.
        c.row(id, key.as_deref()).await?.ok_or_else(|| gone(id))?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Health {
            status: "cancelling".into(),
        }),
    ))
}

pub(crate) async fn approvals(
    app: &App,
    c: &Cluster,
    owner: Option<usize>,
    id: &str,
) -> Result<Json<Vec<PendingApproval>>, Problem> {
    let key = app.owner_key(owner);
    c.row(id, key.as_deref()).await?.ok_or_else(|| gone(id))?;
    let list = c
        .pending(id)
        .await?
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    Ok(Json(list))
}

pub(crate) async fn answer(
    app: &App,
    c: &Cluster,
    owner: Option<usize>,
    id: &str,
    call_id: &str,
    a: AnswerIn,
) -> Result<Json<Health>, Problem> {
    let key = app.owner_key(owner);
    c.row(id, key.as_deref()).await?.ok_or_else(|| gone(id))?;
    let stored = serde_json::json!({
        "approve": a.approve,
        "always": a.always,
        "reason": a.reason,
    });
    if c.answer(id, call_id, &stored).await?.is_none() {
        return Err(Problem::not_found(format!(
            "no call {call_id} is waiting for an answer in session {id}"
        )));
    }
    Ok(Json(Health {
        status: if a.approve { "approved" } else { "denied" }.into(),
    }))
}
