//! What an agent may do to a workspace, and how it is confined.
//!
//! - [`Workspace`]: the jail for file tools (cap-std; atomic writes; no escapes).
//! - [`sandbox`]: the bash sandbox (bubblewrap, else Landlock + seccomp, else refuse).
//! - [`tools`]: `bash`, `read`, `write`, `edit`, `glob`, `grep`, `list`, as plain structs with
//!   schemars input schemas.
//! - [`permission`]: allow / ask / deny rules with opencode's semantics.
//!
//! It is not for: talking to models, the session loop, or asking the user (the runtime's
//! `Approver` turns an `ask` into an answer).

pub mod error;
pub mod permission;
pub mod process;
pub mod sandbox;
pub mod tools;
mod workspace;

pub use error::ToolError;
pub use permission::{Action, Decision, Origin, Permissions, Rule};
pub use sandbox::{Backend, ResourceLimits, Sandbox, SandboxMode, SandboxPolicy};
pub use tools::{Tool, ToolContext, ToolOutput, ToolSettings, builtin_tools};
pub use workspace::{Workspace, WsPath, looks_binary};

/// The subject a permission rule is matched against for this call: the command for `bash`,
/// the workspace-relative path for file tools. `Err` when a path is outside the workspace
/// (such a call is denied whatever the rules say).
pub fn permission_subject(
    tool: &dyn Tool,
    input: &serde_json::Value,
    workspace: &Workspace,
) -> Result<Option<String>, ToolError> {
    let subject = tool.subject(input);
    if permission::is_path_tool(tool.name()) {
        let raw = subject.unwrap_or_else(|| ".".to_string());
        let p = workspace.resolve(&raw)?;
        return Ok(Some(p.display()));
    }
    Ok(subject)
}
