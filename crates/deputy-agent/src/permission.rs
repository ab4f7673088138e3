//! The `permission` block of an agent file, as written (opencode's shape).
//!
//! ```yaml
//! permission:
//!   edit: deny                 # one action for every use of a tool
//!   bash:                      # or glob pattern -> action, matched against the command
//!     "*": ask
//!     "git diff*": allow
//! ```
//!
//! This module only reads the rules and keeps them in file order. Matching them (last match
//! wins, compound shell commands, path globs) is the job of `deputy-tools`.

use serde::Serialize;

/// What happens when a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Run the tool without asking.
    Allow,
    /// Ask the user (terminal prompt, MCP elicitation); headless runs treat it as deny.
    Ask,
    /// Refuse, and tell the model why.
    Deny,
}

impl Action {
    /// Parse `allow`, `ask`, `deny` (any case), plus booleans as opencode's older files wrote them.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" | "true" | "yes" => Some(Action::Allow),
            "ask" => Some(Action::Ask),
            "deny" | "false" | "no" => Some(Action::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Ask => "ask",
            Action::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: for `tool` (canonical name, or `*` for every tool), inputs matching `pattern` get
/// `action`. A plain `edit: deny` is the rule `{tool: edit, pattern: "*", action: deny}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionRule {
    pub tool: String,
    pub pattern: String,
    pub action: Action,
}

impl PermissionRule {
    pub fn new(tool: impl Into<String>, pattern: impl Into<String>, action: Action) -> Self {
        Self {
            tool: tool.into(),
            pattern: pattern.into(),
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_actions() {
        assert_eq!(Action::parse("Allow"), Some(Action::Allow));
        assert_eq!(Action::parse(" ask "), Some(Action::Ask));
        assert_eq!(Action::parse("deny"), Some(Action::Deny));
        assert_eq!(Action::parse("maybe"), None);
    }
}
