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

mod fields;
mod values;

use values::loc;

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

/// The longest duration deputy accepts anywhere (a limit, a timeout): 30 days.
pub const MAX_DURATION_SECS: f64 = 30.0 * 86_400.0;

/// A positive, finite number of seconds, at most [`MAX_DURATION_SECS`], as a duration. Every
/// duration from a file, a flag or a client goes through here, so none can overflow later.
pub fn duration_from_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs > 0.0 && secs <= MAX_DURATION_SECS)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

/// Seconds in `90`, `90s`, `1500ms`, `10m`, `1h` (positive and finite, else `None`).
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
