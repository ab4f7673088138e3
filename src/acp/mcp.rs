//! The MCP servers an editor hands a session (`mcpServers` of `session/new` and
//! `session/load`): the user's own, so they are started as the user's config servers are.
//! deputy offers stdio servers only (`mcpCapabilities` says no HTTP or SSE).

use deputy_agent::mcp::valid_server_name;
use deputy_agent::{McpServer, McpTransport};
use indexmap::IndexMap;
use serde_json::Value;

use super::rpc::RpcError;

/// Read the list; an entry deputy cannot start is an error naming it.
pub fn servers(list: Option<&Value>) -> Result<IndexMap<String, McpServer>, RpcError> {
    let mut out = IndexMap::new();
    let Some(items) = list.and_then(Value::as_array) else {
        return Ok(out);
    };
    for (i, s) in items.iter().enumerate() {
        let name = s.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_server_name(name) {
            return Err(RpcError::params(format!(
                "mcpServers[{i}]: `{name}` is not a usable server name (letters, digits, `-` and `_`; no `__`)"
            )));
        }
        if let Some(kind) = s.get("type").and_then(Value::as_str)
            && kind != "stdio"
        {
            return Err(RpcError::params(format!(
                "mcpServers[{i}] ({name}): deputy starts stdio servers only, not `{kind}` (configure it in deputy's [mcp.servers] instead)"
            )));
        }
        let Some(command) = s.get("command").and_then(Value::as_str) else {
            return Err(RpcError::params(format!(
                "mcpServers[{i}] ({name}): `command` is required"
            )));
        };
        let args = s
            .get("args")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let env = s
            .get("env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some((
                            e.get("name")?.as_str()?.to_string(),
                            e.get("value")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            name.to_string(),
            McpServer {
                transport: McpTransport::Stdio {
                    command: command.to_string(),
                    args,
                    env,
                },
                enabled: true,
                timeout: None,
                tool_timeout: None,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stdio_servers_are_read_and_others_named() {
        let s = servers(Some(&json!([{"name": "fs", "command": "/bin/fs", "args": ["--stdio"], "env": [{"name": "A", "value": "1"}]}]))).unwrap();
        match &s["fs"].transport {
            McpTransport::Stdio { command, args, env } => {
                assert_eq!((command.as_str(), args[0].as_str()), ("/bin/fs", "--stdio"));
                assert_eq!(env["A"], "1");
            }
            other => panic!("{other:?}"),
        }
        let e = servers(Some(
            &json!([{"type": "http", "name": "web", "url": "http://x", "headers": []}]),
        ))
        .unwrap_err();
        assert!(e.message.contains("stdio servers only"), "{}", e.message);
        assert!(servers(Some(&json!([{"name": "a__b", "command": "x"}]))).is_err());
        assert!(servers(Some(&json!([{"name": "ok"}]))).is_err());
    }
}
