//! Anthropic Messages and OpenAI Responses bodies of our own making
//! (`tests/fixtures/anthropic/`, `tests/fixtures/responses/`), written after the providers'
//! documented streams, replayed byte for byte by the mock and read by the client as each
//! protocol: thinking with its signature, redacted thinking, tool input in pieces, cache usage,
//! an `overloaded_error` in the middle, a proxy that drops `event:` lines and ends lines in
//! CRLF, an unknown event and delta, a stream that ends without `message_stop`, reasoning
//! items with encrypted content, `response.failed` and a lone `error` event, an `incomplete`
//! answer, whole (non-streamed) answers, and the error bodies of 529 and the two overflows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use deputy_llm::{
    Api, Breakers, Completion, FinishReason, LlmError, Message, ModelClient, OpenAiClient,
    ProviderSettings, Resolved, RetryPolicy, Target, collect,
};
use deputy_mockllm::{MockServer, Replay, Script, ServeOptions, Step};
use serde_json::json;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Replay one fixture to a client speaking `api` (no retries: each failure is seen as is).
async fn replay(api: Api, rel: &str) -> Result<Completion, LlmError> {
    let server = MockServer::start(
        Script {
            steps: vec![Step {
                replay: Some(Replay::Path(fixture(rel))),
                ..Step::default()
            }],
            ..Script::default()
        },
        ServeOptions::default(),
    )
    .await
    .unwrap();
    let mut provider = ProviderSettings::new("fixture", server.url());
    provider.api = api;
    provider.stream = !rel.ends_with(".json") || rel.contains(".4") || rel.contains(".5");
    let client = OpenAiClient::new(
        Resolved {
            primary: Target {
                provider,
                model: "fixture-model".into(),
            },
            fallbacks: vec![],
            warnings: vec![],
        },
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        Breakers::default(),
    )
    .unwrap();
    let request = deputy_llm::ChatRequest {
        messages: vec![Message::system("s"), Message::user("replay")],
        ..Default::default()
    };
    collect(client.stream(request)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_thinking_text_and_a_call_in_pieces() {
    let c = replay(Api::Anthropic, "anthropic/thinking-tool-use.sse")
        .await
        .unwrap();
    assert_eq!(c.text, "Let me read the test.");
    assert_eq!(
        c.reasoning,
        "The user wants the test fixed. I should read it first."
    );
    assert_eq!(c.finish, Some(FinishReason::ToolCalls));
    assert_eq!(c.tool_calls.len(), 1);
    assert_eq!(c.tool_calls[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(
        c.tool_calls[0].arguments,
        json!({"path": "tests/test_app.py"})
    );
    let carried = c.carried.unwrap();
    assert_eq!(carried.api, Api::Anthropic);
    assert_eq!(
        carried.items,
        vec![
            json!({"type": "thinking", "thinking": "The user wants the test fixed. I should read it first.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"})
        ]
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cached_input_tokens,
            u.cache_write_input_tokens,
            u.output_tokens
        ),
        (472 + 2048 + 10240, 10240, 2048, 89)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_overloaded_mid_stream_is_a_retryable_error() {
    let e = replay(Api::Anthropic, "anthropic/overloaded-mid-stream.sse")
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("Overloaded"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_leniencies() {
    // A proxy that drops the `event:` lines, adds comments and ends lines in CRLF.
    let c = replay(Api::Anthropic, "anthropic/data-only-crlf.sse")
        .await
        .unwrap();
    assert_eq!(c.text, "Hello.");
    assert_eq!(c.finish, Some(FinishReason::Stop));
    // Redacted thinking kept; an unknown event and delta ignored; no message_stop.
    let c = replay(Api::Anthropic, "anthropic/redacted-unknown-no-stop.sse")
        .await
        .unwrap();
    assert_eq!(c.text, "Done, see the file.");
    assert_eq!(c.carried.unwrap().items[0]["type"], "redacted_thinking");
    assert_eq!(c.usage.unwrap().output_tokens, 12);
    // Not streamed.
    let c = replay(Api::Anthropic, "anthropic/whole.json")
        .await
        .unwrap();
    assert_eq!(c.text, "Running it.");
    assert_eq!(c.tool_calls[0].arguments["command"], "pytest -q");
    assert_eq!(c.carried.unwrap().items[0]["signature"], "EqMB");
    assert_eq!(c.usage.unwrap().cached_input_tokens, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_error_bodies() {
    let e = replay(Api::Anthropic, "anthropic/overloaded.529.json")
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Server { status: 529, .. }), "{e:?}");
    let e = replay(Api::Anthropic, "anthropic/prompt-too-long.400.json")
        .await
        .unwrap_err();
    match e {
        LlmError::ContextOverflow {
            limit, requested, ..
        } => assert_eq!((limit, requested), (Some(200_000), Some(208_310))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_reasoning_item_and_a_call() {
    let c = replay(Api::Responses, "responses/reasoning-function-call.sse")
        .await
        .unwrap();
    assert_eq!(c.text, "");
    assert_eq!(c.reasoning, "**Checking the test**\n\nI will read it.");
    assert_eq!(c.finish, Some(FinishReason::ToolCalls));
    assert_eq!(c.tool_calls[0].id, "call_KvVpYz0sPq");
    assert_eq!(c.tool_calls[0].arguments["path"], "tests/test_app.py");
    let carried = c.carried.unwrap();
    assert_eq!(carried.items[0]["encrypted_content"], "gAAAAABor1p0VLk7Q0x");
    let u = c.usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cached_input_tokens,
            u.output_tokens,
            u.reasoning_tokens
        ),
        (3012, 2816, 154, 128)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_failures_and_leniencies() {
    let e = replay(Api::Responses, "responses/failed-mid-stream.sse")
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let e = replay(Api::Responses, "responses/error-event.sse")
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("Rate limit"), "{e}");
    // No `event:` lines, a comment, `[DONE]` after an incomplete answer.
    let c = replay(Api::Responses, "responses/data-only-incomplete.sse")
        .await
        .unwrap();
    assert_eq!(c.text, "A long answer that ran out");
    assert_eq!(c.finish, Some(FinishReason::Length));
    assert!(c.warnings.iter().any(|w| w.contains("output token limit")));
    let c = replay(Api::Responses, "responses/whole.json")
        .await
        .unwrap();
    assert_eq!(c.text, "All tests pass.");
    assert_eq!(c.reasoning, "Simple.");
    assert!(c.carried.is_some());
    let e = replay(Api::Responses, "responses/context-length.400.json")
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::ContextOverflow { .. }), "{e:?}");
}
