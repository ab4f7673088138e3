//! A session: one agent at work, with its conversation, its tools, its event outlet and its
//! totals. The loop that drives it lives in `engine.rs` (the run), `turn.rs` (one model call)
//! and `dispatch.rs` (the tool calls of one response).

use std::path::PathBuf;
use std::sync::Arc;

use deputy_agent::AgentSpec;
use deputy_llm::{ModelClient, Usage};
use tokio_util::sync::CancellationToken;

use crate::conversation::Conversation;
use crate::emit::{Emitter, EventSink};
use crate::error::SessionError;
use crate::event::{EventKind, Metrics};
use crate::journal::{self, Journal};
use crate::options::{Limits, SessionOptions};
use crate::prompt;
use crate::rebuild;
use crate::router::{Handler, Router};
use crate::toolbox::Toolbox;

/// Totals over the whole session (every run of it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    pub turns: u32,
    pub usage: Usage,
    pub cost: Option<f64>,
    pub files_changed: Vec<String>,
}

/// The state of the current run (one `run` call).
#[derive(Debug, Default)]
pub(crate) struct RunState {
    pub steps: u32,
    pub deadline: Option<tokio::time::Instant>,
    /// When the limit summary must be done (the deadline plus a grace), if there is a deadline.
    pub summary_deadline: Option<tokio::time::Instant>,
    /// The last tool call and how many times in a row it was made.
    pub doom: Option<(String, u32)>,
    /// Calls running right now (a stop says they may have partly run).
    pub in_flight: Vec<String>,
    pub errors: Vec<String>,
    /// The first run of this session object (`SessionStart` hooks run).
    pub first: bool,
    /// A `Stop` hook already made the model go on in this run.
    pub stop_hook_active: bool,
    /// A skill loaded in this run says it uses only these tools (`allowed-tools`): any other
    /// call is asked about (never allowed by it).
    pub narrowed: Option<(String, Vec<String>)>,
}

/// One agent at work.
pub struct Session {
    pub(crate) id: String,
    pub(crate) agent: AgentSpec,
    pub(crate) client: Arc<dyn ModelClient>,
    pub(crate) opts: SessionOptions,
    pub(crate) toolbox: Toolbox,
    pub(crate) router: Router,
    pub(crate) conversation: Conversation,
    pub(crate) emitter: Emitter,
    pub(crate) cancel: CancellationToken,
    pub(crate) started_emitted: bool,
    pub(crate) resumed: bool,
    /// What a resume found (journal problems) and what setting up found (a tool the agent
    /// names that cannot be offered), told as warnings when the next run starts, so whatever
    /// sink is attached by then sees them.
    pub(crate) notices: Vec<String>,
    /// The project instructions in the system prompt (read once, when the session is made;
    /// a resumed session's prompt is its journal's).
    pub(crate) instructions: crate::instructions::Instructions,
    pub(crate) totals: Totals,
    pub(crate) metrics: Metrics,
    pub(crate) run: RunState,
    /// The context window and the size of the history.
    pub(crate) context: crate::context::ContextState,
    /// The MCP servers this session may use.
    pub(crate) mcp: crate::mcp::McpView,
    /// The task list (`todowrite`).
    pub(crate) todos: crate::todo::TodoList,
    /// What a resumed session's journal left unsettled, for its next run to settle once.
    pub(crate) unsettled: Option<Unsettled>,
}

/// What the last run of a resumed session left: calls without a result, and whether it
/// ended at all.
#[derive(Debug, Default)]
pub(crate) struct Unsettled {
    /// Pending calls that may have started: closed as interrupted. The other pending calls
    /// never started: run (or, when the resume brings new instructions, closed unrun).
    pub begun: std::collections::HashSet<String>,
    /// The last run has no `session.finished`: a final answer it recorded ends the next run.
    pub cut_off: bool,
}

/// What a session can call, set up for `agent`: the built-in tools, the task list (starting
/// from `todos`), the MCP servers it may use, and what could not be given (notices).
struct Tools {
    toolbox: Toolbox,
    router: Router,
    mcp: crate::mcp::McpView,
    todos: crate::todo::TodoList,
    notices: Vec<String>,
}

impl Tools {
    fn new(
        agent: &AgentSpec,
        opts: &SessionOptions,
        todos: Vec<crate::todo::Todo>,
        skills: &Arc<crate::skills::SkillSet>,
    ) -> Result<Tools, SessionError> {
        let toolbox = Toolbox::new(agent, opts)?;
        let todos: crate::todo::TodoList = Arc::new(std::sync::Mutex::new(todos));
        let mut handlers = toolbox.handlers();
        let perms = toolbox.permissions();
        let on = |name: &str| agent.tools.is_enabled(name) && !perms.tool_denied(name);
        if on("todowrite") {
            handlers.push(Arc::new(crate::todo::TodoWrite {
                list: todos.clone(),
            }));
        }
        if on("todoread") {
            handlers.push(Arc::new(crate::todo::TodoRead {
                list: todos.clone(),
            }));
        }
        if on("skill") && !skills.is_empty() {
            handlers.push(Arc::new(crate::skills::SkillTool {
                set: skills.clone(),
            }));
        }
        let mcp = crate::mcp::McpView::new(
            agent,
            &opts.mcp_servers,
            opts.mcp_hub.clone(),
            opts.agent_trusted,
            &opts.workspace,
        );
        Ok(Tools {
            notices: toolbox.notices.clone(),
            toolbox,
            router: Router::new(handlers),
            mcp,
            todos,
        })
    }
}

impl Session {
    /// A new session of `agent`, with a fresh id and journal.
    pub fn new(
        agent: AgentSpec,
        client: Arc<dyn ModelClient>,
        opts: SessionOptions,
    ) -> Result<Session, SessionError> {
        Session::open_new(None, agent, client, opts)
    }

    /// A new session with the id `id`, chosen beforehand (a server names a session when it
    /// queues it). Refused if a journal of that id exists here.
    pub fn named(
        id: &str,
        agent: AgentSpec,
        client: Arc<dyn ModelClient>,
        opts: SessionOptions,
    ) -> Result<Session, SessionError> {
        Session::open_new(Some(id), agent, client, opts)
    }

    fn open_new(
        id: Option<&str>,
        agent: AgentSpec,
        client: Arc<dyn ModelClient>,
        opts: SessionOptions,
    ) -> Result<Session, SessionError> {
        let (skills, opts) = with_skills(opts);
        let (id, journal) = match (&opts.state_dir, id) {
            (Some(state), None) => {
                let (id, j) = Journal::create(state)?;
                (id, Some(j))
            }
            (Some(state), Some(id)) => (id.to_string(), Some(Journal::create_named(state, id)?)),
            (None, id) => (
                id.map_or_else(journal::new_session_id, str::to_string),
                None,
            ),
        };
        let Tools {
            toolbox,
            router,
            mcp,
            todos,
            notices: setup_notices,
        } = Tools::new(&agent, &opts, Vec::new(), &skills)?;
        let mut instructions = if agent.instructions == Some(false) {
            Default::default()
        } else {
            crate::instructions::load(&opts.workspace, &opts.instructions)
        };
        // Skills the agent preloads go with the instructions, after them.
        let (preloaded, missing) = crate::skills::preload(&skills, &agent.skills);
        if !preloaded.is_empty() {
            if !instructions.section.is_empty() {
                instructions.section.push('\n');
            }
            instructions.section.push_str(&preloaded);
        }
        let mut notices = setup_notices;
        notices.extend(instructions.warnings.iter().cloned());
        notices.extend(skills.warnings.iter().cloned());
        notices.extend(missing);
        let mut s = Session {
            emitter: Emitter::new(&id, journal, 0),
            id,
            conversation: Conversation::new(""),
            agent,
            client,
            opts,
            toolbox,
            router,
            cancel: CancellationToken::new(),
            started_emitted: false,
            resumed: false,
            notices,
            instructions,
            totals: Totals::default(),
            metrics: Metrics::default(),
            run: Default::default(),
            context: Default::default(),
            mcp,
            todos,
            unsettled: None,
        };
        let system = s.build_system_prompt();
        s.conversation.set_system(system);
        Ok(s)
    }

    /// The worktree the session works in (`isolation: worktree`).
    pub fn worktree(&self) -> Option<&Arc<crate::worktree::Worktree>> {
        self.opts.worktree.as_ref()
    }

    /// Continue session `id` from its journal in `opts.state_dir`. Calls that started and never
    /// completed are not run again: when the run starts, the model is told they were
    /// interrupted.
    pub fn resume(
        id: &str,
        agent: AgentSpec,
        client: Arc<dyn ModelClient>,
        opts: SessionOptions,
    ) -> Result<Session, SessionError> {
        let state = opts.state_dir.clone().ok_or(SessionError::NoStateDir)?;
        let (skills, opts) = with_skills(opts);
        let path = journal::session_dir(&state, id).join("events.jsonl");
        let (events, mut warnings) = journal::read_events(&path)?;
        let rebuilt = rebuild::rebuild(&events).map_err(|e| match e {
            journal::JournalError::Empty(_) => journal::JournalError::Empty(path.clone()),
            other => other,
        })?;
        warnings.extend(rebuilt.warnings.iter().cloned());
        let Tools {
            toolbox,
            router,
            mcp,
            todos,
            notices: setup_notices,
        } = Tools::new(&agent, &opts, rebuilt.todos.clone(), &skills)?;
        let journal = Journal::open(&state, id)?;
        Ok(Session {
            emitter: Emitter::new(id, Some(journal), rebuilt.next_seq),
            id: id.to_string(),
            conversation: rebuilt.conversation,
            agent,
            client,
            opts,
            toolbox,
            router,
            cancel: CancellationToken::new(),
            started_emitted: false,
            resumed: true,
            notices: warnings.into_iter().chain(setup_notices).collect(),
            instructions: Default::default(),
            totals: Totals {
                turns: rebuilt.turns,
                usage: rebuilt.usage,
                cost: rebuilt.cost_usd,
                files_changed: rebuilt.files_changed,
            },
            metrics: Metrics::default(),
            run: Default::default(),
            context: Default::default(),
            mcp,
            todos,
            unsettled: Some(Unsettled {
                begun: rebuilt.begun.into_iter().collect(),
                cut_off: rebuilt.cut_off,
            }),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn agent(&self) -> &AgentSpec {
        &self.agent
    }

    /// The tools offered to the model.
    pub fn tool_names(&self) -> Vec<String> {
        let perms = self.toolbox.permissions();
        self.router
            .summaries(&perms)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    pub fn system_prompt(&self) -> &str {
        self.conversation.system()
    }

    /// The conversation so far (what the next request would carry).
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// The `provider/model` the session uses.
    pub fn model_label(&self) -> String {
        if self.opts.model_label.is_empty() {
            self.client.describe()
        } else {
            self.opts.model_label.clone()
        }
    }

    pub fn journal_path(&self) -> Option<PathBuf> {
        self.emitter.journal_path()
    }

    /// Send every event to `sink` too. The sink runs on a thread of its own, in order; a run
    /// returns only once the sink has been handed all of that run's events.
    pub fn set_sink(&mut self, sink: EventSink) {
        self.emitter.set_sink(sink);
    }

    /// Record every event (but deltas) in `mirror` too, before emitting returns; subagents
    /// started from now on share it.
    pub fn set_mirror(&mut self, mirror: crate::emit::EventMirror) {
        self.emitter.set_mirror(mirror);
    }

    /// Send events to the journal only (an own sink ends once it has what it was sent).
    pub fn clear_sink(&mut self) {
        self.emitter.clear_sink();
    }

    /// Send this session's events wherever `parent` sends its own (a subagent's).
    pub(crate) fn forward_events_to(&mut self, parent: &Emitter) {
        self.emitter.forward_to(parent);
    }

    /// Cancelling this token stops the session at once (status `cancelled`).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Use this token for cancellation (a parent's child token, a front-end's Ctrl-C).
    pub fn set_cancel_token(&mut self, token: CancellationToken) {
        self.cancel = token;
    }

    pub fn limits(&self) -> Limits {
        self.opts.limits.clone()
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.opts.limits = limits;
    }

    /// The prompt the next request would carry, in tokens (estimated), and the context window
    /// when known: how full the context is.
    pub fn context_fill(&mut self) -> (u64, Option<u64>) {
        let specs = self.router.specs(&self.toolbox.permissions());
        let estimate = self.context_estimate(&specs);
        (estimate, self.context.window_now().map(|w| w.tokens))
    }

    /// Totals so far: usage, cost, model turns.
    pub fn usage(&self) -> (Usage, Option<f64>, u32) {
        (self.totals.usage, self.totals.cost, self.totals.turns)
    }

    /// Talk to another model from now on (`/model` in chat); journaled.
    pub fn set_client(&mut self, client: Arc<dyn ModelClient>, label: String) {
        self.client = client;
        self.opts.model_label = label;
        // Another model, another window.
        self.context = Default::default();
        self.emit(EventKind::ModelChanged {
            model: self.model_label(),
        });
    }

    /// Forget the conversation, keeping the system prompt (`/clear` in chat); journaled, so a
    /// resume does not bring it back.
    pub fn clear(&mut self) {
        self.conversation.clear();
        self.context.invalidate();
        self.run.doom = None;
        self.emit(EventKind::ConversationCleared {});
    }

    /// The task list as the agent last wrote it.
    pub fn todos(&self) -> Vec<crate::todo::Todo> {
        self.todos.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The permission rules in force (a subagent's ceiling).
    pub fn permissions(&self) -> deputy_tools::Permissions {
        self.toolbox.permissions()
    }

    /// Offer another tool (the `task` tool, a library user's own). The system prompt's tool
    /// list follows, unless the session was resumed (its prompt is the journal's).
    pub fn add_handler(&mut self, handler: Arc<dyn Handler>) {
        self.router.add(handler);
        if !self.resumed && self.conversation.is_empty() {
            let system = self.build_system_prompt();
            self.conversation.set_system(system);
        }
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        self.emitter.emit(kind);
    }

    /// The system prompt: the preamble (workspace, date, OS, tools, sandbox) and the agent's.
    fn build_system_prompt(&self) -> String {
        let perms = self.toolbox.permissions();
        let tools: Vec<String> = self
            .router
            .summaries(&perms)
            .into_iter()
            .map(|(name, summary)| format!("- {name}: {summary}"))
            .collect();
        let tools = if tools.is_empty() {
            "(none: answer from what you know and what the user gives you)".to_string()
        } else {
            tools.join("\n")
        };
        let policy = self.toolbox.policy();
        let mut sandbox = match self.toolbox.sandbox.as_str() {
            "bwrap" | "landlock" => format!(
                "Shell commands run in a sandbox ({}): {}, {}, and no secrets in the environment.",
                self.toolbox.sandbox,
                if policy.mode == deputy_tools::SandboxMode::ReadOnly {
                    "nothing is writable but a private temporary directory"
                } else {
                    "only the workspace is writable (its .git is read-only)"
                },
                if policy.network {
                    "with network access"
                } else {
                    "no network"
                },
            ),
            "none" => {
                "Shell commands run without a sandbox, with the user's full access: be careful."
                    .to_string()
            }
            _ => "There is no shell.".to_string(),
        };
        if self.toolbox.sandbox == "landlock"
            && policy.mode == deputy_tools::SandboxMode::WorkspaceWrite
        {
            sandbox.push_str(" A shell command cannot create a new file or directory directly in a directory that holds a protected entry (usually the workspace root, beside .git): create such files with the write tool.");
        }
        let workspace = self
            .toolbox
            .ctx
            .workspace
            .canonical_root()
            .display()
            .to_string();
        let granted: Vec<String> = self
            .toolbox
            .ctx
            .workspace
            .granted()
            .map(|d| format!("`{}`", d.display()))
            .collect();
        let paths = if granted.is_empty() {
            "Paths are relative to the workspace root; nothing outside the workspace can be read or written.".to_string()
        } else {
            format!(
                "Paths are relative to the workspace root. The user also granted these directories, which you may read and write by their absolute paths, as the workspace: {}. Nothing else outside the workspace can be read or written.",
                granted.join(", ")
            )
        };
        let preamble = prompt::render(
            prompt::PREAMBLE,
            &[
                ("agent", &self.agent.name),
                ("workspace", &workspace),
                ("paths", &paths),
                ("date", &prompt::today()),
                ("os", &prompt::os_name()),
                ("tools", &tools),
                ("sandbox", &sandbox),
            ],
        );
        let mut prompt = if self.agent.prompt.trim().is_empty() {
            preamble
        } else {
            format!("{preamble}\n---\n\n{}", self.agent.prompt)
        };
        if !self.instructions.section.is_empty() {
            prompt.push_str("\n\n");
            prompt.push_str(&self.instructions.section);
        }
        if let Some(w) = &self.opts.worktree {
            prompt.push_str("\n\n");
            prompt.push_str(&w.record().prompt_note());
        }
        if let Some(extra) = self.opts.append_system_prompt.as_deref()
            && !extra.trim().is_empty()
        {
            prompt.push_str("\n\n");
            prompt.push_str(extra.trim());
        }
        prompt
    }
}

/// The skills `opts` finds, and `opts` with the user's skill folders readable in the sandbox
/// (their scripts run there; nothing of them is writable).
fn with_skills(mut opts: SessionOptions) -> (Arc<crate::skills::SkillSet>, SessionOptions) {
    let skills = crate::skills::discover(&opts.workspace, &opts.skills);
    opts.sandbox.read_dirs.extend(skills.user_folders());
    (Arc::new(skills), opts)
}
