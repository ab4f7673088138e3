//! The `task` tool: an agent hands a piece of work to a subagent and gets its answer back.
//!
//! The child is a full [`Session`] with its own prompt, model and tools, a `parent_session_id`,
//! and a journal of its own (so `deputy sessions list --all` shows it). It inherits:
//! - a budget no larger than what the parent has left (steps, time, tokens, cost);
//! - the parent's permissions as a ceiling: it can never do what the parent's rules deny;
//! - the parent's cancellation: cancelling the parent cancels its children;
//! - one level more of depth (default limit 3: no `task` tool at the limit).
//!
//! The parent's journal records `subagent.started` and `subagent.finished` and, in the call's
//! `tool.completed`, the child's result and what it spent; the child's own events go to its own
//! journal and, forwarded, to whoever watches the parent. Several task calls in one model turn
//! run concurrently, at most `max_concurrency` at a time (default 4). Passing a `task_id` again
//! continues that child.
//!
//! This module knows how to run a child, not how to make one: a [`ChildMaker`] (the factory,
//! for the CLI and MCP) builds the session from the agent and what the parent hands down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_agent::AgentSpec;
use deputy_llm::{ToolSpec, Usage};
use deputy_tools::{Decision, Permissions, SandboxPolicy, ToolOutput};
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::approve::Approver;
use crate::event::{EventKind, Status};
use crate::options::Limits;
use crate::router::{CallCtx, Handler, PreparedCall, ToolResult};
use crate::session::Session;
use crate::worktree::{Settled, Worktree};

/// `[task]` in config.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Deepest level of delegation (a top-level agent is level 0).
    pub max_depth: u32,
    /// Task calls of one turn running at once.
    pub max_concurrency: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            max_depth: 3,
            max_concurrency: 4,
        }
    }
}

/// The input of the `task` tool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct TaskInput {
    /// A short (3-6 words) description of the task, shown to the user.
    pub description: String,
    /// The task for the subagent: everything it needs to know, since it sees nothing of this
    /// conversation.
    pub prompt: String,
    /// Which subagent to use.
    #[serde(alias = "agent", alias = "subagent")]
    pub subagent_type: String,
    /// To continue a task given earlier, its task_id; leave empty for a new task.
    #[serde(default)]
    pub task_id: Option<String>,
    /// `worktree`: the subagent works in a git worktree and branch of its own, so parallel
    /// subagents never edit the same files; its change comes back as a commit on that branch.
    /// Default: the subagent's own setting (usually the shared workspace).
    #[serde(default)]
    pub isolation: Option<IsolationIn>,
}

/// The `isolation` a task call (or a `deputy serve` session) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IsolationIn {
    None,
    Worktree,
}

/// What a parent hands down to a new child.
pub struct ChildOf {
    pub session_id: String,
    /// The parent's `provider/model`, for a child with no model of its own (or `inherit`).
    pub model_label: String,
    /// The parent's rules: the child's ceiling.
    pub permissions: Permissions,
    /// The parent's sandbox policy: the child's ceiling.
    pub sandbox: SandboxPolicy,
    pub approver: Arc<dyn Approver>,
    /// The session tree's MCP connections, reused by the child.
    pub mcp: Arc<crate::mcp::McpHub>,
    /// The worktree the child works in, and the session id it was made for.
    pub worktree: Option<(String, Arc<Worktree>)>,
}

/// Makes the session of a subagent.
pub trait ChildMaker: Send + Sync {
    /// A new session of `agent` as a child of `parent` (with `parent_session_id`, the
    /// ceilings and the approver set), and warnings to show.
    fn make<'a>(
        &'a self,
        agent: AgentSpec,
        parent: &'a ChildOf,
    ) -> BoxFuture<'a, Result<(Session, Vec<String>), String>>;
}

struct Child {
    session: Arc<tokio::sync::Mutex<Session>>,
    parent: String,
    agent: String,
    /// The child's own limits (each call bounds them by what the parent has left).
    own: Limits,
    usage: Usage,
    cost: Option<f64>,
    /// Its worktree (`isolation: worktree`), and whether it is gone (nothing changed).
    worktree: Option<Arc<Worktree>>,
    worktree_gone: bool,
}

/// Runs subagents for every session of a process.
pub struct TaskRunner {
    agents: Vec<AgentSpec>,
    maker: Arc<dyn ChildMaker>,
    config: TaskConfig,
    semaphore: Arc<Semaphore>,
    children: Mutex<HashMap<String, Child>>,
}

/// The `task` tool of one session: the runner, the caller, and how deep the caller is.
struct TaskTool {
    runner: Arc<TaskRunner>,
    caller: AgentSpec,
    depth: u32,
}

impl TaskRunner {
    /// `agents` are every agent known (the catalog); `maker` builds a child's session.
    pub fn new(
        agents: Vec<AgentSpec>,
        maker: Arc<dyn ChildMaker>,
        config: TaskConfig,
    ) -> Arc<TaskRunner> {
        Arc::new(TaskRunner {
            agents,
            maker,
            semaphore: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            config,
            children: Mutex::new(HashMap::new()),
        })
    }

    pub fn max_depth(&self) -> u32 {
        self.config.max_depth
    }

    /// Give `session` the `task` tool, at `depth` (0 for a top-level session). At the depth
    /// limit, or without the agent's leave, it is not offered.
    pub fn attach(self: &Arc<Self>, session: &mut Session, depth: u32) {
        let caller = session.agent().clone();
        if !caller.tools.is_enabled("task") || depth >= self.config.max_depth {
            return;
        }
        session.add_handler(Arc::new(TaskTool {
            runner: self.clone(),
            caller,
            depth,
        }));
    }

    /// The subagents `caller` may delegate to under `perms`.
    pub fn subagents_for<'a>(
        &'a self,
        caller: &AgentSpec,
        perms: &Permissions,
    ) -> Vec<&'a AgentSpec> {
        self.agents
            .iter()
            .filter(|a| {
                a.mode.usable_as_subagent() && !a.hidden && !a.disable && a.name != caller.name
            })
            .filter(|a| !matches!(perms.decide("task", Some(&a.name)), Decision::Deny { .. }))
            .collect()
    }

    /// The tool spec for `caller`, listing the subagents it may use; `None` if there are none.
    pub fn spec_for(&self, caller: &AgentSpec, perms: &Permissions) -> Option<ToolSpec> {
        if perms.tool_denied("task") {
            return None;
        }
        let subs = self.subagents_for(caller, perms);
        if subs.is_empty() {
            return None;
        }
        let list: Vec<String> = subs
            .iter()
            .map(|a| {
                let d = a
                    .description
                    .as_deref()
                    .unwrap_or("(no description)")
                    .replace('\n', " ");
                format!("- {}: {d}", a.name)
            })
            .collect();
        let description = format!(
            "Hand a self-contained task to a subagent, which works on it on its own (with its own tools, in the same workspace, or with isolation: worktree in a git worktree and branch of its own) and returns its final answer. Give it everything it needs in the prompt: it does not see this conversation. Several task calls in one reply run at the same time. The result starts with a task_id; pass it again as task_id to continue that subagent's work.\n\nAvailable subagents:\n{}",
            list.join("\n")
        );
        let mut parameters = deputy_tools::tools::strict_schema::<TaskInput>();
        let names: Vec<Value> = subs.iter().map(|a| json!(a.name)).collect();
        parameters["properties"]["subagent_type"]["enum"] = Value::Array(names);
        Some(ToolSpec {
            name: TASK_TOOL.into(),
            description,
            parameters,
        })
    }

    /// Run one task call.
    async fn run(self: Arc<Self>, input: TaskInput, depth: u32, ctx: CallCtx) -> ToolResult {
        let err = |msg: String| ToolResult::from(ToolOutput::error(msg));
        let permit = tokio::select! {
            p = self.semaphore.clone().acquire_owned() => p,
            _ = ctx.cancel.cancelled() => return err("cancelled before the subagent started".into()),
        };
        let Ok(_permit) = permit else {
            return err("the task runner is shut down".into());
        };
        let existing = input
            .task_id
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(str::trim);
        let child_id = match existing {
            Some(id) => match self.continue_child(id, &ctx.session_id) {
                Ok(id) => id,
                Err(e) => return err(e),
            },
            None => match self.new_child(&input, depth, &ctx).await {
                Ok(id) => id,
                Err(e) => return err(e),
            },
        };
        let (session, own, agent_name, worktree) = {
            let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            match children.get(&child_id) {
                Some(c) if c.worktree_gone => {
                    return err(format!(
                        "task {child_id} worked in a worktree that was removed because it changed nothing; start a new task"
                    ));
                }
                Some(c) => (
                    c.session.clone(),
                    c.own.clone(),
                    c.agent.clone(),
                    c.worktree.clone(),
                ),
                None => return err(format!("task {child_id} is gone")),
            }
        };
        let mut session = session.lock().await;
        session.forward_events_to(&ctx.emitter);
        session.set_cancel_token(ctx.cancel.child_token());
        session.set_limits(child_limits(own, &ctx.budget));
        ctx.emit(EventKind::SubagentStarted {
            child_session_id: child_id.clone(),
            agent: agent_name.clone(),
            description: input.description.clone(),
            call_id: ctx.call_id.clone(),
        });
        let outcome = session.run(Some(input.prompt.clone())).await;
        drop(session);
        // Its change was committed on its branch as the run ended (whatever the outcome); a
        // worktree that never changed goes now.
        let settled = match (worktree, &outcome.worktree) {
            (None, _) => None,
            (Some(wt), Some(Settled::Unchanged)) => {
                let done = tokio::task::spawn_blocking(move || wt.settle("")).await;
                Some(match done {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                })
            }
            (Some(_), Some(s)) => Some(Ok(s.clone())),
            (Some(_), None) => {
                Some(Err(outcome.errors.last().cloned().unwrap_or_else(|| {
                    "the change could not be committed".into()
                })))
            }
        };
        if let Some(Err(e)) = &settled {
            ctx.emit(EventKind::Warning {
                message: format!("subagent {agent_name}: its worktree could not be settled: {e}"),
            });
        }
        if matches!(settled, Some(Ok(Settled::Unchanged))) {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = children.get_mut(&child_id) {
                c.worktree_gone = true;
            }
        }
        ctx.emit(EventKind::SubagentFinished {
            child_session_id: child_id.clone(),
            agent: agent_name.clone(),
            status: outcome.status,
            result: outcome.result.clone(),
            call_id: ctx.call_id.clone(),
        });
        // This call's share of the child's totals.
        let (usage, cost) = {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            match children.get_mut(&child_id) {
                Some(c) => {
                    let usage = usage_since(&outcome.usage, &c.usage);
                    let cost = outcome.cost_usd.map(|t| t - c.cost.unwrap_or(0.0));
                    c.usage = outcome.usage;
                    c.cost = outcome.cost_usd;
                    (usage, cost)
                }
                None => (outcome.usage, outcome.cost_usd),
            }
        };
        let note = match outcome.status {
            Status::Completed => String::new(),
            s => format!("\n(the subagent stopped: {})", s.as_str()),
        };
        let place = match &settled {
            Some(Ok(s)) => format!("\n\n{}", s.describe()),
            Some(Err(e)) => format!("\n\nworktree: could not be settled: {e}"),
            None => String::new(),
        };
        let text = format!(
            "task_id: {child_id} (pass it as task_id to continue this subagent's work)\n\n<task_result>\n{}\n</task_result>{note}{place}",
            outcome.result.trim()
        );
        ToolResult {
            output: ToolOutput {
                content: text,
                is_error: matches!(outcome.status, Status::Error | Status::Cancelled),
                metadata: json!({
                    "task_id": child_id,
                    "agent": agent_name,
                    "status": outcome.status,
                    // What this call spent (the parent's totals, and its rebuild, add it).
                    "usage": usage,
                    "cost_usd": cost,
                    "duration_ms": outcome.duration_ms,
                    "worktree": match &settled {
                        Some(Ok(s)) => json!(s),
                        Some(Err(e)) => json!({"outcome": "error", "error": e}),
                        None => Value::Null,
                    },
                }),
            },
            usage,
            cost,
        }
    }

    fn continue_child(&self, id: &str, parent_id: &str) -> Result<String, String> {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        match children.get(id) {
            Some(c) if c.parent == parent_id => Ok(id.to_string()),
            Some(_) => Err(format!("task {id} belongs to another session")),
            None => Err(format!(
                "there is no task with id {id} in this session; leave task_id empty to start a new task"
            )),
        }
    }

    async fn new_child(
        self: &Arc<Self>,
        input: &TaskInput,
        depth: u32,
        ctx: &CallCtx,
    ) -> Result<String, String> {
        let Some(agent) = self
            .agents
            .iter()
            .find(|a| a.name == input.subagent_type)
            .cloned()
        else {
            let names: Vec<&str> = self
                .agents
                .iter()
                .filter(|a| a.mode.usable_as_subagent() && !a.hidden)
                .map(|a| a.name.as_str())
                .collect();
            return Err(format!(
                "there is no subagent named `{}`; the subagents are: {}",
                input.subagent_type,
                names.join(", ")
            ));
        };
        let isolation = match input.isolation {
            Some(IsolationIn::Worktree) => deputy_agent::Isolation::Worktree,
            Some(IsolationIn::None) => deputy_agent::Isolation::None,
            None => agent.isolation,
        };
        let worktree = match isolation {
            deputy_agent::Isolation::None => None,
            deputy_agent::Isolation::Worktree => {
                let id = crate::journal::new_session_id();
                let plan_ws = ctx.workspace.clone();
                let (agent_name, parent_id) = (agent.name.clone(), ctx.session_id.clone());
                // A tenant's session (its home hidden: `deputy serve`) may not follow a
                // `gitdir:` file out of its workspace.
                let confined = ctx.sandbox.home == deputy_tools::sandbox::HomeView::Hidden;
                let child_id = id.clone();
                let made = tokio::task::spawn_blocking(move || {
                    Worktree::create(&crate::worktree::Plan {
                        workspace: &plan_ws,
                        agent: &agent_name,
                        session_id: &child_id,
                        parent_session_id: Some(&parent_id),
                        name: None,
                        confined,
                    })
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot make a worktree for subagent {}: {e}", agent.name))?;
                Some((id, Arc::new(made)))
            }
        };
        let parent = ChildOf {
            session_id: ctx.session_id.clone(),
            model_label: ctx.model_label.clone(),
            permissions: ctx.permissions.clone(),
            sandbox: ctx.sandbox.clone(),
            approver: ctx.approver.clone(),
            mcp: ctx.mcp.clone(),
            worktree: worktree.clone(),
        };
        let name = agent.name.clone();
        let (mut session, warnings) = match self.maker.make(agent, &parent).await {
            Ok(made) => made,
            Err(e) => {
                // A worktree nobody will work in goes at once.
                if let Some((_, wt)) = worktree {
                    let _ = tokio::task::spawn_blocking(move || wt.settle("")).await;
                }
                return Err(e);
            }
        };
        self.attach(&mut session, depth + 1);
        for w in warnings {
            ctx.emit(EventKind::Warning {
                message: format!("subagent {name}: {w}"),
            });
        }
        let id = session.id().to_string();
        let own = session.limits();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                Child {
                    session: Arc::new(tokio::sync::Mutex::new(session)),
                    parent: ctx.session_id.clone(),
                    agent: name,
                    own,
                    usage: Usage::default(),
                    cost: None,
                    worktree: worktree.map(|(_, w)| w),
                    worktree_gone: false,
                },
            );
        Ok(id)
    }
}

/// The name of the tool.
pub const TASK_TOOL: &str = "task";

impl Handler for TaskTool {
    fn name(&self) -> &str {
        TASK_TOOL
    }

    fn summary(&self) -> String {
        "hand a self-contained piece of work to a subagent and get its answer back; several task calls in one reply run at the same time.".into()
    }

    fn spec(&self, perms: &Permissions) -> Option<ToolSpec> {
        self.runner.spec_for(&self.caller, perms)
    }

    fn concurrent(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value) -> Result<PreparedCall, String> {
        let input = parse_input(&input)?;
        let runner = self.runner.clone();
        let depth = self.depth;
        // Rules match the subagent's name.
        let subject = Some(input.subagent_type.clone());
        Ok(PreparedCall::new(subject, None, move |ctx| {
            runner.run(input, depth, ctx)
        }))
    }
}

fn parse_input(input: &Value) -> Result<TaskInput, String> {
    let input = match input {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        v => v.clone(),
    };
    serde_json::from_value(input).map_err(|e| {
        format!(
            "invalid input for task: {e}. Expected description, prompt, subagent_type and optionally task_id"
        )
    })
}

/// `now - before`, field by field.
fn usage_since(now: &Usage, before: &Usage) -> Usage {
    Usage {
        input_tokens: now.input_tokens.saturating_sub(before.input_tokens),
        output_tokens: now.output_tokens.saturating_sub(before.output_tokens),
        cached_input_tokens: now
            .cached_input_tokens
            .saturating_sub(before.cached_input_tokens),
        reasoning_tokens: now.reasoning_tokens.saturating_sub(before.reasoning_tokens),
        cache_write_input_tokens: now
            .cache_write_input_tokens
            .saturating_sub(before.cache_write_input_tokens),
        estimated: now.estimated,
    }
}

/// The limits of a child: its own, bounded by what the parent has left.
fn child_limits(own: Limits, parent: &crate::router::Budget) -> Limits {
    let timeout = parent.deadline.map(|d| {
        d.saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(1))
    });
    let min = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Limits {
        max_steps: own.max_steps.min(parent.steps_left.max(1)),
        timeout: match (own.timeout, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        max_tokens: match (own.max_tokens, parent.tokens_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        max_cost_usd: min(own.max_cost_usd, parent.cost_left),
    }
}
