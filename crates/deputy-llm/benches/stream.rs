#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]
//! Model client benchmarks against deputy-mockllm over loopback. Run with
//! `cargo bench -p deputy-llm --bench stream`.
//!
//! 1. Stream parsing throughput: the largest recorded stream of the corpus
//!    (groq/vercel-ai__groq-reasoning.chunks.txt, 1104 chunks) repeated to about 8 MB, replayed
//!    and parsed into events (SSE framing, JSON, think/reasoning split, accumulation). MB/s.
//! 2. Request overhead: a short streamed answer, end to end (request built, sent, streamed,
//!    parsed, collected). p50 and p99 over many requests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use deputy_llm::{
    ChatRequest, Message, ModelClient, OpenAiClient, ProviderSettings, Target, collect,
};
use deputy_mockllm::{MockServer, Replay, Script, ServeOptions, Step};

fn corpus() -> PathBuf {
    std::env::var_os("DEPUTY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // --- 1. throughput
        let src = corpus().join("wire/groq/vercel-ai__groq-reasoning.chunks.txt");
        let lines: Vec<String> = std::fs::read_to_string(&src)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let (body, tail) = lines.split_at(lines.len() - 2);
        let mut sse = String::new();
        while sse.len() < 8 * 1024 * 1024 {
            for l in body {
                sse.push_str("data: ");
                sse.push_str(l);
                sse.push_str("\n\n");
            }
        }
        for l in tail {
            sse.push_str("data: ");
            sse.push_str(l);
            sse.push_str("\n\n");
        }
        sse.push_str("data: [DONE]\n\n");
        let dir = std::env::temp_dir().join(format!("deputy-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.sse");
        std::fs::write(&big, &sse).unwrap();
        let server = MockServer::start(
            Script { steps: vec![Step { replay: Some(Replay::Path(big.clone())), ..Step::default() }], ..Script::default() },
            ServeOptions::default(),
        )
        .await
        .unwrap();
        let client = OpenAiClient::single(Target { provider: ProviderSettings::new("bench", server.url()), model: "m".into() }).unwrap();
        let req = ChatRequest { messages: vec![Message::user("go")], ..Default::default() };
        let mut best = Duration::MAX;
        let mut chars = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let done = collect(client.stream(req.clone())).await.unwrap();
            best = best.min(t.elapsed());
            chars = done.text.len() + done.reasoning.len();
        }
        let mb = sse.len() as f64 / (1024.0 * 1024.0);
        println!(
            "stream parsing: {mb:.1} MB ({} chunks) in {:.1} ms (best of 5) = {:.0} MB/s; {chars} chars of text+reasoning",
            body.len() * (sse.len() / body.iter().map(|l| l.len() + 8).sum::<usize>()),
            best.as_secs_f64() * 1000.0,
            mb / best.as_secs_f64()
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);

        // --- 2. request overhead
        let server = MockServer::start(Script::text("Hello from the mock, a short answer."), ServeOptions::default())
            .await
            .unwrap();
        let client = OpenAiClient::single(Target { provider: ProviderSettings::new("bench", server.url()), model: "m".into() }).unwrap();
        let req = ChatRequest { messages: vec![Message::system("You are terse."), Message::user("hi")], ..Default::default() };
        for _ in 0..50 {
            collect(client.stream(req.clone())).await.unwrap();
        }
        let mut samples = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let t = Instant::now();
            collect(client.stream(req.clone())).await.unwrap();
            samples.push(t.elapsed());
        }
        samples.sort();
        println!(
            "request overhead over loopback (2000 requests): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            percentile(&samples, 0.5).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
            samples.last().unwrap().as_secs_f64() * 1e6,
        );
    });
}
