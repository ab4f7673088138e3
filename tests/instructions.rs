//! End-to-end: project instructions (`AGENTS.md`, `CLAUDE.md`, … root to workspace, `@path`
//! imports, the user's own file) reach the model after the agent's prompt; what a workspace
//! plants (a link out, a secret) never does; the flag, the agent key and an untrusted project
//! can turn them off, never redirect them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{Harness, git, of_type, write};
use serde_json::Value;

const OK: &str = "steps:\n  - text: ok\n";

/// The system prompt of request `i`.
fn system(h: &Harness, i: usize) -> String {
    h.mock.requests()[i].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

fn started(h: &Harness) -> Value {
    let events = h.journal(&h.only_session());
    of_type(&events, "session.started")[0].clone()
}

fn sha256(p: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_down_to_the_workspace_with_imports_after_the_users_own() {
    let h = Harness::yaml(OK).await;
    git(&h.ws, &["init", "-q"]);
    write(
        &h.ws.join("AGENTS.md"),
        "ROOT-RULES: run `make check` before you finish.\nTesting: see @docs/testing.md\n",
    );
    write(&h.ws.join("docs/testing.md"), "TESTING-RULES: use -j2\n");
    write(
        &h.ws.join("svc/CLAUDE.md"),
        "SVC-RULES: this service is async\n",
    );
    write(
        &h.ws.join("svc/GEMINI.md"),
        "NOT-READ: CLAUDE.md comes first\n",
    );
    write(
        &h.ws.join("elsewhere/AGENTS.md"),
        "NOT-READ: not on the way\n",
    );
    let user = h.home.join(".config/deputy/AGENTS.md");
    write(&user, "USER-RULES: answer tersely\n");
    let (code, v, stderr) = h.run_json(&["-C", "svc", "hello"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();

    let sys = system(&h, 0);
    let at = |m: &str| {
        sys.find(m)
            .unwrap_or_else(|| panic!("{m} not in the prompt:\n{sys}"))
    };
    // After the agent's own prompt, in order: the user's, the root's, its import, the
    // workspace's.
    assert!(at("# Project instructions") > at("---\n\n"));
    assert!(at("USER-RULES") < at("ROOT-RULES"));
    assert!(at("ROOT-RULES") < at("TESTING-RULES"));
    assert!(at("TESTING-RULES") < at("SVC-RULES"));
    assert!(!sys.contains("NOT-READ"), "{sys}");
    assert!(sys.contains(&format!(
        "<instructions path=\"{}\">",
        h.ws.join("docs/testing.md").display()
    )));

    let listed: Vec<(String, String)> = started(&h)["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        user.canonicalize().unwrap(),
        h.ws.join("AGENTS.md"),
        h.ws.join("docs/testing.md"),
        h.ws.join("svc/CLAUDE.md"),
    ]
    .iter()
    .map(|p| (p.display().to_string(), sha256(p)))
    .collect();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_flag_by_agent_or_by_the_project_and_never_redirected() {
    let h = Harness::yaml(&format!("steps:\n{}", "  - text: ok\n".repeat(4))).await;
    write(&h.ws.join("AGENTS.md"), "MARKER-RULES\n");
    write(&h.ws.join("NOTES.md"), "NOTES-PLANTED\n");

    // The flag.
    let (code, _, stderr) = h
        .run_json(&["--ephemeral", "--no-instructions", "hi"])
        .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!system(&h, 0).contains("MARKER-RULES"));

    // The agent's own key.
    h.write_agent(
        "plain",
        "---\nname: plain\ninstructions: false\n---\nYou are plain.",
    );
    let (code, _, stderr) = h.run_json(&["--ephemeral", "--agent", "plain", "hi"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!system(&h, 1).contains("MARKER-RULES"));

    // An untrusted project cannot choose which files become the prompt, or raise the cap.
    h.write_config("[instructions]\nfiles = [\"NOTES.md\"]\nmax_bytes = 10000000\n");
    let (code, _, stderr) = h.run_json(&["--ephemeral", "hi"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let sys = system(&h, 2);
    assert!(
        sys.contains("MARKER-RULES") && !sys.contains("NOTES-PLANTED"),
        "{sys}"
    );
    assert!(stderr.contains("[instructions] files"), "{stderr}");

    // It can turn them off.
    h.write_config("[instructions]\nenabled = false\n");
    let (code, _, stderr) = h.run_json(&["--ephemeral", "hi"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!system(&h, 3).contains("MARKER-RULES"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_link_or_secret_never_reaches_the_model() {
    let h = Harness::yaml(OK).await;
    git(&h.ws, &["init", "-q"]);
    let outside = h.dir.path().join("outside-secret.txt");
    write(&outside, "TOPSECRET-OUTSIDE\n");
    std::os::unix::fs::symlink(&outside, h.ws.join("AGENTS.md")).unwrap();
    write(&h.ws.join(".env"), "API_KEY=TOPSECRET-ENV\n");
    write(
        &h.ws.join("sub/AGENTS.md"),
        "SUB-RULES\n@../.env\n@../../outside-secret.txt\n@/etc/hostname\n",
    );
    write(&h.ws.join("sub/deep/CLAUDE.md"), "@../../.env\n");
    let (code, v, stderr) = h.run_json(&["-C", "sub/deep", "hello"]).await;
    let reported = v["warnings"].to_string();
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    for r in h.mock.requests() {
        let body = r.body.to_string();
        assert!(
            !body.contains("TOPSECRET"),
            "a secret reached the model: {body}"
        );
    }
    assert!(system(&h, 0).contains("SUB-RULES"));
    let events = h.journal(&h.only_session());
    let warnings: Vec<&str> = of_type(&events, "warning")
        .iter()
        .map(|w| w["message"].as_str().unwrap())
        .collect();
    let all = warnings.join("\n");
    assert!(all.contains("outside"), "{all}");
    assert!(all.contains("holds secrets"), "{all}");
    assert!(all.contains("@/etc/hostname not read"), "{all}");
    // The same warnings in the JSON result.
    assert!(reported.contains("holds secrets"), "{reported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subagent_reads_them_too() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: task, arguments: {description: "look", prompt: "Look around", subagent_type: helper}}
  - text: "done"
routes:
  - when: {system_contains: "You are helper,"}
    steps: [{text: "looked"}]
"#,
    )
    .await;
    write(&h.ws.join("AGENTS.md"), "SHARED-RULES\n");
    h.write_agent("lead", "---\nname: lead\nmode: primary\n---\nYou lead.");
    h.write_agent(
        "helper",
        "---\nname: helper\nmode: subagent\ndescription: helps\n---\nYou help.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "lead", "go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    let systems: Vec<String> = (0..h.mock.requests().len())
        .map(|i| system(&h, i))
        .collect();
    let child = systems
        .iter()
        .find(|s| s.contains("You are helper,"))
        .expect("the helper was asked");
    assert!(child.contains("SHARED-RULES"), "{child}");
    assert!(systems[0].contains("SHARED-RULES"));
}
