//! Agent files for deputy.
//!
//! An agent is a markdown file: YAML frontmatter (`mode`, `model`, `temperature`, `tools`,
//! `permission`, …) and a body that is the system prompt. This crate turns such a file into an
//! [`AgentSpec`], whichever tool it was written for (opencode, Claude Code, Qwen Code, Gemini
//! CLI), and finds agents on disk ([`Catalog`]).
//!
//! It is for: splitting frontmatter, parsing YAML safely (budgets, size cap, no panics), mapping
//! every format's field names and tool names onto one spec, validating values with exact
//! positions, and discovery with precedence.
//!
//! It is not for: evaluating permissions (deputy-tools), resolving model aliases or providers
//! (deputy-llm), or running anything (deputy-runtime).
//!
//! ```
//! let text = "---\nname: helper\nmode: subagent\ntools: Read, Grep\n---\nYou help.";
//! let opts = deputy_agent::LoadOptions::default();
//! let loaded = deputy_agent::parse_with(text, "helper.md".as_ref(), &opts).unwrap();
//! let deputy_agent::Loaded::Agent(spec) = loaded else { unreachable!() };
//! assert_eq!(spec.tools.enabled_builtins(), vec!["read", "grep"]);
//! ```

mod command;
mod discovery;
mod error;
pub mod frontmatter;
mod lenient;
mod load;
pub mod mcp;
mod permission;
mod skill;
mod spec;
mod tools;

pub use command::{CommandSpec, load_command, parse_command, valid_command_name};
pub use discovery::{Builtin, Catalog, DiscoveryOptions, PROJECT_AGENT_DIRS, closest};
pub use error::{AgentError, Diagnostic, Severity};
pub use load::{
    LoadOptions, Loaded, MAX_AGENT_FILE_BYTES, MAX_DURATION_SECS, duration_from_secs, load_file,
    load_file_with, parse_duration_secs, parse_with,
};
pub use mcp::{McpServer, McpTransport, NumberUnit, mcp_server_of};
pub use permission::{Action, PermissionRule, parse_permission};
pub use skill::{
    MAX_SKILL_DESCRIPTION, MAX_SKILL_NAME, Skill, load_skill, parse_skill, valid_skill_name,
};
pub use spec::{AgentSpec, Isolation, MODEL_ALIASES, Mode, ModelRef};
pub use tools::{BUILTIN_TOOLS, ToolSet, canonical_tool_name, is_builtin_tool};
