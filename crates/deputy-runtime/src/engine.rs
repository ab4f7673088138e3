//! The run: stream the model, run the tool calls it asks for, feed the results back, until it
//! answers without tool calls, or a limit, a cancellation or an error stops it.
//!
//! There is one way out: every path ends in an [`End`], and [`Session::end`] first answers
//! every call still pending (so the conversation is whole, whatever happened), then writes the
//! result: the answer, a summary from the model when a limit stopped the run, or the failure.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::Instrument;

use crate::event::{CompactTrigger, EventKind, Status};
use crate::options::Outcome;
use crate::prompt;
use crate::rebuild::{INTERRUPTED_RESULT, NOT_RUN_RESULT};
use crate::session::{RunState, Session};
use crate::turn::TurnError;

/// How a run ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The model answered (valid against the output schema, when there is one).
    Completed {
        text: String,
        structured: Option<Value>,
    },
    /// Cancelled, or stopped by a limit (the model then summarises).
    Stopped(Status),
    /// The model failed or its output was unusable; `result` is what the user gets.
    Failed { result: String, error: String },
}

/// The extra time a limit summary gets past the deadline: 10% of the timeout, at most 30 s.
pub fn summary_grace(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_secs(30))
}

/// Without a timeout, how long the limit summary may take.
const SUMMARY_TIME: Duration = Duration::from_secs(60);

impl Session {
    /// Run until the agent answers (or a limit, cancellation or error). `prompt` is the next user
    /// message (`None` on a resume without new instructions).
    pub async fn run(&mut self, prompt: Option<String>) -> Outcome {
        let span = tracing::info_span!(
            "invoke_agent",
            otel.name = %format!("invoke_agent {}", self.agent.name),
            "gen_ai.operation.name" = "invoke_agent",
            "gen_ai.agent.name" = %self.agent.name,
            "gen_ai.request.model" = %self.model_label(),
            session.id = %self.id,
            parent_session_id = ?self.opts.parent_session_id,
            status = tracing::field::Empty,
            "gen_ai.usage.input_tokens" = tracing::field::Empty,
            "gen_ai.usage.output_tokens" = tracing::field::Empty,
            cost_usd = tracing::field::Empty,
            turns = tracing::field::Empty,
        );
        let outcome = self.run_inner(prompt).instrument(span.clone()).await;
        span.record("status", outcome.status.as_str());
        span.record(
            "gen_ai.usage.input_tokens",
            outcome.usage.input_tokens as i64,
        );
        span.record(
            "gen_ai.usage.output_tokens",
            outcome.usage.output_tokens as i64,
        );
        span.record("turns", i64::from(outcome.num_turns));
        if let Some(c) = outcome.cost_usd {
            span.record("cost_usd", c);
        }
        tracing::info!(parent: &span, status = outcome.status.as_str(), duration_ms = outcome.duration_ms, "session finished");
        // Whoever watches gets every event of this run before the caller gets the outcome.
        self.emitter.flush().await;
        outcome
    }

    async fn run_inner(&mut self, prompt: Option<String>) -> Outcome {
        let started = Instant::now();
        let cut_off = self.begin_run();
        // Calls the last run decided on but never started: a resume that just goes on runs
        // them; new instructions replace them.
        let waiting = self.never_started();
        if !waiting.is_empty() {
            if prompt.is_some() {
                self.close_unrun();
            } else if let Some(end) = self.run_calls(waiting).await {
                return self.end(end, started).await;
            }
        }
        let last = self.conversation.messages().last();
        let end = match (prompt, last) {
            (Some(p), _) => self.first_turns(p).await,
            // The last run was cut off after the model's final answer was recorded: that
            // answer ends the run (as it would have), instead of asking the model again.
            (
                None,
                Some(deputy_llm::Message::Assistant {
                    content,
                    tool_calls,
                    ..
                }),
            ) if cut_off && tool_calls.is_empty() => {
                let text = content.as_deref().unwrap_or_default().trim().to_string();
                let mut tries = 0;
                match self.final_answer(text, &mut tries) {
                    Some(end) => end,
                    None => self.turns().await,
                }
            }
            // A resume without new instructions continues where the conversation stands.
            (None, Some(deputy_llm::Message::User { .. } | deputy_llm::Message::Tool { .. })) => {
                self.turns().await
            }
            (None, _) => self.first_turns("Continue.".to_string()).await,
        };
        self.end(end, started).await
    }

    /// Turns after the user message `p` (as the user's hooks leave it).
    async fn first_turns(&mut self, p: String) -> End {
        let p = match self.prompt_hooks(p, self.run.first).await {
            Ok(p) => p,
            Err(why) => {
                self.run.errors.push(why);
                return End::Stopped(Status::Denied);
            }
        };
        match self.push_user(p) {
            Err(e) => End::Failed {
                result: format!("internal error: {e}"),
                error: e,
            },
            Ok(()) => self.turns().await,
        }
    }

    /// The pending calls (left by a cut-off run that never started them), as the model asked.
    fn never_started(&self) -> Vec<deputy_llm::ToolCall> {
        let pending = self.conversation.pending();
        // Their message is the last assistant one (results of the interrupted calls follow it).
        let asked = self
            .conversation
            .messages()
            .iter()
            .rev()
            .find(|m| matches!(m, deputy_llm::Message::Assistant { .. }));
        match asked {
            Some(deputy_llm::Message::Assistant { tool_calls, .. }) => tool_calls
                .iter()
                .filter(|c| pending.iter().any(|p| p.id == c.id))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Close the never-started calls unrun: the resume brought new instructions.
    fn close_unrun(&mut self) {
        for (call, text) in self
            .conversation
            .close_pending(|_| NOT_RUN_RESULT.to_string())
        {
            self.emit(EventKind::ToolCompleted {
                call_id: call.id,
                tool: call.tool,
                is_error: true,
                output: text,
                metadata: json!({"not_run": true}),
                duration_ms: 0,
            });
        }
    }

    /// The start of a run: its clock, `session.started` (now, so the sink attached by the
    /// caller sees it), what a resume found, and the calls a crash left unanswered that may
    /// have started (closed as interrupted). `true` when the journal's last run was cut off.
    fn begin_run(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let timeout = self.opts.limits.timeout;
        // Saturating: a limit too far away to add is no deadline at all.
        self.run = RunState {
            first: !self.started_emitted,
            deadline: timeout.and_then(|t| now.checked_add(t)),
            summary_deadline: timeout
                .and_then(|t| now.checked_add(t)?.checked_add(summary_grace(t))),
            ..Default::default()
        };
        self.emit_started();
        // Learn the model's context window while the first request goes out.
        if self.opts.compaction.enabled {
            self.ask_window();
        }
        for w in std::mem::take(&mut self.notices) {
            self.emit(EventKind::Warning { message: w });
        }
        // A live session's pending calls (a cancelled run) may all have started; a resumed
        // one's journal says which did.
        let unsettled = self.unsettled.take();
        let begun = |c: &crate::conversation::PendingCall| {
            unsettled.as_ref().is_none_or(|u| u.begun.contains(&c.id))
        };
        for (call, _) in self
            .conversation
            .close_pending_if(begun, |_| INTERRUPTED_RESULT.to_string())
        {
            self.emit(EventKind::Warning {
                message: format!(
                    "the {} call {} was interrupted when the session stopped; it is not run again, and the model is told to check",
                    call.tool, call.id
                ),
            });
            self.emit(EventKind::ToolCompleted {
                call_id: call.id,
                tool: call.tool,
                is_error: true,
                output: INTERRUPTED_RESULT.to_string(),
                metadata: json!({"interrupted": true}),
                duration_ms: 0,
            });
        }
        unsettled.is_some_and(|u| u.cut_off)
    }

    fn emit_started(&mut self) {
        if self.started_emitted {
            return;
        }
        self.started_emitted = true;
        self.emit(EventKind::SessionStarted {
            agent: self.agent.name.clone(),
            agent_source: self.agent.source.as_ref().map(|p| p.display().to_string()),
            model: self.model_label(),
            workspace: self
                .toolbox
                .ctx
                .workspace
                .canonical_root()
                .display()
                .to_string(),
            tools: self.tool_names(),
            sandbox: self.toolbox.sandbox.clone(),
            system_prompt: self.conversation.system().to_string(),
            parent_session_id: self.opts.parent_session_id.clone(),
            resumed: self.resumed,
            limits: self.opts.limits.info(),
            records_starts: true,
            worktree: self.opts.worktree.as_ref().map(|w| w.record().clone()),
            instructions: self.instructions.sources.clone(),
        });
    }

    pub(crate) fn push_user(&mut self, text: String) -> Result<(), String> {
        self.conversation
            .push_user(text.clone())
            .map_err(|e| e.to_string())?;
        self.emit(EventKind::UserMessage { text });
        Ok(())
    }

    /// Model turns until the run ends.
    async fn turns(&mut self) -> End {
        let mut schema_tries = 0;
        // A request refused as too long is retried once, after compacting.
        let mut overflow_retried = false;
        loop {
            if self.cancel.is_cancelled() {
                return End::Stopped(Status::Cancelled);
            }
            if let Some(status) = self.limit_reached() {
                return End::Stopped(status);
            }
            self.run.steps += 1;
            self.sync_mcp().await;
            let specs = self.router.specs(&self.toolbox.permissions());
            if let Err(status) = self.make_room(&specs).await {
                return End::Stopped(status);
            }
            let turn_span =
                tracing::info_span!("turn", turn = self.totals.turns + 1, session.id = %self.id);
            let deadline = self.run.deadline;
            let response = match self
                .model_turn(specs.clone(), deadline)
                .instrument(turn_span.clone())
                .await
            {
                Ok(r) => {
                    overflow_retried = false;
                    r
                }
                Err(TurnError::Overflow { limit, .. })
                    if !overflow_retried && self.opts.compaction.enabled =>
                {
                    overflow_retried = true;
                    self.run.steps -= 1;
                    self.learn_window(limit);
                    if let Err(status) = self
                        .compact_with(CompactTrigger::Overflow, None, &specs, deadline)
                        .await
                    {
                        return End::Stopped(status);
                    }
                    continue;
                }
                Err(TurnError::Overflow { message, limit }) => {
                    // What the server said wins over what deputy knew.
                    let window = limit.unwrap_or_else(|| self.budget_now().window);
                    let tried = if self.opts.compaction.enabled {
                        "even after compacting it"
                    } else {
                        "and compaction is off ([compaction] enabled = false)"
                    };
                    let msg = format!(
                        "the conversation does not fit the model's context window ({} tokens) {tried}: the request held about {} tokens ({message}). Set the window in config ([models.\"{}\"] context_window) if it is wrong, or start a new session",
                        window,
                        self.context_estimate(&specs),
                        self.model_label()
                    );
                    return End::Failed {
                        result: msg.clone(),
                        error: msg,
                    };
                }
                Err(TurnError::Stopped(status)) => return End::Stopped(status),
                Err(TurnError::Failed(msg)) => {
                    return End::Failed {
                        result: msg.clone(),
                        error: msg,
                    };
                }
            };
            if response.tool_calls.is_empty() && crate::turn::paused(&response) {
                // Anthropic paused a long turn: sent back as it stands, the model goes on from
                // where it stopped (the two messages are one turn on the wire).
                continue;
            }
            if response.tool_calls.is_empty() {
                // A Stop hook may send the model back to work, its reason the instruction.
                if let Some(more) = self.stop_hooks(response.text.trim()).await {
                    if let Err(e) = self.push_user(more) {
                        return End::Failed {
                            result: format!("internal error: {e}"),
                            error: e,
                        };
                    }
                    continue;
                }
                match self.final_answer(response.text.trim().to_string(), &mut schema_tries) {
                    Some(end) => return end,
                    None => continue,
                }
            }
            if let Some(end) = self
                .run_calls(response.tool_calls)
                .instrument(turn_span)
                .await
            {
                return end;
            }
        }
    }

    /// The model answered without calls: done, unless the answer must match a schema and
    /// does not (then it is asked to fix it, a limited number of times: `None`).
    fn final_answer(&mut self, text: String, tries: &mut u32) -> Option<End> {
        let Some(schema) = self.opts.output_schema.clone() else {
            if text.is_empty() {
                self.emit(EventKind::Warning {
                    message: "the model's final answer is empty".into(),
                });
            }
            return Some(End::Completed {
                text,
                structured: None,
            });
        };
        match crate::schema::check(&schema, &text) {
            Ok(value) => Some(End::Completed {
                text,
                structured: Some(value),
            }),
            Err(problems) if *tries < self.opts.schema_retries => {
                *tries += 1;
                let pretty = serde_json::to_string_pretty(&schema).unwrap_or_default();
                let msg = prompt::render(
                    prompt::OUTPUT_SCHEMA,
                    &[("errors", &problems), ("schema", &pretty)],
                );
                match self.push_user(msg) {
                    Ok(()) => None,
                    Err(e) => Some(End::Failed {
                        result: text,
                        error: e,
                    }),
                }
            }
            Err(problems) => Some(End::Failed {
                error: format!(
                    "the final answer does not match the output schema after {} attempts: {problems}",
                    *tries + 1
                ),
                result: text,
            }),
        }
    }

    fn limit_reached(&self) -> Option<Status> {
        let l = &self.opts.limits;
        if self
            .run
            .deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            return Some(Status::Timeout);
        }
        if self.run.steps >= l.max_steps {
            return Some(Status::MaxSteps);
        }
        if l.max_tokens
            .is_some_and(|max| self.totals.usage.total() >= max)
        {
            return Some(Status::Budget);
        }
        if let (Some(max), Some(cost)) = (l.max_cost_usd, self.totals.cost)
            && cost >= max
        {
            return Some(Status::Budget);
        }
        None
    }

    /// Answer every call still waiting, saying why it did not (fully) run.
    fn close_pending(&mut self, why: &str) {
        let in_flight = std::mem::take(&mut self.run.in_flight);
        let closed = self.conversation.close_pending(|c| {
            if in_flight.contains(&c.id) {
                format!(
                    "Error: the {} call was stopped before it finished ({why}); it may have partly run",
                    c.tool
                )
            } else {
                format!("Error: the {} call was not run ({why})", c.tool)
            }
        });
        for (c, output) in closed {
            let ran = in_flight.contains(&c.id);
            self.emit(EventKind::ToolCompleted {
                call_id: c.id,
                tool: c.tool,
                is_error: true,
                output,
                metadata: json!({"not_run": !ran, "stopped": ran}),
                duration_ms: 0,
            });
        }
    }

    /// The one way out of a run.
    async fn end(&mut self, end: End, started: Instant) -> Outcome {
        let why = match &end {
            End::Stopped(Status::Cancelled) => "the user cancelled".to_string(),
            End::Stopped(Status::Denied) => "a hook stopped the session".to_string(),
            End::Stopped(s) => format!("the session reached a limit: {}", s.as_str()),
            End::Failed { error, .. } => format!("the session stopped: {error}"),
            End::Completed { .. } => "the session ended".to_string(),
        };
        self.close_pending(&why);
        let (status, text, structured) = match end {
            End::Completed { text, structured } => (Status::Completed, text, structured),
            End::Stopped(Status::Cancelled) => (Status::Cancelled, "Cancelled.".into(), None),
            // A hook said no (a refused prompt, `continue: false`): its reason is the result.
            End::Stopped(Status::Denied) => (
                Status::Denied,
                self.run.errors.last().cloned().unwrap_or_default(),
                None,
            ),
            End::Stopped(status) => match self.limit_summary(status).await {
                Ok(text) => (status, text, None),
                // Cancelled while summarising.
                Err(()) => (Status::Cancelled, "Cancelled.".into(), None),
            },
            End::Failed { result, error } => {
                self.run.errors.push(error);
                (Status::Error, result, None)
            }
        };
        let worktree = self.commit_worktree(&text).await;
        self.finish(status, text, structured, started, worktree)
    }

    /// A worktree session's change, committed on its branch whatever the run's end (nothing
    /// is lost); a failure is one of the run's errors.
    async fn commit_worktree(&mut self, answer: &str) -> Option<crate::worktree::Settled> {
        let wt = self.opts.worktree.clone()?;
        let answer = answer.to_string();
        let done = tokio::task::spawn_blocking(move || wt.commit(&answer)).await;
        match done {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.run
                    .errors
                    .push(format!("the worktree's change could not be committed: {e}"));
                None
            }
            Err(e) => {
                self.run
                    .errors
                    .push(format!("committing the worktree: {e}"));
                None
            }
        }
    }

    /// The last model call, without tools, so the result says what was done and what is
    /// left. It must be done by the deadline plus a grace (10% of the timeout, at most 30 s).
    /// `Err` when cancelled meanwhile.
    async fn limit_summary(&mut self, status: Status) -> Result<String, ()> {
        let l = &self.opts.limits;
        let what = match status {
            Status::MaxSteps => format!("the step limit ({} model turns)", l.max_steps),
            Status::Timeout => format!(
                "the time limit ({:.0}s)",
                l.timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
            ),
            _ => match (l.max_tokens, l.max_cost_usd) {
                (Some(t), _) if self.totals.usage.total() >= t => {
                    format!("the token budget ({t} tokens)")
                }
                (_, Some(c)) => format!("the cost budget (${c})"),
                _ => "the budget".to_string(),
            },
        };
        if !self.opts.limit_summary {
            return Ok(format!("Stopped by {what}."));
        }
        self.emit(EventKind::Warning {
            message: format!("stopped by {what}; asking the model for a final summary"),
        });
        let text = prompt::render(prompt::LIMIT_SUMMARY, &[("limit", &what)]);
        if let Err(e) = self.push_user(text) {
            self.run.errors.push(e);
            return Ok(format!("Stopped by {what}."));
        }
        let deadline = self
            .run
            .summary_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + SUMMARY_TIME);
        if self.make_room(&[]).await.is_err() {
            return Ok(format!("Stopped by {what}; the summary request timed out."));
        }
        Ok(match self.model_turn(Vec::new(), Some(deadline)).await {
            Ok(r) if !r.text.trim().is_empty() => r.text.trim().to_string(),
            Ok(_) => format!("Stopped by {what}; the model gave no summary."),
            Err(TurnError::Stopped(Status::Cancelled)) => return Err(()),
            Err(TurnError::Stopped(_)) => {
                format!("Stopped by {what}; the summary request timed out.")
            }
            Err(TurnError::Failed(e) | TurnError::Overflow { message: e, .. }) => {
                self.run.errors.push(format!("summary request failed: {e}"));
                format!("Stopped by {what}; the summary request failed: {e}")
            }
        })
    }

    fn finish(
        &mut self,
        status: Status,
        result: String,
        structured: Option<Value>,
        started: Instant,
        worktree: Option<crate::worktree::Settled>,
    ) -> Outcome {
        let outcome = Outcome {
            session_id: self.id.clone(),
            status,
            result,
            structured_output: structured,
            usage: self.totals.usage,
            cost_usd: self.totals.cost,
            duration_ms: started.elapsed().as_millis() as u64,
            num_turns: self.totals.turns,
            files_changed: self.totals.files_changed.clone(),
            errors: std::mem::take(&mut self.run.errors),
            warnings: self.emitter.take_warnings(),
            metrics: std::mem::take(&mut self.metrics),
            worktree,
        };
        self.emit(EventKind::SessionFinished {
            status: outcome.status,
            result: outcome.result.clone(),
            structured_output: outcome.structured_output.clone(),
            usage: outcome.usage,
            cost_usd: outcome.cost_usd,
            duration_ms: outcome.duration_ms,
            num_turns: outcome.num_turns,
            files_changed: outcome.files_changed.clone(),
            errors: outcome.errors.clone(),
            metrics: outcome.metrics.clone(),
            worktree: outcome.worktree.clone(),
        });
        self.emitter.sync();
        outcome
    }
}
