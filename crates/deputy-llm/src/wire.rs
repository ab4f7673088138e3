//! The Chat Completions wire format: the request body we send, and lenient types for what comes
//! back.
//!
//! Response types are our own and forgiving on purpose (every field defaulted, `finish_reason` a
//! plain string, `index` optional, `content` either a string or a list of parts): real servers
//! omit and bend fields, as the recordings in ../shared/corpus/wire show.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::types::{ChatRequest, Message};

/// Request parameters a server may refuse and that we can drop (or rename) and retry.
pub const STRIPPABLE_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "stream_options",
    "max_tokens",
    "reasoning_effort",
];

/// Everything needed to build one request body.
pub struct BodyOptions<'a> {
    pub model: &'a str,
    pub stream: bool,
    /// Parameters the server said it does not support; left out (`max_tokens` is sent as
    /// `max_completion_tokens` instead).
    pub stripped: &'a [String],
    /// Provider defaults, used when the request does not set them.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub parallel_tool_calls: Option<bool>,
    /// Mark the system prompt and the last message with `cache_control` (Anthropic through
    /// OpenRouter or LiteLLM), so the prefix so far is cached for the next request.
    pub cache_control: bool,
}

/// The JSON body of a Chat Completions request.
pub fn request_body(req: &ChatRequest, opts: &BodyOptions<'_>) -> Value {
    let stripped = |p: &str| opts.stripped.iter().any(|s| s == p);
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.model));
    let mut messages: Vec<Value> = req.messages.iter().map(message_json).collect();
    if opts.cache_control {
        if let Some(first) = messages.first_mut() {
            mark_cache(first);
        }
        if messages.len() > 1
            && let Some(last) = messages.last_mut()
        {
            mark_cache(last);
        }
    }
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(p) = req.parallel_tool_calls.or(opts.parallel_tool_calls)
            && !stripped("parallel_tool_calls")
        {
            body.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    let sent = |asked, default, name| crate::protocol::sent(asked, default, name, opts.stripped);
    if let Some(t) = sent(req.temperature, opts.temperature, "temperature") {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = sent(req.top_p, opts.top_p, "top_p") {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(m) = req.max_tokens.or(opts.max_tokens) {
        let key = if stripped("max_tokens") {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(key.into(), json!(m));
    }
    body.insert("stream".into(), json!(opts.stream));
    if opts.stream && !stripped("stream_options") {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

/// Turn a message's text into one text part carrying an ephemeral `cache_control` marker.
fn mark_cache(message: &mut Value) {
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        let text = text.to_string();
        message["content"] = json!([{
            "type": "text",
            "text": text,
            "cache_control": {"type": "ephemeral"},
        }]);
    }
}

fn message_json(m: &Message) -> Value {
    match m {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Tool {
            tool_call_id,
            content,
        } => json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}),
        Message::Assistant {
            content,
            tool_calls,
            reasoning,
            ..
        } => {
            let mut o = Map::new();
            o.insert("role".into(), json!("assistant"));
            // Some servers reject `content: null` next to tool calls, others reject an empty
            // string without them; send what each case needs.
            match content {
                Some(c) if !c.is_empty() => {
                    o.insert("content".into(), json!(c));
                }
                _ if tool_calls.is_empty() => {
                    o.insert("content".into(), json!(""));
                }
                _ => {
                    o.insert("content".into(), Value::Null);
                }
            }
            if !tool_calls.is_empty() {
                let calls: Vec<Value> = tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.raw_arguments},
                        })
                    })
                    .collect();
                o.insert("tool_calls".into(), Value::Array(calls));
                // DeepSeek's thinking mode wants the reasoning of a tool-calling turn back.
                if let Some(r) = reasoning
                    && !r.is_empty()
                {
                    o.insert("reasoning_content".into(), json!(r));
                }
            }
            Value::Object(o)
        }
    }
}

/// One streamed chunk, or a whole non-streaming response (same shape, `message` for `delta`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Chunk {
    pub choices: Vec<Choice>,
    pub usage: Option<WireUsage>,
    pub error: Option<Value>,
    pub model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Choice {
    pub index: Option<u64>,
    pub delta: Option<Delta>,
    pub message: Option<Delta>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Delta {
    pub content: Option<Value>,
    pub reasoning_content: Option<String>,
    pub reasoning: Option<Value>,
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

impl Delta {
    /// The text of `content`, whether a string or a list of `{type: text, text}` parts.
    /// Returns (text, reasoning found in `thinking` parts).
    pub fn content_text(&self) -> (String, String) {
        let mut text = String::new();
        let mut thinking = String::new();
        match &self.content {
            Some(Value::String(s)) => text.push_str(s),
            Some(Value::Array(parts)) => {
                for p in parts {
                    match p.get("type").and_then(Value::as_str) {
                        Some("thinking") | Some("reasoning") => collect_text(p, &mut thinking),
                        _ => {
                            if let Some(t) = p.get("text").and_then(Value::as_str) {
                                text.push_str(t);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        (text, thinking)
    }

    /// The reasoning text from `reasoning_content` or `reasoning` (string, or an object with
    /// text in it).
    pub fn reasoning_text(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.reasoning_content {
            out.push_str(r);
        }
        match &self.reasoning {
            Some(Value::String(s)) => out.push_str(s),
            Some(other @ (Value::Object(_) | Value::Array(_))) => collect_text(other, &mut out),
            _ => {}
        }
        out
    }
}

/// Every `text` / `thinking` string found in a part, in order.
fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        Value::Object(o) => {
            for key in ["text", "thinking", "content", "summary"] {
                if let Some(inner) = o.get(key) {
                    collect_text(inner, out);
                }
            }
        }
        _ => {}
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ToolCallDelta {
    pub index: Option<u64>,
    pub id: Option<String>,
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FunctionDelta {
    pub name: Option<String>,
    /// Usually a string; a few servers send the arguments as a JSON object.
    pub arguments: Option<Value>,
}

impl FunctionDelta {
    pub fn arguments_text(&self) -> String {
        match &self.arguments {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WireUsage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub prompt_tokens_details: Option<Details>,
    pub completion_tokens_details: Option<Details>,
    pub prompt_cache_hit_tokens: Option<u64>,
    /// Anthropic's names, passed through by LiteLLM and some gateways.
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Details {
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

impl WireUsage {
    pub fn to_usage(&self) -> crate::types::Usage {
        crate::types::Usage {
            input_tokens: self.prompt_tokens.or(self.input_tokens).unwrap_or(0),
            output_tokens: self.completion_tokens.or(self.output_tokens).unwrap_or(0),
            cached_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .or(self.cache_read_input_tokens)
                .unwrap_or(0),
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            cache_write_input_tokens: self.cache_creation_input_tokens.unwrap_or(0),
            estimated: false,
        }
    }
}

/// What an error body (or an in-stream error object) says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorInfo {
    pub message: String,
    pub code: Option<String>,
    pub kind: Option<String>,
    pub param: Option<String>,
}

/// Read the error out of a body: OpenAI's `{"error": {message, type, code, param}}`, a bare
/// `{"error": "text"}`, FastAPI's `{"detail": …}`, `{"message": …}`, or plain text.
pub fn parse_error_body(body: &str) -> ErrorInfo {
    let trimmed = body.trim();
    let Ok(v) = serde_json::from_str::<Value>(trimmed) else {
        let mut message: String = trimmed.chars().take(500).collect();
        if message.is_empty() {
            message = "(empty body)".into();
        }
        return ErrorInfo {
            message,
            ..ErrorInfo::default()
        };
    };
    error_from_value(&v)
}

/// [`parse_error_body`] for an already parsed value.
pub fn error_from_value(v: &Value) -> ErrorInfo {
    // Gemini's OpenAI-compatible endpoint wraps the error object in an array.
    let v = match v.as_array().and_then(|a| a.first()) {
        Some(first) if v.as_array().is_some_and(|a| a.len() == 1) => first,
        _ => v,
    };
    let err = v.get("error").unwrap_or(v);
    let text = |x: Option<&Value>| -> Option<String> {
        match x? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let mut message = match err {
        Value::String(s) => s.clone(),
        _ => text(err.get("message"))
            .or_else(|| text(err.get("detail")))
            .or_else(|| text(v.get("detail")))
            .or_else(|| text(v.get("message")))
            .unwrap_or_else(|| v.to_string().chars().take(500).collect()),
    };
    // OpenRouter puts the upstream explanation in metadata.raw.
    if let Some(raw) = err.pointer("/metadata/raw").and_then(Value::as_str) {
        message = format!("{message}: {raw}");
    }
    ErrorInfo {
        message,
        code: text(err.get("code")),
        kind: text(err.get("type")),
        param: text(err.get("param")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ToolCall, ToolSpec};

    #[test]
    fn cache_control_marks_the_system_prompt_and_the_last_message() {
        let req = ChatRequest {
            messages: vec![
                Message::system("sys"),
                Message::user("task"),
                Message::assistant("ok"),
                Message::user("more"),
            ],
            ..Default::default()
        };
        let opts = |cache_control| BodyOptions {
            model: "m",
            stream: true,
            stripped: &[],
            temperature: None,
            top_p: None,
            max_tokens: None,
            parallel_tool_calls: None,
            cache_control,
        };
        let body = request_body(&req, &opts(true));
        let m = &body["messages"];
        assert_eq!(m[0]["content"][0]["text"], "sys");
        assert_eq!(m[0]["content"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(m[1]["content"], "task");
        assert_eq!(m[3]["content"][0]["cache_control"]["type"], "ephemeral");
        let plain = request_body(&req, &opts(false));
        assert_eq!(plain["messages"][0]["content"], "sys");
    }

    #[test]
    fn body_with_tools_and_stripped_params() {
        let req = ChatRequest {
            messages: vec![
                Message::system("s"),
                Message::user("u"),
                Message::Assistant {
                    content: None,
                    tool_calls: vec![ToolCall::from_raw("c1", "bash", "{\"command\":\"ls\"}")],
                    reasoning: Some("think".into()),
                    carried: None,
                },
                Message::tool("c1", "out"),
            ],
            tools: vec![ToolSpec {
                name: "bash".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }],
            temperature: Some(0.2),
            max_tokens: Some(100),
            ..Default::default()
        };
        let stripped = vec!["temperature".to_string(), "max_tokens".to_string()];
        let body = request_body(
            &req,
            &BodyOptions {
                model: "m",
                stream: true,
                stripped: &stripped,
                temperature: None,
                top_p: Some(0.9),
                max_tokens: None,
                parallel_tool_calls: Some(true),
                cache_control: false,
            },
        );
        assert!(body.get("temperature").is_none());
        assert_eq!(body["top_p"], 0.9);
        assert_eq!(body["max_completion_tokens"], 100);
        assert_eq!(body["parallel_tool_calls"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"command\":\"ls\"}"
        );
        assert_eq!(body["messages"][2]["reasoning_content"], "think");
        assert_eq!(body["tools"][0]["function"]["name"], "bash");
    }

    #[test]
    fn error_bodies() {
        let e = parse_error_body(r#"{"error":{"message":"m","type":"t","code":"c","param":"p"}}"#);
        assert_eq!(
            e,
            ErrorInfo {
                message: "m".into(),
                code: Some("c".into()),
                kind: Some("t".into()),
                param: Some("p".into())
            }
        );
        let e = parse_error_body(
            r#"{"error":{"code":429,"message":"Provider returned error","metadata":{"raw":"slow down"}}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("429"));
        assert_eq!(e.message, "Provider returned error: slow down");
        assert_eq!(
            parse_error_body(r#"{"detail":"Not Found"}"#).message,
            "Not Found"
        );
        assert_eq!(
            parse_error_body("upstream connect error").message,
            "upstream connect error"
        );
        assert_eq!(
            parse_error_body(r#"{"error":"bad key"}"#).message,
            "bad key"
        );
    }
}
