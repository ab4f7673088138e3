//! An `ask` rule under `deputy acp`: the editor asks its user (`session/request_permission`),
//! with allow once, allow always (for the call's pattern) and reject. A cancelled prompt, or
//! an editor that goes away, is a no.

use std::sync::{Arc, Mutex, OnceLock};

use deputy_runtime::{Approval, ApprovalRequest, Approver, DecidedBy};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::rpc::Out;
use super::updates;

pub struct EditorApprover {
    pub out: Out,
    /// The ACP session's id (known once its deputy session is open).
    pub acp_id: Arc<OnceLock<String>>,
    /// The running prompt's token.
    pub turn: Arc<Mutex<Option<CancellationToken>>>,
}

impl Approver for EditorApprover {
    fn decided_by(&self) -> DecidedBy {
        DecidedBy::User
    }

    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            let pattern = r.always_pattern();
            let params = json!({
                "sessionId": self.acp_id.get().cloned().unwrap_or_default(),
                "toolCall": {
                    "toolCallId": r.call_id,
                    "title": updates::title(&r.tool, &r.input),
                    "kind": updates::kind(&r.tool),
                    "status": "pending",
                    "rawInput": r.input,
                },
                "options": [
                    {"optionId": "allow_once", "name": "Allow once", "kind": "allow_once"},
                    {"optionId": "allow_always", "name": format!("Always allow {} `{pattern}`", r.tool), "kind": "allow_always"},
                    {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"},
                ],
            });
            let cancelled = self
                .turn
                .lock()
                .ok()
                .and_then(|t| t.clone())
                .unwrap_or_default();
            let answer = tokio::select! {
                a = self.out.request("session/request_permission", params) => a,
                _ = cancelled.cancelled() => return deny("the prompt was cancelled"),
            };
            let outcome = answer.unwrap_or(Value::Null);
            let chosen = outcome.pointer("/outcome/optionId").and_then(Value::as_str);
            match (
                outcome.pointer("/outcome/outcome").and_then(Value::as_str),
                chosen,
            ) {
                (Some("selected"), Some("allow_once")) => Approval::Once,
                (Some("selected"), Some("allow_always")) => Approval::Always { pattern },
                (Some("selected"), _) => deny("the user rejected this call in the editor"),
                _ => deny("the editor cancelled the request for permission"),
            }
        })
    }
}

fn deny(reason: &str) -> Approval {
    Approval::Deny {
        reason: Some(reason.to_string()),
    }
}
