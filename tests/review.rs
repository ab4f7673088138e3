//! End-to-end: `deputy review` on a real git repository with a known diff, against
//! deputy-mockllm with scripted findings: every format, SARIF validated against the SARIF
//! 2.1.0 JSON Schema, and the exit code for each `--fail-on`.
//!
//! The SARIF schema comes from the npm package @microsoft/sarif-multitool-linux (`.ci/run`
//! unpacks it into target/sarif-schema and sets DEPUTY_TEST_SARIF_SCHEMA).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};

use common::{Harness, git, sandbox_available};
use serde_json::Value;

const FINDINGS: &str = r#"[{"path": "app.py", "line": 3, "end_line": null, "severity": "critical", "category": "security", "title": "eval of user input", "body": "eval() runs whatever the user types.", "suggestion": "y = int(input())"}, {"path": "app.py", "line": 40, "end_line": null, "severity": "low", "category": "maintainability", "title": "old helper", "body": "This helper is unused.", "suggestion": null}]"#;

fn repo(h: &Harness) {
    git(&h.ws, &["init", "-q", "-b", "main"]);
    let mut old = String::from("import os\nx = 1\nprint(x)\n");
    for i in 4..=45 {
        old.push_str(&format!("# line {i}\n"));
    }
    std::fs::write(h.ws.join("app.py"), &old).unwrap();
    git(&h.ws, &["add", "."]);
    git(&h.ws, &["commit", "-q", "-m", "first"]);
    git(&h.ws, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(
        h.ws.join("app.py"),
        old.replace("x = 1\n", "x = 1\ny = eval(input())\n"),
    )
    .unwrap();
    git(&h.ws, &["commit", "-q", "-am", "change"]);
}

fn sarif_schema() -> Option<PathBuf> {
    let candidates = [
        std::env::var("DEPUTY_TEST_SARIF_SCHEMA")
            .ok()
            .map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sarif-schema/sarif-2.1.0.json")),
    ];
    if let Some(p) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(p);
    }
    common::outside::missing(
        "SARIF schema validation",
        "the SARIF 2.1.0 JSON Schema is not in target/sarif-schema (DEPUTY_TEST_SARIF_SCHEMA)",
        "run .ci/run once, or `npm pack @microsoft/sarif-multitool-linux@5.7.0` and unpack package/sarif-2.1.0.json into target/sarif-schema/",
    );
    None
}

async fn review(h: &Harness, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["review", "--base", "main", "--head", "feature", "--quiet"];
    all.extend_from_slice(args);
    let out = h.run(&all).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_formats_and_exit_codes() {
    if !sandbox_available() {
        return;
    }
    let script = format!(
        "steps:\n  - tool_calls: [{{name: bash, arguments: {{command: \"git diff main...feature --stat\"}}}}]\n  - text: '{}'\n",
        FINDINGS.replace('\'', "''")
    );
    let h = Harness::yaml(&script).await;
    repo(&h);

    // Markdown (default).
    let (code, md, stderr) = review(&h, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        md.contains("## deputy review")
            && md.contains("### [critical] eval of user input — `app.py:3`"),
        "{md}"
    );
    assert!(
        md.contains("### [low] old helper — `app.py:40` _(outside the diff)_"),
        "{md}"
    );
    assert!(md.contains("y = int(input())"));
    // The agent ran read-only, with the diff in its prompt and git at hand.
    let reqs = h.mock.requests();
    let prompt = reqs[0].body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("+y = eval(input())") && prompt.contains("main...feature"),
        "{prompt}"
    );
    let tools: Vec<&str> = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        !tools.contains(&"edit") && !tools.contains(&"write"),
        "{tools:?}"
    );
    let git_result = reqs[1].body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        git_result.contains("app.py") && git_result.contains("[exit code: 0]"),
        "{git_result}"
    );

    // JSON.
    let (code, json, _) = review(&h, &["--format", "json"]).await;
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 2);
    assert_eq!(v["findings"][0]["severity"], "critical");
    assert_eq!(v["findings"][0]["in_diff"], true);
    assert_eq!(v["findings"][1]["in_diff"], false);
    assert_eq!(v["files_reviewed"], serde_json::json!(["app.py"]));

    // SARIF, to a file, valid against the SARIF 2.1.0 schema.
    let sarif_path = h.dir.path().join("out.sarif");
    let (code, stdout, _) = review(
        &h,
        &["--format", "sarif", "-o", sarif_path.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, Some(0));
    assert!(stdout.is_empty());
    let sarif: Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif_path).unwrap()).unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 2);
    if let Some(schema) = sarif_schema() {
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(schema).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&sarif)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "SARIF invalid: {errors:?}");
    }

    // GitHub annotations.
    let (code, gh, _) = review(&h, &["--format", "github"]).await;
    assert_eq!(code, Some(0));
    assert!(
        gh.starts_with(
            "::error file=app.py,line=3,title=[critical] eval of user input::eval() runs"
        ),
        "{gh}"
    );
    assert!(gh.contains("::notice file=app.py,line=40,"), "{gh}");

    // --fail-on: critical and low findings.
    for (threshold, want) in [("low", 4), ("medium", 4), ("high", 4), ("critical", 4)] {
        let (code, _, _) = review(&h, &["--fail-on", threshold]).await;
        assert_eq!(code, Some(want), "--fail-on {threshold}");
    }
    let (code, _, _) = review(&h, &["--fail-on", "extreme"]).await;
    assert_eq!(code, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_below_the_worst_finding_passes() {
    let h = Harness::yaml("steps:\n  - text: '[{\"path\": \"app.py\", \"line\": 3, \"severity\": \"medium\", \"category\": \"style\", \"title\": \"t\", \"body\": \"b\"}]'\nrepeat_last: true\n").await;
    repo(&h);
    let (code, _, stderr) = review(&h, &["--fail-on", "high"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, _) = review(&h, &["--fail-on", "medium"]).await;
    assert_eq!(code, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_diff_needs_no_model() {
    let h = Harness::yaml("steps:\n  - text: '[]'\n").await;
    repo(&h);
    let out = h
        .run(&[
            "review", "--base", "feature", "--head", "feature", "--format", "sarif",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no changes to review"));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 0);
    assert!(h.mock.requests().is_empty(), "no model call");
    let out = h.run(&["review", "--staged"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(h.mock.requests().is_empty());
}
