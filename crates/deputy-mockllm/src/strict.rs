//! Strict mode: the mock rejects a request that breaks the tool-call rule, with the 400 body
//! OpenAI returns for it (Anthropic's and most gateways' rules are the same): every
//! `tool_calls` entry of an assistant message is answered by exactly one `tool` message, right
//! after it, before any other message; a `tool` message answers a call of the assistant message
//! just before it, once.

use serde_json::{Value, json};

/// OpenAI's message for calls left without results.
fn unanswered(ids: &[String]) -> String {
    format!(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
        ids.join(", ")
    )
}

/// OpenAI's message (with its spelling) for a tool message that answers nothing open.
const ORPHAN: &str = "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.";

/// The OpenAI error body for a request whose messages break the rule; `None` when they keep it.
pub fn violation(body: &Value) -> Option<Value> {
    let messages = body.get("messages")?.as_array()?;
    // The assistant message whose calls are open: its index, its call ids, those answered.
    let mut open: Option<(usize, Vec<String>, Vec<String>)> = None;
    let error = |message: String, param: String| json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "tool" {
            let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
            match &mut open {
                Some((_, ids, answered))
                    if ids.iter().any(|x| x == id) && !answered.iter().any(|x| x == id) =>
                {
                    answered.push(id.to_string());
                }
                _ => return Some(error(ORPHAN.into(), format!("messages.[{i}].role"))),
            }
            continue;
        }
        if let Some((at, ids, answered)) = &open {
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !answered.contains(id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Some(error(unanswered(&missing), format!("messages.[{at}].role")));
            }
        }
        open = None;
        if role == "assistant"
            && let Some(calls) = m.get("tool_calls").and_then(Value::as_array)
            && !calls.is_empty()
        {
            let ids = calls
                .iter()
                .map(|c| {
                    c.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            open = Some((i, ids, Vec::new()));
        }
    }
    if let Some((at, ids, answered)) = open {
        let missing: Vec<String> = ids
            .into_iter()
            .filter(|id| !answered.contains(id))
            .collect();
        if !missing.is_empty() {
            return Some(error(unanswered(&missing), format!("messages.[{at}].role")));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> Value {
        json!({"id": id, "type": "function", "function": {"name": "bash", "arguments": "{}"}})
    }

    fn msgs(m: Vec<Value>) -> Value {
        json!({ "messages": m })
    }

    #[test]
    fn the_rule() {
        let sys = json!({"role": "system", "content": "s"});
        let user = json!({"role": "user", "content": "u"});
        let asst = json!({"role": "assistant", "tool_calls": [call("a"), call("b")]});
        let ta = json!({"role": "tool", "tool_call_id": "a", "content": "A"});
        let tb = json!({"role": "tool", "tool_call_id": "b", "content": "B"});
        assert!(
            violation(&msgs(vec![
                sys.clone(),
                user.clone(),
                asst.clone(),
                tb.clone(),
                ta.clone()
            ]))
            .is_none()
        );
        // A result missing, at the end or before the next message.
        let e = violation(&msgs(vec![
            sys.clone(),
            user.clone(),
            asst.clone(),
            ta.clone(),
        ]))
        .unwrap();
        assert!(
            e["error"]["message"].as_str().unwrap().ends_with(": b"),
            "{e}"
        );
        assert_eq!(e["error"]["param"], "messages.[2].role");
        assert!(
            violation(&msgs(vec![
                sys.clone(),
                asst.clone(),
                ta.clone(),
                user.clone(),
                tb.clone()
            ]))
            .is_some()
        );
        // A result twice, or for an unknown call, or with nothing open.
        assert!(
            violation(&msgs(vec![
                sys.clone(),
                asst.clone(),
                ta.clone(),
                ta.clone(),
                tb.clone()
            ]))
            .is_some()
        );
        assert!(
            violation(&msgs(vec![
                sys.clone(),
                asst.clone(),
                ta.clone(),
                tb.clone(),
                json!({"role": "tool", "tool_call_id": "zz", "content": ""})
            ]))
            .is_some()
        );
        let e = violation(&msgs(vec![sys, user, ta])).unwrap();
        assert_eq!(e["error"]["message"], ORPHAN);
    }
}
