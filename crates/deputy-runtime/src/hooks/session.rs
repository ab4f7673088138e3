//! Where a session runs its hooks, and what it does with their answers.

use serde_json::{Value, json};

use super::{HookAnswer, HookEvent, Verdict, claude_tool_input, claude_tool_name, run};
use crate::event::EventKind;
use crate::session::Session;

impl Session {
    /// Run the hooks of `event` whose matcher takes `names`, side by side, with Claude Code's
    /// common fields plus `fields`; each is reported (`hook.completed`), their answers read
    /// together.
    pub(crate) async fn run_hooks(
        &self,
        event: HookEvent,
        names: &[&str],
        fields: Value,
    ) -> HookAnswer {
        let mut answer = HookAnswer::default();
        let hooks = self.opts.hooks.matching(event, names);
        if hooks.is_empty() {
            return answer;
        }
        let cwd = self.opts.workspace.clone();
        let mut input = json!({
            "session_id": self.id,
            "transcript_path": self.journal_path().map(|p| p.display().to_string()),
            "cwd": cwd.display().to_string(),
            "hook_event_name": event.as_str(),
            "permission_mode": "default",
        });
        if let (Some(obj), Value::Object(extra)) = (input.as_object_mut(), fields) {
            obj.extend(extra);
        }
        let runs =
            futures::future::join_all(hooks.iter().map(|h| run::run(h, &input, &cwd, &cwd))).await;
        for (hook, r) in hooks.iter().zip(&runs) {
            let said = answer.add(event, hook, r);
            self.emit(EventKind::HookCompleted {
                hook_event: event.as_str().to_string(),
                matcher: hook.matcher.clone(),
                command: hook.command.clone(),
                exit_code: r.exit_code,
                decision: said.map(|v| v.as_str().to_string()),
                timed_out: r.timed_out,
                duration_ms: r.duration.as_millis() as u64,
            });
        }
        for w in &answer.warnings {
            self.emit(EventKind::Warning { message: w.clone() });
        }
        answer
    }

    /// `PreToolUse` for a call the model asked for.
    pub(crate) async fn pre_tool_hooks(&self, tool: &str, input: &Value) -> HookAnswer {
        if self.opts.hooks.is_empty() {
            return HookAnswer::default();
        }
        let claude = claude_tool_name(tool);
        self.run_hooks(
            HookEvent::PreToolUse,
            &[&claude, tool],
            json!({
                "tool_name": claude,
                "tool_input": claude_tool_input(tool, input, &self.opts.workspace),
            }),
        )
        .await
    }

    /// `PostToolUse` after a call ran: what a hook says back (a block's reason, context) is
    /// added to the result the model gets.
    pub(crate) async fn post_tool_hooks(
        &self,
        tool: &str,
        input: &Value,
        output: &str,
        is_error: bool,
    ) -> Option<String> {
        if self.opts.hooks.is_empty() {
            return None;
        }
        let claude = claude_tool_name(tool);
        let a = self
            .run_hooks(
                HookEvent::PostToolUse,
                &[&claude, tool],
                json!({
                    "tool_name": claude,
                    "tool_input": claude_tool_input(tool, input, &self.opts.workspace),
                    "tool_response": {"output": output, "is_error": is_error, "success": !is_error},
                }),
            )
            .await;
        let mut said: Vec<String> = Vec::new();
        if a.verdict == Some(Verdict::Block)
            && let Some(r) = a.reason
        {
            said.push(format!("A PostToolUse hook says: {r}"));
        }
        said.extend(a.context);
        (!said.is_empty()).then(|| said.join("\n"))
    }

    /// `UserPromptSubmit` (and, on a session's first run, `SessionStart`) for the prompt `p`:
    /// the prompt with what hooks added, or why it was refused. A subagent's prompt is its
    /// parent's model's, not the user's: as in Claude Code, neither runs for it.
    pub(crate) async fn prompt_hooks(&self, p: String, first: bool) -> Result<String, String> {
        if self.opts.hooks.is_empty() || self.opts.parent_session_id.is_some() {
            return Ok(p);
        }
        let mut context = Vec::new();
        if first {
            let source = if self.resumed { "resume" } else { "startup" };
            let a = self
                .run_hooks(
                    HookEvent::SessionStart,
                    &[source],
                    json!({"source": source}),
                )
                .await;
            if let Some(stop) = a.stop {
                return Err(stop);
            }
            context.extend(a.context);
        }
        let a = self
            .run_hooks(HookEvent::UserPromptSubmit, &[], json!({"prompt": p}))
            .await;
        if let Some(stop) = a.stop {
            return Err(stop);
        }
        if a.verdict == Some(Verdict::Block) {
            return Err(format!(
                "a UserPromptSubmit hook refused the prompt: {}",
                a.reason.unwrap_or_default()
            ));
        }
        context.extend(a.context);
        if context.is_empty() {
            return Ok(p);
        }
        Ok(format!(
            "{p}\n\n<hook-context>\n{}\n</hook-context>",
            context.join("\n")
        ))
    }

    /// `Stop` (`SubagentStop` for a subagent) when the model gives its answer: `Some(reason)`
    /// when a hook wants it to go on (the reason is its next instruction).
    pub(crate) async fn stop_hooks(&mut self, answer: &str) -> Option<String> {
        if self.opts.hooks.is_empty() {
            return None;
        }
        let event = if self.opts.parent_session_id.is_some() {
            HookEvent::SubagentStop
        } else {
            HookEvent::Stop
        };
        let active = self.run.stop_hook_active;
        let a = self
            .run_hooks(
                event,
                &[],
                json!({"stop_hook_active": active, "last_assistant_message": answer}),
            )
            .await;
        if a.stop.is_some() {
            return None;
        }
        if a.verdict == Some(Verdict::Block) {
            self.run.stop_hook_active = true;
            return Some(a.reason.unwrap_or_else(|| "Keep going.".into()));
        }
        None
    }

    /// `PreCompact` (`trigger`: `manual` or `auto`). Its answer changes nothing.
    pub(crate) async fn compact_hooks(&self, trigger: &str, focus: Option<&str>) {
        if self.opts.hooks.is_empty() {
            return;
        }
        self.run_hooks(
            HookEvent::PreCompact,
            &[trigger],
            json!({"trigger": trigger, "custom_instructions": focus.unwrap_or_default()}),
        )
        .await;
    }

    /// `SessionEnd`, when the front-end is done with the session (`reason`: Claude Code's
    /// `clear`, `logout`, `prompt_input_exit` or `other`). Its answer changes nothing.
    pub async fn end_hooks(&self, reason: &str) {
        if self.opts.hooks.is_empty() || self.opts.parent_session_id.is_some() {
            return;
        }
        self.run_hooks(HookEvent::SessionEnd, &[], json!({"reason": reason}))
            .await;
    }

    /// `Notification`: an approval is asked. Its answer changes nothing.
    pub(crate) async fn notify_hooks(&self, message: String) {
        if self.opts.hooks.is_empty() {
            return;
        }
        self.run_hooks(
            HookEvent::Notification,
            &[],
            json!({"message": message, "notification_type": "permission_prompt"}),
        )
        .await;
    }
}
