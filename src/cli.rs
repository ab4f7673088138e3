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
#[command(next_help_heading = "Global options")]
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
    /// Run an agent on a task, headless: the answer on stdout (text, json or stream-json)
    #[command(
        after_help = "Examples:\n  deputy run --agent backend-architect \"add a /health endpoint\"\n  git diff | deputy run -a code-reviewer \"review this diff\" --output-format json\n  deputy run --max-steps 10 --timeout 5m --file spec.md \"implement the spec\""
    )]
    Run(RunArgs),
    /// Continue a session that finished, failed, was cancelled or crashed
    Resume(ResumeArgs),
    /// Talk to an agent in the terminal
    Chat(ChatArgs),
    /// Review a git diff with a read-only agent; Markdown, JSON, SARIF or GitHub annotations
    #[command(
        after_help = "Exit codes: 0 no finding at or above --fail-on, 4 findings at or above it, 1 the review failed, 2 bad usage.\nExamples:\n  deputy review --base origin/main --format sarif -o deputy.sarif --fail-on high\n  deputy review --staged\n  deputy review --base main --format github"
    )]
    Review(ReviewArgs),
    /// Serve the agents as MCP tools over stdio (for Claude Code, Codex, opencode, Cursor, …)
    Mcp(McpArgs),
    /// Be an editor's agent over the Agent Client Protocol on stdio (Zed, JetBrains, Neovim,
    /// Emacs)
    #[command(
        after_help = "The editor starts it and talks JSON-RPC on stdin/stdout; logs go to stderr.\nZed (settings.json):\n  \"agent_servers\": {\"deputy\": {\"command\": \"deputy\", \"args\": [\"acp\"]}}\nExamples:\n  deputy acp\n  deputy acp --agent backend-architect"
    )]
    Acp(AcpArgs),
    /// Serve the agents over HTTP and server-sent events (for orchestrators anywhere)
    #[command(
        after_help = "The API is described at /openapi.json. Tokens: DEPUTY_SERVE_TOKENS=tok1,tok2 (required unless listening on a loopback address).\nExamples:\n  deputy serve                                   # http://127.0.0.1:7070\n  DEPUTY_SERVE_TOKENS=s3cret deputy serve --listen 0.0.0.0:7070 --root /srv/work\n  curl -s localhost:7070/v1/sessions -H 'content-type: application/json' -d '{\"prompt\": \"add a health check\"}'"
    )]
    Serve(ServeArgs),
    /// List, show and prune journaled sessions
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// List, show and validate agent files
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// List, show and validate skills (folders with a SKILL.md)
    #[command(subcommand)]
    Skills(SkillsCommand),
    /// List the custom commands (prompt templates run with `deputy run --command NAME` or
    /// `/NAME` in chat)
    Commands {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run the scripted mock model server (deputy-mockllm) for demos and tests
    #[cfg(feature = "mock-server")]
    MockServer(MockServerArgs),
    /// Inspect the bash sandbox
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Trust a project: apply its .deputy/config.toml and .env in full (until then they can
    /// only make things stricter)
    #[command(
        after_help = "What a workspace brings (.deputy/config.toml, .env, agent files) may come from a cloned repository or an earlier agent. Until you trust the project, its config can only tighten (no sandbox off, no network, no other model server, no wider permissions), its .env is not loaded, and its agent files cannot unlock protected paths.\nExamples:\n  deputy trust            # the current directory\n  deputy trust ~/src/app\n  deputy trust --list\n  deputy trust --revoke ~/src/app"
    )]
    Trust(TrustArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell)
    #[command(
        after_help = "Examples:\n  deputy completions bash > ~/.local/share/bash-completion/completions/deputy\n  deputy completions zsh > \"${fpath[1]}/_deputy\"\n  deputy completions fish > ~/.config/fish/completions/deputy.fish"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `deputy man | man -l -`
    Man,
    /// Print deputy's version
    Version,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The project directory [default: the workspace (-C), else the current directory]
    pub dir: Option<PathBuf>,
    /// Forget the decision for DIR (its project config then only tightens again)
    #[arg(long, conflicts_with = "list")]
    pub revoke: bool,
    /// List the trusted (and declined) projects
    #[arg(long)]
    pub list: bool,
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

#[cfg(feature = "mock-server")]
#[derive(Debug, Args)]
pub struct MockServerArgs {
    /// Script to play (YAML or JSON) [default: answer every request with "ok"]
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Port; 0 picks a free one
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on (only set 0.0.0.0 inside a container network)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
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

#[derive(Debug, Subcommand)]
pub enum SkillsCommand {
    /// List the skills found (the project's first, then yours)
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one skill as the model gets it when it loads it
    Show {
        /// Skill name
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Check SKILL.md files; prints `path:line:col: message` per problem, exits 2 if any is invalid
    Validate {
        /// SKILL.md files, skill folders or folders of skills [default: every one deputy would find]
        paths: Vec<PathBuf>,
        /// Print a JSON report instead of lines
        #[arg(long)]
        json: bool,
    },
}

/// Flags shared by `run`, `resume` and `chat`.
#[derive(Debug, Args, Clone, Default)]
pub struct SessionArgs {
    /// Model as provider/model, an alias from config, or a model id of the default provider
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Sampling temperature (overrides the agent's)
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Nucleus sampling top_p (overrides the agent's)
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,
    /// Most model turns [default: the agent's steps, else 50]
    #[arg(long, visible_alias = "max-turns", value_name = "N")]
    pub max_steps: Option<u32>,
    /// Wall-clock limit, e.g. 90s, 10m, 1h (a bare number is seconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Most tokens (input + output) for the whole session
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
    /// Most cost in US dollars (needs [pricing] for the model in config)
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// Bash sandbox: workspace-write, read-only, or off (no confinement)
    #[arg(long, value_name = "MODE", value_parser = ["workspace-write", "read-only", "off"])]
    pub sandbox: Option<String>,
    /// Let bash commands use the network
    #[arg(long)]
    pub network: bool,
    /// Grant another directory, writable like the workspace (for bash and the file tools,
    /// protected paths and `.env` files included); repeatable
    #[arg(long, value_name = "DIR")]
    pub add_dir: Vec<PathBuf>,
    /// Allow a tool, or TOOL:PATTERN (e.g. `bash:git push*`), overriding other rules (repeatable)
    #[arg(long, value_name = "RULE")]
    pub allow: Vec<String>,
    /// Ask before TOOL or TOOL:PATTERN (headless runs deny) (repeatable)
    #[arg(long, value_name = "RULE")]
    pub ask: Vec<String>,
    /// Deny TOOL or TOOL:PATTERN (repeatable)
    #[arg(long, value_name = "RULE")]
    pub deny: Vec<String>,
    /// Answer yes to every `ask` permission (rules that deny still deny)
    #[arg(long)]
    pub auto_approve: bool,
    /// Do not write a journal (the session cannot be resumed)
    #[arg(long)]
    pub ephemeral: bool,
    /// When a limit stops the session, end at once instead of asking the model for a summary
    #[arg(long)]
    pub no_summary: bool,
    /// Text added to the end of the agent's system prompt
    #[arg(long, value_name = "TEXT")]
    pub append_system_prompt: Option<String>,
    /// Leave out project instructions (AGENTS.md, CLAUDE.md, … from the repository root down,
    /// and CONFIG_DIR/AGENTS.md)
    #[arg(long)]
    pub no_instructions: bool,
    /// Claude Code's rule syntax, allowed: `Bash(git status:*)`, `Read`, `Edit(src/**)`
    /// (several in one value, comma- or space-separated; repeatable)
    #[arg(long, value_name = "RULES")]
    pub allowed_tools: Vec<String>,
    /// Claude Code's rule syntax, denied: `Bash(rm:*)`, `WebFetch` (a bare tool is not offered)
    #[arg(long, value_name = "RULES")]
    pub disallowed_tools: Vec<String>,
    /// --allow, --ask and --deny in the order they were given (filled after parsing: the last
    /// matching rule wins, so the order matters).
    #[arg(skip)]
    pub rules_in_order: Vec<(deputy_tools::Action, String)>,
}

/// The permission flags of a subcommand in command-line order.
pub fn rules_in_order(sub: &clap::ArgMatches) -> Vec<(deputy_tools::Action, String)> {
    use deputy_tools::Action;
    let mut all: Vec<(usize, Action, String)> = Vec::new();
    for (id, action, claude) in [
        ("allow", Action::Allow, false),
        ("ask", Action::Ask, false),
        ("deny", Action::Deny, false),
        ("allowed_tools", Action::Allow, true),
        ("disallowed_tools", Action::Deny, true),
    ] {
        let (Ok(Some(indices)), Ok(Some(values))) = (
            sub.try_get_raw(id).map(|_| sub.indices_of(id)),
            sub.try_get_many::<String>(id),
        ) else {
            continue;
        };
        for (i, v) in indices.zip(values) {
            if claude {
                for spec in claude_rules(v) {
                    all.push((i, action, spec));
                }
            } else {
                all.push((i, action, v.clone()));
            }
        }
    }
    all.sort_by_key(|(i, _, _)| *i);
    all.into_iter().map(|(_, a, v)| (a, v)).collect()
}

/// Claude Code's `--allowedTools` syntax as deputy's `TOOL:PATTERN` rules: `Bash(git status:*)`
/// is `Bash:git status *` (a prefix), `Edit(src/**)` is `Edit:src/**`, a bare `Read` is `Read`;
/// several may be separated by spaces.
pub fn claude_rules(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in list.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if (c == ' ' || c == ',') && depth == 0 {
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out.into_iter()
        .map(|item| match item.split_once('(') {
            Some((tool, rest)) => {
                let pattern = rest.strip_suffix(')').unwrap_or(rest);
                let pattern = match pattern.strip_suffix(":*") {
                    Some(prefix) => format!("{prefix} *"),
                    None => pattern.to_string(),
                };
                format!("{}:{pattern}", tool.trim())
            }
            None => item,
        })
        .collect()
}

impl Command {
    /// Whether `-q` asked for nothing but the result (warnings included).
    pub fn quiet(&self) -> bool {
        match self {
            Command::Run(a) => a.quiet,
            Command::Resume(a) => a.quiet,
            Command::Review(a) => a.quiet,
            _ => false,
        }
    }

    /// The session flags of commands that run sessions.
    pub fn session_mut(&mut self) -> Option<&mut SessionArgs> {
        match self {
            Command::Run(a) => Some(&mut a.session),
            Command::Resume(a) => Some(&mut a.session),
            Command::Chat(a) => Some(&mut a.session),
            Command::Review(a) => Some(&mut a.session),
            Command::Mcp(a) => Some(&mut a.session),
            Command::Acp(a) => Some(&mut a.session),
            Command::Serve(a) => Some(&mut a.session),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// The final answer on stdout; progress on stderr when it is a terminal
    #[default]
    Text,
    /// One JSON object: session_id, status, result, usage, cost_usd, duration_ms, num_steps, ...
    Json,
    /// Every event as a JSON line, as it happens
    StreamJson,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent to run: a name (`deputy agents list`) or a path to an agent file [default: general]
    #[arg(short, long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// The task. `-` reads it from stdin; piped stdin is appended to it as a block
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// Attach a file to the prompt (repeatable)
    #[arg(short, long, value_name = "PATH")]
    pub file: Vec<std::path::PathBuf>,
    /// How to print the outcome
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output_format: OutputFormat,
    /// The final answer must be JSON valid against this JSON Schema file
    #[arg(long, value_name = "FILE")]
    pub output_schema: Option<std::path::PathBuf>,
    /// Print nothing but the result
    #[arg(short, long)]
    pub quiet: bool,
    /// Show progress on stderr even when it is not a terminal, with the model's text as it streams
    #[arg(short, long)]
    pub verbose: bool,
    /// Continue the last session of this workspace with PROMPT (as `deputy resume last`)
    #[arg(short = 'c', long = "continue")]
    pub continue_last: bool,
    /// Run a custom command (a prompt template from .claude/commands, .deputy/commands, …);
    /// PROMPT is its arguments: `deputy run --command review -- 42`
    #[arg(long, value_name = "NAME", conflicts_with_all = ["continue_last", "file"])]
    pub command: Option<String>,
    /// Work in a git worktree of its own (.deputy/worktrees/NAME, branch deputy/NAME), made
    /// from the current state; the change is committed there, the main tree left as it is.
    /// A name is given as --worktree=NAME (what follows a bare --worktree is the prompt)
    #[arg(
        long,
        value_name = "NAME",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        conflicts_with = "continue_last"
    )]
    pub worktree: Option<String>,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Session id, a unique prefix of one, or `last` (the last session of this workspace)
    pub id: String,
    /// More instructions (default: continue where it stopped)
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// How to print the outcome
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output_format: OutputFormat,
    /// Print nothing but the result
    #[arg(short, long)]
    pub quiet: bool,
    /// Show progress on stderr even when it is not a terminal, with the model's text as it streams
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the sessions of this workspace, newest first
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Every workspace's sessions, and subagent sessions
        #[arg(long)]
        all: bool,
    },
    /// Settle and remove this repository's worktrees whose session is gone (what they hold
    /// is committed on their branch first), and delete journals older than --older-than
    Prune {
        /// Also delete journals of finished sessions older than this age, e.g. 30d, 12h
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<std::time::Duration>,
        /// Say what would be deleted, delete nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a session's events
    Show {
        /// Session id, a unique prefix of one, or `last`
        id: String,
        /// Print the raw JSONL journal
        #[arg(long)]
        json: bool,
    },
}

/// An age: `30d`, `12h`, `90m`, or seconds.
pub fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let secs = match t.strip_suffix('d') {
        Some(d) => d.trim().parse::<f64>().ok().map(|d| d * 86_400.0),
        None => deputy_agent::parse_duration_secs(t),
    };
    secs.filter(|s| s.is_finite() && *s > 0.0 && *s < 1e10)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("`{t}` is not an age; use e.g. 30d, 12h or 90m"))
}

/// `90`, `90s`, `1500ms`, `10m`, `1h` (the same syntax as `timeout` in agent files).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    deputy_agent::parse_duration_secs(s)
        .and_then(deputy_agent::duration_from_secs)
        .ok_or_else(|| {
            format!(
                "`{}` is not a positive duration of at most 30 days; use e.g. 90s, 10m or 1h",
                s.trim()
            )
        })
}

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// Another directory a call's `workspace` may be in, besides -C (repeatable); the client's
    /// declared MCP roots count too
    #[arg(long = "root", value_name = "DIR")]
    pub roots: Vec<std::path::PathBuf>,
    /// Sessions running at once; further calls wait for a place
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_sessions: usize,
}

#[derive(Debug, Args)]
pub struct AcpArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// The agent a new session starts with (the editor may switch: agents are its modes)
    #[arg(short, long, value_name = "NAME")]
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// Address to listen on (a non-loopback address needs DEPUTY_SERVE_TOKENS)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// A directory sessions' workspaces may be in (repeatable; default: -C, the workspace)
    #[arg(long = "root", value_name = "DIR")]
    pub roots: Vec<std::path::PathBuf>,
    /// Sessions running at once; the rest are queued
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_sessions: usize,
    /// Sessions queued or running at once per token
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub sessions_per_token: usize,
    /// Requests a minute per token
    #[arg(long, value_name = "N", default_value_t = 600)]
    pub rate_per_minute: u32,
    /// The largest request body, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Seconds a finished session stays available over the API (its journal stays on disk)
    #[arg(long = "retention", value_name = "SECONDS", default_value_t = 3600)]
    pub retention_s: u64,
    /// Where sessions and the job queue live: `embedded` (this process, journals on disk) or
    /// `postgres://…`, shared by every worker started with it (see "Scaling out" in the README)
    #[arg(
        long,
        value_name = "URL",
        env = "DEPUTY_SERVE_STORE",
        default_value = "embedded",
        hide_env_values = true
    )]
    pub store: String,
    /// Seconds a worker's lease on a running session lasts without a heartbeat; another worker
    /// takes the session over once it runs out (PostgreSQL store)
    #[arg(long = "lease", value_name = "SECONDS", default_value_t = 30.0)]
    pub lease_s: f64,
    /// On SIGTERM or Ctrl-C: seconds the sessions running here get to finish before they are
    /// handed over to another worker (PostgreSQL store) or cancelled (embedded store).
    /// Keep it under the grace period of what stops the process (Kubernetes: 30 s).
    #[arg(long = "drain", value_name = "SECONDS", default_value_t = 20.0)]
    pub drain_s: f64,
    /// An origin whose browser pages may call the API, e.g. https://app.example.com
    /// (repeatable; `*` for any). Requests still need a bearer token
    #[arg(long = "cors", value_name = "ORIGIN")]
    pub cors: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The agent to talk to [default: general]
    #[arg(short, long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Continue a session (id, unique prefix, or `last`: the last of this workspace)
    #[arg(long, value_name = "ID")]
    pub resume: Option<String>,
    /// Continue the last session of this workspace
    #[arg(short = 'c', long = "continue", conflicts_with = "resume")]
    pub continue_last: bool,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewFormat {
    /// A comment for a pull request
    Markdown,
    /// The findings as a JSON array
    Json,
    /// SARIF 2.1.0, for code scanning
    Sarif,
    /// GitHub workflow annotations (`::error file=…`)
    Github,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Compare against this ref (with --head: the change from their merge base to HEAD-REF)
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// The ref that holds the change [default: the working tree]
    #[arg(long, value_name = "REF")]
    pub head: Option<String>,
    /// Review the staged changes (the index)
    #[arg(long)]
    pub staged: bool,
    /// The reviewing agent [default: code-reviewer]
    #[arg(short, long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// The report's format
    #[arg(long, value_enum, default_value_t = ReviewFormat::Markdown)]
    pub format: ReviewFormat,
    /// Exit 4 when a finding is at or above this severity: low, medium, high, critical
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<String>,
    /// Write the report to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Most diff sent to the model, in tokens (about 4 characters each); files past it are left out and reported
    #[arg(long, default_value_t = 30_000, value_name = "N")]
    pub budget_tokens: usize,
    /// Print nothing but the report
    #[arg(short, long)]
    pub quiet: bool,
    /// Show progress on stderr even when it is not a terminal
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    /// Every flag and positional of every command says what it is, in one line.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "deputy", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without a description: {missing:#?}"
        );
    }

    #[test]
    fn claude_rule_syntax() {
        assert_eq!(
            claude_rules("Bash(git status:*) Read,Edit(src/**)"),
            ["Bash:git status *", "Read", "Edit:src/**"]
        );
        assert_eq!(claude_rules("Bash(npm run test)"), ["Bash:npm run test"]);
        assert!(claude_rules("  ").is_empty());
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_age("12h").unwrap().as_secs(), 12 * 3_600);
        assert!(parse_age("0d").is_err());
        assert!(parse_age("soon").is_err());
        assert!(parse_age("1e300d").is_err());
    }
}
