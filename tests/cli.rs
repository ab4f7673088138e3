//! End-to-end: the CLI habits a newcomer brings (a pipe that never closes, a timeout a CI job can
//! rely on, sessions per workspace, output channels, Claude Code's flag and field names).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Harness, read, sandbox_available};
use deputy_mockllm::{Script, ServeOptions};
use serde_json::Value;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The text of the user messages of a request.
fn user_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_that_never_closes_does_not_hang_the_run() {
    let h = Harness::yaml("steps: [{text: \"done\"}]").await;
    // An orchestrator spawned deputy with a pipe it keeps open and never writes to.
    let mut child = h
        .cmd(&["run", "--verbose", "say done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_open = child.stdin.take().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("deputy waited for a pipe that never closes")
        .unwrap();
    drop(held_open);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "done");
    assert!(
        stderr(&out).contains("nothing was written to in 3 s"),
        "--verbose says why it went on: {}",
        stderr(&out)
    );
    assert_eq!(user_texts(&h.mock.requests()[0].body), ["say done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_that_writes_then_stays_open_gives_what_it_wrote() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::yaml("steps: [{text: \"ok\"}]").await;
    let mut child = h
        .cmd(&["run", "summarize"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"line one\nline two\n").await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("deputy waited for a pipe that went silent")
        .unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sent = user_texts(&h.mock.requests()[0].body).join("\n");
    assert!(
        sent.contains("summarize") && sent.contains("line one\nline two"),
        "{sent}"
    );
}

/// A model that answers in 30 s: `--timeout 2s` ends the run near 2 s (plus a grace of 10% for the
/// summary), not after the model's answer and a summary of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_a_limit_a_ci_job_can_rely_on() {
    let slow = "repeat_last: true\nsteps: [{text: \"too late\", delay_ms: 30000}]";
    for (extra, requests) in [(&[][..], 2), (&["--no-summary"][..], 1)] {
        let h = Harness::yaml(slow).await;
        let mut args = vec!["--timeout", "2s"];
        args.extend_from_slice(extra);
        args.push("work slowly");
        let started = Instant::now();
        let (code, v, err) = h.run_json(&args).await;
        let took = started.elapsed();
        assert_eq!(code, Some(3), "{err}\n{v:#}");
        assert_eq!(v["status"], "timeout");
        assert_eq!(v["subtype"], "error_timeout");
        assert_eq!(v["is_error"], true);
        // Generous for a loaded debug build; without the limit this takes 30 s or more.
        assert!(took < Duration::from_secs(10), "{extra:?} took {took:?}");
        assert_eq!(
            h.mock.requests().len(),
            requests,
            "{extra:?}: the summary request is made only without --no-summary"
        );
        h.assert_strict_ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_last_and_continue_are_per_workspace() {
    let h = Harness::yaml("steps: [{text: \"done\"}]\nrepeat_last: true").await;
    let b = h.dir.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    let b = b.canonicalize().unwrap();

    let (code, va, err) = h.run_json(&["prompt in a"]).await;
    assert_eq!(code, Some(0), "{err}");
    let out = h
        .cmd(&["run", "--output-format", "json", "prompt in b"])
        .current_dir(&b)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let vb: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (a_id, b_id) = (
        va["session_id"].as_str().unwrap(),
        vb["session_id"].as_str().unwrap(),
    );

    // In a, `last` is a's session although b's is newer.
    let (code, v, err) = h.run_json(&["-c", "again"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["session_id"], a_id);
    let last = h.mock.requests().last().unwrap().body.clone();
    let texts = user_texts(&last);
    assert_eq!(texts, ["prompt in a", "again"], "{texts:?}");

    // `sessions list` shows this workspace's sessions; --all shows every one.
    let listed = |all: bool| {
        let h = &h;
        async move {
            let mut args = vec!["sessions", "list", "--json"];
            if all {
                args.push("--all");
            }
            let out = h.run(&args).await;
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(false).await, [a_id]);
    let all = listed(true).await;
    assert!(all.contains(&a_id.to_string()) && all.contains(&b_id.to_string()));

    // Resuming b's session by id from a resumes it in b, with a warning.
    let out = h
        .run(&["resume", "--output-format", "json", b_id, "again"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("ran in {}; resuming it there", b.display())),
        "{}",
        stderr(&out)
    );
    let sent = h.mock.requests().last().unwrap().body.clone();
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains(b.to_str().unwrap()), "{system}");

    // A workspace with no session says so and where to look.
    let empty = h.dir.path().join("c");
    std::fs::create_dir_all(&empty).unwrap();
    let out = h
        .cmd(&["resume", "last"])
        .current_dir(&empty)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no session has run in"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_prune_deletes_old_journals_only() {
    let h = Harness::yaml("steps: [{text: \"ok\"}]\nrepeat_last: true").await;
    for p in ["one", "two"] {
        assert_eq!(h.run(&["run", p]).await.status.code(), Some(0));
    }
    let sessions = h.home.join("state/sessions");
    let mut ids: Vec<String> = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    // Age the first session's journal by 40 days.
    let old = sessions.join(&ids[0]).join("events.jsonl");
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(40 * 86_400))
        .unwrap();

    let out = h
        .run(&["sessions", "prune", "--older-than", "30d", "--dry-run"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), ids[0]);
    assert!(old.exists(), "--dry-run deletes nothing");

    let out = h.run(&["sessions", "prune", "--older-than", "30d"]).await;
    assert_eq!(stdout(&out).trim(), ids[0]);
    assert!(!sessions.join(&ids[0]).exists());
    assert!(sessions.join(&ids[1]).exists());

    let out = h.run(&["sessions", "prune", "--older-than", "soon"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`soon` is not an age"),
        "{}",
        stderr(&out)
    );
}

/// A refused key: stdout stays empty (a script redirecting it gets nothing), the message is on
/// stderr once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_reported_once_on_stderr() {
    let h = Harness::with_options(
        Script::parse("steps: [{text: \"never\"}]", false).unwrap(),
        ServeOptions {
            api_key: Some("the-right-key".into()),
            ..Default::default()
        },
    )
    .await;
    let out = h
        .cmd(&["run", "hello"])
        .env("OPENAI_API_KEY", "a-wrong-key")
        .output()
        .await
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stdout(&out), "", "stdout holds answers only");
    // (Counted with its words: a session id may hold the digits 401 too.)
    assert_eq!(err.matches("401 from").count(), 1, "{err}");
    assert!(!err.contains("WARN"), "{err}");
    assert!(!err.contains("a-wrong-key"), "{err}");
}

/// `--output-format json`: every outcome is a JSON object, a setup error included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_on_a_configuration_error() {
    let h = Harness::yaml("steps: [{text: \"never\"}]").await;
    h.write_user_config("model = [not toml\n");
    let out = h.run(&["run", "--output-format", "json", "hello"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    assert_eq!(v["status"], "error");
    assert_eq!(v["is_error"], true);
    assert_eq!(v["type"], "result");
    assert_eq!(v["exit_code"], 2);
    assert!(
        v["result"].as_str().unwrap().contains("config.toml"),
        "{v:#}"
    );

    let out = h
        .run(&["run", "--output-format", "json", "--agent", "nosuch", "hi"])
        .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "error");
    assert!(v["result"].as_str().unwrap().contains("nosuch"), "{v:#}");
    assert!(h.mock.requests().is_empty());
}

/// `claude -p --output-format json` field names, beside deputy's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_result_carries_claude_codes_fields() {
    let h = Harness::yaml("steps: [{text: \"hello\"}]").await;
    let (code, v, err) = h.run_json(&["--max-turns", "3", "hi"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["type"], "result");
    assert_eq!(v["subtype"], "success");
    assert_eq!(v["is_error"], false);
    assert_eq!(v["num_turns"], 1);
    assert_eq!(v["num_turns"], v["num_steps"]);
    assert!(v["total_cost_usd"].is_number(), "{v:#}");
    assert_eq!(v["result"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_system_prompt_and_claude_tool_rules() {
    let h = Harness::yaml(
        "steps:\n  - tool_calls: [{name: write, arguments: {path: denied.txt, content: x}}]\n  - text: done",
    )
    .await;
    let (code, v, err) = h
        .run_json(&[
            "--append-system-prompt",
            "Always answer in French.",
            "--disallowed-tools",
            "Write",
            "write it",
        ])
        .await;
    assert_eq!(code, Some(0), "{err}\n{v:#}");
    let reqs = h.mock.requests();
    let system = reqs[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(system.ends_with("Always answer in French."), "{system}");
    assert!(!h.ws.join("denied.txt").exists());
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_bash_rules_allow_a_prefix_and_deny_the_rest() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        "steps:\n  - tool_calls: [{name: bash, arguments: {command: \"touch allowed.txt\"}}]\n  - tool_calls: [{name: bash, arguments: {command: \"touch denied.txt\"}}]\n  - text: done",
    )
    .await;
    // Every command is asked (denied headless) but `touch allowed.txt…`.
    let (code, v, err) = h
        .run_json(&[
            "--ask",
            "bash",
            "--allowed-tools",
            "Bash(touch allowed.txt:*) Read",
            "go",
        ])
        .await;
    assert_eq!(code, Some(0), "{err}\n{v:#}");
    assert!(h.ws.join("allowed.txt").exists());
    assert!(!h.ws.join("denied.txt").exists());
    h.assert_strict_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_no_ops_are_said_and_quiet_means_quiet() {
    let h = Harness::yaml("steps: [{text: \"ok\"}]\nrepeat_last: true").await;
    // No price for mock-model: the budget cannot be enforced, and deputy says so.
    let out = h.run(&["run", "--max-cost-usd", "0.5", "hi"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("--max-cost-usd has no effect"),
        "{}",
        stderr(&out)
    );
    let out = h.run(&["run", "-q", "--max-cost-usd", "0.5", "hi"]).await;
    assert_eq!(stderr(&out), "", "-q prints nothing but the result");
    assert_eq!(stdout(&out).trim(), "ok");

    // A shipped price for a known hosted model: no warning, and a cost.
    let out = h
        .run(&[
            "run",
            "--output-format",
            "json",
            "--model",
            "gpt-4o-mini",
            "--max-cost-usd",
            "0.5",
            "hi",
        ])
        .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!stderr(&out).contains("no effect"), "{}", stderr(&out));
    assert!(v["total_cost_usd"].as_f64().unwrap() > 0.0, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_model_xdg_config_home_and_a_missing_model() {
    let h = Harness::yaml("steps: [{text: \"ok\"}]\nrepeat_last: true").await;
    let out = h
        .cmd(&["run", "hi"])
        .env_remove("DEPUTY_MODEL")
        .env("OPENAI_MODEL", "from-openai-model")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(h.mock.requests()[0].body["model"], "from-openai-model");

    let out = h
        .cmd(&["run", "hi"])
        .env_remove("DEPUTY_MODEL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("OPENAI_BASE_URL is set") && err.contains("DEPUTY_MODEL"),
        "{err}"
    );

    // The user's config under $XDG_CONFIG_HOME.
    let xdg = h.dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("deputy")).unwrap();
    std::fs::write(xdg.join("deputy/config.toml"), "model = \"from-xdg\"\n").unwrap();
    let out = h
        .cmd(&["run", "hi"])
        .env_remove("DEPUTY_MODEL")
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(h.mock.requests().last().unwrap().body["model"], "from-xdg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_man_page_and_version() {
    let h = Harness::yaml("steps: []").await;
    for (shell, needle) in [
        ("bash", "_deputy()"),
        ("zsh", "#compdef deputy"),
        ("fish", "complete -c deputy"),
    ] {
        let out = h.run(&["completions", shell]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(needle), "{shell}: {text:.200}");
        assert!(text.contains("max-turns"), "{shell}");
    }
    let out = h.run(&["completions", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(2));

    let out = h.run(&["man"]).await;
    let man = stdout(&out);
    assert!(
        man.starts_with(".ie") || man.contains(".TH deputy"),
        "{man:.200}"
    );
    assert!(man.contains("resume"), "{man:.400}");

    let version = stdout(&h.run(&["version"]).await);
    let flag = stdout(&h.run(&["--version"]).await);
    assert_eq!(version.trim(), flag.trim());
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
}

/// `deputy sandbox check` says what the backend in use guarantees, for each backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_check_says_what_each_backend_guarantees() {
    if !sandbox_available() {
        return;
    }
    let h = Harness::yaml("steps:\n  - text: unused\n").await;
    for backend in common::backends() {
        let out = h
            .cmd(&["sandbox", "check", "--json"])
            .env("DEPUTY_SANDBOX_BACKEND", backend)
            .output()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["backend"], backend, "{v}");
        let said = v["guarantees"].to_string();
        let want = if backend == "bwrap" {
            "layer of its own"
        } else {
            "by a scan"
        };
        assert!(
            said.contains(want) && said.contains("credential stores"),
            "{backend}: {said}"
        );
    }
}

/// `--add-dir` (or `[sandbox] add_dirs` in the user's config) grants a directory to bash and the
/// file tools alike, on each backend, and the model is told of it; a directory beside it stays
/// out of reach, also when an untrusted project's config names it. A grant that would undo the
/// sandbox's view is a clear error naming the directory, before any model request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_dir_grants_a_directory_to_bash_and_the_file_tools() {
    if !sandbox_available() {
        return;
    }
    for (i, backend) in common::backends().into_iter().enumerate() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let (shared, third) = (top.join("shared"), top.join("third"));
        std::fs::create_dir_all(shared.join("src")).unwrap();
        std::fs::create_dir_all(&third).unwrap();
        std::fs::write(third.join("notes"), "thirdsecret\n").unwrap();
        let script = format!(
            "steps:\n  - tool_calls: [{{name: write, arguments: {{path: \"{s}/by-tool.txt\", content: \"tool\\n\"}}}}]\n  - tool_calls: [{{name: bash, arguments: {{command: \"echo bash > {s}/src/by-bash.txt; cat {t}/notes; echo end\"}}}}]\n  - text: done\n",
            s = shared.display(),
            t = third.display()
        );
        let h = Harness::yaml(&script).await;
        h.write_config(&format!(
            "[sandbox]\nadd_dirs = [\"{}\"]\n",
            third.display()
        ));
        let mut args = vec!["run", "--output-format", "json", "work in both"];
        if i % 2 == 0 {
            args.extend(["--add-dir", shared.to_str().unwrap()]);
        } else {
            h.write_user_config(&format!(
                "[sandbox]\nadd_dirs = [\"{}\"]\n",
                shared.display()
            ));
        }
        let out = h
            .cmd(&args)
            .env("DEPUTY_SANDBOX_BACKEND", backend)
            .output()
            .await
            .unwrap();
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
        assert_eq!(
            v["status"],
            "completed",
            "{backend}: {v:#}\n{}",
            stderr(&out)
        );
        assert_eq!(read(&shared.join("by-tool.txt")), "tool\n", "{backend}");
        assert_eq!(read(&shared.join("src/by-bash.txt")), "bash\n", "{backend}");
        let results = h.tool_results();
        assert!(results[1].contains("end"), "{backend}: {results:?}");
        assert!(
            !results[1].contains("thirdsecret"),
            "{backend}: {results:?}"
        );
        let system = h.mock.requests()[0].body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(system.contains(shared.to_str().unwrap()), "{system}");
    }

    let h = Harness::yaml("steps:\n  - text: unused\n").await;
    let home = h.home.display().to_string();
    for (dir, says) in [
        ("/", "root of the file system"),
        ("/etc", "part of the system"),
        (home.as_str(), "home directory"),
        ("/no/such/dir", "No such file"),
    ] {
        let out = h
            .cmd(&["run", "--add-dir", dir, "hello"])
            .output()
            .await
            .unwrap();
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "{dir}");
        assert!(
            err.contains(&format!("cannot grant `{dir}`")) && err.contains(says),
            "{dir}: {err}"
        );
    }
    assert!(h.mock.requests().is_empty(), "a model request went out");
    let out = h
        .cmd(&["serve", "--add-dir", "/srv"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("tenant"), "{}", stderr(&out));
}
