//! End-to-end: tracing spans exported over OTLP/HTTP to a receiver on 127.0.0.1 (the span
//! tree and the caller's trace id), and a planted secret looked for in every output channel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{Harness, sandbox_available};
use serde_json::Value;

type Bodies = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (String, Bodies) {
    let bodies: Bodies = Arc::default();
    async fn traces(State(b): State<Bodies>, body: Bytes) -> &'static str {
        if let Ok(v) = serde_json::from_slice(&body) {
            b.lock().unwrap().push(v);
        }
        "{}"
    }
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), bodies)
}

#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attrs: HashMap<String, Value>,
}

fn spans(bodies: &[Value]) -> Vec<Span> {
    let mut out = Vec::new();
    for b in bodies {
        for rs in b["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attrs = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
                        .collect();
                    out.push(Span {
                        trace: s["traceId"].as_str().unwrap_or("").to_lowercase(),
                        id: s["spanId"].as_str().unwrap_or("").to_lowercase(),
                        parent: s["parentSpanId"].as_str().unwrap_or("").to_lowercase(),
                        name: s["name"].as_str().unwrap_or("").to_string(),
                        attrs,
                    });
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_under_the_callers_trace() {
    if !sandbox_available() {
        return;
    }
    let (endpoint, bodies) = receiver().await;
    let h = Harness::yaml("steps:\n  - tool_calls: [{name: bash, arguments: {command: \"echo hi\"}}]\n    usage: {prompt_tokens: 120, completion_tokens: 7}\n  - text: done\n").await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let out = h
        .cmd(&["run", "--agent", "backend-architect", "say hi"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("TRACEPARENT", format!("00-{trace_id}-{caller_span}-01"))
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = spans(&bodies.lock().unwrap());
    assert!(!all.is_empty(), "no spans were exported");
    assert!(
        all.iter().all(|s| s.trace == trace_id),
        "every span is in the caller's trace: {:?}",
        all.iter().map(|s| &s.trace).collect::<Vec<_>>()
    );
    let find =
        |pred: &dyn Fn(&Span) -> bool| all.iter().filter(|s| pred(s)).cloned().collect::<Vec<_>>();
    let root = find(&|s| s.name == "deputy");
    assert_eq!(root.len(), 1);
    assert_eq!(
        root[0].parent, caller_span,
        "deputy's root span is a child of TRACEPARENT's span"
    );
    let session = find(&|s| s.name == "invoke_agent backend-architect");
    assert_eq!(
        session.len(),
        1,
        "{:?}",
        all.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(session[0].parent, root[0].id);
    assert_eq!(
        session[0].attrs["gen_ai.agent.name"]["stringValue"],
        "backend-architect"
    );
    let turns = find(&|s| s.name == "turn");
    assert_eq!(turns.len(), 2);
    assert!(turns.iter().all(|t| t.parent == session[0].id));
    let chats = find(&|s| s.name.starts_with("chat "));
    assert_eq!(chats.len(), 2);
    assert!(
        chats.iter().all(|c| turns.iter().any(|t| t.id == c.parent)),
        "model calls sit under turns"
    );
    let first_chat = chats
        .iter()
        .find(|c| {
            c.attrs
                .get("gen_ai.usage.input_tokens")
                .is_some_and(|v| v["intValue"] == "120")
        })
        .expect("token counts on the model span");
    assert_eq!(
        first_chat.attrs["gen_ai.request.model"]["stringValue"],
        "openai/mock-model"
    );
    let tools = find(&|s| s.name == "execute_tool bash");
    assert_eq!(tools.len(), 1);
    assert!(
        turns.iter().any(|t| t.id == tools[0].parent),
        "tool calls sit under turns"
    );
    assert_eq!(tools[0].attrs["gen_ai.tool.name"]["stringValue"], "bash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_secret_appears_nowhere() {
    if !sandbox_available() {
        return;
    }
    const KEY: &str = "sk-planted-7d1e9a44c0b2";
    const TOKEN: &str = "tok-planted-55aa90e1f3";
    const PASSWORD: &str = "pw-planted-0b1c2d3e4f";
    let script = deputy_mockllm::Script::parse(
        r#"
steps:
  - tool_calls: [{name: bash, arguments: {command: "env; cat /proc/self/environ; echo; echo key=$OPENAI_API_KEY token=$DEPUTY_TEST_TOKEN; cat $HOME/.netrc 2>/dev/null || cat /proc/1/environ"}}]
  - tool_calls: [{name: read, arguments: {path: notes.txt}}]
  - text: "done"
"#,
        false,
    )
    .unwrap();
    let h = Harness::with_options(
        script,
        deputy_mockllm::ServeOptions {
            api_key: Some(KEY.into()),
            ..Default::default()
        },
    )
    .await;
    // A secret a command could find on disk: in the workspace, and in the home directory.
    std::fs::write(h.ws.join("notes.txt"), format!("the token is {TOKEN}\n")).unwrap();
    std::fs::write(
        h.home.join(".netrc"),
        format!("machine x password {PASSWORD}\n"),
    )
    .unwrap();
    let mut channels: Vec<(String, String)> = Vec::new();
    for (fmt, log_format) in [("stream-json", "text"), ("json", "json")] {
        let out = h
            .cmd(&[
                "run",
                "--output-format",
                fmt,
                "--log-format",
                log_format,
                "--verbose",
                "show me the environment",
            ])
            .env("OPENAI_API_KEY", KEY)
            .env("DEPUTY_TEST_TOKEN", TOKEN)
            .env("DB_PASSWORD", PASSWORD)
            .env("DEPUTY_LOG", "trace")
            .env("HOME", &h.home)
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        channels.push((
            format!("stdout ({fmt})"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
        channels.push((
            format!("stderr logs ({log_format})"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    // The key was really used to authenticate: the mock checked the header was that key.
    assert!(!h.mock.requests().is_empty());
    assert!(
        h.mock
            .requests()
            .iter()
            .all(|r| r.key_matched == Some(true))
    );
    // What the model was sent.
    for r in h.mock.requests() {
        channels.push((
            format!("request {} to the model", r.seq),
            r.body.to_string(),
        ));
    }
    // The journals.
    for e in std::fs::read_dir(h.home.join("state/sessions")).unwrap() {
        let p = e.unwrap().path().join("events.jsonl");
        channels.push((
            p.display().to_string(),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
    // The tool really ran `env` and read the files (so the check is not vacuous).
    let journal = channels
        .iter()
        .find(|(n, _)| n.ends_with("events.jsonl"))
        .unwrap()
        .1
        .clone();
    assert!(
        journal.contains("PATH=") && journal.contains("the token is [REDACTED]"),
        "{journal}"
    );
    for (name, text) in &channels {
        for secret in [KEY, TOKEN, PASSWORD] {
            assert!(!text.contains(secret), "{secret} leaked into {name}");
        }
    }
    assert!(
        channels
            .iter()
            .any(|(n, t)| n.starts_with("stderr") && t.contains("TRACE")),
        "trace logs were on"
    );

    // An error message that echoes the key does not print it either.
    let h2 = Harness::yaml(&format!(
        "steps:\n  - faults:\n      - status: 401\n        body: {{error: {{message: \"Incorrect API key provided: {KEY}\"}}}}\n    text: never\n"
    ))
    .await;
    let out = h2
        .cmd(&["run", "--output-format", "json", "x"])
        .env("OPENAI_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(KEY), "{all}");
    assert!(all.contains("OPENAI_API_KEY is set"), "{all}");
}
