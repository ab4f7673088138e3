//! Tool names and the set of tools an agent enables.
//!
//! Each agent format names tools its own way: opencode uses `bash`/`edit`, Claude Code `Bash`,
//! `MultiEdit`, `LS`, Gemini CLI and Qwen Code `run_shell_command`, `write_file`, `replace`.
//! [`canonical_tool_name`] maps all of them onto deputy's names so one agent file means the same
//! thing everywhere.

use indexmap::IndexMap;
use serde::Serialize;

/// The tools deputy itself provides.
pub const BUILTIN_TOOLS: &[&str] = &[
    "bash", "read", "write", "edit", "glob", "grep", "list", "task",
];

/// deputy's name for a tool name written in any supported format.
///
/// Matching ignores case, `-` and `_`. `mcp__server__tool` names are kept as written. Names deputy
/// does not know are returned lower-cased; [`is_builtin_tool`] tells them apart.
pub fn canonical_tool_name(raw: &str) -> String {
    let trimmed = raw.trim();
    if trimmed.starts_with("mcp__") {
        return trimmed.to_string();
    }
    let key: String = trimmed
        .chars()
        .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    let canonical = match key.as_str() {
        "bash" | "shell" | "runshellcommand" | "shellcommand" | "execute" | "exec" => "bash",
        "read" | "readfile" | "view" | "readmanyfiles" | "cat" => "read",
        "write" | "writefile" | "create" | "createfile" => "write",
        "edit" | "multiedit" | "replace" | "strreplace" | "strreplaceeditor" | "patch"
        | "applypatch" | "editfile" => "edit",
        "glob" | "findfiles" => "glob",
        "grep" | "grepsearch" | "searchfilecontent" | "search" | "rg" | "ripgrep" => "grep",
        "list" | "ls" | "listdirectory" | "listdir" => "list",
        "task" | "agent" | "subagent" | "delegate" => "task",
        _ => return trimmed.to_lowercase(),
    };
    canonical.to_string()
}

/// Whether `name` (already canonical) is one of [`BUILTIN_TOOLS`].
pub fn is_builtin_tool(name: &str) -> bool {
    BUILTIN_TOOLS.contains(&name)
}

/// Which tools an agent enables: a default for every tool plus per-tool overrides.
///
/// An opencode map (`bash: true`, `"*": false`) starts from "all enabled" and overrides; a Claude
/// Code or Gemini list names the only tools enabled. Absent `tools` enables every tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolSet {
    /// Whether a tool not named in `overrides` is enabled.
    pub default: bool,
    /// Canonical tool name → enabled, in file order.
    pub overrides: IndexMap<String, bool>,
}

impl Default for ToolSet {
    fn default() -> Self {
        Self::all()
    }
}

impl ToolSet {
    /// Every tool enabled (an agent without a `tools` key).
    pub fn all() -> Self {
        Self {
            default: true,
            overrides: IndexMap::new(),
        }
    }

    /// Only the named tools enabled (Claude Code / Gemini lists).
    pub fn only<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut overrides = IndexMap::new();
        for name in names {
            overrides.insert(canonical_tool_name(name.as_ref()), true);
        }
        Self {
            default: false,
            overrides,
        }
    }

    /// Whether the (canonical) tool is enabled.
    pub fn is_enabled(&self, tool: &str) -> bool {
        self.overrides.get(tool).copied().unwrap_or(self.default)
    }

    /// The built-in tools this set enables, in [`BUILTIN_TOOLS`] order.
    pub fn enabled_builtins(&self) -> Vec<&'static str> {
        BUILTIN_TOOLS
            .iter()
            .copied()
            .filter(|t| self.is_enabled(t))
            .collect()
    }

    /// Names mentioned in the set that deputy does not provide (MCP tools, `webfetch`, …).
    pub fn unknown(&self) -> Vec<&str> {
        self.overrides
            .keys()
            .map(String::as_str)
            .filter(|t| !is_builtin_tool(t))
            .collect()
    }

    /// Disable the named tools (`disallowedTools`).
    pub fn disable<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            self.overrides
                .insert(canonical_tool_name(name.as_ref()), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for (raw, want) in [
            ("Bash", "bash"),
            ("Read", "read"),
            ("Write", "write"),
            ("Edit", "edit"),
            ("MultiEdit", "edit"),
            ("Glob", "glob"),
            ("Grep", "grep"),
            ("LS", "list"),
            ("Task", "task"),
            ("Agent", "task"),
            ("run_shell_command", "bash"),
            ("write_file", "write"),
            ("read_file", "read"),
            ("replace", "edit"),
            ("grep_search", "grep"),
            ("list_directory", "list"),
            ("search_file_content", "grep"),
            (" WebFetch ", "webfetch"),
            ("mcp__meigen__Generate", "mcp__meigen__Generate"),
        ] {
            assert_eq!(canonical_tool_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn toolset_only_and_disable() {
        let mut set = ToolSet::only(["Read", "Grep", "WebSearch"]);
        assert!(set.is_enabled("read"));
        assert!(!set.is_enabled("bash"));
        assert_eq!(set.unknown(), vec!["websearch"]);
        set.disable(["read_file"]);
        assert!(!set.is_enabled("read"));
        assert_eq!(set.enabled_builtins(), vec!["grep"]);
    }
}
