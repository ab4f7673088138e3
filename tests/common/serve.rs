//! `deputy serve` driven over HTTP, as an orchestrator would.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::Harness;

/// Each step takes long enough that no session ends while a burst is being answered.
pub const SLOW: &str =
    "steps:\n  - text: slow\n    delay_ms: 4000\n  - text: slower\n    delay_ms: 4000\n";

/// With `--sessions-per-token 2` and [`SLOW`], on one server or several sharing a store: a
/// burst of requests gets two sessions, another token has its own seats, and a continued
/// session takes a seat like a new one.
pub async fn the_cap_holds(h: &Harness, servers: &[&Server]) {
    let s = servers[0];
    // Each token in a workspace of its own (a workspace belongs to the token that used it
    // first).
    for d in ["mine", "theirs"] {
        std::fs::create_dir_all(h.ws.join(d)).unwrap();
    }
    let go = json!({"prompt": "go", "workspace": "mine"});
    let answers = Server::burst(servers, 12, "/v1/sessions", go.clone()).await;
    let ids = accepted(&answers, 2);
    let (st, v) = s
        .as_token("other-token")
        .post(
            "/v1/sessions",
            json!({"prompt": "go", "workspace": "theirs"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    for id in &ids {
        s.finished(id).await;
    }
    let more = json!({"prompt": "more"});
    let (st, v) = s
        .post(&format!("/v1/sessions/{}/messages", ids[0]), more.clone())
        .await;
    assert_eq!(st, 202, "{v}");
    let answers = Server::burst(servers, 4, "/v1/sessions", go).await;
    accepted(&answers, 1);
    let (st, v) = s
        .post(&format!("/v1/sessions/{}/messages", ids[1]), more)
        .await;
    assert_eq!(st, 429, "{v}");
}

/// Exactly `n` of `answers` were accepted, the rest refused as over the cap; the ids accepted.
fn accepted(answers: &[(u16, Value)], n: usize) -> Vec<String> {
    let ok: Vec<String> = answers
        .iter()
        .filter(|(st, _)| *st == 202)
        .map(|(_, v)| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ok.len(), n, "{answers:?}");
    for (st, v) in answers.iter().filter(|(st, _)| *st != 202) {
        assert_eq!(*st, 429, "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("already queued or running"), "{v}");
    }
    ok
}

/// Each session notes that its command ran, sleeps as long as its workspace's `delay` file
/// says, then notes it slept.
/// A session that tries to read tenant A's file from wherever it is, and says where it is.
pub const PEEK: &str = "steps:\n  - tool_calls:\n      - {name: bash, arguments: {command: \"cat ../a/secret.txt 2>&1; echo pwd=$PWD\"}}\n  - text: looked\n";

/// A command that takes `delay` seconds, then (in the same response) a write that cannot start
/// before it ends.
pub const DELAYED: &str = "steps:\n  - tool_calls:\n      - {name: bash, arguments: {command: \"echo ran >> ran.log; sleep $(cat delay) && echo slept > slept.txt\"}}\n      - {name: write, arguments: {path: after.txt, content: after}}\n  - text: finished\n";

/// With [`DELAYED`]: a session in each of `dirs` (name, delay), once every command is running;
/// their ids. Each delay must be unique among the running processes of the machine.
pub async fn delayed(h: &Harness, s: &Server, dirs: &[(&str, &str)]) -> Vec<String> {
    let mut ids = Vec::new();
    for (dir, delay) in dirs {
        std::fs::create_dir_all(h.ws.join(dir)).unwrap();
        std::fs::write(h.ws.join(dir).join("delay"), delay).unwrap();
        let (st, v) = s
            .post("/v1/sessions", json!({"prompt": "go", "workspace": dir}))
            .await;
        assert_eq!(st, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let started = Instant::now();
    while dirs
        .iter()
        .any(|(_, d)| super::processes_with(&format!("sleep {d}")).is_empty())
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the commands never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids
}

/// NUL (which JSON and URLs can carry, PostgreSQL's text cannot) in an id or a prompt: a
/// 404 or 422 naming it on either store, never a 5xx.
pub async fn nul_is_refused(s: &Server) {
    for path in [
        "/v1/sessions/a%00b",
        "/v1/sessions/a%00b/events",
        "/v1/sessions/a%00b/approvals",
    ] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, 404, "{path}: {v}");
    }
    let (st, v) = s
        .post("/v1/sessions/x/approvals/c%00d", json!({"approve": true}))
        .await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = s.post("/v1/sessions", json!({"prompt": "a\u{0}b"})).await;
    assert_eq!(st, 422, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("NUL"), "{v}");
}

/// Flags that keep the limits out of schemathesis's way.
pub const UNLIMITED: &[&str] = &[
    "--rate-per-minute",
    "1000000",
    "--sessions-per-token",
    "1000000",
    "--max-sessions",
    "4",
];

/// schemathesis (the property-based API tester, not ours) against `s` (token `tok`) and its
/// /openapi.json: no 500 on any generated input, every status and body as documented.
pub async fn schemathesis(st: &str, h: &Harness, s: &Server) {
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(st)
            .args([
                "run",
                &format!("{}/openapi.json", s.url),
                "-H",
                "Authorization: Bearer tok",
                "--max-examples",
                "25",
                "--seed",
                "7",
                // Schema-valid data may still be refused for what a schema cannot say (an
                // unknown model, a workspace that does not exist): those are documented 4xx.
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .current_dir(h.dir.path())
            .env("NO_COLOR", "1")
            .output(),
    )
    .await
    .expect("schemathesis did not finish in 10 minutes")
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation of the document: the REST API, A2A (`/a2a`, the Agent Card), the server's own.
    assert!(report.contains("Tested: 15"), "{report}");
}

/// A running `deputy serve` and its base URL.
pub struct Server {
    /// The server process (`None` for another client of a server started elsewhere).
    pub child: Option<tokio::process::Child>,
    pub url: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

pub async fn start(h: &Harness, extra: &[&str], token: Option<&str>) -> Server {
    start_with(h, extra, token, &[]).await
}

/// [`start`] with more environment (another state directory, a store).
pub async fn start_with(
    h: &Harness,
    extra: &[&str],
    token: Option<&str>,
    env: &[(&str, String)],
) -> Server {
    deputy_llm::install_crypto_provider();
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut cmd = h.cmd(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(t) = token {
        cmd.env("DEPUTY_SERVE_TOKENS", format!("other-token,{t}"));
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("deputy serve did not start")
        .unwrap()
        .unwrap();
    let url = first
        .strip_prefix("deputy serve listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    Server {
        child: Some(child),
        url,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        token: token.map(str::to_string),
    }
}

impl Server {
    /// Another client of the same server, with `token`.
    pub fn as_token(&self, token: &str) -> Server {
        Server {
            child: None,
            url: self.url.clone(),
            http: self.http.clone(),
            token: Some(token.to_string()),
        }
    }

    /// Kill the server process (SIGKILL) and wait for it.
    pub async fn kill(&mut self) {
        if let Some(c) = &mut self.child {
            c.start_kill().unwrap();
            c.wait().await.unwrap();
        }
    }

    /// Send the server SIGTERM, as Kubernetes or Docker would to stop it.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().and_then(|c| c.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    }

    /// Send the server `signal` (SIGSTOP: a worker alive but not answering).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().and_then(|c| c.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    }

    /// Wait up to `limit` for the server process to exit; its exit code.
    pub async fn exited(&mut self, limit: Duration) -> Option<i32> {
        let c = self.child.as_mut().unwrap();
        let status = tokio::time::timeout(limit, c.wait())
            .await
            .unwrap_or_else(|_| panic!("deputy serve still running after {limit:?}"))
            .unwrap();
        status.code()
    }

    /// Poll until `path` answers `status` (within 10 s).
    pub async fn until_status(&self, path: &str, status: u16) -> Value {
        let started = Instant::now();
        loop {
            let (st, v) = self.get(path).await;
            if st == status {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{path}: {st} {v}, never {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `n` POSTs of `body` to `path` sent all at once, spread over `servers` (same token);
    /// their answers.
    pub async fn burst(
        servers: &[&Server],
        n: usize,
        path: &str,
        body: Value,
    ) -> Vec<(u16, Value)> {
        let mut tasks = Vec::new();
        for i in 0..n {
            let s = &servers[i % servers.len()];
            let s = s.as_token(s.token.as_deref().unwrap_or_default());
            let (path, body) = (path.to_string(), body.clone());
            tasks.push(tokio::spawn(async move { s.post(&path, body).await }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    /// Poll until the session's run has finished.
    pub async fn finished(&self, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let (s, v) = self.get(&format!("/v1/sessions/{id}")).await;
            assert_eq!(s, 200, "{v}");
            if v["phase"] == "finished" {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never finished: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The SSE stream as (id, event type, data), read to its end.
    pub async fn events(&self, id: &str, last: Option<usize>) -> Vec<(usize, String, Value)> {
        let mut r = self.req(reqwest::Method::GET, &format!("/v1/sessions/{id}/events"));
        if let Some(l) = last {
            r = r.header("Last-Event-ID", l.to_string());
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let text = tokio::time::timeout(Duration::from_secs(30), resp.text())
            .await
            .expect("the stream did not end")
            .unwrap();
        let mut out = Vec::new();
        for block in text.split("\n\n") {
            let (mut i, mut t, mut d) = (None, String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    i = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    t = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    d = serde_json::from_str(v).unwrap();
                }
            }
            if let Some(i) = i {
                out.push((i, t, d));
            }
        }
        out
    }
}

/// A git repository at `WS/upstream` with `files` in one commit on `main`, for `repo` sessions.
pub fn upstream(ws: &std::path::Path, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = ws.join("upstream");
    std::fs::create_dir_all(&dir).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
        git(&["add", name]);
    }
    git(&["commit", "-qm", "first"]);
    dir
}

/// Two tokens on `s` (and `others`, more workers of the same store): a workspace belongs to the
/// token that used it first; the other token naming it, a directory inside it, or one holding
/// it gets 404; and a command of one tenant cannot read the other's files.
pub async fn workspaces_are_tenants(h: &Harness, s: &Server, others: &[&Server]) {
    std::fs::create_dir_all(h.ws.join("a/sub")).unwrap();
    std::fs::create_dir_all(h.ws.join("b")).unwrap();
    std::fs::write(h.ws.join("a/secret.txt"), "tenant-a-secret-4471\n").unwrap();
    let b_tok = s.as_token("other-token");
    let (st, v) = s
        .post("/v1/sessions", json!({"prompt": "go", "workspace": "a"}))
        .await;
    assert_eq!(st, 202, "{v}");
    s.finished(v["id"].as_str().unwrap()).await;
    let (st, v) = b_tok
        .post("/v1/sessions", json!({"prompt": "go", "workspace": "b"}))
        .await;
    assert_eq!(st, 202, "{v}");
    let done = b_tok.finished(v["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    for srv in std::iter::once(s).chain(others.iter().copied()) {
        let theirs = srv.as_token("other-token");
        let abs = h.ws.join("a").display().to_string();
        for w in ["a", "a/sub", abs.as_str(), "", "."] {
            let (st, v) = theirs
                .post("/v1/sessions", json!({"prompt": "go", "workspace": w}))
                .await;
            assert_eq!(st, 404, "token B named {w:?}: {v}");
        }
        let mine = srv.as_token(s.token.as_deref().unwrap());
        let (st, v) = mine
            .post("/v1/sessions", json!({"prompt": "go", "workspace": "b"}))
            .await;
        assert_eq!(st, 404, "token A named b: {v}");
    }
    // What B's command printed (the result that names B's workspace): none of A's files,
    // while A's own command did read its file.
    let results: Vec<String> = h
        .mock
        .requests()
        .iter()
        .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    let b_dir = format!("pwd={}", h.ws.join("b").display());
    let a_dir = format!("pwd={}", h.ws.join("a").display());
    assert!(
        results
            .iter()
            .any(|r| r.contains(&a_dir) && r.contains("tenant-a-secret-4471"))
    );
    let b: Vec<&String> = results.iter().filter(|r| r.contains(&b_dir)).collect();
    assert!(!b.is_empty(), "{results:?}");
    assert!(
        b.iter().all(|r| !r.contains("tenant-a-secret-4471")),
        "B read A's file: {b:?}"
    );
}

/// The mock script for [`idempotent_posts`].
pub const IDEMPOTENT: &str = "steps:\n  - text: unused\nroutes:\n  - when: {last_user_contains: \"idem-job\"}\n    steps:\n      - text: job done\n  - when: {last_user_contains: \"idem-more\"}\n    steps:\n      - text: unused\n      - text: more done\n";

impl Server {
    /// POST `body` to `path` with `Idempotency-Key: key`.
    pub async fn post_keyed(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// How many model requests a prompt containing `needle` caused (the last user message of
/// each request).
pub fn runs_of(h: &Harness, needle: &str) -> usize {
    h.mock
        .requests()
        .iter()
        .filter(|r| {
            r.body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .is_some_and(|c| c.contains(needle))
        })
        .count()
}

/// A retried POST with its `Idempotency-Key` gets the first answer and runs nothing again — a
/// new session, and a continuation — whichever of `a` and `b` (the same server, or two workers
/// of one store) it reaches; the key with another body is a 422, a malformed one a 400. Judged
/// by the model requests each prompt caused (the mock plays [`IDEMPOTENT`]).
pub async fn idempotent_posts(h: &Harness, a: &Server, b: &Server) {
    let runs = |needle: &str| runs_of(h, needle);
    let (st, _) = a
        .post_keyed("/v1/sessions", "bad key", json!({"prompt": "idem-job"}))
        .await;
    assert_eq!(st, 400);
    let job = json!({"prompt": "idem-job"});
    let (st, first) = a.post_keyed("/v1/sessions", "key-1", job.clone()).await;
    assert_eq!(st, 202, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    // The answer was lost; the client retries, perhaps on another worker.
    let (st, again) = b.post_keyed("/v1/sessions", "key-1", job.clone()).await;
    assert_eq!(
        (st, again["id"].as_str()),
        (202, Some(id.as_str())),
        "{again}"
    );
    let done = a.finished(&id).await;
    assert_eq!(done["result"], "job done", "{done}");
    let (st, again) = b.post_keyed("/v1/sessions", "key-1", job).await;
    assert_eq!(
        (st, again["id"].as_str()),
        (202, Some(id.as_str())),
        "{again}"
    );
    assert_eq!(runs("idem-job"), 1, "the job ran more than once");
    let (st, v) = a
        .post_keyed("/v1/sessions", "key-1", json!({"prompt": "idem-other"}))
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{v}"
    );

    let more = format!("/v1/sessions/{id}/messages");
    let (st, v) = a
        .post_keyed(&more, "msg-1", json!({"prompt": "idem-more"}))
        .await;
    assert_eq!(st, 202, "{v}");
    let (st, v) = b
        .post_keyed(&more, "msg-1", json!({"prompt": "idem-more"}))
        .await;
    assert_eq!((st, v["id"].as_str()), (202, Some(id.as_str())), "{v}");
    let done = a.finished(&id).await;
    assert_eq!(done["result"], "more done", "{done}");
    let (st, _) = b
        .post_keyed(&more, "msg-1", json!({"prompt": "idem-more"}))
        .await;
    assert_eq!(st, 202);
    assert_eq!(runs("idem-more"), 1, "the continuation ran more than once");
    h.assert_strict_ok();
}

/// The ids `GET /v1/sessions{q}` lists, and the whole answer.
async fn listed(s: &Server, q: &str) -> (Vec<String>, Value) {
    let path = format!("/v1/sessions{q}");
    let (st, v) = s.get(&path).await;
    assert_eq!(st, 200, "{path}: {v}");
    let ids = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    (ids, v)
}

/// The status of `DELETE path`.
async fn del(s: &Server, path: &str) -> u16 {
    let r = s.req(reqwest::Method::DELETE, path).send().await.unwrap();
    r.status().as_u16()
}

/// The mock script for [`finding_sessions`]: every job answers at once, a `slow` one runs a
/// command and answers after a while.
pub const FINDING: &str = "steps:\n  - text: done\nrepeat_last: true\nroutes:\n  - when: {last_user_contains: \"slow\"}\n    steps:\n      - tool_calls:\n          - {name: bash, arguments: {command: \"echo hi\"}}\n      - text: slow done\n        delay_ms: 2500\n";

/// `GET /v1/sessions` lists a token's own sessions newest first, pages them without repeats,
/// filters by phase, status, agent, labels and time; `metadata` is kept and checked;
/// `DELETE` forgets a finished session (409 while it runs, 404 for another token's). Requests
/// alternate between `a` and `b` (one server, or two workers of one store).
pub async fn finding_sessions(h: &Harness, a: &Server, b: &Server) {
    for d in ["mine", "theirs"] {
        std::fs::create_dir_all(h.ws.join(d)).unwrap();
    }
    let job = |meta: Value| json!({"prompt": "job", "workspace": "mine", "metadata": meta});
    let mut ids = Vec::new();
    for (i, meta) in [
        json!({"team": "infra", "ci": "1"}),
        json!({"team": "web"}),
        json!({}),
    ]
    .into_iter()
    .enumerate()
    {
        let s = if i % 2 == 0 { a } else { b };
        let (st, v) = s.post("/v1/sessions", job(meta)).await;
        assert_eq!(st, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        a.finished(id).await;
    }
    let (st, v) = a
        .as_token("other-token")
        .post(
            "/v1/sessions",
            json!({"prompt": "job", "workspace": "theirs"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let theirs = v["id"].as_str().unwrap().to_string();
    let (st, v) = a.post("/v1/sessions", job(json!({"bad key": "x"}))).await;
    assert_eq!(st, 422, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("bad key"), "{v}");

    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let (all, v) = listed(b, "").await;
    assert_eq!(all, newest_first, "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
    let first = &v["sessions"][2];
    assert_eq!(
        (first["metadata"]["team"].as_str(), first["phase"].as_str()),
        (Some("infra"), Some("finished")),
        "{v}"
    );
    assert_eq!(first["status"], "completed", "{v}");
    let (st, one) = a.get(&format!("/v1/sessions/{}", ids[0])).await;
    assert_eq!(st, 200);
    assert_eq!(
        one["metadata"],
        json!({"team": "infra", "ci": "1"}),
        "{one}"
    );
    assert_eq!(one["created_at"], first["created_at"], "{one}");
    assert!(one["created_at"].as_str().unwrap().ends_with('Z'), "{one}");

    // Pages: two, then one, then no cursor.
    let (p1, v1) = listed(a, "?limit=2").await;
    let cursor = v1["next_cursor"].as_str().unwrap().to_string();
    let (p2, v2) = listed(b, &format!("?limit=2&cursor={cursor}")).await;
    assert!(v2["next_cursor"].is_null(), "{v2}");
    assert_eq!([p1, p2].concat(), newest_first);

    for (q, want) in [
        ("?label=team%3Dinfra", vec![ids[0].clone()]),
        ("?label=team=infra&label=ci=1", vec![ids[0].clone()]),
        ("?label=team=infra&label=ci=2", vec![]),
        ("?label=team=web", vec![ids[1].clone()]),
        (
            "?phase=finished&status=completed&agent=general",
            newest_first.clone(),
        ),
        ("?phase=running", vec![]),
        ("?status=error", vec![]),
        ("?agent=reviewer", vec![]),
    ] {
        assert_eq!(listed(a, q).await.0, want, "{q}");
    }
    let after = v["sessions"][1]["created_at"].as_str().unwrap().to_string();
    let (newer, _) = listed(a, &format!("?created_after={}", after.replace('+', "%2B"))).await;
    assert_eq!(newer, vec![ids[2].clone()]);
    for q in [
        "?limit=0",
        "?label=x",
        "?sort=asc",
        "?cursor=zz",
        "?created_after=today",
    ] {
        let (st, v) = a.get(&format!("/v1/sessions{q}")).await;
        assert_eq!(st, 400, "{q}: {v}");
    }
    // Another token's list has only its own.
    let (other, _) = listed(&a.as_token("other-token"), "").await;
    assert_eq!(other, vec![theirs.clone()]);

    // Delete: not another token's, not while running; then gone everywhere.
    let gone = format!("/v1/sessions/{}", ids[0]);
    assert_eq!(del(&a.as_token("other-token"), &gone).await, 404);
    let (st, v) = a
        .post(
            "/v1/sessions",
            json!({"prompt": "slow job", "workspace": "mine"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let slow = v["id"].as_str().unwrap().to_string();
    // While it runs, GET shows its turns and usage so far.
    let t0 = Instant::now();
    let running = loop {
        let (_, v) = b.get(&format!("/v1/sessions/{slow}")).await;
        if v["num_turns"] == 1 {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no progress shown: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(running["phase"], "running", "{running}");
    assert!(
        running["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{running}"
    );
    assert!(running["result"].is_null(), "{running}");
    assert_eq!(del(b, &format!("/v1/sessions/{slow}")).await, 409);
    assert_eq!(del(a, &gone).await, 204);
    assert_eq!(b.get(&gone).await.0, 404);
    assert_eq!(del(b, &gone).await, 404);
    a.finished(&slow).await;
    assert_eq!(del(b, &format!("/v1/sessions/{slow}")).await, 204);
    let (left, _) = listed(b, "").await;
    assert_eq!(left, vec![ids[2].clone(), ids[1].clone()]);
    h.assert_strict_ok();
}

/// Two sessions writing the same file of one repository, and one that changes nothing.
pub const WORKTREES: &str = "steps:\n  - text: looked only\nrepeat_last: true\nroutes:\n  - when: {last_user_contains: \"write one\"}\n    steps:\n      - tool_calls: [{name: write, arguments: {path: shared.txt, content: \"one\\n\"}}]\n      - {text: \"One wrote shared.txt\", delay_ms: 400}\n  - when: {last_user_contains: \"write two\"}\n    steps:\n      - tool_calls: [{name: write, arguments: {path: shared.txt, content: \"two\\n\"}}]\n      - {text: \"Two wrote shared.txt\", delay_ms: 400}\n";

/// `isolation: "worktree"`: two sessions on one repository at once each end as a commit on a
/// branch of their own, with the main tree untouched; one that changes nothing says so; a
/// workspace that is not a repository's top, or a `repo` session, is a 422; DELETE removes a
/// session's worktree and keeps a branch that holds a change. Requests alternate between `a`
/// and `b` (one server, or two workers of one store).
pub async fn worktree_sessions(h: &Harness, a: &Server, b: &Server) {
    use super::git;
    let proj = h.ws.join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    git(&proj, &["init", "-q", "-b", "main"]);
    std::fs::write(proj.join("shared.txt"), "base\n").unwrap();
    git(&proj, &["add", "."]);
    git(
        &proj,
        &[
            "-c",
            "user.name=o",
            "-c",
            "user.email=o@e",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    );
    std::fs::create_dir_all(h.ws.join("plain")).unwrap();

    let job = |prompt: &str, ws: &str| json!({"prompt": prompt, "workspace": ws, "isolation": "worktree"});
    let mut ids = Vec::new();
    for (s, prompt) in [(a, "write one"), (b, "write two"), (a, "look")] {
        let (st, v) = s.post("/v1/sessions", job(prompt, "proj")).await;
        assert_eq!(st, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let mut branches = Vec::new();
    for (id, want) in ids.iter().zip(["one\n", "two\n"]) {
        let v = a.finished(id).await;
        assert_eq!(v["status"], "completed", "{v}");
        let w = &v["worktree"];
        assert_eq!(w["outcome"], "committed", "{v}");
        assert_eq!(w["files_changed"], 1, "{v}");
        let branch = w["branch"].as_str().unwrap().to_string();
        assert!(branch.starts_with("deputy/general-"), "{branch}");
        assert_eq!(git(&proj, &["show", &format!("{branch}:shared.txt")]), want);
        assert_eq!(
            git(&proj, &["rev-parse", &format!("{branch}~1")]),
            git(&proj, &["rev-parse", "main"])
        );
        branches.push(branch);
    }
    assert_ne!(branches[0], branches[1]);
    let v = b.finished(&ids[2]).await;
    assert_eq!(v["worktree"]["outcome"], "unchanged", "{v}");
    assert_eq!(
        std::fs::read_to_string(proj.join("shared.txt")).unwrap(),
        "base\n"
    );
    assert_eq!(git(&proj, &["status", "--porcelain"]), "");

    for (body, says) in [
        (job("x", "plain"), "top of a git repository"),
        (
            json!({"prompt": "x", "isolation": "worktree", "repo": {"url": format!("file://{}", proj.display())}}),
            "`repo`",
        ),
    ] {
        let (st, v) = a.post("/v1/sessions", body).await;
        assert_eq!(st, 422, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(says), "{v}");
    }

    // Deleting ends a session's worktree: a branch with a change stays, one without goes.
    let worktrees = || {
        git(&proj, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count()
    };
    assert_eq!(worktrees(), 4);
    for id in [&ids[0], &ids[2]] {
        let r = a
            .req(reqwest::Method::DELETE, &format!("/v1/sessions/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    assert_eq!(worktrees(), 2);
    let left = git(
        &proj,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/deputy/",
        ],
    );
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    let mut kept = vec![branches[0].as_str(), branches[1].as_str()];
    kept.sort();
    assert_eq!(left, kept);
}
