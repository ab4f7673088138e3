//! MCP servers an agent (or config) declares, in any format's spelling.
//!
//! Claude Code writes `mcpServers: {name: {command, args, env}}` or `{type: http, url, headers}`;
//! opencode writes `mcp: {name: {type: local, command: [..], environment}}` or `{type: remote,
//! url, headers}`; deputy's config `[mcp.servers.NAME]` takes either spelling plus `enabled`,
//! `timeout`, `tool_timeout`, `headers_env` and `bearer_token_env`. All become one
//! [`McpServer`]. Nothing here starts anything: the runtime decides whether a declaration is
//! trusted enough to run.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::load::{duration_from_secs, parse_duration_secs};

/// How a server is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum McpTransport {
    /// A program speaking MCP over its stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Passed to the server as written (`${VAR}` expanded from deputy's environment by
        /// the runtime); nothing else of deputy's environment but `PATH` and `HOME`.
        env: IndexMap<String, String>,
    },
    /// Streamable HTTP.
    Http {
        url: String,
        /// Sent as written (`${VAR}` expanded by the runtime).
        headers: IndexMap<String, String>,
        /// Header → the environment variable holding its value (a secret kept out of files).
        headers_env: IndexMap<String, String>,
        /// The environment variable holding a bearer token (`Authorization: Bearer …`).
        bearer_token_env: Option<String>,
    },
}

/// One declared server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpServer {
    pub transport: McpTransport,
    pub enabled: bool,
    /// Limit for starting the server and listing its tools.
    pub timeout: Option<Duration>,
    /// Limit for one tool call.
    pub tool_timeout: Option<Duration>,
}

/// How a bare number is read in `timeout`: opencode writes milliseconds, the others seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberUnit {
    Seconds,
    Millis,
}

/// A server name deputy can put in a tool name: `mcp__NAME__tool` must stay parseable.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parse a map of server declarations. Each error names the server and the key.
pub fn parse_servers(
    value: &Value,
    unit: NumberUnit,
) -> (IndexMap<String, McpServer>, Vec<String>) {
    let mut servers = IndexMap::new();
    let mut errors = Vec::new();
    let Value::Object(map) = value else {
        errors.push("must be a map of server name → declaration".to_string());
        return (servers, errors);
    };
    for (name, decl) in map {
        if !valid_server_name(name) {
            errors.push(format!(
                "server `{name}`: a name may hold only letters, digits, `-` and single `_`"
            ));
            continue;
        }
        match parse_server(decl, unit) {
            Ok(s) => {
                servers.insert(name.clone(), s);
            }
            Err(e) => errors.push(format!("server `{name}`: {e}")),
        }
    }
    (servers, errors)
}

const KEYS: &[&str] = &[
    "type",
    "command",
    "args",
    "env",
    "environment",
    "url",
    "headers",
    "headers_env",
    "bearer_token_env",
    "enabled",
    "disabled",
    "timeout",
    "tool_timeout",
];

/// Parse one declaration.
pub fn parse_server(value: &Value, unit: NumberUnit) -> Result<McpServer, String> {
    let Value::Object(map) = value else {
        return Err("must be a map with `command` (stdio) or `url` (HTTP)".into());
    };
    if let Some(k) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{k}`; the keys are {}",
            KEYS.join(", ")
        ));
    }
    let kind = match map.get("type") {
        None => None,
        Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
        Some(_) => return Err("`type` must be a string".into()),
    };
    let transport = match kind.as_deref() {
        Some("sse") => {
            return Err(
                "the legacy SSE transport is not supported; use the server's streamable HTTP \
                 endpoint (`type: http`)"
                    .into(),
            );
        }
        Some("stdio" | "local") => stdio(map)?,
        Some("http" | "remote" | "streamable-http" | "streamable_http") => http(map)?,
        Some(other) => {
            return Err(format!(
                "`type: {other}` is not one of stdio, local, http, remote"
            ));
        }
        None if map.contains_key("url") => http(map)?,
        None if map.contains_key("command") => stdio(map)?,
        None => return Err("needs `command` (a stdio server) or `url` (an HTTP server)".into()),
    };
    let mut enabled = bool_key(map, "enabled")?.unwrap_or(true);
    if bool_key(map, "disabled")? == Some(true) {
        enabled = false;
    }
    Ok(McpServer {
        transport,
        enabled,
        timeout: duration_key(map, "timeout", unit)?,
        tool_timeout: duration_key(map, "tool_timeout", unit)?,
    })
}

type Map = serde_json::Map<String, Value>;

fn stdio(map: &Map) -> Result<McpTransport, String> {
    let mut words = match map.get("command") {
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.trim().to_string()],
        Some(Value::Array(a)) if !a.is_empty() => strings(a, "command")?,
        _ => return Err("`command` must be a program name or a non-empty list".into()),
    };
    if let Some(v) = map.get("args") {
        match v {
            Value::Array(a) => words.extend(strings(a, "args")?),
            _ => return Err("`args` must be a list of strings".into()),
        }
    }
    let command = words.remove(0);
    let env = match (map.get("env"), map.get("environment")) {
        (Some(_), Some(_)) => return Err("give `env` or `environment`, not both".into()),
        (Some(v), None) => string_map(v, "env")?,
        (None, Some(v)) => string_map(v, "environment")?,
        (None, None) => IndexMap::new(),
    };
    if map.contains_key("url") {
        return Err("a stdio server has `command`, not `url`".into());
    }
    Ok(McpTransport::Stdio {
        command,
        args: words,
        env,
    })
}

fn http(map: &Map) -> Result<McpTransport, String> {
    let url = match map.get("url") {
        Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => {
            s.clone()
        }
        Some(Value::String(s)) => {
            return Err(format!(
                "`url` must start with http:// or https://, found `{s}`"
            ));
        }
        _ => return Err("an HTTP server needs `url`".into()),
    };
    if map.contains_key("command") {
        return Err("an HTTP server has `url`, not `command`".into());
    }
    let bearer_token_env = match map.get("bearer_token_env") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err("`bearer_token_env` must name an environment variable".into()),
    };
    Ok(McpTransport::Http {
        url,
        headers: map
            .get("headers")
            .map(|v| string_map(v, "headers"))
            .transpose()?
            .unwrap_or_default(),
        headers_env: map
            .get("headers_env")
            .map(|v| string_map(v, "headers_env"))
            .transpose()?
            .unwrap_or_default(),
        bearer_token_env,
    })
}

fn strings(a: &[Value], key: &str) -> Result<Vec<String>, String> {
    a.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!("`{key}` must hold only strings")),
        })
        .collect()
}

fn string_map(v: &Value, key: &str) -> Result<IndexMap<String, String>, String> {
    let Value::Object(m) = v else {
        return Err(format!("`{key}` must be a map of names to strings"));
    };
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(n) => Ok((k.clone(), n.to_string())),
            Value::Bool(b) => Ok((k.clone(), b.to_string())),
            _ => Err(format!("`{key}.{k}` must be a string")),
        })
        .collect()
}

fn bool_key(map: &Map, key: &str) -> Result<Option<bool>, String> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`{key}` must be true or false")),
    }
}

fn duration_key(map: &Map, key: &str, unit: NumberUnit) -> Result<Option<Duration>, String> {
    let secs = match map.get(key) {
        None => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(|n| match unit {
            NumberUnit::Seconds => n,
            NumberUnit::Millis => n / 1000.0,
        }),
        Some(Value::String(s)) => parse_duration_secs(s),
        Some(_) => None,
    };
    secs.and_then(duration_from_secs).map(Some).ok_or_else(|| {
        format!(
            "`{key}` must be a positive duration ({}, or a string such as \"30s\")",
            match unit {
                NumberUnit::Seconds => "a number of seconds",
                NumberUnit::Millis => "a number of milliseconds",
            }
        )
    })
}

/// The server a tool name `mcp__SERVER__TOOL` (or `mcp__SERVER`) belongs to.
pub fn mcp_server_of(tool: &str) -> Option<&str> {
    let rest = tool.strip_prefix("mcp__")?;
    let server = rest.split("__").next().unwrap_or(rest);
    (!server.is_empty()).then_some(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claude_code_shapes() {
        let (s, e) = parse_servers(
            &json!({
                "github": {"command": "npx", "args": ["-y", "srv"], "env": {"TOKEN": "${GH}"}},
                "docs": {"type": "http", "url": "https://x.test/mcp", "headers": {"X-K": "v"}},
            }),
            NumberUnit::Seconds,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            s["github"].transport,
            McpTransport::Stdio {
                command: "npx".into(),
                args: vec!["-y".into(), "srv".into()],
                env: [("TOKEN".to_string(), "${GH}".to_string())]
                    .into_iter()
                    .collect(),
            }
        );
        assert!(
            matches!(&s["docs"].transport, McpTransport::Http { url, .. } if url == "https://x.test/mcp")
        );
    }

    #[test]
    fn opencode_shapes() {
        let (s, e) = parse_servers(
            &json!({
                "fs": {"type": "local", "command": ["npx", "-y", "fs"], "environment": {"A": "1"}, "enabled": false, "timeout": 5000},
                "remote": {"type": "remote", "url": "http://127.0.0.1:9/mcp"},
            }),
            NumberUnit::Millis,
        );
        assert!(e.is_empty(), "{e:?}");
        let fs = &s["fs"];
        assert!(!fs.enabled);
        assert_eq!(fs.timeout, Some(Duration::from_secs(5)));
        assert!(
            matches!(&fs.transport, McpTransport::Stdio { command, args, env } if command == "npx" && args.len() == 2 && env["A"] == "1")
        );
    }

    #[test]
    fn errors_name_the_server_and_key() {
        for (decl, want) in [
            (
                json!({"a": {"type": "sse", "url": "http://x"}}),
                "legacy SSE",
            ),
            (json!({"a": {}}), "needs `command`"),
            (
                json!({"a": {"command": "x", "bogus": 1}}),
                "unknown key `bogus`",
            ),
            (json!({"a": {"url": "ftp://x"}}), "http://"),
            (json!({"a__b": {"command": "x"}}), "server `a__b`"),
            (
                json!({"a": {"command": "x", "timeout": -1}}),
                "positive duration",
            ),
        ] {
            let (_, e) = parse_servers(&decl, NumberUnit::Seconds);
            assert!(e.iter().any(|e| e.contains(want)), "{decl}: {e:?}");
        }
    }

    #[test]
    fn server_of_a_tool_name() {
        assert_eq!(mcp_server_of("mcp__github__create_issue"), Some("github"));
        assert_eq!(
            mcp_server_of("mcp__prompt-to-asset"),
            Some("prompt-to-asset")
        );
        assert_eq!(mcp_server_of("bash"), None);
    }
}
