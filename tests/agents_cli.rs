//! End-to-end: `deputy agents …` through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

#[path = "support/outside.rs"]
mod outside;

fn deputy(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deputy"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("DEPUTY_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn seed_agent_resolves_as_specified() {
    let tmp = tempfile::tempdir().unwrap();
    let o = deputy(
        tmp.path(),
        &["agents", "show", "backend-architect", "--json"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mode"], "subagent");
    assert_eq!(v["temperature"], 0.2);
    for t in ["bash", "edit", "write"] {
        assert_eq!(v["tools"]["overrides"][t], true, "{t}");
    }
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/backend-architect.md"),
    )
    .unwrap();
    let body = seed.splitn(3, "---\n").nth(2).unwrap().trim();
    assert_eq!(v["prompt"], body);
    assert!(
        v["prompt"]
            .as_str()
            .unwrap()
            .starts_with("# Backend Architect")
    );
}

/// `agents show` says which named tools the agent will get here, and why not the others.
#[test]
fn show_lists_each_named_tool_as_available_or_not_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let agents = tmp.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("res.md"),
        "---\nname: res\ndescription: d\ntools: Read, WebFetch, WebSearch, mcp__github__create_issue, mcp__bgpt__search, Skill\n---\nP\n",
    )
    .unwrap();
    let cfg = tmp.path().join(".config/deputy");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.toml"),
        "[mcp.servers.github]\ncommand = \"github-mcp\"\n",
    )
    .unwrap();
    let o = deputy(tmp.path(), &["agents", "show", "res", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<(String, bool)> = v["tool_availability"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["available"].as_bool().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, bool)> = [
        ("read", true),
        ("webfetch", true),
        ("websearch", false),
        ("skill", false),
        ("mcp__github__create_issue", true),
        ("mcp__bgpt__search", false),
    ]
    .iter()
    .map(|(n, a)| (n.to_string(), *a))
    .collect();
    assert_eq!(got, want);
    let text = stdout(&deputy(tmp.path(), &["agents", "show", "res"]));
    assert!(
        text.contains("unavailable websearch — no search API is configured")
            && text.contains("unavailable mcp__bgpt__search — no MCP server `bgpt` is declared"),
        "{text}"
    );
}

#[test]
fn list_validate_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let agents = tmp.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("helper.md"),
        "---\ndescription: helps\nmode: subagent\n---\nHelp.",
    )
    .unwrap();
    std::fs::write(agents.join("README.md"), "# not an agent\n").unwrap();
    std::fs::write(
        agents.join("broken.md"),
        "---\nname: broken\ntemperature: hot\n---\n",
    )
    .unwrap();

    let o = deputy(tmp.path(), &["agents", "list", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["helper", "backend-architect", "code-reviewer", "general"]
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("README.md") && err.contains("no frontmatter"),
        "{err}"
    );
    assert!(err.contains("broken.md:3:14"), "{err}");

    let o = deputy(tmp.path(), &["agents", "validate"]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert!(
        out.contains(
            "agents/broken.md:3:14: temperature: must be a number from 0 to 2, found \"hot\""
        ),
        "{out}"
    );

    let o = deputy(tmp.path(), &["agents", "validate", "agents/helper.md"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = deputy(
        tmp.path(),
        &[
            "agents",
            "validate",
            "--strict",
            "--json",
            "agents/helper.md",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report[0]["status"], "ok");

    let o = deputy(tmp.path(), &["agents", "show", "helpr"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("did you mean `helper`"), "{err}");

    let o = deputy(tmp.path(), &["--version"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("deputy "));

    let o = deputy(tmp.path(), &["agents", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn validates_the_whole_corpus() {
    let Some(corpus) = outside::corpus() else {
        return;
    };
    let corpus = corpus.join("agents");
    let tmp = tempfile::tempdir().unwrap();
    let o = deputy(
        tmp.path(),
        &["agents", "validate", corpus.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checked 413 files: 395 ok, 8 with warnings, 0 invalid, 10 skipped"),
        "{err}"
    );
}

/// The same check on the project's own fixtures, which a clone without the corpus has.
#[test]
fn validates_the_fixture_agents() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/deputy-agent/tests/fixtures/agents");
    let tmp = tempfile::tempdir().unwrap();
    let o = deputy(
        tmp.path(),
        &["agents", "validate", fixtures.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checked 8 files: 6 ok, 1 with warnings, 0 invalid, 1 skipped"),
        "{err}"
    );
}
