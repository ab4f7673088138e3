//! From configuration, flags and an agent to a ready [`Session`]: the model client, the limits,
//! the sandbox policy and the permission rules. Shared by every front-end (`deputy run`,
//! `deputy chat`, `deputy mcp`, the `task` tool), so they all resolve things the same way.
//!
//! Precedence: flags > the agent > environment > config > defaults, except that environment
//! and config only name the model when neither the flag nor the agent does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deputy_agent::AgentSpec;
use deputy_llm::{
    Breakers, Env, LlmConfig, LlmError, ModelClient, OpenAiClient, Resolved, Source, Usage,
};
use deputy_tools::{Origin, ResourceLimits, Rule, SandboxMode, SandboxPolicy, ToolSettings};
use serde::Deserialize;
use serde_json::Value;

use crate::approve::{Approver, Headless};
use crate::config::Config;
use crate::options::{Limits, Pricing, SessionOptions};
use crate::session::Session;
use crate::task::{ChildMaker, ChildOf, TaskConfig, TaskRunner};

/// What a caller sets for one run (flags of `deputy run`, arguments of an MCP call).
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_steps: Option<u32>,
    pub timeout: Option<Duration>,
    pub max_tokens: Option<u64>,
    pub max_cost_usd: Option<f64>,
    pub sandbox: Option<SandboxMode>,
    pub network: Option<bool>,
    /// Permission rules from flags (applied last).
    pub rules: Vec<Rule>,
    pub output_schema: Option<Value>,
    /// When a limit stops the session, end at once (no summary call).
    pub no_summary: bool,
    /// Text added to the end of the system prompt.
    pub append_system_prompt: Option<String>,
    /// How much of the user's home directory commands see (`deputy serve`: none of it).
    pub home: deputy_tools::sandbox::HomeView,
    /// Directories granted besides the workspace (`--add-dir`), absolute.
    pub add_dirs: Vec<PathBuf>,
    /// No project instructions (`--no-instructions`).
    pub no_instructions: bool,
}

/// `[sandbox]` in config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    pub mode: Option<String>,
    pub network: Option<bool>,
    pub writable_git: Option<bool>,
    pub env_allow: Vec<String>,
    pub backend: Option<String>,
    pub limits: ResourceLimits,
    /// Directories granted besides the workspace (absolute, or under `~/`). Only from the
    /// user's config or a trusted project's: an untrusted one cannot grant itself more.
    pub add_dirs: Vec<String>,
}

/// `[limits]` in config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_steps: Option<u32>,
    pub timeout_s: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_cost_usd: Option<f64>,
}

/// `[compaction]` in config: keeping long sessions within the model's context window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    pub enabled: Option<bool>,
    /// Share of the window (less the answer's reserve) past which room is made (0.1–1).
    pub threshold: Option<f64>,
    pub keep_recent_tokens: Option<u64>,
    pub reserve_tokens: Option<u64>,
    /// The model that writes the summaries (`provider/model` or an alias).
    pub compaction_model: Option<String>,
}

/// Why a run could not be set up. Every variant is a configuration problem (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No model is configured and no local server answered.
    #[error("{0}")]
    NoModel(String),
    #[error("{0}")]
    Config(String),
}

/// Makes sessions.
#[derive(Clone)]
pub struct Factory {
    pub config: Config,
    pub workspace: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub env: Env,
    pub breakers: Breakers,
    pub approver: Arc<dyn Approver>,
    /// Look for a local model server when nothing is configured.
    pub discover_local: bool,
    /// Whether the user trusts the project's files (`deputy trust`).
    pub project_trusted: bool,
    /// The project this factory was made for (the workspace deputy was started in). A front-end
    /// that narrows `workspace` to a directory of it (`deputy mcp`, `deputy serve`) keeps this:
    /// an agent file of the project stays the project's, whatever workspace it is used on.
    pub project: Option<PathBuf>,
    /// Agent directories the user named or owns (`--agents-dir`, their config directory):
    /// agent files there are trusted even inside an untrusted workspace.
    pub trusted_agent_dirs: Vec<PathBuf>,
    /// MCP servers the front-end was handed by the user's own client (an editor's, over ACP):
    /// trusted as the user's config is, added to `[mcp.servers]` (config wins a name clash).
    pub client_mcp_servers: indexmap::IndexMap<String, deputy_agent::McpServer>,
    /// The editor holding the workspace's files (an ACP client's `fs/*`), if any: the file
    /// tools read its buffers and write through it.
    pub editor: Option<Arc<dyn deputy_tools::Editor>>,
}

/// The message for "no model": the three ways to configure one, and how to start a local server.
pub fn no_model_help() -> String {
    [
        "no model is configured, and no local model server answered on 127.0.0.1 (ports 11434 Ollama, 8080 llama.cpp, 1234 LM Studio, 8000 vLLM; DEPUTY_LOCAL_PORTS names others, or `none`).",
        "Configure one of these ways:",
        "  1. environment (or a .env file in the workspace):",
        "       export OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... DEPUTY_MODEL=gpt-4o-mini",
        "       export ANTHROPIC_API_KEY=sk-ant-...   (Anthropic's Messages API; claude-sonnet-4-5 unless DEPUTY_MODEL says)",
        "  2. config file (.deputy/config.toml or ~/.config/deputy/config.toml):",
        "       model = \"local/qwen3:8b\"",
        "       [providers.local]",
        "       base_url = \"http://127.0.0.1:11434/v1\"",
        "  3. flag: --model provider/model (with the provider configured as above)",
        "To run a model on this machine: install Ollama (https://ollama.com), run `ollama serve` and `ollama pull qwen3:8b`; deputy finds it on its port.",
        "To try deputy without any model: `deputy mock-server --script examples/mock/seed-task.yaml`, then set OPENAI_BASE_URL to the URL it prints and DEPUTY_MODEL=mock.",
    ]
    .join("\n")
}

impl Factory {
    pub fn new(config: Config, workspace: PathBuf, state_dir: Option<PathBuf>) -> Self {
        let breakers = Breakers::new(config.llm.breaker);
        Self {
            config,
            workspace,
            state_dir,
            env: Env::from_process(),
            breakers,
            approver: Arc::new(Headless),
            discover_local: true,
            project_trusted: false,
            project: None,
            trusted_agent_dirs: Vec::new(),
            client_mcp_servers: indexmap::IndexMap::new(),
            editor: None,
        }
    }

    /// The model client for `agent`, its `provider/model` label, and warnings (an agent model
    /// that cannot be used here, a local server found automatically).
    pub async fn client(
        &self,
        agent: &AgentSpec,
        settings: &RunSettings,
    ) -> Result<(Arc<dyn ModelClient>, String, Vec<String>), SetupError> {
        let mut candidates: Vec<(Source, String)> = Vec::new();
        if let Some(m) = &settings.model {
            candidates.push((Source::Flag, m.clone()));
        }
        if let Some(m) = &agent.model {
            candidates.push((Source::Agent, m.to_string()));
        }
        let refs: Vec<(Source, &str)> = candidates.iter().map(|(s, m)| (*s, m.as_str())).collect();
        let llm = &self.config.llm;
        let resolved = match llm.resolve(&refs, &self.env) {
            Ok(r) => r,
            // A server is configured but no model named: say which variable names one.
            Err(LlmError::NoModel) if self.env.get("OPENAI_BASE_URL").is_some() => {
                return Err(SetupError::NoModel(format!(
                    "OPENAI_BASE_URL is set ({}) but no model is named: set DEPUTY_MODEL (or OPENAI_MODEL) to one of the server's models, pass --model, or set `model` in config (`curl {}/models` lists them)",
                    self.env.get("OPENAI_BASE_URL").unwrap_or_default(),
                    self.env
                        .get("OPENAI_BASE_URL")
                        .unwrap_or_default()
                        .trim_end_matches('/')
                )));
            }
            Err(LlmError::NoModel) => self.local_fallback(llm).await?,
            Err(e) => return Err(SetupError::Config(e.to_string())),
        };
        for t in std::iter::once(&resolved.primary).chain(resolved.fallbacks.iter()) {
            if let Some(k) = &t.provider.api_key {
                crate::redact::add_secret(k);
            }
        }
        let label = resolved.primary.label();
        let warnings = resolved.warnings.clone();
        let client = OpenAiClient::new(resolved, llm.retry, self.breakers.clone())
            .map_err(|e| SetupError::Config(e.to_string()))?;
        Ok((Arc::new(client), label, warnings))
    }

    async fn local_fallback(&self, llm: &LlmConfig) -> Result<Resolved, SetupError> {
        if !self.discover_local {
            return Err(SetupError::NoModel(no_model_help()));
        }
        let servers = deputy_llm::local_servers(&self.env).map_err(SetupError::Config)?;
        let Some(found) = deputy_llm::discover_local(&servers, Duration::from_millis(400)).await
        else {
            return Err(SetupError::NoModel(no_model_help()));
        };
        let mut provider = deputy_llm::ProviderSettings::new("local", &found.base_url);
        provider.request_timeout = Duration::from_secs(600);
        let _ = llm;
        Ok(Resolved {
            primary: deputy_llm::Target {
                provider,
                model: found.model.clone(),
            },
            fallbacks: Vec::new(),
            warnings: vec![format!(
                "no model configured; using {} at {} with model {} (found on its usual port)",
                found.name, found.base_url, found.model
            )],
        })
    }

    /// Session options for `agent` with `settings`, and the model label for events.
    pub fn options(
        &self,
        agent: &AgentSpec,
        settings: &RunSettings,
        model_label: String,
    ) -> Result<SessionOptions, SetupError> {
        let sandbox_cfg: SandboxConfig =
            self.config.section("sandbox").map_err(SetupError::Config)?;
        let limits_cfg: LimitsConfig = self.config.section("limits").map_err(SetupError::Config)?;
        let compaction = self.compaction()?;
        let tool_settings: ToolSettings =
            self.config.section("tools").map_err(SetupError::Config)?;
        let mode = match (&settings.sandbox, &sandbox_cfg.mode) {
            (Some(m), _) => *m,
            (None, Some(m)) => SandboxMode::parse(m).ok_or_else(|| {
                SetupError::Config(format!(
                    "[sandbox] mode = \"{m}\": must be workspace-write, read-only or off"
                ))
            })?,
            (None, None) => SandboxMode::WorkspaceWrite,
        };
        // The environment is more specific than a config file: a backend required there is
        // not silently dropped by `mode = "off"` in config.
        let mode = match (mode, self.env.get(deputy_tools::sandbox::BACKEND_ENV)) {
            (SandboxMode::Off, Some(b)) if settings.sandbox.is_none() => {
                tracing::warn!(
                    "{}={b} requires a sandbox, so `[sandbox] mode = \"off\"` in config is ignored",
                    deputy_tools::sandbox::BACKEND_ENV
                );
                SandboxMode::WorkspaceWrite
            }
            (m, _) => m,
        };
        let backend = match &sandbox_cfg.backend {
            Some(b) => Some(deputy_tools::Backend::parse(b).ok_or_else(|| {
                SetupError::Config(format!(
                    "[sandbox] backend = \"{b}\": must be bwrap or landlock"
                ))
            })?),
            None => None,
        };
        let extra_dirs = self.granted(settings, &sandbox_cfg)?;
        let policy = SandboxPolicy {
            extra_dirs,
            read_dirs: Vec::new(),
            mode,
            // The agent's own `network` is added by the toolbox, only for a trusted agent file.
            network: settings.network.or(sandbox_cfg.network).unwrap_or(false),
            writable_git: sandbox_cfg.writable_git.unwrap_or(false),
            env_allow: sandbox_cfg.env_allow.clone(),
            limits: sandbox_cfg.limits.clone(),
            force_backend: backend,
            no_cgroups: false,
            home: settings.home,
            // deputy's own state (journals, other sessions) and config (provider settings)
            // are never a command's to read.
            hidden: self
                .state_dir
                .iter()
                .cloned()
                .chain(crate::config::config_dir(
                    deputy_tools::sandbox::view::home_dir().as_deref(),
                ))
                .collect(),
        };
        let config_timeout = match limits_cfg.timeout_s {
            None => None,
            Some(t) => Some(deputy_agent::duration_from_secs(t).ok_or_else(|| {
                SetupError::Config(format!(
                    "[limits] timeout_s = {t}: must be a number of seconds above 0 and at most {} (30 days)",
                    deputy_agent::MAX_DURATION_SECS
                ))
            })?),
        };
        let limits = Limits {
            max_steps: settings
                .max_steps
                .or(agent.max_steps)
                .or(limits_cfg.max_steps)
                .unwrap_or(50),
            timeout: settings.timeout.or(agent.timeout).or(config_timeout),
            max_tokens: settings.max_tokens.or(limits_cfg.max_tokens),
            max_cost_usd: settings.max_cost_usd.or(limits_cfg.max_cost_usd),
        };
        let config_rules = self.config_rules()?;
        let llm = self.config.llm.clone();
        let pricing: Pricing = Arc::new(move |provider: &str, model: &str, usage: &Usage| {
            llm.cost(provider, model, usage)
        });
        let mut opts = SessionOptions::new(self.workspace.clone());
        opts.limits = limits;
        opts.sandbox = policy;
        opts.tool_settings = tool_settings;
        opts.config_rules = config_rules;
        opts.flag_rules = settings.rules.clone();
        opts.temperature = settings.temperature;
        opts.top_p = settings.top_p;
        opts.state_dir = self.state_dir.clone();
        opts.output_schema = settings.output_schema.clone();
        opts.pricing = Some(pricing);
        opts.approver = self.approver.clone();
        opts.model_label = model_label;
        opts.agent_trusted = self.agent_trusted(agent);
        opts.limit_summary = !settings.no_summary;
        opts.append_system_prompt = settings.append_system_prompt.clone();
        opts.compaction = compaction;
        opts.mcp_servers = self.config.mcp_servers().map_err(SetupError::Config)?;
        for (name, server) in &self.client_mcp_servers {
            opts.mcp_servers
                .entry(name.clone())
                .or_insert_with(|| server.clone());
        }
        opts.web = self.web_settings()?;
        opts.editor = self.editor.clone();
        self.conventions(settings, &mut opts)?;
        Ok(opts)
    }

    /// `[compaction]`, with its model's client when it names one.
    /// `[webfetch]` and `[websearch]`.
    fn web_settings(&self) -> Result<deputy_tools::tools::WebSettings, SetupError> {
        let fetch: deputy_tools::tools::WebFetchConfig = self
            .config
            .section("webfetch")
            .map_err(SetupError::Config)?;
        let search: deputy_tools::tools::WebSearchConfig = self
            .config
            .section("websearch")
            .map_err(SetupError::Config)?;
        let d = deputy_tools::tools::WebSettings::default();
        Ok(deputy_tools::tools::WebSettings {
            allow_private: fetch.allow_private.unwrap_or(false),
            allow_hosts: fetch.allow_hosts.unwrap_or_default(),
            max_bytes: fetch.max_bytes.map(|b| b.max(1)).unwrap_or(d.max_bytes),
            max_redirects: fetch.max_redirects.unwrap_or(d.max_redirects),
            search: search.resolve().map_err(SetupError::Config)?,
            may_fetch: None,
        })
    }

    fn compaction(&self) -> Result<crate::options::Compaction, SetupError> {
        let cfg: CompactionConfig = self
            .config
            .section("compaction")
            .map_err(SetupError::Config)?;
        if let Some(t) = cfg.threshold
            && !(0.1..=1.0).contains(&t)
        {
            return Err(SetupError::Config(format!(
                "[compaction] threshold = {t}: must be a share of the window between 0.1 and 1"
            )));
        }
        let client = match &cfg.compaction_model {
            None => None,
            Some(m) => {
                let llm = &self.config.llm;
                let resolved = llm
                    .resolve(&[(Source::Flag, m.as_str())], &self.env)
                    .map_err(|e| {
                        SetupError::Config(format!("[compaction] compaction_model = \"{m}\": {e}"))
                    })?;
                if let Some(k) = &resolved.primary.provider.api_key {
                    crate::redact::add_secret(k);
                }
                let c = OpenAiClient::new(resolved, llm.retry, self.breakers.clone())
                    .map_err(|e| SetupError::Config(e.to_string()))?;
                Some(Arc::new(c) as Arc<dyn ModelClient>)
            }
        };
        let defaults = crate::options::Compaction::default();
        Ok(crate::options::Compaction {
            enabled: cfg.enabled.unwrap_or(defaults.enabled),
            threshold: cfg.threshold.unwrap_or(defaults.threshold),
            keep_recent_tokens: cfg.keep_recent_tokens,
            reserve_tokens: cfg.reserve_tokens,
            client,
            window: None,
        })
    }

    /// Whether `agent`'s file is trusted: built in, in a directory the user named or owns, or
    /// outside both the project and the session's workspace (the user's own) — judged by where
    /// the file is, not where the session works — or in a trusted project.
    pub fn agent_trusted(&self, agent: &AgentSpec) -> bool {
        let Some(source) = &agent.source else {
            return true;
        };
        if self.project_trusted {
            return true;
        }
        let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let source = canon(source);
        if self
            .trusted_agent_dirs
            .iter()
            .any(|d| source.starts_with(canon(d)))
        {
            return true;
        }
        let in_project = source.starts_with(canon(&self.workspace))
            || self
                .project
                .as_deref()
                .is_some_and(|p| source.starts_with(canon(p)));
        !in_project
    }

    /// Whether `spec` (`provider/model`, an alias, or a model of the default provider) names a
    /// model this configuration can reach; the error names the providers there are.
    pub fn check_model(&self, spec: &str) -> Result<(), String> {
        let llm = &self.config.llm;
        match llm.check_strict(spec, &self.env) {
            Ok(()) => Ok(()),
            Err(e) => {
                let known = llm.provider_names(&self.env);
                Err(if known.is_empty() {
                    format!("`{spec}`: {e}; no provider is configured")
                } else {
                    format!(
                        "`{spec}`: {e}; the configured providers are: {} (give `provider/model`)",
                        known.join(", ")
                    )
                })
            }
        }
    }

    /// The directories granted besides the workspace: `[sandbox] add_dirs`, then the flags.
    /// A session whose home directory is hidden (`deputy serve`: every session a tenant) gets
    /// none — a granted directory would be shared by every tenant.
    fn granted(
        &self,
        settings: &RunSettings,
        cfg: &SandboxConfig,
    ) -> Result<Vec<PathBuf>, SetupError> {
        let home = deputy_tools::sandbox::view::home_dir();
        let mut dirs = Vec::new();
        for d in &cfg.add_dirs {
            let p = match (d.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => h.join(rest),
                _ => PathBuf::from(d),
            };
            if !p.is_absolute() {
                return Err(SetupError::Config(format!(
                    "[sandbox] add_dirs: `{d}` must be an absolute path (or start with ~/)"
                )));
            }
            dirs.push(p);
        }
        dirs.extend(settings.add_dirs.iter().cloned());
        if settings.home == deputy_tools::sandbox::HomeView::Hidden && !dirs.is_empty() {
            tracing::warn!(
                "[sandbox] add_dirs is ignored here: every session is a tenant, and a granted directory would be shared between them"
            );
            return Ok(Vec::new());
        }
        Ok(dirs)
    }

    /// `[permission]` of the config, in opencode's shape.
    fn config_rules(&self) -> Result<Vec<Rule>, SetupError> {
        let Some(table) = self.config.sections.get("permission") else {
            return Ok(Vec::new());
        };
        let value = serde_json::to_value(table).map_err(|e| SetupError::Config(e.to_string()))?;
        parse_rules(&value, Origin::Config)
            .map_err(|e| SetupError::Config(format!("[permission]: {e}")))
    }
}

/// The factory as the `task` tool's [`ChildMaker`]: children share the run's settings (sandbox
/// mode, rules, limits), not its model or output schema.
struct Children {
    factory: Factory,
    settings: RunSettings,
}

impl ChildMaker for Children {
    fn make<'a>(
        &'a self,
        agent: AgentSpec,
        parent: &'a ChildOf,
    ) -> futures::future::BoxFuture<'a, Result<(Session, Vec<String>), String>> {
        Box::pin(async move {
            let mut settings = self.settings.clone();
            // A child without a model of its own (or `inherit`) uses its parent's.
            settings.model = match agent.model {
                None | Some(deputy_agent::ModelRef::Inherit) => Some(parent.model_label.clone()),
                _ => None,
            };
            let (client, label, warnings) = self
                .factory
                .client(&agent, &settings)
                .await
                .map_err(|e| e.to_string())?;
            let mut opts = self
                .factory
                .options(&agent, &settings, label)
                .map_err(|e| e.to_string())?;
            opts.parent_session_id = Some(parent.session_id.clone());
            opts.ceiling = Some(parent.permissions.clone());
            opts.sandbox_ceiling = Some(parent.sandbox.clone());
            opts.approver = parent.approver.clone();
            opts.mcp_hub = Some(parent.mcp.clone());
            let session = match &parent.worktree {
                Some((id, wt)) => {
                    wt.apply(&mut opts);
                    Session::named(id, agent, client, opts)
                }
                None => Session::new(agent, client, opts),
            }
            .map_err(|e| e.to_string())?;
            Ok((session, warnings))
        })
    }
}

impl Factory {
    /// The `task` tool's runner for sessions of this factory: `agents` may be delegated to,
    /// children made with `settings` (without its output schema).
    pub fn task_runner(
        &self,
        agents: Vec<AgentSpec>,
        settings: &RunSettings,
        config: TaskConfig,
    ) -> Arc<TaskRunner> {
        let mut settings = settings.clone();
        settings.output_schema = None;
        let maker = Children {
            factory: self.clone(),
            settings,
        };
        TaskRunner::new(agents, Arc::new(maker), config)
    }
}

pub use crate::rules::{flag_rule, parse_rules};
