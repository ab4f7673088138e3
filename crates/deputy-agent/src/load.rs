//! Reading one agent file into an [`AgentSpec`].
//!
//! The YAML is parsed once with serde-saphyr into a map of located values, then every key is
//! checked by hand. Checking by hand (instead of a derived struct) is what lets one loader accept
//! each format's spelling of the same field and still point at the exact line of a bad value.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::error::{AgentError, Diagnostic, Severity};
use crate::frontmatter;
use crate::lenient;
use crate::permission::{Action, PermissionRule};
use crate::spec::{AgentSpec, Mode, ModelRef};
use crate::tools::{ToolSet, canonical_tool_name, is_builtin_tool};

/// Agent files (and `{file:…}` prompt files) larger than this are refused unread.
pub const MAX_AGENT_FILE_BYTES: u64 = 1024 * 1024;

/// How to treat a file while loading it.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The name when the frontmatter has none. Default: the file stem.
    pub fallback_name: Option<String>,
    /// The directory tree `{file:…}` prompt references must stay inside. Default: the directory
    /// holding the agent file.
    pub root: Option<PathBuf>,
    /// Accept a file without frontmatter (the whole text is the prompt). True when a user names
    /// the file explicitly; discovery sets it to false so README files are skipped.
    pub allow_no_frontmatter: bool,
}

/// Why a file yielded no agent without being wrong: it has no frontmatter and
/// [`LoadOptions::allow_no_frontmatter`] is off. Discovery skips such files with a warning.
#[derive(Debug)]
pub enum Loaded {
    Agent(Box<AgentSpec>),
    NoFrontmatter,
}

/// Load an agent file named explicitly by the user (a file without frontmatter is accepted).
pub fn load_file(path: &Path) -> Result<AgentSpec, AgentError> {
    let opts = LoadOptions {
        allow_no_frontmatter: true,
        ..LoadOptions::default()
    };
    match load_file_with(path, &opts)? {
        Loaded::Agent(spec) => Ok(*spec),
        // Unreachable with allow_no_frontmatter, but keep the error honest rather than panic.
        Loaded::NoFrontmatter => Err(AgentError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Diagnostic::new(
                path,
                1,
                1,
                Severity::Error,
                "no frontmatter",
            )],
        }),
    }
}

/// Load an agent file with explicit options.
pub fn load_file_with(path: &Path, opts: &LoadOptions) -> Result<Loaded, AgentError> {
    let text = read_capped(path)?;
    parse_with(&text, path, opts)
}

/// Read a regular file as UTF-8 text, refusing files over [`MAX_AGENT_FILE_BYTES`] before
/// reading them, and anything else (a FIFO, a device) without waiting on it.
fn read_capped(path: &Path) -> Result<String, AgentError> {
    let io = |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking: a FIFO planted as an agent file must not hang deputy on open.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?
    };
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("it is a directory")));
    }
    if !meta.is_file() {
        return Err(io(std::io::Error::other(
            "not a regular file (a pipe, a device or a socket); agent files are plain text files",
        )));
    }
    if meta.len() > MAX_AGENT_FILE_BYTES {
        return Err(AgentError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: MAX_AGENT_FILE_BYTES,
        });
    }
    // Read at most one byte past the cap: the size may change between stat and read, and
    // special files report no size at all.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_AGENT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_AGENT_FILE_BYTES {
        return Err(AgentError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: MAX_AGENT_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // The prefix is valid UTF-8 by construction.
        let good = String::from_utf8_lossy(good);
        let line = good.matches('\n').count() + 1;
        let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        AgentError::NotUtf8 {
            path: path.to_path_buf(),
            line,
            column,
        }
    })
}

/// [`frontmatter::split`], an unclosed frontmatter an error at its opening line.
fn split_checked<'t>(text: &'t str, path: &Path) -> Result<frontmatter::Split<'t>, AgentError> {
    frontmatter::split(text).map_err(|u| AgentError::Invalid {
        path: path.to_path_buf(),
        problems: vec![Diagnostic::new(
            path,
            u.line,
            1,
            Severity::Error,
            "frontmatter opened with `---` is never closed; add a `---` line after the last key",
        )],
    })
}

/// Parse agent text as if it were read from `path` (used for messages and `{file:…}` lookups).
pub fn parse_with(text: &str, path: &Path, opts: &LoadOptions) -> Result<Loaded, AgentError> {
    let text = frontmatter::normalize(text);
    let split = split_checked(&text, path)?;
    let fallback_name = opts.fallback_name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "agent".to_string())
    });
    let body = clean_body(split.body);
    let Some(fm) = split.frontmatter else {
        if !opts.allow_no_frontmatter {
            return Ok(Loaded::NoFrontmatter);
        }
        let mut spec = AgentSpec::new(fallback_name, body);
        spec.source = Some(path.to_path_buf());
        return Ok(Loaded::Agent(Box::new(spec)));
    };
    let mut ctx = Ctx {
        path,
        line_offset: fm.first_line - 1,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let map = ctx.parse_yaml(fm.yaml)?;
    let spec = ctx.build(map, body, fallback_name, opts)?;
    Ok(Loaded::Agent(Box::new(spec)))
}

/// A markdown file with YAML frontmatter that is not an agent (a skill's `SKILL.md`, a command):
/// its keys as written, each with its value and position, and its body.
pub(crate) struct Markdown {
    pub keys: Vec<MarkdownKey>,
    pub body: String,
    /// Whether it has frontmatter at all.
    pub has_frontmatter: bool,
    /// Warnings found while reading it (a lenient repair of the YAML).
    pub notes: Vec<Diagnostic>,
}

pub(crate) struct MarkdownKey {
    pub key: String,
    pub value: Value,
    pub line: usize,
    pub column: usize,
}

/// Split and parse `text` (read from `path`) as [`Markdown`]; YAML errors come back with
/// their file positions, as an agent file's do.
pub(crate) fn parse_markdown(text: &str, path: &Path) -> Result<Markdown, AgentError> {
    let text = frontmatter::normalize(text);
    let split = split_checked(&text, path)?;
    let body = clean_body(split.body);
    let Some(fm) = split.frontmatter else {
        return Ok(Markdown {
            keys: Vec::new(),
            body,
            has_frontmatter: false,
            notes: Vec::new(),
        });
    };
    let mut ctx = Ctx {
        path,
        line_offset: fm.first_line - 1,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let map = ctx.parse_yaml(fm.yaml)?;
    let keys = map
        .into_iter()
        .map(|(key, v)| {
            let (line, column) = loc(&v);
            MarkdownKey {
                key,
                value: v.value,
                line: if line == 0 { 0 } else { line + ctx.line_offset },
                column,
            }
        })
        .collect();
    Ok(Markdown {
        keys,
        body,
        has_frontmatter: true,
        notes: ctx.notes,
    })
}

/// Read a markdown file (agent, skill, command) as [`parse_markdown`] does, with the agent
/// file's limits: a regular file, UTF-8, at most [`MAX_AGENT_FILE_BYTES`].
pub(crate) fn read_markdown(path: &Path) -> Result<String, AgentError> {
    read_capped(path)
}

fn clean_body(body: &str) -> String {
    body.trim_start_matches(['\n', ' ', '\t'])
        .trim_end()
        .to_string()
}

type RawMap = IndexMap<String, Spanned<Value>>;

struct Ctx<'p> {
    path: &'p Path,
    /// Lines of the file before the YAML starts.
    line_offset: usize,
    problems: Vec<Diagnostic>,
    notes: Vec<Diagnostic>,
}

fn yaml_options() -> serde_saphyr::Options {
    // Agent frontmatter is a few dozen keys. These budgets stop alias bombs and pathological
    // nesting long before they cost memory or time, and are far above any real agent file.
    let budget = serde_saphyr::budget! {
        max_events: 200_000,
        max_aliases: 1_000,
        max_anchors: 1_000,
        max_recorded_anchor_events: 100_000,
        max_recorded_anchor_bytes: 1 << 20,
        flow_nesting_limit: 64,
    };
    serde_saphyr::options! {
        budget: budget,
    }
}

impl Ctx<'_> {
    fn diag(
        &self,
        line: usize,
        column: usize,
        severity: Severity,
        msg: impl Into<String>,
    ) -> Diagnostic {
        let line = if line == 0 {
            0
        } else {
            line + self.line_offset
        };
        Diagnostic::new(self.path, line, column, severity, msg)
    }

    fn error_at(&mut self, v: &Spanned<Value>, key: &str, msg: impl std::fmt::Display) {
        let (line, col) = loc(v);
        let d = self.diag(line, col, Severity::Error, format!("{key}: {msg}"));
        self.problems.push(d);
    }

    fn note_at(&mut self, v: &Spanned<Value>, severity: Severity, msg: impl Into<String>) {
        let (line, col) = loc(v);
        let d = self.diag(line, col, severity, msg);
        self.notes.push(d);
    }

    fn invalid(&self, problems: Vec<Diagnostic>) -> AgentError {
        AgentError::Invalid {
            path: self.path.to_path_buf(),
            problems,
        }
    }

    fn yaml_error(&self, err: &serde_saphyr::Error) -> Diagnostic {
        let (line, col) = err
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        let plain = serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        };
        let mut msg = err.render_with_options(plain);
        // The plain rendering ends with " at line L, column C"; we print the position up front.
        if let Some(i) = msg.rfind(" at line ") {
            msg.truncate(i);
        }
        let msg = msg.trim().to_string();
        let hint = if msg.contains("tab") {
            " (YAML indentation must use spaces, not tabs)"
        } else if msg.contains("budget") || msg.contains("alias") {
            " (the frontmatter uses too many aliases or anchors; write the values out)"
        } else {
            ""
        };
        self.diag(
            line,
            col,
            Severity::Error,
            format!("invalid YAML frontmatter: {msg}{hint}"),
        )
    }

    /// Strict parse; on failure, one lenient re-reading for the well-known unquoted `: ` case.
    fn parse_yaml(&mut self, yaml: &str) -> Result<RawMap, AgentError> {
        if yaml.trim().is_empty() {
            return Ok(RawMap::new());
        }
        let strict = serde_saphyr::from_str_with_options::<Option<RawMap>>(yaml, yaml_options());
        let err = match strict {
            Ok(map) => return Ok(map.unwrap_or_default()),
            Err(err) => err,
        };
        let mut first = self.yaml_error(&err);
        if first.message.contains("tab") {
            // The parser reports where the scalar began; point at the tab itself.
            if let Some(i) = yaml.lines().position(|l| {
                l.chars()
                    .take_while(|c| c.is_whitespace())
                    .any(|c| c == '\t')
            }) {
                first.line = i + 1 + self.line_offset;
                first.column = 1;
            }
        }
        let first = if first.message.contains("invalid type") && first.message.contains("map") {
            Diagnostic {
                message: "the frontmatter must be a mapping of `key: value` lines".into(),
                ..first
            }
        } else {
            first
        };
        if let Some(repair) = lenient::repair(yaml)
            && let Ok(map) =
                serde_saphyr::from_str_with_options::<Option<RawMap>>(&repair.yaml, yaml_options())
        {
            for (line, key) in &repair.fixed {
                let d = self.diag(
                    line + 1,
                    1,
                    Severity::Warning,
                    format!(
                        "`{key}` contains an unquoted `: `, which strict YAML rejects; read it as \
                         plain text (quote the value to silence this warning)"
                    ),
                );
                self.notes.push(d);
            }
            return Ok(map.unwrap_or_default());
        }
        Err(self.invalid(vec![first]))
    }

    fn build(
        &mut self,
        map: RawMap,
        body: String,
        fallback_name: String,
        opts: &LoadOptions,
    ) -> Result<AgentSpec, AgentError> {
        let mut spec = AgentSpec::new(fallback_name, body);
        spec.source = Some(self.path.to_path_buf());
        let mut disallowed: Vec<String> = Vec::new();
        let mut prompt_key: Option<Spanned<Value>> = None;
        for (key, v) in map {
            match key.as_str() {
                "name" => {
                    if let Some(s) = self.string(&v, &key) {
                        let s = s.trim().to_string();
                        if s.is_empty() || s.contains('\n') {
                            self.error_at(&v, &key, "must be a non-empty single line");
                        } else {
                            spec.name = s;
                        }
                    }
                }
                "description" => {
                    spec.description = self.string(&v, &key).map(|s| s.trim().to_string())
                }
                "mode" => {
                    if let Some(s) = self.string(&v, &key) {
                        match Mode::parse(&s) {
                            Some(m) => spec.mode = m,
                            None => self.error_at(
                                &v,
                                &key,
                                format!("must be one of primary, subagent, all; found `{s}`"),
                            ),
                        }
                    }
                }
                "model" => spec.model = self.string(&v, &key).map(|s| ModelRef::parse(&s)),
                "temperature" => spec.temperature = self.number_in(&v, &key, 0.0, 2.0),
                "top_p" | "topP" | "top-p" => spec.top_p = self.number_in(&v, &key, 0.0, 1.0),
                "reasoningEffort" | "reasoning_effort" | "effort" => {
                    if let Some(s) = self.string(&v, &key) {
                        match s.as_str() {
                            "minimal" | "low" | "medium" | "high" => {
                                spec.reasoning_effort = Some(s)
                            }
                            _ => self.error_at(
                                &v,
                                &key,
                                format!("must be one of minimal, low, medium, high; found `{s}`"),
                            ),
                        }
                    }
                }
                "thinking" | "thinkingBudget" | "thinking_budget" => match &v.value {
                    Value::Bool(false) => spec.thinking_budget = Some(0),
                    _ => {
                        if let Some(n) = self.positive_int(&v, &key) {
                            spec.thinking_budget = Some(n);
                        }
                    }
                },
                "steps" | "maxSteps" | "max_steps" | "maxTurns" | "max_turns" => {
                    if let Some(n) = self.positive_int(&v, &key) {
                        spec.max_steps = Some(n);
                    }
                }
                "timeout_mins" | "timeout_minutes" | "timeoutMins" => {
                    if let Some(m) = self.number_in(&v, &key, f64::MIN_POSITIVE, 10_000.0) {
                        spec.timeout = Some(Duration::from_secs_f64(m * 60.0));
                    }
                }
                "timeout" => spec.timeout = self.duration(&v, &key).or(spec.timeout),
                "runConfig" | "run_config" => self.run_config(&v, &mut spec),
                "tools" => {
                    if let Some(tools) = self.tools(&v, &key) {
                        spec.tools = tools;
                    }
                }
                "disallowedTools" | "disallowed_tools" | "disallowed-tools" | "excludeTools"
                | "exclude_tools" => {
                    if let Some(names) = self.name_list(&v, &key) {
                        disallowed.extend(names);
                    }
                }
                "permission" | "permissions" => {
                    if key == "permissions" {
                        self.note_at(
                            &v,
                            Severity::Note,
                            "`permissions` read as `permission` (opencode ignores the plural; deputy applies it)",
                        );
                    }
                    if let Some(rules) = self.permission(&v, &key) {
                        spec.permission.extend(rules);
                    }
                }
                "network" => spec.network = self.boolean(&v, &key),
                "isolation" => {
                    if let Some(s) = self.string(&v, &key) {
                        match crate::spec::Isolation::parse(&s) {
                            Some(i) => spec.isolation = i,
                            None => self.error_at(
                                &v,
                                &key,
                                format!("must be `worktree` (or `none`); found `{s}`"),
                            ),
                        }
                    }
                }
                "instructions" => spec.instructions = self.boolean(&v, &key),
                "skills" => {
                    if let Some(names) = self.name_list(&v, &key) {
                        spec.skills = names;
                    }
                }
                "hidden" => spec.hidden = self.boolean(&v, &key).unwrap_or(false),
                "disable" | "disabled" => spec.disable = self.boolean(&v, &key).unwrap_or(false),
                "color" | "colour" => spec.color = self.string(&v, &key),
                "prompt" | "system_prompt" | "systemPrompt" => prompt_key = Some(v),
                "mcpServers" | "mcp_servers" | "mcp" => {
                    let unit = if key == "mcp" {
                        crate::mcp::NumberUnit::Millis
                    } else {
                        crate::mcp::NumberUnit::Seconds
                    };
                    self.mcp_servers(&v, &key, unit, &mut spec);
                }
                _ => {
                    self.note_at(
                        &v,
                        Severity::Note,
                        format!("unknown key `{key}` (kept in options, not used by deputy)"),
                    );
                    spec.options.insert(key, v.value);
                }
            }
        }
        // A server the file declares is there to be used: its tools are enabled unless the
        // file says otherwise about that server.
        for name in spec.mcp_servers.keys() {
            let entry = format!("mcp__{name}");
            if !spec
                .tools
                .overrides
                .keys()
                .any(|k| crate::mcp::mcp_server_of(k) == Some(name.as_str()))
            {
                spec.tools.overrides.insert(entry, true);
            }
        }
        if !disallowed.is_empty() {
            spec.tools.disable(&disallowed);
        }
        for unknown in spec.tools.unknown() {
            let message = match crate::mcp::mcp_server_of(unknown) {
                Some(server) if spec.mcp_servers.contains_key(server) => continue,
                Some(server) => format!(
                    "tool `{unknown}` comes from MCP server `{server}`, which this file does not \
                     declare; it is offered only if config declares it ([mcp.servers.{server}])"
                ),
                None => format!("tool `{unknown}` is not provided by deputy; it is ignored"),
            };
            let d = self.diag(0, 0, Severity::Note, message);
            self.notes.push(d);
        }
        if let Some(v) = prompt_key {
            self.prompt(&v, &mut spec, opts);
        }
        if !self.problems.is_empty() {
            let problems = std::mem::take(&mut self.problems);
            return Err(self.invalid(problems));
        }
        spec.diagnostics = std::mem::take(&mut self.notes);
        // Stable order: by line.
        spec.diagnostics.sort_by_key(|d| (d.line, d.column));
        Ok(spec)
    }

    fn string(&mut self, v: &Spanned<Value>, key: &str) -> Option<String> {
        match &v.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
            other => {
                self.error_at(v, key, format!("must be text, found {}", kind(other)));
                None
            }
        }
    }

    fn boolean(&mut self, v: &Spanned<Value>, key: &str) -> Option<bool> {
        match &v.value {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.error_at(
                    v,
                    key,
                    format!("must be true or false, found {}", show(other)),
                );
                None
            }
        }
    }

    fn number_in(&mut self, v: &Spanned<Value>, key: &str, min: f64, max: f64) -> Option<f64> {
        let n = match &v.value {
            Value::Number(n) => n.as_f64(),
            Value::Null => return None,
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
            _ => {
                let range = if min <= 0.0 {
                    format!("a number from {min} to {max}")
                } else {
                    "a positive number".to_string()
                };
                self.error_at(v, key, format!("must be {range}, found {}", show(&v.value)));
                None
            }
        }
    }

    fn positive_int(&mut self, v: &Spanned<Value>, key: &str) -> Option<u32> {
        match &v.value {
            Value::Number(n)
                if n.as_u64()
                    .is_some_and(|n| n >= 1 && n <= u64::from(u32::MAX)) =>
            {
                n.as_u64().map(|n| n as u32)
            }
            Value::Null => None,
            other => {
                self.error_at(
                    v,
                    key,
                    format!(
                        "must be a whole number of at least 1, found {}",
                        show(other)
                    ),
                );
                None
            }
        }
    }

    /// `timeout: 90` (seconds), `timeout: 90s`, `10m`, `1h`.
    fn duration(&mut self, v: &Spanned<Value>, key: &str) -> Option<Duration> {
        let parsed = match &v.value {
            Value::Number(n) => n
                .as_f64()
                .filter(|s| *s > 0.0 && s.is_finite() && *s <= MAX_DURATION_SECS),
            Value::String(s) => parse_duration_secs(s),
            Value::Null => return None,
            _ => None,
        };
        match parsed {
            Some(secs) => duration_from_secs(secs),
            None => {
                self.error_at(
                    v,
                    key,
                    format!(
                        "must be a duration such as 90 (seconds), 90s, 10m or 1h, at most 30 days, found {}",
                        show(&v.value)
                    ),
                );
                None
            }
        }
    }

    fn run_config(&mut self, v: &Spanned<Value>, spec: &mut AgentSpec) {
        let Value::Object(map) = &v.value else {
            self.error_at(
                v,
                "runConfig",
                "must be a mapping (max_turns, max_time_minutes)",
            );
            return;
        };
        for (k, val) in map {
            let sub = Spanned {
                value: val.clone(),
                referenced: v.referenced,
                defined: v.defined,
            };
            let key = format!("runConfig.{k}");
            match k.as_str() {
                "max_turns" | "maxTurns" => spec.max_steps = self.positive_int(&sub, &key),
                "max_time_minutes" | "maxTimeMinutes" => {
                    if let Some(m) = self.number_in(&sub, &key, f64::MIN_POSITIVE, 10_000.0) {
                        spec.timeout = Some(Duration::from_secs_f64(m * 60.0));
                    }
                }
                _ => {
                    self.note_at(
                        v,
                        Severity::Note,
                        format!("unknown key `{key}` (not used by deputy)"),
                    );
                    spec.options.insert(key, val.clone());
                }
            }
        }
    }

    fn name_list(&mut self, v: &Spanned<Value>, key: &str) -> Option<Vec<String>> {
        match &v.value {
            Value::Null => Some(Vec::new()),
            Value::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.trim().to_string()),
                        other => {
                            self.error_at(
                                v,
                                key,
                                format!("list items must be tool names, found {}", show(other)),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.error_at(
                    v,
                    key,
                    format!(
                        "must be a list of tool names or a comma-separated string, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// `mcpServers` (a map, or Claude Code's list of names and one-entry maps) or `mcp`.
    fn mcp_servers(
        &mut self,
        v: &Spanned<Value>,
        key: &str,
        unit: crate::mcp::NumberUnit,
        spec: &mut AgentSpec,
    ) {
        let mut inline = serde_json::Map::new();
        match &v.value {
            Value::Null => return,
            Value::Object(m) => inline = m.clone(),
            Value::Array(items) => {
                for item in items {
                    match item {
                        // A server configured elsewhere, by name: enable its tools.
                        Value::String(name) => {
                            spec.tools
                                .overrides
                                .insert(format!("mcp__{}", name.trim()), true);
                        }
                        Value::Object(m) => inline.extend(m.clone()),
                        _ => self.error_at(v, key, "items must be server names or maps"),
                    }
                }
            }
            _ => {
                self.error_at(v, key, "must be a map of server name → declaration");
                return;
            }
        }
        let (servers, errors) = crate::mcp::parse_servers(&Value::Object(inline), unit);
        for e in errors {
            self.error_at(v, key, e);
        }
        spec.mcp_servers.extend(servers);
    }

    fn tools(&mut self, v: &Spanned<Value>, key: &str) -> Option<ToolSet> {
        match &v.value {
            // `tools:` with nothing after it: as if absent.
            Value::Null => None,
            Value::Object(map) => {
                let mut set = ToolSet::all();
                for (name, enabled) in map {
                    let on = match enabled {
                        Value::Bool(b) => *b,
                        Value::String(s) => match Action::parse(s) {
                            Some(a) => a != Action::Deny,
                            None => {
                                self.error_at(
                                    v,
                                    key,
                                    format!("`{name}` must be true or false, found \"{s}\""),
                                );
                                continue;
                            }
                        },
                        other => {
                            self.error_at(
                                v,
                                key,
                                format!("`{name}` must be true or false, found {}", show(other)),
                            );
                            continue;
                        }
                    };
                    if name.trim() == "*" {
                        set.default = on;
                    } else {
                        set.overrides.insert(canonical_tool_name(name), on);
                    }
                }
                Some(set)
            }
            _ => self.name_list(v, key).map(ToolSet::only),
        }
    }

    fn permission(&mut self, v: &Spanned<Value>, key: &str) -> Option<Vec<PermissionRule>> {
        if v.value.is_null() {
            return None;
        }
        let (rules, errors) = crate::permission::parse_permission(&v.value);
        for e in errors {
            self.error_at(v, key, e);
        }
        if let Value::Object(map) = &v.value {
            for tool in map.keys() {
                let name = canonical_tool_name(tool);
                if tool.trim() != "*" && !is_builtin_tool(&name) {
                    self.note_at(
                        v,
                        Severity::Note,
                        format!("permission for `{tool}`: deputy has no such tool; the rule is kept but never matches"),
                    );
                }
            }
        }
        (!v.value.is_array() && !v.value.is_number()).then_some(rules)
    }

    fn prompt(&mut self, v: &Spanned<Value>, spec: &mut AgentSpec, opts: &LoadOptions) {
        let Some(text) = self.string(v, "prompt") else {
            return;
        };
        let trimmed = text.trim();
        let resolved = match trimmed
            .strip_prefix("{file:")
            .and_then(|r| r.strip_suffix('}'))
        {
            Some(reference) => match self.prompt_file(reference.trim(), opts) {
                Ok(t) => t,
                Err(msg) => {
                    self.error_at(v, "prompt", msg);
                    return;
                }
            },
            None => text,
        };
        if !spec.prompt.is_empty() {
            self.note_at(
                v,
                Severity::Warning,
                "both a `prompt` key and a body are present; the `prompt` key is used",
            );
        }
        spec.prompt = clean_body(&frontmatter::normalize(&resolved));
    }

    fn prompt_file(&self, reference: &str, opts: &LoadOptions) -> Result<String, String> {
        let base = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let root = opts.root.clone().unwrap_or_else(|| base.to_path_buf());
        let target = base.join(reference);
        let outside = || {
            format!(
                "prompt file `{reference}` is outside the agent's directory {}; refused",
                root.display()
            )
        };
        // Refuse lexical escapes before touching the file system, then symlink escapes below.
        if !lexically_normal(&target).starts_with(lexically_normal(&root)) {
            return Err(outside());
        }
        let root_real = root
            .canonicalize()
            .map_err(|e| format!("cannot resolve the agent directory {}: {e}", root.display()))?;
        let real = target.canonicalize().map_err(|e| {
            format!(
                "cannot open prompt file `{reference}` ({}): {e}",
                target.display()
            )
        })?;
        if !real.starts_with(&root_real) {
            return Err(outside());
        }
        read_capped(&real).map_err(|e| match e {
            AgentError::TooLarge { size, limit, .. } => {
                format!("prompt file `{reference}` is {size} bytes, over the {limit}-byte limit")
            }
            AgentError::NotUtf8 { .. } => format!("prompt file `{reference}` is not UTF-8 text"),
            other => format!("prompt file `{reference}`: {other}"),
        })
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system. A leading `..` is kept.
fn lexically_normal(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn loc(v: &Spanned<Value>) -> (usize, usize) {
    (v.referenced.line() as usize, v.referenced.column() as usize)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_string(),
    }
}

/// Seconds in `90`, `90s`, `1500ms`, `10m`, `1h` (positive and finite, else `None`).
/// The longest duration deputy accepts anywhere (a limit, a timeout): 30 days.
pub const MAX_DURATION_SECS: f64 = 30.0 * 86_400.0;

/// A positive, finite number of seconds, at most [`MAX_DURATION_SECS`], as a duration. Every
/// duration from a file, a flag or a client goes through here, so none can overflow later.
pub fn duration_from_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs > 0.0 && secs <= MAX_DURATION_SECS)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

pub fn parse_duration_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let n: f64 = num.trim().parse().ok()?;
    let secs = n * mult;
    (n > 0.0 && secs.is_finite() && secs <= MAX_DURATION_SECS).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentSpec, AgentError> {
        let opts = LoadOptions {
            allow_no_frontmatter: true,
            ..Default::default()
        };
        match parse_with(text, Path::new("agents/x.md"), &opts)? {
            Loaded::Agent(s) => Ok(*s),
            Loaded::NoFrontmatter => panic!("no frontmatter"),
        }
    }

    fn first_error(text: &str) -> Diagnostic {
        parse(text).unwrap_err().diagnostics().remove(0)
    }

    /// Claude Code's `isolation: worktree`; anything else is an error at its line.
    #[test]
    fn isolation_is_worktree_or_an_error_at_its_line() {
        let s = parse("---\nname: w\nisolation: worktree\n---\nBody").unwrap();
        assert_eq!(s.isolation, crate::spec::Isolation::Worktree);
        assert_eq!(
            parse("---\nname: w\n---\n").unwrap().isolation,
            crate::spec::Isolation::None
        );
        let d = first_error("---\nname: w\nisolation: container\n---\n");
        assert_eq!(d.line, 3, "{d:?}");
        assert!(
            d.message.contains("isolation") && d.message.contains("`worktree`"),
            "{d:?}"
        );
    }

    #[test]
    fn opencode_map_and_permissions() {
        let spec = parse(
            "---\n\ndescription: d\nmode: subagent\ntemperature: 0.1\ntools:\n  \"*\": false\n  bash: true\n  Read: true\npermissions:\n  bash:\n    \"*\": \"deny\"\n    \"git diff*\": allow\n  edit: deny\n---\n\n# Body\n",
        )
        .unwrap();
        assert_eq!(spec.name, "x");
        assert_eq!(spec.mode, Mode::Subagent);
        assert_eq!(spec.temperature, Some(0.1));
        assert!(!spec.tools.default);
        assert_eq!(spec.tools.enabled_builtins(), vec!["bash", "read"]);
        assert_eq!(
            spec.permission,
            vec![
                PermissionRule::new("bash", "*", Action::Deny),
                PermissionRule::new("bash", "git diff*", Action::Allow),
                PermissionRule::new("edit", "*", Action::Deny),
            ]
        );
        assert_eq!(spec.prompt, "# Body");
    }

    #[test]
    fn claude_string_tools_and_disallowed() {
        let spec = parse(
            "---\nname: n\ntools: Read, Grep, Bash, mcp__s__t\ndisallowedTools: [Bash]\n---\nP",
        )
        .unwrap();
        assert_eq!(spec.tools.enabled_builtins(), vec!["read", "grep"]);
        assert_eq!(spec.tools.unknown(), vec!["mcp__s__t"]);
        assert!(
            spec.diagnostics
                .iter()
                .any(|d| d.message.contains("mcp__s__t"))
        );
    }

    #[test]
    fn step_and_timeout_aliases() {
        let s = parse("---\nmaxTurns: 7\ntimeout_mins: 2\n---\n").unwrap();
        assert_eq!(s.max_steps, Some(7));
        assert_eq!(s.timeout, Some(Duration::from_secs(120)));
        let s = parse("---\nrunConfig:\n  max_turns: 3\n  max_time_minutes: 1\n---\n").unwrap();
        assert_eq!(s.max_steps, Some(3));
        assert_eq!(s.timeout, Some(Duration::from_secs(60)));
        let s = parse("---\ntimeout: 10m\n---\n").unwrap();
        assert_eq!(s.timeout, Some(Duration::from_secs(600)));
    }

    #[test]
    fn bad_values_point_at_the_line() {
        let d = first_error("---\nname: a\ntemperature: hot\n---\n");
        assert_eq!((d.line, d.column), (3, 14));
        assert!(d.message.contains("temperature"), "{d}");
        let d = first_error("---\ntemperature: 3\n---\n");
        assert!(d.message.contains("from 0 to 2"), "{d}");
        let d = first_error("---\nsteps: -1\n---\n");
        assert!(d.message.contains("at least 1"), "{d}");
        assert_eq!(d.line, 2);
        let d = first_error("---\nmode: boss\n---\n");
        assert!(d.message.contains("primary, subagent, all"), "{d}");
    }

    #[test]
    fn yaml_errors_have_positions() {
        let d = first_error("---\nname: a\n\tdescription: b\n---\n");
        assert_eq!(d.line, 3, "{d}");
        assert!(d.message.contains("invalid YAML"), "{d}");
        let d = first_error("---\nname: a\nname: b\n---\n");
        assert_eq!(d.line, 3, "{d}");
        let d = first_error("---\n- a\n- b\n---\n");
        assert!(d.message.contains("mapping"), "{d}");
    }

    #[test]
    fn lenient_fallback_warns() {
        let s =
            parse("---\nname: t\ndescription: Use it. Triggers on: 'a', 'b'\ntools: Read\n---\n")
                .unwrap();
        assert_eq!(
            s.description.as_deref(),
            Some("Use it. Triggers on: 'a', 'b'")
        );
        let w: Vec<_> = s.warnings().collect();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].line, 3);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut y = String::from("---\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        y.push_str("---\n");
        // 10^12 nodes if expanded; the budget refuses it (timed in the benchmark).
        let err = parse(&y).unwrap_err();
        assert!(err.to_string().contains("invalid YAML"), "{err}");
    }

    #[test]
    fn no_frontmatter_when_not_allowed() {
        let r = parse_with(
            "# README\n",
            Path::new("README.md"),
            &LoadOptions::default(),
        )
        .unwrap();
        assert!(matches!(r, Loaded::NoFrontmatter));
    }

    #[test]
    fn unknown_keys_are_kept() {
        let s = parse("---\ncategory: core\nversion: 1.0.0\n---\n").unwrap();
        assert_eq!(s.options["category"], "core");
        assert_eq!(s.options["version"], "1.0.0");
        assert_eq!(s.diagnostics.len(), 2);
        assert!(s.warnings().next().is_none());
    }
}
