//! A deputy session as an A2A task, and an A2A message as a prompt.
//!
//! The task's id and its context id are the session's id; its state follows the session:
//! queued → submitted, running → working (input-required while a call waits for an answer),
//! finished → completed, canceled or failed. The answer is an artifact: the final text, the
//! structured output as a data part, a `repo` session's change as a file part (a patch).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use base64::Engine;
use serde_json::{Value, json};

use super::error::A2aError;
use crate::api::{self, SessionView};
use crate::store::{PendingApproval, Phase};
use crate::{App, TokenId};

/// What one look at a session shows.
pub(crate) struct Seen {
    pub view: SessionView,
    pub approvals: Vec<PendingApproval>,
}

/// Look at session `id` (of the caller's token), through the same handlers as the REST API:
/// the embedded store or the shared one alike.
pub(crate) async fn look(app: &Arc<App>, owner: Option<usize>, id: &str) -> Result<Seen, A2aError> {
    let view = api::status(
        State(app.clone()),
        Extension(TokenId(owner)),
        Path(id.to_string()),
    )
    .await
    .map_err(|p| A2aError::from_problem(p, id))?
    .0;
    let approvals = if view.phase == Phase::Running && view.pending_approvals > 0 {
        api::approvals(
            State(app.clone()),
            Extension(TokenId(owner)),
            Path(id.to_string()),
        )
        .await
        .map(|j| j.0)
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Seen { view, approvals })
}

/// The A2A state of what was seen.
pub(crate) fn state(s: &Seen) -> &'static str {
    match s.view.phase {
        Phase::Queued => "TASK_STATE_SUBMITTED",
        Phase::Running if !s.approvals.is_empty() => "TASK_STATE_INPUT_REQUIRED",
        Phase::Running => "TASK_STATE_WORKING",
        Phase::Finished => match s.view.status.as_deref() {
            Some("completed") => "TASK_STATE_COMPLETED",
            Some("cancelled") => "TASK_STATE_CANCELED",
            Some("denied") => "TASK_STATE_REJECTED",
            _ => "TASK_STATE_FAILED",
        },
    }
}

/// Whether a task in `state` will change no more (until a new message continues it).
pub(crate) fn terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_STATE_COMPLETED"
            | "TASK_STATE_CANCELED"
            | "TASK_STATE_FAILED"
            | "TASK_STATE_REJECTED"
    )
}

/// Whether a stream ends at `state`: a terminal one, or one that waits for the client.
pub(crate) fn interrupted(state: &str) -> bool {
    terminal(state) || state == "TASK_STATE_INPUT_REQUIRED"
}

fn text_part(t: &str) -> Value {
    json!({"text": t})
}

fn agent_message(id: &str, parts: Vec<Value>) -> Value {
    json!({
        "messageId": format!("{id}-status-{}", crate::clock::now_us()),
        "contextId": id,
        "taskId": id,
        "role": "ROLE_AGENT",
        "parts": parts,
    })
}

/// The task's status: its state, and a message where there is something to say (the call
/// waiting for an answer; why it failed).
pub(crate) fn status(s: &Seen) -> Value {
    let st = state(s);
    let id = &s.view.id;
    let mut status =
        json!({"state": st, "timestamp": crate::clock::format(crate::clock::now_us())});
    if let Some(p) = s.approvals.first() {
        let ask = format!(
            "deputy asks before running {} ({}): {}. Answer with a message to this task: a data part {{\"approve\": true}} (or false, with \"always\": true to allow `{}` for the rest of the session, or a \"reason\"), or the text `approve` / `deny`.",
            p.tool,
            p.reason,
            p.subject.as_deref().unwrap_or("(no subject)"),
            p.always_pattern
        );
        status["message"] = agent_message(
            id,
            vec![
                text_part(&ask),
                json!({"data": {"callId": p.call_id, "tool": p.tool, "input": p.input, "reason": p.reason, "alwaysPattern": p.always_pattern}, "mediaType": "application/json"}),
            ],
        );
    } else if st == "TASK_STATE_FAILED" || st == "TASK_STATE_REJECTED" {
        let why = s
            .view
            .errors
            .first()
            .cloned()
            .or_else(|| s.view.result.clone())
            .unwrap_or_default();
        status["message"] = agent_message(id, vec![text_part(&why)]);
    }
    status
}

/// The answer as an artifact, once there is one.
pub(crate) fn artifact(s: &Seen) -> Option<Value> {
    let v = &s.view;
    if v.phase != Phase::Finished {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(r) = v.result.as_deref().filter(|r| !r.is_empty()) {
        parts.push(text_part(r));
    }
    if let Some(data) = &v.structured_output {
        parts.push(json!({"data": data, "mediaType": "application/json"}));
    }
    if let Some(patch) = v.patch.as_deref().filter(|p| !p.is_empty()) {
        parts.push(json!({
            "raw": base64::engine::general_purpose::STANDARD.encode(patch.as_bytes()),
            "filename": "changes.patch",
            "mediaType": "text/x-diff",
        }));
    }
    if parts.is_empty() {
        return None;
    }
    Some(json!({
        "artifactId": format!("{}-answer-{}", v.id, v.num_turns.unwrap_or(0)),
        "name": "answer",
        "parts": parts,
        "metadata": {"filesChanged": v.files_changed},
    }))
}

/// The task as A2A shows it.
pub(crate) fn task(s: &Seen) -> Value {
    let v = &s.view;
    let mut metadata = json!({"agent": v.agent, "createdAt": v.created_at});
    if let Some(st) = &v.status {
        metadata["deputyStatus"] = json!(st);
    }
    if let Some(u) = &v.usage {
        metadata["usage"] = json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens});
    }
    json!({
        "id": v.id,
        "contextId": v.id,
        "status": status(s),
        "artifacts": artifact(s).into_iter().collect::<Vec<_>>(),
        "history": [],
        "metadata": metadata,
    })
}

/// A message's parts as one prompt: text as it is, data as JSON, a file by URL as a link, a
/// file's bytes (text only) in a block named by its file name.
pub(crate) fn prompt(message: &Value) -> Result<String, A2aError> {
    let parts = message
        .get("parts")
        .and_then(Value::as_array)
        .ok_or_else(|| A2aError::params("the message has no `parts`"))?;
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let name = p.get("filename").and_then(Value::as_str).unwrap_or("file");
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            out.push(t.to_string());
        } else if let Some(d) = p.get("data") {
            out.push(format!("```json\n{d}\n```"));
        } else if let Some(u) = p.get("url").and_then(Value::as_str) {
            out.push(format!("[{name}]({u})"));
        } else if let Some(r) = p.get("raw").and_then(Value::as_str) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r)
                .map_err(|e| A2aError::params(format!("parts[{i}].raw is not base64: {e}")))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                A2aError::content_type(format!(
                    "parts[{i}] ({name}) is binary; deputy takes text, data, and text files"
                ))
            })?;
            out.push(format!("<file name=\"{name}\">\n{text}\n</file>"));
        } else {
            return Err(A2aError::params(format!(
                "parts[{i}] has none of text, data, url or raw"
            )));
        }
    }
    let text = out.join("\n\n");
    if text.trim().is_empty() {
        return Err(A2aError::params("the message is empty"));
    }
    Ok(text)
}

/// An answer to a waiting call, if the message is one: a data part with `approve`, or the
/// text `approve`/`yes`/`allow` or `deny`/`no`/`reject`.
pub(crate) fn answer(message: &Value) -> Option<crate::api::AnswerIn> {
    let parts = message.get("parts")?.as_array()?;
    for p in parts {
        if let Some(d) = p.get("data")
            && let Some(approve) = d.get("approve").and_then(Value::as_bool)
        {
            return Some(crate::api::AnswerIn {
                approve,
                always: d.get("always").and_then(Value::as_bool).unwrap_or(false),
                reason: d.get("reason").and_then(Value::as_str).map(str::to_string),
            });
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            let word = t.trim().to_ascii_lowercase();
            let approve = match word.as_str() {
                "approve" | "approved" | "yes" | "allow" | "y" => true,
                "deny" | "denied" | "no" | "reject" | "n" => false,
                _ => continue,
            };
            return Some(crate::api::AnswerIn {
                approve,
                always: false,
                reason: None,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_make_a_prompt() {
        let raw = base64::engine::general_purpose::STANDARD.encode("fn main() {}");
        let p = prompt(&json!({"parts": [
            {"text": "Review this"},
            {"data": {"k": 1}},
            {"url": "https://x/y.rs", "filename": "y.rs"},
            {"raw": raw, "filename": "main.rs"},
        ]}))
        .unwrap();
        assert_eq!(
            p,
            "Review this\n\n```json\n{\"k\":1}\n```\n\n[y.rs](https://x/y.rs)\n\n<file name=\"main.rs\">\nfn main() {}\n</file>"
        );
        let bin = base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]);
        let e = prompt(&json!({"parts": [{"raw": bin}]})).unwrap_err();
        assert_eq!(e.code, super::super::error::CONTENT_TYPE_NOT_SUPPORTED);
        assert!(prompt(&json!({"parts": []})).is_err());
    }

    #[test]
    fn answers() {
        let a = answer(&json!({"parts": [{"data": {"approve": true, "always": true}}]})).unwrap();
        assert!(a.approve && a.always);
        let a = answer(&json!({"parts": [{"text": " Deny "}]})).unwrap();
        assert!(!a.approve);
        assert!(answer(&json!({"parts": [{"text": "please go on"}]})).is_none());
    }
}
