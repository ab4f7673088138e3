//! The deputy session: the loop that drives the model and the tools, the event stream every
//! front-end consumes, limits, the journal and resume, approvals, and the `task` tool.
//!
//! For: joining an agent spec, a model client and the tools into one run ([`Session`]), and
//! reporting every step as an [`Event`]. Not for: rendering (front-ends do that from events),
//! terminal or protocol I/O, or choosing models (deputy-llm) and tools (deputy-tools).
//!
//! Embedding: [`Session::builder`] → [`SessionBuilder::build`] → [`Session::start`] gives a
//! [`Running`] session: its events as a `Stream`, a cancel handle, and the outcome at the end.
//! See `examples/embed.rs` in the repository for a complete program.

pub mod approve;
pub mod availability;
mod builder;
pub mod compact;
pub mod config;
mod confined;
mod context;
mod conventions;
pub mod conversation;
mod dispatch;
mod emit;
mod engine;
mod error;
pub mod event;
pub mod factory;
pub mod hooks;
pub mod instructions;
pub mod journal;
pub mod mcp;
mod options;
pub mod prompt;
pub mod rebuild;
pub mod redact;
pub mod review;
pub mod router;
mod rules;
mod schema;
mod session;
pub mod skills;
pub mod slash;
pub mod task;
pub mod todo;
mod toolbox;
mod transcript;
pub mod trust;
mod turn;
pub mod worktree;

pub use approve::{Approval, ApprovalRequest, Approver, AutoApprove, Headless};
pub use builder::{Running, SessionBuilder};
pub use compact::CompactReport;
pub use config::{Config, ConfigError, config_dir, config_paths};
pub use conversation::{Conversation, ConversationError};
pub use emit::{EventMirror, EventSink};
pub use engine::summary_grace;
pub use error::SessionError;
pub use event::{CompactTrigger, DecidedBy, Event, EventKind, Metrics, SCHEMA_VERSION, Status};
pub use factory::{Factory, RunSettings, SetupError, flag_rule, no_model_help, parse_rules};
pub use options::{Compaction, Limits, Outcome, Pricing, SessionOptions};
pub use rebuild::{INTERRUPTED_RESULT, Rebuilt, rebuild};
pub use router::{Budget, CallCtx, Handler, ToolResult};
pub use session::Session;
pub use task::{ChildMaker, ChildOf, TaskConfig, TaskRunner};
pub use toolbox::{Toolbox, agent_rules};
pub use trust::{TrustState, TrustStore};
