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
    // A granted directory as given on the command line: relative to where deputy was started.
    let cwd = std::env::current_dir().unwrap_or_default();
    let add_dirs = args.add_dir.iter().map(|d| cwd.join(d)).collect();
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
        no_summary: args.no_summary,
        append_system_prompt: args.append_system_prompt.clone(),
        home: Default::default(),
        add_dirs,
        no_instructions: args.no_instructions,
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
    trust(ctx, &mut f);
    if args.auto_approve {
        f.approver = Arc::new(AutoApprove);
    }
    f
}

/// What a front-end serving many sessions needs (`deputy mcp`, `deputy serve`): the run
/// settings from the flags, `[task]`, and the factory.
pub fn front_end(
    ctx: &Context,
    args: &SessionArgs,
) -> CliResult<(RunSettings, deputy_runtime::TaskConfig, Factory)> {
    let settings = settings(args)?;
    let config = load_config(ctx)?;
    let task = config
        .section("task")
        .map_err(|e| CliError::usage(anyhow::anyhow!("{e}")))?;
    Ok((settings, task, factory(ctx, config, args)))
}

/// What the factory trusts: the project if the user trusts it, the agent directories the
/// user named, the user's own agents.
pub fn trust(ctx: &Context, f: &mut Factory) {
    f.project_trusted = ctx.trusted;
    f.project = Some(ctx.workspace.clone());
    f.trusted_agent_dirs = ctx.discovery.agents_dirs.clone();
    f.trusted_agent_dirs
        .extend(ctx.config_dir.iter().map(|d| d.join("agents")));
}

/// The custom commands here: the project's (its `` !`…` `` run only once it is trusted) and
/// the user's.
pub fn custom_commands(ctx: &Context) -> deputy_runtime::slash::CommandSet {
    let home = deputy_tools::sandbox::view::home_dir();
    let dirs = deputy_runtime::slash::user_command_dirs(home.as_deref(), ctx.config_dir.as_deref());
    deputy_runtime::slash::discover(&ctx.workspace, &dirs, ctx.trusted)
}

/// Command `name`, or a usage error naming the ones there are.
pub fn custom_command(ctx: &Context, name: &str) -> CliResult<deputy_runtime::slash::FoundCommand> {
    let set = custom_commands(ctx);
    for w in &set.warnings {
        tracing::warn!("{w}");
    }
    set.get(name).cloned().ok_or_else(|| {
        let known = set.names();
        CliError::usage(anyhow::anyhow!(
            "--command {name}: no such command{}",
            match deputy_agent::closest(name.trim_start_matches('/'), &known) {
                Some(c) => format!("; did you mean `{c}`?"),
                None if known.is_empty() => "; none were found (put NAME.md in .deputy/commands, .claude/commands or ~/.claude/commands)".to_string(),
                None => format!("; the commands are: {}", known.join(", ")),
            }
        ))
    })
}

/// Setup errors are configuration errors: nothing was run.
pub fn setup_error(e: SetupError) -> CliError {
    CliError::usage(anyhow::anyhow!("{e}"))
}

/// How long piped stdin may stay silent before deputy goes on without it (as Claude Code does):
/// orchestrators often spawn children with a pipe they never write to or close.
const STDIN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Read stdin when it is meant as input: `-` was given, or it is a pipe or a file (never a
/// terminal, /dev/null, or a socket that may never close). A pipe that stays silent for 3 s
/// (before its first byte, or between chunks) is given up on, with a warning, unless `-` asked
/// for stdin explicitly.
pub fn read_stdin(explicit: bool, verbose: bool) -> CliResult<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() || !(explicit || stdin_is_pipe_or_file()) {
        return Ok(None);
    }
    if explicit || stdin_is_file() {
        let mut buf = String::new();
        stdin
            .lock()
            .take(16 * 1024 * 1024)
            .read_to_string(&mut buf)
            .context("cannot read stdin (is it text?)")?;
        return Ok(Some(buf));
    }
    // A pipe: read on a thread, and stop waiting when it falls silent.
    let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(chunk[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut bytes = Vec::new();
    loop {
        match rx.recv_timeout(STDIN_WAIT) {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > 16 * 1024 * 1024 {
                    break;
                }
            }
            Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let msg = if bytes.is_empty() {
                    "stdin is a pipe nothing was written to in 3 s; going on without it (pass `-` to wait for it, or </dev/null to say there is none)"
                } else {
                    "stdin went silent for 3 s without closing; going on with what it sent"
                };
                tracing::warn!("{msg}");
                if verbose {
                    eprintln!("⚠ {msg}");
                }
                break;
            }
        }
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| CliError::usage(anyhow::anyhow!("cannot read stdin: it is not UTF-8 text")))
}

fn stdin_is_file() -> bool {
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_file())
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
pub fn build_prompt(
    words: &[String],
    files: &[std::path::PathBuf],
    verbose: bool,
) -> CliResult<String> {
    let explicit_stdin = words.iter().any(|w| w == "-");
    let text: Vec<&str> = words
        .iter()
        .filter(|w| *w != "-")
        .map(String::as_str)
        .collect();
    let mut prompt = text.join(" ");
    if let Some(input) = read_stdin(explicit_stdin, verbose)? {
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

/// A journaled session to continue.
pub struct Journaled {
    pub state: std::path::PathBuf,
    pub id: String,
    /// Its agent as defined now (rules and tools), under its recorded name.
    pub agent: AgentSpec,
    /// The context to run it in: the session's own workspace, unless -C named another.
    pub ctx: Context,
}

/// A journaled session found by id, unique prefix or `last` (the newest of this workspace).
pub fn find_journaled(ctx: &Context, wanted: &str) -> CliResult<Journaled> {
    use deputy_runtime::journal;
    let state = journal::state_dir().ok_or_else(|| {
        CliError::usage(anyhow::anyhow!(
            "no state directory: set DEPUTY_HOME or HOME"
        ))
    })?;
    let id =
        journal::find_session(&state, wanted, Some(&ctx.workspace)).map_err(CliError::usage)?;
    let path = journal::session_dir(&state, &id).join("events.jsonl");
    let (events, _) = journal::read_events(&path).map_err(CliError::usage)?;
    let rebuilt = deputy_runtime::rebuild(&events).map_err(CliError::usage)?;
    // A session continues where it ran, unless -C says otherwise.
    let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let own = std::path::PathBuf::from(&rebuilt.workspace);
    let moved = !rebuilt.workspace.is_empty() && canon(&own) != canon(&ctx.workspace);
    let here = if moved && !ctx.workspace_explicit {
        if !own.is_dir() {
            if let Some(r) = worktree_in(&events) {
                return Err(pruned(&id, &r));
            }
            return Err(CliError::usage(anyhow::anyhow!(
                "session {id} ran in {}, which is gone; name a workspace with -C to resume it elsewhere",
                own.display()
            )));
        }
        eprintln!(
            "⚠ session {id} ran in {}; resuming it there (not in the current directory)",
            own.display()
        );
        ctx.elsewhere(own)?
    } else {
        if moved {
            eprintln!(
                "⚠ session {id} ran in {}; resuming it in {} as -C says",
                own.display(),
                ctx.workspace.display()
            );
        }
        ctx.elsewhere(ctx.workspace.clone())?
    };
    let ctx = &here;
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
    Ok(Journaled {
        state,
        id,
        agent,
        ctx: here,
    })
}

/// A session of `agent` (new, or `resume`d from its journal) with the model, options and task
/// runner resolved; the resolution's warnings are returned for the caller to show.
/// The worktree session `id` worked in (its `session.started` names it), reopened; an error
/// when it has been pruned since (its work is on its branch).
fn worktree_of(
    factory: &Factory,
    id: &str,
) -> CliResult<Option<deputy_runtime::worktree::Worktree>> {
    let Some(state) = &factory.state_dir else {
        return Ok(None);
    };
    let path = deputy_runtime::journal::session_dir(state, id).join("events.jsonl");
    let Ok((events, _)) = deputy_runtime::journal::read_events(&path) else {
        return Ok(None);
    };
    let Some(r) = worktree_in(&events) else {
        return Ok(None);
    };
    let Some(top) = r.path.ancestors().nth(3) else {
        return Ok(None);
    };
    if !r.path.join(".git").is_file() {
        // Resumed elsewhere on purpose (-C; without it, `find_journaled` said where the work
        // is): no worktree then.
        tracing::warn!("{}", pruned(id, &r).error);
        return Ok(None);
    }
    deputy_runtime::worktree::Worktree::open_or_create(&deputy_runtime::worktree::Plan {
        workspace: top,
        agent: &r.agent,
        session_id: id,
        parent_session_id: r.parent_session_id.as_deref(),
        name: Some(&r.name),
        confined: false,
    })
    .map(Some)
    .map_err(|e| CliError::usage(anyhow::anyhow!("resuming in its worktree: {e}")))
}

/// The worktree a journal's session worked in (its `session.started` names it).
fn worktree_in(events: &[deputy_runtime::Event]) -> Option<deputy_runtime::worktree::Record> {
    events.iter().find_map(|e| match &e.kind {
        deputy_runtime::EventKind::SessionStarted { worktree, .. } => worktree.clone(),
        _ => None,
    })
}

/// Session `id`'s worktree is gone: say where its work is.
fn pruned(id: &str, r: &deputy_runtime::worktree::Record) -> CliError {
    CliError::usage(anyhow::anyhow!(
        "session {id} worked in the worktree {}, which is gone (pruned); its work is on branch {} (if it changed anything); -C DIR resumes it elsewhere",
        r.path.display(),
        r.branch
    ))
}

/// Which session [`open_session`] opens.
pub enum Open<'a> {
    New,
    Resume(&'a str),
    /// A new session `id` in a worktree made for it (`--worktree`).
    Worktree {
        id: &'a str,
        worktree: &'a Arc<deputy_runtime::worktree::Worktree>,
    },
}

pub async fn open_session(
    factory: &Factory,
    agent: AgentSpec,
    settings: &RunSettings,
    runner: Arc<TaskRunner>,
    open: Open<'_>,
) -> CliResult<(deputy_runtime::Session, Vec<String>)> {
    let (client, label, mut warnings) = factory
        .client(&agent, settings)
        .await
        .map_err(setup_error)?;
    // A budget in dollars needs a price: say so rather than quietly not enforcing it.
    if settings.max_cost_usd.is_some() {
        let (provider, model) = label.split_once('/').unwrap_or(("", label.as_str()));
        if factory.config.llm.price(provider, model).is_none() {
            warnings.push(format!(
                "--max-cost-usd has no effect: no price is known for {label}; give one in config: [pricing.\"{label}\"] input_per_mtok = …, output_per_mtok = …"
            ));
        }
    }
    let mut opts = factory
        .options(&agent, settings, label)
        .map_err(setup_error)?;
    let mut session = match open {
        Open::Resume(id) => {
            // A session that worked in a worktree goes on there, and commits there again.
            if let Some(wt) = worktree_of(factory, id)? {
                Arc::new(wt).apply(&mut opts);
            }
            deputy_runtime::Session::resume(id, agent, client, opts)
        }
        Open::New => deputy_runtime::Session::new(agent, client, opts),
        Open::Worktree { id, worktree } => {
            worktree.apply(&mut opts);
            deputy_runtime::Session::named(id, agent, client, opts)
        }
    }
    .map_err(CliError::usage)?;
    runner.attach(&mut session, 0);
    Ok((session, warnings))
}
