//! The three wire protocols behind one client: what each sends and how each stream is read.
//!
//! [`prepare`] turns a provider-neutral [`ChatRequest`] into one protocol's path, headers and
//! body, with a [`Decode`] that reads that protocol's answer into [`ModelEvent`]s. The client
//! around it (retries, timeouts, breaker, fallbacks) is the same for all three.

pub(crate) mod anthropic;
pub(crate) mod chat;
pub(crate) mod responses;

use serde_json::Value;

use crate::config::ProviderSettings;
use crate::sse::SseEvent;
use crate::types::{Api, ChatRequest, FinishReason, ModelEvent, Usage};
use crate::wire::ErrorInfo;

/// Why a response could not be read.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Not the protocol: the detail says what was wrong.
    Malformed(String),
    /// The server said an error inside the response.
    Server(ErrorInfo),
}

/// Reads one protocol's response, streamed or whole.
pub(crate) trait Decode: Send {
    /// One server-sent event; `Ok(true)` when it ends the stream.
    fn event(&mut self, event: SseEvent, out: &mut Vec<ModelEvent>) -> Result<bool, DecodeError>;
    /// A whole (non-streaming) JSON response.
    fn whole(&mut self, body: &[u8], out: &mut Vec<ModelEvent>) -> Result<(), DecodeError>;
    /// Whether the response said it was complete.
    fn is_complete(&self) -> bool;
    /// Whether anything (text, reasoning, a call) arrived.
    fn has_content(&self) -> bool;
    /// Whether deltas were handed out (a retry must then tell consumers to discard them).
    fn emitted(&self) -> bool;
    /// Characters of output, for a usage estimate when the server sends none.
    fn output_chars(&self) -> usize;
    /// The response is over: what is left to say (calls, carried items), the server's usage
    /// and the finish reason.
    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> (Option<Usage>, FinishReason);
}

/// One request, ready to send.
pub(crate) struct Prepared {
    /// Appended to the provider's base URL.
    pub path: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
    pub decoder: Box<dyn Decode>,
}

/// What the request body needs beyond the request itself.
pub(crate) struct Settings<'a> {
    pub provider: &'a ProviderSettings,
    pub model: &'a str,
    /// Parameters the server refused, left out.
    pub stripped: &'a [String],
    /// The model's output limit, when known (Anthropic requires `max_tokens`).
    pub max_output: Option<u64>,
}

/// The Anthropic API version deputy speaks.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Build one request for the provider's protocol.
pub(crate) fn prepare(req: &ChatRequest, s: &Settings<'_>) -> Prepared {
    let p = s.provider;
    let headers = auth_headers(p);
    match p.api {
        Api::Chat => Prepared {
            path: "/chat/completions",
            headers,
            body: chat::request_body(req, s),
            decoder: Box::new(chat::ChatDecoder::default()),
        },
        Api::Responses => Prepared {
            path: "/responses",
            headers,
            body: responses::request_body(req, s),
            decoder: Box::new(responses::ResponsesDecoder::new(s.model)),
        },
        Api::Anthropic => Prepared {
            path: "/messages",
            headers,
            body: anthropic::request_body(req, s),
            decoder: Box::new(anthropic::AnthropicDecoder::new(s.model)),
        },
    }
}

/// How the provider's protocol wants the key (and version) said: a bearer token, or
/// Anthropic's `x-api-key` with `anthropic-version`. Every request to the provider (answers,
/// token counts, the model list) goes out with these.
pub(crate) fn auth_headers(p: &ProviderSettings) -> Vec<(&'static str, String)> {
    let key = p.api_key.clone();
    match p.api {
        Api::Anthropic => {
            let mut h = vec![("anthropic-version", ANTHROPIC_VERSION.to_string())];
            h.extend(key.map(|k| ("x-api-key", k)));
            h
        }
        Api::Chat | Api::Responses => key
            .map(|k| vec![("authorization", format!("Bearer {k}"))])
            .unwrap_or_default(),
    }
}

/// What a decoder has handed out so far: whether any delta (a retry must then void it), and
/// how many characters of output (for a usage estimate when the server sends none).
#[derive(Debug, Default)]
pub(crate) struct Said {
    pub emitted: bool,
    pub chars: usize,
}

impl Said {
    /// Hand out a piece of the answer (or of the reasoning); empty pieces are not said.
    pub(crate) fn delta(&mut self, text: &str, reasoning: bool, out: &mut Vec<ModelEvent>) {
        if text.is_empty() {
            return;
        }
        self.emitted = true;
        self.chars += text.len();
        let text = text.to_string();
        out.push(if reasoning {
            ModelEvent::ReasoningDelta { text }
        } else {
            ModelEvent::TextDelta { text }
        });
    }
}

/// A sampling parameter to send: the request's, else the provider's, unless the server said
/// it does not take it.
pub(crate) fn sent<T>(
    asked: Option<T>,
    default: Option<T>,
    name: &str,
    stripped: &[String],
) -> Option<T> {
    asked
        .or(default)
        .filter(|_| !stripped.iter().any(|s| s == name))
}

/// Parse an event's data as JSON, or say why not.
pub(crate) fn json_of(data: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(data).map_err(|e| {
        DecodeError::Malformed(format!(
            "an event is not JSON ({e}): {}",
            data.chars().take(200).collect::<String>()
        ))
    })
}

/// A string field of a JSON value, or "".
pub(crate) fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number field of a JSON value, or 0.
pub(crate) fn u64_of(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}
