//! OpenAI Responses: the rules of a stateless (`store: false`) request, the reading into chat
//! shape, and the stream (`response.created` … `response.completed`, reasoning items with
//! `encrypted_content`, function calls with argument deltas).

use serde_json::{Map, Value, json};

use super::{Sent, arguments, event, fingerprint, pieces, str_of, text_of};
use crate::respond::{Frame, RequestShape, output_tokens};
use crate::script::Step;

/// The "encrypted" content the mock gives a reasoning text (checked when it comes back).
pub fn encrypted(reasoning: &str) -> String {
    format!("enc-{}", fingerprint(reasoning))
}

/// The error of a refused request: (HTTP status, message, param).
pub type Refusal = (u16, String, Option<String>);

/// Check a request by the Responses API's rules and read it into chat shape.
pub fn canon(body: &Value) -> Result<Value, Refusal> {
    let bad = |m: String, param: &str| Err((400, m, Some(param.to_string())));
    let stored = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let input = match body.get("input") {
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        _ => return bad("Missing required parameter: 'input'.".into(), "input"),
    };
    let mut out: Vec<Value> = Vec::new();
    if let Some(i) = body.get("instructions").and_then(Value::as_str) {
        out.push(json!({"role": "system", "content": i}));
    }
    // Calls made and not yet answered; whether the last chat message is the model's turn.
    let mut pending: Vec<String> = Vec::new();
    let mut answered: Vec<String> = Vec::new();
    let mut in_turn = false;
    for (n, item) in input.iter().enumerate() {
        let kind = match str_of(item, "type") {
            "" if item.get("role").is_some() => "message",
            k => k,
        };
        // Without `store`, an item named by its id alone is looked up and not found: a
        // reference, or a reasoning item without its encrypted content. An item given whole
        // may carry an id of the client's own (Codex names its messages).
        let by_id = kind == "item_reference"
            || (kind == "reasoning" && str_of(item, "encrypted_content").is_empty());
        if !stored
            && by_id
            && let Some(id) = item.get("id").and_then(Value::as_str)
        {
            return Err((
                404,
                format!(
                    "Item with id '{id}' not found. Items are not persisted when `store` is set to false. Try again with `store` set to true, or remove this item from your input."
                ),
                Some(format!("input[{n}]")),
            ));
        }
        match kind {
            "message" => {
                let role = str_of(item, "role");
                let text = text_of(item.get("content").unwrap_or(&Value::Null));
                match role {
                    "assistant" => {
                        open_turn(&mut out, &mut in_turn);
                        if let Some(last) = out.last_mut() {
                            let before = str_of(last, "content").to_string();
                            last["content"] = json!(before + &text);
                        }
                    }
                    "user" | "system" | "developer" => {
                        if let Some(id) = pending.iter().find(|p| !answered.contains(p)) {
                            return bad(
                                format!("No tool output found for function call {id}."),
                                "input",
                            );
                        }
                        in_turn = false;
                        let role = if role == "user" { "user" } else { "system" };
                        out.push(json!({"role": role, "content": text}));
                    }
                    other => {
                        return bad(
                            format!(
                                "Invalid value: '{other}'. Supported values are: 'assistant', 'system', 'developer', and 'user'."
                            ),
                            &format!("input[{n}].role"),
                        );
                    }
                }
            }
            "reasoning" => {
                let enc = str_of(item, "encrypted_content");
                let summary: String = item
                    .get("summary")
                    .and_then(Value::as_array)
                    .map(|s| s.iter().map(|p| str_of(p, "text")).collect())
                    .unwrap_or_default();
                if !enc.is_empty() && enc != encrypted(&summary) {
                    return bad(
                        format!("The encrypted content for item input[{n}] could not be verified."),
                        &format!("input[{n}].encrypted_content"),
                    );
                }
                open_turn(&mut out, &mut in_turn);
            }
            "function_call" => {
                let call_id = str_of(item, "call_id").to_string();
                open_turn(&mut out, &mut in_turn);
                if let Some(last) = out.last_mut().and_then(Value::as_object_mut) {
                    let calls = last
                        .entry("tool_calls")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Some(calls) = calls.as_array_mut() {
                        calls.push(json!({"id": call_id, "type": "function", "function": {"name": str_of(item, "name"), "arguments": str_of(item, "arguments")}}));
                    }
                }
                pending.push(call_id);
            }
            "function_call_output" => {
                let call_id = str_of(item, "call_id");
                if !pending.iter().any(|p| p == call_id) || answered.iter().any(|a| a == call_id) {
                    return bad(
                        format!(
                            "No tool call found for function call output with call_id {call_id}."
                        ),
                        "input",
                    );
                }
                answered.push(call_id.to_string());
                in_turn = false;
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => text_of(other),
                    None => String::new(),
                };
                out.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            }
            other => {
                return bad(
                    format!("Invalid value: '{other}'."),
                    &format!("input[{n}].type"),
                );
            }
        }
    }
    if let Some(id) = pending.iter().find(|p| !answered.contains(p)) {
        return bad(
            format!("No tool output found for function call {id}."),
            "input",
        );
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|t| json!({"type": "function", "function": {"name": str_of(t, "name"), "description": str_of(t, "description"), "parameters": t.get("parameters").cloned().unwrap_or(json!({}))}}))
                .collect()
        })
        .unwrap_or_default();
    let mut canon = json!({
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "messages": out,
        "stream": body.get("stream").and_then(Value::as_bool).unwrap_or(false),
    });
    if let Some(m) = body.get("max_output_tokens") {
        canon["max_tokens"] = m.clone();
    }
    if !tools.is_empty() {
        canon["tools"] = Value::Array(tools);
    }
    Ok(canon)
}

/// Make the last chat message an assistant message of the current turn.
fn open_turn(out: &mut Vec<Value>, in_turn: &mut bool) {
    if !*in_turn {
        let mut m = Map::new();
        m.insert("role".into(), json!("assistant"));
        m.insert("content".into(), json!(""));
        out.push(Value::Object(m));
        *in_turn = true;
    }
}

/// A call the mock answered with a reasoning item must come back behind that item, with the
/// same encrypted content.
pub fn check_carried(body: &Value, route: Option<usize>, sent: &Sent) -> Option<String> {
    let input = body.get("input")?.as_array()?;
    let mut turn_reasoning: Vec<&Value> = Vec::new();
    for item in input {
        match str_of(item, "type") {
            "reasoning" => turn_reasoning.push(item),
            "function_call" => {
                let call_id = str_of(item, "call_id");
                let Some(expected) = sent.expected(route, call_id) else {
                    continue;
                };
                let kept = expected.iter().all(|e| {
                    turn_reasoning.iter().any(|r| {
                        str_of(r, "encrypted_content") == str_of(e, "encrypted_content")
                            && r.get("summary") == e.get("summary")
                    })
                });
                if !kept {
                    return Some(format!(
                        "deputy-mockllm: the reasoning item sent with function call {call_id} was dropped or changed; with `store: false` it must be sent back, with its encrypted_content, before the call"
                    ));
                }
            }
            "function_call_output" => {}
            // The model's own text is part of its turn; anything else starts another.
            _ if str_of(item, "role") == "assistant" => {}
            _ => turn_reasoning.clear(),
        }
    }
    None
}

fn reasoning_item(step: &Step, shape: &RequestShape<'_>) -> Option<Value> {
    let r = step.reasoning.as_ref()?;
    Some(json!({
        "type": "reasoning", "id": format!("rs_{}", shape.id),
        "summary": [{"type": "summary_text", "text": r}],
        "encrypted_content": encrypted(r),
    }))
}

fn call_id(shape: &RequestShape<'_>, i: usize, explicit: Option<&String>) -> String {
    explicit
        .cloned()
        .unwrap_or_else(|| format!("call_{}_{i}", shape.step_index))
}

/// The calls of a step with their ids, and what each must come back with.
pub fn remembered(step: &Step, shape: &RequestShape<'_>) -> Vec<(String, Vec<Value>)> {
    let items: Vec<Value> = reasoning_item(step, shape).into_iter().collect();
    step.all_tool_calls()
        .iter()
        .enumerate()
        .map(|(i, c)| (call_id(shape, i, c.id.as_ref()), items.clone()))
        .collect()
}

/// The output items of a step, finished.
fn output(step: &Step, shape: &RequestShape<'_>) -> Vec<Value> {
    let mut items: Vec<Value> = reasoning_item(step, shape).into_iter().collect();
    if let Some(t) = &step.text {
        items.push(json!({"type": "message", "id": format!("msg_{}", shape.id), "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": t, "annotations": []}]}));
    }
    for (i, c) in step.all_tool_calls().iter().enumerate() {
        items.push(json!({"type": "function_call", "id": format!("fc_{}_{i}", shape.id), "status": "completed", "call_id": call_id(shape, i, c.id.as_ref()), "name": c.name, "arguments": arguments(c)}));
    }
    items
}

/// The final response object.
fn response(step: &Step, shape: &RequestShape<'_>, include_output: bool) -> Value {
    let (prompt, out) = match step.usage {
        Some(u) => (u.prompt_tokens, u.completion_tokens),
        None => (shape.prompt_tokens, output_tokens(step)),
    };
    let reasoning = step.reasoning.as_deref().map_or(0, |r| r.len().div_ceil(4)) as u64;
    let mut r = json!({
        "id": shape.id, "object": "response", "created_at": 1_700_000_000u64,
        "model": shape.model, "status": "completed",
        "output": if include_output { output(step, shape) } else { Vec::new() },
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": shape.cached_tokens.min(prompt)},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning.min(out)},
            "total_tokens": prompt + out,
        },
    });
    if let Some(why) = step
        .stop_reason
        .as_deref()
        .filter(|s| matches!(*s, "max_output_tokens" | "content_filter"))
    {
        r["status"] = json!("incomplete");
        r["incomplete_details"] = json!({"reason": why});
    }
    r
}

/// The frames of a streamed answer.
pub fn frames(step: &Step, shape: &RequestShape<'_>) -> Vec<Frame> {
    let n = step.chunk_chars.unwrap_or(16);
    let mut created = response(step, shape, false);
    created["status"] = json!("in_progress");
    created.as_object_mut().map(|o| o.remove("usage"));
    let mut f = vec![event(
        "response.created",
        &json!({"type": "response.created", "response": created}),
    )];
    let ev = |f: &mut Vec<Frame>, kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        f.push(event(kind, &data));
    };
    for (index, item) in output(step, shape).into_iter().enumerate() {
        let mut added = item.clone();
        match str_of(&item, "type") {
            "reasoning" => {
                added["summary"] = json!([]);
                added.as_object_mut().map(|o| o.remove("encrypted_content"));
                ev(
                    &mut f,
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                let text = step.reasoning.clone().unwrap_or_default();
                ev(
                    &mut f,
                    "response.reasoning_summary_part.added",
                    json!({"output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
                );
                for p in pieces(&text, n) {
                    ev(
                        &mut f,
                        "response.reasoning_summary_text.delta",
                        json!({"output_index": index, "summary_index": 0, "delta": p}),
                    );
                }
                ev(
                    &mut f,
                    "response.reasoning_summary_text.done",
                    json!({"output_index": index, "summary_index": 0, "text": text}),
                );
            }
            "message" => {
                added["content"] = json!([]);
                added["status"] = json!("in_progress");
                ev(
                    &mut f,
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                let text = step.text.clone().unwrap_or_default();
                ev(
                    &mut f,
                    "response.content_part.added",
                    json!({"output_index": index, "content_index": 0, "part": {"type": "output_text", "text": ""}}),
                );
                for p in pieces(&text, n) {
                    ev(
                        &mut f,
                        "response.output_text.delta",
                        json!({"output_index": index, "content_index": 0, "delta": p}),
                    );
                }
                ev(
                    &mut f,
                    "response.output_text.done",
                    json!({"output_index": index, "content_index": 0, "text": text}),
                );
            }
            _ => {
                let args = str_of(&item, "arguments").to_string();
                added["arguments"] = json!("");
                added["status"] = json!("in_progress");
                ev(
                    &mut f,
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                let half = args.chars().count().div_ceil(2);
                for p in pieces(&args, half) {
                    ev(
                        &mut f,
                        "response.function_call_arguments.delta",
                        json!({"output_index": index, "delta": p}),
                    );
                }
                ev(
                    &mut f,
                    "response.function_call_arguments.done",
                    json!({"output_index": index, "arguments": args}),
                );
            }
        }
        ev(
            &mut f,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
    let done = response(step, shape, true);
    let kind = if done["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    ev(&mut f, kind, json!({"response": done}));
    f
}

/// A whole (non-streamed) answer.
pub fn whole(step: &Step, shape: &RequestShape<'_>) -> Value {
    response(step, shape, true)
}
