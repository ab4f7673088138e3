//! `deputy sessions list | show`.

use std::fmt::Write as _;

use deputy_runtime::journal;
use deputy_runtime::{EventKind, Status};

use crate::cli::SessionsCommand;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{out, out_json};
use crate::render::{human_ms, human_tokens, tool_result_note, tool_subject};

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
                        ..
                    } => {
                        format!(
                            "{} {agent} · {model} · {workspace}",
                            if *resumed { "resumed" } else { "started" }
                        )
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
            out(&t)?;
        }
    }
    Ok(Exit::Ok)
}
