//! Helpers shared by the sandbox tests.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deputy_tools::sandbox::{self, Backend};
use deputy_tools::tools::{BashTool, ReadFilter};
use deputy_tools::{
    Sandbox, SandboxPolicy, Tool, ToolContext, ToolOutput, ToolSettings, Workspace,
};
use serde_json::{Value, json};

#[path = "../../../../tests/support/outside.rs"]
pub mod outside;

/// The backends to test here: those `DEPUTY_TEST_BACKENDS` names (`bwrap`, `landlock`, comma
/// separated; both when unset). A named backend that does not work fails where outside things
/// are required (CI) and is skipped loudly elsewhere. (CI runs the escape suites once per
/// backend, with bwrap hidden for the Landlock run: `.ci/escape-matrix`.)
pub fn backends() -> Vec<Backend> {
    let only = std::env::var("DEPUTY_TEST_BACKENDS").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|b| b.trim() == name))
    };
    let report = sandbox::probe();
    let mut out = Vec::new();
    if wanted("bwrap") {
        match &report.bwrap {
            Ok(_) => out.push(Backend::Bwrap),
            Err(why) => {
                outside::missing("bwrap backend tests", why, "apt-get install bubblewrap");
            }
        }
    }
    if wanted("landlock") {
        match &report.landlock {
            Ok(_) => out.push(Backend::Landlock),
            Err(why) => {
                outside::missing(
                    "Landlock backend tests",
                    why,
                    "run on Linux 5.13+ with Landlock enabled",
                );
            }
        }
    }
    out
}

/// The supervisor of kept sandboxes, built with this crate.
pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_deputy-sandbox-supervisor");

/// The sandboxes to test: each working backend with a sandbox per command, and again with one
/// sandbox kept for the session (served by [`SUPERVISOR`]), which must give each command the
/// same guarantees.
pub fn modes() -> Vec<(Backend, bool)> {
    let mut out = Vec::new();
    for b in backends() {
        out.push((b, false));
        out.push((b, true));
    }
    out
}

/// A sandbox on `backend` for the workspace `ws`, served by `supervisor` when given.
pub fn sandbox(backend: Backend, ws: &Path, supervisor: Option<PathBuf>) -> Sandbox {
    Sandbox::new(
        SandboxPolicy {
            force_backend: Some(backend),
            ..SandboxPolicy::default()
        },
        ws,
    )
    .unwrap()
    .with_supervisor(supervisor)
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub ws: PathBuf,
    pub outside: PathBuf,
    pub ctx: ToolContext,
}

impl Env {
    pub fn new(backend: Backend, tweak: impl FnOnce(&mut SandboxPolicy)) -> Env {
        Env::make(backend, false, tweak)
    }

    /// With `kept`, commands share one sandbox kept for the session.
    pub fn make(backend: Backend, kept: bool, tweak: impl FnOnce(&mut SandboxPolicy)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(ws.join("README.md"), "hello\n").unwrap();
        std::fs::create_dir_all(ws.join("src")).unwrap();
        let ws = ws.canonicalize().unwrap();
        let outside = outside.canonicalize().unwrap();
        let mut policy = SandboxPolicy {
            force_backend: Some(backend),
            ..SandboxPolicy::default()
        };
        tweak(&mut policy);
        let granted = sandbox::grant::check(&policy.extra_dirs, &ws, &policy.hidden).unwrap();
        let sandbox = Sandbox::new(policy, &ws)
            .map(|s| s.with_supervisor(kept.then(|| PathBuf::from(SUPERVISOR))))
            .map_err(|e| e.to_string());
        let mut workspace = Workspace::open(&ws).unwrap();
        workspace.grant(&granted).unwrap();
        let ctx = ToolContext {
            workspace: Arc::new(workspace),
            sandbox: sandbox.map(Arc::new),
            settings: ToolSettings::default(),
            readable: None,
            web: Default::default(),
        };
        Env {
            dir,
            ws,
            outside,
            ctx,
        }
    }

    pub fn with_reader(mut self, f: ReadFilter) -> Self {
        self.ctx.readable = Some(f);
        self
    }

    pub async fn bash(&self, command: &str) -> ToolOutput {
        self.bash_timeout(command, None).await
    }

    pub async fn bash_timeout(&self, command: &str, timeout_ms: Option<u64>) -> ToolOutput {
        BashTool
            .call(
                json!({"command": command, "timeout_ms": timeout_ms}),
                &self.ctx,
            )
            .await
    }

    pub async fn tool(&self, tool: &dyn Tool, input: Value) -> ToolOutput {
        tool.call(input, &self.ctx).await
    }
}

pub fn exit_code(out: &ToolOutput) -> Option<i64> {
    out.metadata["exit_code"].as_i64()
}

/// Processes on the machine whose command line contains `needle`.
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

pub fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}
