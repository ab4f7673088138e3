//! [`AgentSpec`]: one agent, resolved from whatever format its file was written in.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use crate::error::Diagnostic;
use crate::permission::PermissionRule;
use crate::tools::ToolSet;

/// Where an agent may be used (opencode's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Started directly by a user (`deputy run`, `deputy chat`); not offered to the `task` tool.
    Primary,
    /// Only run on behalf of another agent (`task` tool, MCP).
    Subagent,
    /// Both.
    #[default]
    All,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "primary" => Some(Mode::Primary),
            "subagent" => Some(Mode::Subagent),
            "all" => Some(Mode::All),
            _ => None,
        }
    }

    /// Whether another agent may delegate to this one.
    pub fn usable_as_subagent(self) -> bool {
        matches!(self, Mode::Subagent | Mode::All)
    }
}

/// Where an agent's session works (Claude Code's `isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In the workspace it is given.
    #[default]
    None,
    /// In a git worktree and branch of its own (see deputy-runtime's `worktree`).
    Worktree,
}

impl Isolation {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "worktree" => Some(Isolation::Worktree),
            "none" | "" => Some(Isolation::None),
            _ => None,
        }
    }
}

/// The `model` of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelRef {
    /// `inherit`: use the caller's model (or the configured default).
    Inherit,
    /// `provider/model`, a bare model id, or an alias such as `sonnet` (resolved by config).
    Named {
        /// The part before the first `/`, when there is one.
        provider: Option<String>,
        /// The model id (or alias) itself.
        model: String,
    },
}

/// Model aliases used by Claude Code agent files; config maps them to real model ids.
pub const MODEL_ALIASES: &[&str] = &["sonnet", "opus", "haiku", "fast", "smart"];

impl ModelRef {
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.eq_ignore_ascii_case("inherit") || s.is_empty() {
            return ModelRef::Inherit;
        }
        match s.split_once('/') {
            Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {
                ModelRef::Named {
                    provider: Some(provider.to_string()),
                    model: model.to_string(),
                }
            }
            _ => ModelRef::Named {
                provider: None,
                model: s.to_string(),
            },
        }
    }

    /// Whether this is a bare alias such as `sonnet` that config must resolve.
    pub fn is_alias(&self) -> bool {
        matches!(self, ModelRef::Named { provider: None, model } if MODEL_ALIASES.contains(&model.as_str()))
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Inherit => f.write_str("inherit"),
            ModelRef::Named {
                provider: Some(p),
                model,
            } => write!(f, "{p}/{model}"),
            ModelRef::Named {
                provider: None,
                model,
            } => f.write_str(model),
        }
    }
}

/// An agent, resolved: every alias mapped, every value checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSpec {
    /// `name` from the frontmatter, else the path relative to its agents directory without `.md`.
    pub name: String,
    pub description: Option<String>,
    pub mode: Mode,
    pub model: Option<ModelRef>,
    /// 0.0–2.0.
    pub temperature: Option<f64>,
    /// 0.0–1.0.
    pub top_p: Option<f64>,
    /// How hard the model should think: `minimal`, `low`, `medium` or `high`
    /// (`reasoningEffort`, as opencode writes it).
    pub reasoning_effort: Option<String>,
    /// Extended thinking budget in tokens (`thinking`; `false` or 0 turns it off).
    pub thinking_budget: Option<u32>,
    /// The most model turns one run may take.
    pub max_steps: Option<u32>,
    /// Wall-clock limit for one run.
    #[serde(serialize_with = "ser_duration_secs")]
    pub timeout: Option<Duration>,
    pub tools: ToolSet,
    /// Rules in file order; the last matching rule wins.
    pub permission: Vec<PermissionRule>,
    /// Opt in to network access from the bash sandbox.
    pub network: Option<bool>,
    /// `isolation: worktree`: run in a git worktree of its own.
    pub isolation: Isolation,
    /// `instructions: false`: no project instructions (`AGENTS.md` …) in its prompt.
    pub instructions: Option<bool>,
    /// `skills:` the skills loaded into its prompt up front (Claude Code's key).
    pub skills: Vec<String>,
    /// Not offered to the `task` tool or listed in MCP.
    pub hidden: bool,
    /// Present but switched off.
    pub disable: bool,
    pub color: Option<String>,
    /// The system prompt: the body, or the `prompt:` key (with `{file:…}` resolved).
    pub prompt: String,
    /// The file the agent came from (`None` for agents built in code).
    pub source: Option<PathBuf>,
    /// MCP servers the file declares (`mcpServers`, opencode's `mcp`); their tools are enabled.
    pub mcp_servers: IndexMap<String, crate::mcp::McpServer>,
    /// Keys deputy does not use, kept as written (reported by `validate --strict`).
    pub options: IndexMap<String, serde_json::Value>,
    /// Warnings and notes found while loading (lenient parse, unknown tools, unknown keys).
    pub diagnostics: Vec<Diagnostic>,
}

fn ser_duration_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl AgentSpec {
    /// A minimal agent with every tool enabled: handy for embedding and tests.
    pub fn new(name: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            mode: Mode::All,
            model: None,
            temperature: None,
            top_p: None,
            reasoning_effort: None,
            thinking_budget: None,
            max_steps: None,
            timeout: None,
            tools: ToolSet::all(),
            permission: Vec::new(),
            network: None,
            isolation: Isolation::None,
            instructions: None,
            skills: Vec::new(),
            hidden: false,
            disable: false,
            color: None,
            prompt: prompt.into(),
            source: None,
            mcp_servers: IndexMap::new(),
            options: IndexMap::new(),
            diagnostics: Vec::new(),
        }
    }

    /// Warnings (not notes) found while loading.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == crate::error::Severity::Warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs() {
        assert_eq!(ModelRef::parse("inherit"), ModelRef::Inherit);
        assert_eq!(
            ModelRef::parse("opencode/claude-haiku-4-5"),
            ModelRef::Named {
                provider: Some("opencode".into()),
                model: "claude-haiku-4-5".into()
            }
        );
        assert!(ModelRef::parse("sonnet").is_alias());
        assert!(!ModelRef::parse("claude-4-sonnet").is_alias());
        assert_eq!(ModelRef::parse("a/b/c").to_string(), "a/b/c");
    }
}
