//! End-to-end: `isolation: worktree`. Subagents (and `deputy run --worktree`) work in git
//! worktrees of their own, made and settled by the real binary with the real git, against
//! the strict mock; the main tree is never touched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;

use common::{Harness, git, of_type};

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

/// `deputy run --agent lead edit` on `backend`: it must complete, every request within the
/// strict mock's rule; its JSON result and stderr.
async fn lead_edits(h: &Harness, backend: &str) -> (serde_json::Value, String) {
    let out = h
        .cmd(&["run", "--output-format", "json", "--agent", "lead", "edit"])
        .env("DEPUTY_SANDBOX_BACKEND", backend)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{backend}: {e}: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{backend}: {stderr}\n{v:#}");
    h.assert_strict_ok();
    (v, stderr)
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

        let (v, stderr) = lead_edits(&h, backend).await;

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

/// Make `ws`'s repository hostile, as a cloned tarball's `.git` could be: every way its
/// config (and what it includes) or hooks make git run a program, each touching its own
/// marker in `marks`.
fn plant(ws: &Path, marks: &Path) {
    let touch = |what: &str| format!("touch {}/{what}", marks.display());
    let git_dir = ws.join(".git");
    for (dir, name) in [
        (git_dir.join("hooks"), "hook"),
        (ws.join(".githooks"), "hookspath"),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        for hook in [
            "post-checkout",
            "pre-commit",
            "post-commit",
            "post-index-change",
            "reference-transaction",
        ] {
            let p = dir.join(hook);
            std::fs::write(
                &p,
                format!("#!/bin/sh\n{}\n", touch(&format!("{name}-{hook}"))),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    std::fs::write(
        git_dir.join("evil.cfg"),
        format!(
            "[filter \"inc\"]\n\tclean = {}\n\tsmudge = {}\n",
            touch("included-clean"),
            touch("included-smudge")
        ),
    )
    .unwrap();
    let mut cfg = std::fs::read_to_string(git_dir.join("config")).unwrap();
    cfg.push_str(&format!(
        r#"[core]
	hooksPath = .githooks
	fsmonitor = "{fsmonitor}"
	pager = "{pager}"
	editor = "{editor}"
[filter "evil"]
	clean = "{clean}"
	smudge = "{smudge}"
	required = true
[filter "proc"]
	process = "{process}"
[diff]
	external = "{external}"
[diff "x"]
	textconv = "{textconv}"
	command = "{diffcmd}"
[commit]
	gpgSign = true
[gpg]
	program = "{gpg}"
[hook "cfg"]
	command = "{cfghook}"
	event = post-checkout
	event = pre-commit
[submodule]
	recurse = true
[include]
	path = evil.cfg
"#,
        fsmonitor = touch("fsmonitor"),
        pager = touch("pager"),
        editor = touch("editor"),
        clean = touch("clean"),
        smudge = touch("smudge"),
        process = touch("process"),
        external = touch("external"),
        textconv = touch("textconv"),
        diffcmd = touch("diffcmd"),
        gpg = touch("gpg"),
        cfghook = touch("config-hook"),
    ));
    std::fs::write(git_dir.join("config"), cfg).unwrap();
    std::fs::write(
        ws.join(".gitattributes"),
        "*.txt filter=evil diff=x\n*.md filter=inc\n*.rs filter=proc\n",
    )
    .unwrap();
}

/// A repository whose config and hooks name programs (filters, fsmonitor, hooks by path and
/// by config, diff drivers, signing, included config): deputy makes, settles and prunes
/// worktrees in it and runs none of them. Inside the sandbox, the subagent can neither write
/// the main repository's git directory nor point its worktree's `.git` file elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_repository_runs_nothing_and_git_stays_out_of_reach() {
    if !common::sandbox_available() {
        return;
    }
    for backend in common::backends() {
        let marks = tempfile::tempdir().unwrap();
        let h = Harness::yaml(
            r#"
steps:
  - tool_calls: [{name: task, arguments: {description: "edit", prompt: "Edit", subagent_type: alpha}}]
  - text: "done"
routes:
  - when: {system_contains: "You are alpha,"}
    steps:
      - tool_calls: [{name: write, arguments: {path: src/lib.txt, content: "changed\n"}}]
      - tool_calls:
          - {name: bash, arguments: {command: "G=$(sed 's/gitdir: //' .git); echo '[core] fsmonitor = touch /tmp/x' >> $G/../../config; echo pwned >> $G/HEAD; echo 'gitdir: /tmp' > .git; git config core.fsmonitor 'touch /tmp/y'; echo tried"}}
          - {name: write, arguments: {path: .git, content: "gitdir: /tmp\n"}}
      - text: "Edited src/lib.txt"
"#,
        )
        .await;
        agents(&h);
        repo(&h.ws);
        plant(&h.ws, marks.path());
        std::fs::write(h.ws.join("notes.md"), "uncommitted, filtered by inc\n").unwrap();
        std::fs::write(h.ws.join("main.rs"), "// uncommitted, filtered by proc\n").unwrap();
        let config_before = std::fs::read(h.ws.join(".git/config")).unwrap();

        lead_edits(&h, backend).await;
        let b = branches(&h.ws);
        assert_eq!(b.len(), 1, "{backend}: {b:?} {:#?}", h.tool_results());
        assert_eq!(
            show(&h.ws, &format!("{}:src/lib.txt", b[0])).as_deref(),
            Some("changed\n"),
            "{backend}"
        );
        // The uncommitted files reached the worktree's base as they are on disk.
        assert_eq!(
            show(&h.ws, &format!("{}~1:notes.md", b[0])).as_deref(),
            Some("uncommitted, filtered by inc\n")
        );
        // Nothing in the sandbox reached git's own files.
        assert_eq!(
            std::fs::read(h.ws.join(".git/config")).unwrap(),
            config_before,
            "{backend}"
        );
        let wt = worktrees(&h.ws)
            .into_iter()
            .find(|w| w.contains("/alpha-"))
            .unwrap();
        let dot_git = std::fs::read_to_string(Path::new(&wt).join(".git")).unwrap();
        assert!(
            dot_git.starts_with("gitdir: ") && dot_git.contains("/.git/worktrees/"),
            "{dot_git}"
        );
        let admin = dot_git.trim().strip_prefix("gitdir: ").unwrap();
        let head = std::fs::read_to_string(Path::new(admin).join("HEAD")).unwrap();
        assert!(!head.contains("pwned"), "{backend}: {head}");
        // (The attempts were made, and refused.)
        let tried = h
            .tool_results()
            .into_iter()
            .chain(
                h.mock
                    .requests()
                    .iter()
                    .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
                    .filter(|m| m["role"] == "tool")
                    .map(|m| m["content"].as_str().unwrap_or("").to_string()),
            )
            .filter(|t| t.contains("tried") || t.contains(".git"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(tried.contains("tried"), "{backend}: {tried}");

        // And pruning, which settles with the same git, runs nothing either.
        let out = h.cmd(&["sessions", "prune"]).output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(worktrees(&h.ws).len(), 1);
        let ran: Vec<_> = std::fs::read_dir(marks.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(ran.is_empty(), "{backend}: the repository ran {ran:?}");

        // The same repository, used by the real git as its owner would, does run them: the
        // planted programs are live.
        let _ = std::process::Command::new("git")
            .args(["add", "-A"])
            .current_dir(&h.ws)
            .output()
            .unwrap();
        let ran = std::fs::read_dir(marks.path()).unwrap().count();
        assert!(ran > 0, "the planted config ran nothing even for plain git");
    }
}

/// kill -9 while a worktree subagent is mid-way: `sessions show` names the worktree left
/// behind, and `sessions prune` commits what it held on its branch and removes it, leaving
/// the repository clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_way_then_prune_leaves_a_clean_repository() {
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls: [{name: task, arguments: {description: "edit", prompt: "Edit", subagent_type: alpha}}]
  - text: "done"
routes:
  - when: {system_contains: "You are alpha,"}
    steps:
      - tool_calls: [{name: write, arguments: {path: src/lib.txt, content: "partial\n"}}]
      - tool_calls: [{name: bash, arguments: {command: "sleep 60"}}]
      - text: "never reached"
"#,
    )
    .await;
    agents(&h);
    repo(&h.ws);
    let status_before = git(&h.ws, &["status", "--porcelain"]);
    let mut child = h
        .cmd(&["run", "--output-format", "json", "--agent", "lead", "edit"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the subagent's write is in its worktree and its command runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let written = loop {
        let found = std::fs::read_dir(h.ws.join(".deputy/worktrees"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("src/lib.txt"))
            .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t == "partial\n"));
        if let Some(p) = found
            && h.mock.requests().len() >= 3
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subagent never wrote"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pid = child.id().unwrap() as i32;
    // SAFETY: a plain kill(2) of the child this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait().await;
    assert!(written.exists(), "the worktree is there after the kill");
    assert_eq!(worktrees(&h.ws).len(), 2);

    let lead = h
        .journal_ids()
        .into_iter()
        .find(|id| h.journal(id)[0]["parent_session_id"].is_null())
        .unwrap();
    let out = h.cmd(&["sessions", "show", &lead]).output().await.unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("worktree kept") && shown.contains("deputy sessions prune"),
        "{shown}"
    );

    let out = h.cmd(&["sessions", "prune"]).output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("its change is commit"), "{said}");
    // Clean: one worktree (the main one), nothing in .deputy/worktrees but its .gitignore
    // and the (empty) lock that serialises `git worktree`, the main tree as it was, and the
    // partial work kept as a commit on the branch.
    assert_eq!(worktrees(&h.ws).len(), 1);
    let mut left: Vec<_> = std::fs::read_dir(h.ws.join(".deputy/worktrees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [".gitignore", ".lock"]);
    assert_eq!(git(&h.ws, &["status", "--porcelain"]), status_before);
    let b = branches(&h.ws);
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        show(&h.ws, &format!("{}:src/lib.txt", b[0])).as_deref(),
        Some("partial\n")
    );
    assert!(git(&h.ws, &["log", "-1", "--format=%s", &b[0]]).contains("did not finish"));
    // A second prune finds nothing.
    let out = h.cmd(&["sessions", "prune"]).output().await.unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).trim().is_empty());
}

/// `deputy run --worktree NAME`: the top-level session works on branch deputy/NAME; the JSON
/// result says where its change is. Outside a repository, a clear usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_worktree_commits_on_its_branch() {
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        "steps:\n  - tool_calls: [{name: write, arguments: {path: shared.txt, content: \"run\\n\"}}]\n  - text: \"Changed shared.txt\"\n  - tool_calls: [{name: bash, arguments: {command: \"echo more >> shared.txt; git log --oneline -1\"}}]\n  - text: \"Added more\"\n",
    )
    .await;
    let out = h
        .cmd(&["run", "--worktree=fix-1", "go"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--worktree") && err.contains("not in a git repository"),
        "{err}"
    );

    repo(&h.ws);
    let (code, v, stderr) = h.run_json(&["--worktree=fix-1", "go"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    h.assert_strict_ok();
    assert_eq!(v["worktree"]["outcome"], "committed", "{v:#}");
    assert_eq!(v["worktree"]["branch"], "deputy/fix-1");
    assert_eq!(v["worktree"]["files_changed"], 1);
    assert_eq!(
        std::fs::read_to_string(h.ws.join("shared.txt")).unwrap(),
        "base\n"
    );
    assert_eq!(
        show(&h.ws, "deputy/fix-1:shared.txt").as_deref(),
        Some("run\n")
    );
    let events = h.journal(v["session_id"].as_str().unwrap());
    assert_eq!(events[0]["worktree"]["branch"], "deputy/fix-1");
    assert!(
        events[0]["system_prompt"]
            .as_str()
            .unwrap()
            .contains("on branch deputy/fix-1")
    );
    // It is this workspace's session: `last` finds it, and shows where its worktree is.
    let out = h.cmd(&["sessions", "show", "last"]).output().await.unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("on branch deputy/fix-1") && shown.contains("worktree kept"),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Resumed, it goes on in the same worktree (git works there) and commits there again.
    let id = v["session_id"].as_str().unwrap().to_string();
    let out = h
        .cmd(&["resume", &id, "--output-format", "json", "add more"])
        .output()
        .await
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["status"], "completed", "{r:#}");
    assert_eq!(r["worktree"]["branch"], "deputy/fix-1", "{r:#}");
    assert_eq!(
        show(&h.ws, "deputy/fix-1:shared.txt").as_deref(),
        Some("run\nmore\n")
    );
    assert_eq!(
        git(&h.ws, &["log", "-1", "--format=%s", "deputy/fix-1"]).trim(),
        "Added more"
    );
    assert_eq!(
        std::fs::read_to_string(h.ws.join("shared.txt")).unwrap(),
        "base\n"
    );
    let bash = of_type(&h.journal(&id), "tool.completed")
        .into_iter()
        .find(|e| e["tool"] == "bash")
        .unwrap()["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        bash.contains("Changed shared.txt"),
        "git log in the worktree: {bash}"
    );
    // Pruned, it cannot be resumed there; the message says where its work is.
    let out = h.cmd(&["sessions", "prune"]).output().await.unwrap();
    assert!(out.status.success());
    let out = h.cmd(&["resume", &id, "again"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("its work is on branch deputy/fix-1"),
        "{said}"
    );
    // The same name again: refused, naming what to do.
    let out = h
        .cmd(&["run", "--worktree=fix-1", "go"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
}

/// A workspace that brings `.deputy` (or `.deputy/worktrees`) as a link elsewhere: deputy,
/// which writes there outside the sandbox, refuses to put a worktree through it — nothing
/// appears at the link's target, by a subagent or by `run --worktree`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_link_never_takes_a_worktree_elsewhere() {
    if !common::sandbox_available() {
        return;
    }
    for planted in [".deputy", ".deputy/worktrees"] {
        let h = Harness::yaml(PARALLEL).await;
        agents(&h);
        repo(&h.ws);
        let elsewhere = h.dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let link = h.ws.join(planted);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();

        let (code, v, stderr) = h.run_json(&["--agent", "lead", "edit"]).await;
        assert_eq!(code, Some(0), "{planted}: {stderr}\n{v:#}");
        h.assert_strict_ok();
        let results = h.tool_results();
        let refused = results.iter().filter(|r| r.contains("a link?")).count();
        assert_eq!(refused, 3, "{planted}: {results:#?}");

        let out = h.cmd(&["run", "--worktree", "go"]).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{planted}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("a link?"));

        let there: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
        assert!(there.is_empty(), "{planted}: {there:?}");
        assert!(branches(&h.ws).is_empty());
        assert_eq!(worktrees(&h.ws).len(), 1);
    }
}

/// A kept worktree whose `.git` file was made to lead into the main repository: prune settles
/// it without ever adding from the main tree (the user's index stays as it was), removes it,
/// and keeps the branch with what was committed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_adds_through_a_redirected_worktree() {
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        "steps:\n  - tool_calls: [{name: write, arguments: {path: shared.txt, content: \"run\\n\"}}]\n  - text: \"Changed shared.txt\"\n",
    )
    .await;
    repo(&h.ws);
    let (code, v, stderr) = h.run_json(&["--worktree=redir", "go"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let commit = v["worktree"]["commit"].as_str().unwrap().to_string();
    let wt = h.ws.join(".deputy/worktrees/redir");
    std::fs::write(
        wt.join(".git"),
        format!("gitdir: {}\n", h.ws.join(".git").display()),
    )
    .unwrap();
    std::fs::write(h.ws.join("untracked-in-main.txt"), "mine\n").unwrap();
    let index_before = std::fs::read(h.ws.join(".git/index")).unwrap();

    let out = h.cmd(&["sessions", "prune"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(h.ws.join(".git/index")).unwrap(),
        index_before
    );
    assert_eq!(git(&h.ws, &["diff", "--cached", "--name-only"]), "");
    assert_eq!(git(&h.ws, &["rev-parse", "deputy/redir"]).trim(), commit);
    assert!(!wt.exists());
}
