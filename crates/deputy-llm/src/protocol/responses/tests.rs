use super::*;
use crate::config::ProviderSettings;
use crate::types::Reasoning;

fn provider() -> ProviderSettings {
    let mut p = ProviderSettings::new("openai", "http://127.0.0.1:1/v1");
    p.api = Api::Responses;
    p
}

fn body(req: &ChatRequest, model: &str) -> Value {
    request_body(
        req,
        &Settings {
            provider: &provider(),
            model,
            stripped: &[],
            max_output: None,
        },
    )
}

fn reasoning_item() -> Value {
    json!({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}], "encrypted_content": "gAAA"})
}

fn conversation() -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::system("be brief"),
            Message::user("fix it"),
            Message::Assistant {
                content: None,
                tool_calls: vec![ToolCall::from_raw("call_1", "read", r#"{"path":"a"}"#)],
                reasoning: Some("plan".into()),
                carried: Some(Carried {
                    api: Api::Responses,
                    model: "gpt-x".into(),
                    items: vec![reasoning_item()],
                }),
            },
            Message::tool("call_1", "contents"),
        ],
        reasoning: Some(Reasoning {
            effort: Some("low".into()),
            budget_tokens: None,
        }),
        ..Default::default()
    }
}

#[test]
fn items_in_order_reasoning_without_its_id() {
    let b = body(&conversation(), "gpt-x");
    assert_eq!(b["instructions"], "be brief");
    assert_eq!(b["store"], false);
    assert_eq!(b["include"][0], "reasoning.encrypted_content");
    assert_eq!(b["reasoning"], json!({"effort": "low", "summary": "auto"}));
    let input = b["input"].as_array().unwrap();
    let kinds: Vec<&str> = input.iter().map(|i| str_of(i, "type")).collect();
    assert_eq!(
        kinds,
        [
            "message",
            "reasoning",
            "function_call",
            "function_call_output"
        ]
    );
    assert!(input[1].get("id").is_none(), "store: false has no ids");
    assert_eq!(input[1]["encrypted_content"], "gAAA");
    assert_eq!(input[2]["call_id"], "call_1");
    assert_eq!(input[2]["arguments"], r#"{"path":"a"}"#);
    assert_eq!(input[3]["output"], "contents");
    // Another model gets no reasoning item.
    let other = body(&conversation(), "gpt-y");
    assert!(!other.to_string().contains("gAAA"));
    // Nor does this protocol get another protocol's thinking (a switch by /model).
    let mut req = conversation();
    if let Message::Assistant { carried, .. } = &mut req.messages[2] {
        *carried = Some(Carried {
            api: Api::Anthropic,
            model: "gpt-x".into(),
            items: vec![json!({"type": "thinking", "thinking": "t", "signature": "s"})],
        });
    }
    let b = body(&req, "gpt-x");
    assert!(!b.to_string().contains("signature"), "{b:#}");
    assert_eq!(b["input"].as_array().unwrap().len(), 3);
}

#[test]
fn output_schema_is_strict_only_when_openai_would_take_it() {
    let mut req = conversation();
    let closed = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false});
    req.output_schema = Some(closed);
    let b = body(&req, "gpt-x");
    assert_eq!(b["text"]["format"]["type"], "json_schema");
    assert_eq!(b["text"]["format"]["strict"], true);
    req.output_schema = Some(json!({"type": "object", "properties": {"a": {"type": "string"}}}));
    assert_eq!(body(&req, "gpt-x")["text"]["format"]["strict"], false);
}

fn run(lines: &[Value]) -> (Vec<ModelEvent>, Option<Usage>, FinishReason) {
    let mut d = ResponsesDecoder::new("gpt-x");
    let mut out = Vec::new();
    let mut done = false;
    for l in lines {
        done = d
            .event(
                SseEvent {
                    event: str_of(l, "type").to_string(),
                    data: l.to_string(),
                },
                &mut out,
            )
            .unwrap();
    }
    assert!(done && d.is_complete());
    let (u, r) = d.finish(&mut out);
    (out, u, r)
}

#[test]
fn a_stream_with_reasoning_and_a_call() {
    let (out, usage, reason) = run(&[
        json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
        json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "Need "}),
        json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "a look."}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": reasoning_item()}),
        json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_7", "name": "read", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"path\":"}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "\"b\"}"}),
        json!({"type": "response.function_call_arguments.done", "output_index": 1, "arguments": "{\"path\":\"b\"}"}),
        json!({"type": "response.output_item.done", "output_index": 1, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_7", "name": "read", "arguments": "{\"path\":\"b\"}"}}),
        json!({"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 900, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30}}}}),
    ]);
    assert_eq!(reason, FinishReason::ToolCalls);
    let u = usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cached_input_tokens,
            u.output_tokens,
            u.reasoning_tokens
        ),
        (900, 800, 50, 30)
    );
    assert!(
        out.iter()
            .any(|e| matches!(e, ModelEvent::ReasoningDelta { text } if text == "a look."))
    );
    assert!(out.iter().any(
        |e| matches!(e, ModelEvent::ToolCall { call } if call.id == "call_7" && call.arguments["path"] == "b")
    ));
    assert!(out.iter().any(
        |e| matches!(e, ModelEvent::Carried { carried } if carried.items == vec![reasoning_item()])
    ));
}

#[test]
fn incomplete_and_failed() {
    let (out, _, reason) = run(&[
        json!({"type": "response.output_text.delta", "output_index": 0, "delta": "Par"}),
        json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}}),
    ]);
    assert_eq!(reason, FinishReason::Length);
    assert!(matches!(&out[0], ModelEvent::TextDelta { text } if text == "Par"));
    let mut d = ResponsesDecoder::new("m");
    let err = d
        .event(
            SseEvent {
                event: "response.failed".into(),
                data: json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}}}).to_string(),
            },
            &mut Vec::new(),
        )
        .unwrap_err();
    let DecodeError::Server(info) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (info.code.as_deref(), info.message.as_str()),
        (Some("server_error"), "boom")
    );
}

#[test]
fn a_whole_response() {
    let mut d = ResponsesDecoder::new("m");
    let mut out = Vec::new();
    d.whole(
        json!({"status": "completed", "output": [reasoning_item(), {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}], "usage": {"input_tokens": 5, "output_tokens": 2}})
            .to_string()
            .as_bytes(),
        &mut out,
    )
    .unwrap();
    let (_, r) = d.finish(&mut out);
    assert_eq!(r, FinishReason::Stop);
    assert!(
        out.iter()
            .any(|e| matches!(e, ModelEvent::TextDelta { text } if text == "Done."))
    );
    assert!(out.iter().any(|e| matches!(e, ModelEvent::Carried { .. })));
}
