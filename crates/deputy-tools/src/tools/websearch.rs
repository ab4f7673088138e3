//! `websearch`: a query through the search API the user configured (`[websearch]`): SearXNG
//! (self-hosted, JSON API), Brave Search or Tavily. Without one the tool is not offered.
//!
//! The endpoint is the user's own choice (a SearXNG instance on their network is the common
//! case), so it is not held to webfetch's public-address rule; the API key comes from an
//! environment variable named in config, never from a file.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, lenient_u64, parse_input, strict_schema,
};
use crate::error::ToolError;

/// A configured search API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchSettings {
    pub provider: Provider,
    /// The API's base URL (SearXNG: the instance; others have a default).
    pub url: String,
    /// The key, read from the environment variable `api_key_env` when config was read.
    pub api_key: Option<String>,
    pub max_results: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Searxng,
    Brave,
    Tavily,
}

/// `[websearch]` in config.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebSearchConfig {
    pub provider: Option<Provider>,
    pub url: Option<String>,
    pub api_key_env: Option<String>,
    pub max_results: Option<usize>,
}

impl WebSearchConfig {
    /// The settings, when a provider is configured; `Err` names what is missing.
    pub fn resolve(&self) -> Result<Option<SearchSettings>, String> {
        let Some(provider) = self.provider else {
            if self.url.is_some() || self.api_key_env.is_some() {
                return Err("[websearch] needs `provider` (searxng, brave or tavily)".into());
            }
            return Ok(None);
        };
        let url = match (provider, &self.url) {
            (_, Some(u)) => u.trim_end_matches('/').to_string(),
            (Provider::Brave, None) => "https://api.search.brave.com/res/v1/web/search".into(),
            (Provider::Tavily, None) => "https://api.tavily.com/search".into(),
            (Provider::Searxng, None) => {
                return Err(
                    "[websearch] provider = \"searxng\" needs `url`, the instance's address".into(),
                );
            }
        };
        let api_key = match &self.api_key_env {
            Some(var) => {
                Some(std::env::var(var).map_err(|_| {
                    format!("[websearch] api_key_env names {var}, which is not set")
                })?)
            }
            None if provider != Provider::Searxng => {
                return Err(format!(
                    "[websearch] provider = \"{}\" needs `api_key_env`, the variable holding its key",
                    match provider {
                        Provider::Brave => "brave",
                        _ => "tavily",
                    }
                ));
            }
            None => None,
        };
        Ok(Some(SearchSettings {
            provider,
            url,
            api_key,
            max_results: self.max_results.unwrap_or(8).clamp(1, 20),
        }))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WebSearchInput {
    /// What to search for.
    pub query: String,
    /// How many results (default from config, at most 20).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_results: Option<u64>,
}

pub struct WebSearchTool;

const DESCRIPTION: &str =
    "Search the web and get back titles, URLs and snippets. Use webfetch on a result to read it.";

impl Tool for WebSearchTool {
    fn name(&self) -> &'static str {
        "websearch"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<WebSearchInput>()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        let input: WebSearchInput = parse_input("websearch", input)?;
        let query = input.query.trim().to_string();
        if query.is_empty() {
            return Err(ToolError::InvalidInput("the query is empty".into()));
        }
        let Some(settings) = ctx.web.search.clone() else {
            return Err(ToolError::Failed(
                "no search API is configured ([websearch] in config)".into(),
            ));
        };
        let n = input
            .max_results
            .map(|n| n.clamp(1, 20) as usize)
            .unwrap_or(settings.max_results);
        Ok(Prepared::new(
            Access::Network(query.clone()),
            move |_ctx| async move {
                match search(&settings, &query, n).await {
                    Ok(out) => out,
                    Err(e) => ToolOutput::error(e),
                }
            },
        ))
    }
}

async fn search(s: &SearchSettings, query: &str, n: usize) -> Result<ToolOutput, String> {
    let mut b = super::webfetch::client_builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!(
            "deputy/",
            env!("CARGO_PKG_VERSION"),
            " (websearch)"
        ));
    if s.url.starts_with("http://") {
        b = b.tls_certs_only(Vec::new());
    }
    let client = b
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let with_query = |base: &str, pairs: &[(&str, &str)]| -> Result<reqwest::Url, String> {
        let mut u = reqwest::Url::parse(base)
            .map_err(|e| format!("[websearch] url `{base}` is not a URL: {e}"))?;
        u.query_pairs_mut().extend_pairs(pairs);
        Ok(u)
    };
    let count = n.to_string();
    let req = match s.provider {
        Provider::Searxng => client.get(with_query(
            &format!("{}/search", s.url),
            &[("q", query), ("format", "json")],
        )?),
        Provider::Brave => client
            .get(with_query(&s.url, &[("q", query), ("count", &count)])?)
            .header(
                "X-Subscription-Token",
                s.api_key.clone().unwrap_or_default(),
            ),
        Provider::Tavily => client
            .post(&s.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({"api_key": s.api_key, "query": query, "max_results": n}).to_string()),
    };
    let req = match (&s.api_key, s.provider) {
        (Some(k), Provider::Searxng) => req.bearer_auth(k),
        _ => req,
    };
    let resp = req
        .send()
        .await
        .map_err(|e| format!("the search API did not answer: {e}"))?;
    let status = resp.status();
    let body: Value = if status.is_success() {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the search API's answer failed: {e}"))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("the search API's answer is not JSON: {e}"))?
    } else {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!(
            "the search API answered HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    };
    let items = match s.provider {
        Provider::Searxng | Provider::Tavily => body["results"].as_array(),
        Provider::Brave => body["web"]["results"].as_array(),
    };
    let results: Vec<(String, String, String)> = items
        .into_iter()
        .flatten()
        .take(n)
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("").trim().to_string();
            let snippet = match s.provider {
                Provider::Brave => text("description"),
                _ => text("content"),
            };
            (text("title"), text("url"), snippet)
        })
        .collect();
    if results.is_empty() {
        return Ok(ToolOutput::ok(
            format!("No results for \"{query}\"."),
            json!({"results": 0}),
        ));
    }
    let content = results
        .iter()
        .enumerate()
        .map(|(i, (t, u, sn))| format!("{}. {t}\n   {u}\n   {sn}", i + 1))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(ToolOutput::ok(content, json!({"results": results.len()})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_needs_what_each_provider_needs() {
        let c = WebSearchConfig::default();
        assert_eq!(c.resolve().unwrap(), None);
        let c = WebSearchConfig {
            provider: Some(Provider::Searxng),
            ..Default::default()
        };
        assert!(c.resolve().unwrap_err().contains("needs `url`"));
        let c = WebSearchConfig {
            provider: Some(Provider::Brave),
            ..Default::default()
        };
        assert!(c.resolve().unwrap_err().contains("api_key_env"));
        let c = WebSearchConfig {
            provider: Some(Provider::Searxng),
            url: Some("http://127.0.0.1:8888/".into()),
            ..Default::default()
        };
        assert_eq!(c.resolve().unwrap().unwrap().url, "http://127.0.0.1:8888");
    }
}
