//! The tools the model can call. Each is a plain struct: a name, a description written for
//! models, an input struct whose schemars schema is what the model sees (so the schema cannot
//! drift from the parser), and an executor returning a short model-facing result plus
//! structured metadata for events.

mod bash;
mod edit;
mod glob;
mod grep;
mod html;
mod list;
mod read;
mod webfetch;
mod websearch;
mod write;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use bash::BashTool;
pub use edit::EditTool;
pub use glob::GlobTool;
pub use grep::GrepTool;
pub use list::ListTool;
pub use read::ReadTool;
pub use webfetch::{Format, UrlCheck, WebFetchConfig, WebFetchTool, WebSettings, check_url};
pub use websearch::{Provider, SearchSettings, WebSearchConfig, WebSearchTool};
pub use write::WriteTool;

use crate::error::ToolError;
use crate::process::CaptureLimits;
use crate::sandbox::Sandbox;
use crate::workspace::{Workspace, WsPath};

/// Settings shared by the tools (`[tools]` in config).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    /// Bash output shown to the model, in bytes (head and tail kept).
    pub max_output_bytes: usize,
    /// Bash output kept for the journal, in bytes.
    pub full_output_bytes: usize,
    /// Default bash timeout, in milliseconds.
    pub default_timeout_ms: u64,
    /// Largest timeout a model may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// Largest file `read` and `edit` open, in bytes.
    pub max_file_bytes: u64,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            max_output_bytes: 30_000,
            full_output_bytes: 1024 * 1024,
            default_timeout_ms: 120_000,
            max_timeout_ms: 600_000,
            max_file_bytes: 20 * 1024 * 1024,
        }
    }
}

impl ToolSettings {
    pub fn capture(&self) -> CaptureLimits {
        CaptureLimits {
            head: self.full_output_bytes,
            tail: 64 * 1024,
        }
    }

    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.default_timeout_ms)
    }
}

/// Decides whether a workspace path may be read (searches skip the others, so `grep` cannot
/// leak a file `read` would refuse).
pub type ReadFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a tool call may touch.
#[derive(Clone)]
pub struct ToolContext {
    pub workspace: Arc<Workspace>,
    /// The bash sandbox; `None` when no sandbox could be had (bash then refuses to run).
    pub sandbox: Result<Arc<Sandbox>, String>,
    pub settings: ToolSettings,
    pub readable: Option<ReadFilter>,
    /// What webfetch and websearch may do.
    pub web: Arc<WebSettings>,
}

impl ToolContext {
    pub fn may_read(&self, rel: &str) -> bool {
        self.readable.as_ref().is_none_or(|f| f(rel))
    }
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// What the model reads.
    pub content: String,
    /// The call failed; `content` says why and how to recover.
    pub is_error: bool,
    /// Structured details for events and the journal (exit code, diff, duration, …).
    pub metadata: Value,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>, metadata: Value) -> Self {
        Self {
            content: content.into(),
            is_error: false,
            metadata,
        }
    }

    pub fn error(e: impl std::fmt::Display) -> Self {
        Self {
            content: format!("Error: {e}"),
            is_error: true,
            metadata: json!({}),
        }
    }
}

/// What a call will touch, worked out from the same parsed input it runs with: what permission
/// rules are matched against, and what the protected-path rules look at. Paths are real (every
/// symlink resolved inside the workspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Run a shell command (in the sandbox).
    Command(String),
    /// Read a file.
    Read(WsPath),
    /// Create or change a file.
    Write(WsPath),
    /// Search or list under a directory.
    Search(WsPath),
    /// Reach the network: a URL to fetch, or a search query.
    Network(String),
}

impl Access {
    /// What permission patterns are matched against: the command, or the path.
    pub fn subject(&self) -> String {
        match self {
            Access::Command(c) | Access::Network(c) => c.clone(),
            Access::Read(p) | Access::Write(p) | Access::Search(p) => p.display(),
        }
    }

    /// The workspace path, for file tools.
    pub fn path(&self) -> Option<&WsPath> {
        match self {
            Access::Command(_) | Access::Network(_) => None,
            Access::Read(p) | Access::Write(p) | Access::Search(p) => Some(p),
        }
    }
}

type RunFn = Box<dyn FnOnce(ToolContext) -> BoxFuture<'static, ToolOutput> + Send>;

/// A call parsed and resolved: decide on its [`Access`], then run it. The run acts on exactly
/// what was decided (the parsed input and resolved path are moved into it).
pub struct Prepared {
    pub access: Access,
    run: RunFn,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    pub fn new<F>(access: Access, run: impl FnOnce(ToolContext) -> F + Send + 'static) -> Self
    where
        F: std::future::Future<Output = ToolOutput> + Send + 'static,
    {
        Self {
            access,
            run: Box::new(move |ctx| Box::pin(run(ctx))),
        }
    }

    /// A call whose work is file I/O or a walk: it runs on the blocking pool, off the async
    /// workers, so a slow disk never stalls the session.
    pub fn blocking<I: Send + 'static>(
        tool: &'static str,
        access: Access,
        input: I,
        body: fn(&ToolContext, &I, &Access) -> Result<ToolOutput, ToolError>,
    ) -> Self {
        let a = access.clone();
        Self::new(access, move |ctx| async move {
            match tokio::task::spawn_blocking(move || body(&ctx, &input, &a)).await {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => ToolOutput::error(e),
                Err(e) => ToolOutput::error(format!("{tool} failed: {e}")),
            }
        })
    }

    pub fn run(self, ctx: ToolContext) -> BoxFuture<'static, ToolOutput> {
        (self.run)(ctx)
    }
}

/// A tool.
pub trait Tool: Send + Sync {
    fn name(&self) -> &'static str;
    /// Description for the model: what it does, when to use it, what it returns.
    fn description(&self) -> &'static str;
    /// JSON Schema of the input, in OpenAI strict-compatible form.
    fn parameters(&self) -> Value;
    /// Whether the tool never changes anything (read-only tools may run concurrently).
    fn read_only(&self) -> bool;
    /// Parse the input and resolve what it names. An input that does not parse, or a path
    /// outside the workspace, is an error the model can read.
    fn prepare(&self, input: Value, ctx: &ToolContext) -> Result<Prepared, ToolError>;

    /// Prepare and run, with no permission check (tests, benchmarks).
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            match self.prepare(input, ctx) {
                Ok(p) => p.run(ctx.clone()).await,
                Err(e) => ToolOutput::error(e),
            }
        })
    }
}

/// Make the built-in tools' schemas on a thread of their own, so that a session being set up
/// beside it finds them made (building them is a good part of the work before a first request).
pub fn warm_schemas() {
    let _ = std::thread::Builder::new()
        .name("schemas".into())
        .spawn(|| {
            for t in builtin_tools() {
                t.parameters();
            }
        });
}

/// Every built-in tool except `task` (which lives in the runtime).
pub fn builtin_tools() -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(BashTool),
        Arc::new(ReadTool),
        Arc::new(WriteTool),
        Arc::new(EditTool),
        Arc::new(GlobTool),
        Arc::new(GrepTool),
        Arc::new(ListTool),
        Arc::new(WebFetchTool),
        Arc::new(WebSearchTool),
    ]
}

/// Parse tool input, with an error that tells the model which fields are expected. The schema
/// for that message is only built when the input does not parse.
pub(crate) fn parse_input<T: DeserializeOwned + schemars::JsonSchema + 'static>(
    tool: &str,
    input: Value,
) -> Result<T, ToolError> {
    // Some models send the arguments as a JSON string.
    let input = match input {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Value::Null => json!({}),
        v => v,
    };
    serde_json::from_value(input).map_err(|e| {
        let schema = strict_schema::<T>();
        let fields: Vec<String> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        ToolError::InvalidInput(format!(
            "invalid input for {tool}: {e}. Expected a JSON object with fields: {}",
            fields.join(", ")
        ))
    })
}

/// Prepare a file tool: parse, resolve the path it names (`None`: the workspace root) to its
/// real path, make the access `kind` says, and run `body` on the blocking pool.
pub(crate) fn prepare_file<I>(
    tool: &'static str,
    input: Value,
    ctx: &ToolContext,
    path: fn(&I) -> Option<&str>,
    kind: fn(WsPath) -> Access,
    body: fn(&ToolContext, &I, &Access) -> Result<ToolOutput, ToolError>,
) -> Result<Prepared, ToolError>
where
    I: DeserializeOwned + schemars::JsonSchema + Send + 'static,
{
    let input = parse_input::<I>(tool, input)?;
    let p = ctx.workspace.resolve(path(&input).unwrap_or("."))?;
    let p = ctx.workspace.real(&p)?;
    Ok(Prepared::blocking(tool, kind(p), input, body))
}

/// The path of a prepared file call (every file tool's access has one).
pub(crate) fn access_path(a: &Access) -> Result<&WsPath, ToolError> {
    a.path()
        .ok_or_else(|| ToolError::Failed("internal error: a file tool without a path".into()))
}

/// The schemars schema of `T`, made OpenAI strict-compatible: every property listed as
/// required (optional ones are nullable), no additional properties, and no keywords strict mode
/// rejects. Made once per type: every request offers the tools again, and building a schema
/// cost more than the rest of a turn.
pub fn strict_schema<T: schemars::JsonSchema + 'static>() -> Value {
    type Made = std::sync::Mutex<std::collections::HashMap<std::any::TypeId, Value>>;
    static MADE: std::sync::OnceLock<Made> = std::sync::OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    let id = std::any::TypeId::of::<T>();
    if let Some(v) = made.lock().ok().and_then(|m| m.get(&id).cloned()) {
        return v;
    }
    let v = make_strict_schema::<T>();
    if let Ok(mut m) = made.lock() {
        m.insert(id, v.clone());
    }
    v
}

fn make_strict_schema<T: schemars::JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| json!({"type": "object"}));
    strictify(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    v
}

fn strictify(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for key in ["format", "default", "examples", "$schema", "title"] {
                o.remove(key);
            }
            if o.get("minimum").and_then(Value::as_f64) == Some(0.0) {
                o.remove("minimum");
            }
            if let Some(Value::Object(props)) = o.get("properties") {
                let keys: Vec<Value> = props.keys().map(|k| json!(k)).collect();
                o.insert("required".into(), Value::Array(keys));
                o.insert("additionalProperties".into(), json!(false));
            }
            for (_, child) in o.iter_mut() {
                strictify(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strictify),
        _ => {}
    }
}

/// Accept a number or a numeric string (models send both).
pub(crate) fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected a non-negative number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected a number, got \"{s}\""))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a number, got {other}"
        ))),
    }
}

/// Accept a boolean or "true"/"false".
pub(crate) fn lenient_bool<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<bool>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected true or false, got {other}"
        ))),
    }
}

/// A unified diff of `old` → `new` for `path`, and (+added, -removed) line counts.
pub fn unified_diff(path: &str, old: &str, new: &str) -> (String, usize, usize) {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut added = 0;
    let mut removed = 0;
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    (text, added, removed)
}

/// Cut text to at most `max` bytes on a char boundary, saying so.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[… {} more bytes]", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(schemars::JsonSchema, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        /// A path.
        path: String,
        limit: Option<u64>,
    }

    #[test]
    fn strict_schema_lists_everything_as_required() {
        let s = strict_schema::<Sample>();
        assert_eq!(s["required"], json!(["path", "limit"]));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["limit"]["type"], json!(["integer", "null"]));
        assert!(s["properties"]["limit"].get("format").is_none());
        assert_eq!(s["properties"]["path"]["description"], "A path.");
    }
}
