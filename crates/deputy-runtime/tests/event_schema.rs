//! The event schema, snapshot-tested: a change to any event's shape shows up here and must be
//! accepted on purpose (`cargo insta review`, or INSTA_UPDATE=always), with a schema version
//! bump when it is not backward compatible.

use deputy_llm::{ToolCall, Usage};
use deputy_runtime::event::{LimitsInfo, ToolMetric, TurnMetric};
use deputy_runtime::{
    CompactTrigger, DecidedBy, Event, EventKind, Metrics, SCHEMA_VERSION, Status,
};
use serde_json::json;

fn all_kinds() -> Vec<EventKind> {
    let usage = Usage {
        input_tokens: 120,
        output_tokens: 30,
        cached_input_tokens: 0,
        reasoning_tokens: 0,
        cache_write_input_tokens: 0,
        estimated: false,
    };
    vec![
        EventKind::SessionStarted {
            agent: "backend-architect".into(),
            agent_source: Some("agents/backend-architect.md".into()),
            model: "local/qwen3:8b".into(),
            workspace: "/work/project".into(),
            tools: vec!["bash".into(), "read".into()],
            sandbox: "bwrap".into(),
            system_prompt: "You are backend-architect…".into(),
            parent_session_id: None,
            resumed: false,
            records_starts: true,
            worktree: Some(deputy_runtime::worktree::Record {
                name: "backend-architect-8f3a1c".into(),
                session_id: "20261127-221930-8f3a1c".into(),
                parent_session_id: None,
                agent: "backend-architect".into(),
                branch: "deputy/backend-architect-8f3a1c".into(),
                base: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
                path: "/work/project/.deputy/worktrees/backend-architect-8f3a1c".into(),
            }),
            instructions: vec![deputy_runtime::instructions::InstructionSource {
                path: "/work/project/AGENTS.md".into(),
                bytes: 812,
                sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                imported_by: None,
                truncated: false,
            }],
            limits: LimitsInfo {
                max_steps: 50,
                timeout_s: Some(600.0),
                max_tokens: None,
                max_cost_usd: Some(1.5),
            },
        },
        EventKind::UserMessage {
            text: "add a health check".into(),
        },
        EventKind::TurnStarted { turn: 1 },
        EventKind::MessageDelta {
            turn: 1,
            text: "Let me".into(),
            reasoning: false,
        },
        EventKind::MessageCompleted {
            turn: 1,
            text: "Let me look.".into(),
            reasoning: Some("thinking".into()),
            tool_calls: vec![ToolCall::from_raw("call_1", "bash", "{\"command\":\"ls\"}")],
            carried: None,
        },
        EventKind::ToolRequested {
            turn: 1,
            call_id: "call_1".into(),
            tool: "bash".into(),
            input: json!({"command": "ls"}),
        },
        EventKind::ToolDecided {
            call_id: "call_1".into(),
            tool: "bash".into(),
            allowed: true,
            by: DecidedBy::Rule,
            reason: None,
        },
        EventKind::ToolStarted {
            call_id: "call_1".into(),
            tool: "bash".into(),
        },
        EventKind::ToolCompleted {
            call_id: "call_1".into(),
            tool: "bash".into(),
            is_error: false,
            output: "README.md\n[exit code: 0]".into(),
            metadata: json!({"exit_code": 0}),
            duration_ms: 3,
        },
        EventKind::TurnCompleted {
            turn: 1,
            usage,
            cost_usd: Some(0.0001),
            provider: "local".into(),
            model: "qwen3:8b".into(),
            finish_reason: "tool_calls".into(),
            ttft_ms: Some(80),
            model_ms: 400,
            retries: 0,
            context_tokens: Some(1200),
            context_window: Some(32_768),
        },
        EventKind::SubagentStarted {
            child_session_id: "c1".into(),
            agent: "code-reviewer".into(),
            description: "review".into(),
            call_id: "call_2".into(),
        },
        EventKind::SubagentFinished {
            child_session_id: "c1".into(),
            agent: "code-reviewer".into(),
            status: Status::Completed,
            result: "LGTM".into(),
            call_id: "call_2".into(),
        },
        EventKind::Warning {
            message: "retrying".into(),
        },
        EventKind::HookCompleted {
            hook_event: "PreToolUse".into(),
            matcher: "Bash".into(),
            command: "~/.claude/hooks/no-rm.sh".into(),
            exit_code: Some(2),
            decision: Some("block".into()),
            timed_out: false,
            duration_ms: 12,
        },
        EventKind::WriteRefused {
            call_id: "call_1".into(),
            path: "sub/.git".into(),
            reason: "git runs hooks and commands from its config on your next git command".into(),
        },
        EventKind::SessionFinished {
            status: Status::Completed,
            result: "Done.".into(),
            structured_output: None,
            usage,
            cost_usd: Some(0.0001),
            duration_ms: 1234,
            num_turns: 1,
            files_changed: vec!["health.py".into()],
            errors: vec![],
            metrics: Metrics {
                model_turns: vec![TurnMetric {
                    turn: 1,
                    ttft_ms: Some(80),
                    total_ms: 400,
                    input_tokens: 120,
                    output_tokens: 30,
                }],
                tool_calls: vec![ToolMetric {
                    tool: "bash".into(),
                    duration_ms: 3,
                    is_error: false,
                }],
                retries: 0,
            },
            worktree: Some(deputy_runtime::worktree::Settled::Committed {
                branch: "deputy/backend-architect-8f3a1c".into(),
                commit: "9fceb02d0ae598e95dc970b74767f19372d61af8".into(),
                base: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
                stat: " health.py | 12 ++++++++++++\n 1 file changed, 12 insertions(+)\n".into(),
                files_changed: 1,
                path: "/work/project/.deputy/worktrees/backend-architect-8f3a1c".into(),
            }),
        },
        // Added after the first version (appended, so earlier lines keep their seq).
        EventKind::ConversationCleared {},
        EventKind::ModelChanged {
            model: "local/qwen3:14b".into(),
        },
        EventKind::ContextCompacted {
            trigger: CompactTrigger::Threshold,
            tokens_before: 27_000,
            tokens_after: 9_000,
            pruned_outputs: 12,
            summarized_turns: 30,
            context_window: 32_768,
            pruned: vec!["call_1".into()],
            summary: Some("## Task\nAdd a health check.".into()),
            replaced: Some([2, 32]),
            usage: Some(usage),
            cost_usd: None,
        },
        EventKind::TodoUpdated {
            todos: vec![
                deputy_runtime::todo::Todo {
                    content: "Add the endpoint".into(),
                    status: deputy_runtime::todo::TodoStatus::InProgress,
                    priority: Some(deputy_runtime::todo::TodoPriority::High),
                    id: None,
                    active_form: Some("Adding the endpoint".into()),
                },
                deputy_runtime::todo::Todo {
                    content: "Test it".into(),
                    status: deputy_runtime::todo::TodoStatus::Pending,
                    priority: None,
                    id: Some("2".into()),
                    active_form: None,
                },
            ],
        },
    ]
}

/// Every variant, by exhaustive match: a new event kind fails to compile here until it is
/// added to `all_kinds` (and so to the snapshot).
fn variant_index(k: &EventKind) -> usize {
    match k {
        EventKind::SessionStarted { .. } => 0,
        EventKind::UserMessage { .. } => 1,
        EventKind::TurnStarted { .. } => 2,
        EventKind::MessageDelta { .. } => 3,
        EventKind::MessageCompleted { .. } => 4,
        EventKind::ToolRequested { .. } => 5,
        EventKind::ToolDecided { .. } => 6,
        EventKind::ToolCompleted { .. } => 7,
        EventKind::TurnCompleted { .. } => 8,
        EventKind::SubagentStarted { .. } => 9,
        EventKind::SubagentFinished { .. } => 10,
        EventKind::Warning { .. } => 11,
        EventKind::SessionFinished { .. } => 12,
        EventKind::ConversationCleared {} => 13,
        EventKind::ModelChanged { .. } => 14,
        EventKind::ContextCompacted { .. } => 15,
        EventKind::TodoUpdated { .. } => 16,
        EventKind::WriteRefused { .. } => 17,
        EventKind::ToolStarted { .. } => 18,
        EventKind::HookCompleted { .. } => 19,
    }
}

#[test]
fn the_snapshot_covers_every_event_kind() {
    let mut seen: Vec<usize> = all_kinds().iter().map(variant_index).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (0..=19).collect::<Vec<_>>());
}

#[test]
fn event_schema_is_stable() {
    let mut out = String::new();
    for (i, kind) in all_kinds().into_iter().enumerate() {
        let e = Event {
            v: SCHEMA_VERSION,
            session_id: "20261127-120000-abcdef".into(),
            seq: i as u64,
            ts_ms: 1_795_800_000_000,
            kind,
        };
        let line = serde_json::to_string(&e).unwrap();
        // Every event round-trips (the journal reads them back).
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
        out.push_str(&line);
        out.push('\n');
    }
    insta::assert_snapshot!("events_v1", out);
}

/// The names serde writes, `as_str` gives and `Status::ALL_NAMES` lists are one list.
#[test]
fn every_status_has_a_stable_name() {
    let all = Status::ALL;
    let as_str: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
    assert_eq!(as_str, Status::ALL_NAMES);
    let names: Vec<String> = all
        .iter()
        .map(|s| {
            serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "completed",
            "max_steps",
            "timeout",
            "budget",
            "denied",
            "cancelled",
            "error"
        ]
    );
}
