//! The session loop: stream the model, run the tool calls it asks for, feed the results back,
//! until it answers without tool calls, or a limit, a cancellation or an error stops it.
//!
//! Every step is an [`Event`]: the journal writes them, the caller's sink renders them. Limits
//! are checked before each model call; when one is hit the model gets one last call without
//! tools to say what it did and what is left, and the session ends with `max_steps`, `timeout`
//! or `budget`. Cancellation (SIGINT, the caller) drops the model stream and the running tool
//! (whose process group dies with it) and ends with `cancelled`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deputy_agent::AgentSpec;
use deputy_llm::{
    ChatRequest, LlmError, Message, ModelClient, ModelEvent, ToolCall, ToolSpec, Usage,
};
use deputy_tools::{Decision, Origin, Rule, SandboxPolicy, ToolOutput, ToolSettings};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::approve::{Approval, ApprovalRequest, Approver, Headless};
use crate::error::SessionError;
use crate::event::{DecidedBy, EventKind, LimitsInfo, Metrics, Status, ToolMetric, TurnMetric};
use crate::journal::{self, INTERRUPTED_RESULT, Journal};
use crate::output::{EventSink, Output, lock};
use crate::prompt;
use crate::task::{Parent, TaskInput, TaskRunner};
use crate::toolbox::Toolbox;

/// Cost in US dollars of a response (provider, model, usage), when a price is known.
pub type Pricing = Arc<dyn Fn(&str, &str, &Usage) -> Option<f64> + Send + Sync>;

/// Limits of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Model turns (default: the agent's `steps`, else 50).
    pub max_steps: u32,
    /// Wall-clock time of the run.
    pub timeout: Option<Duration>,
    /// Input plus output tokens of the whole session.
    pub max_tokens: Option<u64>,
    /// Cost of the whole session (needs a price for the model in config).
    pub max_cost_usd: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 50,
            timeout: None,
            max_tokens: None,
            max_cost_usd: None,
        }
    }
}

impl Limits {
    fn info(&self) -> LimitsInfo {
        LimitsInfo {
            max_steps: self.max_steps,
            timeout_s: self.timeout.map(|d| d.as_secs_f64()),
            max_tokens: self.max_tokens,
            max_cost_usd: self.max_cost_usd,
        }
    }
}

/// Everything a session needs besides the agent and the model.
#[derive(Clone)]
pub struct SessionOptions {
    pub workspace: PathBuf,
    pub limits: Limits,
    pub sandbox: SandboxPolicy,
    pub tool_settings: ToolSettings,
    /// Permission rules from config (applied before the agent's).
    pub config_rules: Vec<Rule>,
    /// Permission rules from flags (applied last).
    pub flag_rules: Vec<Rule>,
    /// Override the agent's temperature / top_p.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Where journals go; `None`: no journal.
    pub state_dir: Option<PathBuf>,
    /// The final answer must be JSON valid against this schema.
    pub output_schema: Option<Value>,
    /// How many times the model is asked to fix an answer that does not match the schema.
    pub schema_retries: u32,
    pub pricing: Option<Pricing>,
    pub approver: Arc<dyn Approver>,
    /// The `provider/model` label for events (the client knows the real target).
    pub model_label: String,
    pub parent_session_id: Option<String>,
    /// The parent's permissions, for a subagent.
    pub ceiling: Option<deputy_tools::Permissions>,
}

impl SessionOptions {
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        Self {
            workspace: workspace.into(),
            limits: Limits::default(),
            sandbox: SandboxPolicy::default(),
            tool_settings: ToolSettings::default(),
            config_rules: Vec::new(),
            flag_rules: Vec::new(),
            temperature: None,
            top_p: None,
            state_dir: None,
            output_schema: None,
            schema_retries: 2,
            pricing: None,
            approver: Arc::new(Headless),
            model_label: String::new(),
            parent_session_id: None,
            ceiling: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub session_id: String,
    pub status: Status,
    pub result: String,
    pub structured_output: Option<Value>,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub duration_ms: u64,
    pub num_turns: u32,
    pub files_changed: Vec<String>,
    pub errors: Vec<String>,
    pub metrics: Metrics,
}

/// The task tool of a session: the runner and how deep this session is.
#[derive(Clone)]
struct TaskCtx {
    runner: Arc<TaskRunner>,
    depth: u32,
}

/// One agent at work.
pub struct Session {
    id: String,
    agent: AgentSpec,
    client: Arc<dyn ModelClient>,
    opts: SessionOptions,
    toolbox: Toolbox,
    messages: Vec<Message>,
    system_prompt: String,
    out: Arc<Mutex<Output>>,
    cancel: CancellationToken,
    started_emitted: bool,
    resumed: bool,
    task: Option<TaskCtx>,
    // Totals over the session.
    turns: u32,
    usage: Usage,
    cost: Option<f64>,
    files_changed: Vec<String>,
    metrics: Metrics,
    // The current run.
    run_steps: u32,
    run_deadline: Option<tokio::time::Instant>,
    /// The last tool call and how many times in a row it was made.
    doom: Option<(String, u32)>,
}

/// Why the current step stopped early.
enum Stop {
    Cancelled,
    Timeout,
}

/// A model response, assembled.
#[derive(Default)]
struct Response {
    text: String,
    reasoning: String,
    calls: Vec<ToolCall>,
    usage: Usage,
    provider: String,
    model: String,
    finish: String,
    ttft: Option<Duration>,
    retries: u32,
}

/// A decided tool call: run it, or give the model this result instead.
#[derive(Clone)]
struct Planned {
    call: ToolCall,
    verdict: Result<(), ToolOutput>,
    /// A note appended to the result (the doom-loop warning).
    note: Option<String>,
}

/// The result of one call, with the usage a subagent spent on it.
struct Done {
    output: ToolOutput,
    took: Duration,
    usage: Usage,
    cost: Option<f64>,
}

impl Session {
    /// A new session of `agent`, with a fresh id and journal.
    pub fn new(
        agent: AgentSpec,
        client: Arc<dyn ModelClient>,
        opts: SessionOptions,
    ) -> Result<Session, SessionError> {
        let (id, journal) = match &opts.state_dir {
            Some(state) => {
                let (id, j) = Journal::create(state)?;
                (id, Some(j))
            }
            None => (journal::new_session_id(), None),
        };
        let toolbox = Toolbox::new(
            &agent,
            &opts.workspace,
            opts.sandbox.clone(),
            opts.tool_settings,
            opts.config_rules.clone(),
            opts.flag_rules.clone(),
            opts.ceiling.as_ref(),
        )?;
        let system_prompt = system_prompt(&agent, &toolbox, &opts, false);
        Ok(Session {
            out: Output::new(id.clone(), journal, 0),
            id,
            messages: vec![Message::system(system_prompt.clone())],
            system_prompt,
            agent,
            client,
            opts,
            toolbox,
            cancel: CancellationToken::new(),
            started_emitted: false,
            resumed: false,
            task: None,
            turns: 0,
            usage: Usage::default(),
            cost: None,
            files_changed: Vec::new(),
            metrics: Metrics::default(),
            run_steps: 0,
            run_deadline: None,
            doom: None,
        })
    }

    /// Continue session `id` from its journal in `opts.state_dir`. Calls that started and never
    /// completed are not run again: the model is told they were interrupted.
    pub fn resume(
        id: &str,
        agent: AgentSpec,
        client: Arc<dyn ModelClient>,
        opts: SessionOptions,
    ) -> Result<Session, SessionError> {
        let state = opts
            .state_dir
            .clone()
            .ok_or_else(|| SessionError::Config("resuming needs a state directory".into()))?;
        let path = journal::session_dir(&state, id).join("events.jsonl");
        let (events, warnings) = journal::read_events(&path)?;
        let rebuilt = journal::rebuild(&events).map_err(|e| match e {
            journal::JournalError::Empty(_) => journal::JournalError::Empty(path.clone()),
            other => other,
        })?;
        let toolbox = Toolbox::new(
            &agent,
            &opts.workspace,
            opts.sandbox.clone(),
            opts.tool_settings,
            opts.config_rules.clone(),
            opts.flag_rules.clone(),
            opts.ceiling.as_ref(),
        )?;
        let journal = Journal::open(&state, id)?;
        let mut s = Session {
            out: Output::new(id.to_string(), Some(journal), rebuilt.next_seq),
            id: id.to_string(),
            system_prompt: rebuilt.system_prompt.clone(),
            messages: rebuilt.messages.clone(),
            agent,
            client,
            opts,
            toolbox,
            cancel: CancellationToken::new(),
            started_emitted: false,
            resumed: true,
            task: None,
            turns: rebuilt.turns,
            usage: rebuilt.usage,
            cost: rebuilt.cost_usd,
            files_changed: rebuilt.files_changed.clone(),
            metrics: Metrics::default(),
            run_steps: 0,
            run_deadline: None,
            doom: None,
        };
        s.emit_started();
        for w in warnings {
            s.emit(EventKind::Warning { message: w });
        }
        for (call_id, tool) in &rebuilt.interrupted {
            s.emit(EventKind::Warning {
                message: format!(
                    "the {tool} call {call_id} was interrupted when the session stopped; it is not run again, and the model is told to check"
                ),
            });
            s.emit(EventKind::ToolCompleted {
                call_id: call_id.clone(),
                tool: tool.clone(),
                is_error: true,
                output: INTERRUPTED_RESULT.to_string(),
                metadata: json!({"interrupted": true}),
                duration_ms: 0,
            });
        }
        Ok(s)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn agent(&self) -> &AgentSpec {
        &self.agent
    }

    /// The tools offered to the model.
    pub fn tool_names(&self) -> Vec<String> {
        let mut names = self.toolbox.names();
        if self.task_spec().is_some() {
            names.push("task".into());
        }
        names
    }

    pub fn system_prompt(&self) -> &str {
        &self.system_prompt
    }

    /// The `provider/model` the session uses.
    pub fn model_label(&self) -> String {
        if self.opts.model_label.is_empty() {
            self.client.describe()
        } else {
            self.opts.model_label.clone()
        }
    }

    pub fn journal_path(&self) -> Option<PathBuf> {
        lock(&self.out)
            .journal
            .as_ref()
            .map(|j| j.path().to_path_buf())
    }

    /// Send every event to `sink` too.
    pub fn set_sink(&mut self, sink: EventSink) {
        lock(&self.out).sink = Some(sink);
    }

    /// Cancelling this token stops the session at once (status `cancelled`).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Use this token for cancellation (a parent's child token, a front-end's Ctrl-C).
    pub fn set_cancel_token(&mut self, token: CancellationToken) {
        self.cancel = token;
    }

    pub fn limits(&self) -> Limits {
        self.opts.limits.clone()
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.opts.limits = limits;
    }

    /// Totals so far: usage, cost, model turns.
    pub fn usage(&self) -> (Usage, Option<f64>, u32) {
        (self.usage, self.cost, self.turns)
    }

    /// Replace the model client (e.g. `/model` in chat).
    pub fn set_client(&mut self, client: Arc<dyn ModelClient>, label: String) {
        self.client = client;
        self.opts.model_label = label;
    }

    /// Forget the conversation, keeping the system prompt (`/clear` in chat).
    pub fn clear(&mut self) {
        self.messages.truncate(1);
        self.doom = None;
    }

    /// The permission rules in force (a subagent's ceiling).
    pub fn permissions(&self) -> deputy_tools::Permissions {
        self.toolbox.permissions()
    }

    /// Let this session delegate with the `task` tool, at `depth` (0 for a top-level session).
    pub fn enable_tasks(&mut self, runner: Arc<TaskRunner>, depth: u32) {
        self.task = Some(TaskCtx { runner, depth });
        let with_task = self.task_spec().is_some();
        self.system_prompt = system_prompt(&self.agent, &self.toolbox, &self.opts, with_task);
        if !self.resumed
            && let Some(Message::System { content }) = self.messages.first_mut()
        {
            content.clone_from(&self.system_prompt);
        }
    }

    /// How deep this session is in a chain of delegation (0 at the top).
    pub fn depth(&self) -> u32 {
        self.task.as_ref().map_or(0, |t| t.depth)
    }

    /// The task tool's spec for this session, if it may delegate to anyone.
    fn task_spec(&self) -> Option<ToolSpec> {
        let ctx = self.task.as_ref()?;
        if !self.agent.tools.is_enabled("task") || ctx.depth >= ctx.runner.max_depth() {
            return None;
        }
        let perms = self.toolbox.permissions();
        if perms.tool_denied("task") {
            return None;
        }
        ctx.runner.spec_for(&self.agent, &perms)
    }

    fn emit(&mut self, kind: EventKind) {
        lock(&self.out).emit(kind);
    }

    fn sync(&mut self) {
        lock(&self.out).sync();
    }

    fn emit_started(&mut self) {
        if self.started_emitted {
            return;
        }
        self.started_emitted = true;
        let kind = EventKind::SessionStarted {
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
            system_prompt: self.system_prompt.clone(),
            parent_session_id: self.opts.parent_session_id.clone(),
            resumed: self.resumed,
            limits: self.opts.limits.info(),
        };
        self.emit(kind);
    }

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
        outcome
    }

    async fn run_inner(&mut self, prompt: Option<String>) -> Outcome {
        let started = Instant::now();
        self.run_deadline = self
            .opts
            .limits
            .timeout
            .map(|t| tokio::time::Instant::now() + t);
        self.run_steps = 0;
        self.emit_started();
        if let Some(p) = prompt {
            self.push_user(p);
        } else if !matches!(
            self.messages.last(),
            Some(Message::User { .. } | Message::Tool { .. })
        ) {
            self.push_user("Continue.".to_string());
        }
        let mut schema_tries = 0;
        let mut errors: Vec<String> = Vec::new();
        loop {
            if self.cancel.is_cancelled() {
                return self.finish(
                    Status::Cancelled,
                    "Cancelled.".into(),
                    None,
                    errors,
                    started,
                );
            }
            if let Some(status) = self.limit_reached() {
                return self.limit_summary(status, errors, started).await;
            }
            self.run_steps += 1;
            let mut specs = self.toolbox.specs();
            specs.extend(self.task_spec());
            let turn_span =
                tracing::info_span!("turn", turn = self.turns + 1, session.id = %self.id);
            let response = match self
                .model_turn(specs, self.run_deadline)
                .instrument(turn_span.clone())
                .await
            {
                Ok(r) => r,
                Err(Ok(Stop::Cancelled)) => {
                    return self.finish(
                        Status::Cancelled,
                        "Cancelled.".into(),
                        None,
                        errors,
                        started,
                    );
                }
                Err(Ok(Stop::Timeout)) => {
                    return self.limit_summary(Status::Timeout, errors, started).await;
                }
                Err(Err(e)) => {
                    let msg = format!("model request failed: {e}");
                    errors.push(msg.clone());
                    return self.finish(Status::Error, msg, None, errors, started);
                }
            };
            if response.calls.is_empty() {
                let text = response.text.trim().to_string();
                if let Some(schema) = self.opts.output_schema.clone() {
                    match check_schema(&schema, &text) {
                        Ok(value) => {
                            return self.finish(
                                Status::Completed,
                                text,
                                Some(value),
                                errors,
                                started,
                            );
                        }
                        Err(problems) if schema_tries < self.opts.schema_retries => {
                            schema_tries += 1;
                            let pretty = serde_json::to_string_pretty(&schema).unwrap_or_default();
                            let msg = prompt::render(
                                prompt::OUTPUT_SCHEMA,
                                &[("errors", &problems), ("schema", &pretty)],
                            );
                            self.push_user(msg);
                            continue;
                        }
                        Err(problems) => {
                            let msg = format!(
                                "the final answer does not match the output schema after {} attempts: {problems}",
                                schema_tries + 1
                            );
                            errors.push(msg);
                            return self.finish(Status::Error, text, None, errors, started);
                        }
                    }
                }
                if text.is_empty() && response.reasoning.is_empty() {
                    self.emit(EventKind::Warning {
                        message: "the model's final answer is empty".into(),
                    });
                }
                return self.finish(Status::Completed, text, None, errors, started);
            }
            match self.run_calls(&response.calls).instrument(turn_span).await {
                Ok(None) => {}
                Ok(Some(doom)) => {
                    errors.push(doom.clone());
                    return self.finish(Status::Error, doom, None, errors, started);
                }
                Err(Stop::Cancelled) => {
                    return self.finish(
                        Status::Cancelled,
                        "Cancelled.".into(),
                        None,
                        errors,
                        started,
                    );
                }
                Err(Stop::Timeout) => {
                    return self.limit_summary(Status::Timeout, errors, started).await;
                }
            }
        }
    }

    fn push_user(&mut self, text: String) {
        self.emit(EventKind::UserMessage { text: text.clone() });
        self.messages.push(Message::user(text));
    }

    fn limit_reached(&self) -> Option<Status> {
        let l = &self.opts.limits;
        if self
            .run_deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            return Some(Status::Timeout);
        }
        if self.run_steps >= l.max_steps {
            return Some(Status::MaxSteps);
        }
        if l.max_tokens.is_some_and(|max| self.usage.total() >= max) {
            return Some(Status::Budget);
        }
        if let (Some(max), Some(cost)) = (l.max_cost_usd, self.cost)
            && cost >= max
        {
            return Some(Status::Budget);
        }
        None
    }

    /// The last model call without tools, so the result says what was done and what is left.
    async fn limit_summary(
        &mut self,
        status: Status,
        mut errors: Vec<String>,
        started: Instant,
    ) -> Outcome {
        let l = &self.opts.limits;
        let what = match status {
            Status::MaxSteps => format!("the step limit ({} model turns)", l.max_steps),
            Status::Timeout => format!(
                "the time limit ({:.0}s)",
                l.timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
            ),
            _ => match (l.max_tokens, l.max_cost_usd) {
                (Some(t), _) if self.usage.total() >= t => format!("the token budget ({t} tokens)"),
                (_, Some(c)) => format!("the cost budget (${c})"),
                _ => "the budget".to_string(),
            },
        };
        self.emit(EventKind::Warning {
            message: format!("stopped by {what}; asking the model for a final summary"),
        });
        let text = prompt::render(prompt::LIMIT_SUMMARY, &[("limit", &what)]);
        self.push_user(text);
        // The summary gets a short time of its own, even after a timeout.
        let grace = tokio::time::Instant::now() + Duration::from_secs(60);
        let summary = match self.model_turn(Vec::new(), Some(grace)).await {
            Ok(r) if !r.text.trim().is_empty() => r.text.trim().to_string(),
            Ok(_) => format!("Stopped by {what}; the model gave no summary."),
            Err(Ok(Stop::Cancelled)) => {
                return self.finish(
                    Status::Cancelled,
                    "Cancelled.".into(),
                    None,
                    errors,
                    started,
                );
            }
            Err(Ok(Stop::Timeout)) => format!("Stopped by {what}; the summary request timed out."),
            Err(Err(e)) => {
                errors.push(format!("summary request failed: {e}"));
                format!("Stopped by {what}; the summary request failed: {e}")
            }
        };
        self.finish(status, summary, None, errors, started)
    }

    fn finish(
        &mut self,
        status: Status,
        result: String,
        structured: Option<Value>,
        errors: Vec<String>,
        started: Instant,
    ) -> Outcome {
        let outcome = Outcome {
            session_id: self.id.clone(),
            status,
            result,
            structured_output: structured,
            usage: self.usage,
            cost_usd: self.cost,
            duration_ms: started.elapsed().as_millis() as u64,
            num_turns: self.turns,
            files_changed: self.files_changed.clone(),
            errors,
            metrics: std::mem::take(&mut self.metrics),
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
        });
        self.sync();
        outcome
    }

    /// One model call: stream it, forward deltas, assemble the response. `Err(Ok(_))` when
    /// cancelled or timed out, `Err(Err(_))` when the model failed.
    async fn model_turn(
        &mut self,
        tools: Vec<ToolSpec>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Response, Result<Stop, LlmError>> {
        let model = self.model_label();
        let span = tracing::info_span!(
            "chat",
            otel.name = %format!("chat {model}"),
            otel.kind = "client",
            "gen_ai.operation.name" = "chat",
            "gen_ai.request.model" = %model,
            "gen_ai.request.temperature" = tracing::field::Empty,
            "gen_ai.provider.name" = tracing::field::Empty,
            "gen_ai.response.model" = tracing::field::Empty,
            "gen_ai.response.finish_reasons" = tracing::field::Empty,
            "gen_ai.usage.input_tokens" = tracing::field::Empty,
            "gen_ai.usage.output_tokens" = tracing::field::Empty,
            ttft_ms = tracing::field::Empty,
            retries = tracing::field::Empty,
            tool_calls = tracing::field::Empty,
        );
        if let Some(t) = self.opts.temperature.or(self.agent.temperature) {
            span.record("gen_ai.request.temperature", t);
        }
        let r = self
            .model_turn_inner(tools, deadline)
            .instrument(span.clone())
            .await;
        match &r {
            Ok(resp) => {
                span.record("gen_ai.provider.name", resp.provider.as_str());
                span.record("gen_ai.response.model", resp.model.as_str());
                span.record("gen_ai.response.finish_reasons", resp.finish.as_str());
                // Integers as i64: OpenTelemetry has no unsigned attribute type.
                span.record("gen_ai.usage.input_tokens", resp.usage.input_tokens as i64);
                span.record(
                    "gen_ai.usage.output_tokens",
                    resp.usage.output_tokens as i64,
                );
                span.record("retries", i64::from(resp.retries));
                span.record("tool_calls", resp.calls.len() as i64);
                if let Some(t) = resp.ttft {
                    span.record("ttft_ms", t.as_millis() as i64);
                }
            }
            Err(Err(e)) => {
                tracing::warn!(parent: &span, error = %e, kind = e.kind(), "model call failed");
            }
            Err(Ok(_)) => {}
        }
        r
    }

    async fn model_turn_inner(
        &mut self,
        tools: Vec<ToolSpec>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Response, Result<Stop, LlmError>> {
        let turn = self.turns + 1;
        self.emit(EventKind::TurnStarted { turn });
        let request = ChatRequest {
            messages: self.messages.clone(),
            tools,
            temperature: self.opts.temperature.or(self.agent.temperature),
            top_p: self.opts.top_p.or(self.agent.top_p),
            max_tokens: None,
            parallel_tool_calls: None,
        };
        let start = Instant::now();
        let mut stream = self.client.stream(request);
        let mut r = Response::default();
        let cancel = self.cancel.clone();
        let sleep = until(deadline);
        tokio::pin!(sleep);
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Err(Ok(Stop::Cancelled)),
                _ = &mut sleep => return Err(Ok(Stop::Timeout)),
                n = stream.next() => n,
            };
            let Some(event) = next else { break };
            match event {
                Err(e) => return Err(Err(e)),
                Ok(ModelEvent::TextDelta { text }) => {
                    r.ttft.get_or_insert_with(|| start.elapsed());
                    r.text.push_str(&text);
                    self.emit(EventKind::MessageDelta {
                        turn,
                        text,
                        reasoning: false,
                    });
                }
                Ok(ModelEvent::ReasoningDelta { text }) => {
                    r.ttft.get_or_insert_with(|| start.elapsed());
                    r.reasoning.push_str(&text);
                    self.emit(EventKind::MessageDelta {
                        turn,
                        text,
                        reasoning: true,
                    });
                }
                Ok(ModelEvent::ToolCall { call }) => {
                    r.ttft.get_or_insert_with(|| start.elapsed());
                    r.calls.push(call);
                }
                Ok(ModelEvent::Usage { usage }) => r.usage = usage,
                Ok(ModelEvent::Finish {
                    reason,
                    provider,
                    model,
                }) => {
                    r.finish = match reason {
                        deputy_llm::FinishReason::Other(s) => s,
                        other => serde_json::to_value(&other)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                    };
                    r.provider = provider;
                    r.model = model;
                }
                Ok(ModelEvent::Retry {
                    attempt,
                    delay,
                    reason,
                    discard_partial,
                }) => {
                    r.retries += 1;
                    if discard_partial {
                        r.text.clear();
                        r.reasoning.clear();
                        r.calls.clear();
                    }
                    self.emit(EventKind::Warning {
                        message: format!(
                            "model request attempt {attempt} failed ({reason}); retrying in {:.1}s",
                            delay.as_secs_f64()
                        ),
                    });
                }
                Ok(ModelEvent::Warning { message }) => self.emit(EventKind::Warning { message }),
            }
        }
        let model_ms = start.elapsed().as_millis() as u64;
        self.turns += 1;
        self.usage.add(&r.usage);
        let cost = self
            .opts
            .pricing
            .as_ref()
            .and_then(|p| p(&r.provider, &r.model, &r.usage));
        if let Some(c) = cost {
            *self.cost.get_or_insert(0.0) += c;
        }
        self.metrics.retries += r.retries;
        self.metrics.model_turns.push(TurnMetric {
            turn,
            ttft_ms: r.ttft.map(|d| d.as_millis() as u64),
            total_ms: model_ms,
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
        });
        self.emit(EventKind::MessageCompleted {
            turn,
            text: r.text.clone(),
            reasoning: (!r.reasoning.is_empty()).then(|| r.reasoning.clone()),
            tool_calls: r.calls.clone(),
        });
        self.emit(EventKind::TurnCompleted {
            turn,
            usage: r.usage,
            cost_usd: cost,
            provider: r.provider.clone(),
            model: r.model.clone(),
            finish_reason: r.finish.clone(),
            ttft_ms: r.ttft.map(|d| d.as_millis() as u64),
            model_ms,
            retries: r.retries,
        });
        self.messages.push(Message::Assistant {
            content: (!r.text.is_empty()).then(|| r.text.clone()),
            tool_calls: r.calls.clone(),
            reasoning: (!r.reasoning.is_empty()).then(|| r.reasoning.clone()),
        });
        self.sync();
        Ok(r)
    }

    /// Whether a call may run side by side with its neighbours (read-only tools, subagents).
    fn concurrent(&self, p: &Planned) -> bool {
        p.verdict.is_ok()
            && (p.call.name == "task"
                || self
                    .toolbox
                    .get(&p.call.name)
                    .is_some_and(|t| t.read_only()))
    }

    /// Decide and run the calls of one response, in order (read-only calls and subagents side
    /// by side). `Ok(Some(reason))` when the doom-loop guard stops the session.
    async fn run_calls(&mut self, calls: &[ToolCall]) -> Result<Option<String>, Stop> {
        let turn = self.turns;
        // 1. Decide every call, in order (approval prompts are asked one at a time).
        let mut plan: Vec<Planned> = Vec::new();
        let mut stop = None;
        for call in calls {
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
            let (verdict, note, halt) = self.decide(call).await?;
            if halt.is_some() {
                stop = halt;
            }
            plan.push(Planned {
                call: call.clone(),
                verdict,
                note,
            });
        }
        // 2. Run them: a run of consecutive concurrent calls goes together.
        let mut i = 0;
        while i < plan.len() {
            let mut j = i;
            while j < plan.len() && self.concurrent(&plan[j]) {
                j += 1;
            }
            let end = if j > i { j } else { i + 1 };
            let batch: Vec<Planned> = plan[i..end].to_vec();
            let futures: Vec<BoxFuture<'static, Done>> =
                batch.iter().map(|p| self.call_future(p)).collect();
            let all = futures::future::join_all(futures);
            let cancel = self.cancel.clone();
            let sleep = until(self.run_deadline);
            let results = tokio::select! {
                r = all => r,
                _ = cancel.cancelled() => {
                    self.abandon(&batch, "cancelled by the user before it finished; it may have partly run");
                    return Err(Stop::Cancelled);
                }
                _ = sleep => {
                    self.abandon(&batch, "stopped by the session's time limit before it finished; it may have partly run");
                    return Err(Stop::Timeout);
                }
            };
            for (p, mut done) in batch.into_iter().zip(results) {
                if let Some(n) = p.note {
                    done.output.content.push_str(&format!("\n\n{n}"));
                }
                self.usage.add(&done.usage);
                if let Some(c) = done.cost {
                    *self.cost.get_or_insert(0.0) += c;
                }
                self.complete(&p.call, done.output, done.took);
            }
            i = end;
        }
        Ok(stop)
    }

    /// The work of one decided call, owning everything it needs.
    fn call_future(&self, p: &Planned) -> BoxFuture<'static, Done> {
        let call = p.call.clone();
        let verdict = p.verdict.clone();
        if let Err(out) = verdict {
            return Box::pin(async move {
                Done {
                    output: out,
                    took: Duration::ZERO,
                    usage: Usage::default(),
                    cost: None,
                }
            });
        }
        if call.name == "task" {
            let Some(ctx) = self.task.clone() else {
                return Box::pin(async { done_error("the task tool is not available here") });
            };
            let input: TaskInput = match serde_json::from_value(call.arguments.clone()) {
                Ok(i) => i,
                Err(e) => {
                    let msg = format!(
                        "invalid input for task: {e}. Expected description, prompt, subagent_type and optionally task_id"
                    );
                    return Box::pin(async move { done_error(&msg) });
                }
            };
            let l = &self.opts.limits;
            let parent = Parent {
                session_id: self.id.clone(),
                depth: ctx.depth,
                permissions: self.toolbox.permissions(),
                deadline: self.run_deadline,
                steps_left: l.max_steps.saturating_sub(self.run_steps),
                tokens_left: l.max_tokens.map(|m| m.saturating_sub(self.usage.total())),
                cost_left: l
                    .max_cost_usd
                    .map(|m| (m - self.cost.unwrap_or(0.0)).max(0.0)),
                cancel: self.cancel.clone(),
                out: self.out.clone(),
                model_label: self.model_label(),
                approver: self.opts.approver.clone(),
                call_id: call.id.clone(),
            };
            let span = tool_span(&call);
            return Box::pin(async move {
                let t = Instant::now();
                let r = ctx.runner.run(input, parent).instrument(span.clone()).await;
                span.record("duration_ms", t.elapsed().as_millis() as i64);
                span.record("is_error", r.output.is_error);
                Done {
                    output: r.output,
                    took: t.elapsed(),
                    usage: r.usage,
                    cost: r.cost,
                }
            });
        }
        let tool = self.toolbox.get(&call.name);
        let ctx = self.toolbox.ctx.clone();
        let span = tool_span(&call);
        Box::pin(async move {
            let t = Instant::now();
            let output = match tool {
                Some(tool) => {
                    tool.call(call.arguments.clone(), &ctx)
                        .instrument(span.clone())
                        .await
                }
                None => ToolOutput::error(format!("unknown tool {}", call.name)),
            };
            span.record("duration_ms", t.elapsed().as_millis() as i64);
            span.record("is_error", output.is_error);
            Done {
                output,
                took: t.elapsed(),
                usage: Usage::default(),
                cost: None,
            }
        })
    }

    fn abandon(&mut self, batch: &[Planned], why: &str) {
        for p in batch {
            let out = ToolOutput::error(format!("the {} call was {why}", p.call.name));
            self.complete(&p.call, out, Duration::ZERO);
        }
    }

    fn complete(&mut self, call: &ToolCall, mut out: ToolOutput, took: Duration) {
        // What a command printed may hold a secret it found on disk: the model never sees it.
        if crate::redact::any() {
            out.content = crate::redact::redact(&out.content);
            crate::redact::redact_value(&mut out.metadata);
        }
        if !out.is_error
            && matches!(call.name.as_str(), "write" | "edit")
            && let Some(p) = out.metadata.get("path").and_then(Value::as_str)
            && !self.files_changed.iter().any(|f| f == p)
        {
            self.files_changed.push(p.to_string());
        }
        self.metrics.tool_calls.push(ToolMetric {
            tool: call.name.clone(),
            duration_ms: took.as_millis() as u64,
            is_error: out.is_error,
        });
        self.emit(EventKind::ToolCompleted {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            is_error: out.is_error,
            output: out.content.clone(),
            metadata: out.metadata,
            duration_ms: took.as_millis() as u64,
        });
        self.messages
            .push(Message::tool(call.id.clone(), out.content));
    }

    fn guard(&mut self, call: &ToolCall, reason: String) -> Result<(), ToolOutput> {
        self.emit(EventKind::ToolDecided {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            allowed: false,
            by: DecidedBy::Guard,
            reason: Some(reason.clone()),
        });
        Err(ToolOutput::error(reason))
    }

    /// May this call run? The verdict is `Err(result to give the model)` when not; the note is
    /// added to the result (doom-loop warning); the last value stops the session.
    async fn decide(
        &mut self,
        call: &ToolCall,
    ) -> Result<(Result<(), ToolOutput>, Option<String>, Option<String>), Stop> {
        let is_task = call.name == "task" && self.task_spec().is_some();
        let tool = self.toolbox.get(&call.name);
        if tool.is_none() && !is_task {
            let names = self.tool_names().join(", ");
            let v = self.guard(
                call,
                format!(
                    "there is no tool named `{}`; the tools are: {names}",
                    call.name
                ),
            );
            return Ok((v, None, None));
        }
        if !call.arguments_valid() {
            let raw: String = call.raw_arguments.chars().take(300).collect();
            let v = self.guard(
                call,
                format!(
                    "the arguments are not valid JSON: {raw}. Send the arguments as one JSON object"
                ),
            );
            return Ok((v, None, None));
        }
        // Doom loop: the same call with the same input again and again.
        let key = format!("{}\u{0}{}", call.name, call.arguments);
        let count = match &self.doom {
            Some((k, n)) if *k == key => n + 1,
            _ => 1,
        };
        self.doom = Some((key, count));
        if count >= 4 {
            let reason = format!(
                "the model made the same {} call with the same input {count} times in a row; stopping the session (doom loop)",
                call.name
            );
            let v = self.guard(call, reason.clone());
            return Ok((v, None, Some(reason)));
        }
        let note = (count == 3).then(|| {
            format!(
                "Note: this is the third time in a row you made exactly this {} call. Its result will not change; do something different. A fourth identical call ends the session.",
                call.name
            )
        });
        let subject = match &tool {
            Some(t) => match deputy_tools::permission_subject(
                t.as_ref(),
                &call.arguments,
                &self.toolbox.ctx.workspace,
            ) {
                Ok(s) => s,
                Err(e) => {
                    let v = self.guard(call, e.to_string());
                    return Ok((v, None, None));
                }
            },
            // For `task`, rules match the subagent's name.
            None => call
                .arguments
                .get("subagent_type")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        let decision = self
            .toolbox
            .permissions
            .lock()
            .map(|p| p.decide(&call.name, subject.as_deref()))
            .unwrap_or(Decision::Deny {
                reason: "permissions unavailable".into(),
            });
        let (allowed, by, reason) = match decision {
            Decision::Allow => (true, DecidedBy::Rule, None),
            Decision::Deny { reason } => (false, DecidedBy::Rule, Some(reason)),
            Decision::Ask { reason } => self.ask(call, subject, reason).await?,
        };
        self.emit(EventKind::ToolDecided {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            allowed,
            by,
            reason: reason.clone(),
        });
        if allowed {
            Ok((Ok(()), note, None))
        } else {
            let reason = reason.unwrap_or_default();
            let out = ToolOutput::error(format!(
                "permission denied: {reason}. Do not retry this call; do the task another way, or explain in your answer what you need."
            ));
            Ok((Err(out), note, None))
        }
    }

    /// An `ask` rule matched: put the question to the approver.
    async fn ask(
        &mut self,
        call: &ToolCall,
        subject: Option<String>,
        reason: String,
    ) -> Result<(bool, DecidedBy, Option<String>), Stop> {
        let request = ApprovalRequest {
            session_id: self.id.clone(),
            agent: self.agent.name.clone(),
            tool: call.name.clone(),
            input: call.arguments.clone(),
            subject: subject.clone(),
            reason: reason.clone(),
        };
        let approver = self.opts.approver.clone();
        let cancel = self.cancel.clone();
        let answer = tokio::select! {
            a = approver.approve(&request) => a,
            _ = cancel.cancelled() => return Err(Stop::Cancelled),
        };
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

fn done_error(msg: &str) -> Done {
    Done {
        output: ToolOutput::error(msg),
        took: Duration::ZERO,
        usage: Usage::default(),
        cost: None,
    }
}

/// Sleep until the deadline, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The system prompt: the preamble (workspace, date, OS, tools, sandbox) and the agent's prompt.
fn system_prompt(
    agent: &AgentSpec,
    toolbox: &Toolbox,
    opts: &SessionOptions,
    with_task: bool,
) -> String {
    let mut tools: Vec<String> = toolbox
        .tools
        .iter()
        .map(|t| {
            let first = t
                .description()
                .split(". ")
                .next()
                .unwrap_or("")
                .trim_end_matches('.');
            format!("- {}: {first}.", t.name())
        })
        .collect();
    if with_task {
        tools.push("- task: hand a self-contained piece of work to a subagent and get its answer back; several task calls in one reply run at the same time.".to_string());
    }
    let tools = if tools.is_empty() {
        "(none: answer from what you know and what the user gives you)".to_string()
    } else {
        tools.join("\n")
    };
    let network = opts.sandbox.network || agent.network == Some(true);
    let sandbox = match toolbox.sandbox.as_str() {
        "bwrap" | "landlock" => format!(
            "Shell commands run in a sandbox ({}): {}, {}, and no secrets in the environment.",
            toolbox.sandbox,
            if opts.sandbox.mode == deputy_tools::SandboxMode::ReadOnly {
                "nothing is writable but a private temporary directory"
            } else {
                "only the workspace is writable (its .git is read-only)"
            },
            if network {
                "with network access"
            } else {
                "no network"
            },
        ),
        "none" => "Shell commands run without a sandbox, with the user's full access: be careful."
            .to_string(),
        _ => "There is no shell.".to_string(),
    };
    let preamble = prompt::render(
        prompt::PREAMBLE,
        &[
            ("agent", &agent.name),
            (
                "workspace",
                &toolbox.ctx.workspace.canonical_root().display().to_string(),
            ),
            ("date", &prompt::today()),
            ("os", &prompt::os_name()),
            ("tools", &tools),
            ("sandbox", &sandbox),
        ],
    );
    if agent.prompt.trim().is_empty() {
        preamble
    } else {
        format!("{preamble}\n---\n\n{}", agent.prompt)
    }
}

/// Parse the final answer as JSON (tolerating a code fence around it) and validate it.
fn check_schema(schema: &Value, text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|r| r.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the output schema itself is invalid: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(10)
        .map(|e| format!("- at `{}`: {e}", e.instance_path()))
        .collect();
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(format!("Problems:\n{}", problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_check() {
        let schema = json!({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}});
        assert_eq!(
            check_schema(&schema, "```json\n{\"ok\": true}\n```").unwrap(),
            json!({"ok": true})
        );
        assert!(
            check_schema(&schema, "{\"ok\": 1}")
                .unwrap_err()
                .contains("/ok")
        );
        assert!(
            check_schema(&schema, "nope")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
