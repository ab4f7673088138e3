//! `deputy acp` driven by the official ACP TypeScript SDK's client (`tests/acp_client.mjs`):
//! a task with tool calls and a permission asked and answered, a rejection, a cancel while a
//! command runs, a journaled session loaded and continued, a switch of agent by mode.
//! Outcomes are checked where they land: the workspace, the mock's request log, the journal,
//! and what the editor was sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Harness, processes_with, read, sandbox_available};
use serde_json::Value;

/// Run one scenario of the SDK client against `deputy acp` (with `args`) in the harness's
/// workspace; what the client saw.
async fn editor(h: &Harness, sdk: &Path, scenario: &str, session: &str, args: &[&str]) -> Value {
    editor_with(h, sdk, scenario, session, args, &[]).await
}

/// [`editor`], the client given `env` (`ACP_MCP_SERVERS`, `ACP_BUFFERS`).
async fn editor_with(
    h: &Harness,
    sdk: &Path,
    scenario: &str,
    session: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> Value {
    let dir = h.dir.path().join("editor");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(sdk.join("node_modules"), dir.join("node_modules")).unwrap();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/acp_client.mjs"),
            dir.join("acp_client.mjs"),
        )
        .unwrap();
    }
    let mut c = tokio::process::Command::new("node");
    c.arg(dir.join("acp_client.mjs"))
        .args([common::BIN, scenario, h.ws.to_str().unwrap(), session, "--"])
        .args(args)
        .env_clear()
        .envs(h.env())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("the ACP client did not finish within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from the client:\n{stdout}\n{stderr}"));
    assert!(
        seen["errors"].as_array().unwrap().is_empty(),
        "the SDK client failed: {:#}\n{stderr}",
        seen["errors"]
    );
    assert_eq!(seen["exitCode"], 0, "deputy acp exited badly: {stderr}");
    seen
}

fn updates<'a>(seen: &'a Value, kind: &str) -> Vec<&'a Value> {
    seen["updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["sessionUpdate"] == kind)
        .collect()
}

const CODER: &str = "---\nname: coder\ndescription: Writes code\nmode: primary\npermission:\n  bash:\n    \"*\": allow\n    \"touch approved*\": ask\n---\nYou write code.\n";
const REVIEWER: &str = "---\nname: reviewer\ndescription: Reviews code\nmode: primary\ntools: [read]\n---\nYou review.\n";

const TASK: &str = r#"
steps:
  - reasoning: "Plan the notes."
    text: "I'll write them."
    tool_calls:
      - {name: todowrite, arguments: {todos: [{content: "write notes", status: in_progress}, {content: "check", status: pending}]}}
      - {name: write, arguments: {path: notes.md, content: "one\n"}}
  - tool_call: {name: edit, arguments: {path: notes.md, old_string: "one", new_string: "two"}}
  - tool_call: {name: bash, arguments: {command: "touch approved.txt"}}
  - text: "Notes written."
  - text: "The rest is done too."
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_runs_a_task_asks_permission_and_loads_it_again() {
    let Some(sdk) = common::outside::acp_sdk() else {
        return;
    };
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(TASK).await;
    h.write_agent("coder", CODER);
    h.write_agent("reviewer", REVIEWER);
    std::fs::write(h.ws.join("README.md"), "# readme\n").unwrap();
    let seen = editor(&h, &sdk, "task", "", &["--agent", "coder"]).await;
    assert_eq!(seen["initialize"]["protocolVersion"], 1);
    assert_eq!(seen["initialize"]["agentCapabilities"]["loadSession"], true);
    assert_eq!(seen["stopReasons"][0], "end_turn", "{seen:#}");
    assert_eq!(seen["agentText"], "I'll write them.Notes written.");
    assert_eq!(seen["thoughtText"], "Plan the notes.");
    // Agents are modes.
    assert_eq!(seen["modes"]["currentModeId"], "coder");
    let modes: Vec<&str> = seen["modes"]["availableModes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(modes.contains(&"reviewer"), "{modes:?}");
    // What happened, in the workspace.
    assert_eq!(read(&h.ws.join("notes.md")), "two\n");
    assert!(
        h.ws.join("approved.txt").exists(),
        "the allowed command ran"
    );
    // The permission was asked with the three choices.
    let asked = &seen["permissions"][0];
    assert_eq!(asked["toolCall"]["kind"], "execute");
    let kinds: Vec<&str> = asked["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["allow_once", "allow_always", "reject_once"]);
    // Tool calls with their kinds, locations and the edit as a diff.
    let calls = updates(&seen, "tool_call");
    let kinds: Vec<&str> = calls.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["think", "edit", "edit", "execute"]);
    assert_eq!(
        calls[1]["locations"][0]["path"],
        h.ws.join("notes.md").to_str().unwrap()
    );
    let diff = updates(&seen, "tool_call_update")
        .into_iter()
        .find(|u| u["content"][0]["type"] == "diff" && u["content"][0]["oldText"] == "one\n")
        .expect("the edit's diff");
    assert_eq!(diff["content"][0]["newText"], "two\n");
    assert_eq!(diff["status"], "completed");
    // The todo list as the plan.
    let plan = updates(&seen, "plan");
    assert_eq!(plan[0]["entries"][0]["content"], "write notes");
    assert_eq!(plan[0]["entries"][0]["status"], "in_progress");
    // The resource link reached the model.
    let first = &h.mock.requests()[0].body["messages"];
    assert!(first.to_string().contains("README.md"), "{first:#}");
    h.assert_strict_ok();

    // Another connection loads the journaled session: the conversation comes back, and a new
    // prompt continues it.
    let id = seen["sessionId"].as_str().unwrap().to_string();
    assert!(h.home.join("state").exists());
    let again = editor(&h, &sdk, "load", &id, &["--agent", "coder"]).await;
    assert!(
        again["replayedUser"]
            .as_str()
            .unwrap()
            .contains("write the notes"),
        "{again:#}"
    );
    assert!(
        again["replayedAgent"]
            .as_str()
            .unwrap()
            .contains("Notes written."),
        "{again:#}"
    );
    assert_eq!(again["stopReasons"][0], "end_turn");
    assert_eq!(again["agentText"], "The rest is done too.");
    let last = h.mock.requests().last().unwrap().body.to_string();
    assert!(
        last.contains("write the notes") && last.contains("and now the rest"),
        "the loaded session went on from its history: {last}"
    );
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_call_does_not_run() {
    let Some(sdk) = common::outside::acp_sdk() else {
        return;
    };
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        "steps:\n  - tool_call: {name: bash, arguments: {command: \"touch approved.txt\"}}\n  - text: \"Not allowed, then.\"\n",
    )
    .await;
    h.write_agent("coder", CODER);
    std::fs::write(h.ws.join("README.md"), "# readme\n").unwrap();
    let seen = editor(&h, &sdk, "reject", "", &["--agent", "coder"]).await;
    assert_eq!(seen["stopReasons"][0], "end_turn");
    assert_eq!(seen["permissions"].as_array().unwrap().len(), 1);
    assert!(!h.ws.join("approved.txt").exists(), "a rejected call ran");
    let failed = updates(&seen, "tool_call_update")
        .into_iter()
        .find(|u| u["status"] == "failed")
        .expect("the rejected call failed");
    assert!(
        failed["content"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{failed:#}"
    );
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_the_running_command() {
    let Some(sdk) = common::outside::acp_sdk() else {
        return;
    };
    if !sandbox_available() {
        return;
    }
    let marker = format!("{}.{}", 700 + std::process::id() % 200, 31);
    let h = Harness::yaml(&format!(
        "steps:\n  - tool_call: {{name: bash, arguments: {{command: \"sleep {marker}\"}}}}\n  - text: never\n"
    ))
    .await;
    h.write_agent("coder", CODER);
    std::fs::write(h.ws.join("README.md"), "# readme\n").unwrap();
    let seen = editor(&h, &sdk, "cancel", "", &["--agent", "coder"]).await;
    assert_eq!(seen["stopReasons"][0], "cancelled", "{seen:#}");
    assert!(
        processes_with(&format!("sleep {marker}")).is_empty(),
        "the command survived the cancel"
    );
    assert_eq!(h.mock.requests().len(), 1, "no turn after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_is_an_agent() {
    let Some(sdk) = common::outside::acp_sdk() else {
        return;
    };
    let h = Harness::yaml("steps:\n  - text: \"Looks fine.\"\n").await;
    h.write_agent("coder", CODER);
    h.write_agent("reviewer", REVIEWER);
    std::fs::write(h.ws.join("README.md"), "# readme\n").unwrap();
    let seen = editor(&h, &sdk, "modes", "", &["--agent", "coder"]).await;
    assert_eq!(seen["stopReasons"][0], "end_turn");
    let switched = updates(&seen, "current_mode_update");
    assert_eq!(switched[0]["currentModeId"], "reviewer");
    let system = h.mock.requests()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(system.contains("You review."), "{system}");
    let tools = h.mock.requests()[0].body["tools"].to_string();
    assert!(
        !tools.contains("\"bash\""),
        "the reviewer has only read: {tools}"
    );
}

/// The editor's MCP servers are the session's: their tools are offered and called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editors_mcp_servers_are_the_sessions() {
    let Some(sdk) = common::outside::acp_sdk() else {
        return;
    };
    let Some(python) = common::mcp_python("ACP with the editor's MCP server") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_call: {name: mcp__numbers__add, arguments: {a: 2, b: 3}}\n  - text: \"It is 5.\"\n",
    )
    .await;
    std::fs::write(h.ws.join("README.md"), "# readme\n").unwrap();
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_server.py");
    let servers = serde_json::json!([
        {"name": "numbers", "command": python, "args": [server, "stdio"], "env": []}
    ]);
    let seen = editor_with(
        &h,
        &sdk,
        "task",
        "",
        &[],
        &[("ACP_MCP_SERVERS", servers.to_string())],
    )
    .await;
    assert_eq!(seen["stopReasons"][0], "end_turn", "{seen:#}");
    assert_eq!(seen["agentText"], "It is 5.");
    let tools = h.mock.requests()[0].body["tools"].to_string();
    assert!(tools.contains("mcp__numbers__add"), "{tools}");
    assert_eq!(h.tool_results(), ["5"]);
    let done = updates(&seen, "tool_call_update")
        .into_iter()
        .find(|u| u["status"] == "completed")
        .expect("the MCP call completed");
    assert_eq!(done["content"][0]["content"]["text"], "5");
    h.assert_strict_ok();
}

const SECRET: &str = "HOST-SECRET-acp-93e1";

/// With the editor's files offered: the agent reads the unsaved buffer, its edits and new
/// files go through the editor, and neither a link planted in the workspace nor one a command
/// makes gets the editor to read or write outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editors_buffers_are_what_the_agent_reads_and_writes() {
    let Some(sdk) = common::outside::acp_sdk() else {
        return;
    };
    if !sandbox_available() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    let victim = outside.path().join("victim");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::write(&victim, "safe\n").unwrap();
    let script = format!(
        r#"
steps:
  - tool_call: {{name: read, arguments: {{path: draft.md}}}}
  - tool_call: {{name: edit, arguments: {{path: draft.md, old_string: "unsaved", new_string: "edited"}}}}
  - tool_call: {{name: write, arguments: {{path: docs/new.md, content: "fresh\n"}}}}
  - tool_call: {{name: read, arguments: {{path: planted}}}}
  - tool_call: {{name: bash, arguments: {{command: "ln -s {victim} made && ln -s {secret} made2 && echo linked"}}}}
  - tool_call: {{name: write, arguments: {{path: made, content: "PWNED\n"}}}}
  - tool_call: {{name: read, arguments: {{path: made2}}}}
  - text: "Done."
"#,
        victim = victim.display(),
        secret = secret.display(),
    );
    let h = Harness::yaml(&script).await;
    h.write_agent("coder", CODER);
    std::fs::write(h.ws.join("README.md"), "# readme\n").unwrap();
    std::fs::write(h.ws.join("draft.md"), "on disk\n").unwrap();
    std::os::unix::fs::symlink(&secret, h.ws.join("planted")).unwrap();
    let draft = h.ws.canonicalize().unwrap().join("draft.md");
    let buffers = serde_json::json!({draft.to_str().unwrap(): "unsaved text\n"});
    let seen = editor_with(
        &h,
        &sdk,
        "fs",
        "",
        &["--agent", "coder"],
        &[("ACP_BUFFERS", buffers.to_string())],
    )
    .await;
    assert_eq!(seen["stopReasons"][0], "end_turn", "{seen:#}");
    let results = h.tool_results();
    // The unsaved buffer is what the model read, and what the edit changed.
    assert!(results[0].contains("unsaved text"), "{results:?}");
    assert_eq!(read(&draft), "edited text\n");
    let ws = h.ws.canonicalize().unwrap();
    let writes: Vec<(String, String)> = seen["fsWrites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap().to_string(),
                w["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        writes,
        [
            (draft.display().to_string(), "edited text\n".to_string()),
            (
                ws.join("docs/new.md").display().to_string(),
                "fresh\n".to_string()
            ),
        ],
        "{seen:#}"
    );
    assert_eq!(read(&ws.join("docs/new.md")), "fresh\n");
    // The links: refused before the editor heard of them.
    let reads: Vec<&str> = seen["fsReads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reads
            .iter()
            .all(|r| !r.ends_with("planted") && !r.contains("made")),
        "{reads:?}"
    );
    assert!(results[4].contains("linked"), "{results:?}");
    assert!(results[5].contains("outside the workspace"), "{results:?}");
    for r in &results {
        assert!(!r.contains(SECRET), "the secret came out: {r}");
    }
    assert!(
        h.mock
            .requests()
            .iter()
            .all(|r| !r.body.to_string().contains(SECRET))
    );
    assert_eq!(read(&victim), "safe\n");
    h.assert_strict_ok();
}
