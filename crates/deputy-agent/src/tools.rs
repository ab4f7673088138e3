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
    "bash",
    "read",
    "write",
    "edit",
    "glob",
    "grep",
    "list",
    "task",
    "webfetch",
    "websearch",
    "todowrite",
    "todoread",
    "skill",
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
        "webfetch" | "fetch" | "fetchurl" | "urlfetch" | "readurl" => "webfetch",
        "websearch" | "googlewebsearch" | "searchweb" | "internetsearch" => "websearch",
        "todowrite" | "writetodos" | "updatetodos" | "updateplan" => "todowrite",
        "todoread" | "readtodos" => "todoread",
        _ => return trimmed.to_lowercase(),
    };
    canonical.to_string()
}

/// `mcp__s` covers every tool of server `s`.
fn covers_server(entry: &str, tool: &str) -> bool {
    tool.strip_prefix(entry)
        .is_some_and(|rest| rest.starts_with("__"))
        && !entry["mcp__".len()..].contains("__")
}

/// `*` matches any run of characters; everything else is literal.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| wildcard(tail, &rest[i..]))
        }
    }
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

    /// Whether the (canonical) tool is enabled. An MCP tool `mcp__s__t` is also covered by
    /// `mcp__s` and by patterns such as `mcp__s__*` (the last such entry wins).
    pub fn is_enabled(&self, tool: &str) -> bool {
        if let Some(on) = self.overrides.get(tool) {
            return *on;
        }
        if tool.starts_with("mcp__") {
            let server_wide = self.overrides.iter().rev().find(|(k, _)| {
                k.starts_with("mcp__") && (covers_server(k, tool) || wildcard(k, tool))
            });
            if let Some((_, on)) = server_wide {
                return *on;
            }
        }
        self.default
    }

    /// Whether the agent may use some tool of MCP server `server`: the server is not switched
    /// off as a whole (`mcp__*: false`, `mcp__s: false`) and is enabled by default or named.
    pub fn may_use_mcp_server(&self, server: &str) -> bool {
        self.is_enabled(&format!("mcp__{server}__*")) || self.names_mcp_server(server)
    }

    /// Whether the set names anything of MCP server `server` (a tool, the server, a pattern).
    pub fn names_mcp_server(&self, server: &str) -> bool {
        self.overrides.iter().any(|(k, on)| {
            *on && crate::mcp::mcp_server_of(k).is_some_and(|s| s == server || s.contains('*'))
        })
    }

    /// The built-in tools this set enables, in [`BUILTIN_TOOLS`] order.
    pub fn enabled_builtins(&self) -> Vec<&'static str> {
        BUILTIN_TOOLS
            .iter()
            .copied()
            .filter(|t| self.is_enabled(t))
            .collect()
    }

    /// Names mentioned in the set that deputy does not provide itself (MCP tools among them).
    pub fn unknown(&self) -> Vec<&str> {
        self.overrides
            .keys()
            .map(String::as_str)
            .filter(|t| !is_builtin_tool(t))
            .collect()
    }

    /// The MCP tool names (and `mcp__server` entries) the set enables.
    pub fn mcp_names(&self) -> Vec<&str> {
        self.overrides
            .iter()
            .filter(|(k, on)| **on && k.starts_with("mcp__"))
            .map(|(k, _)| k.as_str())
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
    fn mcp_names_by_server_and_pattern() {
        let set = ToolSet::only(["mcp__github", "mcp__docs__search", "mcp__fs__read_*"]);
        assert!(set.is_enabled("mcp__github__create_issue"));
        assert!(!set.is_enabled("mcp__githubx__create_issue"));
        assert!(set.is_enabled("mcp__docs__search"));
        assert!(!set.is_enabled("mcp__docs__delete"));
        assert!(set.is_enabled("mcp__fs__read_file"));
        assert!(!set.is_enabled("mcp__fs__write_file"));
        assert!(set.names_mcp_server("github") && set.names_mcp_server("fs"));
        assert!(!set.names_mcp_server("other"));
        assert!(set.may_use_mcp_server("docs") && !set.may_use_mcp_server("other"));
        let mut off = ToolSet::all();
        off.disable(["mcp__*"]);
        assert!(!off.may_use_mcp_server("gh") && !off.is_enabled("mcp__gh__x"));
        let mut all = ToolSet::all();
        all.disable(["mcp__fs__*"]);
        assert!(!all.is_enabled("mcp__fs__read"));
        assert!(all.is_enabled("mcp__git__log"));
    }

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
            ("web_fetch", "webfetch"),
            ("WebSearch", "websearch"),
            ("google_web_search", "websearch"),
            ("TodoWrite", "todowrite"),
            ("write_todos", "todowrite"),
            ("todoread", "todoread"),
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
        assert!(set.is_enabled("websearch"));
        assert!(set.unknown().is_empty());
        set.disable(["read_file"]);
        assert!(!set.is_enabled("read"));
        assert_eq!(set.enabled_builtins(), vec!["grep", "websearch"]);
    }
}
