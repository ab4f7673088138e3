//! `read`: a text file with line numbers, a page at a time.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, access_path, lenient_u64, prepare_file,
    strict_schema,
};
use crate::error::ToolError;
use crate::workspace::{WsPath, looks_binary};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadInput {
    /// Path of the file, relative to the workspace (or absolute inside it).
    #[serde(alias = "file_path", alias = "filePath", alias = "file")]
    pub path: String,
    /// First line to show, counting from 1 (default 1).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub offset: Option<u64>,
    /// Number of lines to show (default 2000).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub limit: Option<u64>,
}

pub struct ReadTool;

const DEFAULT_LIMIT: u64 = 2000;
const MAX_LINE: usize = 2000;

const DESCRIPTION: &str = "Read a text file of the workspace. Lines come back numbered (the number, a tab, the line), 2000 at a time; use offset and limit to page through long files. Lines longer than 2000 characters are cut. Binary files are refused. Read a file before you edit it.";

impl Tool for ReadTool {
    fn name(&self) -> &'static str {
        "read"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<ReadInput>()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        let mut prepared =
            prepare_file::<ReadInput>("read", input, ctx, |i| Some(&i.path), Access::Read, read)?;
        // A hard link to an `.env` file is that file: the rules see its name.
        if let Access::Read(p) = &prepared.access
            && let Some(secret) = secret_alias(ctx, p)
        {
            prepared.access = Access::Read(secret);
        }
        Ok(prepared)
    }
}

/// The `.env` file `p` is a hard link to, if it is one (looked for only when the file has more
/// than one link, among every `.env` of the workspace).
fn secret_alias(ctx: &ToolContext, p: &WsPath) -> Option<WsPath> {
    let (dev, ino, links) = ctx.workspace.inode(p)?;
    if links < 2 {
        return None;
    }
    crate::protect::secrets(&ctx.workspace.host_path(&p.top()))
        .into_iter()
        .filter_map(|host| ctx.workspace.from_host(&host))
        .filter(|w| crate::protect::is_secret(&w.display()) && w != p)
        .find(|w| {
            ctx.workspace
                .inode(w)
                .is_some_and(|(d, i, _)| d == dev && i == ino)
        })
}

fn read(ctx: &ToolContext, input: &ReadInput, access: &Access) -> Result<ToolOutput, ToolError> {
    let p = access_path(access)?;
    let bytes = ctx.workspace.read(p, ctx.settings.max_file_bytes)?;
    if looks_binary(&bytes) {
        return Err(ToolError::Binary { path: p.display() });
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.is_empty() {
        return Ok(ToolOutput::ok(
            format!("({} is empty)", p.display()),
            json!({"path": p.display(), "lines": 0}),
        ));
    }
    let total = text.lines().count() as u64;
    let offset = input.offset.unwrap_or(1).max(1);
    let limit = input.limit.unwrap_or(DEFAULT_LIMIT).max(1);
    if offset > total {
        return Err(ToolError::InvalidInput(format!(
            "offset {offset} is past the end of {} ({total} lines)",
            p.display()
        )));
    }
    let mut out = String::new();
    let mut last = offset;
    for (i, line) in text
        .lines()
        .enumerate()
        .skip((offset - 1) as usize)
        .take(limit as usize)
    {
        let n = i as u64 + 1;
        last = n;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.chars().count() > MAX_LINE {
            let cut: String = line.chars().take(MAX_LINE).collect();
            out.push_str(&format!(
                "{n:>6}\t{cut}… [line cut at {MAX_LINE} characters]\n"
            ));
        } else {
            out.push_str(&format!("{n:>6}\t{line}\n"));
        }
    }
    if last < total {
        out.push_str(&format!(
            "\n(lines {offset}-{last} of {total}; read on with offset={})\n",
            last + 1
        ));
    }
    Ok(ToolOutput::ok(
        out,
        json!({"path": p.display(), "offset": offset, "lines_shown": last - offset + 1, "total_lines": total}),
    ))
}
