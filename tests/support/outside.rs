//! Tests that need something from outside the repository (bubblewrap, tmux, Python with the MCP
//! SDK, the SARIF schema, a pids cgroup, the shared corpus) call [`missing`] when it is not
//! there. Where it is *required* — `CI=true` (or `1`), `DEPUTY_TEST_REQUIRE=1`, or the older
//! `DEPUTY_TEST_REQUIRE_SANDBOX=1`; `.ci/run` sets all of them — that is a failure. Elsewhere
//! the test prints a SKIP line naming what to install and returns: written to the stderr handle
//! itself, so libtest does not swallow it in a passing test.
//!
//! One file, included by every test crate (`#[path = …] mod outside;`), so the rule is the
//! same everywhere.

#![allow(dead_code, clippy::print_stderr)]

use std::io::Write;

/// Whether missing outside things fail the tests, given a way to read the environment.
pub fn required_in(env: impl Fn(&str) -> Option<String>) -> bool {
    let on = |k: &str| {
        env(k).is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "1" || v == "true" || v == "yes"
        })
    };
    on("CI") || on("DEPUTY_TEST_REQUIRE") || on("DEPUTY_TEST_REQUIRE_SANDBOX")
}

/// Whether missing outside things fail the tests here.
pub fn required() -> bool {
    required_in(|k| std::env::var(k).ok())
}

/// `what` is not available (`why`): fail when required, else print a loud SKIP line saying
/// how to get it (`install`). Returns `false`, for `if !available { return missing(…) }`.
pub fn missing(what: &str, why: &str, install: &str) -> bool {
    missing_in(required(), what, why, install)
}

pub fn missing_in(required: bool, what: &str, why: &str, install: &str) -> bool {
    assert!(
        !required,
        "{what} is required here (CI=true or DEPUTY_TEST_REQUIRE=1) but missing: {why}. {install}"
    );
    let line = format!("SKIP {what}: {why}. To run it: {install}\n");
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
    false
}

/// The shared corpus of real agent files and recorded provider traffic: `DEPUTY_CORPUS`, else
/// `../shared/corpus` beside the repository. `None` (after a SKIP line, or a failure where
/// outside things are required) when it is not there: a clean clone does not have it, and the
/// project's own fixtures cover the same quirks.
pub fn corpus() -> Option<std::path::PathBuf> {
    let root = std::env::var_os("DEPUTY_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let mut dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            while !dir.join("Cargo.lock").exists() && dir.pop() {}
            dir.join("../shared/corpus")
        });
    if root.join("agents").is_dir() && root.join("wire").is_dir() {
        return Some(root);
    }
    missing(
        "corpus test",
        &format!("the shared corpus is not at {}", root.display()),
        "set DEPUTY_CORPUS to the corpus folder (agents/ and wire/), or check it out as ../shared/corpus",
    );
    None
}

/// A program the tests drive: the path in `var`, else `name` on PATH, whichever answers
/// `--version`.
fn program(var: &str, name: &str) -> Option<String> {
    [std::env::var(var).ok(), Some(name.to_string())]
        .into_iter()
        .flatten()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// A directory where `openapi-typescript`, `typescript` and `@types/node` are installed (its
/// `node_modules/.bin` has `openapi-typescript` and `tsc`), and `node`: DEPUTY_TEST_OPENAPI_TS.
/// `None` (after a SKIP line, or a failure where outside things are required) when missing.
pub fn openapi_typescript() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("DEPUTY_TEST_OPENAPI_TS").map(std::path::PathBuf::from);
    let bin = |d: &std::path::Path, n: &str| d.join("node_modules/.bin").join(n);
    let found = dir.filter(|d| {
        bin(d, "openapi-typescript").exists()
            && bin(d, "tsc").exists()
            && program("NODE", "node").is_some()
    });
    if found.is_none() {
        missing(
            "TypeScript client test",
            "no openapi-typescript, typescript and node (DEPUTY_TEST_OPENAPI_TS)",
            "mkdir t && cd t && npm install openapi-typescript@7 typescript@5 @types/node@20, then set DEPUTY_TEST_OPENAPI_TS=t (.ci/run does this)",
        );
    }
    found
}

/// A Python with the official A2A SDK (`a2a-sdk` 1.x): DEPUTY_TEST_A2A_PYTHON. `None` (after
/// a SKIP line, or a failure where outside things are required) when there is none.
pub fn a2a_python() -> Option<String> {
    let found = std::env::var("DEPUTY_TEST_A2A_PYTHON").ok().filter(|p| {
        std::process::Command::new(p)
            .args(["-c", "import a2a.client, httpx"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        missing(
            "A2A client test",
            "no Python with the `a2a-sdk` package (DEPUTY_TEST_A2A_PYTHON)",
            "python3 -m venv v && v/bin/pip install a2a-sdk==1.3.0, then set DEPUTY_TEST_A2A_PYTHON=v/bin/python (.ci/run does this)",
        );
    }
    found
}

/// The official ACP TypeScript SDK (`@agentclientprotocol/sdk`) installed in a directory
/// (`DEPUTY_TEST_ACP_SDK`), and node. `None` (after a SKIP line, or a failure where outside
/// things are required) when either is missing.
pub fn acp_sdk() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("DEPUTY_TEST_ACP_SDK").map(std::path::PathBuf::from);
    let found = dir.filter(|d| {
        d.join("node_modules/@agentclientprotocol/sdk/package.json")
            .exists()
            && program("NODE", "node").is_some()
    });
    if found.is_none() {
        missing(
            "ACP editor test",
            "no @agentclientprotocol/sdk and node (DEPUTY_TEST_ACP_SDK)",
            "mkdir a && cd a && npm install @agentclientprotocol/sdk@2.4.0, then set DEPUTY_TEST_ACP_SDK=a (.ci/run does this)",
        );
    }
    found
}

/// A Python with the official Prometheus client (its text-format parser): DEPUTY_TEST_PYTHON,
/// else python3. `None` (after a SKIP line, or a failure where outside things are required)
/// when there is none.
pub fn prometheus_python() -> Option<String> {
    let found = [
        std::env::var("DEPUTY_TEST_PYTHON").ok(),
        Some("python3".into()),
    ]
    .into_iter()
    .flatten()
    .find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import prometheus_client"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        missing(
            "/metrics parser test",
            "no Python with `prometheus-client` (DEPUTY_TEST_PYTHON)",
            "python3 -m venv v && v/bin/pip install prometheus-client, then set DEPUTY_TEST_PYTHON=v/bin/python (.ci/run does this)",
        );
    }
    found
}

/// The `schemathesis` program: DEPUTY_TEST_SCHEMATHESIS, else `schemathesis` on PATH. `None`
/// (after a SKIP line, or a failure where outside things are required) when there is none.
pub fn schemathesis() -> Option<String> {
    let found = program("DEPUTY_TEST_SCHEMATHESIS", "schemathesis");
    if found.is_none() {
        missing(
            "schemathesis test",
            "no schemathesis (DEPUTY_TEST_SCHEMATHESIS)",
            "python3 -m venv v && v/bin/pip install schemathesis, then set DEPUTY_TEST_SCHEMATHESIS=v/bin/schemathesis (.ci/run does this)",
        );
    }
    found
}

/// openapi-python-client (the generator a Python team would use on `/openapi.json`):
/// DEPUTY_TEST_OPENAPI_PYTHON_CLIENT, else on PATH; with the Python of its own environment
/// (which has the generated client's dependencies, httpx and attrs). `None` (after a SKIP line,
/// or a failure where outside things are required) when there is none.
pub fn openapi_python_client() -> Option<(String, String)> {
    let Some(c) = program("DEPUTY_TEST_OPENAPI_PYTHON_CLIENT", "openapi-python-client") else {
        missing(
            "generated-client test",
            "no openapi-python-client (DEPUTY_TEST_OPENAPI_PYTHON_CLIENT)",
            "python3 -m venv v && v/bin/pip install openapi-python-client, then set DEPUTY_TEST_OPENAPI_PYTHON_CLIENT=v/bin/openapi-python-client (.ci/run does this)",
        );
        return None;
    };
    let python = std::path::Path::new(&c)
        .parent()
        .map(|d| d.join("python"))
        .filter(|p| p.exists())
        .map_or_else(|| "python3".to_string(), |p| p.display().to_string());
    Some((c, python))
}
