//! The request and response bodies of the API (their schemas are the OpenAPI document's).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::list::Metadata;
use crate::store::Phase;

/// Limits for one session (each bounded as on the command line).
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsIn {
    pub max_steps: Option<u32>,
    /// Wall-clock limit in seconds (above 0, at most 30 days).
    #[schemars(range(max = 2_592_000.0), extend("exclusiveMinimum" = 0))]
    pub timeout_s: Option<f64>,
    pub max_tokens: Option<u64>,
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
}

/// A new session.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The agent (default: general).
    pub agent: Option<String>,
    /// The task.
    #[schemars(length(min = 1))]
    pub prompt: String,
    /// A directory inside one of the server's roots (default: the first root).
    pub workspace: Option<String>,
    /// Instead of `workspace`: a repository to clone into a scratch directory of the server;
    /// the session's change comes back as `patch`.
    pub repo: Option<crate::repo::RepoIn>,
    /// `provider/model` or an alias (default: the agent's, else the server's); a provider the
    /// server has not configured is a 422 naming those it has.
    pub model: Option<String>,
    pub limits: Option<LimitsIn>,
    /// A JSON Schema the final answer must match.
    pub output_schema: Option<Value>,
    /// `worktree`: work in a git worktree and branch of its own (`deputy/AGENT-ID`) of the
    /// workspace's repository, so sessions on one workspace never edit each other's files;
    /// each run's change is committed there (see `worktree` in the session). The workspace
    /// must be the top of a git repository. Not with `repo` (a clone is its own already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<deputy_runtime::task::IsolationIn>,
    /// Labels for finding the session again (`GET /v1/sessions?label=KEY=VALUE`): at most 16,
    /// keys 1 to 64 of `A-Z a-z 0-9 _ . - / :`, values at most 256 characters.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub metadata: Metadata,
}

/// A session was accepted.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Created {
    pub id: String,
    pub status: Phase,
    /// Where to follow it (`GET`, server-sent events).
    pub events: String,
}

/// A 202 that started (or queued) a run: the session in the body, and in `Location`.
pub(crate) struct Accepted(pub(crate) Created);

impl axum::response::IntoResponse for Accepted {
    fn into_response(self) -> axum::response::Response {
        let location = format!("/v1/sessions/{}", self.0.id);
        let mut r = (axum::http::StatusCode::ACCEPTED, axum::Json(self.0)).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
            r.headers_mut().insert(axum::http::header::LOCATION, v);
        }
        r
    }
}

/// A session as it is now.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SessionView {
    pub id: String,
    pub agent: String,
    pub phase: Phase,
    /// How the last run ended (`completed`, `max_steps`, `timeout`, `budget`, `denied`,
    /// `cancelled`, `error`), once it has.
    pub status: Option<String>,
    pub result: Option<String>,
    pub structured_output: Option<Value>,
    pub usage: Option<UsageView>,
    pub cost_usd: Option<f64>,
    pub num_turns: Option<u32>,
    pub files_changed: Vec<String>,
    pub errors: Vec<String>,
    /// Calls waiting for an answer.
    pub pending_approvals: usize,
    /// For a `repo` session: its change as a unified diff, after each run.
    pub patch: Option<String>,
    /// For an `isolation: worktree` session, after each run: `unchanged`, or `committed` with
    /// the branch, the commit, its base and a diff stat. Merging it is the client's choice.
    #[serde(default)]
    pub worktree: Option<deputy_runtime::worktree::Settled>,
    /// When it was made (RFC 3339, UTC).
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    /// The labels it was made with.
    pub metadata: Metadata,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A further prompt for a finished session.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    #[schemars(length(min = 1))]
    pub prompt: String,
}

/// The answer to a pending call.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerIn {
    pub approve: bool,
    /// With `approve`: allow calls matching the call's `always_pattern` for the rest of the
    /// session.
    #[serde(default)]
    pub always: bool,
    /// With a refusal: told to the model.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentView {
    pub name: String,
    pub description: Option<String>,
    pub mode: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    pub status: String,
}
