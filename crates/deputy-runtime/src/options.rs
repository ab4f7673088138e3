//! What a session is given besides the agent and the model: limits, prices, options; and what
//! it gives back, the [`Outcome`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deputy_llm::Usage;
use deputy_tools::{Rule, SandboxPolicy, ToolSettings};
use serde_json::Value;

use crate::approve::{Approver, Headless};
use crate::event::{LimitsInfo, Metrics, Status};

/// Cost in US dollars of a response (provider, model, usage), when a price is known.
pub type Pricing = Arc<dyn Fn(&str, &str, &Usage) -> Option<f64> + Send + Sync>;

/// Limits of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Model turns (default: the agent's `steps`, else 50).
    pub max_steps: u32,
    /// Wall-clock time of the run.
    pub timeout: Option<Duration>,
    /// Input plus output tokens of the whole session.
    pub max_tokens: Option<u64>,
    /// Cost of the whole session (needs a price for the model in config).
    pub max_cost_usd: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 50,
            timeout: None,
            max_tokens: None,
            max_cost_usd: None,
        }
    }
}

impl Limits {
    pub(crate) fn info(&self) -> LimitsInfo {
        LimitsInfo {
            max_steps: self.max_steps,
            timeout_s: self.timeout.map(|d| d.as_secs_f64()),
            max_tokens: self.max_tokens,
            max_cost_usd: self.max_cost_usd,
        }
    }
}

/// How a session keeps its history within the model's context window (`[compaction]` in
/// config).
#[derive(Clone)]
pub struct Compaction {
    /// Make room when needed (default true). Off, a request that does not fit fails.
    pub enabled: bool,
    /// Make room when the next request would pass this share of the window, less the answer's
    /// reserve (default 0.85).
    pub threshold: f64,
    /// Tokens of the most recent history kept as they are, tool outputs included (default:
    /// a quarter of the window).
    pub keep_recent_tokens: Option<u64>,
    /// Tokens kept free for the answer (default: the model's most output tokens, at most a
    /// quarter of the window; 4096 when unknown).
    pub reserve_tokens: Option<u64>,
    /// Another model to write the summaries (`compaction_model`); default the session's.
    pub client: Option<Arc<dyn deputy_llm::ModelClient>>,
    /// The window to assume instead of asking the model client (tests, embedding).
    pub window: Option<deputy_llm::ContextWindow>,
}

impl Default for Compaction {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.85,
            keep_recent_tokens: None,
            reserve_tokens: None,
            client: None,
            window: None,
        }
    }
}

impl std::fmt::Debug for Compaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compaction")
            .field("enabled", &self.enabled)
            .field("threshold", &self.threshold)
            .field("keep_recent_tokens", &self.keep_recent_tokens)
            .field("reserve_tokens", &self.reserve_tokens)
            .field("client", &self.client.as_ref().map(|c| c.describe()))
            .finish()
    }
}

/// Everything a session needs besides the agent and the model.
#[derive(Clone)]
pub struct SessionOptions {
    pub workspace: PathBuf,
    pub limits: Limits,
    pub sandbox: SandboxPolicy,
    pub tool_settings: ToolSettings,
    /// Permission rules from config (applied before the agent's).
    pub config_rules: Vec<Rule>,
    /// Permission rules from flags (applied last).
    pub flag_rules: Vec<Rule>,
    /// Override the agent's temperature / top_p.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Where journals go; `None`: no journal.
    pub state_dir: Option<PathBuf>,
    /// The final answer must be JSON valid against this schema.
    pub output_schema: Option<Value>,
    /// How many times the model is asked to fix an answer that does not match the schema.
    pub schema_retries: u32,
    /// When a limit stops the run, ask the model for a last summary (within the timeout's
    /// grace); `false`: end at once (`--no-summary`).
    pub limit_summary: bool,
    /// Text added to the end of the system prompt (`--append-system-prompt`).
    pub append_system_prompt: Option<String>,
    /// Keeping the history within the context window.
    pub compaction: Compaction,
    pub pricing: Option<Pricing>,
    pub approver: Arc<dyn Approver>,
    /// The `provider/model` label for events (the client knows the real target).
    pub model_label: String,
    pub parent_session_id: Option<String>,
    /// The parent's permissions, for a subagent.
    pub ceiling: Option<deputy_tools::Permissions>,
    /// The parent's sandbox policy, for a subagent: the child's own (its agent's `network`
    /// included) is bounded by it.
    pub sandbox_ceiling: Option<SandboxPolicy>,
    /// Whether the agent's file is trusted (built in, in the user's config, named on the
    /// command line, or in a trusted project). An untrusted one's rules cannot open protected
    /// paths and its `network: true` is ignored.
    pub agent_trusted: bool,
    /// What webfetch and websearch may do (`[webfetch]`, `[websearch]`).
    pub web: deputy_tools::tools::WebSettings,
    /// MCP servers from config (`[mcp.servers.NAME]`), trusted.
    pub mcp_servers: indexmap::IndexMap<String, deputy_agent::McpServer>,
    /// The session tree's MCP connections (a subagent gets its parent's); `None` starts a tree.
    pub mcp_hub: Option<Arc<crate::mcp::McpHub>>,
    /// The worktree the session works in (`isolation: worktree`): named in `session.started`
    /// and the system prompt, its change committed at the end of every run. The session holds
    /// it (and so its lock) while it lives. Set by [`crate::worktree::Worktree::apply`].
    pub worktree: Option<Arc<crate::worktree::Worktree>>,
    /// Which project instructions (`AGENTS.md` …) go into the system prompt.
    pub instructions: crate::instructions::InstructionSettings,
    /// The user's hooks (Claude Code's protocol), run outside the sandbox.
    pub hooks: Arc<crate::hooks::Hooks>,
    /// Which skills the session finds (and offers through the `skill` tool).
    pub skills: crate::skills::SkillSettings,
    /// The editor holding the workspace's files (see [`deputy_tools::Editor`]); a subagent in
    /// the same workspace shares it, one in a worktree does not.
    pub editor: Option<Arc<dyn deputy_tools::Editor>>,
}

impl SessionOptions {
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        Self {
            workspace: workspace.into(),
            limits: Limits::default(),
            sandbox: SandboxPolicy::default(),
            tool_settings: ToolSettings::default(),
            config_rules: Vec::new(),
            flag_rules: Vec::new(),
            temperature: None,
            top_p: None,
            state_dir: None,
            output_schema: None,
            schema_retries: 2,
            limit_summary: true,
            append_system_prompt: None,
            compaction: Compaction::default(),
            pricing: None,
            approver: Arc::new(Headless),
            model_label: String::new(),
            parent_session_id: None,
            ceiling: None,
            sandbox_ceiling: None,
            agent_trusted: true,
            web: Default::default(),
            mcp_servers: indexmap::IndexMap::new(),
            mcp_hub: None,
            worktree: None,
            instructions: Default::default(),
            hooks: Default::default(),
            skills: Default::default(),
            editor: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub session_id: String,
    pub status: Status,
    pub result: String,
    pub structured_output: Option<Value>,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub duration_ms: u64,
    pub num_turns: u32,
    pub files_changed: Vec<String>,
    pub errors: Vec<String>,
    /// What the run warned of (the `warning` events): an instructions file not read, a hook
    /// that failed, a tool the agent cannot have.
    pub warnings: Vec<String>,
    pub metrics: Metrics,
    /// Where the change of a worktree session is (committed at the end of the run).
    pub worktree: Option<crate::worktree::Settled>,
}
