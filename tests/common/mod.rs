//! The end-to-end harness: a temporary workspace and home, deputy-mockllm on loopback, and the
//! real `deputy` binary pointed at it.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use deputy_mockllm::{MockServer, Script, ServeOptions};

#[path = "../support/outside.rs"]
pub mod outside;
pub mod postgres;
pub mod serve;
use serde_json::Value;

pub struct Harness {
    pub mock: MockServer,
    pub dir: tempfile::TempDir,
    /// The workspace (cwd of deputy).
    pub ws: PathBuf,
    /// HOME and DEPUTY_HOME of deputy.
    pub home: PathBuf,
    /// The protocol deputy speaks to the mock.
    pub api: Api,
}

/// The protocols a provider may speak, for tests that run on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Anthropic,
    Responses,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Chat, Api::Anthropic, Api::Responses];
}

pub const BIN: &str = env!("CARGO_BIN_EXE_deputy");

impl Harness {
    pub async fn new(script: Script) -> Harness {
        Self::with_options(script, ServeOptions::default()).await
    }

    /// A harness whose mock is started with `opts` (an expected API key, …).
    pub async fn with_options(script: Script, opts: ServeOptions) -> Harness {
        let mock = MockServer::start(script, opts).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        Harness {
            mock,
            dir,
            ws: ws.canonicalize().unwrap(),
            home: home.canonicalize().unwrap(),
            api: Api::Chat,
        }
    }

    /// A harness whose deputy speaks `api` to the mock: Anthropic through
    /// `ANTHROPIC_BASE_URL` alone, Responses through `api = "responses"` on the `openai`
    /// provider in the user's config.
    pub async fn speaking(script: Script, api: Api) -> Harness {
        let mut h = Self::new(script).await;
        h.api = api;
        h.write_user_config("");
        h
    }

    pub async fn yaml(script: &str) -> Harness {
        Self::new(Script::parse(script, false).unwrap()).await
    }

    /// A deputy command with the mock as its model, a clean environment and its own home.
    pub fn cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(BIN);
        c.args(args)
            .current_dir(&self.ws)
            .env_clear()
            .envs(self.env())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// The whole environment deputy runs with here (for [`Harness::cmd`], and for a program
    /// that starts deputy itself, such as an editor).
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let url_var = if self.api == Api::Anthropic {
            "ANTHROPIC_BASE_URL"
        } else {
            "OPENAI_BASE_URL"
        };
        let mut env = vec![
            ("PATH", std::env::var_os("PATH").unwrap_or_default()),
            ("HOME", self.home.clone().into()),
            ("DEPUTY_HOME", self.home.join("state").into()),
            (url_var, self.mock.url().into()),
            ("DEPUTY_MODEL", "mock-model".into()),
            // A model server running on this machine must not change what a test sees.
            ("DEPUTY_LOCAL_PORTS", "none".into()),
        ];
        if let Some(b) = std::env::var_os("DEPUTY_SANDBOX_BACKEND") {
            env.push(("DEPUTY_SANDBOX_BACKEND", b));
        }
        env
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(60), self.cmd(args).output())
            .await
            .expect("deputy did not finish within 60 s")
            .unwrap()
    }

    /// `deputy run --output-format json …`, parsed.
    pub async fn run_json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let mut all = vec!["run", "--output-format", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code(), v, stderr)
    }

    pub fn write_agent(&self, name: &str, text: &str) {
        let p = self.ws.join("agents").join(format!("{name}.md"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The user's own config (`~/.config/deputy/config.toml`), trusted.
    pub fn write_user_config(&self, text: &str) {
        let p = self.home.join(".config/deputy/config.toml");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let text = match self.api {
            Api::Responses => format!("{text}\n[providers.openai]\napi = \"responses\"\n"),
            _ => text.to_string(),
        };
        std::fs::write(p, text).unwrap();
    }

    /// The project's config (`.deputy/config.toml`), untrusted until `deputy trust`.
    pub fn write_config(&self, text: &str) {
        let p = self.ws.join(".deputy/config.toml");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `deputy chat` (plus `args`) with `input` piped to its stdin, run to the end.
    pub async fn chat_piped(&self, args: &[&str], input: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut all = vec!["chat"];
        all.extend_from_slice(args);
        let mut child = self
            .cmd(&all)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).await.unwrap();
        drop(stdin);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("deputy chat did not finish within 60 s")
            .unwrap()
    }

    /// No request was refused by the strict mock (every tool call had its result).
    pub fn assert_strict_ok(&self) {
        for r in self.mock.requests() {
            assert!(
                r.rejected.is_none(),
                "request {} broke the tool-call rule: {}\n{:#}",
                r.seq,
                r.rejected.as_deref().unwrap_or(""),
                r.body["messages"]
            );
        }
    }

    /// The tool results the model was sent in the last request, in order.
    pub fn tool_results(&self) -> Vec<String> {
        let reqs = self.mock.requests();
        reqs.last().unwrap().body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The names of the tools offered in request `i`.
    pub fn offered(&self, i: usize) -> Vec<String> {
        self.mock.requests()[i].body["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Events of a session's journal.
    pub fn journal(&self, session_id: &str) -> Vec<Value> {
        let p = self
            .home
            .join("state/sessions")
            .join(session_id)
            .join("events.jsonl");
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every session id in the state directory.
    pub fn journal_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.home.join("state/sessions"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The only session id in the state directory.
    pub fn only_session(&self) -> String {
        let dir = self.home.join("state/sessions");
        let ids: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].clone()
    }
}

/// A Python with the official MCP SDK (and jsonschema): DEPUTY_TEST_PYTHON, else python3.
/// Without one, `test` is reported missing (a failure under CI, else a SKIP line).
pub fn mcp_python(test: &str) -> Option<String> {
    let candidates = [
        std::env::var("DEPUTY_TEST_PYTHON").ok(),
        Some("python3".to_string()),
    ];
    for p in candidates.into_iter().flatten() {
        let ok = std::process::Command::new(&p)
            .args(["-c", "import mcp, jsonschema"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    outside::missing(
        test,
        "no Python with the `mcp` and `jsonschema` packages (DEPUTY_TEST_PYTHON)",
        "python3 -m venv v && v/bin/pip install mcp jsonschema, then set DEPUTY_TEST_PYTHON=v/bin/python (.ci/run does this)",
    );
    None
}

/// Write `s` to `p`, making its directories.
pub fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Whether a sandbox works here; a missing one fails where outside programs are required
/// (CI) and skips loudly elsewhere.
pub fn sandbox_available() -> bool {
    let report = deputy_tools::sandbox::probe();
    if report.best().is_some() {
        return true;
    }
    outside::missing(
        "sandboxed end-to-end test",
        &format!(
            "no sandbox backend works here (bwrap: {}; Landlock: {})",
            report.bwrap.as_ref().err().map_or("ok", String::as_str),
            report.landlock.as_ref().err().map_or("ok", String::as_str)
        ),
        "apt-get install bubblewrap",
    )
}

/// The sandbox backends that work here, by name (for `DEPUTY_SANDBOX_BACKEND`); each missing
/// one fails where outside things are required and is skipped loudly elsewhere.
pub fn backends() -> Vec<&'static str> {
    let report = deputy_tools::sandbox::probe();
    let mut out = Vec::new();
    match &report.bwrap {
        Ok(_) => out.push("bwrap"),
        Err(why) => {
            outside::missing("bwrap end-to-end test", why, "apt-get install bubblewrap");
        }
    }
    match &report.landlock {
        Ok(_) => out.push("landlock"),
        Err(why) => {
            outside::missing(
                "Landlock end-to-end test",
                why,
                "run on Linux 5.13+ with Landlock enabled",
            );
        }
    }
    out
}

/// Events of a given type.
pub fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

/// The command lines of the running processes that contain `needle`.
/// The command lines of processes whose working directory is `dir` and whose command line
/// contains `needle`: what a test itself started there, not what parallel tests started.
pub fn processes_in(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if std::fs::read_link(e.path().join("cwd")).ok().as_deref() != Some(dir.as_path()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

/// `git ARGS` in `dir` (the real git, as the user would run it, with an identity for
/// commits); its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Make `dir` a git repository with one empty commit (the real git, as its owner would).
pub fn git_repo_with_a_commit(dir: &Path) {
    for args in [
        &["init", "-q"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ][..],
    ] {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?} in {}", dir.display());
    }
}
