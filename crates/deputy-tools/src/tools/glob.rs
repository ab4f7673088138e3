//! `glob`: find files by name pattern.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, access_path, prepare_file, strict_schema,
};
use crate::error::ToolError;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GlobInput {
    /// Glob pattern, e.g. `**/*.rs`, `src/**/test_*.py`, `*.md`. A pattern without `/` matches
    /// file names at any depth.
    pub pattern: String,
    /// Directory to search, relative to the workspace (default: the whole workspace).
    #[serde(default, alias = "dir", alias = "directory")]
    pub path: Option<String>,
}

pub struct GlobTool;

/// Most paths returned.
pub(crate) const MAX_RESULTS: usize = 1000;

const DESCRIPTION: &str = "Find files whose path matches a glob pattern (`**/*.rs`, `src/**/*.test.ts`, `Cargo.toml`). Files ignored by .gitignore are skipped. Returns matching paths relative to the workspace, sorted, at most 1000.";

impl Tool for GlobTool {
    fn name(&self) -> &'static str {
        "glob"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<GlobInput>()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        prepare_file::<GlobInput>(
            "glob",
            input,
            ctx,
            |i| i.path.as_deref(),
            Access::Search,
            glob,
        )
    }
}

fn glob(ctx: &ToolContext, input: &GlobInput, access: &Access) -> Result<ToolOutput, ToolError> {
    let base = access_path(access)?.clone();
    if !ctx.workspace.is_dir(&base) {
        return Err(ToolError::InvalidInput(format!(
            "`{}` is not a directory",
            base.display()
        )));
    }
    let pattern = input.pattern.trim().trim_start_matches("./");
    let by_name = !pattern.contains('/');
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(!by_name)
        .build()
        .map_err(|e| ToolError::InvalidInput(format!("invalid glob pattern `{pattern}`: {e}")))?
        .compile_matcher();
    let mut found = Vec::new();
    crate::walk::walk(&ctx.workspace, &base, |e| {
        if e.kind != crate::walk::Kind::File {
            return true;
        }
        let rel_to_base = e
            .path
            .as_path()
            .strip_prefix(base.as_path())
            .unwrap_or(e.path.as_path());
        let hit = if by_name {
            matcher.is_match(e.name)
        } else {
            matcher.is_match(rel_to_base)
        };
        let rel = e.path.display();
        if hit && ctx.may_read(&rel) {
            found.push(rel);
        }
        true
    })?;
    found.sort();
    let total = found.len();
    found.truncate(MAX_RESULTS);
    let mut content = if found.is_empty() {
        format!("No files match `{pattern}`.")
    } else {
        found.join("\n")
    };
    if total > MAX_RESULTS {
        content.push_str(&format!(
            "\n[… {} more not shown; narrow the pattern or the path]",
            total - MAX_RESULTS
        ));
    }
    Ok(ToolOutput::ok(
        content,
        json!({"pattern": pattern, "count": total}),
    ))
}
