//! A2A in `deputy serve`, driven by the official Python SDK's client (`tests/a2a_client.py`,
//! `a2a-sdk` 1.x over the JSON-RPC binding): the Agent Card, a streamed task read to the end,
//! a task stopped at input-required and answered, a stream left and subscribed to again, a
//! cancel while a command runs, a task continued by its context, listing and fetching, and
//! another token's task not found. Outcomes are checked in the workspace and the mock's log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::serve::start;
use common::{Harness, processes_with, sandbox_available};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_client_drives_tasks_end_to_end() {
    let Some(python) = common::outside::a2a_python() else {
        return;
    };
    if !sandbox_available() {
        return;
    }
    drive(&python, None, 41).await;
}

/// The same, on a worker of the shared store (PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_client_drives_tasks_on_postgresql() {
    let Some(python) = common::outside::a2a_python() else {
        return;
    };
    if !sandbox_available() {
        return;
    }
    let Some(pg) = common::postgres::start() else {
        return;
    };
    drive(&python, Some(&pg.url), 42).await;
}

/// Run the SDK client against a server (on `store`, else the embedded one) and check what it
/// saw against the workspace and the mock.
async fn drive(python: &str, store: Option<&str>, n: u32) {
    let marker = format!("{}.{}", 700 + std::process::id() % 200, n);
    let h = Harness::yaml(&format!(
        r#"
steps: [{{text: unrouted}}]
routes:
  - when: {{user_contains: "task:"}}
    steps:
      - tool_call: {{name: write, arguments: {{path: hello.txt, content: hi}}}}
      - text: "wrote hello"
      - text: "again done"
  - when: {{user_contains: "ask:"}}
    steps:
      - tool_call: {{name: bash, arguments: {{command: "touch approved.txt"}}}}
      - text: "approved and done"
  - when: {{user_contains: "resume:"}}
    steps:
      - {{text: "slow but done", delay_ms: 1500}}
  - when: {{user_contains: "cancel:"}}
    steps:
      - tool_call: {{name: bash, arguments: {{command: "sleep {marker}"}}}}
      - text: never
"#
    ))
    .await;
    let mut args = vec!["--ask", "bash:touch approved*"];
    if let Some(url) = store {
        args.extend(["--store", url]);
    }
    let s = start(&h, &args, Some("tok")).await;
    let run = tokio::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/a2a_client.py"))
        .arg(&s.url)
        .arg("tok")
        .env("NO_PROXY", "127.0.0.1")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the A2A client did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let states = |events: &Value| -> Vec<String> {
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["kind"].as_str().unwrap(),
                    e["state"].as_str().unwrap_or("")
                )
            })
            .collect()
    };

    // The card: the JSON-RPC interface, bearer auth, streaming, the agents as skills.
    let card = &seen["card"];
    assert_eq!(card["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
    assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
    assert_eq!(card["capabilities"]["streaming"], true);
    assert!(card["securitySchemes"]["bearer"].is_object(), "{card:#}");
    assert!(
        card["skills"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "general"),
        "{card:#}"
    );

    // A streamed task: the task, status changes, the answer, completed; the file written.
    let task = &seen["task"];
    let st = states(task);
    assert_eq!(st.first().unwrap(), &st[0]);
    assert!(st[0].starts_with("task:"), "{st:?}");
    assert_eq!(st.last().unwrap(), "status:TASK_STATE_COMPLETED", "{st:?}");
    let artifact = task
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "artifact")
        .expect("the answer as an artifact");
    assert_eq!(artifact["text"], "wrote hello");
    assert_eq!(
        std::fs::read_to_string(h.ws.join("hello.txt")).unwrap(),
        "hi"
    );

    // input-required, then answered by a message: the command ran.
    assert_eq!(seen["ask"]["state"], "TASK_STATE_INPUT_REQUIRED");
    assert!(
        seen["ask"]["question"]
            .as_str()
            .unwrap()
            .contains("touch approved.txt"),
        "{:#}",
        seen["ask"]
    );
    let st = states(&seen["ask"]["events"]);
    assert_eq!(st.last().unwrap(), "status:TASK_STATE_COMPLETED", "{st:?}");
    assert!(
        h.ws.join("approved.txt").exists(),
        "the approved command ran"
    );

    // A stream left after its first event, subscribed to again and read to the end.
    assert_eq!(seen["resume"]["early"]["kind"], "task");
    let again = &seen["resume"]["again"];
    let st = states(again);
    assert!(st[0].starts_with("task:"), "{st:?}");
    assert_eq!(st.last().unwrap(), "status:TASK_STATE_COMPLETED", "{st:?}");
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"] == "slow but done"),
        "{again:#}"
    );

    // Cancelled: canceled, and the command is gone.
    assert_eq!(
        seen["cancel"]["state"], "TASK_STATE_CANCELED",
        "{:#}",
        seen["cancel"]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        processes_with(&format!("sleep {marker}")).is_empty(),
        "the command survived"
    );

    // Continued by its context: the same session, its history sent again.
    let first = seen["task"][0]["id"].as_str().unwrap();
    assert_eq!(seen["more"]["id"], first);
    assert_eq!(seen["more"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(seen["more"]["answer"], "again done");
    let last = h
        .mock
        .requests()
        .iter()
        .rfind(|r| r.route == Some(0))
        .unwrap()
        .body
        .to_string();
    assert!(
        last.contains("task: write hello") && last.contains("more: and again"),
        "{last}"
    );

    // Listed and fetched; another token finds nothing.
    let listed = seen["list"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "{listed:#?}");
    assert_eq!(seen["get"]["id"], first);
    assert_eq!(seen["get"]["agent"], "general");
    assert_ne!(seen["other"], "visible");
    h.assert_strict_ok();
}

/// What is not an A2A request is said so; the card and the endpoint are behind the tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_strangers_are_refused() {
    let h = Harness::yaml("steps:\n  - text: hi\n").await;
    let s = start(&h, &[], Some("tok")).await;
    for (body, code) in [
        (
            serde_json::json!([{"jsonrpc": "2.0", "method": "GetTask"}]),
            -32600,
        ),
        (
            serde_json::json!({"jsonrpc": "1.0", "id": 1, "method": "GetTask"}),
            -32600,
        ),
        (
            serde_json::json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "GetTask"}),
            -32600,
        ),
        (
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": [1]}),
            -32600,
        ),
    ] {
        let (st, v) = s.post("/a2a", body.clone()).await;
        assert_eq!(st, 400, "{body} → {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    for (body, code) in [
        (
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "Frobnicate"}),
            -32601,
        ),
        (
            serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": "nope"}}),
            -32001,
        ),
        (
            serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {}}),
            -32602,
        ),
        (
            serde_json::json!({"jsonrpc": "2.0", "id": 4, "method": "CreateTaskPushNotificationConfig", "params": {}}),
            -32003,
        ),
        (
            serde_json::json!({"jsonrpc": "2.0", "id": 5, "method": "SendMessage", "params": {"message": {"role": "ROLE_USER", "parts": [{"raw": "//4="}]}}}),
            -32005,
        ),
        (
            serde_json::json!({"jsonrpc": "2.0", "id": 6, "method": "SendMessage", "params": {"message": {"role": "ROLE_USER", "parts": []}}}),
            -32602,
        ),
    ] {
        let (st, v) = s.post("/a2a", body.clone()).await;
        assert_eq!(st, 200, "{body} → {v}");
        assert_eq!(v["error"]["code"], code, "{body} → {v}");
        assert_eq!(v["id"], body["id"]);
    }
    let stranger = s.as_token("not-a-token");
    let (st, _) = stranger.get("/.well-known/agent-card.json").await;
    assert_eq!(st, 401);
    let (st, _) = stranger
        .post(
            "/a2a",
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}),
        )
        .await;
    assert_eq!(st, 401);
    assert!(h.mock.requests().is_empty(), "nothing ran");
}
