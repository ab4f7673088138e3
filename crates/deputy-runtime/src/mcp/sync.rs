//! Which MCP servers one session uses, and keeping the router's `mcp__…` tools in step with
//! them before each request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deputy_agent::{AgentSpec, McpServer};
use indexmap::IndexMap;

use super::tool::{McpTool, Unavailable, exposed_name};
use super::{McpHub, Slot};
use crate::event::EventKind;
use crate::router::Handler;
use crate::session::Session;

/// The servers of one session, and what of them is in its router.
pub(crate) struct McpView {
    hub: Arc<McpHub>,
    slots: Vec<Arc<Slot>>,
    /// Slot name → the generation of its tool list now in the router.
    built: HashMap<String, u64>,
    /// Exact `mcp__s__t` names the agent enables (a stand-in is offered if `s` fails).
    named: Vec<String>,
    warned: HashSet<String>,
    /// Said at the first sync (declarations refused at load).
    notices: Vec<String>,
}

impl McpView {
    /// The servers `agent` may use: those its file declares (run only when the file is
    /// trusted) and those config declares whose tools the agent enables.
    pub(crate) fn new(
        agent: &AgentSpec,
        config: &IndexMap<String, McpServer>,
        hub: Option<Arc<McpHub>>,
        agent_trusted: bool,
        workspace: &std::path::Path,
    ) -> McpView {
        let wants = |name: &str| agent.tools.may_use_mcp_server(name);
        let mut decls: IndexMap<&str, (&McpServer, Option<String>)> = IndexMap::new();
        for (name, decl) in config {
            if wants(name) {
                decls.insert(name, (decl, None));
            }
        }
        let mut notices = Vec::new();
        for (name, decl) in &agent.mcp_servers {
            let refused = (!agent_trusted).then(|| {
                let why = format!(
                    "it is declared in agent file {} of a workspace you have not trusted, and \
                     deputy does not run programs a repository names (run `deputy trust` to allow it)",
                    agent
                        .source
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| agent.name.clone())
                );
                notices.push(format!("MCP server `{name}` is not started: {why}"));
                why
            });
            decls.insert(name, (decl, refused));
        }
        decls.retain(|name, (decl, _)| {
            if !decl.enabled {
                tracing::debug!(server = %name, "mcp server disabled");
            }
            decl.enabled
        });
        let hub = hub.unwrap_or_else(|| McpHub::new(workspace.to_path_buf()));
        let slots = decls
            .iter()
            .map(|(name, (decl, refused))| hub.slot(name, decl, refused.clone()))
            .collect();
        McpView {
            hub,
            slots,
            built: HashMap::new(),
            named: agent
                .tools
                .mcp_names()
                .into_iter()
                .filter(|n| !n.contains('*') && n.matches("__").count() >= 2)
                .map(str::to_string)
                .collect(),
            warned: HashSet::new(),
            notices,
        }
    }

    /// The hub to hand to a subagent (so it reuses these connections).
    pub(crate) fn hub(&self) -> Arc<McpHub> {
        self.hub.clone()
    }
}

impl Session {
    /// Bring the router's MCP tools up to date: start servers not yet started, list again the
    /// tools of those that said they changed. Bounded by each server's `timeout`, the run's
    /// deadline and cancellation.
    pub(crate) async fn sync_mcp(&mut self) {
        for n in std::mem::take(&mut self.mcp.notices) {
            self.emit(EventKind::Warning { message: n });
        }
        let pending: Vec<Arc<Slot>> = self
            .mcp
            .slots
            .iter()
            .filter(|s| s.changed_since(self.mcp.built.get(&s.name).copied()))
            .cloned()
            .collect();
        if pending.is_empty() {
            return;
        }
        let all = futures::future::join_all(pending.iter().map(|s| s.tools()));
        let deadline = self.run.deadline;
        let results = tokio::select! {
            r = all => r,
            _ = self.cancel.cancelled() => return,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => return,
        };
        let perms = self.toolbox.permissions();
        for (slot, result) in pending.iter().zip(results) {
            let prefix = format!("mcp__{}__", slot.name);
            let handlers: Vec<Arc<dyn Handler>> = match result {
                Ok(tools) => {
                    let offered: Vec<Arc<dyn Handler>> = tools
                        .iter()
                        .map(|t| (exposed_name(&slot.name, &t.name), t))
                        .filter(|(n, _)| self.agent.tools.is_enabled(n) && !perms.tool_denied(n))
                        .map(|(exposed, t)| {
                            Arc::new(McpTool {
                                exposed,
                                slot: slot.clone(),
                                tool: t.clone(),
                            }) as Arc<dyn Handler>
                        })
                        .collect();
                    for missing in self.mcp.named.iter().filter(|n| {
                        n.starts_with(&prefix) && !offered.iter().any(|h| h.name() == n.as_str())
                    }) {
                        if self.mcp.warned.insert(missing.clone()) {
                            self.emitter.emit(EventKind::Warning {
                                message: format!(
                                    "the agent names `{missing}`, but MCP server `{}` has no such tool (or a rule denies it)",
                                    slot.name
                                ),
                            });
                        }
                    }
                    offered
                }
                Err(why) => {
                    if self.mcp.warned.insert(slot.name.clone()) {
                        self.emitter.emit(EventKind::Warning {
                            message: format!("MCP server `{}` is unavailable: {why}", slot.name),
                        });
                    }
                    self.mcp
                        .named
                        .iter()
                        .filter(|n| n.starts_with(&prefix) && !perms.tool_denied(n))
                        .map(|n| {
                            Arc::new(Unavailable {
                                exposed: n.clone(),
                                server: slot.name.clone(),
                                why: why.clone(),
                            }) as Arc<dyn Handler>
                        })
                        .collect()
                }
            };
            self.router.replace_prefix(&prefix, handlers);
            self.mcp.built.insert(slot.name.clone(), slot.generation());
        }
    }
}
