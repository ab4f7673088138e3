//! What an agent may do to a workspace, and how it is confined.
//!
//! - [`Workspace`]: the jail for file tools (cap-std; atomic writes; no escapes).
//! - [`sandbox`]: the bash sandbox (bubblewrap, else Landlock + seccomp, else refuse).
//! - [`tools`]: `bash`, `read`, `write`, `edit`, `glob`, `grep`, `list`, as plain structs with
//!   schemars input schemas.
//! - [`permission`]: allow / ask / deny rules with opencode's semantics.
//! - [`protect`]: the paths whose content acts later, outside any sandbox (`.git`, agent tools'
//!   config, `.env`), kept from agents unless a rule names them.
//!
//! It is not for: talking to models, the session loop, or asking the user (the runtime's
//! `Approver` turns an `ask` into an answer).

pub mod error;
pub mod netguard;
pub mod permission;
pub mod process;
pub mod protect;
pub mod sandbox;
pub mod tools;
pub mod walk;
mod workspace;

pub use error::ToolError;
pub use permission::{Action, Decision, Origin, Permissions, Rule};
pub use sandbox::{Backend, ResourceLimits, Sandbox, SandboxMode, SandboxPolicy};
pub use tools::{Access, Prepared, Tool, ToolContext, ToolOutput, ToolSettings, builtin_tools};
pub use workspace::{Editor, ProtectedFilter, Workspace, WsPath, looks_binary};
