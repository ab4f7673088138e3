//! Turning the command line into a session: config, agent, model, options, signals.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use deputy_agent::AgentSpec;
use deputy_runtime::{
    AutoApprove, Config, Factory, RunSettings, SetupError, TaskConfig, TaskRunner, config_paths,
    flag_rule,
};
use deputy_tools::{Action, SandboxMode};
use tokio_util::sync::CancellationToken;

use crate::cli::SessionArgs;
use crate::context::{Context, DEFAULT_AGENT};
use crate::exit::{CliError, CliResult, Exit};

/// Config files, merged: the user's in full, the project's in full only when it is trusted
/// (else what it tried to loosen is ignored, and said once on stderr).
pub fn load_config(ctx: &Context) -> CliResult<Config> {
    let mut paths = config_paths(&ctx.workspace, ctx.discovery.home.as_deref());
    let project = paths.pop().unwrap_or_default();
    let (config, ignored) =
        Config::load_for(&paths, &project, ctx.trusted).map_err(CliError::usage)?;
    let mut notes = ctx.untrusted_notes.clone();
    if !ignored.is_empty() {
        notes.push(format!(
            "from {}, these were ignored: {}",
            project.display(),
            ignored.join(", ")
        ));
    }
    if !notes.is_empty() {
        tracing::warn!(
            "this project is not trusted, so its settings can only make things stricter: {}. If you trust it, run `deputy trust {}`",
            notes.join("; "),
            ctx.workspace.display()
        );
    }
    Ok(config)
}

/// The agent named by `--agent` (or the default).
pub fn resolve_agent(ctx: &Context, name: Option<&str>) -> CliResult<AgentSpec> {
    let catalog = ctx.catalog();
    let name = name.unwrap_or(DEFAULT_AGENT);
    let agent = catalog.resolve(name).map_err(CliError::usage)?;
    if agent.disable {
        return Err(CliError::usage(anyhow::anyhow!(
            "agent `{}` is disabled (`disable: true` in {})",
            agent.name,
            agent
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )));
    }
    Ok(agent)
}

/// Flags → run settings.
pub fn settings(args: &SessionArgs) -> CliResult<RunSettings> {
    // In command-line order (the last matching rule wins); grouped by kind only when the
    // arguments were built without a command line.
    let ordered: Vec<(Action, String)> = if args.rules_in_order.is_empty() {
        [
            (&args.allow, Action::Allow),
            (&args.ask, Action::Ask),
            (&args.deny, Action::Deny),
        ]
        .into_iter()
        .flat_map(|(list, a)| list.iter().map(move |s| (a, s.clone())))
        .collect()
    } else {
        args.rules_in_order.clone()
    };
    let mut rules = Vec::new();
    for (action, spec) in &ordered {
        rules.push(flag_rule(spec, *action).map_err(|e| CliError::usage(anyhow::anyhow!("{e}")))?);
    }
    if let Some(t) = args.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--temperature must be from 0 to 2"
        )));
    }
    if let Some(p) = args.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--top-p must be from 0 to 1"
        )));
    }
    if args.max_steps == Some(0) {
        return Err(CliError::usage(anyhow::anyhow!(
            "--max-steps must be at least 1"
        )));
    }
    Ok(RunSettings {
        model: args.model.clone(),
        temperature: args.temperature,
        top_p: args.top_p,
        max_steps: args.max_steps,
        timeout: args.timeout,
        max_tokens: args.max_tokens,
        max_cost_usd: args.max_cost_usd,
        sandbox: args.sandbox.as_deref().and_then(SandboxMode::parse),
        network: args.network.then_some(true),
        rules,
        output_schema: None,
    })
}

/// The factory for this workspace.
pub fn factory(ctx: &Context, config: Config, args: &SessionArgs) -> Factory {
    let state = if args.ephemeral {
        None
    } else {
        deputy_runtime::journal::state_dir()
    };
    let mut f = Factory::new(config, ctx.workspace.clone(), state);
    f.project_trusted = ctx.trusted;
    f.trusted_agent_dirs = ctx.discovery.agents_dirs.clone();
    f.trusted_agent_dirs
        .extend(ctx.config_dir.iter().map(|d| d.join("agents")));
    if args.auto_approve {
        f.approver = Arc::new(AutoApprove);
    }
    f
}

/// Setup errors are configuration errors: nothing was run.
pub fn setup_error(e: SetupError) -> CliError {
    CliError::usage(anyhow::anyhow!("{e}"))
}

/// Read stdin when it is meant as input: `-` was given, or it is a pipe or a file (never a
/// terminal, /dev/null, or a socket that may never close).
pub fn read_stdin(explicit: bool) -> CliResult<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() || !(explicit || stdin_is_pipe_or_file()) {
        return Ok(None);
    }
    let mut buf = String::new();
    stdin
        .lock()
        .take(16 * 1024 * 1024)
        .read_to_string(&mut buf)
        .context("cannot read stdin (is it text?)")?;
    Ok(Some(buf))
}

fn stdin_is_pipe_or_file() -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata("/dev/stdin") else {
        return false;
    };
    let t = meta.file_type();
    t.is_fifo() || t.is_file()
}

/// The user's message: the words, piped stdin as a block, attached files.
pub fn build_prompt(words: &[String], files: &[std::path::PathBuf]) -> CliResult<String> {
    let explicit_stdin = words.iter().any(|w| w == "-");
    let text: Vec<&str> = words
        .iter()
        .filter(|w| *w != "-")
        .map(String::as_str)
        .collect();
    let mut prompt = text.join(" ");
    if let Some(input) = read_stdin(explicit_stdin)? {
        let input = input.trim_end();
        if !input.is_empty() {
            if prompt.is_empty() {
                prompt = input.to_string();
            } else {
                prompt.push_str(&format!("\n\n<stdin>\n{input}\n</stdin>"));
            }
        }
    }
    for f in files {
        let content = read_attachment(f)?;
        prompt.push_str(&format!(
            "\n\n<file path=\"{}\">\n{}\n</file>",
            f.display(),
            content.trim_end()
        ));
    }
    if prompt.trim().is_empty() {
        return Err(CliError::usage(anyhow::anyhow!(
            "no task given: pass it as arguments (deputy run \"...\"), with `-` to read stdin, or pipe it in"
        )));
    }
    Ok(prompt)
}

fn read_attachment(p: &Path) -> CliResult<String> {
    let meta = std::fs::metadata(p)
        .map_err(|e| CliError::usage(anyhow::anyhow!("--file {}: {e}", p.display())))?;
    if meta.len() > 1024 * 1024 {
        return Err(CliError::usage(anyhow::anyhow!(
            "--file {}: {} bytes is over the 1 MiB attachment limit; let the agent read it from the workspace instead",
            p.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(p)
        .map_err(|e| CliError::usage(anyhow::anyhow!("--file {}: {e}", p.display())))?;
    if deputy_tools::looks_binary(&bytes) {
        return Err(CliError::usage(anyhow::anyhow!(
            "--file {}: binary files cannot be attached",
            p.display()
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// SIGINT / SIGTERM: the first cancels the session (which then writes `session.finished` with
/// status `cancelled`); a second exits at once.
pub fn install_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            count += 1;
            if count == 1 {
                eprintln!("\ncancelling… (press Ctrl-C again to quit at once)");
                token.cancel();
            } else {
                std::process::exit(Exit::Cancelled as i32);
            }
        }
    });
}

/// The tokio runtime of the CLI: small, because deputy mostly waits on one model and one tool.
pub fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(anyhow::anyhow!("cannot start the async runtime: {e}")))
}

/// The `task` tool's runner: every discovered agent may be a subagent.
pub fn task_runner(
    ctx: &Context,
    factory: &Factory,
    settings: &RunSettings,
) -> CliResult<Arc<TaskRunner>> {
    let config: TaskConfig = factory
        .config
        .section("task")
        .map_err(|e| CliError::usage(anyhow::anyhow!("{e}")))?;
    let agents = ctx.catalog().agents.clone();
    Ok(factory.task_runner(agents, settings, config))
}

/// A journaled session found by id, unique prefix or `last`: the state directory, its id, and
/// its agent as defined now (rules and tools), under its recorded name.
pub fn find_journaled(
    ctx: &Context,
    wanted: &str,
) -> CliResult<(std::path::PathBuf, String, AgentSpec)> {
    use deputy_runtime::journal;
    let state = journal::state_dir().ok_or_else(|| {
        CliError::usage(anyhow::anyhow!(
            "no state directory: set DEPUTY_HOME or HOME"
        ))
    })?;
    let id = journal::find_session(&state, wanted).map_err(CliError::usage)?;
    let path = journal::session_dir(&state, &id).join("events.jsonl");
    let (events, _) = journal::read_events(&path).map_err(CliError::usage)?;
    let rebuilt = deputy_runtime::rebuild(&events).map_err(CliError::usage)?;
    // An agent whose file is gone still resumes (its system prompt is in the journal), but with
    // read-only tools: its tool list and rules went with the file, and the defaults would widen
    // what it may do. A broken or disabled agent file is an error, as for a new session.
    let agent = match ctx.catalog().resolve(&rebuilt.agent) {
        Err(deputy_agent::AgentError::NotFound { .. }) => {
            eprintln!(
                "⚠ agent `{}` is no longer defined; resuming {id} with read-only tools \
                 (read, glob, grep, list). Restore its file to give it back its tools and rules.",
                rebuilt.agent
            );
            let mut spec = AgentSpec::new(rebuilt.agent.clone(), "");
            spec.tools = deputy_agent::ToolSet::only(["read", "glob", "grep", "list"]);
            spec
        }
        _ => resolve_agent(ctx, Some(&rebuilt.agent))?,
    };
    Ok((state, id, agent))
}

/// A session of `agent` (new, or `resume`d from its journal) with the model, options and task
/// runner resolved; the resolution's warnings are returned for the caller to show.
pub async fn open_session(
    factory: &Factory,
    agent: AgentSpec,
    settings: &RunSettings,
    runner: Arc<TaskRunner>,
    resume: Option<&str>,
) -> CliResult<(deputy_runtime::Session, Vec<String>)> {
    let (client, label, warnings) = factory
        .client(&agent, settings)
        .await
        .map_err(setup_error)?;
    let opts = factory
        .options(&agent, settings, label)
        .map_err(setup_error)?;
    let mut session = match resume {
        Some(id) => deputy_runtime::Session::resume(id, agent, client, opts),
        None => deputy_runtime::Session::new(agent, client, opts),
    }
    .map_err(CliError::usage)?;
    runner.attach(&mut session, 0);
    Ok((session, warnings))
}
