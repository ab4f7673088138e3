//! The built-in tools of one session: which are offered, the context they run in, the sandbox,
//! and the permission rules (which grow when the user answers "always").

use std::sync::{Arc, Mutex};

use deputy_agent::{Action as AgentAction, AgentSpec};
use deputy_tools::{
    Action, Origin, Permissions, Rule, Sandbox, SandboxPolicy, Tool, ToolContext, ToolSettings,
    Workspace, builtin_tools,
};

use crate::error::SessionError;
use crate::options::SessionOptions;
use crate::router::{Builtin, Handler};

/// What the session may call.
pub struct Toolbox {
    /// The built-in tools offered to the model.
    pub tools: Vec<Arc<dyn Tool>>,
    pub ctx: ToolContext,
    pub permissions: Arc<Mutex<Permissions>>,
    /// The sandbox backend name, for events.
    pub sandbox: String,
    /// The sandbox policy in force (the agent's `network` included).
    policy: SandboxPolicy,
    /// What the agent asks for that cannot be given (told as warnings when the run starts).
    pub notices: Vec<String>,
}

/// An agent file's action in deputy-tools' terms (the one place the two meet).
pub(crate) fn action(a: AgentAction) -> Action {
    match a {
        AgentAction::Allow => Action::Allow,
        AgentAction::Ask => Action::Ask,
        AgentAction::Deny => Action::Deny,
    }
}

/// The agent's permission rules in deputy-tools' terms, with the origin its file earns: an agent
/// file from an untrusted workspace cannot open protected paths.
pub fn agent_rules(agent: &AgentSpec, trusted: bool) -> Vec<Rule> {
    let origin = if trusted {
        Origin::Agent
    } else {
        Origin::WorkspaceAgent
    };
    agent
        .permission
        .iter()
        .map(|r| Rule::new(&r.tool, &r.pattern, action(r.action), origin))
        .collect()
}

/// The rules of a session, in the order they apply (the last match wins): config, the
/// agent's, flags. Without the network, webfetch and websearch ask first (a URL or a query is a
/// way to carry data out). An agent file the user has not trusted cannot loosen the user's
/// rules: those (and the network rule) apply again after its own — no sandbox stands behind a
/// web fetch or an MCP tool, so the rules are all there is.
fn session_rules(agent: &AgentSpec, opts: &SessionOptions, network: bool) -> Vec<Rule> {
    let network_ask: Vec<Rule> = if network {
        Vec::new()
    } else {
        ["webfetch", "websearch"]
            .iter()
            .map(|tool| Rule::new(tool, "*", Action::Ask, Origin::Default))
            .collect()
    };
    let mut rules = network_ask.clone();
    rules.extend(opts.config_rules.iter().cloned());
    rules.extend(agent_rules(agent, opts.agent_trusted));
    if !opts.agent_trusted {
        rules.extend(network_ask);
        rules.extend(opts.config_rules.iter().cloned());
    }
    rules.extend(opts.flag_rules.iter().cloned());
    rules
}

/// A redirect goes only where the rules allow without asking (nobody approved that URL).
fn redirect_check(permissions: Arc<Mutex<Permissions>>) -> deputy_tools::tools::UrlCheck {
    Arc::new(move |url: &str| {
        let decision = permissions
            .lock()
            .map(|p| p.decide("webfetch", Some(url)))
            .unwrap_or(deputy_tools::Decision::Deny {
                reason: "the rules cannot be read".into(),
            });
        match decision {
            deputy_tools::Decision::Allow => Ok(()),
            deputy_tools::Decision::Ask { reason } | deputy_tools::Decision::Deny { reason } => {
                Err(reason)
            }
        }
    })
}

impl Toolbox {
    /// Start the session's kept sandbox in the background, when bash is offered.
    pub fn warm_sandbox(&self) {
        if let Ok(sb) = &self.ctx.sandbox
            && self.tools.iter().any(|t| t.name() == "bash")
        {
            sb.warm();
        }
    }

    /// Build the toolbox of `agent` in `workspace`. `rules` are config and flag rules (applied
    /// after the agent's); `ceiling` the parent's permissions for a subagent. Fails when the
    /// agent may use bash and no sandbox works (and the user did not choose `--sandbox off`).
    pub fn new(agent: &AgentSpec, opts: &SessionOptions) -> Result<Toolbox, SessionError> {
        let workspace = &opts.workspace;
        let mut policy = opts.sandbox.clone();
        let settings: ToolSettings = opts.tool_settings;
        let mut ws =
            Workspace::open(workspace).map_err(|e| SessionError::Workspace(e.to_string()))?;
        // An agent from an untrusted workspace cannot give itself the network.
        if let Some(n) = agent.network
            && opts.agent_trusted
        {
            policy.network = policy.network || n;
        }
        if let Some(parent) = &opts.sandbox_ceiling {
            policy = policy.within(parent);
        }
        // Granted directories, checked once here for the file tools and the sandbox alike.
        policy.extra_dirs = deputy_tools::sandbox::grant::check(
            &policy.extra_dirs,
            ws.canonical_root(),
            &policy.hidden,
        )
        .map_err(SessionError::Grant)?;
        ws.grant(&policy.extra_dirs)
            .map_err(|e| SessionError::Workspace(e.to_string()))?;
        let mut permissions = Permissions::new(session_rules(agent, opts, policy.network));
        if let Some(parent) = &opts.ceiling {
            permissions = permissions.under(parent);
        }
        // Read-only means the file tools too.
        let read_only = policy.mode == deputy_tools::SandboxMode::ReadOnly;
        ws.set_read_only(read_only);
        ws.set_editor(opts.editor.clone());
        let permissions = Arc::new(Mutex::new(permissions));
        // Protected paths are written only where a trusted rule names them (the same answer for
        // the file tools and for what commands may leave behind).
        let unlocks = permissions.clone();
        let writable_git = policy.writable_git;
        let allow_protected: deputy_tools::ProtectedFilter = Arc::new(move |rel: &str| {
            (writable_git && rel.split('/').any(|c| c == ".git"))
                || unlocks
                    .lock()
                    .map(|p| p.unlocks_protected("edit", rel))
                    .unwrap_or(false)
        });
        ws.set_allow_protected(Some(allow_protected.clone()));
        let permissions_now = permissions.lock().map(|p| p.clone()).unwrap_or_default();
        let mut notices = Vec::new();
        let searchable = opts.web.search.is_some();
        if !searchable && agent.tools.overrides.get("websearch") == Some(&true) {
            notices.push(
                "the agent names websearch, but no search API is configured ([websearch] in \
                 config: provider searxng, brave or tavily); it runs without it"
                    .to_string(),
            );
        }
        let offered: Vec<Arc<dyn Tool>> = builtin_tools()
            .into_iter()
            .filter(|t| {
                agent.tools.is_enabled(t.name())
                    && !permissions_now.tool_denied(t.name())
                    && !(read_only && matches!(t.name(), "write" | "edit"))
                    && (t.name() != "websearch" || searchable)
            })
            .collect();
        let wants_bash = offered.iter().any(|t| t.name() == "bash");
        let root = ws.canonical_root().to_path_buf();
        // An agent without bash runs whether or not a sandbox works here.
        let sandbox = match Sandbox::with_allowed(policy.clone(), &root, Some(allow_protected)) {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) if wants_bash => return Err(SessionError::Sandbox(e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        let sandbox_name = match &sandbox {
            Ok(s) => s.backend().as_str().to_string(),
            Err(_) => "unavailable".to_string(),
        };
        let reader = permissions.clone();
        let mut web = opts.web.clone();
        web.may_fetch = Some(redirect_check(permissions.clone()));
        let ctx = ToolContext {
            workspace: Arc::new(ws),
            sandbox,
            settings,
            readable: Some(Arc::new(move |p: &str| {
                reader.lock().map(|p2| p2.may_read(p)).unwrap_or(false)
            })),
            web: Arc::new(web),
        };
        Ok(Toolbox {
            tools: offered,
            ctx,
            permissions,
            sandbox: sandbox_name,
            policy,
            notices,
        })
    }

    /// The built-in tools as the router's handlers.
    pub(crate) fn handlers(&self) -> Vec<Arc<dyn Handler>> {
        self.tools
            .iter()
            .map(|t| {
                Arc::new(Builtin {
                    tool: t.clone(),
                    ctx: self.ctx.clone(),
                }) as Arc<dyn Handler>
            })
            .collect()
    }

    /// The sandbox policy in force.
    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    /// A snapshot of the current rules (for subagent ceilings).
    pub fn permissions(&self) -> Permissions {
        self.permissions
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
}
