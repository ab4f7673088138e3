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
    let agent = setup::resolve_agent(ctx, args.agent.as_deref())?;
    let mut settings = setup::settings(&args.session)?;
    if let Some(path) = &args.output_schema {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(anyhow::anyhow!("--output-schema {}: {e}", path.display()))
        })?;
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
        settings.output_schema = Some(schema);
    }
    let prompt = setup::build_prompt(&args.prompt, &args.file)?;
    let config = setup::load_config(ctx)?;
    let factory = setup::factory(ctx, config, &args.session);
    let runner = setup::task_runner(ctx, &factory, &settings)?;
    let rt = setup::runtime()?;
    rt.block_on(async move {
        let (session, warnings) =
            setup::open_session(&factory, agent, &settings, runner, None).await?;
        drive(
            session,
            Some(prompt),
            warnings,
            args.output_format,
            args.quiet,
            args.verbose,
        )
        .await
    })
}

pub fn resume(ctx: &Context, args: ResumeArgs) -> CliResult {
    let (state, id, agent) = setup::find_journaled(ctx, &args.id)?;
    let settings = setup::settings(&args.session)?;
    let prompt = if args.prompt.is_empty() {
        None
    } else {
        Some(setup::build_prompt(&args.prompt, &[])?)
    };
    let config = setup::load_config(ctx)?;
    let session_args = SessionArgs {
        ephemeral: false,
        ..args.session.clone()
    };
    let mut factory = setup::factory(ctx, config, &session_args);
    factory.state_dir = Some(state);
    let runner = setup::task_runner(ctx, &factory, &settings)?;
    let rt = setup::runtime()?;
    rt.block_on(async move {
        let (session, warnings) =
            setup::open_session(&factory, agent, &settings, runner, Some(&id)).await?;
        drive(
            session,
            prompt,
            warnings,
            args.output_format,
            args.quiet,
            args.verbose,
        )
        .await
    })
}

/// Run the session, rendering as asked, and turn its outcome into output and an exit code.
async fn drive(
    mut session: Session,
    prompt: Option<String>,
    warnings: Vec<String>,
    format: OutputFormat,
    quiet: bool,
    verbose: bool,
) -> CliResult {
    setup::install_signals(session.cancel_token());
    let stderr_tty = std::io::stderr().is_terminal();
    match format {
        OutputFormat::StreamJson => {
            session.set_sink(Arc::new(|e: &Event| {
                if let Ok(line) = serde_json::to_string(e) {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        // The reader went away; keep working, the journal has everything.
                    }
                }
            }));
        }
        OutputFormat::Text | OutputFormat::Json if !quiet && (stderr_tty || verbose) => {
            let progress = Mutex::new(Progress::new(
                Style::detect(stderr_tty),
                verbose && format == OutputFormat::Text,
            ));
            session.set_sink(Arc::new(move |e: &Event| {
                if let Ok(mut p) = progress.lock() {
                    p.event(e);
                }
            }));
        }
        _ => {}
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let journal = session.journal_path();
    let outcome = session.run(prompt).await;
    report(&outcome, format, journal.as_deref(), &warnings)?;
    Ok(exit_for(outcome.status))
}

fn report(
    o: &Outcome,
    format: OutputFormat,
    journal: Option<&std::path::Path>,
    warnings: &[String],
) -> CliResult<()> {
    match format {
        OutputFormat::Text => {
            if o.status == Status::Completed || !o.result.is_empty() {
                outln(&o.result)?;
            }
            if o.status != Status::Completed {
                let mut msg = format!("session {} ended: {}", o.session_id, o.status.as_str());
                if let Some(e) = o.errors.last() {
                    msg.push_str(&format!(" ({e})"));
                }
                if journal.is_some() && o.status != Status::Completed {
                    msg.push_str(&format!(
                        "; continue it with `deputy resume {}`",
                        o.session_id
                    ));
                }
                eprintln!("{msg}");
            }
        }
        OutputFormat::Json => {
            let mut v = json!({
                "session_id": o.session_id,
                "status": o.status,
                "result": o.result,
                "usage": o.usage,
                "cost_usd": o.cost_usd,
                "duration_ms": o.duration_ms,
                "num_steps": o.num_turns,
                "files_changed": o.files_changed,
                "errors": o.errors,
                "warnings": warnings,
                "metrics": o.metrics,
                "journal": journal,
            });
            if let Some(s) = &o.structured_output {
                v["structured_output"] = s.clone();
            }
            out_json(&v)?;
        }
        OutputFormat::StreamJson => {}
    }
    Ok(())
}
