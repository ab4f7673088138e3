//! The boundary by construction (issue 25), tried as an attacker would and judged by outcome:
//! processes that must not survive, repositories the owner's `git` must not find, marker files
//! that must not appear, bytes the model must not see. Each attack runs in every sandbox mode
//! this machine has (bwrap and Landlock, a sandbox per command and one kept for the session).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Env, modes, processes_with, read};
use deputy_tools::Backend;

/// Whether this mode writes through a layer (bwrap with a kept sandbox): the construction the
/// layer attacks are about. The other modes are held to what they promise (README).
fn layered(b: Backend, kept: bool) -> bool {
    b == Backend::Bwrap && kept
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run the owner's real `git` in `dir` the way a person would after the session.
fn owner_git(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap_or(dir))
        .output()
        .unwrap()
}

fn have_git() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || common::outside::missing("git attacks", "git is not installed", "apt-get install git")
}

/// A chain of 400 processes, each `setsid()` and alive, each one level below the last, and
/// a process that keeps re-forking itself detached: none survives the command, with or without
/// a cgroup to find them, and none plants anything afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_chain_of_400_dies_with_the_command() {
    for (b, kept) in modes() {
        for no_cgroups in [true, false] {
            let mark = unique("chainmark");
            let env = Env::make(b, kept, |p| {
                p.no_cgroups = no_cgroups;
                p.limits.processes = Some(4000);
            });
            let script = format!(
                r#"d=${{TMPDIR:-/tmp}}
cat > $d/c.sh <<'EOF'
exec 9>&-
n=$1
if [ "$n" -gt 0 ]; then setsid bash $0 $((n-1)) $2 $3 & fi
echo x >> $3/count
# Only once the command's own shell is gone (it holds the FIFO's only write end: the read
# ends then): what plants after that outlived the command.
cat $3/gone > /dev/null
sleep 0.3
mkdir -p "$PWD/planted-$n" && echo "[core]" > "$PWD/planted-$n/HEAD"
EOF
cat > $d/hop.sh <<'EOF'
exec 9>&-; sleep 0.01; setsid bash $0 $1 & exit 0
EOF
mkfifo $d/gone && exec 9<>$d/gone
setsid bash $d/c.sh 400 {mark} $d &
setsid bash $d/hop.sh {mark} &
for i in $(seq 1 300); do [ "$(wc -l < $d/count 2>/dev/null || echo 0)" -ge 401 ] && break; sleep 0.05; done
echo "levels: $(wc -l < $d/count)""#
            );
            let out = env.bash_timeout(&script, Some(60_000)).await;
            assert!(
                out.content.contains("levels: 401"),
                "{b:?} kept={kept}: the chain did not grow: {}",
                out.content
            );
            let planted = || {
                std::fs::read_dir(&env.ws)
                    .unwrap()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("planted-"))
                    .count()
            };
            let at_end = planted();
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut left = processes_with(&mark);
            while !left.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                left = processes_with(&mark);
            }
            assert!(
                left.is_empty(),
                "{b:?} kept={kept} no_cgroups={no_cgroups}: {} processes of the command survive it",
                left.len()
            );
            // What they would have planted after the command's result (after the last check):
            // nothing. (What a process writes while the command is still ending is the
            // command's own writing, checked with the rest of its layer.)
            std::thread::sleep(Duration::from_millis(2500));
            assert_eq!(
                planted(),
                at_end,
                "{b:?} kept={kept}: planted after the command ended"
            );
        }
    }
}

/// A command times out while its detached children keep writing: after the timeout nothing of
/// it runs, and (layered) what it wrote before is applied, once.
#[tokio::test]
async fn a_timed_out_command_leaves_nothing_running() {
    for (b, kept) in modes() {
        let mark = unique("tomark");
        let env = Env::make(b, kept, |_| {});
        let out = env
            .bash_timeout(
                &format!("echo before > src/before.txt; (setsid bash -c 'while :; do echo {mark} >> src/late.txt; sleep 0.05; done' &); sleep 30"),
                Some(1000),
            )
            .await;
        assert_eq!(out.metadata["timed_out"], true, "{b:?}: {}", out.content);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            processes_with(&mark).is_empty(),
            "{b:?} kept={kept}: survivors"
        );
        let late = read(&env.ws.join("src/late.txt")).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            read(&env.ws.join("src/late.txt")).unwrap_or_default(),
            late,
            "{b:?} kept={kept}: something still writes"
        );
        assert_eq!(
            read(&env.ws.join("src/before.txt")).as_deref(),
            Some("before\n"),
            "{b:?} kept={kept}"
        );
    }
}

/// Repositories made where the old scan did not look, or not named `.git`: in a layered
/// sandbox none reaches the workspace, the owner's `git status` runs none of their config,
/// the model is told, and ordinary changes beside them land.
#[tokio::test]
async fn repositories_a_command_makes_never_reach_the_workspace() {
    if !have_git() {
        return;
    }
    for (b, kept) in modes() {
        if !layered(b, kept) {
            continue;
        }
        let env = Env::make(b, kept, |_| {});
        let fired = env.outside.join("fsmonitor-fired");
        let payload = format!("touch {}", fired.display());
        std::fs::create_dir_all(env.ws.join("known/.git")).unwrap();
        let cases = [
            // A nested repository in a directory the old scan skipped.
            format!(
                "mkdir -p node_modules/pkg target && git init -q node_modules/pkg && git -C node_modules/pkg config core.fsmonitor '{payload}' && git init -q target"
            ),
            // A bare layout under another name, and a `.git` file pointing at it.
            format!(
                "git init -q --bare cache && git --git-dir=cache config core.fsmonitor '{payload}' && mkdir -p app && echo 'gitdir: ../cache' > app/.git"
            ),
            // A name that is not UTF-8.
            format!(
                "d=$(printf 'caf\\351') && mkdir \"$d\" && git init -q \"$d\" && git -C \"$d\" config core.fsmonitor '{payload}'"
            ),
            // The renamed parent of a repository known at start, and a case-folded name.
            "mv known moved && mkdir -p x/.GIT".to_string(),
            // Built across two commands: HEAD and objects now, refs next.
            "mkdir -p half/objects && echo 'ref: refs/heads/main' > half/HEAD".to_string(),
            "mkdir -p half/refs/heads".to_string(),
        ];
        for case in &cases {
            let out = env
                .bash(&format!(
                    "{case} && echo fine > src/ok-$RANDOM.txt; echo done"
                ))
                .await;
            assert!(out.content.contains("done"), "{b:?}: {}", out.content);
        }
        // The last command's refusal is told to the model.
        let out = env.bash("mkdir -p y && git init -q y; echo done").await;
        assert!(
            out.content.contains("`y/.git` was not written"),
            "{}",
            out.content
        );
        assert!(
            out.metadata["refused"][0]["path"] == "y/.git",
            "{}",
            out.metadata
        );
        for dir in [
            "node_modules/pkg",
            "target",
            "cache",
            "app",
            "moved",
            "half",
            "y",
            "x",
        ] {
            let d = env.ws.join(dir);
            if !d.exists() {
                continue;
            }
            let o = owner_git(&d, &["rev-parse", "--absolute-git-dir"]);
            let found = String::from_utf8_lossy(&o.stdout);
            assert!(
                !o.status.success() || found.trim() == env.ws.join(".git").display().to_string(),
                "{dir} is a repository of its own in the workspace: {found}"
            );
            owner_git(&d, &["status"]);
        }
        let latin = env.ws.join(std::ffi::OsStr::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9"),
        ));
        assert!(latin.is_dir() && !latin.join(".git").exists());
        assert!(
            !fired.exists(),
            "the owner's git ran a command the agent planted"
        );
        // The repository known at start is still there; its copy was refused.
        assert!(env.ws.join("known/.git").is_dir());
        assert!(!env.ws.join("moved/.git").exists());
        assert!(!env.ws.join("x/.GIT").exists());
        let landed = std::fs::read_dir(env.ws.join("src")).unwrap().count();
        assert!(
            landed >= cases.len(),
            "the ordinary writes beside them landed: {landed}"
        );
    }
}

/// A symlink the command leaves in place of a directory cannot redirect the next command's
/// layer outside the workspace, nor into `.git`.
#[tokio::test]
async fn a_planted_link_does_not_redirect_the_next_layer() {
    for (b, kept) in modes() {
        if !layered(b, kept) {
            continue;
        }
        let env = Env::make(b, kept, |_| {});
        let target = env.outside.display().to_string();
        let out = env
            .bash(&format!(
                "ln -s {target} out && ln -s .git/hooks hooks; echo done"
            ))
            .await;
        assert!(out.content.contains("done"), "{}", out.content);
        let out = env
            .bash("echo pwned > out/x; echo '#!/bin/sh' > hooks/pre-commit; echo done")
            .await;
        assert!(out.content.contains("done"), "{}", out.content);
        assert!(
            read(&env.outside.join("x")).is_none(),
            "wrote outside through a link"
        );
        assert!(
            !env.ws.join(".git/hooks/pre-commit").exists(),
            "wrote a hook through a link"
        );
    }
}

/// Deleting a tree keeps the repository inside it; the model is told.
#[tokio::test]
async fn deleting_a_tree_keeps_its_repository() {
    for (b, kept) in modes() {
        if !layered(b, kept) {
            continue;
        }
        let env = Env::make(b, kept, |_| {});
        std::fs::create_dir_all(env.ws.join("vendor/lib/.git/objects")).unwrap();
        std::fs::write(env.ws.join("vendor/lib/code.c"), "int x;").unwrap();
        let out = env.bash("rm -rf vendor; echo rc=$?").await;
        assert!(
            env.ws.join("vendor/lib/.git/objects").is_dir(),
            "{}",
            out.content
        );
        assert!(
            !env.ws.join("vendor/lib/code.c").exists(),
            "{}",
            out.content
        );
    }
}

/// Without a cgroup, deputy collects what a Landlock command detaches; its own children (an
/// MCP server, a `git` it runs) are not the command's and live on.
#[tokio::test]
async fn collecting_orphans_spares_deputys_own_children() {
    for (b, kept) in modes() {
        if b != Backend::Landlock || kept {
            continue;
        }
        let mark = unique("ownmark");
        let mut own = std::process::Command::new("sleep")
            .arg(format!("{}.{}", 700 + std::process::id() % 100, 7))
            .spawn()
            .unwrap();
        let env = Env::make(b, kept, |p| p.no_cgroups = true);
        let out = env
            .bash(&format!(
                "setsid -f bash -c 'exec -a {mark} sleep 30'; echo started"
            ))
            .await;
        assert!(out.content.contains("started"), "{}", out.content);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            processes_with(&mark).is_empty(),
            "the command's orphan survived"
        );
        assert!(
            own.try_wait().unwrap().is_none(),
            "deputy's own child was killed as an orphan"
        );
        let _ = own.kill();
        let _ = own.wait();
    }
}

/// `.env` values reach no command: not through a hard link under another name, not in a
/// dependency tree the old scan skipped, not under a name that is not UTF-8. (The read tool's
/// refusal of a hard link is the permission layer's: tests/persistence.rs.)
#[tokio::test]
async fn env_files_are_hidden_by_inode_everywhere() {
    use std::os::unix::ffi::OsStrExt;
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        let secret = unique("envsecret");
        std::fs::write(env.ws.join(".env"), format!("TOKEN={secret}a\n")).unwrap();
        std::fs::hard_link(env.ws.join(".env"), env.ws.join("src/notes.txt")).unwrap();
        std::fs::create_dir_all(env.ws.join("node_modules/pkg")).unwrap();
        std::fs::write(
            env.ws.join("node_modules/pkg/.env"),
            format!("T={secret}b\n"),
        )
        .unwrap();
        let odd = std::ffi::OsStr::from_bytes(b".env.\xff");
        std::fs::write(env.ws.join("src").join(odd), format!("T={secret}c\n")).unwrap();
        let out = env
            .bash("cat src/notes.txt node_modules/pkg/.env src/.env.* .env 2>&1; grep -r TOKEN . 2>&1; echo end")
            .await;
        assert!(out.content.contains("end"), "{b:?}: {}", out.content);
        assert!(
            !out.content.contains(&secret),
            "{b:?} kept={kept}: a secret reached the output: {}",
            out.content
        );
    }
}
