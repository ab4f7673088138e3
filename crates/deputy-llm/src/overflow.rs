//! Recognising "the request does not fit the context window" among the ways servers say it,
//! and the two numbers they usually give (the window, and what was asked for).
//!
//! The runtime answers such an error by compacting the conversation and trying once more, so
//! it must be told apart from any other 400: a bad parameter is not fixed by a shorter history.

/// What servers write, lowercased. Each is one server's (or family's) wording.
const PHRASES: &[&str] = &[
    // OpenAI, Azure, DeepSeek, vLLM, OpenRouter, Groq, Cerebras
    "maximum context length",
    "context_length_exceeded",
    "reduce the length of the messages",
    "exceeds the context window",
    // Anthropic (direct, or through OpenRouter / LiteLLM)
    "prompt is too long",
    // llama.cpp
    "exceeds the available context size",
    // Ollama
    "exceeded max context length",
    "exceeds the context length",
    "exceeds maximum context length",
    // vLLM (long prompts), xAI, Mistral, Gemini, LM Studio
    "longer than the maximum model length",
    "maximum prompt length",
    "maximum context length of",
    "too large for model with",
    "exceeds the maximum number of tokens allowed",
    "greater than the context length",
    "input is too long",
];

/// Error codes and types that mean the same.
const CODES: &[&str] = &[
    "context_length_exceeded",
    "exceed_context_size_error",
    "context_window_exceeded",
];

/// Whether an error (its code, type and message) says the request is longer than the window.
/// A per-minute token limit (Groq's 413 "Request too large … tokens per minute") is not: a
/// shorter history is not what it needs.
pub fn is_context_overflow(code: Option<&str>, kind: Option<&str>, message: &str) -> bool {
    let code = code.unwrap_or("");
    if code == "rate_limit_exceeded" || kind.is_some_and(|k| k.contains("rate_limit")) {
        return false;
    }
    if CODES.contains(&code) || kind.is_some_and(|k| CODES.contains(&k)) {
        return true;
    }
    let m = message.to_ascii_lowercase();
    if m.contains("tokens per minute") || m.contains("(tpm)") {
        return false;
    }
    PHRASES.iter().any(|p| m.contains(p))
}

/// The window and the size asked for, where the message (or the body around it) says them.
pub fn numbers(text: &str) -> (Option<u64>, Option<u64>) {
    let t = text.to_ascii_lowercase();
    let limit = [
        "maximum context length is",
        "maximum context length of",
        "maximum prompt length is",
        "maximum model length of",
        "maximum number of tokens allowed (",
        "context length of",
        "\"n_ctx\":",
        "tokens >",
        "model with",
    ]
    .iter()
    .find_map(|p| number_after(&t, p));
    let requested = [
        "resulted in",
        "you requested about",
        "you requested",
        "request contains",
        "request has",
        "prompt is too long:",
        "\"n_prompt_tokens\":",
        "input token count (",
        "prompt contains",
        "prompt (length",
    ]
    .iter()
    .find_map(|p| number_after(&t, p));
    (limit, requested)
}

/// The first integer within a few characters after `phrase`.
fn number_after(text: &str, phrase: &str) -> Option<u64> {
    let start = text.find(phrase)? + phrase.len();
    let rest = &text[start..];
    let skip = rest.find(|c: char| c.is_ascii_digit())?;
    if skip > 3 {
        return None;
    }
    let digits: String = rest[skip..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error's code and message, and the limit and request size read from them.
    type Case<'a> = (Option<&'a str>, &'a str, Option<u64>, Option<u64>);

    #[test]
    fn each_servers_wording() {
        let cases: &[Case] = &[
            (
                Some("context_length_exceeded"),
                "This model's maximum context length is 32768 tokens. However, your messages resulted in 40012 tokens. Please reduce the length of the messages.",
                Some(32768),
                Some(40012),
            ),
            (
                None,
                "prompt is too long: 208310 tokens > 200000 maximum",
                Some(200000),
                Some(208310),
            ),
            (
                None,
                "This model's maximum context length is 32768 tokens. However, you requested 33000 tokens (31000 in the messages, 2000 in the completion). Please reduce the length of the messages or completion.",
                Some(32768),
                Some(33000),
            ),
            (
                Some("400"),
                "the request exceeds the available context size, try increasing it",
                None,
                None,
            ),
            (
                None,
                "prompt too long; exceeded max context length by 1200 tokens",
                None,
                None,
            ),
            (
                None,
                "This endpoint's maximum context length is 200000 tokens. However, you requested about 250000 tokens (245000 of text input, 5000 in the output).",
                Some(200000),
                Some(250000),
            ),
            (
                None,
                "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length",
                Some(32768),
                Some(40000),
            ),
            (
                None,
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                Some(1048576),
                Some(1200000),
            ),
            (
                None,
                "This model's maximum prompt length is 131072 but the request contains 140000 tokens.",
                Some(131072),
                Some(140000),
            ),
        ];
        for (code, msg, limit, requested) in cases {
            assert!(is_context_overflow(*code, None, msg), "{msg}");
            assert_eq!(numbers(msg), (*limit, *requested), "{msg}");
        }
        assert_eq!(
            numbers(r#"{"error":{"n_prompt_tokens":40000,"n_ctx":32768}}"#),
            (Some(32768), Some(40000))
        );
    }

    #[test]
    fn other_errors_are_not_overflows() {
        for (code, msg) in [
            (
                Some("rate_limit_exceeded"),
                "Request too large for model `llama` on tokens per minute (TPM): Limit 6000, Requested 9000",
            ),
            (
                Some("unsupported_parameter"),
                "Unsupported parameter: 'temperature'",
            ),
            (None, "messages: at least one message is required"),
            (None, "Invalid 'messages[2].tool_call_id': not found"),
        ] {
            assert!(!is_context_overflow(code, None, msg), "{msg}");
        }
        assert!(is_context_overflow(
            None,
            Some("exceed_context_size_error"),
            "x"
        ));
    }
}
