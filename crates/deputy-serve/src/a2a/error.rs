//! A2A's JSON-RPC errors, and the REST API's problems as them.

use serde_json::{Value, json};

use crate::problem::Problem;

pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;
pub(crate) const INTERNAL: i64 = -32603;
pub(crate) const TASK_NOT_FOUND: i64 = -32001;
pub(crate) const TASK_NOT_CANCELABLE: i64 = -32002;
pub(crate) const PUSH_NOT_SUPPORTED: i64 = -32003;
pub(crate) const UNSUPPORTED_OPERATION: i64 = -32004;
pub(crate) const CONTENT_TYPE_NOT_SUPPORTED: i64 = -32005;

#[derive(Debug, Clone)]
pub(crate) struct A2aError {
    pub code: i64,
    pub message: String,
}

impl A2aError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub(crate) fn content_type(message: impl Into<String>) -> Self {
        Self::new(CONTENT_TYPE_NOT_SUPPORTED, message)
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(TASK_NOT_FOUND, format!("no task {id} on this server"))
    }

    /// What the REST API said, in A2A's terms (`id`: the task asked about).
    pub(crate) fn from_problem(p: Problem, id: &str) -> Self {
        match p.status {
            404 => Self::not_found(id),
            400 | 413 | 422 => Self::params(p.detail),
            409 => Self::new(UNSUPPORTED_OPERATION, p.detail),
            _ => Self::new(INTERNAL, format!("{} ({})", p.detail, p.status)),
        }
    }

    /// The JSON-RPC response carrying it.
    pub(crate) fn response(&self, id: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": self.code, "message": self.message}})
    }
}
