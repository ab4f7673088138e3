//! `todowrite` / `todoread`: the session's task list as structured state (opencode's names;
//! Claude Code's `TodoWrite` maps here). Each write replaces the list and is a `todo.updated`
//! event, so the terminal shows it, the journal keeps it and a resume restores it.

use std::sync::{Arc, Mutex};

use deputy_llm::ToolSpec;
use deputy_tools::{Permissions, ToolOutput};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::event::EventKind;
use crate::router::{Handler, PreparedCall};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    Pending,
    #[serde(alias = "in-progress", alias = "active")]
    InProgress,
    #[serde(alias = "done")]
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TodoPriority {
    High,
    Medium,
    Low,
}

/// One item of the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Todo {
    /// What is to be done, in a few words.
    pub content: String,
    pub status: TodoStatus,
    /// high, medium or low.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<TodoPriority>,
    /// A stable id, if you want one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The item as it is being done ("Running the tests"), Claude Code's `activeForm`.
    #[serde(default, alias = "activeForm", skip_serializing_if = "Option::is_none")]
    pub active_form: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct TodoWriteInput {
    /// The whole list, replacing the previous one.
    todos: Vec<Todo>,
}

/// The list of one session, shared by its two tools.
pub type TodoList = Arc<Mutex<Vec<Todo>>>;

/// The most items a list may hold.
const MAX_ITEMS: usize = 100;

/// `todowrite`.
pub(crate) struct TodoWrite {
    pub list: TodoList,
}

/// `todoread`.
pub(crate) struct TodoRead {
    pub list: TodoList,
}

/// The list as the model reads it.
pub fn render(todos: &[Todo]) -> String {
    if todos.is_empty() {
        return "The task list is empty.".into();
    }
    let done = todos
        .iter()
        .filter(|t| t.status == TodoStatus::Completed)
        .count();
    let mut out = format!("{done} of {} done:\n", todos.len());
    for t in todos {
        let mark = match t.status {
            TodoStatus::Pending => "[ ]",
            TodoStatus::InProgress => "[~]",
            TodoStatus::Completed => "[x]",
            TodoStatus::Cancelled => "[-]",
        };
        out.push_str(&format!("{mark} {}\n", t.content));
    }
    out.trim_end().to_string()
}

impl Handler for TodoWrite {
    fn name(&self) -> &str {
        "todowrite"
    }

    fn summary(&self) -> String {
        "Keep your task list: plan multi-step work, mark one item in_progress at a time, completed as soon as it is.".into()
    }

    fn spec(&self, _perms: &Permissions) -> Option<ToolSpec> {
        Some(ToolSpec {
            name: "todowrite".into(),
            description: "Write your task list (the whole list each time; it replaces the previous one). Use it for work of three or more steps: add the steps as pending, mark the one you work on in_progress (only one at a time) and completed as soon as it is done; cancel what no longer applies. The user sees the list.".into(),
            parameters: deputy_tools::tools::strict_schema::<TodoWriteInput>(),
        })
    }

    fn concurrent(&self) -> bool {
        false
    }

    fn prepare(&self, input: Value) -> Result<PreparedCall, String> {
        let input = match input {
            Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            v => v,
        };
        let parsed: TodoWriteInput = serde_json::from_value(input).map_err(|e| {
            format!(
                "invalid input for todowrite: {e}. Expected {{\"todos\": [{{\"content\": \"…\", \"status\": \"pending|in_progress|completed|cancelled\"}}]}}"
            )
        })?;
        if parsed.todos.len() > MAX_ITEMS {
            return Err(format!(
                "{} items; a task list holds at most {MAX_ITEMS}",
                parsed.todos.len()
            ));
        }
        if let Some(t) = parsed.todos.iter().find(|t| t.content.trim().is_empty()) {
            return Err(format!("an item has no content: {t:?}"));
        }
        let list = self.list.clone();
        Ok(PreparedCall::new(None, None, move |call| async move {
            let todos = parsed.todos;
            if let Ok(mut l) = list.lock() {
                *l = todos.clone();
            }
            let text = render(&todos);
            call.emit(EventKind::TodoUpdated {
                todos: todos.clone(),
            });
            ToolOutput::ok(text, json!({"items": todos.len()})).into()
        }))
    }
}

impl Handler for TodoRead {
    fn name(&self) -> &str {
        "todoread"
    }

    fn summary(&self) -> String {
        "Read your task list.".into()
    }

    fn spec(&self, _perms: &Permissions) -> Option<ToolSpec> {
        Some(ToolSpec {
            name: "todoread".into(),
            description: "Read your current task list.".into(),
            parameters: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        })
    }

    fn concurrent(&self) -> bool {
        true
    }

    fn prepare(&self, _input: Value) -> Result<PreparedCall, String> {
        let list = self.list.clone();
        Ok(PreparedCall::new(None, None, move |_| async move {
            let todos = list.lock().map(|l| l.clone()).unwrap_or_default();
            ToolOutput::ok(render(&todos), json!({"items": todos.len()})).into()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_code_and_opencode_shapes_parse() {
        let cc: TodoWriteInput = serde_json::from_value(json!({"todos": [
            {"content": "Run tests", "status": "in_progress", "activeForm": "Running tests"},
            {"content": "Fix", "status": "pending", "priority": "high", "id": "2"},
        ]}))
        .unwrap();
        assert_eq!(cc.todos[0].active_form.as_deref(), Some("Running tests"));
        assert_eq!(cc.todos[1].priority, Some(TodoPriority::High));
        assert_eq!(render(&cc.todos), "0 of 2 done:\n[~] Run tests\n[ ] Fix");
    }
}
