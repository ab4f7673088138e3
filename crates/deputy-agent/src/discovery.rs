//! Finding agents on disk: the search path, names, precedence and duplicates.
//!
//! Search order (first wins on a duplicate name, with a warning naming both files):
//! every `--agents-dir`, then `./agents`, `./.deputy/agents`, `./.opencode/agent`,
//! `./.opencode/agents`, `./.claude/agents`, `~/.config/deputy/agents`, then the agents built into
//! the binary (which any file of the same name overrides silently).

use std::path::{Path, PathBuf};

use crate::error::{AgentError, Diagnostic, Severity};
use crate::load::{LoadOptions, Loaded, load_file, load_file_with, parse_with};
use crate::spec::AgentSpec;

/// The project-relative directories searched after `--agents-dir`.
pub const PROJECT_AGENT_DIRS: &[&str] = &[
    "agents",
    ".deputy/agents",
    ".opencode/agent",
    ".opencode/agents",
    ".claude/agents",
];

/// An agent compiled into the binary (the shipped `agents/*.md`).
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub file_name: &'static str,
    pub text: &'static str,
}

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryOptions {
    /// `--agents-dir` values, searched first, in order.
    pub agents_dirs: Vec<PathBuf>,
    /// The directory the project-relative dirs are taken from (usually the workspace).
    pub project_dir: PathBuf,
    /// `$HOME`, for `~/.config/deputy/agents`. `None` skips it.
    pub home: Option<PathBuf>,
    /// Agents shipped inside the binary, searched last.
    pub builtins: Vec<Builtin>,
}

impl DiscoveryOptions {
    /// The directories searched, in precedence order, with the ones that do not exist left out.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.agents_dirs.clone();
        dirs.extend(PROJECT_AGENT_DIRS.iter().map(|d| self.project_dir.join(d)));
        if let Some(home) = &self.home {
            dirs.push(home.join(".config/deputy/agents"));
        }
        dirs
    }
}

/// Every agent found, in precedence order, with what went wrong along the way.
#[derive(Debug, Default)]
pub struct Catalog {
    /// One agent per name: the winner of its name.
    pub agents: Vec<AgentSpec>,
    /// Files skipped (no frontmatter), shadowed duplicates, missing `--agents-dir`.
    pub warnings: Vec<Diagnostic>,
    /// Files that failed to load.
    pub errors: Vec<AgentError>,
}

/// Walk depth limit: agent collections are shallow; this stops symlink loops and deep trees.
const MAX_DEPTH: usize = 6;

fn collect_md(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.is_dir() {
            if depth < MAX_DEPTH && !hidden {
                collect_md(&path, depth + 1, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("md"))
            && !hidden
        {
            out.push(path);
        }
    }
}

fn relative_name(dir: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(dir).unwrap_or(file).with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl Catalog {
    /// Search every directory of `opts` and build the catalog. Never fails: problems are kept in
    /// `warnings` and `errors` so one broken file does not hide the others.
    pub fn discover(opts: &DiscoveryOptions) -> Catalog {
        let mut catalog = Catalog::default();
        for (i, dir) in opts.search_dirs().into_iter().enumerate() {
            if !dir.is_dir() {
                if i < opts.agents_dirs.len() {
                    catalog.warnings.push(Diagnostic::new(
                        &dir,
                        0,
                        0,
                        Severity::Warning,
                        "--agents-dir does not exist or is not a directory",
                    ));
                }
                continue;
            }
            let mut files = Vec::new();
            collect_md(&dir, 0, &mut files);
            for file in files {
                let load_opts = LoadOptions {
                    fallback_name: Some(relative_name(&dir, &file)),
                    root: Some(dir.clone()),
                    allow_no_frontmatter: false,
                };
                match load_file_with(&file, &load_opts) {
                    Ok(Loaded::Agent(spec)) => catalog.add(*spec, false),
                    Ok(Loaded::NoFrontmatter) => catalog.warnings.push(Diagnostic::new(
                        &file,
                        1,
                        1,
                        Severity::Warning,
                        "no frontmatter; skipped (not an agent file?). Name it with `deputy run --agent PATH` to use it anyway",
                    )),
                    Err(e) => catalog.errors.push(e),
                }
            }
        }
        for builtin in &opts.builtins {
            let path = PathBuf::from("<builtin>").join(builtin.file_name);
            let load_opts = LoadOptions {
                fallback_name: None,
                root: None,
                allow_no_frontmatter: false,
            };
            match parse_with(builtin.text, &path, &load_opts) {
                Ok(Loaded::Agent(spec)) => catalog.add(*spec, true),
                Ok(Loaded::NoFrontmatter) => {}
                Err(e) => catalog.errors.push(e),
            }
        }
        catalog
    }

    fn add(&mut self, spec: AgentSpec, builtin: bool) {
        if let Some(winner) = self.agents.iter().find(|a| a.name == spec.name) {
            if !builtin {
                let winner_path = winner
                    .source
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                self.warnings.push(Diagnostic::new(
                    spec.source.as_deref().unwrap_or(Path::new("?")),
                    0,
                    0,
                    Severity::Warning,
                    format!(
                        "agent `{}` is also defined in {winner_path}, which takes precedence; this file is ignored",
                        spec.name
                    ),
                ));
            }
            return;
        }
        self.agents.push(spec);
    }

    /// The agent named `name`, if discovered.
    pub fn get(&self, name: &str) -> Option<&AgentSpec> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// Names of every agent, in precedence order.
    pub fn names(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.name.clone()).collect()
    }

    /// Resolve what a user typed after `--agent`: a discovered name, or a path to a file.
    /// An unknown name is an error listing the known agents and the closest name.
    pub fn resolve(&self, name_or_path: &str) -> Result<AgentSpec, AgentError> {
        if let Some(spec) = self.get(name_or_path) {
            return Ok(spec.clone());
        }
        let as_path = Path::new(name_or_path);
        let looks_like_path = name_or_path.ends_with(".md")
            || name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.starts_with('.');
        if looks_like_path && as_path.is_file() {
            return load_file(as_path);
        }
        // A broken file of that name is more useful to report than "not found".
        if let Some(err) = self.errors.iter().find(|e| {
            matches!(e, AgentError::Invalid { path, .. } | AgentError::Io { path, .. } | AgentError::TooLarge { path, .. } | AgentError::NotUtf8 { path, .. }
                if path.file_stem().is_some_and(|s| s == name_or_path))
        }) {
            return Err(AgentError::Invalid {
                path: PathBuf::from(name_or_path),
                problems: err.diagnostics(),
            });
        }
        let known = self.names();
        let suggestion = closest(name_or_path, &known);
        Err(AgentError::NotFound {
            name: name_or_path.to_string(),
            suggestion,
            known,
        })
    }
}

/// The known name closest to `name`, when it is close enough to be a typo.
pub fn closest(name: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&name.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn precedence_duplicates_and_skips() {
        let tmp = tempfile::tempdir().unwrap();
        let extra = tmp.path().join("extra");
        write(&extra, "a.md", "---\nname: alpha\n---\nfrom extra");
        write(
            tmp.path(),
            "agents/a.md",
            "---\nname: alpha\n---\nfrom project",
        );
        write(tmp.path(), "agents/sub/b.md", "---\ndescription: b\n---\nB");
        write(tmp.path(), "agents/README.md", "# Readme\n");
        write(
            tmp.path(),
            ".claude/agents/bad.md",
            "---\ntemperature: hot\n---\n",
        );
        let opts = DiscoveryOptions {
            agents_dirs: vec![extra],
            project_dir: tmp.path().to_path_buf(),
            home: None,
            builtins: vec![Builtin {
                file_name: "alpha.md",
                text: "---\nname: alpha\n---\nbuiltin",
            }],
        };
        let cat = Catalog::discover(&opts);
        assert_eq!(cat.names(), vec!["alpha", "sub/b"]);
        assert_eq!(cat.get("alpha").unwrap().prompt, "from extra");
        assert_eq!(cat.errors.len(), 1);
        let msgs: Vec<String> = cat.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("README.md") && m.contains("no frontmatter"))
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("also defined in") && m.contains("extra"))
        );
        let err = cat.resolve("alpah").unwrap_err().to_string();
        assert!(err.contains("did you mean `alpha`"), "{err}");
        assert!(
            cat.resolve("bad")
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
    }

    #[test]
    fn builtin_used_when_nothing_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = DiscoveryOptions {
            project_dir: tmp.path().to_path_buf(),
            builtins: vec![Builtin {
                file_name: "x.md",
                text: "---\nname: x\n---\nbuiltin",
            }],
            ..Default::default()
        };
        let cat = Catalog::discover(&opts);
        assert_eq!(cat.get("x").unwrap().prompt, "builtin");
        assert!(cat.warnings.is_empty());
    }
}
