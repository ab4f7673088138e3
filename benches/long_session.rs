//! The long-session benchmark: the release `deputy` binary runs 200 turns, each reading one of
//! ten 8 KB files, against deputy-mockllm on loopback (real sandbox, real HTTP) — once with a
//! 32k-token window and compaction on (the default), once with compaction off and no window
//! (what the session would send without it). Run with `bench/long-session.sh` (or
//! `cargo bench --bench long_session`).
//!
//! Reported for each: input tokens of the request at turn 10 and turn 200 (the mock's count:
//! request JSON bytes / 4), total input tokens over the session, the per-turn overhead around
//! turn 10 and turn 200 (reply sent → next request, the tool included; median of 9 turns), the
//! wall time, the compactions and the summary requests.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::zombie_processes
)]

mod support;

use std::time::Instant;

use deputy_mockllm::{LoggedRequest, MockServer, Script, ServeOptions};
use serde_json::json;

const TURNS: usize = 200;
const WINDOW: u64 = 32_768;

fn script(window: Option<u64>) -> Script {
    let mut steps: Vec<_> = (0..TURNS)
        .map(|i| json!({"tool_calls": [{"name": "read", "arguments": {"path": format!("f{}.txt", i % 10)}}]}))
        .collect();
    steps.push(json!({"text": "all files read"}));
    let mut s = json!({
        "by_request": true,
        "steps": steps,
        "routes": [{
            "when": {"system_contains": "You are compacting the history"},
            "steps": [{"text": "## Task\nRead the files.\n## Done so far\nRead files f0 to f9 several times; all fine.\n## Next steps\nKeep reading."}],
            "repeat_last": true
        }]
    });
    if let Some(w) = window {
        s["context_window"] = json!(w);
    }
    Script::parse(&s.to_string(), false).unwrap()
}

struct Figures {
    at_10: u64,
    at_200: u64,
    total: u64,
    overhead_10: f64,
    overhead_200: f64,
    wall_ms: f64,
    summaries: usize,
    overflowed: usize,
}

/// The requests of the main conversation (not the summary requests), in order.
fn main_requests(reqs: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    reqs.iter()
        .filter(|r| {
            !r.body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .contains("You are compacting")
        })
        .collect()
}

fn run(bin: &str, rt: &tokio::runtime::Runtime, compaction: bool) -> Figures {
    rt.block_on(async {
        let window = compaction.then_some(WINDOW);
        let mock = MockServer::start(script(window), ServeOptions::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        for i in 0..10 {
            let line = format!("file {i}: {}\n", "lorem ipsum dolor sit amet ".repeat(3));
            let text = line.repeat(8192 / line.len() + 1);
            std::fs::write(ws.join(format!("f{i}.txt")), &text[..8192]).unwrap();
        }
        let home = dir.path().join("home");
        let config = home.join(".config/deputy/config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, format!("[compaction]\nenabled = {compaction}\n")).unwrap();
        let t0 = Instant::now();
        let out = tokio::process::Command::new(bin)
            .args(["run", "--max-steps", "400", "--quiet", "read the files"])
            .current_dir(&ws)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("DEPUTY_HOME", home.join("state"))
            .env("OPENAI_BASE_URL", mock.url())
            .env("DEPUTY_MODEL", "mock")
            .output()
            .await
            .unwrap();
        let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
        assert!(
            out.status.success(),
            "deputy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reqs = mock.requests();
        let main = main_requests(&reqs);
        assert_eq!(main.len(), TURNS + 1);
        let gaps: Vec<f64> = main
            .windows(2)
            .map(|w| w[1].received_ms - w[0].done_ms.unwrap())
            .collect();
        Figures {
            at_10: main[9].prompt_tokens,
            at_200: main[TURNS - 1].prompt_tokens,
            total: reqs.iter().map(|r| r.prompt_tokens).sum(),
            overhead_10: support::median(gaps[5..14].to_vec()),
            overhead_200: support::median(gaps[TURNS - 10..TURNS - 1].to_vec()),
            wall_ms,
            summaries: reqs.len() - main.len(),
            overflowed: reqs.iter().filter(|r| r.overflowed).count(),
        }
    })
}

fn main() {
    let bin = support::deputy_bin();
    let rt = support::runtime();
    println!("binary: {bin}");
    println!("{TURNS} turns, each reading an 8 KB file (input tokens: request bytes / 4)");
    for (name, compaction) in [
        ("with compaction, 32k window", true),
        ("without compaction", false),
    ] {
        let f = run(&bin, &rt, compaction);
        println!("{name}:");
        println!(
            "  input tokens: turn 10 {}, turn 200 {}, total {} ({} summary requests, {} overflowed)",
            f.at_10, f.at_200, f.total, f.summaries, f.overflowed
        );
        println!(
            "  per-turn overhead (median of 9): around turn 10 {:.2} ms, around turn 200 {:.2} ms",
            f.overhead_10, f.overhead_200
        );
        println!("  wall time {:.0} ms", f.wall_ms);
    }
}
