//! What the corpus test and the fixture test both check of an agent file: its outcome (clean,
//! lenient, skipped, or a precise error) and that CRLF and BOM+CRLF copies load identically.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use deputy_agent::{AgentError, AgentSpec, LoadOptions, Loaded};

#[derive(Debug, PartialEq, Eq, Clone, PartialOrd, Ord)]
pub enum Outcome {
    Clean,
    /// Loaded through the lenient path (unquoted `: `), with a warning.
    Lenient,
    /// No frontmatter: discovery skips it.
    NoFrontmatter,
    /// A precise error.
    Error(String),
}

pub fn load(text: &str, path: &Path) -> Result<Loaded, AgentError> {
    deputy_agent::parse_with(text, path, &LoadOptions::default())
}

pub fn outcome(result: &Result<Loaded, AgentError>) -> Outcome {
    match result {
        Ok(Loaded::NoFrontmatter) => Outcome::NoFrontmatter,
        Ok(Loaded::Agent(spec)) => {
            let warnings: Vec<_> = spec.warnings().collect();
            if warnings.is_empty() {
                Outcome::Clean
            } else {
                assert!(
                    warnings.iter().all(|w| w.message.contains("unquoted `: `")),
                    "unexpected warning: {warnings:?}"
                );
                Outcome::Lenient
            }
        }
        Err(e) => Outcome::Error(e.to_string()),
    }
}

pub fn spec_of(text: &str, path: &Path) -> Option<AgentSpec> {
    match load(text, path) {
        Ok(Loaded::Agent(s)) => Some(*s),
        _ => None,
    }
}

/// The file's spec, which must load.
pub fn spec(path: &Path) -> AgentSpec {
    let text = std::fs::read_to_string(path).unwrap();
    spec_of(&text, path).unwrap_or_else(|| panic!("{} does not load", path.display()))
}

/// Saved with CRLF, or BOM + CRLF, the file gives the same outcome and the same spec.
pub fn assert_line_endings_do_not_matter(path: &Path, label: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let lf = load(&text, path);
    let crlf_text = text.replace('\n', "\r\n");
    let bom_text = format!("\u{feff}{crlf_text}");
    for (variant_label, variant) in [
        ("CRLF", crlf_text.as_str()),
        ("BOM+CRLF", bom_text.as_str()),
    ] {
        let other = load(variant, path);
        assert_eq!(outcome(&lf), outcome(&other), "{variant_label} {label}");
        assert_eq!(
            spec_of(&text, path),
            spec_of(variant, path),
            "{variant_label} {label}"
        );
    }
}

/// Files one level below `root/<group>/`, sorted.
pub fn files_in_groups(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    files
}
