//! One MCP tool behind the router's [`Handler`] interface, and the stand-in for a tool whose
//! server is unavailable.

use std::sync::Arc;

use deputy_llm::ToolSpec;
use deputy_tools::{Permissions, ToolOutput};
use serde_json::{Value, json};

use super::Slot;
use crate::router::{Handler, PreparedCall};

/// The most of one result handed on (the context layer may cut it further).
const MAX_RESULT_BYTES: usize = 256 * 1024;

/// A name providers and MCP accept for a function or tool: `[a-zA-Z0-9_-]` (anything else
/// becomes `_`), at most 64 characters.
pub fn function_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(64);
    s
}

/// `mcp__SERVER__TOOL`, as a [`function_name`].
pub(crate) fn exposed_name(server: &str, tool: &str) -> String {
    function_name(&format!("mcp__{server}__{tool}"))
}

pub(crate) struct McpTool {
    pub exposed: String,
    pub slot: Arc<Slot>,
    pub tool: rmcp::model::Tool,
}

impl Handler for McpTool {
    fn name(&self) -> &str {
        &self.exposed
    }

    fn summary(&self) -> String {
        let d = self.tool.description.as_deref().unwrap_or("").trim();
        let first = d
            .split(". ")
            .next()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        if first.is_empty() {
            format!("`{}` of MCP server {}.", self.tool.name, self.slot.name)
        } else {
            format!("{}.", first.trim_end_matches('.'))
        }
    }

    fn spec(&self, _perms: &Permissions) -> Option<ToolSpec> {
        let mut schema = Value::Object((*self.tool.input_schema).clone());
        // Providers want an object schema with properties.
        if let Value::Object(m) = &mut schema {
            m.entry("type").or_insert_with(|| json!("object"));
            m.entry("properties").or_insert_with(|| json!({}));
        }
        let description = self
            .tool
            .description
            .as_deref()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "Tool `{}` of MCP server {}.",
                    self.tool.name, self.slot.name
                )
            });
        Some(ToolSpec {
            name: self.exposed.clone(),
            description,
            parameters: schema,
        })
    }

    fn concurrent(&self) -> bool {
        self.tool
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false)
    }

    fn prepare(&self, input: Value) -> Result<PreparedCall, String> {
        let args = match input {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(format!(
                    "the arguments must be a JSON object, found {other}"
                ));
            }
        };
        let slot = self.slot.clone();
        let tool = self.tool.name.to_string();
        Ok(PreparedCall::new(None, None, move |call| async move {
            let started = std::time::Instant::now();
            let result = tokio::select! {
                r = slot.call(&tool, args) => r,
                _ = call.cancel.cancelled() => Err("cancelled".to_string()),
            };
            let ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(v) => render(&v, &slot.name, &tool, ms).into(),
                Err(e) => {
                    ToolOutput::error(format!("MCP server `{}` ({tool}): {e}", slot.name)).into()
                }
            }
        }))
    }
}

/// A tool the agent names whose server is unavailable: calling it says why.
pub(crate) struct Unavailable {
    pub exposed: String,
    pub server: String,
    pub why: String,
}

impl Handler for Unavailable {
    fn name(&self) -> &str {
        &self.exposed
    }

    fn summary(&self) -> String {
        format!("unavailable (MCP server {} did not start).", self.server)
    }

    fn spec(&self, _perms: &Permissions) -> Option<ToolSpec> {
        Some(ToolSpec {
            name: self.exposed.clone(),
            description: format!(
                "Unavailable: MCP server `{}` could not be used ({}). Calling it only returns this error.",
                self.server, self.why
            ),
            parameters: json!({"type": "object", "properties": {}}),
        })
    }

    fn concurrent(&self) -> bool {
        true
    }

    fn prepare(&self, _input: Value) -> Result<PreparedCall, String> {
        let msg = format!(
            "MCP server `{}` is unavailable: {}. Carry on without this tool.",
            self.server, self.why
        );
        Ok(PreparedCall::new(None, None, move |_| async move {
            ToolOutput::error(msg).into()
        }))
    }
}

/// A `tools/call` result as the model reads it: text blocks as they are, other blocks
/// described, structured content as JSON when there is no text.
fn render(v: &Value, server: &str, tool: &str, ms: u64) -> ToolOutput {
    let mut parts: Vec<String> = Vec::new();
    for block in v["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => parts.push(block["text"].as_str().unwrap_or("").to_string()),
            Some("image") | Some("audio") => parts.push(format!(
                "[{} content: {}, {} bytes of base64]",
                block["type"].as_str().unwrap_or(""),
                block["mimeType"].as_str().unwrap_or("unknown type"),
                block["data"].as_str().map(str::len).unwrap_or(0)
            )),
            Some("resource") => {
                let r = &block["resource"];
                match r["text"].as_str() {
                    Some(t) => parts.push(t.to_string()),
                    None => parts.push(format!("[resource {}]", r["uri"].as_str().unwrap_or(""))),
                }
            }
            Some("resource_link") => parts.push(format!(
                "[resource link {} {}]",
                block["name"].as_str().unwrap_or(""),
                block["uri"].as_str().unwrap_or("")
            )),
            _ => parts.push(block.to_string()),
        }
    }
    if parts.is_empty()
        && let Some(s) = v.get("structuredContent").filter(|s| !s.is_null())
    {
        parts.push(s.to_string());
    }
    let mut content = parts.join("\n");
    if content.len() > MAX_RESULT_BYTES {
        let mut cut = MAX_RESULT_BYTES;
        while !content.is_char_boundary(cut) {
            cut -= 1;
        }
        content.truncate(cut);
        content.push_str(&format!(
            "\n[cut: the result was over {} KiB]",
            MAX_RESULT_BYTES / 1024
        ));
    }
    let is_error = v["isError"].as_bool().unwrap_or(false);
    let metadata = json!({"server": server, "tool": tool, "duration_ms": ms});
    if is_error {
        let mut out = ToolOutput::error(content);
        out.metadata = metadata;
        out
    } else {
        ToolOutput::ok(content, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_valid_function_names() {
        assert_eq!(exposed_name("gh", "create_issue"), "mcp__gh__create_issue");
        assert_eq!(exposed_name("gh", "a.b/c d"), "mcp__gh__a_b_c_d");
        assert_eq!(exposed_name("s", &"x".repeat(100)).len(), 64);
    }

    #[test]
    fn results_as_text() {
        let v = json!({"content": [{"type": "text", "text": "hi"}, {"type": "image", "mimeType": "image/png", "data": "AAAA"}]});
        let out = render(&v, "s", "t", 1);
        assert!(!out.is_error);
        assert_eq!(
            out.content,
            "hi\n[image content: image/png, 4 bytes of base64]"
        );
        let v = json!({"content": [], "structuredContent": {"a": 1}, "isError": true});
        let out = render(&v, "s", "t", 1);
        assert!(
            out.is_error && out.content.contains("{\"a\":1}"),
            "{}",
            out.content
        );
    }
}
