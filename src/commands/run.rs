//! `deputy run` and `deputy resume`: headless sessions.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use deputy_runtime::{Event, Outcome, Session, Status};
use serde_json::json;

use crate::cli::{OutputFormat, ResumeArgs, RunArgs, SessionArgs};
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{out_json, outln};
use crate::render::{Progress, Style};
use crate::setup;
use deputy_runtime::worktree::{Plan, Settled, Worktree};

/// The exit code for a status (DESIGN.md).
pub fn exit_for(status: Status) -> Exit {
    match status {
        Status::Completed => Exit::Ok,
        Status::MaxSteps | Status::Timeout | Status::Budget => Exit::Limit,
        Status::Cancelled => Exit::Cancelled,
        Status::Denied | Status::Error => Exit::Failure,
    }
}

pub fn run(ctx: &Context, args: RunArgs) -> CliResult {
    let format = args.output_format;
    json_on_error(format, run_inner(ctx, args))
}

fn run_inner(ctx: &Context, args: RunArgs) -> CliResult {
    if args.continue_last {
        let resume = ResumeArgs {
            id: "last".into(),
            prompt: args.prompt,
            output_format: args.output_format,
            quiet: args.quiet,
            verbose: args.verbose,
            session: args.session,
        };
        return resume_inner(ctx, resume);
    }
    // A custom command chooses the agent and model the user did not.
    let command = match &args.command {
        Some(name) => Some(setup::custom_command(ctx, name)?),
        None => None,
    };
    let agent_name = args
        .agent
        .clone()
        .or_else(|| command.as_ref().and_then(|c| c.command.agent.clone()));
    let agent = setup::resolve_agent(ctx, agent_name.as_deref())?;
    let mut settings = setup::settings(&args.session)?;
    if let Some(c) = &command
        && settings.model.is_none()
    {
        settings.model = c.command.model.clone();
    }
    if let Some(path) = &args.output_schema {
        settings.output_schema = Some(read_schema(path)?);
    }
    let prompt = match &command {
        // The prompt words are the command's arguments (each kept one word for `$1`…).
        Some(_) => args
            .prompt
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(char::is_whitespace) || a.contains(['"', '\'', '\\'])
                {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => setup::build_prompt(&args.prompt, &args.file, args.verbose)?,
    };
    let config = setup::load_config(ctx)?;
    let factory = setup::factory(ctx, config, &args.session);
    let runner = setup::task_runner(ctx, &factory, &settings)?;
    let rt = setup::runtime()?;
    let view = View::new(args.output_format, args.quiet, args.verbose);
    let worktree = match &args.worktree {
        None => None,
        Some(name) => {
            let id = deputy_runtime::journal::new_session_id();
            let wt = Worktree::create(&Plan {
                workspace: &ctx.workspace,
                agent: &agent.name,
                session_id: &id,
                parent_session_id: None,
                name: Some(name.as_str()).filter(|n| !n.trim().is_empty()),
                confined: false,
            })
            .map_err(|e| CliError::usage(anyhow::anyhow!("--worktree: {e}")))?;
            Some((id, std::sync::Arc::new(wt)))
        }
    };
    rt.block_on(async move {
        let open = match &worktree {
            Some((id, wt)) => setup::Open::Worktree { id, worktree: wt },
            None => setup::Open::New,
        };
        let opened = setup::open_session(&factory, agent, &settings, runner, open).await;
        let (mut session, mut warnings) = match opened {
            Ok(o) => o,
            Err(e) => {
                // Nobody will work there: it goes (nothing changed yet).
                if let Some((_, wt)) = &worktree {
                    let _ = wt.settle("");
                }
                return Err(e);
            }
        };
        let prompt = match &command {
            Some(c) => {
                let (p, w) = session.expand_command(c, &prompt).await;
                warnings.extend(w);
                p
            }
            None => prompt,
        };
        drive(session, Some(prompt), warnings, view).await
    })
}

/// `--output-schema FILE`: a JSON Schema that compiles.
fn read_schema(path: &std::path::Path) -> CliResult<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(anyhow::anyhow!("--output-schema {}: {e}", path.display())))?;
    let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CliError::usage(anyhow::anyhow!(
            "--output-schema {}: not JSON: {e}",
            path.display()
        ))
    })?;
    jsonschema::validator_for(&schema).map_err(|e| {
        CliError::usage(anyhow::anyhow!(
            "--output-schema {}: not a valid JSON Schema: {e}",
            path.display()
        ))
    })?;
    Ok(schema)
}

pub fn resume(ctx: &Context, args: ResumeArgs) -> CliResult {
    let format = args.output_format;
    json_on_error(format, resume_inner(ctx, args))
}

fn resume_inner(ctx: &Context, args: ResumeArgs) -> CliResult {
    let found = setup::find_journaled(ctx, &args.id)?;
    let ctx = &found.ctx;
    let settings = setup::settings(&args.session)?;
    let prompt = if args.prompt.is_empty() {
        None
    } else {
        Some(setup::build_prompt(&args.prompt, &[], args.verbose)?)
    };
    let config = setup::load_config(ctx)?;
    let session_args = SessionArgs {
        ephemeral: false,
        ..args.session.clone()
    };
    let mut factory = setup::factory(ctx, config, &session_args);
    factory.state_dir = Some(found.state);
    let runner = setup::task_runner(ctx, &factory, &settings)?;
    let rt = setup::runtime()?;
    let view = View::new(args.output_format, args.quiet, args.verbose);
    let (id, agent) = (found.id, found.agent);
    rt.block_on(async move {
        let (session, warnings) =
            setup::open_session(&factory, agent, &settings, runner, setup::Open::Resume(&id))
                .await?;
        drive(session, prompt, warnings, view).await
    })
}

/// With `--output-format json`, every outcome is one JSON object on stdout, a setup error
/// included (the message also goes to stderr, as always).
fn json_on_error(format: OutputFormat, r: CliResult) -> CliResult {
    if format == OutputFormat::Json
        && let Err(e) = &r
    {
        let msg = deputy_runtime::redact::redact(&format!("{:#}", e.error));
        let _ = out_json(&json!({
            "type": "result",
            "subtype": "error_during_setup",
            "is_error": true,
            "status": "error",
            "result": msg,
            "errors": [msg],
            "exit_code": e.exit as i32,
        }));
    }
    r
}

/// How the outcome is shown.
#[derive(Debug, Clone, Copy)]
struct View {
    format: OutputFormat,
    quiet: bool,
    verbose: bool,
    stderr_tty: bool,
    stdout_tty: bool,
}

impl View {
    fn new(format: OutputFormat, quiet: bool, verbose: bool) -> Self {
        Self {
            format,
            quiet,
            verbose,
            stderr_tty: std::io::stderr().is_terminal(),
            stdout_tty: std::io::stdout().is_terminal(),
        }
    }

    /// Progress lines on stderr (and a spinner, on a terminal).
    fn progress(&self) -> bool {
        self.format != OutputFormat::StreamJson && !self.quiet && (self.stderr_tty || self.verbose)
    }

    /// The model's text streamed on stderr as it comes.
    fn streams_text(&self) -> bool {
        self.progress() && self.verbose && self.format == OutputFormat::Text
    }
}

/// Run the session, rendering as asked, and turn its outcome into output and an exit code.
async fn drive(
    mut session: Session,
    prompt: Option<String>,
    warnings: Vec<String>,
    view: View,
) -> CliResult {
    setup::install_signals(session.cancel_token());
    let spinner = match view.format {
        OutputFormat::StreamJson => {
            session.set_sink(Arc::new(|e: &Event| {
                if let Ok(line) = serde_json::to_string(e) {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        // The reader went away; keep working, the journal has everything.
                    }
                }
            }));
            None
        }
        _ if view.progress() => {
            let progress = Arc::new(Mutex::new(Progress::new(
                Style::detect(view.stderr_tty),
                view.streams_text(),
            )));
            let p = progress.clone();
            session.set_sink(Arc::new(move |e: &Event| {
                if let Ok(mut p) = p.lock() {
                    p.event(e);
                }
            }));
            // On a terminal, a spinner says what is going on while the model or a command runs.
            view.stderr_tty
                .then(|| crate::render::spawn_spinner(progress))
        }
        _ => None,
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut warnings = warnings;
    let journal = session.journal_path();
    let worktree = session.worktree().cloned();
    let outcome = session.run(prompt).await;
    session.end_hooks("other").await;
    if let Some(s) = spinner {
        s.stop().await;
    }
    // The run's own warnings (its `warning` events, rendered with -v or on a terminal) go
    // into the JSON result too.
    warnings.extend(outcome.warnings.iter().cloned());
    // The change in the worktree was committed on its branch as the run ended; a worktree
    // that never changed goes now.
    let settled = match (&worktree, &outcome.worktree) {
        (Some(wt), Some(Settled::Unchanged)) => wt
            .settle("")
            .map_err(|e| warnings.push(format!("the worktree could not be removed: {e}")))
            .ok(),
        (Some(_), s) => s.clone(),
        (None, _) => None,
    };
    if let Some(s) = &settled
        && view.format == OutputFormat::Text
        && !view.quiet
    {
        eprintln!("{}", s.describe());
    }
    report(
        &outcome,
        view,
        journal.as_deref(),
        &warnings,
        settled.as_ref(),
    )?;
    Ok(exit_for(outcome.status))
}

fn report(
    o: &Outcome,
    view: View,
    journal: Option<&std::path::Path>,
    warnings: &[String],
    settled: Option<&Settled>,
) -> CliResult<()> {
    match view.format {
        OutputFormat::Text => {
            // stdout holds an answer (or a limit's summary), never an error message: a script
            // redirecting it gets the result or nothing. When the answer was already streamed
            // to the same terminal, it is not printed twice.
            let answer = o.status == Status::Completed || o.status.is_limit();
            let shown = view.streams_text() && view.stdout_tty && view.stderr_tty;
            if answer && !shown {
                // To a terminal, the model's text cannot drive it; to a pipe it is data.
                if view.stdout_tty {
                    outln(&crate::render::clean(&o.result))?;
                } else {
                    outln(&o.result)?;
                }
            }
            if o.status != Status::Completed {
                let mut msg = format!("session {} ended: {}", o.session_id, o.status.as_str());
                if let Some(e) = o.errors.last() {
                    msg.push_str(&format!(" ({e})"));
                }
                if journal.is_some() {
                    msg.push_str(&format!(
                        "; continue it with `deputy resume {}`",
                        o.session_id
                    ));
                }
                eprintln!("{msg}");
            }
        }
        OutputFormat::Json => {
            // deputy's fields, and those of `claude -p --output-format json` (type, subtype,
            // is_error, num_turns, total_cost_usd), so scripts written for it keep working.
            let subtype = match o.status {
                Status::Completed => "success",
                Status::MaxSteps => "error_max_turns",
                Status::Budget => "error_max_budget",
                Status::Timeout => "error_timeout",
                Status::Cancelled => "error_cancelled",
                Status::Denied | Status::Error => "error_during_execution",
            };
            let mut v = json!({
                "type": "result",
                "subtype": subtype,
                "is_error": o.status != Status::Completed,
                "session_id": o.session_id,
                "status": o.status,
                "result": o.result,
                "usage": o.usage,
                "cost_usd": o.cost_usd,
                "total_cost_usd": o.cost_usd.unwrap_or(0.0),
                "duration_ms": o.duration_ms,
                "num_steps": o.num_turns,
                "num_turns": o.num_turns,
                "files_changed": o.files_changed,
                "errors": o.errors,
                "warnings": warnings,
                "metrics": o.metrics,
                "journal": journal,
            });
            if let Some(s) = &o.structured_output {
                v["structured_output"] = s.clone();
            }
            if let Some(s) = settled {
                v["worktree"] = json!(s);
            }
            out_json(&v)?;
        }
        OutputFormat::StreamJson => {}
    }
    Ok(())
}
