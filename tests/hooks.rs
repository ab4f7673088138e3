//! End-to-end: hooks in Claude Code's protocol. The published shapes of hook scripts (a command
//! validator that blocks with exit 2, a formatter after edits) work unchanged from
//! `~/.claude/settings.json` and from deputy's own config; an untrusted workspace's hooks never
//! run; a hook's allow never passes a deny rule; a hook that hangs is killed, one that prints
//! garbage is a warning; a hook can block `task`, refuse a prompt, add context, and send the
//! model back to work at its stop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};

use common::{Harness, of_type};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hooks");

fn python_here() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok || common::outside::missing(
        "python3",
        "the published hook scripts are Python",
        "apt-get install python3",
    )
}

/// `~/.claude/settings.json` with this `hooks` block.
fn claude_settings(h: &Harness, hooks: Value) {
    let p = h.home.join(".claude/settings.json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        p,
        serde_json::to_vec_pretty(&json!({"hooks": hooks})).unwrap(),
    )
    .unwrap();
}

/// A hook script (sh) in the test's directory, outside the workspace.
fn script(h: &Harness, name: &str, body: &str) -> PathBuf {
    let p = h.dir.path().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&p)
        .status()
        .unwrap();
    p
}

fn cmd(p: &Path) -> String {
    p.display().to_string()
}

fn events(h: &Harness) -> Vec<Value> {
    h.journal(&h.only_session())
}

fn hooks_done(events: &[Value]) -> Vec<Value> {
    of_type(events, "hook.completed")
        .into_iter()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_validator_blocks_with_exit_2_and_the_model_reads_why() {
    if !python_here() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: bash, arguments: {command: "rm -rf build && touch rm-ran"}}
  - tool_calls:
      - {name: write, arguments: {path: ok.txt, content: "fine\n"}}
  - text: done
"#,
    )
    .await;
    claude_settings(
        &h,
        json!({"PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": format!("python3 {FIXTURES}/bash_command_validator.py")}
        ]}]}),
    );
    let (code, v, stderr) = h.run_json(&["clean up"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    assert!(!h.ws.join("rm-ran").exists());
    assert_eq!(
        std::fs::read_to_string(h.ws.join("ok.txt")).unwrap(),
        "fine\n"
    );
    let results = h.tool_results();
    assert!(
        results[0].contains("blocked by a PreToolUse hook")
            && results[0].contains("rm -rf is not allowed here"),
        "{results:?}"
    );
    let ev = events(&h);
    let done = hooks_done(&ev);
    // Bash matched; Write did not.
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["hook_event"], "PreToolUse");
    assert_eq!(done[0]["exit_code"], 2);
    assert_eq!(done[0]["decision"], "block");
    let decided = of_type(&ev, "tool.decided");
    assert_eq!(decided[0]["by"], "hook");
    assert_eq!(decided[0]["allowed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formatter_runs_after_every_edit_from_either_config() {
    if !python_here() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: write, arguments: {path: a.txt, content: "x   \ny  \n"}}
  - tool_calls:
      - {name: edit, arguments: {path: a.txt, old_string: "y", new_string: "z   "}}
  - text: done
"#,
    )
    .await;
    // Claude Code's settings name the tools as Claude Code does; deputy's config as deputy does.
    claude_settings(
        &h,
        json!({"PostToolUse": [{"matcher": "Edit|Write", "hooks": [
            {"type": "command", "command": format!("{FIXTURES}/format_after_edit.sh")}
        ]}]}),
    );
    let seen = h.dir.path().join("deputy-config-hook.log");
    h.write_user_config(&format!(
        "[[hooks.PostToolUse]]\nmatcher = \"edit\"\nhooks = [{{ type = \"command\", command = \"cat >> {}\" }}]\n",
        seen.display()
    ));
    let (code, v, stderr) = h.run_json(&["tidy"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    assert_eq!(
        std::fs::read_to_string(h.ws.join("a.txt")).unwrap(),
        "x\nz\n"
    );
    let audit = std::fs::read_to_string(h.dir.path().join("hook-audit.log")).unwrap();
    let file = h.ws.join("a.txt").display().to_string();
    assert_eq!(
        audit,
        format!("Write formatted {file}\nEdit formatted {file}\n")
    );
    // deputy's own config: its matcher took deputy's name; the hook got Claude Code's fields.
    let got: Value = serde_json::from_str(std::fs::read_to_string(&seen).unwrap().trim()).unwrap();
    assert_eq!(got["hook_event_name"], "PostToolUse");
    assert_eq!(got["tool_name"], "Edit");
    assert_eq!(got["tool_input"]["file_path"], file.as_str());
    assert_eq!(got["tool_input"]["new_string"], "z   ");
    assert_eq!(got["cwd"], h.ws.display().to_string());
    assert_eq!(got["session_id"], v["session_id"]);
    assert!(
        got["transcript_path"]
            .as_str()
            .unwrap()
            .ends_with("events.jsonl")
    );
    assert_eq!(got["tool_response"]["success"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_workspaces_hooks_never_run_until_it_is_trusted() {
    let h = Harness::yaml(&format!(
        "steps:\n{}",
        "  - tool_calls:\n      - {name: write, arguments: {path: a.txt, content: \"a\"}}\n  - text: done\n".repeat(2)
    ))
    .await;
    let marker = |n: &str| h.dir.path().join(format!("planted-{n}"));
    let all = |n: &str| {
        let touch = format!("touch {}", marker(n).display());
        json!({
            "SessionStart": [{"hooks": [{"type": "command", "command": format!("{touch}-start")}]}],
            "UserPromptSubmit": [{"hooks": [{"type": "command", "command": format!("{touch}-prompt")}]}],
            "PreToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": format!("{touch}-pre")}]}],
            "PostToolUse": [{"hooks": [{"type": "command", "command": format!("{touch}-post")}]}],
            "Stop": [{"hooks": [{"type": "command", "command": format!("{touch}-stop")}]}],
        })
    };
    for (f, n) in [
        (".claude/settings.json", "claude"),
        (".claude/settings.local.json", "local"),
    ] {
        let p = h.ws.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, json!({"hooks": all(n)}).to_string()).unwrap();
    }
    h.write_config(&format!(
        "[[hooks.PreToolUse]]\nhooks = [{{ type = \"command\", command = \"touch {}\" }}]\n",
        marker("config").display()
    ));
    let (code, v, stderr) = h.run_json(&["go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    let planted: Vec<_> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("planted-"))
        .collect();
    assert!(
        planted.is_empty(),
        "an untrusted workspace's hook ran: {planted:?}"
    );
    assert!(
        stderr.contains("[hooks]"),
        "the ignored [hooks] is named: {stderr}"
    );

    // Trusted, the same files run: they were valid all along.
    let out = h.run(&["trust"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, v, stderr) = h.run_json(&["go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    for m in [
        "claude-start",
        "claude-prompt",
        "claude-pre",
        "claude-post",
        "claude-stop",
        "local-pre",
        "config",
    ] {
        assert!(marker(m).exists(), "{m} did not run once trusted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hooks_allow_never_passes_a_deny_rule_and_it_may_rewrite_input() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: write, arguments: {path: blocked.txt, content: "no"}}
      - {name: write, arguments: {path: asked.txt, content: "from the model"}}
  - text: done
"#,
    )
    .await;
    let hook = script(
        &h,
        "decide.sh",
        r#"input=$(cat)
case "$input" in
  *blocked.txt*) echo '{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"allow","permissionDecisionReason":"looks fine"}}' ;;
  *) echo '{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"allow","updatedInput":{"file_path":"rewritten.txt","content":"from the hook"}}}' ;;
esac"#,
    );
    claude_settings(
        &h,
        json!({"PreToolUse": [{"matcher": "Write", "hooks": [{"type": "command", "command": cmd(&hook)}]}]}),
    );
    // A deny rule for one file, and ask (headless: no) for every other write.
    h.write_user_config("[permission.edit]\n\"*\" = \"ask\"\n\"blocked.txt\" = \"deny\"\n");
    let (code, v, stderr) = h.run_json(&["write"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    assert!(
        !h.ws.join("blocked.txt").exists(),
        "an allow passed a deny rule"
    );
    // The hook's allow answered the ask; the call ran with the input the hook gave.
    assert!(!h.ws.join("asked.txt").exists());
    assert_eq!(
        std::fs::read_to_string(h.ws.join("rewritten.txt")).unwrap(),
        "from the hook"
    );
    let ev = events(&h);
    let decided = of_type(&ev, "tool.decided");
    assert_eq!(
        (decided[0]["allowed"].clone(), decided[0]["by"].clone()),
        (json!(false), json!("rule"))
    );
    assert_eq!(
        (decided[1]["allowed"].clone(), decided[1]["by"].clone()),
        (json!(true), json!("hook"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hook_is_killed_and_garbage_is_only_a_warning() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: write, arguments: {path: a.txt, content: "a"}}
  - text: done
"#,
    )
    .await;
    let hang = script(&h, "hang.sh", "sleep 3117 &\nsleep 3117\n");
    let garbage = script(&h, "garbage.sh", "echo '{not json at all'\n");
    let failing = script(&h, "failing.sh", "echo 'oops' >&2\nexit 1\n");
    claude_settings(
        &h,
        json!({"PreToolUse": [{"hooks": [
            {"type": "command", "command": cmd(&hang), "timeout": 1},
            {"type": "command", "command": cmd(&garbage)},
            {"type": "command", "command": cmd(&failing)},
            {"type": "command", "command": "/nonexistent/hook"}
        ]}]}),
    );
    let started = std::time::Instant::now();
    let (code, v, stderr) = h.run_json(&["go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(std::fs::read_to_string(h.ws.join("a.txt")).unwrap(), "a");
    assert!(
        common::processes_with("sleep 3117").is_empty(),
        "the hook's processes outlived its timeout"
    );
    let warnings = v["warnings"].to_string();
    for needle in [
        "killed after its timeout of 1 s",
        "cannot be read",
        "exit with 1",
        "exit with 127",
    ] {
        assert!(warnings.contains(needle), "{needle}: {warnings}");
    }
    let done = hooks_done(&events(&h));
    assert_eq!(done.len(), 4);
    assert_eq!(done[0]["timed_out"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_refuse_a_prompt_add_context_block_task_and_send_the_model_back() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "look", prompt: "Look around", subagent_type: helper}}
  - text: "finished early"
  - text: "tests run; finished"
routes:
  - when: {system_contains: "You are helper,"}
    steps: [{text: "never"}]
"#,
    )
    .await;
    h.write_agent(
        "helper",
        "---\nname: helper\nmode: subagent\ndescription: helps\n---\nYou help.",
    );
    let prompt = script(
        &h,
        "prompt.sh",
        r#"input=$(cat)
case "$input" in
  *deploy*) echo 'deploys are frozen this week' >&2; exit 2 ;;
  *) echo 'FREEZE-CONTEXT: no deploys this week' ;;
esac"#,
    );
    let stop = script(
        &h,
        "stop.sh",
        r#"input=$(cat)
case "$input" in
  *'"stop_hook_active":true'*) exit 0 ;;
  *) echo '{"decision":"block","reason":"Run the tests first."}' ;;
esac"#,
    );
    claude_settings(
        &h,
        json!({
            "UserPromptSubmit": [{"hooks": [{"type": "command", "command": cmd(&prompt)}]}],
            "PreToolUse": [{"matcher": "Task", "hooks": [{"type": "command", "command": "echo 'no subagents today' >&2; exit 2"}]}],
            "Stop": [{"hooks": [{"type": "command", "command": cmd(&stop)}]}],
        }),
    );
    // Refused: the model is never asked, and the run fails with the hook's reason.
    let (code, v, stderr) = h.run_json(&["--ephemeral", "deploy it"]).await;
    assert_eq!(code, Some(1), "{stderr}\n{v:#}");
    assert_eq!(v["status"], "denied");
    assert!(
        v["result"].as_str().unwrap().contains("deploys are frozen"),
        "{v:#}"
    );
    assert!(h.mock.requests().is_empty());

    let (code, v, stderr) = h.run_json(&["look around"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(v["result"], "tests run; finished");
    h.assert_strict_ok();
    let reqs = h.mock.requests();
    let first_user = reqs[0].body["messages"][1]["content"].as_str().unwrap();
    assert!(
        first_user.contains("look around") && first_user.contains("FREEZE-CONTEXT"),
        "{first_user}"
    );
    // The task call was blocked; the helper never ran.
    assert!(h.tool_results()[0].contains("no subagents today"));
    assert!(!reqs.iter().any(|r| {
        r.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("You are helper,")
    }));
    // The Stop hook sent the model back once, its reason the next instruction.
    let last = reqs.last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(last.last().unwrap()["content"], "Run the tests first.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hook_settings_name_the_file_and_run_nothing() {
    let h = Harness::yaml("steps:\n  - text: never\n").await;
    let p = h.home.join(".claude/settings.json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "{\n  \"hooks\": {\n    \"PreToolUse\": [,]\n  }\n}\n").unwrap();
    let out = h.run(&["run", "hi"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("{}:3:", p.display())), "{said}");

    std::fs::write(&p, json!({"hooks": {"BeforeTool": []}}).to_string()).unwrap();
    let out = h.run(&["run", "hi"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("hooks.BeforeTool: not a hook event"),
        "{said}"
    );

    std::fs::write(
        &p,
        json!({"hooks": {"PreToolUse": [{"matcher": "Bash(", "hooks": [{"type": "command", "command": "true"}]}]}}).to_string(),
    )
    .unwrap();
    let out = h.run(&["run", "hi"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("hooks.PreToolUse[0].matcher"), "{said}");
    assert!(h.mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_end_pre_compact_and_subagents_get_claudes_events() {
    if !python_here() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "look", prompt: "Look around", subagent_type: helper}}
  - text: "lead done"
  - text: "chat answer"
  - text: "SUMMARY of the chat"
routes:
  - when: {system_contains: "You are helper,"}
    steps: [{text: "helper done"}]
"#,
    )
    .await;
    h.write_agent(
        "helper",
        "---\nname: helper\nmode: subagent\ndescription: helps\n---\nYou help.",
    );
    h.write_agent("lead", "---\nname: lead\nmode: primary\n---\nYou lead.");
    let log = h.dir.path().join("events.log");
    let logger = script(
        &h,
        "log.sh",
        &format!(
            "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"hook_event_name\"])' >> {}",
            log.display()
        ),
    );
    let all: serde_json::Map<String, Value> = [
        "SessionStart",
        "UserPromptSubmit",
        "Stop",
        "SubagentStop",
        "PreCompact",
        "SessionEnd",
    ]
    .iter()
    .map(|e| {
        (
            e.to_string(),
            json!([{"hooks": [{"type": "command", "command": cmd(&logger)}]}]),
        )
    })
    .collect();
    claude_settings(&h, Value::Object(all));
    let (code, v, stderr) = h.run_json(&["--agent", "lead", "go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    let seen = std::fs::read_to_string(&log).unwrap();
    // The subagent's prompt is not the user's: no UserPromptSubmit or SessionStart for it;
    // its stop is a SubagentStop.
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "SessionStart",
            "UserPromptSubmit",
            "SubagentStop",
            "Stop",
            "SessionEnd"
        ],
        "{seen}"
    );
    std::fs::write(&log, "").unwrap();
    let out = h
        .chat_piped(&["--agent", "lead"], b"hello\n/compact\n")
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = std::fs::read_to_string(&log).unwrap();
    // (The mock plays a new conversation from its first step: the task again.)
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "SessionStart",
            "UserPromptSubmit",
            "SubagentStop",
            "Stop",
            "PreCompact",
            "SessionEnd"
        ],
        "{seen}"
    );
}
