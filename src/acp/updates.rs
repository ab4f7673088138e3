//! deputy's events as ACP `session/update`s: message and thought chunks, tool calls and their
//! updates (kind, status, locations, the edit as diff content), the plan from the todo list.
//!
//! Pure functions of an event, so a journal replayed by `session/load` reads as the turns did
//! live. The two differ only where the journal does: it keeps each answer whole
//! (`message.completed`) rather than its deltas, and the user's own messages are news only in
//! a replay (the editor shows what its user typed).

use std::path::Path;

use deputy_runtime::todo::{Todo, TodoStatus};
use deputy_runtime::{Event, EventKind};
use serde_json::{Value, json};

/// Tool output longer than this is cut in the update (the model still read all of it).
const MAX_TEXT: usize = 16 * 1024;

/// Whether events arrive as they happen or are read back from the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
}

/// The updates one event makes (most make none).
pub fn of_event(e: &Event, cwd: &Path, mode: Mode) -> Vec<Value> {
    match &e.kind {
        EventKind::MessageDelta {
            text, reasoning, ..
        } if mode == Mode::Live => vec![chunk(
            if *reasoning {
                "agent_thought_chunk"
            } else {
                "agent_message_chunk"
            },
            text,
        )],
        EventKind::MessageCompleted {
            text, reasoning, ..
        } if mode == Mode::Replay => {
            let mut out = Vec::new();
            if let Some(r) = reasoning.as_deref().filter(|r| !r.is_empty()) {
                out.push(chunk("agent_thought_chunk", r));
            }
            if !text.is_empty() {
                out.push(chunk("agent_message_chunk", text));
            }
            out
        }
        EventKind::UserMessage { text } if mode == Mode::Replay => {
            vec![chunk("user_message_chunk", text)]
        }
        EventKind::ToolRequested {
            call_id,
            tool,
            input,
            ..
        } => {
            let mut u = json!({
                "sessionUpdate": "tool_call",
                "toolCallId": call_id,
                "title": title(tool, input),
                "kind": kind(tool),
                "status": "pending",
                "rawInput": input,
            });
            if let Some(path) = input.get("path").and_then(Value::as_str) {
                u["locations"] = json!([{"path": absolute(cwd, path)}]);
            }
            vec![u]
        }
        EventKind::ToolStarted { call_id, .. } => vec![json!({
            "sessionUpdate": "tool_call_update",
            "toolCallId": call_id,
            "status": "in_progress",
        })],
        EventKind::ToolCompleted {
            call_id,
            is_error,
            output,
            metadata,
            ..
        } => {
            let content = match (metadata.get("diff").and_then(Value::as_str), is_error) {
                (Some(diff), false) => {
                    let path = metadata
                        .get("path")
                        .and_then(Value::as_str)
                        .map(|p| absolute(cwd, p))
                        .unwrap_or_default();
                    let created = metadata.get("created").and_then(Value::as_bool) == Some(true);
                    diff_content(&path, diff, created)
                }
                _ => vec![
                    json!({"type": "content", "content": {"type": "text", "text": clip(output)}}),
                ],
            };
            let mut u = json!({
                "sessionUpdate": "tool_call_update",
                "toolCallId": call_id,
                "status": if *is_error { "failed" } else { "completed" },
                "content": content,
            });
            // The details (exit code, counts, …), unless a command's whole output makes them
            // large: the text above already holds what the model read.
            if metadata.to_string().len() <= MAX_TEXT {
                u["rawOutput"] = metadata.clone();
            }
            vec![u]
        }
        EventKind::TodoUpdated { todos } => vec![plan(todos)],
        _ => Vec::new(),
    }
}

fn chunk(kind: &str, text: &str) -> Value {
    json!({"sessionUpdate": kind, "content": {"type": "text", "text": text}})
}

/// ACP's kind of a tool, for the editor's icon and grouping.
pub fn kind(tool: &str) -> &'static str {
    match tool {
        "read" | "skill" => "read",
        "edit" | "write" => "edit",
        "bash" => "execute",
        "grep" | "glob" | "list" | "websearch" => "search",
        "webfetch" => "fetch",
        "todowrite" | "todoread" => "think",
        _ => "other",
    }
}

/// A short title: the command, the path, the pattern, else the tool's name.
pub fn title(tool: &str, input: &Value) -> String {
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    let first_line = |t: &str| {
        t.lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect::<String>()
    };
    match tool {
        "bash" => s("command").map_or_else(|| "bash".into(), |c| format!("`{}`", first_line(c))),
        "read" | "edit" | "write" | "list" => match s("path") {
            Some(p) => format!("{tool} {p}"),
            None => tool.to_string(),
        },
        "grep" | "glob" => s("pattern").map_or_else(|| tool.into(), |p| format!("{tool} {p}")),
        "webfetch" => s("url").map_or_else(|| tool.into(), |u| format!("fetch {u}")),
        "task" => s("description").map_or_else(|| tool.into(), |d| format!("task: {d}")),
        _ => tool.to_string(),
    }
}

/// ACP wants absolute paths; tools take workspace-relative ones. Only joined, never read.
fn absolute(cwd: &Path, path: &str) -> String {
    if Path::new(path).is_absolute() {
        path.to_string()
    } else {
        cwd.join(path).to_string_lossy().into_owned()
    }
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[… {} more bytes]", &s[..end], s.len() - end)
}

/// The change as ACP diff content, one item per hunk of the unified diff the tool recorded:
/// each hunk's old side (context and removed lines) and new side (context and added lines).
/// Nothing is read from disk. A created file has no old text.
pub fn diff_content(path: &str, diff: &str, created: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let mut old = String::new();
    let mut new = String::new();
    let mut in_hunk = false;
    let mut flush = |old: &mut String, new: &mut String| {
        if old.is_empty() && new.is_empty() {
            return;
        }
        out.push(json!({
            "type": "diff",
            "path": path,
            "oldText": if created { Value::Null } else { json!(std::mem::take(old)) },
            "newText": std::mem::take(new),
        }));
        old.clear();
    };
    for line in diff.lines() {
        if line.starts_with("@@") {
            flush(&mut old, &mut new);
            in_hunk = true;
            continue;
        }
        if !in_hunk {
            continue;
        }
        match line.split_at_checked(1) {
            Some(("+", rest)) => {
                new.push_str(rest);
                new.push('\n');
            }
            Some(("-", rest)) => {
                old.push_str(rest);
                old.push('\n');
            }
            Some((" ", rest)) => {
                old.push_str(rest);
                old.push('\n');
                new.push_str(rest);
                new.push('\n');
            }
            // "\ No newline at end of file", a clipped tail.
            _ => {}
        }
    }
    flush(&mut old, &mut new);
    out
}

/// The todo list as ACP's plan (ACP has no "cancelled": a dropped item is shown done).
fn plan(todos: &[Todo]) -> Value {
    let entries: Vec<Value> = todos
        .iter()
        .map(|t| {
            json!({
                "content": t.content,
                "priority": t.priority.map_or(json!("medium"), |p| json!(p)),
                "status": match t.status {
                    TodoStatus::Pending => "pending",
                    TodoStatus::InProgress => "in_progress",
                    TodoStatus::Completed | TodoStatus::Cancelled => "completed",
                },
            })
        })
        .collect();
    json!({"sessionUpdate": "plan", "entries": entries})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            v: 1,
            session_id: "s".into(),
            seq: 0,
            ts_ms: 0,
            kind,
        }
    }

    #[test]
    fn a_tool_call_and_its_edit() {
        let cwd = Path::new("/w");
        let u = of_event(
            &event(EventKind::ToolRequested {
                turn: 1,
                call_id: "c1".into(),
                tool: "edit".into(),
                input: json!({"path": "src/a.rs", "old_string": "x", "new_string": "y"}),
            }),
            cwd,
            Mode::Live,
        );
        assert_eq!(u[0]["kind"], "edit");
        assert_eq!(u[0]["title"], "edit src/a.rs");
        assert_eq!(u[0]["locations"][0]["path"], "/w/src/a.rs");
        let (diff, _, _) =
            deputy_tools::tools::unified_diff("src/a.rs", "a\nb\nx\nc\n", "a\nb\ny\nc\n");
        let u = of_event(
            &event(EventKind::ToolCompleted {
                call_id: "c1".into(),
                tool: "edit".into(),
                is_error: false,
                output: "Edited".into(),
                metadata: json!({"path": "src/a.rs", "diff": diff}),
                duration_ms: 1,
            }),
            cwd,
            Mode::Live,
        );
        assert_eq!(u[0]["status"], "completed");
        let d = &u[0]["content"][0];
        assert_eq!(d["type"], "diff");
        assert_eq!(d["path"], "/w/src/a.rs");
        assert_eq!(d["oldText"], "a\nb\nx\nc\n");
        assert_eq!(d["newText"], "a\nb\ny\nc\n");
    }

    #[test]
    fn a_created_file_has_no_old_text_and_a_failure_says_why() {
        let d = diff_content(
            "/w/n.txt",
            "--- a/n.txt\n+++ b/n.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n",
            true,
        );
        assert_eq!(d.len(), 1);
        assert!(d[0]["oldText"].is_null());
        assert_eq!(d[0]["newText"], "one\ntwo\n");
        let u = of_event(
            &event(EventKind::ToolCompleted {
                call_id: "c".into(),
                tool: "bash".into(),
                is_error: true,
                output: "denied: no".into(),
                metadata: json!({}),
                duration_ms: 0,
            }),
            Path::new("/w"),
            Mode::Live,
        );
        assert_eq!(u[0]["status"], "failed");
        assert_eq!(u[0]["content"][0]["content"]["text"], "denied: no");
    }

    #[test]
    fn chunks_and_the_plan() {
        let u = of_event(
            &event(EventKind::MessageDelta {
                turn: 1,
                text: "hm".into(),
                reasoning: true,
            }),
            Path::new("/"),
            Mode::Live,
        );
        assert_eq!(u[0]["sessionUpdate"], "agent_thought_chunk");
        let todos: Vec<Todo> = serde_json::from_value(json!([
            {"content": "a", "status": "in_progress", "priority": "high"},
            {"content": "b", "status": "cancelled"},
        ]))
        .unwrap();
        let p = plan(&todos);
        assert_eq!(p["entries"][0]["priority"], "high");
        assert_eq!(p["entries"][1]["status"], "completed");
        assert_eq!(p["entries"][1]["priority"], "medium");
    }
}
