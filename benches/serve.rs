//! `deputy serve` under load: 100 sessions submitted at once (the release binary) against
//! deputy-mockllm, each two model turns with a file write between them — first to one worker
//! on the embedded store, then to two workers sharing a PostgreSQL store (a fresh server,
//! fsync on; skipped without PostgreSQL). Prints sessions per second (submission to the last
//! result) and API latency p50/p99 for the submissions and for the status polls made
//! meanwhile (on two workers, each session is polled on the worker it was not sent to).
//! Then, on PostgreSQL, the time from kill -9 of a worker mid-command to its session finished
//! on the other worker, under the default 30 s lease.
//!
//! Run with `bench/serve.sh` (builds the release binary first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use deputy_mockllm::{MockServer, Script, ServeOptions};
use tokio::io::AsyncBufReadExt;

const SESSIONS: usize = 100;
const SCRIPT: &str = "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: out.txt, content: done}}\n  - text: finished\n";

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[path = "../tests/support/outside.rs"]
mod outside;
/// The PostgreSQL server of the tests (a fresh cluster in a temporary directory).
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

/// Start a `deputy serve` worker; its URL.
async fn worker(
    bin: &str,
    ws: &std::path::Path,
    home: &std::path::Path,
    mock: &str,
    extra: &[&str],
) -> (tokio::process::Child, String) {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--sessions-per-token",
        "1000",
        "--rate-per-minute",
        "1000000",
    ];
    args.extend_from_slice(extra);
    let mut child = tokio::process::Command::new(bin)
        .args(&args)
        .current_dir(ws)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("DEPUTY_HOME", home.join("state"))
        .env("OPENAI_BASE_URL", mock)
        .env("DEPUTY_MODEL", "mock")
        .env("DEPUTY_LOCAL_PORTS", "none")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first
        .trim_start_matches("deputy serve listening on ")
        .to_string();
    (child, url)
}

/// Submit the sessions at once (spread over `urls`), poll each until it finishes (also spread),
/// and print the figures.
async fn load(http: &reqwest::Client, urls: &[String]) {
    let started = Instant::now();
    let submits = (0..SESSIONS).map(|i| {
        let http = http.clone();
        let url = urls[i % urls.len()].clone();
        async move {
            let t = Instant::now();
            let r = http
                .post(format!("{url}/v1/sessions"))
                .header("content-type", "application/json")
                .body(format!("{{\"prompt\": \"task {i}\"}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                t.elapsed().as_secs_f64() * 1000.0,
            )
        }
    });
    let created: Vec<(String, f64)> = futures::future::join_all(submits).await;
    let submit_ms: Vec<f64> = created.iter().map(|c| c.1).collect();
    let polls = created.iter().enumerate().map(|(i, (id, _))| {
        let http = http.clone();
        // Asked of another worker than the one it was submitted to, when there are two.
        let url = urls[(i + 1) % urls.len()].clone();
        let id = id.clone();
        async move {
            let mut lat = Vec::new();
            loop {
                let t = Instant::now();
                let r = http
                    .get(format!("{url}/v1/sessions/{id}"))
                    .send()
                    .await
                    .unwrap();
                let v: serde_json::Value =
                    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if v["phase"] == "finished" {
                    assert_eq!(v["status"], "completed", "{v}");
                    return lat;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let poll_ms: Vec<f64> = futures::future::join_all(polls).await.concat();
    let total = started.elapsed().as_secs_f64();
    println!(
        "  all {SESSIONS} completed in {total:.2} s: {:.1} sessions/s",
        SESSIONS as f64 / total
    );
    println!(
        "  POST /v1/sessions: p50 {:.1} ms, p99 {:.1} ms",
        percentile(submit_ms.clone(), 0.5),
        percentile(submit_ms, 0.99)
    );
    println!(
        "  GET /v1/sessions/ID ({} polls meanwhile): p50 {:.1} ms, p99 {:.1} ms",
        poll_ms.len(),
        percentile(poll_ms.clone(), 0.5),
        percentile(poll_ms, 0.99)
    );
}

/// A command long enough to be cut off, then the answer.
const LONG: &str = "steps:\n  - tool_calls:\n      - {name: bash, arguments: {command: \"sleep 30\"}}\n  - text: finished\n";

/// Kill a worker while its session's command runs; how long until another worker (started
/// once the session runs on the first, so it cannot have claimed it) has finished it: taken
/// over, the command reported interrupted, the answer given.
async fn takeover(
    bin: &str,
    dir: &std::path::Path,
    ws: &std::path::Path,
    store: &str,
    http: &reqwest::Client,
) {
    let mock = MockServer::start(Script::parse(LONG, false).unwrap(), ServeOptions::default())
        .await
        .unwrap();
    let args = ["--store", store, "--auto-approve"];
    let status = |url: String, id: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{url}/v1/sessions/{id}"))
                .send()
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap()
        }
    };
    let mut took = Vec::new();
    for round in 0..3 {
        let (mut a, url_a) =
            worker(bin, ws, &dir.join(format!("ta{round}")), &mock.url(), &args).await;
        let r = http
            .post(format!("{url_a}/v1/sessions"))
            .header("content-type", "application/json")
            .body("{\"prompt\": \"long\"}")
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        // The first turn is done (its command asked for): let the command start.
        while status(url_a.clone(), id.clone()).await["num_turns"] != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (mut b, url_b) =
            worker(bin, ws, &dir.join(format!("tb{round}")), &mock.url(), &args).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = a.kill().await;
        let t = Instant::now();
        loop {
            let v = status(url_b.clone(), id.clone()).await;
            if v["phase"] == "finished" {
                assert_eq!(v["status"], "completed", "{v}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        took.push(t.elapsed().as_secs_f64());
        let _ = b.kill().await;
    }
    println!(
        "  kill -9 mid-command -> finished on another worker (lease 30 s): {}",
        took.iter()
            .map(|t| format!("{t:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn main() {
    let bin = support::deputy_bin();
    let rt = support::runtime();
    deputy_llm::install_crypto_provider();
    rt.block_on(async {
        let mock = MockServer::start(
            Script::parse(SCRIPT, false).unwrap(),
            ServeOptions::default(),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        println!("binary: {bin}");
        println!("{SESSIONS} sessions at once; each 2 model turns and a write");

        println!("one worker, embedded store, at most 16 running:");
        let home = dir.path().join("one");
        let (mut one, url) = worker(&bin, &ws, &home, &mock.url(), &["--max-sessions", "16"]).await;
        load(&http, &[url]).await;
        let _ = one.kill().await;

        let Some(pg) = postgres::start_durable() else {
            return;
        };
        println!("two workers, one PostgreSQL store (fsync on), at most 8 running on each:");
        let mut workers = Vec::new();
        let mut urls = Vec::new();
        for name in ["w1", "w2"] {
            let home = dir.path().join(name);
            let (c, url) = worker(
                &bin,
                &ws,
                &home,
                &mock.url(),
                &["--max-sessions", "8", "--store", &pg.url],
            )
            .await;
            workers.push(c);
            urls.push(url);
        }
        load(&http, &urls).await;
        for mut w in workers {
            let _ = w.kill().await;
        }
        println!("a worker killed, two workers on PostgreSQL:");
        takeover(&bin, dir.path(), &ws, &pg.url, &http).await;
    });
}
