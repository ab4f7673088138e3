//! What a hook's exit code and output mean (Claude Code's rules): exit 0 goes on, its stdout
//! may be a JSON answer; exit 2 blocks, its stderr the reason; any other exit, a timeout or a
//! hook that cannot start is a warning and the session goes on.

use serde_json::Value;

use super::{Hook, HookEvent, HookRun};

/// What hooks said of the action at hand, strongest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Let the call run without asking (never past a deny rule).
    Allow,
    /// Ask the user, whatever the rules say (except a deny).
    Ask,
    /// Do not: the call is refused, the prompt dropped, the stop refused (the model goes on).
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Ask => "ask",
            Verdict::Block => "block",
        }
    }
}

/// The hooks of one event, read together.
#[derive(Debug, Clone, Default)]
pub struct HookAnswer {
    pub verdict: Option<Verdict>,
    /// Why (the blocking hook's stderr, or its JSON reason), for the model or the user.
    pub reason: Option<String>,
    /// `hookSpecificOutput.updatedInput` (PreToolUse): the call runs with this input.
    pub updated_input: Option<Value>,
    /// Text for the model (`additionalContext`; a UserPromptSubmit or SessionStart hook's
    /// plain stdout).
    pub context: Vec<String>,
    /// `continue: false`: the session stops, with this reason.
    pub stop: Option<String>,
    pub warnings: Vec<String>,
}

impl HookAnswer {
    /// Fold one hook's answer in: the strongest verdict wins; reasons and context add up.
    pub(super) fn add(&mut self, event: HookEvent, hook: &Hook, run: &HookRun) -> Option<Verdict> {
        let label = format!("{} hook `{}`", event.as_str(), hook.command);
        if let Some(f) = &run.failed {
            self.warnings.push(format!("{label}: {f}"));
            return None;
        }
        if run.timed_out {
            self.warnings.push(format!(
                "{label}: killed after its timeout of {} s",
                hook.timeout.as_secs_f64()
            ));
            return None;
        }
        match run.exit_code {
            Some(0) => self.read_stdout(event, &label, run.stdout.trim()),
            Some(2) => {
                let why = run.stderr.trim();
                let why = if why.is_empty() {
                    format!("blocked by {label}")
                } else {
                    why.to_string()
                };
                self.decide(Verdict::Block, Some(why));
                Some(Verdict::Block)
            }
            code => {
                let code = code.map_or("by a signal".to_string(), |c| format!("with {c}"));
                let err: String = run.stderr.trim().chars().take(500).collect();
                self.warnings.push(format!(
                    "{label} failed (exit {code}; only exit 2 blocks): {err}"
                ));
                None
            }
        }
    }

    fn decide(&mut self, v: Verdict, reason: Option<String>) {
        if self.verdict.is_none_or(|cur| v > cur) {
            self.verdict = Some(v);
            self.reason = reason;
        } else if Some(v) == self.verdict
            && let Some(r) = reason
        {
            self.reason = Some(match self.reason.take() {
                Some(prev) => format!("{prev}\n{r}"),
                None => r,
            });
        }
    }

    fn read_stdout(&mut self, event: HookEvent, label: &str, out: &str) -> Option<Verdict> {
        if out.is_empty() {
            return None;
        }
        if !out.starts_with('{') {
            // Plain text: context where Claude Code takes it so, else only for the log.
            if matches!(event, HookEvent::UserPromptSubmit | HookEvent::SessionStart) {
                self.context.push(out.to_string());
            }
            return None;
        }
        let v: Value = match serde_json::from_str(out) {
            Ok(v) => v,
            Err(e) => {
                self.warnings.push(format!(
                    "{label} printed JSON that cannot be read ({e}); ignored"
                ));
                return None;
            }
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        if v.get("continue").and_then(Value::as_bool) == Some(false) {
            self.stop = Some(
                text(v.get("stopReason")).unwrap_or_else(|| format!("{label} stopped the session")),
            );
        }
        let specific = v.get("hookSpecificOutput");
        let mut said = None;
        // The current form (PreToolUse), then the older `decision`.
        let decision = specific
            .and_then(|s| s.get("permissionDecision"))
            .and_then(Value::as_str)
            .map(|d| {
                (
                    d,
                    text(specific.and_then(|s| s.get("permissionDecisionReason"))),
                )
            })
            .or_else(|| {
                v.get("decision")
                    .and_then(Value::as_str)
                    .map(|d| (d, text(v.get("reason"))))
            });
        if let Some((d, reason)) = decision {
            let verdict = match d {
                "allow" | "approve" => Some(Verdict::Allow),
                "ask" => Some(Verdict::Ask),
                "deny" | "block" => Some(Verdict::Block),
                other => {
                    self.warnings.push(format!(
                        "{label}: decision `{other}` is not allow, ask, deny or block; ignored"
                    ));
                    None
                }
            };
            if let Some(verdict) = verdict {
                // Allow and ask are PreToolUse's; elsewhere only a block means something.
                if event == HookEvent::PreToolUse || verdict == Verdict::Block {
                    self.decide(verdict, reason);
                    said = Some(verdict);
                }
            }
        }
        if event == HookEvent::PreToolUse
            && let Some(u) = specific.and_then(|s| s.get("updatedInput"))
        {
            if u.is_object() {
                self.updated_input = Some(u.clone());
            } else {
                self.warnings
                    .push(format!("{label}: updatedInput must be an object; ignored"));
            }
        }
        if let Some(c) = text(specific.and_then(|s| s.get("additionalContext"))) {
            self.context.push(c);
        }
        said
    }
}
