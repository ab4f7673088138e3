//! Which of the tools an agent names it will get here, and why not the others: what
//! `deputy agents show` lists, so an agent that silently loses a capability is seen before it
//! runs.

use deputy_agent::{AgentSpec, BUILTIN_TOOLS, McpServer, mcp_server_of};
use indexmap::IndexMap;
use serde::Serialize;

/// One tool, as the agent will see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolAvailability {
    pub name: String,
    pub available: bool,
    /// Why not; or, for an available MCP name, where its tools come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the answer depends on besides the agent.
pub struct Setting<'a> {
    /// `[mcp.servers]` of config.
    pub mcp_servers: &'a IndexMap<String, McpServer>,
    /// Whether a search API is configured (`[websearch]`).
    pub search: bool,
    /// Whether the agent's file is trusted (its MCP servers may run).
    pub agent_trusted: bool,
    /// Whether any skill is found (the `skill` tool is offered only then).
    pub skills: bool,
}

fn yes(name: &str, note: Option<String>) -> ToolAvailability {
    ToolAvailability {
        name: name.to_string(),
        available: true,
        note,
    }
}

fn no(name: &str, why: String) -> ToolAvailability {
    ToolAvailability {
        name: name.to_string(),
        available: false,
        note: Some(why),
    }
}

/// Every tool the agent enables or names, in order: built-in tools, then MCP names, then
/// names deputy does not know.
pub fn tool_availability(agent: &AgentSpec, s: &Setting<'_>) -> Vec<ToolAvailability> {
    let mut out = Vec::new();
    for t in BUILTIN_TOOLS {
        if !agent.tools.is_enabled(t) {
            continue;
        }
        out.push(match *t {
            "skill" if !s.skills => no(
                t,
                "no skills were found (folders with a SKILL.md in .claude/skills, .deputy/skills, .agents/skills, or ~/.claude/skills)".into(),
            ),
            "websearch" if !s.search => no(
                t,
                "no search API is configured ([websearch] provider = searxng, brave or tavily)"
                    .into(),
            ),
            "webfetch" | "websearch" if agent.network != Some(true) => yes(
                t,
                Some("each call needs approval or a permission rule allowing it, unless the session has the network (`network: true`, --network)".into()),
            ),
            _ => yes(t, None),
        });
    }
    // MCP servers the agent uses: named ones, its own, and (when it enables every tool)
    // every server config declares.
    let mut servers: IndexMap<String, Vec<String>> = IndexMap::new();
    for n in agent.tools.mcp_names() {
        if let Some(server) = mcp_server_of(n) {
            servers
                .entry(server.to_string())
                .or_default()
                .push(n.to_string());
        }
    }
    for name in s.mcp_servers.keys() {
        if agent.tools.may_use_mcp_server(name) && !servers.contains_key(name) {
            servers
                .entry(name.clone())
                .or_default()
                .push(format!("mcp__{name}__*"));
        }
    }
    for (server, names) in servers {
        let own = agent.mcp_servers.get(&server);
        let verdict = match (own, s.mcp_servers.get(&server)) {
            (Some(_), _) if !s.agent_trusted => Err(format!(
                "MCP server `{server}` is declared in an agent file of an untrusted workspace and is not started (`deputy trust` allows it)"
            )),
            (Some(d), _) | (None, Some(d)) if !d.enabled => Err(format!(
                "MCP server `{server}` is disabled (enabled = false)"
            )),
            (Some(_), _) => Ok(format!(
                "from MCP server `{server}` (declared in the agent file)"
            )),
            (None, Some(_)) => Ok(format!("from MCP server `{server}` (declared in config)")),
            (None, None) => Err(format!(
                "no MCP server `{server}` is declared ([mcp.servers.{server}] in config, or mcpServers in the agent file)"
            )),
        };
        for n in names {
            out.push(match &verdict {
                Ok(from) => yes(
                    &n,
                    Some(format!("{from}; its tools are listed when it starts")),
                ),
                Err(why) => no(&n, why.clone()),
            });
        }
    }
    for n in agent.tools.unknown() {
        if !n.starts_with("mcp__") {
            out.push(no(n, "deputy has no such tool".into()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use deputy_agent::{McpTransport, ToolSet};

    fn server() -> McpServer {
        McpServer {
            transport: McpTransport::Stdio {
                command: "x".into(),
                args: vec![],
                env: Default::default(),
            },
            enabled: true,
            timeout: None,
            tool_timeout: None,
        }
    }

    #[test]
    fn named_tools_with_reasons() {
        let mut a = AgentSpec::new("a", "p");
        a.tools = ToolSet::only([
            "Read",
            "WebSearch",
            "mcp__github__create_issue",
            "mcp__bgpt__search",
            "Skill",
        ]);
        let config: IndexMap<String, McpServer> = [("github".to_string(), server())].into();
        let s = Setting {
            mcp_servers: &config,
            search: false,
            agent_trusted: true,
            skills: false,
        };
        let got: Vec<(String, bool)> = tool_availability(&a, &s)
            .into_iter()
            .map(|t| (t.name, t.available))
            .collect();
        assert_eq!(
            got,
            vec![
                ("read".into(), true),
                ("websearch".into(), false),
                ("skill".into(), false),
                ("mcp__github__create_issue".into(), true),
                ("mcp__bgpt__search".into(), false),
            ]
        );
    }
}
