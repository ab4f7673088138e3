//! Every recorded response in ../shared/corpus/wire (read at test time, listed by its
//! MANIFEST.tsv), replayed byte for byte by deputy-mockllm over HTTP into the client.
//!
//! 200 bodies: no client error except the recorded in-stream errors (which become typed
//! errors); tool calls assembled with the JSON arguments the recording carries; text and
//! reasoning separated; usage read where present. Non-200 bodies: the right typed error.
//!
//! The expectations come from a deliberately naive reading of each recording (`replay/mod.rs`),
//! not from the client's code.
//!
//! Without the corpus (a clean clone) each test prints a SKIP line, or fails where outside
//! things are required (CI); `tests/wire_fixtures.rs` covers the same quirks with our own files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/outside.rs"]
mod outside;

mod replay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_200_response_replays_cleanly() {
    let Some(root) = outside::corpus() else {
        return;
    };
    let r = replay::replay_200(&root).await;
    eprintln!(
        "replayed {} responses: {} complete ({} with tool calls, {} with reasoning, {} with server usage), {} recorded in-stream errors",
        r.entries, r.ok, r.with_calls, r.with_reasoning, r.with_usage, r.in_stream
    );
    assert!(
        r.failures.is_empty(),
        "{} failures:\n{}",
        r.failures.len(),
        r.failures.join("\n")
    );
    assert!(r.entries >= 250, "corpus shrank: {}", r.entries);
    assert!(r.in_stream >= 2, "the groq and openrouter in-stream errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_body_maps_to_its_typed_error() {
    let Some(root) = outside::corpus() else {
        return;
    };
    let (n, failures) = replay::replay_errors(&root).await;
    eprintln!("mapped {n} recorded error bodies");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n >= 13);
}
