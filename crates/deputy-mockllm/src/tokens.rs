//! What the mock counts as tokens, and what it does with the count.
//!
//! The count is documented so tests can reason about it: a request's prompt is
//! `ceil(B / 4)` tokens, where `B` is the byte length of the compact JSON of its `messages`
//! plus that of its `tools`. With a `context_window` in the script, a request whose prompt plus
//! its `max_tokens` (or `max_completion_tokens`) exceeds the window gets OpenAI's exact 400
//! (`context_length_exceeded`). With `prompt_cache`, the usage reports as
//! `prompt_tokens_details.cached_tokens` the tokens of the messages a request shares, from the
//! start, with the previous request of the same conversation route.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

/// Tokens of the JSON of a value, as the mock counts them.
fn tokens_of(v: &Value) -> u64 {
    (v.to_string().len() as u64).div_ceil(4)
}

/// The prompt tokens of a request body.
pub fn prompt_tokens(body: &Value) -> u64 {
    let messages = body.get("messages").map_or(0, |m| m.to_string().len());
    let tools = body.get("tools").map_or(0, |t| t.to_string().len());
    ((messages + tools) as u64).div_ceil(4)
}

/// The answer tokens a request reserves.
pub fn reserved_output(body: &Value) -> u64 {
    body.get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// OpenAI's body for a request longer than the window.
pub fn overflow_body(window: u64, tokens: u64) -> Value {
    json!({"error": {
        "message": format!("This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."),
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }})
}

/// The previous request's messages per route, to report a shared prefix as cached.
#[derive(Default)]
pub struct PrefixCache {
    last: Mutex<HashMap<Option<usize>, Vec<Value>>>,
}

impl PrefixCache {
    /// Tokens of the leading messages `messages` shares with the route's previous request;
    /// remembers `messages` for the next one.
    pub fn cached_tokens(&self, route: Option<usize>, messages: &[Value]) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let before = last.insert(route, messages.to_vec()).unwrap_or_default();
        messages
            .iter()
            .zip(before.iter())
            .take_while(|(a, b)| a == b)
            .map(|(m, _)| tokens_of(m))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_and_prefixes() {
        let body = json!({"messages": [{"role": "user", "content": "12345678"}]});
        let len = body["messages"].to_string().len() as u64;
        assert_eq!(prompt_tokens(&body), len.div_ceil(4));
        let v = overflow_body(100, 150);
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is 100 tokens")
        );

        let cache = PrefixCache::default();
        let a = json!({"role": "system", "content": "s"});
        let b = json!({"role": "user", "content": "u"});
        let c = json!({"role": "user", "content": "other"});
        assert_eq!(cache.cached_tokens(None, &[a.clone(), b.clone()]), 0);
        assert_eq!(
            cache.cached_tokens(None, &[a.clone(), b.clone(), c.clone()]),
            tokens_of(&a) + tokens_of(&b)
        );
        assert_eq!(cache.cached_tokens(None, &[c.clone(), a.clone()]), 0);
        assert_eq!(cache.cached_tokens(Some(1), &[c]), 0, "routes are apart");
    }
}
