//! [`OpenAiClient`]: the Chat Completions client every provider goes through.
//!
//! One request runs as a small task: pick a target (the primary, or a fallback while the
//! primary's circuit breaker is open), send, parse the stream, and on a retryable failure wait
//! (server hint, else jittered exponential backoff) and go again. Events flow to the caller over
//! a channel; dropping the stream aborts the task and with it the HTTP request.
//!
//! A stream that dies before its finish reason is retried: nothing has acted on it yet, since
//! tools run only after a complete response. Deltas already handed out are declared void by a
//! `Retry { discard_partial: true }` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::breaker::{Admission, Breaker, BreakerConfig};
use crate::config::{Resolved, Target};
use crate::error::LlmError;
use crate::protocol::{self, Decode, DecodeError};
use crate::retry::{RetryPolicy, hint_in_text, parse_retry_after};
use crate::sse::SseDecoder;
use crate::types::{ChatRequest, EventStream, FinishReason, ModelClient, ModelEvent, Usage};
use crate::window::{ContextWindow, WindowSource};
use crate::wire::{ErrorInfo, STRIPPABLE_PARAMS, parse_error_body};

/// Largest error body read (the rest is not needed to explain the error).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Circuit breakers shared by every client of a process, one per provider name, so a failing
/// provider is skipped by all sessions (an MCP server runs many).
#[derive(Debug, Clone, Default)]
pub struct Breakers {
    config: BreakerConfig,
    map: Arc<Mutex<HashMap<String, Arc<Breaker>>>>,
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            map: Arc::default(),
        }
    }

    pub fn get(&self, provider: &str) -> Arc<Breaker> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(provider.to_string())
            .or_insert_with(|| Arc::new(Breaker::new(self.config)))
            .clone()
    }
}

/// An OpenAI-compatible streaming client with retries, fallbacks and a breaker per provider.
#[derive(Clone)]
pub struct OpenAiClient {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Vec<Target>,
    http: Vec<reqwest::Client>,
    breakers: Breakers,
    policy: RetryPolicy,
    /// Parameters each target refused, remembered for the life of the client (the session).
    stripped: Mutex<HashMap<String, Vec<String>>>,
    /// The primary target's context window, once known.
    window: tokio::sync::OnceCell<ContextWindow>,
}

impl OpenAiClient {
    /// A client for the resolved primary target and its fallbacks.
    pub fn new(
        resolved: Resolved,
        policy: RetryPolicy,
        breakers: Breakers,
    ) -> Result<Self, LlmError> {
        install_crypto_provider();
        let mut targets = vec![resolved.primary];
        targets.extend(resolved.fallbacks);
        let mut http = Vec::with_capacity(targets.len());
        for t in &targets {
            http.push(http_client(t)?);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                targets,
                http,
                breakers,
                policy,
                stripped: Mutex::new(HashMap::new()),
                window: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// A client for one target with default retry and breaker settings.
    pub fn single(target: Target) -> Result<Self, LlmError> {
        Self::new(
            Resolved {
                primary: target,
                fallbacks: Vec::new(),
                warnings: Vec::new(),
            },
            RetryPolicy::default(),
            Breakers::default(),
        )
    }

    /// The primary target.
    pub fn primary(&self) -> &Target {
        &self.inner.targets[0]
    }
}

/// Windows the servers of this process said, by `base_url model`: asked once per process, not
/// once per session (an MCP server or a parent with subagents opens many).
static ASKED: std::sync::OnceLock<Mutex<HashMap<String, Option<crate::window::Told>>>> =
    std::sync::OnceLock::new();

/// Config, then the server, then the shipped table, then the assumed default.
async fn window_of(http: &reqwest::Client, t: &Target) -> ContextWindow {
    let p = &t.provider;
    let table = crate::catalog::known_window(&t.model);
    if let Some(tokens) = p.context_window {
        return ContextWindow {
            tokens,
            max_output: p.max_output_tokens.or(table.map(|(_, o)| o)),
            source: WindowSource::Config,
        };
    }
    let key = format!("{} {}", p.base_url, t.model);
    let cache = ASKED.get_or_init(Mutex::default);
    let cached = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    let asked = match cached {
        Some(a) => a,
        None => {
            // Asked in an earlier run (and kept), else asked now and kept.
            let a = match crate::window_cache::recall(&p.base_url, &t.model) {
                Some(a) => a,
                None => {
                    let a = crate::window::ask_server(http, p, &t.model).await;
                    crate::window_cache::keep(&p.base_url, &t.model, a);
                    a
                }
            };
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, a);
            a
        }
    };
    if let Some((tokens, out)) = asked {
        return ContextWindow {
            tokens,
            max_output: p.max_output_tokens.or(out).or(table.map(|(_, o)| o)),
            source: WindowSource::Server,
        };
    }
    if let Some((tokens, out)) = table {
        return ContextWindow {
            tokens,
            max_output: p.max_output_tokens.or(Some(out)),
            source: WindowSource::Table,
        };
    }
    ContextWindow {
        max_output: p.max_output_tokens,
        ..ContextWindow::assumed()
    }
}

/// rustls needs one process-wide crypto provider; deputy uses ring (see DESIGN.md). Call it
/// before building any other reqwest client of the process (the OTLP exporter's).
pub fn install_crypto_provider() {
    // Err means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http_client(t: &Target) -> Result<reqwest::Client, LlmError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(t.provider.connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("deputy/", env!("CARGO_PKG_VERSION")));
    if is_loopback(&t.provider.base_url) {
        // A proxy from the environment must never capture traffic to a local server.
        b = b.no_proxy();
    }
    if !t.provider.base_url.starts_with("https://") {
        // Plain HTTP needs no roots: loading the system's (about 150 files) would sit on the
        // path to the first request for nothing.
        b = b.tls_certs_only(Vec::new());
    }
    b.build()
        .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]")
}

impl ModelClient for OpenAiClient {
    fn stream(&self, request: ChatRequest) -> EventStream {
        let (tx, rx) = mpsc::channel(256);
        let inner = self.inner.clone();
        let task = tokio::spawn(
            async move {
                inner.run(request, tx).await;
            }
            .instrument(tracing::Span::current()),
        );
        Box::pin(AbortOnDrop {
            rx,
            task: task.abort_handle(),
        })
    }

    fn describe(&self) -> String {
        self.inner.targets[0].label()
    }

    fn count_tokens(&self, request: ChatRequest) -> futures::future::BoxFuture<'_, Option<u64>> {
        Box::pin(async move { self.inner.count_tokens(&request).await })
    }

    fn context_window(&self) -> futures::future::BoxFuture<'_, ContextWindow> {
        Box::pin(async move {
            *self
                .inner
                .window
                .get_or_init(|| window_of(&self.inner.http[0], &self.inner.targets[0]))
                .await
        })
    }
}

/// The receiving end of a request; dropping it aborts the request task.
struct AbortOnDrop {
    rx: mpsc::Receiver<Result<ModelEvent, LlmError>>,
    task: tokio::task::AbortHandle,
}

impl futures::Stream for AbortOnDrop {
    type Item = Result<ModelEvent, LlmError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Tx = mpsc::Sender<Result<ModelEvent, LlmError>>;

/// How one attempt ended, when not with a complete response.
enum Failure {
    /// The caller went away.
    Closed,
    Error(LlmError),
}

impl From<LlmError> for Failure {
    fn from(e: LlmError) -> Self {
        Failure::Error(e)
    }
}

impl Inner {
    async fn run(&self, req: ChatRequest, tx: Tx) {
        let mut delays = self.policy.delays();
        let mut attempt: u32 = 0;
        let mut last_target: Option<usize> = None;
        loop {
            attempt += 1;
            let picked = self.pick();
            let outcome = match picked {
                Ok(idx) => {
                    if idx != 0 && last_target != Some(idx) {
                        let msg = format!(
                            "provider `{}` is failing (circuit breaker open); using fallback {}",
                            self.targets[0].provider.name,
                            self.targets[idx].label()
                        );
                        tracing::warn!("{msg}");
                        if send(&tx, ModelEvent::Warning { message: msg })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    } else if idx == 0 && last_target.is_some_and(|l| l != 0) {
                        tracing::info!("primary {} is back", self.targets[0].label());
                    }
                    last_target = Some(idx);
                    let mut emitted = false;
                    let result = self.attempt(idx, &req, &tx, &mut emitted).await;
                    let breaker = self.breakers.get(&self.targets[idx].provider.name);
                    match &result {
                        Ok(()) => breaker.success(),
                        Err(Failure::Error(e)) if e.is_retryable() => {
                            if breaker.failure() {
                                tracing::warn!(
                                    provider = %self.targets[idx].provider.name,
                                    "circuit breaker opened after repeated failures"
                                );
                            }
                        }
                        Err(Failure::Error(_)) => breaker.success(),
                        Err(Failure::Closed) => {}
                    }
                    result.map_err(|f| (f, emitted, idx))
                }
                Err(e) => Err((Failure::Error(e), false, 0)),
            };
            let (failure, emitted, idx) = match outcome {
                Ok(()) => return,
                Err(f) => f,
            };
            let err = match failure {
                Failure::Closed => return,
                Failure::Error(e) => e,
            };
            // A refused parameter: drop it and go again at once (once per parameter).
            if let Some(param) = self.refused_param(idx, &err) {
                let msg = format!(
                    "{} does not accept `{param}`; retrying without it (remembered for this session)",
                    self.targets[idx].label()
                );
                tracing::warn!("{msg}");
                if send(&tx, ModelEvent::Warning { message: msg })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let retry_after = err.retry_after();
            let next = delays.next();
            let delay = match (err.is_retryable(), retry_after, next) {
                (false, _, _) | (true, _, None) => {
                    let _ = tx.send(Err(err)).await;
                    return;
                }
                (true, Some(ra), Some(_)) => match self.policy.accept_retry_after(ra) {
                    Some(d) => d,
                    None => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                },
                (true, None, Some(d)) => d,
            };
            tracing::info!(attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying model request");
            let retry = ModelEvent::Retry {
                attempt,
                delay,
                reason: err.to_string(),
                discard_partial: emitted,
            };
            if send(&tx, retry).await.is_err() {
                return;
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Ask the primary target's server to count a request's prompt (Anthropic only).
    async fn count_tokens(&self, req: &ChatRequest) -> Option<u64> {
        let target = &self.targets[0];
        let p = &target.provider;
        if p.api != crate::types::Api::Anthropic {
            return None;
        }
        let prepared = protocol::prepare(
            req,
            &protocol::Settings {
                provider: p,
                model: &target.model,
                stripped: &[],
                max_output: None,
            },
        );
        let mut body = prepared.body;
        if let Some(o) = body.as_object_mut() {
            for k in ["max_tokens", "stream", "temperature", "top_p"] {
                o.remove(k);
            }
        }
        let mut rb = self.http[0]
            .post(format!("{}/messages/count_tokens", p.base_url))
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).ok()?);
        for (k, v) in prepared.headers.iter() {
            rb = rb.header(*k, v.as_str());
        }
        for (k, v) in &p.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let resp = tokio::time::timeout(p.request_timeout, rb.send())
            .await
            .ok()?
            .ok()?;
        if !resp.status().is_success() {
            tracing::debug!(status = resp.status().as_u16(), "count_tokens refused");
            return None;
        }
        let bytes = resp.bytes().await.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        protocol::anthropic::counted(&v)
    }

    /// The first target whose breaker lets a request through.
    fn pick(&self) -> Result<usize, LlmError> {
        for (i, t) in self.targets.iter().enumerate() {
            match self.breakers.get(&t.provider.name).admit() {
                Admission::Allowed | Admission::Probe => return Ok(i),
                Admission::Rejected => continue,
            }
        }
        Err(LlmError::Unavailable(format!(
            "{} is failing and its circuit breaker is open{}; try again later",
            self.targets[0].label(),
            if self.targets.len() > 1 {
                ", as are all fallbacks"
            } else {
                " (configure `fallback` models to keep working meanwhile)"
            }
        )))
    }

    /// If `err` says a strippable parameter is not supported, record it and return its name.
    fn refused_param(&self, idx: usize, err: &LlmError) -> Option<&'static str> {
        let LlmError::BadRequest {
            status: 400,
            message,
            code,
            param,
            ..
        } = err
        else {
            return None;
        };
        let msg = message.to_ascii_lowercase();
        let code = code.as_deref().unwrap_or("");
        let refused = matches!(
            code,
            "unsupported_value" | "unsupported_parameter" | "unknown_parameter"
        ) || msg.contains("unsupported")
            || msg.contains("not supported")
            || msg.contains("unknown parameter")
            || msg.contains("unrecognized")
            || msg.contains("extra inputs are not permitted")
            || msg.contains("does not support");
        if !refused {
            return None;
        }
        let p = STRIPPABLE_PARAMS.iter().copied().find(|p| {
            param
                .as_deref()
                .is_some_and(|x| x == *p || x.starts_with(&format!("{p}.")))
                || msg.contains(&format!("'{p}'"))
                || msg.contains(&format!("`{p}`"))
                || msg.contains(&format!("\"{p}\""))
                || msg.contains(&format!(" {p} "))
                || msg.contains(&format!(" {p}:"))
                || msg.contains(&format!(" {p}."))
        })?;
        let label = self.targets[idx].label();
        let mut stripped = self.stripped.lock().unwrap_or_else(|e| e.into_inner());
        let list = stripped.entry(label).or_default();
        if list.iter().any(|s| s == p) {
            return None;
        }
        list.push(p.to_string());
        Some(p)
    }

    async fn attempt(
        &self,
        idx: usize,
        req: &ChatRequest,
        tx: &Tx,
        emitted: &mut bool,
    ) -> Result<(), Failure> {
        let target = &self.targets[idx];
        let p = &target.provider;
        let stripped = {
            let map = self.stripped.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&target.label()).cloned().unwrap_or_default()
        };
        let max_output = if p.api == crate::types::Api::Anthropic {
            // Anthropic requires max_tokens: the model's own limit, when known.
            self.window
                .get()
                .and_then(|w| w.max_output)
                .or(p.max_output_tokens)
                .or(crate::catalog::known_window(&target.model).map(|(_, o)| o))
        } else {
            None
        };
        let prepared = protocol::prepare(
            req,
            &protocol::Settings {
                provider: p,
                model: &target.model,
                stripped: &stripped,
                max_output,
            },
        );
        let mut decoder = prepared.decoder;
        let body = serde_json::to_vec(&prepared.body)
            .map_err(|e| LlmError::Config(format!("cannot encode the request: {e}")))?;
        let url = format!("{}{}", p.base_url, prepared.path);
        let mut rb = self.http[idx]
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if p.stream {
            rb = rb.header(reqwest::header::ACCEPT, "text/event-stream");
        }
        for (k, v) in &prepared.headers {
            rb = rb.header(*k, v.as_str());
        }
        for (k, v) in &p.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let redact = |e: LlmError| match &p.api_key {
            Some(k) => e.redact(k),
            None => e,
        };
        let resp = match tokio::time::timeout(p.request_timeout, rb.send()).await {
            Err(_) => {
                return Err(LlmError::Timeout {
                    phase: "response",
                    after: p.request_timeout,
                    base_url: p.base_url.clone(),
                }
                .into());
            }
            Ok(Err(e)) => return Err(redact(transport_error(&e, target)).into()),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let headers = resp.headers().clone();
            let text = read_capped(resp, MAX_ERROR_BODY).await;
            return Err(redact(status_error(status, &headers, &text, target)).into());
        }
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let input_chars: usize = req.messages.iter().map(|m| m.char_len()).sum::<usize>()
            + req
                .tools
                .iter()
                .map(|t| t.description.len() + t.parameters.to_string().len())
                .sum::<usize>();
        let read = if is_json || !p.stream {
            self.whole_response(resp, target, tx, decoder.as_mut())
                .await
        } else {
            self.sse_response(resp, target, tx, decoder.as_mut()).await
        };
        *emitted = decoder.emitted();
        read?;
        let mut out = Vec::new();
        let (usage, reason) = decoder.finish(&mut out);
        let usage = usage.unwrap_or(Usage {
            input_tokens: input_chars.div_ceil(4) as u64,
            output_tokens: decoder.output_chars().div_ceil(4) as u64,
            estimated: true,
            ..Usage::default()
        });
        match &reason {
            FinishReason::Length => out.push(ModelEvent::Warning {
                message: format!(
                    "{}'s answer was cut off at its output token limit",
                    target.label()
                ),
            }),
            FinishReason::ContentFilter => out.push(ModelEvent::Warning {
                message: format!(
                    "{} declined to answer (refusal or content filter)",
                    target.label()
                ),
            }),
            _ => {}
        }
        out.push(ModelEvent::Usage { usage });
        out.push(ModelEvent::Finish {
            reason,
            provider: p.name.clone(),
            model: target.model.clone(),
        });
        for e in out {
            send(tx, e).await.map_err(|_| Failure::Closed)?;
        }
        Ok(())
    }

    async fn whole_response(
        &self,
        resp: reqwest::Response,
        target: &Target,
        tx: &Tx,
        decoder: &mut dyn Decode,
    ) -> Result<(), Failure> {
        let base_url = &target.provider.base_url;
        let bytes = match tokio::time::timeout(target.provider.idle_timeout, resp.bytes()).await {
            Err(_) => {
                return Err(LlmError::Timeout {
                    phase: "response body",
                    after: target.provider.idle_timeout,
                    base_url: base_url.clone(),
                }
                .into());
            }
            Ok(Err(_)) => {
                return Err(LlmError::StreamInterrupted {
                    base_url: base_url.clone(),
                }
                .into());
            }
            Ok(Ok(b)) => b,
        };
        let mut out = Vec::new();
        decoder
            .whole(&bytes, &mut out)
            .map_err(|e| decode_error(e, base_url))?;
        for e in out {
            send(tx, e).await.map_err(|_| Failure::Closed)?;
        }
        Ok(())
    }

    async fn sse_response(
        &self,
        resp: reqwest::Response,
        target: &Target,
        tx: &Tx,
        decoder: &mut dyn Decode,
    ) -> Result<(), Failure> {
        let p = &target.provider;
        let not_utf8 = |_| LlmError::MalformedStream {
            base_url: p.base_url.clone(),
            detail: "the stream is not UTF-8 text".into(),
        };
        let mut body = resp.bytes_stream();
        let mut sse = SseDecoder::new();
        let mut out = Vec::new();
        let mut done = false;
        'read: loop {
            while let Some(event) = sse.next_event().map_err(not_utf8)? {
                if decoder
                    .event(event, &mut out)
                    .map_err(|e| decode_error(e, &p.base_url))?
                {
                    done = true;
                    break 'read;
                }
            }
            // Hand over what this network read produced before waiting for more.
            for e in out.drain(..) {
                send(tx, e).await.map_err(|_| Failure::Closed)?;
            }
            let next = match tokio::time::timeout(p.idle_timeout, body.next()).await {
                // A server that keeps the connection open after the finish reason.
                Err(_) if decoder.is_complete() => break,
                Err(_) => {
                    return Err(LlmError::Timeout {
                        phase: "stream idle",
                        after: p.idle_timeout,
                        base_url: p.base_url.clone(),
                    }
                    .into());
                }
                Ok(next) => next,
            };
            match next {
                Some(Ok(bytes)) => sse.push(&bytes),
                // Broken after the finish reason: nothing of the answer is missing.
                Some(Err(_)) if decoder.is_complete() => break,
                Some(Err(_)) => {
                    return Err(LlmError::StreamInterrupted {
                        base_url: p.base_url.clone(),
                    }
                    .into());
                }
                None => {
                    if let Some(event) = sse.finish().map_err(not_utf8)? {
                        done = decoder
                            .event(event, &mut out)
                            .map_err(|e| decode_error(e, &p.base_url))?;
                    }
                    break;
                }
            }
        }
        for e in out {
            send(tx, e).await.map_err(|_| Failure::Closed)?;
        }
        // A missing end marker is fine once the finish reason came; a missing finish reason
        // is fine after the end marker if anything was said. Otherwise the stream was cut
        // short.
        let complete = decoder.is_complete() || (done && decoder.has_content());
        if !complete {
            return Err(LlmError::StreamInterrupted {
                base_url: p.base_url.clone(),
            }
            .into());
        }
        Ok(())
    }
}

fn decode_error(e: DecodeError, base_url: &str) -> LlmError {
    match e {
        DecodeError::Malformed(detail) => LlmError::MalformedStream {
            base_url: base_url.to_string(),
            detail,
        },
        DecodeError::Server(info) => in_stream_error(&info, base_url),
    }
}

async fn send(tx: &Tx, e: ModelEvent) -> Result<(), ()> {
    tx.send(Ok(e)).await.map_err(|_| ())
}

async fn read_capped(resp: reqwest::Response, cap: usize) -> String {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= cap {
            body.truncate(cap);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn transport_error(e: &reqwest::Error, target: &Target) -> LlmError {
    let base_url = target.provider.base_url.clone();
    if e.is_timeout() {
        return LlmError::Timeout {
            phase: "connect",
            after: target.provider.connect_timeout,
            base_url,
        };
    }
    // The innermost cause says the useful thing ("Connection refused").
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    LlmError::Transport {
        base_url,
        message: msg,
    }
}

fn in_stream_error(info: &ErrorInfo, base_url: &str) -> LlmError {
    if crate::overflow::is_context_overflow(
        info.code.as_deref(),
        info.kind.as_deref(),
        &info.message,
    ) {
        let (limit, requested) = crate::overflow::numbers(&info.message);
        return LlmError::ContextOverflow {
            base_url: base_url.to_string(),
            message: info.message.clone(),
            limit,
            requested,
        };
    }
    let code = info.code.clone();
    let c = code.as_deref().unwrap_or("");
    let retryable = matches!(
        c,
        "429"
            | "500"
            | "502"
            | "503"
            | "504"
            | "rate_limit_exceeded"
            | "server_error"
            | "overloaded"
    ) || info
        .kind
        .as_deref()
        .is_some_and(|k| k.contains("server_error") || k.contains("overloaded"));
    LlmError::InStream {
        message: info.message.clone(),
        code,
        retryable,
    }
}

/// Map a non-2xx response to its typed error.
pub fn status_error(status: u16, headers: &HeaderMap, body: &str, target: &Target) -> LlmError {
    let info = parse_error_body(body);
    let base_url = target.provider.base_url.clone();
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
        .or_else(|| {
            headers
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        })
        .or_else(|| {
            // Anthropic says when each of its limits resets; the latest one counts.
            headers
                .iter()
                .filter(|(k, _)| {
                    let k = k.as_str();
                    k.starts_with("anthropic-ratelimit-") && k.ends_with("-reset")
                })
                .filter_map(|(_, v)| v.to_str().ok())
                .filter_map(|v| crate::retry::until_rfc3339(v, SystemTime::now()))
                .max()
        })
        .or_else(|| hint_in_text(&info.message))
        .or_else(|| hint_in_text(body));
    if matches!(status, 400 | 413 | 422)
        && crate::overflow::is_context_overflow(
            info.code.as_deref(),
            info.kind.as_deref(),
            &info.message,
        )
    {
        let (limit, requested) = crate::overflow::numbers(&info.message);
        let (body_limit, body_requested) = crate::overflow::numbers(body);
        return LlmError::ContextOverflow {
            base_url,
            message: info.message,
            limit: limit.or(body_limit),
            requested: requested.or(body_requested),
        };
    }
    match status {
        401 | 403 => LlmError::Auth {
            status,
            base_url,
            message: info.message,
            key_hint: target.provider.key_hint(),
        },
        404 => LlmError::ModelNotFound {
            model: target.model.clone(),
            base_url,
            message: info.message,
        },
        429 if info.code.as_deref() == Some("insufficient_quota") => LlmError::BadRequest {
            status,
            base_url,
            message: format!(
                "{} (out of quota: add credit or use another key)",
                info.message
            ),
            code: info.code,
            param: info.param,
        },
        429 => LlmError::RateLimited {
            base_url,
            message: info.message,
            retry_after,
        },
        408 | 500..=599 => LlmError::Server {
            status,
            base_url,
            message: info.message,
            retry_after,
        },
        _ => LlmError::BadRequest {
            status,
            base_url,
            message: info.message,
            code: info.code,
            param: info.param,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropics_reset_headers_set_the_wait() {
        let target = Target {
            provider: crate::config::ProviderSettings::new("a", "http://127.0.0.1:1/v1"),
            model: "m".into(),
        };
        let in_secs = |s: u64| {
            let t = SystemTime::now() + Duration::from_secs(s);
            let secs = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            // Back to a civil date (the inverse of until_rfc3339's algorithm).
            let days = secs / 86_400;
            let rem = secs % 86_400;
            let z = days as i64 + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + i64::from(m <= 2);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            )
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "anthropic-ratelimit-requests-reset",
            in_secs(5).parse().unwrap(),
        );
        headers.insert(
            "anthropic-ratelimit-tokens-reset",
            in_secs(20).parse().unwrap(),
        );
        let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        match status_error(429, &headers, body, &target) {
            LlmError::RateLimited {
                retry_after: Some(d),
                ..
            } => assert!((18..=20).contains(&d.as_secs()), "{d:?}"),
            other => panic!("{other:?}"),
        }
        // A 529 is a server error, retried.
        let e = status_error(
            529,
            &HeaderMap::new(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &target,
        );
        assert!(e.is_retryable(), "{e:?}");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8080/v1"));
        assert!(is_loopback("http://localhost/v1"));
        assert!(is_loopback("http://[::1]:1/v1"));
        assert!(!is_loopback("https://api.openai.com/v1"));
    }
}
