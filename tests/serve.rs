//! End-to-end: `deputy serve`, the real binary on loopback, driven over HTTP like an
//! orchestrator would: a session from start to result, its events over SSE resumed with
//! Last-Event-ID, approvals, cancel, continue; tokens, rate limit, body cap and roots.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use common::serve::{self, start};
use serde_json::{Value, json};

const WRITE: &str = "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: hello.txt, content: hi}}\n  - text: wrote it\nroutes:\n  - when: {last_user_contains: \"and again\"}\n    steps:\n      - text: unused\n      - text: unused\n      - text: again done\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_http_from_start_to_result_with_resumable_events() {
    let h = Harness::yaml(WRITE).await;
    let s = start(&h, &[], None).await;
    let (st, v) = s
        .post("/v1/sessions", json!({"prompt": "write hello"}))
        .await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"], "wrote it");
    assert_eq!(done["files_changed"], json!(["hello.txt"]));
    assert!(done["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        std::fs::read_to_string(h.ws.join("hello.txt")).unwrap(),
        "hi"
    );
    h.assert_strict_ok();

    // The whole stream, then the same stream resumed after event 3: nothing missed or repeated.
    let all = s.events(&id, None).await;
    let ids: Vec<usize> = all.iter().map(|e| e.0).collect();
    assert_eq!(ids, (0..all.len()).collect::<Vec<_>>());
    assert_eq!(all[0].1, "session.started");
    assert_eq!(all.last().unwrap().1, "session.finished");
    assert!(all.iter().all(|(_, t, d)| d["type"] == *t));
    let rest = s.events(&id, Some(3)).await;
    assert_eq!(rest.first().map(|e| e.0), Some(4));
    assert_eq!(rest.len(), all.len() - 4);
    // An id the stream never gave is refused, not read as "from the start".
    for bad in ["abc", "-1", "3.5", "1e3"] {
        let r = s
            .req(reqwest::Method::GET, &format!("/v1/sessions/{id}/events"))
            .header("Last-Event-ID", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "Last-Event-ID: {bad}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["detail"].as_str().unwrap().contains("Last-Event-ID"),
            "{v}"
        );
    }

    // Continued: another run of the same session; the 202 names it in `Location` too.
    let r = s
        .req(
            reqwest::Method::POST,
            &format!("/v1/sessions/{id}/messages"),
        )
        .json(&json!({"prompt": "and again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    assert_eq!(location, Some(format!("/v1/sessions/{id}")));
    let done = s.finished(&id).await;
    assert_eq!(done["result"], "again done", "{done}");
    let (st, v) = s.get("/v1/agents").await;
    assert_eq!(st, 200);
    assert!(v.as_array().unwrap().iter().any(|a| a["name"] == "general"));
    let (st, v) = s.get("/v1/sessions/nope").await;
    assert_eq!((st, v["status"].as_u64()), (404, Some(404)), "{v}");
    // A model no configured provider serves is refused at once, naming those there are.
    let (st, v) = s
        .post(
            "/v1/sessions",
            json!({"prompt": "x", "model": "nosuch/model"}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("nosuch") && detail.contains("openai"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_rule_waits_for_an_answer_over_http() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: approved.txt, content: \"yes\"}}\n  - tool_calls:\n      - {name: write, arguments: {path: refused.txt, content: \"no\"}}\n  - text: done\n",
    )
    .await;
    h.write_user_config("[permission]\nedit = \"ask\"\n");
    let s = start(&h, &[], None).await;
    let (_, v) = s.post("/v1/sessions", json!({"prompt": "write"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    for (file, approve) in [("approved.txt", true), ("refused.txt", false)] {
        let started = Instant::now();
        let pending = loop {
            let (_, v) = s.get(&format!("/v1/sessions/{id}/approvals")).await;
            if let Some(p) = v.as_array().and_then(|a| a.first()).cloned() {
                break p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no approval asked: {:#} {:?}",
                s.get(&format!("/v1/sessions/{id}")).await.1,
                h.tool_results()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(pending["tool"], "write");
        assert_eq!(pending["subject"], file);
        let call = pending["call_id"].as_str().unwrap();
        let (st, v) = s
            .post(
                &format!("/v1/sessions/{id}/approvals/{call}"),
                json!({"approve": approve, "reason": "not that one"}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(h.ws.join("approved.txt").exists());
    assert!(!h.ws.join("refused.txt").exists(), "a refused call ran");
    let (st, _) = s
        .post(
            &format!("/v1/sessions/{id}/approvals/none"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(st, 404);
    h.assert_strict_ok();
}

/// Nobody answers an approval: the session's deadline still ends it, as `timeout`, and the
/// call never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_ends_at_the_deadline() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: waited.txt, content: \"x\"}}\n  - text: done\n",
    )
    .await;
    h.write_user_config("[permission]\nedit = \"ask\"\n[limits]\ntimeout_s = 2\n");
    let s = start(&h, &[], None).await;
    let started = Instant::now();
    let (_, v) = s.post("/v1/sessions", json!({"prompt": "write"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "timeout", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait outlived the deadline: {:?}",
        started.elapsed()
    );
    assert!(!h.ws.join("waited.txt").exists(), "the call ran");
    let (_, v) = s.get(&format!("/v1/sessions/{id}/approvals")).await;
    assert_eq!(v.as_array().map(Vec::len), Some(0), "still pending: {v}");
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_session() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: bash, arguments: {command: \"sleep 60\"}}\n  - text: slept\n",
    )
    .await;
    let s = start(&h, &[], None).await;
    let (_, v) = s.post("/v1/sessions", json!({"prompt": "sleep"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (st, _) = s
        .post(&format!("/v1/sessions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(st, 202);
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(started.elapsed() < Duration::from_secs(10));
    h.assert_strict_ok();
}

/// `--cors ORIGIN`: a browser page on that origin gets its preflight answered (before
/// authentication, as browsers send it without the token) and may read the answers; another
/// origin gets no CORS headers; the token is still required. A malformed origin stops start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_the_named_origins_call_the_api() {
    let h = Harness::yaml("steps:\n  - text: ok\n").await;
    let out = h.run(&["serve", "--cors", "app.example.com"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cors app.example.com"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = start(&h, &["--cors", "https://app.example.com"], Some("tok")).await;
    let preflight = |origin: &'static str| {
        s.http
            .request(reqwest::Method::OPTIONS, format!("{}/v1/sessions", s.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let hv = |r: &reqwest::Response, k: &str| {
        r.headers()
            .get(k)
            .map(|v| v.to_str().unwrap().to_lowercase())
    };
    assert_eq!(
        hv(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let allowed = hv(&r, "access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed.contains("authorization") && allowed.contains("idempotency-key"),
        "{allowed}"
    );
    assert!(
        hv(&r, "access-control-allow-methods")
            .unwrap_or_default()
            .contains("delete")
    );
    let r = preflight("https://evil.example").await.unwrap();
    assert_eq!(hv(&r, "access-control-allow-origin"), None);
    // The real request: readable from the origin, still authenticated.
    let r = s
        .req(reqwest::Method::GET, "/v1/sessions")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        hv(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let r = s
        .http
        .get(format!("{}/v1/sessions", s.url))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rate_limit_body_cap_and_roots() {
    let h = Harness::yaml("steps:\n  - text: ok\n").await;
    // Without a token, a non-loopback address is refused before anything listens.
    let out = h.run(&["serve", "--listen", "0.0.0.0:0"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));

    let s = start(
        &h,
        &["--rate-per-minute", "6", "--body-limit", "200"],
        Some("s3cret"),
    )
    .await;
    // No token, a wrong one: 401 as problem+json, with the scheme to use.
    let r = s
        .http
        .get(format!("{}/v1/agents", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = s
        .http
        .get(format!("{}/v1/agents", s.url))
        .bearer_auth("s3cres")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Health, readiness and the document need no token.
    let r = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = s
        .http
        .get(format!("{}/openapi.json", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["components"]["schemas"]["CreateSession"]["properties"]["prompt"].is_object());

    // With the token: a body over the cap, a workspace outside the roots.
    let (st, v) = s
        .post("/v1/sessions", json!({"prompt": "x".repeat(500)}))
        .await;
    assert_eq!(st, 413, "{v}");
    let (st, v) = s
        .post("/v1/sessions", json!({"prompt": "hi", "workspace": "/"}))
        .await;
    assert_eq!(st, 403, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("outside"), "{v}");
    let (st, v) = s
        .post("/v1/sessions", json!({"prompt": "hi", "agent": "nope"}))
        .await;
    assert_eq!(st, 404, "{v}");
    // Three requests so far this minute: three more pass, the seventh is over the limit.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(s.get("/v1/agents").await.0);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let r = s
        .req(reqwest::Method::GET, "/v1/agents")
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
}

/// schemathesis (the property-based API tester, not ours) against the live server and its
/// /openapi.json: no 500 on any generated input, every status and body as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_document() {
    let Some(st) = common::outside::schemathesis() else {
        return;
    };
    let h = Harness::new(deputy_mockllm::Script::text("ok")).await;
    let s = start(&h, serve::UNLIMITED, Some("tok")).await;
    serve::schemathesis(&st, &h, &s).await;
}

/// A retried POST with its Idempotency-Key runs nothing twice (embedded store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_with_its_idempotency_key_runs_once() {
    let h = Harness::yaml(serve::IDEMPOTENT).await;
    let s = start(&h, &[], Some("tok")).await;
    serve::idempotent_posts(&h, &s, &s).await;
}

/// Sessions are found again: listed, paged, filtered by labels; deleted (embedded store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_filtered_and_deleted() {
    let h = Harness::yaml(serve::FINDING).await;
    let s = start(&h, serve::UNLIMITED, Some("tok")).await;
    serve::finding_sessions(&h, &s, &s).await;
}

/// Sessions on one repository, each in a worktree and branch of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worktree_sessions_do_not_collide() {
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(serve::WORKTREES).await;
    let s = start(&h, serve::UNLIMITED, Some("tok")).await;
    serve::worktree_sessions(&h, &s, &s).await;
}

/// A client generated by openapi-python-client (a generator we did not write) from the live
/// `/openapi.json` works: it creates a session, answers its approval, polls it to the end,
/// reads its events, continues and cancels — every answer parsed by the generated models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_drives_the_api() {
    let Some((generator, python)) = common::outside::openapi_python_client() else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: approved.txt, content: \"yes\"}}\n  - text: first answer\n  - text: second answer\n  - tool_calls:\n      - {name: bash, arguments: {command: \"sleep 60\"}}\n  - text: never\n",
    )
    .await;
    h.write_user_config("[permission]\nedit = \"ask\"\n");
    let s = start(&h, serve::UNLIMITED, Some("tok")).await;
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    let out = h.dir.path().join("client");
    std::fs::create_dir_all(&out).unwrap();
    let spec = out.join("openapi.json");
    std::fs::write(&spec, serde_json::to_vec(&doc).unwrap()).unwrap();
    // No formatter hooks: the generated code is used as it comes.
    let config = out.join("config.yaml");
    std::fs::write(&config, "post_hooks: []\n").unwrap();
    let generated = std::process::Command::new(&generator)
        .args(["generate", "--path"])
        .arg(&spec)
        .arg("--output-path")
        .arg(out.join("gen"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&generated.stdout).to_string()
        + &String::from_utf8_lossy(&generated.stderr);
    assert!(generated.status.success(), "{said}");
    assert!(
        !said.contains("Warning") && !said.contains("Error"),
        "the generator did not take the whole document: {said}"
    );
    let run = tokio::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/serve_client.py"
        ))
        .arg(&s.url)
        .arg("tok")
        .arg(out.join("gen"))
        .env("NO_PROXY", "127.0.0.1")
        .output();
    let run = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the generated client did not finish")
        .unwrap();
    let said =
        String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && said.contains("generated client: ok"),
        "{said}"
    );
    assert!(h.ws.join("approved.txt").exists());
    h.assert_strict_ok();
}

/// Types openapi-typescript (npm) generates from the live `/openapi.json` compile with a
/// client that uses them (`tsc --strict`), and that client drives the API: create, poll, list
/// by label, a 400, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_client_typed_by_the_document_drives_the_api() {
    let Some(ts) = common::outside::openapi_typescript() else {
        return;
    };
    let h = Harness::yaml("steps:\n  - text: typed answer\n").await;
    let s = start(&h, &[], Some("tok")).await;
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    let out = h.dir.path().join("ts");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("openapi.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve_client.ts"),
        out.join("serve_client.ts"),
    )
    .unwrap();
    let bin = |n: &str| ts.join("node_modules/.bin").join(n);
    let run = |cmd: &mut std::process::Command| {
        let o = cmd.current_dir(&out).output().unwrap();
        let said =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{cmd:?}: {said}");
        said
    };
    let said = run(std::process::Command::new(bin("openapi-typescript")).args([
        "openapi.json",
        "-o",
        "api.d.ts",
    ]));
    assert!(!said.to_lowercase().contains("warn"), "{said}");
    run(std::process::Command::new(bin("tsc"))
        .args([
            "--strict",
            "--target",
            "es2022",
            "--module",
            "commonjs",
            "--lib",
            "es2022,dom",
            "--types",
            "node",
            "--typeRoots",
        ])
        .arg(ts.join("node_modules/@types"))
        .args(["--outDir", "out", "serve_client.ts"]));
    let node = tokio::process::Command::new("node")
        .arg(out.join("out/serve_client.js"))
        .arg(&s.url)
        .arg("tok")
        .env("NO_PROXY", "127.0.0.1")
        .output();
    let o = tokio::time::timeout(Duration::from_secs(60), node)
        .await
        .expect("the TypeScript client did not finish")
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && said.contains("typescript client: ok"),
        "{said}"
    );
    h.assert_strict_ok();
}

/// A token sees only the sessions it started: another token cannot read, follow, cancel or
/// answer them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tokens_sessions_do_not_exist_for_another() {
    let h = Harness::yaml(WRITE).await;
    let mine = start(&h, &[], Some("mine")).await;
    let (st, v) = mine
        .post("/v1/sessions", json!({"prompt": "write hello"}))
        .await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    mine.finished(&id).await;
    let theirs = mine.as_token("other-token");
    for path in [
        format!("/v1/sessions/{id}"),
        format!("/v1/sessions/{id}/events"),
        format!("/v1/sessions/{id}/approvals"),
    ] {
        assert_eq!(theirs.get(&path).await.0, 404, "{path}");
    }
    for (path, body) in [
        (format!("/v1/sessions/{id}/cancel"), json!({})),
        (
            format!("/v1/sessions/{id}/messages"),
            json!({"prompt": "x"}),
        ),
        (
            format!("/v1/sessions/{id}/approvals/x"),
            json!({"approve": true}),
        ),
    ] {
        let (st, v) = theirs.post(&path, body).await;
        assert_eq!(st, 404, "{path}: {v}");
    }
    assert_eq!(mine.get(&format!("/v1/sessions/{id}")).await.0, 200);
    let (st, v) = mine
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"prompt": "\u{0}"}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    serve::nul_is_refused(&mine).await;
}

/// A workspace belongs to the token that used it first (issue 25): the other token gets 404
/// for it, inside it or around it, also after a restart, and its commands cannot read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_belongs_to_one_token() {
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(serve::PEEK).await;
    let mut s = start(&h, &[], Some("mine")).await;
    serve::workspaces_are_tenants(&h, &s, &[]).await;
    // The claims outlive the server.
    s.kill().await;
    let s = start(&h, &[], Some("mine")).await;
    let (st, v) = s
        .as_token("other-token")
        .post("/v1/sessions", json!({"prompt": "go", "workspace": "a"}))
        .await;
    assert_eq!(st, 404, "after a restart: {v}");
}

/// A tenant's session reads its own workspace's instructions only: not the repository the
/// server's root is in (another tenant's or the operator's), not the operator's own file —
/// the tenant sees its system prompt in its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reads_only_its_own_workspaces_instructions() {
    let h = Harness::yaml("steps:\n  - text: ok\n").await;
    common::git(&h.ws, &["init", "-q"]);
    std::fs::write(h.ws.join("AGENTS.md"), "OPERATOR-ROOT-RULES\n").unwrap();
    std::fs::create_dir_all(h.ws.join("a")).unwrap();
    std::fs::write(h.ws.join("a/AGENTS.md"), "TENANT-A-RULES\n@../AGENTS.md\n").unwrap();
    let user = h.home.join(".config/deputy/AGENTS.md");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "OPERATOR-USER-RULES\n").unwrap();
    // Skills likewise: the tenant's own, never the repository's around it or the operator's.
    let skill = |dir: &std::path::Path, name: &str| {
        let p = dir.join(name).join("SKILL.md");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("---\nname: {name}\ndescription: d\n---\nbody\n")).unwrap();
    };
    skill(&h.ws.join("a/.claude/skills"), "tenant-skill");
    skill(&h.ws.join(".claude/skills"), "operator-repo-skill");
    skill(&h.home.join(".claude/skills"), "operator-user-skill");
    let s = start(&h, &[], Some("tok")).await;
    let (st, v) = s
        .post("/v1/sessions", json!({"prompt": "go", "workspace": "a"}))
        .await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let sys = h.mock.requests()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sys.contains("TENANT-A-RULES"), "{sys}");
    assert!(!sys.contains("OPERATOR"), "{sys}");
    let tools = h.mock.requests()[0].body["tools"].to_string();
    assert!(tools.contains("tenant-skill"), "{tools}");
    assert!(!tools.contains("operator-"), "{tools}");
    let events = s.events(&id, None).await;
    let started = events
        .iter()
        .find(|(_, t, _)| t == "session.started")
        .map(|(_, _, d)| d.clone())
        .unwrap();
    assert_eq!(
        started["instructions"].as_array().map(Vec::len),
        Some(1),
        "{started}"
    );
    assert!(!started.to_string().contains("OPERATOR"));
}

/// Trust follows where the agent file is, not the session's workspace (issue 25): the server's
/// untrusted project brings an agent with an MCP server and the network; used on a
/// subdirectory, it is still that project's agent, and its server is not started on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_agent_used_on_a_subdirectory_is_still_untrusted() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: mcp__evil__x, arguments: {}}\n  - text: done\n",
    )
    .await;
    let out = h.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(h.ws.join("sub")).unwrap();
    let marker = out.join("PLANTED-RAN");
    h.write_agent(
        "planted",
        &format!(
            "---\nname: planted\nnetwork: true\ntools: Read, mcp__evil__x\nmcpServers:\n  evil:\n    command: sh\n    args: [\"-c\", \"touch {}\"]\n---\nP\n",
            marker.display()
        ),
    );
    let s = start(&h, &[], None).await;
    let (st, v) = s
        .post(
            "/v1/sessions",
            json!({"prompt": "go", "agent": "planted", "workspace": "sub"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let done = s.finished(v["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!marker.exists(), "the project's MCP server ran on the host");
    h.assert_strict_ok();
}

/// The per-token cap on sessions queued or running holds when the requests arrive all at
/// once (not only one after another), counts a continued session, and is per token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_gets_no_more_sessions_than_the_tokens_cap() {
    let h = Harness::yaml(serve::SLOW).await;
    let s = start(&h, &["--sessions-per-token", "2"], Some("mine")).await;
    serve::the_cap_holds(&h, &[&s]).await;
}

/// SIGTERM: the server stops taking work at once, lets what runs finish within `--drain`,
/// cancels the rest (no process of theirs survives, their journals are kept), and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_cancels_what_is_still_running() {
    let h = Harness::yaml(serve::DELAYED).await;
    let mut s = start(&h, &["--drain", "3"], None).await;
    let ids = serve::delayed(&h, &s, &[("quick", "1.47"), ("slow", "61.73")]).await;
    s.terminate();
    let stopped = Instant::now();
    // Draining: not ready, no new run; the API still answers.
    let v = s.until_status("/readyz", 503).await;
    assert!(
        v["detail"].as_str().unwrap().contains("shutting down"),
        "{v}"
    );
    let (st, v) = s.post("/v1/sessions", json!({"prompt": "more"})).await;
    assert_eq!(st, 503, "{v}");
    let quick = s.finished(&ids[0]).await;
    assert_eq!(quick["status"], "completed", "{quick}");
    assert_eq!(quick["result"], "finished", "{quick}");
    assert_eq!(s.exited(Duration::from_secs(20)).await, Some(0));
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    // The slow one was cancelled: its command killed, its end on record.
    assert!(
        common::processes_with("sleep 61.73").is_empty(),
        "the slow command survived"
    );
    assert!(!h.ws.join("slow/slept.txt").exists());
    assert!(h.ws.join("quick/slept.txt").exists());
    // A cancelled run starts nothing more: the write after the slow command never ran.
    assert!(h.ws.join("quick/after.txt").exists());
    assert!(!h.ws.join("slow/after.txt").exists());
    let events = h.journal(&ids[1]);
    let end = common::of_type(&events, "session.finished");
    assert_eq!(end.len(), 1, "{events:?}");
    assert_eq!(end[0]["status"], "cancelled", "{events:?}");
    h.assert_strict_ok();
}

/// `repo`: cloned into a scratch directory of the server; the change comes back as a patch,
/// the repository itself untouched. URLs outside what a worker may reach are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repo_is_cloned_and_its_change_comes_back_as_a_patch() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: hello.txt, content: \"hi\\n\"}}\n      - {name: edit, arguments: {path: README.md, old_string: \"one\", new_string: \"two\"}}\n  - text: changed\n",
    )
    .await;
    let upstream = common::serve::upstream(&h.ws, &[("README.md", "one\n")]);
    let s = start(&h, &[], None).await;
    let url = format!("file://{}", upstream.display());
    let (st, v) = s
        .post(
            "/v1/sessions",
            json!({"prompt": "change it", "repo": {"url": url, "ref": "main"}}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let done = s.finished(v["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let patch = done["patch"].as_str().unwrap();
    assert!(
        patch.contains("+++ b/hello.txt")
            && patch.contains("+hi")
            && patch.contains("-one")
            && patch.contains("+two"),
        "{patch}"
    );
    assert_eq!(
        std::fs::read_to_string(upstream.join("README.md")).unwrap(),
        "one\n"
    );
    assert!(
        !upstream.join("hello.txt").exists(),
        "the upstream repository was changed"
    );
    h.assert_strict_ok();

    let outside = tempfile::tempdir().unwrap();
    // `ws/%2e%2e/…/%2e%2e/OUTSIDE` exists as text under the root, so a check of the text
    // passes; git decodes it to `ws/../../…/OUTSIDE`, outside every root.
    let ups = h.ws.components().count() - 1;
    let escaped = format!(
        "{}/{}{}",
        h.ws.display(),
        "%2e%2e/".repeat(ups),
        outside.path().display().to_string().trim_start_matches('/')
    );
    std::fs::create_dir_all(&escaped).unwrap();
    // A real repository, so a clone of it would succeed.
    common::git_repo_with_a_commit(outside.path());
    for (repo, status) in [
        (
            json!({"url": format!("file://{}", outside.path().display())}),
            403,
        ),
        // Spellings git decodes or ignores differently from a text check: a `..` escaped or
        // not, a host part, a query.
        (json!({"url": format!("file://{escaped}")}), 422),
        (
            json!({"url": format!("file://{}/../..{}", h.ws.display(), outside.path().display())}),
            422,
        ),
        (
            json!({"url": format!("file://localhost{}", outside.path().display())}),
            422,
        ),
        (json!({"url": format!("{url}?x=1")}), 422),
        (json!({"url": "https://127.0.0.1/x.git"}), 403),
        (json!({"url": "ssh://git@example.com/x.git"}), 422),
        (
            json!({"url": url, "ref": "--upload-pack=touch /tmp/x"}),
            422,
        ),
    ] {
        let (st, v) = s
            .post("/v1/sessions", json!({"prompt": "x", "repo": repo}))
            .await;
        assert_eq!(st, status, "{repo}: {v}");
    }
}

/// A session in `WS/mine` with `prompt` and labels `meta`; its id.
async fn post_in_mine(s: &serve::Server, prompt: &str, meta: Value) -> String {
    let body = json!({"prompt": prompt, "workspace": "mine", "metadata": meta});
    let (st, v) = s.post("/v1/sessions", body).await;
    assert_eq!(st, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The embedded store survives a restart (kill -9, then a new process on the same state
/// directory): a finished session is served from its journal (result, labels, events) and can
/// be continued; the session that was running is resumed by the takeover rule (its command
/// reported interrupted, never run again; the call after it run); the one still queued runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_survives_a_restart() {
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        "steps:\n  - text: unused\nroutes:\n  - when: {last_user_contains: \"more\"}\n    steps:\n      - text: unused\n      - text: more answer\n  - when: {last_user_contains: \"quick\"}\n    steps:\n      - text: quick answer\n  - when: {last_user_contains: \"long\"}\n    steps:\n      - tool_calls:\n          - {name: bash, arguments: {command: \"echo ran >> ran.log; sleep 41.73\"}}\n          - {name: write, arguments: {path: after.txt, content: after}}\n      - text: long answer\n  - when: {last_user_contains: \"queued\"}\n    steps:\n      - text: queued answer\n",
    )
    .await;
    std::fs::create_dir_all(h.ws.join("mine")).unwrap();
    let flags = ["--max-sessions", "1", "--auto-approve"];
    let mut s = start(&h, &flags, Some("tok")).await;
    let keyed = json!({"prompt": "quick", "workspace": "mine", "metadata": {"run": "1"}});
    let (st, v) = s
        .post_keyed("/v1/sessions", "restart-key", keyed.clone())
        .await;
    assert_eq!(st, 202, "{v}");
    let quick = v["id"].as_str().unwrap().to_string();
    let before = s.finished(&quick).await;
    let long = post_in_mine(&s, "long", json!({})).await;
    let t0 = Instant::now();
    while common::processes_with("sleep 41.73").is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued = post_in_mine(&s, "queued", json!({})).await;
    let (_, v) = s.get(&format!("/v1/sessions/{queued}")).await;
    assert_eq!(v["phase"], "queued", "{v}");
    s.kill().await;

    let s = start(&h, &flags, Some("tok")).await;
    let (st, again) = s.get(&format!("/v1/sessions/{quick}")).await;
    assert_eq!(st, 200, "{again}");
    // Its Idempotency-Key outlived the restart: the retry gets it, and runs nothing (the
    // model was asked about "quick" once, below).
    let (st, v) = s.post_keyed("/v1/sessions", "restart-key", keyed).await;
    assert_eq!((st, v["id"].as_str()), (202, Some(quick.as_str())), "{v}");
    for k in [
        "result",
        "status",
        "metadata",
        "created_at",
        "num_turns",
        "usage",
    ] {
        assert_eq!(again[k], before[k], "{k}: {again}");
    }
    assert_eq!(again["phase"], "finished");
    let events = s.events(&quick, None).await;
    assert_eq!(events.last().unwrap().1, "session.finished", "{events:?}");
    assert_eq!(
        s.as_token("other-token")
            .get(&format!("/v1/sessions/{quick}"))
            .await
            .0,
        404
    );
    let done = s.finished(&long).await;
    assert_eq!(done["result"], "long answer", "{done}");
    let ran = std::fs::read_to_string(h.ws.join("mine/ran.log")).unwrap_or_default();
    assert!(ran.is_empty() || ran == "ran\n", "run again: {ran:?}");
    assert_eq!(
        std::fs::read_to_string(h.ws.join("mine/after.txt"))
            .ok()
            .as_deref(),
        Some("after")
    );
    let events = s.events(&long, None).await;
    assert!(
        events
            .iter()
            .any(|(_, _, d)| d["metadata"]["interrupted"] == true),
        "{events:?}"
    );
    let done = s.finished(&queued).await;
    assert_eq!(done["result"], "queued answer", "{done}");
    // A restored session goes on with a message (its session is made from the journal).
    let (st, v) = s
        .post(
            &format!("/v1/sessions/{quick}/messages"),
            json!({"prompt": "more"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let done = s.finished(&quick).await;
    assert_eq!(done["result"], "more answer", "{done}");
    let (_, list) = s.get("/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 3, "{list}");
    assert_eq!(
        serve::runs_of(&h, "quick"),
        1,
        "the keyed job ran again after the restart"
    );
    h.assert_strict_ok();
}

/// `/metrics`: the scraper's token only (a tenant's is refused, every tenant's figures are
/// there); after a session with a command, the official Prometheus client's parser reads
/// sessions by phase, runs by status, model and tool latencies and HTTP requests from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_for_the_scraper_only() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: m.txt, content: m}}\n  - text: measured\n",
    )
    .await;
    let s = serve::start_with(
        &h,
        &["--auto-approve"],
        Some("tok"),
        &[("DEPUTY_SERVE_METRICS_TOKEN", "scrape-token".to_string())],
    )
    .await;
    let (st, v) = s.post("/v1/sessions", json!({"prompt": "go"})).await;
    assert_eq!(st, 202, "{v}");
    s.finished(v["id"].as_str().unwrap()).await;
    assert_eq!(
        s.get("/metrics").await.0,
        401,
        "a tenant's token read /metrics"
    );
    // Tenants' tokens but no scraper's: nobody reads it.
    let other = start(&h, &[], Some("tok")).await;
    let (st, v) = other.get("/metrics").await;
    assert_eq!(st, 403, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("DEPUTY_SERVE_METRICS_TOKEN"),
        "{v}"
    );
    let r = s
        .http
        .get(format!("{}/metrics", s.url))
        .bearer_auth("scrape-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for needle in [
        "deputy_sessions{phase=\"finished\"} 1",
        "deputy_runs_total{status=\"completed\"} 1",
        "deputy_tool_call_seconds_bucket{tool=\"write\"",
        "deputy_model_request_seconds_count{model=",
        "deputy_http_requests_total{method=\"POST\",route=\"/v1/sessions\",status=\"202\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    // Parsed by the official client's parser, not only grepped.
    let Some(py) = common::outside::prometheus_python() else {
        return;
    };
    let mut child = std::process::Command::new(py)
        .args([
            "-c",
            "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families as p\nprint(json.dumps({f.name: f.type for f in p(sys.stdin.read())}))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(families["deputy_sessions"], "gauge", "{families}");
    assert_eq!(families["deputy_runs"], "counter", "{families}");
    assert_eq!(
        families["deputy_model_request_seconds"], "histogram",
        "{families}"
    );
    assert_eq!(
        families["deputy_tool_call_seconds"], "histogram",
        "{families}"
    );
    assert_eq!(
        families["deputy_http_request_seconds"], "histogram",
        "{families}"
    );
}
