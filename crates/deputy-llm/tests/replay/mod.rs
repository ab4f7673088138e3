//! Replaying recorded (or hand-written) responses, listed in a `wire/MANIFEST.tsv`, through
//! deputy-mockllm over HTTP into the client, and checking what comes out against a deliberately
//! naive reading of each body (not the client's own code). Used by `corpus_replay.rs` on the
//! shared corpus and by `wire_fixtures.rs` on the project's own files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use deputy_llm::{
    Breakers, ChatRequest, LlmError, Message, ModelClient, OpenAiClient, ProviderSettings,
    Resolved, RetryPolicy, Target, collect,
};
use deputy_mockllm::{Match, MockServer, Replay, Route, Script, ServeOptions, Step};
use serde_json::Value;

pub struct Entry {
    pub path: PathBuf,
    pub rel: String,
    pub format: String,
    pub status: Option<u16>,
}

pub fn manifest(root: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(root.join("wire/MANIFEST.tsv"))
        .unwrap_or_else(|e| panic!("corpus manifest missing under {}: {e}", root.display()));
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let rel = cols.first()?.to_string();
            Some(Entry {
                path: root.join(&rel),
                format: cols.get(3)?.to_string(),
                status: cols.get(4).and_then(|s| s.parse().ok()),
                rel,
            })
        })
        .collect()
}

/// The chunks of a recording, as JSON values, plus whether it carries an `event: error`.
fn chunks_of(e: &Entry) -> (Vec<Value>, bool) {
    let text = std::fs::read_to_string(&e.path).unwrap();
    match e.format.as_str() {
        "json" => (vec![serde_json::from_str(&text).unwrap()], false),
        "jsonl" => (
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            false,
        ),
        _ => {
            let mut out = Vec::new();
            let mut event_error = false;
            for block in text.split("\n\n") {
                let mut is_error = false;
                let mut data = String::new();
                for line in block.lines() {
                    if line.starts_with("event: error") || line.starts_with("event:error") {
                        is_error = true;
                    }
                    if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if is_error {
                    event_error = true;
                }
                if data.is_empty() || data == "[DONE]" {
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    out.push(v);
                }
            }
            (out, event_error)
        }
    }
}

#[derive(Debug, Default)]
struct Expected {
    text: String,
    reasoning: bool,
    calls: Vec<(String, Value)>,
    usage_prompt: Option<u64>,
    in_stream_error: bool,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "text")
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn expected(e: &Entry) -> Expected {
    let (chunks, event_error) = chunks_of(e);
    let mut x = Expected {
        in_stream_error: event_error,
        ..Expected::default()
    };
    // Naive assembly: a call continues while neither a new non-empty id nor a new index appears.
    let mut calls: Vec<(Option<u64>, String, String, String)> = Vec::new(); // (index, id, name, args)
    for c in &chunks {
        if c.get("error").is_some_and(|v| !v.is_null()) {
            x.in_stream_error = true;
        }
        if let Some(u) = c.get("usage").filter(|u| u.is_object())
            && let Some(p) = u.get("prompt_tokens").and_then(Value::as_u64)
        {
            x.usage_prompt = Some(p);
        }
        let Some(choice) = c.pointer("/choices/0") else {
            continue;
        };
        let Some(d) = choice.get("delta").or_else(|| choice.get("message")) else {
            continue;
        };
        x.text
            .push_str(&s(d.get("content").unwrap_or(&Value::Null)));
        for key in ["reasoning_content", "reasoning"] {
            if let Some(r) = d.get(key)
                && (r.as_str().is_some_and(|s| !s.is_empty()) || r.is_object())
            {
                x.reasoning = true;
            }
        }
        if let Some(Value::Array(parts)) = d.get("content")
            && parts
                .iter()
                .any(|p| p.get("type").and_then(Value::as_str) == Some("thinking"))
        {
            x.reasoning = true;
        }
        for tc in d
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = tc.get("index").and_then(Value::as_u64);
            let id = tc
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let name = tc
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let args = match tc.pointer("/function/arguments") {
                Some(Value::String(a)) => a.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let found = calls.iter().position(|(i, cid, _, _)| {
                (!id.is_empty() && *cid == id) || (id.is_empty() && index.is_some() && *i == index)
            });
            let found = found.or_else(|| {
                (id.is_empty() && index.is_none())
                    .then(|| calls.len().checked_sub(1))
                    .flatten()
            });
            match found {
                Some(k) => {
                    if calls[k].2.is_empty() {
                        calls[k].2 = name;
                    }
                    calls[k].3.push_str(&args);
                    if calls[k].1.is_empty() {
                        calls[k].1 = id;
                    }
                }
                None => calls.push((index, id, name, args)),
            }
        }
    }
    x.calls = calls
        .into_iter()
        .map(|(_, _, name, args)| {
            let v = if args.trim().is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(&args).unwrap_or(Value::Null)
            };
            (name, v)
        })
        .collect();
    x
}

pub fn client(url: &str) -> OpenAiClient {
    let t = Target {
        provider: ProviderSettings::new("corpus", url),
        model: "recorded".into(),
    };
    OpenAiClient::new(
        Resolved {
            primary: t,
            fallbacks: vec![],
            warnings: vec![],
        },
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        Breakers::default(),
    )
    .unwrap()
}

pub fn request(tag: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(format!("replay {tag}"))],
        ..Default::default()
    }
}

pub async fn server_for(entries: &[&Entry], status: impl Fn(&Entry) -> Option<u16>) -> MockServer {
    let routes = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Route {
            when: Match {
                user_contains: Some(format!("replay #{i}#")),
                ..Match::default()
            },
            steps: vec![Step {
                replay: Some(Replay::Full {
                    path: e.path.clone(),
                    status: status(e),
                }),
                ..Step::default()
            }],
            ..Route::default()
        })
        .collect();
    MockServer::start(
        Script {
            routes,
            ..Script::default()
        },
        ServeOptions::default(),
    )
    .await
    .unwrap()
}

/// What replaying the 200 bodies found.
#[derive(Debug, Default)]
pub struct Report200 {
    pub entries: usize,
    pub ok: usize,
    pub in_stream: usize,
    pub with_calls: usize,
    pub with_reasoning: usize,
    pub with_usage: usize,
    /// `path: problem` for each body the client read differently from the naive reading.
    pub failures: Vec<String>,
}

/// Replay every 200 body listed under `root` (`root/wire/MANIFEST.tsv`).
pub async fn replay_200(root: &Path) -> Report200 {
    let all = manifest(root);
    let entries: Vec<&Entry> = all
        .iter()
        .filter(|e| e.status.is_none_or(|s| s == 200))
        .filter(|e| !(e.status.is_none() && e.rel.contains("error")))
        .collect();
    let server = server_for(&entries, |_| Some(200)).await;
    let c = client(&server.url());
    let (mut ok, mut in_stream, mut with_calls, mut with_reasoning, mut with_usage) =
        (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let want = expected(e);
        let got = collect(c.stream(request(&format!("#{i}#")))).await;
        let problem = match (&got, want.in_stream_error) {
            (Err(LlmError::InStream { .. }), true) => {
                in_stream += 1;
                None
            }
            (Err(err), _) => Some(format!("client error: {err}")),
            (Ok(_), true) => Some("expected an in-stream error".to_string()),
            (Ok(done), false) => {
                let mut p = Vec::new();
                let got_calls: Vec<(String, Value)> = done
                    .tool_calls
                    .iter()
                    .map(|c| (c.name.clone(), c.arguments.clone()))
                    .collect();
                if got_calls != want.calls {
                    p.push(format!(
                        "tool calls {got_calls:?} != recorded {:?}",
                        want.calls
                    ));
                }
                if want.text.contains("<think>") {
                    if done.text.contains("<think>") || done.reasoning.is_empty() {
                        p.push("inline <think> not separated".into());
                    }
                } else if done.text != want.text.trim_start() {
                    p.push(format!("text differs: {:?} vs {:?}", done.text, want.text));
                }
                if want.reasoning && done.reasoning.is_empty() {
                    p.push("reasoning lost".into());
                }
                if !want.reasoning && !want.text.contains("<think>") && !done.reasoning.is_empty() {
                    p.push("reasoning invented".into());
                }
                if let Some(prompt) = want.usage_prompt {
                    let u = done.usage.unwrap();
                    if u.estimated || u.input_tokens != prompt {
                        p.push(format!("usage {u:?}, recorded prompt_tokens {prompt}"));
                    }
                    with_usage += 1;
                }
                if !done.tool_calls.is_empty() {
                    with_calls += 1;
                }
                if !done.reasoning.is_empty() {
                    with_reasoning += 1;
                }
                ok += 1;
                (!p.is_empty()).then(|| p.join("; "))
            }
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}", e.rel));
        }
    }
    Report200 {
        entries: entries.len(),
        ok,
        in_stream,
        with_calls,
        with_reasoning,
        with_usage,
        failures,
    }
}

/// Replay every error body listed under `root`; returns how many, and the mismatches.
pub async fn replay_errors(root: &Path) -> (usize, Vec<String>) {
    let all = manifest(root);
    let entries: Vec<&Entry> = all
        .iter()
        .filter(|e| {
            e.status.is_some_and(|s| s != 200)
                || (e.status.is_none() && e.rel.contains("error") && e.format == "json")
        })
        .collect();
    // Recordings without a status: serve them with what the API sends for that error.
    let status_of = |e: &Entry| {
        e.status.or_else(|| {
            let body = std::fs::read_to_string(&e.path).unwrap();
            Some(if body.contains("insufficient_quota") {
                429
            } else {
                400
            })
        })
    };
    let server = server_for(&entries, status_of).await;
    let c = client(&server.url());
    let mut failures = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let err = collect(c.stream(request(&format!("#{i}#"))))
            .await
            .expect_err(&e.rel);
        let status = status_of(e).unwrap();
        let body = std::fs::read_to_string(&e.path).unwrap();
        // A naive reading of "the request is longer than the window", in any wording.
        let lower = body.to_ascii_lowercase();
        let overflow = !lower.contains("per minute")
            && (lower.contains("context")
                || lower.contains("too long")
                || lower.contains("prompt length")
                || lower.contains("number of tokens allowed"));
        let right = match status {
            400 if overflow => matches!(err, LlmError::ContextOverflow { .. }),
            400 => matches!(err, LlmError::BadRequest { status: 400, .. }),
            413 => matches!(err, LlmError::BadRequest { status: 413, .. }),
            404 => matches!(err, LlmError::ModelNotFound { .. }),
            429 if body.contains("insufficient_quota") => {
                matches!(&err, LlmError::BadRequest { status: 429, code: Some(c), .. } if c == "insufficient_quota")
            }
            429 => matches!(err, LlmError::RateLimited { .. }),
            _ => false,
        };
        // The server's own explanation must reach the user.
        let message: Value = serde_json::from_str(&body).unwrap();
        let server_msg = ["/error/message", "/0/error/message", "/message", "/error"]
            .iter()
            .find_map(|p| message.pointer(p).and_then(Value::as_str))
            .unwrap_or("");
        if !right || !err.to_string().contains(server_msg) {
            failures.push(format!("{} ({status}): {err:?}", e.rel));
        }
    }
    (entries.len(), failures)
}
