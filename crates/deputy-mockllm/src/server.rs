//! The HTTP server: routes, step selection, the request log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::answer::{chat, count_tokens, messages, responses};
use crate::respond::Frame;
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
    /// The request in Chat Completions shape (`messages`, `tools`, …): as sent for chat, read
    /// into that shape for Anthropic and Responses, so tests look at every protocol alike.
    pub body: Value,
    /// The body as sent, when it was not chat (Anthropic's `messages` with blocks, Responses'
    /// `input` items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
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

pub(crate) struct AppState {
    pub(crate) script: Script,
    pub(crate) api_key: Option<String>,
    pub(crate) started: Instant,
    pub(crate) log: Mutex<Vec<LoggedRequest>>,
    pub(crate) log_file: Option<Mutex<std::fs::File>>,
    /// Requests seen per (route, step), to serve a step's faults in order.
    pub(crate) seen: Mutex<HashMap<(Option<usize>, usize), usize>>,
    /// Requests answered per route (the step, with `by_request`).
    pub(crate) answered: Mutex<HashMap<Option<usize>, usize>>,
    pub(crate) prefixes: crate::tokens::PrefixCache,
    /// Requests that were not chat completions (`/v1/models`, a server's `/props` or
    /// `/api/show` asked for the context window), by path.
    pub(crate) probes: Mutex<Vec<String>>,
    /// What each call was sent with that must come back (thinking, reasoning items).
    pub(crate) sent: crate::wire::Sent,
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
            sent: crate::wire::Sent::default(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/v1/messages", post(messages))
            .route("/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/responses", post(responses))
            .route("/responses", post(responses))
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        "deputy-mockllm serves POST /v1/chat/completions, /v1/messages, /v1/messages/count_tokens, /v1/responses and GET /v1/models",
        "not_found",
    )
}

pub(crate) fn error_response(status: StatusCode, message: &str, code: &str) -> Response {
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
pub(crate) fn select(script: &Script, body: &Value) -> (Option<usize>, usize) {
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

/// Replace `{{capture:REGEX}}` in tool-call arguments by the first group of the last match of
/// REGEX in the conversation's messages. `None` when the step has nothing to replace.
pub(crate) fn substitute(step: &crate::script::Step, body: &Value) -> Option<crate::script::Step> {
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

pub(crate) fn fault_response(status: u16, f: &crate::script::Fault) -> Response {
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

pub(crate) fn frames_response<F>(
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
