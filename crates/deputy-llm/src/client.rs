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
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::breaker::{Admission, Breaker, BreakerConfig};
use crate::config::{Resolved, Target};
use crate::error::LlmError;
use crate::failure::{status_error, transport_error};
use crate::protocol;
use crate::retry::RetryPolicy;
use crate::types::{ChatRequest, EventStream, FinishReason, ModelClient, ModelEvent, Usage};
use crate::window::{ContextWindow, window_of};
use crate::wire::STRIPPABLE_PARAMS;

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

pub(crate) type Tx = mpsc::Sender<Result<ModelEvent, LlmError>>;

/// How one attempt ended, when not with a complete response.
pub(crate) enum Failure {
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
            crate::read::whole(resp, target, tx, decoder.as_mut()).await
        } else {
            crate::read::streamed(resp, target, tx, decoder.as_mut()).await
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
}

pub(crate) async fn send(tx: &Tx, e: ModelEvent) -> Result<(), ()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8080/v1"));
        assert!(is_loopback("http://localhost/v1"));
        assert!(is_loopback("http://[::1]:1/v1"));
        assert!(!is_loopback("https://api.openai.com/v1"));
    }
}
