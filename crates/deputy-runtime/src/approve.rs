//! Approvals: what happens when a permission rule says `ask`.
//!
//! The session asks an [`Approver`]: the terminal prompt in `deputy chat`, the MCP client
//! (elicitation) under `deputy mcp`, or, in headless runs, [`Headless`], which denies and says
//! why, so a CI job never hangs waiting for an answer nobody will give.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::event::DecidedBy;

/// A tool call waiting for a yes or no.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    pub session_id: String,
    /// The call waiting for the answer.
    pub call_id: String,
    pub agent: String,
    pub tool: String,
    pub input: Value,
    /// The command or path the rules were matched against.
    pub subject: Option<String>,
    /// Which rule asked.
    pub reason: String,
}

impl ApprovalRequest {
    /// The "always" pattern offered for a call: the program for bash (`npm *`), the path for
    /// file tools, the URL for webfetch; `*` when the call has no subject.
    pub fn always_pattern(&self) -> String {
        match (self.tool.as_str(), &self.subject) {
            ("bash", Some(cmd)) => {
                let first = cmd.split_whitespace().next().unwrap_or("*");
                format!("{first} *")
            }
            (_, Some(s)) => s.clone(),
            _ => "*".to_string(),
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Run this call.
    Once,
    /// Run it, and allow calls of this tool matching `pattern` for the rest of the session.
    Always { pattern: String },
    /// Do not run it; `reason` is passed to the model.
    Deny { reason: Option<String> },
}

/// Something that can answer approval requests.
pub trait Approver: Send + Sync {
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> BoxFuture<'a, Approval>;

    /// Who answers, for `tool.decided` events.
    fn decided_by(&self) -> DecidedBy {
        DecidedBy::User
    }
}

/// Headless runs: nobody to ask, so `ask` means no, with a reason the model and the log show.
#[derive(Debug, Default, Clone, Copy)]
pub struct Headless;

impl Approver for Headless {
    fn decided_by(&self) -> DecidedBy {
        DecidedBy::Headless
    }

    fn approve<'a>(&'a self, r: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async move {
            Approval::Deny {
                reason: Some(format!(
                    "this call needs approval ({}) and the session runs headless, with nobody to approve it; allow it in the agent's or the config's permission rules, or run with --auto-approve",
                    r.reason
                )),
            }
        })
    }
}

/// `--auto-approve`: every `ask` is a yes (rules that deny still deny).
#[derive(Debug, Default, Clone, Copy)]
pub struct AutoApprove;

impl Approver for AutoApprove {
    fn decided_by(&self) -> DecidedBy {
        DecidedBy::AutoApprove
    }

    fn approve<'a>(&'a self, _: &'a ApprovalRequest) -> BoxFuture<'a, Approval> {
        Box::pin(async { Approval::Once })
    }
}
