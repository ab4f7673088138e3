//! Building response bodies from script steps: SSE frames for streaming requests, one JSON
//! object otherwise, and recorded bodies replayed byte for byte.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::script::{Fault, Step};

/// One piece of a response body as it will be sent.
#[derive(Debug, Clone)]
pub enum Frame {
    Data(Bytes),
    Sleep(Duration),
    /// Abort the connection here (the client sees a broken stream).
    Drop,
}

/// What the request asked for.
pub struct RequestShape<'a> {
    pub stream: bool,
    pub include_usage: bool,
    pub model: &'a str,
    pub prompt_tokens: u64,
    /// Tokens of a prefix repeated from the previous request (with `prompt_cache`).
    pub cached_tokens: u64,
    /// Tokens reported as written to the cache (Anthropic, with `prompt_cache` and
    /// `cache_control` breakpoints in the request).
    pub cache_write_tokens: u64,
    pub id: String,
    pub step_index: usize,
}

fn sse(v: &Value) -> Frame {
    Frame::Data(Bytes::from(format!("data: {v}\n\n")))
}

fn chunk(shape: &RequestShape<'_>, choices: Value, usage: Option<Value>) -> Value {
    let mut c = json!({
        "id": shape.id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u64,
        "model": shape.model,
        "choices": choices,
    });
    if let Some(u) = usage {
        c["usage"] = u;
    }
    c
}

fn split_chars(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// The answer tokens of a step, estimated at about 4 characters a token.
pub(crate) fn output_tokens(step: &Step) -> u64 {
    let out: usize = step.text.as_deref().map_or(0, str::len)
        + step.reasoning.as_deref().map_or(0, str::len)
        + step
            .all_tool_calls()
            .iter()
            .map(|c| c.name.len() + c.arguments.to_string().len())
            .sum::<usize>();
    out.div_ceil(4).max(1) as u64
}

fn usage_of(step: &Step, shape: &RequestShape<'_>) -> Value {
    let (p, c) = match step.usage {
        Some(u) => (u.prompt_tokens, u.completion_tokens),
        None => (shape.prompt_tokens, output_tokens(step)),
    };
    let mut usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    if shape.cached_tokens > 0 {
        usage["prompt_tokens_details"] = json!({"cached_tokens": shape.cached_tokens.min(p)});
    }
    usage
}

fn call_id(step_index: usize, i: usize, explicit: Option<&String>) -> String {
    explicit
        .cloned()
        .unwrap_or_else(|| format!("call_{step_index}_{i}"))
}

/// The frames of a streamed answer for `step`.
pub fn stream_frames(step: &Step, shape: &RequestShape<'_>) -> Vec<Frame> {
    let mut frames = vec![sse(&chunk(
        shape,
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        None,
    ))];
    let n = step.chunk_chars.unwrap_or(16);
    if let Some(r) = &step.reasoning {
        for piece in split_chars(r, n) {
            frames.push(sse(&chunk(
                shape,
                json!([{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": null}]),
                None,
            )));
        }
    }
    if let Some(t) = &step.text {
        for piece in split_chars(t, n) {
            frames.push(sse(&chunk(
                shape,
                json!([{"index": 0, "delta": {"content": piece}, "finish_reason": null}]),
                None,
            )));
        }
    }
    let calls = step.all_tool_calls();
    for (i, call) in calls.iter().enumerate() {
        frames.push(sse(&chunk(
            shape,
            json!([{"index": 0, "delta": {"tool_calls": [{
                "index": i,
                "id": call_id(shape.step_index, i, call.id.as_ref()),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }]}, "finish_reason": null}]),
            None,
        )));
        let pieces = match &call.raw_arguments {
            Some(p) => p.clone(),
            None => {
                let text = call.arguments.to_string();
                let half = text.chars().count().div_ceil(2);
                split_chars(&text, half.max(1))
            }
        };
        for piece in pieces {
            frames.push(sse(&chunk(
                shape,
                json!([{"index": 0, "delta": {"tool_calls": [{
                    "index": i,
                    "function": {"arguments": piece},
                }]}, "finish_reason": null}]),
                None,
            )));
        }
    }
    let finish = step.stop_reason.as_deref().unwrap_or(if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    });
    frames.push(sse(&chunk(
        shape,
        json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
        None,
    )));
    if shape.include_usage && !step.no_usage {
        frames.push(sse(&chunk(shape, json!([]), Some(usage_of(step, shape)))));
    }
    frames.push(Frame::Data(Bytes::from_static(b"data: [DONE]\n\n")));
    if let Some(ms) = step.chunk_delay_ms.filter(|ms| *ms > 0) {
        let mut spaced = Vec::with_capacity(frames.len() * 2);
        for f in frames {
            spaced.push(f);
            spaced.push(Frame::Sleep(Duration::from_millis(ms)));
        }
        spaced.pop();
        frames = spaced;
    }
    frames
}

/// A non-streaming answer for `step`.
pub fn whole_body(step: &Step, shape: &RequestShape<'_>) -> Value {
    let calls = step.all_tool_calls();
    let mut message = json!({"role": "assistant", "content": step.text});
    if let Some(r) = &step.reasoning {
        message["reasoning_content"] = json!(r);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({
                        "id": call_id(shape.step_index, i, c.id.as_ref()),
                        "type": "function",
                        "function": {
                            "name": c.name,
                            "arguments": c.raw_arguments.as_ref().map(|p| p.concat()).unwrap_or_else(|| c.arguments.to_string()),
                        }
                    })
                })
                .collect(),
        );
    }
    let mut body = json!({
        "id": shape.id,
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": shape.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": step.stop_reason.as_deref().unwrap_or(if calls.is_empty() { "stop" } else { "tool_calls" }),
        }],
    });
    if !step.no_usage {
        body["usage"] = usage_of(step, shape);
    }
    body
}

/// Apply a streaming fault to the frames of a normal answer (`overloaded`: the protocol's
/// error event).
pub fn apply_stream_fault(mut frames: Vec<Frame>, fault: &Fault, overloaded: Frame) -> Vec<Frame> {
    if let Some(n) = fault.error_after_chunks {
        frames.truncate(n);
        frames.push(overloaded);
    } else if let Some(n) = fault.drop_after_chunks {
        frames.truncate(n);
        frames.push(Frame::Drop);
    } else if let Some(n) = fault.stall_after_chunks {
        frames.truncate(n);
        frames.push(Frame::Sleep(Duration::from_millis(
            fault.stall_ms.unwrap_or(60_000),
        )));
        frames.push(Frame::Drop);
    } else if let Some(n) = fault.malformed_after_chunks {
        let at = n.min(frames.len());
        frames.insert(
            at,
            Frame::Data(Bytes::from_static(b"data: {\"choices\": [{\"delta\": \n\n")),
        );
    }
    frames
}

/// A recorded body: (status, content type, frames).
pub fn replay_frames(
    path: &Path,
    status: Option<u16>,
) -> std::io::Result<(u16, &'static str, Vec<Frame>)> {
    let bytes = std::fs::read(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `<stem>.<interaction>.<status>.json` carries its status in the name.
    let status_from_name = name
        .rsplit('.')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s));
    let status = status.or(status_from_name).unwrap_or(200);
    if name.ends_with(".chunks.txt") {
        let text = String::from_utf8_lossy(&bytes);
        let mut frames: Vec<Frame> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Frame::Data(Bytes::from(format!("data: {l}\n\n"))))
            .collect();
        frames.push(Frame::Data(Bytes::from_static(b"data: [DONE]\n\n")));
        return Ok((status, "text/event-stream", frames));
    }
    let content_type = if name.ends_with(".sse") {
        "text/event-stream"
    } else {
        "application/json"
    };
    Ok((status, content_type, vec![Frame::Data(Bytes::from(bytes))]))
}
