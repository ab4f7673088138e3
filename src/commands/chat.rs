//! `deputy chat`: an interactive session in the terminal.
//!
//! The prompt is rustyline (history in STATE/history, multi-line input with a trailing `\` or
//! Alt-Enter). The answer streams as readable markdown; tool calls show as compact lines (with
//! the diff for edit and write); a spinner counts the seconds while the model thinks; tokens and
//! cost follow each answer. An `ask` permission becomes a question: [y]es once, [a]lways for this
//! session, [n]o (with an optional reason for the model). Ctrl-C cancels the current answer (model
//! and running command) and returns to the prompt; Ctrl-C twice at an empty prompt, or Ctrl-D,
//! exits. When stdin is not a terminal, each line is one prompt and only answers are printed.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deputy_agent::AgentSpec;
use deputy_runtime::{
    Approval, ApprovalRequest, Approver, AutoApprove, DecidedBy, Event, EventKind, Factory,
    Headless, RunSettings, Session, Status, TaskRunner,
};
use futures::future::BoxFuture;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Editor, Helper};
use tokio_util::sync::CancellationToken;

use crate::cli::ChatArgs;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::markdown::Markdown;
use crate::render::{Style, ToolLines, human_ms, human_tokens};
use crate::setup;

/// What the screen is doing, shared by the renderer, the spinner and the approval prompt.
struct Ui {
    style: Style,
    md: Markdown,
    /// Spinner wanted (waiting for the model), and since when.
    spinner: Option<(Instant, &'static str)>,
    /// A spinner frame is on screen (on stderr) and must be cleared before printing.
    spinner_shown: bool,
    /// Tool, warning and subagent lines, as `deputy run` shows them.
    tools: ToolLines,
    /// An approval prompt is on screen: the spinner stays away.
    prompting: bool,
}

type SharedUi = Arc<Mutex<Ui>>;

fn ui_lock(ui: &SharedUi) -> std::sync::MutexGuard<'_, Ui> {
    ui.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ui {
    fn clear_spinner(&mut self) {
        if self.spinner_shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.spinner_shown = false;
        }
    }

    fn print(&mut self, text: &str) {
        self.clear_spinner();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn line(&mut self, text: &str) {
        let pending = self.md.finish();
        self.print(&format!("{pending}{text}\n"));
    }

    fn event(&mut self, e: &Event) {
        let e = &*crate::render::for_terminal(e);
        let nested = self.tools.nested(e);
        let indent = if nested { "    " } else { "" };
        let st = self.style;
        if let Some(line) = self.tools.line(e, st) {
            self.line(&format!("{indent}{line}"));
            if let EventKind::ToolCompleted {
                tool,
                is_error,
                metadata,
                ..
            } = &e.kind
            {
                if !is_error
                    && matches!(tool.as_str(), "write" | "edit")
                    && let Some(diff) = metadata.get("diff").and_then(|d| d.as_str())
                {
                    let text = render_diff(diff, st, indent);
                    self.print(&text);
                }
                if !nested {
                    self.spinner = Some((Instant::now(), "thinking"));
                }
            }
            return;
        }
        match &e.kind {
            EventKind::TurnStarted { .. } if !nested => {
                self.spinner = Some((Instant::now(), "thinking"))
            }
            EventKind::MessageDelta {
                text,
                reasoning: false,
                ..
            } if !nested => {
                self.spinner = None;
                let out = self.md.push(text);
                if !out.is_empty() {
                    self.print(&out);
                }
            }
            EventKind::MessageCompleted { .. } if !nested => {
                let rest = self.md.finish();
                if !rest.is_empty() {
                    self.print(&rest);
                }
            }
            EventKind::ToolRequested { .. } if !nested => {
                self.spinner = Some((Instant::now(), "running"));
            }
            EventKind::SessionFinished { .. } if !nested => self.spinner = None,
            _ => {}
        }
    }
}

/// The diff of an edit or write, coloured, at most 40 lines.
fn render_diff(diff: &str, st: Style, indent: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = diff
        .lines()
        .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
        .collect();
    for l in lines.iter().take(40) {
        let styled = if l.starts_with('+') {
            st.green(l)
        } else if l.starts_with('-') {
            st.red(l)
        } else if l.starts_with("@@") {
            st.cyan(l)
        } else {
            st.dim(l)
        };
        out.push_str(&format!("{indent}    {styled}\n"));
    }
    if lines.len() > 40 {
        out.push_str(&format!(
            "{indent}    {}\n",
            st.dim(&format!("… {} more lines", lines.len() - 40))
        ));
    }
    out
}

/// The spinner: a frame every 100 ms on stderr while the model is working.
fn spawn_spinner(ui: SharedUi) {
    tokio::spawn(async move {
        const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
        let mut i = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut u = ui_lock(&ui);
            if u.prompting || u.md.pending() {
                continue;
            }
            if let Some((since, label)) = u.spinner {
                let line = format!(
                    "\r\x1b[2K{} {label}… {:.1}s",
                    FRAMES[i % FRAMES.len()],
                    since.elapsed().as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{}", u.style.dim(&line));
                let _ = err.flush();
                u.spinner_shown = true;
                i += 1;
            } else {
                u.clear_spinner();
            }
        }
    });
}

/// `ask` permissions, answered at the terminal.
struct TerminalApprover {
    ui: SharedUi,
    /// The current turn's cancellation: Ctrl-C at the question cancels the turn.
    turn: Arc<Mutex<Option<CancellationToken>>>,
}

impl Approver for TerminalApprover {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        let ui = self.ui.clone();
        let turn = self.turn.clone();
        let r = r.clone();
        Box::pin(async move {
            {
                let mut u = ui_lock(&ui);
                u.prompting = true;
                u.clear_spinner();
            }
            let answer = tokio::task::spawn_blocking(move || ask_at_terminal(&r)).await;
            {
                let mut u = ui_lock(&ui);
                u.prompting = false;
            }
            match answer {
                Ok(Some(a)) => a,
                // Ctrl-C at the question: no, and the turn ends.
                Ok(None) | Err(_) => {
                    if let Some(t) = turn.lock().ok().and_then(|t| t.clone()) {
                        t.cancel();
                    }
                    Approval::Deny {
                        reason: Some("cancelled by the user".into()),
                    }
                }
            }
        })
    }

    fn decided_by(&self) -> DecidedBy {
        DecidedBy::User
    }
}

fn ask_at_terminal(r: &ApprovalRequest) -> Option<Approval> {
    let st = Style::detect(std::io::stdout().is_terminal());
    let what = r.subject.clone().unwrap_or_else(|| r.input.to_string());
    let clean = crate::render::clean;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{} {} wants to run {}: {}",
            st.yellow("?"),
            clean(&r.agent),
            st.bold(&clean(&r.tool)),
            clean(&what)
        );
        let _ = writeln!(out, "  {}", st.dim(&format!("({})", clean(&r.reason))));
        let _ = out.flush();
    }
    let mut rl = rustyline::DefaultEditor::new().ok()?;
    let pattern = r.always_pattern();
    loop {
        let line = match rl.readline(&format!(
            "  allow? [y]es once / [a]lways `{pattern}` / [n]o: "
        )) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => return None,
            Err(_) => return None,
        };
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Some(Approval::Once),
            "a" | "always" => return Some(Approval::Always { pattern }),
            "n" | "no" => {
                let reason = rl
                    .readline("  reason for the agent (optional): ")
                    .ok()
                    .filter(|s| !s.trim().is_empty());
                return Some(Approval::Deny {
                    reason: Some(match reason {
                        Some(r) => format!("the user refused: {}", r.trim()),
                        None => "the user refused this call".into(),
                    }),
                });
            }
            _ => continue,
        }
    }
}

/// Multi-line input: a line ending in `\` continues; so does an open ``` block. `/` completes
/// the slash commands, built in and custom.
struct InputHelper {
    commands: Vec<String>,
}

/// The built-in slash commands, for completion.
const BUILT_IN: &[&str] = &[
    "/help",
    "/agents",
    "/agent",
    "/model",
    "/tools",
    "/todos",
    "/cost",
    "/sessions",
    "/clear",
    "/compact",
    "/commands",
    "/exit",
];

impl Validator for InputHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        let fences = input
            .lines()
            .filter(|l| l.trim_start().starts_with("```"))
            .count();
        if input.ends_with('\\') || fences % 2 == 1 {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}

impl rustyline::completion::Completer for InputHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let typed = &line[..pos];
        if !typed.starts_with('/') || typed.contains(' ') {
            return Ok((pos, Vec::new()));
        }
        let found = BUILT_IN
            .iter()
            .map(|s| s.to_string())
            .chain(self.commands.iter().map(|c| format!("/{c}")))
            .filter(|c| c.starts_with(typed))
            .collect();
        Ok((0, found))
    }
}
impl rustyline::hint::Hinter for InputHelper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for InputHelper {}
impl Helper for InputHelper {}

const HELP: &str = "Commands:
  /help            this help
  /agents          the agents available
  /agent NAME      switch to another agent (a new session)
  /model NAME      switch model (provider/model)
  /tools           the tools the agent may use
  /todos           the agent's task list
  /cost            tokens and cost so far
  /sessions        recent sessions (continue one with deputy chat --resume ID)
  /clear           forget the conversation so far
  /compact [FOCUS] fold older turns into a summary now (FOCUS: what it must keep)
  /commands        the custom commands (/NAME ARGS runs one)
  /exit            quit (also Ctrl-D, or Ctrl-C twice)
A line ending in \\ continues on the next line. Ctrl-C stops the current answer.";

struct Chat<'a> {
    ctx: &'a Context,
    factory: Factory,
    settings: RunSettings,
    runner: Arc<TaskRunner>,
    session: Session,
    ui: SharedUi,
    turn: Arc<Mutex<Option<CancellationToken>>>,
    interactive: bool,
    /// Custom commands (`/NAME ARGS`).
    commands: deputy_runtime::slash::CommandSet,
}

impl Chat<'_> {
    async fn new_session(&mut self, agent: AgentSpec) -> Result<(), String> {
        let (mut s, warnings) = setup::open_session(
            &self.factory,
            agent,
            &self.settings,
            self.runner.clone(),
            setup::Open::New,
        )
        .await
        .map_err(|e| e.error.to_string())?;
        if self.interactive {
            // The new session is the top one now: without this its own events would count as
            // a subagent's of the first session, and its answers would not be shown.
            ui_lock(&self.ui).tools = ToolLines::default();
            let ui = self.ui.clone();
            s.set_sink(Arc::new(move |e| ui_lock(&ui).event(e)));
        }
        self.session = s;
        for w in warnings {
            self.note(&format!("⚠ {w}"));
        }
        Ok(())
    }

    fn note(&self, text: &str) {
        if self.interactive {
            let mut u = ui_lock(&self.ui);
            let st = u.style;
            u.line(&st.dim(text));
        } else {
            eprintln!("{text}");
        }
    }

    fn say(&self, text: &str) {
        if self.interactive {
            let mut u = ui_lock(&self.ui);
            u.line(text);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }

    /// One user message → the agent's answer.
    async fn turn(&mut self, prompt: String) {
        let token = CancellationToken::new();
        if let Ok(mut t) = self.turn.lock() {
            *t = Some(token.clone());
        }
        self.session.set_cancel_token(token);
        let outcome = self.session.run(Some(prompt)).await;
        if let Ok(mut t) = self.turn.lock() {
            *t = None;
        }
        let st = ui_lock(&self.ui).style;
        if self.interactive {
            let (usage, cost, _) = self.session.usage();
            let status = match outcome.status {
                Status::Completed => String::new(),
                Status::Cancelled => format!("{} · ", st.yellow("cancelled")),
                s => format!("{} · ", st.red(s.as_str())),
            };
            let cost = cost.map(|c| format!(" · ${c:.4}")).unwrap_or_default();
            let context = match self.session.context_fill() {
                (used, Some(window)) if window > 0 => format!(
                    " · context {}% of {}",
                    (used * 100 / window).min(999),
                    human_tokens(window)
                ),
                _ => String::new(),
            };
            self.note(&format!(
                "─ {status}{} tokens this session{cost}{context} · {}",
                human_tokens(usage.total()),
                human_ms(outcome.duration_ms)
            ));
            if outcome.status == Status::Error {
                self.say(&st.red(&crate::render::clean(&outcome.result)));
            }
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", crate::render::clean(&outcome.result));
            let _ = out.flush();
        }
    }

    /// A slash command. Returns false to quit.
    async fn command(&mut self, line: &str) -> bool {
        let (cmd, arg) = line
            .split_once(' ')
            .map_or((line, ""), |(c, a)| (c, a.trim()));
        match cmd {
            "/exit" | "/quit" => return false,
            "/help" => self.say(HELP),
            "/agents" => {
                let list: Vec<String> = self
                    .ctx
                    .catalog()
                    .agents
                    .iter()
                    .map(|a| {
                        format!(
                            "  {:<24} {}",
                            a.name,
                            a.description
                                .as_deref()
                                .unwrap_or("")
                                .lines()
                                .next()
                                .unwrap_or("")
                        )
                    })
                    .collect();
                self.say(&list.join("\n"));
            }
            "/agent" if !arg.is_empty() => match self.ctx.catalog().resolve(arg) {
                Ok(agent) => {
                    let name = agent.name.clone();
                    match self.new_session(agent).await {
                        Ok(()) => self.note(&format!(
                            "now talking to {name} (session {})",
                            self.session.id()
                        )),
                        Err(e) => self.say(&format!("cannot switch: {e}")),
                    }
                }
                Err(e) => self.say(&e.to_string()),
            },
            "/model" if !arg.is_empty() => {
                let mut settings = self.settings.clone();
                settings.model = Some(arg.to_string());
                match self.factory.client(self.session.agent(), &settings).await {
                    Ok((client, label, _)) => {
                        self.session.set_client(client, label.clone());
                        self.settings = settings;
                        self.note(&format!("model: {label}"));
                    }
                    Err(e) => self.say(&format!("cannot use that model: {e}")),
                }
            }
            "/tools" => self.say(&format!("tools: {}", self.session.tool_names().join(", "))),
            "/todos" => self.say(&deputy_runtime::todo::render(&self.session.todos())),
            "/cost" => {
                let (usage, cost, turns) = self.session.usage();
                self.say(&format!(
                    "{turns} model turns · {} input + {} output tokens{}{}",
                    usage.input_tokens,
                    usage.output_tokens,
                    if usage.estimated { " (estimated)" } else { "" },
                    cost.map(|c| format!(" · ${c:.4}"))
                        .unwrap_or_else(|| " · cost unknown (no [pricing] for this model)".into())
                ));
            }
            "/sessions" => {
                let list = deputy_runtime::journal::state_dir()
                    .map(|s| deputy_runtime::journal::list_sessions(&s))
                    .unwrap_or_default();
                let lines: Vec<String> = list
                    .iter()
                    .filter(|s| s.parent_session_id.is_none())
                    .take(10)
                    .map(|s| {
                        format!(
                            "  {}  {:<10} {:<18} {}",
                            s.id,
                            s.status.map_or("unfinished", Status::as_str),
                            s.agent,
                            s.prompt
                                .lines()
                                .next()
                                .unwrap_or("")
                                .chars()
                                .take(50)
                                .collect::<String>()
                        )
                    })
                    .collect();
                self.say(&if lines.is_empty() {
                    "no sessions yet".to_string()
                } else {
                    lines.join("\n")
                });
            }
            "/clear" => {
                self.session.end_hooks("clear").await;
                self.session.clear();
                self.note("conversation cleared");
            }
            "/compact" => {
                let focus = (!arg.is_empty()).then_some(arg);
                match self.session.compact(focus).await {
                    Ok(r) if r.pruned_outputs == 0 && r.summarized_turns == 0 => {
                        self.note("nothing to compact yet")
                    }
                    Ok(r) => self.note(&format!(
                        "compacted: {} → {} tokens ({} outputs pruned, {} messages summarised)",
                        human_tokens(r.tokens_before),
                        human_tokens(r.tokens_after),
                        r.pruned_outputs,
                        r.summarized_turns
                    )),
                    Err(e) => self.say(&format!("cannot compact: {e}")),
                }
            }
            "/commands" => {
                let list: Vec<String> = self
                    .commands
                    .commands
                    .iter()
                    .map(|c| {
                        format!(
                            "  /{} {}  {}",
                            c.command.name,
                            c.command.argument_hint.as_deref().unwrap_or(""),
                            c.command.description.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                if list.is_empty() {
                    self.say("no custom commands (NAME.md in .deputy/commands, .claude/commands or ~/.claude/commands)");
                } else {
                    self.say(&list.join("\n"));
                }
            }
            _ => match self.commands.get(cmd).cloned() {
                Some(c) => {
                    let (prompt, warnings) = self.session.expand_command(&c, arg).await;
                    for w in warnings {
                        self.say(&format!("⚠ {w}"));
                    }
                    self.turn(prompt).await;
                }
                None => self.say(&format!("unknown command {cmd}\n{HELP}")),
            },
        }
        true
    }
}

/// In a terminal, in a project that brings its own settings (`.deputy/config.toml`, `.env`) and
/// that the user never decided about: ask once whether to trust it, and remember the answer.
pub fn ask_trust_once(global: &crate::cli::GlobalArgs) -> CliResult<()> {
    if !std::io::stdin().is_terminal() {
        return Ok(());
    }
    let workspace = match &global.workspace {
        Some(d) => d.clone(),
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(_) => return Ok(()),
        },
    };
    let brings: Vec<&str> = [".deputy/config.toml", ".env"]
        .into_iter()
        .filter(|f| workspace.join(f).symlink_metadata().is_ok())
        .collect();
    if brings.is_empty() {
        return Ok(());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from);
    let Some(dir) = deputy_runtime::config_dir(home.as_deref()) else {
        return Ok(());
    };
    let mut store = deputy_runtime::TrustStore::load(&dir).map_err(CliError::usage)?;
    if store.state(&workspace).is_some() {
        return Ok(());
    }
    eprintln!(
        "{} has {}. Trusted, these may turn the sandbox off, give commands the network, and send your API key to the model server they name; untrusted, they can only make things stricter.",
        workspace.display(),
        brings.join(" and ")
    );
    let mut rl = rustyline::DefaultEditor::new()
        .map_err(|e| CliError::failure(anyhow::anyhow!("cannot open the terminal: {e}")))?;
    let answer = rl
        .readline("Trust this project? [y/N] ")
        .unwrap_or_default();
    let trust = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    let state = if trust {
        deputy_runtime::TrustState::Trusted
    } else {
        deputy_runtime::TrustState::Declined
    };
    store.set(&workspace, state).map_err(CliError::usage)?;
    store.save().map_err(CliError::usage)?;
    eprintln!(
        "{}",
        if trust {
            "trusted (undo with `deputy trust --revoke`)"
        } else {
            "not trusted; not asked again (trust it later with `deputy trust`)"
        }
    );
    Ok(())
}

pub fn run(ctx: &Context, args: ChatArgs) -> CliResult {
    let interactive = std::io::stdin().is_terminal();
    let style = Style::detect(std::io::stdout().is_terminal());
    // Continuing a session: it runs where it ran (its own workspace), unless -C says otherwise.
    let wanted = match (&args.resume, args.continue_last) {
        (Some(w), _) => Some(w.clone()),
        (None, true) => Some("last".to_string()),
        (None, false) => None,
    };
    let found = match &wanted {
        Some(w) => Some(setup::find_journaled(ctx, w)?),
        None => None,
    };
    let owned_ctx;
    let ctx = match &found {
        Some(f) => {
            owned_ctx = f.ctx.elsewhere(f.ctx.workspace.clone())?;
            &owned_ctx
        }
        None => ctx,
    };
    let settings = setup::settings(&args.session)?;
    let config = setup::load_config(ctx)?;
    let mut factory = setup::factory(ctx, config, &args.session);
    let ui: SharedUi = Arc::new(Mutex::new(Ui {
        style,
        md: Markdown::new(style),
        spinner: None,
        spinner_shown: false,
        tools: ToolLines::default(),
        prompting: false,
    }));
    let turn: Arc<Mutex<Option<CancellationToken>>> = Arc::new(Mutex::new(None));
    factory.approver = if args.session.auto_approve {
        Arc::new(AutoApprove)
    } else if interactive {
        Arc::new(TerminalApprover {
            ui: ui.clone(),
            turn: turn.clone(),
        })
    } else {
        Arc::new(Headless)
    };
    let runner = setup::task_runner(ctx, &factory, &settings)?;
    let rt = setup::runtime()?;
    let agent_name = args.agent.clone();
    let (agent, resume_id) = match found {
        Some(f) => (f.agent, Some(f.id)),
        None => (setup::resolve_agent(ctx, agent_name.as_deref())?, None),
    };
    let (mut session, warnings) = rt.block_on(setup::open_session(
        &factory,
        agent,
        &settings,
        runner.clone(),
        resume_id
            .as_deref()
            .map_or(setup::Open::New, setup::Open::Resume),
    ))?;
    for w in warnings {
        eprintln!("⚠ {w}");
    }
    if interactive {
        let ui = ui.clone();
        session.set_sink(Arc::new(move |e| ui_lock(&ui).event(e)));
    }
    let mut chat = Chat {
        ctx,
        factory,
        settings,
        runner,
        session,
        ui: ui.clone(),
        turn: turn.clone(),
        interactive,
        commands: setup::custom_commands(ctx),
    };
    for w in &chat.commands.warnings {
        eprintln!("⚠ {w}");
    }
    if !interactive {
        return rt.block_on(lines_mode(&mut chat));
    }
    // Ctrl-C during an answer (the terminal is not in raw mode then) cancels the turn. The
    // handler is registered here, before the first prompt: rustyline saves the SIGINT action
    // when a prompt opens and restores it when it closes, so a handler registered later, while a
    // prompt is open, would be undone (and Ctrl-C would then kill deputy).
    let mut sigint = {
        let _enter = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| CliError::failure(anyhow::anyhow!("cannot handle Ctrl-C: {e}")))?
    };
    rt.spawn({
        let turn = turn.clone();
        async move {
            while sigint.recv().await.is_some() {
                if let Some(t) = turn.lock().ok().and_then(|t| t.clone()) {
                    t.cancel();
                }
            }
        }
    });
    {
        let _guard = rt.enter();
        spawn_spinner(ui.clone());
    }
    let st = style;
    {
        let s = &chat.session;
        let model = s.model_label();
        chat.say(&st.dim(&format!(
            "deputy chat · {} · {model} · session {}\n/help for commands, Ctrl-D to quit",
            s.agent().name,
            s.id()
        )));
    }
    let history = deputy_runtime::journal::state_dir().map(|s| s.join("history"));
    let mut rl: Editor<InputHelper, FileHistory> = Editor::new()
        .map_err(|e| CliError::failure(anyhow::anyhow!("cannot open the terminal: {e}")))?;
    rl.set_helper(Some(InputHelper {
        commands: chat.commands.names(),
    }));
    rl.bind_sequence(
        rustyline::KeyEvent(rustyline::KeyCode::Enter, rustyline::Modifiers::ALT),
        rustyline::EventHandler::Simple(rustyline::Cmd::Newline),
    );
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let prompt = if st.color {
        format!("{} ", st.bold(&st.cyan("›")))
    } else {
        "> ".to_string()
    };
    let mut interrupted = false;
    loop {
        match rl.readline(&prompt) {
            Ok(line) => {
                interrupted = false;
                let text = line.replace("\\\n", "\n");
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(text);
                if text.starts_with('/') {
                    if !rt.block_on(chat.command(text)) {
                        break;
                    }
                    continue;
                }
                rt.block_on(chat.turn(text.to_string()));
            }
            Err(ReadlineError::Interrupted) => {
                if interrupted {
                    break;
                }
                interrupted = true;
                chat.note("(Ctrl-C again or Ctrl-D to quit)");
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                return Err(CliError::failure(anyhow::anyhow!("terminal error: {e}")));
            }
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.save_history(h);
    }
    rt.block_on(chat.session.end_hooks("prompt_input_exit"));
    chat.note(&format!(
        "session {} saved; continue it with `deputy chat --resume {}`",
        chat.session.id(),
        chat.session.id()
    ));
    Ok(Exit::Ok)
}

/// stdin is not a terminal: one prompt per line, answers only.
async fn lines_mode(chat: &mut Chat<'_>) -> CliResult {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text.starts_with('/') {
            if !chat.command(text).await {
                break;
            }
            continue;
        }
        chat.turn(text.to_string()).await;
    }
    chat.session.end_hooks("prompt_input_exit").await;
    Ok(Exit::Ok)
}
