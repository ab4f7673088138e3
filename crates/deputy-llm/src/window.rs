//! The context window of a model: how many tokens one request (prompt and answer) may hold,
//! and how many of them the answer may take.
//!
//! Where it comes from, first found wins: the config (`context_window` of the provider, or of
//! the model under `[models."provider/model"]`); the server, asked once (vLLM and OpenRouter
//! and LM Studio list it in `/v1/models`, llama.cpp in `/props`, Ollama in `/api/ps` for a
//! loaded model, else `/api/show`); the
//! table shipped for common hosted models ([`crate::catalog`]); else [`DEFAULT_WINDOW`], with
//! a warning naming the config key.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::{ProviderSettings, Target};

/// The window assumed when nothing says: the usual context of a local model server.
pub const DEFAULT_WINDOW: u64 = 32_768;

/// How long the server may take to say its window.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a window figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowSource {
    Config,
    Server,
    Table,
    /// A context-overflow error named it.
    Error,
    /// Nothing said; [`DEFAULT_WINDOW`].
    Assumed,
}

/// A model's context window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextWindow {
    /// Tokens one request may hold, prompt and answer together.
    pub tokens: u64,
    /// The most tokens an answer may have, when known.
    pub max_output: Option<u64>,
    pub source: WindowSource,
}

impl ContextWindow {
    /// The window assumed when nothing says.
    pub fn assumed() -> Self {
        Self {
            tokens: DEFAULT_WINDOW,
            max_output: None,
            source: WindowSource::Assumed,
        }
    }
}

/// The root of a server whose API is under `base_url` (`http://h:11434/v1` → `http://h:11434`).
fn server_root(base_url: &str) -> &str {
    base_url
        .trim_end_matches('/')
        .strip_suffix("/v1")
        .unwrap_or(base_url)
}

fn get_u64(v: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter()
        .find_map(|k| v.pointer(k).and_then(Value::as_u64))
        .filter(|n| *n > 0)
}

/// What a server told: its window, and the output limit when it says one.
pub type Told = (u64, Option<u64>);

/// The window the entry of `/v1/models` gives for `model`.
pub fn from_models_list(body: &Value, model: &str) -> Option<Told> {
    let entry = body
        .get("data")
        .and_then(Value::as_array)?
        .iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(model))?;
    let window = get_u64(
        entry,
        &[
            "/max_model_len",
            "/context_length",
            "/context_window",
            "/max_context_length",
            "/top_provider/context_length",
            "/meta/n_ctx_train",
        ],
    )?;
    let out = get_u64(
        entry,
        &["/top_provider/max_completion_tokens", "/max_output_tokens"],
    );
    Some((window, out))
}

/// llama.cpp's `/props`: the context the server was started with.
pub fn from_llama_props(body: &Value) -> Option<u64> {
    get_u64(body, &["/default_generation_settings/n_ctx", "/n_ctx"])
}

/// Ollama's context when nothing sets it: it depends on the server's VRAM (4k below 24 GiB,
/// more above), which deputy cannot see, so the smallest is assumed. Ollama cuts a longer
/// prompt silently (from the front, system prompt included) rather than refusing it, so an
/// assumption too large would lose the task without any error to recover from.
pub const OLLAMA_DEFAULT_CONTEXT: u64 = 4096;

/// Ollama's `/api/show`: the model's context length, capped by the `num_ctx` its parameters
/// set, else by Ollama's default context (see [`OLLAMA_DEFAULT_CONTEXT`]).
pub fn from_ollama_show(body: &Value) -> Option<u64> {
    let trained = body
        .get("model_info")
        .and_then(Value::as_object)?
        .iter()
        .find(|(k, _)| k.ends_with(".context_length"))
        .and_then(|(_, v)| v.as_u64());
    let num_ctx = body
        .get("parameters")
        .and_then(Value::as_str)
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("num_ctx"))
                    .then(|| w.next()?.parse::<u64>().ok())
                    .flatten()
            })
        });
    match (trained, num_ctx) {
        (Some(t), Some(n)) => Some(t.min(n)),
        (None, Some(n)) => Some(n),
        (Some(t), None) => Some(t.min(OLLAMA_DEFAULT_CONTEXT)),
        (None, None) => None,
    }
    .filter(|n| *n > 0)
}

/// Ollama's `/api/ps`: the context the loaded `model` really runs with (`OLLAMA_CONTEXT_LENGTH`
/// and the VRAM default included), when it is loaded.
pub fn from_ollama_ps(body: &Value, model: &str) -> Option<u64> {
    let wanted = |name: &str| name == model || name.strip_suffix(":latest") == Some(model);
    body.get("models")?
        .as_array()?
        .iter()
        .find(|m| {
            ["name", "model"]
                .iter()
                .any(|k| m.get(*k).and_then(Value::as_str).is_some_and(wanted))
        })
        .and_then(|m| m.get("context_length")?.as_u64())
        .filter(|n| *n > 0)
}

/// Ask the server at `provider` for `model`'s window: `/v1/models`, then llama.cpp's `/props`,
/// then Ollama's `/api/show`. `None` when none of them says.
pub async fn ask_server(
    http: &reqwest::Client,
    provider: &ProviderSettings,
    model: &str,
) -> Option<Told> {
    let auth = |r: reqwest::RequestBuilder| {
        let mut r = r.timeout(ASK_TIMEOUT);
        for (name, value) in crate::protocol::auth_headers(provider) {
            r = r.header(name, value);
        }
        for (name, value) in &provider.headers {
            r = r.header(name, value);
        }
        r
    };
    let json = |r: reqwest::RequestBuilder| async move {
        let resp = r.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let bytes = resp.bytes().await.ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    let base = provider.base_url.trim_end_matches('/');
    if let Some(body) = json(auth(http.get(format!("{base}/models")))).await
        && let Some(w) = from_models_list(&body, model)
    {
        return Some(w);
    }
    // llama.cpp's and Ollama's own endpoints are not Anthropic's.
    if provider.api == crate::types::Api::Anthropic {
        return None;
    }
    let root = server_root(base);
    if let Some(body) = json(auth(http.get(format!("{root}/props")))).await
        && let Some(n) = from_llama_props(&body)
    {
        return Some((n, None));
    }
    let show = http
        .post(format!("{root}/api/show"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "model": model }).to_string());
    let shown = json(auth(show)).await.and_then(|b| from_ollama_show(&b))?;
    // It is Ollama: what the loaded model runs with is the truth, when it is loaded.
    let running = json(auth(http.get(format!("{root}/api/ps"))))
        .await
        .and_then(|b| from_ollama_ps(&b, model));
    Some((running.unwrap_or(shown), None))
}

/// Windows the servers of this process said, by `base_url model`: asked once per process, not
/// once per session (an MCP server or a parent with subagents opens many).
static ASKED: std::sync::OnceLock<Mutex<HashMap<String, Option<Told>>>> =
    std::sync::OnceLock::new();

/// Config, then the server, then the shipped table, then the assumed default.
pub(crate) async fn window_of(http: &reqwest::Client, t: &Target) -> ContextWindow {
    let p = &t.provider;
    let table = crate::catalog::known_window(&t.model);
    if let Some(tokens) = p.context_window {
        return ContextWindow {
            tokens,
            max_output: p.max_output_tokens.or(table.map(|(_, o)| o)),
            source: WindowSource::Config,
        };
    }
    let key = format!("{} {}", p.base_url, t.model);
    let cache = ASKED.get_or_init(Mutex::default);
    let cached = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    let asked = match cached {
        Some(a) => a,
        None => {
            // Asked in an earlier run (and kept), else asked now and kept.
            let a = match crate::window_cache::recall(&p.base_url, &t.model) {
                Some(a) => a,
                None => {
                    let a = ask_server(http, p, &t.model).await;
                    crate::window_cache::keep(&p.base_url, &t.model, a);
                    a
                }
            };
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, a);
            a
        }
    };
    if let Some((tokens, out)) = asked {
        return ContextWindow {
            tokens,
            max_output: p.max_output_tokens.or(out).or(table.map(|(_, o)| o)),
            source: WindowSource::Server,
        };
    }
    if let Some((tokens, out)) = table {
        return ContextWindow {
            tokens,
            max_output: p.max_output_tokens.or(Some(out)),
            source: WindowSource::Table,
        };
    }
    ContextWindow {
        max_output: p.max_output_tokens,
        ..ContextWindow::assumed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_each_server_says() {
        let vllm = json!({"data": [{"id": "qwen", "max_model_len": 32768}]});
        assert_eq!(from_models_list(&vllm, "qwen"), Some((32768, None)));
        assert_eq!(from_models_list(&vllm, "other"), None);
        let openrouter = json!({"data": [{"id": "anthropic/claude-sonnet-4.5", "context_length": 1000000,
            "top_provider": {"context_length": 1000000, "max_completion_tokens": 64000}}]});
        assert_eq!(
            from_models_list(&openrouter, "anthropic/claude-sonnet-4.5"),
            Some((1_000_000, Some(64_000)))
        );
        let lmstudio = json!({"data": [{"id": "m", "max_context_length": 8192}]});
        assert_eq!(from_models_list(&lmstudio, "m"), Some((8192, None)));
        let openai = json!({"data": [{"id": "gpt-4o", "object": "model"}]});
        assert_eq!(from_models_list(&openai, "gpt-4o"), None);

        assert_eq!(
            from_llama_props(&json!({"default_generation_settings": {"n_ctx": 4096}})),
            Some(4096)
        );
        let ollama = json!({"model_info": {"qwen3.context_length": 40960},
            "parameters": "temperature 0.6\nnum_ctx 8192"});
        assert_eq!(from_ollama_show(&ollama), Some(8192));
        // No num_ctx: Ollama runs with its default context, not the model's 131072.
        let ollama = json!({"model_info": {"llama.context_length": 131072}});
        assert_eq!(from_ollama_show(&ollama), Some(OLLAMA_DEFAULT_CONTEXT));
        let ps = json!({"models": [{"name": "qwen3:8b", "model": "qwen3:8b", "context_length": 32768},
            {"name": "llama3.2:latest", "context_length": 8192}]});
        assert_eq!(from_ollama_ps(&ps, "qwen3:8b"), Some(32768));
        assert_eq!(from_ollama_ps(&ps, "llama3.2"), Some(8192));
        assert_eq!(from_ollama_ps(&ps, "mistral"), None);
        assert_eq!(
            server_root("http://127.0.0.1:11434/v1"),
            "http://127.0.0.1:11434"
        );
        assert_eq!(
            server_root("https://openrouter.ai/api/v1/"),
            "https://openrouter.ai/api"
        );
    }
}
