//! Providers, models, aliases and prices: which endpoint a request goes to and what it costs.
//!
//! ```toml
//! model = "local/qwen3:8b"              # the default model (or DEPUTY_MODEL)
//!
//! [providers.local]
//! base_url = "http://127.0.0.1:11434/v1"
//!
//! [providers.openrouter]
//! base_url = "https://openrouter.ai/api/v1"
//! api_key_env = "OPENROUTER_API_KEY"
//! headers = { "HTTP-Referer" = "https://example.com" }
//! fallback = ["local/qwen3:8b"]         # used while this provider's breaker is open
//!
//! [aliases]
//! sonnet = "openrouter/anthropic/claude-sonnet-4.5"
//!
//! [pricing."anthropic/claude-sonnet-4.5"]
//! input_per_mtok = 3.0
//! output_per_mtok = 15.0
//! ```
//!
//! With no config at all, `OPENAI_BASE_URL` / `OPENAI_API_KEY` define a provider named `openai`,
//! `ANTHROPIC_BASE_URL` / `ANTHROPIC_API_KEY` one named `anthropic` (speaking Anthropic's
//! Messages API), and `DEPUTY_MODEL` names the model.
//!
//! `api` chooses a provider's protocol: `chat` (Chat Completions, the default), `responses`
//! (OpenAI's Responses API) or `anthropic` (Anthropic's Messages API).

use std::collections::HashMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::error::LlmError;
use crate::retry::RetryPolicy;
use crate::types::{Api, Reasoning, Usage};

/// The default OpenAI endpoint, used by the implicit `openai` provider.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The default Anthropic endpoint, used by the implicit `anthropic` provider.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";

/// The model section of deputy's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// The default model: `provider/model`, an alias, or a bare model id.
    pub model: Option<String>,
    /// The provider bare model ids go to.
    pub default_provider: Option<String>,
    pub providers: IndexMap<String, ProviderConfig>,
    /// Alias → `provider/model` (or another alias).
    pub aliases: IndexMap<String, String>,
    /// Model (`provider/model` or bare id) → price.
    pub pricing: IndexMap<String, Price>,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Fallback models for every provider, after the provider's own list.
    pub fallback: Vec<String>,
    /// Model (`provider/model` or bare id) → what deputy should know of it (its window).
    pub models: IndexMap<String, ModelConfig>,
}

/// What config says of one model.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Tokens one request may hold (prompt and answer).
    pub context_window: Option<u64>,
    /// The most tokens an answer may have.
    pub max_output_tokens: Option<u64>,
}

/// One model endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// The protocol it speaks (default `chat`).
    pub api: Option<Api>,
    pub base_url: Option<String>,
    /// Name of the environment variable that holds the key (never the key itself).
    pub api_key_env: Option<String>,
    pub headers: IndexMap<String, String>,
    /// The model used when only the provider is chosen.
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub parallel_tool_calls: Option<bool>,
    /// Stream responses (default true).
    pub stream: Option<bool>,
    pub connect_timeout_ms: Option<u64>,
    /// Time to the response headers.
    pub request_timeout_ms: Option<u64>,
    /// Longest silence inside a streamed response.
    pub idle_timeout_ms: Option<u64>,
    /// `provider/model` list tried, in order, while this provider's breaker is open.
    pub fallback: Vec<String>,
    /// The context window of the provider's models (a local server started with `-c 16384`);
    /// `[models."provider/model"]` says it per model.
    pub context_window: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// Mark the stable prefix of each request with `cache_control` (Anthropic models through
    /// OpenRouter or LiteLLM cache only what is marked). On by default with `api = "anthropic"`.
    pub cache_control: Option<bool>,
    /// Reasoning effort for the provider's models (`minimal`, `low`, `medium`, `high`).
    pub reasoning_effort: Option<String>,
    /// Thinking budget in tokens (Anthropic's extended thinking; an effort elsewhere).
    pub thinking_budget: Option<u32>,
}

/// Price of a model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Price of cached input tokens; defaults to the input price.
    pub cached_input_per_mtok: Option<f64>,
    /// Price of input tokens written to the cache; defaults to 1.25 times the input price
    /// (Anthropic's five-minute cache).
    pub cache_write_per_mtok: Option<f64>,
}

/// The environment as the resolver reads it; a map so tests need not touch the process env.
#[derive(Debug, Clone, Default)]
pub struct Env(pub HashMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A provider with every setting settled and the key read.
#[derive(Clone)]
pub struct ProviderSettings {
    pub name: String,
    /// The protocol it speaks.
    pub api: Api,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Where the key comes from, for error messages ("OPENAI_API_KEY (not set)").
    pub api_key_env: Option<String>,
    pub headers: Vec<(String, String)>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub parallel_tool_calls: Option<bool>,
    pub stream: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    /// The window config gives (the provider's, or the model's under `[models]`).
    pub context_window: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// Put `cache_control` markers on the stable prefix.
    pub cache_control: bool,
    /// Reasoning effort or thinking budget, when config sets one.
    pub reasoning: Option<Reasoning>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ProviderSettings")
            .field("name", &self.name)
            .field("api", &self.api)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("api_key_env", &self.api_key_env)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl ProviderSettings {
    /// A provider at `base_url` with default timeouts and no key: handy for tests and embedding.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            api: Api::Chat,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            api_key_env: None,
            headers: Vec::new(),
            temperature: None,
            top_p: None,
            max_tokens: None,
            parallel_tool_calls: None,
            stream: true,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            context_window: None,
            max_output_tokens: None,
            cache_control: false,
            reasoning: None,
        }
    }

    /// What to say about the key in an auth error.
    pub fn key_hint(&self) -> String {
        match (&self.api_key_env, &self.api_key) {
            (Some(env), Some(_)) => format!("{env} is set; is it valid for this server?"),
            (Some(env), None) => format!("{env} is not set (export it, or put it in .env)"),
            (None, _) => format!(
                "provider `{}` has no api_key_env in config; add one naming the variable that holds the key",
                self.name
            ),
        }
    }
}

/// Where one request goes: a provider and a model on it.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: ProviderSettings,
    pub model: String,
}

impl Target {
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider.name, self.model)
    }
}

/// The primary target, its fallbacks, and what was noticed while choosing.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub primary: Target,
    pub fallbacks: Vec<Target>,
    pub warnings: Vec<String>,
}

/// Where a model choice came from; decides how unresolvable choices are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--model`: must resolve.
    Flag,
    /// The agent file: written for another tool, so an alias or provider that does not exist
    /// here is skipped with a warning.
    Agent,
    /// `DEPUTY_MODEL`.
    Env,
    /// `model` in config.
    Config,
}

impl LlmConfig {
    /// The providers configured, the one the environment defines (`openai`) included.
    pub fn provider_names(&self, env: &Env) -> Vec<String> {
        let mut names: Vec<String> = self.providers.keys().cloned().collect();
        for implicit in IMPLICIT {
            if implicit.defined_by(env) && !names.iter().any(|n| n == implicit.name) {
                names.push(implicit.name.into());
            }
        }
        names
    }

    fn default_provider(&self, env: &Env) -> Option<String> {
        if let Some(p) = &self.default_provider {
            return Some(p.clone());
        }
        if let Some((p, _)) = self.model.as_deref().and_then(|m| m.split_once('/'))
            && self.providers.contains_key(p)
        {
            return Some(p.to_string());
        }
        if let Some(implicit) = IMPLICIT.iter().find(|i| i.defined_by(env)) {
            return Some(implicit.name.into());
        }
        if self.providers.len() == 1 {
            return self.providers.keys().next().cloned();
        }
        self.providers.get("openai").map(|_| "openai".to_string())
    }

    /// The settled settings of provider `name`.
    pub fn provider(&self, name: &str, env: &Env) -> Result<ProviderSettings, LlmError> {
        let cfg = self.providers.get(name);
        let implicit = IMPLICIT.iter().find(|i| i.name == name);
        if cfg.is_none() && !implicit.is_some_and(|i| i.defined_by(env)) {
            return Err(LlmError::Config(format!(
                "provider `{name}` is not configured; add [providers.{name}] with a base_url to .deputy/config.toml"
            )));
        }
        let cfg = cfg.cloned().unwrap_or_default();
        let base_url = match implicit {
            Some(i) => env
                .get(i.base_url_env)
                .map(|u| i.normalize(u))
                .or(cfg.base_url.clone())
                .unwrap_or_else(|| i.base_url.to_string()),
            None => cfg.base_url.clone().ok_or_else(|| {
                LlmError::Config(format!("provider `{name}` has no base_url in config"))
            })?,
        };
        let api = cfg.api.or(implicit.map(|i| i.api)).unwrap_or_default();
        let api_key_env = cfg
            .api_key_env
            .clone()
            .or_else(|| implicit.map(|i| i.key_env.to_string()));
        let api_key = api_key_env
            .as_deref()
            .and_then(|k| env.get(k))
            .map(str::to_string);
        let defaults = ProviderSettings::new(name, base_url);
        let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
        Ok(ProviderSettings {
            api_key,
            api_key_env,
            headers: cfg.headers.into_iter().collect(),
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            max_tokens: cfg.max_tokens,
            parallel_tool_calls: cfg.parallel_tool_calls,
            stream: cfg.stream.unwrap_or(true),
            connect_timeout: ms(cfg.connect_timeout_ms, defaults.connect_timeout),
            request_timeout: ms(cfg.request_timeout_ms, defaults.request_timeout),
            idle_timeout: ms(cfg.idle_timeout_ms, defaults.idle_timeout),
            context_window: cfg.context_window.filter(|w| *w > 0),
            max_output_tokens: cfg.max_output_tokens.filter(|w| *w > 0),
            cache_control: cfg.cache_control.unwrap_or(api == Api::Anthropic),
            reasoning: (cfg.reasoning_effort.is_some() || cfg.thinking_budget.is_some()).then(
                || Reasoning {
                    effort: cfg.reasoning_effort.clone(),
                    budget_tokens: cfg.thinking_budget,
                },
            ),
            api,
            ..defaults
        })
    }

    /// Expand aliases (at most a few levels, so a cycle cannot hang).
    fn expand_alias(&self, name: &str) -> Option<String> {
        let mut current = name.to_string();
        let mut changed = false;
        for _ in 0..8 {
            match self.aliases.get(&current) {
                Some(next) if *next != current => {
                    current = next.clone();
                    changed = true;
                }
                _ => break,
            }
        }
        changed.then_some(current)
    }

    /// Whether `spec` names a reachable model strictly, as an agent file's `model` is read: a
    /// `provider/` prefix must be a configured provider (a model id with a `/` of the default
    /// provider is then written `provider/org/model`). Why not, when it does not.
    pub fn check_strict(&self, spec: &str, env: &Env) -> Result<(), String> {
        self.bare_target_for(spec, Source::Agent, env).map(|_| ())
    }

    /// Turn one model string into a target, with what `[models]` says of it.
    fn target_for(&self, spec: &str, source: Source, env: &Env) -> Result<Target, String> {
        let mut t = self.bare_target_for(spec, source, env)?;
        let full = format!("{}/{}", t.provider.name, t.model);
        if let Some(m) = self.models.get(&full).or_else(|| self.models.get(&t.model)) {
            if let Some(w) = m.context_window.filter(|w| *w > 0) {
                t.provider.context_window = Some(w);
            }
            if let Some(o) = m.max_output_tokens.filter(|o| *o > 0) {
                t.provider.max_output_tokens = Some(o);
            }
        }
        Ok(t)
    }

    /// Turn one model string into a target, or say why it cannot be one.
    fn bare_target_for(&self, spec: &str, source: Source, env: &Env) -> Result<Target, String> {
        let spec = spec.trim();
        let expanded = self.expand_alias(spec);
        let spec = expanded.as_deref().unwrap_or(spec);
        let providers = self.provider_names(env);
        if let Some((p, m)) = spec.split_once('/')
            && providers.iter().any(|n| n == p)
        {
            let provider = self.provider(p, env).map_err(|e| e.to_string())?;
            let model = if m.is_empty() {
                provider_model(self, p)
                    .ok_or_else(|| format!("provider `{p}` has no default model"))?
            } else {
                m.to_string()
            };
            return Ok(Target { provider, model });
        }
        if providers.iter().any(|n| n == spec) {
            // Just a provider name: its default model.
            let provider = self.provider(spec, env).map_err(|e| e.to_string())?;
            let model = provider_model(self, spec)
                .ok_or_else(|| format!("provider `{spec}` has no default `model` in config"))?;
            return Ok(Target { provider, model });
        }
        if source == Source::Agent {
            if expanded.is_none() && deputy_alias(spec) {
                return Err(format!(
                    "`{spec}` is an alias with no [aliases] entry in config"
                ));
            }
            if spec.contains('/') {
                let p = spec.split('/').next().unwrap_or_default();
                return Err(format!("no provider `{p}` is configured"));
            }
        }
        let default = self
            .default_provider(env)
            .ok_or_else(|| "no provider is configured".to_string())?;
        let provider = self.provider(&default, env).map_err(|e| e.to_string())?;
        Ok(Target {
            provider,
            model: spec.to_string(),
        })
    }

    /// Choose the target from candidates in priority order (flag, agent, env, config), then the
    /// default provider's own model. Fallbacks come from the chosen provider's `fallback` list
    /// and the global one.
    pub fn resolve(&self, candidates: &[(Source, &str)], env: &Env) -> Result<Resolved, LlmError> {
        let mut warnings = Vec::new();
        let mut chosen = None;
        let mut all: Vec<(Source, String)> = candidates
            .iter()
            .filter(|(_, s)| !s.trim().is_empty() && !s.trim().eq_ignore_ascii_case("inherit"))
            .map(|(src, s)| (*src, s.to_string()))
            .collect();
        // `OPENAI_MODEL` too, as other OpenAI-compatible tools read it.
        if let Some(m) = env.get("DEPUTY_MODEL").or_else(|| env.get("OPENAI_MODEL")) {
            all.push((Source::Env, m.to_string()));
        }
        if let Some(m) = &self.model {
            all.push((Source::Config, m.clone()));
        }
        for (source, spec) in &all {
            match self.target_for(spec, *source, env) {
                Ok(t) => {
                    chosen = Some(t);
                    break;
                }
                Err(why) if *source == Source::Agent => {
                    warnings.push(format!(
                        "the agent asks for model `{spec}`, but {why}; using the default model instead"
                    ));
                }
                Err(why) => {
                    return Err(LlmError::Config(format!(
                        "cannot use model `{spec}`: {why}"
                    )));
                }
            }
        }
        let primary = match chosen {
            Some(t) => t,
            None => {
                let provider = self
                    .default_provider(env)
                    .and_then(|p| provider_model(self, &p).map(|m| (p, m)));
                match provider {
                    Some((p, m)) => Target {
                        provider: self.provider(&p, env)?,
                        model: m,
                    },
                    None => return Err(LlmError::NoModel),
                }
            }
        };
        let mut fallbacks = Vec::new();
        let own = self
            .providers
            .get(&primary.provider.name)
            .map(|p| p.fallback.clone())
            .unwrap_or_default();
        for spec in own.iter().chain(self.fallback.iter()) {
            match self.target_for(spec, Source::Config, env) {
                Ok(t) if t.label() != primary.label() => fallbacks.push(t),
                Ok(_) => {}
                Err(why) => warnings.push(format!("fallback `{spec}` ignored: {why}")),
            }
        }
        Ok(Resolved {
            primary,
            fallbacks,
            warnings,
        })
    }

    /// Price of `model`: configured (as `provider/model`, then bare), else shipped for the
    /// common hosted models (see [`crate::catalog`]).
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        self.pricing
            .get(&format!("{provider}/{model}"))
            .or_else(|| self.pricing.get(model))
            .copied()
            .or_else(|| crate::catalog::known_price(model))
    }

    /// Cost in US dollars of `usage` on that model, if its price is configured.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        self.price(provider, model).map(|p| p.cost(usage))
    }
}

impl Price {
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage
            .cache_write_input_tokens
            .min(usage.input_tokens - cached);
        let fresh = usage.input_tokens - cached - written;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let write_price = self
            .cache_write_per_mtok
            .unwrap_or(self.input_per_mtok * 1.25);
        (fresh as f64 * self.input_per_mtok
            + cached as f64 * cached_price
            + written as f64 * write_price
            + usage.output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// The model used when only the provider is chosen: config's, else the implicit provider's.
fn provider_model(cfg: &LlmConfig, provider: &str) -> Option<String> {
    cfg.providers
        .get(provider)
        .and_then(|p| p.model.clone())
        .or_else(|| {
            IMPLICIT
                .iter()
                .find(|i| i.name == provider)
                .and_then(|i| i.model)
                .map(str::to_string)
        })
}

/// A provider the environment alone defines, as the vendors' own tools read it.
struct Implicit {
    name: &'static str,
    api: Api,
    base_url_env: &'static str,
    key_env: &'static str,
    base_url: &'static str,
    /// The model when nothing names one.
    model: Option<&'static str>,
}

/// In the order they become the default provider.
const IMPLICIT: &[Implicit] = &[
    Implicit {
        name: "openai",
        api: Api::Chat,
        base_url_env: "OPENAI_BASE_URL",
        key_env: "OPENAI_API_KEY",
        base_url: OPENAI_BASE_URL,
        model: None,
    },
    Implicit {
        name: "anthropic",
        api: Api::Anthropic,
        base_url_env: "ANTHROPIC_BASE_URL",
        key_env: "ANTHROPIC_API_KEY",
        base_url: ANTHROPIC_BASE_URL,
        model: Some("claude-sonnet-4-5"),
    },
];

impl Implicit {
    fn defined_by(&self, env: &Env) -> bool {
        env.get(self.base_url_env).is_some() || env.get(self.key_env).is_some()
    }

    /// `ANTHROPIC_BASE_URL` is written without `/v1` (as Claude Code reads it); deputy's base
    /// URLs end in the version.
    fn normalize(&self, url: &str) -> String {
        let url = url.trim_end_matches('/');
        if self.api == Api::Anthropic && !url.ends_with("/v1") {
            format!("{url}/v1")
        } else {
            url.to_string()
        }
    }
}

fn deputy_alias(s: &str) -> bool {
    matches!(s, "sonnet" | "opus" | "haiku" | "fast" | "smart")
}

#[cfg(test)]
mod tests;
