//! `grep`: search file contents with a regular expression (ripgrep's engine).

use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::UTF8;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, access_path, prepare_file, strict_schema,
};
use crate::error::ToolError;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GrepInput {
    /// Regular expression (Rust / ripgrep syntax), e.g. `fn\s+main`, `TODO|FIXME`.
    #[serde(alias = "regex", alias = "query")]
    pub pattern: String,
    /// File or directory to search, relative to the workspace (default: the whole workspace).
    #[serde(default, alias = "dir", alias = "directory")]
    pub path: Option<String>,
    /// Only search files whose name matches this glob, e.g. `*.rs` or `*.{ts,tsx}`.
    #[serde(default, alias = "glob", alias = "file_pattern")]
    pub include: Option<String>,
}

pub struct GrepTool;

const MAX_MATCHES: usize = 500;
const MAX_LINE: usize = 300;

const DESCRIPTION: &str = "Search the contents of files for a regular expression (ripgrep syntax). Files ignored by .gitignore and binary files are skipped. Returns matching lines as `path:line: text`, sorted by path, at most 500. Use include to limit the search to some files (`*.py`).";

impl Tool for GrepTool {
    fn name(&self) -> &'static str {
        "grep"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<GrepInput>()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        prepare_file::<GrepInput>(
            "grep",
            input,
            ctx,
            |i| i.path.as_deref(),
            Access::Search,
            grep,
        )
    }
}

fn grep(ctx: &ToolContext, input: &GrepInput, access: &Access) -> Result<ToolOutput, ToolError> {
    let base = access_path(access)?.clone();
    if !ctx.workspace.exists(&base) && !base.is_root() {
        return Err(ToolError::NotFound {
            path: base.display(),
        });
    }
    let matcher = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build(&input.pattern)
        .map_err(|e| ToolError::InvalidInput(format!("invalid regular expression: {e}")))?;
    let include = match input.include.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(g) => Some(
            globset::Glob::new(g.trim())
                .map_err(|e| ToolError::InvalidInput(format!("invalid include glob `{g}`: {e}")))?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut searcher = SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(0))
        .line_number(true)
        .build();
    let mut lines = Vec::new();
    let mut total = 0usize;
    let mut files_with = 0usize;
    crate::walk::walk(&ctx.workspace, &base, |e| {
        if e.kind != crate::walk::Kind::File || !include.as_ref().is_none_or(|m| m.is_match(e.name))
        {
            return true;
        }
        let rel = e.path.display();
        if !ctx.may_read(&rel) {
            return true;
        }
        // Opened from its directory's handle, without following a link.
        let Some(file) = e.open_file() else {
            return true;
        };
        // A hard link to an `.env` file is that file: skipped as it would be.
        if ctx.workspace.is_secret(&file) {
            return true;
        }
        let mut hits = 0;
        let _ = searcher.search_file(
            &matcher,
            &file,
            UTF8(|n, line| {
                total += 1;
                hits += 1;
                if lines.len() < MAX_MATCHES {
                    let line = line.trim_end_matches(['\n', '\r']);
                    let shown: String = if line.chars().count() > MAX_LINE {
                        format!("{}…", line.chars().take(MAX_LINE).collect::<String>())
                    } else {
                        line.to_string()
                    };
                    lines.push(format!("{rel}:{n}: {shown}"));
                }
                Ok(true)
            }),
        );
        if hits > 0 {
            files_with += 1;
        }
        true
    })?;
    let mut content = if lines.is_empty() {
        format!("No matches for `{}`.", input.pattern)
    } else {
        lines.join("\n")
    };
    if total > MAX_MATCHES {
        content.push_str(&format!(
            "\n[… {} more matches not shown; narrow the pattern, the path or include]",
            total - MAX_MATCHES
        ));
    }
    Ok(ToolOutput::ok(
        content,
        json!({"pattern": input.pattern, "matches": total, "files": files_with}),
    ))
}
