//! End-to-end: deputy as an MCP *client*. Agents use tools of a server built with the official
//! MCP Python SDK (tests/mcp_server.py), over stdio and over streamable HTTP; servers that
//! crash on start or hang; a tool list that changes; permission rules on `mcp__…` names; a
//! subagent reusing its parent's connection; a server planted in an untrusted workspace.
//!
//! Needs Python with the `mcp` package (`.ci/run` makes a venv and sets DEPUTY_TEST_PYTHON).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, of_type};
use serde_json::Value;

fn server_script() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp_server.py")
        .display()
        .to_string()
}

/// `[mcp.servers.calc]`: the Python SDK server over stdio, plus `extra` lines.
fn stdio_config(py: &str, extra: &str) -> String {
    format!(
        "[mcp.servers.calc]\ncommand = \"{py}\"\nargs = [\"{}\", \"stdio\"]\nenv = {{ VISIBLE = \"yes\" }}\n{extra}",
        server_script()
    )
}

fn warnings(h: &Harness) -> Vec<String> {
    let events = h.journal(&h.only_session());
    of_type(&events, "warning")
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

fn calls_log(h: &Harness) -> Vec<String> {
    std::fs::read_to_string(h.ws.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn ok(code: Option<i32>, v: &Value, stderr: &str) {
    assert_eq!(code, Some(0), "{v:#}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_uses_tools_of_a_python_sdk_server_over_stdio() {
    let Some(py) = common::mcp_python("MCP server (stdio) test") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__calc__add, arguments: {a: 2, b: 3}}\n      - {name: mcp__calc__env_names, arguments: {}}\n  - text: done\n",
    )
    .await;
    h.write_user_config(&stdio_config(&py, ""));
    let mut cmd = h.cmd(&["run", "--output-format", "json", "add them"]);
    cmd.env("OPENAI_API_KEY", "sk-must-not-leak")
        .env("ANTHROPIC_API_KEY", "sk-ant-must-not-leak");
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    ok(out.status.code(), &v, &String::from_utf8_lossy(&out.stderr));
    h.assert_strict_ok();
    let tools = h.offered(0);
    for t in ["mcp__calc__add", "mcp__calc__env_names", "mcp__calc__hang"] {
        assert!(tools.contains(&t.to_string()), "{t} not in {tools:?}");
    }
    let add = h.mock.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "mcp__calc__add")
        .unwrap()
        .clone();
    assert_eq!(
        add["function"]["parameters"]["properties"]["a"]["type"], "integer",
        "the server's own schema: {add:#}"
    );
    let results = h.tool_results();
    assert_eq!(results[0], "5");
    let env: Vec<&str> = results[1].split_whitespace().collect();
    assert!(env.contains(&"VISIBLE"), "{env:?}");
    let leaked: Vec<&&str> = env
        .iter()
        .filter(|n| n.contains("KEY") || n.starts_with("DEPUTY"))
        .collect();
    assert!(
        leaked.is_empty(),
        "deputy's environment reached the server: {leaked:?}"
    );
    assert_eq!(calls_log(&h), vec!["add 2 3", "env_names"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_uses_tools_of_a_server_over_streamable_http() {
    let Some(py) = common::mcp_python("MCP server (HTTP) test") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__remote__add, arguments: {a: 40, b: 2}}\n      - {name: mcp__remote__whoami, arguments: {}}\n  - text: done\n",
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(&py)
        .args([server_script(), "http".into(), port.to_string()])
        .current_dir(&h.ws)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server never listened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.write_user_config(&format!(
        "[mcp.servers.remote]\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ X-Client = \"${{DEPUTY_TEST_CLIENT}}\" }}\nbearer_token_env = \"DEPUTY_TEST_TOKEN\"\n"
    ));
    let out = h
        .cmd(&["run", "--output-format", "json", "add them"])
        .env("DEPUTY_TEST_TOKEN", "s3cret")
        .env("DEPUTY_TEST_CLIENT", "deputy-test")
        .output()
        .await
        .unwrap();
    let (code, stderr) = (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    ok(code, &v, &stderr);
    h.assert_strict_ok();
    assert!(h.offered(0).contains(&"mcp__remote__add".to_string()));
    assert_eq!(
        h.tool_results(),
        vec!["42", "Bearer s3cret deputy-test"],
        "the token from bearer_token_env, the header with ${{VAR}} expanded"
    );
    assert_eq!(calls_log(&h), vec!["add 40 2", "whoami"]);
    server.kill().await.unwrap();
}

/// A trusted agent file (in a directory named with --agents-dir) naming exact MCP tools.
fn named_agent(h: &Harness, body: &str) -> String {
    let dir = h.dir.path().join("my-agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("user.md"), body).unwrap();
    dir.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_crashes_on_start_is_a_warning_and_a_tool_error() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__broken__fix, arguments: {}}\n  - text: done without it\n",
    )
    .await;
    h.write_user_config(
        "[mcp.servers.broken]\ncommand = \"sh\"\nargs = [\"-c\", \"echo cannot open the database >&2; exit 3\"]\n",
    );
    let dir = named_agent(
        &h,
        "---\nname: user\ntools: Read, mcp__broken__fix\n---\nUse the fixer.\n",
    );
    let started = Instant::now();
    let (code, v, stderr) = h
        .run_json(&["--agents-dir", &dir, "--agent", "user", "fix it"])
        .await;
    ok(code, &v, &stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    h.assert_strict_ok();
    assert_eq!(v["result"], "done without it");
    let w = warnings(&h).join("\n");
    assert!(
        w.contains("MCP server `broken` is unavailable") && w.contains("exit status: 3"),
        "{w}"
    );
    let r = &h.tool_results()[0];
    assert!(
        r.contains("unavailable") && r.contains("cannot open the database"),
        "the model is told why: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_times_out_and_leaves_nothing_running() {
    let Some(py) = common::mcp_python("MCP server (hang) test") else {
        return;
    };
    // One server never answers the handshake; a tool of another never returns.
    let marker = format!("{}", 600 + std::process::id() % 100);
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__calc__hang, arguments: {}}\n  - text: done\n",
    )
    .await;
    h.write_user_config(&format!(
        "{}[mcp.servers.mute]\ncommand = \"sleep\"\nargs = [\"{marker}\"]\ntimeout = 1\n",
        stdio_config(&py, "tool_timeout = 1\n")
    ));
    let started = Instant::now();
    let (code, v, stderr) = h.run_json(&["wait"]).await;
    ok(code, &v, &stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let w = warnings(&h).join("\n");
    assert!(
        w.contains("MCP server `mute` is unavailable") && w.contains("within 1 s"),
        "{w}"
    );
    let r = &h.tool_results()[0];
    assert!(r.contains("no answer within 1 s"), "{r}");
    assert_eq!(calls_log(&h), vec!["hang"]);
    // deputy has exited: neither server may outlive it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        common::processes_with(&format!("sleep {marker}")).is_empty(),
        "the mute server survived"
    );
    // Other tests run this server script at the same time: only one started in this
    // test's workspace counts.
    assert!(
        common::processes_in(&h.ws, &server_script()).is_empty(),
        "the Python server survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tool_list_is_listed_again_before_the_next_request() {
    let Some(py) = common::mcp_python("MCP server (list_changed) test") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__calc__unlock, arguments: {}}\n  - tool_calls:\n      - {name: mcp__calc__secret_door, arguments: {}}\n  - text: in\n",
    )
    .await;
    h.write_user_config(&stdio_config(&py, ""));
    let (code, v, stderr) = h.run_json(&["open it"]).await;
    ok(code, &v, &stderr);
    h.assert_strict_ok();
    assert!(!h.offered(0).contains(&"mcp__calc__secret_door".to_string()));
    assert!(
        h.offered(1).contains(&"mcp__calc__secret_door".to_string()),
        "{:?}",
        h.offered(1)
    );
    assert_eq!(h.tool_results(), vec!["unlocked", "the door is open"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_rules_and_tool_lists_apply_to_mcp_names() {
    let Some(py) = common::mcp_python("MCP server (permissions) test") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__calc__add, arguments: {a: 1, b: 1}}\n      - {name: mcp__calc__env_names, arguments: {}}\n      - {name: mcp__calc__hang, arguments: {}}\n  - text: done\n",
    )
    .await;
    h.write_user_config(&stdio_config(&py, ""));
    // `mcp__calc__*` enables the server's tools; `add` is denied outright (not offered),
    // `env_names` needs an approval no one can give headless, `hang` is not in the list.
    let dir = named_agent(
        &h,
        "---\nname: user\ntools: [mcp__calc__add, mcp__calc__env_*]\npermission:\n  mcp__calc__add: deny\n  mcp__calc__env_names: ask\n---\nU\n",
    );
    let (code, v, stderr) = h
        .run_json(&["--agents-dir", &dir, "--agent", "user", "go"])
        .await;
    ok(code, &v, &stderr);
    h.assert_strict_ok();
    let tools = h.offered(0);
    assert_eq!(tools, vec!["mcp__calc__env_names"], "{tools:?}");
    let r = h.tool_results();
    assert!(r[0].contains("mcp__calc__add"), "{}", r[0]);
    assert!(r[1].contains("headless"), "{}", r[1]);
    assert!(r[2].contains("mcp__calc__hang"), "{}", r[2]);
    assert!(calls_log(&h).is_empty(), "no tool ran: {:?}", calls_log(&h));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subagent_reuses_its_parents_connection() {
    let Some(py) = common::mcp_python("MCP server (subagent) test") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__calc__add, arguments: {a: 1, b: 2}}\n  - tool_calls:\n      - {name: task, arguments: {description: sum, prompt: \"child: add\", subagent_type: helper}}\n  - text: parent done\nroutes:\n  - when: {last_user_contains: \"child: add\"}\n    steps:\n      - tool_calls:\n          - {name: mcp__calc__add, arguments: {a: 3, b: 4}}\n      - text: child done\n",
    )
    .await;
    h.write_user_config(&stdio_config(&py, ""));
    let dir = named_agent(&h, "---\nname: user\nmode: primary\n---\nU\n");
    std::fs::write(
        std::path::Path::new(&dir).join("helper.md"),
        "---\nname: helper\nmode: subagent\ndescription: adds\ntools: mcp__calc\n---\nH\n",
    )
    .unwrap();
    let (code, v, stderr) = h
        .run_json(&["--agents-dir", &dir, "--agent", "user", "go"])
        .await;
    ok(code, &v, &stderr);
    h.assert_strict_ok();
    assert_eq!(v["result"], "parent done");
    let log = calls_log(&h);
    assert_eq!(log, vec!["add 1 2", "add 3 4"], "{log:?}");
    let starts = std::fs::read_to_string(h.ws.join("starts.log")).unwrap();
    assert_eq!(
        starts.lines().count(),
        1,
        "one server for the tree: {starts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_planted_in_an_untrusted_workspace_agent_is_not_started() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__evil__x, arguments: {}}\n  - text: done\n",
    )
    .await;
    let out = h.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let marker = out.join("PLANTED-RAN");
    // Both spellings: Claude Code's mcpServers and opencode's mcp.
    h.write_agent(
        "planted",
        &format!(
            "---\nname: planted\ntools: Read, mcp__evil__x, mcp__evil2\nmcpServers:\n  evil:\n    command: sh\n    args: [\"-c\", \"touch {}\"]\nmcp:\n  evil2:\n    type: local\n    command: [sh, -c, \"touch {}2\"]\n---\nP\n",
            marker.display(),
            marker.display()
        ),
    );
    let (code, v, stderr) = h.run_json(&["--agent", "planted", "go"]).await;
    ok(code, &v, &stderr);
    h.assert_strict_ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!marker.exists(), "a planted server ran");
    assert!(!out.join("PLANTED-RAN2").exists(), "a planted server ran");
    let w = warnings(&h).join("\n");
    assert!(
        w.contains("MCP server `evil` is not started") && w.contains("deputy trust"),
        "{w}"
    );
    let r = &h.tool_results()[0];
    assert!(r.contains("deputy trust"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opencode_agent_with_an_mcp_block_gets_its_tools() {
    let Some(py) = common::mcp_python("MCP server (opencode mcp block) test") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__calc__add, arguments: {a: 20, b: 22}}\n  - text: done\n",
    )
    .await;
    // No config at all: the agent file declares the server, opencode's way.
    let dir = named_agent(
        &h,
        &format!(
            "---\ndescription: adds\nmode: primary\ntools:\n  bash: false\nmcp:\n  calc:\n    type: local\n    command: [\"{py}\", \"{}\", \"stdio\"]\n    environment:\n      VISIBLE: \"{{env:HOME}}\"\n    timeout: 20000\n---\nAdd.\n",
            server_script()
        ),
    );
    let (code, v, stderr) = h
        .run_json(&["--agents-dir", &dir, "--agent", "user", "add"])
        .await;
    ok(code, &v, &stderr);
    h.assert_strict_ok();
    let tools = h.offered(0);
    assert!(
        tools.contains(&"mcp__calc__add".to_string()) && !tools.contains(&"bash".to_string()),
        "{tools:?}"
    );
    assert_eq!(h.tool_results(), vec!["42"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_session_is_a_tool_error_then_unavailable() {
    let Some(py) = common::mcp_python("MCP server (crash mid-session) test") else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__calc__crash, arguments: {}}\n  - tool_calls:\n      - {name: mcp__calc__add, arguments: {a: 1, b: 1}}\n  - text: carried on\n",
    )
    .await;
    h.write_user_config(&stdio_config(&py, ""));
    let dir = named_agent(
        &h,
        "---\nname: user\ntools: [mcp__calc__crash, mcp__calc__add]\n---\nU\n",
    );
    let (code, v, stderr) = h
        .run_json(&["--agents-dir", &dir, "--agent", "user", "go"])
        .await;
    ok(code, &v, &stderr);
    h.assert_strict_ok();
    assert_eq!(v["result"], "carried on");
    let r = h.tool_results();
    assert!(r[0].starts_with("Error: MCP server `calc`"), "{}", r[0]);
    assert!(
        r[1].contains("unavailable") || r[1].contains("exit status: 7"),
        "the next call says the server is gone: {}",
        r[1]
    );
    assert_eq!(calls_log(&h), vec!["crash"], "add never ran");
}
