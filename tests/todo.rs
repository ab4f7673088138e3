//! End-to-end: the task list. `todowrite` (and Claude Code's `TodoWrite`) emits `todo.updated`,
//! the progress view shows it, the journal keeps it and `-c` restores it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{Harness, of_type};
use serde_json::Value;

const SCRIPT: &str = r#"steps:
  - tool_calls:
      - name: todowrite
        arguments:
          todos:
            - {content: "Read the code", status: completed}
            - {content: "Write the fix", status: in_progress, activeForm: "Writing the fix"}
            - {content: "Run the tests", status: pending, priority: high}
  - text: planned
routes:
  - when: {last_user_contains: "where are we"}
    # The mock counts the conversation's assistant turns: the first run's two come first.
    steps:
      - text: unused
      - text: unused
      - tool_calls:
          - {name: todoread, arguments: {}}
      - text: read it
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_list_is_an_event_is_shown_and_survives_a_resume() {
    let h = Harness::yaml(SCRIPT).await;
    let out = h
        .run(&[
            "run",
            "--output-format",
            "stream-json",
            "--verbose",
            "plan the work",
        ])
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
    let updated = of_type(&events, "todo.updated");
    assert_eq!(updated.len(), 1, "{events:#?}");
    let todos = updated[0]["todos"].as_array().unwrap();
    assert_eq!(todos.len(), 3);
    assert_eq!(todos[1]["status"], "in_progress");
    assert_eq!(todos[1]["active_form"], "Writing the fix");
    assert_eq!(todos[2]["priority"], "high");
    h.assert_strict_ok();
    let tools = h.offered(0);
    assert!(
        tools.contains(&"todowrite".to_string()) && tools.contains(&"todoread".to_string()),
        "{tools:?}"
    );

    // The text progress view draws the list.
    let h2 = Harness::yaml(SCRIPT).await;
    let out = h2.run(&["run", "--verbose", "plan the work"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tasks 1/3")
            && err.contains("▸ Writing the fix")
            && err.contains("☐ Run the tests"),
        "{err}"
    );

    // Continued later: the list is the journal's.
    let (code, v, err) = h.run_json(&["-c", "where are we"]).await;
    assert_eq!(code, Some(0), "{v:#}\n{err}");
    let result = h.tool_results().pop().unwrap();
    assert_eq!(
        result,
        "1 of 3 done:\n[x] Read the code\n[~] Write the fix\n[ ] Run the tests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_agent_naming_todowrite_gets_it() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: todowrite, arguments: {todos: [{content: a, status: pending, activeForm: A}]}}\n  - text: ok\n",
    )
    .await;
    h.write_agent(
        "planner",
        "---\nname: planner\ndescription: plans\ntools: Read, TodoWrite\n---\nPlan.\n",
    );
    let (code, v, err) = h.run_json(&["--agent", "planner", "plan"]).await;
    assert_eq!(code, Some(0), "{v:#}\n{err}");
    assert_eq!(h.offered(0), vec!["read", "todowrite"]);
    let journal = h.journal(v["session_id"].as_str().unwrap());
    assert_eq!(of_type(&journal, "todo.updated").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_shows_the_list_on_todos() {
    let h = Harness::yaml(SCRIPT).await;
    let out = h.chat_piped(&[], b"plan the work\n/todos\n").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 of 3 done:\n[x] Read the code\n[~] Write the fix\n[ ] Run the tests"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
