//! A session rebuilt from its journal: the conversation, the totals, the next sequence number.
//!
//! Only the session's own events count (those with the `session_id` of its first
//! `session.started`): a subagent's events, should an older journal hold them, are its own
//! ledger's business. The conversation is replayed through [`Conversation`], so it is
//! well-formed whatever the journal holds; calls left without a result (deputy was killed while
//! they ran) stay pending, for the resumed session to close: they are never run again.

use deputy_llm::Usage;
use serde_json::Value;

use crate::conversation::Conversation;
use crate::event::{Event, EventKind, Status};
use crate::journal::JournalError;

/// The text the model gets for a call that was cut off by a crash or a kill.
pub const INTERRUPTED_RESULT: &str = "This tool call was interrupted: deputy stopped while it was running, so it may or may not have taken effect, in part or in whole. It has not been run again. Check the current state (read the files, list the directory, run a harmless command) before you decide whether to repeat it.";

/// A session rebuilt from its journal.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub session_id: String,
    pub agent: String,
    pub model: String,
    /// The workspace the session ran in.
    pub workspace: String,
    pub parent_session_id: Option<String>,
    /// The conversation; its pending calls were interrupted.
    pub conversation: Conversation,
    pub turns: u32,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub last_status: Option<Status>,
    /// The next sequence number to use.
    pub next_seq: u64,
    pub files_changed: Vec<String>,
    /// Problems met while replaying (a result for an unknown call, …).
    pub warnings: Vec<String>,
    /// The task list as last written.
    pub todos: Vec<crate::todo::Todo>,
}

impl Rebuilt {
    pub fn system_prompt(&self) -> &str {
        self.conversation.system()
    }
}

/// The file a successful call changed, from its result's metadata.
pub(crate) fn file_changed(is_error: bool, metadata: &Value) -> Option<&str> {
    if is_error {
        return None;
    }
    metadata.get("file_changed").and_then(Value::as_str)
}

/// Usage and cost a call spent (a subagent's turns), from its result's metadata.
pub(crate) fn spent(metadata: &Value) -> (Option<Usage>, Option<f64>) {
    let usage = metadata
        .get("usage")
        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok());
    let cost = metadata.get("cost_usd").and_then(Value::as_f64);
    (usage, cost)
}

/// Replay a journal.
pub fn rebuild(events: &[Event]) -> Result<Rebuilt, JournalError> {
    let Some(first) = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::SessionStarted { .. }))
    else {
        return Err(JournalError::Empty(std::path::PathBuf::new()));
    };
    let own = first.session_id.clone();
    let mut r = Rebuilt {
        session_id: own.clone(),
        agent: String::new(),
        model: String::new(),
        workspace: String::new(),
        parent_session_id: None,
        conversation: Conversation::new(""),
        turns: 0,
        usage: Usage::default(),
        cost_usd: None,
        last_status: None,
        next_seq: 0,
        files_changed: Vec::new(),
        warnings: Vec::new(),
        todos: Vec::new(),
    };
    let mut started = false;
    for e in events.iter().filter(|e| e.session_id == own) {
        r.next_seq = r.next_seq.max(e.seq + 1);
        match &e.kind {
            EventKind::SessionStarted {
                agent,
                model,
                system_prompt,
                parent_session_id,
                workspace,
                ..
            } => {
                if !started {
                    started = true;
                    r.agent = agent.clone();
                    r.workspace = workspace.clone();
                    r.parent_session_id = parent_session_id.clone();
                    r.conversation = Conversation::new(system_prompt.clone());
                }
                r.model = model.clone();
            }
            EventKind::ModelChanged { model } => r.model = model.clone(),
            EventKind::UserMessage { text } => {
                close_interrupted(&mut r);
                push(&mut r, |c| c.push_user(text.clone()));
            }
            EventKind::MessageCompleted {
                text,
                reasoning,
                tool_calls,
                ..
            } => {
                close_interrupted(&mut r);
                let mut calls = tool_calls.clone();
                crate::conversation::distinct_call_ids(&mut calls);
                push(&mut r, |c| {
                    c.push_assistant(Some(text.clone()), reasoning.clone(), calls)
                });
            }
            // A result for a call that is not waiting (answered twice) changes nothing.
            EventKind::ToolCompleted {
                call_id,
                output,
                metadata,
                is_error,
                ..
            } if r.conversation.answer(call_id, output.clone()).is_ok() => {
                if let Some(p) = file_changed(*is_error, metadata)
                    && !r.files_changed.iter().any(|f| f == p)
                {
                    r.files_changed.push(p.to_string());
                }
                let (usage, cost) = spent(metadata);
                if let Some(u) = usage {
                    r.usage.add(&u);
                }
                if let Some(c) = cost {
                    *r.cost_usd.get_or_insert(0.0) += c;
                }
            }
            EventKind::TurnCompleted {
                usage, cost_usd, ..
            } => {
                r.turns += 1;
                r.usage.add(usage);
                if let Some(c) = cost_usd {
                    *r.cost_usd.get_or_insert(0.0) += c;
                }
            }
            EventKind::ConversationCleared {} => r.conversation.clear(),
            EventKind::TodoUpdated { todos } => r.todos = todos.clone(),
            EventKind::ContextCompacted {
                pruned,
                replaced,
                summary,
                usage,
                cost_usd,
                ..
            } => {
                close_interrupted(&mut r);
                if let Err(e) = crate::compact::apply(
                    &mut r.conversation,
                    pruned,
                    *replaced,
                    summary.as_deref(),
                ) {
                    r.warnings
                        .push(format!("journal replay of a compaction: {e}"));
                }
                if let Some(u) = usage {
                    r.usage.add(u);
                }
                if let Some(c) = cost_usd {
                    *r.cost_usd.get_or_insert(0.0) += c;
                }
            }
            EventKind::SessionFinished { status, .. } => r.last_status = Some(*status),
            _ => {}
        }
    }
    Ok(r)
}

/// Calls still pending when the journal moves on (written by a version of deputy that did not
/// close them) get the interrupted result.
fn close_interrupted(r: &mut Rebuilt) {
    r.conversation
        .close_pending(|_| INTERRUPTED_RESULT.to_string());
}

fn push(
    r: &mut Rebuilt,
    f: impl FnOnce(&mut Conversation) -> Result<(), crate::conversation::ConversationError>,
) {
    if let Err(e) = f(&mut r.conversation) {
        r.warnings.push(format!("journal replay: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SCHEMA_VERSION;
    use deputy_llm::{Message, ToolCall};
    use serde_json::json;

    fn ev(session: &str, seq: u64, kind: EventKind) -> Event {
        Event {
            v: SCHEMA_VERSION,
            session_id: session.into(),
            seq,
            ts_ms: 0,
            kind,
        }
    }

    fn started(session: &str) -> Event {
        ev(
            session,
            0,
            EventKind::SessionStarted {
                agent: "a".into(),
                agent_source: None,
                model: "m".into(),
                workspace: "/w".into(),
                tools: vec![],
                sandbox: "bwrap".into(),
                system_prompt: format!("sys {session}"),
                parent_session_id: None,
                resumed: false,
                limits: Default::default(),
            },
        )
    }

    #[test]
    fn only_own_events_and_interrupted_calls_stay_pending() {
        let call = ToolCall::from_raw("c1", "task", "{}");
        let events = vec![
            started("p"),
            ev("p", 1, EventKind::UserMessage { text: "go".into() }),
            ev(
                "p",
                2,
                EventKind::MessageCompleted {
                    turn: 1,
                    text: String::new(),
                    reasoning: None,
                    tool_calls: vec![call, ToolCall::from_raw("c2", "bash", "{}")],
                },
            ),
            // A child's events, as older versions wrote them into the parent's journal.
            started("child"),
            ev("child", 1, EventKind::UserMessage { text: "sub".into() }),
            ev(
                "child",
                2,
                EventKind::TurnCompleted {
                    turn: 1,
                    usage: Usage {
                        input_tokens: 1000,
                        ..Default::default()
                    },
                    cost_usd: None,
                    provider: "x".into(),
                    model: "y".into(),
                    finish_reason: "stop".into(),
                    ttft_ms: None,
                    model_ms: 1,
                    retries: 0,
                    context_tokens: None,
                    context_window: None,
                },
            ),
            ev(
                "p",
                3,
                EventKind::ToolCompleted {
                    call_id: "c1".into(),
                    tool: "task".into(),
                    is_error: false,
                    output: "child says hi".into(),
                    metadata: json!({"usage": {"input_tokens": 7, "output_tokens": 3}}),
                    duration_ms: 5,
                },
            ),
        ];
        let r = rebuild(&events).unwrap();
        assert_eq!(r.session_id, "p");
        assert_eq!(r.next_seq, 4);
        assert_eq!(r.turns, 0);
        assert_eq!(r.usage.input_tokens, 7);
        let msgs = r.conversation.messages();
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
        assert_eq!(msgs[0], Message::system("sys p"));
        assert_eq!(msgs[3], Message::tool("c1", "child says hi"));
        assert_eq!(r.conversation.pending().len(), 1);
        assert_eq!(r.conversation.pending()[0].id, "c2");
    }

    #[test]
    fn clear_is_replayed() {
        let events = vec![
            started("s"),
            ev("s", 1, EventKind::UserMessage { text: "one".into() }),
            ev("s", 2, EventKind::ConversationCleared {}),
            ev("s", 3, EventKind::UserMessage { text: "two".into() }),
        ];
        let r = rebuild(&events).unwrap();
        assert_eq!(
            r.conversation.messages(),
            &[Message::system("sys s"), Message::user("two")]
        );
    }
}
