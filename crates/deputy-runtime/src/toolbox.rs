//! The tools of one session: which are offered, the context they run in, and the permission
//! rules (which grow when the user answers "always").

use std::path::Path;
use std::sync::{Arc, Mutex};

use deputy_agent::{Action as AgentAction, AgentSpec};
use deputy_llm::ToolSpec;
use deputy_tools::{
    Action, Origin, Permissions, Rule, Sandbox, SandboxPolicy, Tool, ToolContext, ToolSettings,
    Workspace, builtin_tools,
};

use crate::error::SessionError;

/// What the session may call.
pub struct Toolbox {
    /// The tools offered to the model.
    pub tools: Vec<Arc<dyn Tool>>,
    pub ctx: ToolContext,
    pub permissions: Arc<Mutex<Permissions>>,
    /// The sandbox backend name, for events.
    pub sandbox: String,
}

/// The agent's permission rules in deputy-tools' terms.
pub fn agent_rules(agent: &AgentSpec) -> Vec<Rule> {
    agent
        .permission
        .iter()
        .map(|r| {
            let action = match r.action {
                AgentAction::Allow => Action::Allow,
                AgentAction::Ask => Action::Ask,
                AgentAction::Deny => Action::Deny,
            };
            Rule::new(&r.tool, &r.pattern, action, Origin::Agent)
        })
        .collect()
}

impl Toolbox {
    /// Build the toolbox of `agent` in `workspace`. `rules` are config and flag rules (applied
    /// after the agent's); `ceiling` the parent's permissions for a subagent. Fails when the
    /// agent may use bash and no sandbox works (and the user did not choose `--sandbox off`).
    pub fn new(
        agent: &AgentSpec,
        workspace: &Path,
        mut policy: SandboxPolicy,
        settings: ToolSettings,
        config_rules: Vec<Rule>,
        flag_rules: Vec<Rule>,
        ceiling: Option<&Permissions>,
    ) -> Result<Toolbox, SessionError> {
        let mut rules = config_rules;
        rules.extend(agent_rules(agent));
        rules.extend(flag_rules);
        let mut permissions = Permissions::new(rules);
        if let Some(parent) = ceiling {
            permissions = permissions.under(parent);
        }
        let mut ws =
            Workspace::open(workspace).map_err(|e| SessionError::Workspace(e.to_string()))?;
        // `.git` may be written only when the rules let edit touch it.
        let git_writable = !matches!(
            permissions.decide("edit", Some(".git/config")),
            deputy_tools::Decision::Deny { .. }
        ) && policy.writable_git;
        ws.set_protect_git(!git_writable);
        if let Some(n) = agent.network {
            policy.network = policy.network || n;
        }
        let offered: Vec<Arc<dyn Tool>> = builtin_tools()
            .into_iter()
            .filter(|t| agent.tools.is_enabled(t.name()) && !permissions.tool_denied(t.name()))
            .collect();
        let wants_bash = offered.iter().any(|t| t.name() == "bash");
        let root = ws.canonical_root().to_path_buf();
        // An agent without bash runs whether or not a sandbox works here.
        let sandbox = match Sandbox::new(policy, &root) {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) if wants_bash => return Err(SessionError::Sandbox(e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        let sandbox_name = match &sandbox {
            Ok(s) => s.backend().as_str().to_string(),
            Err(_) => "unavailable".to_string(),
        };
        let permissions = Arc::new(Mutex::new(permissions));
        let reader = permissions.clone();
        let ctx = ToolContext {
            workspace: Arc::new(ws),
            sandbox,
            settings,
            readable: Some(Arc::new(move |p: &str| {
                reader.lock().map(|p2| p2.may_read(p)).unwrap_or(false)
            })),
        };
        Ok(Toolbox {
            tools: offered,
            ctx,
            permissions,
            sandbox: sandbox_name,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.name() == name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name().to_string()).collect()
    }

    /// The specs sent to the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .map(|t| ToolSpec {
                name: t.name().to_string(),
                description: t.description().to_string(),
                parameters: t.parameters(),
            })
            .collect()
    }

    /// A snapshot of the current rules (for subagent ceilings).
    pub fn permissions(&self) -> Permissions {
        self.permissions
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
}
