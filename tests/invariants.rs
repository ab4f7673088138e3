//! End-to-end: the tool-call rule holds on every path (timeout, doom loop, crash, clear,
//! subagents, resume), checked by the strict mock, which answers a request that breaks it with
//! the 400 OpenAI sends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, of_type, processes_with, sandbox_available};
use serde_json::Value;

/// The roles and texts of a request's messages, for comparing message by message.
fn shape(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let role = m["role"].as_str().unwrap().to_string();
            let text = match role.as_str() {
                "assistant" => {
                    let calls: Vec<String> = m["tool_calls"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .map(|c| c["function"]["name"].as_str().unwrap().to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "{}{}",
                        m["content"].as_str().unwrap_or(""),
                        if calls.is_empty() {
                            String::new()
                        } else {
                            format!(" calls:{}", calls.join(","))
                        }
                    )
                }
                _ => m["content"].as_str().unwrap_or("").to_string(),
            };
            (role, text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_in_the_middle_of_a_batch_answers_every_call() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: bash, arguments: {command: "sleep 31.37"}}
      - {name: read, arguments: {path: notes.txt}}
  - text: "Summary: the sleep was cut off; notes.txt was not read."
"#,
    )
    .await;
    std::fs::write(h.ws.join("notes.txt"), "n\n").unwrap();
    let t0 = Instant::now();
    let (code, v, stderr) = h.run_json(&["--timeout", "2s", "go"]).await;
    assert_eq!(code, Some(3), "{stderr}\n{v:#}");
    assert_eq!(v["status"], "timeout");
    assert!(v["result"].as_str().unwrap().starts_with("Summary:"));
    // By the timeout plus its grace (10%), not the sleep's 31 s.
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    h.assert_strict_ok();
    let reqs = h.mock.requests();
    assert_eq!(reqs.len(), 2);
    let msgs = shape(&reqs[1].body);
    let n = msgs.len();
    assert_eq!(msgs[n - 4].0, "assistant");
    assert_eq!(msgs[n - 3].0, "tool");
    assert!(
        msgs[n - 3].1.contains("stopped before it finished"),
        "{msgs:?}"
    );
    assert_eq!(msgs[n - 2].0, "tool");
    assert!(msgs[n - 2].1.contains("was not run"), "{msgs:?}");
    assert_eq!(msgs[n - 1].0, "user");
    assert!(processes_with("sleep 31.37").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doom_loop_stop_leaves_the_rest_of_the_batch_unrun_and_resumable() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: read, arguments: {path: a.txt}}
      - {name: read, arguments: {path: a.txt}}
      - {name: read, arguments: {path: a.txt}}
      - {name: read, arguments: {path: a.txt}}
      - {name: bash, arguments: {command: "touch after-doom"}}
  - text: "I will stop repeating myself."
"#,
    )
    .await;
    std::fs::write(h.ws.join("a.txt"), "a\n").unwrap();
    let (code, v, stderr) = h.run_json(&["go"]).await;
    assert_eq!(code, Some(1), "{stderr}\n{v:#}");
    assert_eq!(v["status"], "error");
    assert!(v["result"].as_str().unwrap().contains("doom loop"));
    assert!(
        !h.ws.join("after-doom").exists(),
        "the call after the stop ran"
    );
    let id = v["session_id"].as_str().unwrap().to_string();
    let events = h.journal(&id);
    // Nothing was decided after the stop; every call has its result.
    assert_eq!(of_type(&events, "tool.decided").len(), 4);
    assert_eq!(of_type(&events, "tool.completed").len(), 5);
    let last = of_type(&events, "tool.completed")[4];
    assert_eq!(last["tool"], "bash");
    assert_eq!(last["metadata"]["not_run"], true);

    let out = h.run(&["resume", &id, "go on"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.assert_strict_ok();
    let msgs = shape(&h.mock.requests()[1].body);
    assert_eq!(msgs.iter().filter(|m| m.0 == "tool").count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_batch_then_resume() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: bash, arguments: {command: "echo run >> effects.log; sleep 32.41"}}
      - {name: read, arguments: {path: effects.log}}
  - text: "Checked the state."
"#,
    )
    .await;
    let mut child = h.cmd(&["run", "do it"]).spawn().unwrap();
    let log = h.ws.join("effects.log");
    // A running command's writes reach the workspace when it ends (its layer), so its start is
    // seen in the process table.
    let t0 = Instant::now();
    while processes_with("sleep 32.41").is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let id = h.only_session();

    // The resumed stream starts with session.started, then says what was interrupted.
    let out = h
        .run(&["resume", &id, "--output-format", "stream-json"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "session.started");
    assert_eq!(events[0]["resumed"], true);
    // Only the command had started: it is interrupted; the read after it never started, so
    // it runs now (and is recorded as starting).
    let interrupted: Vec<&Value> = of_type(&events, "tool.completed")
        .into_iter()
        .filter(|e| e["metadata"]["interrupted"] == true)
        .collect();
    assert_eq!(interrupted.len(), 1, "{events:#?}");
    assert_eq!(interrupted[0]["tool"], "bash");
    let started: Vec<&Value> = of_type(&events, "tool.started");
    assert_eq!(started.len(), 1, "{events:#?}");
    assert_eq!(started[0]["tool"], "read");
    assert_eq!(events.last().unwrap()["type"], "session.finished");

    h.assert_strict_ok();
    // Nothing ran twice: the interrupted command's write is there once (a sandbox writing in
    // place) or not at all (a layered one discards what a killed command wrote).
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ran.is_empty() || ran == "run\n", "{ran:?}");
    let msgs = shape(&h.mock.requests().last().unwrap().body);
    let tools: Vec<&(String, String)> = msgs.iter().filter(|m| m.0 == "tool").collect();
    assert_eq!(tools.len(), 2);
    assert!(tools[0].1.contains("was interrupted"), "{tools:?}");
    assert!(!tools[1].1.contains("was interrupted"), "{tools:?}");
}

/// A run cut off after the model's final answer was recorded (before `session.finished`)
/// ends with that answer when resumed: the model is not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_on_record_ends_a_cut_off_run() {
    let h =
        Harness::yaml("steps:\n  - text: \"The answer on record.\"\n  - text: never asked\n").await;
    let out = h.run(&["run", "answer me"]).await;
    assert_eq!(out.status.code(), Some(0));
    let id = h.only_session();
    // What a kill between the answer and the end leaves: the journal up to the answer.
    let path = h.home.join("state/sessions").join(&id).join("events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("\"type\":\"session.finished\""))
        .collect();
    assert!(kept.last().unwrap().contains("turn.completed"), "{kept:?}");
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let before = h.mock.requests().len();

    let out = h.run(&["resume", &id, "--output-format", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["result"], "The answer on record.", "{v}");
    assert_eq!(h.mock.requests().len(), before, "the model was asked again");
    let after = h.journal(&id);
    assert_eq!(of_type(&after, "session.finished").len(), 1);
    // A finished session resumed without a prompt still goes on (the model is asked).
    let out = h.run(&["resume", &id, "--output-format", "json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "never asked", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_is_journaled_so_resume_does_not_bring_it_back() {
    let h = Harness::yaml("steps:\n  - text: answer one\n  - text: answer two\n").await;
    let out = h
        .chat_piped(&[], b"remember the word pelican\n/clear\nsecond question\n")
        .await;
    assert_eq!(out.status.code(), Some(0));
    let id = h.only_session();
    assert_eq!(
        of_type(&h.journal(&id), "conversation.cleared").len(),
        1,
        "the clear is an event"
    );
    let out = h.run(&["resume", "last", "third question"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.assert_strict_ok();
    let msgs = shape(&h.mock.requests().last().unwrap().body);
    let texts: Vec<&str> = msgs[1..].iter().map(|m| m.1.as_str()).collect();
    assert_eq!(texts, ["second question", "answer one", "third question"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_parent_after_a_subagent_rebuilds_only_its_own_conversation() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "look", prompt: "Look at the code", subagent_type: helper}}
  - text: "Lead done."
  - text: "Lead resumed."
routes:
  - when: {system_contains: "You are helper,"}
    steps: [{text: "Helper looked."}]
"#,
    )
    .await;
    h.write_agent("lead", "---\nname: lead\ntools: [task]\n---\nYou lead.");
    h.write_agent(
        "helper",
        "---\nname: helper\ndescription: Helps\nmode: subagent\ntools: [read]\n---\nYou help.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "lead", "start"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    let id = v["session_id"].as_str().unwrap().to_string();
    let first_input = v["usage"]["input_tokens"].as_u64().unwrap();

    let out = h
        .run(&["resume", &id, "--output-format", "json", "and then?"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["result"], "Lead resumed.");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "no false interrupted warning"
    );
    // Only the lead's own turns count as its turns; the child's usage stays in its totals.
    assert_eq!(r["num_steps"], 3);
    assert!(r["usage"]["input_tokens"].as_u64().unwrap() > first_input);
    h.assert_strict_ok();
    let msgs = shape(&h.mock.requests().last().unwrap().body);
    let roles: Vec<&str> = msgs.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    assert!(msgs[0].1.contains("You lead."));
    assert_eq!(msgs[1].1, "start");
    assert_eq!(msgs[2].1, " calls:task");
    assert!(
        msgs[3]
            .1
            .contains("<task_result>\nHelper looked.\n</task_result>"),
        "{:?}",
        msgs[3]
    );
    assert_eq!(msgs[4].1, "Lead done.");
    assert_eq!(msgs[5].1, "and then?");
}
