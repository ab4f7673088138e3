//! `list`: a directory tree.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, access_path, prepare_file, strict_schema,
};
use crate::error::ToolError;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListInput {
    /// Directory to list, relative to the workspace (default: the workspace root).
    #[serde(default, alias = "dir", alias = "directory")]
    pub path: Option<String>,
}

pub struct ListTool;

const MAX_ENTRIES: usize = 500;

const DESCRIPTION: &str = "List a directory of the workspace as a tree (directories end with /). Files ignored by .gitignore are left out. At most 500 entries; list a subdirectory to see more of it.";

impl Tool for ListTool {
    fn name(&self) -> &'static str {
        "list"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<ListInput>()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError> {
        prepare_file::<ListInput>(
            "list",
            input,
            ctx,
            |i| i.path.as_deref(),
            Access::Search,
            list,
        )
    }
}

#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    is_dir: bool,
}

fn list(ctx: &ToolContext, _input: &ListInput, access: &Access) -> Result<ToolOutput, ToolError> {
    let base = access_path(access)?.clone();
    if !ctx.workspace.is_dir(&base) {
        if ctx.workspace.exists(&base) {
            return Err(ToolError::InvalidInput(format!(
                "`{}` is a file; use read to see it",
                base.display()
            )));
        }
        return Err(ToolError::NotFound {
            path: base.display(),
        });
    }
    let mut root = Node {
        is_dir: true,
        ..Node::default()
    };
    let mut count = 0usize;
    let mut total = 0usize;
    crate::walk::walk(&ctx.workspace, &base, |e| {
        total += 1;
        if count >= MAX_ENTRIES {
            return true;
        }
        let is_dir = e.kind == crate::walk::Kind::Dir;
        if !is_dir && !ctx.may_read(&e.path.display()) {
            return true;
        }
        let rel = e
            .path
            .as_path()
            .strip_prefix(base.as_path())
            .unwrap_or(e.path.as_path());
        let mut node = &mut root;
        for part in rel.components() {
            node = node
                .children
                .entry(part.as_os_str().to_string_lossy().into_owned())
                .or_default();
        }
        node.is_dir = is_dir;
        count += 1;
        true
    })?;
    let mut out = format!(
        "{}/\n",
        if base.is_root() {
            ".".to_string()
        } else {
            base.display()
        }
    );
    render(&root, 1, &mut out);
    if total > MAX_ENTRIES {
        out.push_str(&format!(
            "[… {} more entries not shown; list a subdirectory]\n",
            total - MAX_ENTRIES
        ));
    }
    Ok(ToolOutput::ok(
        out,
        json!({"path": base.display(), "entries": total}),
    ))
}

fn render(node: &Node, depth: usize, out: &mut String) {
    // Directories first, then files, each sorted by name.
    let (dirs, files): (Vec<_>, Vec<_>) = node.children.iter().partition(|(_, n)| n.is_dir);
    for (name, child) in dirs.into_iter().chain(files) {
        out.push_str(&"  ".repeat(depth));
        out.push_str(name);
        if child.is_dir {
            out.push('/');
        }
        out.push('\n');
        render(child, depth + 1, out);
    }
}
