//! The main-job benchmark: the release `deputy` binary runs the seed agent on a 6-step scripted
//! task (ls, write a file, edit it, cat it, echo, final answer) against deputy-mockllm on
//! loopback, with the real sandbox. Run with `bench/session.sh` (or `cargo bench --bench session`).
//!
//! Reported, over several runs (median):
//! - time from process start (spawn) to the first model request received by the mock;
//! - per-turn overhead: the mock finished sending a reply → the next request arrives (the tool
//!   runs in between, so this is deputy's whole overhead per turn, tool execution included);
//! - total wall time;
//! - peak RSS of the deputy process (from wait4's rusage).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::zombie_processes
)]

use std::time::{Duration, Instant};

use deputy_mockllm::{MockServer, Script, ServeOptions};

const RUNS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bin = std::env::var("DEPUTY_BIN").unwrap_or_else(|_| {
        let exe = std::env::current_exe().unwrap();
        // target/release/deps/session-… → target/release/deputy
        exe.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("deputy")
            .display()
            .to_string()
    });
    assert!(
        std::path::Path::new(&bin).exists(),
        "build the binary first: cargo build --release ({bin})"
    );
    let script_text = include_str!("../examples/mock/seed-task.yaml");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = deputy_tools::sandbox::probe();
    println!("binary: {bin}");
    println!("sandbox: {}", report.best().map_or("none", |b| b.as_str()));
    let mut first_req = Vec::new();
    let mut per_turn = Vec::new();
    let mut wall = Vec::new();
    let mut rss = Vec::new();
    for run in 0..RUNS + 2 {
        let (first, turns, total, peak) = rt.block_on(async {
            let script = Script::parse(script_text, false).unwrap();
            let mock = MockServer::start(script, ServeOptions::default())
                .await
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let ws = dir.path().join("ws");
            std::fs::create_dir_all(&ws).unwrap();
            std::fs::write(ws.join("app.py"), "print('app')\n").unwrap();
            let url = mock.url();
            let home = dir.path().join("home");
            let t0 = Instant::now();
            let child = std::process::Command::new(&bin)
                .args([
                    "run",
                    "--agent",
                    "backend-architect",
                    "--quiet",
                    "add a health check",
                ])
                .current_dir(&ws)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("DEPUTY_HOME", home.join("state"))
                .env("OPENAI_BASE_URL", &url)
                .env("DEPUTY_MODEL", "mock")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id() as i32;
            let (status, peak_kb) = tokio::task::spawn_blocking(move || {
                let mut status = 0;
                // SAFETY: an all-zero rusage is a valid value to be filled in.
                let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
                // SAFETY: waiting for our own child with valid pointers.
                unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
                (status, usage.ru_maxrss)
            })
            .await
            .unwrap();
            let total = t0.elapsed();
            assert_eq!(status, 0, "deputy failed");
            let reqs = mock.requests();
            assert_eq!(reqs.len(), 6);
            let base = mock.started();
            let at = |ms: f64| base + Duration::from_secs_f64(ms / 1000.0);
            let first = at(reqs[0].received_ms).duration_since(t0);
            let turns: Vec<f64> = reqs
                .windows(2)
                .map(|w| w[1].received_ms - w[0].done_ms.unwrap())
                .collect();
            (first, turns, total, peak_kb)
        });
        if run < 2 {
            continue; // warm-up (page cache, sandbox probe paths)
        }
        first_req.push(first.as_secs_f64() * 1000.0);
        per_turn.extend(turns);
        wall.push(total.as_secs_f64() * 1000.0);
        rss.push(peak as f64 / 1024.0);
    }
    println!("runs: {RUNS} (6 model turns, 5 tool calls each)");
    println!(
        "process start → first model request: median {:.2} ms (min {:.2})",
        median(first_req.clone()),
        first_req.iter().cloned().fold(f64::MAX, f64::min)
    );
    println!(
        "per-turn overhead (reply sent → next request, tool included): median {:.2} ms",
        median(per_turn.clone())
    );
    println!("total wall time: median {:.1} ms", median(wall));
    println!(
        "peak RSS: median {:.1} MB (max {:.1})",
        median(rss.clone()),
        rss.iter().cloned().fold(0.0, f64::max)
    );
}
