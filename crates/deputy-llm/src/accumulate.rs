//! Turning a sequence of chunks into model events: deltas as they come, tool calls once whole.
//!
//! Tool-call pieces are matched to their call by `id` first and by `index` second, because
//! servers disagree: DashScope repeats `"id": ""` on continuation pieces, Anthropic's endpoint
//! starts at index 1, Mistral sends a whole call with no index at all, and some servers repeat
//! the id on every piece. A piece with neither a known id nor an index continues the last call.

use std::collections::HashMap;

use crate::think::{Piece, ThinkSplitter};
use crate::types::{FinishReason, ModelEvent, ToolCall, Usage};
use crate::wire::{Chunk, ErrorInfo, ToolCallDelta, error_from_value};

#[derive(Debug, Default)]
struct Slot {
    id: String,
    name: String,
    args: String,
}

/// The state of one response being received.
#[derive(Debug, Default)]
pub struct Accumulator {
    think: ThinkSplitter,
    slots: Vec<Slot>,
    by_id: HashMap<String, usize>,
    by_index: HashMap<u64, usize>,
    usage: Option<Usage>,
    finish: Option<String>,
    /// Whether any delta was handed out (a retry must then tell consumers to discard it).
    pub emitted: bool,
    /// Characters of output seen, for a usage estimate when the server sends none.
    pub output_chars: usize,
}

impl Accumulator {
    /// Whether a finish reason arrived (the response is complete).
    pub fn is_complete(&self) -> bool {
        self.finish.is_some()
    }

    /// Whether there is anything at all (text or calls) in this response.
    pub fn has_content(&self) -> bool {
        self.emitted || !self.slots.is_empty()
    }

    /// Take one chunk (or a whole non-streaming response). An `error` object in it is returned
    /// as an error.
    pub fn push(&mut self, chunk: Chunk, out: &mut Vec<ModelEvent>) -> Result<(), ErrorInfo> {
        if let Some(err) = &chunk.error
            && !err.is_null()
        {
            return Err(error_from_value(&serde_json::json!({ "error": err })));
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.to_usage());
        }
        for choice in chunk.choices {
            // deputy never asks for n > 1; other choices are ignored.
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta.or(choice.message) {
                let reasoning = delta.reasoning_text();
                if !reasoning.is_empty() {
                    self.reasoning(reasoning, out);
                }
                let (text, thinking) = delta.content_text();
                if !thinking.is_empty() {
                    self.reasoning(thinking, out);
                }
                if !text.is_empty() {
                    let pieces = self.think.feed(&text);
                    self.pieces(pieces, out);
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    self.tool_piece(call);
                }
            }
            if let Some(reason) = choice.finish_reason
                && !reason.is_empty()
            {
                self.finish = Some(reason);
            }
        }
        Ok(())
    }

    fn reasoning(&mut self, text: String, out: &mut Vec<ModelEvent>) {
        self.emitted = true;
        self.output_chars += text.len();
        out.push(ModelEvent::ReasoningDelta { text });
    }

    fn pieces(&mut self, pieces: Vec<Piece>, out: &mut Vec<ModelEvent>) {
        for p in pieces {
            match p {
                Piece::Text(text) => {
                    self.emitted = true;
                    self.output_chars += text.len();
                    out.push(ModelEvent::TextDelta { text });
                }
                Piece::Reasoning(text) => self.reasoning(text, out),
            }
        }
    }

    fn tool_piece(&mut self, d: ToolCallDelta) {
        let id = d.id.filter(|s| !s.is_empty());
        let slot = match (&id, d.index) {
            (Some(id), _) if self.by_id.contains_key(id) => self.by_id[id],
            (Some(id), index) => {
                // A new id opens a new call, unless its index already belongs to a call that has
                // no id yet (an id sent late).
                let existing = index
                    .and_then(|i| self.by_index.get(&i).copied())
                    .filter(|s| self.slots[*s].id.is_empty());
                let slot = existing.unwrap_or_else(|| self.open());
                self.slots[slot].id = id.clone();
                self.by_id.insert(id.clone(), slot);
                if let Some(i) = index {
                    self.by_index.insert(i, slot);
                }
                slot
            }
            (None, Some(i)) => match self.by_index.get(&i) {
                Some(s) => *s,
                None => {
                    let s = self.open();
                    self.by_index.insert(i, s);
                    s
                }
            },
            (None, None) => match self.slots.len() {
                0 => self.open(),
                n => n - 1,
            },
        };
        if let Some(f) = d.function {
            if let Some(name) = f.name.as_deref().filter(|n| !n.is_empty())
                && self.slots[slot].name.is_empty()
            {
                self.slots[slot].name = name.to_string();
            }
            let args = f.arguments_text();
            self.output_chars += args.len();
            self.slots[slot].args.push_str(&args);
        }
    }

    fn open(&mut self) -> usize {
        self.slots.push(Slot::default());
        self.slots.len() - 1
    }

    /// The response is over: flush held-back text, then the tool calls, usage and finish.
    /// Returns the usage (server's, else `None`).
    pub fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Option<Usage> {
        let rest = self.think.finish();
        self.pieces(rest, out);
        for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if slot.name.is_empty() && slot.args.is_empty() {
                continue;
            }
            let id = if slot.id.is_empty() {
                format!("call_{i}")
            } else {
                slot.id
            };
            out.push(ModelEvent::ToolCall {
                call: ToolCall::from_raw(id, slot.name, slot.args),
            });
        }
        self.usage
    }

    /// The finish reason, with tool calls implied when a server ends a tool-calling response
    /// with `stop` or sends none.
    pub fn finish_reason(&self, had_tool_calls: bool) -> FinishReason {
        match self.finish.as_deref().map(FinishReason::parse) {
            Some(FinishReason::Stop) | None if had_tool_calls => FinishReason::ToolCalls,
            Some(r) => r,
            None => FinishReason::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> (String, Vec<ToolCall>) {
        let mut acc = Accumulator::default();
        let mut out = Vec::new();
        for l in lines {
            let chunk: Chunk = serde_json::from_str(l).unwrap();
            acc.push(chunk, &mut out).unwrap();
        }
        acc.finish(&mut out);
        let mut text = String::new();
        let mut calls = Vec::new();
        for e in out {
            match e {
                ModelEvent::TextDelta { text: t } => text.push_str(&t),
                ModelEvent::ToolCall { call } => calls.push(call),
                _ => {}
            }
        }
        (text, calls)
    }

    #[test]
    fn empty_id_continuations_are_not_new_calls() {
        let (_, calls) = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":"{\"ci"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"","type":"function","function":{"arguments":"ty\":\"x\"}"}}]}}]}"#,
        ]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments["city"], "x");
    }

    #[test]
    fn index_starting_at_one_and_repeated_name() {
        let (text, calls) = run(&[
            r#"{"choices":[{"delta":{"content":"Let me check."}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"t1","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"name":"","arguments":"{\"a\":1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":""}}]}}]}"#,
        ]);
        assert_eq!(text, "Let me check.");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "f");
        assert_eq!(calls[0].arguments["a"], 1);
    }

    #[test]
    fn whole_call_without_index_and_parallel_calls() {
        let (_, calls) = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"x1","function":{"name":"a","arguments":"{}"}},{"id":"x2","function":{"name":"b","arguments":"{\"k\":2}"}}]}}]}"#,
        ]);
        assert_eq!(
            calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        let (_, calls) = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"p","function":{"name":"a","arguments":"{\"x\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"q","function":{"name":"b","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
        ]);
        assert_eq!(calls[0].arguments["x"], 1);
        assert_eq!(calls[1].name, "b");
    }

    #[test]
    fn error_object_in_chunk() {
        let mut acc = Accumulator::default();
        let chunk: Chunk = serde_json::from_str(
            r#"{"error":{"code":400,"message":"Token limit reached"},"choices":[]}"#,
        )
        .unwrap();
        let err = acc.push(chunk, &mut Vec::new()).unwrap_err();
        assert_eq!(err.message, "Token limit reached");
        assert_eq!(err.code.as_deref(), Some("400"));
    }
}
