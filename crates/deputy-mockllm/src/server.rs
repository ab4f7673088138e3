//! The HTTP server: routes, step selection, the request log.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::respond::{self, Frame, RequestShape};
use crate::script::Script;

/// One request as received, for tests to assert on.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Order of arrival, from 0.
    pub seq: usize,
    /// Milliseconds since the server started, when the request arrived.
    pub received_ms: f64,
    /// When its response body was fully sent (absent if the client went away first).
    pub done_ms: Option<f64>,
    pub path: String,
    /// The route that matched (`None`: the default steps).
    pub route: Option<usize>,
    pub step: usize,
    /// Which fault of the step was served, if any.
    pub fault: Option<usize>,
    /// Whether an `Authorization` header was sent (its value is never logged).
    pub authorized: bool,
    /// With [`ServeOptions::api_key`] set: whether the header was exactly `Bearer <that key>`
    /// (a request without it got OpenAI's 401). `None` when no key is expected.
    pub key_matched: Option<bool>,
    /// Strict mode refused the request: the error message it got.
    pub rejected: Option<String>,
    /// Its prompt, in tokens as the mock counts them ([`crate::tokens`]).
    pub prompt_tokens: u64,
    /// It did not fit the script's `context_window` and got the overflow 400.
    pub overflowed: bool,
    pub body: Value,
}

/// Where to listen and log.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// Address to bind; default 127.0.0.1 (set 0.0.0.0 only inside a container network).
    pub host: Option<std::net::IpAddr>,
    /// Append every request as a JSON line to this file.
    pub log_path: Option<PathBuf>,
    /// Expect this API key: a request without `Authorization: Bearer <key>` gets OpenAI's 401.
    pub api_key: Option<String>,
}

struct AppState {
    script: Script,
    api_key: Option<String>,
    started: Instant,
    log: Mutex<Vec<LoggedRequest>>,
    log_file: Option<Mutex<std::fs::File>>,
    /// Requests seen per (route, step), to serve a step's faults in order.
    seen: Mutex<HashMap<(Option<usize>, usize), usize>>,
    /// Requests answered per route (the step, with `by_request`).
    answered: Mutex<HashMap<Option<usize>, usize>>,
    prefixes: crate::tokens::PrefixCache,
    /// Requests that were not chat completions (`/v1/models`, a server's `/props` or
    /// `/api/show` asked for the context window), by path.
    probes: Mutex<Vec<String>>,
}

/// A running mock server. Dropping it shuts the server down.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MockServer {
    /// Start serving `script` on 127.0.0.1 (in the current tokio runtime).
    pub async fn start(script: Script, opts: ServeOptions) -> std::io::Result<MockServer> {
        let host = opts
            .host
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let listener = TcpListener::bind((host, opts.port)).await?;
        let addr = listener.local_addr()?;
        let log_file = match &opts.log_path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        let state = Arc::new(AppState {
            script,
            api_key: opts.api_key.clone(),
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            log_file,
            seen: Mutex::new(HashMap::new()),
            answered: Mutex::new(HashMap::new()),
            prefixes: crate::tokens::PrefixCache::default(),
            probes: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/models", get(models))
            .fallback(not_found)
            .with_state(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!("mock server stopped: {e}");
            }
        });
        Ok(MockServer {
            addr,
            state,
            shutdown: Some(tx),
        })
    }

    /// The base URL clients use, ending in `/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instant `received_ms` and `done_ms` count from.
    pub fn started(&self) -> Instant {
        self.state.started
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state.log).clone()
    }

    /// The paths of the requests that were not chat completions, in order.
    pub fn probes(&self) -> Vec<String> {
        lock(&self.state.probes).clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn models(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    lock(&state.probes).push(uri.path().to_string());
    let mut model =
        json!({"id": state.script.model_name(), "object": "model", "owned_by": "deputy-mockllm"});
    if let Some(w) = state.script.context_window {
        // vLLM's and OpenRouter's names for it.
        model["max_model_len"] = json!(w);
        model["context_length"] = json!(w);
    }
    axum::Json(json!({"object": "list", "data": [model]})).into_response()
}

async fn not_found(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    lock(&state.probes).push(uri.path().to_string());
    error_response(
        StatusCode::NOT_FOUND,
        "deputy-mockllm serves POST /v1/chat/completions and GET /v1/models",
        "not_found",
    )
}

fn error_response(status: StatusCode, message: &str, code: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": "invalid_request_error", "code": code}});
    (status, axum::Json(body)).into_response()
}

fn text_of(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Which route's steps apply, and which step (the number of assistant turns so far).
fn select(script: &Script, body: &Value) -> (Option<usize>, usize) {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let role = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let system: String = messages
        .iter()
        .filter(|m| role(m) == "system" || role(m) == "developer")
        .map(text_of)
        .collect::<Vec<_>>()
        .join("\n");
    let user = messages
        .iter()
        .find(|m| role(m) == "user")
        .map(text_of)
        .unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| role(m) == "user")
        .map(text_of)
        .unwrap_or_default();
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let step = messages.iter().filter(|m| role(m) == "assistant").count();
    let route = script.routes.iter().position(|r| {
        r.when
            .system_contains
            .as_ref()
            .is_none_or(|s| system.contains(s.as_str()))
            && r.when
                .user_contains
                .as_ref()
                .is_none_or(|s| user.contains(s.as_str()))
            && r.when
                .last_user_contains
                .as_ref()
                .is_none_or(|s| last_user.contains(s.as_str()))
            && r.when.model.as_ref().is_none_or(|m| m == model)
    });
    (route, step)
}

async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let received_ms = state.started.elapsed().as_secs_f64() * 1000.0;
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("request body is not JSON: {e}"),
                "invalid_json",
            );
        }
    };
    let script = &state.script;
    let (route, mut step_index) = select(script, &body);
    if script.by_request {
        step_index = lock(&state.answered).get(&route).copied().unwrap_or(0);
    }
    let prompt_tokens = crate::tokens::prompt_tokens(&body);
    let overflowed = script
        .context_window
        .is_some_and(|w| prompt_tokens + crate::tokens::reserved_output(&body) > w);
    let steps = match route {
        Some(r) => &script.routes[r].steps,
        None => &script.steps,
    };
    let fault_index = {
        let mut seen = lock(&state.seen);
        let n = seen.entry((route, step_index)).or_insert(0);
        let i = *n;
        *n += 1;
        i
    };
    let step = steps.get(step_index).or_else(|| {
        // Past the end: replay the last step when the script says so.
        let repeat = match route {
            Some(r) => script.routes[r].repeat_last,
            None => script.repeat_last,
        };
        if repeat { steps.last() } else { None }
    });
    let fault = step.and_then(|s| s.faults.get(fault_index));
    let key_matched = state.api_key.as_ref().map(|key| {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {key}"))
    });
    let violation = if script.lenient {
        None
    } else {
        crate::strict::violation(&body)
    };
    let seq = {
        let mut log = lock(&state.log);
        let seq = log.len();
        let entry = LoggedRequest {
            seq,
            received_ms,
            done_ms: None,
            path: "/v1/chat/completions".into(),
            route,
            step: step_index,
            fault: fault.map(|_| fault_index),
            authorized: headers.contains_key("authorization"),
            key_matched,
            rejected: violation
                .as_ref()
                .and_then(|v| v.pointer("/error/message"))
                .and_then(Value::as_str)
                .map(str::to_string),
            prompt_tokens,
            overflowed,
            body: body.clone(),
        };
        if let Some(f) = &state.log_file
            && let Ok(line) = serde_json::to_string(&entry)
        {
            let _ = writeln!(lock(f), "{line}");
        }
        log.push(entry);
        seq
    };
    if key_matched == Some(false) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_api_key",
        );
    }
    if let Some(v) = violation {
        return (StatusCode::BAD_REQUEST, axum::Json(v)).into_response();
    }
    if let (true, Some(w)) = (overflowed, script.context_window) {
        let body = crate::tokens::overflow_body(w, prompt_tokens);
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let Some(step) = step else {
        return error_response(
            StatusCode::BAD_REQUEST,
            &format!(
                "deputy-mockllm: the script has {} step(s){}; this conversation has {step_index} assistant turn(s), so it asks for step {}",
                steps.len(),
                route.map(|r| format!(" in route {r}")).unwrap_or_default(),
                step_index + 1
            ),
            "script_exhausted",
        );
    };
    let captured = substitute(step, &body);
    let step = captured.as_ref().unwrap_or(step);
    let delay = fault
        .and_then(|f| f.delay_ms)
        .or(step.delay_ms)
        .unwrap_or(0);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(f) = fault
        && let Some(status) = f.status
    {
        return fault_response(status, f);
    }
    *lock(&state.answered).entry(route).or_insert(0) += 1;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string();
    let cached_tokens = if script.prompt_cache {
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        state.prefixes.cached_tokens(route, &messages)
    } else {
        0
    };
    let shape = RequestShape {
        stream,
        include_usage,
        model: &model,
        prompt_tokens,
        cached_tokens,
        id: format!("chatcmpl-mock-{seq}"),
        step_index,
    };
    let on_done = {
        let state = state.clone();
        move || {
            let done = state.started.elapsed().as_secs_f64() * 1000.0;
            if let Some(e) = lock(&state.log).get_mut(seq) {
                e.done_ms = Some(done);
            }
        }
    };
    if let Some(replay) = &step.replay {
        let path = script.resolve_path(replay.path());
        return match respond::replay_frames(&path, replay.status()) {
            Ok((status, ctype, frames)) => frames_response(status, ctype, frames, on_done),
            Err(e) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!(
                    "deputy-mockllm: cannot read replay file {}: {e}",
                    path.display()
                ),
                "replay_missing",
            ),
        };
    }
    if !shape.stream {
        let body = respond::whole_body(step, &shape);
        on_done();
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let mut frames = respond::stream_frames(step, &shape);
    if let Some(f) = fault {
        frames = respond::apply_stream_fault(frames, f);
    }
    frames_response(200, "text/event-stream", frames, on_done)
}

/// Replace `{{capture:REGEX}}` in tool-call arguments by the first group of the last match of
/// REGEX in the conversation's messages. `None` when the step has nothing to replace.
fn substitute(step: &crate::script::Step, body: &Value) -> Option<crate::script::Step> {
    let needs = step
        .all_tool_calls()
        .iter()
        .any(|c| c.arguments.to_string().contains("{{capture:"));
    if !needs {
        return None;
    }
    let conversation: String = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().map(text_of).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    fn walk(v: &mut Value, conversation: &str) {
        match v {
            Value::String(s) => {
                while let Some(start) = s.find("{{capture:") {
                    let Some(len) = s[start..].find("}}") else {
                        break;
                    };
                    let pattern = s[start + 10..start + len].to_string();
                    let value = regex::Regex::new(&pattern)
                        .ok()
                        .and_then(|re| re.captures_iter(conversation).last())
                        .and_then(|c| c.get(1).map(|m| m.as_str().to_string()))
                        .unwrap_or_default();
                    s.replace_range(start..start + len + 2, &value);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, conversation)),
            Value::Object(map) => map.values_mut().for_each(|i| walk(i, conversation)),
            _ => {}
        }
    }
    let mut step = step.clone();
    if let Some(c) = &mut step.tool_call {
        walk(&mut c.arguments, &conversation);
    }
    for c in &mut step.tool_calls {
        walk(&mut c.arguments, &conversation);
    }
    Some(step)
}

fn fault_response(status: u16, f: &crate::script::Fault) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match &f.body {
        Some(Value::String(s)) => (status, s.clone()).into_response(),
        Some(v) => (status, axum::Json(v.clone())).into_response(),
        None => (
            status,
            axum::Json(json!({"error": {"message": format!("deputy-mockllm fault {}", status.as_u16()), "type": "mock_fault"}})),
        )
            .into_response(),
    };
    for (k, v) in &f.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

/// Calls its closure once when dropped after the body's last frame.
struct DoneGuard<F: FnMut()> {
    f: Option<F>,
}

impl<F: FnMut()> DoneGuard<F> {
    fn fire(&mut self) {
        if let Some(mut f) = self.f.take() {
            f();
        }
    }
}

fn frames_response<F>(
    status: u16,
    content_type: &'static str,
    frames: Vec<Frame>,
    on_done: F,
) -> Response
where
    F: FnMut() + Send + 'static,
{
    let total = frames.len();
    let guard = Arc::new(Mutex::new(DoneGuard { f: Some(on_done) }));
    let stream = futures::stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| {
        let guard = guard.clone();
        async move {
            let out = match frame {
                Frame::Data(b) => Ok(b),
                Frame::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    Ok(Bytes::new())
                }
                Frame::Drop => {
                    // Give the frames before the drop time to leave the socket buffer, so the
                    // client really sees a stream cut in the middle, not an empty response.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(std::io::Error::other(
                        "deputy-mockllm: dropping the connection",
                    ))
                }
            };
            if i + 1 == total && out.is_ok() {
                lock(&guard).fire();
            }
            out
        }
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}
