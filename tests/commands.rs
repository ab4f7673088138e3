//! End-to-end: custom commands (markdown prompt templates). `deputy run --command` and `/NAME`
//! in chat fill `$ARGUMENTS` and `$1`…, include `@file`s (never a secret), choose the agent and
//! model; a template's `` !`…` `` runs in the sandbox only when the command is trusted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{Harness, write};

fn first_user(h: &Harness, i: usize) -> String {
    h.mock.requests()[i].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_fills_its_arguments_files_agent_and_shell() {
    let h = Harness::yaml("steps:\n  - text: fixed\n  - text: again\n").await;
    h.write_agent("fixer", "---\nname: fixer\n---\nYou fix issues.");
    write(&h.ws.join("notes.md"), "NOTES-CONTENT\n");
    write(&h.ws.join(".env"), "KEY=TOPSECRET\n");
    // The user's own command: trusted, so its shell runs (in the sandbox).
    write(
        &h.home.join(".claude/commands/fix.md"),
        "---\ndescription: Fix an issue\nargument-hint: [issue] [priority]\nagent: fixer\n---\nFix issue #$1 with priority $2. Notes: @notes.md @.env\nState: !`echo state-$((40+2)); touch ../escaped-marker 2>/dev/null; echo`\n",
    );
    let sandboxed = common::sandbox_available();
    let (code, v, stderr) = h
        .run_json(&["--command", "fix", "--", "42", "very high"])
        .await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    let user = first_user(&h, 0);
    assert!(
        user.starts_with("Fix issue #42 with priority very high."),
        "{user}"
    );
    assert!(
        user.contains("<file path=\"notes.md\">\nNOTES-CONTENT\n</file>"),
        "{user}"
    );
    assert!(!user.contains("TOPSECRET"), "{user}");
    let sys = h.mock.requests()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sys.contains("You fix issues."), "the command's agent runs");
    if sandboxed {
        assert!(user.contains("State: state-42"), "{user}");
        assert!(
            !h.dir.path().join("escaped-marker").exists(),
            "the command's shell ran outside the sandbox"
        );
    }
    assert!(
        v["warnings"].to_string().contains("@.env not included"),
        "{v:#}"
    );

    // The same command from chat: `/fix 7 low`.
    let out = h.chat_piped(&["--agent", "fixer"], b"/fix 7 low\n").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = first_user(&h, 1);
    assert!(
        user.starts_with("Fix issue #7 with priority low."),
        "{user}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_projects_command_runs_no_shell_until_trusted() {
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml("steps:\n  - text: one\n  - text: two\n").await;
    write(
        &h.ws.join(".claude/commands/setup.md"),
        "Set up. Status: !`touch planted.txt; echo RAN-IT`\n",
    );
    let (code, v, stderr) = h.run_json(&["--command", "setup"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert!(
        !h.ws.join("planted.txt").exists(),
        "an untrusted command's shell ran"
    );
    let user = first_user(&h, 0);
    assert!(
        user.contains("!`touch planted.txt; echo RAN-IT`") && !user.contains("\nRAN-IT"),
        "{user}"
    );
    assert!(v["warnings"].to_string().contains("not trusted"), "{v:#}");

    let out = h.run(&["trust"]).await;
    assert!(out.status.success());
    let (code, v, stderr) = h.run_json(&["--command", "setup"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert!(
        first_user(&h, 1).contains("Status: RAN-IT"),
        "{}",
        first_user(&h, 1)
    );
    assert!(h.ws.join("planted.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_listed_and_bad_ones_named() {
    let h = Harness::yaml("steps:\n  - text: x\n").await;
    write(
        &h.ws.join(".claude/commands/frontend/review.md"),
        "---\ndescription: Review a component\nargument-hint: [component]\n---\nReview $1\n",
    );
    write(
        &h.ws.join(".opencode/command/broken.md"),
        "---\ndescription: [oops\n---\nx\n",
    );
    let out = h.run(&["commands"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        text.contains("/frontend:review")
            && text.contains("[component]")
            && text.contains("Review a component"),
        "{text}"
    );
    assert!(err.contains(".opencode/command/broken.md:2"), "{err}");
    let out = h.run(&["run", "--command", "frontend:reviw"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `frontend:review`"));
    assert!(h.mock.requests().is_empty());
}
