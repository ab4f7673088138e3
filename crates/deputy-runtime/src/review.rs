//! Review jobs: the diff to review, the findings schema, and what the findings mean.
//!
//! The diff comes from `git` (a range, the staged changes, or the working tree against a
//! base), split per file. Files are taken in order while they fit a character budget (about 4
//! characters a token); the rest, and binary files, are reported as skipped. The agent answers
//! with a JSON array of findings, enforced with the session's output schema; each finding is
//! then marked as inside the diff or not (on a line the change did not touch).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How serious a finding is, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" | "info" | "note" | "minor" => Some(Severity::Low),
            "medium" | "moderate" | "warning" => Some(Severity::Medium),
            "high" | "major" | "error" => Some(Severity::High),
            "critical" | "blocker" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One finding, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub path: String,
    pub line: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
    pub severity: Severity,
    pub category: String,
    pub title: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// Set by deputy: whether the line is one the change touched.
    #[serde(default)]
    pub in_diff: bool,
}

/// The JSON Schema the agent's final answer must match.
pub fn findings_schema() -> Value {
    json!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["path", "line", "severity", "category", "title", "body"],
            "additionalProperties": false,
            "properties": {
                "path": {"type": "string", "minLength": 1, "description": "file path relative to the repository root"},
                "line": {"type": "integer", "minimum": 1, "description": "line in the new version of the file"},
                "end_line": {"type": ["integer", "null"], "minimum": 1},
                "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
                "category": {"type": "string", "description": "e.g. correctness, security, performance, maintainability"},
                "title": {"type": "string", "minLength": 1},
                "body": {"type": "string"},
                "suggestion": {"type": ["string", "null"], "description": "replacement code for the lines, if any"}
            }
        }
    })
}

/// What to review.
#[derive(Debug, Clone, Default)]
pub struct DiffSpec {
    pub base: Option<String>,
    pub head: Option<String>,
    pub staged: bool,
    /// Largest diff text sent to the model, in characters.
    pub budget_chars: usize,
}

/// One file of the diff.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDiff {
    pub path: String,
    pub patch: String,
    /// Lines of the new file inside the diff's hunks (added or shown as context).
    pub lines: BTreeSet<u32>,
}

/// The diff, ready for review.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    /// What was compared, in words (`main...HEAD`, `staged changes`).
    pub range: String,
    pub files: Vec<FileDiff>,
    /// (path, why) for files left out.
    pub skipped: Vec<(String, String)>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.skipped.is_empty()
    }

    /// Mark each finding as inside the diff or not.
    pub fn mark(&self, findings: &mut [Finding]) {
        for f in findings {
            let path = f.path.trim_start_matches("./").trim_start_matches("b/");
            f.in_diff = self.files.iter().any(|d| {
                d.path == path && {
                    let end = f.end_line.unwrap_or(f.line).max(f.line);
                    (f.line..=end).any(|l| d.lines.contains(&l))
                }
            });
        }
    }
}

/// Why the diff could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("cannot run git: {0} (is git installed?)")]
    Git(String),
    #[error("git diff failed: {0}")]
    GitFailed(String),
    #[error(
        "{0} is not inside a git work tree: run `deputy review` in a repository, or pass -C DIR"
    )]
    NotARepo(String),
}

/// Run `git diff` in `repo` for `spec`.
pub fn collect_diff(repo: &Path, spec: &DiffSpec) -> Result<Diff, ReviewError> {
    let mut args: Vec<String> = vec![
        "-c".into(),
        "core.quotepath=off".into(),
        "diff".into(),
        "--no-color".into(),
        "--no-ext-diff".into(),
        "--no-textconv".into(),
        "--unified=3".into(),
    ];
    let range = if spec.staged {
        args.push("--staged".into());
        "staged changes".to_string()
    } else {
        match (&spec.base, &spec.head) {
            (Some(b), Some(h)) => {
                args.push(format!("{b}...{h}"));
                format!("{b}...{h}")
            }
            (Some(b), None) => {
                args.push(b.clone());
                format!("{b} against the working tree")
            }
            (None, Some(h)) => {
                args.push(format!("{h}^!"));
                format!("commit {h}")
            }
            (None, None) => {
                args.push("HEAD".into());
                "uncommitted changes against HEAD".to_string()
            }
        }
    };
    let git = |args: &[String]| {
        hardened_git(repo)
            .args(args)
            .output()
            .map_err(|e| ReviewError::Git(e.to_string()))
    };
    let inside = git(&["rev-parse".into(), "--is-inside-work-tree".into()])?;
    if !inside.status.success() || inside.stdout.trim_ascii() != b"true" {
        return Err(ReviewError::NotARepo(repo.display().to_string()));
    }
    let out = git(&args)?;
    if !out.status.success() {
        return Err(ReviewError::GitFailed(git_error(&String::from_utf8_lossy(
            &out.stderr,
        ))));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(split_diff(&text, range, spec.budget_chars.max(1000)))
}

/// `git` for deputy's own use in `repo`, which may have been armed by an agent or a planted
/// file: nothing in the repository's config may run a command (see
/// [`crate::worktree::git`]); the user's global and system config still apply.
pub fn hardened_git(repo: &std::path::Path) -> std::process::Command {
    crate::worktree::git::hardened(repo)
}

/// What git said when it failed, without the usage text it prints after a bad argument.
fn git_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .take_while(|l| !l.starts_with("usage:"))
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect();
    let mut msg = lines.join("\n");
    if msg.contains("'HEAD'") {
        msg.push_str(
            "\n(a repository with no commits has no HEAD to diff against: use --staged, or commit first)",
        );
    } else if msg.contains("unknown revision") || msg.contains("bad revision") {
        msg.push_str("\n(check the --base/--head names: `git log --oneline`, `git branch -a`)");
    }
    msg
}

/// Split `git diff` output per file, within the budget.
pub fn split_diff(text: &str, range: String, budget: usize) -> Diff {
    let mut diff = Diff {
        range,
        ..Diff::default()
    };
    let mut chunks: Vec<String> = Vec::new();
    for part in text.split("\ndiff --git ") {
        let part = part.strip_prefix("diff --git ").unwrap_or(part);
        if part.trim().is_empty() {
            continue;
        }
        chunks.push(format!("diff --git {part}"));
    }
    let mut used = 0;
    for patch in chunks {
        let path = patch
            .lines()
            .find_map(|l| l.strip_prefix("+++ b/"))
            .or_else(|| patch.lines().next().and_then(|l| l.rsplit(" b/").next()))
            .unwrap_or("?")
            .trim()
            .to_string();
        if patch
            .lines()
            .any(|l| l.starts_with("Binary files ") || l == "GIT binary patch")
        {
            diff.skipped.push((path, "binary file".into()));
            continue;
        }
        if patch.lines().any(|l| l == "+++ /dev/null") {
            // A deleted file: nothing left to comment on, but the model should know.
            let old = patch
                .lines()
                .find_map(|l| l.strip_prefix("--- a/"))
                .unwrap_or("?")
                .to_string();
            diff.skipped.push((old, "deleted".into()));
            continue;
        }
        if used + patch.len() > budget {
            diff.skipped.push((
                path,
                format!(
                    "left out: the diff is over the review budget ({} characters)",
                    budget
                ),
            ));
            continue;
        }
        used += patch.len();
        let lines = hunk_lines(&patch);
        diff.files.push(FileDiff { path, patch, lines });
    }
    diff
}

/// New-side line numbers inside the hunks of a file's patch.
fn hunk_lines(patch: &str) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    let mut line: Option<u32> = None;
    for l in patch.lines() {
        if let Some(rest) = l.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            line = rest
                .split_whitespace()
                .find_map(|t| t.strip_prefix('+'))
                .and_then(|t| t.split(',').next())
                .and_then(|n| n.parse().ok());
            continue;
        }
        let Some(n) = line else { continue };
        if l.starts_with('-') {
            continue;
        }
        if l.starts_with('+') || l.starts_with(' ') {
            set.insert(n);
            line = Some(n + 1);
        }
    }
    set
}

/// The review request to the agent.
pub fn review_prompt(diff: &Diff, template: &str) -> String {
    let mut files = String::new();
    for f in &diff.files {
        files.push_str(&f.patch);
        if !f.patch.ends_with('\n') {
            files.push('\n');
        }
    }
    let skipped = if diff.skipped.is_empty() {
        String::from("(none)")
    } else {
        diff.skipped
            .iter()
            .map(|(p, why)| format!("- {p}: {why}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    crate::prompt::render(
        template,
        &[
            ("range", &diff.range),
            ("skipped", &skipped),
            ("diff", &files),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/src/a.py b/src/a.py\nindex 1..2 100644\n--- a/src/a.py\n+++ b/src/a.py\n@@ -1,3 +1,4 @@\n import os\n-x = 1\n+x = 2\n+y = eval(input())\n print(x)\ndiff --git a/img.png b/img.png\nBinary files a/img.png and b/img.png differ\n";

    #[test]
    fn git_failures_are_short_and_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let spec = DiffSpec::default();
        let e = collect_diff(dir.path(), &spec).unwrap_err();
        assert!(matches!(e, ReviewError::NotARepo(_)), "{e}");
        assert!(e.to_string().contains("-C DIR"), "{e}");

        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap()
        };
        assert!(git(&["init", "-q"]).status.success());
        let e = collect_diff(dir.path(), &spec).unwrap_err().to_string();
        assert!(e.contains("no commits"), "{e}");
        assert!(!e.contains("usage:"), "{e}");
        let e = collect_diff(
            dir.path(),
            &DiffSpec {
                base: Some("no-such-ref".into()),
                ..DiffSpec::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--base/--head") && e.lines().count() <= 7, "{e}");
    }

    #[test]
    fn split_and_lines() {
        let d = split_diff(DIFF, "r".into(), 100_000);
        assert_eq!(d.files.len(), 1);
        assert_eq!(d.files[0].path, "src/a.py");
        assert_eq!(
            d.files[0].lines.iter().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            d.skipped,
            vec![("img.png".to_string(), "binary file".to_string())]
        );
        let mut f = vec![
            Finding {
                path: "src/a.py".into(),
                line: 3,
                end_line: None,
                severity: Severity::Critical,
                category: "security".into(),
                title: "eval".into(),
                body: "b".into(),
                suggestion: None,
                in_diff: false,
            },
            Finding {
                path: "src/a.py".into(),
                line: 40,
                end_line: None,
                severity: Severity::Low,
                category: "style".into(),
                title: "t".into(),
                body: "b".into(),
                suggestion: None,
                in_diff: true,
            },
        ];
        d.mark(&mut f);
        assert!(f[0].in_diff);
        assert!(!f[1].in_diff);
        let small = split_diff(DIFF, "r".into(), 10);
        assert!(small.files.is_empty());
        assert!(small.skipped[0].1.contains("budget"));
    }

    #[test]
    fn severities_order() {
        assert!(
            Severity::Critical > Severity::High
                && Severity::High > Severity::Medium
                && Severity::Medium > Severity::Low
        );
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
    }

    #[test]
    fn an_armed_repository_runs_nothing_when_deputy_reads_its_diff() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let marker = |n: &str| d.join(format!("pwned-{n}"));
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(d)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap()
        };
        assert!(git(&["init", "-q"]).status.success());
        std::fs::write(d.join("a.txt"), "one\n").unwrap();
        std::fs::write(d.join(".gitattributes"), "*.txt filter=evil diff=evil\n").unwrap();
        assert!(git(&["add", "."]).status.success());
        assert!(
            git(&[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "x"
            ])
            .status
            .success()
        );
        // Arm it, as an agent (or a planted .git) would.
        for (k, v) in [
            (
                "core.fsmonitor",
                format!("touch {}", marker("fsmonitor").display()),
            ),
            (
                "filter.evil.clean",
                format!("touch {}; cat", marker("clean").display()),
            ),
            (
                "diff.evil.textconv",
                format!("touch {}; cat", marker("textconv").display()),
            ),
            (
                "core.pager",
                format!("touch {}; cat", marker("pager").display()),
            ),
            (
                "diff.external",
                format!("touch {}", marker("external").display()),
            ),
        ] {
            assert!(git(&["config", k, &v]).status.success());
        }
        std::fs::write(d.join("a.txt"), "two\n").unwrap();
        let got = collect_diff(d, &DiffSpec::default()).unwrap();
        assert!(
            got.files.iter().any(|f| f.path == "a.txt"),
            "{:?}",
            got.files
        );
        for n in ["fsmonitor", "clean", "textconv", "pager", "external"] {
            assert!(!marker(n).exists(), "the repository's {n} ran");
        }
    }
}
