//! Permission rules from config and flags, in deputy's rule type.

use deputy_tools::{Action, Origin, Rule};
use serde_json::Value;

/// Rules from opencode's shape (`{tool: action}`, `{tool: {pattern: action}}`, or one
/// action), read by the same reader as agent files' `permission`.
pub fn parse_rules(v: &Value, origin: Origin) -> Result<Vec<Rule>, String> {
    let (rules, errors) = deputy_agent::parse_permission(v);
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(rules
        .iter()
        .map(|r| {
            Rule::new(
                &r.tool,
                &r.pattern,
                crate::toolbox::action(r.action),
                origin,
            )
        })
        .collect())
}

/// A rule from a flag: `TOOL`, or `TOOL:PATTERN` (`bash:git push*`, `edit:src/**`).
pub fn flag_rule(spec: &str, action: Action) -> Result<Rule, String> {
    let (tool, pattern) = match spec.split_once(':') {
        Some((t, p)) => (t.trim(), p.trim()),
        None => (spec.trim(), "*"),
    };
    if tool.is_empty() || pattern.is_empty() {
        return Err(format!(
            "`{spec}`: expected TOOL or TOOL:PATTERN, e.g. bash:git push*"
        ));
    }
    let tool = if tool == "*" {
        "*".to_string()
    } else {
        deputy_agent::canonical_tool_name(tool)
    };
    Ok(Rule::new(&tool, pattern, action, Origin::Flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_from_config_and_flags() {
        let v = serde_json::json!({"edit": "deny", "Bash": {"*": "ask", "git *": "allow"}});
        let r = parse_rules(&v, Origin::Config).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].tool, "bash");
        assert!(
            parse_rules(&serde_json::json!({"edit": "maybe"}), Origin::Config)
                .unwrap_err()
                .contains("edit")
        );
        let f = flag_rule("bash:git push*", Action::Deny).unwrap();
        assert_eq!((f.tool.as_str(), f.pattern.as_str()), ("bash", "git push*"));
        assert_eq!(flag_rule("Write", Action::Deny).unwrap().tool, "write");
        assert!(flag_rule(":x", Action::Deny).is_err());
    }
}
