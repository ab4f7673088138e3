//! End-to-end: the `task` tool. A primary agent delegates to subagents run by the real binary
//! against deputy-mockllm; the mock routes each conversation by its system prompt.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{Harness, of_type};
use serde_json::Value;

fn agents(h: &Harness) {
    h.write_agent(
        "lead",
        "---\nname: lead\nmode: primary\ndescription: leads\n---\nYou lead.",
    );
    h.write_agent(
        "reviewer",
        "---\nname: reviewer\nmode: subagent\ndescription: Reviews code for bugs\n---\nYou review.",
    );
    h.write_agent(
        "tester",
        "---\nname: tester\nmode: subagent\ndescription: Writes tests\n---\nYou test.",
    );
    h.write_agent(
        "secret",
        "---\nname: secret\nmode: subagent\nhidden: true\n---\nHidden.",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subagents_run_concurrently_and_events_nest() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "review main", prompt: "Review main.py", subagent_type: reviewer}}
      - {name: task, arguments: {description: "write tests", prompt: "Write tests for main.py", subagent_type: tester}}
  - text: "Both done: fine, and tests written."
routes:
  - when: {system_contains: "You are reviewer,"}
    steps: [{text: "Review: main.py is fine.", delay_ms: 400}]
  - when: {system_contains: "You are tester,"}
    steps: [{text: "Tests: written.", delay_ms: 400}]
"#,
    )
    .await;
    agents(&h);
    let (code, v, stderr) = h.run_json(&["--agent", "lead", "review and test"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(v["result"], "Both done: fine, and tests written.");

    // The lead was offered the task tool listing the subagents it may use (not hidden ones,
    // not itself).
    let reqs = h.mock.requests();
    let task = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "task")
        .unwrap()
        .clone();
    let desc = task["function"]["description"].as_str().unwrap();
    assert!(
        desc.contains("- reviewer: Reviews code for bugs")
            && desc.contains("- tester: Writes tests"),
        "{desc}"
    );
    assert!(
        !desc.contains("secret") && !desc.contains("- lead"),
        "{desc}"
    );

    // Both children's requests overlap in time.
    let child: Vec<_> = reqs.iter().filter(|r| r.route.is_some()).collect();
    assert_eq!(child.len(), 2);
    let (a, b) = (child[0], child[1]);
    assert!(
        b.received_ms < a.done_ms.unwrap() && a.received_ms < b.done_ms.unwrap(),
        "not concurrent: {:?} {:?} / {:?} {:?}",
        a.received_ms,
        a.done_ms,
        b.received_ms,
        b.done_ms
    );

    // Both results came back to the lead, each with its task_id.
    let msgs = reqs.last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .clone();
    let results: Vec<&str> = msgs
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(results.len(), 2);
    assert!(
        results[0].contains("<task_result>\nReview: main.py is fine.\n</task_result>"),
        "{}",
        results[0]
    );
    assert!(results[1].contains("Tests: written."));
    assert!(results.iter().all(|r| r.starts_with("task_id: ")));

    // One ledger per session: the lead's journal holds its own events only, with the
    // children linked by `subagent.started` / `subagent.finished` and what each spent in the
    // task call's result; each child's events are in its own journal.
    let id = v["session_id"].as_str().unwrap();
    let events = h.journal(id);
    assert!(events.iter().all(|e| e["session_id"] == id));
    let started = of_type(&events, "subagent.started");
    let finished = of_type(&events, "subagent.finished");
    assert_eq!((started.len(), finished.len()), (2, 2));
    let task_results = of_type(&events, "tool.completed");
    assert_eq!(task_results.len(), 2);
    let mut child_input = 0;
    for s in &started {
        let child_id = s["child_session_id"].as_str().unwrap();
        let child_events = h.journal(child_id);
        assert!(child_events.iter().all(|e| e["session_id"] == child_id));
        assert_eq!(child_events[0]["type"], "session.started");
        assert_eq!(child_events[0]["parent_session_id"], id);
        assert_eq!(child_events.last().unwrap()["type"], "session.finished");
        let spent = task_results
            .iter()
            .find(|r| r["metadata"]["task_id"] == child_id)
            .unwrap()["metadata"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap();
        assert!(spent > 0);
        child_input += spent;
    }
    // The lead's totals count the children's turns.
    let own_input: u64 = of_type(&events, "turn.completed")
        .iter()
        .map(|t| t["usage"]["input_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(
        v["usage"]["input_tokens"].as_u64().unwrap(),
        own_input + child_input
    );
    let out = h.run(&["sessions", "list", "--all", "--json"]).await;
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cannot_use_what_its_parent_denies() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "run it", prompt: "Run the build", subagent_type: builder}}
  - text: "done"
routes:
  - when: {system_contains: "You are builder,"}
    steps:
      - tool_calls: [{name: bash, arguments: {command: "echo hi > pwned.txt"}}]
      - text: "I could not run bash."
"#,
    )
    .await;
    h.write_agent(
        "lead",
        "---\nname: lead\npermission:\n  bash: deny\n---\nYou lead.",
    );
    h.write_agent(
        "builder",
        "---\nname: builder\nmode: subagent\npermission:\n  bash: allow\n---\nYou build.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "lead", "build"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert!(!h.ws.join("pwned.txt").exists());
    let child_reqs: Vec<_> = h
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.route == Some(0))
        .collect();
    let tools: Vec<String> = child_reqs[0].body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !tools.contains(&"bash".to_string()),
        "the parent denies bash, so the child is not offered it: {tools:?}"
    );
    let answer = child_reqs[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(answer.contains("no tool named `bash`"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_is_bounded_by_the_parents_remaining_budget() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "dig", prompt: "Dig forever", subagent_type: digger}}
    usage: {prompt_tokens: 500, completion_tokens: 100}
  - text: "Stopped."
routes:
  - when: {last_user_contains: "You have reached"}
    repeat_last: true
    steps: [{text: "Summary: dug a bit, ran out of budget."}]
  - when: {system_contains: "You are digger,"}
    repeat_last: true
    steps:
      - tool_calls: [{name: glob, arguments: {pattern: "*.x"}}]
        usage: {prompt_tokens: 1000, completion_tokens: 200}
      - tool_calls: [{name: glob, arguments: {pattern: "*.y"}}]
        usage: {prompt_tokens: 1000, completion_tokens: 200}
      - tool_calls: [{name: glob, arguments: {pattern: "*.z"}}]
        usage: {prompt_tokens: 1000, completion_tokens: 200}
"#,
    )
    .await;
    h.write_agent("lead", "---\nname: lead\n---\nYou lead.");
    h.write_agent("digger", "---\nname: digger\nmode: subagent\n---\nYou dig.");
    let (code, v, stderr) = h
        .run_json(&["--agent", "lead", "--max-tokens", "3000", "dig"])
        .await;
    assert_eq!(code, Some(3), "{stderr}\n{v:#}");
    let events = h.journal(v["session_id"].as_str().unwrap());
    let fin = of_type(&events, "subagent.finished");
    assert_eq!(fin[0]["status"], "budget", "{:#}", fin[0]);
    assert_eq!(fin[0]["result"], "Summary: dug a bit, ran out of budget.");
    // The child's tokens count against the parent: it stops too.
    assert_eq!(v["status"], "budget");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() >= 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_is_continued_by_task_id() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "draft", prompt: "Draft a plan", subagent_type: planner}}
  - tool_calls:
      - {name: task, arguments: {description: "refine", prompt: "Now add risks", subagent_type: planner, task_id: "{{capture:task_id: (\\S+)}}"}}
  - text: "Plan ready."
routes:
  - when: {system_contains: "You are planner,"}
    steps:
      - text: "Plan: step 1."
      - text: "Plan: step 1. Risks: none."
"#,
    )
    .await;
    h.write_agent("lead", "---\nname: lead\n---\nYou lead.");
    h.write_agent(
        "planner",
        "---\nname: planner\nmode: subagent\n---\nYou plan.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "lead", "plan"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    let child: Vec<_> = h
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.route == Some(0))
        .collect();
    assert_eq!(child.len(), 2);
    // The second child request continues the first conversation.
    let msgs = child[1].body["messages"].as_array().unwrap();
    let texts: Vec<&str> = msgs.iter().filter_map(|m| m["content"].as_str()).collect();
    assert!(
        texts.contains(&"Draft a plan")
            && texts.contains(&"Plan: step 1.")
            && texts.contains(&"Now add risks"),
        "{texts:?}"
    );
    let events = h.journal(v["session_id"].as_str().unwrap());
    let started = of_type(&events, "subagent.started");
    assert_eq!(started.len(), 2);
    assert_eq!(
        started[0]["child_session_id"], started[1]["child_session_id"],
        "the same child"
    );
    let last = h.mock.requests().last().unwrap().body.clone();
    let final_result = last["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(final_result.contains("Risks: none."), "{final_result}");
}
