//! The event stream: everything observable about a session, as one serde type.
//!
//! The JSONL output of `deputy run --output-format stream-json`, the terminal renderer, MCP
//! progress notifications and the session journal all consume these events; nothing renders
//! from anywhere else. Each event is one JSON object with a `type` (`session.started`,
//! `tool.completed`, …), the schema version `v`, the `session_id` it belongs to, a sequence
//! number and a timestamp. Names and fields are stable within a schema version; the schema is
//! snapshot-tested so a change is always deliberate.

use deputy_llm::{ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema version of every event.
pub const SCHEMA_VERSION: u32 = 1;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version.
    pub v: u32,
    /// The session this event belongs to (a subagent's events carry the subagent's id).
    pub session_id: String,
    /// Order within the session's stream, from 0.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The agent gave its final answer.
    Completed,
    /// The step limit stopped it (after a last summary from the model).
    MaxSteps,
    /// The wall-clock limit stopped it.
    Timeout,
    /// The token or cost budget stopped it.
    Budget,
    /// A required permission was refused and the session could not go on.
    Denied,
    /// SIGINT / SIGTERM, or the caller cancelled.
    Cancelled,
    /// The model could not be reached, the model's output was unusable, or deputy failed.
    Error,
}

impl Status {
    /// Every status, in the order of the schema.
    pub const ALL: [Status; 7] = [
        Status::Completed,
        Status::MaxSteps,
        Status::Timeout,
        Status::Budget,
        Status::Denied,
        Status::Cancelled,
        Status::Error,
    ];

    /// Their names, as [`Status::as_str`] gives them.
    pub const ALL_NAMES: [&'static str; 7] = {
        let mut names = [""; 7];
        let mut i = 0;
        while i < names.len() {
            names[i] = Status::ALL[i].as_str();
            i += 1;
        }
        names
    };

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::MaxSteps => "max_steps",
            Status::Timeout => "timeout",
            Status::Budget => "budget",
            Status::Denied => "denied",
            Status::Cancelled => "cancelled",
            Status::Error => "error",
        }
    }

    /// Whether a limit ended the session.
    pub fn is_limit(self) -> bool {
        matches!(self, Status::MaxSteps | Status::Timeout | Status::Budget)
    }
}

/// Who decided a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// A permission rule (`allow` or `deny`).
    Rule,
    /// The user, at an approval prompt (terminal or MCP client).
    User,
    /// An `ask` rule in a run with nobody to ask.
    Headless,
    /// `--auto-approve`.
    AutoApprove,
    /// A guard of deputy itself (doom loop, invalid arguments, unknown tool, path outside).
    Guard,
    /// A `PreToolUse` hook of the user's.
    Hook,
}

/// The payload of an [`Event`], tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// The session began (or resumed).
    #[serde(rename = "session.started")]
    SessionStarted {
        agent: String,
        /// The agent file, when it came from one.
        agent_source: Option<String>,
        /// `provider/model`.
        model: String,
        workspace: String,
        /// The tools offered to the model.
        tools: Vec<String>,
        sandbox: String,
        /// The full system prompt, so the conversation can be rebuilt from the journal.
        system_prompt: String,
        parent_session_id: Option<String>,
        /// True when this continues an earlier session.
        resumed: bool,
        /// The limits in force.
        limits: LimitsInfo,
        /// This process records `tool.started` before each call runs, so a resume can tell a
        /// call that never started (false in journals written before it did).
        #[serde(default)]
        records_starts: bool,
        /// The git worktree the session works in (`isolation: worktree`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worktree: Option<crate::worktree::Record>,
        /// The project instructions in the system prompt (`AGENTS.md` …), in prompt order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        instructions: Vec<crate::instructions::InstructionSource>,
    },
    /// One hook ran (Claude Code's protocol): what it decided, how it ended.
    #[serde(rename = "hook.completed")]
    HookCompleted {
        /// `PreToolUse`, `Stop`, …
        hook_event: String,
        matcher: String,
        command: String,
        /// `None`: killed at its timeout, or it could not start.
        exit_code: Option<i32>,
        /// `allow`, `ask` or `block`, when it said one.
        decision: Option<String>,
        timed_out: bool,
        duration_ms: u64,
    },
    /// A user message (the task, or more instructions on resume).
    #[serde(rename = "user.message")]
    UserMessage { text: String },
    /// A model turn begins.
    #[serde(rename = "turn.started")]
    TurnStarted { turn: u32 },
    /// A piece of streamed text (only in `stream-json` output; not journaled).
    #[serde(rename = "message.delta")]
    MessageDelta {
        turn: u32,
        text: String,
        /// True for reasoning ("thinking") text, which is never part of the answer.
        reasoning: bool,
    },
    /// The model's whole message for the turn.
    #[serde(rename = "message.completed")]
    MessageCompleted {
        turn: u32,
        text: String,
        reasoning: Option<String>,
        tool_calls: Vec<ToolCall>,
        /// What the provider's protocol needs back unchanged (thinking blocks with their
        /// signatures, encrypted reasoning items), journaled so a resume sends it again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        carried: Option<deputy_llm::Carried>,
    },
    /// The model asked for a tool call.
    #[serde(rename = "tool.requested")]
    ToolRequested {
        turn: u32,
        call_id: String,
        tool: String,
        input: Value,
    },
    /// Whether the call may run, and who decided.
    #[serde(rename = "tool.decided")]
    ToolDecided {
        call_id: String,
        tool: String,
        allowed: bool,
        by: DecidedBy,
        reason: Option<String>,
    },
    /// The call is about to run: recorded before it starts, so a call without it never
    /// started (a resume runs it; one with it and no result was interrupted, never run again).
    #[serde(rename = "tool.started")]
    ToolStarted { call_id: String, tool: String },
    /// The call's result (also for denied calls: the result is the denial).
    #[serde(rename = "tool.completed")]
    ToolCompleted {
        call_id: String,
        tool: String,
        is_error: bool,
        /// What the model reads.
        output: String,
        /// Structured details (exit code, diff, full output, …).
        metadata: Value,
        duration_ms: u64,
    },
    /// A model turn ended.
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        turn: u32,
        usage: Usage,
        cost_usd: Option<f64>,
        provider: String,
        model: String,
        finish_reason: String,
        /// Time to the first token, and the whole model call.
        ttft_ms: Option<u64>,
        model_ms: u64,
        retries: u32,
        /// The prompt this request carried, in tokens (the server's count, else deputy's
        /// estimate), and the model's context window, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_tokens: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_window: Option<u64>,
    },
    /// A subagent began (emitted in the parent's stream; the child's own events follow with the
    /// child's session id).
    #[serde(rename = "subagent.started")]
    SubagentStarted {
        child_session_id: String,
        agent: String,
        description: String,
        call_id: String,
    },
    #[serde(rename = "subagent.finished")]
    SubagentFinished {
        child_session_id: String,
        agent: String,
        status: Status,
        result: String,
        call_id: String,
    },
    /// Something the user should know that did not stop the session.
    #[serde(rename = "warning")]
    Warning { message: String },
    /// Something a command wrote that was not carried into the workspace (under a layered
    /// sandbox, where a command's changes are applied when it ends): a protected entry, a git
    /// repository by its content, a device. The command's other changes were applied.
    #[serde(rename = "write.refused")]
    WriteRefused {
        call_id: String,
        /// Workspace-relative, `/`-separated.
        path: String,
        reason: String,
    },
    /// The session's task list was written (`todowrite`): the whole list as it now is.
    #[serde(rename = "todo.updated")]
    TodoUpdated { todos: Vec<crate::todo::Todo> },
    /// The conversation was forgotten (`/clear`): the next request starts from the system
    /// prompt again.
    #[serde(rename = "conversation.cleared")]
    ConversationCleared {},
    /// The history was made smaller to fit the context window: old tool outputs pruned to a
    /// stub, then (when that was not enough) older turns folded into a summary. A resume
    /// replays it, so it continues from the compacted history.
    #[serde(rename = "context.compacted")]
    ContextCompacted {
        trigger: CompactTrigger,
        /// The prompt before and after, in tokens (estimates).
        tokens_before: u64,
        tokens_after: u64,
        /// How many tool outputs were replaced by a stub.
        pruned_outputs: u32,
        /// How many messages were folded into the summary.
        summarized_turns: u32,
        /// The window it was made to fit.
        context_window: u64,
        /// The calls whose outputs were pruned.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pruned: Vec<String>,
        /// The summary that replaced messages `replaced[0]..replaced[1]` of the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaced: Option<[usize; 2]>,
        /// What the summary request spent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The session talks to another model from now on (`/model` in chat).
    #[serde(rename = "model.changed")]
    ModelChanged {
        /// `provider/model`.
        model: String,
    },
    /// The session ended.
    #[serde(rename = "session.finished")]
    SessionFinished {
        status: Status,
        /// The final answer (or the summary written when a limit stopped the session).
        result: String,
        /// The final answer parsed as JSON, when an output schema was given.
        structured_output: Option<Value>,
        usage: Usage,
        cost_usd: Option<f64>,
        duration_ms: u64,
        num_turns: u32,
        files_changed: Vec<String>,
        errors: Vec<String>,
        metrics: Metrics,
        /// A worktree session's change: the commit on its branch (`isolation: worktree`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worktree: Option<crate::worktree::Settled>,
    },
}

impl EventKind {
    /// The `type` of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::SessionStarted { .. } => "session.started",
            EventKind::UserMessage { .. } => "user.message",
            EventKind::TurnStarted { .. } => "turn.started",
            EventKind::MessageDelta { .. } => "message.delta",
            EventKind::MessageCompleted { .. } => "message.completed",
            EventKind::ToolRequested { .. } => "tool.requested",
            EventKind::ToolDecided { .. } => "tool.decided",
            EventKind::ToolStarted { .. } => "tool.started",
            EventKind::ToolCompleted { .. } => "tool.completed",
            EventKind::TurnCompleted { .. } => "turn.completed",
            EventKind::SubagentStarted { .. } => "subagent.started",
            EventKind::SubagentFinished { .. } => "subagent.finished",
            EventKind::Warning { .. } => "warning",
            EventKind::HookCompleted { .. } => "hook.completed",
            EventKind::WriteRefused { .. } => "write.refused",
            EventKind::TodoUpdated { .. } => "todo.updated",
            EventKind::ConversationCleared {} => "conversation.cleared",
            EventKind::ContextCompacted { .. } => "context.compacted",
            EventKind::ModelChanged { .. } => "model.changed",
            EventKind::SessionFinished { .. } => "session.finished",
        }
    }
}

/// What made a session compact its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactTrigger {
    /// The next request would have passed the threshold.
    Threshold,
    /// The server said the request did not fit.
    Overflow,
    /// Asked for (`/compact` in chat, or a library call).
    Manual,
}

impl CompactTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            CompactTrigger::Threshold => "threshold",
            CompactTrigger::Overflow => "overflow",
            CompactTrigger::Manual => "manual",
        }
    }
}

/// The limits of a session, as reported in `session.started`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitsInfo {
    pub max_steps: u32,
    pub timeout_s: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_cost_usd: Option<f64>,
}

/// Per-session measurements, in `session.finished` and the `json` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Per model turn: time to first token and total, in milliseconds.
    pub model_turns: Vec<TurnMetric>,
    /// Per tool call: name and duration in milliseconds.
    pub tool_calls: Vec<ToolMetric>,
    /// Model request retries, in all.
    pub retries: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnMetric {
    pub turn: u32,
    pub ttft_ms: Option<u64>,
    pub total_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolMetric {
    pub tool: String,
    pub duration_ms: u64,
    pub is_error: bool,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
