//! Anthropic Messages: the rules the API enforces, the reading into chat shape, and the
//! stream (`message_start` … `message_stop`, thinking with a signature, `tool_use` with
//! `input_json_delta`).

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use super::{Sent, arguments, event, fingerprint, pieces, str_of, text_of};
use crate::respond::{Frame, RequestShape, output_tokens};
use crate::script::Step;

/// The signature the mock gives a thinking text (checked when it comes back).
pub fn signature(thinking: &str) -> String {
    format!("sig-{}", fingerprint(thinking))
}

fn blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(b) => b.clone(),
        _ => Vec::new(),
    }
}

/// Check a request by Anthropic's rules and read it into chat shape; the error message
/// (Anthropic's wording) when it breaks one.
pub fn canon(body: &Value, headers: &HeaderMap) -> Result<Value, String> {
    if !headers.contains_key("anthropic-version") {
        return Err("anthropic-version: header is required".into());
    }
    if !body.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("max_tokens: Field required".into());
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err("messages: Field required".into());
    };
    let mut out: Vec<Value> = Vec::new();
    if let Some(system) = body.get("system") {
        out.push(json!({"role": "system", "content": text_of(system)}));
    }
    // The calls of the previous assistant message, to be answered in this one.
    let mut open: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = str_of(m, "role");
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".into());
        }
        let content = blocks(m.get("content").unwrap_or(&Value::Null));
        if content.is_empty() {
            return Err(format!(
                "messages.{i}: all messages must have non-empty content"
            ));
        }
        let mut answered: Vec<String> = Vec::new();
        match role {
            "user" => {
                let mut text = String::new();
                let mut seen_other = false;
                for (j, b) in content.iter().enumerate() {
                    match str_of(b, "type") {
                        "tool_result" => {
                            let id = str_of(b, "tool_use_id");
                            if seen_other {
                                return Err(format!(
                                    "messages.{i}.content.{j}: `tool_result` blocks must come first in the user message, before any other content"
                                ));
                            }
                            if !open.iter().any(|o| o == id) || answered.iter().any(|a| a == id) {
                                return Err(format!(
                                    "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                                ));
                            }
                            answered.push(id.to_string());
                            out.push(json!({"role": "tool", "tool_call_id": id, "content": text_of(b.get("content").unwrap_or(&Value::Null))}));
                        }
                        "text" => {
                            seen_other = true;
                            if str_of(b, "text").trim().is_empty() {
                                return Err(format!(
                                    "messages.{i}.content.{j}: text content blocks must contain non-whitespace text"
                                ));
                            }
                            text.push_str(str_of(b, "text"));
                        }
                        _ => seen_other = true,
                    }
                }
                if !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                }
            }
            "assistant" => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for (j, b) in content.iter().enumerate() {
                    match str_of(b, "type") {
                        "thinking"
                            if str_of(b, "signature") != signature(str_of(b, "thinking")) =>
                        {
                            return Err(format!(
                                "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                            ));
                        }
                        "text" => {
                            if str_of(b, "text").trim().is_empty() {
                                return Err(format!(
                                    "messages.{i}.content.{j}: text content blocks must contain non-whitespace text"
                                ));
                            }
                            text.push_str(str_of(b, "text"));
                        }
                        "tool_use" => {
                            if !b.get("input").is_some_and(Value::is_object) {
                                return Err(format!(
                                    "messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
                                ));
                            }
                            calls.push(json!({
                                "id": str_of(b, "id"), "type": "function",
                                "function": {"name": str_of(b, "name"), "arguments": b["input"].to_string()},
                            }));
                        }
                        _ => {}
                    }
                }
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert("content".into(), json!(text));
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(msg));
            }
            other => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant' (found `{other}`)"
                ));
            }
        }
        let missing: Vec<&String> = open.iter().filter(|o| !answered.contains(o)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        open = if role == "assistant" {
            content
                .iter()
                .filter(|b| str_of(b, "type") == "tool_use")
                .map(|b| str_of(b, "id").to_string())
                .collect()
        } else {
            Vec::new()
        };
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|t| json!({"type": "function", "function": {"name": str_of(t, "name"), "description": str_of(t, "description"), "parameters": t.get("input_schema").cloned().unwrap_or(json!({}))}}))
                .collect()
        })
        .unwrap_or_default();
    let mut canon = json!({
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "messages": out,
        "max_tokens": body["max_tokens"],
        "stream": body.get("stream").and_then(Value::as_bool).unwrap_or(false),
    });
    if !tools.is_empty() {
        canon["tools"] = Value::Array(tools);
    }
    Ok(canon)
}

/// A call the mock answered with thinking must come back behind that thinking, unchanged.
pub fn check_carried(body: &Value, route: Option<usize>, sent: &Sent) -> Option<String> {
    let messages = body.get("messages")?.as_array()?;
    for (i, m) in messages.iter().enumerate() {
        if str_of(m, "role") != "assistant" {
            continue;
        }
        let content = blocks(m.get("content").unwrap_or(&Value::Null));
        for b in content.iter().filter(|b| str_of(b, "type") == "tool_use") {
            let Some(expected) = sent.expected(route, str_of(b, "id")) else {
                continue;
            };
            let leading: Vec<&Value> = content
                .iter()
                .take_while(|b| matches!(str_of(b, "type"), "thinking" | "redacted_thinking"))
                .collect();
            if leading.is_empty() {
                return Some(format!(
                    "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).",
                    str_of(&content[0], "type")
                ));
            }
            if leading.len() != expected.len()
                || leading.iter().zip(&expected).any(|(a, b)| *a != b)
            {
                return Some(format!(
                    "messages.{i}.content: the thinking blocks of this turn were changed; they must be passed back exactly as they were received"
                ));
            }
        }
    }
    None
}

fn call_id(shape: &RequestShape<'_>, i: usize, explicit: Option<&String>) -> String {
    explicit
        .cloned()
        .unwrap_or_else(|| format!("toolu_{}_{i}", shape.step_index))
}

/// The thinking blocks of a step's answer, as the client must send them back.
fn thinking_blocks(step: &Step) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(r) = &step.reasoning {
        out.push(json!({"type": "thinking", "thinking": r, "signature": signature(r)}));
    }
    if let Some(d) = &step.redacted_thinking {
        out.push(json!({"type": "redacted_thinking", "data": d}));
    }
    out
}

fn stop_reason(step: &Step) -> String {
    step.stop_reason.clone().unwrap_or_else(|| {
        if step.all_tool_calls().is_empty() {
            "end_turn".into()
        } else {
            "tool_use".into()
        }
    })
}

fn usage(step: &Step, shape: &RequestShape<'_>) -> Value {
    let (prompt, out) = match step.usage {
        Some(u) => (u.prompt_tokens, u.completion_tokens),
        None => (shape.prompt_tokens, output_tokens(step)),
    };
    let read = shape.cached_tokens.min(prompt);
    let write = shape.cache_write_tokens.min(prompt - read);
    json!({
        "input_tokens": prompt - read - write,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": out,
    })
}

/// The calls of a step with their ids, and what each must come back with.
pub fn remembered(step: &Step, shape: &RequestShape<'_>) -> Vec<(String, Vec<Value>)> {
    let thinking = thinking_blocks(step);
    step.all_tool_calls()
        .iter()
        .enumerate()
        .map(|(i, c)| (call_id(shape, i, c.id.as_ref()), thinking.clone()))
        .collect()
}

/// The frames of a streamed answer.
pub fn frames(step: &Step, shape: &RequestShape<'_>) -> Vec<Frame> {
    let n = step.chunk_chars.unwrap_or(16);
    let mut usage_start = usage(step, shape);
    usage_start["output_tokens"] = json!(1);
    let mut f = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {"id": shape.id, "type": "message", "role": "assistant", "model": shape.model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage_start}}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let mut index = 0;
    let mut block = |f: &mut Vec<Frame>, start: Value, deltas: Vec<Value>| {
        f.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for d in deltas {
            f.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        f.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    };
    if let Some(r) = &step.reasoning {
        let mut deltas: Vec<Value> = pieces(r, n)
            .into_iter()
            .map(|p| json!({"type": "thinking_delta", "thinking": p}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": signature(r)}));
        block(
            &mut f,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            deltas,
        );
    }
    if let Some(d) = &step.redacted_thinking {
        block(
            &mut f,
            json!({"type": "redacted_thinking", "data": d}),
            Vec::new(),
        );
    }
    if let Some(t) = &step.text {
        let deltas = pieces(t, n)
            .into_iter()
            .map(|p| json!({"type": "text_delta", "text": p}))
            .collect();
        block(&mut f, json!({"type": "text", "text": ""}), deltas);
    }
    for (i, c) in step.all_tool_calls().iter().enumerate() {
        let parts = match &c.raw_arguments {
            Some(p) => p.clone(),
            None => {
                let text = c.arguments.to_string();
                let half = text.chars().count().div_ceil(2);
                pieces(&text, half)
            }
        };
        let deltas = parts
            .into_iter()
            .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
            .collect();
        block(
            &mut f,
            json!({"type": "tool_use", "id": call_id(shape, i, c.id.as_ref()), "name": c.name, "input": {}}),
            deltas,
        );
    }
    let u = usage(step, shape);
    f.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(step), "stop_sequence": null}, "usage": {"output_tokens": u["output_tokens"]}}),
    ));
    f.push(event("message_stop", &json!({"type": "message_stop"})));
    f
}

/// A whole (non-streamed) answer.
pub fn whole(step: &Step, shape: &RequestShape<'_>) -> Value {
    let mut content = thinking_blocks(step);
    if let Some(t) = &step.text {
        content.push(json!({"type": "text", "text": t}));
    }
    for (i, c) in step.all_tool_calls().iter().enumerate() {
        let input: Value = serde_json::from_str(&arguments(c)).unwrap_or(json!({}));
        content.push(json!({"type": "tool_use", "id": call_id(shape, i, c.id.as_ref()), "name": c.name, "input": input}));
    }
    json!({
        "id": shape.id, "type": "message", "role": "assistant", "model": shape.model,
        "content": content, "stop_reason": stop_reason(step), "stop_sequence": null,
        "usage": usage(step, shape),
    })
}
