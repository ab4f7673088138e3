//! The history as text for the summary request (`prompts/compact.md`), fitted to a byte budget,
//! and the summary deputy writes itself when that request fails.

use deputy_llm::Message;

/// How much of each item the summary request shows, tightened until the transcript fits.
const ITEM_CAPS: [usize; 4] = [4000, 1500, 500, 160];

fn clip(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_string();
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &s[..end], s.len() - end)
}

/// The messages as text for the summary request, each item at most `cap` bytes.
fn transcript(msgs: &[Message], cap: usize) -> String {
    let mut out = String::new();
    for m in msgs {
        match m {
            Message::System { .. } => {}
            Message::User { content } => {
                out.push_str(&format!("USER: {}\n\n", clip(content, cap)));
            }
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                if let Some(t) = content.as_deref().filter(|t| !t.trim().is_empty()) {
                    out.push_str(&format!("ASSISTANT: {}\n", clip(t, cap)));
                }
                for call in tool_calls {
                    out.push_str(&format!(
                        "CALL {}: {}\n",
                        call.name,
                        clip(&call.raw_arguments, cap.min(600))
                    ));
                }
                out.push('\n');
            }
            Message::Tool { content, .. } => {
                out.push_str(&format!("RESULT: {}\n\n", clip(content, cap)));
            }
        }
    }
    out
}

/// The transcript, as detailed as `budget_bytes` allows; the oldest part goes first when even
/// the tightest cap does not fit.
pub(crate) fn fitted_transcript(msgs: &[Message], budget_bytes: usize) -> String {
    for cap in ITEM_CAPS {
        let t = transcript(msgs, cap);
        if t.len() <= budget_bytes {
            return t;
        }
    }
    let t = transcript(msgs, ITEM_CAPS[ITEM_CAPS.len() - 1]);
    let mut start = t.len().saturating_sub(budget_bytes);
    while !t.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "[the oldest part of the transcript is left out]\n{}",
        &t[start..]
    )
}

/// A summary made without the model (its request failed): what can be said for certain.
pub(crate) fn mechanical_summary(msgs: &[Message], why: &str) -> String {
    let mut calls: Vec<String> = Vec::new();
    let mut last_text = String::new();
    for m in msgs {
        if let Message::Assistant {
            content,
            tool_calls,
            ..
        } = m
        {
            for c in tool_calls {
                calls.push(format!("- {} {}", c.name, clip(&c.raw_arguments, 160)));
            }
            if let Some(t) = content.as_deref().filter(|t| !t.trim().is_empty()) {
                last_text = t.to_string();
            }
        }
    }
    let keep = calls.len().saturating_sub(40);
    format!(
        "(No model summary: {why}.) The tool calls made, the last {} of {}:\n{}\n\nThe agent's last words before this point: {}",
        calls.len() - keep,
        calls.len(),
        calls[keep..].join("\n"),
        clip(&last_text, 2000)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conversation::Conversation;
    use deputy_llm::ToolCall;

    /// A task and `turns` read calls, each answered with `output` bytes.
    pub(crate) fn convo(turns: usize, output: usize) -> Conversation {
        let mut c = Conversation::new("system prompt");
        c.push_user("the task").unwrap_or_default();
        for i in 0..turns {
            let id = format!("c{i}");
            c.push_assistant(
                Some(format!("step {i}")),
                None,
                vec![ToolCall::from_raw(&id, "read", "{\"path\":\"big.txt\"}")],
            )
            .unwrap_or_default();
            let _ = c.answer(&id, "x".repeat(output));
        }
        c
    }

    #[test]
    fn transcripts_fit_their_budget() {
        let c = convo(50, 5000);
        let t = fitted_transcript(&c.messages()[2..], 20_000);
        assert!(t.len() <= 20_100, "{}", t.len());
        assert!(t.contains("CALL read"));
        let small = fitted_transcript(&c.messages()[2..6], 100_000);
        assert!(small.contains("… [1000 more bytes]"));
    }
}
