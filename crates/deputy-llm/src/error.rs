//! Typed model errors. Each message says what the user can check, and none contains an API key.

use std::time::Duration;

/// Why a model request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// 401 / 403: the key is missing, wrong, or lacks access.
    #[error(
        "{status} from {base_url}: {message}. Check the API key: {key_hint}; and that the base URL is the one the key belongs to"
    )]
    Auth {
        status: u16,
        base_url: String,
        message: String,
        key_hint: String,
    },
    /// 404: the model (or the endpoint) does not exist.
    #[error(
        "model `{model}` was not found at {base_url} ({message}). Check the model name (`--model`, DEPUTY_MODEL, or `model` in config) and that the base URL ends in /v1"
    )]
    ModelNotFound {
        model: String,
        base_url: String,
        message: String,
    },
    /// 400 (and other 4xx except 429): the server rejected the request.
    #[error("{status} bad request from {base_url}: {message}{}", code.as_deref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    BadRequest {
        status: u16,
        base_url: String,
        message: String,
        code: Option<String>,
        param: Option<String>,
    },
    /// The request is longer than the model's context window (a 400 in any of the wordings
    /// servers use, or the same said mid-stream). The session compacts its history and tries
    /// once more.
    #[error("the request does not fit the context window of the model at {base_url}{}{}: {message}", limit.map(|l| format!(" ({l} tokens)")).unwrap_or_default(), requested.map(|r| format!("; it held about {r}")).unwrap_or_default())]
    ContextOverflow {
        base_url: String,
        message: String,
        /// The window, when the server says it.
        limit: Option<u64>,
        /// The size of the request, when the server says it.
        requested: Option<u64>,
    },
    /// 429: too many requests or out of quota.
    #[error("rate limited by {base_url}: {message}{}", retry_after.map(|d| format!(" (retry after {:.1}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        base_url: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx: the server failed.
    #[error("server error {status} from {base_url}: {message}")]
    Server {
        status: u16,
        base_url: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The connection could not be made or broke before a response.
    #[error(
        "cannot reach {base_url}: {message}. Is the server running, and is the base URL right (base_url in config, or OPENAI_BASE_URL / ANTHROPIC_BASE_URL)?"
    )]
    Transport { base_url: String, message: String },
    /// Connect, response or stream idle timeout.
    #[error("{phase} timeout after {:.1}s talking to {base_url}", after.as_secs_f64())]
    Timeout {
        phase: &'static str,
        after: Duration,
        base_url: String,
    },
    /// The stream ended before the response was complete.
    #[error("the response stream from {base_url} ended before the model finished")]
    StreamInterrupted { base_url: String },
    /// The server sent something that is not a Chat Completions response.
    #[error("malformed response from {base_url}: {detail}")]
    MalformedStream { base_url: String, detail: String },
    /// The server reported an error inside a 200 response (an `event: error`, or an `error`
    /// object in a chunk).
    #[error("the model server reported an error mid-stream: {message}{}", code.as_deref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    InStream {
        message: String,
        code: Option<String>,
        retryable: bool,
    },
    /// Every provider's circuit breaker is open.
    #[error("{0}")]
    Unavailable(String),
    /// The configuration names something that does not exist or is incomplete.
    #[error("{0}")]
    Config(String),
    /// Nothing names a model: no flag, agent model, `DEPUTY_MODEL`, config `model`, or default
    /// provider with a model.
    #[error("no model is configured")]
    NoModel,
}

impl LlmError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. }
            | LlmError::Server { .. }
            | LlmError::Transport { .. }
            | LlmError::Timeout { .. }
            | LlmError::StreamInterrupted { .. }
            // A truncated or garbled stream (a flaky proxy) has not been acted on; try again.
            | LlmError::MalformedStream { .. } => true,
            LlmError::InStream { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The wait the server asked for (Retry-After header or a hint in the body).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } | LlmError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A short name of the kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Auth { .. } => "auth",
            LlmError::ModelNotFound { .. } => "model_not_found",
            LlmError::BadRequest { .. } => "bad_request",
            LlmError::ContextOverflow { .. } => "context_overflow",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Server { .. } => "server",
            LlmError::Transport { .. } => "transport",
            LlmError::Timeout { .. } => "timeout",
            LlmError::StreamInterrupted { .. } => "stream_interrupted",
            LlmError::MalformedStream { .. } => "malformed_stream",
            LlmError::InStream { .. } => "in_stream",
            LlmError::Unavailable(_) => "unavailable",
            LlmError::Config(_) => "config",
            LlmError::NoModel => "no_model",
        }
    }

    /// Replace every occurrence of `secret` in the message fields (servers sometimes echo a
    /// part of the key back: "Incorrect API key provided: sk-abc…").
    pub fn redact(mut self, secret: &str) -> Self {
        if secret.len() < 6 {
            return self;
        }
        let fix = |s: &mut String| {
            if s.contains(secret) {
                *s = s.replace(secret, "[REDACTED]");
            }
        };
        match &mut self {
            LlmError::Auth { message, .. }
            | LlmError::ModelNotFound { message, .. }
            | LlmError::BadRequest { message, .. }
            | LlmError::ContextOverflow { message, .. }
            | LlmError::RateLimited { message, .. }
            | LlmError::Server { message, .. }
            | LlmError::Transport { message, .. }
            | LlmError::InStream { message, .. } => fix(message),
            LlmError::MalformedStream { detail, .. } => fix(detail),
            LlmError::Unavailable(m) | LlmError::Config(m) => fix(m),
            LlmError::Timeout { .. } | LlmError::StreamInterrupted { .. } | LlmError::NoModel => {}
        }
        self
    }
}
