//! Making room in the context window, cheapest first: old tool outputs are pruned to a stub,
//! then, when that is not enough, older turns are folded into a summary the model writes
//! (`prompts/compact.md`). The history becomes: system prompt, the original task, the summary,
//! the most recent turns — cut only at turn boundaries, so no call loses its result. A single
//! tool output too large for the window is cut to fit before the model sees it.
//!
//! Everything goes through [`Conversation`] and is journaled as one `context.compacted` event,
//! which a resume replays ([`apply`]).

use std::ops::Range;

use deputy_llm::{ChatRequest, ContextWindow, Message, ToolSpec, Usage, WindowSource};
use futures::StreamExt;

use crate::context::{BYTES_PER_TOKEN, FLOOR_TOKENS, WindowBudget, message_tokens, tokens_of_len};
use crate::conversation::{Conversation, ConversationError};
use crate::event::{CompactTrigger, EventKind, Status};
use crate::prompt;
use crate::session::Session;
use crate::transcript::{fitted_transcript, mechanical_summary};
use crate::turn::until;

/// Outputs shorter than this are not worth pruning.
const PRUNE_MIN_BYTES: usize = 600;

/// The stub a pruned output is replaced by.
pub fn prune_stub(tool: &str, len: usize) -> String {
    format!(
        "[output pruned to save context: this {tool} call's result ({len} bytes) is no longer shown; run the call again if you need it]"
    )
}

/// The user message a summary becomes.
pub fn summary_message(summary: &str) -> String {
    format!(
        "[Earlier turns of this session were compacted to fit the context window. Summary of the work so far:]\n\n{}",
        summary.trim()
    )
}

/// Replay a compaction on a conversation (a resume): the same outputs pruned, the same span
/// folded into the same summary.
pub(crate) fn apply(
    c: &mut Conversation,
    pruned: &[String],
    replaced: Option<[usize; 2]>,
    summary: Option<&str>,
) -> Result<(), ConversationError> {
    let outputs = c.tool_outputs();
    for id in pruned {
        if let Some(o) = outputs.iter().find(|o| &o.call_id == id) {
            c.replace_tool_output(id, prune_stub(&o.tool, o.len))?;
        }
    }
    if let (Some([a, b]), Some(s)) = (replaced, summary) {
        c.replace_span(a..b, vec![Message::user(summary_message(s))])?;
    }
    Ok(())
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub pruned_outputs: u32,
    pub summarized_turns: u32,
    pub context_window: u64,
}

/// Where history is cut: the first message of the most recent `keep` tokens, moved forward to
/// a turn boundary. When that keeps nothing, the last turn is kept if it is small enough.
fn cut_point(c: &Conversation, head: usize, keep: u64, limit: u64) -> usize {
    let msgs = c.messages();
    let mut acc = 0;
    let mut i = msgs.len();
    while i > head {
        let t = message_tokens(&msgs[i - 1]);
        if acc + t > keep {
            break;
        }
        acc += t;
        i -= 1;
    }
    let mut cut = i;
    while cut < msgs.len() && !c.is_boundary(cut) {
        cut += 1;
    }
    if cut >= msgs.len()
        && let Some(last) = (head..msgs.len())
            .rev()
            .find(|&j| matches!(msgs[j], Message::Assistant { .. }))
    {
        let last_turn: u64 = msgs[last..].iter().map(message_tokens).sum();
        if last_turn <= limit / 2 {
            cut = last;
        }
    }
    cut.max(head)
}

impl Session {
    /// Start asking the model client for its window, unless it is known or being asked.
    pub(crate) fn ask_window(&mut self) {
        if self.context.window.is_some() || self.context.asking.is_some() {
            return;
        }
        if let Some(w) = self.opts.compaction.window {
            self.context.window = Some(w);
            return;
        }
        let client = self.client.clone();
        self.context.asking = Some(tokio::spawn(async move { client.context_window().await }));
    }

    /// The window, waiting for the client's answer only once the history is no longer small.
    async fn window_for(&mut self, estimate: u64) -> Option<ContextWindow> {
        if let Some(w) = self.context.window_now() {
            return Some(w);
        }
        if estimate < FLOOR_TOKENS {
            return None;
        }
        self.ask_window();
        let w = match self.context.asking.take() {
            Some(handle) => handle.await.unwrap_or_else(|_| ContextWindow::assumed()),
            None => ContextWindow::assumed(),
        };
        if w.source == WindowSource::Assumed {
            self.emit(EventKind::Warning {
                message: format!(
                    "the context window of {} is not known (its server does not say, and it is not a model deputy knows); assuming {} tokens. Set it in config: [models.\"{}\"] context_window = N",
                    self.model_label(),
                    w.tokens,
                    self.model_label()
                ),
            });
        }
        self.context.window = Some(w);
        Some(w)
    }

    /// The window as known now, else the assumed one.
    pub(crate) fn budget_now(&mut self) -> WindowBudget {
        let w = self
            .context
            .window_now()
            .unwrap_or_else(ContextWindow::assumed);
        WindowBudget::new(&w, &self.opts.compaction)
    }

    /// The server said the request did not fit: believe the window it named.
    pub(crate) fn learn_window(&mut self, limit: Option<u64>) {
        let Some(tokens) = limit.filter(|l| *l >= 1024) else {
            return;
        };
        let known = self.context.window_now();
        if known.is_none_or(|w| tokens < w.tokens) {
            self.context.window = Some(ContextWindow {
                tokens,
                max_output: known.and_then(|w| w.max_output),
                source: WindowSource::Error,
            });
            self.context.asking = None;
        }
    }

    /// The prompt of the next request, estimated.
    pub(crate) fn context_estimate(&self, specs: &[ToolSpec]) -> u64 {
        self.context.estimate(self.conversation.messages(), specs)
    }

    /// Before a request: make room if it would pass the limit. `Err` when the run was
    /// cancelled or timed out while the summary was being written.
    pub(crate) async fn make_room(&mut self, specs: &[ToolSpec]) -> Result<(), Status> {
        if !self.opts.compaction.enabled {
            return Ok(());
        }
        let estimate = self.context_estimate(specs);
        let Some(w) = self.window_for(estimate).await else {
            return Ok(());
        };
        let budget = WindowBudget::new(&w, &self.opts.compaction);
        if estimate <= budget.limit {
            return Ok(());
        }
        // An estimate is rough; a server that counts exactly has the last word.
        if let Ok(messages) = self.conversation.request() {
            let sent = messages.len();
            let request = deputy_llm::ChatRequest {
                messages,
                tools: specs.to_vec(),
                ..Default::default()
            };
            if let Some(exact) = self.client.count_tokens(request).await {
                self.context.baseline = Some((sent, exact));
                if exact <= budget.limit {
                    return Ok(());
                }
            }
        }
        let deadline = self.run.deadline;
        self.compact_with(CompactTrigger::Threshold, None, specs, deadline)
            .await
            .map(|_| ())
    }

    /// Compact now (`/compact`), whatever the size: prune, then summarise. `focus` says what
    /// the summary should keep above all.
    pub async fn compact(&mut self, focus: Option<&str>) -> Result<CompactReport, String> {
        if !self.conversation.pending().is_empty() {
            return Err("tool calls are still waiting for their results".into());
        }
        let specs = self.router.specs(&self.toolbox.permissions());
        let estimate = self.context_estimate(&specs);
        self.window_for(estimate.max(FLOOR_TOKENS)).await;
        self.compact_with(CompactTrigger::Manual, focus, &specs, None)
            .await
            .map_err(|s| format!("compaction stopped: {}", s.as_str()))
    }

    /// Prune, then (unless pruning left the history well under the limit, for a threshold)
    /// summarise; journal what was done.
    pub(crate) async fn compact_with(
        &mut self,
        trigger: CompactTrigger,
        focus: Option<&str>,
        specs: &[ToolSpec],
        deadline: Option<tokio::time::Instant>,
    ) -> Result<CompactReport, Status> {
        // Claude Code's triggers: `manual`, else `auto`. What the hooks say changes nothing.
        let hook_trigger = match trigger {
            CompactTrigger::Manual => "manual",
            _ => "auto",
        };
        self.compact_hooks(hook_trigger, focus).await;
        let budget = self.budget_now();
        let before = self.context_estimate(specs);
        let pruned = self.prune(budget.keep_recent);
        if !pruned.is_empty() {
            self.context.invalidate();
        }
        let after_prune = self.context_estimate(specs);
        let mut folded = None;
        if trigger != CompactTrigger::Threshold || after_prune > budget.limit * 3 / 4 {
            // Asked for by the user, it folds all but the last turn, however small the history.
            let keep = match trigger {
                CompactTrigger::Manual => 0,
                _ => budget.keep_recent,
            };
            folded = self.summarize(&budget, keep, focus, deadline).await?;
        }
        let (replaced, summary, summarized, usage, cost) = match folded {
            Some(f) => {
                self.context.invalidate();
                (
                    Some([f.span.start, f.span.end]),
                    Some(f.summary),
                    f.span.len() as u32,
                    f.usage,
                    f.cost,
                )
            }
            None => (None, None, 0, None, None),
        };
        let after = self.context_estimate(specs);
        let report = CompactReport {
            tokens_before: before,
            tokens_after: after,
            pruned_outputs: pruned.len() as u32,
            summarized_turns: summarized,
            context_window: budget.window,
        };
        if pruned.is_empty() && replaced.is_none() {
            return Ok(report);
        }
        if let Some(u) = &usage {
            self.totals.usage.add(u);
        }
        if let Some(c) = cost {
            *self.totals.cost.get_or_insert(0.0) += c;
        }
        self.emit(EventKind::ContextCompacted {
            trigger,
            tokens_before: before,
            tokens_after: after,
            pruned_outputs: report.pruned_outputs,
            summarized_turns: summarized,
            context_window: budget.window,
            pruned,
            summary,
            replaced,
            usage,
            cost_usd: cost,
        });
        self.emitter.sync();
        if after > budget.limit {
            self.emit(EventKind::Warning {
                message: format!(
                    "the history is still about {after} tokens after compacting, over the limit of {} for a window of {}",
                    budget.limit, budget.window
                ),
            });
        }
        Ok(report)
    }

    /// Replace the outputs older than the most recent `keep` tokens by stubs; their call ids.
    fn prune(&mut self, keep: u64) -> Vec<String> {
        let msgs = self.conversation.messages();
        let mut acc = 0;
        let mut recent_from = msgs.len();
        for (i, m) in msgs.iter().enumerate().rev() {
            acc += message_tokens(m);
            if acc > keep {
                break;
            }
            recent_from = i;
        }
        let victims: Vec<_> = self
            .conversation
            .tool_outputs()
            .into_iter()
            .filter(|o| o.index < recent_from && o.len > PRUNE_MIN_BYTES)
            .collect();
        let mut pruned = Vec::new();
        for o in victims {
            if self
                .conversation
                .replace_tool_output(&o.call_id, prune_stub(&o.tool, o.len))
                .is_ok()
            {
                pruned.push(o.call_id);
            }
        }
        pruned
    }

    /// Fold the turns before the most recent `keep` tokens into a summary. `None` when there is
    /// nothing older to fold.
    async fn summarize(
        &mut self,
        budget: &WindowBudget,
        keep: u64,
        focus: Option<&str>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<Folded>, Status> {
        let msgs = self.conversation.messages();
        // The original task stays as it is, unless it alone would crowd the window.
        let task_fits = matches!(msgs.get(1), Some(m @ Message::User { .. }) if message_tokens(m) <= budget.limit / 4);
        let head = if task_fits { 2 } else { 1 };
        let cut = cut_point(&self.conversation, head, keep, budget.limit);
        if cut <= head || !self.conversation.is_boundary(head) {
            return Ok(None);
        }
        let span = head..cut;
        let focus_text = focus
            .filter(|f| !f.trim().is_empty())
            .map(|f| format!("\n\nAbove all, keep what concerns: {}", f.trim()))
            .unwrap_or_default();
        let system = prompt::render(prompt::COMPACT, &[("focus", &focus_text)]);
        let task = match msgs.get(1) {
            Some(Message::User { content }) if task_fits => {
                format!("The original task (the agent keeps it):\n<task>\n{content}\n</task>\n\n")
            }
            _ => String::new(),
        };
        // Room for the transcript: the window less the answer, the prompt and a margin.
        let answer = 4096.min(budget.window / 4);
        let fixed = tokens_of_len(system.len() + task.len()) + 256;
        let room = budget.window.saturating_sub(answer + fixed).max(256);
        let text = fitted_transcript(&msgs[span.clone()], (room * BYTES_PER_TOKEN) as usize);
        let request = ChatRequest {
            messages: vec![
                Message::system(system),
                Message::user(format!(
                    "{task}The transcript to summarise:\n<transcript>\n{text}</transcript>"
                )),
            ],
            ..Default::default()
        };
        let (summary, usage, cost) = match self.summary_call(request, deadline).await {
            Ok(r) => r,
            Err(SummaryError::Stopped(s)) => return Err(s),
            Err(SummaryError::Failed(why)) => {
                self.emit(EventKind::Warning {
                    message: format!(
                        "the summary request failed ({why}); older turns are replaced by a list of what was done"
                    ),
                });
                (
                    mechanical_summary(&self.conversation.messages()[span.clone()], &why),
                    None,
                    None,
                )
            }
        };
        self.conversation
            .replace_span(span.clone(), vec![Message::user(summary_message(&summary))])
            .map_err(|e| {
                tracing::error!("compaction: {e}");
                Status::Error
            })?;
        Ok(Some(Folded {
            span,
            summary,
            usage,
            cost,
        }))
    }

    /// The summary request, to the compaction model or the session's own.
    async fn summary_call(
        &mut self,
        request: ChatRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(String, Option<Usage>, Option<f64>), SummaryError> {
        let client = self
            .opts
            .compaction
            .client
            .clone()
            .unwrap_or_else(|| self.client.clone());
        let mut stream = client.stream(request);
        let mut collector = deputy_llm::Collector::new();
        let cancel = self.cancel.clone();
        let sleep = until(deadline);
        tokio::pin!(sleep);
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Err(SummaryError::Stopped(Status::Cancelled)),
                _ = &mut sleep => return Err(SummaryError::Stopped(Status::Timeout)),
                n = stream.next() => n,
            };
            let Some(event) = next else { break };
            let event = event.map_err(|e| SummaryError::Failed(e.to_string()))?;
            // Retries and warnings of the summary request are not the session's to show.
            let _ = collector.push(event);
        }
        let done = collector.finish();
        let text = done.text.trim().to_string();
        if text.is_empty() {
            return Err(SummaryError::Failed("the model wrote no summary".into()));
        }
        let usage = done.usage.unwrap_or_default();
        let cost = self.cost_of(&done.provider, &done.model, &usage);
        Ok((text, Some(usage), cost))
    }

    /// Cut a tool output too large for the window (more than half the limit) to fit, keeping
    /// its start and its end.
    pub(crate) fn fit_output(&mut self, tool: &str, content: String) -> String {
        if !self.opts.compaction.enabled {
            return content;
        }
        let budget = self.budget_now();
        let max_bytes = (budget.max_output_tokens() * BYTES_PER_TOKEN) as usize;
        if content.len() <= max_bytes {
            return content;
        }
        let note = format!(
            "\n\n[… {} bytes of this {tool} output were cut here to fit the model's context window ({} tokens); read the rest in parts (a narrower command, `read` with an offset, `grep`) …]\n\n",
            content.len().saturating_sub(max_bytes),
            budget.window
        );
        let keep = max_bytes.saturating_sub(note.len());
        let mut head_end = keep * 2 / 3;
        while !content.is_char_boundary(head_end) {
            head_end -= 1;
        }
        let mut tail_start = content.len() - (keep - head_end);
        while !content.is_char_boundary(tail_start) {
            tail_start += 1;
        }
        format!("{}{note}{}", &content[..head_end], &content[tail_start..])
    }
}

/// A span folded into a summary.
pub(crate) struct Folded {
    span: Range<usize>,
    summary: String,
    usage: Option<Usage>,
    cost: Option<f64>,
}

enum SummaryError {
    Stopped(Status),
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::tests::convo;

    #[test]
    fn cuts_fall_on_turn_boundaries_and_keep_the_task() {
        let c = convo(10, 3000);
        let cut = cut_point(&c, 2, 2500, 20_000);
        assert!(c.is_boundary(cut));
        assert!(matches!(c.messages()[cut], Message::Assistant { .. }));
        // Nothing fits in `keep`: the last turn is kept when it is small enough.
        let cut = cut_point(&c, 2, 10, 20_000);
        assert_eq!(cut, c.len() - 2);
        let cut = cut_point(&c, 2, 10, 100);
        assert_eq!(cut, c.len(), "a last turn too large is folded too");
    }

    #[test]
    fn replaying_a_compaction_gives_the_same_history() {
        let mut live = convo(6, 2000);
        let mut replay = live.clone();
        let pruned = vec!["c0".to_string(), "c1".to_string()];
        apply(&mut live, &pruned, Some([2, 10]), Some("did things")).unwrap_or_default();
        apply(&mut replay, &pruned, Some([2, 10]), Some("did things")).unwrap_or_default();
        assert_eq!(live, replay);
        assert!(live.request().is_ok());
        assert!(
            matches!(&live.messages()[2], Message::User { content } if content.contains("did things"))
        );
    }
}
