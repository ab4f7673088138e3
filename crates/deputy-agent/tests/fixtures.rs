//! The loader quirks the shared corpus exercises, on agent files of our own making
//! (`tests/fixtures/agents/`), so a clone without `../shared/corpus` still tests every one: the
//! opencode, Qwen Code, Gemini CLI, OpenAgentsControl and Claude Code shapes, a description with
//! an unquoted `: `, a README without frontmatter, and CRLF / BOM copies of each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod shapes;

use std::path::PathBuf;

use shapes::{Outcome, assert_line_endings_do_not_matter, files_in_groups, load, outcome, spec};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents")
}

#[test]
fn each_fixture_has_its_expected_outcome_whatever_the_line_endings() {
    let files = files_in_groups(&root());
    assert_eq!(files.len(), 8, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let got = outcome(&load(&text, &path));
        let want = match path.file_stem().unwrap().to_str().unwrap() {
            "metrics-reader" => Outcome::Lenient,
            "README" => Outcome::NoFrontmatter,
            _ => Outcome::Clean,
        };
        assert_eq!(got, want, "{}", path.display());
        assert_line_endings_do_not_matter(&path, &path.display().to_string());
    }
}

#[test]
fn opencode_star_false_hidden_and_provider_model() {
    let s = spec(&root().join("opencode/issue-triage.md"));
    assert_eq!(s.name, "issue-triage", "the name is the file's");
    assert!(s.hidden);
    assert!(!s.tools.default, "`\"*\": false` turns every tool off");
    assert!(s.tools.enabled_builtins().is_empty());
    assert_eq!(s.tools.unknown(), vec!["tracker-search"]);
    assert_eq!(s.model.unwrap().to_string(), "anthropic/claude-sonnet-4-5");
}

#[test]
fn qwen_snake_case_tool_list_and_multi_line_description() {
    let s = spec(&root().join("qwen/bug-reproducer.md"));
    assert_eq!(
        s.tools.enabled_builtins(),
        vec![
            "bash", "read", "write", "edit", "glob", "grep", "webfetch", "skill"
        ],
        "Qwen Code's `skill` is deputy's own skill tool"
    );
    let d = s.description.unwrap();
    assert!(d.contains("Give it the issue text"), "lines folded: {d}");
    assert!(d.ends_with("It never edits the code under test."), "{d}");
    assert_eq!(
        s.model.unwrap().to_string(),
        "inherit",
        "the caller's model"
    );
}

#[test]
fn gemini_folded_description_max_turns_name_and_replace() {
    let s = spec(&root().join("gemini/diagrams.md"));
    assert_eq!(
        s.name, "diagram-drawer",
        "frontmatter name wins over the file"
    );
    assert_eq!(s.max_steps, Some(25));
    assert!(s.tools.is_enabled("edit"), "`replace` is edit");
    assert!(s.tools.is_enabled("list"), "`list_directory` is list");
    assert!(s.description.unwrap().contains("<context> block"));
}

#[test]
fn openagents_comments_quoted_globs_and_plural_permissions() {
    let s = spec(&root().join("openagents/coordinator.md"));
    assert_eq!(s.temperature, Some(0.1));
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
    assert_eq!(s.options["id"], "coordinator");
    assert!(s.tools.is_enabled("task"));
}

#[test]
fn claude_empty_tool_list_comma_list_and_unquoted_colon() {
    let s = spec(&root().join("claude/firmware-expert.md"));
    assert!(s.tools.enabled_builtins().is_empty(), "`tools: []` is none");

    let s = spec(&root().join("claude/metrics-reader.md"));
    assert_eq!(
        s.tools.enabled_builtins(),
        vec!["read", "glob", "grep", "webfetch"],
        "Claude Code's WebFetch is deputy's webfetch"
    );
    assert!(
        s.description
            .unwrap()
            .contains("Triggers on: 'why did it drop'"),
        "the lenient read keeps the whole description"
    );
}

#[test]
fn opencode_mcp_block_declares_servers_and_enables_their_tools() {
    use deputy_agent::McpTransport;
    let s = spec(&root().join("opencode/docs-helper.md"));
    assert!(s.warnings().next().is_none(), "{:?}", s.diagnostics);
    let docs = &s.mcp_servers["docs"];
    assert_eq!(
        docs.timeout,
        Some(std::time::Duration::from_secs(10)),
        "opencode's ms"
    );
    match &docs.transport {
        McpTransport::Stdio { command, args, env } => {
            assert_eq!(command, "npx");
            assert_eq!(args, &["-y", "@acme/docs-mcp", "--stdio"]);
            assert_eq!(
                env["DOCS_TOKEN"], "{env:DOCS_TOKEN}",
                "expanded when it starts"
            );
        }
        other => panic!("{other:?}"),
    }
    let search = &s.mcp_servers["search"];
    assert!(!search.enabled);
    assert!(
        matches!(&search.transport, McpTransport::Http { url, .. } if url == "https://mcp.acme.test/mcp")
    );
    assert!(
        s.tools.is_enabled("mcp__docs__lookup"),
        "a declared server's tools are on"
    );
    assert!(s.tools.is_enabled("webfetch"));
    assert!(!s.tools.is_enabled("write"));
}
