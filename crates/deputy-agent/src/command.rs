//! Custom commands: markdown prompt templates (`.claude/commands/NAME.md`,
//! `.opencode/command/NAME.md`), with optional frontmatter `description`, `agent`, `model`,
//! `argument-hint`. This module parses one; finding and expanding them is the runtime's.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{AgentError, Diagnostic, Severity};
use crate::load::parse_markdown;

/// One command, parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandSpec {
    /// Its name: the file's path in its commands directory without `.md`, subdirectories
    /// joined with `:` (`frontend/review.md` is `frontend:review`).
    pub name: String,
    pub description: Option<String>,
    /// The agent it runs with (unless the user names one).
    pub agent: Option<String>,
    /// The model it runs with (unless the user names one).
    pub model: Option<String>,
    /// What arguments it takes, for completion and listings.
    pub argument_hint: Option<String>,
    /// The prompt template: `$ARGUMENTS`, `$1`…`$9`, `@file`, `` !`command` ``.
    pub template: String,
    pub path: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

/// Whether `name` may name a command: letters, digits, `-`, `_`, `.` and `:` between parts.
pub fn valid_command_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.split(':').all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// Parse the text of command `name` read from `path`.
pub fn parse_command(text: &str, path: &Path, name: &str) -> Result<CommandSpec, AgentError> {
    let text = quote_argument_hint(text);
    let md = parse_markdown(&text, path)?;
    let mut problems = Vec::new();
    let mut diagnostics = md.notes;
    let mut c = CommandSpec {
        name: name.to_string(),
        description: None,
        agent: None,
        model: None,
        argument_hint: None,
        template: md.body,
        path: path.to_path_buf(),
        diagnostics: Vec::new(),
    };
    for k in &md.keys {
        let text = match &k.value {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Null => None,
            Value::Number(n) => Some(n.to_string()),
            _ => {
                problems.push(Diagnostic::new(
                    path,
                    k.line,
                    k.column,
                    Severity::Error,
                    format!("{}: must be text", k.key),
                ));
                continue;
            }
        };
        match k.key.as_str() {
            "description" => c.description = text,
            "agent" => c.agent = text,
            "model" => c.model = text,
            "argument-hint" | "argument_hint" | "argumentHint" => c.argument_hint = text,
            // Claude Code's: they grant tools or change who may run it; deputy's rules decide
            // what runs, so they are read and left alone.
            "allowed-tools" | "allowed_tools" | "disable-model-invocation" | "subtask" => {
                diagnostics.push(Diagnostic::new(
                    path,
                    k.line,
                    k.column,
                    Severity::Note,
                    format!("`{}` is not used: deputy's permission rules decide what runs", k.key),
                ));
            }
            other => diagnostics.push(Diagnostic::new(
                path,
                k.line,
                k.column,
                Severity::Note,
                format!("`{other}` is not a command key deputy uses (description, agent, model, argument-hint); ignored"),
            )),
        }
    }
    if c.template.trim().is_empty() {
        problems.push(Diagnostic::new(
            path,
            1,
            1,
            Severity::Error,
            "the command has no prompt: write it after the frontmatter".to_string(),
        ));
    }
    if !problems.is_empty() {
        return Err(AgentError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    c.diagnostics = diagnostics;
    Ok(c)
}

/// Claude Code's documented `argument-hint: [pr-number] [priority]` is not valid YAML (or is a
/// list): the value is taken as the text it is written as.
fn quote_argument_hint(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        match body.split_once(':') {
            Some((k, v))
                if matches!(k.trim(), "argument-hint" | "argument_hint" | "argumentHint")
                    && !k.starts_with([' ', '\t'])
                    && v.trim_start().starts_with('[') =>
            {
                let v = v.trim().replace('\\', "\\\\").replace('"', "\\\"");
                out.push_str(&format!("{k}: \"{v}\""));
                out.push_str(&line[body.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// Read and parse command `name` at `path`.
pub fn load_command(path: &Path, name: &str) -> Result<CommandSpec, AgentError> {
    let text = crate::load::read_markdown(path)?;
    parse_command(&text, path, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_parses() {
        let c = parse_command(
            "---\ndescription: Review a PR\nargument-hint: [pr-number]\nagent: reviewer\nmodel: local/qwen3\n---\nReview PR #$1.\n",
            Path::new("/c/review.md"),
            "review",
        )
        .unwrap();
        assert_eq!(c.description.as_deref(), Some("Review a PR"));
        assert_eq!(c.agent.as_deref(), Some("reviewer"));
        assert_eq!(c.argument_hint.as_deref(), Some("[pr-number]"));
        let two = parse_command(
            "---\nargument-hint: [pr-number] [priority]\n---\nx\n",
            Path::new("/c/r.md"),
            "r",
        )
        .unwrap();
        assert_eq!(two.argument_hint.as_deref(), Some("[pr-number] [priority]"));
        assert_eq!(c.template, "Review PR #$1.");
        // Without frontmatter: the whole file is the template.
        let c = parse_command("Fix $ARGUMENTS", Path::new("/c/fix.md"), "fix").unwrap();
        assert_eq!(c.template, "Fix $ARGUMENTS");
    }

    #[test]
    fn bad_commands_say_where() {
        let e = parse_command("---\ndescription: [a\n---\nx", Path::new("/c/x.md"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/c/x.md:2"), "{e}");
        let e = parse_command("---\ndescription: d\n---\n", Path::new("/c/x.md"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no prompt"), "{e}");
        assert!(valid_command_name("frontend:review"));
        assert!(
            !valid_command_name("a::b") && !valid_command_name(".x") && !valid_command_name("a b")
        );
    }
}
