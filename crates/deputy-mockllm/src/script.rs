//! The script a mock server plays.
//!
//! ```yaml
//! model: mock-model                  # what /v1/models reports (default "mock-model")
//! context_window: 32768              # longer requests get OpenAI's context_length_exceeded
//! prompt_cache: true                 # report a prefix repeated from the last request as cached
//! by_request: true                   # step N answers the N-th request (for compacted histories)
//! steps:                             # step N answers the request with N assistant turns so far
//!   - tool_calls:
//!       - name: bash
//!         arguments: {command: "ls"}
//!   - faults:                        # served first, one per request, then the step itself
//!       - status: 429
//!         headers: {retry-after: "1"}
//!     text: "Done."
//! routes:                            # conversations whose system or user text matches use
//!   - when: {system_contains: "Reviewer"}   # their own steps (concurrent subagents)
//!     steps:
//!       - text: "LGTM"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole script.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Script {
    pub model: Option<String>,
    /// The steps of conversations no route matches.
    pub steps: Vec<Step>,
    /// Conversations matched by content, each with its own steps; first match wins.
    pub routes: Vec<Route>,
    /// When a conversation is past the last step, play the last step again (instead of
    /// answering 400 "script exhausted").
    pub repeat_last: bool,
    /// Accept requests that break the tool-call rule (strict, like real providers, by default).
    pub lenient: bool,
    /// The model's context window in tokens (counted as [`crate::tokens`] says): a longer
    /// request gets OpenAI's `context_length_exceeded` 400. `/v1/models` reports it too.
    pub context_window: Option<u64>,
    /// Report the tokens of a prefix repeated from the previous request as cached.
    pub prompt_cache: bool,
    /// Step N answers the N-th request a route answers, whatever the conversation holds (for
    /// sessions whose history is compacted), instead of the one with N assistant turns.
    pub by_request: bool,
    /// Directory replay paths are relative to (set when loaded from a file).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Route {
    pub when: Match,
    pub steps: Vec<Step>,
    /// Past the last step, play it again.
    pub repeat_last: bool,
}

/// What a conversation must contain for a route to apply. All given fields must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Match {
    /// A substring of the system message.
    pub system_contains: Option<String>,
    /// A substring of the first user message.
    pub user_contains: Option<String>,
    /// A substring of the last user message (e.g. a limit's summary request).
    pub last_user_contains: Option<String>,
    /// The requested model, exactly.
    pub model: Option<String>,
}

/// One answer (and the faults served before it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Step {
    /// Answer text.
    pub text: Option<String>,
    /// Reasoning, streamed before the text: `reasoning_content` (chat), a signed `thinking`
    /// block (Anthropic), a reasoning item with `encrypted_content` (Responses).
    pub reasoning: Option<String>,
    /// Anthropic only: a `redacted_thinking` block with this data, after the thinking.
    pub redacted_thinking: Option<String>,
    /// The stop reason to report instead of the natural one (Anthropic's `max_tokens`,
    /// `pause_turn`, `refusal`; chat's `length`; Responses' `max_output_tokens` makes the
    /// response `incomplete`).
    pub stop_reason: Option<String>,
    /// One tool call (shorthand for a one-element `tool_calls`).
    pub tool_call: Option<ToolCallStep>,
    /// Tool calls, streamed as parallel calls.
    pub tool_calls: Vec<ToolCallStep>,
    /// Usage to report; default: an estimate of about 4 characters a token.
    pub usage: Option<UsageStep>,
    /// Leave usage out of the response entirely.
    pub no_usage: bool,
    /// Wait before answering, in milliseconds.
    pub delay_ms: Option<u64>,
    /// Wait between streamed chunks, in milliseconds.
    pub chunk_delay_ms: Option<u64>,
    /// Characters per streamed text delta (default 16).
    pub chunk_chars: Option<usize>,
    /// Play a recorded body instead (`.sse`, `.chunks.txt`, or `.json`), byte for byte.
    pub replay: Option<Replay>,
    /// Faults served, one per request, before this step answers.
    pub faults: Vec<Fault>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolCallStep {
    pub name: String,
    /// String values may hold `{{capture:REGEX}}`: replaced by the first group of the last
    /// match of REGEX in the conversation received (e.g. a task_id a tool returned).
    pub arguments: Value,
    /// Send these argument text pieces verbatim instead of the encoded `arguments`.
    pub raw_arguments: Option<Vec<String>>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageStep {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A recorded body to replay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Replay {
    Path(PathBuf),
    Full {
        path: PathBuf,
        #[serde(default)]
        status: Option<u16>,
    },
}

impl Replay {
    pub fn path(&self) -> &Path {
        match self {
            Replay::Path(p) | Replay::Full { path: p, .. } => p,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Replay::Path(_) => None,
            Replay::Full { status, .. } => *status,
        }
    }
}

/// Something going wrong on purpose.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// Answer with this HTTP status (and `body`, `headers`) instead of a completion.
    pub status: Option<u16>,
    pub headers: BTreeMap<String, String>,
    /// Error body: JSON (sent as JSON) or a string (sent as text).
    pub body: Option<Value>,
    /// Wait before answering, in milliseconds.
    pub delay_ms: Option<u64>,
    /// Stream this many chunks of the step's answer, then drop the connection.
    pub drop_after_chunks: Option<usize>,
    /// Stream this many chunks, then go silent for `stall_ms` (then drop the connection).
    pub stall_after_chunks: Option<usize>,
    pub stall_ms: Option<u64>,
    /// Stream this many chunks, then one that is not JSON, then carry on.
    pub malformed_after_chunks: Option<usize>,
    /// Stream this many chunks, then the protocol's "overloaded" error event, and end.
    pub error_after_chunks: Option<usize>,
}

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("{}: cannot read the script: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid script: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Script {
    /// Load a script file: YAML (`.yaml`, `.yml`) or JSON.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let is_json = path.extension().is_some_and(|e| e == "json");
        let mut script = Self::parse(&text, is_json).map_err(|message| ScriptError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        script.base_dir = path.parent().map(Path::to_path_buf);
        Ok(script)
    }

    /// Parse script text (JSON, or else YAML).
    pub fn parse(text: &str, json: bool) -> Result<Script, String> {
        if json {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())
        }
    }

    /// A script that answers every request with the same text.
    pub fn text(answer: impl Into<String>) -> Script {
        Script {
            steps: vec![Step {
                text: Some(answer.into()),
                ..Step::default()
            }],
            repeat_last: true,
            ..Script::default()
        }
    }

    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or("mock-model")
    }

    pub(crate) fn resolve_path(&self, p: &Path) -> PathBuf {
        match &self.base_dir {
            Some(d) if p.is_relative() => d.join(p),
            _ => p.to_path_buf(),
        }
    }
}

impl Step {
    /// Every tool call of the step (`tool_call` then `tool_calls`).
    pub fn all_tool_calls(&self) -> Vec<&ToolCallStep> {
        self.tool_call
            .iter()
            .chain(self.tool_calls.iter())
            .collect()
    }

    /// A step answering with text.
    pub fn text(t: impl Into<String>) -> Step {
        Step {
            text: Some(t.into()),
            ..Step::default()
        }
    }

    /// A step calling one tool.
    pub fn tool(name: impl Into<String>, arguments: Value) -> Step {
        Step {
            tool_call: Some(ToolCallStep {
                name: name.into(),
                arguments,
                ..ToolCallStep::default()
            }),
            ..Step::default()
        }
    }
}
