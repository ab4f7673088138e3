#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The library API: builder, events as a Stream, cancel handle, outcome, continuation.

use std::sync::Arc;
use std::time::Duration;

use deputy_agent::AgentSpec;
use deputy_llm::{OpenAiClient, ProviderSettings, Target};
use deputy_mockllm::{MockServer, Script, ServeOptions};
use deputy_runtime::{EventKind, Session, Status};
use deputy_tools::{SandboxMode, SandboxPolicy};
use futures::StreamExt;

async fn setup(script: &str) -> (MockServer, Arc<OpenAiClient>, tempfile::TempDir) {
    let mock = MockServer::start(
        Script::parse(script, false).unwrap(),
        ServeOptions::default(),
    )
    .await
    .unwrap();
    let client = OpenAiClient::single(Target {
        provider: ProviderSettings::new("mock", mock.url()),
        model: "m".into(),
    })
    .unwrap();
    (mock, Arc::new(client), tempfile::tempdir().unwrap())
}

fn no_sandbox() -> SandboxPolicy {
    SandboxPolicy {
        mode: SandboxMode::Off,
        ..SandboxPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_and_outcome_and_continuation() {
    let (mock, client, dir) = setup("steps:\n  - tool_calls: [{name: write, arguments: {path: a.txt, content: hi}}]\n  - text: wrote it\n  - text: second answer\n").await;
    let session = Session::builder(AgentSpec::new("lib", "You help."), client, dir.path())
        .sandbox(no_sandbox())
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let mut running = session.start("write a.txt");
    let mut types = Vec::new();
    while let Some(e) = running.events.next().await {
        types.push(e.kind.type_name());
    }
    assert_eq!(types.first(), Some(&"session.started"));
    assert_eq!(types.last(), Some(&"session.finished"));
    assert!(types.contains(&"tool.completed"));
    let (outcome, mut session) = running.finish().await.unwrap();
    assert_eq!(outcome.status, Status::Completed);
    assert_eq!(outcome.result, "wrote it");
    assert_eq!(outcome.files_changed, vec!["a.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "hi"
    );
    // The same session continues with the conversation so far.
    let again = session.run(Some("and now?".into())).await;
    assert_eq!(again.result, "second answer");
    assert_eq!(
        mock.requests().last().unwrap().body["messages"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert!(session.journal_path().unwrap().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_handle_stops_the_session() {
    let (_mock, client, dir) = setup("steps:\n  - text: slow\n    delay_ms: 5000\n").await;
    let session = Session::builder(AgentSpec::new("lib", "You help."), client, dir.path())
        .sandbox(no_sandbox())
        .build()
        .unwrap();
    let running = session.start("take your time");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = std::time::Instant::now();
    running.cancel();
    let (outcome, _) = running.finish().await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(outcome.status, Status::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_kinds_carry_session_ids() {
    let (_mock, client, dir) = setup("steps:\n  - text: hi\n").await;
    let session = Session::builder(AgentSpec::new("lib", "You help."), client, dir.path())
        .sandbox(no_sandbox())
        .build()
        .unwrap();
    let id = session.id().to_string();
    let mut running = session.start("hello");
    let mut n = 0;
    while let Some(e) = running.events.next().await {
        assert_eq!(e.session_id, id);
        assert_eq!(e.seq, n);
        n += 1;
        if let EventKind::SessionFinished { result, .. } = &e.kind {
            assert_eq!(result, "hi");
        }
    }
    assert!(n >= 5);
}
