use super::*;
use crate::config::ProviderSettings;
use crate::types::{Reasoning, ToolSpec};

fn provider() -> ProviderSettings {
    let mut p = ProviderSettings::new("anthropic", "http://127.0.0.1:1/v1");
    p.api = Api::Anthropic;
    p.cache_control = true;
    p
}

fn body(req: &ChatRequest, p: &ProviderSettings, model: &str) -> Value {
    request_body(
        req,
        &Settings {
            provider: p,
            model,
            stripped: &[],
            max_output: Some(64_000),
        },
    )
}

fn thinking() -> Carried {
    Carried {
        api: Api::Anthropic,
        model: "claude-x".into(),
        items: vec![json!({"type": "thinking", "thinking": "hmm", "signature": "sig1"})],
    }
}

fn conversation() -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::system("be brief"),
            Message::user("fix it"),
            Message::Assistant {
                content: Some("Looking.".into()),
                tool_calls: vec![
                    ToolCall::from_raw("toolu_1", "read", r#"{"path":"a"}"#),
                    ToolCall::from_raw("toolu_2", "bash", "{not json"),
                ],
                reasoning: Some("hmm".into()),
                carried: Some(thinking()),
            },
            Message::tool("toolu_1", "contents"),
            Message::tool("toolu_2", ""),
            Message::user("also this"),
        ],
        tools: vec![ToolSpec {
            name: "read".into(),
            description: "read a file".into(),
            parameters: json!({"type": "object"}),
        }],
        temperature: Some(0.3),
        ..Default::default()
    }
}

#[test]
fn messages_blocks_and_results_first() {
    let b = body(&conversation(), &provider(), "claude-x");
    assert_eq!(b["system"][0]["text"], "be brief");
    assert_eq!(b["max_tokens"], 64_000);
    assert_eq!(b["temperature"], 0.3);
    let m = b["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{m:#?}");
    let a = m[1]["content"].as_array().unwrap();
    assert_eq!(a[0]["type"], "thinking", "thinking first, unchanged");
    assert_eq!(a[0]["signature"], "sig1");
    assert_eq!(a[1]["text"], "Looking.");
    assert_eq!(a[2]["input"]["path"], "a");
    assert_eq!(
        a[3]["input"],
        json!({}),
        "unparsable arguments still an object"
    );
    let u = m[2]["content"].as_array().unwrap();
    assert_eq!(u[0]["tool_use_id"], "toolu_1");
    assert_eq!(u[1]["tool_use_id"], "toolu_2");
    assert_eq!(u[1]["content"], "(no output)");
    assert_eq!(u[2]["text"], "also this");
}

#[test]
fn thinking_goes_back_only_to_the_model_that_wrote_it() {
    let b = body(&conversation(), &provider(), "claude-other");
    let a = b["messages"][1]["content"].as_array().unwrap();
    assert!(a.iter().all(|x| x["type"] != "thinking"), "{a:#?}");
}

#[test]
fn at_most_four_breakpoints_never_on_thinking() {
    let mut req = conversation();
    req.messages.push(Message::assistant("ok"));
    req.messages.push(Message::user("one more"));
    let b = body(&req, &provider(), "claude-x");
    let marks = b.to_string().matches("cache_control").count();
    assert_eq!(marks, 4, "{b:#}");
    assert!(b["tools"][0].get("cache_control").is_some());
    assert!(b["system"][0].get("cache_control").is_some());
    let last = b["messages"].as_array().unwrap().last().cloned().unwrap();
    assert!(last["content"][0].get("cache_control").is_some());
    let mut off = provider();
    off.cache_control = false;
    assert!(
        !body(&req, &off, "claude-x")
            .to_string()
            .contains("cache_control")
    );
}

#[test]
fn thinking_budget_sets_thinking_and_drops_sampling() {
    let mut req = conversation();
    req.reasoning = Some(Reasoning {
        effort: None,
        budget_tokens: Some(10_000),
    });
    let mut p = provider();
    p.max_tokens = Some(2000);
    let b = body(&req, &p, "claude-x");
    assert_eq!(b["thinking"]["budget_tokens"], 10_000);
    assert_eq!(b["max_tokens"], 14_096);
    assert!(b.get("temperature").is_none());
    req.reasoning = Some(Reasoning {
        effort: Some("high".into()),
        budget_tokens: Some(0),
    });
    assert!(
        body(&req, &p, "claude-x").get("thinking").is_none(),
        "0 is off"
    );
}

#[test]
fn a_compacted_history_opens_with_the_user() {
    let req = ChatRequest {
        messages: vec![
            Message::system("s"),
            Message::assistant("summary"),
            Message::user("go"),
        ],
        ..Default::default()
    };
    let b = body(&req, &provider(), "m");
    assert_eq!(b["messages"][0]["role"], "user");
    assert_eq!(b["messages"][1]["role"], "assistant");
}

fn events(lines: &[(&str, Value)]) -> (Vec<ModelEvent>, Option<Usage>, FinishReason) {
    let mut d = AnthropicDecoder::new("claude-x");
    let mut out = Vec::new();
    for (name, data) in lines {
        let done = d
            .event(
                SseEvent {
                    event: name.to_string(),
                    data: data.to_string(),
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(done, *name == "message_stop");
    }
    assert!(d.is_complete());
    let (u, r) = d.finish(&mut out);
    (out, u, r)
}

#[test]
fn a_stream_with_thinking_text_and_a_call() {
    let (out, usage, reason) = events(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 10, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "see."}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Reading."}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "read", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{\"pa"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "th\": \"x\"}"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 3}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 42}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]);
    let usage = usage.unwrap();
    assert_eq!(usage.input_tokens, 1110);
    assert_eq!(usage.cached_input_tokens, 1000);
    assert_eq!(usage.cache_write_input_tokens, 100);
    assert_eq!(usage.output_tokens, 42);
    assert_eq!(reason, FinishReason::ToolCalls);
    let reasoning: String = out
        .iter()
        .filter_map(|e| match e {
            ModelEvent::ReasoningDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasoning, "Let me see.");
    let call = out
        .iter()
        .find_map(|e| match e {
            ModelEvent::ToolCall { call } => Some(call.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (call.id.as_str(), call.arguments["path"].as_str()),
        ("toolu_9", Some("x"))
    );
    let carried = out
        .iter()
        .find_map(|e| match e {
            ModelEvent::Carried { carried } => Some(carried.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        carried.items,
        vec![
            json!({"type": "thinking", "thinking": "Let me see.", "signature": "EqQB"}),
            json!({"type": "redacted_thinking", "data": "opaque"}),
        ]
    );
    assert!(carried.goes_to(Api::Anthropic, "claude-x"));
}

#[test]
fn an_error_mid_stream_is_the_servers() {
    let mut d = AnthropicDecoder::new("m");
    let mut out = Vec::new();
    let err = d
        .event(
            SseEvent {
                event: "error".into(),
                data:
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                        .into(),
            },
            &mut out,
        )
        .unwrap_err();
    let DecodeError::Server(info) = err else {
        panic!("{err:?}")
    };
    assert_eq!(info.kind.as_deref(), Some("overloaded_error"));
}

#[test]
fn stop_reasons() {
    for (sent, want) in [
        ("end_turn", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
        ("pause_turn", FinishReason::Other("pause_turn".into())),
    ] {
        let mut d = AnthropicDecoder::new("m");
        d.whole(
            json!({"type": "message", "content": [{"type": "text", "text": "hi"}], "stop_reason": sent, "usage": {"input_tokens": 3, "output_tokens": 1}})
                .to_string()
                .as_bytes(),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(d.finish(&mut Vec::new()).1, want);
    }
}

#[test]
fn whole_answer_with_a_call() {
    let mut d = AnthropicDecoder::new("m");
    let mut out = Vec::new();
    d.whole(
        br#"{"content":[{"type":"tool_use","id":"t1","name":"bash","input":{"command":"ls"}}],"stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":2}}"#,
        &mut out,
    )
    .unwrap();
    let (_, r) = d.finish(&mut out);
    assert_eq!(r, FinishReason::ToolCalls);
    assert!(
        out.iter().any(
            |e| matches!(e, ModelEvent::ToolCall { call } if call.arguments["command"] == "ls")
        )
    );
}
