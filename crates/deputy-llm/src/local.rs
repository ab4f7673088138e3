//! Model servers on this machine: found on their usual ports when nothing is configured.

use crate::config::Env;

/// A local OpenAI-compatible server found on its usual port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalServer {
    /// Ollama, llama.cpp, LM Studio, vLLM.
    pub name: &'static str,
    pub base_url: String,
    /// The first model it lists.
    pub model: String,
}

/// The usual ports of local model servers, in the order they are preferred.
pub const LOCAL_SERVERS: &[(&str, u16)] = &[
    ("Ollama", 11434),
    ("llama.cpp", 8080),
    ("LM Studio", 1234),
    ("vLLM", 8000),
];

/// Environment variable naming the ports of 127.0.0.1 to look for a local model server on
/// (comma-separated; empty or `none`: do not look), instead of [`LOCAL_SERVERS`].
pub const LOCAL_PORTS_ENV: &str = "DEPUTY_LOCAL_PORTS";

/// The local servers to look for: [`LOCAL_SERVERS`], or the ports `DEPUTY_LOCAL_PORTS` names.
/// `Err` names a value that is not a port list.
pub fn local_servers(env: &Env) -> Result<Vec<(&'static str, u16)>, String> {
    let Some(list) = env.0.get(LOCAL_PORTS_ENV) else {
        return Ok(LOCAL_SERVERS.to_vec());
    };
    let list = list.trim();
    if list.is_empty() || list.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map(|port| ("local server", port))
                .map_err(|_| {
                    format!("{LOCAL_PORTS_ENV}={list}: `{p}` is not a port (a comma-separated list of ports, or `none`)")
                })
        })
        .collect()
}

/// Look for a local model server (`GET /v1/models` on each of `servers`' ports of 127.0.0.1,
/// all at once, each with a short timeout). Used only when no model is configured.
pub async fn discover_local(
    servers: &[(&'static str, u16)],
    timeout: std::time::Duration,
) -> Option<LocalServer> {
    if servers.is_empty() {
        return None;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(Vec::new()) // loopback HTTP only: no roots to load
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .ok()?;
    let probes = servers.iter().map(|(name, port)| {
        let client = client.clone();
        async move {
            let base_url = format!("http://127.0.0.1:{port}/v1");
            let resp = client.get(format!("{base_url}/models")).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.ok()?).ok()?;
            let model = body
                .get("data")
                .and_then(|d| d.as_array())
                .and_then(|d| d.first())
                .and_then(|m| m.get("id"))
                .and_then(|id| id.as_str())?
                .to_string();
            Some(LocalServer {
                name,
                base_url,
                model,
            })
        }
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .next()
}
