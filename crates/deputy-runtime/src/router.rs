//! Every tool a session can call, behind one interface: the built-in tools of deputy-tools, the
//! `task` tool, and any other [`Handler`]. The loop finds a tool here by name, asks it for its
//! permission subject, and runs it; it knows nothing about any one tool.

use std::sync::Arc;

use deputy_llm::{ToolSpec, Usage};
use deputy_tools::{Access, Permissions, SandboxPolicy, Tool, ToolContext, ToolOutput};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::approve::Approver;
use crate::emit::Emitter;
use crate::event::EventKind;

/// What is left of the calling session's run, for a tool that spends (a subagent).
#[derive(Debug, Clone, Default)]
pub struct Budget {
    pub deadline: Option<tokio::time::Instant>,
    pub steps_left: u32,
    pub tokens_left: Option<u64>,
    pub cost_left: Option<f64>,
}

/// Everything one call may use besides its input.
#[derive(Clone)]
pub struct CallCtx {
    pub call_id: String,
    pub session_id: String,
    /// The calling session's workspace (a worktree subagent's is made from it).
    pub workspace: std::path::PathBuf,
    pub cancel: CancellationToken,
    pub budget: Budget,
    /// The calling session's permission rules (a subagent's ceiling).
    pub permissions: Permissions,
    /// The calling session's sandbox policy (a subagent's ceiling).
    pub sandbox: SandboxPolicy,
    /// `provider/model` of the calling session.
    pub model_label: String,
    pub approver: Arc<dyn Approver>,
    /// The session tree's MCP connections (a subagent reuses them).
    pub mcp: Arc<crate::mcp::McpHub>,
    pub(crate) emitter: Emitter,
}

impl CallCtx {
    /// Emit an event of the calling session (e.g. `subagent.started`).
    pub fn emit(&self, kind: EventKind) {
        self.emitter.emit(kind);
    }
}

/// What a call gives back: the result for the model, and what it spent.
#[derive(Debug, Clone)]
pub struct ToolResult {
    pub output: ToolOutput,
    /// Model usage spent by the call (a subagent's turns), added to the session's totals.
    pub usage: Usage,
    pub cost: Option<f64>,
}

impl From<ToolOutput> for ToolResult {
    fn from(output: ToolOutput) -> Self {
        Self {
            output,
            usage: Usage::default(),
            cost: None,
        }
    }
}

type RunFn = Box<dyn FnOnce(CallCtx) -> BoxFuture<'static, ToolResult> + Send>;

/// A call parsed and resolved: what the permission rules look at, and the run, which acts on
/// exactly that (the parsed input is moved into it).
pub struct PreparedCall {
    /// What rules are matched against: the command, the real path, the subagent's name.
    pub subject: Option<String>,
    /// For tools that touch the workspace: what they touch (protected-path rules).
    pub access: Option<Access>,
    run: RunFn,
}

impl PreparedCall {
    pub fn new<F>(
        subject: Option<String>,
        access: Option<Access>,
        run: impl FnOnce(CallCtx) -> F + Send + 'static,
    ) -> Self
    where
        F: std::future::Future<Output = ToolResult> + Send + 'static,
    {
        Self {
            subject,
            access,
            run: Box::new(move |ctx| Box::pin(run(ctx))),
        }
    }

    pub fn run(self, ctx: CallCtx) -> BoxFuture<'static, ToolResult> {
        (self.run)(ctx)
    }
}

/// A tool as the loop sees it.
pub trait Handler: Send + Sync {
    fn name(&self) -> &str;
    /// One line for the tool list of the system prompt.
    fn summary(&self) -> String;
    /// The spec offered to the model under `perms`; `None` when it is not offered now.
    fn spec(&self, perms: &Permissions) -> Option<ToolSpec>;
    /// Whether it is offered under `perms` (its spec is `Some`), without building the spec.
    fn offered(&self, perms: &Permissions) -> bool {
        self.spec(perms).is_some()
    }
    /// Whether calls may run side by side with their neighbours of the same response.
    fn concurrent(&self) -> bool;
    /// Parse the input and resolve what it names. `Err(reason)` is the call's result (an
    /// input that does not parse, a path outside the workspace), whatever the rules say.
    fn prepare(&self, input: Value) -> Result<PreparedCall, String>;
}

/// A built-in tool of deputy-tools, with the context it runs in.
pub(crate) struct Builtin {
    pub tool: Arc<dyn Tool>,
    pub ctx: ToolContext,
}

impl Handler for Builtin {
    fn name(&self) -> &str {
        self.tool.name()
    }

    fn summary(&self) -> String {
        let first = self
            .tool
            .description()
            .split(". ")
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        format!("{first}.")
    }

    fn spec(&self, _perms: &Permissions) -> Option<ToolSpec> {
        Some(ToolSpec {
            name: self.tool.name().to_string(),
            description: self.tool.description().to_string(),
            parameters: self.tool.parameters(),
        })
    }

    fn offered(&self, _perms: &Permissions) -> bool {
        true
    }

    fn concurrent(&self) -> bool {
        self.tool.read_only()
    }

    fn prepare(&self, input: Value) -> Result<PreparedCall, String> {
        let prepared = self
            .tool
            .prepare(input, &self.ctx)
            .map_err(|e| e.to_string())?;
        let access = prepared.access.clone();
        let ctx = self.ctx.clone();
        Ok(PreparedCall::new(
            Some(access.subject()),
            Some(access),
            move |_call| async move { prepared.run(ctx).await.into() },
        ))
    }
}

/// The handlers of one session, in the order they are offered.
#[derive(Clone, Default)]
pub(crate) struct Router {
    handlers: Vec<Arc<dyn Handler>>,
}

impl Router {
    pub(crate) fn new(handlers: Vec<Arc<dyn Handler>>) -> Self {
        Self { handlers }
    }

    /// Add a handler (a later one with the same name replaces the earlier).
    pub(crate) fn add(&mut self, h: Arc<dyn Handler>) {
        self.handlers.retain(|x| x.name() != h.name());
        self.handlers.push(h);
    }

    /// Replace every handler whose name starts with `prefix` (one MCP server's tools).
    pub(crate) fn replace_prefix(&mut self, prefix: &str, handlers: Vec<Arc<dyn Handler>>) {
        self.handlers.retain(|h| !h.name().starts_with(prefix));
        self.handlers.extend(handlers);
    }

    /// The handler for a call, if that tool is offered under `perms`.
    pub(crate) fn offered(&self, name: &str, perms: &Permissions) -> Option<Arc<dyn Handler>> {
        self.handlers
            .iter()
            .find(|h| h.name() == name && h.spec(perms).is_some())
            .cloned()
    }

    pub(crate) fn specs(&self, perms: &Permissions) -> Vec<ToolSpec> {
        self.handlers.iter().filter_map(|h| h.spec(perms)).collect()
    }

    /// The offered tools, each with its summary line.
    pub(crate) fn summaries(&self, perms: &Permissions) -> Vec<(String, String)> {
        self.handlers
            .iter()
            .filter(|h| h.offered(perms))
            .map(|h| (h.name().to_string(), h.summary()))
            .collect()
    }
}
