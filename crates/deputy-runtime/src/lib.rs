//! The deputy session: the loop that drives the model and the tools, the event stream every
//! front-end consumes, limits, the journal and resume, approvals, and the `task` tool.
//!
//! For: joining an agent spec, a model client and the tools into one run. Not for: rendering
//! (front-ends do that from events) or any terminal or protocol I/O.

pub mod config;

pub use config::{Config, ConfigError, config_paths};
