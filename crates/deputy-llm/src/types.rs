//! The conversation as deputy sees it, independent of any wire format: requests, messages, tool
//! calls, and the events a model stream produces.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::LlmError;

/// One request to the model. The client chooses provider and model (and fallbacks); the request
/// carries what the agent decides: messages, tools and sampling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// How hard the model should think, where the protocol lets it be said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    /// The JSON Schema the final answer must match (sent as the Responses API's strict
    /// `text.format`; the runtime checks the answer whatever the protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

/// How much the model should reason: an effort (`minimal`, `low`, `medium`, `high`) or a token
/// budget. Each protocol takes what it understands and converts the other: Anthropic wants a
/// budget, the Responses API and Chat Completions an effort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reasoning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
}

impl Reasoning {
    /// The thinking budget: the one given, else one for the effort. `Some(0)` is off.
    pub fn budget(&self) -> Option<u32> {
        self.budget_tokens.or(match self.effort.as_deref() {
            Some("minimal") => Some(1024),
            Some("low") => Some(4096),
            Some("medium") => Some(10_000),
            Some("high") => Some(32_000),
            _ => None,
        })
    }

    /// The effort: the one given, else one for the budget.
    pub fn effort(&self) -> Option<String> {
        self.effort.clone().or_else(|| {
            self.budget_tokens.filter(|b| *b > 0).map(|b| {
                match b {
                    0..=2047 => "minimal",
                    2048..=6143 => "low",
                    6144..=19_999 => "medium",
                    _ => "high",
                }
                .to_string()
            })
        })
    }
}

/// What one protocol needs back unchanged on later requests, kept with the assistant message
/// that produced it: Anthropic's `thinking` and `redacted_thinking` blocks (their signatures
/// are checked), the Responses API's `reasoning` items (their `encrypted_content` is the
/// model's reasoning between tool calls).
///
/// The rule when the conversation moves on to another protocol or model: it is sent only to
/// the protocol **and** model that produced it, and left out for any other (a signature or an
/// encrypted item is refused by any other model). The readable reasoning text stays in the
/// message either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub api: Api,
    /// The model that produced it.
    pub model: String,
    /// The blocks (Anthropic) or items (Responses), in the order the model sent them.
    pub items: Vec<Value>,
}

impl Carried {
    /// Whether a request in `api` to `model` takes these items back.
    pub fn goes_to(&self, api: Api, model: &str) -> bool {
        self.api == api && self.model == model
    }
}

/// The wire protocol of a provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// OpenAI Chat Completions (`/chat/completions`), which most servers speak.
    #[default]
    Chat,
    /// OpenAI Responses (`/responses`).
    Responses,
    /// Anthropic Messages (`/messages`).
    Anthropic,
}

impl Api {
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "chat" | "chat_completions" | "openai" => Some(Api::Chat),
            "responses" => Some(Api::Responses),
            "anthropic" | "messages" => Some(Api::Anthropic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Responses => "responses",
            Api::Anthropic => "anthropic",
        }
    }
}

/// A message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
        /// Reasoning the model produced, kept so providers that want it back (DeepSeek's
        /// thinking mode with tools) receive it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasoning: Option<String>,
        /// Protocol items to send back unchanged (thinking blocks, reasoning items).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        carried: Option<Carried>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message::System {
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Message::User {
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Message::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
            reasoning: None,
            carried: None,
        }
    }

    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
        }
    }

    /// Rough size in characters, for token estimates.
    pub fn char_len(&self) -> usize {
        match self {
            Message::System { content } | Message::User { content } => content.len(),
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                content.as_ref().map_or(0, String::len)
                    + tool_calls
                        .iter()
                        .map(|c| c.name.len() + c.raw_arguments.len())
                        .sum::<usize>()
            }
            Message::Tool { content, .. } => content.len(),
        }
    }
}

/// A tool the model may call: name, description for the model, JSON Schema of its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A complete tool call, assembled from however many stream pieces it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments parsed as JSON; `Value::Null` when `raw_arguments` is not valid JSON.
    pub arguments: Value,
    /// The arguments exactly as the model sent them.
    pub raw_arguments: String,
}

impl ToolCall {
    /// Build a call from raw argument text; empty text means `{}`.
    pub fn from_raw(
        id: impl Into<String>,
        name: impl Into<String>,
        raw: impl Into<String>,
    ) -> Self {
        let raw = raw.into();
        let arguments = if raw.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(&raw).unwrap_or(Value::Null)
        };
        Self {
            id: id.into(),
            name: name.into(),
            arguments,
            raw_arguments: raw,
        }
    }

    /// Whether the arguments parsed as JSON.
    pub fn arguments_valid(&self) -> bool {
        !self.arguments.is_null()
    }
}

/// Token counts of one model response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`, those read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Of `input_tokens`, those written to the prompt cache (Anthropic prices them apart).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// True when the server sent no usage and these are estimates (about 4 characters a token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Add another response's usage (an estimate anywhere makes the sum an estimate).
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_input_tokens += other.cache_write_input_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.estimated |= other.estimated;
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    ToolCalls,
    /// Cut off by the output token limit.
    Length,
    ContentFilter,
    /// Anything else a server sent, kept as written.
    Other(String),
}

impl FinishReason {
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" | "end_turn" | "eos" | "stop_sequence" => FinishReason::Stop,
            "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
            "length" | "max_tokens" => FinishReason::Length,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_string()),
        }
    }
}

/// What a model stream yields, in order: deltas as they arrive, then the assembled tool calls,
/// the usage and the finish reason. Retry and fallback notices can come first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelEvent {
    /// A piece of the answer text.
    TextDelta {
        text: String,
    },
    /// A piece of reasoning (`reasoning_content`, `reasoning`, or inside `<think>` tags); never
    /// part of the answer.
    ReasoningDelta {
        text: String,
    },
    /// A complete tool call (emitted once the response is complete).
    ToolCall {
        call: ToolCall,
    },
    /// What the protocol needs back on the next request (emitted once the response is
    /// complete).
    Carried {
        carried: Carried,
    },
    Usage {
        usage: Usage,
    },
    /// The response is complete.
    Finish {
        reason: FinishReason,
        /// The provider and model that answered (a fallback, when one was used).
        provider: String,
        model: String,
    },
    /// An attempt failed and another follows after `delay`. When `discard_partial` is set, the
    /// deltas already received belong to the failed attempt and must be dropped.
    Retry {
        attempt: u32,
        #[serde(with = "duration_ms")]
        delay: Duration,
        reason: String,
        discard_partial: bool,
    },
    /// Something the user should know that did not stop the request (a parameter dropped, a
    /// switch to a fallback model).
    Warning {
        message: String,
    },
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// The stream a [`ModelClient`] returns.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ModelEvent, LlmError>> + Send>>;

/// Anything that can answer a [`ChatRequest`] with a stream of [`ModelEvent`]s.
pub trait ModelClient: Send + Sync {
    /// Start a request. Dropping the stream cancels it.
    fn stream(&self, request: ChatRequest) -> EventStream;

    /// `provider/model` of the primary target, for logs and events.
    fn describe(&self) -> String;

    /// The context window of the primary target's model (asked of the server at most once).
    /// A client that cannot tell says [`ContextWindow::assumed`].
    fn context_window(&self) -> futures::future::BoxFuture<'_, crate::window::ContextWindow> {
        Box::pin(async { crate::window::ContextWindow::assumed() })
    }

    /// The exact prompt tokens of `request`, where the server counts them
    /// (Anthropic's `count_tokens`); `None` when it cannot tell.
    fn count_tokens(&self, request: ChatRequest) -> futures::future::BoxFuture<'_, Option<u64>> {
        let _ = request;
        Box::pin(async { None })
    }
}

/// A whole response, as [`Collector`] assembles it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub carried: Option<Carried>,
    pub usage: Option<Usage>,
    pub finish: Option<FinishReason>,
    pub provider: String,
    pub model: String,
    pub retries: u32,
    pub warnings: Vec<String>,
}

/// What a caller streaming a response should pass on, for one [`ModelEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// A piece of text (`reasoning`: thinking, never part of the answer).
    Delta {
        text: String,
        reasoning: bool,
    },
    /// An attempt failed; another follows.
    Retry {
        attempt: u32,
        delay: Duration,
        reason: String,
    },
    Warning(String),
    /// Nothing to show (tool calls, usage, the finish: they are in the completion).
    Nothing,
}

/// Assembles a model stream into one [`Completion`], event by event, honouring
/// `discard_partial` retries. The one place that knows how events add up: [`collect`] and the
/// session loop (which forwards deltas as they come) both use it.
#[derive(Debug, Default)]
pub struct Collector {
    completion: Completion,
    first_output: Option<std::time::Instant>,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one event; returns what an observer should see of it.
    pub fn push(&mut self, event: ModelEvent) -> Observed {
        let c = &mut self.completion;
        match event {
            ModelEvent::TextDelta { text } => self.delta(text, false),
            ModelEvent::ReasoningDelta { text } => self.delta(text, true),
            ModelEvent::ToolCall { call } => {
                self.first_output
                    .get_or_insert_with(std::time::Instant::now);
                c.tool_calls.push(call);
                Observed::Nothing
            }
            ModelEvent::Carried { carried } => {
                c.carried = Some(carried);
                Observed::Nothing
            }
            ModelEvent::Usage { usage } => {
                c.usage = Some(usage);
                Observed::Nothing
            }
            ModelEvent::Finish {
                reason,
                provider,
                model,
            } => {
                c.finish = Some(reason);
                c.provider = provider;
                c.model = model;
                Observed::Nothing
            }
            ModelEvent::Retry {
                attempt,
                delay,
                reason,
                discard_partial,
            } => {
                c.retries += 1;
                if discard_partial {
                    c.text.clear();
                    c.reasoning.clear();
                    c.tool_calls.clear();
                    c.carried = None;
                    c.usage = None;
                }
                Observed::Retry {
                    attempt,
                    delay,
                    reason,
                }
            }
            ModelEvent::Warning { message } => {
                c.warnings.push(message.clone());
                Observed::Warning(message)
            }
        }
    }

    fn delta(&mut self, text: String, reasoning: bool) -> Observed {
        self.first_output
            .get_or_insert_with(std::time::Instant::now);
        let c = &mut self.completion;
        if reasoning {
            c.reasoning.push_str(&text);
        } else {
            c.text.push_str(&text);
        }
        Observed::Delta { text, reasoning }
    }

    /// When the first text, reasoning or tool call arrived.
    pub fn first_output(&self) -> Option<std::time::Instant> {
        self.first_output
    }

    pub fn finish(self) -> Completion {
        self.completion
    }
}

/// Drain a model stream into one [`Completion`].
pub async fn collect(mut stream: EventStream) -> Result<Completion, LlmError> {
    let mut c = Collector::new();
    while let Some(event) = stream.next().await {
        c.push(event?);
    }
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_arguments() {
        let c = ToolCall::from_raw("1", "bash", "{\"command\":\"ls\"}");
        assert_eq!(c.arguments["command"], "ls");
        assert!(ToolCall::from_raw("1", "x", "").arguments.is_object());
        let bad = ToolCall::from_raw("1", "x", "{\"a\":");
        assert!(!bad.arguments_valid());
        assert_eq!(bad.raw_arguments, "{\"a\":");
    }

    #[test]
    fn message_serde_shape() {
        let m = Message::tool("call_1", "ok");
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"role": "tool", "tool_call_id": "call_1", "content": "ok"})
        );
    }
}
