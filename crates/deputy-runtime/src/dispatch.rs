//! The tool calls of one model response: decide each in order (the checks below, then the
//! permission rules and, for `ask`, the approver), then run them (consecutive calls of
//! concurrent tools side by side), and answer each in the conversation.
//!
//! A call that may not run is answered with the reason, so the model can adapt. A stop
//! (cancel, timeout, doom loop) leaves the remaining calls pending: the run's end answers them.

use std::time::{Duration, Instant};

use deputy_llm::ToolCall;
use deputy_tools::{Access, Decision, Origin, Rule, ToolOutput};
use futures::future::BoxFuture;
use serde_json::Value;
use tracing::Instrument;

use crate::approve::{Approval, ApprovalRequest};
use crate::engine::End;
use crate::event::{DecidedBy, EventKind, Status, ToolMetric};
use crate::hooks::Verdict as Said;
use crate::rebuild::file_changed;
use crate::router::{Budget, CallCtx, PreparedCall, ToolResult};
use crate::session::Session;
use crate::turn::until;

/// What was decided for one call.
enum Verdict {
    /// Run it; `concurrent`: it may run beside its neighbours.
    Run {
        call: PreparedCall,
        concurrent: bool,
    },
    /// Do not run it; this is its result.
    Answer(ToolOutput),
}

struct Planned {
    call: ToolCall,
    verdict: Verdict,
    /// Added to the result (the doom-loop warning).
    note: Option<String>,
}

/// Why a check refuses a call.
enum Objection {
    /// The call gets this reason as its result; the session goes on.
    Refuse(String),
    /// The call gets this reason, and the session stops (the doom loop).
    Halt(String),
}

/// A check a call must pass before the permission rules are asked; it may add a note.
type Check = fn(&mut Session, &ToolCall) -> Result<Option<String>, Objection>;

/// The checks, in order; the first objection decides.
const CHECKS: [Check; 3] = [
    Session::known_tool,
    Session::valid_json,
    Session::not_looping,
];

impl Session {
    /// Decide and run the calls of one response. `Some(end)` when the run must stop.
    pub(crate) async fn run_calls(&mut self, calls: Vec<ToolCall>) -> Option<End> {
        let turn = self.totals.turns;
        let mut plan: Vec<Planned> = Vec::new();
        let mut halt = None;
        for call in calls {
            if self.cancel.is_cancelled() {
                return Some(End::Stopped(Status::Cancelled));
            }
            let input = if call.arguments_valid() {
                call.arguments.clone()
            } else {
                Value::String(call.raw_arguments.clone())
            };
            self.emit(EventKind::ToolRequested {
                turn,
                call_id: call.id.clone(),
                tool: call.name.clone(),
                input,
            });
            let (verdict, note) = match self.decide(&call).await {
                Ok(v) => v,
                Err(status) => return Some(End::Stopped(status)),
            };
            let halted = matches!(&verdict, Err(Objection::Halt(_)));
            let verdict = match verdict {
                Ok((call, concurrent)) => Verdict::Run { call, concurrent },
                Err(Objection::Refuse(r)) => Verdict::Answer(ToolOutput::error(r)),
                Err(Objection::Halt(r)) => {
                    halt = Some(r.clone());
                    Verdict::Answer(ToolOutput::error(r))
                }
            };
            plan.push(Planned {
                call,
                verdict,
                note,
            });
            // After a doom-loop stop nothing more is decided or run; the rest stay pending.
            if halted {
                break;
            }
        }
        if let Some(stop) = self.execute(plan).await {
            return Some(End::Stopped(stop));
        }
        halt.map(|reason| End::Failed {
            result: reason.clone(),
            error: reason,
        })
    }

    /// Run a decided plan; a run of consecutive concurrent calls goes together. `Some` when
    /// cancelled or timed out (the calls not answered stay pending).
    async fn execute(&mut self, plan: Vec<Planned>) -> Option<Status> {
        let mut rest = plan.into_iter().peekable();
        while let Some(first) = rest.next() {
            // A cancel that came while the calls were decided (or a record of them that could
            // not be kept: see `EventMirror`) starts nothing.
            if self.cancel.is_cancelled() {
                return Some(Status::Cancelled);
            }
            let mut batch = vec![first];
            if is_concurrent(&batch[0]) {
                while let Some(next) = rest.next_if(is_concurrent) {
                    batch.push(next);
                }
            }
            self.run.in_flight = batch
                .iter()
                .filter(|p| matches!(p.verdict, Verdict::Run { .. }))
                .map(|p| p.call.id.clone())
                .collect();
            // On record before anything runs: a call without this event never started.
            for p in batch
                .iter()
                .filter(|p| matches!(p.verdict, Verdict::Run { .. }))
            {
                self.emit(EventKind::ToolStarted {
                    call_id: p.call.id.clone(),
                    tool: p.call.name.clone(),
                });
            }
            if self.cancel.is_cancelled() {
                return Some(Status::Cancelled);
            }
            let (futures, batch): (Vec<BoxFuture<'static, (ToolResult, Duration)>>, Vec<_>) = batch
                .into_iter()
                .map(|p| {
                    let ctx = self.call_ctx(&p.call.id);
                    let span = tool_span(&p.call);
                    let ran = matches!(p.verdict, Verdict::Run { .. });
                    (call_future(p.verdict, ctx, span), (p.call, p.note, ran))
                })
                .unzip();
            let all = futures::future::join_all(futures);
            let cancel = self.cancel.clone();
            let results = tokio::select! {
                r = all => r,
                _ = cancel.cancelled() => return Some(Status::Cancelled),
                _ = until(self.run.deadline) => return Some(Status::Timeout),
            };
            self.run.in_flight.clear();
            for ((call, note, ran), (mut result, took)) in batch.into_iter().zip(results) {
                if let Some(n) = note {
                    result.output.content.push_str(&format!("\n\n{n}"));
                }
                if ran
                    && let Some(said) = self
                        .post_tool_hooks(
                            &call.name,
                            &call.arguments,
                            &result.output.content,
                            result.output.is_error,
                        )
                        .await
                {
                    result.output.content.push_str(&format!("\n\n{said}"));
                }
                self.complete(&call, result, took);
            }
        }
        None
    }

    pub(crate) fn call_ctx(&self, call_id: &str) -> CallCtx {
        let l = &self.opts.limits;
        CallCtx {
            call_id: call_id.to_string(),
            session_id: self.id.clone(),
            workspace: self.opts.workspace.clone(),
            cancel: self.cancel.clone(),
            budget: Budget {
                deadline: self.run.deadline,
                steps_left: l.max_steps.saturating_sub(self.run.steps),
                tokens_left: l
                    .max_tokens
                    .map(|m| m.saturating_sub(self.totals.usage.total())),
                cost_left: l
                    .max_cost_usd
                    .map(|m| (m - self.totals.cost.unwrap_or(0.0)).max(0.0)),
            },
            permissions: self.toolbox.permissions(),
            sandbox: self.toolbox.policy().clone(),
            model_label: self.model_label(),
            approver: self.opts.approver.clone(),
            mcp: self.mcp.hub(),
            emitter: self.emitter.clone(),
        }
    }

    /// Record a call's result: the event, the totals, and the answer in the conversation.
    fn complete(&mut self, call: &ToolCall, mut r: ToolResult, took: Duration) {
        // What a command printed may hold a secret it found on disk: the model never sees it.
        if crate::redact::any() {
            r.output.content = crate::redact::redact(&r.output.content);
            crate::redact::redact_value(&mut r.output.metadata);
        }
        // An output too large for the context window is cut before the model (and the
        // journal, which a resume rebuilds the conversation from) sees it.
        r.output.content = self.fit_output(&call.name, std::mem::take(&mut r.output.content));
        if let Some(p) = file_changed(r.output.is_error, &r.output.metadata)
            && !self.totals.files_changed.iter().any(|f| f == p)
        {
            self.totals.files_changed.push(p.to_string());
        }
        self.totals.usage.add(&r.usage);
        if let Some(c) = r.cost {
            *self.totals.cost.get_or_insert(0.0) += c;
        }
        // What a command wrote that was not applied, one event an entry.
        if let Some(refused) = r.output.metadata.get("refused").and_then(Value::as_array) {
            for e in refused {
                self.emit(EventKind::WriteRefused {
                    call_id: call.id.clone(),
                    path: e["path"].as_str().unwrap_or_default().to_string(),
                    reason: e["why"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
        // A skill that names its tools narrows the rest of the run to them.
        if call.name == "skill"
            && !r.output.is_error
            && let (Some(skill), Some(tools)) = (
                r.output.metadata.get("skill").and_then(Value::as_str),
                r.output
                    .metadata
                    .get("allowed_tools")
                    .and_then(Value::as_array),
            )
        {
            let tools = tools
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            self.run.narrowed = Some((skill.to_string(), tools));
        }
        // What the tool wants the user to know (a protected path a command created, moved away).
        if let Some(warnings) = r.output.metadata.get("warnings").and_then(Value::as_array) {
            for w in warnings.iter().filter_map(Value::as_str) {
                self.emit(EventKind::Warning {
                    message: format!("{}: {w}", call.name),
                });
            }
        }
        self.metrics.tool_calls.push(ToolMetric {
            tool: call.name.clone(),
            duration_ms: took.as_millis() as u64,
            is_error: r.output.is_error,
        });
        if let Err(e) = self.conversation.answer(&call.id, r.output.content.clone()) {
            tracing::error!("tool result not recorded: {e}");
            return;
        }
        self.emit(EventKind::ToolCompleted {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            is_error: r.output.is_error,
            output: r.output.content,
            metadata: r.output.metadata,
            duration_ms: took.as_millis() as u64,
        });
    }

    /// May this call run? `Ok` holds the prepared call (and whether it may run concurrently)
    /// or why not, and a note for its result; `Err(status)` when the session was cancelled
    /// while asking.
    async fn decide(
        &mut self,
        call: &ToolCall,
    ) -> Result<(Result<(PreparedCall, bool), Objection>, Option<String>), Status> {
        let mut note = None;
        for check in CHECKS {
            match check(self, call) {
                Ok(Some(n)) => note = Some(n),
                Ok(None) => {}
                Err(o) => {
                    let reason = match &o {
                        Objection::Refuse(r) | Objection::Halt(r) => r.clone(),
                    };
                    self.decided(call, false, DecidedBy::Guard, Some(reason));
                    return Ok((Err(o), note));
                }
            }
        }
        let perms = self.toolbox.permissions();
        let Some(handler) = self.router.offered(&call.name, &perms) else {
            return Ok((Err(Objection::Refuse("unknown tool".into())), note));
        };
        // The user's PreToolUse hooks see the call first: they may block it, stop the
        // session, change its input (the rules then judge the new input) or say ask or allow
        // (an allow never passes a deny rule).
        let hook = self.pre_tool_hooks(&call.name, &call.arguments).await;
        if let Some(stop) = hook.stop {
            let why = format!("a PreToolUse hook stopped the session: {stop}");
            self.decided(call, false, DecidedBy::Hook, Some(why.clone()));
            self.run.errors.push(why);
            return Err(Status::Denied);
        }
        if hook.verdict == Some(Said::Block) {
            let why = hook.reason.unwrap_or_default();
            self.decided(call, false, DecidedBy::Hook, Some(why.clone()));
            return Ok((
                Err(Objection::Refuse(format!(
                    "blocked by a PreToolUse hook of the user's: {why}"
                ))),
                note,
            ));
        }
        // The rules look at what the call will really touch: parsed and resolved once, and
        // run as resolved.
        let input = hook.updated_input.unwrap_or_else(|| call.arguments.clone());
        let prepared = match handler.prepare(input) {
            Ok(p) => p,
            Err(reason) => {
                self.decided(call, false, DecidedBy::Guard, Some(reason.clone()));
                return Ok((Err(Objection::Refuse(reason)), note));
            }
        };
        let decision = match &prepared.access {
            Some(access) => perms.decide_access(&call.name, access),
            None => perms.decide(&call.name, prepared.subject.as_deref()),
        };
        let decision = self.narrowed(&call.name, decision);
        let (allowed, by, reason) = match (decision, hook.verdict) {
            (Decision::Deny { reason }, _) => (false, DecidedBy::Rule, Some(reason)),
            (Decision::Ask { reason }, Some(Said::Allow)) => (
                true,
                DecidedBy::Hook,
                Some(format!(
                    "a PreToolUse hook allowed it ({})",
                    hook.reason.unwrap_or(reason)
                )),
            ),
            (Decision::Allow, Some(Said::Allow)) => (true, DecidedBy::Hook, hook.reason),
            (Decision::Allow | Decision::Ask { .. }, Some(Said::Ask)) => {
                let reason = hook
                    .reason
                    .unwrap_or_else(|| "a PreToolUse hook asks".into());
                self.ask(call, prepared.subject.clone(), reason).await?
            }
            (Decision::Allow, _) => (true, DecidedBy::Rule, None),
            (Decision::Ask { reason }, _) => {
                self.ask(call, prepared.subject.clone(), reason).await?
            }
        };
        self.decided(call, allowed, by, reason.clone());
        if !allowed {
            let reason = format!(
                "permission denied: {}. Do not retry this call; do the task another way, or explain in your answer what you need.",
                reason.unwrap_or_default()
            );
            return Ok((Err(Objection::Refuse(reason)), note));
        }
        if let Some(Access::Write(p)) = &prepared.access
            && let Some(why) = deputy_tools::protect::protected(&p.display())
        {
            self.emit(EventKind::Warning {
                message: format!(
                    "{} writes `{}`, a protected path ({why}), as a permission rule allows",
                    call.name,
                    p.display()
                ),
            });
        }
        Ok((Ok((prepared, handler.concurrent())), note))
    }

    /// A loaded skill's `allowed-tools` narrows: another tool's allow becomes ask (a deny
    /// stays a deny; nothing is widened).
    fn narrowed(&self, tool: &str, d: Decision) -> Decision {
        match (&self.run.narrowed, d) {
            (Some((skill, tools)), Decision::Allow)
                if tool != "skill" && !tools.iter().any(|t| t == tool) =>
            {
                Decision::Ask {
                    reason: format!(
                        "the skill `{skill}` uses only {}; {tool} is outside it",
                        tools.join(", ")
                    ),
                }
            }
            (_, d) => d,
        }
    }

    fn decided(&self, call: &ToolCall, allowed: bool, by: DecidedBy, reason: Option<String>) {
        self.emit(EventKind::ToolDecided {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            allowed,
            by,
            reason,
        });
    }

    fn known_tool(&mut self, call: &ToolCall) -> Result<Option<String>, Objection> {
        let perms = self.toolbox.permissions();
        if self.router.offered(&call.name, &perms).is_some() {
            return Ok(None);
        }
        Err(Objection::Refuse(format!(
            "there is no tool named `{}`; the tools are: {}",
            call.name,
            self.tool_names().join(", ")
        )))
    }

    fn valid_json(&mut self, call: &ToolCall) -> Result<Option<String>, Objection> {
        if call.arguments_valid() {
            return Ok(None);
        }
        let raw: String = call.raw_arguments.chars().take(300).collect();
        Err(Objection::Refuse(format!(
            "the arguments are not valid JSON: {raw}. Send the arguments as one JSON object"
        )))
    }

    /// The same call with the same input again and again: a note on the third, a stop on the
    /// fourth.
    fn not_looping(&mut self, call: &ToolCall) -> Result<Option<String>, Objection> {
        let key = format!("{}\u{0}{}", call.name, call.arguments);
        let count = match &self.run.doom {
            Some((k, n)) if *k == key => n + 1,
            _ => 1,
        };
        self.run.doom = Some((key, count));
        if count >= 4 {
            return Err(Objection::Halt(format!(
                "the model made the same {} call with the same input {count} times in a row; stopping the session (doom loop)",
                call.name
            )));
        }
        Ok((count == 3).then(|| {
            format!(
                "Note: this is the third time in a row you made exactly this {} call. Its result will not change; do something different. A fourth identical call ends the session.",
                call.name
            )
        }))
    }

    /// An `ask` rule matched: put the question to the approver.
    async fn ask(
        &mut self,
        call: &ToolCall,
        subject: Option<String>,
        reason: String,
    ) -> Result<(bool, DecidedBy, Option<String>), Status> {
        let request = ApprovalRequest {
            session_id: self.id.clone(),
            call_id: call.id.clone(),
            agent: self.agent.name.clone(),
            tool: call.name.clone(),
            input: call.arguments.clone(),
            subject: subject.clone(),
            reason: reason.clone(),
        };
        let approver = self.opts.approver.clone();
        if approver.decided_by() != DecidedBy::Headless {
            self.notify_hooks(format!(
                "deputy needs your permission to use {}",
                crate::hooks::claude_tool_name(&call.name)
            ))
            .await;
        }
        let cancel = self.cancel.clone();
        // The run's deadline covers the wait: nobody answering does not keep a session alive.
        let answer = tokio::select! {
            a = approver.approve(&request) => a,
            _ = cancel.cancelled() => return Err(Status::Cancelled),
            _ = until(self.run.deadline) => return Err(Status::Timeout),
        };
        // An approver that cancelled the session (Ctrl-C at the question) stops it here.
        if cancel.is_cancelled() {
            return Err(Status::Cancelled);
        }
        let by = approver.decided_by();
        Ok(match answer {
            Approval::Once => (true, by, Some(reason)),
            Approval::Always { pattern } => {
                if let Ok(mut p) = self.toolbox.permissions.lock() {
                    p.push(Rule::new(
                        &call.name,
                        &pattern,
                        deputy_tools::Action::Allow,
                        Origin::Session,
                    ));
                }
                (
                    true,
                    by,
                    Some(format!("always allowed for `{pattern}` this session")),
                )
            }
            Approval::Deny { reason: why } => {
                let text = match why {
                    Some(w) if !w.trim().is_empty() => w,
                    _ => "the user refused this call".to_string(),
                };
                (false, by, Some(text))
            }
        })
    }
}

fn is_concurrent(p: &Planned) -> bool {
    matches!(
        &p.verdict,
        Verdict::Run {
            concurrent: true,
            ..
        }
    )
}

/// The work of one decided call, owning everything it needs.
fn call_future(
    verdict: Verdict,
    ctx: CallCtx,
    span: tracing::Span,
) -> BoxFuture<'static, (ToolResult, Duration)> {
    match verdict {
        Verdict::Answer(out) => Box::pin(async move { (out.into(), Duration::ZERO) }),
        Verdict::Run { call, .. } => Box::pin(async move {
            let t = Instant::now();
            let r = call.run(ctx).instrument(span.clone()).await;
            span.record("duration_ms", t.elapsed().as_millis() as i64);
            span.record("is_error", r.output.is_error);
            (r, t.elapsed())
        }),
    }
}

/// The span of one tool call (OpenTelemetry GenAI: `execute_tool {name}`).
fn tool_span(call: &ToolCall) -> tracing::Span {
    tracing::info_span!(
        "execute_tool",
        otel.name = %format!("execute_tool {}", call.name),
        "gen_ai.operation.name" = "execute_tool",
        "gen_ai.tool.name" = %call.name,
        "gen_ai.tool.call.id" = %call.id,
        duration_ms = tracing::field::Empty,
        is_error = tracing::field::Empty,
    )
}
