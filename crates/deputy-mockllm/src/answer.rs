//! Answering a model request in any of the three protocols: read it into chat shape, pick
//! the step, hold it to the rules, log it, and play the step back in the request's protocol.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::respond::{self, RequestShape};
use crate::server::{
    AppState, LoggedRequest, error_response, fault_response, frames_response, lock, select,
    substitute,
};
use crate::wire::Wire;

pub(crate) async fn chat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, Wire::Chat, headers, body).await
}

pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, Wire::Anthropic, headers, body).await
}

pub(crate) async fn responses(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, Wire::Responses, headers, body).await
}

/// Anthropic's `count_tokens`: the prompt as the mock counts it.
pub(crate) async fn count_tokens(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&state.probes).push(uri.path().to_string());
    let wire = Wire::Anthropic;
    let refuse = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(wire.error(m, "invalid_request_error", "")),
        )
            .into_response()
    };
    let Ok(mut body) = serde_json::from_slice::<Value>(&body) else {
        return refuse("request body is not JSON");
    };
    // count_tokens takes no max_tokens; the reading below wants one.
    body["max_tokens"] = json!(1);
    match crate::wire::anthropic::canon(&body, &headers) {
        Ok(canon) => axum::Json(json!({"input_tokens": crate::tokens::prompt_tokens(&canon)}))
            .into_response(),
        Err(m) => refuse(&m),
    }
}

/// Check a request by its protocol's rules and read it into chat shape.
fn canonical(wire: Wire, raw: &Value, headers: &HeaderMap) -> Result<Value, (StatusCode, Value)> {
    let refused = |status: u16, m: &str, param: Option<String>| {
        let mut body = wire.error(m, "invalid_request_error", "");
        if let Some(p) = param {
            body["error"]["param"] = json!(p);
        }
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body,
        )
    };
    match wire {
        Wire::Chat => Ok(raw.clone()),
        Wire::Anthropic => {
            crate::wire::anthropic::canon(raw, headers).map_err(|m| refused(400, &m, None))
        }
        Wire::Responses => crate::wire::responses::canon(raw)
            .map_err(|(status, m, param)| refused(status, &m, param)),
    }
}

async fn answer(state: Arc<AppState>, wire: Wire, headers: HeaderMap, body: Bytes) -> Response {
    let received_ms = state.started.elapsed().as_secs_f64() * 1000.0;
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(wire.error(
                    &format!("request body is not JSON: {e}"),
                    "invalid_request_error",
                    "invalid_json",
                )),
            )
                .into_response();
        }
    };
    let script = &state.script;
    let canon = canonical(wire, &raw, &headers);
    let body = canon.as_ref().map_or(&raw, |c| c);
    let (route, mut step_index) = select(script, body);
    if script.by_request {
        step_index = lock(&state.answered).get(&route).copied().unwrap_or(0);
    }
    let prompt_tokens = crate::tokens::prompt_tokens(body);
    let overflowed = script
        .context_window
        .is_some_and(|w| prompt_tokens + crate::tokens::reserved_output(body) > w);
    let steps = match route {
        Some(r) => &script.routes[r].steps,
        None => &script.steps,
    };
    let fault_index = {
        let mut seen = lock(&state.seen);
        let n = seen.entry((route, step_index)).or_insert(0);
        let i = *n;
        *n += 1;
        i
    };
    let step = steps.get(step_index).or_else(|| {
        // Past the end: replay the last step when the script says so.
        let repeat = match route {
            Some(r) => script.routes[r].repeat_last,
            None => script.repeat_last,
        };
        if repeat { steps.last() } else { None }
    });
    let fault = step.and_then(|s| s.faults.get(fault_index));
    let key_matched = state
        .api_key
        .as_ref()
        .map(|key| wire.key_matches(&headers, key));
    let violation: Option<(StatusCode, Value)> = if script.lenient {
        None
    } else {
        match &canon {
            Err(refusal) => Some(refusal.clone()),
            Ok(c) => crate::strict::violation(c)
                .map(|v| (StatusCode::BAD_REQUEST, v))
                .or_else(|| {
                    let m = match wire {
                        Wire::Chat => None,
                        Wire::Anthropic => {
                            crate::wire::anthropic::check_carried(&raw, route, &state.sent)
                        }
                        Wire::Responses => {
                            crate::wire::responses::check_carried(&raw, route, &state.sent)
                        }
                    }?;
                    Some((
                        StatusCode::BAD_REQUEST,
                        wire.error(&m, "invalid_request_error", ""),
                    ))
                }),
        }
    };
    let seq = {
        let mut log = lock(&state.log);
        let seq = log.len();
        let entry = LoggedRequest {
            seq,
            received_ms,
            done_ms: None,
            path: wire.path().into(),
            route,
            step: step_index,
            fault: fault.map(|_| fault_index),
            authorized: wire.authorized(&headers),
            key_matched,
            rejected: violation
                .as_ref()
                .and_then(|(_, v)| v.pointer("/error/message"))
                .and_then(Value::as_str)
                .map(str::to_string),
            prompt_tokens,
            overflowed,
            body: body.clone(),
            raw: (wire != Wire::Chat).then(|| raw.clone()),
        };
        if let Some(f) = &state.log_file
            && let Ok(line) = serde_json::to_string(&entry)
        {
            let _ = writeln!(lock(f), "{line}");
        }
        log.push(entry);
        seq
    };
    if key_matched == Some(false) {
        return (StatusCode::UNAUTHORIZED, axum::Json(wire.bad_key())).into_response();
    }
    if let Some((status, v)) = violation {
        return (status, axum::Json(v)).into_response();
    }
    if let (true, Some(w)) = (overflowed, script.context_window) {
        let body = wire.overflow(w, prompt_tokens);
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let Some(step) = step else {
        let message = format!(
            "deputy-mockllm: the script has {} step(s){}; this conversation has {step_index} assistant turn(s), so it asks for step {}",
            steps.len(),
            route.map(|r| format!(" in route {r}")).unwrap_or_default(),
            step_index + 1
        );
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(wire.error(&message, "invalid_request_error", "script_exhausted")),
        )
            .into_response();
    };
    let captured = substitute(step, body);
    let step = captured.as_ref().unwrap_or(step);
    let delay = fault
        .and_then(|f| f.delay_ms)
        .or(step.delay_ms)
        .unwrap_or(0);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(f) = fault
        && let Some(status) = f.status
    {
        return fault_response(status, f);
    }
    *lock(&state.answered).entry(route).or_insert(0) += 1;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    // Anthropic and Responses always report usage; chat only when asked.
    let include_usage = wire != Wire::Chat
        || body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string();
    let (cached_tokens, cache_write_tokens) = if script.prompt_cache {
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let read = state.prefixes.cached_tokens(route, &messages);
        // Anthropic writes what its breakpoints mark; half the rest, as the mock says it.
        let marked = wire == Wire::Anthropic && raw.to_string().contains("cache_control");
        let write = if marked {
            prompt_tokens.saturating_sub(read) / 2
        } else {
            0
        };
        (read, write)
    } else {
        (0, 0)
    };
    let id = match wire {
        Wire::Chat => format!("chatcmpl-mock-{seq}"),
        Wire::Anthropic => format!("msg_mock_{seq}"),
        Wire::Responses => format!("resp_mock_{seq}"),
    };
    let shape = RequestShape {
        stream,
        include_usage,
        model: &model,
        prompt_tokens,
        cached_tokens,
        cache_write_tokens,
        id,
        step_index,
    };
    let remembered = match wire {
        Wire::Chat => Vec::new(),
        Wire::Anthropic => crate::wire::anthropic::remembered(step, &shape),
        Wire::Responses => crate::wire::responses::remembered(step, &shape),
    };
    for (call_id, items) in remembered {
        state.sent.remember(route, &call_id, items);
    }
    let on_done = {
        let state = state.clone();
        move || {
            let done = state.started.elapsed().as_secs_f64() * 1000.0;
            if let Some(e) = lock(&state.log).get_mut(seq) {
                e.done_ms = Some(done);
            }
        }
    };
    if let Some(replay) = &step.replay {
        let path = script.resolve_path(replay.path());
        return match respond::replay_frames(&path, replay.status()) {
            Ok((status, ctype, frames)) => frames_response(status, ctype, frames, on_done),
            Err(e) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!(
                    "deputy-mockllm: cannot read replay file {}: {e}",
                    path.display()
                ),
                "replay_missing",
            ),
        };
    }
    if !shape.stream {
        let body = match wire {
            Wire::Chat => respond::whole_body(step, &shape),
            Wire::Anthropic => crate::wire::anthropic::whole(step, &shape),
            Wire::Responses => crate::wire::responses::whole(step, &shape),
        };
        on_done();
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let mut frames = match wire {
        Wire::Chat => respond::stream_frames(step, &shape),
        Wire::Anthropic => crate::wire::anthropic::frames(step, &shape),
        Wire::Responses => crate::wire::responses::frames(step, &shape),
    };
    if let Some(f) = fault {
        frames = respond::apply_stream_fault(frames, f, wire.overloaded_frame());
    }
    frames_response(200, "text/event-stream", frames, on_done)
}
