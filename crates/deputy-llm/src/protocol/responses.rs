//! OpenAI's Responses API (`POST /v1/responses`), stateless: `store: false`, the whole
//! conversation sent each time as input items, the model's reasoning kept between tool calls
//! as `reasoning` items with `encrypted_content` (asked for with `include`) and sent back
//! unchanged but without their ids (nothing is stored to look an id up in).
//!
//! The stream: `response.created`, `response.output_item.added`/`done`,
//! `response.output_text.delta`, `response.function_call_arguments.delta`/`done`,
//! `response.reasoning_summary_text.delta`, and one of `response.completed`,
//! `response.incomplete` or `response.failed`; `error` on its own.

use serde_json::{Map, Value, json};

use super::{Decode, DecodeError, Said, Settings, json_of, sent, str_of, u64_of};
use crate::sse::SseEvent;
use crate::types::{Api, Carried, ChatRequest, FinishReason, Message, ModelEvent, ToolCall, Usage};
use crate::wire::{ErrorInfo, error_from_value};

pub(crate) fn request_body(req: &ChatRequest, s: &Settings<'_>) -> Value {
    let p = s.provider;
    let stripped = |k: &str| s.stripped.iter().any(|x| x == k);
    let mut body = Map::new();
    body.insert("model".into(), json!(s.model));
    let mut input: Vec<Value> = Vec::new();
    let mut instructions: Vec<&str> = Vec::new();
    for m in &req.messages {
        match m {
            Message::System { content } if input.is_empty() => instructions.push(content),
            Message::System { content } => input.push(
                json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": content}]}),
            ),
            Message::User { content } => input.push(
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": content}]}),
            ),
            Message::Tool {
                tool_call_id,
                content,
            } => input.push(json!({
                "type": "function_call_output", "call_id": tool_call_id, "output": content,
            })),
            Message::Assistant {
                content,
                tool_calls,
                carried,
                ..
            } => {
                if let Some(c) = carried
                    && c.goes_to(Api::Responses, s.model)
                {
                    for item in &c.items {
                        let mut item = item.clone();
                        // With store: false there is nothing to find an id in.
                        if let Some(o) = item.as_object_mut() {
                            o.remove("id");
                            o.remove("status");
                        }
                        input.push(item);
                    }
                }
                if let Some(t) = content.as_deref().filter(|t| !t.is_empty()) {
                    input.push(json!({
                        "type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": t}],
                    }));
                }
                for c in tool_calls {
                    input.push(json!({
                        "type": "function_call", "call_id": c.id, "name": c.name,
                        "arguments": c.raw_arguments,
                    }));
                }
            }
        }
    }
    if !instructions.is_empty() {
        body.insert("instructions".into(), json!(instructions.join("\n\n")));
    }
    body.insert("input".into(), Value::Array(input));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function", "name": t.name, "description": t.description,
                    "parameters": t.parameters, "strict": false,
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(par) = req.parallel_tool_calls.or(p.parallel_tool_calls)
            && !stripped("parallel_tool_calls")
        {
            body.insert("parallel_tool_calls".into(), json!(par));
        }
    }
    body.insert("store".into(), json!(false));
    let reasoning = req.reasoning.as_ref().or(p.reasoning.as_ref());
    if let Some(effort) = reasoning.and_then(|r| r.effort())
        && !stripped("reasoning")
    {
        body.insert(
            "reasoning".into(),
            json!({"effort": effort, "summary": "auto"}),
        );
    }
    if !stripped("include") {
        body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    }
    if let Some(t) = sent(req.temperature, p.temperature, "temperature", s.stripped) {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(t) = sent(req.top_p, p.top_p, "top_p", s.stripped) {
        body.insert("top_p".into(), json!(t));
    }
    if let Some(m) = req.max_tokens.or(p.max_tokens)
        && !stripped("max_tokens")
    {
        body.insert("max_output_tokens".into(), json!(m));
    }
    if let Some(schema) = &req.output_schema {
        body.insert(
            "text".into(),
            json!({"format": {
                "type": "json_schema", "name": "output", "schema": schema,
                "strict": strict_compatible(schema),
            }}),
        );
    }
    body.insert("stream".into(), json!(p.stream));
    Value::Object(body)
}

/// Whether OpenAI's strict mode takes the schema as written: every object closed
/// (`additionalProperties: false`) with all its properties required. A schema that is not is
/// sent unstrict (strict would be refused), and the runtime checks the answer either way.
pub(crate) fn strict_compatible(schema: &Value) -> bool {
    match schema {
        Value::Object(o) => {
            let is_object = o.get("type").and_then(Value::as_str) == Some("object")
                || o.contains_key("properties");
            if is_object {
                if o.get("additionalProperties") != Some(&Value::Bool(false)) {
                    return false;
                }
                let props: Vec<&String> = o
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().collect())
                    .unwrap_or_default();
                let required: Vec<&str> = o
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if props.iter().any(|p| !required.contains(&p.as_str())) {
                    return false;
                }
            }
            o.values().all(strict_compatible)
        }
        Value::Array(items) => items.iter().all(strict_compatible),
        _ => true,
    }
}

/// One output item being received.
#[derive(Debug)]
struct Call {
    output_index: u64,
    call_id: String,
    name: String,
    arguments: String,
}

/// Reads a Responses stream (or a whole Responses object).
pub(crate) struct ResponsesDecoder {
    model: String,
    calls: Vec<Call>,
    reasoning_items: Vec<Value>,
    usage: Option<Usage>,
    /// `completed`, `incomplete` (with its reason), once said.
    status: Option<(String, Option<String>)>,
    said: Said,
}

impl ResponsesDecoder {
    pub(crate) fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            calls: Vec::new(),
            reasoning_items: Vec::new(),
            usage: None,
            status: None,
            said: Said::default(),
        }
    }

    fn call_at(&mut self, output_index: u64) -> Option<&mut Call> {
        self.calls
            .iter_mut()
            .find(|c| c.output_index == output_index)
    }

    /// An output item, as `output_item.added` or `done` (or a whole response's) gives it.
    fn item(&mut self, output_index: u64, item: &Value, done: bool) {
        match str_of(item, "type") {
            "function_call" => {
                let args = str_of(item, "arguments").to_string();
                match self.call_at(output_index) {
                    Some(c) => {
                        if done {
                            // The finished item is the authority on the arguments.
                            c.arguments = args;
                            c.call_id = str_of(item, "call_id").to_string();
                            c.name = str_of(item, "name").to_string();
                        }
                    }
                    None => {
                        self.calls.push(Call {
                            output_index,
                            call_id: str_of(item, "call_id").into(),
                            name: str_of(item, "name").into(),
                            arguments: args,
                        });
                    }
                }
            }
            "reasoning" if done => self.reasoning_items.push(item.clone()),
            _ => {}
        }
    }

    fn usage(&mut self, u: &Value) {
        self.usage = Some(Usage {
            input_tokens: u64_of(u, "/input_tokens"),
            output_tokens: u64_of(u, "/output_tokens"),
            cached_input_tokens: u64_of(u, "/input_tokens_details/cached_tokens"),
            reasoning_tokens: u64_of(u, "/output_tokens_details/reasoning_tokens"),
            ..Usage::default()
        });
    }

    /// The final response object (`completed`, `incomplete`; or a whole response).
    fn ended(&mut self, response: &Value) {
        if let Some(u) = response.get("usage").filter(|u| u.is_object()) {
            self.usage(u);
        }
        let status = match str_of(response, "status") {
            "" => "completed",
            s => s,
        };
        let why = response
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.status = Some((status.to_string(), why));
    }
}

fn failure(response: &Value) -> ErrorInfo {
    match response.get("error").filter(|e| e.is_object()) {
        Some(e) => error_from_value(&json!({ "error": e })),
        None => ErrorInfo {
            message: "the response failed without saying why".into(),
            code: Some("server_error".into()),
            ..ErrorInfo::default()
        },
    }
}

impl Decode for ResponsesDecoder {
    fn event(&mut self, event: SseEvent, out: &mut Vec<ModelEvent>) -> Result<bool, DecodeError> {
        let data = event.data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(data == "[DONE]");
        }
        let v = json_of(data)?;
        let kind = match str_of(&v, "type") {
            "" => event.event.as_str(),
            k => k,
        };
        let index = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                self.said.delta(str_of(&v, "delta"), false, out)
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.said.delta(str_of(&v, "delta"), true, out)
            }
            "response.reasoning_summary_part.added" if index_gt0(&v) => {
                // Parts of a summary are paragraphs apart.
                self.said.delta("\n\n", true, out)
            }
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(item) = v.get("item") {
                    self.item(index, item, kind.ends_with("done"));
                }
            }
            "response.function_call_arguments.delta" => {
                let piece = str_of(&v, "delta").to_string();
                self.said.chars += piece.len();
                if let Some(c) = self.call_at(index) {
                    c.arguments.push_str(&piece);
                }
            }
            "response.function_call_arguments.done" => {
                let args = str_of(&v, "arguments").to_string();
                if let Some(c) = self.call_at(index) {
                    c.arguments = args;
                }
            }
            "response.completed" | "response.incomplete" => {
                if let Some(r) = v.get("response") {
                    self.ended(r);
                }
                return Ok(true);
            }
            "response.failed" => {
                let r = v.get("response").cloned().unwrap_or_default();
                return Err(DecodeError::Server(failure(&r)));
            }
            "error" => return Err(DecodeError::Server(error_from_value(&v))),
            _ => {}
        }
        Ok(false)
    }

    fn whole(&mut self, body: &[u8], out: &mut Vec<ModelEvent>) -> Result<(), DecodeError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            DecodeError::Malformed(format!("the JSON response does not parse: {e}"))
        })?;
        if str_of(&v, "status") == "failed" {
            return Err(DecodeError::Server(failure(&v)));
        }
        let Some(output) = v.get("output").and_then(Value::as_array) else {
            return Err(DecodeError::Malformed("the response has no output".into()));
        };
        for (i, item) in output.iter().enumerate() {
            match str_of(item, "type") {
                "message" => {
                    for part in item
                        .get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let text = part
                            .get("text")
                            .or(part.get("refusal"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        self.said.delta(text, false, out);
                    }
                }
                "reasoning" => {
                    for s in item
                        .get("summary")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        self.said.delta(str_of(s, "text"), true, out);
                    }
                    self.item(i as u64, item, true);
                }
                _ => self.item(i as u64, item, true),
            }
        }
        self.ended(&v);
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.status.is_some()
    }

    fn has_content(&self) -> bool {
        self.said.emitted || !self.calls.is_empty() || !self.reasoning_items.is_empty()
    }

    fn emitted(&self) -> bool {
        self.said.emitted
    }

    fn output_chars(&self) -> usize {
        self.said.chars
    }

    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> (Option<Usage>, FinishReason) {
        let calls = std::mem::take(&mut self.calls);
        let had_calls = !calls.is_empty();
        for c in calls {
            out.push(ModelEvent::ToolCall {
                call: ToolCall::from_raw(c.call_id, c.name, c.arguments),
            });
        }
        if !self.reasoning_items.is_empty() {
            out.push(ModelEvent::Carried {
                carried: Carried {
                    api: Api::Responses,
                    model: self.model.clone(),
                    items: std::mem::take(&mut self.reasoning_items),
                },
            });
        }
        let reason = match &self.status {
            Some((s, why)) if s == "incomplete" => match why.as_deref() {
                Some("content_filter") => FinishReason::ContentFilter,
                _ => FinishReason::Length,
            },
            _ if had_calls => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        };
        (self.usage, reason)
    }
}

fn index_gt0(v: &Value) -> bool {
    v.get("summary_index").and_then(Value::as_u64).unwrap_or(0) > 0
}

#[cfg(test)]
mod tests;
