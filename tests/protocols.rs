//! The end-to-end scenarios on each model protocol: Chat Completions, Anthropic Messages and
//! OpenAI Responses, against the strict mock (which refuses what the real API would: a
//! `tool_use` left unanswered, a thinking block dropped or changed, a reasoning item lost).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Api, Harness, of_type, processes_with, read, sandbox_available};
use deputy_mockllm::Script;
use serde_json::{Value, json};

fn script(yaml: &str) -> Script {
    Script::parse(yaml, false).unwrap()
}

/// The body as deputy sent it (Anthropic's blocks, Responses' items; chat's messages).
fn raw(r: &deputy_mockllm::LoggedRequest) -> Value {
    r.raw.clone().unwrap_or_else(|| r.body.clone())
}

/// Wait until a process whose command line holds `needle` runs.
async fn started(needle: &str) {
    let t0 = Instant::now();
    while processes_with(needle).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{needle}: never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SIX_STEPS: &str = r#"
steps:
  - reasoning: "Look around first."
    text: "Let me look."
    tool_calls:
      - {name: bash, arguments: {command: "ls"}}
  - reasoning: "Now write the notes."
    tool_call: {name: write, arguments: {path: notes.md, content: "one\n"}}
  - tool_call: {name: read, arguments: {path: notes.md}}
  - reasoning: "Change one to two."
    redacted_thinking: "opaque-blob"
    tool_call: {name: edit, arguments: {path: notes.md, old_string: "one", new_string: "two"}}
  - tool_calls:
      - {name: bash, arguments: {command: "cat notes.md"}}
      - {name: read, arguments: {path: notes.md}}
  - reasoning: "All done."
    text: "notes.md now says two."
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_step_task_on_each_protocol() {
    if !sandbox_available() {
        return;
    }
    for api in Api::ALL {
        let h = Harness::speaking(script(SIX_STEPS), api).await;
        let (code, v, stderr) = h.run_json(&["write the notes"]).await;
        assert_eq!(code, Some(0), "{api:?}: {stderr}\n{v:#}");
        assert_eq!(v["status"], "completed", "{api:?}");
        assert_eq!(v["result"], "notes.md now says two.");
        assert_eq!(v["num_steps"], 6, "{api:?}");
        assert_eq!(read(&h.ws.join("notes.md")), "two\n");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
        h.assert_strict_ok();
        let reqs = h.mock.requests();
        assert_eq!(reqs.len(), 6, "{api:?}");
        let path = match api {
            Api::Chat => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
            Api::Responses => "/v1/responses",
        };
        assert!(reqs.iter().all(|r| r.path == path), "{api:?}");
        // The reasoning of each turn went back as the protocol wants it.
        let last = raw(reqs.last().unwrap());
        match api {
            Api::Chat => {
                let m = last["messages"].as_array().unwrap();
                assert_eq!(m[2]["reasoning_content"], "Look around first.");
            }
            Api::Anthropic => {
                let m = last["messages"].as_array().unwrap();
                assert_eq!(m[1]["content"][0]["type"], "thinking");
                assert_eq!(m[1]["content"][0]["thinking"], "Look around first.");
                let edit = m
                    .iter()
                    .find(|m| m.to_string().contains("\"old_string\""))
                    .unwrap();
                assert_eq!(edit["content"][1]["type"], "redacted_thinking");
                assert_eq!(edit["content"][1]["data"], "opaque-blob");
                assert_eq!(last["system"][0]["cache_control"]["type"], "ephemeral");
            }
            Api::Responses => {
                let items = last["input"].as_array().unwrap();
                let reasoning: Vec<&Value> =
                    items.iter().filter(|i| i["type"] == "reasoning").collect();
                assert_eq!(reasoning.len(), 3, "{items:#?}");
                assert!(reasoning.iter().all(|r| r.get("id").is_none()));
                assert_eq!(last["store"], false);
            }
        }
        // The journal keeps what must be sent back, for a resume.
        let events = h.journal(v["session_id"].as_str().unwrap());
        let carried = of_type(&events, "message.completed")
            .iter()
            .filter(|e| e.get("carried").is_some())
            .count();
        let want = match api {
            Api::Chat => 0,
            // Turns 1, 2, 4 and 6 thought; Responses has no redacted kind, the same turns.
            Api::Anthropic | Api::Responses => 4,
        };
        assert_eq!(carried, want, "{api:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_changed_thought_is_refused_by_the_strict_mock() {
    // The mock's own rules, checked directly: what deputy must never send.
    deputy_llm::install_crypto_provider();
    for (api, first, second) in [
        (
            Api::Anthropic,
            json!({"model": "m", "max_tokens": 100, "stream": false, "messages": [{"role": "user", "content": "go"}]}),
            "tool_use",
        ),
        (
            Api::Responses,
            json!({"model": "m", "store": false, "stream": false, "input": [{"type": "message", "role": "user", "content": "go"}]}),
            "function_call",
        ),
    ] {
        let h = Harness::speaking(
            script("steps:\n  - reasoning: secret plan\n    tool_call: {name: read, arguments: {path: a}}\n  - text: ok\n"),
            api,
        )
        .await;
        let (url, headers): (String, Vec<(&str, &str)>) = match api {
            Api::Anthropic => (
                format!("{}/messages", h.mock.url()),
                vec![("anthropic-version", "2023-06-01")],
            ),
            _ => (format!("{}/responses", h.mock.url()), vec![]),
        };
        let post = |body: Value| {
            let url = url.clone();
            let headers = headers.clone();
            async move {
                let mut rb = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string());
                for (k, v) in headers {
                    rb = rb.header(k, v);
                }
                let r = rb.send().await.unwrap();
                let status = r.status().as_u16();
                let bytes = r.bytes().await.unwrap();
                (status, serde_json::from_slice::<Value>(&bytes).unwrap())
            }
        };
        let (status, answer) = post(first.clone()).await;
        assert_eq!(status, 200, "{answer}");
        // Send the call back without the thought, then with it changed.
        let (call, thought): (Value, Value) = match api {
            Api::Anthropic => {
                let c = answer["content"].as_array().unwrap();
                let call = c.iter().find(|b| b["type"] == second).unwrap().clone();
                let thought = c.iter().find(|b| b["type"] == "thinking").unwrap().clone();
                (call, thought)
            }
            _ => {
                let o = answer["output"].as_array().unwrap();
                let mut call = o.iter().find(|b| b["type"] == second).unwrap().clone();
                call.as_object_mut().unwrap().remove("id");
                call.as_object_mut().unwrap().remove("status");
                let mut thought = o.iter().find(|b| b["type"] == "reasoning").unwrap().clone();
                thought.as_object_mut().unwrap().remove("id");
                (call, thought)
            }
        };
        let mut changed = thought.clone();
        match api {
            Api::Anthropic => changed["thinking"] = json!("another plan"),
            _ => changed["encrypted_content"] = json!("enc-0000000000000000"),
        }
        let next = |items: Vec<Value>| -> Value {
            let mut b = first.clone();
            match api {
                Api::Anthropic => {
                    let id = call["id"].clone();
                    b["messages"].as_array_mut().unwrap().extend([
                        json!({"role": "assistant", "content": items}),
                        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "x"}]}),
                    ]);
                }
                _ => {
                    let id = call["call_id"].clone();
                    let input = b["input"].as_array_mut().unwrap();
                    input.extend(items);
                    input.push(
                        json!({"type": "function_call_output", "call_id": id, "output": "x"}),
                    );
                }
            }
            b
        };
        for (what, items) in [
            ("dropped", vec![call.clone()]),
            ("changed", vec![changed.clone(), call.clone()]),
        ] {
            let (status, body) = post(next(items)).await;
            assert_eq!(status, 400, "{api:?} {what}: {body}");
        }
        let (status, body) = post(next(vec![thought.clone(), call.clone()])).await;
        assert_eq!(status, 200, "{api:?} kept: {body}");
        // A result for a call that was never made.
        let mut orphan = next(vec![thought.clone(), call.clone()]);
        match api {
            Api::Anthropic => {
                orphan["messages"][2]["content"][0]["tool_use_id"] = json!("toolu_nope");
            }
            _ => {
                let input = orphan["input"].as_array_mut().unwrap();
                input.last_mut().unwrap()["call_id"] = json!("call_nope");
            }
        }
        let (status, body) = post(orphan).await;
        assert_eq!(status, 400, "{api:?} orphan: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_batch_on_each_protocol() {
    if !sandbox_available() {
        return;
    }
    for (n, api) in Api::ALL.into_iter().enumerate() {
        let marker = format!("{}.{}", 700 + std::process::id() % 200, 11 + n);
        let h = Harness::speaking(
            script(&format!(
                "steps:\n  - reasoning: two things at once\n    tool_calls:\n      - {{name: bash, arguments: {{command: \"sleep {marker}\"}}}}\n      - {{name: read, arguments: {{path: a.txt}}}}\n  - text: done\n"
            )),
            api,
        )
        .await;
        std::fs::write(h.ws.join("a.txt"), "a").unwrap();
        let child = h
            .cmd(&["run", "--output-format", "json", "go"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        started(&format!("sleep {marker}")).await;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
        let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .expect("deputy did not stop on SIGINT")
            .unwrap();
        assert_eq!(out.status.code(), Some(130), "{api:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "cancelled");
        // Going on after the cancel sends every call its result, and the thought with them.
        let id = v["session_id"].as_str().unwrap().to_string();
        let out = h
            .run(&["resume", &id, "--output-format", "json", "carry on"])
            .await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "completed", "{api:?}: {v:#}");
        h.assert_strict_ok();
        assert_eq!(h.mock.requests().len(), 2, "{api:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_resume_sends_the_journaled_thought_back() {
    if !sandbox_available() {
        return;
    }
    for (n, api) in Api::ALL.into_iter().enumerate() {
        let marker = format!("{}.{}", 700 + std::process::id() % 200, 21 + n);
        let h = Harness::speaking(
            script(&format!(
                "steps:\n  - reasoning: run it once\n    tool_calls:\n      - {{name: bash, arguments: {{command: \"echo run >> effects.log; sleep {marker}\"}}}}\n  - text: finished\n"
            )),
            api,
        )
        .await;
        let mut child = h.cmd(&["run", "finish the job"]).spawn().unwrap();
        started(&format!("sleep {marker}")).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let id = h.only_session();
        let out = h.run(&["resume", &id, "--output-format", "json"]).await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(
            v["status"],
            "completed",
            "{api:?}: {v:#}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The strict mock refuses a call whose thought is missing: the resumed request had it.
        h.assert_strict_ok();
        let last = h.mock.requests().last().unwrap().clone();
        assert!(
            last.body.to_string().contains("was interrupted"),
            "{api:?}: {:#}",
            last.body
        );
        if api != Api::Chat {
            assert!(
                raw(&last).to_string().contains(match api {
                    Api::Anthropic => "\"signature\"",
                    _ => "\"encrypted_content\"",
                }),
                "{api:?}"
            );
        }
    }
}

/// A session of `turns` reads of 8 KB files in a small window, then an answer.
fn long_script(turns: usize, window: u64) -> Script {
    let mut steps: Vec<Value> = (0..turns)
        .map(|i| json!({"reasoning": format!("read file {i}"), "tool_calls": [{"name": "read", "arguments": {"path": format!("f{}.txt", i % 10)}}]}))
        .collect();
    steps.push(json!({"text": "all files read"}));
    let s = json!({
        "by_request": true, "context_window": window, "steps": steps,
        "routes": [{
            "when": {"system_contains": "You are compacting the history"},
            "steps": [{"text": "## Task\nRead the files.\n## Done so far\nRead many.\n## Next steps\nKeep reading."}],
            "repeat_last": true,
        }],
    });
    Script::parse(&s.to_string(), true).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_a_long_session_in_the_window_on_each_protocol() {
    let window = 30_000;
    for api in Api::ALL {
        let h = Harness::speaking(long_script(40, window), api).await;
        for i in 0..10 {
            std::fs::write(h.ws.join(format!("f{i}.txt")), "x".repeat(8000)).unwrap();
        }
        let (code, v, stderr) = h.run_json(&["--max-steps", "100", "read the files"]).await;
        assert_eq!(code, Some(0), "{api:?}: {stderr}\n{:#}", v["errors"]);
        assert_eq!(v["result"], "all files read");
        let events = h.journal(v["session_id"].as_str().unwrap());
        assert!(!of_type(&events, "context.compacted").is_empty(), "{api:?}");
        for r in h.mock.requests() {
            assert!(!r.overflowed, "{api:?}: request {} did not fit", r.seq);
        }
        h.assert_strict_ok();
        if api == Api::Anthropic {
            // The estimate near the limit was settled by the server's own count.
            assert!(
                h.mock
                    .probes()
                    .iter()
                    .any(|p| p == "/v1/messages/count_tokens"),
                "{:?}",
                h.mock.probes()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subagent_on_each_protocol() {
    for api in Api::ALL {
        let h = Harness::speaking(
            script(
                r#"
steps:
  - reasoning: "delegate"
    tool_calls:
      - {name: task, arguments: {description: "review", prompt: "Review main.py", subagent_type: reviewer}}
  - text: "Reviewed: fine."
routes:
  - when: {system_contains: "You are reviewer,"}
    steps:
      - reasoning: "look"
        tool_call: {name: read, arguments: {path: main.py}}
      - text: "main.py is fine."
"#,
            ),
            api,
        )
        .await;
        std::fs::write(h.ws.join("main.py"), "print(1)\n").unwrap();
        h.write_agent(
            "reviewer",
            "---\ndescription: Reviews code\nmode: subagent\ntools: {read: true}\n---\nReview.\n",
        );
        let (code, v, stderr) = h.run_json(&["review main.py"]).await;
        assert_eq!(code, Some(0), "{api:?}: {stderr}\n{v:#}");
        assert_eq!(v["result"], "Reviewed: fine.");
        h.assert_strict_ok();
        let child: Vec<_> = h
            .mock
            .requests()
            .into_iter()
            .filter(|r| r.route.is_some())
            .collect();
        assert_eq!(child.len(), 2, "{api:?}");
        assert!(child[1].body.to_string().contains("print(1)"), "{api:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_schema_on_each_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","required":["ok","count"],"properties":{"ok":{"type":"boolean"},"count":{"type":"integer"}},"additionalProperties":false}"#,
    )
    .unwrap();
    let schema = schema.to_str().unwrap();
    for api in Api::ALL {
        let h = Harness::speaking(
            script("steps:\n  - text: 'It is three.'\n  - text: '{\"ok\": true, \"count\": 3}'\n"),
            api,
        )
        .await;
        let (code, v, stderr) = h.run_json(&["--output-schema", schema, "count"]).await;
        assert_eq!(code, Some(0), "{api:?}: {stderr}\n{v:#}");
        assert_eq!(v["structured_output"], json!({"ok": true, "count": 3}));
        h.assert_strict_ok();
        if api == Api::Responses {
            let first = raw(&h.mock.requests()[0]);
            assert_eq!(first["text"]["format"]["type"], "json_schema");
            assert_eq!(first["text"]["format"]["strict"], true);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_stream_is_retried_on_each_protocol() {
    for api in Api::ALL {
        let h = Harness::speaking(
            script(
                "steps:\n  - text: 'a long enough answer to be cut in the middle'\n    chunk_chars: 4\n    faults:\n      - error_after_chunks: 4\n",
            ),
            api,
        )
        .await;
        let (code, v, stderr) = h.run_json(&["hi"]).await;
        assert_eq!(code, Some(0), "{api:?}: {stderr}\n{v:#}");
        assert_eq!(v["result"], "a long enough answer to be cut in the middle");
        assert_eq!(h.mock.requests().len(), 2, "{api:?}: retried once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stop_reasons_pause_max_tokens_and_529() {
    let h = Harness::speaking(
        script(
            r#"
steps:
  - text: "Part one,"
    stop_reason: pause_turn
    faults:
      - status: 529
        body: {type: error, error: {type: overloaded_error, message: Overloaded}}
  - text: " part two."
"#,
        ),
        Api::Anthropic,
    )
    .await;
    let (code, v, stderr) = h.run_json(&["hi"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(v["result"], "part two.");
    let reqs = h.mock.requests();
    assert_eq!(reqs.len(), 3, "529 retried, then the paused turn continued");
    // The continuation sent the paused turn back as the last message.
    let last = raw(&reqs[2]);
    let m = last["messages"].as_array().unwrap();
    assert_eq!(m.last().unwrap()["role"], "assistant");
    assert_eq!(m.last().unwrap()["content"][0]["text"], "Part one,");
    h.assert_strict_ok();

    let h = Harness::speaking(
        script("steps:\n  - text: 'cut'\n    stop_reason: max_tokens\n"),
        Api::Anthropic,
    )
    .await;
    let (code, v, _) = h.run_json(&["hi"]).await;
    assert_eq!(code, Some(0));
    assert!(
        v["warnings"].to_string().contains("output token limit"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflow_in_each_protocols_wording_compacts_and_goes_on() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/deputy-llm/tests/fixtures");
    for (api, body) in [
        (Api::Chat, "wire/errors/context-openai.400.json"),
        (Api::Anthropic, "anthropic/prompt-too-long.400.json"),
        (Api::Responses, "responses/context-length.400.json"),
    ] {
        let body: Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures.join(body)).unwrap()).unwrap();
        let mut steps: Vec<Value> = (0..5)
            .map(|i| json!({"reasoning": format!("file {i}"), "tool_calls": [{"name": "read", "arguments": {"path": format!("f{i}.txt")}}]}))
            .collect();
        steps.push(json!({"faults": [{"status": 400, "body": body}], "text": "recovered"}));
        let s = json!({
            "by_request": true, "steps": steps,
            "routes": [{
                "when": {"system_contains": "You are compacting the history"},
                "steps": [{"text": "## Task\nRead.\n## Done so far\nRead five.\n## Next steps\nAnswer."}],
                "repeat_last": true,
            }],
        });
        let h = Harness::speaking(Script::parse(&s.to_string(), true).unwrap(), api).await;
        for i in 0..5 {
            let line = format!("file {i}: {}\n", "lorem ipsum dolor sit amet ".repeat(3));
            std::fs::write(h.ws.join(format!("f{i}.txt")), &line.repeat(400)[..8192]).unwrap();
        }
        let (code, v, stderr) = h.run_json(&["read five files"]).await;
        assert_eq!(code, Some(0), "{api:?}: {stderr}\n{v:#}");
        assert_eq!(v["result"], "recovered", "{api:?}");
        let events = h.journal(v["session_id"].as_str().unwrap());
        let compactions = of_type(&events, "context.compacted");
        assert_eq!(compactions.len(), 1, "{api:?}");
        assert_eq!(compactions[0]["trigger"], "overflow", "{api:?}");
        h.assert_strict_ok();
    }
}
