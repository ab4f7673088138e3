//! `webfetch`: GET one URL and give the model its content as markdown, text or HTML.
//!
//! Bounded every way a page can hurt: public addresses only (checked after DNS, on every
//! redirect, see [`crate::netguard`]), at most `max_redirects` redirects each checked against
//! the permission rules too, a body cap, a timeout, and no proxy from the environment (a proxy
//! would resolve names where deputy cannot check them).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, lenient_u64, parse_input, strict_schema,
};
use crate::error::ToolError;
use crate::netguard::{GuardedResolver, refusal, refused};

/// Whether a URL may be fetched; `Err` says why not.
pub type UrlCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the web tools may do (`[webfetch]` and `[websearch]` in config).
#[derive(Clone)]
pub struct WebSettings {
    /// Reach loopback, private and link-local addresses too.
    pub allow_private: bool,
    /// Hosts (`name`, `1.2.3.4`, `host:port`) that may be private although others may not:
    /// an intranet wiki, a docs server on this machine.
    pub allow_hosts: Vec<String>,
    /// The most of a body read, in bytes.
    pub max_bytes: u64,
    pub max_redirects: usize,
    /// The search API, when one is configured.
    pub search: Option<super::websearch::SearchSettings>,
    /// Whether the permission rules allow fetching a URL (asked for each redirect target).
    pub may_fetch: Option<UrlCheck>,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            allow_hosts: Vec::new(),
            max_bytes: 5 * 1024 * 1024,
            max_redirects: 5,
            search: None,
            may_fetch: None,
        }
    }
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("allow_private", &self.allow_private)
            .field("max_bytes", &self.max_bytes)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

/// `[webfetch]` in config.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebFetchConfig {
    pub allow_private: Option<bool>,
    pub allow_hosts: Option<Vec<String>>,
    pub max_bytes: Option<u64>,
    pub max_redirects: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Markdown,
    Text,
    Html,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WebFetchInput {
    /// The http:// or https:// URL to fetch.
    pub url: String,
    /// How to return the content: markdown (default), text or html.
    #[serde(default)]
    pub format: Option<Format>,
    /// Seconds to wait at most (default 30, at most 120).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub timeout: Option<u64>,
}

pub struct WebFetchTool;

const DEFAULT_TIMEOUT: u64 = 30;
const MAX_TIMEOUT: u64 = 120;
/// The most of a page handed to the model (the context layer may cut it further).
const MAX_SHOWN: usize = 100 * 1024;

const DESCRIPTION: &str = "Fetch a web page or file over HTTP(S) and return its content: HTML as markdown (default), plain text or raw HTML; text and JSON as they are. Only public addresses can be reached. Use it to read documentation or an issue the task links to; it does not run JavaScript.";

impl Tool for WebFetchTool {
    fn name(&self) -> &'static str {
        "webfetch"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<WebFetchInput>()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        let input: WebFetchInput = parse_input("webfetch", input)?;
        let url = check_url(&input.url, &ctx.web).map_err(ToolError::InvalidInput)?;
        let format = input.format.unwrap_or_default();
        let timeout = Duration::from_secs(
            input
                .timeout
                .unwrap_or(DEFAULT_TIMEOUT)
                .clamp(1, MAX_TIMEOUT),
        );
        Ok(Prepared::new(
            Access::Network(url.to_string()),
            move |ctx| async move {
                match fetch(&ctx.web, url, format, timeout).await {
                    Ok(out) => out,
                    Err(e) => ToolOutput::error(e),
                }
            },
        ))
    }
}

impl WebSettings {
    /// Whether `host` (with `port`, when known) may be a private address.
    pub fn private_ok(&self, host: &str, port: Option<u16>) -> bool {
        self.allow_private
            || self.allow_hosts.iter().any(|h| {
                let h = h.trim().to_ascii_lowercase();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                match (h.rsplit_once(':'), port) {
                    (Some((hh, p)), Some(port)) if !hh.contains(':') || hh.ends_with(']') => {
                        hh.trim_start_matches('[').trim_end_matches(']') == host
                            && p == port.to_string()
                    }
                    (Some((hh, _)), None) if !hh.contains(':') => hh == host,
                    _ => h.trim_start_matches('[').trim_end_matches(']') == host,
                }
            })
    }
}

/// Parse and check a URL before anything is sent: the scheme, and a literal address.
pub fn check_url(raw: &str, web: &WebSettings) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| format!("`{raw}` is not a URL ({e}); give a full http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http:// and https:// URLs can be fetched, not {}:",
            url.scheme()
        ));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        Some(url::Host::Domain(d))
            if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
        {
            Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        Some(url::Host::Domain(_)) => None,
        None => return Err(format!("`{raw}` has no host")),
    };
    if let Some(ip) = ip
        && let Some(why) = refused(ip)
        && !web.private_ok(url.host_str().unwrap_or(""), url.port_or_known_default())
    {
        return Err(refusal(url.host_str().unwrap_or(""), ip, why));
    }
    Ok(url)
}

/// Every cause in an error chain, joined (reqwest hides the resolver's message in a source).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// A client builder for the web tools, with the process's TLS provider in place (a library
/// user may not have installed one; reqwest panics without it).
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    // Err means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

async fn fetch(
    web: &WebSettings,
    start: reqwest::Url,
    format: Format,
    timeout: Duration,
) -> Result<ToolOutput, String> {
    let started = std::time::Instant::now();
    let mut b = client_builder()
        .dns_resolver(Arc::new(GuardedResolver {
            web: Arc::new(web.clone()),
        }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .user_agent(concat!("deputy/", env!("CARGO_PKG_VERSION"), " (webfetch)"));
    if start.scheme() == "http" {
        b = b.tls_certs_only(Vec::new());
    }
    let client = b
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let accept = match format {
        Format::Markdown | Format::Html => {
            "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5"
        }
        Format::Text => "text/plain,text/html;q=0.9,*/*;q=0.5",
    };
    let mut url = start.clone();
    let mut hops = 0;
    let resp = loop {
        let resp = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("{url} did not answer within {} s", timeout.as_secs())
                } else {
                    format!("cannot fetch {url}: {}", chain(&e))
                }
            })?;
        if !resp.status().is_redirection() {
            break resp;
        }
        let Some(location) = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
        else {
            break resp;
        };
        hops += 1;
        if hops > web.max_redirects {
            return Err(format!(
                "{start} redirected more than {} times; stopped at {url}",
                web.max_redirects
            ));
        }
        let next = url
            .join(location)
            .map_err(|e| format!("{url} redirected to an invalid URL `{location}`: {e}"))?;
        let next = check_url(next.as_str(), web)
            .map_err(|e| format!("{url} redirected to {next}, which is refused: {e}"))?;
        if let Some(may) = &web.may_fetch {
            may(next.as_str())
                .map_err(|e| format!("{url} redirected to {next}, which is refused: {e}"))?;
        }
        url = next;
    };
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if let Some(len) = resp.content_length()
        && len > web.max_bytes
    {
        return Err(format!(
            "{url} is {len} bytes, over the {}-byte limit ([webfetch] max_bytes)",
            web.max_bytes
        ));
    }
    let mut body: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is_timeout() {
                format!("{url} did not finish within {} s", timeout.as_secs())
            } else {
                format!("reading {url} failed: {}", chain(&e))
            }
        })?;
        let room = (web.max_bytes as usize).saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let bytes = body.len();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        return Err(format!("{url} answered HTTP {status}: {}", text.trim()));
    }
    let textual = content_type.is_empty()
        || content_type.starts_with("text/")
        || ["json", "xml", "javascript", "yaml", "toml", "csv"]
            .iter()
            .any(|t| content_type.contains(t));
    if !textual {
        return Err(format!(
            "{url} is {content_type} ({bytes} bytes), which webfetch does not show; only text, HTML and JSON are read"
        ));
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let is_html = content_type.contains("html")
        || (content_type.is_empty() && text.trim_start().starts_with('<'));
    let mut content = match (is_html, format) {
        (true, Format::Markdown) => super::html::to_markdown(&text)?,
        (true, Format::Text) => super::html::to_text(&text)?,
        _ => text,
    };
    let mut notes = Vec::new();
    if cut {
        notes.push(format!(
            "the body was cut at {} bytes ([webfetch] max_bytes)",
            web.max_bytes
        ));
    }
    if content.len() > MAX_SHOWN {
        let mut at = MAX_SHOWN;
        while !content.is_char_boundary(at) {
            at -= 1;
        }
        notes.push(format!(
            "showing the first {} KiB of {} KiB",
            MAX_SHOWN / 1024,
            content.len() / 1024
        ));
        content.truncate(at);
    }
    if !notes.is_empty() {
        content.push_str(&format!("\n\n[{}]", notes.join("; ")));
    }
    Ok(ToolOutput::ok(
        content,
        json!({
            "url": url.as_str(),
            "status": status.as_u16(),
            "content_type": content_type,
            "bytes": bytes,
            "truncated": cut,
            "redirects": hops,
            "duration_ms": started.elapsed().as_millis() as u64,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_checked_before_sending() {
        let web = WebSettings::default();
        assert!(check_url("https://docs.rs/x", &web).is_ok());
        for (bad, want) in [
            ("file:///etc/passwd", "only http"),
            ("http://127.0.0.1:8080/", "loopback"),
            ("http://localhost/", "loopback"),
            ("http://[::1]/", "loopback"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://10.0.0.1/", "private"),
            ("http://2130706433/", "loopback"),
            ("http://0x7f.1/", "loopback"),
            ("not a url", "not a URL"),
        ] {
            let e = check_url(bad, &web).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let open = WebSettings {
            allow_private: true,
            ..Default::default()
        };
        assert!(check_url("http://127.0.0.1:8080/", &open).is_ok());
        let one = WebSettings {
            allow_hosts: vec!["127.0.0.1:8080".into(), "wiki.corp".into()],
            ..Default::default()
        };
        assert!(check_url("http://127.0.0.1:8080/", &one).is_ok());
        assert!(check_url("http://127.0.0.1:8081/", &one).is_err());
        assert!(check_url("http://localhost:8080/", &one).is_err());
        assert!(one.private_ok("wiki.corp", None) && one.private_ok("wiki.corp", Some(443)));
    }
}
