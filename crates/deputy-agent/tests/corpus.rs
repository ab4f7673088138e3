//! Every agent file of the shared corpus (../shared/corpus/agents, read at test time) loads to
//! an AgentSpec or to a precise error, and the same file saved with CRLF, or BOM + CRLF, gives an
//! identical spec.
//!
//! The expected outcomes that are not a clean load are listed below, per file, with the reason,
//! so a regression in either direction fails.
//!
//! Without the corpus (a clean clone) each test prints a SKIP line, or fails where outside
//! things are required (CI); `tests/fixtures.rs` covers the same quirks with files of our own
//! (`tests/fixtures/agents/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/outside.rs"]
mod outside;

mod shapes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deputy_agent::{Loaded, Severity};
use shapes::{Outcome, assert_line_endings_do_not_matter, files_in_groups, load, outcome, spec_of};

fn corpus_root() -> Option<PathBuf> {
    outside::corpus()
}

fn corpus_files(root: &Path) -> Vec<PathBuf> {
    files_in_groups(&root.join("agents"))
}

fn rel(path: &Path) -> String {
    let s = path.display().to_string();
    match s.find("/agents/") {
        Some(i) => s[i + 8..].to_string(),
        None => s,
    }
}

/// Files whose outcome is not a clean load, and why.
fn expected_not_clean() -> BTreeMap<&'static str, Outcome> {
    let mut m = BTreeMap::new();
    // VoltAgent: an unquoted `: ` inside `description`, which strict YAML rejects.
    for f in [
        "ab-test-analysis",
        "assumption-mapping",
        "backlog-grooming",
        "cohort-analysis",
        "first-principles-thinking",
        "gdpr-ccpa-compliance",
        "growth-loops",
        "hipaa-compliance",
    ] {
        m.insert(f, Outcome::Lenient);
    }
    // VoltAgent category READMEs sit beside the agents and have no frontmatter.
    for f in [
        "README--01-core-development",
        "README--02-language-specialists",
        "README--03-infrastructure",
        "README--04-quality-security",
        "README--05-data-ai",
        "README--06-developer-experience",
        "README--07-specialized-domains",
        "README--08-business-product",
        "README--09-meta-orchestration",
        "README--10-research-analysis",
    ] {
        m.insert(f, Outcome::NoFrontmatter);
    }
    m
}

#[test]
fn every_corpus_file_loads_or_fails_precisely() {
    let Some(root) = corpus_root() else { return };
    let expected = expected_not_clean();
    let mut seen = BTreeMap::new();
    let mut clean = 0;
    let mut total = 0;
    let mut mismatches = Vec::new();
    for path in corpus_files(&root) {
        let text = std::fs::read_to_string(&path).unwrap();
        let result = load(&text, &path);
        let got = outcome(&result);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let want = expected
            .get(stem.as_str())
            .cloned()
            .unwrap_or(Outcome::Clean);
        if got == Outcome::Clean {
            clean += 1;
        }
        if got != want {
            mismatches.push(format!("{}: expected {want:?}, got {got:?}", rel(&path)));
        }
        seen.insert(stem, got);
        total += 1;
        if let Ok(Loaded::Agent(spec)) = &result {
            assert!(!spec.name.is_empty(), "{}", rel(&path));
            for d in &spec.diagnostics {
                assert!(d.severity != Severity::Error);
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "outcome changes:\n{}",
        mismatches.join("\n")
    );
    for name in expected.keys() {
        assert!(
            seen.contains_key(*name),
            "expected file {name} is not in the corpus any more"
        );
    }
    assert_eq!(clean, total - expected.len(), "clean loads");
    assert!(total >= 400, "the corpus shrank to {total} files");
}

#[test]
fn crlf_and_bom_give_identical_specs() {
    let Some(root) = corpus_root() else { return };
    for path in corpus_files(&root) {
        assert_line_endings_do_not_matter(&path, &rel(&path));
    }
}

#[test]
fn format_specifics_are_read() {
    let Some(root) = corpus_root() else { return };
    let root = root.join("agents");
    let get = |p: &str| {
        spec_of(
            &std::fs::read_to_string(root.join(p)).unwrap(),
            &root.join(p),
        )
        .unwrap()
    };

    // opencode: `"*": false` plus one override; hidden; provider/model.
    let s = get("opencode-repo/duplicate-issue.md");
    assert!(s.hidden);
    assert!(!s.tools.default);
    assert_eq!(s.tools.unknown(), vec!["github-issue-search"]);
    assert_eq!(s.model.unwrap().to_string(), "opencode/claude-haiku-4-5");

    // Qwen Code: YAML list of snake_case ids, multi-line plain description.
    let s = get("qwen-code/test-engineer.md");
    assert_eq!(
        s.tools.enabled_builtins(),
        vec![
            "bash",
            "read",
            "write",
            "edit",
            "glob",
            "grep",
            "webfetch",
            "websearch",
            // Qwen Code's `skill` is deputy's own skill tool.
            "skill"
        ]
    );
    assert!(
        s.description
            .unwrap()
            .contains("reproduce a user-reported bug end-to-end")
    );

    // Gemini CLI: folded description, max_turns, name differs from file.
    let s = get("gemini-cli/visualizer.md");
    assert_eq!(s.name, "architecture-visualizer");
    assert_eq!(s.max_steps, Some(30));
    assert!(s.tools.is_enabled("edit"), "`replace` is edit");

    // OpenAgentsControl: comments in frontmatter, quoted glob keys, plural `permissions`.
    let s = get("openagentscontrol/core__openagent.md");
    assert!(
        s.permission
            .iter()
            .any(|r| r.tool == "bash" && r.pattern == "rm -rf *")
    );
    assert!(
        s.permission
            .iter()
            .any(|r| r.tool == "edit" && r.pattern == "**/*.env*")
    );
    assert_eq!(s.options["id"], "openagent");

    // Claude Code (wshobson): `tools: []` means no tools.
    let s = get("wshobson-agents/arm-cortex-microcontrollers--arm-cortex-expert.md");
    assert!(s.tools.enabled_builtins().is_empty());
}
