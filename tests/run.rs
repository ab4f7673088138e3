//! End-to-end: `deputy run` against deputy-mockllm over real HTTP, with the real sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, of_type, processes_with, read, sandbox_available};
use serde_json::{Value, json};

const SEED_TASK: &str = include_str!("../examples/mock/seed-task.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_agent_completes_a_multi_step_task() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(SEED_TASK).await;
    std::fs::write(h.ws.join("app.py"), "print('app')\n").unwrap();
    let (code, v, stderr) = h
        .run_json(&["--agent", "backend-architect", "add a health check"])
        .await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(v["status"], "completed");
    assert!(v["result"].as_str().unwrap().contains("health.py"));
    assert_eq!(v["num_steps"], 6);
    assert_eq!(v["files_changed"], json!(["health.py"]));
    assert_eq!(
        read(&h.ws.join("health.py")),
        "def health():\n    return {\"status\": \"ok\", \"version\": \"1.0\"}\n"
    );
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["metrics"]["model_turns"].as_array().unwrap().len(), 6);
    assert_eq!(v["metrics"]["tool_calls"].as_array().unwrap().len(), 5);

    // What deputy sent: the agent's temperature, its tools, the system prompt, the tool results.
    let reqs = h.mock.requests();
    assert_eq!(reqs.len(), 6);
    let first = &reqs[0].body;
    assert_eq!(first["temperature"], 0.2);
    let tools: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    for t in ["bash", "edit", "write", "read"] {
        assert!(tools.contains(&t), "{tools:?}");
    }
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("You are backend-architect, an agent run by deputy"),
        "{system}"
    );
    assert!(system.contains(h.ws.to_str().unwrap()));
    assert!(system.contains("# Backend Architect"));
    assert_eq!(first["messages"][1]["content"], "add a health check");
    let second = &reqs[1].body["messages"];
    let ls_result = second.as_array().unwrap().last().unwrap();
    assert_eq!(ls_result["role"], "tool");
    assert!(
        ls_result["content"].as_str().unwrap().contains("app.py"),
        "{ls_result}"
    );

    // The journal holds the whole story.
    let events = h.journal(v["session_id"].as_str().unwrap());
    assert_eq!(events[0]["type"], "session.started");
    assert_eq!(events.last().unwrap()["type"], "session.finished");
    assert_eq!(of_type(&events, "tool.completed").len(), 5);
    assert!(
        of_type(&events, "message.delta").is_empty(),
        "deltas are not journaled"
    );
    assert!(events.iter().all(|e| e["v"] == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_and_stream_json() {
    let h = Harness::yaml("steps:\n  - text: \"The answer is 42.\"\nrepeat_last: true\n").await;
    let out = h.run(&["run", "what is it?"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "The answer is 42.\n");

    let out = h
        .run(&["run", "--output-format", "stream-json", "what is it?"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"session.started"));
    assert!(types.contains(&"message.delta"));
    assert_eq!(types.last(), Some(&"session.finished"));
    assert_eq!(events.last().unwrap()["result"], "The answer is 42.");

    // Piped stdin is appended to the prompt as a block.
    let mut cmd = h.cmd(&["run", "summarize"]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"line one\nline two\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let last = h.mock.requests().last().unwrap().body.clone();
    assert_eq!(
        last["messages"][1]["content"],
        "summarize\n\n<stdin>\nline one\nline two\n</stdin>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes() {
    // 1: the model fails (401, not retried).
    let h = Harness::yaml("steps:\n  - faults:\n      - status: 401\n        body: {error: {message: \"bad key\"}}\n    text: never\n").await;
    let (code, v, _) = h.run_json(&["hello"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(v["status"], "error");
    assert!(
        v["errors"][0].as_str().unwrap().contains("OPENAI_API_KEY"),
        "{v}"
    );

    // 2: usage and configuration errors, nothing run.
    let h = Harness::yaml("steps:\n  - text: hi\n").await;
    for args in [
        &["run", "--agent", "nope", "x"][..],
        &["run", "--max-steps", "0", "x"],
        &["run", "--bogus"],
        &["run"],
    ] {
        let out = h.run(args).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(h.mock.requests().is_empty(), "nothing was run");
    let out = h
        .cmd(&["run", "x"])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("DEPUTY_MODEL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no model is configured")
            && err.contains("OPENAI_BASE_URL")
            && err.contains("config.toml")
            && err.contains("--model"),
        "{err}"
    );
    // With nothing configured, deputy looks for a local server on the usual ports; the test
    // points that look at the mock's port, so it is found and used (with a warning).
    let port = h.mock.addr().port().to_string();
    let out = h
        .cmd(&["run", "x"])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("DEPUTY_MODEL")
        .env("DEPUTY_LOCAL_PORTS", format!("1,{port}"))
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("found on its usual port"));
    let out = h
        .cmd(&["run", "x"])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("DEPUTY_MODEL")
        .env("DEPUTY_LOCAL_PORTS", "80,nope")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nope` is not a port"));

    h.write_config("modle = 1\n");
    let out = h.run(&["run", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `modle`"));
}

/// A model that never stops calling tools.
/// (Different paths each time, so the doom-loop guard stays out of it.)
const ENDLESS: &str = "steps:\n  - tool_calls: [{name: glob, arguments: {pattern: \"*.a\"}}]\n    usage: {prompt_tokens: 1000, completion_tokens: 500}\n  - tool_calls: [{name: glob, arguments: {pattern: \"*.b\"}}]\n    usage: {prompt_tokens: 1000, completion_tokens: 500}\n  - tool_calls: [{name: glob, arguments: {pattern: \"*.c\"}}]\n    usage: {prompt_tokens: 1000, completion_tokens: 500}\n  - tool_calls: [{name: glob, arguments: {pattern: \"*.d\"}}]\n    usage: {prompt_tokens: 1000, completion_tokens: 500}\n  - tool_calls: [{name: glob, arguments: {pattern: \"*.e\"}}]\n    usage: {prompt_tokens: 1000, completion_tokens: 500}\nroutes:\n  - when: {last_user_contains: \"You have reached\"}\n    repeat_last: true\n    steps: []\n";

async fn limit_case(extra: &[&str], config: Option<&str>, status: &str) -> (Harness, Value) {
    // The summary request (no tools) is answered by a route on the limit prompt.
    let script = ENDLESS.replace(
        "    steps: []\n",
        "    steps: [{text: \"Summary: listed the directory; nothing left.\"}]\n",
    );
    let h = Harness::yaml(&script).await;
    if let Some(c) = config {
        h.write_user_config(c);
    }
    let mut args = vec!["keep going"];
    args.extend_from_slice(extra);
    let (code, v, stderr) = h.run_json(&args).await;
    assert_eq!(code, Some(3), "{status}: {stderr}\n{v:#}");
    assert_eq!(v["status"], status, "{v:#}");
    assert!(
        v["result"].as_str().unwrap().starts_with("Summary:"),
        "{v:#}"
    );
    // The last request asked for the summary, without tools.
    let last = h.mock.requests().last().unwrap().body.clone();
    assert!(
        last.get("tools").is_none(),
        "the summary call offers no tools"
    );
    assert!(
        last["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("You have reached")
    );
    (h, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_stop_the_session_with_a_summary() {
    let (h, v) = limit_case(&["--max-steps", "3"], None, "max_steps").await;
    assert_eq!(h.mock.requests().len(), 4, "3 steps and the summary");
    assert_eq!(v["num_steps"], 4);

    let (_, v) = limit_case(&["--max-tokens", "4000"], None, "budget").await;
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() >= 3000);

    let pricing = "[pricing.\"mock-model\"]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n";
    let (_, v) = limit_case(&["--max-cost-usd", "2.5"], Some(pricing), "budget").await;
    assert!(v["cost_usd"].as_f64().unwrap() >= 2.5, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_steps_limit_applies() {
    let script = ENDLESS.replace(
        "    steps: []\n",
        "    steps: [{text: \"Summary: stopped.\"}]\n",
    );
    let h = Harness::yaml(&script).await;
    h.write_agent("short", "---\nname: short\nsteps: 2\n---\nYou are short.");
    let (code, v, _) = h.run_json(&["--agent", "short", "go"]).await;
    assert_eq!(code, Some(3));
    assert_eq!(v["status"], "max_steps");
    assert_eq!(h.mock.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_timeout() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - name: bash\n        arguments: {command: \"sleep 30\"}\nroutes:\n  - when: {last_user_contains: \"You have reached\"}\n    repeat_last: true\n    steps: [{text: \"Summary: was sleeping.\"}]\n",
    )
    .await;
    let start = Instant::now();
    let (code, v, stderr) = h.run_json(&["--timeout", "1s", "sleep"]).await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(v["status"], "timeout");
    assert_eq!(v["result"], "Summary: was sleeping.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_schema_valid_fixed_and_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"type":"object","required":["ok","count"],"properties":{"ok":{"type":"boolean"},"count":{"type":"integer"}}}"#).unwrap();
    let schema = schema.to_str().unwrap();

    let h = Harness::yaml("steps:\n  - text: '{\"ok\": true, \"count\": 3}'\n").await;
    let (code, v, _) = h.run_json(&["--output-schema", schema, "count"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(v["structured_output"], json!({"ok": true, "count": 3}));

    let h = Harness::yaml("steps:\n  - text: 'It is three.'\n  - text: '```json\n{\"ok\": true, \"count\": 3}\n```'\n").await;
    let (code, v, _) = h.run_json(&["--output-schema", schema, "count"]).await;
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["structured_output"]["count"], 3);
    let fix = &h.mock.requests()[1].body["messages"];
    let ask = fix.as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ask.contains("JSON Schema") && ask.contains("not JSON"),
        "{ask}"
    );

    let h = Harness::yaml("steps:\n  - text: 'nope'\nrepeat_last: true\n").await;
    let (code, v, _) = h.run_json(&["--output-schema", schema, "count"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(v["status"], "error");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("does not match the output schema after 3 attempts"),
        "{v}"
    );
    assert_eq!(h.mock.requests().len(), 3);

    let out = h
        .run(&["run", "--output-schema", "/nonexistent.json", "x"])
        .await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_ask_is_denied_and_reported() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - name: write\n        arguments: {path: x.txt, content: hi}\n  - text: I could not write it.\n",
    )
    .await;
    h.write_agent(
        "careful",
        "---\nname: careful\npermission:\n  edit: ask\n---\nBe careful.",
    );
    let (code, v, _) = h.run_json(&["--agent", "careful", "write x"]).await;
    assert_eq!(code, Some(0));
    assert!(!h.ws.join("x.txt").exists());
    let events = h.journal(v["session_id"].as_str().unwrap());
    let decided = of_type(&events, "tool.decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["allowed"], false);
    assert_eq!(decided[0]["by"], "headless");
    let result = h.mock.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(result["role"], "tool");
    let text = result["content"].as_str().unwrap();
    assert!(
        text.contains("permission denied") && text.contains("headless"),
        "{text}"
    );

    // --auto-approve turns the ask into a yes; --deny beats it.
    let h2 = Harness::yaml("steps:\n  - tool_calls:\n      - name: write\n        arguments: {path: x.txt, content: hi}\n  - text: done\n").await;
    h2.write_agent(
        "careful",
        "---\nname: careful\npermission:\n  edit: ask\n---\nBe careful.",
    );
    let (code, _, _) = h2
        .run_json(&["--agent", "careful", "--auto-approve", "write x"])
        .await;
    assert_eq!(code, Some(0));
    assert_eq!(read(&h2.ws.join("x.txt")), "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doom_loop_is_stopped() {
    let h = Harness::yaml("steps:\n  - tool_calls:\n      - name: list\n        arguments: {path: .}\nrepeat_last: true\n").await;
    let (code, v, _) = h.run_json(&["loop"]).await;
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["status"], "error");
    assert!(v["result"].as_str().unwrap().contains("doom loop"));
    let reqs = h.mock.requests();
    assert_eq!(reqs.len(), 4, "the fourth identical call stops it");
    let third_result = reqs[3].body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        third_result.contains("third time in a row"),
        "{third_result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_cancels_kills_the_tool_and_exits_130() {
    if !sandbox_available() {
        return;
    }
    let marker = format!("{}.{}", 700 + std::process::id() % 200, 5);
    let h = Harness::yaml(&format!(
        "steps:\n  - tool_calls:\n      - name: bash\n        arguments: {{command: \"echo started > started.txt; sleep {marker}\"}}\n  - text: done\n"
    ))
    .await;
    let child = h
        .cmd(&["run", "--output-format", "json", "sleep"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while processes_with(&format!("sleep {marker}")).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the tool never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    // The command sleeps for over 700 s: stopping within 10 s means it was stopped.
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("deputy did not stop on SIGINT")
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "cancelled");
    let events = h.journal(v["session_id"].as_str().unwrap());
    assert_eq!(events.last().unwrap()["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        processes_with(&format!("sleep {marker}")).is_empty(),
        "the sleep survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_kill_9_does_not_repeat_side_effects() {
    if !sandbox_available() {
        return;
    }
    let marker = format!("{}.{}", 700 + std::process::id() % 200, 7);
    let h = Harness::yaml(&format!(
        "steps:\n  - tool_calls:\n      - name: bash\n        arguments: {{command: \"echo run >> effects.log; sleep {marker}; echo end >> effects.log\"}}\n  - text: \"Checked: the command had started; effects.log has one line.\"\n"
    ))
    .await;
    let mut child = h.cmd(&["run", "finish the job"]).spawn().unwrap();
    let log = h.ws.join("effects.log");
    // The command's writes land when it ends (its layer): its start is in the process table.
    let t0 = Instant::now();
    while processes_with(&format!("sleep {marker}")).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the tool never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        processes_with(&format!("sleep {marker}")).is_empty(),
        "the sandboxed command died with deputy"
    );

    let id = h.only_session();
    let before = h.journal(&id);
    assert!(
        of_type(&before, "session.finished").is_empty(),
        "it crashed"
    );
    assert_eq!(of_type(&before, "tool.requested").len(), 1);
    assert!(of_type(&before, "tool.completed").is_empty());

    let out = h.run(&["resume", &id, "--output-format", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["session_id"], id.as_str());
    assert_eq!(v["status"], "completed");
    // Not run again: one line in the log from the first run (a sandbox writing in place), or
    // none (a layered sandbox discards what a killed command wrote).
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ran.is_empty() || ran == "run\n", "{ran:?}");
    // The model was told.
    let last = h.mock.requests().last().unwrap().body.clone();
    let msgs = last["messages"].as_array().unwrap();
    let tool_msg = msgs.iter().find(|m| m["role"] == "tool").unwrap();
    assert!(
        tool_msg["content"]
            .as_str()
            .unwrap()
            .contains("was interrupted"),
        "{tool_msg}"
    );
    assert_eq!(msgs[1]["content"], "finish the job", "nothing lost");
    let after = h.journal(&id);
    assert_eq!(of_type(&after, "session.finished").len(), 1);
    assert!(
        of_type(&after, "session.started")
            .iter()
            .any(|e| e["resumed"] == true)
    );

    // `sessions list` and `show` see it.
    let out = h.run(&["sessions", "list"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = h.run(&["sessions", "show", "last"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("finish the job"));
}

#[tokio::test]
async fn resume_of_a_deleted_agent_narrows_to_read_only_and_a_broken_one_is_an_error() {
    let h = Harness::yaml("steps:\n  - text: first\n  - text: second\n  - text: third\n").await;
    h.write_agent(
        "narrow",
        "---\ndescription: narrow\ntools: [read, bash]\n---\nYou are narrow.",
    );
    let (code, v, _) = h.run_json(&["run", "--agent", "narrow", "hi"]).await;
    assert_eq!(code, Some(0));
    let id = v["session_id"].as_str().unwrap().to_string();
    let tools = |i: usize| -> Vec<String> {
        h.mock.requests()[i].body["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(tools(0).contains(&"bash".to_string()), "{:?}", tools(0));

    // A broken file under that name: an error naming it, and the journal is untouched.
    let file = h.ws.join("agents/narrow.md");
    std::fs::write(&file, "---\ntools: [read\n---\nbroken").unwrap();
    let before = h.journal(&id).len();
    let out = h.run(&["resume", &id, "more"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("narrow"), "{err}");
    assert_eq!(h.journal(&id).len(), before, "nothing written");

    // Gone: the session resumes, with the recorded prompt but only read-only tools.
    std::fs::remove_file(&file).unwrap();
    let out = h
        .run(&["resume", &id, "more", "--output-format", "json"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("read-only tools"), "{err}");
    let last = h.mock.requests().len() - 1;
    let mut got = tools(last);
    got.sort();
    assert_eq!(got, ["glob", "grep", "list", "read"]);
    let body = &h.mock.requests()[last].body;
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("You are narrow."),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_clear_errors_not_panics() {
    let h = Harness::yaml("steps:\n  - text: hi\n").await;
    let out = h
        .run(&["run", "--timeout", "99999999999999999999h", "x"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 30 days"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    h.write_agent(
        "slow",
        "---\nname: slow\ntimeout: 99999999999999999999h\n---\nYou are slow.",
    );
    let out = h.run(&["run", "--agent", "slow", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("slow.md:3") && err.contains("at most 30 days"),
        "{err}"
    );

    h.write_user_config("[limits]\ntimeout_s = 1e300\n");
    let out = h.run(&["run", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timeout_s") && !err.contains("panicked"),
        "{err}"
    );
    assert!(h.mock.requests().is_empty(), "nothing was run");
}

/// Another user of the machine makes `/tmp/deputy-quiet-UID` (the editor locks' directory)
/// before deputy does, to stop it: deputy refuses that directory, says so, and its commands
/// still run. deputy runs in a `/tmp` of its own (bwrap) where the directory is already there,
/// writable by anyone — refused as one owned by someone else is.
#[tokio::test]
async fn a_lock_directory_planted_in_tmp_stops_no_command() {
    if !sandbox_available() {
        return;
    }
    let Some(bwrap) = ["/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        common::outside::missing(
            "planted lock directory test",
            "bwrap makes its private /tmp",
            "apt-get install bubblewrap",
        );
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - name: bash\n        arguments: {command: \"echo ran > marker.txt\"}\n  - text: done\n",
    )
    .await;
    let dir = h.dir.path().to_str().unwrap().to_string();
    let mut outer = tokio::process::Command::new(bwrap);
    outer
        .args([
            "--dev-bind",
            "/",
            "/",
            "--tmpfs",
            "/tmp",
            "--bind",
            &dir,
            &dir,
        ])
        // deputy itself may be built under /tmp too.
        .args(["--ro-bind", common::BIN, common::BIN])
        .args(["--die-with-parent", "--chdir"])
        .arg(&h.ws)
        .args([
            "sh",
            "-c",
            "d=/tmp/deputy-quiet-$(id -u); mkdir -m 777 \"$d\" && exec \"$0\" \"$@\"",
            common::BIN,
            "run",
            "--output-format",
            "json",
            "go",
        ])
        .env_clear()
        .envs(h.env())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), outer.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(read(&h.ws.join("marker.txt")), "ran\n", "{stderr}");
    let results = h.tool_results();
    assert!(results.iter().all(|r| !r.contains("lock")), "{results:?}");
    assert!(
        stderr.contains("is not a directory only this user may write"),
        "{stderr}"
    );
}

/// deputy killed at any moment while its kept sandbox starts (here, 2 to 60 ms into a run
/// whose first step is a command) leaves no process behind: neither bwrap nor what it was
/// starting. (bwrap's sandboxed child has no parent-death signal until just before it execs;
/// with bwrap's `--info-fd`, whose write killed bwrap once deputy was gone, it waited forever.)
#[tokio::test]
async fn a_deputy_killed_while_its_sandbox_starts_leaves_nothing() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - name: bash\n        arguments: {command: \"true\"}\n  - text: done\nrepeat_last: true\n",
    )
    .await;
    for ms in (2..=60).step_by(2) {
        let mut child = h.cmd(&["run", "go"]).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    // What a killed sandbox leaves takes a moment to go (its parent-death signal, EOF on its
    // pipes).
    let mut left = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = common::processes_in(&h.ws, "");
        if left.is_empty() {
            break;
        }
    }
    assert!(left.is_empty(), "left running: {left:?}");
}
