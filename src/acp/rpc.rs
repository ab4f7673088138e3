//! JSON-RPC 2.0 over newline-delimited JSON, both ways: what deputy sends (responses,
//! notifications, and its own requests to the editor, answered by id) and how a line read is
//! told apart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// JSON-RPC error codes ACP uses.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// ACP: the session (or other resource) named does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// An error to answer a request with.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>>;

/// The sending side of the connection; cheap to clone. Every message goes through one writer
/// task, so lines never interleave.
#[derive(Clone)]
pub struct Out {
    tx: mpsc::UnboundedSender<Value>,
    next: Arc<AtomicU64>,
    waiting: Waiting,
}

impl Out {
    /// A sender, and the receiver the writer task drains to stdout.
    pub fn new() -> (Out, mpsc::UnboundedReceiver<Value>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Out {
                tx,
                next: Arc::new(AtomicU64::new(0)),
                waiting: Arc::default(),
            },
            rx,
        )
    }

    pub fn notify(&self, method: &str, params: Value) {
        let _ = self
            .tx
            .send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    pub fn respond(&self, id: Value, result: Result<Value, RpcError>) {
        let msg = match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err(e) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
            }
        };
        let _ = self.tx.send(msg);
    }

    /// Ask the editor something; its answer (or its error object). `Err(Null)` when the
    /// connection closed first.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, tx);
        let sent = self
            .tx
            .send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        if sent.is_err() {
            lock(&self.waiting).remove(&id);
            return Err(Value::Null);
        }
        rx.await.unwrap_or(Err(Value::Null))
    }

    /// An answer to one of our requests arrived.
    pub fn answered(&self, id: &Value, outcome: Result<Value, Value>) {
        let Some(id) = id.as_u64() else {
            tracing::warn!(%id, "a response to a request deputy never made");
            return;
        };
        match lock(&self.waiting).remove(&id) {
            Some(tx) => {
                let _ = tx.send(outcome);
            }
            None => tracing::warn!(id, "a response to a request deputy never made"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one line is.
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
    /// Not JSON-RPC: answered with this error (id null when none could be read).
    Invalid {
        id: Value,
        error: RpcError,
    },
}

/// Read one line.
pub fn parse(line: &str) -> Incoming {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Incoming::Invalid {
                id: Value::Null,
                error: RpcError::new(PARSE_ERROR, format!("not JSON: {e}")),
            };
        }
    };
    if !v.is_object() {
        return Incoming::Invalid {
            id: Value::Null,
            error: RpcError::new(
                INVALID_REQUEST,
                "a message must be one JSON object (ACP does not use batches)",
            ),
        };
    }
    let id = v.get("id").cloned();
    let params = v.get("params").cloned().unwrap_or(Value::Null);
    match (v.get("method").and_then(Value::as_str), id) {
        (Some(m), Some(id)) => Incoming::Request {
            id,
            method: m.to_string(),
            params,
        },
        (Some(m), None) => Incoming::Notification {
            method: m.to_string(),
            params,
        },
        (None, Some(id)) => Incoming::Response {
            id,
            outcome: match v.get("error") {
                Some(e) => Err(e.clone()),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            },
        },
        (None, None) => Incoming::Invalid {
            id: Value::Null,
            error: RpcError::new(INVALID_REQUEST, "no method and no id"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_told_apart() {
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#),
            Incoming::Request { .. }
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":"s"}}"#),
            Incoming::Notification { .. }
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":0,"result":{"outcome":{"outcome":"cancelled"}}}"#),
            Incoming::Response { outcome: Ok(_), .. }
        ));
        assert!(matches!(
            parse("[1,2]"),
            Incoming::Invalid {
                error: RpcError {
                    code: INVALID_REQUEST,
                    ..
                },
                ..
            }
        ));
        assert!(matches!(
            parse("{nope"),
            Incoming::Invalid {
                error: RpcError {
                    code: PARSE_ERROR,
                    ..
                },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_request_gets_its_own_answer() {
        let (out, mut rx) = Out::new();
        let o = out.clone();
        let asked = tokio::spawn(async move { o.request("fs/read_text_file", json!({})).await });
        let sent = rx.recv().await.unwrap();
        out.answered(&sent["id"], Ok(json!({"content": "x"})));
        assert_eq!(asked.await.unwrap().unwrap()["content"], "x");
    }
}
