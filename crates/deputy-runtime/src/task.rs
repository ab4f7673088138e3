//! The `task` tool: an agent hands a piece of work to a subagent and gets its answer back.
//!
//! The child is a full [`Session`] with its own prompt, model and tools, a `parent_session_id`,
//! and a journal of its own (so `deputy sessions list --all` shows it). It inherits:
//! - a budget no larger than what the parent has left (steps, time, tokens, cost);
//! - the parent's permissions as a ceiling: it can never do what the parent's rules deny;
//! - the parent's cancellation: cancelling the parent cancels its children;
//! - one level more of depth (default limit 3: no `task` tool at the limit).
//!
//! Its events are forwarded into the parent's stream and journal, between `subagent.started`
//! and `subagent.finished`. Several task calls in one model turn run concurrently, at most
//! `max_concurrency` at a time (default 4). Passing a `task_id` again continues that child.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_agent::AgentSpec;
use deputy_llm::{ToolSpec, Usage};
use deputy_tools::{Decision, Permissions, ToolOutput};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::approve::Approver;
use crate::event::{EventKind, Status};
use crate::factory::{Factory, RunSettings};
use crate::output::{Output, lock};
use crate::session::{Limits, Session};

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
}

/// What the parent gives a child for one call.
pub(crate) struct Parent {
    pub session_id: String,
    pub depth: u32,
    pub permissions: Permissions,
    pub deadline: Option<tokio::time::Instant>,
    pub steps_left: u32,
    pub tokens_left: Option<u64>,
    pub cost_left: Option<f64>,
    pub cancel: CancellationToken,
    pub out: Arc<Mutex<Output>>,
    pub model_label: String,
    pub approver: Arc<dyn Approver>,
    pub call_id: String,
}

/// What a task call gives back to the parent.
pub(crate) struct TaskOutcome {
    pub output: ToolOutput,
    /// Usage and cost of this call (to add to the parent's totals).
    pub usage: Usage,
    pub cost: Option<f64>,
}

struct Child {
    session: Arc<tokio::sync::Mutex<Session>>,
    parent: String,
    /// The child's own limits (each call bounds them by what the parent has left).
    own: Limits,
    usage: Usage,
    cost: Option<f64>,
}

/// Runs subagents for every session of a process.
pub struct TaskRunner {
    me: std::sync::Weak<TaskRunner>,
    agents: Vec<AgentSpec>,
    factory: Factory,
    settings: RunSettings,
    config: TaskConfig,
    semaphore: Arc<Semaphore>,
    children: Mutex<HashMap<String, Child>>,
}

impl TaskRunner {
    /// `agents` are every agent known (the catalog); `settings` the run's flags that children
    /// share (sandbox mode, rules), without the parent's model.
    pub fn new(
        agents: Vec<AgentSpec>,
        factory: Factory,
        mut settings: RunSettings,
        config: TaskConfig,
    ) -> Arc<TaskRunner> {
        settings.output_schema = None;
        Arc::new_cyclic(|me| TaskRunner {
            me: me.clone(),
            agents,
            factory,
            settings,
            semaphore: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            config,
            children: Mutex::new(HashMap::new()),
        })
    }

    pub fn max_depth(&self) -> u32 {
        self.config.max_depth
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
            "Hand a self-contained task to a subagent, which works on it on its own (with its own tools, in the same workspace) and returns its final answer. Give it everything it needs in the prompt: it does not see this conversation. Several task calls in one reply run at the same time. The result starts with a task_id; pass it again as task_id to continue that subagent's work.\n\nAvailable subagents:\n{}",
            list.join("\n")
        );
        let mut parameters = deputy_tools::tools::strict_schema::<TaskInput>();
        let names: Vec<Value> = subs.iter().map(|a| json!(a.name)).collect();
        parameters["properties"]["subagent_type"]["enum"] = Value::Array(names);
        Some(ToolSpec {
            name: "task".into(),
            description,
            parameters,
        })
    }

    /// Run one task call.
    pub(crate) async fn run(self: &Arc<Self>, input: TaskInput, parent: Parent) -> TaskOutcome {
        let err = |msg: String| TaskOutcome {
            output: ToolOutput::error(msg),
            usage: Usage::default(),
            cost: None,
        };
        let permit = tokio::select! {
            p = self.semaphore.clone().acquire_owned() => p,
            _ = parent.cancel.cancelled() => return err("cancelled before the subagent started".into()),
        };
        let Ok(_permit) = permit else {
            return err("the task runner is shut down".into());
        };
        let existing = input
            .task_id
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(str::trim);
        let (child, agent_name) = match existing {
            Some(id) => match self.continue_child(id, &parent.session_id) {
                Ok(c) => c,
                Err(e) => return err(e),
            },
            None => match self.new_child(&input, &parent).await {
                Ok(c) => c,
                Err(e) => return err(e),
            },
        };
        let mut session = child.lock().await;
        let child_id = session.id().to_string();
        // The child's events go to its own journal and, forwarded, to the parent's.
        let forward = parent.out.clone();
        session.set_sink(Arc::new(move |e| lock(&forward).deliver(e)));
        session.set_cancel_token(parent.cancel.child_token());
        let own = {
            let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            children.get(&child_id).map(|c| c.own.clone())
        };
        let own = own.unwrap_or_else(|| session.limits());
        session.set_limits(self.child_limits(own, &parent));
        lock(&parent.out).emit(EventKind::SubagentStarted {
            child_session_id: child_id.clone(),
            agent: agent_name.clone(),
            description: input.description.clone(),
            call_id: parent.call_id.clone(),
        });
        let outcome = session.run(Some(input.prompt.clone())).await;
        drop(session);
        lock(&parent.out).emit(EventKind::SubagentFinished {
            child_session_id: child_id.clone(),
            agent: agent_name.clone(),
            status: outcome.status,
            result: outcome.result.clone(),
            call_id: parent.call_id.clone(),
        });
        // This call's share of the child's totals.
        let (usage, cost) = {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            match children.get_mut(&child_id) {
                Some(c) => {
                    let usage = Usage {
                        input_tokens: outcome
                            .usage
                            .input_tokens
                            .saturating_sub(c.usage.input_tokens),
                        output_tokens: outcome
                            .usage
                            .output_tokens
                            .saturating_sub(c.usage.output_tokens),
                        cached_input_tokens: outcome
                            .usage
                            .cached_input_tokens
                            .saturating_sub(c.usage.cached_input_tokens),
                        reasoning_tokens: outcome
                            .usage
                            .reasoning_tokens
                            .saturating_sub(c.usage.reasoning_tokens),
                        estimated: outcome.usage.estimated,
                    };
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
        let text = format!(
            "task_id: {child_id} (pass it as task_id to continue this subagent's work)\n\n<task_result>\n{}\n</task_result>{note}",
            outcome.result.trim()
        );
        TaskOutcome {
            output: ToolOutput {
                content: text,
                is_error: matches!(outcome.status, Status::Error | Status::Cancelled),
                metadata: json!({
                    "task_id": child_id,
                    "agent": agent_name,
                    "status": outcome.status,
                    "usage": outcome.usage,
                    "duration_ms": outcome.duration_ms,
                }),
            },
            usage,
            cost,
        }
    }

    fn continue_child(
        &self,
        id: &str,
        parent_id: &str,
    ) -> Result<(Arc<tokio::sync::Mutex<Session>>, String), String> {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        match children.get(id) {
            Some(c) if c.parent == parent_id => {
                let agent = c
                    .session
                    .try_lock()
                    .map(|s| s.agent().name.clone())
                    .unwrap_or_default();
                Ok((c.session.clone(), agent))
            }
            Some(_) => Err(format!("task {id} belongs to another session")),
            None => Err(format!(
                "there is no task with id {id} in this session; leave task_id empty to start a new task"
            )),
        }
    }

    async fn new_child(
        &self,
        input: &TaskInput,
        parent: &Parent,
    ) -> Result<(Arc<tokio::sync::Mutex<Session>>, String), String> {
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
        let mut settings = self.settings.clone();
        // A child without a model of its own (or `inherit`) uses its parent's.
        if matches!(agent.model, None | Some(deputy_agent::ModelRef::Inherit)) {
            settings.model = Some(parent.model_label.clone());
        } else {
            settings.model = None;
        }
        let (client, label, warnings) = self
            .factory
            .client(&agent, &settings)
            .await
            .map_err(|e| e.to_string())?;
        let mut opts = self
            .factory
            .options(&agent, &settings, label)
            .map_err(|e| e.to_string())?;
        opts.parent_session_id = Some(parent.session_id.clone());
        opts.ceiling = Some(parent.permissions.clone());
        opts.approver = parent.approver.clone();
        let name = agent.name.clone();
        let mut session = Session::new(agent, client, opts).map_err(|e| e.to_string())?;
        let depth = parent.depth + 1;
        if let Some(me) = self.self_arc() {
            session.enable_tasks(me, depth);
        }
        for w in warnings {
            lock(&parent.out).emit(EventKind::Warning {
                message: format!("subagent {name}: {w}"),
            });
        }
        let id = session.id().to_string();
        let own = session.limits();
        let session = Arc::new(tokio::sync::Mutex::new(session));
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Child {
                    session: session.clone(),
                    parent: parent.session_id.clone(),
                    own,
                    usage: Usage::default(),
                    cost: None,
                },
            );
        Ok((session, name))
    }

    /// The limits of a child: its own, bounded by what the parent has left.
    fn child_limits(&self, own: Limits, parent: &Parent) -> Limits {
        let timeout = parent.deadline.map(|d| {
            d.saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(1))
        });
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
            max_cost_usd: match (own.max_cost_usd, parent.cost_left) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn self_arc(&self) -> Option<Arc<TaskRunner>> {
        self.me.upgrade()
    }
}
