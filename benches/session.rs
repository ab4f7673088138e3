//! The main-job benchmark: the release `deputy` binary runs the seed agent on a 6-step scripted
//! task (ls, write a file, edit it, cat it, echo, final answer) against deputy-mockllm on
//! loopback, with the real sandbox. Run with `bench/session.sh` (or `cargo bench --bench session`).
//!
//! Reported, over several runs (median):
//! - time from process start (spawn) to the first model request received by the mock;
//! - per-turn overhead: the mock finished sending a reply → the next request arrives (the tool
//!   runs in between, so this is deputy's whole overhead per turn, tool execution included);
//! - total wall time;
//! - peak RSS of the deputy process and what it starts (wait4's rusage, taken by a small
//!   process of this binary that spawns deputy: see `support::Measured`);
//! - what a bash call costs inside the session: the `duration_ms` the journal records for the
//!   task's three commands (`ls -la`, `cat`, `echo`) — the first apart, as it starts the
//!   session's sandbox (its clock starts once the sandbox is up);
//! - the turn of the first bash call against those of the later ones (turns 1 and 4–5): what
//!   waiting for the sandbox costs when the model answers at once.
//!
//! Then the same task on each model protocol (Chat Completions, Anthropic Messages, OpenAI
//! Responses) with the first backend: what each protocol's requests and streams cost per turn.
//!
//! Each available backend (bubblewrap, Landlock) is measured in turn, with one state directory
//! for all runs as a user has (so what deputy remembers between runs, the sandbox probe, counts).
//! Then a cold start against an `https` endpoint: process start → its TCP connection (the
//! system's TLS roots are loaded on that path; a plain-HTTP endpoint skips them).
//!
//! Last, the same task for Codex's native binary (`DEPUTY_BENCH_CODEX`, which
//! `bench/session.sh` installs from the npm registry), in its own words
//! (`bench/codex-task.yaml`), against the same mock over the Responses API, with no sandbox and
//! its proxies pointed at a closed local port so it reaches nothing but the mock; and how many
//! times shorter deputy's wall time is.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::zombie_processes
)]

mod support;

use std::time::{Duration, Instant};

use deputy_mockllm::{MockServer, Script, ServeOptions};

const RUNS: usize = 15;

struct Run {
    first_ms: f64,
    turns_ms: Vec<f64>,
    wall_ms: f64,
    rss_mb: f64,
    bash_ms: Vec<f64>,
    /// Applying each command's write layer to the workspace (bwrap; none under Landlock).
    apply_ms: Vec<f64>,
}

fn run_once(
    bin: &str,
    rt: &tokio::runtime::Runtime,
    backend: &str,
    state: &std::path::Path,
    port: &mut u16,
    api: &str,
) -> Run {
    let script_text = include_str!("../examples/mock/seed-task.yaml");
    rt.block_on(async {
        // The same endpoint every run, as a user's model server is (what deputy keeps per
        // endpoint between runs then counts); a fresh mock each run, for a clean request log.
        let mut tries = 0;
        let mock = loop {
            let script = Script::parse(script_text, false).unwrap();
            let opts = ServeOptions {
                port: *port,
                ..ServeOptions::default()
            };
            match MockServer::start(script, opts).await {
                Ok(m) => break m,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the mock cannot listen on port {port}: {e}"),
            }
        };
        *port = mock.addr().port();
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("app.py"), "print('app')\n").unwrap();
        let home = dir.path().join("home");
        if api == "responses" {
            let config = home.join(".config/deputy");
            std::fs::create_dir_all(&config).unwrap();
            std::fs::write(
                config.join("config.toml"),
                "[providers.openai]\napi = \"responses\"\n",
            )
            .unwrap();
        }
        let base_url_env = if api == "anthropic" {
            "ANTHROPIC_BASE_URL"
        } else {
            "OPENAI_BASE_URL"
        };
        let measured = dir.path().join("measured");
        let child = support::measured_command(bin, &measured)
            .args([
                "run",
                "--agent",
                "backend-architect",
                "--output-format",
                "json",
                "add a health check",
            ])
            .current_dir(&ws)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("DEPUTY_HOME", state)
            .env("DEPUTY_SANDBOX_BACKEND", backend)
            .env(base_url_env, mock.url())
            .env("DEPUTY_MODEL", "mock")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = child;
        let mut stdout = child.stdout.take().unwrap();
        let (status, out) = tokio::task::spawn_blocking(move || {
            let mut out = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
            (child.wait().unwrap().code().unwrap_or(-1), out)
        })
        .await
        .unwrap();
        let m = support::measured(status, &measured);
        let (t0, wall, peak_kb) = (m.started, m.took, m.peak_kb);
        assert_eq!(m.status, 0, "deputy failed: {out}");
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 6);
        let base = mock.started();
        let at = |ms: f64| base + Duration::from_secs_f64(ms / 1000.0);
        let first = at(reqs[0].received_ms).duration_since(t0);
        let turns_ms = reqs
            .windows(2)
            .map(|w| w[1].received_ms - w[0].done_ms.unwrap())
            .collect();
        let result: serde_json::Value = serde_json::from_str(&out).unwrap();
        let journal = std::fs::read_to_string(result["journal"].as_str().unwrap()).unwrap();
        let bash: Vec<serde_json::Value> = journal
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == "tool.completed" && e["tool"] == "bash")
            .collect();
        let bash_ms = bash
            .iter()
            .filter_map(|e| e["metadata"]["duration_ms"].as_f64())
            .collect();
        let apply_ms = bash
            .iter()
            .filter_map(|e| e["metadata"]["apply_ms"].as_f64())
            .collect();
        Run {
            first_ms: first.as_secs_f64() * 1000.0,
            turns_ms,
            wall_ms: wall.as_secs_f64() * 1000.0,
            rss_mb: peak_kb as f64 / 1024.0,
            bash_ms,
            apply_ms,
        }
    })
}

/// Process start → the TCP connection to an `https` endpoint (a listener that accepts and
/// hangs up: only the start-up is measured).
fn https_cold_start(bin: &str, rt: &tokio::runtime::Runtime, state: &std::path::Path) -> f64 {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new(bin)
            .args(["run", "--quiet", "hello"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("DEPUTY_HOME", state)
            .env("OPENAI_BASE_URL", format!("https://127.0.0.1:{port}/v1"))
            .env("OPENAI_API_KEY", "bench")
            .env("DEPUTY_MODEL", "mock")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        let took = t0.elapsed();
        drop(conn);
        let _ = child.kill().await;
        took.as_secs_f64() * 1000.0
    })
}

/// Codex's native binary on the task (in its own words), as `run_once` measures deputy.
fn codex_once(codex: &str, rt: &tokio::runtime::Runtime) -> Run {
    rt.block_on(async {
        let script = Script::parse(include_str!("../bench/codex-task.yaml"), false).unwrap();
        let mock = MockServer::start(script, ServeOptions::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(home.join(".codex")).unwrap();
        std::fs::write(ws.join("app.py"), "print('app')\n").unwrap();
        let provider = format!(
            "model_providers.mock={{name=\"mock\",base_url=\"{}\",wire_api=\"responses\"}}",
            mock.url()
        );
        let closed = "http://127.0.0.1:9";
        let measured = dir.path().join("measured");
        let mut child = support::measured_command(codex, &measured)
            .args([
                "exec",
                "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox",
                "-c",
                "check_for_update_on_startup=false",
                "-c",
                "model_provider=mock",
                "-c",
                &provider,
                "-m",
                "mock",
                "add a health check",
            ])
            .current_dir(&ws)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("CODEX_HOME", home.join(".codex"))
            .env("OPENAI_API_KEY", "bench")
            .env("HTTPS_PROXY", closed)
            .env("HTTP_PROXY", closed)
            .env("ALL_PROXY", closed)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let status =
            tokio::task::spawn_blocking(move || child.wait().unwrap().code().unwrap_or(-1))
                .await
                .unwrap();
        let m = support::measured(status, &measured);
        let (t0, wall, peak_kb) = (m.started, m.took, m.peak_kb);
        assert_eq!(m.status, 0, "codex failed");
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 6, "codex made {} requests", reqs.len());
        assert!(
            std::fs::read_to_string(ws.join("health.py"))
                .unwrap()
                .contains("1.0"),
            "codex did not do the task"
        );
        let base = mock.started();
        let at = |ms: f64| base + Duration::from_secs_f64(ms / 1000.0);
        Run {
            first_ms: at(reqs[0].received_ms).duration_since(t0).as_secs_f64() * 1000.0,
            turns_ms: reqs
                .windows(2)
                .map(|w| w[1].received_ms - w[0].done_ms.unwrap())
                .collect(),
            wall_ms: wall.as_secs_f64() * 1000.0,
            rss_mb: peak_kb as f64 / 1024.0,
            bash_ms: Vec::new(),
            apply_ms: Vec::new(),
        }
    })
}

/// How many names of `bench/hot-symbols.txt` the binary still has (they go stale when the
/// compiler or a dependency changes; `bench/order.sh` makes them again).
fn hot_symbols(bin: &str) -> Option<(usize, usize)> {
    let list = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/hot-symbols.txt"
    ))
    .ok()?;
    let out = std::process::Command::new("nm")
        .args(["--defined-only", bin])
        .output()
        .ok()?;
    let defined: std::collections::HashSet<&str> = std::str::from_utf8(&out.stdout)
        .ok()?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let names: Vec<&str> = list.lines().collect();
    Some((
        names.iter().filter(|n| defined.contains(*n)).count(),
        names.len(),
    ))
}

fn main() {
    support::spawner();
    let bin = support::deputy_bin();
    let rt = support::runtime();
    let report = deputy_tools::sandbox::probe();
    println!("binary: {bin}");
    match hot_symbols(&bin) {
        Some((found, all)) => println!(
            "hot functions placed together: {found} of the {all} in bench/hot-symbols.txt are in the binary{}",
            if found * 10 < all * 9 {
                " (stale: run bench/order.sh)"
            } else {
                ""
            }
        ),
        None => println!("hot functions placed together: no (bench/hot-symbols.txt or nm missing)"),
    }
    println!("runs: {RUNS} per backend (6 model turns, 5 tool calls, 3 of them bash)");
    let state = tempfile::tempdir().unwrap();
    let backends: Vec<&str> = [
        ("bwrap", report.bwrap.is_ok()),
        ("landlock", report.landlock.is_ok()),
    ]
    .into_iter()
    .filter_map(|(b, ok)| ok.then_some(b))
    .collect();
    let mut walls: Vec<(&str, f64)> = Vec::new();
    for &backend in &backends {
        let mut port = 0;
        let runs: Vec<Run> = (0..RUNS + 2)
            .map(|_| run_once(&bin, &rt, backend, state.path(), &mut port, "chat"))
            .skip(2) // warm-up (page cache, the probe remembered)
            .collect();
        let first: Vec<f64> = runs.iter().map(|r| r.first_ms).collect();
        let turns: Vec<f64> = runs.iter().flat_map(|r| r.turns_ms.clone()).collect();
        // The first bash call of a session starts its sandbox; the others run in it.
        let first_bash: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.bash_ms.first().copied())
            .collect();
        let bash: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.bash_ms.iter().skip(1).copied())
            .collect();
        // The seed task's turns 1, 4 and 5 are bash calls: the first finds the sandbox as it is
        // when the model answers at once (ready, or still starting); the later ones a warm one.
        let first_turn: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.turns_ms.first().copied())
            .collect();
        let warm_turns: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.turns_ms.iter().skip(3).take(2).copied())
            .collect();
        let rss: Vec<f64> = runs.iter().map(|r| r.rss_mb).collect();
        println!("sandbox {backend}:");
        println!(
            "  process start → first model request: median {:.2} ms (min {:.2})",
            support::median(first.clone()),
            first.iter().cloned().fold(f64::MAX, f64::min)
        );
        println!(
            "  per-turn overhead (reply sent → next request, tool included): median {:.2} ms",
            support::median(turns)
        );
        println!(
            "  bash duration_ms inside the session: median {:.1} ms (max {:.1}); the first call (timed once its sandbox is up): median {:.1} ms",
            support::median(bash.clone()),
            bash.iter().cloned().fold(0.0, f64::max),
            support::median(first_bash)
        );
        println!(
            "  the turn of the first bash call (model answers at once): median {:.2} ms; of the later bash calls: median {:.2} ms",
            support::median(first_turn),
            support::median(warm_turns)
        );
        let apply: Vec<f64> = runs.iter().flat_map(|r| r.apply_ms.clone()).collect();
        if !apply.is_empty() {
            println!(
                "  applying a command's write layer: median {:.3} ms (max {:.3})",
                support::median(apply.clone()),
                apply.iter().cloned().fold(0.0, f64::max)
            );
        }
        let wall = support::median(runs.iter().map(|r| r.wall_ms).collect());
        walls.push((backend, wall));
        println!("  total wall time: median {wall:.1} ms");
        println!(
            "  peak RSS: median {:.1} MB (max {:.1})",
            support::median(rss.clone()),
            rss.iter().cloned().fold(0.0, f64::max)
        );
    }
    if let Some(backend) = backends.first() {
        println!("model protocols, sandbox {backend}:");
        for api in ["chat", "anthropic", "responses"] {
            let mut port = 0;
            let runs: Vec<Run> = (0..RUNS + 2)
                .map(|_| run_once(&bin, &rt, backend, state.path(), &mut port, api))
                .skip(2)
                .collect();
            println!(
                "  {api:<9}: first model request median {:.2} ms; per-turn overhead median {:.2} ms; peak RSS median {:.1} MB",
                support::median(runs.iter().map(|r| r.first_ms).collect()),
                support::median(runs.iter().flat_map(|r| r.turns_ms.clone()).collect()),
                support::median(runs.iter().map(|r| r.rss_mb).collect())
            );
        }
    }
    let https: Vec<f64> = (0..RUNS + 2)
        .map(|_| https_cold_start(&bin, &rt, state.path()))
        .skip(2)
        .collect();
    println!(
        "https endpoint: process start → TCP connection: median {:.2} ms",
        support::median(https)
    );
    match std::env::var("DEPUTY_BENCH_CODEX") {
        Ok(codex) if std::path::Path::new(&codex).is_file() => {
            let runs: Vec<Run> = (0..RUNS + 2)
                .map(|_| codex_once(&codex, &rt))
                .skip(2)
                .collect();
            let wall = support::median(runs.iter().map(|r| r.wall_ms).collect());
            println!("codex (native binary, no sandbox; {codex}):");
            println!(
                "  process start → first model request: median {:.2} ms",
                support::median(runs.iter().map(|r| r.first_ms).collect())
            );
            println!(
                "  per-turn overhead: median {:.2} ms",
                support::median(runs.iter().flat_map(|r| r.turns_ms.clone()).collect())
            );
            println!("  total wall time: median {wall:.1} ms");
            println!(
                "  peak RSS: median {:.1} MB",
                support::median(runs.iter().map(|r| r.rss_mb).collect())
            );
            for (backend, w) in &walls {
                println!(
                    "  deputy ({backend}) takes {:.1}× less wall time than codex",
                    wall / w
                );
            }
        }
        _ => println!(
            "codex: SKIP (set DEPUTY_BENCH_CODEX to Codex's native binary; bench/session.sh installs it with npm)"
        ),
    }
}
