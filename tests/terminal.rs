//! Model, tool and workspace text cannot drive the user's terminal (issue 25): escape
//! sequences in an answer (OSC 52 clipboard writes, window titles), a todo item, a command and
//! a command's output reach a person as visible characters, judged by the bytes deputy writes;
//! the JSON output keeps the text as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, sandbox_available};

const SCRIPT: &str = r#"steps:
  - tool_calls:
      - {name: todowrite, arguments: {todos: [{content: "fix \e]0;todo-title\a it", status: pending}]}}
  - tool_calls:
      - {name: bash, arguments: {command: "echo '\e]52;c;Y2xpcA==\a'; printf '\\033[8mhidden\\033[0m\\r'"}}
  - text: "done \e]52;c;cHduZWQ=\a and \e]0;answer-title\a \u202Eevil"
"#;

fn has_escape(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| matches!(b, 0x1b | 0x07 | b'\r'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_reach_people_as_text_and_json_unchanged() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(SCRIPT).await;
    // Progress lines and the streamed answer on stderr (a pipe, so deputy adds no colour of
    // its own: any escape byte would be the model's).
    let out = h.run(&["run", "--verbose", "go"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !has_escape(&out.stderr),
        "raw control bytes reached the terminal: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("␛]52;c;cHduZWQ=␇"), "shown as text: {err}");
    assert!(err.contains("todo-title"), "{err}");
    assert!(!err.contains('\u{202e}'), "{err}");

    // `sessions show` prints the journal for people.
    let id = h.only_session();
    let show = h.run(&["sessions", "show", &id]).await;
    assert!(
        !has_escape(&show.stdout),
        "{:?}",
        String::from_utf8_lossy(&show.stdout)
    );
    assert!(String::from_utf8_lossy(&show.stdout).contains("␛]0;answer-title␇"));

    // JSON carries the text unchanged: it is data for programs.
    let h2 = Harness::yaml(SCRIPT).await;
    let (code, v, _) = h2.run_json(&["go"]).await;
    assert_eq!(code, Some(0));
    assert!(
        v["result"]
            .as_str()
            .unwrap()
            .contains("\u{1b}]52;c;cHduZWQ=\u{7}"),
        "{v}"
    );
}
