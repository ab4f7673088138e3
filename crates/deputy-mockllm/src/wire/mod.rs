//! The protocols the mock speaks beside Chat Completions: Anthropic Messages and OpenAI
//! Responses.
//!
//! Each request is checked by its protocol's own rules (with that provider's error body), then
//! read into the Chat Completions shape (`messages`, `tools`), so step selection, the tool-call
//! rule, token counts and routes work the same on every protocol. The answer is rendered back
//! in the protocol's stream (or whole response).
//!
//! What the model must get back unchanged is remembered per call: the thinking blocks
//! (Anthropic) or reasoning items (Responses) the mock sent with a call. A later request that
//! holds the call without them, or with them changed, is refused.

pub mod anthropic;
pub mod responses;

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::respond::Frame;

/// The protocol of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Chat,
    Anthropic,
    Responses,
}

impl Wire {
    /// The path logged for it.
    pub fn path(self) -> &'static str {
        match self {
            Wire::Chat => "/v1/chat/completions",
            Wire::Anthropic => "/v1/messages",
            Wire::Responses => "/v1/responses",
        }
    }

    /// The provider's error body.
    pub fn error(self, message: &str, kind: &str, code: &str) -> Value {
        match self {
            Wire::Anthropic => {
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            Wire::Chat | Wire::Responses => {
                json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            }
        }
    }

    /// Whether the request carries an API key where this protocol puts it.
    pub fn authorized(self, headers: &HeaderMap) -> bool {
        match self {
            Wire::Anthropic => headers.contains_key("x-api-key"),
            _ => headers.contains_key("authorization"),
        }
    }

    /// Whether the key sent is `key`.
    pub fn key_matches(self, headers: &HeaderMap, key: &str) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match self {
            Wire::Anthropic => header("x-api-key") == Some(key),
            _ => header("authorization") == Some(format!("Bearer {key}").as_str()),
        }
    }

    /// The body for a wrong key.
    pub fn bad_key(self) -> Value {
        match self {
            Wire::Anthropic => self.error("invalid x-api-key", "authentication_error", ""),
            _ => self.error(
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        }
    }

    /// The body for a request longer than the window.
    pub fn overflow(self, window: u64, tokens: u64) -> Value {
        match self {
            Wire::Anthropic => self.error(
                &format!("prompt is too long: {tokens} tokens > {window} maximum"),
                "invalid_request_error",
                "",
            ),
            _ => crate::tokens::overflow_body(window, tokens),
        }
    }

    /// The error event a stream ends with when a fault says so.
    pub fn overloaded_frame(self) -> Frame {
        let text = match self {
            Wire::Chat => {
                r#"data: {"error":{"message":"Overloaded","type":"server_error","code":"overloaded"}}"#
                    .to_string()
            }
            Wire::Anthropic => format!(
                "event: error\ndata: {}",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            ),
            Wire::Responses => format!(
                "event: response.failed\ndata: {}",
                json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "The server is overloaded"}}})
            ),
        };
        Frame::Data(Bytes::from(format!("{text}\n\n")))
    }
}

/// One event of a named-event stream.
pub(crate) fn event(name: &str, data: &Value) -> Frame {
    Frame::Data(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
}

/// Items per (conversation route, call id).
type ByCall = HashMap<(Option<usize>, String), Vec<Value>>;

/// What the mock sent with each call, to be sent back unchanged: per conversation route and
/// call id.
#[derive(Default)]
pub struct Sent {
    map: Mutex<ByCall>,
}

impl Sent {
    pub fn remember(&self, route: Option<usize>, call_id: &str, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        self.lock().insert((route, call_id.to_string()), items);
    }

    pub fn expected(&self, route: Option<usize>, call_id: &str) -> Option<Vec<Value>> {
        self.lock().get(&(route, call_id.to_string())).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByCall> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stable fingerprint of text (FNV-1a), for signatures and "encrypted" content the mock
/// can check without keeping them.
pub(crate) fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The text of a content value: a string, or the `text` of each part.
pub(crate) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A scripted call's arguments as the text the model sends.
pub(crate) fn arguments(c: &crate::script::ToolCallStep) -> String {
    c.raw_arguments
        .as_ref()
        .map(|p| p.concat())
        .unwrap_or_else(|| c.arguments.to_string())
}

/// A string field, or "".
pub(crate) fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Split text into pieces of `n` characters.
pub(crate) fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anthropic(messages: Value) -> Result<Value, String> {
        let mut h = HeaderMap::new();
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        anthropic::canon(
            &json!({"model": "m", "max_tokens": 10, "messages": messages}),
            &h,
        )
    }

    #[test]
    fn anthropics_rules_in_anthropics_words() {
        let call = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]});
        let result = json!({"type": "tool_result", "tool_use_id": "t1", "content": "x"});
        let user = |c: Value| json!({"role": "user", "content": c});
        let ok = anthropic(json!([user(json!("go")), call, user(json!([result]))])).unwrap();
        assert_eq!(ok["messages"][2]["role"], "tool");
        let err = |m: Value| anthropic(m).unwrap_err();
        assert!(err(json!([call])).contains("first message must use the \"user\" role"));
        assert!(
            err(json!([user(json!("go")), call, user(json!("no results"))]))
                .contains("`tool_use` ids were found without `tool_result` blocks")
        );
        assert!(
            err(json!([
                user(json!("go")),
                call,
                user(json!([{"type": "text", "text": "a"}, result]))
            ]))
            .contains("must come first")
        );
        assert!(
            err(json!([user(json!([{"type": "text", "text": " "}]))])).contains("non-whitespace")
        );
        let bad_sig = json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "forged"}, {"type": "text", "text": "x"}]});
        assert!(err(json!([user(json!("go")), bad_sig])).contains("Invalid `signature`"));
        assert!(
            anthropic::canon(&json!({"max_tokens": 1, "messages": []}), &HeaderMap::new())
                .unwrap_err()
                .contains("anthropic-version")
        );
    }

    #[test]
    fn responses_rules() {
        let canon =
            |input: Value| responses::canon(&json!({"model": "m", "store": false, "input": input}));
        let call =
            json!({"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"});
        let output = json!({"type": "function_call_output", "call_id": "c1", "output": "x"});
        let ok = canon(
            json!(["go", call, output])
                .as_array()
                .map(|a| {
                    let mut a = a.clone();
                    a[0] = json!({"role": "user", "content": "go"});
                    Value::Array(a)
                })
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ok["messages"][1]["tool_calls"][0]["id"], "c1");
        let (status, m, _) = canon(json!([
            {"role": "user", "content": "go"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": "ok"}
        ]))
        .unwrap_err();
        assert_eq!(status, 404);
        assert!(m.contains("Items are not persisted"), "{m}");
        let (status, _, _) = canon(json!([{"type": "item_reference", "id": "msg_9"}])).unwrap_err();
        assert_eq!(status, 404);
        // Given whole, an item may carry the client's own id.
        canon(json!([{"type": "message", "id": "msg_1", "role": "user", "content": "go"}]))
            .unwrap();
        let (_, m, _) = canon(json!([{"role": "user", "content": "go"}, output])).unwrap_err();
        assert!(m.contains("No tool call found"), "{m}");
        let (_, m, _) = canon(
            json!([{"role": "user", "content": "go"}, call, {"role": "user", "content": "more"}]),
        )
        .unwrap_err();
        assert!(
            m.contains("No tool output found for function call c1"),
            "{m}"
        );
    }
}
