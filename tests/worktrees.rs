//! End-to-end: `isolation: worktree`. Subagents (and `deputy run --worktree`) work in git
//! worktrees of their own, made and settled by the real binary with the real git, against
//! the strict mock; the main tree is never touched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;

use common::{Harness, of_type};

/// `git ARGS` in `dir` (the real git, as the user would run it); its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with `shared.txt` committed, as its owner would make it.
fn repo(ws: &Path) {
    git(ws, &["init", "-q", "-b", "main"]);
    std::fs::write(ws.join("shared.txt"), "base\n").unwrap();
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/lib.txt"), "lib\n").unwrap();
    std::fs::write(ws.join(".gitignore"), "agents/\n.deputy/\nlocal.env.json\n").unwrap();
    git(ws, &["add", "."]);
    git(
        ws,
        &[
            "-c",
            "user.name=owner",
            "-c",
            "user.email=owner@example.com",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    );
}

/// `git show REV:PATH`, or `None` when there is no such file.
fn show(ws: &Path, spec: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["show", spec])
        .current_dir(ws)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn branches(ws: &Path) -> Vec<String> {
    git(
        ws,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/deputy/",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn worktrees(ws: &Path) -> Vec<String> {
    git(ws, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(str::to_string)
        .collect()
}

const PARALLEL: &str = r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "alpha edits", prompt: "Rewrite shared.txt", subagent_type: alpha}}
      - {name: task, arguments: {description: "beta edits", prompt: "Rewrite shared.txt", subagent_type: beta}}
      - {name: task, arguments: {description: "idle looks", prompt: "Look only", subagent_type: idle, isolation: worktree}}
  - text: "All three done."
routes:
  - when: {system_contains: "You are alpha,"}
    steps:
      - tool_calls: [{name: write, arguments: {path: shared.txt, content: "alpha\n"}}]
      - tool_calls: [{name: bash, arguments: {command: "cat draft.txt local.env.json; git status --short; git rev-parse --abbrev-ref HEAD"}}]
      - {text: "Alpha rewrote shared.txt\n\nIt now says alpha.", delay_ms: 300}
  - when: {system_contains: "You are beta,"}
    steps:
      - tool_calls: [{name: bash, arguments: {command: "echo beta > shared.txt; echo new > src/beta-only.txt"}}]
      - {text: "Beta rewrote shared.txt", delay_ms: 300}
  - when: {system_contains: "You are idle,"}
    steps:
      - tool_calls: [{name: read, arguments: {path: shared.txt}}]
      - text: "Nothing to change."
"#;

fn agents(h: &Harness) {
    h.write_agent("lead", "---\nname: lead\nmode: primary\n---\nYou lead.");
    for name in ["alpha", "beta"] {
        h.write_agent(
            name,
            &format!(
                "---\nname: {name}\nmode: subagent\ndescription: edits\nisolation: worktree\n---\nYou edit."
            ),
        );
    }
    h.write_agent(
        "idle",
        "---\nname: idle\nmode: subagent\ndescription: looks\n---\nYou look.",
    );
}

/// Two subagents rewrite the same file at the same time, each in its own worktree: each
/// ends as a commit on its own branch (from the parent's uncommitted state), the main tree
/// is exactly as it was, and one that changed nothing leaves no worktree or branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_subagents_each_end_on_their_own_branch() {
    if !common::sandbox_available() {
        return;
    }
    for backend in common::backends() {
        let h = Harness::yaml(PARALLEL).await;
        agents(&h);
        repo(&h.ws);
        // Uncommitted work of the parent's: an untracked file the worktrees must see, and
        // an ignored one that `.worktreeinclude` brings in.
        std::fs::write(h.ws.join("draft.txt"), "draft-of-the-parent\n").unwrap();
        std::fs::write(h.ws.join("local.env.json"), "{\"included\": true}\n").unwrap();
        std::fs::write(h.ws.join(".worktreeinclude"), "local.env.json\n").unwrap();
        let status_before = git(&h.ws, &["status", "--porcelain"]);

        let out = h
            .cmd(&["run", "--output-format", "json", "--agent", "lead", "edit"])
            .env("DEPUTY_SANDBOX_BACKEND", backend)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{backend}: {e}: {stderr}"));
        assert_eq!(out.status.code(), Some(0), "{backend}: {stderr}\n{v:#}");
        h.assert_strict_ok();

        // The main tree: untouched.
        assert_eq!(
            std::fs::read_to_string(h.ws.join("shared.txt")).unwrap(),
            "base\n"
        );
        assert!(!h.ws.join("src/beta-only.txt").exists());
        assert_eq!(
            git(&h.ws, &["status", "--porcelain"]),
            status_before,
            "{backend}"
        );
        assert_eq!(
            git(&h.ws, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
            "main"
        );

        // Two branches, one per editing subagent; none for the idle one.
        let b = branches(&h.ws);
        assert_eq!(
            b.len(),
            2,
            "{backend}: {b:?}\n{:#?}\n{stderr}",
            h.tool_results()
        );
        let alpha = b.iter().find(|x| x.starts_with("deputy/alpha-")).unwrap();
        let beta = b.iter().find(|x| x.starts_with("deputy/beta-")).unwrap();
        assert_eq!(
            git(&h.ws, &["show", &format!("{alpha}:shared.txt")]),
            "alpha\n"
        );
        assert_eq!(
            git(&h.ws, &["show", &format!("{beta}:shared.txt")]),
            "beta\n"
        );
        let beta_child = of_type(
            &h.journal(v["session_id"].as_str().unwrap()),
            "subagent.started",
        )
        .iter()
        .find(|e| e["agent"] == "beta")
        .unwrap()["child_session_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            show(&h.ws, &format!("{beta}:src/beta-only.txt")).as_deref(),
            Some("new\n"),
            "{:#?}",
            h.journal(&beta_child)
        );
        // Each change is one commit, its message the subagent's answer, on top of a commit of
        // the parent's uncommitted state (the untracked draft is in it), on top of HEAD.
        assert_eq!(
            git(&h.ws, &["log", "-1", "--format=%s", alpha]).trim(),
            "Alpha rewrote shared.txt"
        );
        assert!(git(&h.ws, &["log", "-1", "--format=%b", alpha]).contains("It now says alpha."));
        let base = git(&h.ws, &["rev-parse", &format!("{alpha}~1")]);
        assert_eq!(base, git(&h.ws, &["rev-parse", &format!("{beta}~1")]));
        assert_eq!(
            git(&h.ws, &["show", &format!("{}:draft.txt", base.trim())]),
            "draft-of-the-parent\n"
        );
        assert_eq!(
            git(&h.ws, &["rev-parse", &format!("{alpha}~2")]),
            git(&h.ws, &["rev-parse", "main"])
        );
        // Only what the subagent changed is in its commit (not the included, ignored file).
        let files = git(
            &h.ws,
            &["diff", "--name-only", &format!("{alpha}~1"), alpha],
        );
        assert_eq!(files.trim(), "shared.txt", "{backend}");

        // In its worktree, the subagent saw the parent's draft and the included file, and
        // git worked (read-only) on its own branch.
        let alpha_child = of_type(
            &h.journal(v["session_id"].as_str().unwrap()),
            "subagent.started",
        )
        .iter()
        .find(|e| e["agent"] == "alpha")
        .unwrap()["child_session_id"]
            .as_str()
            .unwrap()
            .to_string();
        let bash_out = of_type(&h.journal(&alpha_child), "tool.completed")
            .iter()
            .find(|e| e["tool"] == "bash")
            .unwrap()["output"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            bash_out.contains("draft-of-the-parent")
                && bash_out.contains("\"included\": true")
                && bash_out.contains(" M shared.txt")
                && bash_out.contains(alpha.as_str()),
            "{backend}: {bash_out}"
        );

        // The lead was told where each change is.
        let results = h.tool_results();
        let told = results
            .iter()
            .find(|r| r.contains("Alpha rewrote"))
            .unwrap();
        assert!(
            told.contains(&format!("on branch {alpha}")) && told.contains("git merge"),
            "{told}"
        );
        let idle = results
            .iter()
            .find(|r| r.contains("Nothing to change."))
            .unwrap();
        assert!(idle.contains("no change"), "{idle}");

        // The worktrees with a change stay (a continued task works there) until pruned; the
        // idle one is gone.
        let wts = worktrees(&h.ws);
        assert_eq!(wts.len(), 3, "{backend}: {wts:?}");
        assert!(wts.iter().all(|w| !w.contains("/idle-")), "{wts:?}");
        let out = h.cmd(&["sessions", "prune"]).output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(worktrees(&h.ws).len(), 1, "{backend}");
        assert_eq!(
            branches(&h.ws).len(),
            2,
            "{backend}: a branch with a change stays"
        );
        assert_eq!(git(&h.ws, &["status", "--porcelain"]), status_before);
    }
}
