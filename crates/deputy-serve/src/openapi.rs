//! `/openapi.json`: the API as OpenAPI 3.1, its schemas generated from the request and response
//! types (schemars' JSON Schema 2020-12 is OpenAPI 3.1's dialect), so the document cannot
//! drift from what the handlers parse and return.

use axum::Json;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::api::{AgentView, AnswerIn, CreateSession, Created, Health, MessageIn, SessionView};
use crate::problem::Problem;
use crate::store::PendingApproval;

/// Collects component schemas, each once.
struct Components(Map<String, Value>);

impl Components {
    /// A `$ref` to `T`'s schema, added to the components (its own definitions lifted too).
    fn of<T: JsonSchema>(&mut self) -> Value {
        let name = T::schema_name().to_string();
        let mut schema = serde_json::to_value(
            schemars::generate::SchemaSettings::draft2020_12()
                .with(|s| s.definitions_path = "#/components/schemas/".into())
                .into_generator()
                .into_root_schema_for::<T>(),
        )
        .unwrap_or_default();
        if let Some(obj) = schema.as_object_mut() {
            // schemars puts the definitions where `definitions_path` points, in the root.
            let defs = obj
                .remove("components")
                .and_then(|mut c| c.get_mut("schemas").map(Value::take))
                .or_else(|| obj.remove("$defs"));
            if let Some(Value::Object(defs)) = defs {
                for (k, v) in defs {
                    self.0.entry(k).or_insert(v);
                }
            }
            obj.remove("$schema");
        }
        self.0.insert(name.clone(), schema);
        json!({"$ref": format!("#/components/schemas/{name}")})
    }
}

fn problem(r: &Value, status: &str, why: &str) -> (String, Value) {
    let mut answer =
        json!({"description": why, "content": {"application/problem+json": {"schema": r}}});
    // Answers a client should come back from later say when.
    if matches!(status, "429" | "503") {
        answer["headers"] = json!({"Retry-After": {
            "description": "seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 0}
        }});
    }
    (status.to_string(), answer)
}

/// The 202 of a call that starts a run, with links to what can be done with its id (so a
/// client, or schemathesis' stateful tests, can follow them).
fn accepted(schema: Value) -> (String, Value) {
    let link = |op: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/id"}});
    (
        "202".into(),
        json!({
            "description": "accepted: queued or running",
            "content": {"application/json": {"schema": schema}},
            "headers": {"Location": {
                "description": "the session (`GET` it for its state)",
                "schema": {"type": "string"}
            }},
            "links": {
                "GetSession": link("getSession"),
                "SessionEvents": link("sessionEvents"),
                "CancelSession": link("cancelSession"),
                "ListApprovals": link("listApprovals"),
                "ContinueSession": link("continueSession"),
                "DeleteSession": link("deleteSession"),
            }
        }),
    )
}

/// The 200 of the session list, with links from its first session to what can be done with it.
fn listed(schema: Value) -> (String, Value) {
    let link = |op: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/sessions/0/id"}});
    (
        "200".into(),
        json!({
            "description": "a page of sessions; next_cursor fetches the next",
            "content": {"application/json": {"schema": schema}},
            "links": {
                "GetSession": link("getSession"),
                "SessionEvents": link("sessionEvents"),
                "DeleteSession": link("deleteSession"),
            }
        }),
    )
}

fn ok(status: &str, why: &str, schema: Value) -> (String, Value) {
    (
        status.to_string(),
        json!({"description": why, "content": {"application/json": {"schema": schema}}}),
    )
}

/// What any endpoint taking a JSON body may answer about the body itself.
fn body_problems(p: &Value) -> [(String, Value); 4] {
    [
        problem(p, "400", "the body is not valid JSON for this schema"),
        problem(p, "413", "the body is over the size limit"),
        problem(p, "415", "the body is not application/json"),
        problem(
            p,
            "422",
            "the JSON does not match the schema, or a value is not usable",
        ),
    ]
}

fn responses(list: Vec<(String, Value)>) -> Value {
    Value::Object(list.into_iter().collect())
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// Make the document one that client generators take: a property or item schema that is
/// `true` (any JSON) becomes `{}`, and a `oneOf` of string constants (how schemars writes an
/// enum whose variants carry doc comments) becomes one plain string `enum`, the variants'
/// descriptions kept in its own.
fn for_generators(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::Object(props)) = obj.get_mut("properties") {
                for (_, p) in props.iter_mut() {
                    if p.is_boolean() {
                        *p = json!({"description": "any JSON value"});
                    }
                }
            }
            if obj.get("items").is_some_and(Value::is_boolean) {
                obj.insert("items".into(), json!({}));
            }
            let consts = obj.get("oneOf").and_then(Value::as_array).and_then(|all| {
                all.iter()
                    .map(|m| {
                        let name = m
                            .get("const")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .or_else(|| match m.get("enum").and_then(Value::as_array) {
                                Some(e) if e.len() == 1 => e[0].as_str().map(str::to_string),
                                _ => None,
                            })?;
                        let said = m.get("description").and_then(Value::as_str);
                        Some((name, said.map(str::to_string)))
                    })
                    .collect::<Option<Vec<_>>>()
            });
            if let Some(consts) = consts {
                obj.remove("oneOf");
                let mut text = obj
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                for (name, said) in &consts {
                    if let Some(said) = said {
                        text.push_str(&format!(" `{name}`: {said}"));
                    }
                }
                obj.insert("type".into(), json!("string"));
                obj.insert(
                    "enum".into(),
                    Value::Array(consts.into_iter().map(|(n, _)| Value::String(n)).collect()),
                );
                if !text.is_empty() {
                    obj.insert("description".into(), Value::String(text.trim().to_string()));
                }
            }
            for (_, child) in obj.iter_mut() {
                for_generators(child);
            }
        }
        Value::Array(all) => all.iter_mut().for_each(for_generators),
        _ => {}
    }
}

/// The query parameters of `GET /v1/sessions`.
fn list_parameters() -> Value {
    let q = |name: &str, schema: Value, what: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": what});
    json!([
        q("phase", json!({"type": "string", "enum": ["queued", "running", "finished"]}), "only sessions in this phase"),
        q("status", json!({"type": "string", "enum": ["completed", "max_steps", "timeout", "budget", "denied", "cancelled", "error"]}), "only sessions whose last run ended so"),
        q("agent", json!({"type": "string"}), "only sessions of this agent"),
        {"name": "label", "in": "query", "required": false, "style": "form", "explode": true,
         "schema": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_./:-]{1,64}=.*$"}},
         "description": "KEY=VALUE, repeatable: only sessions whose metadata has every one", "example": ["team=infra"]},
        q("created_after", json!({"type": "string", "format": "date-time"}), "only sessions made after this time (RFC 3339)"),
        q("cursor", json!({"type": "string"}), "the next_cursor of the previous page"),
        q("limit", json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20}), "sessions per page"),
    ])
}

/// The document.
pub fn build() -> Value {
    let mut doc = document_as_written();
    for_generators(&mut doc);
    doc
}

fn document_as_written() -> Value {
    let mut c = Components(Map::new());
    let p = c.of::<Problem>();
    let create = c.of::<CreateSession>();
    let created = c.of::<Created>();
    let view = c.of::<SessionView>();
    let message = c.of::<MessageIn>();
    let answer = c.of::<AnswerIn>();
    let pending = c.of::<PendingApproval>();
    let agent = c.of::<AgentView>();
    let health = c.of::<Health>();
    let list = c.of::<crate::list::SessionList>();
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let call =
        json!({"name": "call_id", "in": "path", "required": true, "schema": {"type": "string"}});
    let idem = json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        "description": "retry safely: the same key and body from the same token within a day get the first answer (the same session) and run nothing again; the same key with another body is a 422, while its first request is still handled a 409",
        "example": "3f0c8a52-9d1e-4c7b-a0f4-2b6e5d8c1a90"
    });
    let auth = [
        problem(&p, "401", "no valid bearer token"),
        problem(
            &p,
            "429",
            "over the token's rate limit, or (starting a run) its cap on sessions queued or running",
        ),
        problem(
            &p,
            "503",
            "the shared store (--store postgres://…) cannot be reached; retry after Retry-After",
        ),
    ];
    let mut schemas = c.0;
    // One frame of the event stream (the endpoint's body is their text, as SSE is).
    schemas.insert(
        "ServerSentEvent".into(),
        json!({
            "description": "One server-sent event of GET /v1/sessions/{id}/events.",
            "type": "object",
            "required": ["data"],
            "properties": {
                "id": {"type": "string", "description": "increasing; send the last one seen as Last-Event-ID to resume"},
                "event": {"type": "string", "description": "the event type (session.started, message.delta, tool.requested, …, session.finished)"},
                "data": {"type": "string", "description": "the event as JSON"}
            }
        }),
    );
    let with = |mut v: Vec<(String, Value)>| {
        v.extend(auth.iter().cloned());
        responses(v)
    };
    let (a2a_rpc, a2a_card) = a2a(&p, &with);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "deputy",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "deputy's agents over HTTP: start a session, follow its events (server-sent events, resumable with Last-Event-ID), answer its approvals, continue or cancel it."
        },
        "components": {
            "schemas": Value::Object(schemas),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "tags": [
            {"name": "sessions", "description": "start, follow, continue and cancel sessions"},
            {"name": "approvals", "description": "calls waiting for a person's answer"},
            {"name": "agents", "description": "what the server runs"},
            {"name": "a2a", "description": "the same sessions as A2A tasks (Agent2Agent 1.0, JSON-RPC binding)"},
            {"name": "server", "description": "health and this document"}
        ],
        "paths": {
            "/v1/sessions": {"get": {
                "operationId": "listSessions", "tags": ["sessions"],
                "summary": "The token's sessions, newest first, a page at a time",
                "parameters": list_parameters(),
                "responses": with(vec![
                    listed(list),
                    problem(&p, "400", "a parameter is not usable (the detail names it)"),
                ])
            }, "post": {
                "operationId": "createSession", "tags": ["sessions"],
                "summary": "Start a session of an agent on a task",
                "parameters": [idem.clone()],
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": create,
                    "example": {"agent": "general", "prompt": "add a health check endpoint", "limits": {"max_steps": 20, "timeout_s": 600}}
                }}},
                "responses": with(vec![
                    accepted(created.clone()),
                    problem(&p, "403", "the workspace or repository is outside what the server may reach"),
                    problem(&p, "404", "no such agent"),
                    problem(&p, "409", "a request with this Idempotency-Key is still being handled"),
                ].into_iter().chain(body_problems(&p)).collect())
            }},
            "/v1/sessions/{id}": {"get": {
                "operationId": "getSession", "tags": ["sessions"],
                "summary": "A session's state, result, usage and cost",
                "parameters": [id],
                "responses": with(vec![ok("200", "the session", view), problem(&p, "404", "no such session")])
            }, "delete": {
                "operationId": "deleteSession", "tags": ["sessions"],
                "summary": "Forget a finished session: its record, events, journal and scratch clone",
                "parameters": [id],
                "responses": with(vec![
                    ("204".into(), json!({"description": "deleted"})),
                    problem(&p, "404", "no such session"),
                    problem(&p, "409", "the session is queued or running; cancel it first"),
                ])
            }},
            "/v1/sessions/{id}/events": {"get": {
                "operationId": "sessionEvents", "tags": ["sessions"],
                "summary": "The session's events as server-sent events, until the run ends",
                "parameters": [id, {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string"}, "description": "resume after this event id (ids increase: an event's index in the stream on the embedded store, its row id on PostgreSQL)"}],
                "responses": with(vec![
                    ("200".into(), json!({"description": "a stream of server-sent events, each as the component ServerSentEvent describes: event: the event type; data: the event as JSON; id: increasing (the index in the stream on the embedded store, the row id on PostgreSQL)", "content": {"text/event-stream": {
                        // OpenAPI 3.2's way: no `schema` (generators then hand over the raw
                        // text, not a JSON parse of it), each event described by `itemSchema`.
                        "itemSchema": {"$ref": "#/components/schemas/ServerSentEvent"},
                        "example": "id: 0\nevent: session.started\ndata: {\"type\":\"session.started\",\"v\":1}\n\n"
                    }}})),
                    problem(&p, "400", "Last-Event-ID is not an event id"),
                    problem(&p, "404", "no such session"),
                ])
            }},
            "/v1/sessions/{id}/messages": {"post": {
                "operationId": "continueSession", "tags": ["sessions"],
                "summary": "Continue a finished session with another prompt",
                "parameters": [id, idem],
                "requestBody": body(message),
                "responses": with(vec![
                    accepted(created),
                    problem(&p, "404", "no such session"),
                    problem(&p, "409", "the session is still running, or a request with this Idempotency-Key is still being handled"),
                ].into_iter().chain(body_problems(&p)).collect())
            }},
            "/v1/sessions/{id}/cancel": {"post": {
                "operationId": "cancelSession", "tags": ["sessions"],
                "summary": "Stop the session's run",
                "parameters": [id],
                "responses": with(vec![ok("202", "cancelling", health.clone()), problem(&p, "404", "no such session")])
            }},
            "/v1/sessions/{id}/approvals": {"get": {
                "operationId": "listApprovals", "tags": ["approvals"],
                "summary": "Calls waiting for an answer",
                "parameters": [id],
                "responses": with(vec![ok("200", "the calls", json!({"type": "array", "items": pending})), problem(&p, "404", "no such session")])
            }},
            "/v1/sessions/{id}/approvals/{call_id}": {"post": {
                "operationId": "answerApproval", "tags": ["approvals"],
                "summary": "Approve or refuse a waiting call",
                "parameters": [id, call],
                "requestBody": body(answer),
                "responses": with(vec![
                    ok("200", "answered", health.clone()),
                    problem(&p, "404", "no such session, or no such call waiting"),
                ].into_iter().chain(body_problems(&p)).collect())
            }},
            "/v1/agents": {"get": {
                "operationId": "listAgents", "tags": ["agents"],
                "summary": "The agents this server runs",
                "responses": with(vec![ok("200", "the agents", json!({"type": "array", "items": agent}))])
            }},
            "/a2a": a2a_rpc,
            "/.well-known/agent-card.json": a2a_card,
            "/healthz": {"get": {
                "operationId": "healthz", "tags": ["server"], "summary": "Live", "security": [],
                "responses": responses(vec![ok("200", "the process answers", health.clone())])
            }},
            "/readyz": {"get": {
                "operationId": "readyz", "tags": ["server"], "summary": "Ready: the store is writable and a sandbox works", "security": [],
                "responses": responses(vec![ok("200", "ready", health), problem(&p, "503", "not ready, and why")])
            }},
            "/metrics": {"get": {
                "operationId": "metrics", "tags": ["server"],
                "summary": "Prometheus metrics: sessions by phase, runs, model, tool, store and HTTP latencies",
                "description": "Every tenant's figures, so it answers only the scraper's token (DEPUTY_SERVE_METRICS_TOKEN); open when the server has no token at all.",
                "responses": responses(vec![
                    ("200".into(), json!({"description": "the Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}})),
                    problem(&p, "401", "not the scraper's token"),
                    problem(&p, "403", "the server has tenant tokens but no DEPUTY_SERVE_METRICS_TOKEN"),
                    problem(&p, "503", "the store cannot be reached"),
                ])
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi", "tags": ["server"], "summary": "This document", "security": [],
                "responses": responses(vec![("200".into(), json!({"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}))])
            }}
        }
    })
}

/// The A2A endpoints (`/a2a`, the Agent Card).
fn a2a(p: &Value, with: &dyn Fn(Vec<(String, Value)>) -> Value) -> (Value, Value) {
    let rpc = json!({"post": {
        "operationId": "a2a", "tags": ["a2a"],
        "summary": "A2A 1.0, JSON-RPC binding: SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask, SubscribeToTask, GetExtendedAgentCard",
        "description": "The Agent2Agent protocol over the same sessions, tokens and limits: a task is a session (its id and context id are the session's id). Answers are JSON-RPC responses (an error among them for a request A2A refuses); SendStreamingMessage and SubscribeToTask answer with server-sent events, each a JSON-RPC response holding a StreamResponse.",
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {"type": "object", "required": ["jsonrpc", "method"], "properties": {
                "jsonrpc": {"type": "string", "enum": ["2.0"]},
                "id": {"type": ["string", "integer", "null"]},
                "method": {"type": "string"},
                "params": {"type": "object"},
            }},
            "example": {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "20261206-120000-abcdef"}}
        }}},
    }});
    let answer = json!({"type": "object", "required": ["jsonrpc"], "properties": {
        "jsonrpc": {"type": "string"}, "id": {}, "result": {},
        "error": {"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}},
    }});
    let ok200 = json!({
        "description": "a JSON-RPC response; or, for the streaming methods, a stream of them as server-sent events",
        "content": {"application/json": {"schema": answer}, "text/event-stream": {"schema": {"type": "string"}}},
    });
    let mut rpc = rpc;
    // A 400 is the API's problem (a body that is not JSON) or JSON-RPC's invalid request.
    let mut listed: Vec<(String, Value)> = vec![("200".to_string(), ok200)];
    for (status, mut r) in body_problems(p) {
        if status == "400" {
            r["description"] = json!(
                "the body is not JSON (a problem), or not a JSON-RPC 2.0 request (a JSON-RPC error, code -32600)"
            );
            r["content"]["application/json"] = json!({"schema": answer.clone()});
        }
        listed.push((status, r));
    }
    rpc["post"]["responses"] = with(listed);
    let card = json!({"get": {
        "operationId": "agentCard", "tags": ["a2a"],
        "summary": "The A2A Agent Card: the agents as skills, the JSON-RPC interface, bearer auth, streaming",
        "responses": with(vec![ok("200", "the Agent Card (A2A 1.0)", json!({"type": "object", "required": ["name", "supportedInterfaces", "capabilities", "skills"]}))]),
    }});
    (rpc, card)
}

pub(crate) async fn document() -> Json<Value> {
    Json(build())
}
