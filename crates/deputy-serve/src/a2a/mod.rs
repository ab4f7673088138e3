//! A2A (Agent2Agent, protocol 1.0, JSON-RPC binding): `deputy serve` as a remote agent of an
//! agent platform, beside its REST API and over the same core, store, tokens and limits.
//!
//! `GET /.well-known/agent-card.json` is the Agent Card (the agents as skills, bearer auth,
//! streaming); `POST /a2a` takes `SendMessage`, `SendStreamingMessage`, `GetTask`,
//! `ListTasks`, `CancelTask`, `SubscribeToTask` and `GetExtendedAgentCard`. Every call goes
//! through the REST API's own handlers, so a token sees only its own tasks, the quotas hold,
//! and the shared (PostgreSQL) store serves A2A as the embedded one does. Streams are made by
//! looking at the task (every 100 ms; 400 ms on the shared store) and saying what changed:
//! status updates, and the answer as an artifact before the final status.

mod error;
mod task;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::{self, CreateSession, MessageIn};
use crate::problem::ApiJson;
use crate::{App, TokenId};
use error::A2aError;
use task::Seen;

/// The protocol version deputy speaks.
const PROTOCOL_VERSION: &str = "1.0";

/// How often a stream or a blocking call looks at its task: often on the embedded store (a
/// look is a lock in memory), less on the shared one (a look is two queries).
fn look_every(app: &App) -> Duration {
    if app.cluster.is_some() {
        Duration::from_millis(400)
    } else {
        Duration::from_millis(100)
    }
}

/// The base URL clients reached this server by (for the card's interface URL).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// `GET /.well-known/agent-card.json`: one card for the server, each agent a skill (chosen
/// with `metadata.agent` on a message).
pub(crate) async fn card(State(app): State<Arc<App>>, headers: HeaderMap) -> Json<Value> {
    Json(card_of(&app, &headers))
}

fn card_of(app: &App, headers: &HeaderMap) -> Value {
    let skills: Vec<Value> = app
        .opts
        .agents
        .iter()
        .filter(|a| !a.hidden && !a.disable)
        .map(|a| {
            json!({
                "id": a.name,
                "name": a.name,
                "description": a.description.clone().unwrap_or_else(|| format!("the {} agent", a.name)),
                "tags": ["deputy", format!("{:?}", a.mode).to_lowercase()],
                "inputModes": ["text/plain", "application/json"],
                "outputModes": ["text/plain", "application/json", "text/x-diff"],
            })
        })
        .collect();
    let mut card = json!({
        "name": "deputy",
        "description": "deputy's agents: coding agents that work in a sandboxed workspace, journal every step and answer with text, structured output or a patch. Choose one with `metadata.agent` on a message (default: the server's).",
        "supportedInterfaces": [{
            "url": format!("{}/a2a", base_url(headers)),
            "protocolBinding": "JSONRPC",
            "protocolVersion": PROTOCOL_VERSION,
        }],
        "provider": {"organization": "deputy", "url": "https://github.com/deputy-dev/deputy"},
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    });
    if !app.opts.tokens.is_empty() {
        card["securitySchemes"] = json!({"bearer": {"httpAuthSecurityScheme": {"scheme": "bearer", "description": "a token of DEPUTY_SERVE_TOKENS"}}});
        card["securityRequirements"] = json!([{"schemes": {"bearer": {"list": []}}}]);
    }
    card
}

/// `POST /a2a`: one JSON-RPC request. A body that is not JSON is the REST API's 400 (and 413,
/// 415), as for every endpoint; one that is not a JSON-RPC 2.0 request is a 400 with
/// JSON-RPC's "invalid request"; a request A2A refuses is a JSON-RPC error in a 200, as the
/// binding has it.
pub(crate) async fn rpc(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<Value>,
) -> Response {
    let (id, method) = match envelope(&req) {
        Ok(x) => x,
        Err(why) => {
            let id = req
                .get("id")
                .filter(|i| i.is_string() || i.is_i64() || i.is_u64())
                .cloned()
                .unwrap_or(Value::Null);
            let body = A2aError::new(error::INVALID_REQUEST, why).response(&id);
            return (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let method = method.as_str();
    let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
    let answer = match method {
        "SendMessage" => send(&app, owner, &params).await,
        "SendStreamingMessage" => {
            return match start(&app, owner, &params).await {
                Ok(task) => stream(app, owner, task, id).into_response(),
                Err(e) => Json(e.response(&id)).into_response(),
            };
        }
        "SubscribeToTask" => {
            let task = match str_param(&params, "id") {
                Ok(t) => t.to_string(),
                Err(e) => return Json(e.response(&id)).into_response(),
            };
            return match task::look(&app, owner, &task).await {
                Ok(_) => stream(app, owner, task, id).into_response(),
                Err(e) => Json(e.response(&id)).into_response(),
            };
        }
        "GetTask" => get(&app, owner, &params).await,
        "ListTasks" => list(&app, owner, &params).await,
        "CancelTask" => cancel(&app, owner, &params).await,
        "GetExtendedAgentCard" => Ok(card_of(&app, &headers)),
        m if m.contains("PushNotificationConfig") => Err(A2aError::new(
            error::PUSH_NOT_SUPPORTED,
            "deputy does not send push notifications; stream the task (SendStreamingMessage, SubscribeToTask) or poll it (GetTask)",
        )),
        other => Err(A2aError::new(
            error::METHOD_NOT_FOUND,
            format!(
                "deputy does not implement `{other}` (A2A {PROTOCOL_VERSION}, JSON-RPC binding)"
            ),
        )),
    };
    Json(match answer {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => e.response(&id),
    })
    .into_response()
}

/// The request's id and method, or why it is not a JSON-RPC 2.0 request.
fn envelope(req: &Value) -> Result<(Value, String), String> {
    let Some(o) = req.as_object() else {
        return Err("a JSON-RPC request is one object (no batches)".into());
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("`jsonrpc` must be \"2.0\"".into());
    }
    let id = o.get("id").cloned().unwrap_or(Value::Null);
    if !(id.is_null() || id.is_string() || id.is_i64() || id.is_u64()) {
        return Err("`id` is a string, an integer or null".into());
    }
    let method = o
        .get("method")
        .and_then(Value::as_str)
        .ok_or("a JSON-RPC request needs a `method` (a string)")?;
    if o.get("params").is_some_and(|p| !p.is_object()) {
        return Err("`params` is an object".into());
    }
    Ok((id, method.to_string()))
}

fn str_param<'a>(params: &'a Value, key: &str) -> Result<&'a str, A2aError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| A2aError::params(format!("`{key}` is required")))
}

/// `SendMessage`: start (or continue, or answer) a task; unless `returnImmediately`, wait
/// until it is done or waits for the client.
async fn send(app: &Arc<App>, owner: Option<usize>, params: &Value) -> Result<Value, A2aError> {
    let id = start(app, owner, params).await?;
    let now = params
        .pointer("/configuration/returnImmediately")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut seen = task::look(app, owner, &id).await?;
    while !now && !task::interrupted(task::state(&seen)) {
        tokio::time::sleep(look_every(app)).await;
        seen = task::look(app, owner, &id).await?;
    }
    Ok(json!({"task": task::task(&seen)}))
}

/// What a message does: answer the call a task waits on, continue a finished task (by
/// `taskId`, or by `contextId`), or start a new one. The task's id.
async fn start(app: &Arc<App>, owner: Option<usize>, params: &Value) -> Result<String, A2aError> {
    let message = params
        .get("message")
        .ok_or_else(|| A2aError::params("`message` is required"))?;
    if message.get("role").and_then(Value::as_str) == Some("ROLE_AGENT") {
        return Err(A2aError::params(
            "a message to the agent has role ROLE_USER",
        ));
    }
    let meta = |k: &str| {
        message
            .pointer(&format!("/metadata/{k}"))
            .or_else(|| params.pointer(&format!("/metadata/{k}")))
    };
    let existing = match message
        .get("taskId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(t) => Some(task::look(app, owner, t).await?),
        None => match message
            .get("contextId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            // A context of ours continues its session; one the client made up starts a new
            // one (its id is the context the client gets back).
            Some(c) => task::look(app, owner, c).await.ok(),
            None => None,
        },
    };
    if let Some(seen) = existing {
        return next(app, owner, seen, message).await;
    }
    let prompt = task::prompt(message)?;
    let string = |k: &str| meta(k).and_then(Value::as_str).map(str::to_string);
    let req = CreateSession {
        agent: string("agent"),
        prompt,
        workspace: string("workspace"),
        repo: None,
        model: string("model"),
        limits: None,
        output_schema: meta("outputSchema").cloned(),
        isolation: None,
        metadata: [("a2a".to_string(), "true".to_string())].into(),
    };
    let made = api::create(
        State(app.clone()),
        Extension(TokenId(owner)),
        HeaderMap::new(),
        ApiJson(req),
    )
    .await
    .map_err(|p| A2aError::from_problem(p, ""))?;
    Ok(made.0.id)
}

/// A message to an existing task.
async fn next(
    app: &Arc<App>,
    owner: Option<usize>,
    seen: Seen,
    message: &Value,
) -> Result<String, A2aError> {
    let id = seen.view.id.clone();
    let state = task::state(&seen);
    if let Some(waiting) = seen.approvals.first() {
        let a = task::answer(message).ok_or_else(|| {
            A2aError::params(format!(
                "task {id} waits for an answer about {} `{}`: send a data part {{\"approve\": true}} or {{\"approve\": false}}, or the text approve / deny",
                waiting.tool,
                waiting.subject.as_deref().unwrap_or("")
            ))
        })?;
        let _ = api::answer(
            State(app.clone()),
            Extension(TokenId(owner)),
            Path((id.clone(), waiting.call_id.clone())),
            ApiJson(a),
        )
        .await
        .map_err(|p| A2aError::from_problem(p, &id))?;
        return Ok(id);
    }
    if !task::terminal(state) {
        return Err(A2aError::new(
            error::UNSUPPORTED_OPERATION,
            format!(
                "task {id} is still working; send the next message once it is done, or cancel it"
            ),
        ));
    }
    let prompt = task::prompt(message)?;
    api::message(
        State(app.clone()),
        Extension(TokenId(owner)),
        Path(id.clone()),
        HeaderMap::new(),
        ApiJson(MessageIn { prompt }),
    )
    .await
    .map_err(|p| A2aError::from_problem(p, &id))?;
    Ok(id)
}

async fn get(app: &Arc<App>, owner: Option<usize>, params: &Value) -> Result<Value, A2aError> {
    let id = str_param(params, "id")?;
    Ok(task::task(&task::look(app, owner, id).await?))
}

/// `CancelTask`: cancel, then the task as it is once the run has stopped (at most 10 s).
async fn cancel(app: &Arc<App>, owner: Option<usize>, params: &Value) -> Result<Value, A2aError> {
    let id = str_param(params, "id")?;
    let seen = task::look(app, owner, id).await?;
    if task::terminal(task::state(&seen)) {
        return Err(A2aError::new(
            error::TASK_NOT_CANCELABLE,
            format!("task {id} is {} already", task::state(&seen)),
        ));
    }
    let _ = api::cancel(
        State(app.clone()),
        Extension(TokenId(owner)),
        Path(id.to_string()),
    )
    .await
    .map_err(|p| A2aError::from_problem(p, id))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = task::look(app, owner, id).await?;
    while !task::terminal(task::state(&seen)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(look_every(app)).await;
        seen = task::look(app, owner, id).await?;
    }
    Ok(task::task(&seen))
}

/// `ListTasks`: the token's tasks, newest first, a page at a time.
async fn list(app: &Arc<App>, owner: Option<usize>, params: &Value) -> Result<Value, A2aError> {
    if let Some(c) = params
        .get("contextId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let tasks = match task::look(app, owner, c).await {
            Ok(seen) => vec![task::task(&seen)],
            Err(_) => Vec::new(),
        };
        let n = tasks.len();
        return Ok(json!({"tasks": tasks, "nextPageToken": "", "pageSize": n, "totalSize": n}));
    }
    let size = params
        .get("pageSize")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .unwrap_or(50)
        .min(100);
    let mut query = format!("limit={size}");
    if let Some(t) = params
        .get("pageToken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        query.push_str(&format!(
            "&cursor={}",
            form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
        ));
    }
    let wanted = params
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| *s != "TASK_STATE_UNSPECIFIED");
    let page = crate::list::list(
        State(app.clone()),
        Extension(TokenId(owner)),
        RawQuery(Some(query)),
    )
    .await
    .map_err(|p| A2aError::from_problem(p, ""))?
    .0;
    let mut tasks = Vec::new();
    for s in &page.sessions {
        if let Ok(seen) = task::look(app, owner, &s.id).await
            && wanted.is_none_or(|w| w == task::state(&seen))
        {
            tasks.push(task::task(&seen));
        }
    }
    let n = tasks.len();
    Ok(json!({
        "tasks": tasks,
        "nextPageToken": page.next_cursor.unwrap_or_default(),
        "pageSize": size,
        "totalSize": n,
    }))
}

/// A task's events as server-sent events, each a JSON-RPC response to request `rpc_id`: the
/// task as it is, then each change of status, the answer as an artifact, until the task is
/// done or waits for the client.
fn stream(
    app: Arc<App>,
    owner: Option<usize>,
    id: String,
    rpc_id: Value,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    struct Cursor {
        app: Arc<App>,
        owner: Option<usize>,
        id: String,
        rpc_id: Value,
        started: bool,
        last_state: String,
        artifact_sent: bool,
        done: bool,
        queue: std::collections::VecDeque<Value>,
    }
    let cursor = Cursor {
        app,
        owner,
        id,
        rpc_id,
        started: false,
        last_state: String::new(),
        artifact_sent: false,
        done: false,
        queue: Default::default(),
    };
    let events = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(result) = c.queue.pop_front() {
                let msg = json!({"jsonrpc": "2.0", "id": c.rpc_id, "result": result});
                return Some((Ok(SseEvent::default().data(msg.to_string())), c));
            }
            if c.done {
                return None;
            }
            if c.started {
                tokio::time::sleep(look_every(&c.app)).await;
            }
            let seen = match task::look(&c.app, c.owner, &c.id).await {
                Ok(s) => s,
                Err(e) => {
                    c.done = true;
                    let msg = e.response(&c.rpc_id);
                    return Some((Ok(SseEvent::default().data(msg.to_string())), c));
                }
            };
            let state = task::state(&seen).to_string();
            if !c.started {
                c.started = true;
                c.queue.push_back(json!({"task": task::task(&seen)}));
                c.artifact_sent = task::artifact(&seen).is_some();
            } else if state != c.last_state {
                if !c.artifact_sent
                    && let Some(a) = task::artifact(&seen)
                {
                    c.artifact_sent = true;
                    c.queue.push_back(json!({"artifactUpdate": {
                        "taskId": c.id, "contextId": c.id, "artifact": a,
                        "append": false, "lastChunk": true,
                    }}));
                }
                c.queue.push_back(json!({"statusUpdate": {
                    "taskId": c.id, "contextId": c.id, "status": task::status(&seen),
                }}));
            }
            c.done = task::interrupted(&state);
            c.last_state = state;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
