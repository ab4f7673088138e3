//! Why a session could not start.

/// A session that could not be set up (nothing was run).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The agent may use bash and no sandbox works here.
    #[error("{0}")]
    Sandbox(String),
    #[error("cannot open the workspace: {0}")]
    Workspace(String),
    /// A directory granted besides the workspace (`--add-dir`, `[sandbox] add_dirs`) that
    /// cannot be.
    #[error("{0} (from --add-dir or [sandbox] add_dirs)")]
    Grant(String),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("{0}")]
    Config(String),
    /// Resuming needs the state directory the journal is in.
    #[error("resuming needs a state directory (DEPUTY_HOME, or HOME)")]
    NoStateDir,
}
