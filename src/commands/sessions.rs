//! `deputy sessions list | show`.

use std::fmt::Write as _;

use deputy_runtime::journal;
use deputy_runtime::{EventKind, Status};

use crate::cli::SessionsCommand;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{out, out_json};
use crate::render::{human_ms, human_tokens, tool_result_note, tool_subject};

/// Settle and remove the worktrees of this workspace's repository that no session works in.
fn prune_worktrees(ctx: &crate::context::Context, dry_run: bool) -> CliResult<()> {
    use deputy_runtime::worktree::Settled;
    if deputy_runtime::worktree::git::find_repo(&ctx.workspace).is_err() {
        return Ok(());
    }
    let reports = deputy_runtime::worktree::prune(&ctx.workspace, dry_run)
        .map_err(|e| CliError::failure(anyhow::anyhow!("pruning worktrees: {e}")))?;
    for r in &reports {
        let what = match (&r.settled, r.live) {
            (_, true) => "in use by a running session; left alone".to_string(),
            (None, false) => "would be settled and removed".to_string(),
            (Some(Settled::Unchanged), _) => "removed (no change)".to_string(),
            (Some(Settled::Committed { branch, commit, .. }), _) => format!(
                "removed; its change is commit {} on branch {branch}",
                commit.get(..12).unwrap_or(commit)
            ),
        };
        eprintln!("worktree {} (session {}): {what}", r.name, r.session_id);
    }
    Ok(())
}

pub fn run(ctx: &crate::context::Context, cmd: SessionsCommand) -> CliResult {
    let state = journal::state_dir().ok_or_else(|| {
        CliError::usage(anyhow::anyhow!(
            "no state directory: set DEPUTY_HOME or HOME"
        ))
    })?;
    match cmd {
        SessionsCommand::List { json, all } => {
            // This workspace's top-level sessions; --all: every workspace's, subagents too.
            let list: Vec<_> = journal::list_sessions(&state)
                .into_iter()
                .filter(|s| {
                    all || (s.parent_session_id.is_none()
                        && journal::in_workspace(s, &ctx.workspace))
                })
                .collect();
            if json {
                out_json(&list)?;
                return Ok(Exit::Ok);
            }
            if list.is_empty() {
                eprintln!(
                    "no sessions yet{} (journals in {})",
                    if all {
                        String::new()
                    } else {
                        format!(
                            " in {}; --all lists every workspace's",
                            ctx.workspace.display()
                        )
                    },
                    state.join("sessions").display()
                );
                return Ok(Exit::Ok);
            }
            let mut t = String::new();
            let _ = writeln!(t, "{:<22}  {:<10}  {:<18}  PROMPT", "ID", "STATUS", "AGENT");
            for s in list {
                let status = s.status.map_or("unfinished", Status::as_str);
                let prompt: String = s
                    .prompt
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(60)
                    .collect();
                let _ = writeln!(t, "{:<22}  {:<10}  {:<18}  {prompt}", s.id, status, s.agent);
            }
            out(&t)?;
        }
        SessionsCommand::Prune {
            older_than,
            dry_run,
        } => {
            prune_worktrees(ctx, dry_run)?;
            if let Some(older_than) = older_than {
                let gone = journal::prune(&state, older_than, dry_run);
                for id in &gone {
                    crate::output::outln(id)?;
                }
                eprintln!(
                    "{} {} session journal(s) older than {}",
                    if dry_run { "would delete" } else { "deleted" },
                    gone.len(),
                    human_ms(older_than.as_millis() as u64)
                );
            }
        }
        SessionsCommand::Show { id, json } => {
            let id = journal::find_session(&state, &id, Some(&ctx.workspace))
                .map_err(CliError::usage)?;
            let path = journal::session_dir(&state, &id).join("events.jsonl");
            if json {
                let text = std::fs::read_to_string(&path)?;
                out(&text)?;
                return Ok(Exit::Ok);
            }
            let (events, warnings) = journal::read_events(&path).map_err(CliError::usage)?;
            let mut t = String::new();
            let mut inputs = std::collections::HashMap::new();
            for e in &events {
                let e = &*crate::render::for_terminal(e);
                let indent = if e.session_id == id { "" } else { "    " };
                let line = match &e.kind {
                    EventKind::SessionStarted {
                        agent,
                        model,
                        workspace,
                        resumed,
                        worktree,
                        ..
                    } => {
                        let mut line = format!(
                            "{} {agent} · {model} · {workspace}",
                            if *resumed { "resumed" } else { "started" }
                        );
                        if let Some(w) = worktree {
                            line.push_str(&format!(
                                "\nworktree {} on branch {}",
                                w.path.display(),
                                w.branch
                            ));
                        }
                        line
                    }
                    EventKind::UserMessage { text } => format!("user: {}", text.trim()),
                    EventKind::MessageCompleted { text, .. } if !text.trim().is_empty() => {
                        format!("assistant: {}", text.trim())
                    }
                    EventKind::ToolRequested { call_id, input, .. } => {
                        inputs.insert(call_id.clone(), input.clone());
                        continue;
                    }
                    EventKind::ToolDecided {
                        tool,
                        allowed: false,
                        reason,
                        ..
                    } => {
                        format!("✗ {tool} denied: {}", reason.clone().unwrap_or_default())
                    }
                    EventKind::ToolCompleted {
                        call_id,
                        tool,
                        is_error,
                        output,
                        metadata,
                        duration_ms,
                    } => {
                        let input = inputs.remove(call_id).unwrap_or_default();
                        format!(
                            "{} {tool} {} ({})",
                            if *is_error { "✗" } else { "●" },
                            tool_subject(tool, &input),
                            tool_result_note(tool, *is_error, output, metadata, *duration_ms)
                        )
                    }
                    EventKind::Warning { message } => format!("⚠ {message}"),
                    EventKind::SubagentStarted {
                        agent,
                        description,
                        child_session_id,
                        ..
                    } => {
                        format!("↳ {agent} ({child_session_id}): {description}")
                    }
                    EventKind::SessionFinished {
                        status,
                        result,
                        usage,
                        cost_usd,
                        duration_ms,
                        num_turns,
                        ..
                    } => format!(
                        "finished: {} · {num_turns} turns · {} tokens{} · {}\n{}",
                        status.as_str(),
                        human_tokens(usage.total()),
                        cost_usd.map(|c| format!(" · ${c:.4}")).unwrap_or_default(),
                        human_ms(*duration_ms),
                        result.trim()
                    ),
                    _ => continue,
                };
                for l in line.lines() {
                    let _ = writeln!(t, "{indent}{l}");
                }
            }
            for w in warnings {
                let _ = writeln!(t, "⚠ {w}");
            }
            // Worktrees this session (or its subagents) left with no live session in them.
            let left: Vec<_> = deputy_runtime::worktree::left_behind(&ctx.workspace)
                .into_iter()
                .filter(|r| {
                    r.session_id == id || r.parent_session_id.as_deref() == Some(id.as_str())
                })
                .collect();
            for r in left {
                let _ = writeln!(
                    t,
                    "worktree kept: {} (branch {}, session {}); `deputy sessions prune` commits what it holds and removes it",
                    r.path.display(),
                    r.branch,
                    r.session_id
                );
            }
            out(&t)?;
        }
    }
    Ok(Exit::Ok)
}
