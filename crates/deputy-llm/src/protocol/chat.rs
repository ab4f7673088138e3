//! Chat Completions: the body is [`crate::wire`]'s, the stream is read by [`Accumulator`].

use serde_json::{Value, json};

use super::{Decode, DecodeError, Settings};
use crate::accumulate::Accumulator;
use crate::sse::SseEvent;
use crate::types::{ChatRequest, FinishReason, ModelEvent, Usage};
use crate::wire::{self, BodyOptions, Chunk, parse_error_body};

pub(crate) fn request_body(req: &ChatRequest, s: &Settings<'_>) -> Value {
    let p = s.provider;
    let mut body = wire::request_body(
        req,
        &BodyOptions {
            model: s.model,
            stream: p.stream,
            stripped: s.stripped,
            temperature: p.temperature,
            top_p: p.top_p,
            max_tokens: p.max_tokens,
            parallel_tool_calls: p.parallel_tool_calls,
            cache_control: p.cache_control,
        },
    );
    // OpenAI's reasoning models take an effort here; a server that refuses it gets it no more.
    let effort = req
        .reasoning
        .as_ref()
        .or(p.reasoning.as_ref())
        .and_then(|r| r.effort());
    if let Some(effort) = effort
        && !s.stripped.iter().any(|x| x == "reasoning_effort")
    {
        body["reasoning_effort"] = json!(effort);
    }
    body
}

/// Chat Completions chunks, as [`Accumulator`] adds them up.
#[derive(Default)]
pub(crate) struct ChatDecoder {
    acc: Accumulator,
}

impl Decode for ChatDecoder {
    fn event(&mut self, event: SseEvent, out: &mut Vec<ModelEvent>) -> Result<bool, DecodeError> {
        let data = event.data.trim();
        if event.event == "error" {
            return Err(DecodeError::Server(parse_error_body(data)));
        }
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            DecodeError::Malformed(format!(
                "a chunk is not JSON ({e}): {}",
                data.chars().take(200).collect::<String>()
            ))
        })?;
        self.acc.push(chunk, out).map_err(DecodeError::Server)?;
        Ok(false)
    }

    fn whole(&mut self, body: &[u8], out: &mut Vec<ModelEvent>) -> Result<(), DecodeError> {
        let chunk: Chunk = serde_json::from_slice(body).map_err(|e| {
            DecodeError::Malformed(format!("the JSON response does not parse: {e}"))
        })?;
        self.acc.push(chunk, out).map_err(DecodeError::Server)?;
        if !self.acc.is_complete() && !self.acc.has_content() {
            return Err(DecodeError::Malformed("the response has no choices".into()));
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.acc.is_complete()
    }

    fn has_content(&self) -> bool {
        self.acc.has_content()
    }

    fn emitted(&self) -> bool {
        self.acc.emitted
    }

    fn output_chars(&self) -> usize {
        self.acc.output_chars
    }

    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> (Option<Usage>, FinishReason) {
        let usage = self.acc.finish(out);
        let had_calls = out.iter().any(|e| matches!(e, ModelEvent::ToolCall { .. }));
        (usage, self.acc.finish_reason(had_calls))
    }
}
