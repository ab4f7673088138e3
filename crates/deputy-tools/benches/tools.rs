//! Tool overhead. Run with `cargo bench -p deputy-tools --bench tools`.
//!
//! - `bash {command: "true"}` through each sandbox backend that works here (and with none, for
//!   scale): median and p90 wall time of the whole tool call (sandbox set-up, spawn, wait,
//!   output capture, teardown).
//! - `edit` of a 1 MB file (one unique replacement in the middle): read, match, atomic write,
//!   diff.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use deputy_tools::sandbox::{self, Backend};
use deputy_tools::tools::{BashTool, EditTool};
use deputy_tools::{
    Sandbox, SandboxMode, SandboxPolicy, Tool, ToolContext, ToolSettings, Workspace,
};
use serde_json::json;

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

fn ctx(ws: &std::path::Path, backend: Backend) -> ToolContext {
    let mut policy = SandboxPolicy {
        force_backend: Some(backend),
        ..Default::default()
    };
    if backend == Backend::None {
        policy.mode = SandboxMode::Off;
    }
    ToolContext {
        workspace: Arc::new(Workspace::open(ws).unwrap()),
        sandbox: Sandbox::new(policy, ws)
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        settings: ToolSettings::default(),
        readable: None,
        web: Default::default(),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(ws.join(".git")).unwrap();
    let report = sandbox::probe();
    println!(
        "sandbox probe: bwrap {:?}, landlock {:?}, pids cgroup {:?}",
        report.bwrap, report.landlock, report.pids_cgroup
    );
    rt.block_on(async {
        for backend in [Backend::Bwrap, Backend::Landlock, Backend::None] {
            let available = match backend {
                Backend::Bwrap => report.bwrap.is_ok(),
                Backend::Landlock => report.landlock.is_ok(),
                Backend::None => true,
            };
            if !available {
                println!("bash true via {:8}: not available here", backend.as_str());
                continue;
            }
            let c = ctx(&ws, backend);
            for _ in 0..20 {
                BashTool.call(json!({"command": "true"}), &c).await;
            }
            let mut samples = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                let out = BashTool.call(json!({"command": "true"}), &c).await;
                samples.push(t.elapsed());
                assert!(!out.is_error, "{}", out.content);
            }
            let (p50, p90) = stats(samples);
            println!(
                "bash true via {:8}: median {p50:.2} ms, p90 {p90:.2} ms (200 calls)",
                backend.as_str()
            );
        }

        let c = ctx(&ws, Backend::None);
        let line = "let value = compute(input, 42); // a typical line of code\n";
        let mut text = String::new();
        while text.len() < 1024 * 1024 {
            text.push_str(line);
        }
        let mid = text.len() / 2;
        let cut = text[mid..].find('\n').unwrap() + mid + 1;
        text.insert_str(cut, "UNIQUE_MARKER_A\n");
        std::fs::write(ws.join("big.rs"), &text).unwrap();
        let mut samples = Vec::new();
        for i in 0..50 {
            let (from, to) = if i % 2 == 0 {
                ("UNIQUE_MARKER_A", "UNIQUE_MARKER_B")
            } else {
                ("UNIQUE_MARKER_B", "UNIQUE_MARKER_A")
            };
            let t = Instant::now();
            let out = EditTool
                .call(
                    json!({"path": "big.rs", "old_string": from, "new_string": to}),
                    &c,
                )
                .await;
            samples.push(t.elapsed());
            assert!(!out.is_error, "{}", out.content);
        }
        let (p50, p90) = stats(samples);
        println!(
            "edit of a {:.1} MB file: median {p50:.2} ms, p90 {p90:.2} ms (50 edits)",
            text.len() as f64 / 1048576.0
        );
    });
}
