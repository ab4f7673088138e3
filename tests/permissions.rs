//! End-to-end: permission rules hold through a real session, checked by what happened (files
//! that survive, content that never reaches the model), not by the checker's own answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{Harness, of_type, read, sandbox_available};
use serde_json::Value;

/// The text of every tool result the model was sent.
fn tool_results(h: &Harness) -> Vec<String> {
    let last = h.mock.requests().last().unwrap().body.clone();
    last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

/// A script that makes each of `calls` (tool, JSON arguments) in its own turn, then answers.
fn script(calls: &[(&str, Value)]) -> String {
    let mut s = String::from("steps:\n");
    for (tool, args) in calls {
        s.push_str(&format!(
            "  - tool_calls: [{{name: {tool}, arguments: {args}}}]\n"
        ));
    }
    s.push_str("  - text: done\n");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compound_and_wrapped_commands_cannot_slip_past_a_deny_rule() {
    if !sandbox_available() {
        return;
    }
    let attempts = [
        "echo hi && rm out/precious.txt",
        "true; rm out/precious.txt",
        "echo x | rm out/precious.txt",
        "echo $(rm out/precious.txt)",
        "echo `rm out/precious.txt`",
        "env rm out/precious.txt",
        "timeout 5 rm out/precious.txt",
        "nice -n 5 rm out/precious.txt",
        "bash -c 'rm out/precious.txt'",
        "sh -c \"rm out/precious.txt\"",
        "(rm out/precious.txt)",
        "{ rm out/precious.txt; }",
        "FOO=1 rm out/precious.txt",
        "xargs rm <<< out/precious.txt",
        "command rm out/precious.txt",
    ];
    let mut calls: Vec<(&str, Value)> = attempts
        .iter()
        .map(|c| ("bash", serde_json::json!({ "command": c })))
        .collect();
    calls.push((
        "bash",
        serde_json::json!({"command": "echo allowed > out/allowed.txt"}),
    ));
    let h = Harness::yaml(&script(&calls)).await;
    // In a subdirectory: under Landlock no command can create an entry beside the protected
    // `agents/`, and the allowed command must be able to run for the test to mean anything.
    std::fs::create_dir(h.ws.join("out")).unwrap();
    std::fs::write(h.ws.join("out/precious.txt"), "keep me\n").unwrap();
    h.write_agent(
        "careful",
        "---\nname: careful\npermission:\n  bash:\n    \"*\": allow\n    \"rm *\": deny\n---\nYou are careful.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "careful", "clean up"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(read(&h.ws.join("out/precious.txt")), "keep me\n");
    // The allowed command did run: bash works, the rule is what stopped the others.
    assert_eq!(read(&h.ws.join("out/allowed.txt")), "allowed\n");
    let results = tool_results(&h);
    for (attempt, result) in attempts.iter().zip(&results) {
        assert!(
            result.contains("permission denied"),
            "`{attempt}` was not denied: {result}"
        );
    }
}

/// A rule allowing a read-only command allows running it, not writing files with it: output
/// redirection and writing flags need what writing needs. Checked by the files that must not
/// appear, while the command itself still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_read_only_command_does_not_write() {
    if !sandbox_available() {
        return;
    }
    let attempts = [
        "git log -1 > out/a",
        "git log -1 >> out/b",
        "git log -1 &> out/c",
        "git log -1 >| out/d",
        "git log -1 2> out/e",
        "git log --output=out/f -1",
        "git log -1 --output out/g",
        "{ git log -1; } > out/h",
        "(git log -1) > out/i",
        "git log -1 1<> out/j",
    ];
    let mut calls: Vec<(&str, Value)> = attempts
        .iter()
        .map(|c| ("bash", serde_json::json!({ "command": c })))
        .collect();
    calls.push((
        "bash",
        serde_json::json!({"command": "git log -1 --format=%s 2>&1 >/dev/null; git log -1 --format=ran-%s"}),
    ));
    let h = Harness::yaml(&script(&calls)).await;
    std::fs::create_dir(h.ws.join("out")).unwrap();
    common::git_repo_with_a_commit(&h.ws);
    h.write_agent(
        "reader",
        "---\nname: reader\npermission:\n  bash:\n    \"*\": deny\n    \"git log*\": allow\n---\nYou read history.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "reader", "look"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    let made: Vec<_> = std::fs::read_dir(h.ws.join("out"))
        .unwrap()
        .flatten()
        .collect();
    assert!(made.is_empty(), "an allowed command wrote: {made:?}");
    let results = tool_results(&h);
    for (attempt, result) in attempts.iter().zip(&results) {
        // (`1<>` does not parse as shell: denied as an opaque line.)
        let why = if attempt.contains("<>") {
            "cannot tell"
        } else {
            "writes a file"
        };
        assert!(
            result.contains("permission denied") && result.contains(why),
            "`{attempt}` was not denied: {result}"
        );
    }
    // The allowed command itself runs (and what only goes to /dev/null or a stream is fine).
    assert!(results.last().unwrap().contains("ran-first"), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_file_content_never_reaches_the_model() {
    if !sandbox_available() {
        return;
    }
    const VALUE: &str = "hunter2-staging-db-8c1f";
    let h = Harness::yaml(&script(&[
        ("read", serde_json::json!({"path": ".env"})),
        ("read", serde_json::json!({"path": "./config/../.env"})),
        ("grep", serde_json::json!({"pattern": "hunter2"})),
        ("glob", serde_json::json!({"pattern": "**/.env*"})),
        (
            "bash",
            serde_json::json!({"command": "cat .env; grep -r hunter2 . ; true"}),
        ),
    ]))
    .await;
    std::fs::write(
        h.ws.join(".env"),
        format!("DB_URL=postgres://u:{VALUE}@db\n"),
    )
    .unwrap();
    std::fs::create_dir_all(h.ws.join("config")).unwrap();
    let (code, v, stderr) = h.run_json(&["look around"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    for r in h.mock.requests() {
        assert!(
            !r.body.to_string().contains(VALUE),
            "the .env value reached the model in request {}",
            r.seq
        );
    }
    let results = tool_results(&h);
    assert!(results[0].contains("permission denied"), "{}", results[0]);
    assert!(results[1].contains("permission denied"), "{}", results[1]);
    let events = h.journal(v["session_id"].as_str().unwrap());
    assert!(!serde_json::to_string(&events).unwrap().contains(VALUE));
    assert!(!of_type(&events, "tool.completed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_rules_govern_write_too() {
    let h = Harness::yaml(&script(&[
        (
            "write",
            serde_json::json!({"path": "locked/new.txt", "content": "x"}),
        ),
        (
            "write",
            serde_json::json!({"path": "locked/a.txt", "content": "overwritten"}),
        ),
        (
            "edit",
            serde_json::json!({"path": "locked/a.txt", "old_string": "original", "new_string": "edited"}),
        ),
        (
            "write",
            serde_json::json!({"path": "open/b.txt", "content": "fine"}),
        ),
    ]))
    .await;
    std::fs::create_dir_all(h.ws.join("locked")).unwrap();
    std::fs::write(h.ws.join("locked/a.txt"), "original\n").unwrap();
    h.write_agent(
        "writer",
        "---\nname: writer\ntools: [read, write, edit]\npermission:\n  edit:\n    \"*\": allow\n    \"locked/*\": deny\n---\nYou write.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "writer", "write"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert!(!h.ws.join("locked/new.txt").exists());
    assert_eq!(read(&h.ws.join("locked/a.txt")), "original\n");
    assert_eq!(read(&h.ws.join("open/b.txt")), "fine");
    let results = tool_results(&h);
    assert!(results[..3].iter().all(|r| r.contains("permission denied")));
    assert_eq!(v["files_changed"], serde_json::json!(["open/b.txt"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_rules_apply_through_a_session() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(&script(&[
        ("bash", serde_json::json!({"command": "rm precious.txt"})),
        (
            "write",
            serde_json::json!({"path": "asked.txt", "content": "x"}),
        ),
        ("bash", serde_json::json!({"command": "echo ran > ran.txt"})),
    ]))
    .await;
    std::fs::write(h.ws.join("precious.txt"), "keep\n").unwrap();
    let (code, v, stderr) = h
        .run_json(&["--deny", "bash:rm *", "--ask", "write", "go"])
        .await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(read(&h.ws.join("precious.txt")), "keep\n");
    assert!(!h.ws.join("asked.txt").exists(), "a headless ask is a no");
    assert_eq!(read(&h.ws.join("ran.txt")), "ran\n");
    let results = tool_results(&h);
    assert!(results[0].contains("command-line flag"), "{}", results[0]);
    assert!(results[1].contains("headless"), "{}", results[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_apply_in_command_line_order() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(&script(&[
        ("bash", serde_json::json!({"command": "git --version"})),
        ("bash", serde_json::json!({"command": "touch other.txt"})),
    ]))
    .await;
    // Deny everything, then allow one command: that command runs, nothing else does. (It
    // shows by its output: writing a file with it would need a rule for writing.)
    let (code, v, stderr) = h
        .run_json(&["--deny", "bash:*", "--allow", "bash:git --version*", "go"])
        .await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert!(
        tool_results(&h)[0].contains("git version"),
        "the allowed command ran"
    );
    assert!(!h.ws.join("other.txt").exists());

    // The same flags the other way round: the deny comes last and wins.
    let h2 = Harness::yaml(&script(&[(
        "bash",
        serde_json::json!({"command": "git --version"}),
    )]))
    .await;
    let (code, v, stderr) = h2
        .run_json(&["--allow", "bash:git --version*", "--deny", "bash:*", "go"])
        .await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    let r = &tool_results(&h2)[0];
    // (Denied whole, bash is not even offered: the call is answered as unknown.)
    assert!(!r.contains("git version"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_checker_cannot_read_never_matches_an_allow_rule() {
    if !sandbox_available() {
        return;
    }
    let attempts = [
        "git status <<EOF\n$(touch out/pwned-1)\nEOF",
        "git status # <<EOF\ntouch out/pwned-2",
        "$'\\x74ouch' out/pwned-3",
        "git() { touch out/pwned-4; }; git status",
        "git -c alias.st='!touch out/pwned-5' st",
        "git -c core.pager='touch out/pwned-6' -p log",
        "{touch,out/pwned-7}",
        "GIT_PAGER='touch out/pwned-8' git -p log",
    ];
    let calls: Vec<(&str, Value)> = attempts
        .iter()
        .map(|c| ("bash", serde_json::json!({ "command": c })))
        .chain(std::iter::once((
            "bash",
            serde_json::json!({"command": "git --version"}),
        )))
        .collect();
    let h = Harness::yaml(&script(&calls)).await;
    std::fs::create_dir(h.ws.join("out")).unwrap();
    h.write_agent(
        "gitonly",
        "---\nname: gitonly\npermission:\n  bash:\n    \"*\": deny\n    \"git *\": allow\n---\nYou use git.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "gitonly", "go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    for i in 1..=8 {
        assert!(
            !h.ws.join(format!("out/pwned-{i}")).exists(),
            "attempt {i} ran: {}",
            attempts[i - 1]
        );
    }
    assert!(
        tool_results(&h).last().unwrap().contains("git version"),
        "plain git still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_means_the_file_tools_too() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(&script(&[
        (
            "write",
            serde_json::json!({"path": "a.txt", "content": "x"}),
        ),
        (
            "edit",
            serde_json::json!({"path": "keep.txt", "old_string": "keep", "new_string": "changed"}),
        ),
        (
            "bash",
            serde_json::json!({"command": "echo x > b.txt; echo changed > keep.txt"}),
        ),
    ]))
    .await;
    std::fs::write(h.ws.join("keep.txt"), "keep\n").unwrap();
    let (code, v, stderr) = h.run_json(&["--sandbox", "read-only", "go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert!(!h.ws.join("a.txt").exists());
    assert!(!h.ws.join("b.txt").exists());
    assert_eq!(read(&h.ws.join("keep.txt")), "keep\n");
    let tools: Vec<String> = h.mock.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!tools.contains(&"write".to_string()) && !tools.contains(&"edit".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subagent_cannot_have_more_network_than_its_parent() {
    for backend in common::backends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let probe = format!(
            "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')\""
        );
        let h = Harness::yaml(&format!(
            r#"
steps:
  - tool_calls: [{{name: task, arguments: {{description: net, prompt: "fetch it", subagent_type: fetcher}}}}]
  - text: done
routes:
  - when: {{system_contains: "You are fetcher,"}}
    steps:
      - tool_calls: [{{name: bash, arguments: {{command: {probe:?}}}}}]
      - text: "fetched"
"#
        ))
        .await;
        h.write_agent(
            "fetcher",
            "---\nname: fetcher\ndescription: fetches\nmode: subagent\nnetwork: true\ntools: [bash]\n---\nYou fetch.",
        );
        h.write_agent("lead", "---\nname: lead\ntools: [task]\n---\nYou lead.");
        // The agent files are the user's own (a trusted project): the child really asks for
        // the network; only its parent's lack of it stops it.
        assert_eq!(
            h.cmd(&["trust"]).output().await.unwrap().status.code(),
            Some(0)
        );
        let out = h
            .cmd(&["run", "--output-format", "json", "--agent", "lead", "go"])
            .env("DEPUTY_SANDBOX_BACKEND", backend)
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            listener.accept().is_err(),
            "{backend}: the child reached a host port"
        );
        let child_req = h
            .mock
            .requests()
            .into_iter()
            .find(|r| r.route == Some(0) && r.step == 1)
            .unwrap();
        let result = child_req.body["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!result.contains("connected"), "{backend}: {result}");
    }
}
