//! Anthropic's Messages API (`POST /v1/messages`).
//!
//! The request: the system prompt apart; content blocks; every call's `tool_result` in the
//! next user message, before any text; thinking blocks sent back unchanged (their signatures
//! are checked) ahead of the turn's text and calls; up to four `cache_control` breakpoints
//! (the tools, the system prompt, the last message and the user turn before it).
//!
//! The stream: `message_start` (input usage), `content_block_start`/`delta`/`stop` (text,
//! `tool_use` with `input_json_delta`, `thinking` with `thinking_delta` and `signature_delta`,
//! `redacted_thinking`), `message_delta` (`stop_reason`, output usage), `message_stop`, `ping`,
//! and `error` (e.g. `overloaded_error`) in the middle.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{Decode, DecodeError, Said, Settings, json_of, sent, str_of, u64_of};
use crate::sse::SseEvent;
use crate::types::{Api, Carried, ChatRequest, FinishReason, Message, ModelEvent, ToolCall, Usage};
use crate::wire::error_from_value;

/// `max_tokens` when neither config nor the model table says one (Anthropic requires it).
const DEFAULT_MAX_TOKENS: u64 = 8192;

/// Anthropic allows this many `cache_control` breakpoints in one request.
const MAX_BREAKPOINTS: usize = 4;

pub(crate) fn request_body(req: &ChatRequest, s: &Settings<'_>) -> Value {
    let p = s.provider;
    let mut body = Map::new();
    body.insert("model".into(), json!(s.model));
    let budget = req
        .reasoning
        .as_ref()
        .or(p.reasoning.as_ref())
        .and_then(|r| r.budget())
        .filter(|b| *b > 0)
        // Anthropic's smallest budget.
        .map(|b| b.max(1024));
    let mut max_tokens = req
        .max_tokens
        .map(u64::from)
        .or(p.max_tokens.map(u64::from))
        .or(s.max_output)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    if let Some(b) = budget {
        // The budget is part of max_tokens and must leave room for the answer.
        max_tokens = max_tokens.max(u64::from(b) + 4096);
    }
    body.insert("max_tokens".into(), json!(max_tokens));
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        match m {
            Message::System { content } if messages.is_empty() => {
                if !content.is_empty() {
                    system.push(json!({"type": "text", "text": content}));
                }
            }
            // A system message later on (deputy sends none) goes in as the user's.
            Message::System { content } | Message::User { content } => {
                push_blocks(&mut messages, "user", text_block(content));
            }
            Message::Tool {
                tool_call_id,
                content,
            } => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": tool_call_id,
                    "content": if content.is_empty() { "(no output)" } else { content.as_str() },
                });
                push_result(&mut messages, block);
            }
            Message::Assistant {
                content,
                tool_calls,
                carried,
                ..
            } => {
                let mut blocks = Vec::new();
                if let Some(c) = carried
                    && c.goes_to(Api::Anthropic, s.model)
                {
                    blocks.extend(c.items.iter().cloned());
                }
                if let Some(t) = content {
                    blocks.extend(text_block(t));
                }
                for call in tool_calls {
                    let input = match &call.arguments {
                        Value::Object(_) => call.arguments.clone(),
                        // Arguments that did not parse were answered with an error; the call
                        // itself must still be an object.
                        _ => json!({}),
                    };
                    blocks.push(json!({
                        "type": "tool_use", "id": call.id, "name": call.name, "input": input,
                    }));
                }
                if !blocks.is_empty() {
                    push_blocks(&mut messages, "assistant", blocks);
                }
            }
        }
    }
    // The conversation must open with the user (a compacted history may not).
    if messages
        .first()
        .is_some_and(|m| str_of(m, "role") == "assistant")
    {
        messages.insert(
            0,
            json!({"role": "user", "content": [{"type": "text", "text": "Continue."}]}),
        );
    }
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect();
    if p.cache_control {
        let mut left = MAX_BREAKPOINTS;
        let mut mark = |block: Option<&mut Value>| {
            if let Some(b) = block
                && left > 0
            {
                b["cache_control"] = json!({"type": "ephemeral"});
                left -= 1;
            }
        };
        mark(tools.last_mut());
        mark(system.last_mut());
        let users: Vec<usize> = (0..messages.len())
            .filter(|i| str_of(&messages[*i], "role") == "user")
            .collect();
        if let Some(last) = messages.len().checked_sub(1) {
            mark(last_cacheable(&mut messages[last]));
        }
        // The user turn before the last one: where the previous request's prefix ended.
        if users.len() >= 2 {
            let i = users[users.len() - 2];
            mark(last_cacheable(&mut messages[i]));
        }
    }
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        if req.parallel_tool_calls.or(p.parallel_tool_calls) == Some(false) {
            body.insert(
                "tool_choice".into(),
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            );
        }
    }
    match budget {
        Some(b) => {
            // Anthropic refuses temperature and top_p below 0.95 with thinking on.
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
        }
        None => {
            if let Some(t) = sent(req.temperature, p.temperature, "temperature", s.stripped) {
                body.insert("temperature".into(), json!(t.min(1.0)));
            }
            if let Some(t) = sent(req.top_p, p.top_p, "top_p", s.stripped) {
                body.insert("top_p".into(), json!(t));
            }
        }
    }
    body.insert("stream".into(), json!(p.stream));
    Value::Object(body)
}

/// A text block, or none for empty text (Anthropic refuses empty text blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// Append blocks as a message of `role`, merged into the last message when it has that role
/// (Anthropic wants the roles to alternate).
fn push_blocks(messages: &mut Vec<Value>, role: &str, blocks: impl IntoIterator<Item = Value>) {
    let blocks: Vec<Value> = blocks.into_iter().collect();
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && str_of(last, "role") == role
        && let Some(content) = last.get_mut("content").and_then(Value::as_array_mut)
    {
        content.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// A tool result goes into the user message after the calls, after the results already there
/// and before any text (results first, as Anthropic requires).
fn push_result(messages: &mut Vec<Value>, block: Value) {
    if let Some(last) = messages.last_mut()
        && str_of(last, "role") == "user"
        && let Some(content) = last.get_mut("content").and_then(Value::as_array_mut)
    {
        let at = content
            .iter()
            .position(|b| str_of(b, "type") != "tool_result")
            .unwrap_or(content.len());
        content.insert(at, block);
        return;
    }
    messages.push(json!({"role": "user", "content": [block]}));
}

/// The last block of a message that may carry `cache_control` (not a thinking block).
fn last_cacheable(message: &mut Value) -> Option<&mut Value> {
    message
        .get_mut("content")?
        .as_array_mut()?
        .iter_mut()
        .rev()
        .find(|b| !matches!(str_of(b, "type"), "thinking" | "redacted_thinking"))
}

/// One content block being received.
#[derive(Debug)]
enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    /// Kept as sent (`redacted_thinking`, or a kind deputy does not know).
    Opaque(Value),
}

/// Reads a Messages stream (or a whole Messages response).
pub(crate) struct AnthropicDecoder {
    model: String,
    blocks: Vec<Block>,
    by_index: HashMap<u64, usize>,
    usage: Option<Usage>,
    stop_reason: Option<String>,
    stopped: bool,
    said: Said,
}

impl AnthropicDecoder {
    pub(crate) fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            blocks: Vec::new(),
            by_index: HashMap::new(),
            usage: None,
            stop_reason: None,
            stopped: false,
            said: Said::default(),
        }
    }

    /// The usage of `message_start` or `message_delta` (later counts replace earlier ones).
    fn usage(&mut self, u: &Value) {
        let mut usage = self.usage.unwrap_or_default();
        let fresh = u.get("input_tokens").and_then(Value::as_u64);
        let write = u.get("cache_creation_input_tokens").and_then(Value::as_u64);
        let read = u.get("cache_read_input_tokens").and_then(Value::as_u64);
        if fresh.is_some() || write.is_some() || read.is_some() {
            let write = write.unwrap_or(usage.cache_write_input_tokens);
            let read = read.unwrap_or(usage.cached_input_tokens);
            let fresh = fresh.unwrap_or(usage.input_tokens - write.min(usage.input_tokens));
            // deputy's input count is all of the prompt; Anthropic's leaves the cache out.
            usage.input_tokens = fresh + write + read;
            usage.cache_write_input_tokens = write;
            usage.cached_input_tokens = read;
        }
        if let Some(o) = u.get("output_tokens").and_then(Value::as_u64) {
            usage.output_tokens = o;
        }
        self.usage = Some(usage);
    }

    /// A block opened (`content_block_start`), or a whole block of a non-streamed answer.
    fn start(&mut self, index: Option<u64>, block: &Value, out: &mut Vec<ModelEvent>) {
        let b = match str_of(block, "type") {
            "text" => {
                self.said.delta(str_of(block, "text"), false, out);
                Block::Text
            }
            "tool_use" => {
                // A whole answer carries the input; a stream sends `{}` and then the pieces.
                let input = block
                    .get("input")
                    .filter(|i| index.is_none() || i.as_object().is_some_and(|o| !o.is_empty()));
                let json = input.map(Value::to_string).unwrap_or_default();
                Block::ToolUse {
                    id: str_of(block, "id").into(),
                    name: str_of(block, "name").into(),
                    json,
                }
            }
            "thinking" => {
                self.said.delta(str_of(block, "thinking"), true, out);
                Block::Thinking {
                    thinking: str_of(block, "thinking").into(),
                    signature: str_of(block, "signature").into(),
                }
            }
            _ => Block::Opaque(block.clone()),
        };
        self.blocks.push(b);
        if let Some(i) = index {
            self.by_index.insert(i, self.blocks.len() - 1);
        }
    }

    fn delta(&mut self, index: u64, delta: &Value, out: &mut Vec<ModelEvent>) {
        let Some(&at) = self.by_index.get(&index) else {
            return;
        };
        match str_of(delta, "type") {
            "text_delta" => self.said.delta(str_of(delta, "text"), false, out),
            "thinking_delta" => {
                let t = str_of(delta, "thinking");
                if let Block::Thinking { thinking, .. } = &mut self.blocks[at] {
                    thinking.push_str(t);
                }
                self.said.delta(t, true, out);
            }
            "signature_delta" => {
                if let Block::Thinking { signature, .. } = &mut self.blocks[at] {
                    signature.push_str(str_of(delta, "signature"));
                }
            }
            "input_json_delta" => {
                let piece = str_of(delta, "partial_json");
                self.said.chars += piece.len();
                if let Block::ToolUse { json, .. } = &mut self.blocks[at] {
                    json.push_str(piece);
                }
            }
            // citations and kinds to come: nothing deputy shows.
            _ => {}
        }
    }
}

impl Decode for AnthropicDecoder {
    fn event(&mut self, event: SseEvent, out: &mut Vec<ModelEvent>) -> Result<bool, DecodeError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(false);
        }
        let v = json_of(data)?;
        let kind = match str_of(&v, "type") {
            "" => event.event.as_str(),
            k => k,
        };
        match kind {
            "message_start" => {
                if let Some(u) = v.pointer("/message/usage") {
                    self.usage(u);
                }
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(b) = v.get("content_block") {
                    self.start(Some(index), b, out);
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(d) = v.get("delta") {
                    self.delta(index, d, out);
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_string());
                }
                if let Some(u) = v.get("usage") {
                    self.usage(u);
                }
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(true);
            }
            "error" => return Err(DecodeError::Server(error_from_value(&v))),
            // ping, content_block_stop, and events added later.
            _ => {}
        }
        Ok(false)
    }

    fn whole(&mut self, body: &[u8], out: &mut Vec<ModelEvent>) -> Result<(), DecodeError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            DecodeError::Malformed(format!("the JSON response does not parse: {e}"))
        })?;
        if str_of(&v, "type") == "error" {
            return Err(DecodeError::Server(error_from_value(&v)));
        }
        let Some(content) = v.get("content").and_then(Value::as_array) else {
            return Err(DecodeError::Malformed("the response has no content".into()));
        };
        for b in content {
            self.start(None, b, out);
        }
        if let Some(u) = v.get("usage") {
            self.usage(u);
        }
        self.stop_reason = v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.stopped = true;
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.stopped || self.stop_reason.is_some()
    }

    fn has_content(&self) -> bool {
        self.said.emitted || !self.blocks.is_empty()
    }

    fn emitted(&self) -> bool {
        self.said.emitted
    }

    fn output_chars(&self) -> usize {
        self.said.chars
    }

    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> (Option<Usage>, FinishReason) {
        let mut carried = Vec::new();
        let mut calls = 0;
        for b in std::mem::take(&mut self.blocks) {
            match b {
                Block::Text => {}
                Block::ToolUse { id, name, json } => {
                    calls += 1;
                    out.push(ModelEvent::ToolCall {
                        call: ToolCall::from_raw(id, name, json),
                    });
                }
                Block::Thinking {
                    thinking,
                    signature,
                } => carried.push(
                    json!({"type": "thinking", "thinking": thinking, "signature": signature}),
                ),
                Block::Opaque(v) => {
                    if str_of(&v, "type") == "redacted_thinking" {
                        carried.push(v);
                    }
                }
            }
        }
        if !carried.is_empty() {
            out.push(ModelEvent::Carried {
                carried: Carried {
                    api: Api::Anthropic,
                    model: self.model.clone(),
                    items: carried,
                },
            });
        }
        let reason = match self.stop_reason.as_deref() {
            Some("refusal") => FinishReason::ContentFilter,
            Some(r) => FinishReason::parse(r),
            None if calls > 0 => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        (self.usage, reason)
    }
}

/// The usage numbers of a `count_tokens` answer.
pub(crate) fn counted(v: &Value) -> Option<u64> {
    v.get("input_tokens")
        .and_then(Value::as_u64)
        .or(Some(u64_of(v, "/usage/input_tokens")).filter(|n| *n > 0))
}

#[cfg(test)]
mod tests;
