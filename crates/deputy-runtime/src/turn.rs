//! One model call: build the request from the conversation, stream the answer (deltas passed
//! on as they come, assembled by deputy-llm's [`Collector`]), and record it: usage, cost,
//! metrics, the `message.completed` and `turn.completed` events, and the assistant message,
//! whose calls are then pending.

use std::time::Instant;

use deputy_llm::{ChatRequest, Collector, Completion, Observed, ToolSpec};
use futures::StreamExt;
use tracing::Instrument;

use crate::conversation::distinct_call_ids;
use crate::event::{EventKind, Status, TurnMetric};
use crate::session::Session;

/// Why a model call gave no answer.
#[derive(Debug)]
pub(crate) enum TurnError {
    /// Cancelled, or the deadline passed.
    Stopped(Status),
    /// The model failed (after retries), or the request could not be built.
    Failed(String),
    /// The server said the request does not fit the context window (naming the window, when
    /// it did).
    Overflow { message: String, limit: Option<u64> },
}

/// Whether the model paused its turn to be sent back and continued (Anthropic's `pause_turn`).
pub(crate) fn paused(r: &Completion) -> bool {
    matches!(&r.finish, Some(deputy_llm::FinishReason::Other(s)) if s == "pause_turn")
}

/// Sleep until the deadline, or forever without one.
pub(crate) async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// What `usage` of `model` at `provider` cost, when a price is known.
    pub(crate) fn cost_of(
        &self,
        provider: &str,
        model: &str,
        usage: &deputy_llm::Usage,
    ) -> Option<f64> {
        self.opts
            .pricing
            .as_ref()
            .and_then(|p| p(provider, model, usage))
    }

    /// One model call, with its span (OpenTelemetry GenAI: `chat {model}`).
    pub(crate) async fn model_turn(
        &mut self,
        tools: Vec<ToolSpec>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Completion, TurnError> {
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
            .stream_turn(tools, deadline, &span)
            .instrument(span.clone())
            .await;
        // The failure is the session's result (said once, at the end); here only for traces.
        if let Err(TurnError::Failed(e)) = &r {
            tracing::debug!(parent: &span, error = %e, "model call failed");
        }
        r
    }

    async fn stream_turn(
        &mut self,
        tools: Vec<ToolSpec>,
        deadline: Option<tokio::time::Instant>,
        span: &tracing::Span,
    ) -> Result<Completion, TurnError> {
        let turn = self.totals.turns + 1;
        let messages = self
            .conversation
            .request()
            .map_err(|e| TurnError::Failed(format!("internal error: {e}")))?;
        let sent = messages.len();
        let estimate = self.context.estimate(&messages, &tools);
        self.emit(EventKind::TurnStarted { turn });
        let request = ChatRequest {
            messages,
            tools,
            temperature: self.opts.temperature.or(self.agent.temperature),
            top_p: self.opts.top_p.or(self.agent.top_p),
            max_tokens: None,
            parallel_tool_calls: None,
            reasoning: (self.agent.reasoning_effort.is_some()
                || self.agent.thinking_budget.is_some())
            .then(|| deputy_llm::Reasoning {
                effort: self.agent.reasoning_effort.clone(),
                budget_tokens: self.agent.thinking_budget,
            }),
            output_schema: self.opts.output_schema.clone(),
        };
        let start = Instant::now();
        let mut stream = self.client.stream(request);
        // Once the model answers, have the sandbox ready (started once, or again after a
        // cancel took it down) while it goes on: started earlier, its fork and namespaces
        // compete with sending the request on a small machine.
        let mut warm = true;
        let mut collector = Collector::new();
        let cancel = self.cancel.clone();
        let sleep = until(deadline);
        tokio::pin!(sleep);
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Err(TurnError::Stopped(Status::Cancelled)),
                _ = &mut sleep => return Err(TurnError::Stopped(Status::Timeout)),
                n = stream.next() => n,
            };
            let Some(event) = next else { break };
            if std::mem::take(&mut warm) {
                self.toolbox.warm_sandbox();
            }
            let event = event.map_err(|e| {
                tracing::debug!(kind = e.kind(), "model error");
                match e {
                    deputy_llm::LlmError::ContextOverflow { limit, .. } => TurnError::Overflow {
                        message: e.to_string(),
                        limit,
                    },
                    e => TurnError::Failed(format!("model request failed: {e}")),
                }
            })?;
            match collector.push(event) {
                Observed::Delta { text, reasoning } => self.emit(EventKind::MessageDelta {
                    turn,
                    text,
                    reasoning,
                }),
                Observed::Retry {
                    attempt,
                    delay,
                    reason,
                } => self.emit(EventKind::Warning {
                    message: format!(
                        "model request attempt {attempt} failed ({reason}); retrying in {:.1}s",
                        delay.as_secs_f64()
                    ),
                }),
                Observed::Warning(message) => self.emit(EventKind::Warning { message }),
                Observed::Nothing => {}
            }
        }
        let ttft = collector.first_output().map(|t| t.duration_since(start));
        let mut r = collector.finish();
        distinct_call_ids(&mut r.tool_calls);
        let model_ms = start.elapsed().as_millis() as u64;
        let usage = r.usage.unwrap_or_default();
        let finish = match &r.finish {
            Some(deputy_llm::FinishReason::Other(s)) => s.clone(),
            Some(other) => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            None => String::new(),
        };
        self.totals.turns += 1;
        self.totals.usage.add(&usage);
        // The server's count of this prompt is what the next estimate builds on.
        let counted = !usage.estimated && usage.input_tokens > 0;
        if counted {
            self.context.baseline = Some((sent, usage.input_tokens));
        }
        let context_tokens = if counted {
            usage.input_tokens
        } else {
            estimate
        };
        let context_window = self.context.window_now().map(|w| w.tokens);
        let cost = self.cost_of(&r.provider, &r.model, &usage);
        if let Some(c) = cost {
            *self.totals.cost.get_or_insert(0.0) += c;
        }
        self.metrics.retries += r.retries;
        self.metrics.model_turns.push(TurnMetric {
            turn,
            ttft_ms: ttft.map(|d| d.as_millis() as u64),
            total_ms: model_ms,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
        });
        span.record("gen_ai.provider.name", r.provider.as_str());
        span.record("gen_ai.response.model", r.model.as_str());
        span.record("gen_ai.response.finish_reasons", finish.as_str());
        // Integers as i64: OpenTelemetry has no unsigned attribute type.
        span.record("gen_ai.usage.input_tokens", usage.input_tokens as i64);
        span.record("gen_ai.usage.output_tokens", usage.output_tokens as i64);
        span.record("retries", i64::from(r.retries));
        span.record("tool_calls", r.tool_calls.len() as i64);
        if let Some(t) = ttft {
            span.record("ttft_ms", t.as_millis() as i64);
        }
        let reasoning = (!r.reasoning.is_empty()).then(|| r.reasoning.clone());
        self.emit(EventKind::MessageCompleted {
            turn,
            text: r.text.clone(),
            reasoning: reasoning.clone(),
            tool_calls: r.tool_calls.clone(),
            carried: r.carried.clone(),
        });
        self.emit(EventKind::TurnCompleted {
            turn,
            usage,
            cost_usd: cost,
            provider: r.provider.clone(),
            model: r.model.clone(),
            finish_reason: finish,
            ttft_ms: ttft.map(|d| d.as_millis() as u64),
            model_ms,
            retries: r.retries,
            context_tokens: Some(context_tokens),
            context_window,
        });
        self.conversation
            .push_answer(
                Some(r.text.clone()),
                reasoning,
                r.tool_calls.clone(),
                r.carried.clone(),
            )
            .map_err(|e| TurnError::Failed(format!("internal error: {e}")))?;
        self.emitter.sync();
        Ok(r)
    }
}
