//! `edit`: replace an exact string in a file.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, access_path, clip, lenient_bool, prepare_file,
    strict_schema, unified_diff,
};
use crate::error::ToolError;
use crate::workspace::looks_binary;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EditInput {
    /// Path of the file, relative to the workspace (or absolute inside it).
    #[serde(alias = "file_path", alias = "filePath", alias = "file")]
    pub path: String,
    /// The exact text to replace, including indentation. Empty to create a new file.
    #[serde(alias = "oldString", alias = "old_str", alias = "old")]
    pub old_string: String,
    /// The text to put in its place.
    #[serde(alias = "newString", alias = "new_str", alias = "new")]
    pub new_string: String,
    /// Replace every occurrence (default false: old_string must occur exactly once).
    #[serde(default, alias = "replaceAll", deserialize_with = "lenient_bool")]
    pub replace_all: Option<bool>,
}

pub struct EditTool;

const DESCRIPTION: &str = "Edit a text file: replace old_string with new_string. old_string must match the file exactly (whitespace and indentation included) and occur exactly once, unless replace_all is true; include a few surrounding lines to make it unique. Read the file first. An empty old_string on a file that does not exist creates it with new_string. Line endings of the file (LF or CRLF) are kept. Returns a unified diff of the change.";

impl Tool for EditTool {
    fn name(&self) -> &'static str {
        "edit"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<EditInput>()
    }

    fn read_only(&self) -> bool {
        false
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        prepare_file::<EditInput>("edit", input, ctx, |i| Some(&i.path), Access::Write, edit)
    }
}

/// Apply one edit to text: the new text and how many replacements were made.
pub fn apply_edit(
    text: &str,
    old: &str,
    new: &str,
    replace_all: bool,
    path: &str,
) -> Result<(String, usize), ToolError> {
    if old == new {
        return Err(ToolError::InvalidInput(
            "old_string and new_string are the same; there is nothing to change".into(),
        ));
    }
    // A CRLF file stays CRLF: match and insert with its line endings.
    let crlf = text.contains("\r\n");
    let (old, new) = if crlf && !old.contains("\r\n") {
        (old.replace('\n', "\r\n"), new.replace('\n', "\r\n"))
    } else {
        (old.to_string(), new.to_string())
    };
    let count = text.matches(old.as_str()).count();
    match count {
        0 => {
            let hint = if text.contains(old.trim()) && !old.trim().is_empty() {
                " Its text occurs, but the whitespace around it differs: copy the lines exactly as read, indentation included."
            } else {
                " Read the file again and copy the text exactly."
            };
            Err(ToolError::InvalidInput(format!(
                "old_string was not found in {path}.{hint}"
            )))
        }
        n if n > 1 && !replace_all => Err(ToolError::InvalidInput(format!(
            "old_string occurs {n} times in {path}; add surrounding lines to make it unique, or set replace_all to true to change every occurrence"
        ))),
        n => {
            let out = if replace_all {
                text.replace(old.as_str(), &new)
            } else {
                text.replacen(old.as_str(), &new, 1)
            };
            Ok((out, n))
        }
    }
}

fn edit(ctx: &ToolContext, input: &EditInput, access: &Access) -> Result<ToolOutput, ToolError> {
    let p = access_path(access)?;
    let path = p.display();
    if let Some(why) = ctx.workspace.protection(p) {
        return Err(ToolError::Protected { path, why });
    }
    let existing = match ctx.workspace.read(p, ctx.settings.max_file_bytes) {
        Ok(b) => Some(b),
        Err(ToolError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let (old_text, new_text, replaced) = match existing {
        None if input.old_string.is_empty() => (String::new(), input.new_string.clone(), 0),
        None => {
            return Err(ToolError::InvalidInput(format!(
                "{path} does not exist. To create it, use write, or edit with an empty old_string"
            )));
        }
        Some(bytes) => {
            if looks_binary(&bytes) {
                return Err(ToolError::Binary { path });
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                ToolError::InvalidInput(format!(
                    "{path} is not UTF-8 text; edit cannot change it safely"
                ))
            })?;
            if input.old_string.is_empty() {
                if !text.is_empty() {
                    return Err(ToolError::InvalidInput(format!(
                        "old_string is empty but {path} already exists and is not empty; give the text to replace, or use write to replace the whole file"
                    )));
                }
                (text, input.new_string.clone(), 0)
            } else {
                let (new, n) = apply_edit(
                    &text,
                    &input.old_string,
                    &input.new_string,
                    input.replace_all.unwrap_or(false),
                    &path,
                )?;
                (text, new, n)
            }
        }
    };
    ctx.workspace.write_atomic(p, new_text.as_bytes())?;
    let (diff, added, removed) = unified_diff(&path, &old_text, &new_text);
    let what = if replaced == 0 {
        format!("Created {path}")
    } else if replaced == 1 {
        format!("Edited {path}")
    } else {
        format!("Edited {path} ({replaced} occurrences)")
    };
    Ok(ToolOutput::ok(
        format!("{what}: +{added} -{removed} lines.\n{}", clip(&diff, 4000)),
        json!({
            "path": path,
            // The workspace file this call changed (the session's `files_changed`).
            "file_changed": path,
            "replacements": replaced,
            "added": added,
            "removed": removed,
            "diff": clip(&diff, 64 * 1024),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_match_and_replace_all() {
        let t = "a\nb\na\n";
        assert!(
            apply_edit(t, "a", "x", false, "f")
                .unwrap_err()
                .to_string()
                .contains("occurs 2 times")
        );
        assert_eq!(
            apply_edit(t, "a", "x", true, "f").unwrap(),
            ("x\nb\nx\n".into(), 2)
        );
        assert_eq!(
            apply_edit(t, "b", "y", false, "f").unwrap(),
            ("a\ny\na\n".into(), 1)
        );
        assert!(
            apply_edit(t, "b", "b", false, "f")
                .unwrap_err()
                .to_string()
                .contains("the same")
        );
        assert!(
            apply_edit(t, "zz", "y", false, "f")
                .unwrap_err()
                .to_string()
                .contains("not found")
        );
        let e = apply_edit("    fn x()\n", "fn x()\n  ", "y", false, "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not found"), "{e}");
    }

    #[test]
    fn crlf_stays_crlf() {
        let t = "one\r\ntwo\r\nthree\r\n";
        let (out, _) = apply_edit(t, "one\ntwo", "uno\ndos", false, "f").unwrap();
        assert_eq!(out, "uno\r\ndos\r\nthree\r\n");
    }
}
