//! What a worktree session's work becomes: the base it starts from (a snapshot of the user's
//! uncommitted state), the commits on its branch, and its removal at the end.

use super::{Git, Record, Settled, WorktreeError, io, left, serial};

/// Commit the state of `main`'s work tree, uncommitted and untracked files included, without
/// touching its index; the commit (or `HEAD` when nothing is uncommitted).
pub(super) fn snapshot(main: &Git, name: &str) -> Result<String, WorktreeError> {
    let head = main
        .value(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        .ok();
    // In the repository's own git directory (the user's), not a shared /tmp.
    let index = main.git_dir().join(format!("deputy-index-{name}"));
    let _ = std::fs::remove_file(&index);
    let real_index = main.git_dir().join("index");
    if real_index.is_file() {
        // Its stat cache spares re-reading every file.
        std::fs::copy(&real_index, &index).map_err(io(&index))?;
    }
    let env = [("GIT_INDEX_FILE", index.as_os_str())];
    let made = (|| {
        main.output_with(
            // `.deputy/worktrees` ignores itself (its own `.gitignore`).
            &["add", "-A"],
            &env,
            None,
        )?;
        main.output_with(&["write-tree"], &env, None)
            .map(|s| s.trim().to_string())
    })();
    let _ = std::fs::remove_file(&index);
    let tree = made?;
    if let Some(h) = &head
        && main.value(&["rev-parse", &format!("{h}^{{tree}}")])? == tree
    {
        return Ok(h.clone());
    }
    let msg = "deputy: the uncommitted state the worktree was made from\n";
    // Dated as `HEAD` is: the same state always makes the same commit, so worktrees made
    // from it at once (parallel subagents) share their base.
    let when = match &head {
        Some(h) => main.value(&["show", "-s", "--format=%ct", h])?,
        None => "0".to_string(),
    };
    let date = std::ffi::OsString::from(format!("@{when} +0000"));
    commit(main, &tree, head.as_deref(), msg, Some(&date))
}

/// `git commit-tree`: the user's identity when git knows it, else deputy's; `date` for both
/// dates, else now.
fn commit(
    git: &Git,
    tree: &str,
    parent: Option<&str>,
    message: &str,
    date: Option<&std::ffi::OsStr>,
) -> Result<String, WorktreeError> {
    let mut args = vec!["commit-tree", "--no-gpg-sign", tree];
    if let Some(p) = parent {
        args.extend(["-p", p]);
    }
    args.extend(["-F", "-"]);
    let mut env: Vec<(&str, &std::ffi::OsStr)> = Vec::new();
    if let Some(d) = date {
        env.push(("GIT_AUTHOR_DATE", d));
        env.push(("GIT_COMMITTER_DATE", d));
    }
    let known = |k: &str| git.value(&["config", k]).is_ok_and(|v| !v.is_empty());
    if !(known("user.name") && known("user.email")) {
        for (k, v) in [
            ("GIT_AUTHOR_NAME", "deputy"),
            ("GIT_AUTHOR_EMAIL", "deputy@localhost"),
            ("GIT_COMMITTER_NAME", "deputy"),
            ("GIT_COMMITTER_EMAIL", "deputy@localhost"),
        ] {
            env.push((k, std::ffi::OsStr::new(v)));
        }
    }
    Ok(git
        .output_with(&args, &env, Some(message.as_bytes()))?
        .trim()
        .to_string())
}

/// The commit message for a session's change: its answer's first line as the subject.
fn commit_message(record: &Record, answer: &str) -> String {
    let subject: String = answer
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .trim_start_matches('#')
        .trim()
        .chars()
        .take(72)
        .collect();
    let subject = if subject.is_empty() {
        format!("deputy: {}'s change", record.agent)
    } else {
        subject
    };
    let body: String = answer.trim().chars().take(8_000).collect();
    format!(
        "{subject}\n\n{body}\n\nMade by deputy agent {} in session {}.\n",
        record.agent, record.session_id
    )
}

pub(super) fn settle(
    main: &Git,
    git: Option<&Git>,
    record: &Record,
    answer: &str,
) -> Result<Settled, WorktreeError> {
    let s = commit_change(main, git, record, answer)?;
    if s == Settled::Unchanged {
        remove(main, record, true)?;
    }
    Ok(s)
}

/// Commit the worktree's change, if any, on its branch; where the branch is now. `git` is the
/// worktree's own (never the main repository's: its index is the user's); without one,
/// nothing is added.
pub(super) fn commit_change(
    main: &Git,
    git: Option<&Git>,
    record: &Record,
    answer: &str,
) -> Result<Settled, WorktreeError> {
    let branch_ref = format!("refs/heads/{}", record.branch);
    let tip = main
        .value(&["rev-parse", "--verify", "--quiet", &branch_ref])
        .ok();
    let mut commit_id = tip.clone();
    if let Some(git) = git.filter(|_| record.path.join(".git").is_file()) {
        git.output(&["add", "-A"])?;
        let tree = git.value(&["write-tree"])?;
        let head = git.value(&["rev-parse", "HEAD"])?;
        if git.value(&["rev-parse", "HEAD^{tree}"])? != tree {
            let c = commit(
                git,
                &tree,
                Some(&head),
                &commit_message(record, answer),
                None,
            )?;
            main.output(&["update-ref", &branch_ref, &c, &head])?;
            commit_id = Some(c);
        }
    }
    match commit_id {
        Some(c) if c != record.base => {
            let stat = main.output(&[
                "diff-tree",
                "-r",
                "--stat=100",
                "--no-ext-diff",
                "--no-textconv",
                &record.base,
                &c,
            ])?;
            let files_changed = main
                .output(&[
                    "diff-tree",
                    "-r",
                    "--name-only",
                    "--no-ext-diff",
                    &record.base,
                    &c,
                ])?
                .lines()
                .filter(|l| !l.is_empty())
                .count();
            Ok(Settled::Committed {
                branch: record.branch.clone(),
                commit: c,
                base: record.base.clone(),
                stat,
                files_changed,
                path: record.path.clone(),
            })
        }
        _ => Ok(Settled::Unchanged),
    }
}

/// Remove the worktree directory and its record, and the branch too when `branch`.
pub(super) fn remove(main: &Git, record: &Record, branch: bool) -> Result<(), WorktreeError> {
    let dir = record.path.parent().unwrap_or(&record.path);
    if record.path.exists() {
        let p = record.path.display().to_string();
        if serial::git_worktree(main, dir, &["remove", "--force", "--force", &p]).is_err() {
            std::fs::remove_dir_all(&record.path).map_err(io(&record.path))?;
        }
    }
    serial::git_worktree(main, dir, &["prune"])?;
    if branch {
        let branch_ref = format!("refs/heads/{}", record.branch);
        if main
            .value(&["rev-parse", "--verify", "--quiet", &branch_ref])
            .is_ok()
        {
            main.output(&["update-ref", "-d", &branch_ref])?;
        }
    }
    left::remove_record(record)
}
