//! End-to-end: several `deputy serve` workers sharing one real PostgreSQL store (the real
//! binary, a real server started for each test, the strict mock model): every session runs
//! exactly once whichever worker takes it; a worker killed with SIGKILL mid-session loses no
//! session and no tool runs twice; an SSE client moves between workers without missing an
//! event; approvals, cancel, messages and tokens work across workers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::Harness;
use common::serve::{self, Server, start_with};
use serde_json::{Value, json};

/// A worker on `store`, with a state directory of its own (`name`).
async fn worker(
    h: &Harness,
    store: &str,
    name: &str,
    extra: &[&str],
    token: Option<&str>,
) -> Server {
    let mut args = vec!["--store", store];
    args.extend_from_slice(extra);
    let home = h.home.join(name);
    std::fs::create_dir_all(&home).unwrap();
    start_with(
        h,
        &args,
        token,
        &[("DEPUTY_HOME", home.display().to_string())],
    )
    .await
}

/// Submit `n` sessions to `s`, each in a directory of its own (`WS/sN`); their ids.
async fn submit(h: &Harness, s: &[&Server], n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        std::fs::create_dir_all(h.ws.join(format!("s{i}"))).unwrap();
        // Spread over the workers given: any of them may run it.
        let (st, v) = s[i % s.len()]
            .post(
                "/v1/sessions",
                json!({"prompt": format!("session {i}"), "workspace": format!("s{i}")}),
            )
            .await;
        assert_eq!(st, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

/// The ids of the sessions whose journals a worker holds.
fn journals(h: &Harness, name: &str) -> HashSet<String> {
    std::fs::read_dir(h.home.join(name).join("sessions"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until every session in `ids` has finished, asking any of `servers`.
async fn all_finished(servers: &[&Server], ids: &[String], limit: Duration) -> Vec<Value> {
    let started = Instant::now();
    let mut done = BTreeMap::new();
    let mut turn = 0;
    while done.len() < ids.len() {
        let waiting: Vec<&String> = ids.iter().filter(|i| !done.contains_key(*i)).collect();
        for id in waiting {
            let s = servers[turn % servers.len()];
            turn += 1;
            let (st, v) = s.get(&format!("/v1/sessions/{id}")).await;
            assert_eq!(st, 200, "{v}");
            if v["phase"] == "finished" {
                done.insert(id.clone(), v);
            }
        }
        assert!(
            started.elapsed() < limit,
            "{} of {} sessions finished in {limit:?}",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids.iter().map(|i| done.remove(i).unwrap()).collect()
}

/// Every tool result the model was sent, per session (its first prompt) and call id, from the
/// mock's request log. A call run once and answered once shows up once per later request of
/// its conversation.
fn results_per_call(h: &Harness) -> BTreeMap<(String, String), Vec<String>> {
    let mut seen: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in h.mock.requests() {
        let messages = r.body["messages"].as_array().unwrap();
        let prompt = messages
            .iter()
            .find(|m| m["role"] == "user")
            .map(|m| m["content"].to_string())
            .unwrap_or_default();
        for m in messages {
            if m["role"] == "tool" {
                let call = m["tool_call_id"].as_str().unwrap().to_string();
                seen.entry((prompt.clone(), call))
                    .or_default()
                    .push(m["content"].as_str().unwrap_or("").to_string());
            }
        }
    }
    seen
}

const ONCE: &str = "steps:\n  - tool_calls:\n      - {name: bash, arguments: {command: \"echo once >> ran.log\"}}\n  - text: done\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_run_a_hundred_sessions_each_exactly_once() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(ONCE).await;
    let a = worker(
        &h,
        &pg.url,
        "w1",
        &[
            "--max-sessions",
            "8",
            "--sessions-per-token",
            "200",
            "--auto-approve",
        ],
        None,
    )
    .await;
    let b = worker(
        &h,
        &pg.url,
        "w2",
        &[
            "--max-sessions",
            "8",
            "--sessions-per-token",
            "200",
            "--auto-approve",
        ],
        None,
    )
    .await;
    let ids = submit(&h, &[&a, &b], 100).await;
    let done = all_finished(&[&a, &b], &ids, Duration::from_secs(240)).await;
    for (i, v) in done.iter().enumerate() {
        assert_eq!(v["status"], "completed", "{v}");
        assert_eq!(v["result"], "done", "{v}");
        assert_eq!(
            std::fs::read_to_string(h.ws.join(format!("s{i}/ran.log"))).unwrap(),
            "once\n",
            "session {i} ran its command other than once"
        );
    }
    // Two model requests per session, no more; every call answered exactly once per request
    // that carried it (a call's result appears once in each later request of its session).
    assert_eq!(h.mock.requests().len(), 200);
    h.assert_strict_ok();
    let results = results_per_call(&h);
    assert_eq!(results.len(), 100);
    assert!(results.values().all(|r| r.len() == 1), "{results:?}");
    // Both workers took some of the work, and no session ran on both.
    let (j1, j2) = (journals(&h, "w1"), journals(&h, "w2"));
    assert!(
        !j1.is_empty() && !j2.is_empty(),
        "{} / {}",
        j1.len(),
        j2.len()
    );
    assert_eq!(j1.len() + j2.len(), 100, "a session ran on both workers");
    assert!(j1.is_disjoint(&j2));
}

/// SIGTERM to a worker: what finishes within `--drain` finishes there; what does not is handed
/// over at once (not when its 60 s lease runs out) and resumed by the other worker, its
/// interrupted command not run again and the call after it (never started) run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_hands_running_sessions_over_without_waiting_for_the_lease() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(serve::DELAYED).await;
    let flags = ["--drain", "2", "--lease", "60"];
    let mut a = worker(&h, &pg.url, "w1", &flags, None).await;
    let ids = serve::delayed(&h, &a, &[("quick", "1.25"), ("slow", "62.41")]).await;
    let b = worker(&h, &pg.url, "w2", &flags, None).await;
    a.terminate();
    let stopped = Instant::now();
    assert_eq!(a.exited(Duration::from_secs(20)).await, Some(0));
    let done = all_finished(&[&b], &ids, Duration::from_secs(20)).await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{took:?}: waited for the lease"
    );
    for v in &done {
        assert_eq!(v["status"], "completed", "{v}");
        assert_eq!(v["result"], "finished", "{v}");
    }
    // Each ran once: the quick one to its end; the slow one was cut off, so what it wrote is
    // there once (a sandbox writing in place) or not at all (a layered one discards a killed
    // command's layer) — never twice.
    assert_eq!(
        std::fs::read_to_string(h.ws.join("quick/ran.log")).unwrap(),
        "ran\n"
    );
    let slow = std::fs::read_to_string(h.ws.join("slow/ran.log")).unwrap_or_default();
    assert!(slow.is_empty() || slow == "ran\n", "{slow:?}");
    assert!(h.ws.join("quick/slept.txt").exists());
    assert!(!h.ws.join("slow/slept.txt").exists());
    // The write after the slow command had not started when it was handed over: the worker
    // that took it over ran it.
    for d in ["quick", "slow"] {
        assert_eq!(
            std::fs::read_to_string(h.ws.join(d).join("after.txt"))
                .ok()
                .as_deref(),
            Some("after"),
            "{d}"
        );
    }
    assert!(
        common::processes_with("sleep 62.41").is_empty(),
        "the slow command survived"
    );
    // The quick one ended on the first worker; the slow one was resumed on the second, its
    // interrupted call answered as such.
    let (j1, j2) = (journals(&h, "w1"), journals(&h, "w2"));
    assert!(
        j1.contains(&ids[0]) && !j2.contains(&ids[0]),
        "{j1:?} {j2:?}"
    );
    assert!(j2.contains(&ids[1]), "{j2:?}");
    let results = h.tool_results();
    assert!(
        results.iter().any(|r| r.contains("interrupted")),
        "{results:?}"
    );
    h.assert_strict_ok();
}

/// schemathesis against a worker on the shared store: its handlers are other code than the
/// embedded store's, held to the same document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_a_worker_on_postgres() {
    let Some(st) = common::outside::schemathesis() else {
        return;
    };
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::new(deputy_mockllm::Script::text("ok")).await;
    let s = worker(&h, &pg.url, "w1", serve::UNLIMITED, Some("tok")).await;
    serve::schemathesis(&st, &h, &s).await;
}

/// The per-token cap is counted in the store: a burst spread over two workers gets no more
/// sessions than one worker would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_over_two_workers_gets_no_more_sessions_than_the_tokens_cap() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(serve::SLOW).await;
    let flags = ["--sessions-per-token", "2"];
    let a = worker(&h, &pg.url, "w1", &flags, Some("mine")).await;
    let b = worker(&h, &pg.url, "w2", &flags, Some("mine")).await;
    serve::the_cap_holds(&h, &[&a, &b]).await;
    serve::nul_is_refused(&a).await;
}

/// A workspace belongs to the token that used it first, on every worker of the store (the
/// claims are in PostgreSQL, each worker has its own state directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_belongs_to_one_token_across_workers() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(serve::PEEK).await;
    let a = worker(&h, &pg.url, "w1", &[], Some("mine")).await;
    let b = worker(&h, &pg.url, "w2", &[], Some("mine")).await;
    serve::workspaces_are_tenants(&h, &a, &[&b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_session_loses_nothing_and_runs_no_tool_twice() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    // Each session's command notes that it ran, then takes long enough to be cut off; the
    // write after it (the same response) never starts on the killed worker.
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: bash, arguments: {command: \"echo ran >> ran.log; sleep 5; echo slept >> ran.log\"}}\n      - {name: write, arguments: {path: after.txt, content: written}}\n  - text: finished after all\n",
    )
    .await;
    let flags = ["--max-sessions", "4", "--lease", "2", "--auto-approve"];
    let mut a = worker(&h, &pg.url, "w1", &flags, None).await;
    let ids = submit(&h, &[&a], 10).await;
    // Four are running their command on the first worker, six wait in the queue. (A running
    // command's writes land when it ends: its start is in the process table.)
    let started = Instant::now();
    while common::processes_with("echo ran >> ran.log; sleep 5").len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the commands never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = worker(&h, &pg.url, "w2", &flags, None).await;
    a.kill().await;
    let killed_at = Instant::now();

    let done = all_finished(&[&b], &ids, Duration::from_secs(120)).await;
    let mut interrupted = 0;
    for (i, v) in done.iter().enumerate() {
        assert_eq!(v["status"], "completed", "{v}");
        assert_eq!(v["result"], "finished after all", "{v}");
        let log = std::fs::read_to_string(h.ws.join(format!("s{i}/ran.log"))).unwrap_or_default();
        // Run once, to its end or cut off by the kill — never a second time. A cut-off
        // command's writes are there once (written in place) or not at all (its layer,
        // discarded).
        assert!(log.matches("ran").count() <= 1, "session {i}: {log:?}");
        if !log.contains("slept") {
            interrupted += 1;
        } else {
            assert_eq!(log, "ran\nslept\n", "session {i}");
        }
        // The call that never started was run by the worker that took over (exactly once:
        // the write tool refuses nothing here, and its result is not an interruption).
        let after = std::fs::read_to_string(h.ws.join(format!("s{i}/after.txt")));
        assert_eq!(after.ok().as_deref(), Some("written"), "session {i}");
    }
    assert!(interrupted >= 4, "only {interrupted} sessions were cut off");
    // The model was told the cut-off calls were interrupted, and was never asked to make them
    // again: one call per session, and its one result is either the output or the notice.
    h.assert_strict_ok();
    let results = results_per_call(&h);
    assert_eq!(results.len(), 20, "{results:?}");
    let notices = results
        .values()
        .filter(|r| r.iter().all(|c| c.contains("interrupted")))
        .count();
    assert_eq!(notices, interrupted, "{results:?}");
    assert_eq!(h.mock.requests().len(), 20);
    // The cut-off sessions waited for the lease to run out (2 s), not much more.
    assert!(killed_at.elapsed() < Duration::from_secs(60));
    // Nothing the killed worker started is still running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = common::processes_with("echo slept >> ran.log");
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_stream_moves_between_workers_without_missing_an_event() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: a.txt, content: a}}\n  - tool_calls:\n      - {name: bash, arguments: {command: \"sleep 1; cat a.txt\"}}\n  - tool_calls:\n      - {name: write, arguments: {path: b.txt, content: b}}\n  - text: three steps\n",
    )
    .await;
    let a = worker(&h, &pg.url, "w1", &["--auto-approve"], None).await;
    let b = worker(&h, &pg.url, "w2", &["--auto-approve"], None).await;
    let (_, v) = a.post("/v1/sessions", json!({"prompt": "go"})).await;
    let id = v["id"].as_str().unwrap().to_string();

    // Read the first few events live from one worker, then drop the connection.
    let resp = a
        .req(reqwest::Method::GET, &format!("/v1/sessions/{id}/events"))
        .send()
        .await
        .unwrap();
    let mut resp = resp;
    let mut text = String::new();
    while text.matches("\n\n").count() < 4 {
        let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
            .await
            .expect("no events")
            .unwrap()
            .expect("the stream ended early");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let first: Vec<(usize, String)> = text
        .split("\n\n")
        .filter_map(|block| {
            let id = block.lines().find_map(|l| l.strip_prefix("id: "))?;
            let ev = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            Some((id.parse().unwrap(), ev.to_string()))
        })
        .collect();
    let last = first.last().unwrap().0;
    // Reconnect to the other worker from there, to the end of the run.
    let rest = b.events(&id, Some(last)).await;
    let whole = b.events(&id, None).await;
    let mut joined: Vec<(usize, String)> = first.clone();
    joined.extend(rest.iter().map(|(i, t, _)| (*i, t.clone())));
    let all: Vec<(usize, String)> = whole.iter().map(|(i, t, _)| (*i, t.clone())).collect();
    assert_eq!(joined, all, "the resumed stream missed or repeated events");
    assert_eq!(all.last().unwrap().1, "session.finished");
    // The session's own events are its journal, every one (streamed deltas are in neither).
    let own: Vec<u64> = whole
        .iter()
        .filter(|(_, _, d)| d["session_id"] == id.as_str())
        .map(|(_, _, d)| d["seq"].as_u64().unwrap())
        .collect();
    let journal = ["w1", "w2"]
        .iter()
        .map(|w| {
            h.home
                .join(w)
                .join("sessions")
                .join(&id)
                .join("events.jsonl")
        })
        .find(|p| p.exists())
        .unwrap();
    let journaled: Vec<u64> = std::fs::read_to_string(journal)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(own, journaled);
    let done = b.finished(&id).await;
    assert_eq!(done["result"], "three steps", "{done}");
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_cancel_messages_and_tokens_work_across_workers() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: asked.txt, content: \"ok\"}}\n  - text: wrote it\nroutes:\n  - when: {last_user_contains: \"sleep\"}\n    steps:\n      - tool_calls:\n          - {name: bash, arguments: {command: \"sleep 60\"}}\n      - text: slept\n  - when: {last_user_contains: \"once more\"}\n    steps:\n      - text: unused\n      - text: unused\n      - text: continued\n",
    )
    .await;
    h.write_user_config("[permission]\nedit = \"ask\"\n");
    // The same tokens, listed in another order: a token is the same owner on every worker.
    let a = worker(&h, &pg.url, "w1", &[], Some("mine")).await;
    std::fs::create_dir_all(h.home.join("w2")).unwrap();
    let b = start_with(
        &h,
        &["--store", &pg.url],
        Some("mine"),
        &[
            ("DEPUTY_HOME", h.home.join("w2").display().to_string()),
            ("DEPUTY_SERVE_TOKENS", "mine,other-token".into()),
        ],
    )
    .await;
    let (st, v) = a.post("/v1/sessions", json!({"prompt": "write it"})).await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    // Another token does not see it, on either worker.
    let stranger = b.as_token("other-token");
    let (st, _) = stranger.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(st, 404);

    // The call waits for an answer, listed and answered through either worker.
    let started = Instant::now();
    let pending = loop {
        let (st, v) = b.get(&format!("/v1/sessions/{id}/approvals")).await;
        assert_eq!(st, 200, "{v}");
        if let Some(p) = v.as_array().and_then(|a| a.first()).cloned() {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "nothing asked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(pending["subject"], "asked.txt");
    let (st, v) = stranger.get(&format!("/v1/sessions/{id}/approvals")).await;
    assert_eq!(st, 404, "{v}");
    let call = pending["call_id"].as_str().unwrap();
    let (st, v) = b
        .post(
            &format!("/v1/sessions/{id}/approvals/{call}"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let done = a.finished(&id).await;
    assert_eq!(done["result"], "wrote it", "{done}");
    assert_eq!(
        std::fs::read_to_string(h.ws.join("asked.txt")).unwrap(),
        "ok"
    );
    let (st, _) = b
        .post(
            &format!("/v1/sessions/{id}/approvals/{call}"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(st, 404);

    // Continued through the other worker.
    let (st, v) = b
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"prompt": "once more"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let done = a.finished(&id).await;
    assert_eq!(done["result"], "continued", "{done}");

    // A running session is cancelled from the worker that does not run it.
    let (_, v) = a.post("/v1/sessions", json!({"prompt": "sleep"})).await;
    let long = v["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let (_, v) = a.get(&format!("/v1/sessions/{long}")).await;
        if v["phase"] == "running" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, v) = b
        .post(
            &format!("/v1/sessions/{long}/messages"),
            json!({"prompt": "x"}),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    let asked = Instant::now();
    for s in [&a, &b] {
        let (st, _) = s
            .post(&format!("/v1/sessions/{long}/cancel"), json!({}))
            .await;
        assert_eq!(st, 202);
    }
    let done = b.finished(&long).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(asked.elapsed() < Duration::from_secs(10));
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_used_is_a_clear_error() {
    let h = Harness::yaml("steps:\n  - text: x\n").await;
    let out = h.run(&["serve", "--store", "mysql://u:secret@db/x"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--store") && err.contains("postgres://"),
        "{err}"
    );
    assert!(!err.contains("secret"), "the password was printed: {err}");
    // Nothing listens on port 9 of loopback.
    let out = h
        .run(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "postgres://u:secret@127.0.0.1:9/x",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL store"), "{err}");
    assert!(!err.contains("secret"), "the password was printed: {err}");
    let out = h.run(&["serve", "--lease", "0"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repo_session_taken_over_keeps_its_change_and_continues_from_it() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(
        "steps:\n  - tool_calls:\n      - {name: write, arguments: {path: hello.txt, content: \"hi\\n\"}}\n  - tool_calls:\n      - {name: bash, arguments: {command: \"sleep 8\"}}\n  - text: changed\nroutes:\n  - when: {last_user_contains: \"more\"}\n    steps:\n      - text: unused\n      - text: unused\n      - text: unused\n      - tool_calls:\n          - {name: edit, arguments: {path: README.md, old_string: \"one\", new_string: \"two\"}}\n      - text: more done\n",
    )
    .await;
    let upstream = common::serve::upstream(&h.ws, &[("README.md", "one\n")]);
    let flags = ["--lease", "2", "--auto-approve"];
    let mut a = worker(&h, &pg.url, "w1", &flags, None).await;
    let url = format!("file://{}", upstream.display());
    let (st, v) = a
        .post(
            "/v1/sessions",
            json!({"prompt": "change it", "repo": {"url": url}}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // Once the file is written and the long command runs, the change is checkpointed with
    // the next heartbeat; then the worker dies.
    let started = Instant::now();
    // The second request is answered with the long command.
    while h.mock.requests().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never got to the command"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = worker(&h, &pg.url, "w2", &flags, None).await;
    a.kill().await;
    let done = all_finished(&[&b], std::slice::from_ref(&id), Duration::from_secs(60))
        .await
        .remove(0);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"], "changed", "{done}");
    // The new worker cloned afresh and started from the checkpoint: the file is in the patch.
    let patch = done["patch"].as_str().unwrap();
    assert!(
        patch.contains("+++ b/hello.txt") && patch.contains("+hi"),
        "{patch}"
    );

    // The next run starts from the change so far, on whichever worker takes it.
    let (st, v) = b
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"prompt": "more"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let done = b.finished(&id).await;
    assert_eq!(done["result"], "more done", "{done}");
    let patch = done["patch"].as_str().unwrap();
    assert!(
        patch.contains("+hi") && patch.contains("-one") && patch.contains("+two"),
        "{patch}"
    );
    assert_eq!(
        std::fs::read_to_string(upstream.join("README.md")).unwrap(),
        "one\n"
    );
    h.assert_strict_ok();
}

/// A retried POST with its Idempotency-Key runs nothing twice across workers (the key is kept
/// in the store's table), and two workers given the same keyed request at once queue one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_with_its_idempotency_key_runs_once_across_workers() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(serve::IDEMPOTENT).await;
    let a = worker(&h, &pg.url, "w1", &[], Some("tok")).await;
    let b = worker(&h, &pg.url, "w2", &[], Some("tok")).await;
    serve::idempotent_posts(&h, &a, &b).await;
    // At once, on both workers: one session.
    let body = json!({"prompt": "idem-job twice at once"});
    let (x, y) = tokio::join!(
        a.post_keyed("/v1/sessions", "key-2", body.clone()),
        b.post_keyed("/v1/sessions", "key-2", body)
    );
    assert_eq!((x.0, y.0), (202, 202), "{x:?} {y:?}");
    assert_eq!(x.1["id"], y.1["id"], "two sessions for one key");
}

/// Sessions are found again on the shared store: listed, paged, filtered, deleted, whichever
/// worker is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_filtered_and_deleted_across_workers() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(serve::FINDING).await;
    let a = worker(&h, &pg.url, "w1", serve::UNLIMITED, Some("tok")).await;
    let b = worker(&h, &pg.url, "w2", serve::UNLIMITED, Some("tok")).await;
    serve::finding_sessions(&h, &a, &b).await;
}

/// A worker that dies is noticed at once (its liveness lock is released with its connection):
/// its session is taken over within seconds under the default 30 s lease, the command it ran
/// reported interrupted and the call after it run. A worker that is alive but stalled
/// (SIGSTOP: its connections stay open) keeps its session: nobody takes it before its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_worker_is_taken_over_in_seconds_and_a_stalled_one_is_not() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(serve::DELAYED).await;
    let mut a = worker(&h, &pg.url, "w1", &[], None).await;
    let ids = serve::delayed(&h, &a, &[("dies", "47.13")]).await;
    let b = worker(&h, &pg.url, "w2", &[], None).await;
    a.kill().await;
    let killed = Instant::now();
    let done = all_finished(&[&b], &ids, Duration::from_secs(25)).await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{took:?}: waited for the lease"
    );
    assert_eq!(done[0]["status"], "completed", "{}", done[0]);
    assert_eq!(
        std::fs::read_to_string(h.ws.join("dies/after.txt"))
            .ok()
            .as_deref(),
        Some("after")
    );
    let ran = std::fs::read_to_string(h.ws.join("dies/ran.log")).unwrap_or_default();
    assert!(ran.is_empty() || ran == "ran\n", "{ran:?}");

    // Stalled, not dead: b must leave the session alone while a's lease (6 s) lasts.
    let mut c = worker(&h, &pg.url, "w3", &["--lease", "6"], None).await;
    let ids = serve::delayed(&h, &c, &[("stalls", "4.37")]).await;
    c.signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, v) = b.get(&format!("/v1/sessions/{}", ids[0])).await;
    assert_eq!(v["phase"], "running", "{v}");
    c.signal(libc::SIGCONT);
    let done = all_finished(&[&b], &ids, Duration::from_secs(30)).await;
    assert_eq!(done[0]["status"], "completed", "{}", done[0]);
    // It ran to its end where it started: one start, nothing interrupted.
    let events = b.events(&ids[0], None).await;
    let of = |kind: &str| events.iter().filter(|(_, t, _)| t == kind).count();
    assert_eq!(
        of("session.started"),
        1,
        "another worker resumed it: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|(_, _, d)| d["metadata"]["interrupted"] != true),
        "{events:?}"
    );
    assert_eq!(
        std::fs::read_to_string(h.ws.join("stalls/ran.log")).unwrap(),
        "ran\n"
    );
    assert!(h.ws.join("stalls/slept.txt").exists());
    c.kill().await;
    h.assert_strict_ok();
}

/// `/metrics` on a worker counts the store's sessions (every worker's) and this worker's runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_stores_sessions() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    let h = Harness::yaml(ONCE).await;
    let a = worker(&h, &pg.url, "w1", &["--auto-approve"], None).await;
    let ids = submit(&h, &[&a], 3).await;
    all_finished(&[&a], &ids, Duration::from_secs(60)).await;
    let home = h.home.join("w2");
    std::fs::create_dir_all(&home).unwrap();
    let b = serve::start_with(
        &h,
        &["--store", &pg.url],
        None,
        &[
            ("DEPUTY_HOME", home.display().to_string()),
            ("DEPUTY_SERVE_METRICS_TOKEN", "scrape".to_string()),
        ],
    )
    .await;
    let r = b
        .http
        .get(format!("{}/metrics", b.url))
        .bearer_auth("scrape")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("deputy_sessions{phase=\"finished\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("deputy_store_seconds_count{op=\"claim\"}"),
        "{text}"
    );
}

/// `isolation: "worktree"` on the shared store: sessions on one repository, run by whichever
/// worker, each end on a branch of their own; deleting one ends its worktree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worktree_sessions_across_workers() {
    let Some(pg) = common::postgres::start() else {
        return;
    };
    if !common::sandbox_available() {
        return;
    }
    let h = Harness::yaml(serve::WORKTREES).await;
    let a = worker(&h, &pg.url, "w1", serve::UNLIMITED, Some("tok")).await;
    let b = worker(&h, &pg.url, "w2", serve::UNLIMITED, Some("tok")).await;
    serve::worktree_sessions(&h, &a, &b).await;
}
