//! Command-line arguments (clap derive). Parsing only: the commands live in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// deputy runs LLM subagents: agent files from opencode, Claude Code, Qwen Code or Gemini CLI,
/// driven against any OpenAI-compatible model, acting on your workspace only through sandboxed
/// tools.
#[derive(Debug, Parser)]
#[command(
    name = "deputy",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 completed, 1 runtime failure, 2 usage or configuration \
error, 3 a limit stopped the session, 4 review findings at or above --fail-on, 130 cancelled.\n\
Docs: README.md. Logs go to stderr; set DEPUTY_LOG=debug for more."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory of agent files, searched before ./agents, ./.deputy/agents, ./.opencode/agent(s),
    /// ./.claude/agents and ~/.config/deputy/agents (repeatable)
    #[arg(long = "agents-dir", value_name = "DIR", global = true)]
    pub agents_dirs: Vec<PathBuf>,

    /// The workspace the agent works in, and where project agents and config are found
    /// [default: the current directory]
    #[arg(short = 'C', long = "workspace", value_name = "DIR", global = true)]
    pub workspace: Option<PathBuf>,

    /// Log filter for stderr, in env-filter syntax (e.g. `debug`, `deputy_llm=trace`)
    #[arg(long, value_name = "FILTER", env = "DEPUTY_LOG", global = true)]
    pub log_level: Option<String>,

    /// Log format on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, show and validate agent files
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Run the scripted mock model server (deputy-mockllm) for demos and tests
    MockServer(MockServerArgs),
    /// Inspect the bash sandbox
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Say which sandbox backend works here and why the others do not; exits 1 if none works
    Check {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct MockServerArgs {
    /// Script to play (YAML or JSON) [default: answer every request with "ok"]
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Port on 127.0.0.1; 0 picks a free one [default: 0]
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Append every request received as a JSON line to FILE
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List the agents found, in precedence order
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one agent as deputy resolved it: effective tools, permission rules, source file
    Show {
        /// Agent name (or path to an agent file)
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Check agent files; prints `path:line:col: message` per problem, exits 2 if any is invalid
    Validate {
        /// Files or directories to check [default: every agent deputy would discover]
        paths: Vec<PathBuf>,
        /// Also fail on warnings and notes (unknown keys, tools deputy does not provide)
        #[arg(long)]
        strict: bool,
        /// Print a JSON report instead of lines
        #[arg(long)]
        json: bool,
    },
}
