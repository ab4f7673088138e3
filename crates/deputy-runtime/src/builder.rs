//! The library API: build a [`Session`] in a few lines, start it, and watch its events as a
//! `Stream` while it runs, with a handle to cancel it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use deputy_agent::AgentSpec;
//! use deputy_llm::{OpenAiClient, ProviderSettings, Target};
//! use deputy_runtime::Session;
//! use futures::StreamExt;
//!
//! let client = OpenAiClient::single(Target {
//!     provider: ProviderSettings::new("local", "http://127.0.0.1:11434/v1"),
//!     model: "qwen3:8b".into(),
//! })?;
//! let agent = AgentSpec::new("helper", "You are a careful engineer.");
//! let session = Session::builder(agent, Arc::new(client), "/path/to/workspace")
//!     .max_steps(20)
//!     .build()?;
//! let mut running = session.start("list the files and summarize the project");
//! while let Some(event) = running.events.next().await {
//!     println!("{}", event.kind.type_name());
//! }
//! let (outcome, _session) = running.finish().await?;
//! println!("{:?}: {}", outcome.status, outcome.result);
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deputy_agent::AgentSpec;
use deputy_llm::ModelClient;
use deputy_tools::{Rule, SandboxMode, SandboxPolicy};
use futures::channel::mpsc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::approve::Approver;
use crate::error::SessionError;
use crate::event::Event;
use crate::options::{Limits, Outcome, Pricing, SessionOptions};
use crate::router::Handler;
use crate::session::Session;
use crate::task::TaskRunner;

/// Builds a [`Session`].
pub struct SessionBuilder {
    agent: AgentSpec,
    client: Arc<dyn ModelClient>,
    opts: SessionOptions,
    tasks: Option<Arc<TaskRunner>>,
    handlers: Vec<Arc<dyn Handler>>,
}

impl Session {
    /// Start building a session of `agent`, talking to `client`, working in `workspace`.
    /// Defaults: 50 steps, the workspace-write sandbox, headless approvals (an `ask` is a no),
    /// no journal.
    pub fn builder(
        agent: AgentSpec,
        client: Arc<dyn ModelClient>,
        workspace: impl Into<PathBuf>,
    ) -> SessionBuilder {
        SessionBuilder {
            agent,
            client,
            opts: SessionOptions::new(workspace),
            tasks: None,
            handlers: Vec::new(),
        }
    }

    /// Run `prompt` in the background. Events arrive on [`Running::events`] as they happen.
    pub fn start(mut self, prompt: impl Into<String>) -> Running {
        let (tx, rx) = mpsc::unbounded();
        self.set_sink(Arc::new(move |e: &Event| {
            let _ = tx.unbounded_send(e.clone());
        }));
        let cancel = self.cancel_token();
        let prompt = prompt.into();
        let task = tokio::spawn(async move {
            let outcome = self.run(Some(prompt)).await;
            // Close the event stream: the run has handed the sink every event; dropping it
            // drops the stream's sender.
            self.clear_sink();
            (outcome, self)
        });
        Running {
            events: rx,
            cancel,
            task,
        }
    }
}

impl SessionBuilder {
    pub fn limits(mut self, limits: Limits) -> Self {
        self.opts.limits = limits;
        self
    }

    pub fn max_steps(mut self, n: u32) -> Self {
        self.opts.limits.max_steps = n;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.opts.limits.timeout = Some(t);
        self
    }

    pub fn max_tokens(mut self, n: u64) -> Self {
        self.opts.limits.max_tokens = Some(n);
        self
    }

    pub fn sandbox(mut self, policy: SandboxPolicy) -> Self {
        self.opts.sandbox = policy;
        self
    }

    pub fn sandbox_mode(mut self, mode: SandboxMode) -> Self {
        self.opts.sandbox.mode = mode;
        self
    }

    /// A permission rule applied after the agent's (last match wins).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.opts.flag_rules.push(rule);
        self
    }

    /// Who answers `ask` permissions (default: nobody, so they are denied).
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.opts.approver = approver;
        self
    }

    /// Journal the session under `dir` (so it can be listed and resumed).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.opts.state_dir = Some(dir.into());
        self
    }

    /// The final answer must be JSON valid against this schema.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.opts.output_schema = Some(schema);
        self
    }

    pub fn temperature(mut self, t: f64) -> Self {
        self.opts.temperature = Some(t);
        self
    }

    pub fn pricing(mut self, pricing: Pricing) -> Self {
        self.opts.pricing = Some(pricing);
        self
    }

    /// The `provider/model` label shown in events.
    pub fn model_label(mut self, label: impl Into<String>) -> Self {
        self.opts.model_label = label.into();
        self
    }

    /// Let the agent delegate to subagents with the `task` tool.
    pub fn tasks(mut self, runner: Arc<TaskRunner>) -> Self {
        self.tasks = Some(runner);
        self
    }

    /// Offer a tool of your own (it goes through the same permission checks as the others).
    pub fn handler(mut self, handler: Arc<dyn Handler>) -> Self {
        self.handlers.push(handler);
        self
    }

    /// Everything at once, for callers that already hold options.
    pub fn options(mut self, opts: SessionOptions) -> Self {
        self.opts = opts;
        self
    }

    pub fn build(self) -> Result<Session, SessionError> {
        let mut s = Session::new(self.agent, self.client, self.opts)?;
        for h in self.handlers {
            s.add_handler(h);
        }
        if let Some(r) = self.tasks {
            r.attach(&mut s, 0);
        }
        Ok(s)
    }
}

/// A session running in the background.
pub struct Running {
    /// Every event, as it happens; ends when the run does.
    pub events: mpsc::UnboundedReceiver<Event>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<(Outcome, Session)>,
}

impl Running {
    /// Stop the session (it ends with status `cancelled`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that cancels the session when cancelled (to hand to other tasks).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Wait for the end: the outcome, and the session (to continue it with `run`).
    pub async fn finish(self) -> Result<(Outcome, Session), tokio::task::JoinError> {
        self.task.await
    }
}
