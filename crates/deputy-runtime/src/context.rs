//! What the conversation costs in tokens, and how much the window allows.
//!
//! The count before a request is the server's own count of the last request (its reported
//! prompt tokens) plus an estimate of what was appended since; without a count from the server
//! (none yet, or the history was edited since), an estimate of everything. The estimate is
//! deliberately high: [`BYTES_PER_TOKEN`] is below the 4 bytes a token of English averages, as
//! code and JSON cut into more tokens, and an early compaction costs less than an overflow.

use deputy_llm::{ContextWindow, Message, ToolSpec};
use tokio::task::JoinHandle;

use crate::options::Compaction;

/// Bytes per token in estimates.
pub const BYTES_PER_TOKEN: u64 = 3;

/// What each message costs beyond its text (role, ids, framing).
const MESSAGE_OVERHEAD: u64 = 8;

/// A request smaller than this is sent without asking what the window is.
pub const FLOOR_TOKENS: u64 = 2048;

/// Tokens of `bytes` of text.
pub fn tokens_of_len(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_TOKEN)
}

/// Tokens of one message, estimated.
pub fn message_tokens(m: &Message) -> u64 {
    tokens_of_len(m.char_len()) + MESSAGE_OVERHEAD
}

/// Tokens of the tool specifications a request carries, estimated.
pub fn specs_tokens(specs: &[ToolSpec]) -> u64 {
    specs
        .iter()
        .map(|s| {
            tokens_of_len(s.name.len() + s.description.len() + s.parameters.to_string().len())
                + MESSAGE_OVERHEAD
        })
        .sum()
}

/// The budget a window gives, under the compaction settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowBudget {
    pub window: u64,
    /// Kept free for the answer.
    pub reserve: u64,
    /// Past this, room is made before the request.
    pub limit: u64,
    /// The most recent history kept as it is when room is made.
    pub keep_recent: u64,
}

impl WindowBudget {
    pub fn new(w: &ContextWindow, c: &Compaction) -> Self {
        let window = w.tokens.max(1024);
        let reserve = c
            .reserve_tokens
            .unwrap_or_else(|| w.max_output.unwrap_or(4096).min(window / 4))
            .min(window / 2);
        let threshold = if c.threshold.is_finite() {
            c.threshold.clamp(0.1, 1.0)
        } else {
            0.85
        };
        let limit = ((window - reserve) as f64 * threshold) as u64;
        let keep_recent = c.keep_recent_tokens.unwrap_or(window / 4).min(limit / 2);
        Self {
            window,
            reserve,
            limit,
            keep_recent,
        }
    }

    /// The most one tool output may take: half the limit, so the newest turn always fits
    /// beside the system prompt, the task and a summary.
    pub fn max_output_tokens(&self) -> u64 {
        self.limit / 2
    }
}

/// The session's knowledge of its window and of the size of its history.
#[derive(Debug, Default)]
pub(crate) struct ContextState {
    /// The window, once known.
    pub window: Option<ContextWindow>,
    /// The question to the model client, while it is out.
    pub asking: Option<JoinHandle<ContextWindow>>,
    /// The number of messages the last request held and the prompt tokens the server counted
    /// for it; `None` when no count applies (none yet, or the history was edited since).
    pub baseline: Option<(usize, u64)>,
}

impl ContextState {
    /// Forget what the count was based on (the history was edited, or the model changed).
    pub fn invalidate(&mut self) {
        self.baseline = None;
    }

    /// The window if it is known now (without waiting for the client's answer).
    pub fn window_now(&mut self) -> Option<ContextWindow> {
        if self.window.is_none()
            && let Some(handle) = &mut self.asking
            && handle.is_finished()
            && let Some(Ok(w)) = futures::FutureExt::now_or_never(handle)
        {
            self.window = Some(w);
            self.asking = None;
        }
        self.window
    }

    /// The estimated prompt of the next request, in tokens.
    pub fn estimate(&self, messages: &[Message], specs: &[ToolSpec]) -> u64 {
        match self.baseline {
            Some((n, tokens)) if n <= messages.len() => {
                tokens + messages[n..].iter().map(message_tokens).sum::<u64>()
            }
            _ => messages.iter().map(message_tokens).sum::<u64>() + specs_tokens(specs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deputy_llm::WindowSource;

    fn window(tokens: u64, max_output: Option<u64>) -> ContextWindow {
        ContextWindow {
            tokens,
            max_output,
            source: WindowSource::Config,
        }
    }

    #[test]
    fn budgets() {
        let b = WindowBudget::new(&window(32_768, None), &Compaction::default());
        assert_eq!(b.reserve, 4096);
        assert_eq!(b.limit, ((32_768 - 4096) as f64 * 0.85) as u64);
        assert_eq!(b.keep_recent, 8192);
        let b = WindowBudget::new(&window(128_000, Some(16_384)), &Compaction::default());
        assert_eq!(b.reserve, 16_384);
        let tiny = WindowBudget::new(&window(2000, Some(100_000)), &Compaction::default());
        assert!(tiny.reserve <= tiny.window / 2 && tiny.limit > 0);
    }

    #[test]
    fn estimates_build_on_the_servers_count() {
        let msgs = vec![
            Message::system("s".repeat(300)),
            Message::user("u".repeat(30)),
            Message::tool("a", "x".repeat(3000)),
        ];
        let mut st = ContextState::default();
        let full = st.estimate(&msgs, &[]);
        assert_eq!(full, 100 + 10 + 1000 + 3 * MESSAGE_OVERHEAD);
        st.baseline = Some((2, 500));
        assert_eq!(st.estimate(&msgs, &[]), 500 + 1000 + MESSAGE_OVERHEAD);
        st.baseline = Some((9, 500));
        assert_eq!(st.estimate(&msgs, &[]), full, "a stale count is not used");
    }
}
