//! The wire quirks the shared corpus exercises, on response bodies of our own making
//! (`tests/fixtures/wire/`, listed in its MANIFEST.tsv), so a clone without `../shared/corpus`
//! still tests every one: SSE comment and `event:` lines, a missing `[DONE]`, chunks with
//! `choices: []` (first, with filter results, or last, with usage), usage in every chunk,
//! parallel calls with split arguments, a missing index or `type`, empty and repeated ids,
//! indexes from 1, `reasoning_content` / `reasoning` / `<think>`, in-stream errors (with and
//! without an `event: error` line), non-streaming JSON, and the error bodies of 400, 404 and 429
//! (rate limit and quota), and the context-overflow 400s of OpenAI, Anthropic, vLLM, llama.cpp,
//! Ollama, OpenRouter, Mistral, Gemini and xAI (and Groq's per-minute 413, which is not one).
//!
//! Each body goes through the same replay as the corpus (`replay/mod.rs`), and the ones that
//! matter most are also checked against values written out by hand here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod replay;

use std::path::PathBuf;

use deputy_llm::{Completion, FinishReason, LlmError, ModelClient, collect};
use deputy_mockllm::{MockServer, Replay, Script, ServeOptions, Step};
use serde_json::json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_replays_like_its_naive_reading() {
    let r = replay::replay_200(&root()).await;
    assert!(r.failures.is_empty(), "{}", r.failures.join("\n"));
    assert_eq!(r.entries, 15);
    assert_eq!(r.in_stream, 2, "event-error.sse and data-error.sse");
    assert_eq!(r.with_calls, 5);
    assert_eq!(
        r.with_reasoning, 4,
        "reasoning, reasoning_content x2, <think>"
    );
    assert!(r.with_usage >= 6, "{r:?}");

    let (n, failures) = replay::replay_errors(&root()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(n, 16);
}

/// One fixture, replayed (with the status its name or `status` gives).
async fn replay_one(rel: &str, status: Option<u16>) -> Result<Completion, LlmError> {
    let server = MockServer::start(
        Script {
            steps: vec![Step {
                replay: Some(Replay::Full {
                    path: root().join("wire").join(rel),
                    status,
                }),
                ..Step::default()
            }],
            ..Script::default()
        },
        ServeOptions::default(),
    )
    .await
    .unwrap();
    let c = replay::client(&server.url());
    collect(c.stream(replay::request("one"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_calls_with_split_arguments() {
    let done = replay_one("openai-like/parallel-split-args.sse", None)
        .await
        .unwrap();
    let calls: Vec<_> = done
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("call_a", "read", json!({"path": "src/main.rs"})),
            (
                "call_b",
                "bash",
                json!({"command": "cargo test", "timeout": 60})
            ),
        ]
    );
    assert_eq!(done.finish, Some(FinishReason::ToolCalls));
    let u = done.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.estimated),
        (100, 40, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_tool_call_shapes_still_make_whole_calls_with_distinct_ids() {
    for (rel, name, args) in [
        (
            "gateway-like/index-from-one.sse",
            "glob",
            json!({"pattern": "**/*.md"}),
        ),
        (
            "gateway-like/no-index-no-type.sse",
            "grep",
            json!({"pattern": "TODO"}),
        ),
        (
            "gateway-like/empty-ids-repeated-name.sse",
            "list",
            json!({"path": "."}),
        ),
    ] {
        let done = replay_one(rel, None).await.unwrap();
        assert_eq!(done.tool_calls.len(), 1, "{rel}: {:?}", done.tool_calls);
        let call = &done.tool_calls[0];
        assert_eq!(
            (call.name.as_str(), &call.arguments),
            (name, &args),
            "{rel}"
        );
        assert!(!call.id.is_empty(), "{rel}: an empty id is given one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_stays_out_of_the_answer() {
    let done = replay_one("local-like/think-inline.sse", None)
        .await
        .unwrap();
    assert_eq!(done.text, "Hi there!");
    assert_eq!(done.reasoning, "The user wants a greeting.");

    let done = replay_one("qwen-like/reasoning-content.chunks.txt", None)
        .await
        .unwrap();
    assert_eq!(done.text, "B.");
    assert_eq!(done.reasoning, "Compare the two. B is larger.");

    let done = replay_one("router-like/comments-reasoning.sse", None)
        .await
        .unwrap();
    assert_eq!(done.text, "Forty-two.");
    assert!(
        done.reasoning.contains("Think about it."),
        "{}",
        done.reasoning
    );

    let done = replay_one("qwen-like/reasoning.json", None).await.unwrap();
    assert_eq!(done.text, "Partly done");
    assert_eq!(done.reasoning, "Long thought.");
    assert_eq!(done.finish, Some(FinishReason::Length));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_without_done_or_with_usage_everywhere() {
    let done = replay_one("local-like/no-done.sse", None).await.unwrap();
    assert_eq!(done.text, "Short answer.");
    let done = replay_one("local-like/usage-every-chunk.sse", None)
        .await
        .unwrap();
    assert_eq!(done.text, "One two three.");
    let u = done.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.output_tokens),
        (8, 3),
        "the last report counts, not the sum"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_stream_errors_carry_the_servers_message() {
    for (rel, msg) in [
        (
            "router-like/event-error.sse",
            "The upstream provider went away",
        ),
        ("router-like/data-error.sse", "Rate limit reached upstream"),
    ] {
        let err = replay_one(rel, None).await.unwrap_err();
        assert!(matches!(err, LlmError::InStream { .. }), "{rel}: {err:?}");
        assert!(err.to_string().contains(msg), "{rel}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_become_typed_errors() {
    let err = replay_one("errors/model-not-found.404.json", None)
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::ModelNotFound { .. }), "{err:?}");
    let err = replay_one("errors/quota.429.json", None).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::BadRequest { status: 429, code: Some(c), .. } if c == "insufficient_quota"),
        "a quota is not retried as a rate limit: {err:?}"
    );
    let err = replay_one("errors/rate-limited.429.json", None)
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::RateLimited { .. }), "{err:?}");
    let err = replay_one("errors/unsupported-parameter.400.json", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("'temperature' is not supported"),
        "{err}"
    );
}

/// Every server's way of saying the request is longer than the window becomes one error the
/// session can act on (compact and retry), with the window when the server names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_overflows_in_every_wording() {
    for (rel, limit) in [
        ("errors/context-openai.400.json", Some(128_000)),
        ("errors/context-anthropic.400.json", Some(200_000)),
        ("errors/context-vllm.400.json", Some(32_768)),
        ("errors/context-llamacpp.400.json", Some(32_768)),
        ("errors/context-ollama.400.json", None),
        ("errors/context-openrouter.400.json", Some(200_000)),
        ("errors/context-mistral.400.json", Some(32_768)),
        ("errors/context-gemini.400.json", Some(1_048_576)),
        ("errors/context-xai.400.json", Some(131_072)),
    ] {
        let err = replay_one(rel, None).await.unwrap_err();
        match &err {
            LlmError::ContextOverflow { limit: l, .. } => assert_eq!(*l, limit, "{rel}"),
            other => panic!("{rel}: {other:?}"),
        }
        assert!(
            !err.is_retryable(),
            "{rel}: the session retries, after compacting"
        );
    }
    let err = replay_one("errors/tpm-groq.413.json", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::BadRequest { status: 413, .. }),
        "a per-minute limit is not an overflow: {err:?}"
    );
}
