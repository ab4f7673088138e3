//! The `deputy` command line. Argument parsing, front-ends and renderers only: the work is done
//! by the library crates (deputy-agent, deputy-llm, deputy-tools, deputy-runtime, deputy-mcp).
//!
//! stdout carries only the user's output (results, JSON, JSONL events, MCP protocol); logs and
//! progress go to stderr. `print_stdout` is denied workspace-wide to keep it that way.

mod acp;
mod cli;
mod commands;
mod context;
mod exit;
mod logging;
mod markdown;
mod output;
mod render;
mod setup;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::exit::{CliError, Exit};

fn main() -> ExitCode {
    // Inside a session's kept sandbox: serve its commands, nothing else (no runtime, no config).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            deputy_tools::sandbox::supervisor::SUPERVISOR_ARG,
        ))
    {
        return ExitCode::from(deputy_tools::sandbox::supervisor::serve().clamp(0, 255) as u8);
    }
    // Probing the sandbox runs a trial bwrap (a few ms); start it now, beside argument parsing,
    // config and agent loading, so it is done by the time the first tool list is needed.
    let wants_sandbox = std::env::args().nth(1).is_some_and(|c| {
        matches!(
            c.as_str(),
            "run" | "resume" | "chat" | "mcp" | "review" | "serve"
        )
    });
    if wants_sandbox {
        if let Some(state) = deputy_runtime::journal::state_dir() {
            deputy_tools::sandbox::remember_probe_in(state.join("cache/bwrap-probe"));
            // What servers say of their context windows, asked once an hour, not every run.
            deputy_llm::remember_windows_in(state.join("cache/windows.json"));
        }
        // Commands of a session share one sandbox, served by this very binary.
        if std::env::var_os("DEPUTY_SANDBOX_PER_COMMAND").is_none()
            && let Ok(me) = std::env::current_exe()
        {
            deputy_tools::sandbox::use_supervisor(me);
        }
        std::thread::spawn(|| {
            deputy_tools::sandbox::probe();
        });
    }
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let cli = match parsed {
        Ok((mut cli, matches)) => {
            // Permission flags apply in the order given (the last matching rule wins).
            if let Some((_, sub)) = matches.subcommand()
                && let Some(session) = cli.command.session_mut()
            {
                session.rules_in_order = cli::rules_in_order(sub);
            }
            cli
        }
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            };
            let _ = e.print();
            return code.into();
        }
    };
    let guard = logging::init(&cli.global, cli.command.quiet());
    let code = match run(cli) {
        Ok(exit) => exit,
        Err(CliError { exit, error }) => {
            eprintln!(
                "error: {}",
                deputy_runtime::redact::redact(&format!("{error:#}"))
            );
            exit
        }
    };
    // Flush exported spans before leaving.
    drop(guard);
    code.into()
}

fn run(cli: Cli) -> Result<Exit, CliError> {
    // Commands about deputy itself need no workspace.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut out = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut cmd, "deputy", &mut out);
            return Ok(Exit::Ok);
        }
        Command::Man => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| {
                    CliError::failure(anyhow::anyhow!("cannot write the man page: {e}"))
                })?;
            return Ok(Exit::Ok);
        }
        Command::Version => {
            output::outln(&format!("deputy {}", env!("CARGO_PKG_VERSION")))?;
            return Ok(Exit::Ok);
        }
        _ => {}
    }
    // An interactive chat asks once whether to trust a project that brings its own settings
    // (before they are read).
    if matches!(cli.command, Command::Chat(_)) {
        commands::chat::ask_trust_once(&cli.global)?;
    }
    // A session is about to be set up: its tools' schemas are made meanwhile.
    if matches!(
        cli.command,
        Command::Run(_) | Command::Resume(_) | Command::Chat(_) | Command::Review(_)
    ) {
        deputy_tools::tools::warm_schemas();
    }
    let ctx = context::Context::new(&cli.global)?;
    match cli.command {
        Command::Run(args) => commands::run::run(&ctx, args),
        Command::Resume(args) => commands::run::resume(&ctx, args),
        Command::Mcp(args) => commands::mcp::run(&ctx, args),
        Command::Acp(args) => acp::run(&ctx, args),
        Command::Serve(args) => commands::serve::run(&ctx, args),
        Command::Chat(args) => commands::chat::run(&ctx, args),
        Command::Review(args) => commands::review::run(&ctx, args),
        Command::Sessions(cmd) => commands::sessions::run(&ctx, cmd),
        Command::Agents(cmd) => commands::agents::run(&ctx, cmd),
        Command::Skills(cmd) => commands::skills::run(&ctx, cmd),
        Command::Commands { json } => commands::skills::list_commands(&ctx, json),
        #[cfg(feature = "mock-server")]
        Command::MockServer(args) => commands::mock::run(args),
        Command::Sandbox(cmd) => commands::sandbox::run(&ctx, cmd),
        Command::Trust(args) => commands::trust::run(&ctx, args),
        Command::Completions { .. } | Command::Man | Command::Version => Ok(Exit::Ok),
    }
}
