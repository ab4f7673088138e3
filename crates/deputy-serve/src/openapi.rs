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
    (
        status.to_string(),
        json!({"description": why, "content": {"application/problem+json": {"schema": r}}}),
    )
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
            "links": {
                "GetSession": link("getSession"),
                "SessionEvents": link("sessionEvents"),
                "CancelSession": link("cancelSession"),
                "ListApprovals": link("listApprovals"),
                "ContinueSession": link("continueSession"),
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

/// The document.
pub fn build() -> Value {
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
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let call =
        json!({"name": "call_id", "in": "path", "required": true, "schema": {"type": "string"}});
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
    let with = |mut v: Vec<(String, Value)>| {
        v.extend(auth.iter().cloned());
        responses(v)
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "deputy",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "deputy's agents over HTTP: start a session, follow its events (server-sent events, resumable with Last-Event-ID), answer its approvals, continue or cancel it."
        },
        "components": {
            "schemas": Value::Object(c.0),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/sessions": {"post": {
                "operationId": "createSession",
                "summary": "Start a session of an agent on a task",
                "requestBody": body(create),
                "responses": with(vec![
                    accepted(created.clone()),
                    problem(&p, "403", "the workspace or repository is outside what the server may reach"),
                    problem(&p, "404", "no such agent"),
                ].into_iter().chain(body_problems(&p)).collect())
            }},
            "/v1/sessions/{id}": {"get": {
                "operationId": "getSession",
                "summary": "A session's state, result, usage and cost",
                "parameters": [id],
                "responses": with(vec![ok("200", "the session", view), problem(&p, "404", "no such session")])
            }},
            "/v1/sessions/{id}/events": {"get": {
                "operationId": "sessionEvents",
                "summary": "The session's events as server-sent events, until the run ends",
                "parameters": [id, {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string"}, "description": "resume after this event id (ids increase: an event's index in the stream on the embedded store, its row id on PostgreSQL)"}],
                "responses": with(vec![
                    ("200".into(), json!({"description": "event: the event type; data: the event as JSON; id: increasing (the index in the stream on the embedded store, the row id on PostgreSQL)", "content": {"text/event-stream": {"schema": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {"id": {"type": "string"}, "event": {"type": "string"}, "data": {"type": "string"}}
                    }}}})),
                    problem(&p, "404", "no such session"),
                ])
            }},
            "/v1/sessions/{id}/messages": {"post": {
                "operationId": "continueSession",
                "summary": "Continue a finished session with another prompt",
                "parameters": [id],
                "requestBody": body(message),
                "responses": with(vec![
                    accepted(created),
                    problem(&p, "404", "no such session"),
                    problem(&p, "409", "the session is still running"),
                ].into_iter().chain(body_problems(&p)).collect())
            }},
            "/v1/sessions/{id}/cancel": {"post": {
                "operationId": "cancelSession",
                "summary": "Stop the session's run",
                "parameters": [id],
                "responses": with(vec![ok("202", "cancelling", health.clone()), problem(&p, "404", "no such session")])
            }},
            "/v1/sessions/{id}/approvals": {"get": {
                "operationId": "listApprovals",
                "summary": "Calls waiting for an answer",
                "parameters": [id],
                "responses": with(vec![ok("200", "the calls", json!({"type": "array", "items": pending})), problem(&p, "404", "no such session")])
            }},
            "/v1/sessions/{id}/approvals/{call_id}": {"post": {
                "operationId": "answerApproval",
                "summary": "Approve or refuse a waiting call",
                "parameters": [id, call],
                "requestBody": body(answer),
                "responses": with(vec![
                    ok("200", "answered", health.clone()),
                    problem(&p, "404", "no such session, or no such call waiting"),
                ].into_iter().chain(body_problems(&p)).collect())
            }},
            "/v1/agents": {"get": {
                "operationId": "listAgents",
                "summary": "The agents this server runs",
                "responses": with(vec![ok("200", "the agents", json!({"type": "array", "items": agent}))])
            }},
            "/healthz": {"get": {
                "operationId": "healthz", "summary": "Live", "security": [],
                "responses": responses(vec![ok("200", "the process answers", health.clone())])
            }},
            "/readyz": {"get": {
                "operationId": "readyz", "summary": "Ready: the store is writable and a sandbox works", "security": [],
                "responses": responses(vec![ok("200", "ready", health), problem(&p, "503", "not ready, and why")])
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document", "security": [],
                "responses": responses(vec![("200".into(), json!({"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}))])
            }}
        }
    })
}

pub(crate) async fn document() -> Json<Value> {
    Json(build())
}
