//! A request made ready to run: its agent, settings and workspace checked against this server
//! (where it is received, and again on the worker that runs it), and the session made from it.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use deputy_runtime::{Approver, Session};

use crate::App;
use crate::problem::Problem;
use crate::types::CreateSession;

/// The agent used when a request names none.
const DEFAULT_AGENT: &str = "general";

/// The workspace a request names, inside the server's roots.
pub(crate) fn workspace(app: &App, wanted: Option<&str>) -> Result<PathBuf, Problem> {
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

/// A request checked: the agent, its settings, and where it works.
pub(crate) struct Prepared {
    pub agent: deputy_agent::AgentSpec,
    pub settings: deputy_runtime::RunSettings,
    pub place: Place,
    /// Work in a worktree of the workspace's repository (`isolation: worktree`).
    pub worktree: bool,
}

/// Where a session works.
pub(crate) enum Place {
    Dir(PathBuf),
    /// To be cloned by the worker that runs it.
    Repo(crate::repo::RepoIn),
}

/// Check a request against this server: the agent, the prompt, the workspace (or the
/// repository's address), the limits. Done where it is received and again where it runs.
pub(crate) async fn prepare(app: &App, req: &CreateSession) -> Result<Prepared, Problem> {
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
    crate::api::check_prompt(&req.prompt)?;
    crate::list::check_metadata(&req.metadata)?;
    let place = match (&req.repo, &req.workspace) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give `workspace` or `repo`, not both",
            ));
        }
        (Some(r), None) => {
            crate::repo::check(r, &app.opts.roots).await?;
            Place::Repo(r.clone())
        }
        (None, w) => Place::Dir(workspace(app, w.as_deref())?),
    };
    let worktree = req.isolation == Some(deputy_runtime::task::IsolationIn::Worktree);
    match (&place, worktree) {
        (Place::Repo(_), true) => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`isolation: worktree` is for a `workspace`; a `repo` session works in a clone of its own already",
            ));
        }
        (Place::Dir(d), true) => {
            let top = deputy_runtime::worktree::git::find_repo(d).map(|(t, _)| t);
            if top.as_deref().ok() != d.canonicalize().ok().as_deref() {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "`isolation: worktree` needs the workspace to be the top of a git repository; {} is not",
                        d.display()
                    ),
                ));
            }
        }
        _ => {}
    }
    let mut settings = app.opts.settings.clone();
    if let Some(m) = &req.model {
        // Said now, not as a failed run after the 202.
        app.opts
            .factory
            .check_model(m)
            .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("model: {e}")))?;
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
    Ok(Prepared {
        agent,
        settings,
        place,
        worktree,
    })
}

/// The scratch directory repositories are cloned into.
pub(crate) fn scratch(app: &App) -> PathBuf {
    app.opts
        .factory
        .state_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join("scratch")
}

/// How a session comes to be.
pub(crate) enum Start<'a> {
    /// A new session with a fresh id.
    New,
    /// A new session with the id it was queued under.
    Named(&'a str),
    /// Session `id`, from its journal.
    Resume(&'a str),
}

/// Make the session of a prepared request, working in `ws` and asking `approver` (unless the
/// server approves everything).
pub(crate) async fn make_session(
    app: &App,
    p: &Prepared,
    ws: PathBuf,
    approver: Arc<dyn Approver>,
    start: Start<'_>,
) -> Result<Session, Problem> {
    let mut factory = app.opts.factory.clone();
    factory.workspace = ws;
    if !app.opts.auto_approve {
        factory.approver = approver;
    }
    let bad = |e: String| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e);
    let (client, label, warnings) = factory
        .client(&p.agent, &p.settings)
        .await
        .map_err(|e| bad(e.to_string()))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let mut opts = factory
        .options(&p.agent, &p.settings, label)
        .map_err(|e| bad(e.to_string()))?;
    // A tenant's instructions are its workspace's own: not the repository around it, not the
    // operator's file (a tenant sees its system prompt).
    opts.instructions.confined = true;
    opts.skills.confined = true;
    // Making a session opens its journal (an fsync) and looks over the workspace: file system
    // work, kept off the threads that answer requests.
    let made = p.agent.clone();
    let start = match start {
        // A worktree is named after its session: the id is chosen first.
        Start::New if p.worktree => Some((deputy_runtime::journal::new_session_id(), false)),
        Start::New => None,
        Start::Named(id) => Some((id.to_string(), false)),
        Start::Resume(id) => Some((id.to_string(), true)),
    };
    if p.worktree
        && let Some((id, _)) = &start
    {
        // Its own worktree: the one an earlier run (here, or on a worker that died) left,
        // else a new one.
        let (ws, agent, id) = (factory.workspace.clone(), p.agent.name.clone(), id.clone());
        let wt = tokio::task::spawn_blocking(move || {
            deputy_runtime::worktree::Worktree::open_or_create(&deputy_runtime::worktree::Plan {
                workspace: &ws,
                agent: &agent,
                session_id: &id,
                parent_session_id: None,
                name: None,
                confined: true,
            })
        })
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| bad(format!("cannot make the session's worktree: {e}")))?;
        Arc::new(wt).apply(&mut opts);
    }
    let mut session = tokio::task::spawn_blocking(move || match start {
        None => Session::new(made, client, opts),
        Some((id, false)) => Session::named(&id, made, client, opts),
        Some((id, true)) => Session::resume(&id, made, client, opts),
    })
    .await
    .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| bad(e.to_string()))?;
    factory
        .task_runner(app.opts.agents.clone(), &p.settings, app.opts.task)
        .attach(&mut session, 0);
    Ok(session)
}
