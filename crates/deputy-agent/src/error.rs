//! Errors and diagnostics of the agent loader.
//!
//! Every problem carries the file it came from and, where it has one, the line and column, so a
//! front-end can print `path:line:col: message` lines that editors and CI logs turn into links.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The agent cannot be used.
    Error,
    /// The agent loads, but something in it was guessed at or ignored.
    Warning,
    /// Reported only by `validate --strict` (unknown keys, tools deputy does not provide).
    Note,
}

/// One problem in one agent file, with its position when known (1-based; 0 = unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(
        path: &Path,
        line: usize,
        column: usize,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            column,
            severity,
            message: message.into(),
        }
    }
}

/// `path:line:col: message`, the format compilers use, so terminals and CI make it a link.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        let label = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
            Severity::Note => "note: ",
        };
        write!(f, ": {label}{}", self.message)
    }
}

/// Why an agent could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The file could not be read.
    #[error("{}: cannot read agent file: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`crate::MAX_AGENT_FILE_BYTES`]; it was not read.
    #[error(
        "{}: agent file is {size} bytes, over the {limit}-byte limit; an agent file holds a prompt, not data",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error(
        "{}:{line}:{column}: agent file is not valid UTF-8 (first bad byte here); save it as UTF-8",
        path.display()
    )]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// One or more problems with the content: YAML syntax, a field of the wrong type, a missing
    /// prompt file. Every problem is listed.
    #[error("{}", join_lines(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Diagnostic>,
    },
    /// No agent of that name was discovered.
    #[error("{}", not_found_message(name, suggestion.as_deref(), known))]
    NotFound {
        name: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
}

impl AgentError {
    /// The problems as diagnostics, one per line of `validate` output.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            AgentError::Io { path, .. } | AgentError::TooLarge { path, .. } => {
                vec![Diagnostic::new(
                    path,
                    0,
                    0,
                    Severity::Error,
                    self.message_only(),
                )]
            }
            AgentError::NotUtf8 { path, line, column } => vec![Diagnostic::new(
                path,
                *line,
                *column,
                Severity::Error,
                self.message_only(),
            )],
            AgentError::Invalid { problems, .. } => problems.clone(),
            AgentError::NotFound { .. } => vec![Diagnostic::new(
                Path::new("<agents>"),
                0,
                0,
                Severity::Error,
                self.to_string(),
            )],
        }
    }

    /// The message without the `path:line:col:` prefix.
    fn message_only(&self) -> String {
        match self {
            AgentError::Io { source, .. } => format!("cannot read agent file: {source}"),
            AgentError::TooLarge { size, limit, .. } => format!(
                "agent file is {size} bytes, over the {limit}-byte limit; an agent file holds a prompt, not data"
            ),
            AgentError::NotUtf8 { .. } => {
                "agent file is not valid UTF-8 (first bad byte here); save it as UTF-8".to_string()
            }
            other => other.to_string(),
        }
    }
}

fn join_lines(problems: &[Diagnostic]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn not_found_message(name: &str, suggestion: Option<&str>, known: &[String]) -> String {
    let mut msg = format!("no agent named `{name}`");
    if let Some(s) = suggestion {
        msg.push_str(&format!("; did you mean `{s}`?"));
    }
    if known.is_empty() {
        msg.push_str(
            "\nno agents were found; put agent files in ./agents, ./.deputy/agents, ./.opencode/agent, \
             ./.claude/agents or ~/.config/deputy/agents, or pass --agents-dir DIR",
        );
    } else {
        msg.push_str(&format!("\nknown agents: {}", known.join(", ")));
    }
    msg
}
