//! The client against deputy-mockllm over real HTTP: retries, Retry-After, timeouts, refused
//! parameters, the circuit breaker with fallback, and what is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use deputy_llm::{
    BreakerConfig, Breakers, ChatRequest, LlmError, Message, ModelClient, ModelEvent, OpenAiClient,
    ProviderSettings, Resolved, RetryPolicy, Target, ToolSpec, collect,
};
use deputy_mockllm::{Fault, MockServer, Script, ServeOptions, Step};
use futures::StreamExt;
use serde_json::json;

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        initial_delay_ms: 10,
        max_delay_ms: 50,
        max_retry_after_ms: 5_000,
    }
}

fn target(server: &MockServer, model: &str) -> Target {
    let mut p = ProviderSettings::new("mock", server.url());
    p.idle_timeout = Duration::from_millis(300);
    Target {
        provider: p,
        model: model.into(),
    }
}

fn client(t: Target) -> OpenAiClient {
    OpenAiClient::new(
        Resolved {
            primary: t,
            fallbacks: vec![],
            warnings: vec![],
        },
        fast_retry(),
        Breakers::new(BreakerConfig::default()),
    )
    .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![Message::system("sys"), Message::user("hi")],
        ..Default::default()
    }
}

fn step_with_faults(text: &str, faults: Vec<Fault>) -> Script {
    Script {
        steps: vec![Step {
            faults,
            ..Step::text(text)
        }],
        ..Script::default()
    }
}

async fn start(script: Script) -> MockServer {
    MockServer::start(script, ServeOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn retry_after_header_is_honoured_once() {
    let server = start(step_with_faults(
        "ok after wait",
        vec![Fault {
            status: Some(429),
            headers: [("retry-after".to_string(), "1".to_string())].into(),
            body: Some(json!({"error": {"message": "Rate limit reached", "type": "rate_limit"}})),
            ..Fault::default()
        }],
    ))
    .await;
    let c = client(target(&server, "m"));
    let start = Instant::now();
    let done = collect(c.stream(request())).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(done.text, "ok after wait");
    assert_eq!(done.retries, 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "exactly one retry");
    assert!(reqs[1].received_ms - reqs[0].received_ms >= 1000.0);
}

#[tokio::test]
async fn server_errors_twice_then_success() {
    let f = || Fault {
        status: Some(503),
        ..Fault::default()
    };
    let server = start(step_with_faults("third time", vec![f(), f()])).await;
    let done = collect(client(target(&server, "m")).stream(request()))
        .await
        .unwrap();
    assert_eq!(done.text, "third time");
    assert_eq!(done.retries, 2);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn dropped_stream_is_retried_and_partial_output_discarded() {
    let server = start(step_with_faults(
        "a fairly long answer that spans several chunks",
        vec![Fault {
            drop_after_chunks: Some(3),
            ..Fault::default()
        }],
    ))
    .await;
    let mut stream = client(target(&server, "m")).stream(request());
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e.unwrap());
    }
    let retry = events.iter().find_map(|e| match e {
        ModelEvent::Retry {
            discard_partial,
            reason,
            ..
        } => Some((*discard_partial, reason.clone())),
        _ => None,
    });
    let (discard, reason) = retry.expect("a retry");
    assert!(discard, "deltas were sent before the drop");
    assert!(reason.contains("ended before"), "{reason}");
    let again = collect(client(target(&server, "m")).stream(request()))
        .await
        .unwrap();
    assert_eq!(again.text, "a fairly long answer that spans several chunks");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn stall_past_idle_timeout_times_out_and_retries() {
    let server = start(step_with_faults(
        "after the stall",
        vec![Fault {
            stall_after_chunks: Some(1),
            stall_ms: Some(5_000),
            ..Fault::default()
        }],
    ))
    .await;
    let start = Instant::now();
    let done = collect(client(target(&server, "m")).stream(request()))
        .await
        .unwrap();
    assert_eq!(done.text, "after the stall");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_names_the_key_not_its_value() {
    let secret = "sk-test-0123456789abcdef";
    let server = start(step_with_faults(
        "never",
        vec![Fault {
            status: Some(401),
            body: Some(json!({"error": {"message": format!("Incorrect API key provided: {secret}."), "type": "invalid_request_error", "code": "invalid_api_key"}})),
            ..Fault::default()
        }],
    ))
    .await;
    let mut t = target(&server, "m");
    t.provider.api_key = Some(secret.into());
    t.provider.api_key_env = Some("MOCK_API_KEY".into());
    let err = collect(client(t).stream(request())).await.unwrap_err();
    assert!(matches!(err, LlmError::Auth { status: 401, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("MOCK_API_KEY is set"), "{msg}");
    assert!(!msg.contains(secret), "{msg}");
    assert_eq!(server.requests().len(), 1);
    assert!(server.requests()[0].authorized);
}

#[tokio::test]
async fn the_key_is_sent_as_a_bearer_token() {
    let secret = "sk-test-fedcba9876543210";
    let server = MockServer::start(
        Script::text("hi"),
        ServeOptions {
            api_key: Some(secret.into()),
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let mut t = target(&server, "m");
    t.provider.api_key = Some(secret.into());
    let c = collect(client(t.clone()).stream(request())).await.unwrap();
    assert_eq!(c.text, "hi");
    assert_eq!(server.requests()[0].key_matched, Some(true));
    // A wrong key is refused (401, not retried) and recorded as such.
    t.provider.api_key = Some("sk-wrong-0000000000".into());
    let err = collect(client(t).stream(request())).await.unwrap_err();
    assert!(matches!(err, LlmError::Auth { status: 401, .. }), "{err:?}");
    assert_eq!(server.requests()[1].key_matched, Some(false));
}

#[tokio::test]
async fn unsupported_temperature_is_dropped_and_remembered() {
    let server = start(Script {
        steps: vec![
            Step {
                faults: vec![Fault {
                    status: Some(400),
                    body: Some(json!({"error": {
                        "message": "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.",
                        "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}})),
                    ..Fault::default()
                }],
                ..Step::text("first")
            },
        ],
        ..Script::default()
    })
    .await;
    let c = client(target(&server, "m"));
    let mut req = request();
    req.temperature = Some(0.2);
    let done = collect(c.stream(req.clone())).await.unwrap();
    assert_eq!(done.text, "first");
    assert!(
        done.warnings[0].contains("temperature"),
        "{:?}",
        done.warnings
    );
    let done = collect(c.stream(req)).await.unwrap();
    assert_eq!(done.text, "first");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body["temperature"], 0.2);
    assert!(reqs[1].body.get("temperature").is_none());
    assert!(
        reqs[2].body.get("temperature").is_none(),
        "remembered for the session"
    );
}

#[tokio::test]
async fn breaker_opens_fallback_serves_then_primary_returns() {
    let f = || Fault {
        status: Some(503),
        ..Fault::default()
    };
    let primary = start(step_with_faults("from primary", vec![f(), f()])).await;
    let backup = start(Script::text("from backup")).await;
    let mut p = target(&primary, "big");
    p.provider.name = "primary".into();
    let mut b = target(&backup, "small");
    b.provider.name = "backup".into();
    let c = OpenAiClient::new(
        Resolved {
            primary: p,
            fallbacks: vec![b],
            warnings: vec![],
        },
        fast_retry(),
        Breakers::new(BreakerConfig {
            failure_threshold: 2,
            cooldown_ms: 400,
        }),
    )
    .unwrap();

    let first = collect(c.stream(request())).await.unwrap();
    assert_eq!(first.text, "from backup");
    assert_eq!(
        (first.provider.as_str(), first.model.as_str()),
        ("backup", "small")
    );
    assert!(
        first
            .warnings
            .iter()
            .any(|w| w.contains("fallback backup/small")),
        "{:?}",
        first.warnings
    );
    assert_eq!(backup.requests()[0].body["model"], "small");

    let second = collect(c.stream(request())).await.unwrap();
    assert_eq!(second.text, "from backup");
    assert_eq!(primary.requests().len(), 2, "primary skipped while open");

    tokio::time::sleep(Duration::from_millis(450)).await;
    let third = collect(c.stream(request())).await.unwrap();
    assert_eq!(third.text, "from primary", "probe after the cool-down");
    assert_eq!(primary.requests().len(), 3);
    assert_eq!(backup.requests().len(), 2);
}

#[tokio::test]
async fn malformed_chunk_is_retried() {
    let server = start(step_with_faults(
        "clean",
        vec![Fault {
            malformed_after_chunks: Some(1),
            ..Fault::default()
        }],
    ))
    .await;
    let done = collect(client(target(&server, "m")).stream(request()))
        .await
        .unwrap();
    assert_eq!(done.text, "clean");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn connection_refused_says_what_to_check() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let t = Target {
        provider: ProviderSettings::new("local", format!("http://127.0.0.1:{port}/v1")),
        model: "m".into(),
    };
    let c = OpenAiClient::new(
        Resolved {
            primary: t,
            fallbacks: vec![],
            warnings: vec![],
        },
        RetryPolicy {
            max_retries: 1,
            initial_delay_ms: 1,
            max_delay_ms: 1,
            max_retry_after_ms: 1,
        },
        Breakers::default(),
    )
    .unwrap();
    let err = collect(c.stream(request())).await.unwrap_err();
    assert!(matches!(err, LlmError::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("Is the server running"), "{err}");
}

#[tokio::test]
async fn sends_tools_and_sampling_and_reads_tool_calls() {
    let server = start(Script {
        steps: vec![
            Step::tool("bash", json!({"command": "ls -la"})),
            Step::text("done"),
        ],
        ..Script::default()
    })
    .await;
    let c = client(target(&server, "model-x"));
    let mut req = request();
    req.temperature = Some(0.2);
    req.top_p = Some(0.9);
    req.tools = vec![ToolSpec {
        name: "bash".into(),
        description: "Run a command".into(),
        parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}}),
    }];
    let done = collect(c.stream(req)).await.unwrap();
    assert_eq!(done.tool_calls.len(), 1);
    assert_eq!(done.tool_calls[0].name, "bash");
    assert_eq!(done.tool_calls[0].arguments, json!({"command": "ls -la"}));
    assert_eq!(done.finish, Some(deputy_llm::FinishReason::ToolCalls));
    let usage = done.usage.unwrap();
    assert!(!usage.estimated && usage.input_tokens > 0);
    let body = &server.requests()[0].body;
    assert_eq!(body["model"], "model-x");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["stream"], true);
    assert_eq!(body["tools"][0]["function"]["name"], "bash");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "sys"})
    );
}

#[tokio::test]
async fn non_streaming_provider() {
    let server = start(Script {
        steps: vec![Step {
            reasoning: Some("hmm".into()),
            ..Step::tool("read", json!({"path": "a.txt"}))
        }],
        ..Script::default()
    })
    .await;
    let mut t = target(&server, "m");
    t.provider.stream = false;
    let done = collect(client(t).stream(request())).await.unwrap();
    assert_eq!(done.tool_calls[0].arguments["path"], "a.txt");
    assert_eq!(done.reasoning, "hmm");
    assert_eq!(server.requests()[0].body["stream"], false);
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_request() {
    let server = start(Script {
        steps: vec![Step {
            chunk_delay_ms: Some(200),
            chunk_chars: Some(1),
            ..Step::text("slow answer")
        }],
        ..Script::default()
    })
    .await;
    let c = client(target(&server, "m"));
    let mut s = c.stream(request());
    let first = s.next().await.unwrap().unwrap();
    assert!(matches!(first, ModelEvent::TextDelta { .. }));
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests().len(), 1);
    assert!(
        server.requests()[0].done_ms.is_none(),
        "the body was not read to the end"
    );
}
