//! The MCP client: tools from the servers an agent or config declares, named
//! `mcp__SERVER__TOOL` as Claude Code names them, offered through the same router as the
//! built-in tools.
//!
//! A server starts on first use (the first request of a session whose agent may use its tools),
//! once per session tree: a subagent is handed its parent's [`McpHub`] and reuses the
//! connection. It is shut down (its process group killed) when the last session holding the
//! hub is dropped. A server that cannot start or does not answer in time becomes a warning
//! event and a clear tool error, never a hung session; a server whose tools change
//! (`notifications/tools/list_changed`) is listed again before the next request.
//!
//! Only trusted declarations run: user config, a trusted project's config, and agent files the
//! user trusts. A server in an agent file from an untrusted workspace would be a program
//! planted in the repository run outside the sandbox; it is refused with the reason.

mod connect;
mod sync;
mod tool;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_agent::McpServer;
use rmcp::model::Tool;
use rmcp::{Peer, RoleClient};

pub(crate) use sync::McpView;
pub use tool::function_name;

/// Default limit for starting a server and listing its tools.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for one tool call.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// The MCP connections of one session tree.
pub struct McpHub {
    workspace: PathBuf,
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl std::fmt::Debug for McpHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHub")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl McpHub {
    /// A hub whose stdio servers run in `workspace`.
    pub fn new(workspace: PathBuf) -> Arc<McpHub> {
        Arc::new(McpHub {
            workspace,
            slots: Mutex::new(Vec::new()),
        })
    }

    /// The slot for this declaration: the same one for every session of the tree.
    pub(crate) fn slot(&self, name: &str, decl: &McpServer, refused: Option<String>) -> Arc<Slot> {
        let Ok(mut slots) = self.slots.lock() else {
            return Arc::new(Slot::new(name, decl, refused, self.workspace.clone()));
        };
        if let Some(s) = slots
            .iter()
            .find(|s| s.name == name && s.decl == *decl && s.refused.is_some() == refused.is_some())
        {
            return s.clone();
        }
        let s = Arc::new(Slot::new(name, decl, refused, self.workspace.clone()));
        slots.push(s.clone());
        s
    }
}

enum State {
    Idle,
    Ready {
        conn: Box<connect::Connection>,
        peer: Peer<RoleClient>,
        tools: Arc<Vec<Tool>>,
    },
    Failed(String),
}

/// One declared server and its connection, if started.
pub(crate) struct Slot {
    pub name: String,
    pub decl: McpServer,
    /// Why this declaration may not run, if it may not.
    refused: Option<String>,
    workspace: PathBuf,
    /// Set by the server's `tools/list_changed`.
    dirty: Arc<AtomicBool>,
    /// Bumped whenever the tool list (or the failure) changes.
    generation: AtomicU64,
    state: tokio::sync::Mutex<State>,
}

impl Slot {
    fn new(name: &str, decl: &McpServer, refused: Option<String>, workspace: PathBuf) -> Slot {
        Slot {
            name: name.to_string(),
            decl: decl.clone(),
            refused,
            workspace,
            dirty: Arc::new(AtomicBool::new(false)),
            generation: AtomicU64::new(0),
            state: tokio::sync::Mutex::new(State::Idle),
        }
    }

    fn start_timeout(&self) -> Duration {
        self.decl.timeout.unwrap_or(DEFAULT_START_TIMEOUT)
    }

    pub fn tool_timeout(&self) -> Duration {
        self.decl.tool_timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT)
    }

    /// Whether the tool list may have changed since generation `seen`.
    pub fn changed_since(&self, seen: Option<u64>) -> bool {
        seen != Some(self.generation.load(Ordering::SeqCst)) || self.dirty.load(Ordering::SeqCst)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn fail(&self, state: &mut State, why: String) -> String {
        *state = State::Failed(why.clone());
        self.generation.fetch_add(1, Ordering::SeqCst);
        why
    }

    /// The server's tools: starting it if it is not running, listing them again if it said
    /// they changed. `Err` says why it is unavailable (for the warning and the tool error).
    pub async fn tools(&self) -> Result<Arc<Vec<Tool>>, String> {
        if let Some(why) = &self.refused {
            return Err(why.clone());
        }
        let mut state = self.state.lock().await;
        match &mut *state {
            State::Failed(why) => Err(why.clone()),
            State::Idle => {
                let started = tokio::time::Instant::now();
                let limit = self.start_timeout();
                let conn = match connect::connect(
                    &self.name,
                    &self.decl.transport,
                    &self.workspace,
                    self.dirty.clone(),
                    limit,
                )
                .await
                {
                    Ok(c) => c,
                    Err(e) => return Err(self.fail(&mut state, e)),
                };
                let peer = conn.service.peer().clone();
                self.dirty.store(false, Ordering::SeqCst);
                let left = limit.saturating_sub(started.elapsed());
                match list(&peer, left).await {
                    Ok(tools) => {
                        let tools = Arc::new(tools);
                        tracing::debug!(server = %self.name, tools = tools.len(), "mcp server started");
                        *state = State::Ready {
                            conn: Box::new(conn),
                            peer,
                            tools: tools.clone(),
                        };
                        self.generation.fetch_add(1, Ordering::SeqCst);
                        Ok(tools)
                    }
                    Err(e) => Err(self.fail(&mut state, e)),
                }
            }
            State::Ready { conn, peer, tools } => {
                if let Some(why) = conn.gone() {
                    return Err(self.fail(&mut state, why));
                }
                if self.dirty.swap(false, Ordering::SeqCst) {
                    match list(peer, self.start_timeout()).await {
                        Ok(new) => {
                            *tools = Arc::new(new);
                            self.generation.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => return Err(self.fail(&mut state, e)),
                    }
                }
                Ok(tools.clone())
            }
        }
    }

    /// Call tool `tool` (the server's own name for it).
    pub async fn call(
        &self,
        tool: &str,
        args: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let peer = {
            let mut state = self.state.lock().await;
            match &mut *state {
                State::Ready { conn, peer, .. } => match conn.gone() {
                    Some(why) => return Err(self.fail(&mut state, why)),
                    None => peer.clone(),
                },
                State::Failed(why) => return Err(why.clone()),
                State::Idle => return Err("the server has not been started".into()),
            }
        };
        let params = rmcp::model::CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        match tokio::time::timeout(self.tool_timeout(), peer.call_tool(params)).await {
            Ok(Ok(result)) => serde_json::to_value(result).map_err(|e| e.to_string()),
            Ok(Err(e)) => {
                let mut state = self.state.lock().await;
                if let State::Ready { conn, .. } = &mut *state
                    && let Some(why) = conn.gone()
                {
                    return Err(self.fail(&mut state, why));
                }
                Err(e.to_string())
            }
            Err(_) => Err(format!(
                "no answer within {} s (the server's `tool_timeout`)",
                self.tool_timeout().as_secs_f64()
            )),
        }
    }
}

async fn list(peer: &Peer<RoleClient>, limit: Duration) -> Result<Vec<Tool>, String> {
    match tokio::time::timeout(limit, peer.list_all_tools()).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(format!("cannot list its tools: {e}")),
        Err(_) => Err(format!(
            "did not list its tools within {} s",
            limit.as_secs_f64()
        )),
    }
}
