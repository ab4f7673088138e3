//! `bash`: run a shell command in the sandbox.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Access, Prepared, Tool, ToolContext, ToolOutput, lenient_u64, parse_input, strict_schema,
};
use crate::error::ToolError;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct BashInput {
    /// The command, run with `bash -c` in the workspace directory.
    #[serde(alias = "cmd", alias = "script")]
    pub command: String,
    /// Timeout in milliseconds (default 120000, at most 600000).
    #[serde(
        default,
        alias = "timeout",
        alias = "timeoutMs",
        deserialize_with = "lenient_u64"
    )]
    pub timeout_ms: Option<u64>,
    /// What the command does, in a few words (shown to the user).
    #[serde(default)]
    pub description: Option<String>,
}

pub struct BashTool;

const DESCRIPTION: &str = "Run a shell command with bash in the workspace directory, inside a sandbox: the workspace is writable, the rest of the file system is read-only, /tmp is private, there is no network, and the environment holds no secrets. stdin is closed, so interactive programs (editors, pagers, prompts) cannot be used; pass flags such as --yes or --no-pager. stdout and stderr come back interleaved, followed by the exit code; long output is cut in the middle, so filter it (grep, head, tail) when you expect a lot. Commands that run longer than the timeout are killed with everything they started. Prefer the read, edit, write, glob, grep and list tools for files: they are faster and safer than cat, sed or find.";

impl Tool for BashTool {
    fn name(&self) -> &'static str {
        "bash"
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn parameters(&self) -> Value {
        strict_schema::<BashInput>()
    }

    fn read_only(&self) -> bool {
        false
    }

    fn prepare(&self, input: Value, _ctx: &ToolContext) -> Result<Prepared, ToolError> {
        let input: BashInput = parse_input::<BashInput>("bash", input)?;
        if input.command.trim().is_empty() {
            return Err(ToolError::InvalidInput("the command is empty".into()));
        }
        let access = Access::Command(input.command.clone());
        Ok(Prepared::new(access, move |ctx| run(ctx, input)))
    }
}

async fn run(ctx: ToolContext, input: BashInput) -> ToolOutput {
    let sandbox = match &ctx.sandbox {
        Ok(s) => s.clone(),
        Err(why) => return ToolOutput::error(why),
    };
    let max_timeout = ctx.settings.max_timeout_ms.max(1);
    let timeout_ms = input
        .timeout_ms
        .unwrap_or(ctx.settings.default_timeout_ms)
        .clamp(1, max_timeout);
    let done = match sandbox
        .run(
            &input.command,
            Duration::from_millis(timeout_ms),
            ctx.settings.capture(),
        )
        .await
    {
        Ok(d) => d,
        Err(e) => return ToolOutput::error(e),
    };
    let mut content = done.output.model_text(ctx.settings.max_output_bytes);
    if content.is_empty() {
        content.push_str("(no output)");
    }
    if !content.ends_with('\n') {
        content.push('\n');
    }
    let status = if done.timed_out {
        format!(
            "[timed out after {:.1}s: the command and everything it started were killed; raise timeout_ms (max {}) or run less at once]",
            timeout_ms as f64 / 1000.0,
            max_timeout
        )
    } else {
        match (done.exit_code, done.signal) {
            (Some(c), _) => format!("[exit code: {c}]"),
            (None, Some(s)) => format!("[killed by signal {s}]"),
            _ => "[exit status unknown]".to_string(),
        }
    };
    content.push_str(&status);
    // bwrap could not set the sandbox up: whatever a remembered probe said, probe again next
    // time (a command that prints this itself only costs that probe).
    if sandbox.backend() == crate::sandbox::Backend::Bwrap
        && done.exit_code == Some(1)
        && content.starts_with("bwrap: ")
    {
        crate::sandbox::forget_probe();
    }
    // Landlock cannot keep a protected entry out and still let a command create files beside
    // it: say so where it bites, so the model takes the way that works.
    if sandbox.backend() == crate::sandbox::Backend::Landlock
        && done.exit_code != Some(0)
        && content.contains("Permission denied")
    {
        content.push_str("\n[deputy: under this sandbox (Landlock) a command cannot create a new file or directory directly in a directory that holds a protected entry, such as the workspace root beside .git; create it with the write tool, or inside a subdirectory]");
    }
    // A layered sandbox applied exactly what the command changed and refused what would act
    // later outside the sandbox; otherwise (Landlock, a sandbox per command) anything protected
    // the command left is moved away.
    let refused: Vec<serde_json::Value> = done
        .layer
        .iter()
        .flat_map(|a| &a.refused)
        .map(|r| json!({"path": r.path, "why": r.why}))
        .collect();
    let notes = match &done.layer {
        Some(applied) => applied
            .refused
            .iter()
            .map(|r| {
                format!(
                    "`{}` was not written to the workspace: {}. If the user wants it, they can allow it with a permission rule (--allow 'edit:{}/**')",
                    r.path, r.why, r.path
                )
            })
            .collect(),
        None => sandbox.after_command(),
    };
    for n in &notes {
        content.push_str(&format!("\n[deputy: {n}]"));
    }
    ToolOutput {
        content,
        is_error: false,
        metadata: json!({
            "command": input.command,
            "description": input.description,
            "exit_code": done.exit_code,
            "signal": done.signal,
            "timed_out": done.timed_out,
            "duration_ms": done.duration.as_millis() as u64,
            "output_bytes": done.output.total,
            "output_truncated": (done.output.total as usize) > ctx.settings.max_output_bytes,
            "output": done.output.full_text(),
            "sandbox": sandbox.backend().as_str(),
            // Shown to the user as warnings.
            "warnings": notes,
            // What the command wrote that was not applied to the workspace.
            "refused": refused,
            "apply_ms": done.layer.as_ref().map(|a| a.elapsed.as_secs_f64() * 1000.0),
        }),
    }
}
