//! `glob`: find files by name pattern.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, access_path, prepare_file, rel_display,
    strict_schema,
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

/// A walker over `base` that honours .gitignore (in or out of a git repository), shows hidden
/// files, never enters `.git`, and does not follow symlinks.
pub(crate) fn walker(base: &std::path::Path) -> ignore::WalkBuilder {
    let mut w = ignore::WalkBuilder::new(base);
    w.hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .parents(true)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git");
    w
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
    let host_base = ctx.workspace.host_path(&base);
    let mut found = Vec::new();
    for entry in walker(&host_base).build().flatten() {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel_to_base = entry
            .path()
            .strip_prefix(&host_base)
            .unwrap_or(entry.path());
        let hit = if by_name {
            entry
                .path()
                .file_name()
                .is_some_and(|n| matcher.is_match(n))
        } else {
            matcher.is_match(rel_to_base)
        };
        if !hit {
            continue;
        }
        if let Some(rel) = rel_display(ctx, entry.path())
            && ctx.may_read(&rel)
        {
            found.push(rel);
        }
    }
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
