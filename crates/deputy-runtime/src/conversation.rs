//! The conversation of a session, kept well-formed by construction.
//!
//! Every provider enforces one rule: each tool call of an assistant message is answered by
//! exactly one tool result, right after that message, before anything else. [`Conversation`]
//! owns the messages and keeps that rule: an assistant message with calls leaves them
//! *pending*; while any is pending, no user or assistant message can be added and no request
//! can be built ([`Conversation::request`] fails). Each pending call is answered with
//! [`Conversation::answer`], or all of them at once with [`Conversation::close_pending`]
//! (cancel, timeout, doom-loop stop, crash recovery). The live loop, the journal's rebuild,
//! `/clear` and compaction all change the history only through this type.
//!
//! History can be shortened only at *turn boundaries* (a user or assistant message): a tool
//! result always sits right after the message that asked for it, so a cut there never
//! separates a call from its result.

use std::ops::Range;

use deputy_llm::{Message, ToolCall};

/// A tool call waiting for its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCall {
    pub id: String,
    pub tool: String,
}

/// A change that would break the tool-call rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("tool calls are still waiting for their results: {}", .0.join(", "))]
    Unanswered(Vec<String>),
    #[error("no tool call with id `{0}` is waiting for a result")]
    NotPending(String),
    #[error("two tool calls in one message share the id `{0}`")]
    DuplicateId(String),
    #[error("history can only be replaced between turn boundaries ({0})")]
    BadSpan(String),
    #[error("no result of tool call `{0}` is in the history")]
    NoResult(String),
}

/// The messages of a session: a system prompt, then turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// `messages[0]` is always the system prompt.
    messages: Vec<Message>,
    /// Calls of the last assistant message that have no result yet, in call order.
    pending: Vec<PendingCall>,
}

impl Conversation {
    pub fn new(system: impl Into<String>) -> Self {
        Self {
            messages: vec![Message::system(system)],
            pending: Vec::new(),
        }
    }

    pub fn system(&self) -> &str {
        match self.messages.first() {
            Some(Message::System { content }) => content,
            _ => "",
        }
    }

    pub fn set_system(&mut self, text: impl Into<String>) {
        self.messages[0] = Message::system(text);
    }

    /// Every message, the system prompt first (possibly with calls still pending).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Only the system prompt.
    pub fn is_empty(&self) -> bool {
        self.messages.len() <= 1
    }

    /// The calls still waiting for a result.
    pub fn pending(&self) -> &[PendingCall] {
        &self.pending
    }

    fn settled(&self) -> Result<(), ConversationError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(ConversationError::Unanswered(
                self.pending.iter().map(|p| p.id.clone()).collect(),
            ))
        }
    }

    pub fn push_user(&mut self, text: impl Into<String>) -> Result<(), ConversationError> {
        self.settled()?;
        self.messages.push(Message::user(text));
        Ok(())
    }

    /// Add the model's message. Its calls become pending.
    pub fn push_assistant(
        &mut self,
        content: Option<String>,
        reasoning: Option<String>,
        calls: Vec<ToolCall>,
    ) -> Result<(), ConversationError> {
        self.push_answer(content, reasoning, calls, None)
    }

    /// [`push_assistant`](Self::push_assistant), with what the protocol needs back.
    pub fn push_answer(
        &mut self,
        content: Option<String>,
        reasoning: Option<String>,
        calls: Vec<ToolCall>,
        carried: Option<deputy_llm::Carried>,
    ) -> Result<(), ConversationError> {
        self.settled()?;
        for (i, c) in calls.iter().enumerate() {
            if calls[..i].iter().any(|d| d.id == c.id) {
                return Err(ConversationError::DuplicateId(c.id.clone()));
            }
        }
        self.pending = calls
            .iter()
            .map(|c| PendingCall {
                id: c.id.clone(),
                tool: c.name.clone(),
            })
            .collect();
        self.messages.push(Message::Assistant {
            content: content.filter(|c| !c.is_empty()),
            tool_calls: calls,
            reasoning: reasoning.filter(|r| !r.is_empty()),
            carried,
        });
        Ok(())
    }

    /// Answer one pending call.
    pub fn answer(
        &mut self,
        call_id: &str,
        content: impl Into<String>,
    ) -> Result<PendingCall, ConversationError> {
        let i = self
            .pending
            .iter()
            .position(|p| p.id == call_id)
            .ok_or_else(|| ConversationError::NotPending(call_id.to_string()))?;
        let call = self.pending.remove(i);
        self.messages.push(Message::tool(call_id, content));
        Ok(call)
    }

    /// Answer every pending call with `content(call)`; returns the calls closed, with the
    /// result each got, in order.
    pub fn close_pending(
        &mut self,
        content: impl Fn(&PendingCall) -> String,
    ) -> Vec<(PendingCall, String)> {
        self.close_pending_if(|_| true, content)
    }

    /// Answer the pending calls `which` selects with `content(call)`; the others stay
    /// pending. Returns the calls closed, with the result each got, in order.
    pub fn close_pending_if(
        &mut self,
        which: impl Fn(&PendingCall) -> bool,
        content: impl Fn(&PendingCall) -> String,
    ) -> Vec<(PendingCall, String)> {
        let (closed, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|c| which(c));
        self.pending = kept;
        closed
            .into_iter()
            .map(|c: PendingCall| {
                let text = content(&c);
                self.messages
                    .push(Message::tool(c.id.clone(), text.clone()));
                (c, text)
            })
            .collect()
    }

    /// The messages for the next request: only when every call is answered.
    pub fn request(&self) -> Result<Vec<Message>, ConversationError> {
        self.settled()?;
        Ok(self.messages.clone())
    }

    /// Forget everything but the system prompt (pending calls included).
    pub fn clear(&mut self) {
        self.messages.truncate(1);
        self.pending.clear();
    }

    /// Whether history may be cut at index `i`: after the system prompt, at a user or an
    /// assistant message, or at the end.
    pub fn is_boundary(&self, i: usize) -> bool {
        i >= 1
            && (i == self.messages.len()
                || matches!(
                    self.messages.get(i),
                    Some(Message::User { .. } | Message::Assistant { .. })
                ))
    }

    /// Replace the messages in `span` (both ends turn boundaries, nothing pending inside it)
    /// by `with`, which must hold no tool calls or results (a summary, the original task).
    pub fn replace_span(
        &mut self,
        span: Range<usize>,
        with: Vec<Message>,
    ) -> Result<(), ConversationError> {
        if span.start > span.end || !self.is_boundary(span.start) || !self.is_boundary(span.end) {
            return Err(ConversationError::BadSpan(format!(
                "{}..{} of {}",
                span.start,
                span.end,
                self.messages.len()
            )));
        }
        if !self.pending.is_empty() && span.end == self.messages.len() {
            return Err(ConversationError::BadSpan(
                "the span holds the calls still pending".into(),
            ));
        }
        let bad = with.iter().any(|m| match m {
            Message::Tool { .. } | Message::System { .. } => true,
            Message::Assistant { tool_calls, .. } => !tool_calls.is_empty(),
            Message::User { .. } => false,
        });
        if bad {
            return Err(ConversationError::BadSpan(
                "the replacement may only hold user and plain assistant messages".into(),
            ));
        }
        self.messages.splice(span, with);
        Ok(())
    }
}

/// A tool result in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// Its index among the messages.
    pub index: usize,
    pub call_id: String,
    /// The tool that was called.
    pub tool: String,
    /// Its length in bytes.
    pub len: usize,
}

impl Conversation {
    /// Every tool result, oldest first, with the tool that produced it.
    pub fn tool_outputs(&self) -> Vec<ToolOutput> {
        let mut tools: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        let mut out = Vec::new();
        for (index, m) in self.messages.iter().enumerate() {
            match m {
                Message::Assistant { tool_calls, .. } => {
                    for c in tool_calls {
                        tools.insert(c.id.as_str(), c.name.as_str());
                    }
                }
                Message::Tool {
                    tool_call_id,
                    content,
                } => out.push(ToolOutput {
                    index,
                    call_id: tool_call_id.clone(),
                    tool: tools
                        .get(tool_call_id.as_str())
                        .unwrap_or(&"tool")
                        .to_string(),
                    len: content.len(),
                }),
                _ => {}
            }
        }
        out
    }

    /// Replace the text of an answered call's result (pruning it to a stub): the structure,
    /// and so the tool-call rule, is untouched.
    pub fn replace_tool_output(
        &mut self,
        call_id: &str,
        text: impl Into<String>,
    ) -> Result<(), ConversationError> {
        let found = self.messages.iter_mut().rev().find_map(|m| match m {
            Message::Tool {
                tool_call_id,
                content,
            } if tool_call_id == call_id => Some(content),
            _ => None,
        });
        match found {
            Some(content) => {
                *content = text.into();
                Ok(())
            }
            None => Err(ConversationError::NoResult(call_id.to_string())),
        }
    }
}

/// Give every call of one message a distinct id (servers sometimes repeat one, and an
/// answer must name exactly one call): later duplicates get a suffix.
pub fn distinct_call_ids(calls: &mut [ToolCall]) {
    for i in 0..calls.len() {
        let base = calls[i].id.clone();
        let mut n = 2;
        while calls[..i].iter().any(|c| c.id == calls[i].id) {
            calls[i].id = format!("{base}#{n}");
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall::from_raw(id, "bash", "{}")
    }

    #[test]
    fn calls_must_be_answered_before_anything_else() {
        let mut c = Conversation::new("sys");
        c.push_user("task").unwrap();
        c.push_assistant(Some("ok".into()), None, vec![call("a"), call("b")])
            .unwrap();
        assert!(matches!(c.request(), Err(ConversationError::Unanswered(_))));
        assert!(c.push_user("more").is_err());
        assert!(c.push_assistant(None, None, vec![]).is_err());
        c.answer("b", "B").unwrap();
        assert_eq!(
            c.answer("b", "again"),
            Err(ConversationError::NotPending("b".into()))
        );
        assert_eq!(
            c.answer("zz", "x"),
            Err(ConversationError::NotPending("zz".into()))
        );
        let closed = c.close_pending(|p| format!("closed {}", p.id));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].1, "closed a");
        let msgs = c.request().unwrap();
        assert_eq!(msgs.len(), 5);
        assert_eq!(msgs[4], Message::tool("a", "closed a"));
        c.push_user("more").unwrap();
    }

    #[test]
    fn duplicate_ids_are_refused_and_can_be_made_distinct() {
        let mut c = Conversation::new("sys");
        let mut calls = vec![call("x"), call("x"), call("x")];
        assert_eq!(
            c.push_assistant(None, None, calls.clone()),
            Err(ConversationError::DuplicateId("x".into()))
        );
        distinct_call_ids(&mut calls);
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["x", "x#2", "x#3"]);
        c.push_assistant(None, None, calls).unwrap();
        assert_eq!(c.pending().len(), 3);
    }

    #[test]
    fn spans_are_replaced_only_at_turn_boundaries() {
        let mut c = Conversation::new("sys");
        c.push_user("task").unwrap();
        c.push_assistant(None, None, vec![call("a")]).unwrap();
        c.answer("a", "A").unwrap();
        c.push_assistant(Some("done".into()), None, vec![]).unwrap();
        // 0 sys, 1 user, 2 assistant(a), 3 tool a, 4 assistant
        assert!(!c.is_boundary(0));
        assert!(!c.is_boundary(3));
        assert!(c.replace_span(1..3, vec![]).is_err());
        assert!(c.replace_span(0..2, vec![]).is_err());
        assert!(c.replace_span(2..4, vec![Message::tool("a", "x")]).is_err());
        c.replace_span(2..4, vec![Message::user("summary")])
            .unwrap();
        assert_eq!(c.len(), 4);
        assert!(c.request().is_ok());
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.system(), "sys");
    }

    #[test]
    fn tool_outputs_are_listed_and_pruned_in_place() {
        let mut c = Conversation::new("sys");
        c.push_user("task").unwrap();
        c.push_assistant(None, None, vec![call("a"), call("b")])
            .unwrap();
        c.answer("a", "long output").unwrap();
        c.answer("b", "B").unwrap();
        let outs = c.tool_outputs();
        assert_eq!(outs.len(), 2);
        assert_eq!(
            (outs[0].index, outs[0].tool.as_str(), outs[0].len),
            (3, "bash", 11)
        );
        c.replace_tool_output("a", "[pruned]").unwrap();
        assert_eq!(c.messages()[3], Message::tool("a", "[pruned]"));
        assert!(c.replace_tool_output("zz", "x").is_err());
        assert!(c.request().is_ok());
    }
}
