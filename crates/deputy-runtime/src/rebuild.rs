//! A session rebuilt from its journal: the conversation, the totals, the next sequence number.
//!
//! Only the session's own events count (those with the `session_id` of its first
//! `session.started`): a subagent's events, should an older journal hold them, are its own
//! ledger's business. The conversation is replayed through [`Conversation`], so it is
//! well-formed whatever the journal holds; calls left without a result stay pending, for the
//! resumed session to settle: one that may have started (deputy was killed while it ran) is
//! closed as interrupted and never run again; one that provably never started is run.

use std::collections::HashSet;

use deputy_llm::Usage;
use serde_json::Value;

use crate::conversation::Conversation;
use crate::event::{Event, EventKind, Status};
use crate::journal::JournalError;

/// The text the model gets for a call that was cut off by a crash or a kill.
pub const INTERRUPTED_RESULT: &str = "This tool call was interrupted: deputy stopped while it was running, so it may or may not have taken effect, in part or in whole. It has not been run again. Check the current state (read the files, list the directory, run a harmless command) before you decide whether to repeat it.";

/// The text the model gets for a call that never started, when the session is resumed with
/// new instructions instead of going on.
pub const NOT_RUN_RESULT: &str = "This tool call was not run: the session stopped before it started, and was resumed with new instructions. Ask for it again if it is still needed.";

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
    /// Pending calls that may have started (`tool.started` on record; in a journal from before
    /// that event, an allowing `tool.decided`): closed as interrupted on resume. The other
    /// pending calls provably never started.
    pub begun: Vec<String>,
    /// The last run has no `session.finished`: it was cut off (a crash, a kill, a lost lease).
    pub cut_off: bool,
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
        begun: Vec::new(),
        cut_off: false,
    };
    let mut started = false;
    // What says a call may have started, and whether the writer recorded starts at all.
    let (mut ran, mut allowed, mut records_starts) = (HashSet::new(), HashSet::new(), false);
    for e in events.iter().filter(|e| e.session_id == own) {
        r.next_seq = r.next_seq.max(e.seq + 1);
        r.cut_off = !matches!(e.kind, EventKind::SessionFinished { .. });
        match &e.kind {
            EventKind::ToolStarted { call_id, .. } => {
                ran.insert(call_id.clone());
            }
            EventKind::ToolDecided {
                call_id,
                allowed: true,
                ..
            } => {
                allowed.insert(call_id.clone());
            }
            EventKind::SessionStarted {
                agent,
                model,
                system_prompt,
                parent_session_id,
                workspace,
                records_starts: records,
                ..
            } => {
                records_starts = *records;
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
                carried,
                ..
            } => {
                close_interrupted(&mut r);
                let mut calls = tool_calls.clone();
                crate::conversation::distinct_call_ids(&mut calls);
                push(&mut r, |c| {
                    c.push_answer(
                        Some(text.clone()),
                        reasoning.clone(),
                        calls,
                        carried.clone(),
                    )
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
    r.begun = r
        .conversation
        .pending()
        .iter()
        .filter(|p| ran.contains(&p.id) || (!records_starts && allowed.contains(&p.id)))
        .map(|p| p.id.clone())
        .collect();
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
        started_by(session, false)
    }

    /// `session.started` of a writer that records `tool.started` (`records`) or not.
    fn started_by(session: &str, records: bool) -> Event {
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
                records_starts: records,
                worktree: None,
                instructions: vec![],
            },
        )
    }

    fn decided(seq: u64, id: &str) -> Event {
        ev(
            "p",
            seq,
            EventKind::ToolDecided {
                call_id: id.into(),
                tool: "bash".into(),
                allowed: true,
                by: crate::event::DecidedBy::Rule,
                reason: None,
            },
        )
    }

    /// A run cut off with three calls pending: c1 started, c2 decided, c3 only requested.
    fn cut_off_with_three_calls(records: bool) -> Vec<Event> {
        let calls = ["c1", "c2", "c3"]
            .map(|id| ToolCall::from_raw(id, "bash", "{}"))
            .to_vec();
        let mut events = vec![
            started_by("p", records),
            ev("p", 1, EventKind::UserMessage { text: "go".into() }),
            ev(
                "p",
                2,
                EventKind::MessageCompleted {
                    carried: None,
                    turn: 1,
                    text: String::new(),
                    reasoning: None,
                    tool_calls: calls,
                },
            ),
            decided(3, "c1"),
            decided(4, "c2"),
        ];
        if records {
            events.push(ev(
                "p",
                5,
                EventKind::ToolStarted {
                    call_id: "c1".into(),
                    tool: "bash".into(),
                },
            ));
        }
        events
    }

    #[test]
    fn only_calls_that_may_have_started_are_begun() {
        // A writer that records starts: only c1 began; c2 and c3 never started.
        let r = rebuild(&cut_off_with_three_calls(true)).unwrap();
        assert_eq!(r.begun, ["c1"]);
        assert_eq!(r.conversation.pending().len(), 3);
        assert!(r.cut_off);
        // An older journal: a call allowed may have started; one never decided did not.
        let r = rebuild(&cut_off_with_three_calls(false)).unwrap();
        assert_eq!(r.begun, ["c1", "c2"]);
    }

    #[test]
    fn a_finished_run_is_not_cut_off() {
        let mut events = cut_off_with_three_calls(true);
        assert!(rebuild(&events).unwrap().cut_off);
        events.push(ev(
            "p",
            9,
            EventKind::SessionFinished {
                status: Status::Cancelled,
                result: String::new(),
                structured_output: None,
                usage: Usage::default(),
                cost_usd: None,
                duration_ms: 0,
                num_turns: 1,
                files_changed: vec![],
                errors: vec![],
                metrics: Default::default(),
                worktree: None,
            },
        ));
        assert!(!rebuild(&events).unwrap().cut_off);
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
                    carried: None,
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
