//! The exit codes of the CLI (see DESIGN.md). Scripts and CI jobs branch on these.

use std::process::ExitCode;

/// Why the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The session completed (or the command succeeded).
    Ok = 0,
    /// Runtime failure: model unreachable after retries, provider error, internal error.
    Failure = 1,
    /// Usage or configuration error; nothing was run.
    Usage = 2,
    /// A limit (steps, wall time, tokens, budget) stopped the session.
    Limit = 3,
    /// `deputy review` found issues at or above `--fail-on`.
    Findings = 4,
    /// Cancelled by SIGINT / SIGTERM.
    Cancelled = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error that ends the command with a specific exit code.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit: Exit::Usage,
            error: error.into(),
        }
    }

    pub fn failure(error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit: Exit::Failure,
            error: error.into(),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        Self::failure(error)
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        Self::failure(error)
    }
}

pub type CliResult<T = Exit> = Result<T, CliError>;
