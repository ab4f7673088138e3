//! End-to-end: long sessions within a real context window. deputy-mockllm plays a model with a
//! window (it answers a longer request with OpenAI's `context_length_exceeded` 400, and reports
//! the window in `/v1/models`); deputy must prune, summarise, cut, and recover so no run is lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{Harness, of_type};
use deputy_mockllm::{Script, ServeOptions};
use serde_json::{Value, json};

/// What the summary request gets: it is told apart by its system prompt.
fn summary_route() -> Value {
    json!({
        "when": {"system_contains": "You are compacting the history"},
        "steps": [{"text": "## Task\nRead the files.\n## Done so far\nRead many files; all fine.\n## Next steps\nKeep reading."}],
        "repeat_last": true
    })
}

/// A session of `turns` tool calls, each reading one of ten 8 KB files, then an answer.
fn long_script(turns: usize, window: Option<u64>) -> Script {
    let mut steps: Vec<Value> = (0..turns)
        .map(|i| json!({"tool_calls": [{"name": "read", "arguments": {"path": format!("f{}.txt", i % 10)}}]}))
        .collect();
    steps.push(json!({"text": "all files read"}));
    let mut s = json!({"by_request": true, "steps": steps, "routes": [summary_route()]});
    if let Some(w) = window {
        s["context_window"] = json!(w);
    }
    Script::parse(&s.to_string(), true).unwrap()
}

fn write_files(h: &Harness) {
    for i in 0..10 {
        let line = format!("file {i}: {}\n", "lorem ipsum dolor sit amet ".repeat(3));
        let text = line.repeat(8192 / line.len() + 1);
        std::fs::write(h.ws.join(format!("f{i}.txt")), &text[..8192]).unwrap();
    }
}

/// Every request the model saw was accepted: none too long, none breaking the tool-call rule.
fn assert_all_fit(h: &Harness, window: u64) {
    for r in h.mock.requests() {
        assert!(r.rejected.is_none(), "request {}: {:?}", r.seq, r.rejected);
        assert!(
            !r.overflowed && r.prompt_tokens <= window,
            "request {} held {} tokens, over the {window} window",
            r.seq,
            r.prompt_tokens
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_turns_fit_a_32k_window() {
    let window = 30_000;
    let h = Harness::new(long_script(200, Some(window))).await;
    write_files(&h);
    let (code, v, stderr) = h.run_json(&["--max-steps", "300", "read the files"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{:#}", v["errors"]);
    assert_eq!(v["result"], "all files read");
    assert_eq!(v["num_turns"], 201);
    assert_all_fit(&h, window);

    let events = h.journal(v["session_id"].as_str().unwrap());
    let compactions = of_type(&events, "context.compacted");
    assert!(!compactions.is_empty());
    assert!(compactions.iter().all(|c| c["context_window"] == window));
    assert!(
        compactions.iter().any(|c| c["summary"].is_string()),
        "pruning alone cannot hold 200 turns; a summary was written"
    );
    assert!(
        compactions
            .iter()
            .any(|c| c["pruned_outputs"].as_u64() > Some(0))
    );
    // The window came from the server (/v1/models), and each turn says how full it was.
    let turns = of_type(&events, "turn.completed");
    assert!(turns.iter().all(|t| t["context_window"] == window));
    let last = h.mock.requests().last().unwrap().prompt_tokens;
    assert!(last < window, "{last}");
    // The summary kept the task and the most recent turns: the last request still holds the
    // original prompt and the latest outputs in full.
    let body = h.mock.requests().last().unwrap().body.clone();
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["content"], "read the files");
    assert!(
        msgs[2]["content"]
            .as_str()
            .unwrap()
            .contains("Summary of the work so far")
    );
    assert!(
        msgs.iter()
            .rev()
            .find(|m| m["role"] == "tool")
            .is_some_and(|m| m["content"].as_str().unwrap().len() > 8000)
    );
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_mid_way_resumes_from_its_compacted_history() {
    use tokio::io::AsyncBufReadExt;
    let window = 30_000;
    // The first summary comes near turn 118 (pruning alone holds until then); from turn 100 each
    // answer takes 50 ms, so the kill lands mid-way, not after a run that already ended.
    let mut script = long_script(170, Some(window));
    for step in &mut script.steps[100..] {
        step.delay_ms = Some(50);
    }
    let h = Harness::new(script).await;
    write_files(&h);
    let mut child = h
        .cmd(&[
            "run",
            "--max-steps",
            "300",
            "--output-format",
            "stream-json",
            "read the files",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for a compaction with a summary, then for three more tool results, and kill -9.
    let (mut summarized, mut after) = (false, 0);
    let mut session = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await
    {
        let e: Value = serde_json::from_str(&line).unwrap();
        session = e["session_id"].as_str().unwrap().to_string();
        if e["type"] == "context.compacted" && e["summary"].is_string() {
            summarized = true;
        }
        if summarized && e["type"] == "tool.completed" {
            after += 1;
            if after == 3 {
                break;
            }
        }
    }
    assert!(summarized, "no summary before the end");
    let pid = child.id().unwrap() as i32;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait().await;
    let before_kill = h.mock.requests().len();
    // What the journal held at the kill is what the resume must rebuild.
    let at_kill = h.journal(&session);
    let compactions = of_type(&at_kill, "context.compacted");

    let (code, v, stderr) = {
        let out = h
            .run(&[
                "resume",
                "--max-steps",
                "300",
                "--output-format",
                "json",
                &session,
            ])
            .await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(v["result"], "all files read");
    assert_all_fit(&h, window);
    h.assert_strict_ok();

    // The first request after the resume carries the compacted history: the journaled
    // summary, and stubs for every output that was pruned before the kill.
    let summary = compactions
        .iter()
        .rev()
        .find_map(|c| c["summary"].as_str())
        .unwrap();
    let first = h.mock.requests()[before_kill].body.clone();
    let text = first["messages"].to_string();
    assert!(text.contains(&serde_json::to_string(summary).unwrap()[1..20]));
    let pruned: Vec<Value> = compactions
        .iter()
        .flat_map(|c| c["pruned"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!pruned.is_empty());
    for m in first["messages"].as_array().unwrap() {
        if m["role"] == "tool" && pruned.contains(&m["tool_call_id"]) {
            assert!(
                m["content"].as_str().unwrap().contains("output pruned"),
                "{m}"
            );
        }
    }
    let n = first["messages"].as_array().unwrap().len();
    // Without the compacted history it would hold some 240 messages (two per turn).
    assert!(n < 100, "{n} messages: {}", first["messages"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_larger_than_the_window_is_cut_to_fit() {
    let window = 8192;
    let h = Harness::new(
        Script::parse(
            &json!({
                "context_window": window,
                "by_request": true,
                "routes": [summary_route()],
                "steps": [
                    {"tool_calls": [{"name": "read", "arguments": {"path": "a.txt"}}]},
                    {"tool_calls": [{"name": "read", "arguments": {"path": "b.txt"}}]},
                    {"tool_calls": [{"name": "read", "arguments": {"path": "huge.txt"}}]},
                    {"text": "read all three"}
                ]
            })
            .to_string(),
            true,
        )
        .unwrap(),
    )
    .await;
    std::fs::write(h.ws.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(h.ws.join("b.txt"), "beta\n").unwrap();
    let huge: String = (0..3000)
        .map(|i| format!("line {i:05} of a very large file\n"))
        .collect();
    std::fs::write(h.ws.join("huge.txt"), huge).unwrap();
    let (code, v, stderr) = h.run_json(&["read them"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(v["result"], "read all three");
    assert_all_fit(&h, window);
    let events = h.journal(v["session_id"].as_str().unwrap());
    let huge_result = of_type(&events, "tool.completed")[2]["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        huge_result.contains("were cut here to fit"),
        "{huge_result:.300}"
    );
    assert!(huge_result.contains("line 00000"), "the start is kept");
    assert!(huge_result.len() < 30_000);
}

/// Each provider's way of saying "too long" makes the session compact and try again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_errors_in_every_wording_are_recovered_from() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/deputy-llm/tests/fixtures/wire/errors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("context-")
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 9);
    for f in files {
        let body: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let mut steps: Vec<Value> = (0..5)
            .map(|i| json!({"tool_calls": [{"name": "read", "arguments": {"path": format!("f{i}.txt")}}]}))
            .collect();
        steps.push(json!({"faults": [{"status": 400, "body": body}], "text": "recovered"}));
        let script = json!({"by_request": true, "steps": steps, "routes": [summary_route()]});
        let h = Harness::with_options(
            Script::parse(&script.to_string(), true).unwrap(),
            ServeOptions::default(),
        )
        .await;
        write_files(&h);
        let (code, v, stderr) = h.run_json(&["read five files"]).await;
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(code, Some(0), "{name}: {stderr}\n{v:#}");
        assert_eq!(v["result"], "recovered", "{name}");
        let events = h.journal(v["session_id"].as_str().unwrap());
        let compactions = of_type(&events, "context.compacted");
        assert_eq!(compactions.len(), 1, "{name}");
        assert_eq!(compactions[0]["trigger"], "overflow", "{name}");
        // The retry went out after the compaction, and was answered.
        let reqs = h.mock.requests();
        let refused = reqs.iter().position(|r| r.fault.is_some()).unwrap();
        assert!(reqs.len() > refused + 1, "{name}: no retry");
        h.assert_strict_ok();
    }
}

/// When compacting is not enough, the session fails with a message naming the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_fits_fails_with_the_sizes() {
    let h = Harness::yaml(
        "context_window: 1500\nsteps: [{text: never}]\nroutes:\n  - when: {system_contains: \"You are compacting\"}\n    steps: [{text: summary}]\n    repeat_last: true\n",
    )
    .await;
    let (code, v, _) = h.run_json(&["hello"]).await;
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["status"], "error");
    let msg = v["result"].as_str().unwrap();
    assert!(
        msg.contains("does not fit the model's context window (1500 tokens)"),
        "{msg}"
    );
}

/// The prefix of each request repeats the previous request byte for byte, so a provider's
/// prompt cache hits; the cached tokens it reports are in the usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_a_byte_stable_prefix_for_prompt_caching() {
    let mut s = json!({"prompt_cache": true, "steps": []});
    for i in 0..4 {
        s["steps"].as_array_mut().unwrap().push(
            json!({"tool_calls": [{"name": "read", "arguments": {"path": format!("f{i}.txt")}}]}),
        );
    }
    s["steps"]
        .as_array_mut()
        .unwrap()
        .push(json!({"text": "done"}));
    let h = Harness::new(Script::parse(&s.to_string(), true).unwrap()).await;
    write_files(&h);
    let (code, v, stderr) = h.run_json(&["read"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let reqs = h.mock.requests();
    for pair in reqs.windows(2) {
        let (a, b) = (
            pair[0].body["messages"].as_array().unwrap(),
            pair[1].body["messages"].as_array().unwrap(),
        );
        assert_eq!(
            &b[..a.len()],
            &a[..],
            "request {} rewrote its prefix",
            pair[1].seq
        );
        assert_eq!(pair[0].body["tools"], pair[1].body["tools"]);
    }
    assert!(
        v["usage"]["cached_input_tokens"].as_u64().unwrap() > 10_000,
        "{v:#}"
    );
}

/// `cache_control` markers on the stable prefix, when the provider's config asks for them;
/// a window given in `[models]` beats what the server says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_gives_cache_markers_and_the_window() {
    let h = Harness::yaml("context_window: 50000\nsteps: [{text: ok}]").await;
    h.write_user_config(&format!(
        "model = \"gw/claude\"\n[providers.gw]\nbase_url = \"{}\"\ncache_control = true\n[models.\"gw/claude\"]\ncontext_window = 20000\n",
        h.mock.url()
    ));
    let out = h
        .cmd(&["run", "--output-format", "json", "hi"])
        .env_remove("DEPUTY_MODEL")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = h.mock.requests()[0].body.clone();
    assert_eq!(
        body["messages"][0]["content"][0]["cache_control"]["type"],
        "ephemeral"
    );
    assert_eq!(body["messages"][1]["content"][0]["text"], "hi");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = h.journal(v["session_id"].as_str().unwrap());
    assert_eq!(
        of_type(&events, "turn.completed")[0]["context_window"],
        20000
    );
}

/// What the server says of its window (here: nothing, as most servers) is asked once and kept
/// in the state directory: the next run asks nothing. `--ephemeral` or not, the cache is the
/// state directory's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_window_is_asked_once_not_every_run() {
    // The answer waits a little, so the first run's questions are answered before it ends.
    let h = Harness::yaml(
        "steps:\n  - {text: one, delay_ms: 300}\n  - {text: two, delay_ms: 300}\n  - {text: three}\n",
    )
    .await;
    let (code, v, stderr) = h.run_json(&["first"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    let asked = h.mock.probes();
    assert!(
        asked.iter().any(|p| p == "/v1/models") && asked.iter().any(|p| p == "/props"),
        "{asked:?}"
    );
    let cache = h.home.join("state/cache/windows.json");
    assert!(cache.is_file(), "nothing kept");
    let (code, v, stderr) = h.run_json(&["second"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(h.mock.probes(), asked, "the second run asked again");
    // A damaged cache is a miss, never an error.
    std::fs::write(&cache, "{broken").unwrap();
    let (code, v, stderr) = h.run_json(&["third"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
}
