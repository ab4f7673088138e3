//! `deputy mcp`: deputy's agents served as MCP tools over stdio, so any MCP client (Claude
//! Code, Codex, opencode, Cursor, …) can hand a task to a deputy subagent.
//!
//! Every subagent (mode `subagent` or `all`, not hidden or disabled) is a tool named after the
//! agent, with input `{prompt, workspace?, model?, max_steps?, timeout_s?, isolation?}`; `deputy_reply
//! {session_id, prompt}` continues a session. The result's text is the final answer;
//! `structuredContent` is `{session_id, status, result, usage, cost_usd}`; `isError` is set when
//! the session failed. With a progress token, every session event becomes a progress
//! notification. `ask` permissions go to the client as elicitation when it supports it, and are
//! denied otherwise. Calls run concurrently. stdout is the protocol: logs go to stderr.
//!
//! A front-end over deputy-runtime: it builds sessions with the same [`Factory`] as the CLI.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_agent::AgentSpec;
use deputy_runtime::{
    Approval, ApprovalRequest, Approver, DecidedBy, Event, EventKind, Factory, Headless, Outcome,
    RunSettings, Session, Status, TaskConfig,
};
use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock as Content,
    Implementation, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// What the server needs to make sessions.
pub struct McpOptions {
    /// Every agent known (subagents become tools; all may be delegated to).
    pub agents: Vec<AgentSpec>,
    pub factory: Factory,
    /// Defaults from the command line (limits, sandbox, rules).
    pub settings: RunSettings,
    pub task: TaskConfig,
    /// Directories a call's `workspace` may be in (`-C` and every `--root`), besides the roots
    /// the client declares.
    pub roots: Vec<PathBuf>,
    /// Sessions running at once; further calls wait for a place.
    pub max_sessions: usize,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MCP transport: {0}")]
    Transport(String),
}

/// The tool that continues a session.
pub const REPLY_TOOL: &str = "deputy_reply";

/// An MCP tool name for an agent: MCP allows `[a-zA-Z0-9_-]`, up to 64 characters.
pub fn tool_name(agent: &str) -> String {
    deputy_runtime::mcp::function_name(agent)
}

#[derive(Clone)]
struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    opts: McpOptions,
    /// One permit per running session.
    running: Arc<tokio::sync::Semaphore>,
    /// tool name → agent
    tools: Vec<(String, AgentSpec)>,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

/// Serve on stdin/stdout until the client disconnects.
pub async fn serve_stdio(opts: McpOptions) -> Result<(), McpError> {
    let tools: Vec<(String, AgentSpec)> = opts
        .agents
        .iter()
        .filter(|a| a.mode.usable_as_subagent() && !a.hidden && !a.disable)
        .map(|a| (tool_name(&a.name), a.clone()))
        .collect();
    tracing::info!(tools = tools.len(), "deputy mcp serving on stdio");
    let server = Server {
        inner: Arc::new(Inner {
            running: Arc::new(tokio::sync::Semaphore::new(opts.max_sessions.max(1))),
            opts,
            tools,
            sessions: Mutex::new(HashMap::new()),
        }),
    };
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Transport(e.to_string()))?;
    service
        .waiting()
        .await
        .map_err(|e| McpError::Transport(e.to_string()))?;
    Ok(())
}

/// Input of an agent tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AgentInput {
    /// The task: everything the agent needs to know.
    prompt: String,
    /// Directory to work in (default: the server's workspace).
    #[serde(default)]
    workspace: Option<String>,
    /// Model as provider/model (default: the agent's, else the configured default).
    #[serde(default)]
    model: Option<String>,
    /// Most model turns.
    #[serde(default)]
    max_steps: Option<u32>,
    /// Wall-clock limit in seconds.
    #[serde(default)]
    timeout_s: Option<f64>,
    /// `worktree`: work in a git worktree and branch of its own of the workspace's
    /// repository, so calls running at once never edit each other's files; the change comes
    /// back as a commit on that branch (`worktree` in the structured result).
    #[serde(default)]
    isolation: Option<deputy_runtime::task::IsolationIn>,
}

/// Input of `deputy_reply`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ReplyInput {
    /// The session_id returned by an earlier call.
    session_id: String,
    /// More instructions for that session.
    prompt: String,
}

fn schema_object<T: schemars::JsonSchema>() -> Arc<Map<String, Value>> {
    let mut v = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| json!({"type": "object"}));
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(Map::new()),
    }
}

impl Server {
    fn list(&self) -> Vec<Tool> {
        let mut tools: Vec<Tool> = self
            .inner
            .tools
            .iter()
            .map(|(name, agent)| {
                let desc = agent
                    .description
                    .clone()
                    .unwrap_or_else(|| format!("The deputy agent `{}`.", agent.name));
                Tool::new(
                    name.clone(),
                    format!("{desc}\n\nRuns the deputy agent `{}` on the task in `prompt`, in a sandboxed workspace, and returns its final answer (the session_id in the structured result continues it with {REPLY_TOOL}).", agent.name),
                    schema_object::<AgentInput>(),
                )
            })
            .collect();
        tools.push(Tool::new(
            REPLY_TOOL,
            "Continue a deputy session started by an earlier call: send more instructions to the same agent, which keeps its conversation so far.",
            schema_object::<ReplyInput>(),
        ));
        tools
    }

    async fn call(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let args = Value::Object(req.arguments.clone().unwrap_or_default());
        let progress_token = ctx.meta.get_progress_token();
        let elicit = ctx
            .peer
            .peer_info()
            .is_some_and(|info| info.capabilities.elicitation.is_some());
        let approver: Arc<dyn Approver> = if elicit {
            Arc::new(ElicitApprover {
                peer: ctx.peer.clone(),
            })
        } else {
            Arc::new(Headless)
        };
        let name = req.name.to_string();
        let session = if name == REPLY_TOOL {
            let input: ReplyInput = match serde_json::from_value(args) {
                Ok(i) => i,
                Err(e) => {
                    return error_result(format!(
                        "invalid input for {REPLY_TOOL}: {e}; expected {{session_id, prompt}}"
                    ));
                }
            };
            let found = self
                .inner
                .sessions
                .lock()
                .ok()
                .and_then(|m| m.get(&input.session_id).cloned());
            match found {
                Some(s) => (s, input.prompt),
                None => {
                    return error_result(format!(
                        "no session {} in this server; start one with an agent tool",
                        input.session_id
                    ));
                }
            }
        } else {
            let Some((_, agent)) = self.inner.tools.iter().find(|(n, _)| *n == name) else {
                return error_result(format!("no tool named `{name}`"));
            };
            let input: AgentInput = match serde_json::from_value(args) {
                Ok(i) => i,
                Err(e) => {
                    return error_result(format!(
                        "invalid input for {name}: {e}; expected {{prompt, workspace?, model?, max_steps?, timeout_s?, isolation?}}"
                    ));
                }
            };
            let workspace = match self.workspace(input.workspace.as_deref(), &ctx).await {
                Ok(w) => w,
                Err(e) => return error_result(e),
            };
            match self
                .new_session(agent.clone(), &input, workspace, approver)
                .await
            {
                Ok(s) => {
                    let id = s.id().to_string();
                    let s = Arc::new(tokio::sync::Mutex::new(s));
                    if let Ok(mut m) = self.inner.sessions.lock() {
                        m.insert(id, s.clone());
                    }
                    (s, input.prompt)
                }
                Err(e) => return error_result(e),
            }
        };
        let (session, prompt) = session;
        // A cap on sessions running at once (each may run commands): the rest wait their turn.
        let _permit = tokio::select! {
            p = self.inner.running.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return error_result("the server is shutting down".to_string()),
            },
            _ = ctx.ct.cancelled() => return error_result("cancelled while waiting for a free session slot".to_string()),
        };
        let mut session = match session.try_lock() {
            Ok(s) => s,
            Err(_) => {
                return error_result(
                    "that session is already running a call; wait for it to finish".to_string(),
                );
            }
        };
        if let Some(wt) = session.worktree()
            && !wt.record().path.join(".git").is_file()
        {
            return error_result(format!(
                "session {} worked in a worktree that is gone (it changed nothing, or was pruned); start a new call",
                session.id()
            ));
        }
        // Progress: one notification per event, sent in order from a task of its own.
        let forward = progress_token.map(|token| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
            let peer = ctx.peer.clone();
            let task = tokio::spawn(async move {
                let mut n = 0.0;
                while let Some(e) = rx.recv().await {
                    n += 1.0;
                    let msg = progress_message(&e);
                    let _ = peer
                        .notify_progress(
                            ProgressNotificationParam::new(token.clone(), n).with_message(msg),
                        )
                        .await;
                }
            });
            (tx, task)
        });
        match &forward {
            Some((tx, _)) => {
                let tx = tx.clone();
                session.set_sink(Arc::new(move |e: &Event| {
                    if !matches!(e.kind, EventKind::MessageDelta { .. }) {
                        let _ = tx.send(e.clone());
                    }
                }));
            }
            None => session.clear_sink(),
        }
        session.set_cancel_token(ctx.ct.child_token());
        let outcome = session.run(Some(prompt)).await;
        session.clear_sink();
        if let Some((tx, task)) = forward {
            drop(tx);
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // A worktree that changed nothing goes now (its change, if any, is on its branch).
        if let (Some(wt), Some(deputy_runtime::worktree::Settled::Unchanged)) =
            (session.worktree().cloned(), &outcome.worktree)
        {
            let _ = tokio::task::spawn_blocking(move || wt.settle("")).await;
        }
        result_of(&outcome)
    }

    /// The workspace of a call: the server's, or the one the call names, which must be a
    /// directory inside the server's roots or the client's declared roots.
    // MCP roots are deprecated by SEP-2577, but clients still declare them; they are honoured
    // while they exist.
    #[allow(deprecated)]
    async fn workspace(
        &self,
        wanted: Option<&str>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<PathBuf, String> {
        let base = self.inner.opts.factory.workspace.clone();
        let Some(ws) = wanted.filter(|w| !w.trim().is_empty()) else {
            return Ok(base);
        };
        let p = PathBuf::from(ws);
        let p = if p.is_absolute() { p } else { base.join(p) };
        let p = p
            .canonicalize()
            .map_err(|e| format!("workspace {}: {e}", p.display()))?;
        if !p.is_dir() {
            return Err(format!("workspace {} is not a directory", p.display()));
        }
        let mut roots: Vec<PathBuf> = self.inner.opts.roots.clone();
        roots.push(base);
        let declares_roots = ctx
            .peer
            .peer_info()
            .is_some_and(|i| i.capabilities.roots.is_some());
        if declares_roots
            && let Ok(Ok(list)) =
                tokio::time::timeout(Duration::from_secs(5), ctx.peer.list_roots()).await
        {
            roots.extend(
                list.roots
                    .iter()
                    .filter_map(|r| r.uri.strip_prefix("file://"))
                    .map(PathBuf::from),
            );
        }
        let inside = roots
            .iter()
            .any(|r| r.canonicalize().is_ok_and(|r| p.starts_with(&r)));
        if inside {
            Ok(p)
        } else {
            Err(format!(
                "workspace {} is outside this server's roots ({}); start deputy mcp with --root DIR to allow another directory",
                p.display(),
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    async fn new_session(
        &self,
        agent: AgentSpec,
        input: &AgentInput,
        workspace: PathBuf,
        approver: Arc<dyn Approver>,
    ) -> Result<Session, String> {
        let mut factory = self.inner.opts.factory.clone();
        factory.workspace = workspace;
        factory.approver = approver;
        let mut settings = self.inner.opts.settings.clone();
        if input.model.is_some() {
            settings.model = input.model.clone();
        }
        if let Some(n) = input.max_steps {
            settings.max_steps = Some(n.max(1));
        }
        if let Some(t) = input.timeout_s {
            settings.timeout = Some(deputy_agent::duration_from_secs(t).ok_or_else(|| {
                format!(
                    "timeout_s = {t}: must be a number of seconds above 0 and at most {} (30 days)",
                    deputy_agent::MAX_DURATION_SECS
                )
            })?);
        }
        let (client, label, warnings) = factory
            .client(&agent, &settings)
            .await
            .map_err(|e| e.to_string())?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let mut opts = factory
            .options(&agent, &settings, label)
            .map_err(|e| e.to_string())?;
        let mut session = if input.isolation == Some(deputy_runtime::task::IsolationIn::Worktree) {
            let id = deputy_runtime::journal::new_session_id();
            let (ws, name, sid) = (factory.workspace.clone(), agent.name.clone(), id.clone());
            let wt = tokio::task::spawn_blocking(move || {
                deputy_runtime::worktree::Worktree::create(&deputy_runtime::worktree::Plan {
                    workspace: &ws,
                    agent: &name,
                    session_id: &sid,
                    parent_session_id: None,
                    name: None,
                    confined: false,
                })
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot make a worktree: {e}"))?;
            let wt = Arc::new(wt);
            wt.apply(&mut opts);
            Session::named(&id, agent, client, opts).map_err(|e| {
                let _ = wt.settle("");
                e.to_string()
            })?
        } else {
            Session::new(agent, client, opts).map_err(|e| e.to_string())?
        };
        let runner = factory.task_runner(
            self.inner.opts.agents.clone(),
            &settings,
            self.inner.opts.task,
        );
        runner.attach(&mut session, 0);
        Ok(session)
    }
}

fn error_result(msg: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![Content::text(msg.into())])
}

fn result_of(o: &Outcome) -> CallToolResult {
    let structured = json!({
        "session_id": o.session_id,
        "status": o.status,
        "result": o.result,
        "usage": o.usage,
        "cost_usd": o.cost_usd,
    });
    let failed = matches!(o.status, Status::Error | Status::Cancelled | Status::Denied);
    let mut text = o.result.clone();
    if o.status != Status::Completed {
        text.push_str(&format!(
            "\n\n(deputy session {} ended: {})",
            o.session_id,
            o.status.as_str()
        ));
        if let Some(e) = o.errors.last() {
            text.push_str(&format!(": {e}"));
        }
    }
    let mut structured = structured;
    if let Some(w) = &o.worktree {
        structured["worktree"] = json!(w);
        text.push_str(&format!("\n\n{}", w.describe()));
    }
    let mut r = if failed {
        CallToolResult::error(vec![Content::text(text)])
    } else {
        CallToolResult::success(vec![Content::text(text)])
    };
    r.structured_content = Some(structured);
    r
}

/// A one-line description of an event for a progress notification.
fn progress_message(e: &Event) -> String {
    let who = &e.session_id;
    match &e.kind {
        EventKind::SessionStarted { agent, model, .. } => {
            format!("{who}: {agent} started on {model}")
        }
        EventKind::TurnStarted { turn } => format!("{who}: turn {turn}"),
        EventKind::ToolRequested { tool, input, .. } => {
            let s = input
                .get("command")
                .or_else(|| input.get("path"))
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("{who}: {tool} {s}")
        }
        EventKind::ToolCompleted { tool, is_error, .. } => format!(
            "{who}: {tool} {}",
            if *is_error { "failed" } else { "done" }
        ),
        EventKind::SubagentStarted {
            agent, description, ..
        } => format!("{who}: subagent {agent}: {description}"),
        EventKind::Warning { message } => format!("{who}: warning: {message}"),
        EventKind::SessionFinished { status, .. } => {
            format!("{who}: finished: {}", status.as_str())
        }
        other => format!("{who}: {}", other.type_name()),
    }
}

/// The answer an MCP client gives to an approval request.
#[derive(Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
struct ApprovalAnswer {
    /// Allow this tool call?
    approve: bool,
    /// Optional reason, passed to the agent when you refuse.
    #[serde(default)]
    reason: Option<String>,
}

rmcp::elicit_safe!(ApprovalAnswer);

/// `ask` permissions answered by the MCP client through elicitation.
struct ElicitApprover {
    peer: Peer<RoleServer>,
}

impl Approver for ElicitApprover {
    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            let what = r.subject.clone().unwrap_or_else(|| r.input.to_string());
            let msg = format!(
                "deputy agent `{}` wants to run {}: {what}\n({})",
                r.agent, r.tool, r.reason
            );
            match self.peer.elicit::<ApprovalAnswer>(msg).await {
                Ok(Some(a)) if a.approve => Approval::Once,
                Ok(Some(a)) => Approval::Deny {
                    reason: a.reason.or(Some("the MCP client refused this call".into())),
                },
                Ok(None) => Approval::Deny {
                    reason: Some("the MCP client gave no answer".into()),
                },
                Err(e) => Approval::Deny {
                    reason: Some(format!("the MCP client declined ({e})")),
                },
            }
        })
    }

    fn decided_by(&self) -> DecidedBy {
        DecidedBy::User
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("deputy", env!("CARGO_PKG_VERSION")))
            .with_instructions("Each tool runs a deputy agent on a task in a sandboxed workspace and returns its final answer. Use deputy_reply with the returned session_id to continue.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(self.call(request, context).await.into())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.list().into_iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_are_mcp_safe() {
        assert_eq!(tool_name("backend-architect"), "backend-architect");
        assert_eq!(tool_name("sub/reviewer"), "sub_reviewer");
        assert_eq!(tool_name(&"x".repeat(80)).len(), 64);
    }
}
