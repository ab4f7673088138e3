//! Agent Skills: a folder with a `SKILL.md` whose frontmatter has `name` and `description`
//! (and optionally `allowed-tools`, `license`, `metadata`), plus any files it bundles. The
//! format Claude Code, Codex, opencode and Gemini CLI load on demand.
//!
//! This module parses and validates one `SKILL.md`, with positions; finding skills and reading
//! their files (confined to where they are) is the runtime's.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{AgentError, Diagnostic, Severity};
use crate::load::{Markdown, parse_markdown};

/// The longest skill name (the Agent Skills specification's).
pub const MAX_SKILL_NAME: usize = 64;
/// The longest description.
pub const MAX_SKILL_DESCRIPTION: usize = 1024;

/// One skill, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skill {
    pub name: String,
    pub description: String,
    /// `allowed-tools`, as deputy's tool names: the tools the skill says it needs. It can
    /// narrow what the session may do while following it, never widen it.
    pub allowed_tools: Option<Vec<String>>,
    /// The instructions: `SKILL.md`'s body.
    pub body: String,
    /// The `SKILL.md` it came from.
    pub path: PathBuf,
    /// Warnings and notes (a name that is not its folder's, an unknown key).
    pub diagnostics: Vec<Diagnostic>,
}

impl Skill {
    /// The folder the skill's files are in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// Whether `name` is a valid skill name: 1–64 of `a-z`, `0-9` and `-`, not starting or ending
/// with `-`, no `--`.
pub fn valid_skill_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SKILL_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Parse the text of a `SKILL.md` read from `path` (its folder's name is the expected name).
pub fn parse_skill(text: &str, path: &Path) -> Result<Skill, AgentError> {
    let md: Markdown = parse_markdown(text, path)?;
    let mut problems = Vec::new();
    let mut diagnostics = md.notes;
    let d = |line: usize, column: usize, sev: Severity, msg: String| {
        Diagnostic::new(path, line, column, sev, msg)
    };
    if !md.has_frontmatter {
        return Err(AgentError::Invalid {
            path: path.to_path_buf(),
            problems: vec![d(
                1,
                1,
                Severity::Error,
                "a SKILL.md starts with frontmatter: `---`, `name: my-skill`, `description: what it does and when to use it`, `---`".into(),
            )],
        });
    }
    let (mut name, mut description, mut allowed) = (None, None, None);
    for k in &md.keys {
        let text = match &k.value {
            Value::String(s) => Some(s.trim().to_string()),
            _ => None,
        };
        match k.key.as_str() {
            "name" => match text {
                Some(n) if valid_skill_name(&n) => name = Some(n),
                Some(n) => problems.push(d(k.line, k.column, Severity::Error, format!(
                    "name: `{n}` is not a skill name: 1 to {MAX_SKILL_NAME} lowercase letters, digits and single hyphens (like `pdf-forms`)"
                ))),
                None => problems.push(d(k.line, k.column, Severity::Error, "name: must be text".into())),
            },
            "description" => match text {
                Some(t) if t.is_empty() => problems.push(d(k.line, k.column, Severity::Error,
                    "description: must say what the skill does and when to use it".into())),
                Some(t) if t.chars().count() > MAX_SKILL_DESCRIPTION => problems.push(d(k.line, k.column, Severity::Error, format!(
                    "description: {} characters, over the {MAX_SKILL_DESCRIPTION} a skill's description may have (the model reads every one up front)",
                    t.chars().count()
                ))),
                Some(t) => description = Some(t),
                None => problems.push(d(k.line, k.column, Severity::Error, "description: must be text".into())),
            },
            "allowed-tools" | "allowed_tools" | "allowedTools" => {
                let names: Option<Vec<String>> = match &k.value {
                    Value::String(s) => Some(split_tools(s)),
                    Value::Array(a) => a.iter().map(|v| v.as_str().map(str::to_string)).collect(),
                    _ => None,
                };
                match names {
                    Some(n) => {
                        let mut tools: Vec<String> = n
                            .iter()
                            .map(|t| {
                                // `Bash(git:*)`: the tool is what comes before the pattern.
                                let bare = t.split('(').next().unwrap_or(t);
                                crate::tools::canonical_tool_name(bare)
                            })
                            .filter(|t| !t.is_empty())
                            .collect();
                        tools.dedup();
                        allowed = Some(tools);
                    }
                    None => problems.push(d(k.line, k.column, Severity::Error,
                        "allowed-tools: must be a list of tool names, or one line of them".into())),
                }
            }
            "license" | "metadata" | "compatibility" | "version" => {}
            other => diagnostics.push(d(k.line, k.column, Severity::Note, format!(
                "`{other}` is not a skill key deputy uses (name, description, allowed-tools, license, metadata); kept and ignored"
            ))),
        }
    }
    if name.is_none() && !problems.iter().any(|p| p.message.starts_with("name:")) {
        problems.push(d(1, 1, Severity::Error, "`name` is missing".into()));
    }
    if description.is_none()
        && !problems
            .iter()
            .any(|p| p.message.starts_with("description:"))
    {
        problems.push(d(
            1,
            1,
            Severity::Error,
            "`description` is missing: say what the skill does and when to use it".into(),
        ));
    }
    if !problems.is_empty() {
        return Err(AgentError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    let name = name.unwrap_or_default();
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .map(|f| f.to_string_lossy().into_owned());
    if let Some(f) = folder.filter(|f| *f != name) {
        diagnostics.push(d(1, 1, Severity::Warning, format!(
            "the skill is named `{name}` but its folder is `{f}`; the Agent Skills format wants them equal (deputy uses `{name}`)"
        )));
    }
    Ok(Skill {
        name,
        description: description.unwrap_or_default(),
        allowed_tools: allowed,
        body: md.body,
        path: path.to_path_buf(),
        diagnostics,
    })
}

/// `Read, Grep` or `Read Grep` or `Bash(git add:*) Read`: the names, patterns kept whole.
fn split_tools(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' | ' ' | '\t' if depth == 0 => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Read and parse the `SKILL.md` at `path` (a regular file, UTF-8, at most the agent file cap).
pub fn load_skill(path: &Path) -> Result<Skill, AgentError> {
    let text = crate::load::read_markdown(path)?;
    parse_skill(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Skill, AgentError> {
        parse_skill(text, Path::new("/s/pdf-forms/SKILL.md"))
    }

    #[test]
    fn a_skill_parses_with_its_tools() {
        let s = parse("---\nname: pdf-forms\ndescription: Fill PDF forms. Use when a PDF has fields.\nallowed-tools: Read, Bash(python3:*) Grep\nlicense: MIT\n---\n# PDF\nRun scripts/fill.py\n").unwrap();
        assert_eq!(s.name, "pdf-forms");
        assert_eq!(
            s.allowed_tools.as_deref(),
            Some(&["read".to_string(), "bash".into(), "grep".into()][..])
        );
        assert_eq!(s.body, "# PDF\nRun scripts/fill.py");
        assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
        assert_eq!(s.dir(), Path::new("/s/pdf-forms"));
    }

    #[test]
    fn bad_skills_say_where_and_what() {
        let e = parse("no frontmatter").unwrap_err().to_string();
        assert!(
            e.contains("SKILL.md:1:1") && e.contains("starts with frontmatter"),
            "{e}"
        );
        let e = parse("---\nname: PDF Forms\ndescription: x\n---\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SKILL.md:2:") && e.contains("not a skill name"),
            "{e}"
        );
        let e = parse("---\nname: pdf-forms\n---\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`description` is missing"), "{e}");
        let long = "x".repeat(1100);
        let e = parse(&format!("---\nname: pdf-forms\ndescription: {long}\n---\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SKILL.md:3:") && e.contains("1100 characters"),
            "{e}"
        );
        let e = parse("---\nname: [pdf\n---\n").unwrap_err().to_string();
        assert!(e.contains("SKILL.md:2"), "{e}");
        let s = parse("---\nname: other\ndescription: d\nfoo: 1\n---\n").unwrap();
        let d: Vec<String> = s.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            d.iter().any(|d| d.contains("folder is `pdf-forms`")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|d| d.contains("`foo` is not a skill key")),
            "{d:?}"
        );
    }

    #[test]
    fn names() {
        for ok in ["a", "pdf", "pdf-forms", "v2-tools"] {
            assert!(valid_skill_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a b", &"a".repeat(65)] {
            assert!(!valid_skill_name(bad), "{bad}");
        }
    }
}
