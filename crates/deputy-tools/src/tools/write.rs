//! `write`: create or replace a whole file, atomically.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, access_path, clip, prepare_file,
    strict_schema, unified_diff,
};
use crate::error::ToolError;
use crate::workspace::looks_binary;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteInput {
    /// Path of the file, relative to the workspace (or absolute inside it).
    #[serde(alias = "file_path", alias = "filePath", alias = "file")]
    pub path: String,
    /// The complete new content of the file.
    #[serde(alias = "contents", alias = "text")]
    pub content: String,
}

pub struct WriteTool;

const DESCRIPTION: &str = "Write a whole file in the workspace: create it (with any missing parent directories) or replace its content entirely. The write is atomic. To change part of an existing file, use edit instead; it is cheaper and safer. Returns a diff of the change.";

impl Tool for WriteTool {
    fn name(&self) -> &'static str {
        "write"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<WriteInput>()
    }

    fn read_only(&self) -> bool {
        false
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        prepare_file::<WriteInput>("write", input, ctx, |i| Some(&i.path), Access::Write, write)
    }
}

fn write(ctx: &ToolContext, input: &WriteInput, access: &Access) -> Result<ToolOutput, ToolError> {
    let p = access_path(access)?;
    if let Some(why) = ctx.workspace.protection(p) {
        return Err(ToolError::Protected {
            path: p.display(),
            why,
        });
    }
    let old = match ctx.workspace.read(p, ctx.settings.max_file_bytes) {
        Ok(b) => Some(b),
        Err(ToolError::NotFound { .. }) => None,
        // A file too large to diff is still replaced.
        Err(ToolError::TooLarge { .. }) => Some(Vec::new()),
        Err(e) => return Err(e),
    };
    ctx.workspace.write_atomic(p, input.content.as_bytes())?;
    let path = p.display();
    let lines = input.content.lines().count();
    let (diff, added, removed) = match &old {
        Some(o) if !looks_binary(o) => {
            unified_diff(&path, &String::from_utf8_lossy(o), &input.content)
        }
        Some(_) => (String::new(), lines, 0),
        None => unified_diff(&path, "", &input.content),
    };
    let content = match &old {
        None => format!(
            "Created {path} ({} bytes, {lines} lines).",
            input.content.len()
        ),
        Some(_) if added == 0 && removed == 0 => {
            format!("{path} already had this content; nothing changed.")
        }
        Some(_) => format!(
            "Replaced {path}: +{added} -{removed} lines.\n{}",
            clip(&diff, 4000)
        ),
    };
    Ok(ToolOutput::ok(
        content,
        json!({
            "path": path,
            // The workspace file this call changed (the session's `files_changed`).
            "file_changed": path,
            "created": old.is_none(),
            "bytes": input.content.len(),
            "added": added,
            "removed": removed,
            "diff": clip(&diff, 64 * 1024),
        }),
    ))
}
