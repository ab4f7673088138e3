#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The library API: builder, events as a Stream, cancel handle, outcome, continuation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deputy_agent::AgentSpec;
use deputy_llm::{OpenAiClient, ProviderSettings, Target};
use deputy_mockllm::{MockServer, Script, ServeOptions};
use deputy_runtime::{
    Approval, ApprovalRequest, Approver, ChildMaker, ChildOf, Event, EventKind, Session,
    SessionOptions, Status, TaskConfig, TaskRunner,
};
use deputy_tools::{Action, Origin, Rule, SandboxMode, SandboxPolicy};
use futures::StreamExt;
use futures::future::BoxFuture;

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
    let (_mock, client, dir) = setup("steps:\n  - text: slow\n    delay_ms: 600000\n").await;
    let session = Session::builder(AgentSpec::new("lib", "You help."), client, dir.path())
        .sandbox(no_sandbox())
        .build()
        .unwrap();
    let running = session.start("take your time");
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.cancel();
    // The model takes ten minutes to answer: ending within 10 s means the cancel stopped it.
    let (outcome, _) = tokio::time::timeout(Duration::from_secs(10), running.finish())
        .await
        .expect("the cancel did not stop the session")
        .unwrap();
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
    let mut finished = None;
    while let Some(e) = running.events.next().await {
        assert_eq!(e.session_id, id);
        assert_eq!(e.seq, n);
        n += 1;
        if let EventKind::SessionFinished { result, .. } = &e.kind {
            finished = Some(result.clone());
        }
    }
    assert_eq!(finished.as_deref(), Some("hi"), "session.finished arrived");
    assert!(n >= 5);
}

/// An approver that never answers (a user who walked away from the question).
struct Never;

impl Approver for Never {
    fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_an_approval_answers_every_call_and_the_session_goes_on() {
    let (mock, client, dir) = setup(
        r#"
steps:
  - tool_calls:
      - {name: write, arguments: {path: a.txt, content: a}}
      - {name: write, arguments: {path: b.txt, content: b}}
  - text: "after the cancel"
"#,
    )
    .await;
    let session = Session::builder(AgentSpec::new("lib", "You help."), client, dir.path())
        .sandbox(no_sandbox())
        .rule(Rule::new("write", "*", Action::Ask, Origin::Flag))
        .approver(Arc::new(Never))
        .build()
        .unwrap();
    let running = session.start("write two files");
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.cancel();
    let (outcome, mut session) = tokio::time::timeout(Duration::from_secs(10), running.finish())
        .await
        .expect("cancel during the question ends the run")
        .unwrap();
    assert_eq!(outcome.status, Status::Cancelled);
    assert!(!dir.path().join("a.txt").exists());
    // Both calls have a result, so the next request is well-formed (the mock is strict).
    let pending = session.conversation().pending().len();
    assert_eq!(pending, 0);
    session.set_cancel_token(tokio_util::sync::CancellationToken::new());
    let again = session.run(Some("go on".into())).await;
    assert_eq!(again.status, Status::Completed, "{:?}", again.errors);
    assert_eq!(again.result, "after the cancel");
    for r in mock.requests() {
        assert!(r.rejected.is_none(), "{:?}", r.rejected);
    }
    let last = mock.requests().last().unwrap().body["messages"].clone();
    let tools: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(tools.len(), 2);
    assert!(tools.iter().all(|t| t.contains("not run")), "{tools:?}");
}

/// Makes children for the task tool in these tests (as the factory does for the CLI).
struct Maker {
    client: Arc<OpenAiClient>,
    ws: PathBuf,
    state: PathBuf,
}

impl ChildMaker for Maker {
    fn make<'a>(
        &'a self,
        agent: AgentSpec,
        parent: &'a ChildOf,
    ) -> BoxFuture<'a, Result<(Session, Vec<String>), String>> {
        Box::pin(async move {
            let mut opts = SessionOptions::new(&self.ws);
            opts.sandbox = no_sandbox();
            opts.state_dir = Some(self.state.clone());
            opts.parent_session_id = Some(parent.session_id.clone());
            opts.ceiling = Some(parent.permissions.clone());
            let s = Session::new(agent, self.client.clone(), opts).map_err(|e| e.to_string())?;
            Ok((s, Vec::new()))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_does_not_slow_the_subagents() {
    let (_mock, client, dir) = setup(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: a, prompt: "do a", subagent_type: kid-a}}
      - {name: task, arguments: {description: b, prompt: "do b", subagent_type: kid-b}}
  - text: "both done"
routes:
  - when: {system_contains: "You are kid-a,"}
    steps:
      - tool_calls: [{name: bash, arguments: {command: "true"}}]
      - text: "a done"
  - when: {system_contains: "You are kid-b,"}
    steps:
      - tool_calls: [{name: bash, arguments: {command: "true"}}]
      - text: "b done"
"#,
    )
    .await;
    let state = dir.path().join("state");
    let kid = |name: &str| {
        let mut a = AgentSpec::new(name, "You are a kid.");
        a.mode = deputy_agent::Mode::Subagent;
        a.description = Some(format!("{name} helps"));
        a
    };
    let runner = TaskRunner::new(
        vec![kid("kid-a"), kid("kid-b")],
        Arc::new(Maker {
            client: client.clone(),
            ws: dir.path().to_path_buf(),
            state: state.clone(),
        }),
        TaskConfig::default(),
    );
    let mut session = Session::builder(AgentSpec::new("lead", "You lead."), client, dir.path())
        .sandbox(no_sandbox())
        .state_dir(&state)
        .tasks(runner)
        .build()
        .unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen2 = seen.clone();
    session.set_sink(Arc::new(move |_e: &Event| {
        std::thread::sleep(Duration::from_millis(200));
        seen2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let outcome = session.run(Some("delegate".into())).await;
    assert_eq!(outcome.status, Status::Completed, "{:?}", outcome.errors);
    // The run returned only once the slow sink had every event, children's included.
    let journal = std::fs::read_to_string(session.journal_path().unwrap()).unwrap();
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) > journal.lines().count());
    // Each child's bash call went from request to result without waiting for the sink (which
    // takes 200 ms an event): the time between its events is the call's own.
    let mut checked = 0;
    for entry in std::fs::read_dir(state.join("sessions")).unwrap() {
        let path = entry.unwrap().path().join("events.jsonl");
        let events: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ts = |t: &str| {
            events
                .iter()
                .find(|e| e["type"] == t && e["tool"] == "bash")
                .map(|e| e["ts_ms"].as_u64().unwrap())
        };
        if let (Some(asked), Some(done)) = (ts("tool.requested"), ts("tool.completed")) {
            assert!(
                done - asked < 150,
                "{}: the bash call took {} ms from request to result",
                path.display(),
                done - asked
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "both children ran bash");
}
