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

/// Read opencode's `permission` shape — one action, or a map of tool to an action or to a map
/// of pattern to action — into rules in file order. This one reader serves agent files and
/// `[permission]` in config alike. `Err` lists every value that is not an action, each with
/// the place it is at (`bash`, `bash."git *"`); the rules that were fine are still returned.
pub fn parse_permission(v: &serde_json::Value) -> (Vec<PermissionRule>, Vec<String>) {
    use serde_json::Value;
    let action = |val: &Value| match val {
        Value::String(s) => Action::parse(s),
        Value::Bool(true) => Some(Action::Allow),
        Value::Bool(false) => Some(Action::Deny),
        _ => None,
    };
    let show = |v: &Value| match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    match v {
        Value::Null => {}
        Value::String(_) | Value::Bool(_) => match action(v) {
            Some(a) => rules.push(PermissionRule::new("*", "*", a)),
            None => errors.push(format!("must be allow, ask or deny, found {}", show(v))),
        },
        Value::Object(map) => {
            for (tool, val) in map {
                let tool_name = if tool.trim() == "*" {
                    "*".to_string()
                } else {
                    crate::tools::canonical_tool_name(tool)
                };
                match val {
                    Value::Object(patterns) => {
                        for (pattern, a) in patterns {
                            match action(a) {
                                Some(a) => rules.push(PermissionRule::new(&tool_name, pattern, a)),
                                None => errors.push(format!(
                                    "`{tool}` pattern `{pattern}` must be allow, ask or deny, found {}",
                                    show(a)
                                )),
                            }
                        }
                    }
                    other => match action(other) {
                        Some(a) => rules.push(PermissionRule::new(&tool_name, "*", a)),
                        None => errors.push(format!(
                            "`{tool}` must be allow, ask, deny or a map of pattern to action, found {}",
                            show(other)
                        )),
                    },
                }
            }
        }
        other => errors.push(format!(
            "must be an action or a map of tool to action, found {}",
            match other {
                Value::Array(_) => "a list",
                Value::Number(_) => "a number",
                _ => "something else",
            }
        )),
    }
    (rules, errors)
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
