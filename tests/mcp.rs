//! End-to-end: the official MCP Python SDK (an MCP client deputy did not write) drives
//! `deputy mcp`, whose agents talk to deputy-mockllm.
//!
//! Needs Python with the `mcp` package: `.ci/run` makes a venv and sets DEPUTY_TEST_PYTHON.
//! Elsewhere, without it, the test prints a SKIP line saying how to get it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{BIN, Harness};
use serde_json::Value;

fn python() -> Option<String> {
    common::mcp_python("MCP client test")
}

/// Run a Python MCP client script from tests/ against `deputy mcp` in the harness's workspace,
/// with the mock model configured; its stdout is one JSON report.
async fn run_client(py: &str, script: &str, h: &Harness) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(py)
            .arg(&script)
            .arg(BIN)
            .arg(&h.ws)
            .current_dir(&h.ws)
            .env("HOME", &h.home)
            .env("DEPUTY_HOME", h.home.join("state"))
            .env("OPENAI_BASE_URL", h.mock.url())
            .env("DEPUTY_MODEL", "mock-model")
            .env("DEPUTY_LOCAL_PORTS", "none")
            .env("DEPUTY_TEST_OUTSIDE", {
                let o = h.dir.path().join("outside");
                std::fs::create_dir_all(&o).unwrap();
                o
            })
            .env_remove("OPENAI_API_KEY")
            .output(),
    )
    .await
    .expect("the MCP client did not finish in 120 s")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client failed:\n{stderr}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_mcp_client_drives_deputy_mcp() {
    let Some(py) = python() else { return };
    let h = Harness::yaml(
        r#"
steps:
  - text: "fallback"
repeat_last: true
routes:
  - when: {user_contains: "single"}
    steps:
      - tool_calls: [{name: list, arguments: {}}]
      - text: "Hello from the backend architect."
      - text: "More: nothing else to add."
  - when: {user_contains: "parallel A"}
    steps: [{text: "answer A", delay_ms: 500}]
  - when: {user_contains: "parallel B"}
    steps: [{text: "answer B", delay_ms: 500}]
  - when: {user_contains: "escape"}
    steps:
      - tool_calls: [{name: write, arguments: {path: escape-marker.txt, content: "x"}}]
      - text: "wrote it"
"#,
    )
    .await;
    let report = run_client(&py, "mcp_client.py", &h).await;
    // No call ran in a workspace outside the server's roots.
    for e in report["escapes"].as_array().unwrap() {
        assert_eq!(e["error"], true, "{e}");
        assert!(e["text"].as_str().unwrap().contains("outside"), "{e}");
    }
    assert!(!h.dir.path().join("outside/escape-marker.txt").exists());
    assert!(!std::path::Path::new("/escape-marker.txt").exists());
    assert!(
        h.mock
            .requests()
            .iter()
            .all(|r| !r.body.to_string().contains("escape: write it")),
        "no model request was made for an escaping call"
    );
    assert_eq!(report["server"], "deputy");
    assert!(
        report["description"]
            .as_str()
            .unwrap()
            .starts_with("Design reliable backend systems")
    );
    assert_eq!(report["text"], "Hello from the backend architect.");
    let s = &report["structured"];
    assert_eq!(s["status"], "completed");
    assert_eq!(s["result"], "Hello from the backend architect.");
    assert!(s["session_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(s["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let progress: Vec<&str> = report["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        progress.iter().any(|p| p.contains("started"))
            && progress.iter().any(|p| p.contains("list")),
        "{progress:?}"
    );
    assert_eq!(
        report["parallel"],
        serde_json::json!(["answer A", "answer B"])
    );
    assert_eq!(report["reply"], "More: nothing else to add.");
    assert_eq!(report["bad_reply_is_error"], true);

    // The two parallel calls were in flight at the same time.
    let reqs = h.mock.requests();
    let a = reqs.iter().find(|r| r.route == Some(1)).unwrap();
    let b = reqs.iter().find(|r| r.route == Some(2)).unwrap();
    assert!(
        a.received_ms < b.done_ms.unwrap() && b.received_ms < a.done_ms.unwrap(),
        "calls did not overlap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_permissions_become_elicitations_or_denials() {
    let Some(py) = python() else { return };
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - text: "fallback"
routes:
  - when: {user_contains: "elicit please"}
    steps:
      - tool_calls: [{name: bash, arguments: {command: "echo approved-run > out/a.txt"}}]
      - tool_calls: [{name: bash, arguments: {command: "echo refused-run > out/b.txt"}}]
      - text: "elicited"
  - when: {user_contains: "no elicitation"}
    steps:
      - tool_calls: [{name: bash, arguments: {command: "echo plain-run > out/c.txt"}}]
      - text: "plain"
"#,
    )
    .await;
    h.write_agent(
        "asker",
        "---\ndescription: asks before bash\nmode: subagent\npermission:\n  bash: ask\n---\nYou ask.",
    );
    // Outcomes land in a subdirectory: under Landlock no command can create an entry beside
    // the protected `agents/`, which would make "did not run" true for the wrong reason.
    std::fs::create_dir(h.ws.join("out")).unwrap();
    let report = run_client(&py, "mcp_elicit.py", &h).await;
    assert_eq!(report["elicit_text"], "elicited");
    assert_eq!(report["plain_text"], "plain");
    // The client was asked twice, each question naming the agent and the command.
    let asked = report["asked"].as_array().unwrap();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[0].as_str().unwrap().contains("asker")
            && asked[0].as_str().unwrap().contains("approved-run"),
        "{asked:?}"
    );
    assert!(
        report["schema"]["properties"]["approve"].is_object(),
        "{}",
        report["schema"]
    );
    // Approved ran; refused and not-askable did not.
    assert_eq!(common::read(&h.ws.join("out/a.txt")), "approved-run\n");
    assert!(!h.ws.join("out/b.txt").exists());
    assert!(!h.ws.join("out/c.txt").exists());
    // The model was told why.
    let tool_results: Vec<String> = h
        .mock
        .requests()
        .iter()
        .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        tool_results.iter().any(|c| c.contains("not that one")),
        "{tool_results:?}"
    );
    assert!(
        tool_results
            .iter()
            .any(|c| c.to_lowercase().contains("denied") && !c.contains("not that one")),
        "{tool_results:?}"
    );
}

/// Two calls at once with `isolation: worktree` (from the official SDK's client) rewrite the
/// same file, each in a worktree of its own: each ends as a commit on its own branch, the main
/// tree stays as it was, and a call that changed nothing leaves nothing (a reply to it says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_calls_with_worktrees_do_not_collide() {
    let Some(py) = python() else { return };
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - text: "looked only"
repeat_last: true
routes:
  - when: {user_contains: "wt A"}
    steps:
      - tool_calls: [{name: write, arguments: {path: shared.txt, content: "A\n"}}]
      - {text: "A wrote shared.txt", delay_ms: 300}
  - when: {user_contains: "wt B"}
    steps:
      - tool_calls: [{name: write, arguments: {path: shared.txt, content: "B\n"}}]
      - {text: "B wrote shared.txt", delay_ms: 300}
"#,
    )
    .await;
    common::git(&h.ws, &["init", "-q", "-b", "main"]);
    std::fs::write(h.ws.join("shared.txt"), "base\n").unwrap();
    common::git(&h.ws, &["add", "."]);
    common::git(&h.ws, &["commit", "-q", "-m", "first"]);
    let report = run_client(&py, "mcp_worktrees.py", &h).await;
    let mut branches = Vec::new();
    for (call, want) in report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["A\n", "B\n"])
    {
        assert_eq!(call["error"], false, "{call}");
        let w = &call["structured"]["worktree"];
        assert_eq!(w["outcome"], "committed", "{call}");
        let branch = w["branch"].as_str().unwrap().to_string();
        assert!(call["text"].as_str().unwrap().contains(&branch), "{call}");
        assert_eq!(
            common::git(&h.ws, &["show", &format!("{branch}:shared.txt")]),
            want
        );
        branches.push(branch);
    }
    assert_ne!(branches[0], branches[1]);
    assert_eq!(
        std::fs::read_to_string(h.ws.join("shared.txt")).unwrap(),
        "base\n"
    );
    assert_eq!(common::git(&h.ws, &["status", "--porcelain"]), "");
    assert_eq!(
        report["look"]["structured"]["worktree"]["outcome"],
        "unchanged"
    );
    assert_eq!(report["look_again"]["error"], true, "{report}");
    assert!(
        report["look_again"]["text"]
            .as_str()
            .unwrap()
            .contains("worktree that is gone")
    );
    let listed = common::git(&h.ws, &["branch", "--list", "deputy/*"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
}
