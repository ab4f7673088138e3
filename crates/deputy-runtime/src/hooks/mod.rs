//! Hooks: the user's own commands run at fixed points of a session, in Claude Code's protocol
//! (the same `hooks` block, the same JSON on stdin, the same exit codes and JSON answers), so
//! existing hook scripts work unchanged.
//!
//! Hooks are the user's policy and run **outside** the sandbox, with the user's rights: they
//! come only from the user's config (`[hooks]` in `CONFIG_DIR/config.toml`, the `hooks` block of
//! `~/.claude/settings.json`) or from a project the user trusts (`.deputy/config.toml`,
//! `.claude/settings.json`, `.claude/settings.local.json`). An untrusted workspace's hooks
//! never run. A hook can deny, ask or allow a call, but its allow never passes a deny rule.

mod answer;
mod run;
mod session;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub use answer::{HookAnswer, Verdict};
pub use run::HookRun;

/// The default time a hook may take before it is killed (Claude Code's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The points of a session where hooks run (Claude Code's event names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    SessionStart,
    UserPromptSubmit,
    PreToolUse,
    PostToolUse,
    Stop,
    SubagentStop,
    PreCompact,
    SessionEnd,
    Notification,
}

impl HookEvent {
    pub const ALL: [HookEvent; 9] = [
        HookEvent::SessionStart,
        HookEvent::UserPromptSubmit,
        HookEvent::PreToolUse,
        HookEvent::PostToolUse,
        HookEvent::Stop,
        HookEvent::SubagentStop,
        HookEvent::PreCompact,
        HookEvent::SessionEnd,
        HookEvent::Notification,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::SessionStart => "SessionStart",
            HookEvent::UserPromptSubmit => "UserPromptSubmit",
            HookEvent::PreToolUse => "PreToolUse",
            HookEvent::PostToolUse => "PostToolUse",
            HookEvent::Stop => "Stop",
            HookEvent::SubagentStop => "SubagentStop",
            HookEvent::PreCompact => "PreCompact",
            HookEvent::SessionEnd => "SessionEnd",
            HookEvent::Notification => "Notification",
        }
    }

    fn parse(s: &str) -> Option<HookEvent> {
        HookEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One command to run at one event.
#[derive(Debug, Clone)]
pub struct Hook {
    pub event: HookEvent,
    /// The matcher as written (`Bash`, `Edit|Write`, `mcp__.*`; empty or `*`: everything). For
    /// `SessionStart` it matches the source (`startup`, `resume`), for `PreCompact` the trigger
    /// (`manual`, `auto`); other events without tools run every hook.
    pub matcher: String,
    /// The matcher, anchored (`^(?:…)$`, as Claude Code's simple names match exactly).
    regex: Option<regex::Regex>,
    /// A shell command (`sh -c`).
    pub command: String,
    pub timeout: Duration,
    /// The file it was declared in.
    pub origin: PathBuf,
}

impl Hook {
    /// Does this hook's matcher take `names` (Claude Code's name of the tool, then deputy's)?
    fn matches(&self, names: &[&str]) -> bool {
        match &self.regex {
            None => true,
            Some(r) => names.iter().any(|n| r.is_match(n)),
        }
    }
}

/// Every hook of a session, in declaration order (user config, Claude's user settings, then a
/// trusted project's).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    hooks: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    pub fn all(&self) -> &[Hook] {
        &self.hooks
    }

    /// Add the hooks of a `hooks` block (Claude Code's shape, from JSON or TOML) declared in
    /// `origin`; an error names the file, the event and the entry.
    pub fn add_block(&mut self, block: &Value, origin: &Path) -> Result<(), String> {
        let at = |what: String| format!("{}: hooks.{what}", origin.display());
        let Some(events) = block.as_object() else {
            return Err(format!(
                "{}: `hooks` must be a table of events (PreToolUse, PostToolUse, …)",
                origin.display()
            ));
        };
        for (name, groups) in events {
            let Some(event) = HookEvent::parse(name) else {
                let known: Vec<&str> = HookEvent::ALL.iter().map(|e| e.as_str()).collect();
                return Err(at(format!(
                    "{name}: not a hook event; the events are {}",
                    known.join(", ")
                )));
            };
            let Some(groups) = groups.as_array() else {
                return Err(at(format!(
                    "{name}: must be a list of {{matcher, hooks}} entries"
                )));
            };
            for (i, g) in groups.iter().enumerate() {
                let matcher = match g.get("matcher") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(m)) => m.trim().to_string(),
                    Some(_) => {
                        return Err(at(format!("{name}[{i}].matcher: must be a string")));
                    }
                };
                let regex = if matcher.is_empty() || matcher == "*" {
                    None
                } else {
                    Some(regex::Regex::new(&format!("^(?:{matcher})$")).map_err(|e| {
                        at(format!(
                            "{name}[{i}].matcher: `{matcher}` is not a valid regular expression: {e}"
                        ))
                    })?)
                };
                let Some(cmds) = g.get("hooks").and_then(Value::as_array) else {
                    return Err(at(format!(
                        "{name}[{i}].hooks: must be a list of {{type = \"command\", command = \"…\"}}"
                    )));
                };
                for (j, c) in cmds.iter().enumerate() {
                    let here = |m: &str| at(format!("{name}[{i}].hooks[{j}]: {m}"));
                    let kind = c.get("type").and_then(Value::as_str).unwrap_or("command");
                    if kind != "command" {
                        tracing::warn!(
                            "{}",
                            here(&format!(
                                "type `{kind}` is not supported by deputy (only `command`); this hook is skipped"
                            ))
                        );
                        continue;
                    }
                    let command = match c.get("command").and_then(Value::as_str) {
                        Some(s) if !s.trim().is_empty() => s.to_string(),
                        _ => return Err(here("`command` is missing or empty")),
                    };
                    let timeout = match c.get("timeout") {
                        None | Some(Value::Null) => DEFAULT_TIMEOUT,
                        Some(t) => match t.as_f64() {
                            Some(s) if s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
                            _ => {
                                return Err(here(
                                    "`timeout` must be a number of seconds above 0 (at most a day)",
                                ));
                            }
                        },
                    };
                    self.hooks.push(Hook {
                        event,
                        matcher: matcher.clone(),
                        regex: regex.clone(),
                        command,
                        timeout,
                        origin: origin.to_path_buf(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Add the `hooks` block of a Claude Code settings file, if it has one. A missing file is
    /// nothing; a file that is not JSON is an error naming it.
    pub fn add_settings_file(&mut self, path: &Path) -> Result<(), String> {
        let text = match crate::config::read_config_file(path) {
            Ok(None) => return Ok(()),
            Ok(Some(t)) => t,
            Err(e) => return Err(e.to_string()),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: not valid JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        match v.get("hooks") {
            None | Some(Value::Null) => Ok(()),
            Some(block) => self.add_block(block, path),
        }
    }

    /// The hooks of `event` whose matcher takes `names` (a tool's names, or an event's source).
    pub fn matching(&self, event: HookEvent, names: &[&str]) -> Vec<&Hook> {
        self.hooks
            .iter()
            .filter(|h| h.event == event && (names.is_empty() || h.matches(names)))
            .collect()
    }
}

/// Claude Code's name of a deputy tool (`bash` → `Bash`); an MCP tool keeps its name.
pub fn claude_tool_name(tool: &str) -> String {
    match tool {
        "bash" => "Bash".into(),
        "read" => "Read".into(),
        "write" => "Write".into(),
        "edit" => "Edit".into(),
        "glob" => "Glob".into(),
        "grep" => "Grep".into(),
        "list" => "LS".into(),
        "webfetch" => "WebFetch".into(),
        "websearch" => "WebSearch".into(),
        "task" => "Task".into(),
        "todowrite" => "TodoWrite".into(),
        "todoread" => "TodoRead".into(),
        "skill" => "Skill".into(),
        other => other.to_string(),
    }
}

/// A tool's input as Claude Code's hooks see it: the file tools' `path` as an absolute
/// `file_path`.
pub fn claude_tool_input(tool: &str, input: &Value, workspace: &Path) -> Value {
    let mut v = input.clone();
    if matches!(tool, "read" | "write" | "edit")
        && let Some(obj) = v.as_object_mut()
        && let Some(Value::String(p)) = obj.remove("path")
    {
        let abs = if Path::new(&p).is_absolute() {
            PathBuf::from(&p)
        } else {
            workspace.join(&p)
        };
        obj.insert("file_path".into(), Value::String(abs.display().to_string()));
    }
    v
}

#[cfg(test)]
mod tests;
