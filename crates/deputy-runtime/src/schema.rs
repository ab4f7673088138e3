//! The final answer against `--output-schema`.

use serde_json::Value;

/// Parse the final answer as JSON (tolerating a code fence around it) and validate it; the
/// error lists the problems, for the model to fix.
pub(crate) fn check(schema: &Value, text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|r| r.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the output schema itself is invalid: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(10)
        .map(|e| format!("- at `{}`: {e}", e.instance_path()))
        .collect();
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(format!("Problems:\n{}", problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_check() {
        let schema = json!({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}});
        assert_eq!(
            check(&schema, "```json\n{\"ok\": true}\n```").unwrap(),
            json!({"ok": true})
        );
        assert!(check(&schema, "{\"ok\": 1}").unwrap_err().contains("/ok"));
        assert!(check(&schema, "nope").unwrap_err().contains("not JSON"));
    }
}
