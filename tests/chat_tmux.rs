//! End-to-end: `deputy chat` in a real terminal (tmux), against deputy-mockllm.
//!
//! Needs tmux: `.ci/run` installs it; elsewhere, without it, the test prints a SKIP line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Harness, sandbox_available};

struct Tmux {
    socket: String,
}

impl Tmux {
    /// A 150×50 terminal on a server of its own (`name`), running `deputy ARGS` for the
    /// harness's workspace and mock model with a clean environment; the exit code goes to
    /// `exit_file`.
    fn start(name: &str, h: &Harness, args: &str, exit_file: &std::path::Path) -> Tmux {
        let tmux = Tmux {
            socket: format!("deputy-test-{name}-{}", std::process::id()),
        };
        let shell = format!(
            "cd {ws} && env -i PATH=\"$PATH\" TERM=xterm-256color HOME={home} DEPUTY_HOME={home}/state OPENAI_BASE_URL={url} DEPUTY_MODEL=mock-model {bin} {args}; echo EXIT=$? > {exit}; sleep 60",
            ws = h.ws.display(),
            home = h.home.display(),
            url = h.mock.url(),
            bin = BIN,
            exit = exit_file.display()
        );
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            "150",
            "-y",
            "50",
            "bash",
            "-c",
            &shell,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "chat"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(
            &self
                .cmd(&["capture-pane", "-p", "-t", "chat", "-S", "-200"])
                .stdout,
        )
        .into_owned()
    }

    /// Wait until the line editor is reading: the screen's last line is the empty prompt, and
    /// a moment later still is.
    fn wait_for_prompt(&self, timeout: Duration) {
        let start = Instant::now();
        let at_prompt = |t: &Tmux| {
            t.screen()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim() == "›")
        };
        loop {
            if at_prompt(self) {
                std::thread::sleep(Duration::from_millis(200));
                if at_prompt(self) {
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no prompt after {timeout:?}; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Wait until the screen shows `needle` (after `skip` occurrences), or fail with the screen.
    fn wait_for(&self, needle: &str, times: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(needle).count() >= times {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {needle:?} (x{times}); screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    if Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    common::outside::missing(
        "chat terminal test",
        "tmux is not installed",
        "apt-get install tmux",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_a_real_terminal() {
    if !tmux_available() || !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
context_window: 64000
steps:
  - text: "Hello! Here is the **plan**:\n\n# Steps\n- read `main.py`\n- fix it\n"
  - tool_calls: [{name: bash, arguments: {command: "echo approved-run"}}]
  - text: "Ran it."
  - tool_calls: [{name: bash, arguments: {command: "echo second"}}]
  - text: "Understood, not running it."
  - tool_calls: [{name: bash, arguments: {command: "sleep 612.5"}}]
  - text: "never reached"
routes:
  # First: the summary request's transcript holds every earlier prompt.
  - when: {system_contains: "You are compacting the history"}
    steps: [{text: "Task: chat with the user. Next steps: Answer the next question."}]
    repeat_last: true
  - when: {last_user_contains: "after cancel"}
    steps: [{text: "Still here after the cancel."}]
    repeat_last: true
  - when: {last_user_contains: "ask once more"}
    steps: [{tool_calls: [{name: bash, arguments: {command: "echo never"}}]}]
    repeat_last: true
  - when: {last_user_contains: "after the question"}
    steps: [{text: "Still here after the question."}]
    repeat_last: true
  - when: {last_user_contains: "start over"}
    steps: [{text: "Fresh start after clear."}]
  - when: {last_user_contains: "new agent"}
    steps: [{text: "A new session answers."}]
  - when: {last_user_contains: "after compacting"}
    steps: [{text: "Still here after compacting."}]
    repeat_last: true
"#,
    )
    .await;
    h.write_agent(
        "asker",
        "---\nname: asker\npermission:\n  bash:\n    \"*\": ask\n---\nYou ask first.",
    );
    let exit_file = h.dir.path().join("exit");
    let tmux = Tmux::start("chat", &h, "chat -a asker", &exit_file);
    tmux.wait_for("/help for commands", 1, Duration::from_secs(20));

    // A prompt and a streamed, rendered answer.
    tmux.send(&["hello there", "Enter"]);
    tmux.wait_for("tokens this session", 1, Duration::from_secs(20));
    let screen = tmux.screen();
    // The status line shows how full the window the server reported is.
    // (The share depends on the size of the tool list; the window is the server's.)
    let fill = screen
        .split("context ")
        .nth(1)
        .and_then(|r| r.split_once("% of 64.0k"))
        .map(|(pct, _)| pct.trim().parse::<u32>());
    assert!(
        matches!(fill, Some(Ok(1..=9))),
        "context fill shown: {screen}"
    );
    assert!(
        screen.contains("Hello! Here is the plan:"),
        "markdown bold rendered: {screen}"
    );
    assert!(
        screen.contains("• read main.py"),
        "list and inline code rendered: {screen}"
    );

    // An approval answered yes.
    tmux.send(&["run it", "Enter"]);
    tmux.wait_for("[y]es once", 1, Duration::from_secs(20));
    tmux.send(&["y", "Enter"]);
    tmux.wait_for("Ran it.", 1, Duration::from_secs(20));
    assert!(
        tmux.screen().contains("bash echo approved-run (exit 0"),
        "{}",
        tmux.screen()
    );

    // An approval answered no, with a reason the model sees.
    tmux.send(&["again", "Enter"]);
    tmux.wait_for("[y]es once", 2, Duration::from_secs(20));
    tmux.send(&["n", "Enter"]);
    tmux.wait_for("reason for the agent", 1, Duration::from_secs(10));
    tmux.send(&["not now please", "Enter"]);
    tmux.wait_for("Understood, not running it.", 1, Duration::from_secs(20));
    let after_denial = h.mock.requests()[4].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(after_denial["role"], "tool");
    let text = after_denial["content"].as_str().unwrap();
    assert!(
        text.contains("permission denied") && text.contains("not now please"),
        "{text}"
    );

    // Ctrl-C during a long command: back at the prompt within a second, the command gone.
    tmux.send(&["sleep", "Enter"]);
    tmux.wait_for("[y]es once", 3, Duration::from_secs(20));
    tmux.send(&["y", "Enter"]);
    let t0 = Instant::now();
    while processes_with("sleep 612.5").is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the command never started:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    tmux.send(&["C-c"]);
    // The command sleeps for over 600 s: back at the prompt within 5 s means it was stopped.
    tmux.wait_for("cancelled", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        processes_with("sleep 612.5").is_empty(),
        "the sleep survived Ctrl-C"
    );
    // The conversation goes on after the cancel: the cancelled call got its result, so the
    // strict mock accepts the next request.
    tmux.send(&["after cancel", "Enter"]);
    tmux.wait_for("Still here after the cancel.", 1, Duration::from_secs(20));

    // Ctrl-C at an approval question cancels the turn; the next prompt works too.
    tmux.send(&["ask once more", "Enter"]);
    tmux.wait_for("[y]es once", 4, Duration::from_secs(20));
    tmux.send(&["C-c"]);
    tmux.wait_for("cancelled", 2, Duration::from_secs(10));
    tmux.send(&["after the question", "Enter"]);
    tmux.wait_for("Still here after the question.", 1, Duration::from_secs(20));
    h.assert_strict_ok();

    // /cost prints usage.
    tmux.send(&["/cost", "Enter"]);
    tmux.wait_for("input +", 1, Duration::from_secs(10));
    assert!(tmux.screen().contains("model turns"));

    // /compact folds the turns so far into the model's summary; the conversation goes on
    // from it (the strict mock accepts the request: no call lost its result).
    tmux.send(&["/compact keep the plan", "Enter"]);
    tmux.wait_for("compacted:", 1, Duration::from_secs(20));
    let summary_request = h
        .mock
        .requests()
        .into_iter()
        .find(|r| {
            r.body["messages"]
                .to_string()
                .contains("You are compacting")
        })
        .expect("a summary request");
    assert!(
        summary_request.body["messages"]
            .to_string()
            .contains("keep the plan"),
        "the focus reaches the summary request"
    );
    tmux.send(&["after compacting", "Enter"]);
    tmux.wait_for("Still here after compacting.", 1, Duration::from_secs(20));
    let after = h.mock.requests().last().unwrap().body["messages"].to_string();
    assert!(after.contains("Answer the next question"), "{after}");
    assert!(
        !after.contains("approved-run"),
        "older turns folded: {after}"
    );
    h.assert_strict_ok();

    // After /clear, answers stream as before.
    tmux.send(&["/clear", "Enter"]);
    tmux.send(&["start over", "Enter"]);
    tmux.wait_for("Fresh start after clear.", 1, Duration::from_secs(20));
    // So does a new session started by /agent.
    tmux.send(&["/agent asker", "Enter"]);
    tmux.send(&["new agent", "Enter"]);
    tmux.wait_for("A new session answers.", 1, Duration::from_secs(20));

    // Ctrl-D at the prompt exits 0. Only at the prompt: a ^D typed while the answer is still
    // printing reaches a terminal in cooked mode, whose line discipline takes it as end of
    // input for nobody (as in any shell).
    tmux.wait_for_prompt(Duration::from_secs(20));
    tmux.send(&["C-d"]);
    let t0 = Instant::now();
    while !exit_file.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "chat did not exit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(
        std::fs::read_to_string(&exit_file).unwrap().trim(),
        "EXIT=0"
    );
}

/// `deputy run` on a terminal: a spinner with elapsed seconds says what it waits for (the model,
/// then the running command), and its line is gone when the answer is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_shows_a_spinner_on_a_terminal() {
    if !tmux_available() || !sandbox_available() {
        return;
    }
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls: [{name: bash, arguments: {command: "sleep 4.25"}}]
    delay_ms: 3000
  - text: "All done."
"#,
    )
    .await;
    let exit_file = h.dir.path().join("exit");
    let tmux = Tmux::start("run", &h, "run -v --allow bash 'wait a bit'", &exit_file);
    // While the model takes its time, then while the command runs, the spinner counts seconds.
    tmux.wait_for("thinking… 1.", 1, Duration::from_secs(20));
    tmux.wait_for("running bash: sleep 4.25… 2.", 1, Duration::from_secs(20));
    tmux.wait_for("All done.", 1, Duration::from_secs(20));
    let t0 = Instant::now();
    while !exit_file.exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(
        std::fs::read_to_string(&exit_file).unwrap().trim(),
        "EXIT=0"
    );
    let screen = tmux.screen();
    assert!(
        !screen.contains("running bash: sleep 4.25…"),
        "the spinner line is cleared:\n{screen}"
    );
    // -v streams the answer to the terminal; it is not printed a second time.
    assert_eq!(screen.matches("All done.").count(), 1, "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reads_prompts_from_a_pipe() {
    let h = Harness::yaml("steps:\n  - text: first answer\n  - text: second answer\n").await;
    let out = h.chat_piped(&[], b"one\n\ntwo\n").await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first answer\nsecond answer\n",
        "answers only, no prompts or colour"
    );
}

/// Processes running `needle`, other than the shell wrappers that name it.
fn processes_with(needle: &str) -> Vec<String> {
    common::processes_with(needle)
        .into_iter()
        .filter(|cmd| !cmd.contains("bash -c"))
        .collect()
}
